/* Unit tests for dht/: the local chunk store and its index. */
#include "dht/dht.h"
#include "dht/internal.h" /* store_pack_add_layers: the same layer's internals */
#include "dht/lt.h"
#include "check_main.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char home[256];

static void setup(void)
{
  snprintf(home, sizeof home, "/tmp/cairn-test-store.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(home));
  ck_assert_int_eq(cn_store_init(home), 0);
}

static void teardown(void)
{
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
  ck_assert_int_eq(system(cmd), 0);
}

static int count_files(const char *sub)
{
  char cmd[400];
  snprintf(cmd, sizeof cmd, "find '%s/%s' -type f | wc -l", home, sub);
  FILE *p = popen(cmd, "r");
  int n = -1;
  ck_assert_int_eq(fscanf(p, "%d", &n), 1);
  pclose(p);
  return n;
}

START_TEST(open_missing_home_says_init)
{
  cn_store *s;
  ck_assert_int_eq(cn_store_open("/nonexistent/cairn-home", &s), -ENOENT);
  ck_assert_ptr_nonnull(strstr(cn_err(), "cairn init"));
}
END_TEST

START_TEST(foreign_home_format_is_refused)
{
  char path[300];
  snprintf(path, sizeof path, "%s/format", home);
  FILE *f = fopen(path, "w");
  fputs("cairn-home 9\n", f);
  fclose(f);
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), -EPROTO);
  ck_assert_ptr_nonnull(strstr(cn_err(), "cairn-home 9"));
}
END_TEST

START_TEST(home_format_1_is_upgraded_in_place)
{
  char path[300], text[64] = "";
  snprintf(path, sizeof path, "%s/format", home);
  FILE *f = fopen(path, "w");
  fputs("cairn-home 1\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/packs", home);
  rmdir(path);
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  cn_store_close(s);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  snprintf(path, sizeof path, "%s/format", home);
  f = fopen(path, "r");
  ck_assert_ptr_nonnull(fgets(text, sizeof text, f));
  fclose(f);
  ck_assert_str_eq(text, "cairn-home 3\n");
}
END_TEST

/* Format 2 kept chunks one directory deeper: opening such a home moves them up. */
START_TEST(home_format_2_chunks_move_up)
{
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  uint8_t data[3000], id[32];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 7);
  ck_assert_int_eq(cn_store_put(s, data, sizeof data, id), 0);
  ck_assert_int_eq(cn_store_flush(s), 0);
  char now[400], hex[65], leaf[300], before[400], cmd[1600];
  snprintf(now, sizeof now, "%s", cn_store_chunk_path(s, id));
  cn_store_close(s);
  cn_hex(id, 32, hex);
  snprintf(leaf, sizeof leaf, "%s/chunks/%.2s/%.2s", home, hex, hex + 2);
  snprintf(before, sizeof before, "%s/%s", leaf, hex);
  snprintf(cmd, sizeof cmd, "mkdir '%s' && mv '%s' '%s' && echo 'cairn-home 2' > '%s/format'", leaf, now,
           before, home);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  uint8_t *got;
  size_t len;
  ck_assert_int_eq(cn_store_get(s, id, &got, &len), 0);
  ck_assert_uint_eq(len, sizeof data);
  ck_assert_mem_eq(got, data, len);
  free(got);
  ck_assert_str_eq(cn_store_chunk_path(s, id), now);
  cn_store_close(s);
  struct stat st;
  ck_assert_int_eq(stat(leaf, &st), -1); /* the emptied directory is gone */
  ck_assert_int_eq(count_files("chunks"), 1);
}
END_TEST

START_TEST(node_key_is_private_and_stable)
{
  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "%s/node.key", home);
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0600);
  cn_store *s;
  uint8_t a[32], b[32];
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  ck_assert_int_eq(cn_store_node_seed(s, a), 0);
  cn_store_close(s);
  ck_assert_int_eq(cn_store_init(home), 0); /* idempotent: keeps the identity */
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  ck_assert_int_eq(cn_store_node_seed(s, b), 0);
  cn_store_close(s);
  ck_assert_mem_eq(a, b, 32);
}
END_TEST

