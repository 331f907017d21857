/*
 * A node: the store joined to peers through libtorrent (dht/lt.h).
 *
 * - Signed roots travel as BEP 44 items. Whatever arrives goes through cn_store_root_put,
 *   which checks the signature and refuses any seq not above the high-water mark, so a
 *   replayed or forged root never replaces a newer one.
 * - Packs are torrents whose paths are the store's chunk paths. A pack the store holds in
 *   full seeds from the store's home itself. One still to be downloaded gets the save path
 *   packs/<ih>/, where the objects this node already has are hard-linked. A downloaded
 *   file is checked against its chunk ID, fsync'd and linked into chunks/ before any
 *   reader sees it: a half-downloaded chunk is never visible in the store.
 * - One maintenance thread resolves, publishes and (re)adds packs; libtorrent's alerts
 *   arrive on the pump thread of dht/lt.cpp; readers wait on a condition variable.
 */
#include "dht/internal.h"
#include "dht/lt.h"
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FETCH_TIMEOUT_MS 30000
#define METADATA_WAIT_MS 10000
#define RESOLVE_EVERY_MS 2000 /* CAIRN_POLL_MS overrides it (docs/PEERS.md) */
#define PUBLISH_EVERY_MS 30000
/* A push is one UDP query that may be lost (a peer just restarting, a busy host): a new
 * root is pushed this many times, this far apart, then only re-published. */
#define PUSH_TIMES 5
#define PUSH_AGAIN_MS 2000
#define CONNECT_EVERY_MS 5000
#define TICK_MS 200
/* Every node joins this torrent, which has no data and never gets any: being unfinished,
 * it makes libtorrent connect to known peers even when every pack is complete on both
 * sides (two seeds never connect), and each connection's handshake tells us the other
 * node's key. That is how a node learns whose signed items (job results) to ask for. */
#define HELLO_NAME "cairn-hello 1"
#define SWEEP_EVERY_MS 1000

typedef struct {
  uint8_t id[CN_ID_BYTES];
  int file;
  uint64_t size;
  int prefetched; /* asked for by readahead: asking again only costs libtorrent work */
} pack_file;

typedef struct {
  uint8_t ih[CN_ID_BYTES];
  int added;        /* 0: waiting for metadata (magnet), 1: torrent added */
  int meta_ready;   /* metadata written to packs/, re-add as a full torrent */
  int want_all;
  int at_home;      /* complete when added: seeds from the store, no link tree (load_pack) */
  int legacy;       /* its files have the paths of home format 2 (FORMAT §11.1): never at_home */
  int lacks_layers; /* its torrent has no piece layer for some object (came by info-hash) */
  int in_store;     /* every object adopted: sweeps skip it (sweep_pack) */
  pack_file *files; /* sorted by id */
  size_t n_files;
  pack_file **by_index;
  int max_index;
} pack;

typedef struct {
  uint8_t pk[CN_PK_BYTES];
  enum cn_follow how;
  uint64_t handled_seq;
  uint8_t handled_packs[CN_PACKS_MAX][CN_ID_BYTES]; /* the packs of that root */
  size_t n_handled_packs;
  uint64_t pushed_seq; /* the newest root handed to the known peers (cn_lt_push_root) */
  uint64_t refused_seq; /* the last older root logged as refused (peers repeat it) */
  int pushes_left;     /* times pushed_seq is still to be pushed */
  int64_t next_resolve, next_publish;
  /* a host: the newest root whose packs it holds in full, in its store, and when it next
   * says so to the known peers (cn_lt_push_held) */
  uint64_t held_seq;
  int held_pushes_left;
  int64_t next_held_push;
  size_t held_cursor_pack, held_cursor_file; /* holds_handled_packs checked up to here */
} follow;

/* A peer's word that it holds a namespace's packs of root seq in full (CN_LT_HELD). */
typedef struct {
  uint8_t pk[CN_PK_BYTES];
  char tag[13];
  uint64_t seq;
} held_claim;

typedef struct {
  uint8_t pk[CN_PK_BYTES];
  uint8_t salt[CN_ITEM_SALT_MAX];
  size_t salt_len;
  uint64_t seq;
  uint8_t value[CN_ITEM_VALUE_MAX];
  size_t len;
} signed_item;

typedef struct {
  uint8_t ih[CN_ID_BYTES];
  uint8_t pk[CN_PK_BYTES];
} met_key;

typedef struct {
  uint8_t ih[CN_ID_BYTES]; /* the pack it was downloaded in */
  uint8_t id[CN_ID_BYTES];
  int legacy;              /* that pack's p->legacy */
} adoption;

struct cn_node {
  cn_store *s;
  cn_lt *lt;
  char tag[13];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pack *packs;
  size_t n_packs, cap_packs;
  follow *fol;
  size_t n_fol, cap_fol;
  uint64_t items_seen; /* bumped on every BEP 44 answer, for resolve waiters */
  uint8_t node_seed[CN_SEED_BYTES], node_pk[CN_PK_BYTES];
  signed_item *heard;  /* salted items other nodes published, newest seq per (key, salt) */
  size_t n_heard, cap_heard;
  int64_t next_items;  /* when this node's own items are put again */
  met_key *met;        /* node keys seen in each pack's swarm this session */
  uint8_t hello_ih[CN_ID_BYTES];
  size_t n_met, cap_met;
  uint64_t hash_failures, bans;
  held_claim *claims;  /* the latest claim of each (namespace, peer), namespaces followed */
  size_t n_claims, cap_claims;
  int64_t next_connect, next_sweep, next_meet;
  int resolve_every_ms;
  int stop;
  pthread_t maint;
  int sock_fd;
  pthread_t sock_thread;
  char sock_path[256];
  /* Downloaded chunks a reader waits for. One thread adopts them, taking all that are
   * queued at once: a batch costs two syncs however large, and grows while the one before
   * it syncs, so a fast download is not held to one chunk per pair of syncs. */
  adoption *to_adopt;
  size_t n_to_adopt, cap_to_adopt;
  pthread_cond_t adopt_cv;
  pthread_t adopter;
};

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_in(struct timespec *ts, int ms)
{
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000;
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

/* Room for one more element at index used of a growable array: doubles the capacity,
 * starting at first_cap. Out of memory aborts, as every allocation failure in the node. */
static void *grow(void *arr, size_t used, size_t *cap, size_t elem_size, size_t first_cap)
{
  if (used < *cap)
    return arr;
  size_t new_cap = *cap ? 2 * *cap : first_cap;
  void *p = realloc(arr, new_cap * elem_size);
  if (!p)
    abort();
  *cap = new_cap;
  return p;
}

static pack *find_pack(cn_node *n, const uint8_t ih[CN_ID_BYTES])
{
  for (size_t i = 0; i < n->n_packs; i++)
    if (!memcmp(n->packs[i].ih, ih, CN_ID_BYTES))
      return &n->packs[i];
  return NULL;
}

static int cmp_file(const void *a, const void *b)
{
  return memcmp(((const pack_file *)a)->id, ((const pack_file *)b)->id, CN_ID_BYTES);
}

static pack_file *pack_lookup(pack *p, const uint8_t id[CN_ID_BYTES])
{
  pack_file key;
  memcpy(key.id, id, CN_ID_BYTES);
  return p->files ? bsearch(&key, p->files, p->n_files, sizeof key, cmp_file) : NULL;
}

static void pack_dir(cn_node *n, const uint8_t ih[CN_ID_BYTES], char *out, size_t len)
{
  char hex[CN_HEX_ID_LEN + 1];
  cn_hex(ih, CN_ID_BYTES, hex);
  snprintf(out, len, "%s/packs/%s", n->s->home, hex);
}

static int mkdirs_for(const char *path)
{
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
      *p = '/';
    }
  return 0;
}

/* ---- packs in the session ---- */

/* Where a pack's file is below its save path: the store's path, or in a pack made before
 * home format 3 the path of that format. */
