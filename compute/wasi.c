/*
 * A deterministic WASI preview 1 host for job modules (docs/COMPUTE.md "The sandbox").
 *
 * What a module can see is a function of the job alone, never of the host or the run:
 *   - preopened /in (read-only) and /out (read-write); every path is resolved beneath its
 *     directory by the kernel (openat2 RESOLVE_BENEATH), so "..", absolute paths and
 *     symlinks that leave the tree fail; no other path exists;
 *   - directory listings in byte order, inode numbers made from paths, all timestamps the
 *     fixed epoch, directory sizes 0;
 *   - clocks start at the fixed epoch and advance 1 µs per read (sleeps advance them too);
 *   - random_get is a ChaCha20 stream keyed by the job's seed;
 *   - args as given, no environment, stdin empty, stdout and stderr to the job's log;
 *   - sockets, hard links and signals are refused with a WASI error.
 * Functions return WASI errno values; a bad pointer from the module is EFAULT, never a
 * host access outside linear memory.
 */
#include "compute/runtime.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* WASI errno values (wasi_snapshot_preview1) */
enum {
  W_SUCCESS = 0, W_2BIG = 1, W_ACCES = 2, W_AGAIN = 6, W_BADF = 8, W_BUSY = 10, W_EXIST = 20,
  W_FAULT = 21, W_FBIG = 22, W_INTR = 27, W_INVAL = 28, W_IO = 29, W_ISDIR = 31, W_LOOP = 32,
  W_MFILE = 33, W_MLINK = 34, W_NAMETOOLONG = 37, W_NFILE = 41, W_NOENT = 44, W_NOMEM = 48,
  W_NOSPC = 51, W_NOSYS = 52, W_NOTDIR = 54, W_NOTEMPTY = 55, W_NOTSUP = 58, W_NXIO = 60,
  W_OVERFLOW = 61, W_PERM = 63, W_PIPE = 64, W_RANGE = 68, W_ROFS = 69, W_SPIPE = 70,
  W_XDEV = 75, W_NOTCAPABLE = 76,
};
enum { FT_UNKNOWN = 0, FT_CHAR = 2, FT_DIR = 3, FT_FILE = 4, FT_SYMLINK = 7 };
#define OFLAGS_CREAT 1
#define OFLAGS_DIRECTORY 2
#define OFLAGS_EXCL 4
#define OFLAGS_TRUNC 8
#define FDFLAGS_APPEND 1
#define LOOKUP_FOLLOW 1
#define RIGHT_FD_READ (1ull << 1)
#define RIGHT_FD_SEEK (1ull << 2)
#define RIGHT_FD_WRITE (1ull << 6)
#define RIGHT_FD_ALLOCATE (1ull << 8)
#define RIGHT_FD_READDIR (1ull << 14)
#define RIGHT_FD_FILESTAT_SET_SIZE (1ull << 22)
#define RIGHT_FD_TELL (1ull << 5)
#define RIGHTS_ALL 0x1fffffffull
#define WRITE_RIGHTS (RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE)

/* 2000-01-01T00:00:00Z: every timestamp and the start of every clock */
#define FIXED_EPOCH_NS 946684800000000000ull
#define CLOCK_STEP_NS 1000ull
#define MAX_FDS 1024

enum fd_kind { K_FREE, K_STDIN, K_LOG, K_FILE, K_DIR };

typedef struct {
  enum fd_kind kind;
  int host;       /* -1 for stdin */
  int writable;   /* lives under /out */
  int append;
  int preopen;    /* /in or /out itself */
  char *vpath;    /* "/in/a/b": what the module sees, for inode numbers */
  char **names;   /* directory listing, sorted, from the last readdir at cookie 0 */
  uint8_t *types;
  size_t n_names;
} wfd;

struct Z_wasi_snapshot_preview1_instance_t {
  wasm_rt_memory_t *mem;
  wfd fds[MAX_FDS];
  char **argv;
  int argc;
  int log_fd;
  uint64_t log_limit, log_written;
  int log_truncated;
  uint64_t clock_ns;
  uint8_t seed[32];
  uint8_t rand_block[64];
  unsigned rand_used;
  uint32_t rand_counter;
  jmp_buf *exit_target;
  uint32_t exit_code;
};

/* ---- linear memory access ---- */

static int mem_ok(wasi_host *w, uint32_t ptr, uint64_t len)
{
  return w->mem && (uint64_t)ptr + len <= w->mem->size;
}

static uint8_t *at(wasi_host *w, uint32_t ptr)
{
  return w->mem->data + ptr;
}

static uint32_t rd32(wasi_host *w, uint32_t ptr)
{
  uint32_t v;
  memcpy(&v, at(w, ptr), 4);
  return v;
}

static void wr8(wasi_host *w, uint32_t ptr, uint8_t v)
{
  *at(w, ptr) = v;
}

static void wr16(wasi_host *w, uint32_t ptr, uint16_t v)
{
  memcpy(at(w, ptr), &v, 2);
}

static void wr32(wasi_host *w, uint32_t ptr, uint32_t v)
{
  memcpy(at(w, ptr), &v, 4);
}

static void wr64(wasi_host *w, uint32_t ptr, uint64_t v)
{
  memcpy(at(w, ptr), &v, 8);
}

