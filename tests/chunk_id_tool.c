/*
 * chunk_id_tool: prints the cn_chunk_id (BEP 52 merkle root) of stdin as lowercase hex.
 * bep52_check.py feeds it data and compares with an independent Python implementation.
 */
#include "crypto/crypto.h"
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
  if (cn_crypto_init() != 0) {
    fprintf(stderr, "chunk_id_tool: %s\n", cn_err());
    return 1;
  }
  cn_buf in = {0};
  uint8_t block[65536];
  size_t n;
  while ((n = fread(block, 1, sizeof block, stdin)) > 0)
    cn_buf_put(&in, block, n);
  if (ferror(stdin)) {
    perror("chunk_id_tool: reading stdin");
    cn_buf_free(&in);
    return 1;
  }
  /* cn_chunk_id requires len > 0: an empty chunk has no BEP 52 root. */
  if (in.len == 0) {
    fprintf(stderr, "chunk_id_tool: empty input has no chunk ID\n");
    return 2;
  }
  uint8_t id[CN_ID_BYTES];
  char hex[CN_HEX_ID_LEN + 1];
  cn_chunk_id(in.p, in.len, id);
  cn_hex(id, sizeof id, hex);
  cn_buf_free(&in);
  if (printf("%s\n", hex) < 0 || fflush(stdout) != 0)
    return 1;
  return 0;
}
