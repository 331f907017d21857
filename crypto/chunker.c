/*
 * Content-defined chunking: FastCDC with normalized chunking (level 2). The gear table is
 * keyed per namespace (ChaCha20 keystream from the convergence secret) so chunk sizes do
 * not fingerprint a file across namespaces; within one namespace boundaries are stable,
 * so an edit re-chunks only near the change.
 */
#include "crypto/crypto.h"
#include <sodium.h>
#include <string.h>

/* Gear hash bit i depends on the last i+1 bytes: test the high, well-mixed bits. */
#define MASK_SMALL 0xfffff00000000000ull /* 20 bits: harder to cut before the average */
#define MASK_LARGE 0xffff000000000000ull /* 16 bits: easier to cut after it */

void cn_chunker_init(cn_chunker *c, const uint8_t convergence[CN_KEY_BYTES])
{
  uint8_t gear_key[crypto_stream_chacha20_KEYBYTES];
  static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
  crypto_kdf_derive_from_key(gear_key, sizeof gear_key, 3, "cairngea", convergence);
  uint8_t stream[256 * 8];
  crypto_stream_chacha20(stream, sizeof stream, nonce, gear_key);
  for (int i = 0; i < 256; i++) {
    uint64_t v = 0;
    for (int j = 0; j < 8; j++)
      v |= (uint64_t)stream[8 * i + j] << (8 * j);
    c->gear[i] = v;
  }
  sodium_memzero(gear_key, sizeof gear_key);
}

size_t cn_chunker_cut(const cn_chunker *c, const uint8_t *buf, size_t len, int at_end)
{
  if (len <= CN_CHUNK_MIN)
    return at_end ? len : 0;
  size_t end = len < CN_CHUNK_MAX ? len : CN_CHUNK_MAX;
  size_t normal = end < CN_CHUNK_AVG ? end : CN_CHUNK_AVG;
  uint64_t fp = 0;
  size_t i = CN_CHUNK_MIN - 64; /* warm the hash over the 64 bytes that decide the first test */
  for (; i < CN_CHUNK_MIN; i++)
    fp = (fp << 1) + c->gear[buf[i]];
  for (; i < normal; i++) {
    fp = (fp << 1) + c->gear[buf[i]];
    if (!(fp & MASK_SMALL))
      return i + 1;
  }
  for (; i < end; i++) {
    fp = (fp << 1) + c->gear[buf[i]];
    if (!(fp & MASK_LARGE))
      return i + 1;
  }
  if (end == CN_CHUNK_MAX || at_end)
    return end;
  return 0;
}
