/* Unit tests for fs/: files, directories, commits, caps and checks on a real store. */
#include "fs/internal.h" /* fs_file_rewrite is checked against a full re-chunk */
#include "check_main.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char home[256];
static cn_store *store;
static cn_nskey key;

static void setup(void)
{
  snprintf(home, sizeof home, "/tmp/cairn-test-fs.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(home));
  ck_assert_int_eq(cn_store_init(home), 0);
  ck_assert_int_eq(cn_store_open(home, &store), 0);
  cn_nskey_generate(&key);
}

static void teardown(void)
{
  cn_store_close(store);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
  ck_assert_int_eq(system(cmd), 0);
}

/* An in-memory file holding len pseudo-random (or patterned) bytes. */
static int data_fd(const uint8_t *data, size_t len)
{
  int fd = memfd_create("cairn-test", 0);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
  lseek(fd, 0, SEEK_SET);
  return fd;
}

static uint8_t *random_bytes(size_t len, uint32_t seed)
{
  uint8_t *p = malloc(len ? len : 1);
  uint64_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = (uint8_t)x;
  }
  return p;
}

static void put_bytes(cn_ns *ns, const char *path, const uint8_t *data, size_t len)
{
  int fd = data_fd(data, len);
  ck_assert_int_eq(cn_ns_write_from_fd(ns, path, fd, NULL), 0);
  close(fd);
}

static void assert_content(cn_ns *ns, const char *path, const uint8_t *data, size_t len)
{
  int fd = memfd_create("cairn-out", 0);
  ck_assert_int_eq(cn_ns_read_to_fd(ns, path, fd), 0);
  off_t size = lseek(fd, 0, SEEK_END);
  ck_assert_int_eq(size, (off_t)len);
  if (len) {
    uint8_t *got = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert(got != MAP_FAILED);
    ck_assert_int_eq(memcmp(got, data, len), 0);
    munmap(got, len);
  }
  close(fd);
}

static int count_chunk(const uint8_t id[32], void *ctx)
{
  (*(int *)ctx)++;
  return 0;
}

static int chunk_files(void)
{
  int n = 0;
  cn_store_foreach(store, count_chunk, &n);
  return n;
}

START_TEST(files_of_every_size_round_trip)
{
  static const size_t sizes[] = {0, 1, 1024, 1025, 65536, 300000, 3000000, 24000000};
  cn_ns *ns;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    char path[64];
    snprintf(path, sizeof path, "/f%zu", sizes[i]);
    uint8_t *d = random_bytes(sizes[i], (uint32_t)i);
    put_bytes(ns, path, d, sizes[i]);
    assert_content(ns, path, d, sizes[i]); /* before the commit: staged chunks are readable */
    free(d);
  }
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open(store, &key, 0, &ns), 0);
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    char path[64];
    cn_attr a;
    snprintf(path, sizeof path, "/f%zu", sizes[i]);
    uint8_t *d = random_bytes(sizes[i], (uint32_t)i);
    ck_assert_int_eq(cn_ns_stat(ns, path, &a), 0);
    ck_assert_int_eq(a.type, CN_FILE);
    ck_assert_uint_eq(a.size, sizes[i]);
    assert_content(ns, path, d, sizes[i]);
    uint64_t chunks;
    ck_assert_int_eq(cn_ns_chunk_count(ns, path, &chunks), 0);
    if (sizes[i] <= 1024)
      ck_assert_uint_eq(chunks, 0); /* inline */
    else if (sizes[i] > 20000000)
      ck_assert_uint_gt(chunks, 16); /* stored through a manifest */
    free(d);
  }
  cn_ns_close(ns);
}
END_TEST

typedef struct { char names[64][32]; int n; } listing;

static int collect(const char *name, const cn_attr *a, void *ctx)
{
  listing *l = ctx;
  snprintf(l->names[l->n++], 32, "%s", name);
  return 0;
}