static void pack_file_relpath(int legacy, const uint8_t id[CN_ID_BYTES], char out[80])
{
  if (legacy)
    store_chunk_relpath_v2(id, out);
  else
    store_chunk_relpath(id, out);
}

typedef struct {
  pack *p;
  int err;
} load_ctx;

static int load_file(int file, const char *path, uint64_t size, const uint8_t *layer, void *ctx)
{
  load_ctx *l = ctx;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  pack_file f = {.file = file, .size = size};
  if (strlen(base) != CN_HEX_ID_LEN || cn_unhex(base, f.id, CN_ID_BYTES) < 0)
    return cn_fail(EBADMSG, "pack file %s is not a chunk", path);
  pack *p = l->p;
  char now[80], before[80];
  store_chunk_relpath(f.id, now);
  store_chunk_relpath_v2(f.id, before);
  int legacy = strcmp(path, before) == 0;
  if ((!legacy && strcmp(path, now) != 0) || (p->n_files && legacy != p->legacy))
    return cn_fail(EBADMSG, "pack file %s is not at a chunk's path", path);
  p->legacy = legacy;
  p->lacks_layers |= cn_piece_count(size) && !layer;
  p->files = realloc(p->files, (p->n_files + 1) * sizeof *p->files);
  if (!p->files)
    abort();
  p->files[p->n_files++] = f;
  if (file > p->max_index)
    p->max_index = file;
  return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  (void)st, (void)ftw;
  if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
    cn_log("cannot remove %s: %s", path, strerror(errno));
  return 0;
}

/* Reads the pack's torrent from packs/ into p's file table. A pack whose files are all in
 * the store seeds from the store itself when may_seed_from_store (p->at_home; its torrent's
 * paths are the store's chunk paths), and a link tree left from downloading it earlier is
 * removed: only its directories take space, a disk block each, for thousands of them.
 * Otherwise what the store holds is hard-linked under packs/<ih>/, the pack's save path
 * for downloading (no copy). Returns how many of its files are present, or a negative
 * errno (caller holds mu). */
static ssize_t load_pack(cn_node *n, pack *p, int may_seed_from_store, uint8_t **torrent,
                         size_t *torrent_len)
{
  uint8_t *t, ih[CN_ID_BYTES];
  size_t len;
  int rc = cn_store_pack_torrent(n->s, p->ih, &t, &len);
  if (rc < 0)
    return rc;
  free(p->files);
  free(p->by_index);
  p->files = NULL;
  p->by_index = NULL;
  p->n_files = 0;
  p->legacy = 0;
  p->lacks_layers = 0;
  p->in_store = 0;
  p->max_index = -1;
  load_ctx l = {p, 0};
  char err[256] = "";
  rc = cn_lt_torrent_parse(t, len, ih, load_file, &l, err, sizeof err);
  if (!rc && memcmp(ih, p->ih, CN_ID_BYTES))
    rc = cn_fail(EBADMSG, "pack torrent does not match its info-hash");
  if (rc < 0) {
    free(t);
    return *err ? cn_fail(EBADMSG, "bad pack torrent: %s", err) : rc;
  }
  qsort(p->files, p->n_files, sizeof *p->files, cmp_file);
  p->by_index = calloc((size_t)p->max_index + 2, sizeof *p->by_index);
  for (size_t i = 0; i < p->n_files; i++)
    p->by_index[p->files[i].file] = &p->files[i];
  char dir[3800], src[4096], dst[4096], rel[80];
  pack_dir(n, p->ih, dir, sizeof dir);
  ssize_t present = 0;
  for (size_t i = 0; i < p->n_files; i++) {
    store_chunk_relpath(p->files[i].id, rel);
    present += faccessat(n->s->home_fd, rel, F_OK, 0) == 0;
  }
  p->at_home = may_seed_from_store && (size_t)present == p->n_files && !p->legacy;
  if (p->at_home)
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  for (size_t i = 0; !p->at_home && i < p->n_files; i++) {
    char in_pack[80];
    store_chunk_relpath(p->files[i].id, rel);
    pack_file_relpath(p->legacy, p->files[i].id, in_pack);
    snprintf(src, sizeof src, "%s/%s", n->s->home, rel);
    snprintf(dst, sizeof dst, "%s/%s", dir, in_pack);
    if (access(src, F_OK) < 0)
      continue;
    mkdirs_for(dst);
    if (link(src, dst) < 0 && errno != EEXIST)
      present--; /* libtorrent will not find it: download it */
  }
  if (torrent) {
    *torrent = t;
    *torrent_len = len;
  } else {
    free(t);
  }
  return present;
}

/* Adds a pack whose torrent is in packs/ (caller holds mu). */
static int add_pack_torrent(cn_node *n, pack *p)
{
  uint8_t *t;
  size_t len;
  ssize_t present = load_pack(n, p, 1, &t, &len);
  if (present < 0)
    return (int)present;
  char dir[4096], err[256] = "";
  pack_dir(n, p->ih, dir, sizeof dir);
  int rc = cn_lt_add(n->lt, t, len, p->at_home ? n->s->home : dir, (size_t)present == p->n_files,
                     p->want_all, err, sizeof err);
  free(t);
  if (rc < 0)
    return cn_fail(-rc, "cannot add pack: %s", err);
  p->added = 1;
  pthread_cond_broadcast(&n->cv);
  return 0;
}

/* The metadata of a pack added by info-hash has arrived: the same torrent carries on
 * (caller holds mu). */
static int finish_magnet(cn_node *n, pack *p)
{
  ssize_t present = load_pack(n, p, 0, NULL, NULL); /* its save path is packs/<ih>/ */
  if (present < 0)
    return (int)present;
  if (present > 0)
    cn_lt_recheck(n->lt, p->ih); /* let it find the linked files */
  if (p->want_all)
    cn_lt_want_all(n->lt, p->ih, 1);
  cn_lt_start_download(n->lt, p->ih);
  p->added = 1;
  pthread_cond_broadcast(&n->cv);
  return 0;
}

/* Makes sure a pack is in the session: from packs/ when we have its torrent, else by
 * info-hash, fetching the metadata from peers (caller holds mu). */
static void want_pack(cn_node *n, const uint8_t ih[CN_ID_BYTES], int want_all)
{
  pack *p = find_pack(n, ih);
  if (p) {
    if (want_all && !p->want_all) {
      p->want_all = 1;
      if (p->added)
        cn_lt_want_all(n->lt, ih, 1); /* else when its metadata arrives */
    }
    return;
  }
  /* pack pointers are handed out under mu only, so moving them is safe */
  n->packs = grow(n->packs, n->n_packs, &n->cap_packs, sizeof *n->packs, 16);
  p = &n->packs[n->n_packs++];
  memset(p, 0, sizeof *p);
  memcpy(p->ih, ih, CN_ID_BYTES);
  p->want_all = want_all;
  p->max_index = -1;
  uint8_t *t;
  size_t len;
  if (cn_store_pack_torrent(n->s, ih, &t, &len) == 0) {
    free(t);
    if (add_pack_torrent(n, p) < 0)
      cn_log("pack: %s", cn_err());
    /* a pack added complete (a merge made here) connects to no seed by itself, and
     * `sync` counts only seeds it is connected to: introduce it now, not in 5 s */
    n->next_connect = 0;
    return;
  }
  char dir[4096];
  pack_dir(n, ih, dir, sizeof dir);
  cn_lt_add_magnet(n->lt, ih, dir);
  n->next_connect = 0; /* introduce the new torrent to the known peers soon */
}

/* ---- fetching ---- */

/* Queues a file the torrent reports complete for adoption into the store (caller holds
 * mu); the adopter thread links it and wakes the waiting readers. */
