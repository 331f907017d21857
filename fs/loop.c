/* The mount's FUSE request loop.
 *
 * One thread at a time reads /dev/fuse (the reader), and it answers what it reads itself.
 * A serial caller such as cp then always wakes the same thread, and the scheduler keeps the
 * two together. libfuse's own loop lets every idle thread wait in read(); the kernel wakes
 * them in turn, so each request woke a different thread, often on another CPU, and a copy
 * of the documentation corpus took 1.5-2.2 s instead of 1.1-1.5 s.
 *
 * A request that may take long is not allowed to hold the others up: the reader hands
 * reading to an idle thread (or starts one, up to max_threads) before it answers a large
 * read or an fsync, when its handler calls cn_loop_yield, and when the watchdog sees it
 * answer one request for longer than WATCH_MS. */
#define FUSE_USE_VERSION 312
#include "fs/loop.h"
#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

enum {
  WATCH_MS = 10,             /* how long a request may hold reading before another thread reads */
  QUIET_LOOKS = 100,         /* looks without a request before the watchdog sleeps (1 s) */
  LARGE_READ = 64 * 1024,    /* reads from here on run beside other requests, as readahead does */
};

typedef struct worker {
  pthread_t thread;
  struct worker *next;
  struct fuse_buf buf;
  int in_read; /* blocked reading /dev/fuse: cancelled when the loop ends */
} worker;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t turn;  /* the reader's place is free */
  pthread_cond_t watch; /* a request began after a quiet spell, or the loop ends */
  sem_t finish;
  struct fuse_session *se;
  worker *workers;
  int n_workers, n_idle, max_workers;
  worker *reader;    /* reads requests now, or answers the one it read */
  int answering;     /* the reader is answering a request */
  uint64_t begun;    /* requests the readers began answering: the watchdog's clock */
  int watch_asleep;
  int ended, error;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .turn = PTHREAD_COND_INITIALIZER, .watch = PTHREAD_COND_INITIALIZER};

static _Thread_local worker *self;
static _Thread_local unsigned write_flags; /* of the FUSE_WRITE being answered */

static void *serve(void *arg);

static void start_worker(void)
{
  worker *w = calloc(1, sizeof *w);
  if (!w)
    return;
  if (pthread_create(&w->thread, NULL, serve, w) != 0) {
    free(w);
    return;
  }
  w->next = L.workers;
  L.workers = w;
  L.n_workers++;
}

/* Leaves the reader's place to another thread (caller holds mu). */
static void pass_reading(void)
{
  L.reader = NULL;
  L.answering = 0;
  if (L.n_idle)
    pthread_cond_signal(&L.turn);
  else if (L.n_workers < L.max_workers && !L.ended)
    start_worker();
}

static void end_loop(int error)
{
  if (!L.ended) {
    L.ended = 1;
    L.error = error;
    sem_post(&L.finish);
  }
  pthread_cond_broadcast(&L.turn);
  pthread_cond_broadcast(&L.watch);
}

/* Requests worth another thread's wake-up: a large read (readahead sends several at
 * once, and they may wait for peers) and an fsync (a commit). */
static int takes_long(const struct fuse_buf *buf)
{
  if (buf->flags & FUSE_BUF_IS_FD || buf->size < sizeof(struct fuse_in_header))
    return 1;
  const struct fuse_in_header *in = buf->mem;
  switch (in->opcode) {
  case FUSE_READ:
    return buf->size < sizeof *in + sizeof(struct fuse_read_in) ||
           ((const struct fuse_read_in *)(in + 1))->size >= LARGE_READ;
  case FUSE_FSYNC:
  case FUSE_FSYNCDIR:
    return 1;
  default:
    return 0;
  }
}

static unsigned request_write_flags(const struct fuse_buf *buf)
{
  const struct fuse_in_header *in = buf->mem;
  if (buf->flags & FUSE_BUF_IS_FD || buf->size < sizeof *in + sizeof(struct fuse_write_in) ||
      in->opcode != FUSE_WRITE)
    return 0;
  return ((const struct fuse_write_in *)(in + 1))->write_flags;
}