START_TEST(put_get_flush_and_dedupe)
{
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  uint8_t data[50000], id[32], id2[32], want[32];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 31);
  cn_chunk_id(data, sizeof data, want);
  ck_assert_int_eq(cn_store_put(s, data, sizeof data, id), 0);
  ck_assert_mem_eq(id, want, 32);
  ck_assert_int_eq(cn_store_has(s, id), 1);
  /* staged: readable here, but not yet under its final name */
  ck_assert_int_eq(count_files("chunks"), 0);
  uint8_t *got;
  size_t len;
  ck_assert_int_eq(cn_store_get(s, id, &got, &len), 0);
  ck_assert_uint_eq(len, sizeof data);
  ck_assert_mem_eq(got, data, len);
  free(got);
  ck_assert_int_eq(cn_store_put(s, data, sizeof data, id2), 0);
  ck_assert_int_eq(cn_store_flush(s), 0);
  ck_assert_int_eq(count_files("chunks"), 1);
  ck_assert_int_eq(count_files("tmp"), 0);
  char hex[65];
  cn_hex(id, 32, hex);
  ck_assert_ptr_nonnull(strstr(cn_store_chunk_path(s, id), hex));
  char fan[80];
  snprintf(fan, sizeof fan, "/chunks/%.2s/%s", hex, hex);
  ck_assert_ptr_nonnull(strstr(cn_store_chunk_path(s, id), fan));
  cn_store_close(s);
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  ck_assert_int_eq(cn_store_verify(s, id), 0);
  cn_store_close(s);
}
END_TEST

START_TEST(corrupt_chunk_is_eio_never_data)
{
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  uint8_t data[40000], id[32];
  memset(data, 7, sizeof data);
  ck_assert_int_eq(cn_store_put(s, data, sizeof data, id), 0);
  ck_assert_int_eq(cn_store_flush(s), 0);
  int fd = open(cn_store_chunk_path(s, id), O_RDWR);
  ck_assert_int_ge(fd, 0);
  uint8_t b;
  ck_assert_int_eq(pread(fd, &b, 1, 20000), 1);
  b ^= 1;
  ck_assert_int_eq(pwrite(fd, &b, 1, 20000), 1);
  close(fd);
  uint8_t *got = NULL;
  size_t len = 0;
  ck_assert_int_eq(cn_store_get(s, id, &got, &len), -EIO);
  ck_assert_ptr_null(got);
  ck_assert_int_eq(cn_store_verify(s, id), -EIO);
  /* truncation too */
  ck_assert_int_eq(truncate(cn_store_chunk_path(s, id), 100), 0);
  ck_assert_int_eq(cn_store_verify(s, id), -EIO);
  ck_assert_int_eq(truncate(cn_store_chunk_path(s, id), 0), 0);
  ck_assert_int_eq(cn_store_verify(s, id), -EIO);
  uint8_t missing[32] = {1};
  ck_assert_int_eq(cn_store_verify(s, missing), -ENOENT);
  ck_assert_int_eq(cn_store_has(s, missing), 0);
  cn_store_close(s);
}
END_TEST

START_TEST(dead_process_staging_is_swept)
{
  char path[400];
  /* pid 2^22+1 is above the default pid_max, so no such process exists */
  snprintf(path, sizeof path, "%s/tmp/%064d.4194305", home, 0);
  FILE *f = fopen(path, "w");
  fputs("half a chunk", f);
  fclose(f);
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  ck_assert_int_eq(access(path, F_OK), -1);
  cn_store_close(s);
}
END_TEST

static int count_cb(const uint8_t id[32], void *ctx)
{
  (*(int *)ctx)++;
  return 0;
}

START_TEST(foreach_visits_every_chunk)
{
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  for (int i = 0; i < 300; i++) {
    uint8_t data[64], id[32];
    memset(data, 0, sizeof data);
    memcpy(data, &i, sizeof i);
    ck_assert_int_eq(cn_store_put(s, data, sizeof data, id), 0);
  }
  ck_assert_int_eq(cn_store_flush(s), 0);
  int n = 0;
  ck_assert_int_eq(cn_store_foreach(s, count_cb, &n), 0);
  ck_assert_int_eq(n, 300);
  cn_store_close(s);
}
END_TEST

typedef struct {
  uint8_t (*ids)[32];
  size_t n;
} id_set;

static int collect_id(const uint8_t id[CN_ID_BYTES], uint64_t size, void *ctx)
{
  (void)size;
  id_set *set = ctx;
  memcpy(set->ids[set->n++], id, 32);
  return 0;
}

static int has_id(const id_set *set, const uint8_t id[32])
{
  for (size_t i = 0; i < set->n; i++)
    if (!memcmp(set->ids[i], id, 32))
      return 1;
  return 0;
}

