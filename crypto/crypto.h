/*
 * crypto/ — cairn's cryptographic layer: pure functions, no I/O.
 *
 * Namespace keys (Tahoe-LAFS style: write ⊃ read ⊃ verify), convergent chunk sealing
 * (lz4 + XChaCha20-Poly1305), chunk IDs (BitTorrent v2 merkle roots), ed25519 signatures
 * over BEP 44 roots, capability strings, the content-defined chunker, and the small byte
 * encodings every format in docs/FORMAT.md is built from. Every other layer sits on this
 * one; it calls nothing above it.
 *
 * Errors: functions return 0 or a negative errno; the reason is kept in a thread-local
 * message readable with cn_err() so callers can print one clear line.
 */
#ifndef CAIRN_CRYPTO_H
#define CAIRN_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CN_SEED_BYTES 32
#define CN_PK_BYTES 32
#define CN_KEY_BYTES 32
#define CN_ID_BYTES 32
#define CN_SIG_BYTES 64
#define CN_HEX_ID_LEN 64

/* ---- errors ---- */
/* Returns -err after recording a printf-style reason for cn_err(). */
int cn_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *cn_err(void);

/* Must be called once before anything else (libsodium and libcrypto setup). */
int cn_crypto_init(void);

/* ---- hashing ---- */
void cn_sha256(const void *data, size_t len, uint8_t out[32]);
/* Incremental SHA-256 for data that does not sit in memory at once; end frees it. */
typedef struct cn_sha256_stream cn_sha256_stream;
cn_sha256_stream *cn_sha256_begin(void);
void cn_sha256_add(cn_sha256_stream *s, const void *data, size_t len);
void cn_sha256_end(cn_sha256_stream *s, uint8_t out[32]);
/* BitTorrent v2 (BEP 52) merkle root over 16 KiB leaves; len must be > 0. */
void cn_chunk_id(const void *data, size_t len, uint8_t id[CN_ID_BYTES]);
/* Packs use 32 KiB pieces. An object longer than one piece has a piece layer (the tree's
 * level above the leaves) of cn_piece_count(len) hashes, which a pack's torrent carries;
 * a shorter one has none (its ID stands for its only piece). */
#define CN_PIECE_BYTES 32768u
#define cn_piece_count(len) ((len) > CN_PIECE_BYTES ? ((len) + CN_PIECE_BYTES - 1) / CN_PIECE_BYTES : 0)
/* cn_chunk_id that also writes the piece layer into pieces (cn_piece_count(len) entries)
 * when pieces is not NULL, at no extra hashing. */
void cn_chunk_id_pieces(const void *data, size_t len, uint8_t id[CN_ID_BYTES], uint8_t (*pieces)[32]);

/* ---- namespace keys ---- */
enum cn_access { CN_ACCESS_VERIFY = 1, CN_ACCESS_READ = 2, CN_ACCESS_WRITE = 3 };

typedef struct {
  enum cn_access access;
  uint8_t seed[CN_SEED_BYTES];        /* write access only; zero otherwise */
  uint8_t pk[CN_PK_BYTES];            /* ed25519 public key: the namespace's name */
  uint8_t read_key[CN_KEY_BYTES];     /* read access and up; zero otherwise */
  uint8_t convergence[CN_KEY_BYTES];  /* derived from read_key; keys chunks and chunker */
} cn_nskey;

void cn_nskey_generate(cn_nskey *k);
void cn_nskey_from_seed(cn_nskey *k, const uint8_t seed[CN_SEED_BYTES]);
void cn_nskey_from_read(cn_nskey *k, const uint8_t pk[CN_PK_BYTES], const uint8_t read_key[CN_KEY_BYTES]);
void cn_nskey_from_verify(cn_nskey *k, const uint8_t pk[CN_PK_BYTES]);
/* Lowers access (never raises it): -EPERM when asked to go up. */
int cn_nskey_diminish(cn_nskey *k, enum cn_access to);
void cn_nskey_wipe(cn_nskey *k);
/* Namespace ID: lowercase base32 of the public key (52 chars + NUL). */
#define CN_NSID_LEN 52
void cn_nsid(const uint8_t pk[CN_PK_BYTES], char out[CN_NSID_LEN + 1]);

/* ---- sealing (chunks and tree nodes) ---- */
#define CN_SEAL_VERSION 1
size_t cn_seal_bound(size_t plain_len);
/* Compresses (when smaller) and encrypts under key = BLAKE2b(convergence, plain).
 * out must hold cn_seal_bound(len) bytes. */
void cn_seal(const uint8_t convergence[CN_KEY_BYTES], const void *plain, size_t len,
             uint8_t *out, size_t *out_len, uint8_t key_out[CN_KEY_BYTES]);
/* Verifies and decrypts; *plain is malloc'd. -EBADMSG on any tampering. */
int cn_open(const uint8_t key[CN_KEY_BYTES], const uint8_t *sealed, size_t len,
            uint8_t **plain, size_t *plain_len);

