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
  cn_node *node;        /* the mount's node, NULL offline or outside a mount */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  id_cache_entry *ids;
  /* the mount scheduler (sched.c) */
  pthread_t thread;
  int running, stopping;
  volatile int cancel;
  sched_item *pending;
  struct quorum_watch *watches; /* quorum jobs whose records are checked again and again */
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
  double run_seconds, build_seconds, stage_seconds;
  char reason[256];
  int has_stored_output;     /* status names an output (line "output <hex>") */
  uint8_t stored_output[32];
  char *quorum_report;       /* verification lines for status, when spec.quorum >= 2 */
  int reuse;                 /* this node has a stored result for the job ID */
  uint8_t reuse_output[32];
  cn_cap reuse_cap;
} compute_job;

int compute_job_prepare(cn_compute *c, cn_ns *ns, const char *job_dir, int force, compute_job **out);
int compute_job_execute(compute_job *j, cn_ns *ns, volatile int *cancel);
int compute_job_publish(compute_job *j, cn_ns *ns);
/* Writes a one-word status ("queued", "running") without touching the results. */
int compute_job_mark(cn_ns *ns, const char *job_dir, const char *state);
/* Replaces status with text (the verification lines change while results stay). */
int compute_job_set_status(cn_ns *ns, const char *job_dir, const char *text);
/* The status text publish writes for j. */
char *compute_job_status_text(const compute_job *j);
void compute_job_outcome(const compute_job *j, cn_job_outcome *o);
void compute_job_free(compute_job *j);

void compute_scheduler_stop(cn_compute *c);
/* Notes where a job's committed out/ is (results/<job id>), so the same job ID elsewhere
 * is answered from it without running. */
int compute_result_remember(cn_compute *c, cn_ns *ns, const char *job_dir, const uint8_t job_id[32],
                            const uint8_t output_id[32]);

/* Stores (and with a node, publishes now) this node's signed record of a result. */
int compute_record_publish(cn_store *s, cn_node *node, const uint8_t job_id[32], const uint8_t output_id[32]);
/* Collects the records of the nodes connected in the namespace's swarm and writes the
 * verification lines of a status (FORMAT §15.5) into report. 1 when at least quorum
 * nodes (this one included) agree on output_id, 0 when not, < 0 on error. */
int compute_quorum(cn_node *node, cn_store *s, const uint8_t nspk[32], const uint8_t job_id[32],
                   const uint8_t output_id[32], unsigned quorum, char *report, size_t cap);

#endif
