/*
 * fs/ — namespace trees: files (chunk lists and manifests), directories (sorted entries
 * split into content-defined tree nodes), commits and signed roots. This header is what
 * the CLI uses today; the FUSE mount is built on the same calls.
 *
 * A cn_ns is one namespace opened at its latest commit. Changes are made in memory and
 * become durable together in cn_ns_commit (one signed root per batch, not per file).
 * Paths are absolute within the namespace ("/", "/a/b"); "" means "/".
 */
#ifndef CAIRN_FS_H
#define CAIRN_FS_H

#include "dht/dht.h"
#include <stdint.h>

typedef enum { CN_FILE = 1, CN_DIR = 2, CN_SYMLINK = 3, CN_FIFO = 4, CN_SOCKET = 5 } cn_ftype;

typedef struct {
  cn_ftype type;
  uint32_t mode; /* permission bits, 07777 */
  uint32_t uid, gid;
  uint64_t size; /* bytes for files, target length for symlinks */
  int64_t mtime_ns, atime_ns, ctime_ns;
} cn_attr;

typedef struct cn_ns cn_ns;

/* Opens at the latest commit this node holds (an empty tree if there is none yet).
 * for_write takes the namespace's writer lock and needs a write key (-EROFS otherwise). */
int cn_ns_open(cn_store *s, const cn_nskey *key, int for_write, cn_ns **out);
void cn_ns_close(cn_ns *ns);
uint64_t cn_ns_seq(const cn_ns *ns);
/* A read-only view of the namespace as commit seq left it (a snapshot). */
int cn_ns_open_at(cn_store *s, const cn_nskey *key, uint64_t seq, cn_ns **out);
/* Calls fn for every commit from the one ns is at back to the first; a non-zero return
 * stops the walk (a positive one is not an error). */
typedef int (*cn_history_fn)(uint64_t seq, int64_t time_ns, const uint8_t id[CN_ID_BYTES], void *ctx);
int cn_ns_history(cn_ns *ns, cn_history_fn fn, void *ctx);

const cn_nskey *cn_ns_key(const cn_ns *ns);
int cn_ns_stat(cn_ns *ns, const char *path, cn_attr *attr);
/* An ID of what the tree stores at path as of the last commit: it changes whenever the
 * content below path changes (and sometimes when only attributes do), so it tells a
 * cache when it must look again. -EBUSY for a directory with uncommitted changes. */
int cn_ns_content_id(cn_ns *ns, const char *path, uint8_t id[32]);
typedef int (*cn_list_fn)(const char *name, const cn_attr *attr, void *ctx);
/* Entries in name order; a non-zero return from fn stops the listing and is returned. */
int cn_ns_list(cn_ns *ns, const char *path, cn_list_fn fn, void *ctx);
int cn_ns_readlink(cn_ns *ns, const char *path, char **target);
/* Writes a file's bytes to fd, verifying and decrypting every chunk. */
int cn_ns_read_to_fd(cn_ns *ns, const char *path, int fd);
/* Number of data chunks a file is stored in. */
int cn_ns_chunk_count(cn_ns *ns, const char *path, uint64_t *count);

/* Mutations (write key required; -EROFS otherwise). meta's type is implied by the call;
 * NULL meta means "now, 0644/0755, the caller's uid and gid". */
int cn_ns_write_from_fd(cn_ns *ns, const char *path, int fd, const cn_attr *meta);
int cn_ns_mkdir(cn_ns *ns, const char *path, const cn_attr *meta, int parents);
int cn_ns_symlink(cn_ns *ns, const char *path, const char *target, const cn_attr *meta);
int cn_ns_mknod(cn_ns *ns, const char *path, cn_ftype type, const cn_attr *meta);
int cn_ns_setattr(cn_ns *ns, const char *path, const cn_attr *attr);
int cn_ns_remove(cn_ns *ns, const char *path, int recursive);
/* Seals changed nodes, writes a commit, signs and stores the root. No-op when nothing
 * changed since the last commit (a namespace with no commit yet always gets one). */
int cn_ns_commit(cn_ns *ns);
/* cn_ns_commit in three steps, so that a caller guarding the tree with a lock holds it
 * only while the tree is read. begin seals the changed nodes and builds the commit (NULL
 * in *out when there is nothing to commit); the tree may change again as soon as it
 * returns, and those changes are the next commit's. store makes the commit durable,
 * packs it and stores the signed root: it reads nothing of the tree, so it may run
 * unlocked, but at most one commit of a namespace may be between begin and end, and
 * nothing else may commit meanwhile. end records the commit (rc 0) or, after a failed
 * store, keeps its changes pending for the next commit; it frees c. */
