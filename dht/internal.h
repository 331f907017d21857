/* Private to dht/: the store's state, shared by store.c, pack.c and node.c. */
#ifndef CAIRN_DHT_INTERNAL_H
#define CAIRN_DHT_INTERNAL_H

#include "dht/dht.h"
#include <lmdb.h>
#include <pthread.h>

struct cn_store {
  char *home;
  int home_fd;
  MDB_env *env;
  MDB_dbi roots;   /* pk → seq u64le || sig || value */
  MDB_dbi hwm;     /* pk → highest accepted seq u64le */
  MDB_dbi listed;  /* chunk id → seq of the first commit that listed it */
  pthread_mutex_t lock;
  struct staged { uint8_t id[CN_ID_BYTES]; uint64_t serial; } *pending;
  size_t n_pending, cap_pending;
  size_t *pending_index, index_cap; /* find_pending's hash table: index + 1, 0 for empty */
  uint8_t fanout_made[256 / 8];      /* chunks/<h0h1>/ known to exist (ensure_fanout) */
  uint64_t next_serial;
  cn_store_fetch_fn fetch;
  void *fetch_ctx;
  int repair;
  cn_store_root_fn on_root;
  void *on_root_ctx;
  /* Piece layers of objects stored since they were last packed, computed with their IDs,
   * so making a pack hashes nothing again (bounded: past the bound, packing rehashes). */
  struct piece_layer { struct piece_layer *next; uint8_t id[CN_ID_BYTES]; uint8_t *hashes; } **layers;
  size_t layer_bytes;
};

/* A chunk file's path below the home, chunks/<h0h1>/<hex id>: also its path in packs made
 * since home format 3 (FORMAT §7, §11.1). */
void store_chunk_relpath(const uint8_t id[CN_ID_BYTES], char out[80]);
/* chunks/<h0h1>/<h2h3>/<hex id>: the path of an object in packs made before. */
void store_chunk_relpath_v2(const uint8_t id[CN_ID_BYTES], char out[80]);
/* Writes data to dirfd/name via a temporary file, fsync, rename, fsync of the directory. */
int store_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* The piece layer of a stored object (malloc'd, cn_piece_count(size) hashes; NULL with 0
 * when it has none): kept from when it was stored, else hashed from its file, which must
 * hash to id. */
int store_piece_layer(cn_store *s, const uint8_t id[CN_ID_BYTES], uint64_t size, uint8_t **layer);
/* packs/<ih hex>.torrent, relative to the home: where a pack's torrent is kept. */
void store_pack_torrent_name(const uint8_t ih[CN_ID_BYTES], char out[96]);
/* Makes the pack holding every object of the given packs, from this node's torrents and
 * store (piece layers from the torrents or the store's cache, else hashed from the
 * objects), and writes its torrent with piece layers: how a merge is
 * made, by the writer or by a host that holds every merged pack. Fails (without writing
 * anything) when a torrent or an object is missing here. */
int store_pack_rebuild(cn_store *s, const uint8_t (*packs)[CN_ID_BYTES], size_t n, uint8_t ih[CN_ID_BYTES]);
/* Writes packs/<ih>.torrent again with every object's piece layer, when it lacks some (a
 * torrent fetched by info-hash has none): kept from adoption, else hashed from the object,
 * which the store must hold. Without layers libtorrent 2.0.8 verifies a piece only once
 * peers send its hashes, and blamed good peers for bad data in `check --repair`. */
int store_pack_add_layers(cn_store *s, const uint8_t ih[CN_ID_BYTES]);
/* Links downloaded files (absolute paths) into the store as chunks ids after checking that
 * their bytes hash to them, at the cost of two syncfs calls in all; a chunk already there
 * counts as done. keep_layers: the objects' piece layers are kept for a pack that lacks
 * them (store_pack_add_layers). */
int store_adopt_files(cn_store *s, const char *const *paths, const uint8_t (*ids)[CN_ID_BYTES], size_t n,
                      int keep_layers);

#endif