static size_t count_torrents(void)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/packs", home);
  DIR *d = opendir(path);
  ck_assert_ptr_nonnull(d);
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    n += len > 8 && !strcmp(e->d_name + len - 8, ".torrent");
  }
  closedir(d);
  return n;
}

/* FORMAT §11: each commit appends one pack of exactly its new objects (merges only ever
 * combine older packs, which hosts can then rebuild), the list stays O(log n), and the
 * packs together hold everything. */
START_TEST(packs_append_new_objects_and_merge_older_ones)
{
  enum { COMMITS = 40, PER = 3 };
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  cn_root_value v;
  memset(&v, 0, sizeof v);
  uint8_t all[COMMITS * PER][32];
  id_set got = {malloc(4 * COMMITS * PER * 32), 0};
  for (int c = 0; c < COMMITS; c++) {
    uint8_t ids[PER][32];
    for (int k = 0; k < PER; k++) {
      uint8_t data[40000];
      memset(data, c * PER + k + 1, sizeof data); /* several pieces: a layer to carry */
      ck_assert_int_eq(cn_store_put(s, data, sizeof data, ids[k]), 0);
      memcpy(all[c * PER + k], ids[k], 32);
    }
    ck_assert_int_eq(cn_store_flush(s), 0);
    cn_root_value published = v;
    uint8_t before[CN_PACKS_MAX][32];
    size_t n_before = v.n_packs;
    memcpy(before, v.packs, sizeof before);
    ck_assert_int_eq(cn_store_pack_add(s, &v, (const uint8_t(*)[32])ids, PER, 1), 0);
    /* once the root is durable, packs/ holds the listed torrents and nothing else */
    cn_store_pack_forget(s, &published, &v);
    ck_assert_uint_eq(count_torrents(), v.n_packs);
    got.n = 0;
    ck_assert_int_eq(cn_store_pack_foreach(s, v.packs[v.n_packs - 1], collect_id, &got), 0);
    ck_assert_uint_eq(got.n, PER);
    for (int k = 0; k < PER; k++)
      ck_assert(has_id(&got, ids[k]));
    /* the packs before the new one are a prefix of the old list, then at most one merge */
    ck_assert_uint_le(v.n_packs - 1, n_before);
    if (v.n_packs >= 2)
      for (size_t i = 0; i + 2 < v.n_packs; i++)
        ck_assert(!memcmp(v.packs[i], before[i], 32));
    ck_assert_uint_le(v.n_packs, 8); /* about log2(40) */
  }
  got.n = 0;
  for (size_t i = 0; i < v.n_packs; i++)
    ck_assert_int_eq(cn_store_pack_foreach(s, v.packs[i], collect_id, &got), 0);
  ck_assert_uint_eq(got.n, COMMITS * PER); /* every object, each in one pack */
  for (int i = 0; i < COMMITS * PER; i++)
    ck_assert(has_id(&got, all[i]));
  free(got.ids);
  cn_store_close(s);
}
END_TEST

static int count_layers(int file, const char *path, uint64_t size, const uint8_t *layer, void *ctx)
{
  (void)file, (void)path, (void)size;
  size_t *n = ctx;
  n[0]++;
  n[1] += layer != NULL;
  return 0;
}

/* A pack torrent that came by info-hash carries no piece layers (metadata exchange sends
 * only the info dictionary); once the store holds its objects it gets them back, under
 * the same info-hash, so libtorrent can check each piece without asking peers. */
