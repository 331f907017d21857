/*
 * Content tree IDs (docs/FORMAT.md §15.3): a hash of what a file or directory holds —
 * names, bytes, symlink targets — and nothing else (no times, owners, modes, encryption
 * or storage layout), so the same inputs or outputs have the same ID on every node and
 * in every namespace. Job IDs are built from input tree IDs; results name output tree IDs.
 */
#include "compute/compute.h"
#include "compute/internal.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TREE_FILE "cairn-tree 1 file"
#define TREE_LINK "cairn-tree 1 link"
#define TREE_DIR "cairn-tree 1 dir"

static void add_u64(cn_sha256_stream *s, uint64_t v)
{
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (56 - 8 * i));
  cn_sha256_add(s, b, 8);
}

static int compare_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int tree_id_at(int parent, const char *name, const char *shown, uint8_t id[32])
{
  struct stat st;
  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return cn_fail(errno, "cannot read %s: %s", shown, strerror(errno));
  cn_sha256_stream *s = cn_sha256_begin();
  int rc = 0;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = readlinkat(parent, name, target, sizeof target);
    if (n < 0)
      rc = cn_fail(errno, "cannot read the link %s: %s", shown, strerror(errno));
    cn_sha256_add(s, TREE_LINK, sizeof TREE_LINK);
    add_u64(s, n < 0 ? 0 : (uint64_t)n);
    if (n > 0)
      cn_sha256_add(s, target, (size_t)n);
  } else if (S_ISREG(st.st_mode)) {
    int fd = openat(parent, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      rc = cn_fail(errno, "cannot open %s: %s", shown, strerror(errno));
    cn_sha256_add(s, TREE_FILE, sizeof TREE_FILE);
    add_u64(s, (uint64_t)st.st_size);
    static __thread uint8_t buf[1 << 17];
    ssize_t n;
    while (fd >= 0 && (n = read(fd, buf, sizeof buf)) != 0) {
      if (n < 0) {
        if (errno == EINTR)
          continue;
        rc = cn_fail(errno, "cannot read %s: %s", shown, strerror(errno));
        break;
      }
      cn_sha256_add(s, buf, (size_t)n);
    }
    if (fd >= 0)
      close(fd);
  } else if (S_ISDIR(st.st_mode)) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
      if (fd >= 0)
        close(fd);
      rc = cn_fail(errno, "cannot list %s: %s", shown, strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      if (n == cap) {
        cap = cap ? 2 * cap : 32;
        names = realloc(names, cap * sizeof *names);
      }
      names[n++] = strdup(de->d_name);
    }
    if (n)
      qsort(names, n, sizeof *names, compare_names);
    cn_sha256_add(s, TREE_DIR, sizeof TREE_DIR);
    size_t kept = 0;
    for (size_t i = 0; i < n && !rc; i++) {
      struct stat cst;
      /* only files, directories and links exist in a job's world */
      if (fstatat(dirfd(d), names[i], &cst, AT_SYMLINK_NOFOLLOW) < 0 ||
          !(S_ISREG(cst.st_mode) || S_ISDIR(cst.st_mode) || S_ISLNK(cst.st_mode)))
        continue;
      kept++;
    }
    add_u64(s, kept);
    for (size_t i = 0; i < n && !rc; i++) {
      struct stat cst;
      if (fstatat(dirfd(d), names[i], &cst, AT_SYMLINK_NOFOLLOW) < 0 ||
          !(S_ISREG(cst.st_mode) || S_ISDIR(cst.st_mode) || S_ISLNK(cst.st_mode)))
        continue;
      uint8_t child[32];
      size_t len = strlen(names[i]);
      char *child_shown = malloc(strlen(shown) + len + 2);
      sprintf(child_shown, "%s/%s", shown, names[i]);
      rc = tree_id_at(dirfd(d), names[i], child_shown, child);
      free(child_shown);
      add_u64(s, len);
      cn_sha256_add(s, names[i], len);
      cn_sha256_add(s, child, 32);
    }
    for (size_t i = 0; i < n; i++)
      free(names[i]);
    free(names);
    if (d)
      closedir(d);
  } else {
    rc = cn_fail(EINVAL, "%s is neither a file, a directory nor a symlink", shown);
  }
  cn_sha256_end(s, id);
  return rc;
}

int compute_tree_id(const char *path, uint8_t id[32])
{
  return tree_id_at(AT_FDCWD, path, path, id);
}
