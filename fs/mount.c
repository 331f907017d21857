/*
 * The FUSE mount (libfuse3 low-level API, multithreaded).
 *
 * The mount root lists one directory per namespace in the keyring, named by its ID, and
 * petnames as symlinks to them. Looking up a namespace cap string at the root adds it to
 * the keyring and answers with a symlink to the namespace's directory (a symlink, not a
 * second directory, because the kernel refuses two names for one directory). A file or
 * directory cap looked up there shows the snapshot it names, read-only.
 *
 * Files are read straight from their chunks (verified and decrypted, one chunk cached per
 * inode). The first write to a file copies it into an unnamed staging file (O_TMPFILE in
 * $CAIRN_HOME/tmp) that takes all reads and writes until the next commit re-chunks it;
 * content-defined chunking means only the chunks near a change are new. Commits run on
 * fsync, on a timer and at unmount, so a `cp -r` of thousands of files is a handful of
 * commits. A crash loses what was not committed; fsync'd data is committed.
 *
 * One mutex guards the trees and inodes. Inodes live while the kernel holds a lookup
 * reference, a file handle is open, or their staged data is not committed yet; an
 * unlinked entry that still has an inode is detached and owned by it.
 */
#define FUSE_USE_VERSION 312
#include "acl/acl.h"
#include "fs/internal.h"
#include "fs/loop.h"
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_COMMIT_INTERVAL 5
#define RESOLVE_WAIT_MS 10000
#define REFRESH_EVERY_S 1
#define INODE_BUCKETS (1u << 18)
/* Every change to a namespace goes through this mount (the writer lock keeps other
 * processes out, snapshots never change), so the kernel may cache names and attributes. */
#define ATTR_TIMEOUT 3600.0
/* At most this many threads push decrypted chunks into the page cache at once, so that
 * the others stay free to answer the reads those pushes may wait for. Only reads away
 * from where the last one ended push (random reads): the kernel's readahead already asks
 * for what a sequential reader needs, and a push into pages its readahead has locked waits
 * for them (a cold 1 GiB read ran at 38 MiB/s with 128 KiB of readahead, docs/FS.md). */
#define MAX_CACHE_PUSHES 4
/* The readahead the mount asks the kernel for (raise_readahead). */
#define MAX_READAHEAD_BYTES (1u << 20)
/* Chunks read ahead during sequential reads: local ones by the kernel in the background,
 * remote ones by the peer layer (about 8 MiB in flight keeps a loopback transfer busy). */
#define READAHEAD_CHUNKS 32
/* Decrypted chunks kept per open file: the kernel's readahead has several threads reading
 * neighbouring offsets at once, and each chunk should be decrypted only once. */
#define READ_CACHE_CHUNKS 4
/* A file written by appending from empty is sealed behind the writer once this much is
 * unsealed, so a commit (fsync, close) finds most of it sealed already. */
#define SEAL_AHEAD_BYTES (32u << 20)
/* Small closed files wait for the sealing thread in batches: it naps SEAL_NAP_NS between
 * looks while files keep coming (for SEAL_AWAKE_NS after the last), and is signalled only
 * when SEAL_BATCH files wait, or a large file does. Signalling it per file cost a thread
 * wake-up per copied file, on this VM an IPI to the other vCPU. */
#define SEAL_BATCH 32
#define SEAL_NAP_NS (2 * 1000000)
#define SEAL_AWAKE_NS (100ll * 1000000)
/* Staging starts in memory (memfd: no file system inode to allocate and free for each of
 * thousands of small files) and moves to $CAIRN_HOME/tmp when a file grows past this. */
#define MEM_STAGING_MAX (16u << 20)
#define MOUNT_BLKSIZE 131072
/* The timer leaves files that are open for writing out of its commits (they are committed
 * at fsync, close-then-timer or unmount) unless they have been dirty this long. */
#define WRITER_GRACE_NS (60ll * 1000000000)
/* With peers to replicate to, the timer commits a namespace early once this much has been
 * sealed since its last commit: a large copy then reaches the hosts in parts while it
 * runs, not all of it after the copy ends (and a pack of fewer files costs a host less to
 * fetch: libtorrent 2.0.8 walks every file of a torrent for each block it receives). With
 * nobody to replicate to, larger batches cost less. */
#define COMMIT_EARLY_BYTES (16ull << 20)

typedef struct mount_ns mount_ns;
typedef struct inode inode;

/* I_SNAPDIR is a namespace's .snapshots directory; each snapshot in it is the I_NSROOT of
 * a read-only mount_ns opened at that commit. */
enum inode_kind { I_ROOT, I_NSROOT, I_ENTRY, I_LINK, I_SNAPDIR };

/* Room kept free on the store's disk for a commit's own objects (tree nodes, the pack
 * torrent, the root): writes that would eat into it get ENOSPC (room_on_disk). */
#define STORE_RESERVE_BYTES (4u << 20)
/* How long a new staging file waits for room past the staging budget (wait_staging_room). */
#define STAGING_WAIT_S 10
#define MAX_STAGING_WAITERS 8
#define SNAPSHOTS_NAME ".snapshots"
#define SNAPSHOT_NAME_MAX 48

struct inode {
  fuse_ino_t ino;
  uint64_t nlookup;
  unsigned opens;
  enum inode_kind kind;
  mount_ns *mns;
  cn_entry *entry;   /* I_NSROOT, I_ENTRY */
  int detached;      /* unlinked: this inode owns entry */
  char *link_target; /* I_LINK */
  int staging_fd;    /* -1 when the file's chunks are current */
  int staging_on_disk; /* staging moved from memory to $CAIRN_HOME/tmp */
  uint64_t staged_in_memory; /* this file's part of M.staging_memory */
  int dirty;         /* staging holds data not yet committed */
  uint64_t changed_lo, changed_hi; /* byte range changed since the entry's content was made */
  unsigned writers;   /* open handles that can write */
  int64_t dirty_since;
  cn_attr committed;  /* the attributes that go with the entry's committed content */
  inode *next_dirty, *prev_dirty; /* in mns->dirty_files exactly while dirty */
  cn_extent *extents; /* chunk map of a clean file, built on first read */
  size_t n_extents;
  int have_extents;
  struct cached_chunk { uint8_t *data; size_t len, index; uint64_t used; } cache[READ_CACHE_CHUNKS];
  size_t loading[READ_CACHE_CHUNKS]; /* chunk indexes being decrypted, SIZE_MAX for none */
  uint64_t read_gen;  /* bumped whenever extents or cache are dropped */
  size_t ahead_until; /* chunks before this index were read ahead already */
  uint64_t read_end;  /* where the last read of its chunks ended: tells sequential reads */
  /* Sealing ahead (seal_ahead thread): while a file is only appended to from empty, its
   * chunks up to sealed_end are sealed already; any other change drops them (gen), after
   * unseal() has put their bytes back: staging below sealed_end is a hole (punch_sealed).
   * Once its writers have closed it the rest is sealed too (sealed_to_end: the last chunk
   * ends at the end of file, not at a cut, and is put back if the file grows again), so
   * a commit of a copied tree finds its files sealed already. */
  int append_only, sealing, seal_queued, sealing_to_end, sealed_to_end;
  int seal_failed; /* the commit seals the rest and reports what goes wrong */
  uint64_t sealed_end, seal_gen;
  cn_ref *sealed;
  size_t n_sealed;
  inode *next_seal;
  inode *next_hash;
};

struct mount_ns {
  cn_ns *ns;
  char id[CN_NSID_LEN + 1];
  inode *root;
  inode *dirty_files;
  uint64_t begun;    /* commits begun in this mount, plus one: see cn_entry.taken_at */
  int commit_failed; /* the last commit failed: what it held is not durable */
  inode *snapdir;      /* .snapshots, once looked up */
  mount_ns *snapshots; /* opened snapshots (read-only), kept until unmount */
  cn_ns *retired;      /* trees replaced by newer remote commits: inodes may still point
                          into them, so they live until unmount (linked by retired_next) */
  char snapshot_name[SNAPSHOT_NAME_MAX]; /* set on a snapshot */
  int storing; /* a commit is being made durable, without the lock (commit_ns) */
  uint64_t sealed_since_commit; /* bytes sealed ahead since the last commit began */
  mount_ns *next;
};

static struct {
  pthread_mutex_t lock;
  char *home;
  cn_store *store;
  inode *buckets[INODE_BUCKETS];
  fuse_ino_t next_ino;
  inode root;
  mount_ns *namespaces;
  mount_ns *caps; /* views of file and directory caps looked up at the root */
  int64_t started_ns;
  int commit_interval;
  pthread_t timer;
  pthread_cond_t wake;
  int stopping;
  struct fuse_session *se;
  int pushes; /* threads in fuse_lowlevel_notify_store (under lock) */
  pthread_cond_t chunk_loaded; /* a chunk some reader waited for is decrypted (or failed) */
  pthread_t sealer;
  pthread_cond_t seal_work, seal_idle;
  pthread_cond_t commit_stored; /* some namespace's storing ended */
  int commit_early; /* a namespace has COMMIT_EARLY_BYTES sealed and uncommitted */
  inode *seal_queue, *seal_queue_tail; /* oldest first: a timer commit leaves queued files
                                          out, so none may wait behind newer ones */
  unsigned seal_queue_len;
  int seal_asleep;         /* the sealing thread waits for a signal, not a SEAL_NAP_NS nap */
  int64_t seal_queued_ns;  /* when a file was last queued */
  /* Open staging files: each is a file descriptor, and those in memory hold the bytes
   * copied into them until they are sealed. Past either budget (half the descriptor
   * limit, an eighth of memory up to 1 GiB), a new one waits for sealing or a commit to
   * let older ones go (wait_staging_room). */
  unsigned staging_files, staging_budget, staging_waiters;
  uint64_t staging_memory, staging_memory_budget;
  int disk_full_logged; /* room_on_disk said so once: quiet until there is room again */
  pthread_cond_t staging_freed;
  uint64_t read_clock;         /* orders cached chunks by last use */
  cn_node *node; /* the peer network, NULL when offline */
  cn_mount_hooks hooks;
} M;

/* ---- inodes ---- */

static inode *find_inode(fuse_ino_t ino)
{
  if (ino == FUSE_ROOT_ID)
    return &M.root;
  for (inode *n = M.buckets[ino % INODE_BUCKETS]; n; n = n->next_hash)
    if (n->ino == ino)
      return n;
  return NULL;
}

static inode *new_inode(enum inode_kind kind, mount_ns *mns)
{
  inode *n = calloc(1, sizeof *n);
  if (!n)
    abort();
  n->ino = M.next_ino++;
  n->kind = kind;
  n->mns = mns;
  n->staging_fd = -1;
  for (size_t i = 0; i < READ_CACHE_CHUNKS; i++)
    n->loading[i] = SIZE_MAX;
  n->next_hash = M.buckets[n->ino % INODE_BUCKETS];
  M.buckets[n->ino % INODE_BUCKETS] = n;
  return n;
}

static inode *entry_inode(mount_ns *mns, cn_entry *e)
{
  if (!e->inode) {
    inode *n = new_inode(I_ENTRY, mns);
    n->entry = e;
    e->inode = n;
  }
  return e->inode;
}

static void drop_read_state(inode *n)
{
  n->read_gen++;
  free(n->extents);
  n->extents = NULL;
  n->n_extents = 0;
  n->have_extents = 0;
  n->ahead_until = 0;
  n->read_end = 0;
  for (size_t i = 0; i < READ_CACHE_CHUNKS; i++) {
    free(n->cache[i].data);
    n->cache[i].data = NULL;
  }
}

/* Counts the bytes a file holds in memory staging and nowhere else: not those sealed
 * (punched out of it), nor any once its content is taken (a reader may keep it open). */
static void account_staging(inode *n)
{
  uint64_t now = 0;
  if (n->staging_fd >= 0 && !n->staging_on_disk && n->dirty && n->entry->attr.size > n->sealed_end)
    now = n->entry->attr.size - n->sealed_end;
  M.staging_memory += now - n->staged_in_memory;
  if (now < n->staged_in_memory)
    pthread_cond_broadcast(&M.staging_freed);
  n->staged_in_memory = now;
}

/* Forgets what was sealed ahead (a job running now finds seal_gen changed and drops its
 * result); append_only says whether sealing ahead may start again from 0. */
static void reset_sealed(inode *n, int append_only)
{
  n->seal_gen++;
  free(n->sealed);
  n->sealed = NULL;
  n->n_sealed = 0;
  n->sealed_end = 0;
  n->sealed_to_end = 0;
  n->seal_failed = 0;
  n->append_only = append_only;
  account_staging(n); /* unsealed bytes are back in staging */
  if (n->seal_queued)
    for (inode **q = &M.seal_queue, *prev = NULL; *q; prev = *q, q = &(*q)->next_seal)
      if (*q == n) {
        *q = n->next_seal;
        if (M.seal_queue_tail == n)
          M.seal_queue_tail = prev;
        n->seal_queued = 0;
        M.seal_queue_len--;
        break;
      }
}

/* Queues an append-only file for the seal-ahead thread once enough is unsealed, or once
 * its writers have closed it with anything left unsealed past the inline size. */
static void queue_sealing(inode *n)
{
  if (!n->append_only || n->seal_queued || !n->entry || n->sealed_to_end || n->seal_failed)
    return;
  uint64_t size = n->entry->attr.size, unsealed = size - n->sealed_end;
  int closed = !n->writers && n->dirty && !n->detached && size > INLINE_MAX && unsealed;
  if (unsealed < SEAL_AHEAD_BYTES && !closed)
    return;
  n->seal_queued = 1;
  n->next_seal = NULL;
  if (M.seal_queue_tail)
    M.seal_queue_tail->next_seal = n;
  else
    M.seal_queue = n;
  M.seal_queue_tail = n;
  M.seal_queue_len++;
  M.seal_queued_ns = fs_now_ns();
  if (M.seal_asleep || M.seal_queue_len >= SEAL_BATCH || unsealed >= SEAL_AHEAD_BYTES)
    pthread_cond_signal(&M.seal_work);
}

