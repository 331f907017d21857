/*
 * The shared parts of the example modules (see example.h). Everything that can fail
 * dies here with a message naming the path, so the programs themselves stay short.
 */
#define _POSIX_C_SOURCE 200809L
#include "example.h"
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *example_prog = "example";

/* The write buffers of the open outputs, freed when they close. */
static struct {
  FILE *file;
  char *buffer;
} outputs[4];

void example_die(const char *fmt, ...)
{
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s: ", example_prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

void example_args(int argc, char **argv, const char **in, const char **out)
{
  if (argc > 0 && argv[0] && *argv[0]) {
    const char *slash = strrchr(argv[0], '/');
    example_prog = slash ? slash + 1 : argv[0];
  }
  if (argc > 3) {
    fprintf(stderr, "usage: %s [INPUT_ROOT [OUTPUT_DIR]]   (default /in and /out)\n",
            example_prog);
    exit(2);
  }
  *in = argc > 1 ? argv[1] : "/in";
  *out = argc > 2 ? argv[2] : "/out";
}

void *example_malloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    example_die("out of memory (%zu bytes)", n);
  return p;
}

void *example_realloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (!q)
    example_die("out of memory (%zu bytes)", n);
  return q;
}

void *example_grow(void *p, size_t *capacity, size_t size, size_t initial)
{
  size_t n = *capacity ? *capacity : initial;
  if (n > SIZE_MAX / 2 / size)
    example_die("out of memory (an array of %zu elements)", n);
  n = *capacity ? 2 * n : n;
  p = example_realloc(p, n * size);
  *capacity = n;
  return p;
}

char *example_strdup(const char *s)
{
  size_t n = strlen(s) + 1;
  return memcpy(example_malloc(n), s, n);
}

char *example_join(const char *dir, const char *name)
{
  size_t a = strlen(dir), b = strlen(name);
  char *p = example_malloc(a + 1 + b + 1);
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

static void files_add(struct example_files *files, char *path)
{
  if (files->count == files->capacity)
    files->paths = example_grow(files->paths, &files->capacity, sizeof *files->paths, 256);
  files->paths[files->count++] = path;
}

/* Walk the directory ROOT/REL (REL "" for the root itself), adding regular files. The
 * order of readdir does not matter: the whole list is sorted at the end, which is not
 * the same as sorting each directory ("a.txt" < "a/x" in byte order, '.' < '/'). */
static void walk(const char *root, const char *rel, struct example_files *files)
{
  char *dir = *rel ? example_join(root, rel) : example_strdup(root);
  DIR *d = opendir(dir);
  if (!d)
    example_die("%s: cannot open directory: %s", dir, strerror(errno));
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno)
        example_die("%s: cannot read directory: %s", dir, strerror(errno));
      break;
    }
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char *path = example_join(dir, e->d_name);
    char *sub = *rel ? example_join(rel, e->d_name) : example_strdup(e->d_name);
    struct stat st;
    /* lstat: a symbolic link is skipped, never followed out of the tree */
    if (lstat(path, &st) < 0)
      example_die("%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
      walk(root, sub, files);
      free(sub);
    } else if (S_ISREG(st.st_mode)) {
      files_add(files, sub);
    } else {
      free(sub);
    }
    free(path);
  }
  closedir(d);
  free(dir);
}

static int compare_paths(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void example_list(const char *root, struct example_files *files)
{
  struct stat st;
  files->root = root;
  files->root_is_file = 0;
  files->paths = NULL;
  files->count = files->capacity = 0;
  /* stat, not lstat: the root was named by the caller, who may name it through a link */
  if (stat(root, &st) < 0)
    example_die("%s: %s", root, strerror(errno));
  if (S_ISREG(st.st_mode)) {
    const char *slash = strrchr(root, '/');
    files->root_is_file = 1;
    files_add(files, example_strdup(slash ? slash + 1 : root));
    return;
  }
  if (!S_ISDIR(st.st_mode))
    example_die("%s: not a directory or a regular file", root);
  walk(root, "", files);
  qsort(files->paths, files->count, sizeof *files->paths, compare_paths);
}

void example_files_free(struct example_files *files)
{
  for (size_t i = 0; i < files->count; i++)
    free(files->paths[i]);
  free(files->paths);
  files->paths = NULL;
  files->count = files->capacity = 0;
}

char *example_file_path(const struct example_files *files, size_t i)
{
  return files->root_is_file ? example_strdup(files->root)
                             : example_join(files->root, files->paths[i]);
}

FILE *example_create(const char *dir, const char *name)
{
  char *path = example_join(dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    example_die("%s: cannot create: %s", path, strerror(errno));
  free(path);
  /* wasi-libc's default buffer is 1 KiB, and each flush is a call into the host */
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    if (!outputs[i].file) {
      outputs[i].file = f;
      outputs[i].buffer = example_malloc(EXAMPLE_WRITE_BUFFER);
      if (setvbuf(f, outputs[i].buffer, _IOFBF, EXAMPLE_WRITE_BUFFER) != 0)
        example_die("%s/%s: cannot set a buffer", dir, name);
      break;
    }
  }
  return f;
}

void example_close(FILE *f, const char *dir, const char *name)
{
  char *buffer = NULL;
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    if (outputs[i].file == f) {
      buffer = outputs[i].buffer;
      outputs[i].file = NULL;
      outputs[i].buffer = NULL;
    }
  }
  /* fclose flushes the buffer: a full disk shows up here, not at fprintf */
  int failed = ferror(f);
  if (fclose(f) != 0 || failed)
    example_die("%s/%s: write failed: %s", dir, name, strerror(errno));
  free(buffer);
}
