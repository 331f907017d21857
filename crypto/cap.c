/*
 * Capability strings: "cairn-" KIND VERSION "-" base32(payload || checksum).
 * The checksum (4 bytes of BLAKE2b over the prefix and payload) turns a typo into a
 * clear error instead of a lookup of some other namespace. One path component, lowercase.
 */
#include "crypto/crypto.h"
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP_VERSION 1
#define CHECKSUM_BYTES 4

static const struct {
  const char *name;
  size_t payload; /* 32 or 64 bytes */
} kinds[CN_CAP_KIND_COUNT] = {
  [CN_CAP_NS_WRITE] = {"nsw", 32},  [CN_CAP_NS_READ] = {"nsr", 64},
  [CN_CAP_NS_VERIFY] = {"nsv", 32}, [CN_CAP_FILE_READ] = {"fr", 64},
  [CN_CAP_FILE_VERIFY] = {"fv", 32}, [CN_CAP_DIR_READ] = {"dr", 64},
  [CN_CAP_DIR_VERIFY] = {"dv", 32},
};

const char *cn_cap_kind_name(enum cn_cap_kind kind)
{
  return kind < CN_CAP_KIND_COUNT ? kinds[kind].name : "?";
}

static void checksum(const char *prefix, size_t prefix_len, const uint8_t *payload, size_t len,
                     uint8_t out[CHECKSUM_BYTES])
{
  crypto_generichash_state st;
  uint8_t full[32];
  crypto_generichash_init(&st, NULL, 0, sizeof full);
  crypto_generichash_update(&st, (const uint8_t *)prefix, prefix_len);
  crypto_generichash_update(&st, payload, len);
  crypto_generichash_final(&st, full, sizeof full);
  memcpy(out, full, CHECKSUM_BYTES);
}

void cn_cap_format(const cn_cap *cap, char out[CN_CAP_STR_MAX])
{
  uint8_t payload[64 + CHECKSUM_BYTES];
  size_t len = kinds[cap->kind].payload;
  memcpy(payload, cap->a, 32);
  if (len == 64)
    memcpy(payload + 32, cap->b, 32);
  int n = snprintf(out, CN_CAP_STR_MAX, "cairn-%s%d-", kinds[cap->kind].name, CAP_VERSION);
  checksum(out, (size_t)n, payload, len, payload + len);
  cn_base32(payload, len + CHECKSUM_BYTES, out + n);
  sodium_memzero(payload, sizeof payload);
}

int cn_cap_parse(const char *s, cn_cap *out)
{
  memset(out, 0, sizeof *out);
  for (size_t i = 0; s[i]; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 'A' && c <= 'Z')
      return cn_fail(EINVAL, "cap strings are lowercase: '%c' at position %zu", c, i);
    if (c <= ' ' || c >= 0x7f)
      return cn_fail(EINVAL, "cap string contains a space or control character at position %zu", i);
  }
  if (strncmp(s, "cairn-", 6) != 0)
    return cn_fail(EINVAL, "not a cap string: it must start with 'cairn-'");
  const char *p = s + 6;
  size_t kind_len = strspn(p, "abcdefghijklmnopqrstuvwxyz");
  int kind = -1;
  for (int k = 0; k < CN_CAP_KIND_COUNT; k++)
    if (strlen(kinds[k].name) == kind_len && strncmp(p, kinds[k].name, kind_len) == 0)
      kind = k;
  if (kind < 0)
    return cn_fail(EINVAL, "unknown cap kind '%.*s' (known: nsw nsr nsv fr fv dr dv)", (int)kind_len, p);
  p += kind_len;
  size_t ver_len = strspn(p, "0123456789");
  if (ver_len == 0)
    return cn_fail(EINVAL, "cap string has no format version after kind '%s'", kinds[kind].name);
  /* exactly one spelling per version, so one cap has one string */
  if (ver_len != 1 || *p - '0' != CAP_VERSION)
    return cn_fail(EINVAL, "unsupported cap format version %.*s (this cairn reads version %d)",
                   (int)ver_len, p, CAP_VERSION);
  p += ver_len;
  if (*p != '-')
    return cn_fail(EINVAL, "cap string lacks '-' between its version and its body");
  p++;
  size_t prefix_len = (size_t)(p - s);
  size_t want = kinds[kind].payload + CHECKSUM_BYTES;
  uint8_t payload[64 + CHECKSUM_BYTES + 8];
  long got = cn_unbase32(p, strlen(p), payload, sizeof payload);
  if (got < 0) {
    /* cn_unbase32 left a reason with the offending offset; copy it before reformatting */
    char why[256];
    sodium_memzero(payload, sizeof payload);
    snprintf(why, sizeof why, "%s", cn_err());
    return cn_fail(EINVAL, "cap body is not valid base32: %s", why);
  }
  if ((size_t)got != want) {
    sodium_memzero(payload, sizeof payload);
    return cn_fail(EINVAL, "cap body has %ld bytes; a '%s' cap has %zu (truncated or extra characters?)",
                   got, kinds[kind].name, want);
  }
  uint8_t sum[CHECKSUM_BYTES];
  checksum(s, prefix_len, payload, kinds[kind].payload, sum);
  if (sodium_memcmp(sum, payload + kinds[kind].payload, CHECKSUM_BYTES) != 0) {
    sodium_memzero(payload, sizeof payload);
    return cn_fail(EINVAL, "cap checksum mismatch: the string was mistyped or damaged");
  }
  out->kind = (enum cn_cap_kind)kind;
  memcpy(out->a, payload, 32);
  if (kinds[kind].payload == 64)
    memcpy(out->b, payload + 32, 32);
  sodium_memzero(payload, sizeof payload);
  return 0;
}