START_TEST(directories_and_special_entries)
{
  cn_ns *ns;
  cn_attr a;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/d", NULL, 0), 0);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/d", NULL, 0), -EEXIST);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/d", NULL, 1), 0);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/x/y", NULL, 0), -ENOENT);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/x/y/z", NULL, 1), 0);
  put_bytes(ns, "/d/b", (const uint8_t *)"b", 1);
  put_bytes(ns, "/d/a", (const uint8_t *)"a", 1);
  put_bytes(ns, "/d/c", (const uint8_t *)"c", 1);
  ck_assert_int_eq(cn_ns_symlink(ns, "/d/link", "../target", NULL), 0);
  ck_assert_int_eq(cn_ns_mknod(ns, "/d/pipe", CN_FIFO, NULL), 0);
  ck_assert_int_eq(cn_ns_mknod(ns, "/d/dev", CN_FILE, NULL), -EPERM);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/d/a/sub", NULL, 0), -ENOTDIR);
  ck_assert_int_eq(cn_ns_stat(ns, "/d/../d", &a), -EINVAL);
  ck_assert_int_eq(cn_ns_remove(ns, "/d", 0), -ENOTEMPTY);
  ck_assert_int_eq(cn_ns_remove(ns, "/", 1), -EBUSY);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  uint64_t seq = cn_ns_seq(ns);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_uint_eq(cn_ns_seq(ns), seq); /* nothing changed: no new commit */
  cn_ns_close(ns);

  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  listing l = {.n = 0};
  ck_assert_int_eq(cn_ns_list(ns, "/d", collect, &l), 0);
  ck_assert_int_eq(l.n, 5);
  ck_assert_str_eq(l.names[0], "a");
  ck_assert_str_eq(l.names[1], "b");
  ck_assert_str_eq(l.names[2], "c");
  ck_assert_str_eq(l.names[3], "link");
  ck_assert_str_eq(l.names[4], "pipe");
  char *target;
  ck_assert_int_eq(cn_ns_readlink(ns, "/d/link", &target), 0);
  ck_assert_str_eq(target, "../target");
  free(target);
  ck_assert_int_eq(cn_ns_stat(ns, "/d/pipe", &a), 0);
  ck_assert_int_eq(a.type, CN_FIFO);
  ck_assert_int_eq(cn_ns_read_to_fd(ns, "/d", 1), -EISDIR);
  ck_assert_int_eq(cn_ns_remove(ns, "/d", 1), 0);
  ck_assert_int_eq(cn_ns_stat(ns, "/d/a", &a), -ENOENT);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_uint_eq(cn_ns_seq(ns), seq + 1);
  cn_ns_close(ns);
}
END_TEST

START_TEST(metadata_is_kept)
{
  cn_ns *ns;
  cn_attr meta = {.mode = 04751, .uid = 1234, .gid = 5678, .mtime_ns = 981173106123456789,
                  .atime_ns = -5, .ctime_ns = 7}, a;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  int fd = data_fd((const uint8_t *)"x", 1);
  ck_assert_int_eq(cn_ns_write_from_fd(ns, "/m", fd, &meta), 0);
  close(fd);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open(store, &key, 0, &ns), 0);
  ck_assert_int_eq(cn_ns_stat(ns, "/m", &a), 0);
  ck_assert_uint_eq(a.mode, 04751);
  ck_assert_uint_eq(a.uid, 1234);
  ck_assert_uint_eq(a.gid, 5678);
  ck_assert_int_eq(a.mtime_ns, 981173106123456789);
  ck_assert_int_eq(a.atime_ns, -5);
  cn_ns_close(ns);
}
END_TEST

START_TEST(large_directory_rewrites_only_its_path)
{
  enum { N = 20000 };
  cn_ns *ns;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/big", NULL, 0), 0);
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/big/entry-%06d", 2 * i);
    ck_assert_int_eq(cn_ns_mknod(ns, path, CN_FIFO, NULL), 0);
  }
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  int before = chunk_files();
  ck_assert_int_gt(before, 50); /* the directory was split into many nodes */
  ck_assert_int_eq(cn_ns_mknod(ns, "/big/entry-010001", CN_FIFO, NULL), 0);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  int added = chunk_files() - before;
  /* one leaf + a few interior nodes + the root directory + the commit */
  ck_assert_int_le(added, 8);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open(store, &key, 0, &ns), 0);
  cn_attr a;
  ck_assert_int_eq(cn_ns_stat(ns, "/big/entry-010001", &a), 0);
  ck_assert_int_eq(cn_ns_stat(ns, "/big/entry-039998", &a), 0);
  ck_assert_int_eq(cn_ns_stat(ns, "/big/entry-000001", &a), -ENOENT);
  cn_ns_close(ns);
}
END_TEST

START_TEST(an_edit_rechunks_only_near_the_change)
{
  size_t len = 16u << 20;
  uint8_t *d = random_bytes(len, 99);
  cn_ns *ns;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/file", d, len);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  int before = chunk_files();
  memset(d + len / 2, 0xab, 100);
  put_bytes(ns, "/file", d, len);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  int added = chunk_files() - before;
  /* at most 2 data chunks + the manifest + directory + commit */
  ck_assert_int_le(added, 5);
  assert_content(ns, "/file", d, len);
  cn_ns_close(ns);
  free(d);
}
END_TEST

