/*
 * dht/ — the content store. Today: the local store under $CAIRN_HOME (chunk files named by
 * chunk ID in a two-level fan-out, an LMDB index of signed roots, seq high-water marks and
 * which chunks a commit has listed, the node's identity). The peer network (libtorrent)
 * joins this layer later behind the same header.
 *
 * Promises: a chunk is visible under its name only once complete and durable; every read
 * re-verifies the chunk ID and a mismatch is -EIO plus one log line naming the chunk;
 * signed roots never go backwards (rollback protection) and are checked before storing.
 */
#ifndef CAIRN_DHT_H
#define CAIRN_DHT_H

#include "crypto/crypto.h"
#include <stdint.h>

/* One readable line on stderr, prefixed "cairn: ". */
void cn_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* $CAIRN_HOME, else ~/.local/share/cairn. Returns a malloc'd path. */
char *cn_default_home(void);

typedef struct cn_store cn_store;

/* Creates the home (idempotent: an existing home is left as it is). */
int cn_store_init(const char *home);
/* -ENOENT with a hint to run `cairn init` when the home does not exist. */
int cn_store_open(const char *home, cn_store **out);
void cn_store_close(cn_store *s);
const char *cn_store_home(const cn_store *s);
/* The node's identity: a 32-byte ed25519 seed kept in node.key (0600). */
int cn_store_node_seed(cn_store *s, uint8_t seed[CN_SEED_BYTES]);

/* Stages a chunk (no-op when already stored); it is durable after cn_store_flush. */
int cn_store_put(cn_store *s, const uint8_t *data, size_t len, uint8_t id[CN_ID_BYTES]);
/* Reads and verifies; *data is malloc'd. -ENOENT if absent, -EIO if corrupt. */
int cn_store_get(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t **data, size_t *len);
int cn_store_has(cn_store *s, const uint8_t id[CN_ID_BYTES]);
/* Asks the kernel to start reading a stored chunk in the background (readahead). */
void cn_store_prefetch(cn_store *s, const uint8_t id[CN_ID_BYTES]);
/* 0, -ENOENT or -EIO, without keeping the bytes. */
int cn_store_verify(cn_store *s, const uint8_t id[CN_ID_BYTES]);
/* Makes every staged chunk durable, then visible. */
int cn_store_flush(cn_store *s);
/* Calls fn for every stored chunk's ID; stops early on a non-zero return. */
int cn_store_foreach(cn_store *s, int (*fn)(const uint8_t id[CN_ID_BYTES], void *ctx), void *ctx);
/* Path of a chunk file, for reporting (static per-thread buffer). */
const char *cn_store_chunk_path(cn_store *s, const uint8_t id[CN_ID_BYTES]);

/* Serialises writers of one namespace across processes: an exclusive flock held until
 * the returned descriptor is closed. Waits up to CN_LOCK_WAIT_MS, then -EBUSY. */
#define CN_LOCK_WAIT_MS 10000
int cn_store_lock_ns(cn_store *s, const uint8_t pk[CN_PK_BYTES]);

/* A namespace's signed root: a BEP 44 mutable item without salt. */
typedef struct {
  uint64_t seq;
  uint8_t sig[CN_SIG_BYTES];
  size_t value_len;
  uint8_t value[CN_ROOT_VALUE_MAX];
} cn_root;

int cn_store_root_get(cn_store *s, const uint8_t pk[CN_PK_BYTES], cn_root *root);
/* Highest seq ever accepted for pk (0 if none). */
uint64_t cn_store_root_seq(cn_store *s, const uint8_t pk[CN_PK_BYTES]);
/* Verifies the signature and accepts only a seq above the high-water mark (-ESTALE
 * otherwise; -EBADMSG for a bad signature). In the same transaction records that the
 * given chunks are now listed by a commit. */
int cn_store_root_put(cn_store *s, const uint8_t pk[CN_PK_BYTES], const cn_root *root,
                      const uint8_t (*listed)[CN_ID_BYTES], size_t n_listed);
/* Compacts ids to those no accepted commit has listed yet; returns how many remain. */
size_t cn_store_filter_unlisted(cn_store *s, uint8_t (*ids)[CN_ID_BYTES], size_t n);

#endif