/* Sealed bytes leave the staging file: the chunks hold them, and the flush's syncfs would
 * otherwise write them to disk a second time (2 GiB written for a 1 GiB file). If the file
 * system cannot punch holes the bytes just stay; nothing reads them either way. */
static void punch_sealed(inode *n, uint64_t from, uint64_t to)
{
  if (to > from)
    fallocate(n->staging_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from));
}

/* Copies the sealed chunks' bytes in [off, off + size), all below sealed_end, into out. */
static int read_sealed(inode *n, uint8_t *out, size_t size, uint64_t off)
{
  uint64_t at = 0;
  for (size_t i = 0; i < n->n_sealed && size; i++) {
    uint64_t end = at + n->sealed[i].len;
    if (end > off) {
      uint8_t *plain;
      size_t len;
      int rc = fs_get_object(n->mns->ns, n->sealed[i].id, n->sealed[i].key, &plain, &len);
      if (rc < 0)
        return rc;
      if (len != n->sealed[i].len) {
        free(plain);
        return cn_fail(EIO, "a sealed chunk has the wrong length");
      }
      size_t from = (size_t)(off - at), take = len - from < size ? len - from : size;
      memcpy(out, plain + from, take);
      free(plain);
      out += take;
      off += take;
      size -= take;
    }
    at = end;
  }
  return size ? cn_fail(EIO, "read past the sealed chunks") : 0;
}

/* Writes sealed chunk i's bytes back into the staging file at offset at. */
static int put_back(inode *n, size_t i, uint64_t at)
{
  uint8_t *plain;
  size_t len;
  int rc = fs_get_object(n->mns->ns, n->sealed[i].id, n->sealed[i].key, &plain, &len);
  if (rc == 0 && len != n->sealed[i].len)
    rc = cn_fail(EIO, "a sealed chunk has the wrong length");
  errno = 0;
  if (rc == 0 && pwrite(n->staging_fd, plain, len, (off_t)at) != (ssize_t)len)
    rc = cn_fail(errno ? errno : EIO, "cannot write the staging file: %s", strerror(errno));
  free(plain);
  return rc;
}

/* Puts the sealed bytes below upto back into the staging file, then forgets the sealed
 * chunks (reset_sealed). On failure (a full disk) nothing is forgotten: the chunks still
 * hold the bytes. */
static int unseal(inode *n, uint64_t upto, int append_only)
{
  uint64_t at = 0;
  for (size_t i = 0; i < n->n_sealed && at < upto; i++) {
    int rc = put_back(n, i, at);
    if (rc < 0)
      return rc;
    at += n->sealed[i].len;
  }
  reset_sealed(n, append_only);
  return 0;
}

/* A file sealed to its end grows again: its last chunk ended at the old end of file, not
 * at a content-defined cut, so its bytes go back to staging to be cut with what follows
 * (the chunks before it stay sealed). A seal-to-end job still running is dropped (gen). */
static int reopen_sealed_end(inode *n)
{
  if (n->sealing && n->sealing_to_end)
    n->seal_gen++;
  if (!n->sealed_to_end)
    return 0;
  uint64_t last = n->sealed[n->n_sealed - 1].len;
  int rc = put_back(n, n->n_sealed - 1, n->sealed_end - last);
  if (rc < 0)
    return rc;
  n->n_sealed--;
  n->sealed_end -= last;
  n->sealed_to_end = 0;
  return 0;
}

static void close_staging(inode *n)
{
  if (n->staging_fd >= 0) {
    close(n->staging_fd);
    n->staging_fd = -1;
    account_staging(n);
    M.staging_files--;
    pthread_cond_broadcast(&M.staging_freed);
  }
  reset_sealed(n, 0);
}

static void dirty_push(inode *n)
{
  mount_ns *m = n->mns;
  n->prev_dirty = NULL;
  n->next_dirty = m->dirty_files;
  if (m->dirty_files)
    m->dirty_files->prev_dirty = n;
  m->dirty_files = n;
}

static void dirty_unlink(inode *n)
{
  if (n->prev_dirty)
    n->prev_dirty->next_dirty = n->next_dirty;
  else
    n->mns->dirty_files = n->next_dirty;
  if (n->next_dirty)
    n->next_dirty->prev_dirty = n->prev_dirty;
  n->next_dirty = n->prev_dirty = NULL;
}

/* Frees an inode nobody needs any more: no lookups, no handles, nothing uncommitted. */
static void maybe_free(inode *n)
{
  if (n->kind == I_ROOT || n->kind == I_NSROOT || n->kind == I_SNAPDIR || n->nlookup || n->opens)
    return;
  if (n->dirty && !n->detached)
    return; /* the commit needs its staged data */
  if (n->sealing)
    return; /* the seal-ahead thread frees it when its job ends */
  inode **pp = &M.buckets[n->ino % INODE_BUCKETS];
  while (*pp != n)
    pp = &(*pp)->next_hash;
  *pp = n->next_hash;
  if (n->dirty)
    dirty_unlink(n);
  if (n->entry) {
    n->entry->inode = NULL;
    if (n->detached) {
      fs_entry_free(n->entry);
      free(n->entry);
    }
  }
  close_staging(n);
  drop_read_state(n);
  free(n->link_target);
  free(n);
}

/* An entry left its tree (replaced or removed by cn_ns calls) while the kernel still
 * knows its inode: the inode owns it from now on (fs_entry_drop). Under M.lock. */
static void orphan_entry(cn_entry *e)
{
  inode *n = e->inode;
  n->detached = 1;
  e->attr.ctime_ns = fs_now_ns();
  maybe_free(n);
}

/* Job results (/compute/NAME/status, log, out and everything in out) are written by the
 * job runner only (docs/COMPUTE.md): users get EROFS for making or changing them, but may
 * remove them (a removed result is made again). */
static int is_job_dir(const cn_entry *e)
{
  const cn_entry *compute = e && e->in_dir ? e->in_dir->owner : NULL;
  const cn_entry *top = compute && compute->in_dir ? compute->in_dir->owner : NULL;
  return top && top->inode && ((inode *)top->inode)->kind == I_NSROOT && !strcmp(compute->name, "compute");
}

static int is_result_name(const char *name)
{
  return !strcmp(name, "status") || !strcmp(name, "log") || !strcmp(name, "out");
}

static int is_job_result(const cn_entry *e)
{
  for (; e && e->in_dir; e = e->in_dir->owner)
    if (is_result_name(e->name) && is_job_dir(e->in_dir->owner))
      return 1;
  return 0;
}

/* May a user make or change the entry name in the directory owned by dir? */
static int result_guard(const cn_entry *dir, const char *name)
{
  return is_job_result(dir) || (name && is_job_dir(dir) && is_result_name(name)) ? -EROFS : 0;
}

/* ---- attributes ---- */

static mode_t type_bits(cn_ftype t)
{
  switch (t) {
  case CN_DIR: return S_IFDIR;
  case CN_SYMLINK: return S_IFLNK;
  case CN_FIFO: return S_IFIFO;
  case CN_SOCKET: return S_IFSOCK;
  default: return S_IFREG;
  }
}

static struct timespec ts_of(int64_t ns)
{
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  if (ts.tv_nsec < 0) {
    ts.tv_sec--;
    ts.tv_nsec += 1000000000;
  }
  return ts;
}

static int64_t ns_of(struct timespec ts)
{
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t count_namespaces(void)
{
  size_t n = 0;
  for (mount_ns *m = M.namespaces; m; m = m->next)
    n++;
  return n;
}

static void fill_stat(inode *n, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_ino = n->ino;
  st->st_blksize = MOUNT_BLKSIZE;
  if (n->kind == I_ROOT) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2 + count_namespaces();
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_atim = st->st_mtim = st->st_ctim = ts_of(M.started_ns);
    return;
  }
  if (n->kind == I_LINK) {
    st->st_mode = S_IFLNK | 0777;
    st->st_nlink = 1;
    st->st_size = (off_t)strlen(n->link_target);
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_atim = st->st_mtim = st->st_ctim = ts_of(M.started_ns);
    return;
  }
  if (n->kind == I_SNAPDIR) {
    const cn_attr *ra = &n->mns->ns->root.attr;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    st->st_uid = ra->uid;
    st->st_gid = ra->gid;
    st->st_atim = st->st_mtim = st->st_ctim = ts_of(ra->mtime_ns);
    return;
  }
  const cn_attr *a = &n->entry->attr;
  st->st_mode = type_bits(a->type) | a->mode;
  st->st_uid = a->uid;
  st->st_gid = a->gid;
  st->st_size = (off_t)a->size;
  st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
  st->st_atim = ts_of(a->atime_ns);
  st->st_mtim = ts_of(a->mtime_ns);
  st->st_ctim = ts_of(a->ctime_ns);
  st->st_nlink = n->detached ? 0 : 1; /* unlinked but still open */
  if (a->type == CN_DIR) {
    /* A directory of a read-only namespace that has not been fetched yet says 1, "not
     * counted" (as btrfs always does; find then counts no subdirectories on): fetching it
     * for its count would make a lookup of its name, and with it every other lookup in
     * the parent (the kernel serialises them), wait on peers. It is fetched when opened. */
    if (n->mns->ns->key.access == CN_ACCESS_READ && !n->entry->dir)
      st->st_nlink = 1;
    else if (fs_dir_load(n->mns->ns, n->entry, n->entry->in_dir) == 0)
      st->st_nlink = 2 + n->entry->dir->subdirs;
    else
      st->st_nlink = 2;
  }
}

/* An answer worked out under M.lock and sent once it is released. Sending wakes the
 * caller; while the lock was held across that, the sealing thread waited for it so often
 * in a copy of many small files that each file cost several more thread wake-ups. */
typedef struct {
  int err; /* the error to answer, or 0 for the entry */
  struct fuse_entry_param e;
} entry_answer;

static void set_entry(entry_answer *a, inode *n)
{
  memset(a, 0, sizeof *a);
  n->nlookup++;
  a->e.ino = n->ino;
  a->e.generation = 1;
  a->e.attr_timeout = ATTR_TIMEOUT;
  a->e.entry_timeout = ATTR_TIMEOUT;
  fill_stat(n, &a->e.attr);
}

/* Whether every change to m's names goes through this mount: a namespace it writes (the
 * writer lock keeps other processes out; changes made for the control socket and the job
 * runner invalidate the names they touch), not a snapshot. */
static int writes_here(const mount_ns *m)
{
  return m->ns->key.access == CN_ACCESS_WRITE && !m->snapshot_name[0];
}

/* "No such name", which the kernel may remember like a name (a negative entry): a cp -r
 * then looks each new name up once, not three times, before creating it. */
static void set_no_entry(entry_answer *a)
{
  memset(a, 0, sizeof *a);
  a->e.entry_timeout = ATTR_TIMEOUT;
}

static void send_entry(fuse_req_t req, const entry_answer *a)
{
  if (a->err)
    fuse_reply_err(req, a->err);
  else
    fuse_reply_entry(req, &a->e);
}

static int err_of(int rc)
{
  return rc < 0 ? -rc : EIO;
}

/* ---- namespaces at the mount root ---- */

static mount_ns *find_ns(const uint8_t pk[CN_PK_BYTES])
{
  for (mount_ns *m = M.namespaces; m; m = m->next)
    if (!memcmp(m->ns->key.pk, pk, CN_PK_BYTES))
      return m;
  return NULL;
}

static int attach_ns(const cn_nskey *key, mount_ns **out)
{
  mount_ns *m = find_ns(key->pk);
  if (m) {
    *out = m;
    return 0;
  }
  cn_ns *ns;
  if (M.node) {
    cn_node_follow(M.node, key->pk, cn_hosted_has(M.store, key->pk) ? CN_FOLLOW_HOST : CN_FOLLOW_READ);
    /* a namespace never seen here: wait for its root rather than show it empty */
    if (key->access != CN_ACCESS_WRITE && cn_store_root_seq(M.store, key->pk) == 0) {
      cn_loop_yield(); /* up to RESOLVE_WAIT_MS: other requests go to another thread */
      if (cn_node_resolve(M.node, key->pk, RESOLVE_WAIT_MS) < 0)
        cn_log("namespace: %s; showing it empty until one arrives", cn_err());
    }
  }
  int rc = cn_ns_open(M.store, key, key->access == CN_ACCESS_WRITE, &ns);
  if (rc < 0)
    return rc;
  if (key->access >= CN_ACCESS_READ && (rc = fs_dir_load(ns, &ns->root, NULL)) < 0) {
    cn_ns_close(ns);
    return rc;
  }
  m = calloc(1, sizeof *m);
  if (!m)
    abort();
  m->ns = ns;
  m->begun = 1; /* never 0, which every entry not taken in this mount has */
  cn_nsid(key->pk, m->id);
  m->root = new_inode(I_NSROOT, m);
  m->root->entry = &ns->root;
  ns->root.inode = m->root;
  m->next = M.namespaces;
  M.namespaces = m;
  *out = m;
  return 0;
}

/* Opens every namespace in the keyring that is not attached yet. */
static void attach_keyring(void)
{
  cn_keyring kr;
  if (cn_keyring_load(M.home, 0, &kr) < 0) {
    cn_log("cannot read the keyring: %s", cn_err());
    return;
  }
  for (size_t i = 0; i < kr.n; i++) {
    mount_ns *m;
    if (kr.entries[i].key.access < CN_ACCESS_READ)
      continue; /* a verify-cap can be hosted, not browsed */
    if (attach_ns(&kr.entries[i].key, &m) < 0) {
      char id[CN_NSID_LEN + 1];
      cn_nsid(kr.entries[i].key.pk, id);
      cn_log("namespace %s is not shown: %s", id, cn_err());
    }
  }
  cn_keyring_free(&kr);
}

