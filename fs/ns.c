/*
 * Namespaces: opening at the latest signed root, path operations on the in-memory tree,
 * commits and checks.
 *
 * commit object (stored as a plain chunk; only the tree root inside is encrypted):
 *   'C' version pk[32] varint(seq) u8(has_parent) [parent[32]] svarint(time_ns)
 *   bytes(box(read_key, root entry)) varint(n) n*id[32]
 * signed root value (BEP 44 v): see cn_root_value in dht/dht.h (commit ID and packs)
 */
#include "fs/internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMMIT_KIND 'C'
#define COMMIT_VERSION 1
/* How long after a commit its pack is left out of merges: hosts that follow the
 * namespace fetch it meanwhile and can then make the merge themselves (FORMAT §11). */
#define PACK_SETTLE_NS (30ll * 1000000000)

int64_t fs_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- objects ---- */

/* Appends id to a growing array of IDs. */
static void push_id(uint8_t (**ids)[CN_ID_BYTES], size_t *n, size_t *cap, const uint8_t id[CN_ID_BYTES])
{
  if (*n == *cap) {
    *cap = *cap ? 2 * *cap : 1024;
    *ids = realloc(*ids, *cap * CN_ID_BYTES);
    if (!*ids)
      abort();
  }
  memcpy((*ids)[(*n)++], id, CN_ID_BYTES);
}

int fs_note_chunk(cn_ns *ns, const uint8_t id[CN_ID_BYTES], size_t len)
{
  push_id(&ns->touched, &ns->n_touched, &ns->cap_touched, id);
  ns->staged_bytes += len;
  return 0;
}

int fs_seal_store(cn_ns *ns, const void *plain, size_t len, cn_ref *ref, size_t *sealed_len)
{
  uint8_t *sealed = malloc(cn_seal_bound(len));
  if (!sealed)
    abort();
  cn_seal(ns->key.convergence, plain, len, sealed, sealed_len, ref->key);
  int rc = cn_store_put(ns->store, sealed, *sealed_len, ref->id);
  free(sealed);
  return rc;
}

int fs_put_object(cn_ns *ns, const void *plain, size_t len, cn_ref *ref)
{
  size_t sealed_len;
  int rc = fs_seal_store(ns, plain, len, ref, &sealed_len);
  return rc < 0 ? rc : fs_note_chunk(ns, ref->id, sealed_len);
}

int fs_get_object(cn_ns *ns, const uint8_t id[CN_ID_BYTES], const uint8_t key[CN_KEY_BYTES],
                  uint8_t **plain, size_t *len)
{
  uint8_t *sealed;
  size_t sealed_len;
  /* the AEAD tag authenticates every byte under a key only the tree above knows, so the
   * chunk ID is hashed only when that check fails, to tell corruption from a wrong key */
  int rc = cn_store_read(ns->store, id, &sealed, &sealed_len);
  if (rc < 0)
    return rc;
  rc = cn_open(key, sealed, sealed_len, plain, len);
  free(sealed);
  if (rc < 0 && (rc = cn_store_get(ns->store, id, &sealed, &sealed_len)) == 0) {
    free(sealed);
    rc = -EBADMSG;
  }
  if (rc == -EIO || rc == -ENOENT)
    return rc; /* corrupt (logged by the store) or set aside by repair */
  if (rc < 0) {
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(id, CN_ID_BYTES, hex);
    cn_log("chunk %s does not decrypt: %s", hex, cn_err());
    return cn_fail(EIO, "chunk %s does not decrypt", hex);
  }
  return 0;
}

/* ---- commits ---- */

typedef struct {
  uint8_t pk[CN_PK_BYTES];
  uint64_t seq;
  int has_parent;
  uint8_t parent[CN_ID_BYTES];
  int64_t time_ns;
  const uint8_t *box;
  size_t box_len;
  const uint8_t *listed;
  uint64_t n_listed;
} commit_view;

