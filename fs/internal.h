/* fs/ private: the in-memory tree shared by tree.c, file.c and ns.c. */
#ifndef CAIRN_FS_INTERNAL_H
#define CAIRN_FS_INTERNAL_H

#include "fs/fs.h"

#define NODE_DIR 'D'
#define NODE_MANIFEST 'M'
#define NODE_VERSION 1
#define CONTENT_INLINE 0
#define CONTENT_CHUNKS 1
#define CONTENT_MANIFEST 2
#define INLINE_MAX 1024       /* files up to this size live in their directory entry */
#define DIRECT_CHUNKS_MAX 16  /* up to this many chunk refs live in the entry itself */
#define MANIFEST_FANOUT 4096
#define NODE_SOFT_MAX (64 * 1024)
#define REF_BYTES (CN_ID_BYTES + CN_KEY_BYTES)

typedef struct cn_dir cn_dir;

typedef struct {
  char *name;
  cn_attr attr;
  cn_buf content; /* encoded per type: see docs/FORMAT.md "Entry content" */
  cn_dir *dir;    /* loaded child directory, dirs only */
  cn_dir *in_dir; /* the directory holding this entry; NULL for a root or a detached entry */
  void *inode;    /* the mount's inode for this entry, if it has one (fs/mount.c) */
  uint64_t taken_at; /* fs/mount.c: the commit of its namespace its new content waits for */
} cn_entry;

struct cn_dir {
  cn_entry **ents;
  size_t n, cap;
  size_t subdirs; /* entries that are directories: a directory's link count is 2 + this */
  cn_entry *owner;
  cn_dir *parent;
  int dirty;
};

typedef struct { uint8_t id[CN_ID_BYTES], key[CN_KEY_BYTES]; uint64_t len; } cn_ref;

struct cn_ns {
  cn_store *store;
  cn_nskey key;
  int lock_fd;
  uint64_t seq;
  int has_head;
  uint8_t head[CN_ID_BYTES];
  int from_cap; /* a read-only view of a file or directory cap: no namespace keys (cap.c) */
  cn_cap cap;   /* that cap */
  cn_entry root;
  cn_chunker chunker;
  uint8_t (*touched)[CN_ID_BYTES]; /* chunks written since the last commit */
  size_t n_touched, cap_touched;
  uint64_t staged_bytes;
  int dirty;
  /* the pack this process last appended to the namespace's root, and when: hosts may still
   * be fetching it, so commits soon after leave it out of merges (FORMAT §11) */
  uint8_t newest_pack[CN_ID_BYTES];
  int64_t newest_pack_ns;
  cn_ns *retired_next; /* the mount's list of trees replaced by newer commits */
};

/* objects */
int fs_put_object(cn_ns *ns, const void *plain, size_t len, cn_ref *ref);
/* The thread-safe part of fs_put_object: seal and store, without noting the chunk for
 * the next commit (the caller does that with fs_note_chunk). */
int fs_seal_store(cn_ns *ns, const void *plain, size_t len, cn_ref *ref, size_t *sealed_len);
int fs_get_object(cn_ns *ns, const uint8_t id[CN_ID_BYTES], const uint8_t key[CN_KEY_BYTES],
                  uint8_t **plain, size_t *len);
int fs_note_chunk(cn_ns *ns, const uint8_t id[CN_ID_BYTES], size_t len);

/* Chunks handed to the sealing pool (sealpool.c): fs_seal_store runs for each task on the
 * pool's threads; fs_seal_wait returns once every task of the job has its rc. The tasks'
 * data must stay untouched until then. */
typedef struct {
  const uint8_t *data;
  size_t len;
  cn_ref ref;
  size_t sealed_len;
  int rc;
} fs_seal_task;
typedef struct fs_seal_job {
  cn_ns *ns;
  fs_seal_task *tasks;
  size_t n;
  size_t next, done; /* the pool's own bookkeeping */
  struct fs_seal_job *queued_next;
} fs_seal_job;
void fs_seal_submit(fs_seal_job *j);
void fs_seal_wait(fs_seal_job *j);

/* The entry at path (the namespace root for "/"). */
int fs_lookup(cn_ns *ns, const char *path, cn_entry **out);

/* entries and directories (tree.c) */
void fs_entry_encode(cn_buf *b, const cn_entry *e);
int fs_entry_decode(cn_reader *r, cn_entry *e);
void fs_entry_free(cn_entry *e);
/* Frees an entry that has left its tree, unless the mount still has an inode for it:
 * then the orphan hook hands it to that inode (which frees it when the kernel forgets it). */