START_TEST(namespaces_never_share_ciphertext)
{
  cn_nskey other;
  cn_nskey_generate(&other);
  uint8_t *d = random_bytes(500000, 5);
  cn_ns *a, *b;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &a), 0);
  put_bytes(a, "/same", d, 500000);
  ck_assert_int_eq(cn_ns_commit(a), 0);
  int after_a = chunk_files();
  ck_assert_int_eq(cn_ns_open(store, &other, 1, &b), 0);
  put_bytes(b, "/same", d, 500000);
  ck_assert_int_eq(cn_ns_commit(b), 0);
  int after_b = chunk_files();
  /* b stored its own data chunks, not a's */
  ck_assert_int_ge(after_b - after_a, 3);
  put_bytes(b, "/again", d, 500000); /* but dedupes within itself */
  ck_assert_int_eq(cn_ns_commit(b), 0);
  ck_assert_int_le(chunk_files() - after_b, 2);
  cn_ns_close(a);
  cn_ns_close(b);
  free(d);
}
END_TEST

START_TEST(read_and_verify_caps)
{
  cn_ns *ns;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/secret", (const uint8_t *)"plaintext", 9);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  cn_ns_close(ns);

  cn_nskey reader = key, verifier = key;
  cn_nskey_diminish(&reader, CN_ACCESS_READ);
  cn_nskey_diminish(&verifier, CN_ACCESS_VERIFY);
  ck_assert_int_eq(cn_ns_open(store, &reader, 1, &ns), -EROFS);
  ck_assert_int_eq(cn_ns_open(store, &reader, 0, &ns), 0);
  assert_content(ns, "/secret", (const uint8_t *)"plaintext", 9);
  int fd = data_fd((const uint8_t *)"x", 1);
  ck_assert_int_eq(cn_ns_write_from_fd(ns, "/new", fd, NULL), -EROFS);
  close(fd);
  ck_assert_int_eq(cn_ns_mkdir(ns, "/new", NULL, 0), -EROFS);
  ck_assert_int_eq(cn_ns_remove(ns, "/secret", 0), -EROFS);
  cn_ns_close(ns);

  ck_assert_int_eq(cn_ns_open(store, &verifier, 0, &ns), 0);
  cn_attr a;
  ck_assert_int_eq(cn_ns_stat(ns, "/secret", &a), -EACCES);
  cn_ns_close(ns);
  cn_check_report r;
  ck_assert_int_eq(cn_ns_check(store, &verifier, &r), 0);
  ck_assert_uint_eq(r.commits, 1);
  ck_assert_uint_gt(r.chunks, 0);
  ck_assert_uint_eq(r.files, 0); /* a verifier cannot see files */
}
END_TEST

typedef struct { cn_store *s; int corrupted; } corrupt_ctx;

START_TEST(check_finds_damage_and_rollback_is_refused)
{
  cn_ns *ns;
  uint8_t *d = random_bytes(2000000, 11);
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/data", d, 2000000);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  cn_root old;
  ck_assert_int_eq(cn_store_root_get(store, key.pk, &old), 0);
  put_bytes(ns, "/more", d, 1000);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  cn_ns_close(ns);

  cn_check_report r;
  ck_assert_int_eq(cn_ns_check(store, &key, &r), 0);
  ck_assert_uint_eq(r.commits, 2);
  ck_assert_uint_eq(r.files, 2);
  ck_assert_uint_eq(r.bad, 0);

  /* replaying the older signed root is refused; the namespace stays at the newer one */
  ck_assert_int_eq(cn_store_root_put(store, key.pk, &old, NULL, 0), -ESTALE);
  ck_assert_int_eq(cn_ns_open(store, &key, 0, &ns), 0);
  ck_assert_uint_eq(cn_ns_seq(ns), 2);
  cn_ns_close(ns);

  /* damage the largest chunk file: check reports it, reads fail with EIO */
  char cmd[600];
  snprintf(cmd, sizeof cmd,
           "f=$(find '%s/chunks' -type f -size +200k | head -1); "
           "printf 'XXXX' | dd of=\"$f\" bs=1 seek=1000 conv=notrunc 2>/dev/null", home);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(cn_ns_check(store, &key, &r), -EIO);
  ck_assert_uint_ge(r.bad, 1);
  ck_assert_int_eq(cn_ns_open(store, &key, 0, &ns), 0);
  int fd = memfd_create("out", 0);
  ck_assert_int_eq(cn_ns_read_to_fd(ns, "/data", fd), -EIO);
  close(fd);
  cn_ns_close(ns);
  free(d);
}
END_TEST

/* Re-chunking only around a change must give exactly what chunking the whole new file
 * gives: same chunks, same content record. */
static void assert_rewrite_matches(cn_ns *ns, const uint8_t *before, size_t before_len,
                                   const uint8_t *after, size_t after_len, uint64_t lo, uint64_t hi)
{
  cn_entry old = {0};
  int fd = data_fd(before, before_len);
  ck_assert_int_eq(fs_file_write(ns, fd, &old.content, &old.attr.size), 0);
  close(fd);
  old.attr.type = CN_FILE;
  old.name = "old";
  cn_buf full = {0}, partial = {0};
  uint64_t size;
  fd = data_fd(after, after_len);
  ck_assert_int_eq(fs_file_write(ns, fd, &full, &size), 0);
  ck_assert_int_eq(fs_file_rewrite(ns, fd, after_len, &old, lo, hi, NULL, 0, 0, &partial), 0);
  close(fd);
  ck_assert_uint_eq(partial.len, full.len);
  ck_assert_int_eq(memcmp(partial.p, full.p, full.len), 0);
  cn_buf_free(&full);
  cn_buf_free(&partial);
  cn_buf_free(&old.content);
}