static int commit_parse(const uint8_t *data, size_t len, commit_view *c)
{
  cn_reader r;
  cn_reader_init(&r, data, len);
  uint8_t kind = cn_read_u8(&r), version = cn_read_u8(&r);
  const uint8_t *pk = cn_read_raw(&r, CN_PK_BYTES);
  c->seq = cn_read_varint(&r);
  c->has_parent = cn_read_u8(&r);
  const uint8_t *parent = c->has_parent == 1 ? cn_read_raw(&r, CN_ID_BYTES) : NULL;
  c->time_ns = cn_read_svarint(&r);
  c->box = cn_read_bytes(&r, &c->box_len);
  c->n_listed = cn_read_varint(&r);
  if (r.bad || kind != COMMIT_KIND || c->has_parent > 1 || c->n_listed > (len - r.pos) / CN_ID_BYTES)
    return cn_fail(EIO, "malformed commit object");
  if (version != COMMIT_VERSION)
    return cn_fail(EIO, "commit object version %u is not supported", version);
  c->listed = cn_read_raw(&r, c->n_listed * CN_ID_BYTES);
  if (r.bad || r.pos != r.len)
    return cn_fail(EIO, "malformed commit object (trailing bytes)");
  memcpy(c->pk, pk, CN_PK_BYTES);
  if (parent)
    memcpy(c->parent, parent, CN_ID_BYTES);
  return 0;
}

/* Reads the namespace's stored root, checks its signature, returns the commit ID. */
static int head_of(cn_store *s, const uint8_t pk[CN_PK_BYTES], cn_root *root, uint8_t commit_id[CN_ID_BYTES])
{
  int rc = cn_store_root_get(s, pk, root);
  if (rc < 0)
    return rc;
  uint8_t msg[1100];
  size_t mlen = cn_root_signing_bytes(root->seq, root->value, root->value_len, msg);
  if (cn_verify(pk, msg, mlen, root->sig) < 0) {
    cn_log("stored root seq %llu has a bad signature", (unsigned long long)root->seq);
    return cn_fail(EIO, "stored root has a bad signature");
  }
  cn_root_value v;
  if (cn_root_value_parse(root->value, root->value_len, &v) < 0)
    return cn_fail(EIO, "stored root: %s", cn_err());
  memcpy(commit_id, v.commit, CN_ID_BYTES);
  return 0;
}

static void default_root(cn_entry *root)
{
  memset(root, 0, sizeof *root);
  root->name = strdup("");
  root->attr.type = CN_DIR;
  root->attr.mode = 0755;
  root->attr.uid = (uint32_t)getuid();
  root->attr.gid = (uint32_t)getgid();
  root->attr.mtime_ns = root->attr.atime_ns = root->attr.ctime_ns = fs_now_ns();
}

static cn_ns *ns_alloc(cn_store *s, const cn_nskey *key)
{
  cn_ns *ns = calloc(1, sizeof *ns);
  if (!ns)
    abort();
  ns->store = s;
  ns->key = *key;
  ns->lock_fd = -1;
  if (key->access >= CN_ACCESS_READ)
    cn_chunker_init(&ns->chunker, key->convergence);
  return ns;
}

/* Loads commit id into ns: its seq, and (with a read key) its tree root. want_seq, when
 * non-zero, is the seq the commit must carry. */
static int load_commit(cn_ns *ns, const uint8_t id[CN_ID_BYTES], uint64_t want_seq)
{
  uint8_t *data;
  size_t len;
  int rc = cn_store_get(ns->store, id, &data, &len);
  if (rc < 0)
    return rc;
  commit_view c;
  rc = commit_parse(data, len, &c);
  if (!rc && (memcmp(c.pk, ns->key.pk, CN_PK_BYTES) != 0 || (want_seq && c.seq != want_seq)))
    rc = cn_fail(EIO, "commit does not match its signed root (namespace or seq differ)");
  if (!rc && ns->key.access >= CN_ACCESS_READ) {
    uint8_t *plain = c.box_len > CN_BOX_OVERHEAD ? malloc(c.box_len - CN_BOX_OVERHEAD) : NULL;
    if (!plain || cn_unbox(ns->key.read_key, c.box, c.box_len, plain) < 0) {
      rc = cn_fail(EIO, "cannot decrypt the tree root: wrong read key or damaged commit");
    } else {
      cn_reader r;
      cn_reader_init(&r, plain, c.box_len - CN_BOX_OVERHEAD);
      rc = fs_entry_decode(&r, &ns->root);
      if (!rc && ns->root.attr.type != CN_DIR)
        rc = cn_fail(EIO, "tree root is not a directory");
    }
    free(plain);
  } else if (!rc) {
    default_root(&ns->root);
  }
  if (!rc) {
    ns->seq = c.seq;
    ns->has_head = 1;
    memcpy(ns->head, id, CN_ID_BYTES);
  }
  free(data);
  return rc;
}

static int load_head(cn_ns *ns)
{
  cn_root root;
  uint8_t id[CN_ID_BYTES];
  int rc = head_of(ns->store, ns->key.pk, &root, id);
  if (rc == -ENOENT) {
    default_root(&ns->root);
    return 0;
  }
  return rc < 0 ? rc : load_commit(ns, id, root.seq);
}

