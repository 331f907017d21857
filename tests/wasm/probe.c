/*
 * probe: reports what a module sees of time, randomness and its arguments, so the tests
 * can check that cairn's WASI host is deterministic: the clock is fixed at
 * 2000-01-01T00:00:00Z (946684800 s) and advances 1 us per read, and random bytes come
 * from a stream seeded by the job ID (same job, same bytes; other job, other bytes).
 *
 * Writes /out/probe.txt and the same lines to stdout, then exits 0 (1 if a call failed):
 *   time <time(NULL)>                      the first clock read
 *   clock_realtime_ns <CLOCK_REALTIME>     the second clock read, in nanoseconds
 *   random <8 hex digits>                  4 bytes of getentropy()
 *   argc <N>
 *   argv[<i>] <argument>                   one line per argument, argv[0] included
 *
 * (wasi-libc here has no arc4random; getentropy is WASI's random_get.)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void report(FILE *out, int argc, char **argv, long long seconds, long long ns,
                   const unsigned char entropy[4])
{
  fprintf(out, "time %lld\n", seconds);
  fprintf(out, "clock_realtime_ns %lld\n", ns);
  fprintf(out, "random %02x%02x%02x%02x\n", entropy[0], entropy[1], entropy[2], entropy[3]);
  fprintf(out, "argc %d\n", argc);
  for (int i = 0; i < argc; i++)
    fprintf(out, "argv[%d] %s\n", i, argv[i]);
}

int main(int argc, char **argv)
{
  struct timespec ts;
  unsigned char entropy[4];
  /* the order of the clock reads is part of the contract: time first, then realtime */
  long long seconds = (long long)time(NULL);
  if (clock_gettime(CLOCK_REALTIME, &ts) < 0) {
    fprintf(stderr, "probe: clock_gettime: %s\n", strerror(errno));
    return 1;
  }
  if (getentropy(entropy, sizeof entropy) < 0) {
    fprintf(stderr, "probe: getentropy: %s\n", strerror(errno));
    return 1;
  }
  long long ns = (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
  report(stdout, argc, argv, seconds, ns, entropy);
  FILE *f = fopen("/out/probe.txt", "w");
  if (!f) {
    fprintf(stderr, "probe: /out/probe.txt: %s\n", strerror(errno));
    return 1;
  }
  report(f, argc, argv, seconds, ns, entropy);
  if (fclose(f) != 0) {
    fprintf(stderr, "probe: /out/probe.txt: write failed: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}
