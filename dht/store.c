/*
 * The local chunk store. Chunk files live at chunks/ab/<64 hex>: one level of fan-out
 * keeps directories to thousands of entries at millions of chunks, while a second level
 * cost a directory inode per chunk in a young store (most of what a host did per chunk,
 * with a no-journal ext4 searching its inode bitmap for each). New chunks are
 * written to tmp/<hex>.<pid>, and cn_store_flush makes them durable with one syncfs,
 * renames them into place, and syncs again: a chunk is never visible half-written, and a
 * batch costs two syncs rather than one fsync per chunk. Leftover tmp files of dead
 * processes are removed at open.
 */
#include "dht/internal.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LAYER_BUCKETS 4096
#define LAYER_CACHE_MAX (64u << 20) /* piece layers of 64 GiB of unpacked objects */

#define INDEX_MAP_SIZE (64ull << 30) /* virtual; LMDB files grow as needed */
/* One version for the home's layout, the index's databases and the keyring's format. */
#define HOME_FORMAT "cairn-home 3\n"
#define HOME_FORMAT_2 "cairn-home 2\n"
#define HOME_FORMAT_1 "cairn-home 1\n"

void cn_log(const char *fmt, ...)
{
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* one write per line, so lines from several threads never interleave */
  char out[1200];
  time_t now = time(NULL);
  struct tm tm;
  char when[32] = "";
  if (!isatty(STDERR_FILENO)) {
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ ", &tm);
  }
  int n = snprintf(out, sizeof out, "%scairn: %s\n", when, line);
  if (write(STDERR_FILENO, out, n < (int)sizeof out ? (size_t)n : sizeof out - 1) < 0)
    return; /* nowhere left to report it */
}

char *cn_default_home(void)
{
  const char *env = getenv("CAIRN_HOME");
  char *out = NULL;
  if (env && *env)
    return strdup(env);
  const char *home = getenv("HOME");
  if (asprintf(&out, "%s/.local/share/cairn", home && *home ? home : ".") < 0)
    return NULL;
  return out;
}

static void put_u64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static int mkdir_p(const char *path, mode_t mode)
{
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = 0;
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

/* Writes a small file atomically: temp, fsync, rename, fsync the directory. */
int store_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
  /* name may be "dir/file": the temporary file sits beside it, and dir is synced */
  char tmp[512], dir[256] = ".";
  const char *slash = strrchr(name, '/');
  if (slash)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - name), name);
  snprintf(tmp, sizeof tmp, "%s/.%s.%d.tmp", dir, slash ? slash + 1 : name, (int)getpid());
  int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return -errno;
  int err = 0;
  if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
    err = errno ? -errno : -EIO;
  close(fd);
  if (!err && renameat(dirfd, tmp, dirfd, name) < 0)
    err = -errno;
  if (err) {
    unlinkat(dirfd, tmp, 0);
  } else {
    int dfd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
  }
  return err;
}

static int open_index(cn_store *s)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/index", s->home);
  int rc = mdb_env_create(&s->env);
  if (!rc)
    rc = mdb_env_set_maxdbs(s->env, 8);
  if (!rc)
    rc = mdb_env_set_mapsize(s->env, INDEX_MAP_SIZE);
  if (!rc)
    rc = mdb_env_open(s->env, path, MDB_NOTLS, 0600);
  MDB_txn *txn = NULL;
  if (!rc)
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (!rc)
    rc = mdb_dbi_open(txn, "roots", MDB_CREATE, &s->roots);
  if (!rc)
    rc = mdb_dbi_open(txn, "hwm", MDB_CREATE, &s->hwm);
  if (!rc)
    rc = mdb_dbi_open(txn, "listed", MDB_CREATE, &s->listed);
  if (!rc)
    rc = mdb_txn_commit(txn);
  else if (txn)
    mdb_txn_abort(txn);
  if (rc) {
    cn_log("cannot open index %s: %s", path, mdb_strerror(rc));
    return cn_fail(EIO, "cannot open index %s: %s", path, mdb_strerror(rc));
  }
  return 0;
}

int cn_store_init(const char *home)
{
  char path[4096];
  int rc;
  static const char *dirs[] = {"", "/chunks", "/tmp", "/index", "/packs"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    snprintf(path, sizeof path, "%s%s", home, dirs[i]);
    if ((rc = mkdir_p(path, 0700)) < 0)
      return cn_fail(-rc, "cannot create %s: %s", path, strerror(-rc));
  }
  int fd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return cn_fail(errno, "cannot open %s: %s", home, strerror(errno));
  if (faccessat(fd, "node.key", F_OK, 0) < 0) {
    uint8_t seed[CN_SEED_BYTES];
    cn_nskey k;
    cn_nskey_generate(&k);
    memcpy(seed, k.seed, sizeof seed);
    cn_nskey_wipe(&k);
    char hex[2 * CN_SEED_BYTES + 2];
    cn_hex(seed, sizeof seed, hex);
    strcat(hex, "\n");
    rc = store_write_file_atomic(fd, "node.key", hex, strlen(hex), 0600);
    if (rc < 0) {
      close(fd);
      return cn_fail(-rc, "cannot write %s/node.key: %s", home, strerror(-rc));
    }
  }
  if (faccessat(fd, "format", F_OK, 0) < 0 &&
      (rc = store_write_file_atomic(fd, "format", HOME_FORMAT, strlen(HOME_FORMAT), 0600)) < 0) {
    close(fd);
    return cn_fail(-rc, "cannot write %s/format: %s", home, strerror(-rc));
  }
  close(fd);
  cn_store *s;
  if ((rc = cn_store_open(home, &s)) < 0)
    return rc;
  cn_store_close(s);
  return 0;
}