int cn_ns_history(cn_ns *ns, cn_history_fn fn, void *ctx)
{
  uint8_t id[CN_ID_BYTES];
  int more = ns->has_head, rc = 0;
  uint64_t below = UINT64_MAX;
  memcpy(id, ns->head, CN_ID_BYTES);
  while (more && !rc) {
    uint8_t *data;
    size_t len;
    commit_view c;
    if ((rc = cn_store_get(ns->store, id, &data, &len)) < 0)
      break;
    rc = commit_parse(data, len, &c);
    if (!rc && (memcmp(c.pk, ns->key.pk, CN_PK_BYTES) != 0 || c.seq >= below))
      rc = cn_fail(EIO, "commit history is out of sequence");
    if (!rc)
      rc = fn(c.seq, c.time_ns, id, ctx);
    more = c.has_parent;
    below = c.seq;
    memcpy(id, c.parent, CN_ID_BYTES);
    free(data);
  }
  return rc;
}

typedef struct {
  uint64_t seq;
  int found;
  uint8_t id[CN_ID_BYTES];
} seq_search;

static int match_seq(uint64_t seq, int64_t time_ns, const uint8_t id[CN_ID_BYTES], void *ctx)
{
  seq_search *q = ctx;
  if (seq != q->seq)
    return seq < q->seq; /* history runs backwards: past it means it does not exist */
  memcpy(q->id, id, CN_ID_BYTES);
  q->found = 1;
  return 1;
}

int cn_ns_open_at(cn_store *s, const cn_nskey *key, uint64_t seq, cn_ns **out)
{
  cn_ns *latest;
  *out = NULL;
  int rc = cn_ns_open(s, key, 0, &latest);
  if (rc < 0)
    return rc;
  seq_search q = {.seq = seq};
  rc = cn_ns_history(latest, match_seq, &q);
  cn_ns_close(latest);
  if (rc < 0)
    return rc;
  if (!q.found)
    return cn_fail(ENOENT, "this namespace has no commit with seq %llu", (unsigned long long)seq);
  cn_ns *ns = ns_alloc(s, key);
  if ((rc = load_commit(ns, q.id, seq)) < 0) {
    cn_ns_close(ns);
    return rc;
  }
  *out = ns;
  return 0;
}

int cn_ns_open(cn_store *s, const cn_nskey *key, int for_write, cn_ns **out)
{
  *out = NULL;
  if (for_write && key->access != CN_ACCESS_WRITE)
    return cn_fail(EROFS, "this namespace is held by a %s-cap: writing needs its write-cap",
                   key->access == CN_ACCESS_READ ? "read" : "verify");
  cn_ns *ns = ns_alloc(s, key);
  int rc = 0;
  if (for_write && (ns->lock_fd = cn_store_lock_ns(s, key->pk)) < 0)
    rc = ns->lock_fd;
  if (!rc)
    rc = load_head(ns);
  if (rc < 0) {
    cn_ns_close(ns);
    return rc;
  }
  *out = ns;
  return 0;
}

void cn_ns_close(cn_ns *ns)
{
  if (!ns)
    return;
  if (ns->lock_fd >= 0)
    close(ns->lock_fd);
  fs_entry_free(&ns->root);
  free(ns->touched);
  cn_nskey_wipe(&ns->key);
  free(ns);
}

uint64_t cn_ns_seq(const cn_ns *ns) { return ns->seq; }

static int compare_ids(const void *a, const void *b)
{
  return memcmp(a, b, CN_ID_BYTES);
}

/* A commit between cn_ns_commit_begin and cn_ns_commit_end (fs.h). */
struct cn_commit {
  uint64_t seq;
  cn_buf object;                   /* the commit object, built from the tree at begin */
  uint8_t (*ids)[CN_ID_BYTES];     /* what the commit lists, then what else its pack holds */
  size_t n_listed, n_ids, cap_ids;
  uint64_t staged_bytes;
  uint8_t id[CN_ID_BYTES];         /* the commit object's ID, once stored */
  int appended_pack;               /* the root's last pack is new with this commit: */
  uint8_t newest_pack[CN_ID_BYTES]; /* this one */
};

/* The packs the namespace's current root names. A root without packs (written before
 * packs existed) means nothing is packed yet: then every commit of the chain and every
 * object they listed join this commit's pack, so the first pack covers the history. */
