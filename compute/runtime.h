/* compute/ private: the wasm2c runtime (rt.c), the deterministic WASI host (wasi.c) and
 * the worker process that runs one job (worker.c). Built with the same wasm-rt.h settings
 * as the modules (see COMPUTE_MODULE_DEFINES in build.c). */
#ifndef CAIRN_COMPUTE_RUNTIME_H
#define CAIRN_COMPUTE_RUNTIME_H

#include <setjmp.h>
#include <stdint.h>
#include <wasm-rt.h>

/* longjmp values that end a job: a trap (this base + wasm_rt_trap_t) or proc_exit. */
#define RT_JUMP_TRAP_BASE 1000
#define RT_JUMP_EXIT 1

void rt_set_trap_target(jmp_buf *target);
void rt_set_memory_limit(uint64_t bytes);

/* The WASI instance a module is instantiated with (wasm2c's opaque import struct). */
struct Z_wasi_snapshot_preview1_instance_t;
typedef struct Z_wasi_snapshot_preview1_instance_t wasi_host;

typedef struct {
  char **argv;
  int argc;
  int in_fd, out_fd; /* host directories preopened as /in (read-only) and /out */
  int log_fd;        /* stdout and stderr both go here */
  uint8_t seed[32];  /* randomness: a ChaCha20 stream under this key */
  uint64_t log_limit;
} wasi_config;

wasi_host *wasi_new(const wasi_config *cfg);
void wasi_bind_memory(wasi_host *w, wasm_rt_memory_t *mem);
/* Where proc_exit jumps to, and the code it was given. */
void wasi_set_exit_target(wasi_host *w, jmp_buf *target);
uint32_t wasi_exit_code(const wasi_host *w);

#endif