int cn_loop_write_kills_suidgid(void)
{
  return (write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
}

static void *serve(void *arg)
{
  worker *w = arg;
  self = w;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  pthread_mutex_lock(&L.mu);
  while (!L.ended) {
    if (L.reader && L.reader != w) {
      L.n_idle++;
      pthread_cond_wait(&L.turn, &L.mu);
      L.n_idle--;
      continue;
    }
    L.reader = w;
    w->in_read = 1;
    pthread_mutex_unlock(&L.mu);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    int res = fuse_session_receive_buf(L.se, &w->buf);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&L.mu);
    w->in_read = 0;
    if (res == -EINTR || res == -EAGAIN)
      continue;
    if (res <= 0 || fuse_session_exited(L.se)) {
      end_loop(res < 0 ? res : 0);
      break;
    }
    if (takes_long(&w->buf)) {
      pass_reading();
    } else {
      L.answering = 1;
      L.begun++;
      if (L.watch_asleep) {
        L.watch_asleep = 0;
        pthread_cond_signal(&L.watch);
      }
    }
    pthread_mutex_unlock(&L.mu);
    write_flags = request_write_flags(&w->buf);
    fuse_session_process_buf(L.se, &w->buf);
    write_flags = 0;
    pthread_mutex_lock(&L.mu);
    if (L.reader == w)
      L.answering = 0;
  }
  if (L.reader == w)
    L.reader = NULL;
  pthread_mutex_unlock(&L.mu);
  return NULL;
}

static void deadline_after_ms(struct timespec *ts, long ms)
{
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_nsec += ms * 1000000L;
  ts->tv_sec += ts->tv_nsec / 1000000000L;
  ts->tv_nsec %= 1000000000L;
}

/* Looks at the reader every WATCH_MS while requests come, once a second when none do. */
static void *watch_reader(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&L.mu);
  uint64_t seen = L.begun;
  int quiet = 0;
  while (!L.ended) {
    struct timespec ts;
    if (quiet >= QUIET_LOOKS) {
      L.watch_asleep = 1;
      deadline_after_ms(&ts, 1000);
      pthread_cond_timedwait(&L.watch, &L.mu, &ts);
      if (fuse_session_exited(L.se)) /* a signal that no reader saw */
        end_loop(0);
      if (L.watch_asleep) /* a second without a request */
        continue;
      quiet = 0;
      seen = L.begun;
      continue;
    }
    deadline_after_ms(&ts, WATCH_MS);
    pthread_cond_timedwait(&L.watch, &L.mu, &ts);
    if (fuse_session_exited(L.se))
      end_loop(0);
    else if (L.answering && L.begun == seen)
      pass_reading(); /* one request since the last look: let others in */
    quiet = L.begun == seen && !L.answering ? quiet + 1 : 0;
    seen = L.begun;
  }
  pthread_mutex_unlock(&L.mu);
  return NULL;
}

void cn_loop_yield(void)
{
  if (!self)
    return;
  pthread_mutex_lock(&L.mu);
  if (L.reader == self)
    pass_reading();
  pthread_mutex_unlock(&L.mu);
}

int cn_loop_run(struct fuse_session *se, int max_threads)
{
  L.se = se;
  L.max_workers = max_threads > 0 ? max_threads : 1;
  L.ended = L.error = 0;
  sem_init(&L.finish, 0, 0);
  pthread_t watchdog;
  if (pthread_create(&watchdog, NULL, watch_reader, NULL) != 0) {
    sem_destroy(&L.finish);
    return -EAGAIN;
  }
  pthread_mutex_lock(&L.mu);
  start_worker();
  if (!L.n_workers)
    end_loop(-EAGAIN);
  while (!L.ended) {
    pthread_mutex_unlock(&L.mu);
    sem_wait(&L.finish); /* a signal interrupts it: fuse's handler has exited the session */
    pthread_mutex_lock(&L.mu);
    if (fuse_session_exited(se))
      end_loop(0);
  }
  for (worker *w = L.workers; w; w = w->next)
    if (w->in_read)
      pthread_cancel(w->thread);
  worker *all = L.workers; /* no thread starts once the loop has ended */
  L.workers = NULL;
  pthread_mutex_unlock(&L.mu);
  pthread_join(watchdog, NULL);
  while (all) {
    worker *w = all;
    pthread_join(w->thread, NULL);
    all = w->next;
    free(w->buf.mem);
    free(w);
  }
  L.n_workers = L.n_idle = 0;
  L.reader = NULL;
  sem_destroy(&L.finish);
  return L.error;
}