static uint32_t werr(int e)
{
  switch (e) {
  case 0: return W_SUCCESS;
  case E2BIG: return W_2BIG;
  case EACCES: return W_ACCES;
  case EAGAIN: return W_AGAIN;
  case EBADF: return W_BADF;
  case EBUSY: return W_BUSY;
  case EEXIST: return W_EXIST;
  case EFAULT: return W_FAULT;
  case EFBIG: return W_FBIG;
  case EINTR: return W_INTR;
  case EINVAL: return W_INVAL;
  case EISDIR: return W_ISDIR;
  case ELOOP: return W_LOOP;
  case EMFILE: return W_MFILE;
  case EMLINK: return W_MLINK;
  case ENAMETOOLONG: return W_NAMETOOLONG;
  case ENFILE: return W_NFILE;
  case ENOENT: return W_NOENT;
  case ENOMEM: return W_NOMEM;
  case ENOSPC: case EDQUOT: return W_NOSPC;
  case ENOSYS: return W_NOSYS;
  case ENOTDIR: return W_NOTDIR;
  case ENOTEMPTY: return W_NOTEMPTY;
  case ENOTSUP: return W_NOTSUP;
  case ENXIO: return W_NXIO;
  case EOVERFLOW: return W_OVERFLOW;
  case EPERM: return W_PERM;
  case EPIPE: return W_PIPE;
  case ERANGE: return W_RANGE;
  case EROFS: return W_ROFS;
  case ESPIPE: return W_SPIPE;
  case EXDEV: return W_NOTCAPABLE; /* a path that tried to leave its tree */
  default: return W_IO;
  }
}

/* ---- paths ---- */

static uint64_t path_ino(const char *vpath)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a: stable, and no host inode leaks */
  for (const unsigned char *p = (const unsigned char *)vpath; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  return h ? h : 1;
}

/* base + "/" + rel, with "." and ".." folded lexically (inode numbers only). */
static char *vpath_join(const char *base, const char *rel)
{
  size_t cap = strlen(base) + strlen(rel) + 2;
  char *out = malloc(cap);
  if (!out)
    return NULL;
  strcpy(out, base);
  size_t len = strlen(out);
  const char *p = rel;
  while (*p) {
    while (*p == '/')
      p++;
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 0)
      break;
    if (n == 1 && p[0] == '.') {
    } else if (n == 2 && p[0] == '.' && p[1] == '.') {
      char *slash = strrchr(out, '/');
      if (slash && slash != out)
        *slash = 0;
      len = strlen(out);
    } else {
      out[len++] = '/';
      memcpy(out + len, p, n);
      len += n;
      out[len] = 0;
    }
    p += n;
  }
  return out;
}

