/*
 * Jobs in a mount: after every commit of a writable namespace, one background thread
 * looks at the namespace's jobs on that commit's snapshot and runs those whose job ID no
 * longer matches their status (a new or changed spec, program or input). Runs happen on
 * the snapshot, outside the mount's lock; only marking a job queued or running and
 * writing its results go through cn_mount_edit. Jobs run one at a time, oldest commit
 * first; a commit that arrives meanwhile is looked at when the thread is free, so a
 * burst of commits costs one more look, not one run each.
 */
#include "compute/job.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sched_item {
  cn_nskey key;
  uint64_t seq;
  sched_item *next;
};

static void note_commit(void *ctx, const cn_nskey *key, uint64_t seq)
{
  cn_compute *c = ctx;
  pthread_mutex_lock(&c->lock);
  sched_item *it = c->pending;
  while (it && memcmp(it->key.pk, key->pk, 32))
    it = it->next;
  if (!it) {
    it = calloc(1, sizeof *it);
    it->key = *key;
    sched_item **tail = &c->pending;
    while (*tail)
      tail = &(*tail)->next;
    *tail = it;
  }
  if (seq > it->seq)
    it->seq = seq;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
}

typedef struct {
  const char *job_dir;
  const char *state;
  compute_job *job;
} edit;

static int mark_fn(cn_ns *ns, void *ctx)
{
  edit *e = ctx;
  return compute_job_mark(ns, e->job_dir, e->state);
}

static int publish_fn(cn_ns *ns, void *ctx)
{
  edit *e = ctx;
  return compute_job_publish(e->job, ns);
}

static void run_namespace(cn_compute *c, const cn_nskey *key, uint64_t seq)
{
  char id[CN_NSID_LEN + 1];
  cn_nsid(key->pk, id);
  cn_ns *snap;
  if (cn_ns_open_at(c->store, key, seq, &snap) < 0) {
    cn_log("jobs in %s: cannot open commit %llu: %s", id, (unsigned long long)seq, cn_err());
    return;
  }
  char **dirs;
  size_t n;
  cn_job_list(snap, &dirs, &n);
  compute_job **stale = calloc(n ? n : 1, sizeof *stale);
  size_t n_stale = 0;
  for (size_t i = 0; i < n; i++) {
    compute_job *j;
    if (compute_job_prepare(c, snap, dirs[i], 0, &j) < 0) {
      cn_log("job %s:%s: %s", id, dirs[i], cn_err());
      continue;
    }
    if (j->up_to_date)
      compute_job_free(j);
    else
      stale[n_stale++] = j;
  }
  for (size_t i = 0; i < n_stale; i++) {
    edit e = {.job_dir = stale[i]->job_dir, .state = "queued"};
    if (!stale[i]->prepare_failed && n_stale > 1)
      cn_mount_edit(key->pk, stale[i]->job_dir, mark_fn, &e);
  }
  for (size_t i = 0; i < n_stale && !c->stopping; i++) {
    compute_job *j = stale[i];
    edit e = {.job_dir = j->job_dir, .state = "running", .job = j};
    if (!j->prepare_failed) {
      cn_log("job %s:%s: running", id, j->job_dir);
      cn_mount_edit(key->pk, j->job_dir, mark_fn, &e);
      compute_job_execute(j, snap, &c->cancel);
    }
    if (c->stopping)
      break;
    cn_job_outcome o;
    compute_job_outcome(j, &o);
    if (o.ok)
      cn_log("job %s:%s: done %s in %.2f s", id, j->job_dir, o.job_id, o.run_seconds);
    else
      cn_log("job %s:%s: failed: %s", id, j->job_dir, o.reason);
    if (cn_mount_edit(key->pk, j->job_dir, publish_fn, &e) < 0)
      cn_log("job %s:%s: cannot write its results: %s", id, j->job_dir, cn_err());
  }
  for (size_t i = 0; i < n_stale; i++) {
    if (stale[i]->log_fd > 0)
      close(stale[i]->log_fd);
    compute_job_free(stale[i]);
  }
  free(stale);
  for (size_t i = 0; i < n; i++)
    free(dirs[i]);
  free(dirs);
  cn_ns_close(snap);
}

static void *scheduler(void *arg)
{
  cn_compute *c = arg;
  pthread_mutex_lock(&c->lock);
  while (!c->stopping) {
    if (!c->pending) {
      pthread_cond_wait(&c->wake, &c->lock);
      continue;
    }
    sched_item *it = c->pending;
    c->pending = it->next;
    pthread_mutex_unlock(&c->lock);
    run_namespace(c, &it->key, it->seq);
    cn_nskey_wipe(&it->key);
    free(it);
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

static void started(void *ctx, cn_store *store)
{
  cn_compute *c = ctx;
  c->store = store;
  c->stopping = 0;
  c->cancel = 0;
  if (pthread_create(&c->thread, NULL, scheduler, c) == 0)
    c->running = 1;
}

void compute_scheduler_stop(cn_compute *c)
{
  if (!c->running)
    return;
  pthread_mutex_lock(&c->lock);
  c->stopping = 1;
  c->cancel = 1;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  pthread_join(c->thread, NULL);
  c->running = 0;
  while (c->pending) {
    sched_item *it = c->pending;
    c->pending = it->next;
    free(it);
  }
}

static void stopping(void *ctx)
{
  compute_scheduler_stop(ctx);
}

void cn_compute_mount_hooks(cn_compute *c, cn_mount_hooks *hooks)
{
  hooks->ctx = c;
  hooks->started = started;
  hooks->committed = note_commit;
  hooks->stopping = stopping;
}
