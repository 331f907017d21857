/*
 * dht/lt.h — private to dht/: a plain C view of libtorrent-rasterbar 2.0, implemented by
 * lt.cpp (the project's only C++). No libtorrent type crosses this header. Torrents are
 * named by their 32-byte v2 info-hash; namespaces by their 32-byte ed25519 key.
 *
 * Events come from one alert-pump thread through the callback given to cn_lt_start; the
 * callback must copy what it keeps (pointers are valid only during the call) and must not
 * block for long.
 */
#ifndef CAIRN_DHT_LT_H
#define CAIRN_DHT_LT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cn_lt cn_lt;

enum cn_lt_event_kind {
  CN_LT_ITEM,          /* BEP 44 mutable item received: pk, salt, seq, sig, value, authoritative */
  CN_LT_PUT_DONE,      /* mutable put finished: pk, seq, count = nodes that stored it */
  CN_LT_PEERS,         /* get_peers replies: ih, count endpoints in `peers` */
  CN_LT_METADATA,      /* magnet metadata arrived: ih, torrent bytes in value */
  CN_LT_FILE_DONE,     /* a file of a torrent is complete on disk: ih, file */
  CN_LT_HASH_FAILED,   /* a piece failed its hash check: ih, file (piece's file) */
  CN_LT_PEER_BANNED,   /* libtorrent banned a peer for sending bad data: ih, peer */
  CN_LT_TORRENT_ERROR, /* a torrent stopped on an error: ih, message */
  CN_LT_HELD,          /* a peer says it holds a root's packs in full: pk, seq, tag, peer */
};

typedef struct {
  enum cn_lt_event_kind kind;
  uint8_t ih[32];
  uint8_t pk[32];
  uint8_t sig[64];
  uint64_t seq;
  int authoritative;
  int file;
  int count;
  const uint8_t *value;
  size_t value_len;
  const uint8_t *salt; /* CN_LT_ITEM: empty for namespace roots */
  size_t salt_len;
  const char *peer;    /* "ip:port" */
  const char *const *peers;
  const char *message;
  int pushed;          /* CN_LT_ITEM: sent to us by a peer (cn_lt_push_root), not asked for */
  const char *tag;     /* CN_LT_HELD: the sender's node tag (12 hex digits) */
} cn_lt_event;

typedef void (*cn_lt_event_fn)(const cn_lt_event *ev, void *ctx);

/* Starts a session listening on "IP:PORT" (port 0 = any) with settings that work on a
 * small private network (see ../shared/LIBTORRENT-NOTES.md). node_tag (12 characters)
 * ends the BitTorrent peer ID so other nodes can tell this node apart across restarts;
 * client (the extension handshake's "v") carries the node's whole key to its peers.
 * Returns NULL with a message in err. */
cn_lt *cn_lt_start(const char *listen, const char *node_tag, const char *client, cn_lt_event_fn fn,
                   void *ctx, char *err, size_t err_len);
void cn_lt_stop(cn_lt *lt);
/* The TCP port actually listened on, or 0 before the socket is up. */
int cn_lt_listen_port(cn_lt *lt);
/* DHT. */
void cn_lt_dht_add_node(cn_lt *lt, const char *host, int port);
/* BEP 44 mutable items; salt may be empty (salt_len 0): namespace roots are unsalted. */
void cn_lt_dht_put(cn_lt *lt, const uint8_t pk[32], const uint8_t *salt, size_t salt_len, uint64_t seq,
                   const uint8_t sig[64], const uint8_t *value, size_t len);
void cn_lt_dht_get(cn_lt *lt, const uint8_t pk[32], const uint8_t *salt, size_t salt_len);
/* Hands a namespace's signed root straight to the node at host:port (a DHT query of our
 * own, FORMAT.md §11.2), so a follower need not wait for its next poll. It arrives there
 * as a CN_LT_ITEM with pushed set. Fire and forget: a lost push costs one poll interval. */
#define CN_LT_ROOT_PUSH_QUERY "cairn_root"
#define CN_LT_ROOT_PUSH_VERSION 1
void cn_lt_push_root(cn_lt *lt, const char *host, int port, const uint8_t pk[32], uint64_t seq,
                     const uint8_t sig[64], const uint8_t *value, size_t len);
/* Tells the node at host:port that this node (node_tag) holds every pack of namespace
 * pk's root seq in full, in its store (a DHT query of our own, FORMAT.md §11.2). It
 * arrives there as a CN_LT_HELD event. Fire and forget, like cn_lt_push_root. */