static int open_beneath(int dirfd, const char *path, int flags, mode_t mode, int follow)
{
  struct open_how how = {0};
  how.flags = (uint64_t)(flags | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return (int)syscall(SYS_openat2, dirfd, path[0] ? path : ".", &how, sizeof how);
}

/* Copies a module string (not NUL-terminated) out of linear memory. */
static uint32_t get_path(wasi_host *w, uint32_t ptr, uint32_t len, char **out)
{
  if (!mem_ok(w, ptr, len))
    return W_FAULT;
  if (len > 4096)
    return W_NAMETOOLONG;
  if (memchr(at(w, ptr), 0, len))
    return W_INVAL;
  *out = malloc(len + 1);
  if (!*out)
    return W_NOMEM;
  memcpy(*out, at(w, ptr), len);
  (*out)[len] = 0;
  return W_SUCCESS;
}

static wfd *get_fd(wasi_host *w, uint32_t fd)
{
  return fd < MAX_FDS && w->fds[fd].kind != K_FREE ? &w->fds[fd] : NULL;
}

static wfd *get_dir(wasi_host *w, uint32_t fd, uint32_t *err)
{
  wfd *f = get_fd(w, fd);
  *err = !f ? W_BADF : f->kind != K_DIR ? W_NOTDIR : W_SUCCESS;
  return *err ? NULL : f;
}

/* Opens the directory holding path's last component, for calls that act on a name
 * (mkdir, unlink, rename, symlink, readlink). *name points into path. */
static int open_parent(wfd *dir, char *path, char **name)
{
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/')
    path[--len] = 0;
  char *slash = strrchr(path, '/');
  if (!slash) {
    *name = path;
    return dup(dir->host);
  }
  *name = slash + 1;
  if (slash == path)
    return errno = EXDEV, -1; /* absolute */
  *slash = 0;
  int fd = open_beneath(dir->host, path, O_PATH | O_DIRECTORY, 0, 1);
  *slash = '/';
  return fd;
}

static int bad_name(const char *name)
{
  return !name[0] || !strcmp(name, ".") || !strcmp(name, "..");
}

/* ---- file descriptors ---- */

static int new_fd(wasi_host *w)
{
  for (int i = 3; i < MAX_FDS; i++)
    if (w->fds[i].kind == K_FREE)
      return i;
  return -1;
}

static void free_listing(wfd *f)
{
  for (size_t i = 0; i < f->n_names; i++)
    free(f->names[i]);
  free(f->names);
  free(f->types);
  f->names = NULL;
  f->types = NULL;
  f->n_names = 0;
}

static void release_fd(wfd *f)
{
  if ((f->kind == K_FILE || f->kind == K_DIR) && f->host >= 0)
    close(f->host);
  free(f->vpath);
  free_listing(f);
  memset(f, 0, sizeof *f);
  f->kind = K_FREE;
}

static uint8_t filetype_of(mode_t m)
{
  return S_ISDIR(m) ? FT_DIR : S_ISREG(m) ? FT_FILE : S_ISLNK(m) ? FT_SYMLINK : FT_UNKNOWN;
}

/* The filestat a module sees: type, size and link count are real; the rest is fixed. */
static void put_filestat(wasi_host *w, uint32_t ptr, const struct stat *st, const char *vpath)
{
  memset(at(w, ptr), 0, 64);
  wr64(w, ptr + 8, path_ino(vpath));
  wr8(w, ptr + 16, filetype_of(st->st_mode));
  wr64(w, ptr + 24, S_ISDIR(st->st_mode) ? 1 : (uint64_t)st->st_nlink);
  wr64(w, ptr + 32, S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size);
  wr64(w, ptr + 40, FIXED_EPOCH_NS);
  wr64(w, ptr + 48, FIXED_EPOCH_NS);
  wr64(w, ptr + 56, FIXED_EPOCH_NS);
}

wasi_host *wasi_new(const wasi_config *cfg)
{
  wasi_host *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->argv = cfg->argv;
  w->argc = cfg->argc;
  w->log_fd = cfg->log_fd;
  w->log_limit = cfg->log_limit;
  w->clock_ns = FIXED_EPOCH_NS;
  memcpy(w->seed, cfg->seed, 32);
  w->rand_used = sizeof w->rand_block;
  w->fds[0] = (wfd){.kind = K_STDIN, .host = -1};
  w->fds[1] = (wfd){.kind = K_LOG, .host = cfg->log_fd};
  w->fds[2] = (wfd){.kind = K_LOG, .host = cfg->log_fd};
  w->fds[3] = (wfd){.kind = K_DIR, .host = cfg->in_fd, .preopen = 1, .vpath = strdup("/in")};
  w->fds[4] = (wfd){.kind = K_DIR, .host = cfg->out_fd, .writable = 1, .preopen = 1,
                    .vpath = strdup("/out")};
  return w;
}

void wasi_bind_memory(wasi_host *w, wasm_rt_memory_t *mem)
{
  w->mem = mem;
}

void wasi_set_exit_target(wasi_host *w, jmp_buf *target)
{
  w->exit_target = target;
}

uint32_t wasi_exit_code(const wasi_host *w)
{
  return w->exit_code;
}

#define WASI(name, ...) u32 Z_wasi_snapshot_preview1Z_##name(wasi_host *w, ##__VA_ARGS__)
typedef uint32_t u32;
typedef uint64_t u64;

/* ---- args, environment, clocks, randomness ---- */

WASI(args_sizes_get, u32 argc_ptr, u32 size_ptr)
{
  if (!mem_ok(w, argc_ptr, 4) || !mem_ok(w, size_ptr, 4))
    return W_FAULT;
  uint32_t size = 0;
  for (int i = 0; i < w->argc; i++)
    size += (uint32_t)strlen(w->argv[i]) + 1;
  wr32(w, argc_ptr, (uint32_t)w->argc);
  wr32(w, size_ptr, size);
  return W_SUCCESS;
}

WASI(args_get, u32 argv_ptr, u32 buf_ptr)
{
  uint32_t size = 0;
  for (int i = 0; i < w->argc; i++)
    size += (uint32_t)strlen(w->argv[i]) + 1;
  if (!mem_ok(w, argv_ptr, 4ull * (uint32_t)w->argc) || !mem_ok(w, buf_ptr, size))
    return W_FAULT;
  for (int i = 0; i < w->argc; i++) {
    size_t n = strlen(w->argv[i]) + 1;
    wr32(w, argv_ptr + 4 * (uint32_t)i, buf_ptr);
    memcpy(at(w, buf_ptr), w->argv[i], n);
    buf_ptr += (uint32_t)n;
  }
  return W_SUCCESS;
}

WASI(environ_sizes_get, u32 count_ptr, u32 size_ptr)
{
  if (!mem_ok(w, count_ptr, 4) || !mem_ok(w, size_ptr, 4))
    return W_FAULT;
  wr32(w, count_ptr, 0);
  wr32(w, size_ptr, 0);
  return W_SUCCESS;
}

WASI(environ_get, u32 environ_ptr, u32 buf_ptr)
{
  return W_SUCCESS;
}

WASI(clock_res_get, u32 id, u32 res_ptr)
{
  if (id > 3)
    return W_INVAL;
  if (!mem_ok(w, res_ptr, 8))
    return W_FAULT;
  wr64(w, res_ptr, CLOCK_STEP_NS);
  return W_SUCCESS;
}

WASI(clock_time_get, u32 id, u64 precision, u32 time_ptr)
{
  if (id > 3)
    return W_INVAL;
  if (!mem_ok(w, time_ptr, 8))
    return W_FAULT;
  /* every clock is the one virtual clock: CPU-time clocks included, so a module cannot
   * measure how fast the host is */
  wr64(w, time_ptr, w->clock_ns);
  w->clock_ns += CLOCK_STEP_NS;
  return W_SUCCESS;
}

WASI(random_get, u32 buf, u32 len)
{
  if (!mem_ok(w, buf, len))
    return W_FAULT;
  static const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
  uint8_t *out = at(w, buf);
  while (len) {
    if (w->rand_used == sizeof w->rand_block) {
      memset(w->rand_block, 0, sizeof w->rand_block);
      crypto_stream_chacha20_ietf_xor_ic(w->rand_block, w->rand_block, sizeof w->rand_block, nonce,
                                         w->rand_counter++, w->seed);
      w->rand_used = 0;
    }
    uint32_t n = (uint32_t)sizeof w->rand_block - w->rand_used;
    if (n > len)
      n = len;
    memcpy(out, w->rand_block + w->rand_used, n);
    w->rand_used += n;
    out += n;
    len -= n;
  }
  return W_SUCCESS;
}

WASI(sched_yield)
{
  return W_SUCCESS;
}

void Z_wasi_snapshot_preview1Z_proc_exit(wasi_host *w, u32 code)
{
  w->exit_code = code;
  if (w->exit_target)
    longjmp(*w->exit_target, RT_JUMP_EXIT);
  _exit(70);
}

WASI(proc_raise, u32 sig)
{
  return W_NOSYS;
}

/* poll_oneoff: clocks are virtual, so a sleep returns at once with the clock moved on;
 * file descriptors are always ready. */
WASI(poll_oneoff, u32 in, u32 out, u32 nsubs, u32 nevents_ptr)
{
  if (nsubs == 0)
    return W_INVAL;
  if (!mem_ok(w, in, 48ull * nsubs) || !mem_ok(w, out, 32ull * nsubs) || !mem_ok(w, nevents_ptr, 4))
    return W_FAULT;
  uint64_t advance = 0;
  for (u32 i = 0; i < nsubs; i++) {
    uint32_t s = in + 48 * i, e = out + 32 * i;
    uint8_t tag = *at(w, s + 8);
    memset(at(w, e), 0, 32);
    memcpy(at(w, e), at(w, s), 8); /* userdata */
    wr8(w, e + 10, tag);
    if (tag == 0) {
      uint64_t timeout, flags16;
      memcpy(&timeout, at(w, s + 24), 8);
      flags16 = *at(w, s + 40);
      uint64_t wait = (flags16 & 1) ? (timeout > w->clock_ns ? timeout - w->clock_ns : 0) : timeout;
      if (wait > advance)
        advance = wait;
    } else if (tag == 1 || tag == 2) {
      if (!get_fd(w, rd32(w, s + 16)))
        wr16(w, e + 8, W_BADF);
    } else {
      wr16(w, e + 8, W_INVAL);
    }
  }
  w->clock_ns += advance;
  wr32(w, nevents_ptr, nsubs);
  return W_SUCCESS;
}

/* ---- reading and writing ---- */

/* Turns a module iovec array into host iovecs pointing into linear memory. */
static uint32_t map_iovs(wasi_host *w, u32 iovs, u32 n, struct iovec **out, uint64_t *total)
{
  if (n > 1024)
    return W_INVAL;
  if (!mem_ok(w, iovs, 8ull * n))
    return W_FAULT;
  struct iovec *v = calloc(n ? n : 1, sizeof *v);
  if (!v)
    return W_NOMEM;
  *total = 0;
  for (u32 i = 0; i < n; i++) {
    uint32_t buf = rd32(w, iovs + 8 * i), len = rd32(w, iovs + 8 * i + 4);
    if (!mem_ok(w, buf, len)) {
      free(v);
      return W_FAULT;
    }
    v[i].iov_base = at(w, buf);
    v[i].iov_len = len;
    *total += len;
  }
  *out = v;
  return W_SUCCESS;
}

static uint32_t do_read(wasi_host *w, u32 fd, u32 iovs, u32 n, int positioned, u64 offset, u32 nread_ptr)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (!mem_ok(w, nread_ptr, 4))
    return W_FAULT;
  if (f->kind == K_STDIN) {
    wr32(w, nread_ptr, 0);
    return W_SUCCESS;
  }
  if (f->kind == K_DIR)
    return W_ISDIR;
  if (f->kind != K_FILE)
    return W_BADF;
  struct iovec *v;
  uint64_t total;
  uint32_t err = map_iovs(w, iovs, n, &v, &total);
  if (err)
    return err;
  ssize_t got = positioned ? preadv(f->host, v, (int)n, (off_t)offset) : readv(f->host, v, (int)n);
  free(v);
  if (got < 0)
    return werr(errno);
  wr32(w, nread_ptr, (uint32_t)got);
  return W_SUCCESS;
}