/* Removes staging files left by processes that no longer exist. */
static void sweep_tmp(cn_store *s)
{
  int fd = openat(s->home_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  DIR *d = fdopendir(fd);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    const char *dot = strrchr(e->d_name, '.');
    if (e->d_name[0] == '.' || !dot)
      continue;
    /* names are <hex id>.<pid>.<serial>: keep what live processes (this one too) staged */
    const char *pid_at = strchr(e->d_name, '.');
    pid_t pid = pid_at ? (pid_t)atoi(pid_at + 1) : 0;
    (void)dot;
    if (pid == getpid() || (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)))
      continue;
    unlinkat(fd, e->d_name, 0);
  }
  if (d)
    closedir(d);
}

/* Format 2 kept chunk files at chunks/ab/cd/<id>; format 3 at chunks/ab/<id>. Moves each
 * one up and removes the emptied directories, then syncs, so that the caller may write the
 * new format. Renames only: a crash part-way leaves format 2 and the next open goes on. */
static int upgrade_fanout(int home_fd)
{
  int top = openat(home_fd, "chunks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (top < 0)
    return errno == ENOENT ? 0 : -errno;
  DIR *d1 = fdopendir(top);
  struct dirent *e1;
  int rc = d1 ? 0 : -errno;
  while (!rc && d1 && (e1 = readdir(d1))) {
    if (e1->d_name[0] == '.' || strlen(e1->d_name) != 2)
      continue;
    int fan = openat(dirfd(d1), e1->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d2 = fan >= 0 ? fdopendir(fan) : NULL;
    struct dirent *e2;
    /* entries moved up appear in this listing too: only two-letter names are leaves */
    while (!rc && d2 && (e2 = readdir(d2))) {
      if (e2->d_name[0] == '.' || strlen(e2->d_name) != 2)
        continue;
      int leaf = openat(dirfd(d2), e2->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      DIR *d3 = leaf >= 0 ? fdopendir(leaf) : NULL;
      struct dirent *e3;
      while (!rc && d3 && (e3 = readdir(d3)))
        if (e3->d_name[0] != '.' && renameat(dirfd(d3), e3->d_name, dirfd(d2), e3->d_name) < 0)
          rc = cn_fail(errno, "cannot move chunk %s up a directory: %s", e3->d_name, strerror(errno));
      if (d3)
        closedir(d3);
      if (!rc)
        unlinkat(dirfd(d2), e2->d_name, AT_REMOVEDIR);
    }
    if (d2)
      closedir(d2);
  }
  if (d1)
    closedir(d1);
  if (!rc && syncfs(home_fd) < 0)
    rc = cn_fail(errno, "cannot sync the store: %s", strerror(errno));
  return rc;
}

int cn_store_open(const char *home, cn_store **out)
{
  *out = NULL;
  struct stat st;
  char probe[4096];
  snprintf(probe, sizeof probe, "%s/node.key", home);
  if (stat(probe, &st) < 0)
    return cn_fail(ENOENT, "no cairn home at %s (run 'cairn init' first)", home);
  char format[64] = {0};
  snprintf(probe, sizeof probe, "%s/format", home);
  FILE *f = fopen(probe, "re");
  if (f) {
    if (!fgets(format, sizeof format, f))
      format[0] = 0;
    fclose(f);
  }
  if (strcmp(format, HOME_FORMAT_1) == 0 || strcmp(format, HOME_FORMAT_2) == 0) {
    /* format 2 only added packs/, peers and config; format 3 moved chunk files up one
     * directory (FORMAT §1): upgrade in place */
    snprintf(probe, sizeof probe, "%s/packs", home);
    int fd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 || (mkdir(probe, 0700) < 0 && errno != EEXIST)
                 ? cn_fail(errno, "cannot upgrade %s: %s", home, strerror(errno))
                 : upgrade_fanout(fd);
    if (!rc)
      rc = store_write_file_atomic(fd, "format", HOME_FORMAT, strlen(HOME_FORMAT), 0600);
    if (fd >= 0)
      close(fd);
    if (rc < 0)
      return rc;
    strcpy(format, HOME_FORMAT);
  }
  if (strcmp(format, HOME_FORMAT) != 0)
    return cn_fail(EPROTO, "%s is not a cairn home this version can open (format file says '%.*s')",
                   home, (int)strcspn(format, "\n"), format);
  cn_store *s = calloc(1, sizeof *s);
  s->home = strdup(home);
  pthread_mutex_init(&s->lock, NULL);
  s->home_fd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = s->home_fd < 0 ? cn_fail(errno, "cannot open %s: %s", home, strerror(errno)) : 0;
  if (!rc)
    rc = open_index(s);
  if (rc) {
    cn_store_close(s);
    return rc;
  }
  sweep_tmp(s);
  *out = s;
  return 0;
}

void cn_store_close(cn_store *s)
{
  if (!s)
    return;
  if (s->n_pending)
    cn_store_flush(s);
  if (s->env)
    mdb_env_close(s->env);
  if (s->home_fd >= 0)
    close(s->home_fd);
  pthread_mutex_destroy(&s->lock);
  for (size_t b = 0; s->layers && b < LAYER_BUCKETS; b++)
    while (s->layers[b]) {
      struct piece_layer *l = s->layers[b];
      s->layers[b] = l->next;
      free(l->hashes);
      free(l);
    }
  free(s->layers);
  free(s->pending);
  free(s->pending_index);
  free(s->home);
  free(s);
}

const char *cn_store_home(const cn_store *s) { return s->home; }

int cn_store_node_seed(cn_store *s, uint8_t seed[CN_SEED_BYTES])
{
  char hex[2 * CN_SEED_BYTES + 8] = {0};
  int fd = openat(s->home_fd, "node.key", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cn_fail(errno, "cannot read node.key: %s", strerror(errno));
  ssize_t n = read(fd, hex, sizeof hex - 1);
  close(fd);
  if (n < 2 * CN_SEED_BYTES)
    return cn_fail(EIO, "node.key is truncated");
  hex[2 * CN_SEED_BYTES] = 0;
  return cn_unhex(hex, seed, CN_SEED_BYTES) < 0 ? cn_fail(EIO, "node.key is corrupt") : 0;
}

void store_chunk_relpath(const uint8_t id[CN_ID_BYTES], char out[80])
{
  char hex[CN_HEX_ID_LEN + 1];
  cn_hex(id, CN_ID_BYTES, hex);
  snprintf(out, 80, "chunks/%.2s/%s", hex, hex);
}

void store_chunk_relpath_v2(const uint8_t id[CN_ID_BYTES], char out[80])
{
  char hex[CN_HEX_ID_LEN + 1];
  cn_hex(id, CN_ID_BYTES, hex);
  snprintf(out, 80, "chunks/%.2s/%.2s/%s", hex, hex + 2, hex);
}

static void tmp_relpath(const struct staged *st, char out[128])
{
  char hex[CN_HEX_ID_LEN + 1];
  cn_hex(st->id, CN_ID_BYTES, hex);
  snprintf(out, 128, "tmp/%s.%d.%llu", hex, (int)getpid(), (unsigned long long)st->serial);
}

const char *cn_store_chunk_path(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  static _Thread_local char path[4200];
  char rel[80];
  store_chunk_relpath(id, rel);
  snprintf(path, sizeof path, "%s/%s", s->home, rel);
  return path;
}

/* Pending objects are found by hash (IDs are hashes already: their first bytes will do),
 * not by a scan: a copy of thousands of files stages thousands before the next flush, and
 * every put looks twice. Open addressing, at most half full. Caller holds s->lock. */
static size_t pending_slot(const uint8_t id[CN_ID_BYTES], size_t cap)
{
  uint64_t h;
  memcpy(&h, id, sizeof h);
  return (size_t)h & (cap - 1);
}

static void pending_index_add(cn_store *s, size_t i)
{
  size_t k = pending_slot(s->pending[i].id, s->index_cap);
  while (s->pending_index[k])
    k = (k + 1) & (s->index_cap - 1);
  s->pending_index[k] = i + 1;
}

static void pending_index_rebuild(cn_store *s)
{
  size_t cap = 1024;
  while (cap < 2 * s->n_pending + 2)
    cap *= 2;
  if (cap != s->index_cap) {
    free(s->pending_index);
    s->index_cap = cap;
    if (!(s->pending_index = calloc(cap, sizeof *s->pending_index)))
      abort();
  } else {
    memset(s->pending_index, 0, cap * sizeof *s->pending_index);
  }
  for (size_t i = 0; i < s->n_pending; i++)
    pending_index_add(s, i);
}

/* The staged record for id, or NULL. Caller holds s->lock. */
static const struct staged *find_pending(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  if (!s->index_cap)
    return NULL;
  for (size_t k = pending_slot(id, s->index_cap); s->pending_index[k]; k = (k + 1) & (s->index_cap - 1))
    if (memcmp(s->pending[s->pending_index[k] - 1].id, id, CN_ID_BYTES) == 0)
      return &s->pending[s->pending_index[k] - 1];
  return NULL;
}

int cn_store_has(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  char rel[80];
  store_chunk_relpath(id, rel);
  if (faccessat(s->home_fd, rel, F_OK, 0) == 0)
    return 1;
  pthread_mutex_lock(&s->lock);
  int hit = find_pending(s, id) != NULL;
  pthread_mutex_unlock(&s->lock);
  return hit;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_chunk_file(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t **data, size_t *len);

static size_t layer_bucket(const uint8_t id[CN_ID_BYTES])
{
  return ((size_t)id[0] << 8 | id[1]) % LAYER_BUCKETS;
}

/* Keeps (takes) an object's piece layer until it is packed; caller holds s->lock. */
static void layer_keep(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t *hashes, size_t bytes)
{
  if (!s->layers && !(s->layers = calloc(LAYER_BUCKETS, sizeof *s->layers)))
    abort();
  struct piece_layer **b = &s->layers[layer_bucket(id)];
  for (struct piece_layer *l = *b; l; l = l->next)
    if (!memcmp(l->id, id, CN_ID_BYTES)) {
      free(hashes);
      return;
    }
  struct piece_layer *l = malloc(sizeof *l);
  if (!l || s->layer_bytes + bytes > LAYER_CACHE_MAX) {
    free(l);
    free(hashes);
    return;
  }
  memcpy(l->id, id, CN_ID_BYTES);
  l->hashes = hashes;
  l->next = *b;
  *b = l;
  s->layer_bytes += bytes;
}

static uint8_t *layer_take(cn_store *s, const uint8_t id[CN_ID_BYTES], size_t bytes)
{
  uint8_t *hashes = NULL;
  pthread_mutex_lock(&s->lock);
  for (struct piece_layer **p = s->layers ? &s->layers[layer_bucket(id)] : NULL; p && *p; p = &(*p)->next)
    if (!memcmp((*p)->id, id, CN_ID_BYTES)) {
      struct piece_layer *l = *p;
      *p = l->next;
      hashes = l->hashes;
      s->layer_bytes -= bytes;
      free(l);
      break;
    }
  pthread_mutex_unlock(&s->lock);
  return hashes;
}

int store_piece_layer(cn_store *s, const uint8_t id[CN_ID_BYTES], uint64_t size, uint8_t **layer)
{
  size_t bytes = (size_t)cn_piece_count(size) * 32;
  *layer = NULL;
  if (!bytes)
    return 0;
  if ((*layer = layer_take(s, id, bytes)))
    return 0;
  uint8_t *buf, actual[CN_ID_BYTES];
  size_t len;
  int rc = read_chunk_file(s, id, &buf, &len);
  if (rc < 0)
    return rc;
  uint8_t *hashes = len == size ? malloc(bytes) : NULL;
  if (hashes)
    cn_chunk_id_pieces(buf, len, actual, (uint8_t(*)[32])hashes);
  free(buf);
  if (!hashes || memcmp(actual, id, CN_ID_BYTES)) {
    free(hashes);
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(id, CN_ID_BYTES, hex);
    cn_log("chunk %s is corrupt: its content does not hash to its name (%s)", hex,
           cn_store_chunk_path(s, id));
    return cn_fail(EIO, "chunk %s is corrupt", hex);
  }
  *layer = hashes;
  return 0;
}

/* The fan-out directory of id's chunk path exists once this store has made (or met) it:
 * mkdirat calls per object were 4% of a mount's time during `cp -r`. A rename that fails
 * with ENOENT forgets it (fanout_lost), so the retry makes it again. */
static size_t fanout_pair(const uint8_t id[CN_ID_BYTES]) { return id[0]; }

static int ensure_fanout(cn_store *s, const uint8_t id[CN_ID_BYTES], const char *rel)
{
  size_t pair = fanout_pair(id);
  uint8_t bit = (uint8_t)(1u << (pair & 7));
  if (__atomic_load_n(&s->fanout_made[pair >> 3], __ATOMIC_RELAXED) & bit)
    return 0;
  char dir[80];
  snprintf(dir, sizeof dir, "%.9s", rel); /* chunks/ab */
  if (mkdirat(s->home_fd, dir, 0700) < 0 && errno != EEXIST)
    return -errno;
  __atomic_fetch_or(&s->fanout_made[pair >> 3], bit, __ATOMIC_RELAXED);
  return 0;
}

static void fanout_lost(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  size_t pair = fanout_pair(id);
  __atomic_fetch_and(&s->fanout_made[pair >> 3], (uint8_t)~(1u << (pair & 7)), __ATOMIC_RELAXED);
}

int cn_store_put(cn_store *s, const uint8_t *data, size_t len, uint8_t id[CN_ID_BYTES])
{
  if (len == 0)
    return cn_fail(EINVAL, "empty chunks are not stored");
  size_t layer_bytes = (size_t)cn_piece_count(len) * 32;
  uint8_t *layer = layer_bytes ? malloc(layer_bytes) : NULL;
  if (layer_bytes && !layer)
    abort();
  cn_chunk_id_pieces(data, len, id, (uint8_t(*)[32])layer);
  if (cn_store_has(s, id)) {
    free(layer);
    return 0;
  }
  struct staged st;
  memcpy(st.id, id, CN_ID_BYTES);
  pthread_mutex_lock(&s->lock);
  st.serial = s->next_serial++;
  pthread_mutex_unlock(&s->lock);
  char rel[128];
  tmp_relpath(&st, rel);
  int fd = openat(s->home_fd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    free(layer);
    return cn_fail(errno, "cannot stage chunk in %s/tmp: %s", s->home, strerror(errno));
  }
  int rc = write_all(fd, data, len);
  /* start writing the chunk out now, so a flush's syncfs finds less to wait for (a copy's
   * chunks would otherwise all reach the disk at its commit, under the mount's lock) */
  if (!rc)
    sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  if (close(fd) < 0 && !rc)
    rc = -errno;
  if (rc) {
    free(layer);
    unlinkat(s->home_fd, rel, 0);
    return cn_fail(-rc, "cannot write chunk to %s/tmp: %s", s->home, strerror(-rc));
  }
  pthread_mutex_lock(&s->lock);
  if (layer)
    layer_keep(s, id, layer, layer_bytes);
  if (find_pending(s, id)) {
    /* another thread staged the same chunk meanwhile: keep one copy */
    pthread_mutex_unlock(&s->lock);
    unlinkat(s->home_fd, rel, 0);
    return 0;
  }
  if (s->n_pending == s->cap_pending) {
    s->cap_pending = s->cap_pending ? 2 * s->cap_pending : 256;
    s->pending = realloc(s->pending, s->cap_pending * sizeof *s->pending);
    if (!s->pending)
      abort();
  }
  s->pending[s->n_pending++] = st;
  if (2 * s->n_pending + 2 > s->index_cap)
    pending_index_rebuild(s);
  else
    pending_index_add(s, s->n_pending - 1);
  pthread_mutex_unlock(&s->lock);
  /* The flush renames the chunk into its fan-out directories; making them now, on the
   * sealing threads, keeps mkdir out of the flush (a third of a corpus commit's time was
   * ext4 making directories). An empty directory is harmless if no flush ever comes. */
  char final[80];
  store_chunk_relpath(id, final);
  (void)ensure_fanout(s, id, final); /* on failure the flush tries again and reports it */
  return 0;
}

int cn_store_flush(cn_store *s)
{
  pthread_mutex_lock(&s->lock);
  int rc = 0;
  if (s->n_pending && syncfs(s->home_fd) < 0)
    rc = cn_fail(errno, "cannot sync the store: %s", strerror(errno));
  size_t done = 0;
  for (; !rc && done < s->n_pending; done++) {
    char from[128], to[80];
    tmp_relpath(&s->pending[done], from);
    store_chunk_relpath(s->pending[done].id, to);
    int err = ensure_fanout(s, s->pending[done].id, to);
    if (!err && renameat(s->home_fd, from, s->home_fd, to) < 0)
      err = -errno;
    if (err == -ENOENT)
      fanout_lost(s, s->pending[done].id);
    if (err) {
      rc = cn_fail(-err, "cannot move chunk into %s/%s: %s", s->home, to, strerror(-err));
      break; /* this one stays staged, so a later flush retries it */
    }
  }
  /* renamed chunks are in place whatever happens next */
  memmove(s->pending, s->pending + done, (s->n_pending - done) * sizeof *s->pending);
  s->n_pending -= done;
  if (done)
    pending_index_rebuild(s);
  if (done && syncfs(s->home_fd) < 0 && !rc)
    rc = cn_fail(errno, "cannot sync the store: %s", strerror(errno));
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static int read_chunk_file(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t **data, size_t *len)
{
  char rel[128];
  store_chunk_relpath(id, rel);
  int fd = openat(s->home_fd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    pthread_mutex_lock(&s->lock);
    const struct staged *st = find_pending(s, id);
    if (st) {
      tmp_relpath(st, rel);
      fd = openat(s->home_fd, rel, O_RDONLY | O_CLOEXEC);
    }
    pthread_mutex_unlock(&s->lock);
    if (!st) /* it may have been flushed into place just now */
      fd = openat(s->home_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      errno = ENOENT;
  }
  if (fd < 0) {
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(id, CN_ID_BYTES, hex);
    return errno == ENOENT ? cn_fail(ENOENT, "chunk %s is not in the store", hex)
                           : cn_fail(errno, "cannot open chunk %s: %s", hex, strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    close(fd);
    return cn_fail(errno, "cannot stat chunk: %s", strerror(errno));
  }
  size_t size = (size_t)st.st_size;
  uint8_t *buf = malloc(size ? size : 1);
  size_t got = 0;
  while (buf && got < size) {
    ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  if (!buf || got != size) {
    free(buf);
    return cn_fail(EIO, "short read of chunk file %s", rel);
  }
  *data = buf;
  *len = size;
  return 0;
}

/* Moves a corrupt chunk out of the way (kept for inspection; sweep_tmp leaves dot names)
 * and drops its hard links under packs/, so no torrent serves or "has" it any more. */
static int quarantine(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  char rel[80], rel_v2[80], hex[CN_HEX_ID_LEN + 1], dst[128];
  store_chunk_relpath(id, rel);
  store_chunk_relpath_v2(id, rel_v2);
  cn_hex(id, CN_ID_BYTES, hex);
  snprintf(dst, sizeof dst, "tmp/.corrupt.%s", hex);
  if (renameat(s->home_fd, rel, s->home_fd, dst) < 0)
    return -errno;
  int fd = openat(s->home_fd, "packs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    char link_path[400];
    if (e->d_name[0] == '.' || strchr(e->d_name, '.'))
      continue; /* pack directories are bare info-hashes */
    snprintf(link_path, sizeof link_path, "packs/%s/%s", e->d_name, rel);
    unlinkat(s->home_fd, link_path, 0);
    snprintf(link_path, sizeof link_path, "packs/%s/%s", e->d_name, rel_v2);
    unlinkat(s->home_fd, link_path, 0); /* a pack made before format 3 (FORMAT §11.1) */
  }
  if (d)
    closedir(d);
  else if (fd >= 0)
    close(fd);
  return 0;
}

/* The node's callbacks are set and cleared while other threads call them: a callback is
 * loaded once (acquire), after its context was stored (release), and clearing leaves the
 * context, which its owner keeps valid until its own threads have stopped. */
static cn_store_fetch_fn fetcher(cn_store *s)
{
  return __atomic_load_n(&s->fetch, __ATOMIC_ACQUIRE);
}

int cn_store_read(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t **data, size_t *len)
{
  int rc = read_chunk_file(s, id, data, len);
  cn_store_fetch_fn fetch = rc == -ENOENT ? fetcher(s) : NULL;
  if (fetch) {
    /* a failed fetch says why (no pack lists the chunk, no metadata, no peer in time) */
    rc = fetch(id, CN_FETCH_WAIT, s->fetch_ctx);
    rc = rc < 0 ? rc : read_chunk_file(s, id, data, len);
  }
  return rc;
}

int cn_store_get(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t **data, size_t *len)
{
  uint8_t *buf = NULL;
  size_t size = 0;
  int rc = cn_store_read(s, id, &buf, &size);
  if (rc < 0)
    return rc;
  uint8_t actual[CN_ID_BYTES];
  if (size)
    cn_chunk_id(buf, size, actual);
  if (!size || memcmp(actual, id, CN_ID_BYTES) != 0) {
    free(buf);
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(id, CN_ID_BYTES, hex);
    cn_log("chunk %s is corrupt: its content does not hash to its name (%s)", hex,
           cn_store_chunk_path(s, id));
    if (s->repair && quarantine(s, id) == 0)
      return cn_fail(ENOENT, "chunk %s was corrupt; moved to tmp/.corrupt.%s", hex, hex);
    return cn_fail(EIO, "chunk %s is corrupt", hex);
  }
  *data = buf;
  *len = size;
  return 0;
}

void cn_store_prefetch(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  char rel[80];
  store_chunk_relpath(id, rel);
  int fd = openat(s->home_fd, rel, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    close(fd);
  } else {
    cn_store_fetch_fn fetch = fetcher(s);
    if (fetch)
      fetch(id, CN_FETCH_PREFETCH, s->fetch_ctx);
  }
}

void cn_store_set_repair(cn_store *s, int on) { s->repair = on; }

void cn_store_set_fetcher(cn_store *s, cn_store_fetch_fn fn, void *ctx)
{
  if (fn)
    s->fetch_ctx = ctx;
  __atomic_store_n(&s->fetch, fn, __ATOMIC_RELEASE);
}

void cn_store_set_root_listener(cn_store *s, cn_store_root_fn fn, void *ctx)
{
  if (fn)
    s->on_root_ctx = ctx;
  __atomic_store_n(&s->on_root, fn, __ATOMIC_RELEASE);
}

/* Checks one downloaded file against its ID (0, or -EBADMSG / -errno). The same hashing
 * gives the object's piece layer, kept when asked for a pack that lacks it
 * (store_pack_add_layers). */
static int check_download(cn_store *s, const char *path, const uint8_t id[CN_ID_BYTES], int keep_layer)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  uint8_t *buf = NULL, *layer = NULL;
  int rc = fstat(fd, &st) < 0 ? -errno : 0;
  size_t layer_bytes = rc || !keep_layer ? 0 : (size_t)cn_piece_count((uint64_t)st.st_size) * 32;
  if (!rc && st.st_size > 0 && (buf = malloc((size_t)st.st_size)) &&
      pread(fd, buf, (size_t)st.st_size, 0) == st.st_size) {
    uint8_t actual[CN_ID_BYTES];
    if (layer_bytes && !(layer = malloc(layer_bytes)))
      abort();
    cn_chunk_id_pieces(buf, (size_t)st.st_size, actual, (uint8_t(*)[32])layer);
    rc = memcmp(actual, id, CN_ID_BYTES) ? -EBADMSG : 0;
  } else if (!rc) {
    rc = -EIO;
  }
  if (!rc && layer) {
    pthread_mutex_lock(&s->lock);
    layer_keep(s, id, layer, layer_bytes);
    pthread_mutex_unlock(&s->lock);
  } else {
    free(layer);
  }
  free(buf);
  close(fd);
  return rc;
}

/* Like a flush (§7 of FORMAT.md): every file checked, one syncfs so their bytes are
 * durable, then the links, then another syncfs. Returns the first error; files that
 * passed are adopted even when another did not. */
int store_adopt_files(cn_store *s, const char *const *paths, const uint8_t (*ids)[CN_ID_BYTES], size_t n,
                      int keep_layers)
{
  int first = 0;
  uint8_t *ok = calloc(n ? n : 1, 1);
  size_t good = 0;
  for (size_t i = 0; i < n; i++) {
    char rel[80], hex[CN_HEX_ID_LEN + 1];
    store_chunk_relpath(ids[i], rel);
    if (faccessat(s->home_fd, rel, F_OK, 0) == 0)
      continue;
    int rc = check_download(s, paths[i], ids[i], keep_layers);
    cn_hex(ids[i], CN_ID_BYTES, hex);
    if (rc == -EBADMSG)
      rc = cn_fail(EIO, "downloaded chunk %s does not hash to its name", hex);
    else if (rc < 0)
      rc = cn_fail(-rc, "cannot read downloaded chunk %s: %s", hex, strerror(-rc));
    if (rc < 0 && !first)
      first = rc;
    if (!rc) {
      ok[i] = 1;
      good++;
    }
  }
  if (good && syncfs(s->home_fd) < 0 && !first)
    first = cn_fail(errno, "cannot sync the store: %s", strerror(errno));
  for (size_t i = 0; good && i < n; i++) {
    if (!ok[i])
      continue;
    char rel[80], hex[CN_HEX_ID_LEN + 1];
    store_chunk_relpath(ids[i], rel);
    int rc = ensure_fanout(s, ids[i], rel);
    if (!rc && linkat(AT_FDCWD, paths[i], s->home_fd, rel, 0) < 0 && errno != EEXIST)
      rc = -errno;
    if (rc == -ENOENT)
      fanout_lost(s, ids[i]);
    if (rc < 0 && !first) {
      cn_hex(ids[i], CN_ID_BYTES, hex);
      first = cn_fail(-rc, "cannot link chunk %s into the store: %s", hex, strerror(-rc));
    }
  }
  if (good)
    syncfs(s->home_fd); /* the new names survive a crash like any flushed chunk */
  free(ok);
  return first;
}


int cn_store_verify(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  uint8_t *buf;
  size_t len;
  int rc = cn_store_get(s, id, &buf, &len);
  if (!rc)
    free(buf);
  return rc;
}

int cn_store_foreach(cn_store *s, int (*fn)(const uint8_t id[CN_ID_BYTES], void *ctx), void *ctx)
{
  int rc = 0;
  int top = openat(s->home_fd, "chunks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d1 = top >= 0 ? fdopendir(top) : NULL;
  struct dirent *e1;
  while (!rc && d1 && (e1 = readdir(d1))) {
    if (e1->d_name[0] == '.')
      continue;
    int fan = openat(dirfd(d1), e1->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d2 = fan >= 0 ? fdopendir(fan) : NULL;
    struct dirent *e2;
    while (!rc && d2 && (e2 = readdir(d2))) {
      uint8_t id[CN_ID_BYTES];
      if (e2->d_name[0] != '.' && strlen(e2->d_name) == CN_HEX_ID_LEN &&
          cn_unhex(e2->d_name, id, CN_ID_BYTES) == 0)
        rc = fn(id, ctx);
    }
    if (d2)
      closedir(d2);
  }
  if (d1)
    closedir(d1);
  return rc;
}

static MDB_val pk_key(const uint8_t pk[CN_PK_BYTES])
{
  return (MDB_val){.mv_size = CN_PK_BYTES, .mv_data = (void *)pk};
}

int cn_store_root_get(cn_store *s, const uint8_t pk[CN_PK_BYTES], cn_root *root)
{
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc)
    return cn_fail(EIO, "index: %s", mdb_strerror(rc));
  MDB_val k = pk_key(pk), v;
  rc = mdb_get(txn, s->roots, &k, &v);
  int out = 0;
  if (rc == MDB_NOTFOUND)
    out = cn_fail(ENOENT, "no commit yet for this namespace");
  else if (rc)
    out = cn_fail(EIO, "index: %s", mdb_strerror(rc));
  else if (v.mv_size < 8 + CN_SIG_BYTES || v.mv_size - 8 - CN_SIG_BYTES > CN_ROOT_VALUE_MAX)
    out = cn_fail(EIO, "index holds a malformed root record");
  else {
    const uint8_t *p = v.mv_data;
    root->seq = get_u64(p);
    memcpy(root->sig, p + 8, CN_SIG_BYTES);
    root->value_len = v.mv_size - 8 - CN_SIG_BYTES;
    memcpy(root->value, p + 8 + CN_SIG_BYTES, root->value_len);
  }
  mdb_txn_abort(txn);
  return out;
}

uint64_t cn_store_root_seq(cn_store *s, const uint8_t pk[CN_PK_BYTES])
{
  MDB_txn *txn;
  uint64_t seq = 0;
  if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
    return 0;
  MDB_val k = pk_key(pk), v;
  if (mdb_get(txn, s->hwm, &k, &v) == 0 && v.mv_size == 8)
    seq = get_u64(v.mv_data);
  mdb_txn_abort(txn);
  return seq;
}

int cn_store_root_put(cn_store *s, const uint8_t pk[CN_PK_BYTES], const cn_root *root,
                      const uint8_t (*listed)[CN_ID_BYTES], size_t n_listed)
{
  uint8_t msg[1100];
  if (root->value_len > CN_ROOT_VALUE_MAX)
    return cn_fail(EINVAL, "root value too long (%zu bytes)", root->value_len);
  size_t mlen = cn_root_signing_bytes(root->seq, root->value, root->value_len, msg);
  if (cn_verify(pk, msg, mlen, root->sig) < 0)
    return cn_fail(EBADMSG, "root seq %llu is not signed by this namespace's key",
                   (unsigned long long)root->seq);
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (rc)
    return cn_fail(EIO, "index: %s", mdb_strerror(rc));
  MDB_val k = pk_key(pk), v;
  uint64_t hwm = 0;
  if (mdb_get(txn, s->hwm, &k, &v) == 0 && v.mv_size == 8)
    hwm = get_u64(v.mv_data);
  if (root->seq <= hwm) {
    mdb_txn_abort(txn);
    return cn_fail(ESTALE, "refusing root seq %llu: seq %llu was already seen (rollback)",
                   (unsigned long long)root->seq, (unsigned long long)hwm);
  }
  uint8_t rec[8 + CN_SIG_BYTES + CN_ROOT_VALUE_MAX], seqbuf[8];
  put_u64(rec, root->seq);
  memcpy(rec + 8, root->sig, CN_SIG_BYTES);
  memcpy(rec + 8 + CN_SIG_BYTES, root->value, root->value_len);
  put_u64(seqbuf, root->seq);
  v = (MDB_val){.mv_size = 8 + CN_SIG_BYTES + root->value_len, .mv_data = rec};
  rc = mdb_put(txn, s->roots, &k, &v, 0);
  v = (MDB_val){.mv_size = 8, .mv_data = seqbuf};
  if (!rc)
    rc = mdb_put(txn, s->hwm, &k, &v, 0);
  for (size_t i = 0; !rc && i < n_listed; i++) {
    MDB_val ck = {.mv_size = CN_ID_BYTES, .mv_data = (void *)listed[i]};
    rc = mdb_put(txn, s->listed, &ck, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
      rc = 0;
  }
  if (!rc)
    rc = mdb_txn_commit(txn);
  else
    mdb_txn_abort(txn);
  if (rc == MDB_MAP_FULL || rc == ENOSPC)
    return cn_fail(ENOSPC, "index is full: %s", mdb_strerror(rc));
  if (rc)
    return cn_fail(EIO, "index: %s", mdb_strerror(rc));
  cn_store_root_fn on_root = __atomic_load_n(&s->on_root, __ATOMIC_ACQUIRE);
  if (on_root)
    on_root(pk, root->seq, s->on_root_ctx);
  return 0;
}

size_t cn_store_filter_unlisted(cn_store *s, uint8_t (*ids)[CN_ID_BYTES], size_t n)
{
  MDB_txn *txn;
  if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
    return n; /* listing too much is harmless; too little is not */
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    MDB_val k = {.mv_size = CN_ID_BYTES, .mv_data = ids[i]}, v;
    if (mdb_get(txn, s->listed, &k, &v) == MDB_NOTFOUND)
      memmove(ids[kept++], ids[i], CN_ID_BYTES);
  }
  mdb_txn_abort(txn);
  return kept;
}

int cn_store_lock_ns(cn_store *s, const uint8_t pk[CN_PK_BYTES])
{
  char id[CN_NSID_LEN + 1], rel[80];
  cn_nsid(pk, id);
  if (mkdirat(s->home_fd, "locks", 0700) < 0 && errno != EEXIST)
    return cn_fail(errno, "cannot create %s/locks: %s", s->home, strerror(errno));
  snprintf(rel, sizeof rel, "locks/%s", id);
  int fd = openat(s->home_fd, rel, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return cn_fail(errno, "cannot open lock %s: %s", rel, strerror(errno));
  /* another writer (a mount, a long put) may hold it: wait a while, then say so */
  for (int waited_ms = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited_ms += 50) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int e = errno;
      close(fd);
      return cn_fail(e, "cannot lock namespace: %s", strerror(e));
    }
    if (waited_ms >= CN_LOCK_WAIT_MS) {
      close(fd);
      return cn_fail(EBUSY, "namespace %s is being written by another process (a mount or a put)", id);
    }
    usleep(50 * 1000);
  }
  return fd;
}