static void queue_adoption(cn_node *n, const uint8_t ih[CN_ID_BYTES], const uint8_t id[CN_ID_BYTES])
{
  for (size_t i = 0; i < n->n_to_adopt; i++)
    if (!memcmp(n->to_adopt[i].id, id, CN_ID_BYTES))
      return;
  n->to_adopt = grow(n->to_adopt, n->n_to_adopt, &n->cap_to_adopt, sizeof *n->to_adopt, 64);
  adoption *a = &n->to_adopt[n->n_to_adopt++];
  memcpy(a->ih, ih, CN_ID_BYTES);
  memcpy(a->id, id, CN_ID_BYTES);
  pack *p = find_pack(n, ih);
  a->legacy = p && p->legacy;
  pthread_cond_signal(&n->adopt_cv);
}

/* Links downloaded files into the store, as one batch (store_adopt_files: two syncs for
 * the lot); a host's sweep keeps their piece layers. Called without mu. */
static void adopt_batch(cn_node *n, const adoption *batch, size_t k, int keep_layers)
{
  const char **paths = calloc(k ? k : 1, sizeof *paths);
  uint8_t (*ids)[CN_ID_BYTES] = calloc(k ? k : 1, CN_ID_BYTES);
  size_t m = 0;
  for (size_t i = 0; paths && ids && i < k; i++) {
    char dir[3800], rel[80], *path;
    pack_dir(n, batch[i].ih, dir, sizeof dir);
    pack_file_relpath(batch[i].legacy, batch[i].id, rel);
    if (asprintf(&path, "%s/%s", dir, rel) < 0)
      break;
    paths[m] = path;
    memcpy(ids[m++], batch[i].id, CN_ID_BYTES);
  }
  if (m && store_adopt_files(n->s, paths, (const uint8_t(*)[CN_ID_BYTES])ids, m, keep_layers) < 0)
    cn_log("%s", cn_err());
  for (size_t i = 0; i < m; i++)
    free((char *)paths[i]);
  free(paths);
  free(ids);
}