START_TEST(pack_torrent_without_layers_gets_them_back)
{
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  uint8_t ids[3][32], big[100000], small[5000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)(i * 7 + i / 300);
  memset(small, 9, sizeof small);
  ck_assert_int_eq(cn_store_put(s, big, sizeof big, ids[0]), 0);
  big[5] ^= 1;
  ck_assert_int_eq(cn_store_put(s, big, 70000, ids[1]), 0);
  ck_assert_int_eq(cn_store_put(s, small, sizeof small, ids[2]), 0);
  ck_assert_int_eq(cn_store_flush(s), 0);
  cn_root_value v;
  memset(&v, 0, sizeof v);
  ck_assert_int_eq(cn_store_pack_add(s, &v, (const uint8_t(*)[32])ids, 3, 1), 0);
  ck_assert_uint_eq(v.n_packs, 1);

  /* what the metadata exchange gives: "d4:info" + the info dictionary + "e" */
  uint8_t *t, ih[32];
  size_t len, n[2] = {0, 0};
  ck_assert_int_eq(cn_store_pack_torrent(s, v.packs[0], &t, &len), 0);
  const char *info = memmem(t, len, "4:infod", 7), *layers = memmem(t, len, "12:piece layers", 15);
  ck_assert_ptr_nonnull(info);
  ck_assert_ptr_nonnull(layers);
  ck_assert(layers > info);
  char path[4300];
  snprintf(path, sizeof path, "%s/packs/", home);
  size_t dir_len = strlen(path);
  cn_hex(v.packs[0], 32, path + dir_len);
  strcat(path, ".torrent");
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fputs("d4:info", f);
  fwrite(info + 6, 1, (size_t)(layers - info - 6), f);
  fputs("e", f);
  fclose(f);
  free(t);
  ck_assert_int_eq(cn_store_pack_torrent(s, v.packs[0], &t, &len), 0);
  ck_assert_int_eq(cn_lt_torrent_parse(t, len, ih, count_layers, n, NULL, 0), 0);
  free(t);
  ck_assert(!memcmp(ih, v.packs[0], 32));
  ck_assert_uint_eq(n[0], 3);
  ck_assert_uint_eq(n[1], 0); /* stripped */

  ck_assert_int_eq(store_pack_add_layers(s, v.packs[0]), 0);
  n[0] = n[1] = 0;
  ck_assert_int_eq(cn_store_pack_torrent(s, v.packs[0], &t, &len), 0);
  ck_assert_int_eq(cn_lt_torrent_parse(t, len, ih, count_layers, n, NULL, 0), 0);
  free(t);
  ck_assert(!memcmp(ih, v.packs[0], 32)); /* the same pack */
  ck_assert_uint_eq(n[0], 3);
  ck_assert_uint_eq(n[1], 2); /* both objects of several pieces */
  cn_store_close(s);
}
END_TEST

/* A writer's commits seconds apart (hosts may still be fetching the newest pack) append
 * without merging until the list is full, then merge only to make room; the first commit
 * with a settled newest pack merges as a binary counter again. */
START_TEST(packs_not_merged_while_the_newest_is_unsettled)
{
  enum { COMMITS = CN_PACKS_MAX + 4 };
  cn_store *s;
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  cn_root_value v;
  memset(&v, 0, sizeof v);
  for (int c = 0; c <= COMMITS; c++) {
    uint8_t data[20000], id[32];
    memset(data, c + 1, sizeof data);
    ck_assert_int_eq(cn_store_put(s, data, sizeof data, id), 0);
    ck_assert_int_eq(cn_store_flush(s), 0);
    cn_root_value before = v;
    int settled = c == COMMITS;
    ck_assert_int_eq(cn_store_pack_add(s, &v, (const uint8_t(*)[32])id, 1, settled), 0);
    cn_store_pack_forget(s, &before, &v);
    if (settled) {
      ck_assert_uint_le(v.n_packs, 8);
    } else if (before.n_packs < CN_PACKS_MAX) {
      ck_assert_uint_eq(v.n_packs, before.n_packs + 1); /* appended, nothing merged */
      ck_assert(!memcmp(v.packs, before.packs, before.n_packs * 32));
    } else {
      ck_assert_uint_eq(v.n_packs, CN_PACKS_MAX); /* one merge made room */
    }
  }
  id_set got = {malloc(4 * (COMMITS + 1) * 32), 0};
  for (size_t i = 0; i < v.n_packs; i++)
    ck_assert_int_eq(cn_store_pack_foreach(s, v.packs[i], collect_id, &got), 0);
  ck_assert_uint_eq(got.n, COMMITS + 1);
  free(got.ids);
  cn_store_close(s);
}
END_TEST

static void make_root(const uint8_t seed[32], uint64_t seq, const char *value, cn_root *r)
{
  uint8_t msg[1100];
  memset(r, 0, sizeof *r);
  r->seq = seq;
  r->value_len = strlen(value);
  memcpy(r->value, value, r->value_len);
  size_t n = cn_root_signing_bytes(seq, r->value, r->value_len, msg);
  cn_sign(seed, msg, n, r->sig);
}

