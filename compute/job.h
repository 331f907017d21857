/* compute/ private: the compute context and a job between its three steps (job.c), and
 * the mount scheduler (sched.c). */
#ifndef CAIRN_COMPUTE_JOB_H
#define CAIRN_COMPUTE_JOB_H

#include "compute/compute.h"
#include <pthread.h>

/* Input content IDs are expensive (every byte is read); the stored identity of an input
 * (cn_ns_content_id) tells when it cannot have changed. */
typedef struct id_cache_entry {
  uint8_t pk[32];
  char *path;
  uint8_t stored[32];
  uint8_t tree_id[32];
  struct id_cache_entry *next;
} id_cache_entry;

typedef struct sched_item sched_item;

struct cn_compute {
  char *home;
  cn_store *store;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  id_cache_entry *ids;
  /* the mount scheduler (sched.c) */
  pthread_t thread;
  int running, stopping;
  volatile int cancel;
  sched_item *pending;
};

typedef struct {
  cn_compute *c;
  char *job_dir;
  cn_job_spec spec;
  char **skip;          /* tree paths never copied as inputs: the job's own results */
  uint8_t *wasm;
  size_t wasm_len;
  uint8_t module_id[32], job_id[32], output_id[32];
  char work[4096];      /* $CAIRN_HOME/tmp/job-XXXXXX: in/, out/, log */
  unsigned cpu_seconds;
  uint64_t memory_bytes;
  int prepare_failed;   /* spec, program or an input could not be read: reason says */
  int up_to_date;       /* status already says done with this job ID */
  unsigned previous_runs, runs;
  int executed, ok, built;
  int log_fd;
  double run_seconds, build_seconds;
  char reason[256];
} compute_job;

int compute_job_prepare(cn_compute *c, cn_ns *ns, const char *job_dir, int force, compute_job **out);
int compute_job_execute(compute_job *j, cn_ns *ns, volatile int *cancel);
int compute_job_publish(compute_job *j, cn_ns *ns);
/* Writes a one-word status ("queued", "running") without touching the results. */
int compute_job_mark(cn_ns *ns, const char *job_dir, const char *state);
void compute_job_outcome(const compute_job *j, cn_job_outcome *o);
void compute_job_free(compute_job *j);

void compute_scheduler_stop(cn_compute *c);

#endif