static void *adopt_queued(void *arg)
{
  cn_node *n = arg;
  pthread_mutex_lock(&n->mu);
  while (!n->stop) {
    if (!n->n_to_adopt) {
      pthread_cond_wait(&n->adopt_cv, &n->mu);
      continue;
    }
    adoption *batch = n->to_adopt;
    size_t k = n->n_to_adopt;
    n->to_adopt = NULL;
    n->n_to_adopt = n->cap_to_adopt = 0;
    pthread_mutex_unlock(&n->mu);
    adopt_batch(n, batch, k, 0);
    free(batch);
    pthread_mutex_lock(&n->mu);
    pthread_cond_broadcast(&n->cv);
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

/* Adopts every file of a pack that is complete in the session but not in the store, in
 * one batch (two syncfs calls, not two fsyncs per file: hosts take thousands at once).
 * Called with mu held; drops it while checking and syncing the batch (up to a second
 * for thousands of files), so readers and libtorrent's events are not held up. */
static void sweep_pack(cn_node *n, pack *p)
{
  if (!p->added || p->max_index < 0 || p->in_store)
    return;
  uint8_t *done = calloc((size_t)p->max_index + 1, 1);
  adoption *batch = calloc(p->n_files + 1, sizeof *batch);
  size_t k = 0, n_done = 0;
  if (done && batch && cn_lt_files_done(n->lt, p->ih, done, p->max_index + 1) == 0)
    for (size_t i = 0; i < p->n_files; i++) {
      char rel[80];
      store_chunk_relpath(p->files[i].id, rel);
      n_done += done[p->files[i].file];
      if (!done[p->files[i].file] || faccessat(n->s->home_fd, rel, F_OK, 0) == 0)
        continue;
      memcpy(batch[k].ih, p->ih, CN_ID_BYTES);
      batch[k].legacy = p->legacy;
      memcpy(batch[k++].id, p->files[i].id, CN_ID_BYTES);
    }
  free(done);
  if (k) {
    int keep_layers = p->lacks_layers;
    pthread_mutex_unlock(&n->mu);
    adopt_batch(n, batch, k, keep_layers);
    pthread_mutex_lock(&n->mu);
    pthread_cond_broadcast(&n->cv);
  }
  free(batch);
  if (k || n_done < p->n_files)
    return; /* what failed to adopt is tried again next time */
  /* the store holds every object: nothing more to sweep, and a torrent that came without
   * piece layers gets them, so that after a restart (or in `check --repair`) libtorrent
   * checks each piece at once instead of waiting for peers' hashes (store_pack_add_layers) */
  p->in_store = 1;
  if (p->lacks_layers && !p->legacy) {
    uint8_t ih[CN_ID_BYTES];
    char hex[CN_HEX_ID_LEN + 1];
    memcpy(ih, p->ih, CN_ID_BYTES);
    pthread_mutex_unlock(&n->mu);
    int rc = store_pack_add_layers(n->s, ih);
    pthread_mutex_lock(&n->mu);
    cn_hex(ih, CN_ID_BYTES, hex);
    if (rc < 0)
      cn_log("pack %.16s: cannot write its piece layers into its torrent: %s", hex, cn_err());
  }
}

static int fetch(const uint8_t id[CN_ID_BYTES], int how, void *ctx)
{
  cn_node *n = ctx;
  int prefetch_only = how == CN_FETCH_PREFETCH;
  char hex[CN_HEX_ID_LEN + 1], rel[80];
  cn_hex(id, CN_ID_BYTES, hex);
  store_chunk_relpath(id, rel);
  struct timespec meta_deadline;
  deadline_in(&meta_deadline, METADATA_WAIT_MS);
  int64_t give_up = now_ms() + FETCH_TIMEOUT_MS, rerequest = now_ms() + 1000;
  pthread_mutex_lock(&n->mu);
  int asked = 0, rc = 0, file = -1, polls = 0;
  uint8_t ih[CN_ID_BYTES];
  while (!n->stop) {
    if (faccessat(n->s->home_fd, rel, F_OK, 0) == 0)
      break;
    if (!asked) {
      pack *p = NULL;
      pack_file *f = NULL;
      int pending_meta = 0;
      /* a root accepted moments ago whose packs the maintenance loop has not added yet */
      for (size_t i = 0; i < n->n_fol && !pending_meta; i++)
        pending_meta = cn_store_root_seq(n->s, n->fol[i].pk) > n->fol[i].handled_seq;
      for (size_t i = 0; i < n->n_packs && !f; i++) {
        if (!n->packs[i].added)
          pending_meta = 1;
        else if ((f = pack_lookup(&n->packs[i], id)))
          p = &n->packs[i];
      }
      if (f && prefetch_only && f->prefetched) {
        break;
      } else if (f) {
        memcpy(ih, p->ih, CN_ID_BYTES);
        file = f->file;
        /* read-ahead only needs the file soon: top priority, no deadline (deadlines put
         * pieces in libtorrent's time-critical mode, which re-asks slow blocks of other
         * peers); the chunk a read waits for gets one */
        cn_lt_want_file(n->lt, ih, file, prefetch_only ? -1 : 0);
        f->prefetched |= prefetch_only;
        asked = 1;
      } else if (prefetch_only) {
        break;
      } else if (!pending_meta) {
        rc = cn_fail(ENOENT, "chunk %s is in no pack this node knows", hex);
        break;
      } else if (pthread_cond_timedwait(&n->cv, &n->mu, &meta_deadline) == ETIMEDOUT) {
        rc = cn_fail(ENOENT, "chunk %s: pack metadata did not arrive from any peer", hex);
        break;
      }
      continue;
    }
    if (prefetch_only)
      break;
    uint8_t done = 0, *flags = file >= 0 ? calloc((size_t)file + 1, 1) : NULL;
    if (flags && cn_lt_files_done(n->lt, ih, flags, file + 1) == 0)
      done = flags[file];
    free(flags);
    if (done)
      queue_adoption(n, ih, id);
    if (now_ms() >= rerequest) {
      /* a piece that failed its check loses its deadline: ask again */
      cn_lt_want_file(n->lt, ih, file, 0);
      rerequest = now_ms() + 1000;
    }
    int64_t left = give_up - now_ms();
    if (left <= 0) {
      rc = cn_fail(EIO, "chunk %s: no peer delivered it within %d s", hex, FETCH_TIMEOUT_MS / 1000);
      cn_log("%s", cn_err());
      break;
    }
    /* completion is also polled (see sweep_pack): often at first, for small reads */
    int step = ++polls < 50 ? 10 : 200;
    struct timespec ts;
    deadline_in(&ts, left < step ? (int)left : step);
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
  }
  pthread_mutex_unlock(&n->mu);
  return rc;
}

/* ---- signed items ---- */

static void hear_item(cn_node *n, const cn_lt_event *ev)
{
  pthread_mutex_lock(&n->mu);
  signed_item *it = NULL;
  for (size_t i = 0; i < n->n_heard && !it; i++)
    if (!memcmp(n->heard[i].pk, ev->pk, CN_PK_BYTES) && n->heard[i].salt_len == ev->salt_len &&
        !memcmp(n->heard[i].salt, ev->salt, ev->salt_len))
      it = &n->heard[i];
  if (!it) {
    n->heard = grow(n->heard, n->n_heard, &n->cap_heard, sizeof *n->heard, 16);
    it = &n->heard[n->n_heard++];
    memset(it, 0, sizeof *it);
    memcpy(it->pk, ev->pk, CN_PK_BYTES);
    memcpy(it->salt, ev->salt, ev->salt_len);
    it->salt_len = ev->salt_len;
  }
  if (ev->seq >= it->seq) {
    it->seq = ev->seq;
    memcpy(it->value, ev->value, ev->value_len);
    it->len = ev->value_len;
  }
  n->items_seen++;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
}

static int put_own_item(const uint8_t *salt, size_t salt_len, uint64_t seq, const uint8_t *value, size_t len,
                        void *ctx)
{
  cn_node *n = ctx;
  uint8_t msg[1300], sig[CN_SIG_BYTES];
  size_t m = cn_item_signing_bytes(salt, salt_len, seq, value, len, msg);
  cn_sign(n->node_seed, msg, m, sig);
  cn_lt_dht_put(n->lt, n->node_pk, salt, salt_len, seq, sig, value, len);
  return 0;
}

int cn_node_item_get(cn_node *n, const uint8_t pk[CN_PK_BYTES], const uint8_t *salt, size_t salt_len,
                     int wait_ms, uint8_t *value, size_t *len)
{
  if (salt_len > CN_ITEM_SALT_MAX)
    return cn_fail(EINVAL, "salt longer than %d bytes", CN_ITEM_SALT_MAX);
  int64_t until = now_ms() + wait_ms, next_ask = 0;
  pthread_mutex_lock(&n->mu);
  for (;;) {
    for (size_t i = 0; i < n->n_heard; i++) {
      signed_item *it = &n->heard[i];
      if (!memcmp(it->pk, pk, CN_PK_BYTES) && it->salt_len == salt_len && !memcmp(it->salt, salt, salt_len)) {
        memcpy(value, it->value, it->len);
        *len = it->len;
        pthread_mutex_unlock(&n->mu);
        return 0;
      }
    }
    int64_t t = now_ms();
    if (t >= until || n->stop)
      break;
    if (t >= next_ask) {
      cn_lt_dht_get(n->lt, pk, salt, salt_len);
      next_ask = t + 500;
    }
    struct timespec ts;
    deadline_in(&ts, (int)(until - t < 100 ? until - t : 100));
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
  }
  pthread_mutex_unlock(&n->mu);
  return cn_fail(ENOENT, "no peer has that item");
}

typedef struct {
  uint8_t (*keys)[CN_PK_BYTES];
  size_t max, n;
} key_list;

static int note_peer_key(const char *tag, const char *endpoint, int seed, const char *client, void *ctx)
{
  key_list *l = ctx;
  uint8_t pk[CN_PK_BYTES];
  if (strncmp(client, CN_NODE_CLIENT_PREFIX, strlen(CN_NODE_CLIENT_PREFIX)) ||
      cn_unhex(client + strlen(CN_NODE_CLIENT_PREFIX), pk, CN_PK_BYTES) < 0)
    return 0;
  for (size_t i = 0; i < l->n; i++)
    if (!memcmp(l->keys[i], pk, CN_PK_BYTES))
      return 0;
  if (l->n < l->max)
    memcpy(l->keys[l->n++], pk, CN_PK_BYTES);
  return 0;
}

typedef struct {
  cn_node *n;
  const uint8_t *ih;
} meet_ctx;

static int meet_peer(const char *tag, const char *endpoint, int seed, const char *client, void *ctx)
{
  meet_ctx *m = ctx;
  cn_node *n = m->n;
  uint8_t pk[CN_PK_BYTES];
  if (strncmp(client, CN_NODE_CLIENT_PREFIX, strlen(CN_NODE_CLIENT_PREFIX)) ||
      cn_unhex(client + strlen(CN_NODE_CLIENT_PREFIX), pk, CN_PK_BYTES) < 0)
    return 0;
  for (size_t i = 0; i < n->n_met; i++)
    if (!memcmp(n->met[i].pk, pk, CN_PK_BYTES) && !memcmp(n->met[i].ih, m->ih, CN_ID_BYTES))
      return 0;
  n->met = grow(n->met, n->n_met, &n->cap_met, sizeof *n->met, 32);
  memcpy(n->met[n->n_met].ih, m->ih, CN_ID_BYTES);
  memcpy(n->met[n->n_met++].pk, pk, CN_PK_BYTES);
  return 0;
}

/* Remembers who is in each swarm: peers that have everything and nothing to ask for may
 * not stay connected, but their keys still name who holds a namespace. Under n->mu. */
static void meet_peers(cn_node *n)
{
  for (size_t i = 0; i < n->n_packs; i++) {
    meet_ctx m = {n, n->packs[i].ih};
    cn_lt_torrent_peers(n->lt, n->packs[i].ih, meet_peer, &m);
  }
  meet_ctx m = {n, n->hello_ih};
  cn_lt_torrent_peers(n->lt, n->hello_ih, meet_peer, &m);
}

size_t cn_node_peer_keys(cn_node *n, const uint8_t nspk[CN_PK_BYTES], uint8_t (*keys)[CN_PK_BYTES], size_t max)
{
  key_list l = {keys, max, 0};
  cn_root root;
  cn_root_value rv;
  if (cn_store_root_get(n->s, nspk, &root) < 0 || cn_root_value_parse(root.value, root.value_len, &rv) < 0)
    return 0;
  pthread_mutex_lock(&n->mu);
  meet_peers(n);
  for (size_t i = 0; i < n->n_met; i++)
    for (size_t j = 0; j <= rv.n_packs; j++)
      if (!memcmp(n->met[i].ih, j < rv.n_packs ? rv.packs[j] : n->hello_ih, CN_ID_BYTES)) {
        char client[128], hex[2 * CN_PK_BYTES + 1];
        cn_hex(n->met[i].pk, CN_PK_BYTES, hex);
        snprintf(client, sizeof client, "%s%s", CN_NODE_CLIENT_PREFIX, hex);
        note_peer_key("", "", 0, client, &l);
        break;
      }
  pthread_mutex_unlock(&n->mu);
  return l.n;
}

void cn_node_key(cn_node *n, uint8_t pk[CN_PK_BYTES])
{
  memcpy(pk, n->node_pk, CN_PK_BYTES);
}

void cn_node_publish_items(cn_node *n)
{
  pthread_mutex_lock(&n->mu);
  n->next_items = 0;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
}

/* ---- alerts ---- */

static int is_followed(cn_node *n, const uint8_t pk[CN_PK_BYTES])
{
  pthread_mutex_lock(&n->mu);
  int found = 0;
  for (size_t i = 0; i < n->n_fol && !found; i++)
    found = !memcmp(n->fol[i].pk, pk, CN_PK_BYTES);
  pthread_mutex_unlock(&n->mu);
  return found;
}

/* Whether an older root refused now is news: peers keep re-publishing and pushing the same
 * one, and the log says so once per seq. */
static int first_refusal(cn_node *n, const uint8_t pk[CN_PK_BYTES], uint64_t seq)
{
  int news = 1;
  pthread_mutex_lock(&n->mu);
  for (size_t i = 0; i < n->n_fol; i++)
    if (!memcmp(n->fol[i].pk, pk, CN_PK_BYTES)) {
      news = n->fol[i].refused_seq != seq;
      n->fol[i].refused_seq = seq;
    }
  pthread_mutex_unlock(&n->mu);
  return news;
}

#define MAX_CLAIMS 4096

/* The claim kept for (namespace, peer tag), or NULL (caller holds mu). */
static held_claim *find_claim(cn_node *n, const uint8_t pk[CN_PK_BYTES], const char *tag)
{
  for (size_t i = 0; i < n->n_claims; i++)
    if (!memcmp(n->claims[i].pk, pk, CN_PK_BYTES) && !strcmp(n->claims[i].tag, tag))
      return &n->claims[i];
  return NULL;
}

static void hear_claim(cn_node *n, const uint8_t pk[CN_PK_BYTES], const char *tag, uint64_t seq)
{
  pthread_mutex_lock(&n->mu);
  held_claim *c = find_claim(n, pk, tag);
  if (!c && n->n_claims < MAX_CLAIMS) { /* a flood of made-up tags stops here */
    n->claims = grow(n->claims, n->n_claims, &n->cap_claims, sizeof *n->claims, 16);
    c = &n->claims[n->n_claims++];
    memcpy(c->pk, pk, CN_PK_BYTES);
    snprintf(c->tag, sizeof c->tag, "%s", tag);
  }
  if (c)
    c->seq = seq; /* the latest word, not the highest: a host that lost data says so */
  pthread_mutex_unlock(&n->mu);
}

static void on_event(const cn_lt_event *ev, void *ctx)
{
  cn_node *n = ctx;
  char hex[CN_HEX_ID_LEN + 1];
  switch (ev->kind) {
  case CN_LT_ITEM: {
    if (ev->salt_len) { /* a signed item (libtorrent checked its signature) */
      if (ev->salt_len <= CN_ITEM_SALT_MAX && ev->value_len <= CN_ITEM_VALUE_MAX)
        hear_item(n, ev);
      break;
    }
    if (ev->pushed && !is_followed(n, ev->pk))
      break; /* nobody asked for it: storing it would let anyone fill our index */
    cn_root root = {.seq = ev->seq, .value_len = ev->value_len};
    cn_root_value rv;
    if (ev->value_len <= CN_ROOT_VALUE_MAX && cn_root_value_parse(ev->value, ev->value_len, &rv) == 0) {
      memcpy(root.sig, ev->sig, CN_SIG_BYTES);
      memcpy(root.value, ev->value, ev->value_len);
      int rc = cn_store_root_put(n->s, ev->pk, &root, NULL, 0);
      char id[CN_NSID_LEN + 1];
      cn_nsid(ev->pk, id);
      if (rc == -EBADMSG)
        cn_log("namespace %s: refused a root whose signature does not verify (seq %llu)", id,
               (unsigned long long)ev->seq);
      else if (rc == -ESTALE && ev->seq < cn_store_root_seq(n->s, ev->pk) && first_refusal(n, ev->pk, ev->seq))
        cn_log("namespace %s: refused root seq %llu, older than seq %llu seen before", id,
               (unsigned long long)ev->seq, (unsigned long long)cn_store_root_seq(n->s, ev->pk));
    }
    pthread_mutex_lock(&n->mu);
    n->items_seen++;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    break;
  }
  case CN_LT_METADATA: {
    uint8_t ih[CN_ID_BYTES];
    char err[256] = "";
    if (cn_lt_torrent_parse(ev->value, ev->value_len, ih, NULL, NULL, err, sizeof err) < 0 ||
        memcmp(ih, ev->ih, CN_ID_BYTES))
      break;
    char name[96];
    store_pack_torrent_name(ih, name);
    if (store_write_file_atomic(n->s->home_fd, name, ev->value, ev->value_len, 0600) < 0)
      break;
    pthread_mutex_lock(&n->mu);
    pack *p = find_pack(n, ih);
    if (p)
      p->meta_ready = 1;
    pthread_cond_broadcast(&n->cv); /* the maintenance loop finishes it now, not next tick */
    pthread_mutex_unlock(&n->mu);
    break;
  }
  case CN_LT_FILE_DONE: {
    pthread_mutex_lock(&n->mu);
    pack *p = find_pack(n, ev->ih);
    pack_file *f = p && p->by_index && ev->file >= 0 && ev->file <= p->max_index ? p->by_index[ev->file] : NULL;
    if (f && !p->want_all)
      queue_adoption(n, p->ih, f->id); /* a reader is waiting; a host's files are swept */
    else if (f)
      n->next_sweep = 0;
    pthread_mutex_unlock(&n->mu);
    break;
  }
  case CN_LT_HELD:
    if (is_followed(n, ev->pk))
      hear_claim(n, ev->pk, ev->tag, ev->seq);
    break;
  case CN_LT_HASH_FAILED:
    cn_hex(ev->ih, CN_ID_BYTES, hex);
    n->hash_failures++;
    cn_log("pack %.16s: a piece from a peer failed its hash check; fetching it again", hex);
    break;
  case CN_LT_PEER_BANNED:
    n->bans++;
    cn_log("peer %s banned: it sent data that does not match its hash", ev->peer);
    break;
  case CN_LT_TORRENT_ERROR:
    cn_hex(ev->ih, CN_ID_BYTES, hex);
    cn_log("pack %.16s: %s", hex, ev->message);
    break;
  default:
    break;
  }
}

/* ---- the maintenance loop ---- */

typedef struct {
  cn_node *n;
  const uint8_t *pk;
  const cn_root *root;
} push_ctx;

static int push_one(const char *host, int port, void *ctx)
{
  push_ctx *p = ctx;
  cn_lt_push_root(p->n->lt, host, port, p->pk, p->root->seq, p->root->sig, p->root->value,
                  p->root->value_len);
  return 0;
}

/* Puts the root into the DHT and, when it is newer than what the known peers were last
 * handed, pushes it to them: followers then see a commit at once instead of at their next
 * poll (FORMAT §11.2). */
static void publish(cn_node *n, follow *f)
{
  cn_root root;
  if (cn_store_root_get(n->s, f->pk, &root) < 0)
    return;
  cn_lt_dht_put(n->lt, f->pk, NULL, 0, root.seq, root.sig, root.value, root.value_len);
  if (root.seq > f->pushed_seq) {
    f->pushed_seq = root.seq;
    f->pushes_left = PUSH_TIMES;
  }
  if (f->pushes_left > 0) { /* a receiver that has it already refuses it silently */
    push_ctx p = {n, f->pk, &root};
    cn_peers_foreach(n->s, push_one, &p);
    f->pushes_left--;
  }
}

static int connect_one(const char *host, int port, void *ctx)
{
  void **a = ctx;
  cn_node *n = a[0];
  const uint8_t *ih = a[1];
  cn_lt_add_peer(n->lt, host, port); /* peers added since start: packs added later start with them */
  cn_lt_connect(n->lt, ih, host, port);
  return 0;
}

static int listed(const uint8_t (*packs)[CN_ID_BYTES], size_t n, const uint8_t ih[CN_ID_BYTES])
{
  for (size_t i = 0; i < n; i++)
    if (!memcmp(packs[i], ih, CN_ID_BYTES))
      return 1;
  return 0;
}

/* A new root of a hosted namespace replaced some packs by their merge: a host holding
 * them all makes the merged pack itself, from its own store, exactly as the writer did
 * (FORMAT §11). Fetching it instead would mean its metadata without piece layers and a
 * recheck of everything linked in, which drops the pack's connections and, in 2.0.8, can
 * get good peers banned. Drops mu while hashing; returns with it held. */
static void rebuild_merge(cn_node *n, follow *f, const cn_root_value *rv)
{
  uint8_t removed[CN_PACKS_MAX][CN_ID_BYTES];
  size_t n_removed = 0, unknown = 0;
  for (size_t i = 0; i < f->n_handled_packs; i++)
    if (!listed((const uint8_t(*)[CN_ID_BYTES])rv->packs, rv->n_packs, f->handled_packs[i]))
      memcpy(removed[n_removed++], f->handled_packs[i], CN_ID_BYTES);
  for (size_t i = 0; i < rv->n_packs; i++) {
    char name[96];
    store_pack_torrent_name(rv->packs[i], name);
    unknown += faccessat(n->s->home_fd, name, F_OK, 0) < 0;
  }
  if (n_removed < 2 || !unknown)
    return;
  uint8_t ih[CN_ID_BYTES];
  pthread_mutex_unlock(&n->mu);
  int rc = store_pack_rebuild(n->s, (const uint8_t(*)[CN_ID_BYTES])removed, n_removed, ih);
  pthread_mutex_lock(&n->mu);
  if (rc < 0)
    return; /* an object or torrent is missing here: fetch the merge as usual */
  if (listed((const uint8_t(*)[CN_ID_BYTES])rv->packs, rv->n_packs, ih)) {
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(ih, CN_ID_BYTES, hex);
    cn_log("pack %.16s: merged %zu packs here, as the writer did", hex, n_removed);
  } else {
    /* not the writer's merge (a root in between was missed): fetch as usual */
    char name[96];
    store_pack_torrent_name(ih, name);
    unlinkat(n->s->home_fd, name, 0);
  }
}

/* Whether this node's store holds every chunk of every pack of the root it handled last.
 * Chunks stay once adopted, so the check resumes where it last stopped (held_cursor). */
static int holds_handled_packs(cn_node *n, follow *f)
{
  for (; f->held_cursor_pack < f->n_handled_packs; f->held_cursor_pack++, f->held_cursor_file = 0) {
    pack *p = find_pack(n, f->handled_packs[f->held_cursor_pack]);
    if (!p || !p->added || !p->files)
      return 0;
    for (; f->held_cursor_file < p->n_files; f->held_cursor_file++) {
      char rel[80];
      store_chunk_relpath(p->files[f->held_cursor_file].id, rel);
      if (faccessat(n->s->home_fd, rel, F_OK, 0) < 0)
        return 0;
    }
  }
  return 1;
}

static int push_held_one(const char *host, int port, void *ctx)
{
  void **a = ctx;
  cn_node *n = a[0];
  follow *f = a[1];
  cn_lt_push_held(n->lt, host, port, f->pk, f->held_seq, n->tag);
  return 0;
}

/* A host tells the known peers which root it holds in full (FORMAT §11.2): at once and a
 * few times more when that changes, then with every re-publish. This is what `sync` and
 * `status` on other nodes count; libtorrent would tell them only by a HAVE per piece. */
static void say_held(cn_node *n, follow *f, int64_t t)
{
  if (f->held_seq < f->handled_seq && holds_handled_packs(n, f)) {
    f->held_seq = f->handled_seq;
    f->held_pushes_left = PUSH_TIMES;
    f->next_held_push = t;
  }
  if (!f->held_seq || t < f->next_held_push)
    return;
  void *a[2] = {n, f};
  cn_peers_foreach(n->s, push_held_one, a);
  if (f->held_pushes_left > 0)
    f->held_pushes_left--;
  f->next_held_push = t + (f->held_pushes_left > 0 ? PUSH_AGAIN_MS : PUBLISH_EVERY_MS);
}

/* Caller holds mu, which handling a new root may drop: f is fol[i], looked up again. */
static void handle_follow(cn_node *n, size_t i, int64_t t)
{
  follow *f = &n->fol[i];
  uint64_t seq = cn_store_root_seq(n->s, f->pk);
  if (seq > f->handled_seq) {
    cn_root root;
    cn_root_value rv;
    if (cn_store_root_get(n->s, f->pk, &root) == 0 &&
        cn_root_value_parse(root.value, root.value_len, &rv) == 0) {
      if (f->how == CN_FOLLOW_HOST) {
        /* the newest pack is never a merge (FORMAT §11): start fetching it first */
        if (rv.n_packs)
          want_pack(n, rv.packs[rv.n_packs - 1], 1);
        rebuild_merge(n, f, &rv);
        f = &n->fol[i]; /* cn_node_follow may have grown the array meanwhile */
      }
      for (size_t k = 0; k < rv.n_packs; k++)
        want_pack(n, rv.packs[k], f->how == CN_FOLLOW_HOST);
      /* the merge is made (or being fetched): the torrents it replaced are not needed */
      cn_root_value handled = {.n_packs = f->n_handled_packs};
      memcpy(handled.packs, f->handled_packs, f->n_handled_packs * CN_ID_BYTES);
      cn_store_pack_forget(n->s, &handled, &rv);
      memcpy(f->handled_packs, rv.packs, rv.n_packs * CN_ID_BYTES);
      f->n_handled_packs = rv.n_packs;
      f->handled_seq = seq;
      f->held_cursor_pack = f->held_cursor_file = 0;
      f->next_publish = 0;
    }
  }
  if (f->how == CN_FOLLOW_HOST)
    say_held(n, f, t);
  if (t >= f->next_resolve) {
    cn_lt_dht_get(n->lt, f->pk, NULL, 0);
    /* until a first root arrives (the DHT may still be filling), ask at the usual pace */
    f->next_resolve = t + (seq ? n->resolve_every_ms : RESOLVE_EVERY_MS);
  }
  if (t >= f->next_publish) {
    publish(n, f);
    f->next_publish = t + (f->pushes_left > 0 ? PUSH_AGAIN_MS : PUBLISH_EVERY_MS);
  }
}

static void *maintain(void *arg)
{
  cn_node *n = arg;
  pthread_mutex_lock(&n->mu);
  while (!n->stop) {
    int64_t t = now_ms();
    for (size_t i = 0; i < n->n_fol; i++)
      handle_follow(n, i, t);
    for (size_t i = 0; i < n->n_packs; i++) {
      pack *p = &n->packs[i];
      if (!p->added && p->meta_ready) {
        if (finish_magnet(n, p) < 0)
          cn_log("pack: %s", cn_err());
        p->meta_ready = 0;
      }
    }
    if (t >= n->next_items) {
      cn_store_items_foreach(n->s, put_own_item, n);
      n->next_items = t + PUBLISH_EVERY_MS;
    }
    if (t >= n->next_sweep) {
      for (size_t i = 0; i < n->n_packs; i++)
        if (n->packs[i].want_all)
          sweep_pack(n, &n->packs[i]);
      n->next_sweep = t + SWEEP_EVERY_MS;
    }
    if (t >= n->next_connect) {
      for (size_t i = 0; i < n->n_packs; i++) {
        void *a[2] = {n, n->packs[i].ih};
        cn_peers_foreach(n->s, connect_one, a);
      }
      void *a[2] = {n, n->hello_ih};
      cn_peers_foreach(n->s, connect_one, a);
      n->next_connect = t + CONNECT_EVERY_MS;
    }
    /* handshakes are short-lived news: look often (a handful of peer lists) */
    if (t >= n->next_meet) {
      meet_peers(n);
      n->next_meet = t + TICK_MS;
    }
    struct timespec ts;
    deadline_in(&ts, TICK_MS);
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

static void on_root(const uint8_t pk[CN_PK_BYTES], uint64_t seq, void *ctx)
{
  (void)pk;
  (void)seq;
  cn_node *n = ctx;
  pthread_mutex_lock(&n->mu);
  pthread_cond_broadcast(&n->cv); /* the maintenance loop picks the new root up */
  pthread_mutex_unlock(&n->mu);
}

int cn_node_follow(cn_node *n, const uint8_t pk[CN_PK_BYTES], enum cn_follow how)
{
  pthread_mutex_lock(&n->mu);
  follow *f = NULL;
  for (size_t i = 0; i < n->n_fol; i++)
    if (!memcmp(n->fol[i].pk, pk, CN_PK_BYTES))
      f = &n->fol[i];
  if (!f) {
    n->fol = grow(n->fol, n->n_fol, &n->cap_fol, sizeof *n->fol, 8);
    f = &n->fol[n->n_fol++];
    memset(f, 0, sizeof *f);
    memcpy(f->pk, pk, CN_PK_BYTES);
    f->how = how;
  } else if (how == CN_FOLLOW_HOST && f->how != CN_FOLLOW_HOST) {
    f->how = how;
    f->handled_seq = 0; /* re-add its packs with every file wanted */
  }
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  return 0;
}

int cn_node_resolve(cn_node *n, const uint8_t pk[CN_PK_BYTES], int wait_ms)
{
  int64_t until = now_ms() + wait_ms;
  /* the routing table may still be filling: ask again until an answer lands */
  while (cn_store_root_seq(n->s, pk) == 0) {
    int64_t left = until - now_ms();
    if (left <= 0)
      return cn_fail(ETIMEDOUT, "no peer offered a root for this namespace");
    cn_lt_dht_get(n->lt, pk, NULL, 0);
    struct timespec ts;
    deadline_in(&ts, left < 500 ? (int)left : 500);
    pthread_mutex_lock(&n->mu);
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
    pthread_mutex_unlock(&n->mu);
  }
  return 0;
}

/* ---- status ---- */

/* The peers connected in a namespace's packs, with the number of packs each seeds. */
typedef struct {
  char tags[64][13];
  char eps[64][48];
  int counts[64];
  size_t n;
} seed_tally;

static int tally_peer(const char *tag, const char *endpoint, int seed, const char *client, void *ctx)
{
  (void)client;
  seed_tally *t = ctx;
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->tags[i], tag)) {
      t->counts[i] += seed != 0;
      return 0;
    }
  if (t->n < 64) {
    snprintf(t->tags[t->n], sizeof t->tags[0], "%s", tag);
    snprintf(t->eps[t->n], sizeof t->eps[0], "%s", endpoint);
    t->counts[t->n++] = seed != 0;
  }
  return 0;
}

/* Whether a peer last said it holds root seq (or a later one) in full (caller holds mu). */
static int said_held(cn_node *n, const uint8_t pk[CN_PK_BYTES], const char *tag, uint64_t seq)
{
  const held_claim *c = find_claim(n, pk, tag);
  return c && c->seq >= seq;
}

int cn_node_status(cn_node *n, const uint8_t pk[CN_PK_BYTES], cn_ns_status *st)
{
  memset(st, 0, sizeof *st);
  cn_root root;
  cn_root_value rv;
  int rc = cn_store_root_get(n->s, pk, &root);
  if (rc < 0)
    return rc;
  if ((rc = cn_root_value_parse(root.value, root.value_len, &rv)) < 0)
    return rc;
  st->seq = root.seq;
  st->n_packs = rv.n_packs;
  seed_tally *t = calloc(1, sizeof *t);
  if (!t)
    return cn_fail(ENOMEM, "out of memory");
  pthread_mutex_lock(&n->mu);
  for (size_t i = 0; i < rv.n_packs; i++) {
    pack *p = find_pack(n, rv.packs[i]);
    if (!p)
      continue;
    for (size_t j = 0; j < p->n_files; j++) {
      char rel[80];
      st->bytes_total += p->files[j].size;
      store_chunk_relpath(p->files[j].id, rel);
      if (faccessat(n->s->home_fd, rel, F_OK, 0) == 0)
        st->bytes_local += p->files[j].size;
    }
    cn_lt_torrent_peers(n->lt, p->ih, tally_peer, t);
  }
  /* A connected peer holds the commit in full when it seeds every one of its packs or
   * says it holds them (a host, once they are in its store: cairn_held). */
  for (size_t i = 0; i < t->n; i++)
    if (((size_t)t->counts[i] == rv.n_packs || said_held(n, pk, t->tags[i], root.seq)) &&
        strcmp(t->tags[i], n->tag) && st->n_hosts < 16)
      snprintf(st->hosts[st->n_hosts++], sizeof st->hosts[0], "%s %s", t->tags[i], t->eps[i]);
  pthread_mutex_unlock(&n->mu);
  free(t);
  return 0;
}

typedef struct {
  cn_node *n;
  int (*fn)(const char *line, void *ctx);
  void *ctx;
} peers_ctx;

typedef struct {
  char ep[300];
  int connected;
} peer_probe;

static int probe_peer(const char *tag, const char *endpoint, int seed, const char *client, void *ctx)
{
  (void)tag;
  (void)seed;
  peer_probe *p = ctx;
  if (!strcmp(endpoint, p->ep))
    p->connected = 1;
  return 0;
}

static int list_peer(const char *host, int port, void *ctx)
{
  peers_ctx *pc = ctx;
  peer_probe probe = {.connected = 0};
  snprintf(probe.ep, sizeof probe.ep, "%s:%d", host, port);
  pthread_mutex_lock(&pc->n->mu);
  for (size_t i = 0; i < pc->n->n_packs && !probe.connected; i++)
    cn_lt_torrent_peers(pc->n->lt, pc->n->packs[i].ih, probe_peer, &probe);
  pthread_mutex_unlock(&pc->n->mu);
  char line[400];
  snprintf(line, sizeof line, "%s %s", probe.ep, probe.connected ? "connected" : "known");
  return pc->fn(line, pc->ctx);
}

int cn_node_peers(cn_node *n, int (*fn)(const char *line, void *ctx), void *ctx)
{
  peers_ctx pc = {n, fn, ctx};
  return cn_peers_foreach(n->s, list_peer, &pc);
}

/* ---- control socket ---- */

static int sock_line(const char *line, void *ctx)
{
  int fd = *(int *)ctx;
  dprintf(fd, "%s\n", line);
  return 0;
}

static void serve_request(cn_node *n, int fd, char *req)
{
  req[strcspn(req, "\r\n")] = 0;
  uint8_t pk[CN_PK_BYTES];
  if (!strcmp(req, "peers")) {
    cn_node_peers(n, sock_line, &fd);
  } else if (!strncmp(req, "status ", 7) && cn_unhex(req + 7, pk, CN_PK_BYTES) == 0) {
    cn_ns_status st;
    if (cn_node_status(n, pk, &st) < 0) {
      dprintf(fd, "error %s\n", cn_err());
      return;
    }
    dprintf(fd, "seq %llu\npacks %zu\nbytes %llu %llu\n", (unsigned long long)st.seq, st.n_packs,
            (unsigned long long)st.bytes_local, (unsigned long long)st.bytes_total);
    for (size_t i = 0; i < st.n_hosts; i++)
      dprintf(fd, "host %s\n", st.hosts[i]);
  } else if (!strncmp(req, "host ", 5) && cn_unhex(req + 5, pk, CN_PK_BYTES) == 0) {
    cn_node_follow(n, pk, CN_FOLLOW_HOST);
    dprintf(fd, "ok\n");
  } else if (!strncmp(req, "follow ", 7) && cn_unhex(req + 7, pk, CN_PK_BYTES) == 0) {
    cn_node_follow(n, pk, CN_FOLLOW_READ);
    dprintf(fd, "ok\n");
  } else if (!strncmp(req, "resolve ", 8) && cn_unhex(req + 8, pk, CN_PK_BYTES) == 0) {
    cn_node_follow(n, pk, CN_FOLLOW_READ);
    int rc = cn_node_resolve(n, pk, 5000);
    dprintf(fd, rc < 0 ? "error %s\n" : "ok\n", cn_err());
  } else if (!strcmp(req, "packs")) {
    /* for people and tests: what the session holds */
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->n_packs; i++) {
      char hex[CN_HEX_ID_LEN + 1];
      cn_lt_status st;
      cn_hex(n->packs[i].ih, CN_ID_BYTES, hex);
      cn_lt_torrent_status(n->lt, n->packs[i].ih, &st);
      dprintf(fd, "%s %s files %zu peers %d seeds %d progress %.3f%s%s\n", hex,
              n->packs[i].added ? "added" : "metadata", n->packs[i].n_files, st.peers, st.seeds,
              st.progress, st.error[0] ? " error " : "", st.error);
    }
    pthread_mutex_unlock(&n->mu);
  } else if (!strncmp(req, "keys ", 5) && cn_unhex(req + 5, pk, CN_PK_BYTES) == 0) {
    uint8_t keys[64][CN_PK_BYTES];
    size_t nk = cn_node_peer_keys(n, pk, keys, 64);
    for (size_t i = 0; i < nk; i++) {
      char hex[2 * CN_PK_BYTES + 1];
      cn_hex(keys[i], CN_PK_BYTES, hex);
      dprintf(fd, "%s\n", hex);
    }
  } else if (!strcmp(req, "publish")) {
    cn_node_publish_items(n); /* the CLI added an item to items/ */
    dprintf(fd, "ok\n");
  } else if (!strcmp(req, "port")) {
    dprintf(fd, "%d\n", cn_node_port(n));
  } else {
    dprintf(fd, "error unknown request\n");
  }
}

static void *serve_sock(void *arg)
{
  cn_node *n = arg;
  while (!n->stop) {
    struct pollfd p = {n->sock_fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0)
      continue;
    int fd = accept4(n->sock_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    char req[512];
    ssize_t got = 0, r;
    while (got < (ssize_t)sizeof req - 1 && (r = read(fd, req + got, sizeof req - 1 - (size_t)got)) > 0) {
      got += r;
      if (memchr(req, '\n', (size_t)got))
        break;
    }
    req[got > 0 ? got : 0] = 0;
    serve_request(n, fd, req);
    close(fd);
  }
  return NULL;
}

int cn_node_ask(const char *home, const char *request, int (*fn)(const char *line, void *ctx), void *ctx)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof a.sun_path, "%s/run/node.sock", home) >= (int)sizeof a.sun_path)
    return cn_fail(ENAMETOOLONG, "home path too long for a socket");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return cn_fail(e == ENOENT ? ENOENT : ECONNREFUSED, "no cairn node is running for %s", home);
  }
  dprintf(fd, "%s\n", request);
  FILE *f = fdopen(fd, "r");
  char line[1024];
  int rc = 0;
  /* read to the end even without fn: the node answers every request */
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (!rc && fn)
      rc = fn(line, ctx);
  }
  fclose(f);
  return rc;
}

