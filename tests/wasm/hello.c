/*
 * hello: the smallest useful job. Prints its arguments (argv[1...], separated by single
 * spaces, then a newline) to stdout, writes "hello\n" to /out/hello.txt and one line to
 * stderr (the job's log), and exits 0; 1 if /out/hello.txt cannot be written.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
  for (int i = 1; i < argc; i++)
    printf("%s%s", argv[i], i + 1 < argc ? " " : "");
  putchar('\n');
  FILE *f = fopen("/out/hello.txt", "w");
  if (!f || fputs("hello\n", f) == EOF || fclose(f) != 0) {
    fprintf(stderr, "hello: /out/hello.txt: %s\n", strerror(errno));
    return 1;
  }
  fprintf(stderr, "hello: wrote /out/hello.txt\n");
  return 0;
}