START_TEST(roots_verify_and_never_go_back)
{
  cn_store *s;
  cn_nskey k, other;
  uint8_t seed[32] = {42}, other_seed[32] = {43};
  cn_nskey_from_seed(&k, seed);
  cn_nskey_from_seed(&other, other_seed);
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  cn_root r, got;
  ck_assert_int_eq(cn_store_root_get(s, k.pk, &got), -ENOENT);
  ck_assert_uint_eq(cn_store_root_seq(s, k.pk), 0);
  make_root(seed, 5, "five", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, NULL, 0), 0);
  ck_assert_int_eq(cn_store_root_get(s, k.pk, &got), 0);
  ck_assert_uint_eq(got.seq, 5);
  ck_assert_mem_eq(got.value, "five", 4);
  make_root(seed, 4, "four", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, NULL, 0), -ESTALE);
  make_root(seed, 5, "other five", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, NULL, 0), -ESTALE);
  make_root(other_seed, 9, "forged", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, NULL, 0), -EBADMSG);
  make_root(seed, 9, "nine", &r);
  r.value[0] ^= 1; /* signature no longer covers the value */
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, NULL, 0), -EBADMSG);
  cn_store_close(s);
  /* the high-water mark survives a restart */
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  ck_assert_uint_eq(cn_store_root_seq(s, k.pk), 5);
  make_root(seed, 3, "three", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, NULL, 0), -ESTALE);
  ck_assert_uint_eq(cn_store_root_seq(s, other.pk), 0);
  cn_store_close(s);
}
END_TEST

START_TEST(listed_chunks_are_filtered_atomically_with_the_root)
{
  cn_store *s;
  cn_nskey k;
  uint8_t seed[32] = {9};
  cn_nskey_from_seed(&k, seed);
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  uint8_t ids[4][32];
  for (int i = 0; i < 4; i++)
    memset(ids[i], i + 1, 32);
  cn_root r;
  make_root(seed, 1, "one", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, (const uint8_t(*)[32])ids, 2), 0);
  /* a refused root must not mark anything */
  make_root(seed, 1, "again", &r);
  ck_assert_int_eq(cn_store_root_put(s, k.pk, &r, (const uint8_t(*)[32])(ids + 2), 1), -ESTALE);
  uint8_t probe[4][32];
  memcpy(probe, ids, sizeof probe);
  size_t n = cn_store_filter_unlisted(s, probe, 4);
  ck_assert_uint_eq(n, 2);
  ck_assert_mem_eq(probe[0], ids[2], 32);
  ck_assert_mem_eq(probe[1], ids[3], 32);
  cn_store_close(s);
}
END_TEST

START_TEST(namespace_lock_excludes_other_holders)
{
  cn_store *s;
  uint8_t pk[32] = {5};
  ck_assert_int_eq(cn_store_open(home, &s), 0);
  int fd = cn_store_lock_ns(s, pk);
  ck_assert_int_ge(fd, 0);
  pid_t child = fork();
  if (child == 0) {
    /* a second process must not get the lock while we hold it */
    char path[400], id[CN_NSID_LEN + 1];
    cn_nsid(pk, id);
    snprintf(path, sizeof path, "%s/locks/%s", home, id);
    int other = open(path, O_RDWR);
    _exit(other >= 0 && flock(other, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK ? 0 : 1);
  }
  int status;
  waitpid(child, &status, 0);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fd);
  cn_store_close(s);
}
END_TEST

int main(void)
{
  if (cn_crypto_init() < 0)
    return EXIT_FAILURE;
  Suite *suite = suite_create("store");
  TCase *tc = tcase_create("store");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, open_missing_home_says_init);
  tcase_add_test(tc, foreign_home_format_is_refused);
  tcase_add_test(tc, home_format_1_is_upgraded_in_place);
  tcase_add_test(tc, home_format_2_chunks_move_up);
  tcase_add_test(tc, node_key_is_private_and_stable);
  tcase_add_test(tc, put_get_flush_and_dedupe);
  tcase_add_test(tc, corrupt_chunk_is_eio_never_data);
  tcase_add_test(tc, dead_process_staging_is_swept);
  tcase_add_test(tc, foreach_visits_every_chunk);
  tcase_add_test(tc, packs_append_new_objects_and_merge_older_ones);
  tcase_add_test(tc, packs_not_merged_while_the_newest_is_unsettled);
  tcase_add_test(tc, pack_torrent_without_layers_gets_them_back);
  tcase_add_test(tc, roots_verify_and_never_go_back);
  tcase_add_test(tc, listed_chunks_are_filtered_atomically_with_the_root);
  tcase_add_test(tc, namespace_lock_excludes_other_holders);
  suite_add_tcase(suite, tc);
  return run_suite(suite);
}
