/*
 * Immutable caps: a read cap (fr/dr) names one snapshot of a file or directory by an
 * object's chunk ID and key, so one file or tree can be shared without the namespace.
 *
 * A directory cap names the directory's top node, which the tree already holds. A file
 * has no object of its own (its content record lives in its directory entry), so a file
 * cap names a "file-cap object": a sealed directory leaf holding exactly that one entry
 * (docs/FORMAT.md §3.3). It reuses the directory node format, so readers need nothing
 * new, and it carries the file's name, mode and times along with its content record.
 * The object is sealed convergently, so the writer and every reader of the namespace who
 * seal the same entry get the same object; it is stored and listed by a commit like any
 * other object, so it travels with the namespace's packs.
 */
#include "fs/internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int is_object_cap(enum cn_cap_kind k)
{
  return k == CN_CAP_FILE_READ || k == CN_CAP_FILE_VERIFY || k == CN_CAP_DIR_READ ||
         k == CN_CAP_DIR_VERIFY;
}

/* The plaintext of e's file-cap object: 'D', version, level 0, count 1, the entry. */
static void file_cap_node(const cn_entry *e, cn_buf *node)
{
  cn_buf_u8(node, NODE_DIR);
  cn_buf_u8(node, NODE_VERSION);
  cn_buf_u8(node, 0);
  cn_buf_varint(node, 1);
  fs_entry_encode(node, e);
}

/* Stored, and listed by an accepted commit: then the object travels with that commit's
 * pack and the cap resolves wherever the namespace is hosted. */
static int listed_and_stored(cn_store *s, const uint8_t id[CN_ID_BYTES])
{
  uint8_t one[1][CN_ID_BYTES];
  memcpy(one[0], id, CN_ID_BYTES);
  return cn_store_filter_unlisted(s, one, 1) == 0 && cn_store_has(s, id);
}

/* The file entry at the top of a file-cap view, or NULL. */
static cn_entry *cap_view_file(cn_ns *ns)
{
  if (!ns->from_cap || ns->cap.kind != CN_CAP_FILE_READ || !ns->root.dir || ns->root.dir->n != 1)
    return NULL;
  return ns->root.dir->ents[0];
}

int fs_entry_cap(cn_ns *ns, const cn_entry *e, cn_ns *writer, cn_cap *out, int *stored)
{
  *stored = 0;
  memset(out, 0, sizeof *out);
  /* the view of a cap answers with that cap for what it names */
  if (ns->from_cap && (e == &ns->root ? ns->cap.kind == CN_CAP_DIR_READ : e == cap_view_file(ns))) {
    *out = ns->cap;
    return 0;
  }
  if (e->attr.type == CN_DIR) {
    if ((e->dir && e->dir->dirty) || e->content.len != REF_BYTES)
      return cn_fail(EBUSY, "directory '%s' has uncommitted changes", e->name);
    out->kind = CN_CAP_DIR_READ;
    memcpy(out->a, e->content.p, CN_ID_BYTES);
    memcpy(out->b, e->content.p + CN_ID_BYTES, CN_KEY_BYTES);
    return 0;
  }
  if (e->attr.type != CN_FILE)
    return cn_fail(EINVAL, "'%s' is neither a file nor a directory: it has no cap", e->name);
  if (ns->from_cap)
    return cn_fail(ENOTSUP, "'%s' is inside a directory cap, which has no key to make a file cap "
                   "with: share the directory cap", e->name);
  if (ns->key.access < CN_ACCESS_READ)
    return cn_fail(EACCES, "a verify-cap cannot make caps");
  cn_buf node = {0};
  file_cap_node(e, &node);
  uint8_t *sealed = malloc(cn_seal_bound(node.len));
  size_t sealed_len;
  if (!sealed)
    abort();
  out->kind = CN_CAP_FILE_READ;
  cn_seal(ns->key.convergence, node.p, node.len, sealed, &sealed_len, out->b);
  cn_buf_free(&node);
  cn_chunk_id(sealed, sealed_len, out->a);
  int rc = 0;
  if (!listed_and_stored(ns->store, out->a)) {
    if (!writer) {
      rc = cn_fail(ENOTSUP, "no commit of this namespace holds a cap object for '%s' as it is "
                   "now, and it is held without its write-cap: only the writer can make one", e->name);
    } else if (!(rc = cn_store_put(writer->store, sealed, sealed_len, out->a))) {
      /* listed by the writer's next commit, so it travels with that commit's pack */
      fs_note_chunk(writer, out->a, sealed_len);
      writer->dirty = 1;
      *stored = 1;
    }
  }
  free(sealed);
  if (rc < 0)
    memset(out, 0, sizeof *out);
  return rc;
}

int cn_ns_cap(cn_ns *ns, const char *path, cn_cap *out)
{
  int writable = ns->key.access == CN_ACCESS_WRITE && ns->lock_fd >= 0, stored = 0, rc = 0;
  cn_entry *e;
  memset(out, 0, sizeof *out);
  if (writable && ns->dirty)
    rc = cn_ns_commit(ns); /* so the cap names the tree as it is now, all of it stored */
  if (!rc)
    rc = fs_lookup(ns, path, &e);
  if (!rc)
    rc = fs_entry_cap(ns, e, writable ? ns : NULL, out, &stored);
  if (rc == -ENOTSUP && !ns->from_cap && ns->key.access == CN_ACCESS_WRITE)
    rc = cn_fail(EROFS, "the cap of '%s' needs a new object and a commit: open the namespace for "
                 "writing", path);
  if (!rc && stored && (rc = cn_ns_commit(ns)) < 0)
    memset(out, 0, sizeof *out); /* never hand out a cap whose object no commit holds */
  return rc;
}

