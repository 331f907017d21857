/*
 * Module builds: wasm2c (Debian's wabt) translates a module to C, the system C compiler
 * makes a shared object of it plus a few lines of glue, and the result is cached by the
 * module's SHA-256 so a module is compiled once per machine and runtime version.
 */
#include "compute/compute.h"
#include "compute/internal.h"
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Must match how compute/rt.c is built (compute/Makefile.am). */
#define MODULE_DEFINES "-DWASM_RT_MEMCHECK_SIGNAL_HANDLER=0", "-DWASM_RT_MAX_CALL_STACK_DEPTH=50000"

/* The imports a module may have: the deterministic WASI host in wasi.c. */
static const char *const wasi_functions[] = {
  "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get",
  "clock_time_get", "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get",
  "fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size",
  "fd_filestat_set_times", "fd_pread", "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite",
  "fd_read", "fd_readdir", "fd_renumber", "fd_seek", "fd_sync", "fd_tell", "fd_write",
  "path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link",
  "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
  "path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "sched_yield", "random_get",
  "sock_accept", "sock_recv", "sock_send", "sock_shutdown", NULL,
};

static const char glue[] =
  "#include \"job.h\"\n"
  "void cairn_wasm_start(struct Z_wasi_snapshot_preview1_instance_t *w,\n"
  "    void (*bind)(struct Z_wasi_snapshot_preview1_instance_t *, wasm_rt_memory_t *))\n"
  "{\n"
  "  static Z_job_instance_t instance;\n"
  "  Z_job_init_module();\n"
  "  Z_job_instantiate(&instance, w);\n"
  "  bind(w, Z_jobZ_memory(&instance));\n"
  "  Z_jobZ__start(&instance);\n"
  "}\n";

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void compute_rm_rf(const char *path)
{
  char *argv[] = {"rm", "-rf", "--", (char *)path, NULL};
  pid_t pid;
  extern char **environ;
  if (posix_spawnp(&pid, "rm", NULL, NULL, argv, environ) == 0)
    waitpid(pid, NULL, 0);
}

int compute_run_tool(char *const argv[], const char *what)
{
  char err_path[] = "/tmp/cairn-tool-XXXXXX";
  int efd = mkstemp(err_path);
  if (efd < 0)
    return cn_fail(errno, "cannot run %s: %s", argv[0], strerror(errno));
  unlink(err_path);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, efd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, efd, STDERR_FILENO);
  extern char **environ;
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    close(efd);
    return cn_fail(rc, "cannot run %s (%s): %s", argv[0], what, strerror(rc));
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    close(efd);
    return 0;
  }
  char msg[400] = {0};
  ssize_t n = pread(efd, msg, sizeof msg - 1, 0);
  close(efd);
  if (n < 0)
    n = 0;
  msg[n] = 0;
  for (char *p = msg; *p; p++)
    if (*p == '\n')
      *p = ' ';
  return cn_fail(EIO, "%s failed: %s", what, msg[0] ? msg : "no message");
}

static int write_file(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  const uint8_t *p = data;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      int e = errno;
      close(fd);
      return -e;
    }
    p += n;
    len -= (size_t)n;
  }
  return close(fd) < 0 ? -errno : 0;
}

static int known_wasi(const char *name)
{
  for (int i = 0; wasi_functions[i]; i++)
    if (!strcmp(wasi_functions[i], name))
      return 1;
  return 0;
}

/* Reads wasm2c's header: every import must be one we provide, and the module must export
 * _start and its memory (a WASI command). */
static int check_interface(const char *header)
{
  FILE *f = fopen(header, "r");
  if (!f)
    return cn_fail(EIO, "wasm2c wrote no header");
  char line[1024];
  int has_start = 0, has_memory = 0, rc = 0;
  while (fgets(line, sizeof line, f) && !rc) {
    char mod[256], name[256];
    if (sscanf(line, "/* import: '%255[^']' '%255[^']' */", mod, name) == 2) {
      if (strcmp(mod, "wasi_snapshot_preview1") || !known_wasi(name))
        rc = cn_fail(ENOTSUP, "the module imports %s.%s, which a cairn job cannot have (only WASI preview 1)",
                     mod, name);
    } else if (sscanf(line, "/* export: '%255[^']' */", name) == 1) {
      has_start |= !strcmp(name, "_start");
      has_memory |= !strcmp(name, "memory");
    }
  }
  fclose(f);
  if (!rc && (!has_start || !has_memory))
    rc = cn_fail(EINVAL, "the module is not a WASI command: it must export _start and memory");
  return rc;
}

int compute_build_module(const char *home, const uint8_t *wasm, size_t len, char *so_path,
                         size_t cap, int *built, double *seconds)
{
  uint8_t id[32];
  cn_sha256(wasm, len, id);
  char hex[65];
  cn_hex(id, 32, hex);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/cache", home);
  mkdir(dir, 0700);
  snprintf(dir, sizeof dir, "%s/cache/wasm", home);
  mkdir(dir, 0700);
  snprintf(so_path, cap, "%s/cache/wasm/r%u-%s.so", home, CN_COMPUTE_RUNTIME_VERSION, hex);
  *built = 0;
  *seconds = 0;
  if (access(so_path, R_OK) == 0)
    return 0;
  double started = now_s();
  char work[4096];
  snprintf(work, sizeof work, "%s/tmp/wasm-build-XXXXXX", home);
  if (!mkdtemp(work))
    return cn_fail(errno, "cannot make a build directory under %s/tmp: %s", home, strerror(errno));
  char module[4200], csrc[4200], header[4200], glue_src[4200], so_tmp[4200];
  snprintf(module, sizeof module, "%s/module.wasm", work);
  snprintf(csrc, sizeof csrc, "%s/job.c", work);
  snprintf(header, sizeof header, "%s/job.h", work);
  snprintf(glue_src, sizeof glue_src, "%s/glue.c", work);
  snprintf(so_tmp, sizeof so_tmp, "%s/job.so", work);
  int rc = write_file(module, wasm, len);
  if (rc < 0)
    rc = cn_fail(-rc, "cannot write %s: %s", module, strerror(-rc));
  if (!rc) {
    char *argv[] = {"wasm2c", "-n", "job", module, "-o", csrc, NULL};
    rc = compute_run_tool(argv, "translating the module (wasm2c)");
  }
  if (!rc)
    rc = check_interface(header);
  if (!rc && (rc = write_file(glue_src, glue, sizeof glue - 1)) < 0)
    rc = cn_fail(-rc, "cannot write %s", glue_src);
  if (!rc) {
    char include[4200];
    snprintf(include, sizeof include, "-I%s", work);
    /* -ffp-contract=off: a compiler that fuses a*b+c into one FMA would round differently
     * from WebAssembly, and the same job must give the same bytes on every machine */
    char *argv[] = {"cc", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-w", MODULE_DEFINES, include, "-o", so_tmp,
                    csrc, glue_src, NULL};
    rc = compute_run_tool(argv, "compiling the module (cc)");
  }
  if (!rc && rename(so_tmp, so_path) < 0)
    rc = cn_fail(errno, "cannot store the compiled module in %s: %s", so_path, strerror(errno));
  compute_rm_rf(work);
  if (!rc) {
    *built = 1;
    *seconds = now_s() - started;
  }
  return rc;
}