#define CN_LT_HELD_QUERY "cairn_held"
#define CN_LT_HELD_VERSION 1
void cn_lt_push_held(cn_lt *lt, const char *host, int port, const uint8_t pk[32], uint64_t seq,
                     const char *node_tag);
void cn_lt_dht_announce(cn_lt *lt, const uint8_t ih[32], int port);
void cn_lt_dht_get_peers(cn_lt *lt, const uint8_t ih[32]);

/* Torrents. A pack is a v2-only torrent with CN_PIECE_BYTES pieces whose files are
 * "chunks/<h0h1>/<h2h3>/<hex id>", so each file's pieces root is its chunk ID. layers[i]
 * is object i's piece layer (cn_piece_count(sizes[i]) hashes; NULL when it has none): no
 * file is read. The layers are checked against the IDs. Returns malloc'd .torrent bytes
 * and the ih. */
int cn_lt_pack_create(const uint8_t (*ids)[32], const uint64_t *sizes, const uint8_t *const *layers,
                      size_t n, uint8_t **torrent, size_t *torrent_len, uint8_t ih[32], char *err,
                      size_t err_len);
/* Parses .torrent bytes: its ih and each file's path, size and piece layer (NULL for a
 * file of one piece), in file order (pad files skipped; file index = the libtorrent index
 * passed to fn). */
typedef int (*cn_lt_file_fn)(int file, const char *path, uint64_t size, const uint8_t *layer,
                             void *ctx);
int cn_lt_torrent_parse(const uint8_t *torrent, size_t len, uint8_t ih[32], cn_lt_file_fn fn,
                        void *ctx, char *err, size_t err_len);

/* A peer every torrent added from now on has in its peer list from the start; a torrent
 * added by info-hash connects to them at once. (A peer given to cn_lt_connect waits for
 * libtorrent's connect round, which 2.0.8 runs once a second whatever tick_interval is.)
 * Repeats are ignored. */
void cn_lt_add_peer(cn_lt *lt, const char *host, int port);
/* Adds a torrent from its bytes, data under save_path. seed: every file is known to be
 * complete (no hashing at start). want_all: download every file; else all files start at
 * priority 0 and are fetched on demand. */
int cn_lt_add(cn_lt *lt, const uint8_t *torrent, size_t len, const char *save_path, int seed,
              int want_all, char *err, size_t err_len);
/* Adds a torrent known only by ih; its metadata (CN_LT_METADATA) comes from peers. It
 * downloads no piece until cn_lt_start_download; every file is then at priority 0 until
 * cn_lt_want_all / cn_lt_want_file. */
int cn_lt_add_magnet(cn_lt *lt, const uint8_t ih[32], const char *save_path);
int cn_lt_remove(cn_lt *lt, const uint8_t ih[32]);
int cn_lt_has(cn_lt *lt, const uint8_t ih[32]);
/* Fetches one file: top priority, and a deadline of deadline_ms on its pieces unless
 * deadline_ms < 0. */
int cn_lt_want_file(cn_lt *lt, const uint8_t ih[32], int file, int deadline_ms);
int cn_lt_connect(cn_lt *lt, const uint8_t ih[32], const char *host, int port);
/* Every file wanted (a host) or none until asked for (a reader). */
int cn_lt_want_all(cn_lt *lt, const uint8_t ih[32], int want);
int cn_lt_start_download(cn_lt *lt, const uint8_t ih[32]);
/* done[f] = 1 when every piece of file f is here and verified, for f < n_files. The
 * FILE_DONE events can be missed (a piece that failed and came again later), so this is
 * the reliable way to know. */
int cn_lt_files_done(cn_lt *lt, const uint8_t ih[32], uint8_t *done, int n_files);
/* Re-verifies what is on disk (after files were linked in under the save path). */
int cn_lt_recheck(cn_lt *lt, const uint8_t ih[32]);

typedef struct {
  int peers, seeds;           /* connected peers; how many of them have every piece */
  int done;                   /* every wanted piece is here */
  int checking;               /* hashing what is on disk (start-up or recheck) */
  double progress;            /* fraction of all pieces held */
  uint64_t uploaded, downloaded;
  char error[128];
} cn_lt_status;
int cn_lt_torrent_status(cn_lt *lt, const uint8_t ih[32], cn_lt_status *st);
/* Connected peers of a torrent: tag = the last 12 characters of their peer ID, endpoint
 * "ip:port", seed = holds every piece. */
/* client: what the peer's handshake calls itself ("" when it said nothing) */
typedef int (*cn_lt_peer_fn)(const char *tag, const char *endpoint, int seed, const char *client, void *ctx);
int cn_lt_torrent_peers(cn_lt *lt, const uint8_t ih[32], cn_lt_peer_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
