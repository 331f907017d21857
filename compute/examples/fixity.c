/*
 * fixity: a fixity manifest of a tree, the checksum list an archive keeps to prove later
 * that its files have not changed. SHA-256 of every regular file under the input root,
 * sorted by path in byte order, written to OUT/manifest.sha256 in the format of
 * sha256sum ("<64 hex>  <path>"), so `cd ROOT && sha256sum -c manifest.sha256` checks it.
 *
 *   fixity [ROOT [OUT]]        (a cairn job: fixity /in /out, the defaults)
 *
 * SHA-256 is written out here (FIPS 180-4) because a module brings its own code: it is
 * the benchmark of compute jobs, so the compression function is fully unrolled with the
 * message schedule in a rolling window of sixteen words: every index is a constant, so
 * the window lives in registers (wasm locals) rather than in memory, which matters most
 * in a module, where each memory access is checked.
 */
#define _POSIX_C_SOURCE 200809L
#include "example.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sha256 {
  uint32_t state[8];
  uint64_t length;          /* bytes hashed so far */
  unsigned char block[64];  /* a partial block waiting for more input */
  size_t fill;
};

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
/* Ch and Maj with one operation fewer than the textbook forms */
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

/* One round. Instead of shifting eight variables, the callers rotate the names. */
#define ROUND(a, b, c, d, e, f, g, h, i, wi)                  \
  do {                                                        \
    uint32_t t1 = (h) + BSIG1(e) + CH(e, f, g) + K[i] + (wi); \
    (d) += t1;                                                \
    (h) = t1 + BSIG0(a) + MAJ(a, b, c);                       \
  } while (0)

/* Word J of the window: loaded from the block (rounds 0-15), or the next schedule word
 * (16-63), W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], overwriting W[t-16]. */
#define LOADED(j) (w[j] = load_be32(p + 4 * (j)))
#define SCHEDULED(j) \
  (w[j] += SSIG1(w[((j) + 14) & 15]) + w[((j) + 9) & 15] + SSIG0(w[((j) + 1) & 15]))

#define SIXTEEN_ROUNDS(base, W)                        \
  do {                                                 \
    ROUND(a, b, c, d, e, f, g, h, (base) + 0, W(0));   \
    ROUND(h, a, b, c, d, e, f, g, (base) + 1, W(1));   \
    ROUND(g, h, a, b, c, d, e, f, (base) + 2, W(2));   \
    ROUND(f, g, h, a, b, c, d, e, (base) + 3, W(3));   \
    ROUND(e, f, g, h, a, b, c, d, (base) + 4, W(4));   \
    ROUND(d, e, f, g, h, a, b, c, (base) + 5, W(5));   \
    ROUND(c, d, e, f, g, h, a, b, (base) + 6, W(6));   \
    ROUND(b, c, d, e, f, g, h, a, (base) + 7, W(7));   \
    ROUND(a, b, c, d, e, f, g, h, (base) + 8, W(8));   \
    ROUND(h, a, b, c, d, e, f, g, (base) + 9, W(9));   \
    ROUND(g, h, a, b, c, d, e, f, (base) + 10, W(10)); \
    ROUND(f, g, h, a, b, c, d, e, (base) + 11, W(11)); \
    ROUND(e, f, g, h, a, b, c, d, (base) + 12, W(12)); \
    ROUND(d, e, f, g, h, a, b, c, (base) + 13, W(13)); \
    ROUND(c, d, e, f, g, h, a, b, (base) + 14, W(14)); \
    ROUND(b, c, d, e, f, g, h, a, (base) + 15, W(15)); \
  } while (0)

