/* Test helper: makes a node publish a result record for a job with an output it did not
 * compute: a record signed by the node's own key (so it checks), naming a made-up output.
 * Usage: forge_result HOME JOB_ID_HEX. The node serving HOME publishes it at once. */
#include "compute/internal.h"
#include "dht/dht.h"
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
  uint8_t job_id[32], output[32], seed[32], rec[RECORD_LEN], salt[RECORD_SALT_LEN];
  cn_store *s;
  if (argc != 3 || cn_unhex(argv[2], job_id, 32) < 0) {
    fprintf(stderr, "usage: forge_result HOME JOB_ID_HEX\n");
    return 2;
  }
  if (cn_crypto_init() < 0 || cn_store_open(argv[1], &s) < 0 || cn_store_node_seed(s, seed) < 0) {
    fprintf(stderr, "forge_result: %s\n", cn_err());
    return 1;
  }
  cn_sha256("forged", 6, output);
  compute_record_make(seed, job_id, output, rec);
  compute_record_salt(job_id, salt);
  if (cn_store_item_add(s, salt, sizeof salt, rec, sizeof rec) < 0 || cn_node_ask(argv[1], "publish", NULL, NULL) < 0) {
    fprintf(stderr, "forge_result: %s\n", cn_err());
    return 1;
  }
  char hex[65];
  cn_hex(output, 32, hex);
  printf("%s\n", hex);
  cn_store_close(s);
  return 0;
}
