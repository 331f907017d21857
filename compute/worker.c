/*
 * The job worker: a separate process (this same executable, re-run with a hidden first
 * argument) that loads one compiled module and runs it, so that a crash, a trap or an
 * endless loop ends the worker and never the mount.
 *
 * Limits: CPU time (RLIMIT_CPU: the kernel kills the worker), linear memory (the runtime
 * refuses to grow past the limit), call depth (counted by the generated code; the job
 * thread's stack is sized for it), output file size (RLIMIT_FSIZE), open files
 * (RLIMIT_NOFILE) and log size. The parent adds a wall-clock limit.
 *
 * Parent → worker: argv, stdout/stderr = the job's log, fd 3 = where the worker writes
 * its one-line verdict ("exit N" or "trap REASON"); a worker that dies without a verdict
 * is judged by how it died.
 */
#include "compute/compute.h"
#include "compute/internal.h"
#include "compute/runtime.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKER_ARG "__wasm-worker"
#define VERDICT_FD 3
/* each wasm call level costs a few hundred bytes of native stack at most in wasm2c's
 * output; this leaves a wide margin for WASM_RT_MAX_CALL_STACK_DEPTH (build.c) */
#define JOB_STACK_BYTES (512u << 20)
#define LOG_LIMIT_BYTES (4u << 20)
#define OUTPUT_FILE_LIMIT (64ull << 30)
#define OPEN_FILES_LIMIT 512

extern char **environ;

/* ---- worker side ---- */

typedef void (*bind_fn)(wasi_host *, wasm_rt_memory_t *);
typedef void (*start_fn)(wasi_host *, bind_fn);

typedef struct {
  start_fn start;
  wasi_host *wasi;
  char verdict[256];
} job_thread;

static void verdict(const char *line)
{
  if (write(VERDICT_FD, line, strlen(line)) < 0) {
  }
}

static void on_fault(int sig)
{
  /* only a native stack overflow or a bug in the runtime gets here: generated code checks
   * every memory access itself */
  char line[96];
  snprintf(line, sizeof line, "trap native fault (signal %d)\n", sig);
  verdict(line);
  _exit(70);
}

static void *run_job(void *arg)
{
  job_thread *t = arg;
  jmp_buf trap, leave;
  int code;
  rt_set_trap_target(&trap);
  wasi_set_exit_target(t->wasi, &leave);
  if ((code = setjmp(trap)) != 0) {
    snprintf(t->verdict, sizeof t->verdict, "trap %s\n",
             wasm_rt_strerror((wasm_rt_trap_t)(code - RT_JUMP_TRAP_BASE)));
    return NULL;
  }
  if (setjmp(leave) != 0) {
    snprintf(t->verdict, sizeof t->verdict, "exit %u\n", wasi_exit_code(t->wasi));
    return NULL;
  }
  wasm_rt_init();
  t->start(t->wasi, wasi_bind_memory);
  snprintf(t->verdict, sizeof t->verdict, "exit 0\n"); /* _start returned */
  return NULL;
}

static void set_limit(int resource, rlim_t soft, rlim_t hard)
{
  struct rlimit rl = {soft, hard};
  setrlimit(resource, &rl);
}

static int worker_main(int argc, char **argv)
{
  /* argv: exe WORKER_ARG so in out seedhex memory cpu -- prog args... */
  if (argc < 10 || strcmp(argv[8], "--")) {
    verdict("error bad worker arguments\n");
    return 70;
  }
  const char *so = argv[2], *in = argv[3], *out = argv[4], *seed_hex = argv[5];
  uint64_t memory = strtoull(argv[6], NULL, 10);
  unsigned long cpu = strtoul(argv[7], NULL, 10);
  /* nothing from the parent but stdio and the verdict channel */
  for (int fd = VERDICT_FD + 1; fd < 1024; fd++)
    close(fd);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  set_limit(RLIMIT_CPU, cpu, cpu + 2);
  set_limit(RLIMIT_CORE, 0, 0);
  set_limit(RLIMIT_FSIZE, OUTPUT_FILE_LIMIT, OUTPUT_FILE_LIMIT);
  set_limit(RLIMIT_NOFILE, OPEN_FILES_LIMIT, OPEN_FILES_LIMIT);
  signal(SIGXFSZ, SIG_IGN); /* an output past the limit is EFBIG to the module */
  static uint8_t altstack[64 * 1024];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
  sigaltstack(&ss, NULL);
  struct sigaction sa = {0};
  sa.sa_handler = on_fault;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGILL, &sa, NULL);
  sigaction(SIGFPE, &sa, NULL);

  uint8_t seed[32];
  for (int i = 0; i < 32; i++) {
    unsigned v;
    if (strlen(seed_hex) != 64 || sscanf(seed_hex + 2 * i, "%2x", &v) != 1) {
      verdict("error bad seed\n");
      return 70;
    }
    seed[i] = (uint8_t)v;
  }
  void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    char line[512];
    snprintf(line, sizeof line, "error cannot load the compiled module: %s\n", dlerror());
    verdict(line);
    return 70;
  }
  start_fn start = (start_fn)dlsym(lib, "cairn_wasm_start");
  int in_fd = open(in, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int out_fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (!start || in_fd < 0 || out_fd < 0) {
    verdict("error cannot prepare the job's directories or entry point\n");
    return 70;
  }
  rt_set_memory_limit(memory);
  wasi_config cfg = {.argv = argv + 9, .argc = argc - 9, .in_fd = in_fd, .out_fd = out_fd,
                     .log_fd = STDOUT_FILENO, .log_limit = LOG_LIMIT_BYTES};
  memcpy(cfg.seed, seed, 32);
  job_thread t = {.start = start, .wasi = wasi_new(&cfg)};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, JOB_STACK_BYTES);
  pthread_t th;
  if (!t.wasi || pthread_create(&th, &attr, run_job, &t) != 0) {
    verdict("error cannot start the job thread\n");
    return 70;
  }
  pthread_join(th, NULL);
  verdict(t.verdict);
  return 0;
}

