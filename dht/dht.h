/*
 * dht/ — the content store: the local store under $CAIRN_HOME (chunk files named by chunk
 * ID in a two-level fan-out, an LMDB index of signed roots, seq high-water marks and which
 * chunks a commit has listed, the node's identity), packs (BitTorrent v2 torrents over
 * stored chunks), and the peer network (a node: libtorrent's DHT for signed roots,
 * BitTorrent for chunks; see cn_node below).
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
/* Reads without hashing, for callers that authenticate the bytes themselves (a sealed
 * object's AEAD tag) and call cn_store_get when that fails, to have corruption named,
 * logged and (with repair) set aside. */
int cn_store_read(cn_store *s, const uint8_t id[CN_ID_BYTES], uint8_t **data, size_t *len);
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

/* ---- signed root values and packs ---- */

/* The value a signed root carries: the commit it names and the packs (v2 torrents, by
 * info-hash) that together hold every object the namespace's commits listed. */
#define CN_PACKS_MAX 28
typedef struct {
  uint8_t commit[CN_ID_BYTES];
  size_t n_packs;
  uint8_t packs[CN_PACKS_MAX][CN_ID_BYTES];
} cn_root_value;
/* Accepts value versions 1 (commit only, no packs) and 2; -EBADMSG otherwise. */
int cn_root_value_parse(const uint8_t *value, size_t len, cn_root_value *out);
/* Encodes as version 2 into root->value / value_len. */
void cn_root_value_build(const cn_root_value *v, cn_root *root);

/* Merges the last two of v->packs while the older is at most twice as big (so a
 * namespace keeps O(log n) packs), then makes a pack of the given stored objects (durable
 * ones: flush first), writes its torrent to packs/<ih hex>.torrent and appends it. With
 * newest_settled 0 (hosts may still be fetching v's newest pack) it merges only to make
 * room in a full list. */
int cn_store_pack_add(cn_store *s, cn_root_value *v, const uint8_t (*ids)[CN_ID_BYTES], size_t n,
                      int newest_settled);
/* Deletes packs/<ih hex>.torrent of every pack `before` lists and `after` does not (a
 * merge replaced it). Call only once a root listing `after` is durable: until then the
 * torrents are what a merge is made from. Packs of one namespace never name another's
 * (each holds a commit, which names its namespace), so other namespaces lose nothing. */
void cn_store_pack_forget(cn_store *s, const cn_root_value *before, const cn_root_value *after);
/* Reads packs/<ih hex>.torrent; -ENOENT when this node does not have it. */
int cn_store_pack_torrent(cn_store *s, const uint8_t ih[CN_ID_BYTES], uint8_t **data, size_t *len);
/* Calls fn for every object of a pack whose torrent this node has. */
int cn_store_pack_foreach(cn_store *s, const uint8_t ih[CN_ID_BYTES],
                          int (*fn)(const uint8_t id[CN_ID_BYTES], uint64_t size, void *ctx), void *ctx);

/* ---- the peer network ---- */

/* When a chunk is not in the store, cn_store_get asks this hook (installed by a running
 * node) to fetch it from peers; 0 means it is stored now. how: CN_FETCH_WAIT, or
 * CN_FETCH_PREFETCH (start, do not wait). Hooks are set and cleared (fn NULL) while other
 * threads may be calling them; clearing keeps the old ctx, which must stay valid until
 * the threads that could still be calling have stopped. */
enum { CN_FETCH_WAIT, CN_FETCH_PREFETCH };
typedef int (*cn_store_fetch_fn)(const uint8_t id[CN_ID_BYTES], int how, void *ctx);
void cn_store_set_fetcher(cn_store *s, cn_store_fetch_fn fn, void *ctx);
/* Repair mode (cairn check --repair): a chunk that fails verification is moved to
 * tmp/.corrupt.<hex>, its links under packs/ removed (they are the same inode), and the
 * read fails with ENOENT. A node started afterwards sees it missing and fetches it. */
void cn_store_set_repair(cn_store *s, int on);
/* Called after every root this store accepts (local commit or peer), outside locks; set
 * and cleared as the fetcher is. */
typedef void (*cn_store_root_fn)(const uint8_t pk[CN_PK_BYTES], uint64_t seq, void *ctx);
void cn_store_set_root_listener(cn_store *s, cn_store_root_fn fn, void *ctx);

/* Known peers, persisted in $CAIRN_HOME/peers as "host:port" lines. */
int cn_peers_add(cn_store *s, const char *hostport);
/* Calls fn for each; stops on a non-zero return. */
int cn_peers_foreach(cn_store *s, int (*fn)(const char *host, int port, void *ctx), void *ctx);
/* Splits "host:port" ("[v6]:port" too); -EINVAL with a reason otherwise. */
int cn_parse_hostport(const char *s, char *host, size_t host_len, int *port);
/* The node's configured listen address from $CAIRN_HOME/config ("listen HOST:PORT"), or
 * the default "0.0.0.0:0". set_listen persists one. */
