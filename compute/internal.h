/* compute/ private: module builds (build.c), the job worker (worker.c), content tree
 * hashes (tree.c) shared by job.c. */
#ifndef CAIRN_COMPUTE_INTERNAL_H
#define CAIRN_COMPUTE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Translates a module with wasm2c and compiles it to a shared object, cached under
 * home/cache/wasm by module hash. *built says whether this call compiled it. */
int compute_build_module(const char *home, const uint8_t *wasm, size_t len, char *so_path,
                         size_t cap, int *built, double *seconds);

typedef struct {
  const char *module_so;
  const char *in_dir, *out_dir;
  const char *work_dir; /* scratch for the worker's verdict */
  int log_fd;
  char **argv; /* argv[0] is the program name the module sees */
  int argc;
  uint8_t seed[32];
  uint64_t memory_bytes;
  unsigned cpu_seconds;
  volatile int *cancel; /* set to stop the worker early; may be NULL */
} worker_request;

typedef struct {
  int exited;       /* the module exited (or returned from _start) */
  int exit_code;
  char reason[256]; /* why the job failed; empty on exit 0 */
  double seconds;
} worker_result;

int compute_run_worker(const worker_request *req, worker_result *res);

/* Runs argv (argv[0] found on PATH), waits, and returns 0 on exit status 0; otherwise
 * -EIO with the first lines of its stderr in cn_err(). */
int compute_run_tool(char *const argv[], const char *what);

/* The content tree ID of a host file or directory (docs/FORMAT.md §15.3). */
int compute_tree_id(const char *path, uint8_t id[32]);
/* Removes a directory tree; missing is fine. */
void compute_rm_rf(const char *path);

/* Result records (record.c, docs/FORMAT.md §15.5). */
#define RECORD_LEN (15 + 96 + 64)
#define RECORD_SALT_LEN (10 + 32)
void compute_record_salt(const uint8_t job_id[32], uint8_t salt[RECORD_SALT_LEN]);
void compute_record_make(const uint8_t node_seed[32], const uint8_t job_id[32], const uint8_t output_id[32],
                         uint8_t out[RECORD_LEN]);
/* 0 and the output ID when v is signer's record for job_id; -EINVAL / -EBADMSG otherwise. */
int compute_record_check(const uint8_t *v, size_t len, const uint8_t signer[32], const uint8_t job_id[32],
                         uint8_t output_id[32]);

#endif