START_TEST(rewrite_equals_a_full_rechunk)
{
  size_t len = 12u << 20;
  uint8_t *a = random_bytes(len, 21), *b = malloc(len + (4u << 20));
  cn_ns *ns;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  /* overwrite in the middle */
  memcpy(b, a, len);
  memset(b + 5000000, 0x5a, 300);
  assert_rewrite_matches(ns, a, len, b, len, 5000000, 5000300);
  /* append */
  memcpy(b, a, len);
  memset(b + len, 0x11, 3u << 20);
  assert_rewrite_matches(ns, a, len, b, len + (3u << 20), len, len + (3u << 20));
  /* truncate */
  assert_rewrite_matches(ns, a, len, a, 7000000, 7000000, len);
  /* overwrite at the very start and from a small file to a big one */
  memcpy(b, a, len);
  b[0] ^= 1;
  assert_rewrite_matches(ns, a, len, b, len, 0, 1);
  assert_rewrite_matches(ns, a, 500, a, len, 500, len);
  /* shrink below the inline limit */
  assert_rewrite_matches(ns, a, len, a, 100, 100, len);
  cn_ns_close(ns);
  free(a);
  free(b);
}
END_TEST

/* Sealing a growing file ahead, in steps that end anywhere, then committing with what was
 * sealed must give exactly the content record of chunking the whole file; so must sealing
 * the rest to the end (its writers closed it), which leaves the commit nothing to cut. */
START_TEST(sealing_ahead_equals_whole_file_chunking)
{
  size_t len = 20u << 20;
  uint8_t *a = random_bytes(len, 22);
  cn_ns *ns;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  int fd = data_fd(a, len);
  cn_buf full = {0}, ahead = {0};
  uint64_t size;
  ck_assert_int_eq(fs_file_write(ns, fd, &full, &size), 0);
  cn_ref *sealed = NULL;
  size_t n_sealed = 0;
  uint64_t sealed_end = 0;
  const uint64_t steps[] = {3000001, 9876543, 9876600, 17000000};
  for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
    cn_ref *refs;
    size_t n;
    uint64_t cut_end;
    ck_assert_int_eq(fs_file_seal_ahead(ns, fd, sealed_end, steps[i], 0, &refs, &n, &cut_end), 0);
    ck_assert_uint_le(cut_end, steps[i]);
    ck_assert_uint_ge(cut_end, sealed_end);
    ck_assert_uint_lt(steps[i] - cut_end, CN_CHUNK_MAX); /* only an uncut tail is left */
    sealed = realloc(sealed, (n_sealed + n + 1) * sizeof *sealed);
    if (n) /* a step may end before the next cut: no chunk, refs NULL */
      memcpy(sealed + n_sealed, refs, n * sizeof *refs);
    n_sealed += n;
    sealed_end = cut_end;
    free(refs);
  }
  ck_assert_uint_gt(n_sealed, 20);
  ck_assert_int_eq(fs_file_rewrite(ns, fd, len, NULL, 0, len, sealed, n_sealed, sealed_end, &ahead), 0);
  ck_assert_uint_eq(ahead.len, full.len);
  ck_assert_int_eq(memcmp(ahead.p, full.p, full.len), 0);

  cn_ref *rest;
  size_t n_rest;
  uint64_t end;
  ck_assert_int_eq(fs_file_seal_ahead(ns, fd, sealed_end, len, 1, &rest, &n_rest, &end), 0);
  ck_assert_uint_eq(end, len);
  ck_assert_uint_ge(n_rest, 1);
  sealed = realloc(sealed, (n_sealed + n_rest) * sizeof *sealed);
  memcpy(sealed + n_sealed, rest, n_rest * sizeof *rest);
  free(rest);
  cn_buf to_end = {0};
  ck_assert_int_eq(fs_file_rewrite(ns, fd, len, NULL, 0, len, sealed, n_sealed + n_rest, len, &to_end), 0);
  close(fd);
  ck_assert_uint_eq(to_end.len, full.len);
  ck_assert_int_eq(memcmp(to_end.p, full.p, full.len), 0);
  cn_buf_free(&to_end);
  cn_buf_free(&full);
  cn_buf_free(&ahead);
  free(sealed);
  cn_ns_close(ns);
  free(a);
}
END_TEST