int cn_config_listen(cn_store *s, char *out, size_t len);
int cn_config_set_listen(cn_store *s, const char *hostport);

/* Namespaces this node hosts (`cairn host`), persisted in $CAIRN_HOME/hosted as IDs. */
int cn_hosted_add(cn_store *s, const uint8_t pk[CN_PK_BYTES]);
int cn_hosted_has(cn_store *s, const uint8_t pk[CN_PK_BYTES]);

/* Signed items: small records a node publishes under its own key as BEP 44 items salted
 * with a name (job results, docs/FORMAT.md §15.5). item_add keeps one in items/ (a
 * running node puts it within 30 s, or at once after cn_node_publish_items) with a seq
 * above the last one for that salt. */
#define CN_ITEM_SALT_MAX 64
int cn_store_item_add(cn_store *s, const uint8_t *salt, size_t salt_len, const uint8_t *value, size_t len);
typedef int (*cn_item_fn)(const uint8_t *salt, size_t salt_len, uint64_t seq, const uint8_t *value,
                          size_t len, void *ctx);
int cn_store_items_foreach(cn_store *s, cn_item_fn fn, void *ctx);

typedef struct cn_node cn_node;

/* What a node calls itself in its BitTorrent extension handshake: this, then its key in
 * hex, so peers learn each other's keys (to look up their signed items). */
#define CN_NODE_CLIENT_PREFIX "cairn-node/"

/* How a node treats a namespace. */
enum cn_follow {
  CN_FOLLOW_READ,  /* resolve its root, fetch objects when they are read */
  CN_FOLLOW_HOST,  /* also fetch every pack, seed it, re-publish the root */
};

/* Starts the node: a libtorrent session on listen ("HOST:PORT"), bootstraps from the
 * persisted peers, seeds every pack it holds, and installs the store's fetch hook. It
 * serves a control socket at run/node.sock for `cairn status` / `sync` / `peers`. */
int cn_node_start(cn_store *s, const char *listen, cn_node **out);
void cn_node_stop(cn_node *n);
int cn_node_port(cn_node *n);
/* Follows a namespace: periodically resolves its signed root from the DHT (accepting only
 * a higher seq than ever seen), keeps its packs added, and (HOST, or when this node holds
 * every object of the latest commit) seeds them and re-publishes the root. */
int cn_node_follow(cn_node *n, const uint8_t pk[CN_PK_BYTES], enum cn_follow how);
/* Asks the DHT (again every half second) until this node has a root for pk, at most
 * wait_ms: 0 once it has one, -ETIMEDOUT when no peer offered any. */
int cn_node_resolve(cn_node *n, const uint8_t pk[CN_PK_BYTES], int wait_ms);

/* Holders of a namespace's latest commit: peers that have every pack of it in full. */
typedef struct {
  uint64_t seq;
  size_t n_packs;
  uint64_t bytes_total, bytes_local;
  size_t n_hosts;
  char hosts[16][64];   /* "tag endpoint" */
} cn_ns_status;
int cn_node_status(cn_node *n, const uint8_t pk[CN_PK_BYTES], cn_ns_status *st);
/* One line per known peer: "host:port state" into fn. */
int cn_node_peers(cn_node *n, int (*fn)(const char *line, void *ctx), void *ctx);

/* The node's own key (its identity: cn_store_node_seed). */
void cn_node_key(cn_node *n, uint8_t pk[CN_PK_BYTES]);
/* Puts this node's items (items/) into the DHT now. */
void cn_node_publish_items(cn_node *n);
/* The signed item under pk and salt from the DHT, waiting at most wait_ms for an answer:
 * 0 with value (≤ CN_ITEM_VALUE_MAX bytes), or -ENOENT. Signatures are checked. */
int cn_node_item_get(cn_node *n, const uint8_t pk[CN_PK_BYTES], const uint8_t *salt, size_t salt_len,
                     int wait_ms, uint8_t *value, size_t *len);
/* Keys of the nodes connected to this one in a namespace's packs (at most max). */
size_t cn_node_peer_keys(cn_node *n, const uint8_t nspk[CN_PK_BYTES], uint8_t (*keys)[CN_PK_BYTES], size_t max);

/* Talks to the node serving this home (run/node.sock): sends one request line and calls
 * fn for each reply line. -ECONNREFUSED / -ENOENT when no node runs. */
int cn_node_ask(const char *home, const char *request, int (*fn)(const char *line, void *ctx), void *ctx);

#endif
