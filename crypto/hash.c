/*
 * SHA-256 via OpenSSL's libcrypto (SHA-NI where the CPU has it) and the BitTorrent v2
 * merkle root that names every chunk: BitTorrent then verifies our chunks natively.
 */
#include "crypto/crypto.h"
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define LEAF_BYTES 16384

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
  sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
  if (!sha256_md)
    abort();
}

int cn_crypto_init(void)
{
  if (sodium_init() < 0)
    return cn_fail(5, "libsodium failed to initialise");
  pthread_once(&sha256_once, sha256_fetch);
  return 0;
}

void cn_sha256(const void *data, size_t len, uint8_t out[32])
{
  pthread_once(&sha256_once, sha256_fetch);
  unsigned int n = 32;
  if (!EVP_Digest(data, len, out, &n, sha256_md, NULL))
    abort();
}

cn_sha256_stream *cn_sha256_begin(void)
{
  pthread_once(&sha256_once, sha256_fetch);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, sha256_md, NULL))
    abort();
  return (cn_sha256_stream *)ctx;
}

void cn_sha256_add(cn_sha256_stream *s, const void *data, size_t len)
{
  if (!EVP_DigestUpdate((EVP_MD_CTX *)s, data, len))
    abort();
}

void cn_sha256_end(cn_sha256_stream *s, uint8_t out[32])
{
  unsigned int n = 32;
  if (!EVP_DigestFinal_ex((EVP_MD_CTX *)s, out, &n))
    abort();
  EVP_MD_CTX_free((EVP_MD_CTX *)s);
}

/* Hashes pairs in place, layer by layer, until one node is left; the first layer above
 * the leaves is copied out to pieces when asked for. */
static void merkle_reduce(uint8_t *nodes, size_t count, uint8_t root[32], uint8_t (*pieces)[32],
                          size_t n_pieces)
{
  while (count > 1) {
    for (size_t i = 0; i < count / 2; i++)
      cn_sha256(nodes + 64 * i, 64, nodes + 32 * i);
    count /= 2;
    if (pieces) {
      memcpy(pieces, nodes, n_pieces * 32);
      pieces = NULL;
    }
  }
  memcpy(root, nodes, 32);
}

void cn_chunk_id_pieces(const void *data, size_t len, uint8_t id[CN_ID_BYTES], uint8_t (*pieces)[32])
{
  const uint8_t *p = data;
  size_t leaves = (len + LEAF_BYTES - 1) / LEAF_BYTES;
  if (leaves == 0)
    leaves = 1;
  size_t padded = 1;
  while (padded < leaves)
    padded <<= 1;
  /* BEP 52: leaf hashes past the end of the data are all-zero, not hashes of zeros. */
  uint8_t stack_nodes[64 * 32];
  uint8_t *nodes = padded <= 64 ? stack_nodes : calloc(padded, 32);
  if (!nodes)
    abort();
  memset(nodes, 0, padded * 32);
  for (size_t i = 0; i < leaves; i++) {
    size_t off = i * LEAF_BYTES;
    size_t n = len - off < LEAF_BYTES ? len - off : LEAF_BYTES;
    cn_sha256(p + off, n, nodes + 32 * i);
  }
  size_t n_pieces = cn_piece_count(len);
  merkle_reduce(nodes, padded, id, n_pieces ? pieces : NULL, n_pieces);
  if (nodes != stack_nodes)
    free(nodes);
}

void cn_chunk_id(const void *data, size_t len, uint8_t id[CN_ID_BYTES])
{
  cn_chunk_id_pieces(data, len, id, NULL);
}