static int count_history(uint64_t seq, int64_t time_ns, const uint8_t id[CN_ID_BYTES], void *ctx)
{
  uint64_t *expect = ctx;
  ck_assert_uint_eq(seq, *expect); /* newest first, every seq once */
  ck_assert_int_gt(time_ns, 0);
  (*expect)--;
  return 0;
}

START_TEST(history_and_snapshots)
{
  cn_ns *ns, *old;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  for (int v = 1; v <= 3; v++) {
    char text[16];
    snprintf(text, sizeof text, "version %d", v);
    put_bytes(ns, "/f", (const uint8_t *)text, strlen(text));
    ck_assert_int_eq(cn_ns_commit(ns), 0);
  }
  uint64_t expect = 3;
  ck_assert_int_eq(cn_ns_history(ns, count_history, &expect), 0);
  ck_assert_uint_eq(expect, 0);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open_at(store, &key, 2, &old), 0);
  ck_assert_uint_eq(cn_ns_seq(old), 2);
  assert_content(old, "/f", (const uint8_t *)"version 2", 9);
  ck_assert_int_eq(cn_ns_mkdir(old, "/x", NULL, 0), -EROFS); /* snapshots are read-only */
  cn_ns_close(old);
  ck_assert_int_eq(cn_ns_open_at(store, &key, 9, &old), -ENOENT);
}
END_TEST


/* ---- immutable caps ---- */

static cn_ns *open_cap_ok(const cn_cap *cap)
{
  cn_ns *view;
  ck_assert_int_eq(cn_ns_open_cap(store, cap, &view), 0);
  return view;
}

static int listed(const uint8_t id[CN_ID_BYTES])
{
  uint8_t one[1][CN_ID_BYTES];
  memcpy(one[0], id, CN_ID_BYTES);
  return cn_store_filter_unlisted(store, one, 1) == 0;
}

/* A commit is built from the tree at begin; what changes while it is stored belongs to the
 * next one. A store that failed leaves its changes, and the objects it would have listed,
 * to the next commit. */
START_TEST(changes_during_a_commit_are_the_next_ones)
{
  cn_ns *ns, *old;
  cn_commit *c;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/a", (const uint8_t *)"one", 3);
  ck_assert_int_eq(cn_ns_commit_begin(ns, &c), 0);
  ck_assert_ptr_nonnull(c);
  put_bytes(ns, "/a", (const uint8_t *)"uno", 3);
  put_bytes(ns, "/b", (const uint8_t *)"two", 3);
  ck_assert_int_eq(cn_ns_commit_store(ns, c), 0);
  cn_ns_commit_end(ns, c, 0);
  ck_assert_uint_eq(cn_ns_seq(ns), 1);
  ck_assert_int_eq(cn_ns_open_at(store, &key, 1, &old), 0);
  assert_content(old, "/a", (const uint8_t *)"one", 3);
  cn_attr attr;
  ck_assert_int_eq(cn_ns_stat(old, "/b", &attr), -ENOENT);
  cn_ns_close(old);

  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_uint_eq(cn_ns_seq(ns), 2);
  ck_assert_int_eq(cn_ns_commit_begin(ns, &c), 0);
  ck_assert_ptr_null(c); /* nothing changed since */

  size_t len = 50000;
  uint8_t *data = random_bytes(len, 7);
  put_bytes(ns, "/c", data, len);
  ck_assert_int_eq(cn_ns_commit_begin(ns, &c), 0);
  ck_assert_ptr_nonnull(c);
  cn_ns_commit_end(ns, c, -EIO); /* as if storing it had failed */
  ck_assert_uint_eq(cn_ns_seq(ns), 2);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_uint_eq(cn_ns_seq(ns), 3);
  cn_entry *e;
  cn_extent *ext;
  size_t n_ext;
  ck_assert_int_eq(fs_lookup(ns, "/c", &e), 0);
  ck_assert_int_eq(fs_file_extents(ns, e, &ext, &n_ext), 0);
  ck_assert_uint_gt(n_ext, 0);
  for (size_t i = 0; i < n_ext; i++)
    ck_assert(listed(ext[i].ref.id));
  free(ext);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open_at(store, &key, 3, &old), 0);
  assert_content(old, "/a", (const uint8_t *)"uno", 3);
  assert_content(old, "/b", (const uint8_t *)"two", 3);
  assert_content(old, "/c", data, len);
  cn_ns_close(old);
  free(data);
}
END_TEST

static int count_entries(const char *name, const cn_attr *a, void *ctx)
{
  (*(int *)ctx)++;
  return 0;
}