static int previous_packs(cn_ns *ns, cn_commit *c, cn_root_value *rv)
{
  cn_root root;
  int rc = cn_store_root_get(ns->store, ns->key.pk, &root);
  if (rc == -ENOENT)
    return 0;
  if (rc < 0 || (rc = cn_root_value_parse(root.value, root.value_len, rv)) < 0)
    return rc;
  if (rv->n_packs)
    return 0;
  uint8_t id[CN_ID_BYTES];
  memcpy(id, rv->commit, CN_ID_BYTES);
  for (int more = 1; more && !rc;) {
    uint8_t *data;
    size_t len;
    commit_view view;
    if ((rc = cn_store_get(ns->store, id, &data, &len)) < 0)
      break;
    if ((rc = commit_parse(data, len, &view)) == 0) {
      push_id(&c->ids, &c->n_ids, &c->cap_ids, id);
      for (uint64_t i = 0; i < view.n_listed; i++)
        push_id(&c->ids, &c->n_ids, &c->cap_ids, view.listed + i * CN_ID_BYTES);
      more = view.has_parent;
      memcpy(id, view.parent, CN_ID_BYTES);
    }
    free(data);
  }
  return rc;
}

int cn_ns_commit_begin(cn_ns *ns, cn_commit **out)
{
  *out = NULL;
  if (!ns->dirty && ns->has_head)
    return 0; /* a namespace without any commit gets its first one, even if empty */
  if (ns->key.access != CN_ACCESS_WRITE || ns->lock_fd < 0)
    return cn_fail(EROFS, "namespace is not open for writing");
  int rc = fs_dir_load(ns, &ns->root, NULL);
  if (!rc)
    rc = fs_dir_store(ns, ns->root.dir);
  if (rc < 0)
    return rc;

  cn_commit *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  cn_buf root_entry = {0};
  fs_entry_encode(&root_entry, &ns->root);
  uint8_t *box = malloc(root_entry.len + CN_BOX_OVERHEAD);
  cn_box(ns->key.read_key, root_entry.p, root_entry.len, box);
  qsort(ns->touched, ns->n_touched, CN_ID_BYTES, compare_ids);
  size_t unique = 0;
  for (size_t i = 0; i < ns->n_touched; i++)
    if (!unique || memcmp(ns->touched[unique - 1], ns->touched[i], CN_ID_BYTES))
      memmove(ns->touched[unique++], ns->touched[i], CN_ID_BYTES);
  size_t n_listed = cn_store_filter_unlisted(ns->store, ns->touched, unique);

  c->seq = cn_store_root_seq(ns->store, ns->key.pk) + 1;
  if (c->seq <= ns->seq)
    c->seq = ns->seq + 1;
  cn_buf_u8(&c->object, COMMIT_KIND);
  cn_buf_u8(&c->object, COMMIT_VERSION);
  cn_buf_put(&c->object, ns->key.pk, CN_PK_BYTES);
  cn_buf_varint(&c->object, c->seq);
  cn_buf_u8(&c->object, (uint8_t)ns->has_head);
  if (ns->has_head)
    cn_buf_put(&c->object, ns->head, CN_ID_BYTES);
  cn_buf_svarint(&c->object, fs_now_ns());
  cn_buf_bytes(&c->object, box, root_entry.len + CN_BOX_OVERHEAD);
  cn_buf_varint(&c->object, n_listed);
  cn_buf_put(&c->object, ns->touched, n_listed * CN_ID_BYTES);
  free(box);
  cn_buf_free(&root_entry);

  /* the tree as it is now is in the commit: changes from here on are the next one's */
  c->ids = ns->touched;
  c->n_listed = c->n_ids = n_listed;
  c->cap_ids = ns->cap_touched;
  c->staged_bytes = ns->staged_bytes;
  ns->touched = NULL;
  ns->n_touched = ns->cap_touched = 0;
  ns->staged_bytes = 0;
  ns->dirty = 0;
  *out = c;
  return 0;
}

