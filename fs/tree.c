/*
 * Directories: entries sorted by name bytes, stored as a tree of sealed nodes. Leaf
 * boundaries are content-defined (a cut after an entry whose name hashes to 0 mod 64, or
 * once a node passes 64 KiB), and interior levels are cut the same way, so inserting one
 * name into a 100k-entry directory changes only the nodes on its path: the others seal to
 * the same bytes and are already stored.
 */
#include "fs/internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LEAF_CUT_MODULUS 64
#define INTERIOR_CUT_MODULUS 32
#define MAX_TREE_DEPTH 40

void fs_entry_encode(cn_buf *b, const cn_entry *e)
{
  cn_buf_bytes(b, e->name, strlen(e->name));
  cn_buf_u8(b, (uint8_t)e->attr.type);
  cn_buf_varint(b, e->attr.mode);
  cn_buf_varint(b, e->attr.uid);
  cn_buf_varint(b, e->attr.gid);
  cn_buf_varint(b, e->attr.size);
  cn_buf_svarint(b, e->attr.mtime_ns);
  cn_buf_svarint(b, e->attr.atime_ns);
  cn_buf_svarint(b, e->attr.ctime_ns);
  cn_buf_bytes(b, e->content.p, e->content.len);
}

int fs_entry_decode(cn_reader *r, cn_entry *e)
{
  size_t name_len, content_len;
  memset(e, 0, sizeof *e);
  const uint8_t *name = cn_read_bytes(r, &name_len);
  e->attr.type = (cn_ftype)cn_read_u8(r);
  e->attr.mode = (uint32_t)cn_read_varint(r);
  uint64_t wide_uid = cn_read_varint(r), wide_gid = cn_read_varint(r);
  e->attr.uid = wide_uid >= UINT32_MAX ? UINT32_MAX : (uint32_t)wide_uid;
  e->attr.gid = wide_gid >= UINT32_MAX ? UINT32_MAX : (uint32_t)wide_gid;
  e->attr.size = cn_read_varint(r);
  e->attr.mtime_ns = cn_read_svarint(r);
  e->attr.atime_ns = cn_read_svarint(r);
  e->attr.ctime_ns = cn_read_svarint(r);
  const uint8_t *content = cn_read_bytes(r, &content_len);
  if (r->bad || name_len > 255 || memchr(name, '/', name_len) || memchr(name, 0, name_len) ||
      e->attr.type < CN_FILE || e->attr.type > CN_SOCKET || e->attr.mode > 07777 ||
      e->attr.uid == UINT32_MAX || e->attr.gid == UINT32_MAX)
    return cn_fail(EIO, "malformed directory entry");
  if (e->attr.type == CN_DIR && content_len != REF_BYTES)
    return cn_fail(EIO, "directory entry has a malformed child reference");
  e->name = strndup((const char *)name, name_len);
  cn_buf_put(&e->content, content, content_len);
  return 0;
}

/* Entries inside directory nodes must have a usable name; only the root is nameless. */
static int entry_name_ok(const char *name)
{
  return name[0] && strcmp(name, ".") && strcmp(name, "..");
}

static void (*orphan_hook)(cn_entry *e);

void fs_set_orphan_hook(void (*hook)(cn_entry *e))
{
  orphan_hook = hook;
}

void fs_entry_drop(cn_entry *e)
{
  e->in_dir = NULL;
  if (e->inode && orphan_hook) {
    orphan_hook(e); /* the mount's inode takes it over */
    return;
  }
  fs_entry_free(e);
  free(e);
}

static void dir_free(cn_dir *d)
{
  if (!d)
    return;
  for (size_t i = 0; i < d->n; i++) {
    if (d->ents[i]->dir)
      d->ents[i]->dir->parent = NULL;
    fs_entry_drop(d->ents[i]);
  }
  free(d->ents);
  free(d);
}

void fs_entry_free(cn_entry *e)
{
  free(e->name);
  cn_buf_free(&e->content);
  dir_free(e->dir);
  e->name = NULL;
  e->dir = NULL;
}