/* ---- start and stop ---- */

static int add_node(const char *host, int port, void *ctx)
{
  cn_lt_dht_add_node(ctx, host, port);
  cn_lt_add_peer(ctx, host, port); /* every pack starts connected to the known peers */
  return 0;
}

int cn_node_start(cn_store *s, const char *listen_on, cn_node **out)
{
  *out = NULL;
  cn_node *n = calloc(1, sizeof *n);
  if (!n)
    abort();
  n->s = s;
  const char *poll_ms = getenv("CAIRN_POLL_MS");
  n->resolve_every_ms = poll_ms && atoi(poll_ms) >= 100 ? atoi(poll_ms) : RESOLVE_EVERY_MS;
  pthread_mutex_init(&n->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&n->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_cond_init(&n->adopt_cv, NULL);
  uint8_t seed[CN_SEED_BYTES];
  cn_nskey k;
  int rc = cn_store_node_seed(s, seed);
  if (rc < 0) {
    free(n);
    return rc;
  }
  cn_nskey_from_seed(&k, seed);
  char hex[2 * CN_PK_BYTES + 1];
  cn_hex(k.pk, CN_PK_BYTES, hex);
  memcpy(n->node_seed, seed, CN_SEED_BYTES);
  memcpy(n->node_pk, k.pk, CN_PK_BYTES);
  cn_nskey_wipe(&k);
  snprintf(n->tag, sizeof n->tag, "%.12s", hex);
  char err[256] = "", client[128];
  snprintf(client, sizeof client, "%s%s", CN_NODE_CLIENT_PREFIX, hex);
  n->lt = cn_lt_start(listen_on, n->tag, client, on_event, n, err, sizeof err);
  if (!n->lt) {
    free(n);
    return cn_fail(EADDRNOTAVAIL, "cannot start the peer session on %s: %s", listen_on, err);
  }
  /* the session binds asynchronously: a bad address shows up as no listening socket */
  for (int i = 0; i < 100 && !cn_lt_listen_port(n->lt); i++)
    usleep(20000);
  char host[256];
  int want_port = 0;
  cn_parse_hostport(listen_on, host, sizeof host, &want_port);
  /* libtorrent moves to another port when the one asked for is taken: peers that know
   * this node by its address would never find it, so refuse instead */
  if (!cn_lt_listen_port(n->lt) || (want_port && cn_lt_listen_port(n->lt) != want_port)) {
    cn_lt_stop(n->lt);
    free(n);
    return cn_fail(EADDRINUSE, "cannot listen on %s (address in use or not local)", listen_on);
  }
  cn_peers_foreach(s, add_node, n->lt);
  /* a control client that hangs up before the answer must not kill the node */
  signal(SIGPIPE, SIG_IGN);
  cn_sha256(HELLO_NAME, strlen(HELLO_NAME), n->hello_ih);
  char hello_dir[4200];
  snprintf(hello_dir, sizeof hello_dir, "%s/tmp", s->home);
  if (cn_lt_add_magnet(n->lt, n->hello_ih, hello_dir) < 0)
    cn_log("cannot join the hello torrent: peers will not learn this node's key");

  char run[4096];
  snprintf(run, sizeof run, "%s/run", s->home);
  mkdir(run, 0700);
  if (snprintf(n->sock_path, sizeof n->sock_path, "%.200s/run/node.sock", s->home) >= 100)
    cn_log("home path too long for a control socket; status and sync need a shorter one");
  n->sock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%.100s", n->sock_path);
  /* a socket left by a killed node is stale: nobody answers on it */
  if (cn_node_ask(s->home, "port", NULL, NULL) == -ECONNREFUSED || access(n->sock_path, F_OK) == 0) {
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(probe, (struct sockaddr *)&a, sizeof a) < 0)
      unlink(n->sock_path);
    close(probe);
  }
  if (bind(n->sock_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(n->sock_fd, 16) < 0) {
    cn_log("control socket %s: %s (another node runs on this home?)", n->sock_path, strerror(errno));
    close(n->sock_fd);
    n->sock_fd = -1;
  } else {
    pthread_create(&n->sock_thread, NULL, serve_sock, n);
  }
  cn_store_set_fetcher(s, fetch, n);
  cn_store_set_root_listener(s, on_root, n);
  pthread_create(&n->maint, NULL, maintain, n);
  pthread_create(&n->adopter, NULL, adopt_queued, n);
  *out = n;
  return 0;
}

int cn_node_port(cn_node *n) { return cn_lt_listen_port(n->lt); }

void cn_node_stop(cn_node *n)
{
  if (!n)
    return;
  cn_store_set_fetcher(n->s, NULL, NULL);
  cn_store_set_root_listener(n->s, NULL, NULL);
  pthread_mutex_lock(&n->mu);
  n->stop = 1;
  pthread_cond_broadcast(&n->cv);
  pthread_cond_signal(&n->adopt_cv);
  pthread_mutex_unlock(&n->mu);
  pthread_join(n->maint, NULL);
  pthread_join(n->adopter, NULL);
  if (n->sock_fd >= 0) {
    pthread_join(n->sock_thread, NULL);
    close(n->sock_fd);
    unlink(n->sock_path);
  }
  cn_lt_stop(n->lt);
  for (size_t i = 0; i < n->n_packs; i++) {
    free(n->packs[i].files);
    free(n->packs[i].by_index);
  }
  free(n->packs);
  free(n->fol);
  free(n->heard);
  free(n->claims);
  free(n->met);
  free(n->to_adopt);
  pthread_cond_destroy(&n->adopt_cv);
  pthread_cond_destroy(&n->cv);
  pthread_mutex_destroy(&n->mu);
  free(n);
}