int cn_ns_commit_store(cn_ns *ns, cn_commit *c)
{
  int rc = cn_store_put(ns->store, c->object.p, c->object.len, c->id);
  if (!rc)
    rc = cn_store_flush(ns->store); /* every chunk durable before the root points at it */
  if (rc < 0)
    return rc;

  /* the commit and what it listed become a pack; the root names every pack. The commit
   * itself is listed too, so a verify-cap host can account for it. */
  c->n_ids = c->n_listed;
  push_id(&c->ids, &c->n_ids, &c->cap_ids, c->id);
  cn_root_value rv = {0};
  rc = previous_packs(ns, c, &rv);
  cn_root_value published = rv;
  int newest_settled = !rv.n_packs || memcmp(rv.packs[rv.n_packs - 1], ns->newest_pack, CN_ID_BYTES) ||
                       fs_now_ns() - ns->newest_pack_ns >= PACK_SETTLE_NS;
  if (!rc)
    rc = cn_store_pack_add(ns->store, &rv, (const uint8_t(*)[CN_ID_BYTES])c->ids, c->n_ids, newest_settled);
  cn_root root = {.seq = c->seq};
  if (!rc) {
    memcpy(rv.commit, c->id, CN_ID_BYTES);
    cn_root_value_build(&rv, &root);
    uint8_t msg[1100];
    size_t mlen = cn_root_signing_bytes(c->seq, root.value, root.value_len, msg);
    cn_sign(ns->key.seed, msg, mlen, root.sig);
    rc = cn_store_root_put(ns->store, ns->key.pk, &root, (const uint8_t(*)[CN_ID_BYTES])c->ids,
                           c->n_listed);
  }
  if (rc < 0)
    return rc;
  cn_store_pack_forget(ns->store, &published, &rv);
  c->appended_pack = rv.n_packs && (!published.n_packs || memcmp(rv.packs[rv.n_packs - 1],
                                                                 published.packs[published.n_packs - 1],
                                                                 CN_ID_BYTES));
  if (c->appended_pack)
    memcpy(c->newest_pack, rv.packs[rv.n_packs - 1], CN_ID_BYTES);
  return 0;
}

void cn_ns_commit_end(cn_ns *ns, cn_commit *c, int rc)
{
  if (!c)
    return;
  if (rc == 0) {
    if (c->appended_pack) {
      memcpy(ns->newest_pack, c->newest_pack, CN_ID_BYTES);
      ns->newest_pack_ns = fs_now_ns();
    }
    ns->seq = c->seq;
    ns->has_head = 1;
    memcpy(ns->head, c->id, CN_ID_BYTES);
  } else {
    /* a retry stores the same tree (its nodes are written already) and lists the same
     * objects */
    for (size_t i = 0; i < c->n_listed; i++)
      fs_note_chunk(ns, c->ids[i], 0);
    ns->staged_bytes += c->staged_bytes;
    ns->dirty = 1;
  }
  cn_buf_free(&c->object);
  free(c->ids);
  free(c);
}

int cn_ns_commit(cn_ns *ns)
{
  cn_commit *c;
  int rc = cn_ns_commit_begin(ns, &c);
  if (rc < 0 || !c)
    return rc;
  rc = cn_ns_commit_store(ns, c);
  cn_ns_commit_end(ns, c, rc);
  return rc;
}

/* ---- paths ---- */

static int need_read(cn_ns *ns)
{
  if (ns->key.access < CN_ACCESS_READ)
    return cn_fail(EACCES, "a verify-cap can check this namespace but not read it");
  return 0;
}

int fs_need_write(cn_ns *ns)
{
  if (ns->key.access != CN_ACCESS_WRITE || ns->lock_fd < 0)
    return cn_fail(EROFS, "namespace is read-only here (held by a %s-cap)",
                   ns->key.access == CN_ACCESS_WRITE ? "write" :
                   ns->key.access == CN_ACCESS_READ ? "read" : "verify");
  return 0;
}

/* Next component of *p (advancing it); 0 at the end, -errno for a bad one. */
static int next_component(const char **p, char name[256])
{
  while (**p == '/')
    (*p)++;
  if (!**p)
    return 0;
  size_t n = strcspn(*p, "/");
  if (n > 255)
    return cn_fail(ENAMETOOLONG, "path component longer than 255 bytes");
  memcpy(name, *p, n);
  name[n] = 0;
  *p += n;
  if (!strcmp(name, ".") || !strcmp(name, ".."))
    return cn_fail(EINVAL, "'.' and '..' are not allowed in cairn paths");
  return 1;
}

void fs_make_attr(cn_attr *a, const cn_attr *meta, cn_ftype type)
{
  if (meta) {
    *a = *meta;
  } else {
    memset(a, 0, sizeof *a);
    a->mode = type == CN_DIR ? 0755 : 0644;
    a->uid = (uint32_t)getuid();
    a->gid = (uint32_t)getgid();
    a->mtime_ns = a->atime_ns = a->ctime_ns = fs_now_ns();
  }
  a->type = type;
  a->mode &= 07777;
}

void fs_mark_dirty(cn_ns *ns, cn_dir *d)
{
  for (; d; d = d->parent)
    d->dirty = 1;
  ns->dirty = 1;
}