static uint32_t do_write(wasi_host *w, u32 fd, u32 iovs, u32 n, int positioned, u64 offset, u32 nwritten_ptr)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (!mem_ok(w, nwritten_ptr, 4))
    return W_FAULT;
  if (f->kind == K_DIR)
    return W_ISDIR;
  if (f->kind == K_STDIN)
    return W_BADF;
  if (f->kind == K_FILE && !f->writable)
    return W_BADF;
  struct iovec *v;
  uint64_t total;
  uint32_t err = map_iovs(w, iovs, n, &v, &total);
  if (err)
    return err;
  if (f->kind == K_LOG) {
    if (positioned) {
      free(v);
      return W_SPIPE;
    }
    /* the log is capped: past the limit the module's writes succeed and are dropped */
    uint64_t room = w->log_written < w->log_limit ? w->log_limit - w->log_written : 0;
    for (u32 i = 0; i < n && room; i++) {
      size_t k = v[i].iov_len < room ? v[i].iov_len : (size_t)room;
      if (write(f->host, v[i].iov_base, k) < 0)
        break;
      room -= k;
      w->log_written += k;
    }
    if (w->log_written >= w->log_limit && total && !w->log_truncated) {
      static const char note[] = "\n[cairn: log limit reached, further output dropped]\n";
      if (write(f->host, note, sizeof note - 1) < 0) {
      }
      w->log_truncated = 1;
    }
    free(v);
    wr32(w, nwritten_ptr, (uint32_t)total);
    return W_SUCCESS;
  }
  ssize_t put = positioned ? pwritev(f->host, v, (int)n, (off_t)offset) : writev(f->host, v, (int)n);
  free(v);
  if (put < 0)
    return werr(errno);
  wr32(w, nwritten_ptr, (uint32_t)put);
  return W_SUCCESS;
}