/* A link inode at the root: a petname or a cap string, pointing at a namespace ID. */
static inode *root_link(const char *target)
{
  inode *n = new_inode(I_LINK, NULL);
  n->link_target = strdup(target);
  return n;
}

static int petname_target(const char *name, char id[CN_NSID_LEN + 1])
{
  cn_keyring kr;
  int found = 0;
  if (cn_keyring_load(M.home, 0, &kr) < 0)
    return 0;
  for (size_t i = 0; i < kr.n && !found; i++)
    if (kr.entries[i].petname[0] && !strcmp(kr.entries[i].petname, name) &&
        find_ns(kr.entries[i].key.pk)) {
      cn_nsid(kr.entries[i].key.pk, id);
      found = 1;
    }
  cn_keyring_free(&kr);
  return found;
}

static int is_object_cap(enum cn_cap_kind k)
{
  return k == CN_CAP_FILE_READ || k == CN_CAP_FILE_VERIFY || k == CN_CAP_DIR_READ ||
         k == CN_CAP_DIR_VERIFY;
}

/* A file or directory cap looked up at the root: its snapshot, read-only, under the cap's
 * own name: a directory cap as a directory, a file cap as the file itself, so that cat,
 * cp and ls work on MNT/<cap> directly. Nothing is added to the keyring; each view is kept
 * until unmount (like snapshots) and is not listed at the root. */
static void lookup_object_cap(entry_answer *a, const cn_cap *cap)
{
  mount_ns *m = M.caps;
  while (m && (m->ns->cap.kind != cap->kind || memcmp(m->ns->cap.a, cap->a, sizeof cap->a) ||
               memcmp(m->ns->cap.b, cap->b, sizeof cap->b)))
    m = m->next;
  if (!m) {
    cn_ns *ns;
    int rc = cn_ns_open_cap(M.store, cap, &ns);
    if (rc < 0) {
      cn_log("lookup of a '%s' cap at the mount root: %s", cn_cap_kind_name(cap->kind), cn_err());
      a->err = rc == -EACCES ? EACCES : rc == -EIO ? EIO : ENOENT;
      return;
    }
    m = calloc(1, sizeof *m);
    if (!m)
      abort();
    m->ns = ns;
    m->begun = 1;
    snprintf(m->id, sizeof m->id, "%s-cap", cn_cap_kind_name(cap->kind)); /* for log lines */
    m->root = new_inode(I_NSROOT, m);
    m->root->entry = &ns->root;
    ns->root.inode = m->root;
    m->next = M.caps;
    M.caps = m;
  }
  set_entry(a, cn_ns_cap_file(m->ns) ? entry_inode(m, m->ns->root.dir->ents[0]) : m->root);
}

/* A cap string looked up at the root: add it to the keyring and show its namespace. */
static void lookup_cap(entry_answer *a, const char *name)
{
  cn_cap cap;
  cn_nskey key;
  if (cn_cap_parse(name, &cap) == 0 && is_object_cap(cap.kind)) {
    lookup_object_cap(a, &cap);
    return;
  }
  if (cn_cap_parse(name, &cap) < 0 || cn_nskey_from_cap(&key, &cap) < 0) {
    cn_log("lookup of '%.24s…' at the mount root: %s", name, cn_err());
    a->err = ENOENT;
    return;
  }
  if (key.access < CN_ACCESS_READ) {
    cn_log("lookup of a verify-cap at the mount root: a verify-cap cannot be read (use cairn host)");
    a->err = ENOENT;
    return;
  }
  cn_keyring kr;
  int rc = cn_keyring_load(M.home, 1, &kr);
  if (!rc)
    rc = cn_keyring_add(&kr, &key, "");
  if (!rc)
    rc = cn_keyring_save(&kr);
  cn_keyring_free(&kr);
  mount_ns *m;
  if (!rc)
    rc = attach_ns(&key, &m);
  if (rc < 0) {
    cn_log("cannot add the namespace named by a cap: %s", cn_err());
    a->err = err_of(rc);
    return;
  }
  inode *link = root_link(m->id);
  set_entry(a, link);
}

/* ---- snapshots ---- */

static void snapshot_name(uint64_t seq, int64_t time_ns, char out[SNAPSHOT_NAME_MAX])
{
  time_t t = (time_t)(time_ns / 1000000000);
  struct tm tm;
  char when[24];
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
  snprintf(out, SNAPSHOT_NAME_MAX, "%llu-%s", (unsigned long long)seq, when);
}

typedef struct {
  char **names;
  size_t n, cap;
  const char *want; /* when set: stop at the commit with this name */
  uint64_t found_seq;
} history_list;

static int collect_snapshot(uint64_t seq, int64_t time_ns, const uint8_t id[CN_ID_BYTES], void *ctx)
{
  history_list *h = ctx;
  char name[SNAPSHOT_NAME_MAX];
  snapshot_name(seq, time_ns, name);
  if (h->want) {
    if (strcmp(name, h->want))
      return 0;
    h->found_seq = seq;
    return 1;
  }
  if (h->n == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 16;
    h->names = realloc(h->names, h->cap * sizeof *h->names);
    if (!h->names)
      abort();
  }
  h->names[h->n++] = strdup(name);
  return 0;
}

/* The snapshot called name in m's .snapshots, opened read-only on first use. */
static int attach_snapshot(mount_ns *m, const char *name, mount_ns **out)
{
  for (mount_ns *snap = m->snapshots; snap; snap = snap->next)
    if (!strcmp(snap->snapshot_name, name)) {
      *out = snap;
      return 0;
    }
  history_list h = {.want = name};
  int rc = cn_ns_history(m->ns, collect_snapshot, &h);
  if (rc < 0)
    return rc;
  if (!h.found_seq)
    return -ENOENT;
  cn_nskey key = m->ns->key;
  cn_nskey_diminish(&key, CN_ACCESS_READ);
  cn_ns *ns;
  rc = cn_ns_open_at(M.store, &key, h.found_seq, &ns);
  cn_nskey_wipe(&key);
  if (rc < 0)
    return rc;
  if ((rc = fs_dir_load(ns, &ns->root, NULL)) < 0) {
    cn_ns_close(ns);
    return rc;
  }
  mount_ns *snap = calloc(1, sizeof *snap);
  snap->ns = ns;
  memcpy(snap->id, m->id, sizeof snap->id);
  snprintf(snap->snapshot_name, sizeof snap->snapshot_name, "%s", name);
  snap->root = new_inode(I_NSROOT, snap);
  snap->root->entry = &ns->root;
  ns->root.inode = snap->root;
  snap->next = m->snapshots;
  m->snapshots = snap;
  *out = snap;
  return 0;
}

static inode *snapdir_inode(mount_ns *m)
{
  if (!m->snapdir)
    m->snapdir = new_inode(I_SNAPDIR, m);
  return m->snapdir;
}

/* ---- lookups ---- */

/* Loads the directory entry e stands for, in a namespace held read-only, with M.lock
 * dropped: its nodes may have to come from peers, for up to the node's chunk timeout, and
 * the mount must answer other requests meanwhile (read_chunks does the same for file
 * data). Such a tree changes only by refresh_all's swap, and retired trees live until
 * unmount, so e stays valid. Returns 1 when it dropped the lock (the caller looks its
 * state up again), 0 when there was nothing to load this way, or a negative errno. */
static int load_dir_unlocked(mount_ns *m, cn_entry *e)
{
  if (!e || e->attr.type != CN_DIR || e->dir || m->ns->key.access != CN_ACCESS_READ)
    return 0;
  cn_ns *ns = m->ns;
  cn_dir *parent = e->in_dir, *d;
  cn_loop_yield(); /* and other requests go to another thread */
  pthread_mutex_unlock(&M.lock);
  int rc = fs_dir_load_apart(ns, e, &d);
  pthread_mutex_lock(&M.lock);
  if (rc < 0)
    return rc;
  fs_dir_attach(e, parent, d);
  return 1;
}

/* Before a request that reads the directory ino stands for: loads it, if it belongs to a
 * read-only namespace and is not loaded yet, without M.lock (load_dir_unlocked). Called
 * and returns with it held. */
static int load_dir_of(fuse_ino_t ino)
{
  int rc;
  do {
    inode *n = find_inode(ino);
    if (!n || (n->kind != I_NSROOT && n->kind != I_ENTRY))
      return 0;
    rc = load_dir_unlocked(n->mns, n->entry);
  } while (rc == 1);
  return rc;
}

/* The directory an inode stands for, loaded; NULL with errno-style rc otherwise. */
static int dir_of(inode *n, cn_dir **out)
{
  if (n->kind != I_NSROOT && n->kind != I_ENTRY)
    return -ENOTDIR;
  if (n->entry->attr.type != CN_DIR)
    return -ENOTDIR;
  if (n->mns->ns->key.access < CN_ACCESS_READ)
    return -EACCES;
  int rc = fs_dir_load(n->mns->ns, n->entry, n->entry->in_dir);
  if (rc < 0)
    return rc;
  *out = n->entry->dir;
  return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  entry_answer a = {0};
  pthread_mutex_lock(&M.lock);
  int loaded = load_dir_of(parent);
  inode *p = find_inode(parent);
  if (loaded < 0) {
    a.err = -loaded == EIO || -loaded == EBADMSG ? EIO : -loaded;
  } else if (!p) {
    a.err = ENOENT;
  } else if (strlen(name) > 255) {
    a.err = ENAMETOOLONG;
  } else if (p->kind == I_ROOT) {
    mount_ns *m;
    char id[CN_NSID_LEN + 1];
    int found = 0;
    for (m = M.namespaces; m && !found; m = found ? m : m->next)
      found = !strcmp(m->id, name);
    if (found)
      set_entry(&a, m->root);
    else if (!strncasecmp(name, "cairn-", 6))
      lookup_cap(&a, name);
    else if (petname_target(name, id))
      set_entry(&a, root_link(id));
    else
      a.err = ENOENT;
  } else if (p->kind == I_SNAPDIR) {
    mount_ns *snap;
    int rc = attach_snapshot(p->mns, name, &snap);
    if (rc < 0)
      a.err = -rc == ENOENT ? ENOENT : EIO;
    else
      set_entry(&a, snap->root);
  } else if (p->kind == I_NSROOT && !p->mns->snapshot_name[0] && !p->mns->ns->from_cap &&
             !strcmp(name, SNAPSHOTS_NAME)) {
    set_entry(&a, snapdir_inode(p->mns));
  } else {
    cn_dir *d;
    int rc = dir_of(p, &d);
    cn_entry *e = rc ? NULL : fs_dir_find(d, name, NULL);
    if (rc < 0)
      a.err = -rc;
    else if (!e && writes_here(p->mns))
      set_no_entry(&a);
    else if (!e)
      a.err = ENOENT;
    else
      set_entry(&a, entry_inode(p->mns, e));
  }
  pthread_mutex_unlock(&M.lock);
  send_entry(req, &a);
}

