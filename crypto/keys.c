/*
 * Namespace keys. write-cap = ed25519 seed; read-cap = public key + read key, where the
 * read key is a one-way KDF of the seed; verify-cap = public key. The convergence secret
 * (which keys chunk encryption and the chunker) is derived from the read key, so readers
 * and writers produce identical chunks and verifiers learn nothing.
 */
#include "crypto/crypto.h"
#include <errno.h>
#include <sodium.h>
#include <string.h>

#define KDF_READ_ID 1
#define KDF_CONVERGENCE_ID 2

static void derive_convergence(cn_nskey *k)
{
  crypto_kdf_derive_from_key(k->convergence, CN_KEY_BYTES, KDF_CONVERGENCE_ID, "cairncvg", k->read_key);
}

void cn_nskey_from_seed(cn_nskey *k, const uint8_t seed[CN_SEED_BYTES])
{
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
  memset(k, 0, sizeof *k);
  k->access = CN_ACCESS_WRITE;
  memcpy(k->seed, seed, CN_SEED_BYTES);
  crypto_sign_seed_keypair(k->pk, sk, seed);
  sodium_memzero(sk, sizeof sk);
  crypto_kdf_derive_from_key(k->read_key, CN_KEY_BYTES, KDF_READ_ID, "cairnrdk", seed);
  derive_convergence(k);
}

void cn_nskey_generate(cn_nskey *k)
{
  uint8_t seed[CN_SEED_BYTES];
  randombytes_buf(seed, sizeof seed);
  cn_nskey_from_seed(k, seed);
  sodium_memzero(seed, sizeof seed);
}

void cn_nskey_from_read(cn_nskey *k, const uint8_t pk[CN_PK_BYTES], const uint8_t read_key[CN_KEY_BYTES])
{
  memset(k, 0, sizeof *k);
  k->access = CN_ACCESS_READ;
  memcpy(k->pk, pk, CN_PK_BYTES);
  memcpy(k->read_key, read_key, CN_KEY_BYTES);
  derive_convergence(k);
}

void cn_nskey_from_verify(cn_nskey *k, const uint8_t pk[CN_PK_BYTES])
{
  memset(k, 0, sizeof *k);
  k->access = CN_ACCESS_VERIFY;
  memcpy(k->pk, pk, CN_PK_BYTES);
}

int cn_nskey_diminish(cn_nskey *k, enum cn_access to)
{
  if (to > k->access)
    return cn_fail(EPERM, "cannot raise a namespace key's access");
  if (to < CN_ACCESS_WRITE)
    sodium_memzero(k->seed, sizeof k->seed);
  if (to < CN_ACCESS_READ) {
    sodium_memzero(k->read_key, sizeof k->read_key);
    sodium_memzero(k->convergence, sizeof k->convergence);
  }
  k->access = to;
  return 0;
}

void cn_nskey_wipe(cn_nskey *k)
{
  sodium_memzero(k, sizeof *k);
}

void cn_nsid(const uint8_t pk[CN_PK_BYTES], char out[CN_NSID_LEN + 1])
{
  cn_base32(pk, CN_PK_BYTES, out);
}