/* ---- small secret boxes (the tree root inside a commit) ---- */
#define CN_BOX_OVERHEAD 40 /* 24-byte random nonce + 16-byte tag */
void cn_box(const uint8_t key[CN_KEY_BYTES], const void *plain, size_t len, uint8_t *out);
int cn_unbox(const uint8_t key[CN_KEY_BYTES], const uint8_t *box, size_t len, uint8_t *plain);

/* ---- signatures ---- */
void cn_sign(const uint8_t seed[CN_SEED_BYTES], const void *msg, size_t len, uint8_t sig[CN_SIG_BYTES]);
int cn_verify(const uint8_t pk[CN_PK_BYTES], const void *msg, size_t len, const uint8_t sig[CN_SIG_BYTES]);
/* The bytes BEP 44 signs for an unsalted mutable item whose value v is a bencoded
 * string: "3:seqi<seq>e1:v<len>:<value>". Returns the length (out holds ≤ 1100 bytes). */
#define CN_ROOT_VALUE_MAX 990
size_t cn_root_signing_bytes(uint64_t seq, const uint8_t *value, size_t len, uint8_t *out);
/* The same for an item salted with salt (≤ 64 bytes): "4:salt<n>:<salt>" first. out
 * holds ≤ 1200 bytes for values up to CN_ITEM_VALUE_MAX. */
#define CN_ITEM_VALUE_MAX 990
size_t cn_item_signing_bytes(const uint8_t *salt, size_t salt_len, uint64_t seq, const uint8_t *value,
                             size_t len, uint8_t *out);

/* ---- capability strings ---- */
enum cn_cap_kind {
  CN_CAP_NS_WRITE, CN_CAP_NS_READ, CN_CAP_NS_VERIFY,
  CN_CAP_FILE_READ, CN_CAP_FILE_VERIFY, CN_CAP_DIR_READ, CN_CAP_DIR_VERIFY,
  CN_CAP_KIND_COUNT
};
typedef struct {
  enum cn_cap_kind kind;
  uint8_t a[32]; /* seed | public key | object chunk ID */
  uint8_t b[32]; /* read key | object key (for kinds that carry one) */
} cn_cap;
#define CN_CAP_STR_MAX 160
/* Parses a cap string; -EINVAL with a specific reason in cn_err() on any defect. */
int cn_cap_parse(const char *s, cn_cap *out);
void cn_cap_format(const cn_cap *cap, char out[CN_CAP_STR_MAX]);
/* write → read → verify (and file/dir read → verify); -EPERM for anything else. */
int cn_cap_diminish(const cn_cap *in, enum cn_cap_kind to, cn_cap *out);
const char *cn_cap_kind_name(enum cn_cap_kind kind);
/* Namespace caps ↔ keys. cn_cap_from_nskey uses the key's own access level. */
int cn_nskey_from_cap(cn_nskey *k, const cn_cap *cap);
void cn_cap_from_nskey(const cn_nskey *k, cn_cap *cap);

/* ---- content-defined chunker (FastCDC, normalized, keyed gear table) ---- */
#define CN_CHUNK_MIN (64u * 1024)
#define CN_CHUNK_AVG (256u * 1024)
#define CN_CHUNK_MAX (1024u * 1024)
typedef struct { uint64_t gear[256]; } cn_chunker;
void cn_chunker_init(cn_chunker *c, const uint8_t convergence[CN_KEY_BYTES]);
/* Length of the next chunk at the start of buf. When more data may follow (!at_end)
 * and len < CN_CHUNK_MAX, returns 0 if no cut was found: feed more bytes. */
size_t cn_chunker_cut(const cn_chunker *c, const uint8_t *buf, size_t len, int at_end);

/* ---- byte encodings ---- */
typedef struct { uint8_t *p; size_t len, cap; } cn_buf;  /* growable; aborts on OOM */
void cn_buf_put(cn_buf *b, const void *data, size_t len);
void cn_buf_u8(cn_buf *b, uint8_t v);
void cn_buf_varint(cn_buf *b, uint64_t v);
void cn_buf_svarint(cn_buf *b, int64_t v);
void cn_buf_bytes(cn_buf *b, const void *data, size_t len); /* varint length + bytes */
void cn_buf_free(cn_buf *b);

typedef struct { const uint8_t *p; size_t len, pos; int bad; } cn_reader; /* bad: sticky */
void cn_reader_init(cn_reader *r, const void *data, size_t len);
uint8_t cn_read_u8(cn_reader *r);
uint64_t cn_read_varint(cn_reader *r);
int64_t cn_read_svarint(cn_reader *r);
const uint8_t *cn_read_raw(cn_reader *r, size_t len);     /* NULL (and bad) if short */
const uint8_t *cn_read_bytes(cn_reader *r, size_t *len);  /* varint length + bytes */

void cn_hex(const uint8_t *in, size_t len, char *out);     /* out: 2*len+1 */
int cn_unhex(const char *in, uint8_t *out, size_t len);     /* exact length, 0 or -EINVAL */
size_t cn_base32(const uint8_t *in, size_t len, char *out); /* lowercase, unpadded; NUL added */
/* Decodes; returns bytes written or -EINVAL (bad character, non-zero trailing bits). */
long cn_unbase32(const char *in, size_t in_len, uint8_t *out, size_t out_cap);

#endif
