/*
 * wc: line, word and byte counts of every regular file under the input root, in byte
 * order of path, written to OUT/counts.txt as "lines words bytes path" lines and a last
 * "lines words bytes total" line.
 *
 *   wc [ROOT [OUT]]        (a cairn job: wc /in /out, the defaults)
 *
 * A line is a newline byte and a word is a maximal run of bytes that are not white space
 * (space, \t, \n, \v, \f, \r), as POSIX defines wc's words. The counts never depend on
 * a locale, so a job gives the same answer on every worker. GNU wc agrees on every text
 * file of the documentation corpus when run as `POSIXLY_CORRECT=1 LC_ALL=C.UTF-8 wc`;
 * otherwise it also splits words at no-break spaces, and it never counts control bytes
 * or invalid UTF-8 as parts of words, so binary files differ.
 */
#define _POSIX_C_SOURCE 200809L
#include "example.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct counts {
  uint64_t lines, words, bytes;
};

static unsigned char buffer[EXAMPLE_READ_BUFFER];

static bool is_space(unsigned char c)
{
  return c == ' ' || (c >= '\t' && c <= '\r'); /* \t \n \v \f \r */
}

static void count_file(const char *path, struct counts *c)
{
  bool in_word = false; /* carried across reads: a word may span two buffers */
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    example_die("%s: cannot open: %s", path, strerror(errno));
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      example_die("%s: cannot read: %s", path, strerror(errno));
    }
    if (n == 0)
      break;
    c->bytes += (uint64_t)n;
    for (ssize_t i = 0; i < n; i++) {
      unsigned char b = buffer[i];
      if (b == '\n')
        c->lines++;
      if (is_space(b)) {
        in_word = false;
      } else if (!in_word) {
        in_word = true;
        c->words++;
      }
    }
  }
  close(fd);
}

static void write_counts(FILE *out, const struct counts *c, const char *name)
{
  fprintf(out, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %s\n", c->lines, c->words, c->bytes, name);
}

int main(int argc, char **argv)
{
  const char *in, *out;
  struct example_files files;
  struct counts total = {0, 0, 0};
  example_args(argc, argv, &in, &out);
  example_list(in, &files);
  FILE *report = example_create(out, "counts.txt");
  for (size_t i = 0; i < files.count; i++) {
    struct counts c = {0, 0, 0};
    char *path = example_file_path(&files, i);
    count_file(path, &c);
    write_counts(report, &c, files.paths[i]);
    total.lines += c.lines, total.words += c.words, total.bytes += c.bytes;
    free(path);
  }
  write_counts(report, &total, "total");
  example_close(report, out, "counts.txt");
  fprintf(stderr, "%s: %zu files\n", example_prog, files.count);
  example_files_free(&files);
  return 0;
}