WASI(fd_read, u32 fd, u32 iovs, u32 n, u32 nread_ptr)
{
  return do_read(w, fd, iovs, n, 0, 0, nread_ptr);
}

WASI(fd_pread, u32 fd, u32 iovs, u32 n, u64 offset, u32 nread_ptr)
{
  return do_read(w, fd, iovs, n, 1, offset, nread_ptr);
}

WASI(fd_write, u32 fd, u32 iovs, u32 n, u32 nwritten_ptr)
{
  return do_write(w, fd, iovs, n, 0, 0, nwritten_ptr);
}

WASI(fd_pwrite, u32 fd, u32 iovs, u32 n, u64 offset, u32 nwritten_ptr)
{
  return do_write(w, fd, iovs, n, 1, offset, nwritten_ptr);
}

WASI(fd_seek, u32 fd, u64 offset, u32 whence, u32 newoffset_ptr)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (f->kind != K_FILE)
    return f->kind == K_DIR ? W_BADF : W_SPIPE;
  if (!mem_ok(w, newoffset_ptr, 8))
    return W_FAULT;
  int how = whence == 0 ? SEEK_SET : whence == 1 ? SEEK_CUR : whence == 2 ? SEEK_END : -1;
  if (how < 0)
    return W_INVAL;
  off_t pos = lseek(f->host, (off_t)(int64_t)offset, how);
  if (pos < 0)
    return werr(errno);
  wr64(w, newoffset_ptr, (uint64_t)pos);
  return W_SUCCESS;
}

WASI(fd_tell, u32 fd, u32 offset_ptr)
{
  return Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 0, 1, offset_ptr);
}

WASI(fd_advise, u32 fd, u64 offset, u64 len, u32 advice)
{
  return get_fd(w, fd) ? W_SUCCESS : W_BADF;
}

static uint32_t need_writable_file(wasi_host *w, u32 fd, wfd **out)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (f->kind == K_DIR)
    return W_ISDIR;
  if (f->kind != K_FILE)
    return W_BADF;
  if (!f->writable)
    return W_ROFS;
  *out = f;
  return W_SUCCESS;
}

WASI(fd_allocate, u32 fd, u64 offset, u64 len)
{
  wfd *f;
  uint32_t err = need_writable_file(w, fd, &f);
  if (err)
    return err;
  struct stat st;
  if (fstat(f->host, &st) < 0)
    return werr(errno);
  if ((uint64_t)st.st_size < offset + len && ftruncate(f->host, (off_t)(offset + len)) < 0)
    return werr(errno);
  return W_SUCCESS;
}

WASI(fd_filestat_set_size, u32 fd, u64 size)
{
  wfd *f;
  uint32_t err = need_writable_file(w, fd, &f);
  if (err)
    return err;
  return ftruncate(f->host, (off_t)size) < 0 ? werr(errno) : W_SUCCESS;
}

/* Timestamps are not stored (every file shows the fixed epoch), so setting them only
 * checks that the module may. */
WASI(fd_filestat_set_times, u32 fd, u64 atim, u64 mtim, u32 flags)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  return f->writable || f->kind == K_LOG ? W_SUCCESS : W_ROFS;
}

WASI(fd_datasync, u32 fd)
{
  return get_fd(w, fd) ? W_SUCCESS : W_BADF;
}

WASI(fd_sync, u32 fd)
{
  return get_fd(w, fd) ? W_SUCCESS : W_BADF;
}

WASI(fd_close, u32 fd)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (f->kind == K_LOG || f->kind == K_STDIN) {
    memset(f, 0, sizeof *f); /* the log stays open for the other stream */
    f->kind = K_FREE;
    return W_SUCCESS;
  }
  release_fd(f);
  return W_SUCCESS;
}

WASI(fd_renumber, u32 from, u32 to)
{
  wfd *f = get_fd(w, from);
  if (!f || to >= MAX_FDS)
    return W_BADF;
  if (from == to)
    return W_SUCCESS;
  if (w->fds[to].kind != K_FREE)
    Z_wasi_snapshot_preview1Z_fd_close(w, to);
  w->fds[to] = *f;
  memset(f, 0, sizeof *f);
  f->kind = K_FREE;
  return W_SUCCESS;
}

