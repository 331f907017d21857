/*
 * Sealing on every core. Sealing a chunk (convergent key, lz4, AEAD, chunk ID, staging
 * file) costs about six times as much as cutting it, and chunks are independent once cut,
 * so the thread that cuts hands them to a pool of workers, one per core, and helps them
 * when it has nothing left to cut. The pool starts on first use and lives as long as the
 * process.
 */
#include "fs/internal.h"
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define POOL_MAX_THREADS 16

static struct {
  pthread_mutex_t lock;
  pthread_cond_t work, done;
  fs_seal_job *queue, *queue_tail; /* jobs with tasks nobody has taken yet */
  size_t threads;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Takes the next untaken task of the queue's first job; called with P.lock held. */
static fs_seal_task *take_task(fs_seal_job **job_out)
{
  fs_seal_job *j = P.queue;
  if (!j)
    return NULL;
  fs_seal_task *t = &j->tasks[j->next++];
  if (j->next == j->n) {
    P.queue = j->queued_next;
    if (!P.queue)
      P.queue_tail = NULL;
  }
  *job_out = j;
  return t;
}

static void run_task(fs_seal_job *j, fs_seal_task *t)
{
  t->rc = fs_seal_store(j->ns, t->data, t->len, &t->ref, &t->sealed_len);
  pthread_mutex_lock(&P.lock);
  if (++j->done == j->n)
    pthread_cond_broadcast(&P.done);
  pthread_mutex_unlock(&P.lock);
}

static void *worker(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&P.lock);
  for (;;) {
    fs_seal_job *j;
    fs_seal_task *t = take_task(&j);
    if (!t) {
      pthread_cond_wait(&P.work, &P.lock);
      continue;
    }
    pthread_mutex_unlock(&P.lock);
    run_task(j, t);
    pthread_mutex_lock(&P.lock);
  }
  return NULL;
}

static void start_pool(void)
{
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = cores < 1 ? 1 : cores > POOL_MAX_THREADS ? POOL_MAX_THREADS : (int)cores;
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, worker, NULL) == 0) /* with none, fs_seal_wait does it all */
      P.threads++;
    pthread_attr_destroy(&attr);
  }
}

void fs_seal_submit(fs_seal_job *j)
{
  pthread_once(&pool_once, start_pool);
  j->next = j->done = 0;
  j->queued_next = NULL;
  if (j->n == 0)
    return;
  pthread_mutex_lock(&P.lock);
  size_t wake = j->n - 1; /* the submitter seals one task itself in fs_seal_wait */
  if (P.queue_tail) {
    P.queue_tail->queued_next = j;
    wake++; /* its turn comes after another job's tasks: a worker must come for it */
  } else {
    P.queue = j;
  }
  P.queue_tail = j;
  /* Waking a worker costs tens of µs on a VM (an IPI to an idle vCPU), more than sealing a
   * small file's one chunk: a copy of many small files woke every worker once per file. */
  for (size_t i = 0; i < wake && i < P.threads; i++)
    pthread_cond_signal(&P.work);
  pthread_mutex_unlock(&P.lock);
}

void fs_seal_wait(fs_seal_job *j)
{
  pthread_mutex_lock(&P.lock);
  while (j->done < j->n) {
    /* help with this job's own tasks rather than sit idle */
    if (j->next < j->n && P.queue == j) {
      fs_seal_job *same;
      fs_seal_task *t = take_task(&same);
      pthread_mutex_unlock(&P.lock);
      run_task(same, t);
      pthread_mutex_lock(&P.lock);
      continue;
    }
    pthread_cond_wait(&P.done, &P.lock);
  }
  pthread_mutex_unlock(&P.lock);
}