cn_entry *fs_dir_find(cn_dir *dir, const char *name, size_t *pos)
{
  size_t lo = 0, hi = dir->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(dir->ents[mid]->name, name);
    if (c == 0) {
      if (pos)
        *pos = mid;
      return dir->ents[mid];
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (pos)
    *pos = lo;
  return NULL;
}

void fs_dir_insert(cn_dir *dir, size_t pos, cn_entry *e)
{
  if (dir->n == dir->cap) {
    dir->cap = dir->cap ? dir->cap * 2 : 16;
    dir->ents = realloc(dir->ents, dir->cap * sizeof *dir->ents);
    if (!dir->ents)
      abort();
  }
  memmove(dir->ents + pos + 1, dir->ents + pos, (dir->n - pos) * sizeof *dir->ents);
  dir->ents[pos] = e;
  dir->n++;
  dir->subdirs += e->attr.type == CN_DIR;
  e->in_dir = dir;
  if (e->dir)
    e->dir->parent = dir;
}

cn_entry *fs_dir_take(cn_dir *dir, size_t pos)
{
  cn_entry *e = dir->ents[pos];
  memmove(dir->ents + pos, dir->ents + pos + 1, (dir->n - pos - 1) * sizeof *dir->ents);
  dir->n--;
  dir->subdirs -= e->attr.type == CN_DIR;
  e->in_dir = NULL;
  return e;
}

void fs_dir_remove(cn_dir *dir, size_t pos)
{
  fs_entry_drop(fs_dir_take(dir, pos));
}

/* ---- reading nodes ---- */

typedef struct {
  int (*visit)(cn_ns *ns, cn_entry *e, void *ctx);
  void *ctx;
  const char *last_name; /* enforces strictly increasing names across leaves */
  char *last_owned;
} walk_state;

static int walk_node(cn_ns *ns, const uint8_t id[CN_ID_BYTES], const uint8_t key[CN_KEY_BYTES],
                     int depth, int want_level, walk_state *w)
{
  char hex[CN_HEX_ID_LEN + 1];
  uint8_t *plain;
  size_t len;
  int rc = fs_get_object(ns, id, key, &plain, &len);
  if (rc < 0)
    return rc;
  cn_hex(id, CN_ID_BYTES, hex);
  cn_reader r;
  cn_reader_init(&r, plain, len);
  uint8_t kind = cn_read_u8(&r), version = cn_read_u8(&r), level = cn_read_u8(&r);
  uint64_t count = cn_read_varint(&r);
  if (r.bad || kind != NODE_DIR || version != NODE_VERSION || level > MAX_TREE_DEPTH ||
      depth > MAX_TREE_DEPTH || (want_level >= 0 && level != want_level)) {
    free(plain);
    cn_log("directory node %s is malformed or of an unknown version", hex);
    return cn_fail(EIO, "directory node %s is malformed", hex);
  }
  for (uint64_t i = 0; !rc && i < count; i++) {
    if (level == 0) {
      cn_entry *e = calloc(1, sizeof *e);
      rc = fs_entry_decode(&r, e);
      if (!rc && !entry_name_ok(e->name))
        rc = cn_fail(EIO, "directory node %s holds an entry with an empty, '.' or '..' name", hex);
      if (!rc && w->last_name && strcmp(w->last_name, e->name) >= 0)
        rc = cn_fail(EIO, "directory node %s lists names out of order", hex);
      if (rc) {
        fs_entry_free(e);
        free(e);
        cn_log("directory node %s: %s", hex, cn_err());
        break;
      }
      free(w->last_owned);
      w->last_owned = strdup(e->name);
      w->last_name = w->last_owned;
      rc = w->visit(ns, e, w->ctx);
    } else {
      size_t nlen;
      cn_read_bytes(&r, &nlen); /* first name of the child, for seeking */
      const uint8_t *ref = cn_read_raw(&r, REF_BYTES);
      if (r.bad) {
        cn_log("directory node %s is truncated", hex);
        rc = cn_fail(EIO, "directory node %s is truncated", hex);
        break;
      }
      uint8_t cid[CN_ID_BYTES], ckey[CN_KEY_BYTES];
      memcpy(cid, ref, CN_ID_BYTES);
      memcpy(ckey, ref + CN_ID_BYTES, CN_KEY_BYTES);
      rc = walk_node(ns, cid, ckey, depth + 1, level - 1, w);
    }
  }
  if (!rc && (r.bad || r.pos != r.len)) {
    cn_log("directory node %s has trailing or truncated data", hex);
    rc = cn_fail(EIO, "directory node %s is malformed", hex);
  }
  free(plain);
  return rc;
}

int fs_walk_dir_nodes(cn_ns *ns, const uint8_t id[CN_ID_BYTES], const uint8_t key[CN_KEY_BYTES],
                      int (*visit_entry)(cn_ns *ns, cn_entry *e, void *ctx), void *ctx)
{
  walk_state w = {.visit = visit_entry, .ctx = ctx};
  int rc = walk_node(ns, id, key, 0, -1, &w);
  free(w.last_owned);
  return rc;
}

static int append_entry(cn_ns *ns, cn_entry *e, void *ctx)
{
  cn_dir *d = ctx;
  fs_dir_insert(d, d->n, e);
  return 0;
}

int fs_dir_load_apart(cn_ns *ns, const cn_entry *owner, cn_dir **out)
{
  cn_dir *d = calloc(1, sizeof *d);
  if (!d)
    return -ENOMEM;
  if (owner->content.len == REF_BYTES) {
    int rc = fs_walk_dir_nodes(ns, owner->content.p, owner->content.p + CN_ID_BYTES, append_entry, d);
    if (rc < 0) {
      dir_free(d);
      return rc;
    }
  }
  *out = d;
  return 0;
}

void fs_dir_attach(cn_entry *owner, cn_dir *parent, cn_dir *d)
{
  if (owner->dir) {
    dir_free(d);
    return;
  }
  d->owner = owner;
  d->parent = parent;
  for (size_t i = 0; i < d->n; i++)
    if (d->ents[i]->dir)
      d->ents[i]->dir->parent = d;
  owner->dir = d;
}

int fs_dir_load(cn_ns *ns, cn_entry *owner, cn_dir *parent)
{
  if (owner->dir)
    return 0;
  cn_dir *d;
  int rc = fs_dir_load_apart(ns, owner, &d);
  if (rc == 0)
    fs_dir_attach(owner, parent, d);
  return rc;
}

/* ---- writing nodes ---- */

static int name_is_boundary(const char *name, uint8_t level, unsigned modulus)
{
  uint8_t buf[300], h[32];
  size_t n = strlen(name);
  buf[0] = level;
  memcpy(buf + 1, name, n);
  cn_sha256(buf, n + 1, h);
  return ((unsigned)h[0] | (unsigned)h[1] << 8) % modulus == 0;
}

typedef struct {
  cn_buf names; /* first names, NUL-separated */
  cn_buf refs;  /* REF_BYTES each */
  size_t n;
} node_list;

static int emit_node(cn_ns *ns, uint8_t level, const cn_buf *body, size_t count,
                     const char *first, node_list *out)
{
  cn_buf node = {0};
  cn_buf_u8(&node, NODE_DIR);
  cn_buf_u8(&node, NODE_VERSION);
  cn_buf_u8(&node, level);
  cn_buf_varint(&node, count);
  cn_buf_put(&node, body->p, body->len);
  cn_ref ref;
  int rc = fs_put_object(ns, node.p, node.len, &ref);
  cn_buf_free(&node);
  if (rc < 0)
    return rc;
  cn_buf_put(&out->names, first, strlen(first) + 1);
  cn_buf_put(&out->refs, ref.id, CN_ID_BYTES);
  cn_buf_put(&out->refs, ref.key, CN_KEY_BYTES);
  out->n++;
  return 0;
}

static void node_list_free(node_list *l)
{
  cn_buf_free(&l->names);
  cn_buf_free(&l->refs);
}

int fs_dir_store(cn_ns *ns, cn_dir *dir)
{
  int rc = 0;
  for (size_t i = 0; i < dir->n && !rc; i++) {
    cn_entry *e = dir->ents[i];
    if (e->dir && e->dir->dirty)
      rc = fs_dir_store(ns, e->dir);
  }
  if (rc < 0)
    return rc;

  node_list level_nodes = {0};
  cn_buf body = {0};
  size_t count = 0;
  const char *first = "";
  for (size_t i = 0; i < dir->n && !rc; i++) {
    if (count == 0)
      first = dir->ents[i]->name;
    fs_entry_encode(&body, dir->ents[i]);
    count++;
    if (i + 1 == dir->n || body.len >= NODE_SOFT_MAX ||
        name_is_boundary(dir->ents[i]->name, 0, LEAF_CUT_MODULUS)) {
      rc = emit_node(ns, 0, &body, count, first, &level_nodes);
      body.len = 0;
      count = 0;
    }
  }
  if (dir->n == 0)
    rc = emit_node(ns, 0, &body, 0, "", &level_nodes);

  for (uint8_t level = 1; !rc && level_nodes.n > 1; level++) {
    node_list up = {0};
    const char *name = (const char *)level_nodes.names.p;
    for (size_t i = 0; i < level_nodes.n && !rc; i++) {
      if (count == 0)
        first = name;
      cn_buf_bytes(&body, name, strlen(name));
      cn_buf_put(&body, level_nodes.refs.p + i * REF_BYTES, REF_BYTES);
      count++;
      /* at least two children per interior node, so every level is smaller */
      if (i + 1 == level_nodes.n || body.len >= NODE_SOFT_MAX ||
          (count >= 2 && name_is_boundary(name, level, INTERIOR_CUT_MODULUS))) {
        rc = emit_node(ns, level, &body, count, first, &up);
        body.len = 0;
        count = 0;
      }
      name += strlen(name) + 1;
    }
    node_list_free(&level_nodes);
    level_nodes = up;
  }
  cn_buf_free(&body);
  if (!rc) {
    dir->owner->content.len = 0;
    cn_buf_put(&dir->owner->content, level_nodes.refs.p, REF_BYTES);
    dir->dirty = 0;
  }
  node_list_free(&level_nodes);
  return rc;
}