/* Entry changes update the directory's mtime and ctime, as POSIX does. */
void fs_touch_dir(cn_ns *ns, cn_dir *d)
{
  int64_t t = fs_now_ns();
  d->owner->attr.mtime_ns = d->owner->attr.ctime_ns = t;
  fs_mark_dirty(ns, d);
}

/* Resolves everything but the last component to a loaded directory. *name receives the
 * last component ("" for the root). create makes missing directories on the way. */
static int resolve_parent(cn_ns *ns, const char *path, int create, cn_dir **dir, char name[256])
{
  int rc = need_read(ns);
  if (rc < 0)
    return rc;
  if ((rc = fs_dir_load(ns, &ns->root, NULL)) < 0)
    return rc;
  cn_dir *d = ns->root.dir;
  const char *p = path;
  name[0] = 0;
  while ((rc = next_component(&p, name)) > 0) {
    const char *rest = p;
    while (*rest == '/')
      rest++;
    if (!*rest)
      break; /* name is the last component */
    size_t pos;
    cn_entry *e = fs_dir_find(d, name, &pos);
    if (!e && create) {
      e = calloc(1, sizeof *e);
      e->name = strdup(name);
      fs_make_attr(&e->attr, NULL, CN_DIR);
      e->dir = calloc(1, sizeof *e->dir);
      e->dir->owner = e;
      fs_dir_insert(d, pos, e);
      fs_touch_dir(ns, d);
      fs_mark_dirty(ns, e->dir);
    }
    if (!e)
      return cn_fail(ENOENT, "'%s' does not exist", name);
    if (e->attr.type != CN_DIR)
      return cn_fail(ENOTDIR, "'%s' is not a directory", name);
    if ((rc = fs_dir_load(ns, e, d)) < 0)
      return rc;
    d = e->dir;
    name[0] = 0;
  }
  if (rc < 0)
    return rc;
  *dir = d;
  return 0;
}

static int lookup(cn_ns *ns, const char *path, cn_entry **out, cn_dir **parent)
{
  cn_dir *d;
  char name[256];
  int rc = resolve_parent(ns, path, 0, &d, name);
  if (rc < 0)
    return rc;
  if (!name[0]) {
    *out = &ns->root;
    if (parent)
      *parent = NULL;
    return 0;
  }
  cn_entry *e = fs_dir_find(d, name, NULL);
  if (!e)
    return cn_fail(ENOENT, "'%s' does not exist", path);
  *out = e;
  if (parent)
    *parent = d;
  return 0;
}

int fs_lookup(cn_ns *ns, const char *path, cn_entry **out)
{
  return lookup(ns, path, out, NULL);
}

const cn_nskey *cn_ns_key(const cn_ns *ns)
{
  return &ns->key;
}

int cn_ns_content_id(cn_ns *ns, const char *path, uint8_t id[32])
{
  cn_entry *e;
  int rc = lookup(ns, path, &e, NULL);
  if (rc < 0)
    return rc;
  if (e->dir && e->dir->dirty)
    return cn_fail(EBUSY, "'%s' has changes that are not committed yet", path);
  /* the encoded content names every chunk or node below it, so it changes with them */
  uint8_t type = (uint8_t)e->attr.type;
  cn_sha256_stream *h = cn_sha256_begin();
  cn_sha256_add(h, &type, 1);
  cn_sha256_add(h, e->content.p, e->content.len);
  cn_sha256_end(h, id);
  return 0;
}

int cn_ns_stat(cn_ns *ns, const char *path, cn_attr *attr)
{
  cn_entry *e;
  int rc = lookup(ns, path, &e, NULL);
  if (!rc)
    *attr = e->attr;
  return rc;
}

int cn_ns_list(cn_ns *ns, const char *path, cn_list_fn fn, void *ctx)
{
  cn_entry *e, *parent_owner = NULL;
  cn_dir *parent;
  int rc = lookup(ns, path, &e, &parent);
  if (rc < 0)
    return rc;
  if (e->attr.type != CN_DIR)
    return cn_fail(ENOTDIR, "'%s' is not a directory", path);
  (void)parent_owner;
  if ((rc = fs_dir_load(ns, e, parent)) < 0)
    return rc;
  for (size_t i = 0; i < e->dir->n && !rc; i++)
    rc = fn(e->dir->ents[i]->name, &e->dir->ents[i]->attr, ctx);
  return rc;
}

int cn_ns_readlink(cn_ns *ns, const char *path, char **target)
{
  cn_entry *e;
  int rc = lookup(ns, path, &e, NULL);
  if (rc < 0)
    return rc;
  if (e->attr.type != CN_SYMLINK)
    return cn_fail(EINVAL, "'%s' is not a symbolic link", path);
  *target = strndup((const char *)e->content.p, e->content.len);
  return 0;
}