START_TEST(file_and_directory_caps_are_snapshots)
{
  size_t big_len = 6u << 20, mid_len = 300000;
  uint8_t *big = random_bytes(big_len, 31), *mid = random_bytes(mid_len, 32);
  cn_ns *ns, *view;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/d/big", big, big_len); /* more than 16 chunks: a manifest */
  put_bytes(ns, "/d/mid", mid, mid_len); /* direct chunk refs */
  put_bytes(ns, "/d/tiny", (const uint8_t *)"tiny", 4); /* inline */
  ck_assert_int_eq(cn_ns_symlink(ns, "/d/link", "tiny", NULL), 0);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  uint64_t seq = cn_ns_seq(ns);

  cn_cap fbig, fmid, ftiny, dir, again;
  ck_assert_int_eq(cn_ns_cap(ns, "/d/big", &fbig), 0);
  ck_assert_int_eq(fbig.kind, CN_CAP_FILE_READ);
  /* the new cap object is stored and listed by a commit before the cap is handed out */
  ck_assert_uint_eq(cn_ns_seq(ns), seq + 1);
  ck_assert(listed(fbig.a));
  ck_assert_int_eq(cn_store_has(store, fbig.a), 1);
  ck_assert_int_eq(cn_ns_cap(ns, "/d/big", &again), 0); /* same entry: same cap, no commit */
  ck_assert_mem_eq(&again, &fbig, sizeof again);
  ck_assert_uint_eq(cn_ns_seq(ns), seq + 1);
  ck_assert_int_eq(cn_ns_cap(ns, "/d/mid", &fmid), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/d/tiny", &ftiny), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/d", &dir), 0);
  ck_assert_int_eq(dir.kind, CN_CAP_DIR_READ);
  ck_assert_int_eq(cn_ns_cap(ns, "/d/link", &again), -EINVAL); /* only files and directories */
  ck_assert_int_eq(cn_ns_cap(ns, "/d/nope", &again), -ENOENT);

  /* change everything the caps name, and commit */
  put_bytes(ns, "/d/big", mid, 1000);
  ck_assert_int_eq(cn_ns_remove(ns, "/d/mid", 0), 0);
  put_bytes(ns, "/d/new", (const uint8_t *)"new", 3);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/d/big", &again), 0);
  ck_assert(memcmp(again.a, fbig.a, CN_ID_BYTES) != 0);
  cn_ns_close(ns);

  /* the old caps still read exactly what they named, with the file's name and metadata */
  view = open_cap_ok(&fbig);
  ck_assert_str_eq(cn_ns_cap_file(view), "big");
  assert_content(view, "/big", big, big_len);
  cn_attr a;
  ck_assert_int_eq(cn_ns_stat(view, "/big", &a), 0);
  ck_assert_uint_eq(a.size, big_len);
  ck_assert_uint_eq(a.mode, 0644);
  ck_assert_int_eq(cn_ns_cap(view, "/big", &again), 0); /* a view answers with its own cap */
  ck_assert_mem_eq(&again, &fbig, sizeof again);
  int fd = data_fd((const uint8_t *)"x", 1); /* read-only */
  ck_assert_int_eq(cn_ns_write_from_fd(view, "/big", fd, NULL), -EROFS);
  close(fd);
  ck_assert_int_eq(cn_ns_commit(view), -EROFS);
  cn_ns_close(view);
  view = open_cap_ok(&fmid);
  assert_content(view, "/mid", mid, mid_len);
  cn_ns_close(view);
  view = open_cap_ok(&ftiny);
  assert_content(view, "/tiny", (const uint8_t *)"tiny", 4);
  cn_ns_close(view);

  view = open_cap_ok(&dir);
  ck_assert_ptr_null(cn_ns_cap_file(view));
  int n = 0;
  ck_assert_int_eq(cn_ns_list(view, "/", count_entries, &n), 0);
  ck_assert_int_eq(n, 4); /* big, link, mid, tiny: not "new" */
  assert_content(view, "/big", big, big_len);
  assert_content(view, "/mid", mid, mid_len);
  char *target;
  ck_assert_int_eq(cn_ns_readlink(view, "/link", &target), 0);
  ck_assert_str_eq(target, "tiny");
  free(target);
  ck_assert_int_eq(cn_ns_stat(view, "/new", &a), -ENOENT);
  ck_assert_int_eq(cn_ns_cap(view, "/", &again), 0);
  ck_assert_mem_eq(&again, &dir, sizeof again);
  /* files inside a directory cap: no key to seal a cap object with */
  ck_assert_int_eq(cn_ns_cap(view, "/mid", &again), -ENOTSUP);
  cn_ns_close(view);

  cn_check_report r;
  ck_assert_int_eq(cn_cap_check(store, &dir, &r), 0);
  ck_assert_uint_eq(r.files, 3);
  ck_assert_uint_gt(r.chunks, 16);
  ck_assert_int_eq(cn_cap_check(store, &fmid, &r), 0);
  ck_assert_uint_eq(r.files, 1);
  ck_assert_uint_ge(r.chunks, 1);
  free(big);
  free(mid);
}
END_TEST