typedef struct cn_commit cn_commit;
int cn_ns_commit_begin(cn_ns *ns, cn_commit **out);
int cn_ns_commit_store(cn_ns *ns, cn_commit *c);
void cn_ns_commit_end(cn_ns *ns, cn_commit *c, int rc);

/* Verifies every commit from the latest back, every chunk they list and (with a read key)
 * every node and chunk reachable from the latest tree. Problems are logged one per line;
 * returns 0 when clean, -EIO when something is bad. */
typedef struct { uint64_t commits, chunks, files, bad; } cn_check_report;
int cn_ns_check(cn_store *s, const cn_nskey *key, cn_check_report *report);

/* ---- immutable caps (fs/cap.c) ---- */
/* The read cap of the file or directory at path: an immutable snapshot of it as it is now
 * (docs/FORMAT.md §3.3). A directory cap names the directory's top node; a file cap names a
 * one-entry directory leaf holding the file's entry, sealed like any node. Open for
 * writing, ns first commits pending changes, and a new file-cap object is committed
 * before this returns, so the cap's objects are durable and listed. Otherwise: -EROFS
 * when that commit is needed and ns holds the write key (open it for writing), -ENOTSUP
 * when ns is held by a read-cap and no commit holds the object yet. */
int cn_ns_cap(cn_ns *ns, const char *path, cn_cap *out);
/* Opens the snapshot a file or directory read cap names as a read-only tree with no
 * namespace keys: a directory cap's directory is its root; a file cap's root holds just
 * that file (cn_ns_cap_file names it). -EACCES for a verify cap, -EINVAL for a namespace
 * cap, -ENOENT when the named object is not stored here, -EIO when it is damaged or not
 * what the cap kind says. */
int cn_ns_open_cap(cn_store *s, const cn_cap *cap, cn_ns **out);
/* The name of the file a file-cap tree holds; NULL for any other tree. */
const char *cn_ns_cap_file(cn_ns *ns);
/* Verifies (and with a read cap decrypts) every node and chunk reachable from a file or
 * directory cap; a verify cap can only check its one named object. Like cn_ns_check. */
int cn_cap_check(cn_store *s, const cn_cap *cap, cn_check_report *report);

/* ---- the FUSE mount (fs/mount.c) ---- */
/* Hooks through which a layer above fs (compute/) follows a mount's writable namespaces.
 * Each may be NULL. */
typedef struct {
  void *ctx;
  /* The mount is live and serves from store, with node (NULL offline) as its peer
   * network; both stay valid until stopping returns. */
  void (*started)(void *ctx, cn_store *store, cn_node *node);
  /* A writable namespace has a new commit. Called with the mount's lock held: note it
   * and return; act from another thread. */
  void (*committed)(void *ctx, const cn_nskey *key, uint64_t seq);
  /* The mount is about to make its last commits and stop: stop calling cn_mount_edit. */
  void (*stopping)(void *ctx);
} cn_mount_hooks;

typedef struct {
  const char *mountpoint;
  int foreground;          /* else daemonize once the mount is live */
  int commit_interval_s;   /* batch commit timer; 0 means the default (5 s) */
  const char *fuse_options; /* extra -o options for libfuse (allow_other, ...), or NULL */
  int debug;
  const char *listen;      /* peer address "HOST:PORT"; NULL: the home's config */
  int offline;             /* no peer network at all */
  cn_mount_hooks hooks;
} cn_mount_opts;
/* Serves every namespace in home's keyring at mountpoint until it is unmounted. Writes
 * are committed on fsync, on the timer and at unmount. Returns 0 after a clean unmount. */
int cn_mount(const char *home, const cn_mount_opts *opts);
/* Changes a namespace the running mount writes: calls fn with the mount's tree under the
 * mount's lock, commits, and makes the kernel forget what it cached under dir (a
 * directory path: every name fn may have changed must be in it). Entries fn replaces or
 * removes stay valid for open files. -ENOENT when the mount does not write the namespace,
 * -ESHUTDOWN when no mount runs in this process or it is stopping. */
int cn_mount_edit(const uint8_t pk[CN_PK_BYTES], const char *dir, int (*fn)(cn_ns *ns, void *ctx), void *ctx);

/* Where a mount's daemon keeps its pid ($CAIRN_HOME/run/<hash of the mount point>.pid),
 * so `cairn umount` can wait until the last commit is done. */
int cn_mount_pidfile(const char *home, const char *mountpoint, char *out, size_t cap);

#endif
