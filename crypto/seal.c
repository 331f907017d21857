/*
 * Convergent sealing. key = BLAKE2b-256 keyed by the namespace's convergence secret over
 * the plaintext, so equal plaintext in one namespace gives equal ciphertext (dedupe) while
 * other namespaces can't confirm a file. Because each key seals exactly one plaintext, a
 * fixed all-zero nonce is safe. lz4 is applied first and kept only when it shrinks data.
 * The codec byte is encrypted, but the sealed length still shows the compressed size.
 * Chunk IDs therefore depend on liblz4's output: a different lz4 build still reads every
 * object but may seal new ones differently (less dedupe, never wrong data).
 *
 * sealed = version(1) || AEAD_XChaCha20Poly1305(key, nonce=0, ad=version, inner)
 * inner  = codec(1) [0 = raw | 1 = lz4 followed by u32le raw length] || payload
 */
#include "crypto/crypto.h"
#include <errno.h>
#include <lz4.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_RAW 0
#define CODEC_LZ4 1
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define OBJECT_MAX (256u * 1024 * 1024) /* no chunk or tree node comes near this */

size_t cn_seal_bound(size_t plain_len)
{
  return 1 + 1 + 4 + plain_len + TAG_BYTES;
}

void cn_seal(const uint8_t convergence[CN_KEY_BYTES], const void *plain, size_t len,
             uint8_t *out, size_t *out_len, uint8_t key_out[CN_KEY_BYTES])
{
  static const uint8_t zero_nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  if (len > OBJECT_MAX)
    abort();
  crypto_generichash(key_out, CN_KEY_BYTES, plain, len, convergence, CN_KEY_BYTES);

  uint8_t *inner = out + 1;
  size_t inner_len;
  int packed = 0;
  if (len > 16)
    packed = LZ4_compress_default(plain, (char *)inner + 5, (int)len, (int)len - 5);
  if (packed > 0 && (size_t)packed + 4 < len) {
    inner[0] = CODEC_LZ4;
    inner[1] = len & 0xff; inner[2] = (len >> 8) & 0xff;
    inner[3] = (len >> 16) & 0xff; inner[4] = (len >> 24) & 0xff;
    inner_len = 5 + (size_t)packed;
  } else {
    inner[0] = CODEC_RAW;
    memcpy(inner + 1, plain, len);
    inner_len = 1 + len;
  }
  out[0] = CN_SEAL_VERSION;
  unsigned long long clen;
  crypto_aead_xchacha20poly1305_ietf_encrypt(inner, &clen, inner, inner_len, out, 1, NULL,
                                             zero_nonce, key_out);
  *out_len = 1 + (size_t)clen;
}

int cn_open(const uint8_t key[CN_KEY_BYTES], const uint8_t *sealed, size_t len,
            uint8_t **plain, size_t *plain_len)
{
  static const uint8_t zero_nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  *plain = NULL;
  if (len < 1 + TAG_BYTES + 1)
    return cn_fail(EBADMSG, "sealed object too short (%zu bytes)", len);
  if (sealed[0] != CN_SEAL_VERSION)
    return cn_fail(EBADMSG, "unknown sealed object version %u", sealed[0]);
  size_t inner_cap = len - 1 - TAG_BYTES;
  uint8_t *inner = malloc(inner_cap);
  if (!inner)
    return cn_fail(ENOMEM, "out of memory opening a %zu-byte object", len);
  unsigned long long inner_len;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(inner, &inner_len, NULL, sealed + 1, len - 1,
                                                 sealed, 1, zero_nonce, key) != 0) {
    free(inner);
    return cn_fail(EBADMSG, "sealed object failed authentication (tampered or wrong key)");
  }
  if (inner[0] == CODEC_RAW) {
    memmove(inner, inner + 1, inner_len - 1);
    *plain = inner;
    *plain_len = inner_len - 1;
    return 0;
  }
  if (inner[0] != CODEC_LZ4 || inner_len < 5) {
    uint8_t codec = inner[0];
    free(inner);
    return cn_fail(EBADMSG, "sealed object has unknown codec %u", codec);
  }
  size_t raw = (size_t)inner[1] | (size_t)inner[2] << 8 | (size_t)inner[3] << 16 | (size_t)inner[4] << 24;
  uint8_t *out = raw <= OBJECT_MAX ? malloc(raw ? raw : 1) : NULL;
  if (!out) {
    free(inner);
    return cn_fail(EBADMSG, "sealed object declares an impossible size %zu", raw);
  }
  int got = LZ4_decompress_safe((const char *)inner + 5, (char *)out, (int)inner_len - 5, (int)raw);
  free(inner);
  if (got < 0 || (size_t)got != raw) {
    free(out);
    return cn_fail(EBADMSG, "sealed object's lz4 payload is corrupt");
  }
  *plain = out;
  *plain_len = raw;
  return 0;
}

void cn_box(const uint8_t key[CN_KEY_BYTES], const void *plain, size_t len, uint8_t *out)
{
  randombytes_buf(out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + 24, NULL, plain, len, NULL, 0, NULL, out, key);
}

int cn_unbox(const uint8_t key[CN_KEY_BYTES], const uint8_t *box, size_t len, uint8_t *plain)
{
  if (len < CN_BOX_OVERHEAD ||
      crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, box + 24, len - 24, NULL, 0,
                                                 box, key) != 0)
    return cn_fail(EBADMSG, "boxed value failed authentication (wrong read key or tampered)");
  return 0;
}