WASI(fd_fdstat_get, u32 fd, u32 buf)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (!mem_ok(w, buf, 24))
    return W_FAULT;
  memset(at(w, buf), 0, 24);
  uint64_t rights = RIGHTS_ALL;
  uint8_t type = FT_FILE;
  if (f->kind == K_DIR)
    type = FT_DIR;
  else if (f->kind == K_LOG || f->kind == K_STDIN) {
    /* a terminal-like stream: no seek or tell, so libc line-buffers it */
    type = FT_CHAR;
    rights &= ~(RIGHT_FD_SEEK | RIGHT_FD_TELL);
  }
  if (!f->writable && f->kind != K_LOG)
    rights &= ~WRITE_RIGHTS;
  wr8(w, buf, type);
  wr16(w, buf + 2, f->append ? FDFLAGS_APPEND : 0);
  wr64(w, buf + 8, rights);
  wr64(w, buf + 16, rights);
  return W_SUCCESS;
}

WASI(fd_fdstat_set_flags, u32 fd, u32 flags)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (flags & ~FDFLAGS_APPEND)
    return W_NOTSUP;
  if (f->kind != K_FILE)
    return flags ? W_NOTSUP : W_SUCCESS;
  int fl = fcntl(f->host, F_GETFL);
  if (fl < 0 || fcntl(f->host, F_SETFL, (flags & FDFLAGS_APPEND) ? fl | O_APPEND : fl & ~O_APPEND) < 0)
    return werr(errno);
  f->append = !!(flags & FDFLAGS_APPEND);
  return W_SUCCESS;
}

WASI(fd_fdstat_set_rights, u32 fd, u64 base, u64 inheriting)
{
  return get_fd(w, fd) ? W_SUCCESS : W_BADF;
}

WASI(fd_filestat_get, u32 fd, u32 buf)
{
  wfd *f = get_fd(w, fd);
  if (!f)
    return W_BADF;
  if (!mem_ok(w, buf, 64))
    return W_FAULT;
  if (f->kind == K_LOG || f->kind == K_STDIN) {
    memset(at(w, buf), 0, 64);
    wr8(w, buf + 16, FT_CHAR);
    wr64(w, buf + 24, 1);
    return W_SUCCESS;
  }
  struct stat st;
  if (fstat(f->host, &st) < 0)
    return werr(errno);
  put_filestat(w, buf, &st, f->vpath);
  return W_SUCCESS;
}

WASI(fd_prestat_get, u32 fd, u32 buf)
{
  wfd *f = get_fd(w, fd);
  if (!f || !f->preopen)
    return W_BADF;
  if (!mem_ok(w, buf, 8))
    return W_FAULT;
  memset(at(w, buf), 0, 8);
  wr32(w, buf + 4, (uint32_t)strlen(f->vpath));
  return W_SUCCESS;
}

WASI(fd_prestat_dir_name, u32 fd, u32 path, u32 len)
{
  wfd *f = get_fd(w, fd);
  if (!f || !f->preopen)
    return W_BADF;
  size_t n = strlen(f->vpath);
  if (len < n)
    return W_NAMETOOLONG;
  if (!mem_ok(w, path, n))
    return W_FAULT;
  memcpy(at(w, path), f->vpath, n);
  return W_SUCCESS;
}

/* ---- directories ---- */

static int compare_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the whole directory, sorted: listings must not depend on the host's order. */
static uint32_t load_listing(wfd *f)
{
  free_listing(f);
  int fd = openat(f->host, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return werr(errno);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return werr(errno);
  }
  size_t cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (f->n_names == cap) {
      cap = cap ? 2 * cap : 64;
      f->names = realloc(f->names, cap * sizeof *f->names);
    }
    f->names[f->n_names++] = strdup(de->d_name);
  }
  closedir(d);
  if (f->n_names)
    qsort(f->names, f->n_names, sizeof *f->names, compare_names);
  f->types = calloc(f->n_names ? f->n_names : 1, 1);
  for (size_t i = 0; i < f->n_names; i++) {
    struct stat st;
    f->types[i] = fstatat(f->host, f->names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 ? filetype_of(st.st_mode) : FT_UNKNOWN;
  }
  return W_SUCCESS;
}

WASI(fd_readdir, u32 fd, u32 buf, u32 buf_len, u64 cookie, u32 bufused_ptr)
{
  uint32_t err;
  wfd *f = get_dir(w, fd, &err);
  if (!f)
    return err;
  if (!mem_ok(w, buf, buf_len) || !mem_ok(w, bufused_ptr, 4))
    return W_FAULT;
  if (cookie == 0 || !f->names) {
    if ((err = load_listing(f)))
      return err;
  }
  uint32_t used = 0;
  for (uint64_t i = cookie; i < f->n_names && used < buf_len; i++) {
    uint8_t ent[24] = {0};
    uint64_t next = i + 1;
    char *child = vpath_join(f->vpath, f->names[i]);
    uint64_t ino = path_ino(child ? child : f->names[i]);
    free(child);
    uint32_t namlen = (uint32_t)strlen(f->names[i]);
    memcpy(ent, &next, 8);
    memcpy(ent + 8, &ino, 8);
    memcpy(ent + 16, &namlen, 4);
    ent[20] = f->types[i];
    /* entries that do not fit are cut short: the caller sees a full buffer and retries */
    uint32_t n = buf_len - used < 24 ? buf_len - used : 24;
    memcpy(at(w, buf + used), ent, n);
    used += n;
    n = buf_len - used < namlen ? buf_len - used : namlen;
    memcpy(at(w, buf + used), f->names[i], n);
    used += n;
  }
  wr32(w, bufused_ptr, used);
  return W_SUCCESS;
}

