/*
 * cairn's own runtime for modules translated by wasm2c (the functions wasm-rt.h declares).
 * It runs inside the job worker process only (compute/worker.c).
 *
 * Memory accesses are bounds-checked by the generated code itself (we build modules with
 * WASM_RT_MEMCHECK_SIGNAL_HANDLER=0), so linear memory is a plain mapping: reserved up to
 * the job's memory limit once, and made accessible page by page as the module grows it,
 * so growing never moves it. Call depth is counted (WASM_RT_MAX_CALL_STACK_DEPTH) and the
 * job thread's stack is sized for it, so deep recursion ends in a trap, not a crash.
 * A trap unwinds to the worker with longjmp; the worker reports it and exits.
 */
#include "compute/runtime.h"
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>

#define PAGE_BYTES 65536u

uint32_t wasm_rt_call_stack_depth;

static int initialized;
static jmp_buf *trap_target;
static uint32_t memory_limit_pages = 65536; /* 4 GiB: all a 32-bit memory can address */

/* Registered function types: the generated code compares indices for call_indirect, so
 * equal signatures must get equal indices. */
typedef struct {
  uint32_t params, results;
  wasm_rt_type_t *types;
} func_type;
static func_type *func_types;
static uint32_t n_func_types;

/* Exceptions (the wasm exception-handling proposal): one active exception at a time. */
static jmp_buf *unwind_target;
static uint32_t exception_tag, exception_size, n_tags;
static uint8_t exception_data[256];

void rt_set_trap_target(jmp_buf *target)
{
  trap_target = target;
}

void rt_set_memory_limit(uint64_t bytes)
{
  uint64_t pages = bytes / PAGE_BYTES;
  memory_limit_pages = pages > 65536 ? 65536 : pages ? (uint32_t)pages : 1;
}

void wasm_rt_init(void)
{
  initialized = 1;
}

bool wasm_rt_is_initialized(void)
{
  return initialized;
}

void wasm_rt_free(void)
{
  for (uint32_t i = 0; i < n_func_types; i++)
    free(func_types[i].types);
  free(func_types);
  func_types = NULL;
  n_func_types = 0;
  initialized = 0;
}

void wasm_rt_trap(wasm_rt_trap_t code)
{
  if (!trap_target)
    abort(); /* a trap outside a job: a bug in the worker, not in the module */
  longjmp(*trap_target, RT_JUMP_TRAP_BASE + (int)code);
}

const char *wasm_rt_strerror(wasm_rt_trap_t trap)
{
  switch (trap) {
  case WASM_RT_TRAP_NONE: return "no trap";
  case WASM_RT_TRAP_OOB: return "out of bounds memory or table access";
  case WASM_RT_TRAP_INT_OVERFLOW: return "integer overflow";
  case WASM_RT_TRAP_DIV_BY_ZERO: return "integer divide by zero";
  case WASM_RT_TRAP_INVALID_CONVERSION: return "invalid conversion to integer";
  case WASM_RT_TRAP_UNREACHABLE: return "unreachable executed";
  case WASM_RT_TRAP_CALL_INDIRECT: return "indirect call type mismatch";
  case WASM_RT_TRAP_UNCAUGHT_EXCEPTION: return "uncaught exception";
#if !WASM_RT_MERGED_OOB_AND_EXHAUSTION_TRAPS
  case WASM_RT_TRAP_EXHAUSTION: return "call stack exhausted";
#endif
  }
  return "unknown trap";
}

uint32_t wasm_rt_register_func_type(uint32_t params, uint32_t results, ...)
{
  uint32_t n = params + results;
  wasm_rt_type_t *types = calloc(n ? n : 1, sizeof *types);
  if (!types)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  va_list ap;
  va_start(ap, results);
  for (uint32_t i = 0; i < n; i++)
    types[i] = (wasm_rt_type_t)va_arg(ap, int);
  va_end(ap);
  for (uint32_t i = 0; i < n_func_types; i++)
    if (func_types[i].params == params && func_types[i].results == results &&
        !memcmp(func_types[i].types, types, n * sizeof *types)) {
      free(types);
      return i;
    }
  func_type *grown = realloc(func_types, (n_func_types + 1) * sizeof *grown);
  if (!grown)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  func_types = grown;
  func_types[n_func_types] = (func_type){params, results, types};
  return n_func_types++;
}

uint32_t wasm_rt_register_tag(uint32_t size)
{
  (void)size;
  return n_tags++;
}

void wasm_rt_load_exception(uint32_t tag, uint32_t size, const void *values)
{
  if (size > sizeof exception_data)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  exception_tag = tag;
  exception_size = size;
  if (size)
    memcpy(exception_data, values, size);
}

