/*
 * trap: makes the module trap in one of four ways, so the tests can check that each is
 * caught, reported in the job's log, and fails the job:
 *   trap oob          a load far outside linear memory (address 0xFFFFFFF0)
 *   trap unreachable  __builtin_trap(), the wasm `unreachable` instruction
 *   trap stack        unbounded recursion: the stack overflows (the modules are linked
 *                     with --stack-first, so it runs off the bottom of memory and traps
 *                     instead of overwriting static data)
 *   trap divzero      integer division by zero
 * Exit 2 for a missing or unknown argument; exit 3 if the trap somehow did not happen.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* volatile: the compiler must not fold the fault away or prove it unreachable. Both
 * sides of the division are unknown: 1 / x would be compiled as x == 1. */
static volatile uint32_t zero = 0;
static volatile int32_t seven = 7;
static volatile uintptr_t far_address = 0xFFFFFFF0u;

/* Not a tail call (the sum uses the result) and a frame that must be in memory (the
 * volatile array), so each level takes stack space. The test of `zero` only keeps the
 * compiler from calling the recursion infinite. */
static int recurse(int depth)
{
  volatile char frame[256];
  if (zero)
    return 0;
  frame[depth % 256] = (char)depth;
  return recurse(depth + 1) + frame[0];
}

int main(int argc, char **argv)
{
  const char *how = argc > 1 ? argv[1] : "";
  if (!strcmp(how, "oob")) {
    volatile uint32_t *p = (volatile uint32_t *)far_address;
    printf("%u\n", (unsigned)*p);
  } else if (!strcmp(how, "unreachable")) {
    __builtin_trap();
  } else if (!strcmp(how, "stack")) {
    printf("%d\n", recurse(0));
  } else if (!strcmp(how, "divzero")) {
    volatile int32_t quotient = seven / (int32_t)zero;
    printf("%d\n", (int)quotient);
  } else {
    fprintf(stderr, "usage: trap oob|unreachable|stack|divzero\n");
    return 2;
  }
  fprintf(stderr, "trap: %s did not trap\n", how);
  return 3;
}