/* ---- paths ---- */

WASI(path_open, u32 dirfd, u32 lookup, u32 path_ptr, u32 path_len, u32 oflags, u64 rights_base,
     u64 rights_inheriting, u32 fdflags, u32 fd_ptr)
{
  uint32_t err;
  wfd *dir = get_dir(w, dirfd, &err);
  if (!dir)
    return err;
  if (!mem_ok(w, fd_ptr, 4))
    return W_FAULT;
  char *path;
  if ((err = get_path(w, path_ptr, path_len, &path)))
    return err;
  int want_write = (rights_base & WRITE_RIGHTS) || (oflags & (OFLAGS_CREAT | OFLAGS_TRUNC)) ||
                   (fdflags & FDFLAGS_APPEND);
  int want_read = !!(rights_base & (RIGHT_FD_READ | RIGHT_FD_READDIR));
  if (want_write && !dir->writable) {
    free(path);
    return W_ROFS;
  }
  int flags = want_write ? (want_read ? O_RDWR : O_WRONLY) : O_RDONLY;
  if (oflags & OFLAGS_CREAT)
    flags |= O_CREAT;
  if (oflags & OFLAGS_EXCL)
    flags |= O_EXCL;
  if (oflags & OFLAGS_TRUNC)
    flags |= O_TRUNC;
  if (oflags & OFLAGS_DIRECTORY)
    flags |= O_DIRECTORY;
  if (fdflags & FDFLAGS_APPEND)
    flags |= O_APPEND;
  int slot = new_fd(w);
  if (slot < 0) {
    free(path);
    return W_MFILE;
  }
  int host = open_beneath(dir->host, path, flags, 0644, lookup & LOOKUP_FOLLOW);
  if (host < 0 && errno == EISDIR && want_write && !(oflags & (OFLAGS_CREAT | OFLAGS_TRUNC)))
    host = open_beneath(dir->host, path, O_RDONLY | O_DIRECTORY, 0, lookup & LOOKUP_FOLLOW);
  if (host < 0) {
    err = werr(errno);
    free(path);
    return err;
  }
  struct stat st;
  if (fstat(host, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
    close(host);
    free(path);
    return W_NOTSUP; /* only files and directories exist in a job's world */
  }
  wfd *f = &w->fds[slot];
  f->kind = S_ISDIR(st.st_mode) ? K_DIR : K_FILE;
  f->host = host;
  f->writable = dir->writable;
  f->append = !!(fdflags & FDFLAGS_APPEND);
  f->vpath = vpath_join(dir->vpath, path);
  free(path);
  wr32(w, fd_ptr, (uint32_t)slot);
  return W_SUCCESS;
}

WASI(path_filestat_get, u32 dirfd, u32 lookup, u32 path_ptr, u32 path_len, u32 buf)
{
  uint32_t err;
  wfd *dir = get_dir(w, dirfd, &err);
  if (!dir)
    return err;
  if (!mem_ok(w, buf, 64))
    return W_FAULT;
  char *path;
  if ((err = get_path(w, path_ptr, path_len, &path)))
    return err;
  int fd = open_beneath(dir->host, path, O_PATH, 0, lookup & LOOKUP_FOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    err = werr(errno);
    if (fd >= 0)
      close(fd);
    free(path);
    return err;
  }
  close(fd);
  char *vpath = vpath_join(dir->vpath, path);
  put_filestat(w, buf, &st, vpath ? vpath : path);
  free(vpath);
  free(path);
  return W_SUCCESS;
}

WASI(path_filestat_set_times, u32 dirfd, u32 lookup, u32 path_ptr, u32 path_len, u64 atim, u64 mtim, u32 flags)
{
  uint32_t err;
  wfd *dir = get_dir(w, dirfd, &err);
  if (!dir)
    return err;
  if (!dir->writable)
    return W_ROFS;
  char *path;
  if ((err = get_path(w, path_ptr, path_len, &path)))
    return err;
  int fd = open_beneath(dir->host, path, O_PATH, 0, lookup & LOOKUP_FOLLOW);
  err = fd < 0 ? werr(errno) : W_SUCCESS;
  if (fd >= 0)
    close(fd);
  free(path);
  return err;
}

/* The calls that change a name: only under /out. */
typedef enum { OP_MKDIR, OP_RMDIR, OP_UNLINK } name_op;

static uint32_t change_name(wasi_host *w, u32 dirfd, u32 path_ptr, u32 path_len, name_op op)
{
  uint32_t err;
  wfd *dir = get_dir(w, dirfd, &err);
  if (!dir)
    return err;
  if (!dir->writable)
    return W_ROFS;
  char *path, *name;
  if ((err = get_path(w, path_ptr, path_len, &path)))
    return err;
  int parent = open_parent(dir, path, &name);
  if (parent < 0)
    err = werr(errno);
  else if (bad_name(name))
    err = op == OP_MKDIR ? W_EXIST : op == OP_RMDIR ? W_INVAL : W_ISDIR;
  else if (op == OP_MKDIR)
    err = mkdirat(parent, name, 0755) < 0 ? werr(errno) : W_SUCCESS;
  else
    err = unlinkat(parent, name, op == OP_RMDIR ? AT_REMOVEDIR : 0) < 0 ? werr(errno) : W_SUCCESS;
  if (parent >= 0)
    close(parent);
  free(path);
  return err;
}

WASI(path_create_directory, u32 dirfd, u32 path_ptr, u32 path_len)
{
  return change_name(w, dirfd, path_ptr, path_len, OP_MKDIR);
}

WASI(path_remove_directory, u32 dirfd, u32 path_ptr, u32 path_len)
{
  return change_name(w, dirfd, path_ptr, path_len, OP_RMDIR);
}

WASI(path_unlink_file, u32 dirfd, u32 path_ptr, u32 path_len)
{
  return change_name(w, dirfd, path_ptr, path_len, OP_UNLINK);
}

WASI(path_rename, u32 fd, u32 old_ptr, u32 old_len, u32 new_fd, u32 new_ptr, u32 new_len)
{
  uint32_t err;
  wfd *from = get_dir(w, fd, &err);
  if (!from)
    return err;
  wfd *to = get_dir(w, new_fd, &err);
  if (!to)
    return err;
  if (!from->writable || !to->writable)
    return W_ROFS;
  char *old_path = NULL, *new_path = NULL, *old_name, *new_name;
  if ((err = get_path(w, old_ptr, old_len, &old_path)) || (err = get_path(w, new_ptr, new_len, &new_path))) {
    free(old_path);
    return err;
  }
  int op = open_parent(from, old_path, &old_name);
  int np = op < 0 ? -1 : open_parent(to, new_path, &new_name);
  if (op < 0 || np < 0)
    err = werr(errno);
  else if (bad_name(old_name) || bad_name(new_name))
    err = W_INVAL;
  else
    err = renameat(op, old_name, np, new_name) < 0 ? werr(errno) : W_SUCCESS;
  if (op >= 0)
    close(op);
  if (np >= 0)
    close(np);
  free(old_path);
  free(new_path);
  return err;
}

/* A symlink's target is only text: following it later is still resolved beneath /out. */
WASI(path_symlink, u32 target_ptr, u32 target_len, u32 dirfd, u32 path_ptr, u32 path_len)
{
  uint32_t err;
  wfd *dir = get_dir(w, dirfd, &err);
  if (!dir)
    return err;
  if (!dir->writable)
    return W_ROFS;
  char *target = NULL, *path = NULL, *name;
  if ((err = get_path(w, target_ptr, target_len, &target)) || (err = get_path(w, path_ptr, path_len, &path))) {
    free(target);
    return err;
  }
  int parent = open_parent(dir, path, &name);
  if (parent < 0)
    err = werr(errno);
  else if (bad_name(name))
    err = W_EXIST;
  else
    err = symlinkat(target, parent, name) < 0 ? werr(errno) : W_SUCCESS;
  if (parent >= 0)
    close(parent);
  free(target);
  free(path);
  return err;
}

WASI(path_readlink, u32 dirfd, u32 path_ptr, u32 path_len, u32 buf, u32 buf_len, u32 bufused_ptr)
{
  uint32_t err;
  wfd *dir = get_dir(w, dirfd, &err);
  if (!dir)
    return err;
  if (!mem_ok(w, buf, buf_len) || !mem_ok(w, bufused_ptr, 4))
    return W_FAULT;
  char *path, *name;
  if ((err = get_path(w, path_ptr, path_len, &path)))
    return err;
  int parent = open_parent(dir, path, &name);
  char target[4096];
  ssize_t n = -1;
  if (parent >= 0 && !bad_name(name))
    n = readlinkat(parent, name, target, sizeof target);
  else if (parent >= 0)
    errno = EINVAL;
  err = n < 0 ? werr(errno) : W_SUCCESS;
  if (parent >= 0)
    close(parent);
  free(path);
  if (err)
    return err;
  uint32_t k = (uint32_t)n < buf_len ? (uint32_t)n : buf_len;
  memcpy(at(w, buf), target, k);
  wr32(w, bufused_ptr, k);
  return W_SUCCESS;
}

WASI(path_link, u32 old_fd, u32 lookup, u32 old_ptr, u32 old_len, u32 new_fd, u32 new_ptr, u32 new_len)
{
  return W_NOTSUP; /* cairn stores no hard links (docs/FS.md), so outputs cannot have them */
}

/* ---- sockets: a job has no network ---- */

WASI(sock_accept, u32 fd, u32 flags, u32 out)
{
  return W_NOTSUP;
}

WASI(sock_recv, u32 fd, u32 iovs, u32 n, u32 flags, u32 nread, u32 oflags)
{
  return W_NOTSUP;
}

WASI(sock_send, u32 fd, u32 iovs, u32 n, u32 flags, u32 nwritten)
{
  return W_NOTSUP;
}

WASI(sock_shutdown, u32 fd, u32 how)
{
  return W_NOTSUP;
}