int cn_ns_read_to_fd(cn_ns *ns, const char *path, int fd)
{
  cn_entry *e;
  int rc = lookup(ns, path, &e, NULL);
  if (rc < 0)
    return rc;
  if (e->attr.type == CN_DIR)
    return cn_fail(EISDIR, "'%s' is a directory", path);
  if (e->attr.type != CN_FILE)
    return cn_fail(EINVAL, "'%s' is not a regular file", path);
  return fs_file_read(ns, e, fd);
}

int cn_ns_chunk_count(cn_ns *ns, const char *path, uint64_t *count)
{
  cn_entry *e;
  int rc = lookup(ns, path, &e, NULL);
  if (rc < 0)
    return rc;
  if (e->attr.type != CN_FILE)
    return cn_fail(EINVAL, "'%s' is not a regular file", path);
  return fs_file_chunks(ns, e, count);
}

/* Puts a fully built entry at path, replacing a non-directory already there. */
static int place_entry(cn_ns *ns, const char *path, cn_entry *fresh, int create_parents)
{
  cn_dir *d;
  char name[256];
  int rc = fs_need_write(ns);
  if (!rc)
    rc = resolve_parent(ns, path, create_parents, &d, name);
  if (!rc && !name[0])
    rc = cn_fail(EEXIST, "the namespace root already exists");
  if (rc < 0)
    return rc;
  size_t pos;
  cn_entry *old = fs_dir_find(d, name, &pos);
  if (old && (old->attr.type == CN_DIR || fresh->attr.type == CN_DIR))
    return cn_fail(EEXIST, "'%s' already exists", path);
  if (old)
    fs_dir_remove(d, pos);
  fresh->name = strdup(name);
  cn_entry *e = malloc(sizeof *e);
  *e = *fresh;
  if (e->dir)
    e->dir->owner = e;
  fs_dir_insert(d, pos, e);
  fs_touch_dir(ns, d);
  if (e->dir)
    fs_mark_dirty(ns, e->dir);
  return 0;
}

int cn_ns_write_from_fd(cn_ns *ns, const char *path, int fd, const cn_attr *meta)
{
  int rc = fs_need_write(ns);
  if (rc < 0)
    return rc;
  cn_entry e = {0};
  fs_make_attr(&e.attr, meta, CN_FILE);
  if ((rc = fs_file_write(ns, fd, &e.content, &e.attr.size)) < 0) {
    cn_buf_free(&e.content);
    return rc;
  }
  if ((rc = place_entry(ns, path, &e, 1)) < 0)
    cn_buf_free(&e.content);
  return rc;
}

int cn_ns_mkdir(cn_ns *ns, const char *path, const cn_attr *meta, int parents)
{
  cn_entry *existing;
  if (parents && lookup(ns, path, &existing, NULL) == 0)
    return existing->attr.type == CN_DIR ? 0 : cn_fail(ENOTDIR, "'%s' exists and is not a directory", path);
  cn_entry e = {0};
  fs_make_attr(&e.attr, meta, CN_DIR);
  e.dir = calloc(1, sizeof *e.dir);
  int rc = place_entry(ns, path, &e, parents);
  if (rc < 0)
    free(e.dir);
  return rc;
}

int cn_ns_symlink(cn_ns *ns, const char *path, const char *target, const cn_attr *meta)
{
  cn_entry e = {0};
  fs_make_attr(&e.attr, meta, CN_SYMLINK);
  e.attr.size = strlen(target);
  cn_buf_put(&e.content, target, strlen(target));
  int rc = place_entry(ns, path, &e, 1);
  if (rc < 0)
    cn_buf_free(&e.content);
  return rc;
}

int cn_ns_mknod(cn_ns *ns, const char *path, cn_ftype type, const cn_attr *meta)
{
  if (type != CN_FIFO && type != CN_SOCKET)
    return cn_fail(EPERM, "only FIFOs and sockets can be created as special files");
  cn_entry e = {0};
  fs_make_attr(&e.attr, meta, type);
  e.attr.size = 0;
  return place_entry(ns, path, &e, 1);
}

int cn_ns_setattr(cn_ns *ns, const char *path, const cn_attr *attr)
{
  cn_entry *e;
  cn_dir *parent;
  int rc = fs_need_write(ns);
  if (!rc)
    rc = lookup(ns, path, &e, &parent);
  if (rc < 0)
    return rc;
  e->attr.mode = attr->mode & 07777;
  e->attr.uid = attr->uid;
  e->attr.gid = attr->gid;
  e->attr.mtime_ns = attr->mtime_ns;
  e->attr.atime_ns = attr->atime_ns;
  e->attr.ctime_ns = fs_now_ns();
  fs_mark_dirty(ns, parent);
  return 0;
}