static void forget_one(fuse_ino_t ino, uint64_t count)
{
  inode *n = find_inode(ino);
  if (!n || n->kind == I_ROOT)
    return;
  n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
  maybe_free(n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
  pthread_mutex_lock(&M.lock);
  forget_one(ino, nlookup);
  pthread_mutex_unlock(&M.lock);
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
  pthread_mutex_lock(&M.lock);
  for (size_t i = 0; i < count; i++)
    forget_one(forgets[i].ino, forgets[i].nlookup);
  pthread_mutex_unlock(&M.lock);
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct stat st;
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  if (n)
    fill_stat(n, &st);
  pthread_mutex_unlock(&M.lock);
  if (n)
    fuse_reply_attr(req, &st, ATTR_TIMEOUT);
  else
    fuse_reply_err(req, ENOENT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  if (!n)
    fuse_reply_err(req, ENOENT);
  else if (n->kind == I_LINK)
    fuse_reply_readlink(req, n->link_target);
  else if (n->kind != I_ENTRY || n->entry->attr.type != CN_SYMLINK)
    fuse_reply_err(req, EINVAL);
  else {
    char *target = strndup((const char *)n->entry->content.p, n->entry->content.len);
    fuse_reply_readlink(req, target);
    free(target);
  }
  pthread_mutex_unlock(&M.lock);
}

/* ---- file data ---- */

/* Records that bytes [lo, hi) changed; the next commit re-chunks only around them. */
static void mark_file_dirty(inode *n, uint64_t lo, uint64_t hi)
{
  if (lo < n->changed_lo)
    n->changed_lo = lo;
  if (hi > n->changed_hi)
    n->changed_hi = hi;
  if (!n->dirty) {
    n->dirty = 1;
    n->dirty_since = fs_now_ns();
    dirty_push(n);
  }
  account_staging(n);
  if (n->entry->in_dir)
    fs_mark_dirty(n->mns->ns, n->entry->in_dir);
}

static int staging_full(int on_disk)
{
  return M.staging_files >= M.staging_budget ||
         (!on_disk && M.staging_memory >= M.staging_memory_budget);
}

/* Past the staging budgets, waits (releasing the lock) until sealing or a commit closes
 * staging files, for up to STAGING_WAIT_S: a copy of many files then goes at the pace of
 * sealing instead of failing with EMFILE or filling memory. Staging held by files still
 * open for writing is let go by nothing, hence the bound; what follows may then fail
 * with EMFILE. */
static void wait_staging_room(int on_disk)
{
  /* the request threads are few (fs/loop.c): leave some free for the releases and
   * commits that make room */
  if (!staging_full(on_disk) || M.staging_waiters >= MAX_STAGING_WAITERS)
    return;
  M.staging_waiters++;
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += STAGING_WAIT_S;
  while (staging_full(on_disk) && !M.stopping) {
    if (M.seal_queue) {
      pthread_cond_signal(&M.seal_work); /* sealing closes staging: no need to wait a nap */
    } else if (!M.commit_early) {
      /* nothing is left to seal: closed files that were not appended to wait for a commit */
      M.commit_early = 1;
      pthread_cond_signal(&M.wake);
    }
    if (pthread_cond_timedwait(&M.staging_freed, &M.lock, &deadline) == ETIMEDOUT)
      break;
  }
  M.staging_waiters--;
}

/* Gives a file a staging copy; keep_bytes of the current content are copied into it. */
static int ensure_staging(inode *n, uint64_t keep_bytes)
{
  if (n->staging_fd >= 0)
    return 0;
  wait_staging_room(n->entry->attr.size > MEM_STAGING_MAX);
  if (n->staging_fd >= 0)
    return 0; /* another request made it meanwhile */
  int on_disk = n->entry->attr.size > MEM_STAGING_MAX;
  int fd;
  if (on_disk) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tmp", M.home);
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  } else {
    fd = memfd_create("cairn-staging", MFD_CLOEXEC);
  }
  if (fd < 0)
    return cn_fail(errno, "cannot create a staging file: %s", strerror(errno));
  int rc = 0;
  if (keep_bytes > 0 && n->entry->attr.size > 0) {
    const uint8_t *inl = fs_file_inline(n->entry);
    if (inl)
      rc = pwrite(fd, inl, n->entry->attr.size, 0) == (ssize_t)n->entry->attr.size ? 0 : -EIO;
    else
      rc = fs_file_read(n->mns->ns, n->entry, fd);
  }
  if (rc < 0) {
    close(fd);
    return rc;
  }
  n->staging_fd = fd;
  M.staging_files++;
  n->staging_on_disk = on_disk;
  account_staging(n);
  reset_sealed(n, keep_bytes == 0 || n->entry->attr.size == 0);
  n->changed_lo = UINT64_MAX;
  n->changed_hi = 0;
  n->committed = n->entry->attr;
  drop_read_state(n);
  return 0;
}

/* Moves a growing file's staging from memory to disk before it passes MEM_STAGING_MAX. */
static int staging_room(inode *n, uint64_t end)
{
  if (n->staging_on_disk || end <= MEM_STAGING_MAX)
    return 0;
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/tmp", M.home);
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    return cn_fail(errno, "cannot create a staging file in %s: %s", dir, strerror(errno));
  struct stat st;
  int rc = fstat(n->staging_fd, &st) < 0 ? -errno : 0;
  /* at most MEM_STAGING_MAX bytes, memory to disk: a plain copy (copy_file_range does not
   * cross file systems on every kernel) */
  uint8_t *buf = rc ? NULL : malloc(1u << 20);
  for (off_t at = 0; !rc && at < st.st_size;) {
    ssize_t got = pread(n->staging_fd, buf, 1u << 20, at);
    if (got < 0)
      rc = -errno;
    else if (got == 0)
      rc = -EIO; /* shorter than fstat said */
    else if (pwrite(fd, buf, (size_t)got, at) != got)
      rc = -EIO;
    at += got > 0 ? got : 0;
  }
  free(buf);
  if (!rc && ftruncate(fd, st.st_size) < 0) /* keeps a trailing hole */
    rc = -errno;
  if (rc < 0) {
    close(fd);
    return cn_fail(-rc, "cannot move staging to disk: %s", strerror(-rc));
  }
  close(n->staging_fd);
  n->staging_fd = fd;
  n->staging_on_disk = 1;
  account_staging(n);
  return 0;
}

/* Reads from a file's chunks; called and returns with M.lock held. A chunk that must be
 * fetched is verified and decrypted with the lock released, so reads run in parallel;
 * -EAGAIN means the file changed meanwhile and the read must start over. When a chunk
 * was decrypted, *fresh gets a copy (at *fresh_off) for the caller to give to the page
 * cache. */
static struct cached_chunk *find_cached(inode *n, size_t index)
{
  for (size_t i = 0; i < READ_CACHE_CHUNKS; i++)
    if (n->cache[i].data && n->cache[i].index == index)
      return &n->cache[i];
  return NULL;
}

static int read_chunks(inode *n, uint8_t *out, size_t size, uint64_t off, size_t *got,
                       uint8_t **fresh, size_t *fresh_len, uint64_t *fresh_off)
{
  cn_entry *e = n->entry;
  *got = 0;
  if (off >= e->attr.size)
    return 0;
  if (size > e->attr.size - off)
    size = (size_t)(e->attr.size - off);
  const uint8_t *inl = fs_file_inline(e);
  if (inl) {
    memcpy(out, inl + off, size);
    *got = size;
    return 0;
  }
  if (!n->have_extents) {
    int rc = fs_file_extents(n->mns->ns, e, &n->extents, &n->n_extents);
    if (rc < 0)
      return rc;
    n->have_extents = 1;
  }
  while (*got < size) {
    uint64_t pos = off + *got;
    size_t lo = 0, hi = n->n_extents;
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (n->extents[mid].offset <= pos)
        lo = mid;
      else
        hi = mid;
    }
    cn_extent x = n->extents[lo];
    struct cached_chunk *c = find_cached(n, lo);
    if (!c) {
      uint64_t gen = n->read_gen;
      size_t slot = READ_CACHE_CHUNKS;
      for (size_t i = 0; i < READ_CACHE_CHUNKS; i++) {
        if (n->loading[i] == lo) { /* another thread is decrypting it: wait for that */
          pthread_cond_wait(&M.chunk_loaded, &M.lock);
          if (n->read_gen != gen)
            return -EAGAIN;
          slot = READ_CACHE_CHUNKS + 1;
          break;
        }
        if (n->loading[i] == SIZE_MAX && slot == READ_CACHE_CHUNKS)
          slot = i;
      }
      if (slot == READ_CACHE_CHUNKS + 1)
        continue;
      if (slot < READ_CACHE_CHUNKS)
        n->loading[slot] = lo;
      uint8_t *plain;
      size_t len;
      /* reading on from the previous chunk: have the next few read (or fetched) meanwhile,
       * each once: the window moves on by a chunk per chunk read */
      size_t ahead_from = lo + 1, ahead_to = lo + 1;
      if (lo > 0 && find_cached(n, lo - 1)) {
        ahead_to = lo + 1 + READAHEAD_CHUNKS < n->n_extents ? lo + 1 + READAHEAD_CHUNKS : n->n_extents;
        if (n->ahead_until > ahead_from && n->ahead_until <= ahead_to)
          ahead_from = n->ahead_until;
        n->ahead_until = ahead_to;
      }
      size_t ahead = ahead_to > ahead_from ? ahead_to - ahead_from : 0;
      uint8_t next[READAHEAD_CHUNKS][CN_ID_BYTES];
      for (size_t i = 0; i < ahead; i++)
        memcpy(next[i], n->extents[ahead_from + i].ref.id, CN_ID_BYTES);
      pthread_mutex_unlock(&M.lock);
      for (size_t i = 0; i < ahead; i++)
        cn_store_prefetch(M.store, next[i]);
      int rc = fs_get_object(n->mns->ns, x.ref.id, x.ref.key, &plain, &len);
      pthread_mutex_lock(&M.lock);
      if (slot < READ_CACHE_CHUNKS)
        n->loading[slot] = SIZE_MAX;
      pthread_cond_broadcast(&M.chunk_loaded);
      if (rc < 0)
        return rc;
      if (len != x.ref.len) {
        free(plain);
        return cn_fail(EIO, "chunk has the wrong length");
      }
      if (n->read_gen != gen) {
        free(plain);
        return -EAGAIN;
      }
      if (fresh && !*fresh && (*fresh = malloc(len))) {
        memcpy(*fresh, plain, len);
        *fresh_len = len;
        *fresh_off = x.offset;
      }
      c = &n->cache[0];
      for (size_t i = 1; i < READ_CACHE_CHUNKS; i++)
        if (!n->cache[i].data || (c->data && n->cache[i].used < c->used))
          c = &n->cache[i];
      free(c->data);
      c->data = plain;
      c->len = len;
      c->index = lo;
    }
    c->used = ++M.read_clock;
    size_t in_chunk = (size_t)(pos - x.offset);
    size_t take = c->len - in_chunk;
    if (take > size - *got)
      take = size - *got;
    memcpy(out + *got, c->data + in_chunk, take);
    *got += take;
  }
  return 0;
}

/* A read within the readahead of where the file's last read ended continues a sequential
 * reader, whom the kernel's own readahead serves. */
static int reads_on(const inode *n, uint64_t off)
{
  return off + MAX_READAHEAD_BYTES >= n->read_end && off <= n->read_end + MAX_READAHEAD_BYTES;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  uint8_t *buf = malloc(size ? size : 1), *fresh = NULL;
  size_t got = 0, fresh_len = 0;
  uint64_t fresh_off = 0;
  int rc = 0, push = 0;
  pthread_mutex_lock(&M.lock);
  do {
    inode *n = find_inode(ino);
    rc = 0;
    if (!n || n->kind != I_ENTRY) {
      rc = -EISDIR;
    } else if (n->staging_fd >= 0) {
      size_t below = (uint64_t)off < n->sealed_end ? (size_t)(n->sealed_end - (uint64_t)off) : 0;
      if (below > size)
        below = size;
      if (below && (rc = read_sealed(n, buf, below, (uint64_t)off)) < 0)
        break;
      ssize_t r = below == size ? 0 : pread(n->staging_fd, buf + below, size - below, off + (off_t)below);
      if (r < 0)
        rc = -errno;
      else
        got = below + (size_t)r;
    } else {
      int may_push = !reads_on(n, (uint64_t)off) && M.pushes < MAX_CACHE_PUSHES;
      free(fresh);
      fresh = NULL;
      rc = read_chunks(n, buf, size, (uint64_t)off, &got, may_push ? &fresh : NULL, &fresh_len,
                       &fresh_off);
      if (rc == 0)
        n->read_end = (uint64_t)off + got;
    }
  } while (rc == -EAGAIN);
  push = rc == 0 && fresh && M.pushes < MAX_CACHE_PUSHES;
  M.pushes += push;
  pthread_mutex_unlock(&M.lock);
  if (rc < 0)
    fuse_reply_err(req, -rc == EIO || -rc == EBADMSG ? EIO : -rc);
  else
    fuse_reply_buf(req, (const char *)buf, got);
  free(buf);
  if (push) {
    /* a chunk is decrypted whole anyway: give the kernel all of it, so the next reads in
     * it (random 4 KiB reads included) never come back here. After the reply, so the
     * pages this read locked are free again. */
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(fresh_len);
    bv.buf[0].mem = fresh;
    fuse_lowlevel_notify_store(M.se, ino, (off_t)fresh_off, &bv, 0);
    pthread_mutex_lock(&M.lock);
    M.pushes--;
    pthread_mutex_unlock(&M.lock);
  }
  free(fresh);
}

/* Data staged in memory reaches the disk only when it is sealed: a write that would leave
 * the disk holding $CAIRN_HOME without room for it (and STORE_RESERVE_BYTES for the
 * commit's own objects) gets ENOSPC now, as on a file system that allocates at write
 * time, rather than being accepted and failing every commit after it. */
static int room_on_disk(size_t size)
{
  struct statvfs st;
  if (statvfs(M.home, &st) < 0)
    return 0; /* cannot tell: the commit reports a full disk */
  uint64_t free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
  uint64_t need = M.staging_memory + size + STORE_RESERVE_BYTES;
  if (free_bytes >= need) {
    M.disk_full_logged = 0;
    return 0;
  }
  if (!M.disk_full_logged)
    cn_log("writes refused (ENOSPC): %s has %llu KiB free, %llu KiB are staged in memory and "
           "the store keeps %u KiB for commits", M.home, (unsigned long long)(free_bytes >> 10),
           (unsigned long long)(M.staging_memory >> 10), STORE_RESERVE_BYTES >> 10);
  M.disk_full_logged = 1;
  return cn_fail(ENOSPC, "no room left in %s for staged data", M.home);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  int rc = !n || n->kind != I_ENTRY ? -EISDIR : fs_need_write(n->mns->ns);
  if (!rc)
    rc = ensure_staging(n, n->entry->attr.size);
  if (!rc)
    rc = staging_room(n, (uint64_t)off + size);
  if (!rc && (uint64_t)off + size > n->entry->attr.size)
    rc = room_on_disk(size);
  ssize_t w = 0;
  if (!rc && n->append_only && (uint64_t)off != n->entry->attr.size)
    rc = unseal(n, n->sealed_end, 0);
  else if (!rc && n->append_only)
    rc = reopen_sealed_end(n);
  if (!rc) {
    w = pwrite(n->staging_fd, data, size, off);
    if (w < 0)
      rc = cn_fail(errno, "cannot write the staging file: %s", strerror(errno));
  }
  if (rc < 0 && rc != -EISDIR && rc != -EROFS && !(rc == -ENOSPC && M.disk_full_logged))
    cn_log("write to '%s' failed: %s", n->entry->name, cn_err());
  int killed = 0;
  if (!rc) {
    cn_attr *a = &n->entry->attr;
    if ((uint64_t)off + (uint64_t)w > a->size)
      a->size = (uint64_t)off + (uint64_t)w;
    a->mtime_ns = a->ctime_ns = fs_now_ns();
    /* as the kernel does for cached writes: set-group-ID without group execute marks
     * mandatory locking, not privilege, and stays */
    mode_t kill = S_ISUID | ((a->mode & S_IXGRP) ? S_ISGID : 0);
    if ((a->mode & kill) && cn_loop_write_kills_suidgid()) {
      a->mode &= ~kill;
      killed = 1;
    }
    mark_file_dirty(n, (uint64_t)off, (uint64_t)off + (uint64_t)w);
    if (!n->sealing)
      queue_sealing(n);
  }
  pthread_mutex_unlock(&M.lock);
  if (killed) /* the kernel's cached mode still has the bits */
    fuse_lowlevel_notify_inval_inode(M.se, ino, -1, 0);
  if (rc < 0)
    fuse_reply_err(req, -rc);
  else
    fuse_reply_write(req, (size_t)w);
}