int cn_nskey_from_cap(cn_nskey *k, const cn_cap *cap)
{
  switch (cap->kind) {
  case CN_CAP_NS_WRITE: cn_nskey_from_seed(k, cap->a); return 0;
  case CN_CAP_NS_READ: cn_nskey_from_read(k, cap->a, cap->b); return 0;
  case CN_CAP_NS_VERIFY: cn_nskey_from_verify(k, cap->a); return 0;
  default: return cn_fail(EINVAL, "a '%s' cap names one file or directory, not a namespace",
                          kinds[cap->kind].name);
  }
}

void cn_cap_from_nskey(const cn_nskey *k, cn_cap *cap)
{
  memset(cap, 0, sizeof *cap);
  if (k->access == CN_ACCESS_WRITE) {
    cap->kind = CN_CAP_NS_WRITE;
    memcpy(cap->a, k->seed, 32);
  } else if (k->access == CN_ACCESS_READ) {
    cap->kind = CN_CAP_NS_READ;
    memcpy(cap->a, k->pk, 32);
    memcpy(cap->b, k->read_key, 32);
  } else {
    cap->kind = CN_CAP_NS_VERIFY;
    memcpy(cap->a, k->pk, 32);
  }
}

int cn_cap_diminish(const cn_cap *in, enum cn_cap_kind to, cn_cap *out)
{
  if (in->kind == to) {
    *out = *in;
    return 0;
  }
  switch (in->kind) {
  case CN_CAP_NS_WRITE:
  case CN_CAP_NS_READ:
    if (to == CN_CAP_NS_READ || to == CN_CAP_NS_VERIFY) {
      cn_nskey k;
      cn_nskey_from_cap(&k, in);
      cn_nskey_diminish(&k, to == CN_CAP_NS_READ ? CN_ACCESS_READ : CN_ACCESS_VERIFY);
      cn_cap_from_nskey(&k, out);
      cn_nskey_wipe(&k);
      return 0;
    }
    break;
  case CN_CAP_FILE_READ:
  case CN_CAP_DIR_READ:
    if (to == (in->kind == CN_CAP_FILE_READ ? CN_CAP_FILE_VERIFY : CN_CAP_DIR_VERIFY)) {
      memset(out, 0, sizeof *out);
      out->kind = to;
      memcpy(out->a, in->a, 32);
      return 0;
    }
    break;
  default:
    break;
  }
  return cn_fail(EPERM, "a '%s' cap cannot be turned into a '%s' cap", kinds[in->kind].name,
                 kinds[to].name);
}