int cn_ns_remove(cn_ns *ns, const char *path, int recursive)
{
  cn_dir *d;
  char name[256];
  int rc = fs_need_write(ns);
  if (!rc)
    rc = resolve_parent(ns, path, 0, &d, name);
  if (!rc && !name[0])
    rc = cn_fail(EBUSY, "the namespace root cannot be removed");
  if (rc < 0)
    return rc;
  size_t pos;
  cn_entry *e = fs_dir_find(d, name, &pos);
  if (!e)
    return cn_fail(ENOENT, "'%s' does not exist", path);
  if (e->attr.type == CN_DIR && !recursive) {
    if ((rc = fs_dir_load(ns, e, d)) < 0)
      return rc;
    if (e->dir->n)
      return cn_fail(ENOTEMPTY, "'%s' is a non-empty directory (use -r)", path);
  }
  fs_dir_remove(d, pos);
  fs_touch_dir(ns, d);
  return 0;
}

/* ---- check ---- */

typedef struct {
  cn_check_report *report;
} tree_check;

static int check_entry(cn_ns *ns, cn_entry *e, void *ctx)
{
  tree_check *t = ctx;
  if (e->attr.type == CN_FILE) {
    t->report->files++;
    fs_file_check(ns, e, &t->report->chunks, &t->report->bad);
  } else if (e->attr.type == CN_DIR) {
    if (fs_walk_dir_nodes(ns, e->content.p, e->content.p + CN_ID_BYTES, check_entry, t) < 0) {
      cn_log("directory '%s': %s", e->name, cn_err());
      t->report->bad++;
    }
  }
  fs_entry_free(e);
  free(e);
  return 0;
}

int cn_ns_check(cn_store *s, const cn_nskey *key, cn_check_report *report)
{
  memset(report, 0, sizeof *report);
  cn_root root;
  uint8_t id[CN_ID_BYTES];
  char hex[CN_HEX_ID_LEN + 1];
  int rc = head_of(s, key->pk, &root, id);
  if (rc == -ENOENT)
    return 0;
  if (rc < 0) {
    cn_log("%s", cn_err());
    report->bad++;
    return -EIO;
  }
  uint64_t expect_seq = root.seq;
  for (;;) {
    uint8_t *data;
    size_t len;
    commit_view c;
    cn_hex(id, CN_ID_BYTES, hex);
    if (cn_store_get(s, id, &data, &len) < 0) {
      cn_log("commit %s (seq %llu): %s", hex, (unsigned long long)expect_seq, cn_err());
      report->bad++;
      break;
    }
    if (commit_parse(data, len, &c) < 0 || memcmp(c.pk, key->pk, CN_PK_BYTES) != 0 ||
        c.seq > expect_seq) {
      cn_log("commit %s is malformed or out of sequence", hex);
      report->bad++;
      free(data);
      break;
    }
    report->commits++;
    for (uint64_t i = 0; i < c.n_listed; i++) {
      const uint8_t *cid = c.listed + i * CN_ID_BYTES;
      report->chunks++;
      if (cn_store_verify(s, cid) < 0) {
        cn_hex(cid, CN_ID_BYTES, hex);
        cn_log("chunk %s listed by commit seq %llu: %s", hex, (unsigned long long)c.seq, cn_err());
        report->bad++;
      }
    }
    int more = c.has_parent && c.seq > 1;
    memcpy(id, c.parent, CN_ID_BYTES);
    expect_seq = c.seq - 1;
    free(data);
    if (!more)
      break;
  }
  if (key->access >= CN_ACCESS_READ) {
    cn_ns *ns;
    if (cn_ns_open(s, key, 0, &ns) < 0) {
      cn_log("cannot open the latest tree: %s", cn_err());
      report->bad++;
    } else {
      tree_check t = {report};
      cn_entry *root_copy = calloc(1, sizeof *root_copy);
      root_copy->name = strdup("/");
      root_copy->attr = ns->root.attr;
      cn_buf_put(&root_copy->content, ns->root.content.p, ns->root.content.len);
      if (root_copy->content.len == REF_BYTES)
        check_entry(ns, root_copy, &t);
      else {
        fs_entry_free(root_copy);
        free(root_copy);
      }
      cn_ns_close(ns);
    }
  }
  return report->bad ? -EIO : 0;
}