/* ---- commits ---- */

/* Waits (releasing the lock) until no commit of m is being stored: one may then begin. */
static void wait_stored(mount_ns *m)
{
  while (m->storing)
    pthread_cond_wait(&M.commit_stored, &M.lock);
}

/* A file's staged bytes become its entry's content (re-chunked around what changed, or
 * taken from what was sealed ahead) and its directory is marked for the next commit; the
 * file is clean again, and its staging goes once no handle is open. Under M.lock; the
 * caller frees the inode if nothing else needs it (maybe_free). */
static int take_staged(inode *n)
{
  cn_buf content = {0};
  int rc = fs_file_rewrite(n->mns->ns, n->staging_fd, n->entry->attr.size, n->entry, n->changed_lo,
                           n->changed_hi, n->sealed, n->n_sealed, n->sealed_end, &content);
  if (rc < 0) {
    cn_buf_free(&content);
    return rc;
  }
  cn_buf_free(&n->entry->content);
  n->entry->content = content;
  n->entry->taken_at = n->mns->begun;
  n->changed_lo = UINT64_MAX;
  n->changed_hi = 0;
  n->committed = n->entry->attr;
  if (n->entry->in_dir)
    fs_mark_dirty(n->mns->ns, n->entry->in_dir);
  dirty_unlink(n);
  n->dirty = 0;
  account_staging(n);
  drop_read_state(n);
  if (!n->opens)
    close_staging(n);
  return 0;
}

/* A closed file whose bytes all sit in sealed chunks, or that is small enough to live in
 * its entry, takes its content now, as the next commit would, so it holds no staging
 * file meanwhile: a copy of thousands of files used to keep one open staging file per
 * copied file until the next commit, and failed with EMFILE under the usual soft limit of
 * 1024 descriptors. A failure is left for the commit to meet and report. */
static void take_closed(inode *n)
{
  if (!n->dirty || n->detached || n->writers || n->sealing || n->seal_queued || n->staging_fd < 0)
    return;
  uint64_t size = n->entry->attr.size;
  if (size > INLINE_MAX && !(n->sealed_to_end && n->sealed_end == size))
    return;
  take_staged(n);
}

/* Re-chunks every file with staged data, then commits the namespace. Caller holds lock;
 * it is released while the commit is made durable, packed and signed (cn_ns_commit_store
 * reads nothing of the tree), so the file system keeps answering meanwhile: a commit of
 * a large copy takes seconds. Returns once this call's commit, and any before it, is
 * durable.
 * A timer commit (all = 0) leaves out files still open for writing, recently dirtied: a
 * file being copied is not re-chunked every few seconds, and a crash never shows it half
 * written. It leaves out files the sealing thread has yet to finish too, rather than seal
 * them under the lock: during a large copy the sealing thread is behind the writer. Their
 * entries go into the commit with their last committed content and attributes. */
static int commit_ns(mount_ns *m, int all)
{
  int rc = 0;
  cn_loop_yield(); /* a commit takes long: requests meanwhile go to another thread */
  /* one commit of a namespace at a time; a seal-ahead job must end before its file is
   * re-chunked (or freed). Both waits release the lock, so look again after either. */
  for (;;) {
    if (m->storing) {
      wait_stored(m);
      continue;
    }
    int busy = 0;
    for (inode *n = m->dirty_files; all && n && !busy; n = n->next_dirty)
      busy = n->sealing; /* a timer commit leaves such files out instead */
    if (!busy)
      break;
    pthread_cond_wait(&M.seal_idle, &M.lock);
  }
  m->sealed_since_commit = 0;
  int64_t now = fs_now_ns();
  for (inode *n = m->dirty_files, *next; n && rc == 0; n = next) {
    next = n->next_dirty;
    if (n->detached) { /* unlinked before it was ever committed: nothing to keep */
      dirty_unlink(n);
      n->dirty = 0;
      maybe_free(n);
    } else if (all || !((n->writers && now - n->dirty_since < WRITER_GRACE_NS) || n->sealing ||
                        n->seal_queued)) {
      rc = take_staged(n);
      maybe_free(n);
    }
  }
  /* the files still listed were deferred: they go into this commit as they last were
   * committed, and stay dirty */
  cn_attr *live = NULL;
  size_t n_deferred = 0;
  for (inode *n = m->dirty_files; n; n = n->next_dirty)
    n_deferred++;
  if (n_deferred) {
    live = malloc(n_deferred * sizeof *live);
    if (!live)
      abort();
    size_t i = 0;
    for (inode *n = m->dirty_files; n; n = n->next_dirty, i++) {
      live[i] = n->entry->attr;
      n->entry->attr.size = n->committed.size;
      n->entry->attr.mtime_ns = n->committed.mtime_ns;
    }
  }
  cn_commit *c = NULL;
  if (!rc && m->ns->dirty)
    rc = cn_ns_commit_begin(m->ns, &c);
  if (c)
    m->begun++; /* content taken from now on waits for the next commit */
  size_t i = 0;
  for (inode *n = m->dirty_files; n && i < n_deferred; n = n->next_dirty, i++) {
    n->entry->attr.size = live[i].size;
    n->entry->attr.mtime_ns = live[i].mtime_ns;
  }
  free(live);
  if (c) {
    m->storing = 1;
    pthread_mutex_unlock(&M.lock);
    rc = cn_ns_commit_store(m->ns, c);
    pthread_mutex_lock(&M.lock);
    cn_ns_commit_end(m->ns, c, rc);
    m->storing = 0;
    pthread_cond_broadcast(&M.commit_stored);
    if (!rc && M.hooks.committed)
      M.hooks.committed(M.hooks.ctx, &m->ns->key, cn_ns_seq(m->ns));
  }
  m->commit_failed = rc < 0;
  if (rc < 0)
    cn_log("commit of namespace %s failed, changes are kept in memory: %s", m->id, cn_err());
  return rc;
}

static int commit_all(int all)
{
  int rc = 0;
  for (mount_ns *m = M.namespaces; m; m = m->next)
    if (m->ns->key.access == CN_ACCESS_WRITE && (m->dirty_files || m->ns->dirty)) {
      int r = commit_ns(m, all);
      if (r < 0 && !rc)
        rc = r;
    }
  return rc;
}

/* A namespace held read-only follows its writer: when a newer root has been accepted
 * (from peers), the new tree replaces the old one and the kernel forgets the names it
 * cached under the namespace root, so the next lookups see the new tree. Called under
 * M.lock, which it drops while the new commit loads: that may wait on peers for up to
 * the node's chunk timeout, and the mount must answer meanwhile. Only this thread swaps
 * a namespace's tree, and attached namespaces stay until unmount. */
static void refresh_all(void)
{
  for (mount_ns *m = M.namespaces; m; m = m->next) {
    if (m->ns->key.access != CN_ACCESS_READ || m->snapshot_name[0])
      continue;
    if (cn_store_root_seq(M.store, m->ns->key.pk) <= cn_ns_seq(m->ns))
      continue;
    cn_nskey key = m->ns->key;
    pthread_mutex_unlock(&M.lock);
    cn_ns *fresh = NULL;
    int rc = cn_ns_open(M.store, &key, 0, &fresh);
    if (rc == 0 && (rc = fs_dir_load(fresh, &fresh->root, NULL)) < 0) {
      cn_ns_close(fresh);
      fresh = NULL;
    }
    cn_nskey_wipe(&key);
    pthread_mutex_lock(&M.lock);
    if (!fresh) {
      cn_log("namespace %s: cannot load its new commit yet: %s", m->id, cn_err());
      continue;
    }
    cn_dir *old_dir = m->ns->root.dir;
    size_t n = 0, cap = old_dir ? old_dir->n : 0;
    char **names = calloc(cap ? cap : 1, sizeof *names);
    for (size_t i = 0; names && i < cap; i++)
      names[n++] = strdup(old_dir->ents[i]->name);
    m->ns->retired_next = m->retired;
    m->retired = m->ns;
    m->ns = fresh;
    m->root->entry = &fresh->root;
    fresh->root.inode = m->root;
    m->root->read_gen++;
    cn_log("namespace %s: now at seq %llu from peers", m->id, (unsigned long long)cn_ns_seq(fresh));
    fuse_ino_t parent = m->root->ino;
    pthread_mutex_unlock(&M.lock); /* the kernel may call back in while invalidating */
    fuse_lowlevel_notify_inval_inode(M.se, parent, 0, 0);
    for (size_t i = 0; i < n; i++) {
      fuse_lowlevel_notify_inval_entry(M.se, parent, names[i], strlen(names[i]));
      free(names[i]);
    }
    free(names);
    pthread_mutex_lock(&M.lock);
  }
}

static void *commit_timer(void *arg)
{
  pthread_mutex_lock(&M.lock);
  int64_t next_commit = fs_now_ns() + (int64_t)M.commit_interval * 1000000000;
  while (!M.stopping) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += M.node ? REFRESH_EVERY_S : M.commit_interval;
    if (!M.commit_early)
      pthread_cond_timedwait(&M.wake, &M.lock, &until);
    if (M.stopping)
      break;
    if (M.node)
      refresh_all();
    if (fs_now_ns() >= next_commit || M.commit_early) {
      M.commit_early = 0;
      commit_all(0);
      next_commit = fs_now_ns() + (int64_t)M.commit_interval * 1000000000;
    }
  }
  pthread_mutex_unlock(&M.lock);
  return NULL;
}

static int any_peer(const char *host, int port, void *ctx)
{
  (void)host, (void)port, (void)ctx;
  return 1; /* one is enough: stop */
}

/* Seals files that are being appended to behind their writers: the chunks before the last
 * content-defined cut are final while the file only grows, so a commit then cuts only
 * what came after. Sealing runs on the sealing pool with M.lock released. */
static void *seal_ahead(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&M.lock);
  while (!M.stopping) {
    inode *n = M.seal_queue;
    if (!n) {
      if (fs_now_ns() - M.seal_queued_ns < SEAL_AWAKE_NS) {
        struct timespec nap;
        clock_gettime(CLOCK_REALTIME, &nap);
        nap.tv_nsec += SEAL_NAP_NS;
        nap.tv_sec += nap.tv_nsec / 1000000000;
        nap.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&M.seal_work, &M.lock, &nap);
      } else {
        M.seal_asleep = 1;
        pthread_cond_wait(&M.seal_work, &M.lock);
        M.seal_asleep = 0;
      }
      continue;
    }
    M.seal_queue = n->next_seal;
    if (!M.seal_queue)
      M.seal_queue_tail = NULL;
    n->seal_queued = 0;
    M.seal_queue_len--;
    int fd = n->append_only && n->staging_fd >= 0 ? dup(n->staging_fd) : -1;
    if (fd < 0)
      continue;
    uint64_t gen = n->seal_gen, from = n->sealed_end, to = n->entry->attr.size;
    int to_end = !n->writers;
    cn_ns *ns = n->mns->ns;
    n->sealing = 1;
    n->sealing_to_end = to_end;
    pthread_mutex_unlock(&M.lock);
    cn_ref *refs;
    size_t n_refs;
    uint64_t cut_end, punch_from = 0, punch_to = 0; /* sealed bytes to punch out */
    int rc = fs_file_seal_ahead(ns, fd, from, to, to_end, &refs, &n_refs, &cut_end);
    close(fd);
    pthread_mutex_lock(&M.lock);
    n->sealing = 0;
    pthread_cond_broadcast(&M.seal_idle);
    if (rc < 0) {
      /* the commit seals it all and reports what goes wrong */
      cn_log("sealing ahead of a writer failed (the next commit retries): %s", cn_err());
      if (gen == n->seal_gen && unseal(n, n->sealed_end, 0) < 0) {
        cn_log("keeping what was sealed ahead: %s", cn_err());
        n->seal_failed = 1;
      }
    } else if (gen == n->seal_gen && n_refs) {
      cn_ref *all = realloc(n->sealed, (n->n_sealed + n_refs) * sizeof *all);
      if (!all)
        abort();
      memcpy(all + n->n_sealed, refs, n_refs * sizeof *refs);
      n->sealed = all;
      n->n_sealed += n_refs;
      punch_from = n->sealed_end;
      punch_to = cut_end;
      n->sealed_end = cut_end;
      account_staging(n);
      n->sealed_to_end = to_end;
      n->mns->sealed_since_commit += cut_end - from;
      if (n->mns->sealed_since_commit >= COMMIT_EARLY_BYTES && !M.commit_early && M.node) {
        if (cn_peers_foreach(M.store, any_peer, NULL) > 0) {
          M.commit_early = 1;
          pthread_cond_signal(&M.wake);
        } else {
          n->mns->sealed_since_commit = 0; /* nobody to replicate to: read the list again
                                              after as much more, not after every file */
        }
      }
    }
    free(refs);
    queue_sealing(n);
    take_closed(n);
    /* a file taken just now has closed its staging: punching it first was wasted */
    if (punch_to > punch_from && gen == n->seal_gen && n->staging_fd >= 0)
      punch_sealed(n, punch_from, punch_to);
    maybe_free(n); /* it may have been let go while its job ran */
  }
  pthread_mutex_unlock(&M.lock);
  return NULL;
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  int rc = 0;
  if (n && n->kind == I_ROOT) /* the mount root: every namespace (cairn umount asks first) */
    rc = commit_all(1);
  else if (n && n->mns && n->mns->ns->key.access == CN_ACCESS_WRITE &&
           (n->mns->dirty_files || n->mns->ns->dirty))
    rc = commit_ns(n->mns, 1);
  pthread_mutex_unlock(&M.lock);
  fuse_reply_err(req, rc < 0 ? (-rc == ENOSPC ? ENOSPC : EIO) : 0);
}

