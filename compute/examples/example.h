/*
 * What the example compute modules share (wc, fixity, index): the list of regular files
 * under the input root in byte order, output files that report write errors, and dying
 * with one clear line on stderr.
 *
 * The same sources build as WASI modules (inputs under /in, outputs under /out, as a
 * cairn job sees them) and natively (any directory pair given on the command line), so a
 * module's output and speed can be compared with the native program's.
 */
#ifndef CAIRN_EXAMPLE_H
#define CAIRN_EXAMPLE_H

#include <stddef.h>
#include <stdio.h>

/* Large reads: in a WASI module each read is a call into the host, so few big ones. */
#define EXAMPLE_READ_BUFFER (256 * 1024)
#define EXAMPLE_WRITE_BUFFER (64 * 1024)

/* The program's name for error messages; set by example_args. */
extern const char *example_prog;

/* Input root (argv[1], default "/in") and output directory (argv[2], default "/out").
 * Exits with a usage line on more arguments. */
void example_args(int argc, char **argv, const char **in, const char **out);

/* Print "PROG: message" (printf-style) and a newline to stderr, then exit 1. */
void example_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

void *example_malloc(size_t n);
void *example_realloc(void *p, size_t n);
char *example_strdup(const char *s);
/* Array P of *CAPACITY elements of SIZE bytes, full: double it (or make it INITIAL
 * elements), dying when out of memory or when the size would overflow (size_t is 32
 * bits in a module). */
void *example_grow(void *p, size_t *capacity, size_t size, size_t initial);

/* "a/b" in fresh memory. */
char *example_join(const char *dir, const char *name);

/* The regular files below a root: paths relative to it, sorted by strcmp (byte order, as
 * `LC_ALL=C sort` orders them). Symbolic links, devices and the like are skipped and
 * never followed, so the walk cannot leave the tree. A root that is itself a regular file
 * lists as its own base name. */
struct example_files {
  const char *root;
  int root_is_file;
  char **paths;
  size_t count, capacity;
};
void example_list(const char *root, struct example_files *files);
void example_files_free(struct example_files *files);
/* The path to open for entry I (ROOT/path, or ROOT itself), in fresh memory. */
char *example_file_path(const struct example_files *files, size_t i);

/* Create DIR/NAME for writing, and close it checking that every byte was written. */
FILE *example_create(const char *dir, const char *name);
void example_close(FILE *f, const char *dir, const char *name);

#endif