int cn_compute_worker_main(int argc, char **argv)
{
  if (argc < 2 || strcmp(argv[1], WORKER_ARG))
    return -1;
  return worker_main(argc, argv);
}

/* ---- parent side ---- */

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int compute_run_worker(const worker_request *req, worker_result *res)
{
  memset(res, 0, sizeof *res);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return cn_fail(EIO, "cannot find this program to start a job worker: %s", strerror(errno));
  exe[n] = 0;
  char verdict_path[4096];
  snprintf(verdict_path, sizeof verdict_path, "%s/verdict", req->work_dir);
  int vfd = open(verdict_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (vfd < 0 || nullfd < 0) {
    if (vfd >= 0)
      close(vfd);
    return cn_fail(errno, "cannot prepare the job worker: %s", strerror(errno));
  }
  char seed_hex[65], memory[32], cpu[32];
  for (int i = 0; i < 32; i++)
    snprintf(seed_hex + 2 * i, 3, "%02x", req->seed[i]);
  snprintf(memory, sizeof memory, "%llu", (unsigned long long)req->memory_bytes);
  snprintf(cpu, sizeof cpu, "%u", req->cpu_seconds);
  size_t argc = 9 + (size_t)req->argc;
  char **argv = calloc(argc + 1, sizeof *argv);
  const char *fixed[9] = {exe, WORKER_ARG, req->module_so, req->in_dir, req->out_dir, seed_hex, memory, cpu, "--"};
  for (int i = 0; i < 9; i++)
    argv[i] = (char *)fixed[i];
  for (int i = 0; i < req->argc; i++)
    argv[9 + i] = req->argv[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, nullfd, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, req->log_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, req->log_fd, STDERR_FILENO);
  posix_spawn_file_actions_adddup2(&fa, vfd, VERDICT_FD);
  char *envp[] = {"PATH=/usr/bin:/bin", "ASAN_OPTIONS=detect_leaks=0", NULL};
  pid_t pid;
  double started = now_s();
  int rc = posix_spawn(&pid, exe, &fa, NULL, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  free(argv);
  close(nullfd);
  if (rc != 0) {
    close(vfd);
    return cn_fail(rc, "cannot start a job worker: %s", strerror(rc));
  }
  /* wall-clock limit: a job blocked rather than computing still ends */
  double deadline = started + 2.0 * req->cpu_seconds + 30;
  int status = 0;
  int timed_out = 0;
  for (;;) {
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid)
      break;
    if (got < 0 && errno != EINTR) {
      status = 0;
      break;
    }
    if (now_s() > deadline && !timed_out) {
      kill(pid, SIGKILL);
      timed_out = 1;
    }
    if (req->cancel && *req->cancel) {
      kill(pid, SIGKILL);
    }
    struct timespec nap = {0, 20 * 1000000};
    nanosleep(&nap, NULL);
  }
  res->seconds = now_s() - started;
  char line[200] = {0};
  ssize_t got = pread(vfd, line, sizeof line - 1, 0);
  close(vfd);
  unlink(verdict_path);
  if (got > 0) {
    line[got] = 0;
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = 0;
  } else {
    line[0] = 0;
  }
  unsigned code;
  if (sscanf(line, "exit %u", &code) == 1) {
    res->exited = 1;
    res->exit_code = (int)code;
    if (code)
      snprintf(res->reason, sizeof res->reason, "exit status %u", code);
  } else if (!strncmp(line, "trap ", 5)) {
    snprintf(res->reason, sizeof res->reason, "trap: %s", line + 5);
  } else if (!strncmp(line, "error ", 6)) {
    snprintf(res->reason, sizeof res->reason, "%s", line + 6);
  } else if (timed_out) {
    snprintf(res->reason, sizeof res->reason, "wall-clock limit (%.0f s) exceeded", 2.0 * req->cpu_seconds + 30);
  } else if (req->cancel && *req->cancel) {
    snprintf(res->reason, sizeof res->reason, "cancelled");
  } else if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGXCPU || WTERMSIG(status) == SIGKILL)) {
    snprintf(res->reason, sizeof res->reason, "CPU time limit (%u s) exceeded", req->cpu_seconds);
  } else if (WIFSIGNALED(status)) {
    snprintf(res->reason, sizeof res->reason, "worker killed by signal %d", WTERMSIG(status));
  } else {
    snprintf(res->reason, sizeof res->reason, "worker ended without a verdict (status %d)",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return 0;
}