/* ---- creating and removing entries ---- */

/* Parent directory for a change: loaded, writable, name valid and (unless replacing) free. */
static int prepare_create(inode *p, const char *name, cn_dir **d, size_t *pos)
{
  if (!p)
    return -ENOENT;
  if (p->kind == I_ROOT)
    return -EPERM; /* namespaces come from caps, not mkdir */
  if (p->kind == I_LINK)
    return -ENOTDIR;
  if (p->kind == I_SNAPDIR)
    return -EROFS;
  int rc = dir_of(p, d);
  if (rc < 0)
    return rc;
  if ((rc = fs_need_write(p->mns->ns)) < 0)
    return -EROFS;
  if ((rc = result_guard(p->entry, name)) < 0)
    return rc;
  if (strlen(name) > 255)
    return -ENAMETOOLONG;
  if (fs_dir_find(*d, name, pos))
    return -EEXIST;
  return 0;
}

static cn_entry *new_entry(fuse_req_t req, inode *p, const char *name, cn_ftype type, mode_t mode)
{
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  cn_entry *e = calloc(1, sizeof *e);
  cn_attr *pa = &p->entry->attr;
  e->name = strdup(name);
  fs_make_attr(&e->attr, NULL, type);
  e->attr.mode = mode & 07777;
  e->attr.uid = ctx->uid;
  /* BSD group semantics for setgid directories, as Linux does */
  e->attr.gid = (pa->mode & S_ISGID) ? pa->gid : ctx->gid;
  if (type == CN_DIR && (pa->mode & S_ISGID))
    e->attr.mode |= S_ISGID;
  if (type == CN_FILE)
    cn_buf_u8(&e->content, CONTENT_INLINE);
  if (type == CN_DIR) {
    e->dir = calloc(1, sizeof *e->dir);
    e->dir->owner = e;
  }
  return e;
}

/* A file opened only for writing bypasses the page cache (direct_io). Nothing reads
 * through such a handle, and a cached write cost a copy into page cache pages plus a
 * round trip per write: the kernel asks for security.capability before clearing set-ID
 * bits itself. For a direct write it asks the file system to clear them instead
 * (cn_loop_write_kills_suidgid). mmap needs read access, so no mapping is lost. */
static void choose_io(struct fuse_file_info *fi)
{
  fi->direct_io = (fi->flags & O_ACCMODE) == O_WRONLY;
}

static void insert_new(entry_answer *a, inode *p, cn_dir *d, size_t pos, cn_entry *e,
                       struct fuse_file_info *fi)
{
  fs_dir_insert(d, pos, e);
  fs_touch_dir(p->mns->ns, d);
  if (e->dir)
    fs_mark_dirty(p->mns->ns, e->dir);
  inode *n = entry_inode(p->mns, e);
  if (fi) {
    n->opens++;
    n->writers += (fi->flags & O_ACCMODE) != O_RDONLY;
    choose_io(fi);
  }
  set_entry(a, n);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name, cn_ftype type,
                      mode_t mode, const char *target, struct fuse_file_info *fi)
{
  entry_answer a = {0};
  pthread_mutex_lock(&M.lock);
  inode *p = find_inode(parent);
  cn_dir *d;
  size_t pos;
  int rc = prepare_create(p, name, &d, &pos);
  if (rc < 0) {
    a.err = -rc;
  } else {
    cn_entry *e = new_entry(req, p, name, type, mode);
    if (target) {
      e->attr.mode = 0777;
      e->attr.size = strlen(target);
      cn_buf_put(&e->content, target, strlen(target));
    }
    insert_new(&a, p, d, pos, e, fi);
  }
  pthread_mutex_unlock(&M.lock);
  if (fi && !a.err)
    fuse_reply_create(req, &a.e, fi);
  else
    send_entry(req, &a);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
  cn_ftype type = S_ISREG(mode) ? CN_FILE : S_ISFIFO(mode) ? CN_FIFO : S_ISSOCK(mode) ? CN_SOCKET : 0;
  if (!type) {
    fuse_reply_err(req, EPERM); /* device nodes are not stored */
    return;
  }
  make_node(req, parent, name, type, mode, NULL, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
  make_node(req, parent, name, CN_DIR, mode, NULL, NULL);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
  if (strlen(target) >= 4096) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  make_node(req, parent, name, CN_SYMLINK, 0777, target, NULL);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
  make_node(req, parent, name, CN_FILE, mode, NULL, fi);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
  fuse_reply_err(req, EPERM); /* hard links are not supported (docs/FS.md) */
}

/* Unlinks dir's entry at pos; one still referenced by the kernel lives on, detached. */
static void unlink_at(mount_ns *m, cn_dir *d, size_t pos)
{
  cn_entry *e = fs_dir_take(d, pos);
  fs_touch_dir(m->ns, d);
  inode *n = e->inode;
  if (n) {
    n->detached = 1;
    e->attr.ctime_ns = fs_now_ns();
    maybe_free(n);
  } else {
    fs_entry_free(e);
    free(e);
  }
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, int want_dir)
{
  pthread_mutex_lock(&M.lock);
  inode *p = find_inode(parent);
  cn_dir *d;
  size_t pos;
  int rc = !p ? -ENOENT : p->kind == I_ROOT ? -EPERM : p->kind == I_SNAPDIR ? -EROFS : dir_of(p, &d);
  cn_entry *e = NULL;
  if (!rc && (rc = fs_need_write(p->mns->ns)) < 0)
    rc = -EROFS;
  if (!rc && !(e = fs_dir_find(d, name, &pos)))
    rc = -ENOENT;
  if (!rc && want_dir && e->attr.type != CN_DIR)
    rc = -ENOTDIR;
  if (!rc && !want_dir && e->attr.type == CN_DIR)
    rc = -EISDIR;
  if (!rc && want_dir) {
    rc = fs_dir_load(p->mns->ns, e, d);
    if (!rc && e->dir->n)
      rc = -ENOTEMPTY;
  }
  if (!rc)
    unlink_at(p->mns, d, pos);
  pthread_mutex_unlock(&M.lock);
  fuse_reply_err(req, -rc);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  remove_entry(req, parent, name, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  remove_entry(req, parent, name, 1);
}

static int is_ancestor(cn_dir *maybe_ancestor, cn_dir *d)
{
  for (; d; d = d->parent)
    if (d == maybe_ancestor)
      return 1;
  return 0;
}

static int do_rename(inode *p, const char *name, inode *np, const char *newname, unsigned flags)
{
  cn_dir *from, *to;
  size_t pos, npos;
  int rc;
  if (!p || !np)
    return -ENOENT;
  if (p->kind == I_ROOT || np->kind == I_ROOT)
    return -EPERM;
  if (p->kind == I_SNAPDIR || np->kind == I_SNAPDIR)
    return -EROFS;
  if ((rc = dir_of(p, &from)) < 0 || (rc = dir_of(np, &to)) < 0)
    return rc;
  if (p->mns != np->mns)
    return -EXDEV;
  mount_ns *m = p->mns;
  if (fs_need_write(m->ns) < 0)
    return -EROFS;
  if ((rc = result_guard(p->entry, name)) < 0 || (rc = result_guard(np->entry, newname)) < 0)
    return rc;
  if (strlen(newname) > 255)
    return -ENAMETOOLONG;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
    return -EINVAL;
  cn_entry *src = fs_dir_find(from, name, &pos);
  if (!src)
    return -ENOENT;
  if (src->attr.type == CN_DIR) {
    if ((rc = fs_dir_load(m->ns, src, from)) < 0)
      return rc;
    if (is_ancestor(src->dir, to))
      return -EINVAL; /* a directory cannot move into itself */
  }
  cn_entry *dst = fs_dir_find(to, newname, &npos);
  if (dst == src)
    return 0;
  int64_t now = fs_now_ns();
  if (flags & RENAME_EXCHANGE) {
    if (!dst)
      return -ENOENT;
    if (dst->attr.type == CN_DIR) {
      if ((rc = fs_dir_load(m->ns, dst, to)) < 0)
        return rc;
      if (is_ancestor(dst->dir, from))
        return -EINVAL;
    }
    char *tmp = src->name;
    src->name = dst->name;
    dst->name = tmp;
    from->ents[pos] = dst;
    to->ents[npos] = src;
    if (from != to) {
      from->subdirs += (dst->attr.type == CN_DIR) - (src->attr.type == CN_DIR);
      to->subdirs += (src->attr.type == CN_DIR) - (dst->attr.type == CN_DIR);
    }
    dst->in_dir = from;
    src->in_dir = to;
    if (dst->dir)
      dst->dir->parent = from;
    if (src->dir)
      src->dir->parent = to;
    src->attr.ctime_ns = dst->attr.ctime_ns = now;
    fs_touch_dir(m->ns, from);
    fs_touch_dir(m->ns, to);
    return 0;
  }
  if (dst) {
    if (flags & RENAME_NOREPLACE)
      return -EEXIST;
    if (dst->attr.type == CN_DIR) {
      if (src->attr.type != CN_DIR)
        return -EISDIR;
      if ((rc = fs_dir_load(m->ns, dst, to)) < 0)
        return rc;
      if (dst->dir->n)
        return -ENOTEMPTY;
    } else if (src->attr.type == CN_DIR) {
      return -ENOTDIR;
    }
    unlink_at(m, to, npos);
    if (from == to && npos < pos)
      pos--;
  }
  cn_entry *moving = fs_dir_take(from, pos);
  free(moving->name);
  moving->name = strdup(newname);
  moving->attr.ctime_ns = now;
  fs_dir_find(to, newname, &npos);
  fs_dir_insert(to, npos, moving);
  fs_touch_dir(m->ns, from);
  fs_touch_dir(m->ns, to);
  if (moving->dir)
    fs_mark_dirty(m->ns, moving->dir); /* its ".." moved: keep it in the next commit */
  return 0;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
  pthread_mutex_lock(&M.lock);
  int rc = do_rename(find_inode(parent), name, find_inode(newparent), newname, flags);
  pthread_mutex_unlock(&M.lock);
  fuse_reply_err(req, -rc);
}

/* ---- attributes ---- */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  int rc = 0;
  if (!n)
    rc = -ENOENT;
  else if (n->kind == I_ROOT || n->kind == I_LINK)
    rc = -EPERM;
  else if (n->kind == I_SNAPDIR || fs_need_write(n->mns->ns) < 0)
    rc = -EROFS;
  else
    rc = result_guard(n->entry, NULL);
  cn_attr *a = rc ? NULL : &n->entry->attr;
  int64_t now = fs_now_ns();
  if (!rc && (to_set & FUSE_SET_ATTR_SIZE)) {
    if (a->type == CN_DIR)
      rc = -EISDIR;
    else if (a->type != CN_FILE)
      rc = -EINVAL;
    else if (!(rc = ensure_staging(n, (uint64_t)attr->st_size < a->size ? (uint64_t)attr->st_size : a->size)) &&
             !(rc = staging_room(n, (uint64_t)attr->st_size))) {
      uint64_t old = a->size, new_size = (uint64_t)attr->st_size;
      if (new_size != old && n->n_sealed)
        rc = unseal(n, new_size, new_size == 0);
      if (rc < 0)
        ;
      else if (ftruncate(n->staging_fd, attr->st_size) < 0)
        rc = -errno;
      else {
        if (new_size != old)
          reset_sealed(n, new_size == 0);
        a->size = new_size;
        a->mtime_ns = now;
        mark_file_dirty(n, old < new_size ? old : new_size, old > new_size ? old : new_size);
      }
    }
  }
  if (!rc) {
    if (to_set & FUSE_SET_ATTR_MODE)
      a->mode = attr->st_mode & 07777;
    if (to_set & FUSE_SET_ATTR_UID)
      a->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
      a->gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      a->atime_ns = now;
    else if (to_set & FUSE_SET_ATTR_ATIME)
      a->atime_ns = ns_of(attr->st_atim);
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      a->mtime_ns = now;
    else if (to_set & FUSE_SET_ATTR_MTIME)
      a->mtime_ns = ns_of(attr->st_mtim);
    a->ctime_ns = (to_set & FUSE_SET_ATTR_CTIME) ? ns_of(attr->st_ctim) : now;
    if (n->kind == I_NSROOT)
      fs_mark_dirty(n->mns->ns, n->entry->dir);
    else if (n->entry->in_dir)
      fs_mark_dirty(n->mns->ns, n->entry->in_dir);
    struct stat st;
    fill_stat(n, &st);
    fuse_reply_attr(req, &st, ATTR_TIMEOUT);
  } else {
    fuse_reply_err(req, -rc);
  }
  pthread_mutex_unlock(&M.lock);
}

/* ---- open files and directories ---- */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  int rc = 0;
  if (!n || n->kind != I_ENTRY)
    rc = n ? -EISDIR : -ENOENT;
  else if ((fi->flags & O_ACCMODE) != O_RDONLY && fs_need_write(n->mns->ns) < 0)
    rc = -EROFS;
  else if ((fi->flags & O_ACCMODE) != O_RDONLY)
    rc = result_guard(n->entry, NULL);
  if (!rc) {
    n->opens++;
    n->writers += (fi->flags & O_ACCMODE) != O_RDONLY;
    /* committed content never changes under an inode, so the page cache can keep it */
    fi->keep_cache = n->staging_fd < 0 && !n->dirty;
    choose_io(fi);
  }
  pthread_mutex_unlock(&M.lock);
  if (rc < 0)
    fuse_reply_err(req, -rc);
  else
    fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  /* closing a job spec after writing it schedules the job: commit now, so the job runs
   * on a commit that holds the spec (the committed hook takes it from there) */
  if (n && n->opens && (fi->flags & O_ACCMODE) != O_RDONLY && n->kind == I_ENTRY && !n->detached &&
      n->entry->in_dir && is_job_dir(n->entry->in_dir->owner) && !strcmp(n->entry->name, "job") &&
      (n->mns->dirty_files || n->mns->ns->dirty))
    commit_ns(n->mns, 1);
  if (n && n->opens) {
    n->opens--;
    if ((fi->flags & O_ACCMODE) != O_RDONLY && n->writers && !--n->writers) {
      queue_sealing(n);
      take_closed(n);
    }
    if (!n->opens && !n->dirty && n->staging_fd >= 0)
      close_staging(n);
    maybe_free(n);
  }
  pthread_mutex_unlock(&M.lock);
  fuse_reply_err(req, 0);
}

