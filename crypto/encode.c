/* Byte encodings shared by every format: growable buffers, LEB128 varints, hex, base32. */
#include "crypto/crypto.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void buf_reserve(cn_buf *b, size_t extra)
{
  if (b->len + extra <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p)
    abort();
  b->p = p;
  b->cap = cap;
}

void cn_buf_put(cn_buf *b, const void *data, size_t len)
{
  buf_reserve(b, len);
  if (len)
    memcpy(b->p + b->len, data, len);
  b->len += len;
}

void cn_buf_u8(cn_buf *b, uint8_t v) { cn_buf_put(b, &v, 1); }

void cn_buf_varint(cn_buf *b, uint64_t v)
{
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n] = v & 0x7f;
    v >>= 7;
    if (v)
      tmp[n] |= 0x80;
    n++;
  } while (v);
  cn_buf_put(b, tmp, n);
}

void cn_buf_svarint(cn_buf *b, int64_t v)
{
  cn_buf_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void cn_buf_bytes(cn_buf *b, const void *data, size_t len)
{
  cn_buf_varint(b, len);
  cn_buf_put(b, data, len);
}

void cn_buf_free(cn_buf *b)
{
  free(b->p);
  memset(b, 0, sizeof *b);
}

void cn_reader_init(cn_reader *r, const void *data, size_t len)
{
  r->p = data;
  r->len = len;
  r->pos = 0;
  r->bad = 0;
}

const uint8_t *cn_read_raw(cn_reader *r, size_t len)
{
  if (r->bad || len > r->len - r->pos) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p + r->pos;
  r->pos += len;
  return p;
}

uint8_t cn_read_u8(cn_reader *r)
{
  const uint8_t *p = cn_read_raw(r, 1);
  return p ? *p : 0;
}

uint64_t cn_read_varint(cn_reader *r)
{
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const uint8_t *p = cn_read_raw(r, 1);
    if (!p)
      return 0;
    /* canonical only: no bits beyond 64, no trailing zero groups */
    if ((shift == 63 && (*p & 0x7e)) || (shift > 0 && *p == 0)) {
      r->bad = 1;
      return 0;
    }
    v |= (uint64_t)(*p & 0x7f) << shift;
    if (!(*p & 0x80))
      return v;
  }
  r->bad = 1;
  return 0;
}

int64_t cn_read_svarint(cn_reader *r)
{
  uint64_t u = cn_read_varint(r);
  return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

const uint8_t *cn_read_bytes(cn_reader *r, size_t *len)
{
  uint64_t n = cn_read_varint(r);
  if (r->bad || n > r->len - r->pos) {
    r->bad = 1;
    *len = 0;
    return NULL;
  }
  *len = (size_t)n;
  return cn_read_raw(r, (size_t)n);
}

void cn_hex(const uint8_t *in, size_t len, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * len] = 0;
}

static int hexval(char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int cn_unhex(const char *in, uint8_t *out, size_t len)
{
  if (strlen(in) != 2 * len)
    return cn_fail(EINVAL, "expected %zu hex digits, got %zu", 2 * len, strlen(in));
  for (size_t i = 0; i < len; i++) {
    int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return cn_fail(EINVAL, "invalid hex digit near position %zu", 2 * i);
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

size_t cn_base32(const uint8_t *in, size_t len, char *out)
{
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    acc = (acc << 8) | in[i];
    bits += 8;
    while (bits >= 5) {
      out[n++] = b32_alphabet[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0)
    out[n++] = b32_alphabet[(acc << (5 - bits)) & 31];
  out[n] = 0;
  return n;
}

long cn_unbase32(const char *in, size_t in_len, uint8_t *out, size_t out_cap)
{
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < in_len; i++) {
    const char *hit = in[i] ? strchr(b32_alphabet, in[i]) : NULL;
    if (!hit)
      return cn_fail(EINVAL, "invalid character '%c' at body position %zu", in[i], i);
    acc = (acc << 5) | (uint32_t)(hit - b32_alphabet);
    bits += 5;
    if (bits >= 8) {
      if (n == out_cap)
        return cn_fail(EINVAL, "too long (more than %zu bytes)", out_cap);
      out[n++] = (uint8_t)(acc >> (bits - 8));
      bits -= 8;
    }
  }
  if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
    return cn_fail(EINVAL, "truncated or malformed final character");
  return (long)n;
}
