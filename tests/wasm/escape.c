/*
 * escape: tries to get out of the sandbox one way, so the tests can check that cairn's
 * WASI host refuses. Each attempt prints one line to stdout,
 *   "<attempt>: refused, errno <N> (<message>)"  or  "<attempt>: SUCCEEDED"
 * (errno numbers are WASI's inside a module, e.g. 76 ENOTCAPABLE, 44 ENOENT, 2 EACCES).
 *
 *   escape write-in [NAME]   create /in/cairn-escape (absent from the inputs); with NAME,
 *                            also open the input /in/NAME for writing (append, so a
 *                            broken sandbox changes nothing that a test would compare)
 *   escape write-host        create /tmp/cairn-escape-<random hex>
 *   escape read-host         open /etc/passwd for reading
 *   escape dotdot            open /in/../../etc/passwd for reading, create /out/../x
 *   escape symlink NAME      read through /in/NAME, a symbolic link the test points
 *                            outside the inputs (e.g. at /etc/passwd or ../../..)
 *
 * Exit 0 if every attempt failed (the sandbox held), 99 if any succeeded (it did not),
 * 2 for a usage error. Whatever an attempt created is removed again.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static bool escaped;

static void refused(const char *attempt)
{
  printf("%s: refused, errno %d (%s)\n", attempt, errno, strerror(errno));
}

static void succeeded(const char *attempt)
{
  printf("%s: SUCCEEDED\n", attempt);
  escaped = true;
}

/* Create PATH, which must not exist; remove it again if that worked. */
static void try_create(const char *attempt, const char *path)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    refused(attempt);
    return;
  }
  succeeded(attempt);
  close(fd);
  unlink(path);
}

/* Open PATH with FLAGS; for reading, also read what is there and show its start. */
static void try_open(const char *attempt, const char *path, int flags)
{
  int fd = open(path, flags);
  if (fd < 0) {
    refused(attempt);
    return;
  }
  succeeded(attempt);
  if ((flags & O_ACCMODE) == O_RDONLY) {
    char start[41];
    ssize_t n = read(fd, start, sizeof start - 1);
    if (n >= 0) {
      start[n] = '\0';
      for (ssize_t i = 0; i < n; i++)
        if (start[i] < ' ' || start[i] > '~')
          start[i] = '.';
      printf("%s: read %zd bytes: %s\n", attempt, n, start);
    }
  }
  close(fd);
}

static int usage(void)
{
  fprintf(stderr,
          "usage: escape write-in [NAME] | write-host | read-host | dotdot | symlink NAME\n");
  return 2;
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "";
  const char *name = argc > 2 ? argv[2] : NULL;
  char path[256];
  if (!strcmp(mode, "write-in")) {
    try_create("create /in/cairn-escape", "/in/cairn-escape");
    if (name) {
      snprintf(path, sizeof path, "/in/%s", name);
      try_open("open an input for writing", path, O_WRONLY | O_APPEND);
    }
  } else if (!strcmp(mode, "write-host")) {
    unsigned char r[4] = {0, 0, 0, 0};
    if (getentropy(r, sizeof r) < 0)
      fprintf(stderr, "escape: getentropy: %s (the name is not random)\n", strerror(errno));
    snprintf(path, sizeof path, "/tmp/cairn-escape-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    try_create("create a file in /tmp", path);
  } else if (!strcmp(mode, "read-host")) {
    try_open("read /etc/passwd", "/etc/passwd", O_RDONLY);
  } else if (!strcmp(mode, "dotdot")) {
    try_open("read /in/../../etc/passwd", "/in/../../etc/passwd", O_RDONLY);
    try_create("create /out/../x", "/out/../x");
  } else if (!strcmp(mode, "symlink") && name) {
    struct stat st;
    snprintf(path, sizeof path, "/in/%s", name);
    /* what the module is shown of the link, for the log; only the read decides */
    if (lstat(path, &st) < 0) {
      printf("lstat %s: errno %d (%s)\n", path, errno, strerror(errno));
    } else if (S_ISLNK(st.st_mode)) {
      char target[256];
      ssize_t n = readlink(path, target, sizeof target - 1);
      if (n >= 0) {
        target[n] = '\0';
        printf("lstat %s: a symbolic link to %s\n", path, target);
      } else {
        printf("lstat %s: a symbolic link (readlink: errno %d)\n", path, errno);
      }
    } else {
      printf("lstat %s: not a symbolic link (mode %o)\n", path, (unsigned)st.st_mode);
    }
    try_open("read through the symbolic link", path, O_RDONLY);
  } else {
    return usage();
  }
  return escaped ? 99 : 0;
}