typedef struct {
  char **names;
  size_t n;
  int snapshots; /* listing .snapshots: entries carry no inode until looked up */
} dir_handle;

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  pthread_mutex_lock(&M.lock);
  int rc = load_dir_of(ino);
  inode *n = find_inode(ino);
  dir_handle *h = calloc(1, sizeof *h);
  if (rc < 0) {
    /* replied below */
  } else if (!n) {
    rc = -ENOENT;
  } else if (n->kind == I_ROOT) {
    attach_keyring();
    cn_keyring kr;
    size_t cap = count_namespaces() + 1;
    if (cn_keyring_load(M.home, 0, &kr) == 0)
      cap += kr.n;
    h->names = calloc(cap, sizeof *h->names);
    for (mount_ns *m = M.namespaces; m; m = m->next)
      h->names[h->n++] = strdup(m->id);
    for (size_t i = 0; i < kr.n; i++)
      if (kr.entries[i].petname[0] && find_ns(kr.entries[i].key.pk))
        h->names[h->n++] = strdup(kr.entries[i].petname);
    cn_keyring_free(&kr);
  } else if (n->kind == I_SNAPDIR) {
    history_list hl = {0};
    rc = cn_ns_history(n->mns->ns, collect_snapshot, &hl);
    h->names = hl.names;
    h->n = hl.n;
    h->snapshots = 1;
  } else {
    cn_dir *d;
    rc = dir_of(n, &d);
    if (!rc) {
      h->names = calloc(d->n + 1, sizeof *h->names);
      for (size_t i = 0; i < d->n; i++)
        h->names[h->n++] = strdup(d->ents[i]->name);
    }
  }
  pthread_mutex_unlock(&M.lock);
  if (rc < 0) {
    for (size_t i = 0; i < h->n; i++)
      free(h->names[i]);
    free(h->names);
    free(h);
    fuse_reply_err(req, -rc);
    return;
  }
  fi->fh = (uint64_t)(uintptr_t)h;
  fuse_reply_open(req, fi);
}

/* Finds a listed name again (it may have gone since opendir): its inode, or NULL. */
static inode *listed_inode(inode *dir, const char *name)
{
  if (dir->kind == I_ROOT) {
    for (mount_ns *m = M.namespaces; m; m = m->next)
      if (!strcmp(m->id, name))
        return m->root;
    char id[CN_NSID_LEN + 1];
    return petname_target(name, id) ? root_link(id) : NULL;
  }
  cn_dir *d;
  if (dir_of(dir, &d) < 0)
    return NULL;
  cn_entry *e = fs_dir_find(d, name, NULL);
  return e ? entry_inode(dir->mns, e) : NULL;
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, int plus)
{
  dir_handle *h = (dir_handle *)(uintptr_t)fi->fh;
  char *buf = malloc(size);
  size_t used = 0;
  pthread_mutex_lock(&M.lock);
  inode *dir = find_inode(ino);
  /* offsets: 0 = ".", 1 = "..", 2 + i = names[i] */
  for (off_t i = off; dir && (size_t)i < h->n + 2; i++) {
    struct fuse_entry_param e = {0};
    inode *child = NULL;
    const char *name = i == 0 ? "." : i == 1 ? ".." : h->names[i - 2];
    if (i < 2) {
      e.attr.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
      e.attr.st_mode = S_IFDIR;
    } else if (h->snapshots) {
      /* ino 0 in readdirplus: a name without attributes; opening a snapshot waits for
       * a real lookup */
      e.attr.st_ino = (ino_t)(i + 1);
      e.attr.st_mode = S_IFDIR;
    } else {
      child = listed_inode(dir, name);
      if (!child)
        continue;
      fill_stat(child, &e.attr);
      e.ino = child->ino;
      e.generation = 1;
      e.attr_timeout = e.entry_timeout = ATTR_TIMEOUT;
    }
    size_t want = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1)
                       : fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
    if (want > size - used) {
      if (child)
        maybe_free(child);
      break;
    }
    used += want;
    if (child && plus)
      child->nlookup++; /* readdirplus counts as a lookup of each entry but . and .. */
    else if (child)
      maybe_free(child);
  }
  pthread_mutex_unlock(&M.lock);
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  readdir_common(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
  readdir_common(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  dir_handle *h = (dir_handle *)(uintptr_t)fi->fh;
  for (size_t i = 0; i < h->n; i++)
    free(h->names[i]);
  free(h->names);
  free(h);
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
  struct statvfs sv;
  if (statvfs(M.home, &sv) < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes ---- */

#define XATTR_PREFIX "user.cairn."

/* The namespace that can store a new cap object for m's tree: m itself, or for a snapshot
 * the live namespace; NULL when it is held without its write-cap, or m is a cap's view. */
static mount_ns *cap_writer(mount_ns *m)
{
  if (m->ns->from_cap)
    return NULL;
  mount_ns *live = m->snapshot_name[0] ? find_ns(m->ns->key.pk) : m;
  return live && live->ns->key.access == CN_ACCESS_WRITE ? live : NULL;
}

/* Files and directories that are in a tree (not unlinked) can have a cap. */
static int may_have_cap(inode *n)
{
  return (n->kind == I_NSROOT || n->kind == I_ENTRY) && !n->detached &&
         (n->entry->attr.type == CN_FILE || n->entry->attr.type == CN_DIR);
}

/* Whether listxattr shows user.cairn.cap: where getxattr can answer it. */
static int has_cap_xattr(inode *n)
{
  if (!may_have_cap(n))
    return 0;
  const cn_entry *e = n->entry;
  if (e->attr.type == CN_DIR)
    return cap_writer(n->mns) || e->content.len == REF_BYTES;
  if (cap_writer(n->mns))
    return 1;
  /* held read-only: only where a commit already holds the file's cap object */
  cn_cap c;
  int stored;
  return fs_entry_cap(n->mns->ns, e, NULL, &c, &stored) == 0;
}

/* user.cairn.cap: the read cap of an immutable snapshot of n as it is now. In a namespace
 * this mount writes, pending changes are committed first (as fsync would), and a file's
 * new cap object is durable before the cap is returned and listed by the next commit. */
static int cap_xattr(inode *n, char *out, size_t size)
{
  if (!may_have_cap(n))
    return -ENODATA;
  mount_ns *m = n->mns, *writer = cap_writer(m);
  int stored = 0, rc = 0;
  cn_cap c;
  char str[CN_CAP_STR_MAX];
  const cn_entry *e = n->entry;
  /* what the cap must name is not stored yet (pending cap objects alone do not count) */
  int stale = e->attr.type == CN_FILE ? n->dirty || e->taken_at == m->begun || m->storing || m->commit_failed :
              (e->dir && e->dir->dirty) || e->content.len != REF_BYTES || m->dirty_files;
  if (writer == m && stale) {
    rc = commit_ns(m, 1);
    e = n->entry; /* the lock was released: a rename may have replaced the entry */
  }
  if (!rc)
    rc = fs_entry_cap(m->ns, e, writer ? writer->ns : NULL, &c, &stored);
  if (!rc && stored)
    rc = cn_store_flush(M.store);
  if (rc < 0) {
    cn_log("user.cairn.cap of '%s' in %s: %s", e->name, m->id, cn_err());
    return rc == -ENOTSUP || rc == -ENOSPC ? rc : -EIO;
  }
  cn_cap_format(&c, str);
  snprintf(out, size, "%s", str);
  return 0;
}

/* Writes the named cairn xattr of n into out (NUL-terminated); -ENODATA if it has none. */
static int cairn_xattr(inode *n, const char *name, char *out, size_t cap)
{
  if (!strcmp(name, XATTR_PREFIX "cap"))
    return cap_xattr(n, out, cap);
  if (n->kind == I_NSROOT && !n->mns->ns->from_cap && !strcmp(name, XATTR_PREFIX "replicas")) {
    /* other nodes holding the latest commit in full (needs the peer network) */
    cn_ns_status st;
    if (!M.node || n->mns->snapshot_name[0])
      return -ENODATA;
    int rc = cn_node_status(M.node, n->mns->ns->key.pk, &st);
    if (rc < 0)
      return rc == -ENOENT ? -ENODATA : rc;
    snprintf(out, cap, "%zu", st.n_hosts);
    return 0;
  }
  if (n->kind == I_NSROOT && !n->mns->ns->from_cap) {
    const cn_nskey *k = &n->mns->ns->key;
    enum cn_access want = !strcmp(name, XATTR_PREFIX "writecap") ? CN_ACCESS_WRITE :
                          !strcmp(name, XATTR_PREFIX "readcap") ? CN_ACCESS_READ :
                          !strcmp(name, XATTR_PREFIX "verifycap") ? CN_ACCESS_VERIFY : 0;
    if (!want || want > k->access)
      return -ENODATA;
    cn_nskey copy = *k;
    cn_cap c;
    char str[CN_CAP_STR_MAX];
    cn_nskey_diminish(&copy, want);
    cn_cap_from_nskey(&copy, &c);
    cn_cap_format(&c, str);
    cn_nskey_wipe(&copy);
    snprintf(out, cap, "%s", str);
    return 0;
  }
  if (n->kind == I_ENTRY && n->entry->attr.type == CN_FILE && !strcmp(name, XATTR_PREFIX "chunks")) {
    uint64_t chunks = 0;
    if (n->dirty) {
      snprintf(out, cap, "uncommitted");
      return 0;
    }
    int rc = fs_file_chunks(n->mns->ns, n->entry, &chunks);
    if (rc < 0)
      return rc;
    snprintf(out, cap, "%llu", (unsigned long long)chunks);
    return 0;
  }
  return -ENODATA;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
  char value[CN_CAP_STR_MAX + 32];
  /* Only cairn's own namespace exists (as for setxattr): "not supported" rather than "no
   * such attribute" lets ls stop asking for ACLs and SELinux labels after the first file. */
  if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX))) {
    fuse_reply_err(req, ENOTSUP);
    return;
  }
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  int rc = n ? cairn_xattr(n, name, value, sizeof value) : -ENOENT;
  pthread_mutex_unlock(&M.lock);
  size_t len = rc ? 0 : strlen(value);
  if (rc < 0)
    fuse_reply_err(req, -rc);
  else if (size == 0)
    fuse_reply_xattr(req, len);
  else if (size < len)
    fuse_reply_err(req, ERANGE);
  else
    fuse_reply_buf(req, value, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
  static const char *names[] = {XATTR_PREFIX "writecap", XATTR_PREFIX "readcap",
                                XATTR_PREFIX "verifycap", XATTR_PREFIX "chunks",
                                XATTR_PREFIX "replicas"};
  char list[256], value[CN_CAP_STR_MAX + 32];
  size_t len = 0;
  pthread_mutex_lock(&M.lock);
  inode *n = find_inode(ino);
  for (size_t i = 0; n && i < sizeof names / sizeof *names; i++)
    if (cairn_xattr(n, names[i], value, sizeof value) == 0) {
      memcpy(list + len, names[i], strlen(names[i]) + 1);
      len += strlen(names[i]) + 1;
    }
  if (n && has_cap_xattr(n)) { /* listed without making it: getxattr may commit */
    memcpy(list + len, XATTR_PREFIX "cap", sizeof XATTR_PREFIX "cap");
    len += sizeof XATTR_PREFIX "cap";
  }
  pthread_mutex_unlock(&M.lock);
  if (!n)
    fuse_reply_err(req, ENOENT);
  else if (size == 0)
    fuse_reply_xattr(req, len);
  else if (size < len)
    fuse_reply_err(req, ERANGE);
  else
    fuse_reply_buf(req, list, len);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
  /* cairn's own attributes are computed; others are not stored (tools treat this as
   * "xattrs unsupported" and carry on) */
  fuse_reply_err(req, strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) ? ENOTSUP : EPERM);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
  fuse_reply_err(req, strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) ? ENOTSUP : EPERM);
}

/* ---- session ---- */

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape_mountinfo(char *s)
{
  char *out = s;
  for (char *in = s; *in; in++)
    if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' &&
        in[3] >= '0' && in[3] <= '7') {
      *out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
      in += 3;
    } else {
      *out++ = *in;
    }
  *out = 0;
}

/* The kernel caps a FUSE mount's readahead at 128 KiB, below the max_readahead agreed at
 * init; a cold 1 GiB sequential read went from about 200 to 400 MiB/s with 1 MiB. Only
 * root may raise it (sysfs): anyone else keeps the kernel's default. The mount is found
 * in mountinfo, not by stat, which would be a request to this not yet serving daemon. */