START_TEST(caps_in_namespaces_held_without_the_write_cap)
{
  cn_ns *ns;
  cn_cap dir_w, dir_r, file_w, file_r;
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/f", (const uint8_t *)"shared", 6);
  put_bytes(ns, "/g", (const uint8_t *)"other", 5); /* so the root leaf is not /f's cap node */
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/", &dir_w), 0);
  cn_ns_close(ns);

  cn_nskey reader = key, verifier = key;
  cn_nskey_diminish(&reader, CN_ACCESS_READ);
  cn_nskey_diminish(&verifier, CN_ACCESS_VERIFY);
  ck_assert_int_eq(cn_ns_open(store, &reader, 0, &ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/", &dir_r), 0); /* directories: existing nodes */
  ck_assert_mem_eq(&dir_r, &dir_w, sizeof dir_r);
  ck_assert_int_eq(cn_ns_cap(ns, "/f", &file_r), -ENOTSUP); /* a reader cannot commit */
  cn_ns_close(ns);
  /* the writer, open read-only, is told to open for writing */
  ck_assert_int_eq(cn_ns_open(store, &key, 0, &ns), 0);
  uint64_t seq = cn_ns_seq(ns);
  ck_assert_int_eq(cn_ns_cap(ns, "/f", &file_w), -EROFS);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/f", &file_w), 0);
  ck_assert_uint_eq(cn_ns_seq(ns), seq + 1);
  cn_ns_close(ns);
  /* once a commit holds the object, a reader derives the very same cap (convergent) */
  ck_assert_int_eq(cn_ns_open(store, &reader, 0, &ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/f", &file_r), 0);
  ck_assert_mem_eq(&file_r, &file_w, sizeof file_r);
  cn_ns_close(ns);
  ck_assert_int_eq(cn_ns_open(store, &verifier, 0, &ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/f", &file_r), -EACCES);
  cn_ns_close(ns);
}
END_TEST

START_TEST(bad_caps_are_refused)
{
  cn_ns *ns, *view;
  uint8_t *d = random_bytes(200000, 41);
  ck_assert_int_eq(cn_ns_open(store, &key, 1, &ns), 0);
  put_bytes(ns, "/f", d, 200000);
  put_bytes(ns, "/g", d, 10);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  cn_cap file, dir, bad, verify;
  ck_assert_int_eq(cn_ns_cap(ns, "/f", &file), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/", &dir), 0);
  cn_entry *e;
  cn_extent *x;
  size_t n_x;
  ck_assert_int_eq(fs_lookup(ns, "/f", &e), 0);
  ck_assert_int_eq(fs_file_extents(ns, e, &x, &n_x), 0);
  ck_assert_uint_ge(n_x, 1); /* the cut points depend on the random key */

  /* a verify cap cannot read; a namespace cap is not an object cap */
  ck_assert_int_eq(cn_cap_diminish(&file, CN_CAP_FILE_VERIFY, &verify), 0);
  ck_assert_int_eq(cn_ns_open_cap(store, &verify, &view), -EACCES);
  ck_assert_ptr_null(view);
  cn_check_report r;
  ck_assert_int_eq(cn_cap_check(store, &verify, &r), 0); /* but it can check its object */
  ck_assert_uint_eq(r.chunks, 1);
  cn_cap_from_nskey(&key, &bad);
  ck_assert_int_eq(cn_ns_open_cap(store, &bad, &view), -EINVAL);
  /* an object that is not stored */
  bad = file;
  bad.a[5] ^= 1;
  ck_assert_int_eq(cn_ns_open_cap(store, &bad, &view), -ENOENT);
  ck_assert_int_eq(cn_cap_check(store, &bad, &r), -EIO);
  /* the right object under a wrong key */
  bad = file;
  bad.b[0] ^= 1;
  ck_assert_int_eq(cn_ns_open_cap(store, &bad, &view), -EIO);
  /* a file cap naming a two-entry directory, a directory cap naming a data chunk */
  bad = dir;
  bad.kind = CN_CAP_FILE_READ;
  ck_assert_int_eq(cn_ns_open_cap(store, &bad, &view), -EIO);
  memset(&bad, 0, sizeof bad);
  bad.kind = CN_CAP_DIR_READ;
  memcpy(bad.a, x[0].ref.id, CN_ID_BYTES);
  memcpy(bad.b, x[0].ref.key, CN_KEY_BYTES);
  ck_assert_int_eq(cn_ns_open_cap(store, &bad, &view), -EIO);
  bad.kind = CN_CAP_FILE_READ;
  ck_assert_int_eq(cn_ns_open_cap(store, &bad, &view), -EIO);
  cn_ns_close(ns);

  /* a damaged data chunk: the cap opens, reading and checking fail with EIO */
  FILE *f = fopen(cn_store_chunk_path(store, x[0].ref.id), "r+b");
  ck_assert_ptr_nonnull(f);
  fseek(f, 1000, SEEK_SET);
  int byte = fgetc(f);
  fseek(f, 1000, SEEK_SET);
  fputc(byte ^ 0x40, f);
  fclose(f);
  view = open_cap_ok(&file);
  int fd = memfd_create("out", 0);
  ck_assert_int_eq(cn_ns_read_to_fd(view, "/f", fd), -EIO);
  close(fd);
  cn_ns_close(view);
  ck_assert_int_eq(cn_cap_check(store, &file, &r), -EIO);
  ck_assert_uint_ge(r.bad, 1);
  /* a damaged cap object: opening fails, and even a verify cap sees it */
  f = fopen(cn_store_chunk_path(store, file.a), "r+b");
  ck_assert_ptr_nonnull(f);
  fputc('X', f); /* over the version byte (1): always a change */
  fclose(f);
  ck_assert_int_eq(cn_ns_open_cap(store, &file, &view), -EIO);
  ck_assert_int_eq(cn_cap_check(store, &verify, &r), -EIO);
  free(x);
  free(d);
}
END_TEST

/* The file-cap object, byte for byte (docs/FORMAT.md §3.3 and the vector in §14): the
 * §9.1 example entry in a one-entry leaf, sealed under the §14 seed's convergence key. */
START_TEST(file_cap_object_layout)
{
  static const uint8_t seed[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                   16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
  static const uint8_t want[] = {0x44, 0x01, 0x00, 0x01, 0x01, 0x61, 0x01, 0xa4, 0x03, 0x00,
                                 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x68, 0x69};
  cn_nskey k;
  cn_ns *ns;
  cn_cap cap;
  char str[CN_CAP_STR_MAX];
  cn_nskey_from_seed(&k, seed);
  cn_attr meta = {.type = CN_FILE, .mode = 0644};
  ck_assert_int_eq(cn_ns_open(store, &k, 1, &ns), 0);
  int fd = data_fd((const uint8_t *)"hi", 2);
  ck_assert_int_eq(cn_ns_write_from_fd(ns, "/a", fd, &meta), 0);
  close(fd);
  put_bytes(ns, "/b", (const uint8_t *)"b", 1);
  ck_assert_int_eq(cn_ns_commit(ns), 0);
  ck_assert_int_eq(cn_ns_cap(ns, "/a", &cap), 0);
  uint8_t *plain;
  size_t len;
  ck_assert_int_eq(fs_get_object(ns, cap.a, cap.b, &plain, &len), 0);
  ck_assert_uint_eq(len, sizeof want);
  ck_assert_mem_eq(plain, want, sizeof want);
  free(plain);
  cn_cap_format(&cap, str);
  ck_assert_str_eq(str, "cairn-fr1-6pkisct3nv662xkbqegirtdprhwio2ehfsynn656gogsriqa7pi3dngxik53cauq3weulqe4zegfblpvzxrrxcik7jzh3k72tgywibhwpp3u2");
  cn_cap verify;
  ck_assert_int_eq(cn_cap_diminish(&cap, CN_CAP_FILE_VERIFY, &verify), 0);
  cn_cap_format(&verify, str);
  ck_assert_str_eq(str, "cairn-fv1-6pkisct3nv662xkbqegirtdprhwio2ehfsynn656gogsriqa7piyqmw74m");
  cn_ns_close(ns);
  cn_nskey_wipe(&k);
}
END_TEST

int main(void)
{
  if (cn_crypto_init() < 0)
    return EXIT_FAILURE;
  Suite *suite = suite_create("fs");
  TCase *tc = tcase_create("fs");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, files_of_every_size_round_trip);
  tcase_add_test(tc, directories_and_special_entries);
  tcase_add_test(tc, metadata_is_kept);
  tcase_add_test(tc, large_directory_rewrites_only_its_path);
  tcase_add_test(tc, an_edit_rechunks_only_near_the_change);
  tcase_add_test(tc, rewrite_equals_a_full_rechunk);
  tcase_add_test(tc, sealing_ahead_equals_whole_file_chunking);
  tcase_add_test(tc, history_and_snapshots);
  tcase_add_test(tc, changes_during_a_commit_are_the_next_ones);
  tcase_add_test(tc, namespaces_never_share_ciphertext);
  tcase_add_test(tc, read_and_verify_caps);
  tcase_add_test(tc, check_finds_damage_and_rollback_is_refused);
  tcase_add_test(tc, file_and_directory_caps_are_snapshots);
  tcase_add_test(tc, caps_in_namespaces_held_without_the_write_cap);
  tcase_add_test(tc, bad_caps_are_refused);
  tcase_add_test(tc, file_cap_object_layout);
  suite_add_tcase(suite, tc);
  return run_suite(suite);
}