static uint32_t load_be32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void store_be32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Compress COUNT whole 64-byte blocks at P into STATE. */
static void sha256_blocks(uint32_t state[8], const unsigned char *p, size_t count)
{
  uint32_t a, b, c, d, e, f, g, h, w[16];
  for (; count > 0; count--, p += 64) {
    a = state[0], b = state[1], c = state[2], d = state[3];
    e = state[4], f = state[5], g = state[6], h = state[7];
    SIXTEEN_ROUNDS(0, LOADED);
    SIXTEEN_ROUNDS(16, SCHEDULED);
    SIXTEEN_ROUNDS(32, SCHEDULED);
    SIXTEEN_ROUNDS(48, SCHEDULED);
    state[0] += a, state[1] += b, state[2] += c, state[3] += d;
    state[4] += e, state[5] += f, state[6] += g, state[7] += h;
  }
}

static void sha256_init(struct sha256 *s)
{
  static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->state, initial, sizeof initial);
  s->length = 0;
  s->fill = 0;
}

static void sha256_update(struct sha256 *s, const unsigned char *p, size_t n)
{
  s->length += n;
  if (s->fill) { /* top up the partial block first */
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    memcpy(s->block + s->fill, p, take);
    s->fill += take, p += take, n -= take;
    if (s->fill < 64)
      return;
    sha256_blocks(s->state, s->block, 1);
    s->fill = 0;
  }
  sha256_blocks(s->state, p, n / 64); /* straight from the caller's buffer */
  memcpy(s->block, p + n / 64 * 64, n % 64);
  s->fill = n % 64;
}

static void sha256_final(struct sha256 *s, unsigned char digest[32])
{
  /* pad: 0x80, zeros to 56 mod 64, then the length in bits, big-endian */
  uint64_t bits = s->length * 8;
  s->block[s->fill++] = 0x80;
  if (s->fill > 56) {
    memset(s->block + s->fill, 0, 64 - s->fill);
    sha256_blocks(s->state, s->block, 1);
    s->fill = 0;
  }
  memset(s->block + s->fill, 0, 56 - s->fill);
  store_be32(s->block + 56, (uint32_t)(bits >> 32));
  store_be32(s->block + 60, (uint32_t)bits);
  sha256_blocks(s->state, s->block, 1);
  for (int j = 0; j < 8; j++)
    store_be32(digest + 4 * j, s->state[j]);
}

/* The buffer is static: a WASI module's stack is small, and one buffer serves every file. */
static unsigned char buffer[EXAMPLE_READ_BUFFER];

static void hash_file(const char *path, unsigned char digest[32])
{
  struct sha256 s;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    example_die("%s: cannot open: %s", path, strerror(errno));
  sha256_init(&s);
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      example_die("%s: cannot read: %s", path, strerror(errno));
    }
    if (n == 0)
      break;
    sha256_update(&s, buffer, (size_t)n);
  }
  close(fd);
  sha256_final(&s, digest);
}

/* A manifest line as sha256sum writes it: a name holding a backslash or a newline is
 * escaped, and the line then starts with a backslash. */
static void write_line(FILE *out, const unsigned char digest[32], const char *path)
{
  static const char hex[] = "0123456789abcdef";
  int escape = strpbrk(path, "\\\n") != NULL;
  if (escape)
    fputc('\\', out);
  for (int j = 0; j < 32; j++) {
    fputc(hex[digest[j] >> 4], out);
    fputc(hex[digest[j] & 15], out);
  }
  fputs("  ", out);
  for (const char *c = path; *c; c++) {
    if (escape && *c == '\\')
      fputs("\\\\", out);
    else if (escape && *c == '\n')
      fputs("\\n", out);
    else
      fputc(*c, out);
  }
  fputc('\n', out);
}

int main(int argc, char **argv)
{
  const char *in, *out;
  struct example_files files;
  example_args(argc, argv, &in, &out);
  example_list(in, &files);
  FILE *manifest = example_create(out, "manifest.sha256");
  for (size_t i = 0; i < files.count; i++) {
    unsigned char digest[32];
    char *path = example_file_path(&files, i);
    hash_file(path, digest);
    write_line(manifest, digest, files.paths[i]);
    free(path);
  }
  example_close(manifest, out, "manifest.sha256");
  fprintf(stderr, "%s: %zu files\n", example_prog, files.count);
  example_files_free(&files);
  return 0;
}