/* A file cap must name a one-entry leaf (and, once decoded, a file): nothing else is what
 * writers make. */
static int check_file_cap_node(cn_ns *ns, const cn_cap *cap)
{
  uint8_t *plain;
  size_t len;
  int rc = fs_get_object(ns, cap->a, cap->b, &plain, &len);
  if (rc < 0)
    return rc;
  cn_reader r;
  cn_reader_init(&r, plain, len);
  uint8_t kind = cn_read_u8(&r), version = cn_read_u8(&r), level = cn_read_u8(&r);
  uint64_t count = cn_read_varint(&r);
  free(plain);
  if (r.bad || kind != NODE_DIR || version != NODE_VERSION || level != 0 || count != 1)
    return cn_fail(EIO, "the object a file cap names is not a one-entry directory leaf");
  return 0;
}

int cn_ns_open_cap(cn_store *s, const cn_cap *cap, cn_ns **out)
{
  *out = NULL;
  if (!is_object_cap(cap->kind))
    return cn_fail(EINVAL, "a '%s' cap names a namespace, not one file or directory",
                   cn_cap_kind_name(cap->kind));
  if (cap->kind == CN_CAP_FILE_VERIFY || cap->kind == CN_CAP_DIR_VERIFY)
    return cn_fail(EACCES, "a verify cap ('%s') can check that a snapshot is stored but cannot "
                   "read it: that needs the read cap ('%s')", cn_cap_kind_name(cap->kind),
                   cap->kind == CN_CAP_FILE_VERIFY ? "fr" : "dr");
  cn_ns *ns = calloc(1, sizeof *ns);
  if (!ns)
    abort();
  /* no namespace keys at all: every object below is opened with the key its parent holds */
  ns->store = s;
  ns->lock_fd = -1;
  ns->key.access = CN_ACCESS_READ;
  ns->from_cap = 1;
  ns->cap = *cap;
  ns->root.name = strdup("");
  ns->root.attr.type = CN_DIR;
  ns->root.attr.mode = 0755; /* a directory cap carries no attributes of its own */
  ns->root.attr.uid = (uint32_t)getuid();
  ns->root.attr.gid = (uint32_t)getgid();
  ns->root.attr.mtime_ns = ns->root.attr.atime_ns = ns->root.attr.ctime_ns = fs_now_ns();
  cn_buf_put(&ns->root.content, cap->a, CN_ID_BYTES);
  cn_buf_put(&ns->root.content, cap->b, CN_KEY_BYTES);
  int rc = cap->kind == CN_CAP_FILE_READ ? check_file_cap_node(ns, cap) : 0;
  if (!rc)
    rc = fs_dir_load(ns, &ns->root, NULL);
  if (!rc && cap->kind == CN_CAP_FILE_READ && !cap_view_file(ns))
    rc = cn_fail(EIO, "the object a file cap names does not hold a regular file");
  if (rc == -ENOENT) {
    char why[256];
    snprintf(why, sizeof why, "%s", cn_err());
    rc = cn_fail(ENOENT, "this cap's snapshot is not in the local store (%s)", why);
  }
  if (rc < 0) {
    cn_ns_close(ns);
    return rc;
  }
  *out = ns;
  return 0;
}

const char *cn_ns_cap_file(cn_ns *ns)
{
  cn_entry *e = cap_view_file(ns);
  return e ? e->name : NULL;
}

static int check_entry_below(cn_ns *ns, cn_entry *e, cn_check_report *r);

/* fs_walk_dir_nodes hands each decoded entry over: check it, then free it. */
static int check_walked(cn_ns *ns, cn_entry *e, void *ctx)
{
  check_entry_below(ns, e, ctx);
  fs_entry_free(e);
  free(e);
  return 0;
}

static int check_entry_below(cn_ns *ns, cn_entry *e, cn_check_report *r)
{
  if (e->attr.type == CN_FILE) {
    r->files++;
    fs_file_check(ns, e, &r->chunks, &r->bad);
  } else if (e->attr.type == CN_DIR &&
             fs_walk_dir_nodes(ns, e->content.p, e->content.p + CN_ID_BYTES, check_walked, r) < 0) {
    cn_log("directory '%s': %s", e->name, cn_err());
    r->bad++;
  }
  return 0;
}

int cn_cap_check(cn_store *s, const cn_cap *cap, cn_check_report *report)
{
  memset(report, 0, sizeof *report);
  if (!is_object_cap(cap->kind))
    return cn_fail(EINVAL, "a '%s' cap names a namespace, not one file or directory",
                   cn_cap_kind_name(cap->kind));
  if (cap->kind == CN_CAP_FILE_VERIFY || cap->kind == CN_CAP_DIR_VERIFY) {
    /* without the key only the named object itself can be found and checked */
    report->chunks = 1;
    if (cn_store_verify(s, cap->a) < 0) {
      cn_log("the object this cap names: %s", cn_err());
      report->bad++;
    }
    return report->bad ? -EIO : 0;
  }
  cn_ns *ns;
  if (cn_ns_open_cap(s, cap, &ns) < 0) {
    cn_log("%s", cn_err());
    report->bad++;
    return -EIO;
  }
  cn_entry *top = cap->kind == CN_CAP_FILE_READ ? cap_view_file(ns) : &ns->root;
  check_entry_below(ns, top, report);
  cn_ns_close(ns);
  return report->bad ? -EIO : 0;
}
