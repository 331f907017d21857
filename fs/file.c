/*
 * File content. Bytes are cut by the content-defined chunker, each chunk sealed and
 * stored; the list of chunk refs lives in the directory entry when short, else in a tree
 * of manifest nodes. Writing streams through a 1 MiB window, so a 10 GiB file never needs
 * 10 GiB of memory; tiny files are kept inline in their entry.
 */
#include "fs/internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_EVERY (256ull << 20) /* bound the work a crash can lose in a long put */

static int read_full(int fd, uint8_t *buf, size_t want, size_t *got, int *eof)
{
  *got = 0;
  while (*got < want) {
    ssize_t n = read(fd, buf + *got, want - *got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cn_fail(errno, "read failed: %s", strerror(errno));
    if (n == 0) {
      *eof = 1;
      break;
    }
    *got += (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const uint8_t *p, size_t len)
{
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cn_fail(errno, "write failed: %s", strerror(errno));
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void ref_encode(cn_buf *b, const cn_ref *r)
{
  cn_buf_put(b, r->id, CN_ID_BYTES);
  cn_buf_put(b, r->key, CN_KEY_BYTES);
  cn_buf_varint(b, r->len);
}

static int ref_decode(cn_reader *r, cn_ref *ref)
{
  const uint8_t *id = cn_read_raw(r, CN_ID_BYTES);
  const uint8_t *key = cn_read_raw(r, CN_KEY_BYTES);
  ref->len = cn_read_varint(r);
  if (r->bad)
    return -EIO;
  memcpy(ref->id, id, CN_ID_BYTES);
  memcpy(ref->key, key, CN_KEY_BYTES);
  return 0;
}

/* Groups refs into manifest nodes level by level until one root is left. */
static int build_manifest(cn_ns *ns, cn_ref *refs, size_t n, cn_buf *content)
{
  uint8_t level = 0;
  int rc = 0;
  while (n > 1 || level == 0) {
    size_t groups = (n + MANIFEST_FANOUT - 1) / MANIFEST_FANOUT;
    for (size_t g = 0; g < groups && !rc; g++) {
      size_t start = g * MANIFEST_FANOUT;
      size_t count = n - start < MANIFEST_FANOUT ? n - start : MANIFEST_FANOUT;
      cn_buf node = {0};
      cn_buf_u8(&node, NODE_MANIFEST);
      cn_buf_u8(&node, NODE_VERSION);
      cn_buf_u8(&node, level);
      cn_buf_varint(&node, count);
      uint64_t total = 0;
      for (size_t i = 0; i < count; i++) {
        ref_encode(&node, &refs[start + i]);
        total += refs[start + i].len;
      }
      rc = fs_put_object(ns, node.p, node.len, &refs[g]);
      refs[g].len = total;
      cn_buf_free(&node);
    }
    if (rc < 0)
      return rc;
    n = groups;
    level++;
  }
  cn_buf_u8(content, CONTENT_MANIFEST);
  cn_buf_u8(content, (uint8_t)(level - 1));
  ref_encode(content, &refs[0]);
  return 0;
}

typedef struct {
  cn_ref *v;
  size_t n, cap;
} ref_list;

static cn_ref *ref_push(ref_list *l)
{
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->v = realloc(l->v, l->cap * sizeof *l->v);
    if (!l->v)
      abort();
  }
  return &l->v[l->n++];
}

/* Where chunking reads from: a stream (read, after some bytes already read into prefix)
 * or a file between two offsets (pread). */
typedef struct {
  int fd;
  int positional;
  uint64_t pos, end; /* positional only */
  const uint8_t *prefix;
  size_t prefix_len;
  int at_eof; /* the stream ended while reading the prefix */
} byte_source;

static int source_fill(byte_source *src, uint8_t *buf, size_t want, size_t *got, int *eof)
{
  if (!src->positional) {
    size_t from_prefix = src->prefix_len < want ? src->prefix_len : want;
    memcpy(buf, src->prefix, from_prefix);
    src->prefix += from_prefix;
    src->prefix_len -= from_prefix;
    *got = from_prefix;
    *eof = 0;
    if (src->prefix_len) /* the prefix is never larger than a window, but be exact */
      return 0;
    if (src->at_eof) {
      *eof = 1;
      return 0;
    }
    size_t more = 0;
    int rc = read_full(src->fd, buf + from_prefix, want - from_prefix, &more, eof);
    *got += more;
    return rc;
  }
  *got = 0;
  if (want > src->end - src->pos)
    want = (size_t)(src->end - src->pos);
  while (*got < want) {
    ssize_t n = pread(src->fd, buf + *got, want - *got, (off_t)(src->pos + *got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cn_fail(errno, "read failed: %s", strerror(errno));
    if (n == 0) /* a hole past the end of what was written reads as zeros */
      break;
    *got += (size_t)n;
  }
  if (*got < want) {
    memset(buf + *got, 0, want - *got);
    *got = want;
  }
  src->pos += *got;
  *eof = src->pos == src->end;
  return 0;
}

/* The entry content for a list of chunk refs: direct when short, else a manifest tree. */
static int content_from_refs(cn_ns *ns, ref_list *refs, cn_buf *content)
{
  if (refs->n <= DIRECT_CHUNKS_MAX) {
    cn_buf_u8(content, CONTENT_CHUNKS);
    cn_buf_varint(content, refs->n);
    for (size_t i = 0; i < refs->n; i++)
      ref_encode(content, &refs->v[i]);
    return 0;
  }
  return build_manifest(ns, refs->v, refs->n, content);
}

/* Finds an old chunk starting exactly at pos (never the first): its index, or 0. */
static size_t old_boundary(const cn_extent *old, size_t n_old, uint64_t pos)
{
  size_t lo = 1, hi = n_old;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (old[mid].offset == pos)
      return mid;
    if (old[mid].offset < pos)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* Chunking reads a window at a time, cuts it and hands its chunks to the sealing pool;
 * while the pool seals one window the next is read and cut (two windows in turn). */
#define WINDOW_BYTES (16u << 20)
#define WINDOW_CHUNKS (WINDOW_BYTES / CN_CHUNK_MIN + 1)

typedef struct {
  uint8_t *buf;
  size_t have; /* bytes in buf, carried over or read */
  fs_seal_job job;
  fs_seal_task task[WINDOW_CHUNKS];
} window;

/* Waits for a window's chunks and appends their refs in order (noted for the next commit
 * when note is set). */
static int collect_window(cn_ns *ns, window *w, ref_list *refs, uint64_t *pos, int note, int rc)
{
  fs_seal_wait(&w->job);
  for (size_t i = 0; i < w->job.n && !rc; i++) {
    fs_seal_task *t = &w->task[i];
    if ((rc = t->rc) < 0)
      break;
    cn_ref *ref = ref_push(refs);
    *ref = t->ref;
    ref->len = t->len;
    if (note)
      fs_note_chunk(ns, ref->id, t->sealed_len);
    *pos += t->len;
  }
  w->job.n = 0;
  if (!rc && note && ns->staged_bytes >= FLUSH_EVERY) {
    rc = cn_store_flush(ns->store);
    if (!rc)
      ns->staged_bytes = 0;
  }
  return rc;
}

/* chunk_source flags */
#define MORE_FOLLOWS 1 /* the data goes on after the source's end: its uncut tail is left */
#define UNNOTED 2      /* nothing touches ns: the caller notes the chunks when it uses them */

/* Chunks src into refs. Past byte `resync_after`, a cut that lands where an old chunk
 * starts means the rest is unchanged: the old chunks from there on are reused. With
 * MORE_FOLLOWS (a file still being appended to) the bytes after the last content-defined
 * cut stay uncut and *size is where they start. */
static int chunk_source(cn_ns *ns, byte_source *src, uint64_t pos, ref_list *refs,
                        const cn_extent *old, size_t n_old, uint64_t resync_after,
                        unsigned flags, uint64_t *size)
{
  int more = flags & MORE_FOLLOWS, note = !(flags & UNNOTED);
  /* a known span smaller than a window needs no more than itself (a commit of many small
   * files would otherwise map and fault in two 16 MiB windows per file) */
  size_t window_bytes = WINDOW_BYTES;
  if (src->positional && src->end - src->pos < WINDOW_BYTES)
    window_bytes = src->end > src->pos ? (size_t)(src->end - src->pos) : 1;
  window *w = calloc(2, sizeof *w);
  if (!w || !(w[0].buf = malloc(window_bytes)) || !(w[1].buf = malloc(window_bytes)))
    abort();
  w[0].job.ns = w[1].job.ns = ns;
  w[0].job.tasks = w[0].task;
  w[1].job.tasks = w[1].task;
  uint64_t cut_at = pos;
  size_t splice_from = 0; /* old chunk index the rest is reused from, 0 for none */
  int eof = 0, rc = 0, finished = 0, cur = 0;
  window *sealing = NULL;
  while (!rc && !finished) {
    window *x = &w[cur];
    size_t got = 0;
    if (!eof && (rc = source_fill(src, x->buf + x->have, window_bytes - x->have, &got, &eof)) < 0)
      break;
    x->have += got;
    /* cut while a whole chunk's worth is buffered (or the data has ended) */
    int at_end = eof && !more;
    size_t consumed = 0;
    x->job.n = 0;
    while (consumed < x->have && (at_end || x->have - consumed >= CN_CHUNK_MAX)) {
      size_t cut = cn_chunker_cut(&ns->chunker, x->buf + consumed, x->have - consumed, at_end);
      x->task[x->job.n].data = x->buf + consumed;
      x->task[x->job.n++].len = cut;
      consumed += cut;
      cut_at += cut;
      if (cut_at > resync_after && n_old && (splice_from = old_boundary(old, n_old, cut_at)))
        break;
    }
    finished = splice_from || (eof && (more || consumed == x->have));
    fs_seal_submit(&x->job);
    if (sealing)
      rc = collect_window(ns, sealing, refs, &pos, note, rc);
    /* the other window is free now: the uncut tail moves there */
    window *next = &w[1 - cur];
    next->have = x->have - consumed;
    memcpy(next->buf, x->buf + consumed, next->have);
    sealing = x;
    cur = 1 - cur;
  }
  if (sealing)
    rc = collect_window(ns, sealing, refs, &pos, note, rc);
  for (size_t j = splice_from; !rc && j && j < n_old; j++) {
    *ref_push(refs) = old[j].ref;
    pos += old[j].ref.len;
  }
  free(w[0].buf);
  free(w[1].buf);
  free(w);
  *size = pos;
  return rc;
}

int fs_file_write(cn_ns *ns, int fd, cn_buf *content, uint64_t *size)
{
  uint8_t small[INLINE_MAX + 1];
  size_t got = 0;
  int eof = 0;
  content->len = 0;
  *size = 0;
  int rc = read_full(fd, small, sizeof small, &got, &eof);
  if (rc < 0)
    return rc;
  if (eof && got <= INLINE_MAX) {
    cn_buf_u8(content, CONTENT_INLINE);
    cn_buf_put(content, small, got);
    *size = got;
    return 0;
  }
  /* more than fits inline: chunk what was read and the rest of the stream */
  ref_list refs = {0};
  byte_source src = {.fd = fd, .prefix = small, .prefix_len = got, .at_eof = eof};
  rc = chunk_source(ns, &src, 0, &refs, NULL, 0, 0, 0, size);
  if (!rc)
    rc = content_from_refs(ns, &refs, content);
  free(refs.v);
  return rc;
}

int fs_file_seal_ahead(cn_ns *ns, int fd, uint64_t from, uint64_t to, int to_end,
                       cn_ref **refs, size_t *n, uint64_t *cut_end)
{
  ref_list l = {0};
  byte_source src = {.fd = fd, .positional = 1, .pos = from, .end = to};
  int rc = chunk_source(ns, &src, from, &l, NULL, 0, 0, to_end ? UNNOTED : MORE_FOLLOWS | UNNOTED,
                        cut_end);
  if (rc < 0) {
    free(l.v);
    l.v = NULL;
    l.n = 0;
  }
  *refs = l.v;
  *n = l.n;
  return rc;
}

int fs_file_rewrite(cn_ns *ns, int fd, uint64_t size, const cn_entry *old_entry,
                    uint64_t changed_lo, uint64_t changed_hi, const cn_ref *sealed,
                    size_t n_sealed, uint64_t sealed_end, cn_buf *content)
{
  content->len = 0;
  if (size <= INLINE_MAX) {
    uint8_t small[INLINE_MAX];
    byte_source src = {.fd = fd, .positional = 1, .pos = 0, .end = size};
    size_t got;
    int eof, rc = source_fill(&src, small, (size_t)size, &got, &eof);
    if (rc < 0)
      return rc;
    cn_buf_u8(content, CONTENT_INLINE);
    cn_buf_put(content, small, (size_t)size);
    return 0;
  }
  ref_list refs = {0};
  cn_extent *old = NULL;
  size_t n_old = 0;
  uint64_t start = 0;
  if (n_sealed && sealed_end <= size) { /* sealed ahead: only what came after is cut */
    for (size_t i = 0; i < n_sealed; i++) {
      *ref_push(&refs) = sealed[i];
      fs_note_chunk(ns, sealed[i].id, sealed[i].len);
    }
    start = sealed_end;
  } else {
    if (old_entry && !fs_file_inline(old_entry) && fs_file_extents(ns, old_entry, &old, &n_old) < 0)
      n_old = 0; /* unreadable old chunks: re-chunk everything */
    /* reuse old chunks wholly before the change; the last old chunk ended at the old end
     * of file, not at a content-defined cut, so it is never reused as a prefix */
    size_t keep = 0;
    while (n_old && keep < n_old - 1 && old[keep].offset + old[keep].ref.len <= changed_lo)
      keep++;
    start = keep ? old[keep].offset : 0;
    for (size_t i = 0; i < keep; i++)
      *ref_push(&refs) = old[i].ref;
  }
  byte_source src = {.fd = fd, .positional = 1, .pos = start, .end = size};
  uint64_t total = start;
  int rc = start == size ? 0 : chunk_source(ns, &src, start, &refs, old, n_old, changed_hi, 0, &total);
  if (!rc && total != size)
    rc = cn_fail(EIO, "re-chunking produced %llu bytes for a %llu-byte file",
                 (unsigned long long)total, (unsigned long long)size);
  if (!rc)
    rc = content_from_refs(ns, &refs, content);
  free(refs.v);
  free(old);
  return rc;
}

/* Calls fn for each data chunk ref of a file, in order, descending through manifests. */
typedef int (*chunk_fn)(cn_ns *ns, const cn_ref *ref, void *ctx);

static int manifest_walk(cn_ns *ns, const cn_ref *node_ref, int level, chunk_fn fn, void *ctx)
{
  char hex[CN_HEX_ID_LEN + 1];
  uint8_t *plain;
  size_t len;
  int rc = fs_get_object(ns, node_ref->id, node_ref->key, &plain, &len);
  if (rc < 0)
    return rc;
  cn_hex(node_ref->id, CN_ID_BYTES, hex);
  cn_reader r;
  cn_reader_init(&r, plain, len);
  uint8_t kind = cn_read_u8(&r), version = cn_read_u8(&r), node_level = cn_read_u8(&r);
  uint64_t count = cn_read_varint(&r), total = 0;
  if (r.bad || kind != NODE_MANIFEST || version != NODE_VERSION || node_level != level ||
      count == 0 || count > MANIFEST_FANOUT) {
    free(plain);
    cn_log("manifest node %s is malformed", hex);
    return cn_fail(EIO, "manifest node %s is malformed", hex);
  }
  for (uint64_t i = 0; !rc && i < count; i++) {
    cn_ref child;
    if (ref_decode(&r, &child) < 0) {
      cn_log("manifest node %s is truncated", hex);
      rc = cn_fail(EIO, "manifest node %s is truncated", hex);
      break;
    }
    total += child.len;
    rc = level == 0 ? fn(ns, &child, ctx) : manifest_walk(ns, &child, level - 1, fn, ctx);
  }
  if (!rc && (r.pos != r.len || total != node_ref->len)) {
    cn_log("manifest node %s disagrees with its parent about its length", hex);
    rc = cn_fail(EIO, "manifest node %s is inconsistent", hex);
  }
  free(plain);
  return rc;
}

static int walk_chunks(cn_ns *ns, const cn_entry *e, chunk_fn fn, void *ctx, const uint8_t **inline_data)
{
  cn_reader r;
  cn_reader_init(&r, e->content.p, e->content.len);
  uint8_t form = cn_read_u8(&r);
  uint64_t total = 0;
  int rc = 0;
  *inline_data = NULL;
  if (r.bad)
    return cn_fail(EIO, "file '%s' has no content record", e->name);
  if (form == CONTENT_INLINE) {
    if (e->content.len - 1 != e->attr.size)
      return cn_fail(EIO, "file '%s': inline data disagrees with its size", e->name);
    *inline_data = e->content.p + 1;
    return 0;
  }
  if (form == CONTENT_CHUNKS) {
    uint64_t n = cn_read_varint(&r);
    for (uint64_t i = 0; !rc && i < n; i++) {
      cn_ref ref;
      if (ref_decode(&r, &ref) < 0)
        return cn_fail(EIO, "file '%s' has a truncated chunk list", e->name);
      total += ref.len;
      rc = fn(ns, &ref, ctx);
    }
    if (!rc && r.pos != r.len)
      return cn_fail(EIO, "file '%s' has trailing bytes after its chunk list", e->name);
  } else if (form == CONTENT_MANIFEST) {
    uint8_t level = cn_read_u8(&r);
    cn_ref ref;
    if (ref_decode(&r, &ref) < 0)
      return cn_fail(EIO, "file '%s' has a truncated manifest reference", e->name);
    total = ref.len;
    rc = manifest_walk(ns, &ref, level, fn, ctx);
  } else {
    return cn_fail(EIO, "file '%s' has unknown content form %u", e->name, form);
  }
  if (!rc && total != e->attr.size)
    return cn_fail(EIO, "file '%s': chunks add up to %llu bytes, entry says %llu", e->name,
                   (unsigned long long)total, (unsigned long long)e->attr.size);
  return rc;
}

static int copy_chunk(cn_ns *ns, const cn_ref *ref, void *ctx)
{
  uint8_t *plain;
  size_t len;
  int rc = fs_get_object(ns, ref->id, ref->key, &plain, &len);
  if (rc < 0)
    return rc;
  if (len != ref->len) {
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(ref->id, CN_ID_BYTES, hex);
    free(plain);
    cn_log("chunk %s decrypts to %zu bytes, its reference says %llu", hex, len,
           (unsigned long long)ref->len);
    return cn_fail(EIO, "chunk %s has the wrong length", hex);
  }
  rc = write_full(*(int *)ctx, plain, len);
  free(plain);
  return rc;
}

int fs_file_read(cn_ns *ns, const cn_entry *e, int fd)
{
  const uint8_t *inline_data;
  int rc = walk_chunks(ns, e, copy_chunk, &fd, &inline_data);
  if (!rc && inline_data)
    rc = write_full(fd, inline_data, e->attr.size);
  return rc;
}

static int count_chunk(cn_ns *ns, const cn_ref *ref, void *ctx)
{
  (*(uint64_t *)ctx)++;
  return 0;
}

int fs_file_chunks(cn_ns *ns, const cn_entry *e, uint64_t *count)
{
  const uint8_t *inline_data;
  *count = 0;
  return walk_chunks(ns, e, count_chunk, count, &inline_data);
}

typedef struct { uint64_t *chunks, *bad; } check_ctx;

static int check_chunk(cn_ns *ns, const cn_ref *ref, void *ctx)
{
  check_ctx *c = ctx;
  uint8_t *plain;
  size_t len;
  (*c->chunks)++;
  char hex[CN_HEX_ID_LEN + 1];
  cn_hex(ref->id, CN_ID_BYTES, hex);
  if (fs_get_object(ns, ref->id, ref->key, &plain, &len) < 0) {
    cn_log("bad chunk %s: %s", hex, cn_err());
    (*c->bad)++;
    return 0; /* keep going: report everything that is bad */
  }
  free(plain);
  if (len != ref->len) {
    cn_log("bad chunk %s: decrypts to %zu bytes, its reference says %llu", hex, len,
           (unsigned long long)ref->len);
    (*c->bad)++;
  }
  return 0;
}

int fs_file_check(cn_ns *ns, const cn_entry *e, uint64_t *chunks, uint64_t *bad)
{
  const uint8_t *inline_data;
  check_ctx c = {chunks, bad};
  int rc = walk_chunks(ns, e, check_chunk, &c, &inline_data);
  if (rc < 0) {
    cn_log("file '%s': %s", e->name, cn_err());
    (*bad)++;
  }
  return rc;
}

typedef struct {
  cn_extent *v;
  size_t n, cap;
  uint64_t offset;
} extent_list;

static int add_extent(cn_ns *ns, const cn_ref *ref, void *ctx)
{
  extent_list *l = ctx;
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->v = realloc(l->v, l->cap * sizeof *l->v);
    if (!l->v)
      abort();
  }
  l->v[l->n].offset = l->offset;
  l->v[l->n].ref = *ref;
  l->n++;
  l->offset += ref->len;
  return 0;
}

int fs_file_extents(cn_ns *ns, const cn_entry *e, cn_extent **out, size_t *n)
{
  const uint8_t *inline_data;
  extent_list l = {0};
  int rc = walk_chunks(ns, e, add_extent, &l, &inline_data);
  if (rc < 0) {
    free(l.v);
    return rc;
  }
  *out = l.v;
  *n = l.n;
  return 0;
}

const uint8_t *fs_file_inline(const cn_entry *e)
{
  return e->content.len >= 1 && e->content.p[0] == CONTENT_INLINE ? e->content.p + 1 : NULL;
}
