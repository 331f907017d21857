/*
 * compute/ — deterministic WebAssembly jobs whose outputs appear as files (docs/COMPUTE.md).
 *
 * A job is a directory /compute/NAME in a writable namespace holding a spec file `job`
 * (docs/FORMAT.md §15.1). Running it reads the program (a WASI module) and the inputs from
 * the namespace, runs the module in a worker process under a deterministic WASI host
 * (inputs read-only under /in, outputs under /out), and writes the results back beside
 * the spec: `status`, `log` and the read-only tree `out/`.
 *
 * Job ID = SHA-256 over the runtime version, the module's hash, the arguments and each
 * input's content tree ID (§15.3): the same job gives the same ID on every node, and a
 * job whose ID has not changed is not run again.
 *
 * This layer sits above fs/: it reads and writes trees with fs.h's calls, and plugs into
 * a mount through cn_mount_hooks (the mount does not know about jobs beyond keeping
 * status, log and out read-only to users).
 */
#ifndef CAIRN_COMPUTE_H
#define CAIRN_COMPUTE_H

#include "fs/fs.h"
#include <stddef.h>
#include <stdint.h>

/* Part of every job ID: bump it when the WASI host or runtime could change a result. */
#define CN_COMPUTE_RUNTIME_VERSION 1
#define CN_JOB_SPEC_VERSION 1
#define CN_JOB_DEFAULT_CPU_SECONDS 3600
#define CN_JOB_DEFAULT_MEMORY_MIB 2048

typedef struct {
  char *program;   /* a path in the namespace, or a file cap string */
  char **args;
  size_t n_args;
  char **inputs;   /* namespace paths; input /a/b appears to the module as /in/b */
  size_t n_inputs;
  unsigned quorum; /* nodes that must agree before the outputs count as verified; 0 = none */
  unsigned cpu_seconds;
  unsigned memory_mib;
} cn_job_spec;

/* Parses a spec (docs/FORMAT.md §15.1): -EINVAL naming the line on any defect. */
int cn_job_spec_parse(const char *text, size_t len, cn_job_spec *out);
/* The spec as text (malloc'd); NULL when an argument or path cannot be written (newline). */
char *cn_job_spec_format(const cn_job_spec *spec);
void cn_job_spec_free(cn_job_spec *spec);

typedef struct cn_compute cn_compute;

/* Jobs run with home's scratch space ($CAIRN_HOME/tmp) and module cache
 * ($CAIRN_HOME/cache/wasm). */
int cn_compute_open(const char *home, cn_store *store, cn_compute **out);
void cn_compute_close(cn_compute *c);

typedef struct {
  char job_id[65];     /* hex */
  char output_id[65];  /* hex, when it ran and succeeded */
  int ran;             /* 0: the stored result was current, or reused */
  int reused;          /* answered from this node's stored result of the same job ID */
  int ok;
  char reason[256];    /* why it failed */
  double run_seconds, build_seconds;
  int built;           /* the module was compiled for this run */
  char stored_output[65]; /* cn_job_verify: the output the job's status names */
} cn_job_outcome;

/* Runs the job in job_dir ("/compute/NAME") of ns, which is open for writing: marks it
 * running (a commit), runs it unless its ID matches the stored result (force runs it
 * anyway), writes status, log and out/, and commits. A job that fails still returns 0
 * with outcome->ok = 0; errors that stop the job from being judged at all are < 0. */
int cn_job_run(cn_compute *c, cn_ns *ns, const char *job_dir, int force, cn_job_outcome *outcome);

/* Runs the job again here, without changing the tree (a read-cap is enough), and compares
 * the output with the one its status names: outcome->ok says they match. Either way this
 * node's signed record of what it computed is stored and, when a node runs here,
 * published (it counts toward the job's quorum). -ENOENT when the status names no output,
 * -ESTALE when the stored result is for another job ID (the inputs changed since). */
int cn_job_verify(cn_compute *c, cn_ns *ns, const char *job_dir, cn_job_outcome *outcome);

/* The job directories of a tree ("/compute/NAME"), malloc'd; -ENOENT-free: none is 0. */
int cn_job_list(cn_ns *ns, char ***dirs, size_t *n);

/* Hooks for a mount: jobs in writable namespaces run by themselves after each commit
 * that changes their spec or inputs (in a background thread of the mount). */
void cn_compute_mount_hooks(cn_compute *c, cn_mount_hooks *hooks);

/* The job worker's entry point: main() hands over argv when argv[1] is the worker's
 * marker, and returns what this returns. -1 when argv is not a worker's. */
int cn_compute_worker_main(int argc, char **argv);

#endif