void wasm_rt_throw(void)
{
  if (!unwind_target)
    wasm_rt_trap(WASM_RT_TRAP_UNCAUGHT_EXCEPTION);
  longjmp(*unwind_target, 1);
}

WASM_RT_UNWIND_TARGET *wasm_rt_get_unwind_target(void)
{
  return unwind_target;
}

void wasm_rt_set_unwind_target(WASM_RT_UNWIND_TARGET *target)
{
  unwind_target = target;
}

uint32_t wasm_rt_exception_tag(void)
{
  return exception_tag;
}

uint32_t wasm_rt_exception_size(void)
{
  return exception_size;
}

void *wasm_rt_exception(void)
{
  return exception_data;
}

/* ---- linear memory ---- */

void wasm_rt_allocate_memory(wasm_rt_memory_t *mem, uint32_t initial_pages, uint32_t max_pages)
{
  uint32_t limit = max_pages < memory_limit_pages ? max_pages : memory_limit_pages;
  if (initial_pages > limit)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION); /* the module needs more than the job may use */
  size_t reserve = (size_t)limit * PAGE_BYTES;
  void *p = mmap(NULL, reserve ? reserve : PAGE_BYTES, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  size_t bytes = (size_t)initial_pages * PAGE_BYTES;
  if (bytes && mprotect(p, bytes, PROT_READ | PROT_WRITE) < 0)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  mem->data = p;
  mem->pages = initial_pages;
  mem->max_pages = limit;
  mem->size = (uint32_t)(bytes > UINT32_MAX ? UINT32_MAX : bytes);
}

uint32_t wasm_rt_grow_memory(wasm_rt_memory_t *mem, uint32_t delta)
{
  uint32_t old = mem->pages;
  if (delta == 0)
    return old;
  if ((uint64_t)old + delta > mem->max_pages)
    return UINT32_MAX;
  uint64_t bytes = ((uint64_t)old + delta) * PAGE_BYTES;
  if (mprotect(mem->data + (size_t)old * PAGE_BYTES, (size_t)delta * PAGE_BYTES,
               PROT_READ | PROT_WRITE) < 0)
    return UINT32_MAX;
  mem->pages = old + delta;
  /* a full 4 GiB memory cannot be described by the 32-bit size: the last byte is lost */
  mem->size = (uint32_t)(bytes > UINT32_MAX ? UINT32_MAX : bytes);
  return old;
}

void wasm_rt_free_memory(wasm_rt_memory_t *mem)
{
  if (mem->data)
    munmap(mem->data, (size_t)(mem->max_pages ? mem->max_pages : 1) * PAGE_BYTES);
  mem->data = NULL;
}

/* ---- tables ---- */

/* Tables of both kinds: allocated zeroed (null references), freed whole. */
#define TABLE_ALLOC(type)                                                                 \
  void wasm_rt_allocate_##type##_table(wasm_rt_##type##_table_t *table, uint32_t elements, \
                                       uint32_t max_elements)                             \
  {                                                                                       \
    table->data = calloc(elements ? elements : 1, sizeof *table->data);                   \
    if (!table->data)                                                                     \
      wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);                                              \
    table->size = elements;                                                               \
    table->max_size = max_elements;                                                       \
  }                                                                                       \
  void wasm_rt_free_##type##_table(wasm_rt_##type##_table_t *table)                       \
  {                                                                                       \
    free(table->data);                                                                    \
    table->data = NULL;                                                                   \
  }
TABLE_ALLOC(funcref)
TABLE_ALLOC(externref)

/* Table growth: refuses past the declared maximum and past a sane bound (the module's
 * tables live in worker memory, which the memory limit does not cover). */
#define TABLE_GROW(type)                                                                  \
  uint32_t wasm_rt_grow_##type##_table(wasm_rt_##type##_table_t *table, uint32_t delta,   \
                                       wasm_rt_##type##_t init)                           \
  {                                                                                       \
    uint32_t old = table->size;                                                           \
    uint64_t size = (uint64_t)old + delta;                                                \
    if (size > table->max_size || size > (1u << 24))                                      \
      return UINT32_MAX;                                                                  \
    if (delta == 0)                                                                       \
      return old;                                                                         \
    wasm_rt_##type##_t *grown = realloc(table->data, (size_t)size * sizeof *grown);       \
    if (!grown)                                                                           \
      return UINT32_MAX;                                                                  \
    for (uint64_t i = old; i < size; i++)                                                 \
      grown[i] = init;                                                                    \
    table->data = grown;                                                                  \
    table->size = (uint32_t)size;                                                         \
    return old;                                                                           \
  }
TABLE_GROW(funcref)
TABLE_GROW(externref)
