/* ed25519 signatures (libsodium), byte-compatible with libtorrent's BEP 44 items. */
#include "crypto/crypto.h"
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

void cn_sign(const uint8_t seed[CN_SEED_BYTES], const void *msg, size_t len, uint8_t sig[CN_SIG_BYTES])
{
  uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(pk, sk, seed);
  crypto_sign_detached(sig, NULL, msg, len, sk);
  sodium_memzero(sk, sizeof sk);
}

int cn_verify(const uint8_t pk[CN_PK_BYTES], const void *msg, size_t len, const uint8_t sig[CN_SIG_BYTES])
{
  if (crypto_sign_verify_detached(sig, msg, len, pk) != 0)
    return cn_fail(EBADMSG, "signature does not verify under the namespace key");
  return 0;
}

size_t cn_item_signing_bytes(const uint8_t *salt, size_t salt_len, uint64_t seq, const uint8_t *value,
                             size_t len, uint8_t *out)
{
  int n = snprintf((char *)out, 16, "4:salt%zu:", salt_len);
  memcpy(out + n, salt, salt_len);
  return (size_t)n + salt_len + cn_root_signing_bytes(seq, value, len, out + n + salt_len);
}

size_t cn_root_signing_bytes(uint64_t seq, const uint8_t *value, size_t len, uint8_t *out)
{
  int n = snprintf((char *)out, 64, "3:seqi%" PRIu64 "e1:v%zu:", seq, len);
  memcpy(out + n, value, len);
  return (size_t)n + len;
}
