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
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A quorum job whose result stands: other nodes' records are fetched again every
 * QUORUM_EVERY_S until it is verified, and status follows what they say. */
#define QUORUM_EVERY_S 5
typedef struct quorum_watch {
  cn_nskey key;
  char *job_dir;
  uint8_t job_id[32], output_id[32];
  unsigned quorum;
  char *status;   /* what status says now */
  struct quorum_watch *next;
} quorum_watch;

struct sched_item {
  cn_nskey key;
  uint64_t seq;
  sched_item *next;
};

static void note_commit(void *ctx, const cn_nskey *key, uint64_t seq)
{
  cn_compute *c = ctx;
  pthread_mutex_lock(&c->lock);
  if (!c->running || c->stopping) { /* the mount's last commits, after the jobs stopped */
    pthread_mutex_unlock(&c->lock);
    return;
  }
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

static int remember_fn(cn_ns *ns, void *ctx)
{
  edit *e = ctx;
  return compute_result_remember(e->job->c, ns, e->job_dir, e->job->job_id, e->job->output_id);
}

static int status_fn(cn_ns *ns, void *ctx)
{
  edit *e = ctx;
  return compute_job_set_status(ns, e->job_dir, e->state);
}

static void watch(cn_compute *c, const cn_nskey *key, const compute_job *j, const uint8_t output_id[32])
{
  pthread_mutex_lock(&c->lock);
  quorum_watch *w = c->watches;
  while (w && (memcmp(w->key.pk, key->pk, 32) || strcmp(w->job_dir, j->job_dir)))
    w = w->next;
  if (!w) {
    w = calloc(1, sizeof *w);
    w->key = *key;
    w->job_dir = strdup(j->job_dir);
    w->next = c->watches;
    c->watches = w;
  }
  if (memcmp(w->job_id, j->job_id, 32) || memcmp(w->output_id, output_id, 32) || w->quorum != j->spec.quorum) {
    memcpy(w->job_id, j->job_id, 32);
    memcpy(w->output_id, output_id, 32);
    w->quorum = j->spec.quorum;
    free(w->status); /* a new result: its status is written afresh */
    w->status = NULL;
  }
  pthread_mutex_unlock(&c->lock);
}

static void unwatch(quorum_watch *w)
{
  cn_nskey_wipe(&w->key);
  free(w->job_dir);
  free(w->status);
  free(w);
}

/* Asks for the records again and rewrites status when what they say has changed. */
static void check_watches(cn_compute *c)
{
  for (quorum_watch *w = c->watches; w && !c->stopping; w = w->next) {
    char report[8192], id[65], oid[65], *text;
    int verified = compute_quorum(c->node, c->store, w->key.pk, w->job_id, w->output_id, w->quorum, report,
                                  sizeof report);
    if (verified < 0)
      continue;
    cn_hex(w->job_id, 32, id);
    cn_hex(w->output_id, 32, oid);
    if (asprintf(&text, "done %s\noutput %s\n%s", id, oid, report) < 0)
      abort();
    if (!w->status || strcmp(w->status, text)) {
      edit e = {.job_dir = w->job_dir, .state = text};
      if (cn_mount_edit(w->key.pk, w->job_dir, status_fn, &e) == 0) {
        free(w->status);
        w->status = text;
        text = NULL;
      }
    }
    free(text);
  }
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
    if (j->up_to_date && j->spec.quorum >= 2 && j->has_stored_output)
      watch(c, key, j, j->stored_output);
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
    if (j->ok && j->spec.quorum >= 2) {
      char report[8192];
      compute_quorum(c->node, c->store, key->pk, j->job_id, j->output_id, j->spec.quorum, report, sizeof report);
      j->quorum_report = strdup(report);
    }
    if (o.ok)
      cn_log("job %s:%s: done %s in %.2f s", id, j->job_dir, o.job_id, o.run_seconds);
    else
      cn_log("job %s:%s: failed: %s", id, j->job_dir, o.reason);
    if (cn_mount_edit(key->pk, j->job_dir, publish_fn, &e) < 0) {
      cn_log("job %s:%s: cannot write its results: %s", id, j->job_dir, cn_err());
    } else if (j->ok) {
      if (cn_mount_edit(key->pk, j->job_dir, remember_fn, &e) < 0)
        cn_log("job %s:%s: cannot remember its result: %s", id, j->job_dir, cn_err());
      compute_record_publish(c->store, c->node, j->job_id, j->output_id);
      if (j->spec.quorum >= 2)
        watch(c, key, j, j->output_id);
    }
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
  time_t next_check = time(NULL) + QUORUM_EVERY_S;
  while (!c->stopping) {
    /* on a clock of its own: commits (ours included) must not starve the checks */
    if (time(NULL) >= next_check) {
      next_check = time(NULL) + QUORUM_EVERY_S;
      if (c->watches && c->node) {
        pthread_mutex_unlock(&c->lock);
        check_watches(c); /* the list only grows from this thread */
        pthread_mutex_lock(&c->lock);
        continue;
      }
    }
    if (!c->pending) {
      struct timespec until = {next_check, 0};
      pthread_cond_timedwait(&c->wake, &c->lock, &until);
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

static void started(void *ctx, cn_store *store, cn_node *node)
{
  cn_compute *c = ctx;
  c->store = store;
  c->node = node;
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
  while (c->watches) {
    quorum_watch *w = c->watches;
    c->watches = w->next;
    unwatch(w);
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