static void raise_readahead(const char *mountpoint)
{
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f)
    return;
  char line[8192], dev[32] = "", point[4096], fstype[256];
  unsigned major, minor;
  while (fgets(line, sizeof line, f)) {
    const char *rest = strstr(line, " - "); /* then: fstype, source, options */
    if (rest && sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &minor, point) == 3 &&
        sscanf(rest, " - %255s", fstype) == 1 && !strncmp(fstype, "fuse", 4)) {
      unescape_mountinfo(point);
      if (!strcmp(point, mountpoint)) /* the last one listed is on top */
        snprintf(dev, sizeof dev, "%u:%u", major, minor);
    }
  }
  fclose(f);
  if (!*dev)
    return;
  char path[96];
  snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  char value[16];
  int len = snprintf(value, sizeof value, "%u\n", MAX_READAHEAD_BYTES / 1024);
  if (fd < 0 || write(fd, value, (size_t)len) != len)
    cn_log("sequential reads use the kernel's 128 KiB readahead: cannot raise it to %u KiB (%s: %s)",
           MAX_READAHEAD_BYTES / 1024, path, strerror(errno));
  if (fd >= 0)
    close(fd);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
  conn->max_write = 1u << 20;
  conn->max_readahead = MAX_READAHEAD_BYTES;
  if (conn->capable & FUSE_CAP_READDIRPLUS)
    conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO; /* always plus: ls -l then needs no getattr */
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;   /* truncation arrives as setattr */
  /* A link inode's target never changes (petnames get a new inode per lookup, a symlink
   * entry is replaced, not edited), so the kernel may keep it: a path through a petname
   * then costs no READLINK per walk. */
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
    conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

static void op_destroy(void *userdata)
{
  pthread_mutex_lock(&M.lock);
  commit_all(1);
  pthread_mutex_unlock(&M.lock);
}

static const struct fuse_lowlevel_ops ops = {
  .init = op_init,
  .destroy = op_destroy,
  .lookup = op_lookup,
  .forget = op_forget,
  .forget_multi = op_forget_multi,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .readlink = op_readlink,
  .mknod = op_mknod,
  .mkdir = op_mkdir,
  .unlink = op_unlink,
  .rmdir = op_rmdir,
  .symlink = op_symlink,
  .rename = op_rename,
  .link = op_link,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .release = op_release,
  .fsync = op_fsync,
  .opendir = op_opendir,
  .readdir = op_readdir,
  .readdirplus = op_readdirplus,
  .releasedir = op_releasedir,
  .fsyncdir = op_fsync,
  .statfs = op_statfs,
  .setxattr = op_setxattr,
  .getxattr = op_getxattr,
  .listxattr = op_listxattr,
  .removexattr = op_removexattr,
  .create = op_create,
};

static void detach_all(void)
{
  /* everything goes now: entries are freed with their trees, inodes after them */
  fs_set_orphan_hook(NULL);
  while (M.namespaces) {
    mount_ns *m = M.namespaces;
    M.namespaces = m->next;
    while (m->snapshots) {
      mount_ns *snap = m->snapshots;
      m->snapshots = snap->next;
      cn_ns_close(snap->ns);
      free(snap);
    }
    cn_ns_close(m->ns);
    while (m->retired) {
      cn_ns *old = m->retired;
      m->retired = old->retired_next;
      cn_ns_close(old);
    }
    free(m);
  }
  while (M.caps) {
    mount_ns *m = M.caps;
    M.caps = m->next;
    cn_ns_close(m->ns);
    free(m);
  }
  for (size_t b = 0; b < INODE_BUCKETS; b++)
    while (M.buckets[b]) {
      inode *n = M.buckets[b];
      M.buckets[b] = n->next_hash;
      close_staging(n);
      drop_read_state(n);
      free(n->link_target);
      free(n);
    }
}

typedef struct {
  char **names;
  size_t n;
} name_list;

static void note_names(cn_ns *ns, const char *dir, name_list *l)
{
  cn_entry *e;
  if (fs_lookup(ns, dir, &e) < 0 || !e->dir)
    return;
  for (size_t i = 0; i < e->dir->n; i++) {
    l->names = realloc(l->names, (l->n + 1) * sizeof *l->names);
    l->names[l->n++] = strdup(e->dir->ents[i]->name);
  }
}

int cn_mount_edit(const uint8_t pk[CN_PK_BYTES], const char *dir, int (*fn)(cn_ns *ns, void *ctx), void *ctx)
{
  pthread_mutex_lock(&M.lock);
  if (!M.se || M.stopping) {
    pthread_mutex_unlock(&M.lock);
    return cn_fail(ESHUTDOWN, "the mount is stopping");
  }
  mount_ns *m = find_ns(pk);
  if (!m || m->ns->key.access != CN_ACCESS_WRITE) {
    pthread_mutex_unlock(&M.lock);
    return cn_fail(ENOENT, "this mount does not write that namespace");
  }
  wait_stored(m); /* fn may commit (cn_ns_cap does) */
  name_list names = {0};
  note_names(m->ns, dir, &names);
  int rc = fn(m->ns, ctx);
  if (!rc)
    rc = commit_ns(m, 0);
  note_names(m->ns, dir, &names);
  cn_entry *e;
  fuse_ino_t dir_ino = fs_lookup(m->ns, dir, &e) == 0 && e->inode ? ((inode *)e->inode)->ino : 0;
  pthread_mutex_unlock(&M.lock);
  /* the kernel may call back in while invalidating: not under the lock */
  if (dir_ino) {
    fuse_lowlevel_notify_inval_inode(M.se, dir_ino, 0, 0);
    for (size_t i = 0; i < names.n; i++)
      fuse_lowlevel_notify_inval_entry(M.se, dir_ino, names.names[i], strlen(names.names[i]));
  }
  for (size_t i = 0; i < names.n; i++)
    free(names.names[i]);
  free(names.names);
  return rc;
}

int cn_mount_pidfile(const char *home, const char *mountpoint, char *out, size_t cap)
{
  char real[4096];
  if (!realpath(mountpoint, real))
    return cn_fail(errno, "%s: %s", mountpoint, strerror(errno));
  uint8_t h[32];
  char hex[17];
  cn_sha256(real, strlen(real), h);
  cn_hex(h, 8, hex);
  snprintf(out, cap, "%s/run/%s.pid", home, hex);
  return 0;
}

/* `cairn mount` without -f returns once the mount can be used, its node included: a
 * `cairn status` or `sync` run right after it must find the node's control socket, not
 * start a second node on the same port. The parent waits for the daemon's word. */
static int daemon_ready_fd = -1;

static void daemonize_until_ready(void)
{
  int p[2];
  if (pipe(p) < 0) {
    fuse_daemonize(0);
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    fuse_daemonize(0);
    return;
  }
  if (pid > 0) {
    close(p[1]);
    char status = 1;
    ssize_t got;
    while ((got = read(p[0], &status, 1)) < 0 && errno == EINTR)
      ;
    _exit(got == 1 ? status : 1); /* no word: the daemon died starting */
  }
  close(p[0]);
  fcntl(p[1], F_SETFD, FD_CLOEXEC);
  setsid();
  (void)!chdir("/");
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    dup2(null_fd, STDIN_FILENO);
    dup2(null_fd, STDOUT_FILENO);
    dup2(null_fd, STDERR_FILENO);
    close(null_fd);
  }
  daemon_ready_fd = p[1];
}

/* The daemon's word to the waiting `cairn mount`: 0 ready, else the exit status. */
static void say_ready(char status)
{
  if (daemon_ready_fd < 0)
    return;
  (void)!write(daemon_ready_fd, &status, 1);
  close(daemon_ready_fd);
  daemon_ready_fd = -1;
}

int cn_mount(const char *home, const cn_mount_opts *opts)
{
  /* check the home before daemonizing, so mistakes reach the terminal */
  cn_store *probe;
  int rc = cn_store_open(home, &probe);
  if (rc < 0)
    return rc;
  cn_store_close(probe);

  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  char options[1024];
  snprintf(options, sizeof options, "fsname=cairn,subtype=cairn,default_permissions%s%s",
           opts->fuse_options && *opts->fuse_options ? "," : "",
           opts->fuse_options ? opts->fuse_options : "");
  fuse_opt_add_arg(&args, "cairn");
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, options);
  if (opts->debug)
    fuse_opt_add_arg(&args, "-d");
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  if (!se)
    return cn_fail(EINVAL, "cannot start a FUSE session (bad -o options?)");
  char mounted_at[PATH_MAX];
  if (!realpath(opts->mountpoint, mounted_at)) /* not once mounted: we would answer ourselves */
    snprintf(mounted_at, sizeof mounted_at, "%s", opts->mountpoint);
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, opts->mountpoint) != 0) {
    fuse_session_destroy(se);
    return cn_fail(EIO, "cannot mount at %s", opts->mountpoint);
  }
  if (opts->foreground)
    fuse_daemonize(1);
  else
    daemonize_until_ready();
  if (!opts->foreground) {
    /* a daemon's stderr is /dev/null: its log lines go to $CAIRN_HOME/cairn.log */
    char log_path[4200];
    snprintf(log_path, sizeof log_path, "%s/cairn.log", home);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd >= 0) {
      dup2(log_fd, STDERR_FILENO);
      close(log_fd);
    }
  }
  cn_log("mounted %s at %s", home, opts->mountpoint);
  raise_readahead(mounted_at);
  char pidfile[4300] = "";
  if (cn_mount_pidfile(home, opts->mountpoint, pidfile, sizeof pidfile) == 0) {
    char dir[4200], line[32];
    snprintf(dir, sizeof dir, "%s/run", home);
    mkdir(dir, 0700);
    FILE *f = fopen(pidfile, "we");
    if (f) {
      snprintf(line, sizeof line, "%d\n", (int)getpid());
      fputs(line, f);
      fclose(f);
    }
  }

  /* the store is opened after the fork: LMDB handles must not cross it */
  memset(&M, 0, sizeof M);
  pthread_mutex_init(&M.lock, NULL);
  pthread_cond_init(&M.wake, NULL);
  pthread_cond_init(&M.chunk_loaded, NULL);
  pthread_cond_init(&M.seal_work, NULL);
  pthread_cond_init(&M.seal_idle, NULL);
  pthread_cond_init(&M.commit_stored, NULL);
  pthread_cond_init(&M.staging_freed, NULL);
  struct rlimit files;
  M.staging_budget = getrlimit(RLIMIT_NOFILE, &files) < 0 ? 512
                     : files.rlim_cur == RLIM_INFINITY || files.rlim_cur > (1u << 20) ? 1u << 19
                     : (unsigned)files.rlim_cur / 2;
  if (M.staging_budget < 16)
    M.staging_budget = 16;
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  M.staging_memory_budget = pages > 0 && page_size > 0 ? (uint64_t)pages * (uint64_t)page_size / 8 : 0;
  if (M.staging_memory_budget == 0 || M.staging_memory_budget > (1ull << 30))
    M.staging_memory_budget = 1ull << 30;
  M.home = strdup(home);
  M.next_ino = FUSE_ROOT_ID + 1;
  M.root.ino = FUSE_ROOT_ID;
  M.root.kind = I_ROOT;
  M.root.staging_fd = -1;
  M.started_ns = fs_now_ns();
  M.commit_interval = opts->commit_interval_s > 0 ? opts->commit_interval_s : DEFAULT_COMMIT_INTERVAL;
  M.se = se;
  M.hooks = opts->hooks;
  fs_set_orphan_hook(orphan_entry);
  rc = cn_store_open(home, &M.store);
  if (rc == 0 && !opts->offline) {
    char listen_on[300];
    if (opts->listen)
      snprintf(listen_on, sizeof listen_on, "%s", opts->listen);
    else
      cn_config_listen(M.store, listen_on, sizeof listen_on);
    if (cn_node_start(M.store, listen_on, &M.node) < 0)
      cn_log("working offline: %s", cn_err());
    else
      cn_log("peers: listening on port %d", cn_node_port(M.node));
  }
  if (rc == 0) {
    attach_keyring();
    if (M.hooks.started)
      M.hooks.started(M.hooks.ctx, M.store, M.node);
    /* what was committed before this mount started counts as new to the hooks */
    pthread_mutex_lock(&M.lock);
    for (mount_ns *m = M.namespaces; m && M.hooks.committed; m = m->next)
      if (m->ns->key.access == CN_ACCESS_WRITE && cn_ns_seq(m->ns))
        M.hooks.committed(M.hooks.ctx, &m->ns->key, cn_ns_seq(m->ns));
    pthread_mutex_unlock(&M.lock);
    pthread_create(&M.timer, NULL, commit_timer, NULL);
    pthread_create(&M.sealer, NULL, seal_ahead, NULL);
    say_ready(0);
    int loop_rc = cn_loop_run(se, 16);
    rc = loop_rc ? cn_fail(-loop_rc, "reading FUSE requests failed: %s", strerror(-loop_rc)) : 0;
    pthread_mutex_lock(&M.lock);
    M.stopping = 1;
    pthread_cond_signal(&M.wake);
    pthread_cond_signal(&M.seal_work);
    pthread_mutex_unlock(&M.lock);
    pthread_join(M.timer, NULL);
    pthread_join(M.sealer, NULL);
    if (M.hooks.stopping)
      M.hooks.stopping(M.hooks.ctx); /* no more edits: jobs still running are stopped */
  } else {
    cn_log("%s", cn_err());
    say_ready(1);
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se); /* runs destroy: the last commit */
  pthread_mutex_lock(&M.lock);
  commit_all(1);
  pthread_mutex_unlock(&M.lock);
  cn_node_stop(M.node); /* its threads read the store and the trees: stop them first */
  pthread_mutex_lock(&M.lock);
  detach_all();
  pthread_mutex_unlock(&M.lock);
  cn_store_close(M.store);
  free(M.home);
  if (pidfile[0])
    unlink(pidfile); /* last: `cairn umount` waits for this process, not for the file */
  return rc;
}