void fs_entry_drop(cn_entry *e);
void fs_set_orphan_hook(void (*hook)(cn_entry *e));
int fs_dir_load(cn_ns *ns, cn_entry *owner, cn_dir *parent);
/* fs_dir_load in two steps, for loading without the mount's lock: the first reads the
 * directory's nodes and touches nothing shared; the second hangs the result under owner,
 * or frees it when owner got its directory meanwhile. */
int fs_dir_load_apart(cn_ns *ns, const cn_entry *owner, cn_dir **out);
void fs_dir_attach(cn_entry *owner, cn_dir *parent, cn_dir *d);
int fs_dir_store(cn_ns *ns, cn_dir *dir);
cn_entry *fs_dir_find(cn_dir *dir, const char *name, size_t *pos);
void fs_dir_insert(cn_dir *dir, size_t pos, cn_entry *e);
void fs_dir_remove(cn_dir *dir, size_t pos);
/* Unlinks the entry at pos without freeing it: the caller owns it. */
cn_entry *fs_dir_take(cn_dir *dir, size_t pos);
/* Walks every node of a stored directory; with visit_entry called per entry. */
int fs_walk_dir_nodes(cn_ns *ns, const uint8_t id[CN_ID_BYTES], const uint8_t key[CN_KEY_BYTES],
                      int (*visit_entry)(cn_ns *ns, cn_entry *e, void *ctx), void *ctx);

/* tree bookkeeping shared by ns.c and mount.c */
int64_t fs_now_ns(void);
void fs_mark_dirty(cn_ns *ns, cn_dir *dir);
/* An entry of dir changed: bump the directory's mtime and ctime and mark it dirty. */
void fs_touch_dir(cn_ns *ns, cn_dir *dir);
void fs_make_attr(cn_attr *a, const cn_attr *meta, cn_ftype type);
int fs_need_write(cn_ns *ns);

/* file content (file.c) */
int fs_file_write(cn_ns *ns, int fd, cn_buf *content, uint64_t *size);
/* Re-chunks a file held in fd (size bytes) that was old_entry's content until bytes
 * [changed_lo, changed_hi) changed: chunks before the change are reused, and after it so
 * is everything from the first cut that lands on an old chunk boundary. When n_sealed
 * chunks covering [0, sealed_end) were sealed ahead (fs_file_seal_ahead) from bytes that
 * have not changed since, they are the file's start and only the rest is cut. */
/* Seals the content-defined chunks of fd's bytes [from, to), where from is a cut (0 or a
 * previous cut_end). While the file may still grow (to_end 0) the bytes after the last
 * cut are left and *cut_end is where they start; with to_end (its writers closed it) the
 * last chunk ends at `to`, so only that chunk is not a content-defined cut. *refs
 * (malloc'd, *n of them) are not noted for a commit. Runs without any lock of the
 * caller's; ns is only read. */
int fs_file_seal_ahead(cn_ns *ns, int fd, uint64_t from, uint64_t to, int to_end,
                       cn_ref **refs, size_t *n, uint64_t *cut_end);
int fs_file_rewrite(cn_ns *ns, int fd, uint64_t size, const cn_entry *old_entry,
                    uint64_t changed_lo, uint64_t changed_hi, const cn_ref *sealed,
                    size_t n_sealed, uint64_t sealed_end, cn_buf *content);
int fs_file_read(cn_ns *ns, const cn_entry *e, int fd);
int fs_file_chunks(cn_ns *ns, const cn_entry *e, uint64_t *count);
/* The data chunks of a file in order, with their offsets; inline files have none. */
typedef struct { uint64_t offset; cn_ref ref; } cn_extent;
int fs_file_extents(cn_ns *ns, const cn_entry *e, cn_extent **out, size_t *n);
/* Bytes of an inline file (NULL when the file is stored in chunks). */
const uint8_t *fs_file_inline(const cn_entry *e);
/* Verifies and decrypts every chunk and manifest node of a file: 0 or -EIO (logged). */
int fs_file_check(cn_ns *ns, const cn_entry *e, uint64_t *chunks, uint64_t *bad);

/* immutable caps (cap.c) */
/* The read cap of e, an entry of ns's tree (or its root) as it is in memory; a directory
 * must have no uncommitted changes (-EBUSY). A file's cap object is sealed with ns's
 * convergence secret; when no accepted commit lists it yet, writer (open for writing, same
 * namespace; may be ns) gets it staged and noted for its next commit, with writer->dirty
 * set and *stored = 1, and the caller must make it durable before handing the cap out.
 * Without a writer that case is -ENOTSUP. */
int fs_entry_cap(cn_ns *ns, const cn_entry *e, cn_ns *writer, cn_cap *out, int *stored);

#endif
