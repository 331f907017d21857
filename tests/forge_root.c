/* Test helper: puts a BEP 44 root for a namespace into the DHT, signed by a key that is
 * not the namespace's, and pushes the same root straight to the node at HOST:PORT
 * (cn_lt_push_root). It also tells that node, as node tag FORGED_TAG, that it holds the
 * forged root in full (cn_lt_push_held) without ever connecting to it.
 * Usage: forge_root HOST:PORT VERIFY-CAP. Exit 0 once the put ran. */
#include "crypto/crypto.h"
#include "dht/dht.h"
#include "dht/lt.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define FORGED_TAG "0f0f0f0f0f0f"

static volatile int put_done;

static void on_event(const cn_lt_event *ev, void *ctx)
{
  (void)ctx;
  if (ev->kind == CN_LT_PUT_DONE) {
    printf("put finished: %d nodes stored it\n", ev->count);
    put_done = 1;
  }
}

int main(int argc, char **argv)
{
  cn_cap cap;
  cn_nskey key, wrong;
  char host[256], err[256];
  int port;
  if (argc != 3 || cn_parse_hostport(argv[1], host, sizeof host, &port) < 0 ||
      cn_cap_parse(argv[2], &cap) < 0 || cn_nskey_from_cap(&key, &cap) < 0) {
    fprintf(stderr, "usage: forge_root HOST:PORT NAMESPACE-CAP\n");
    return 2;
  }
  cn_nskey_generate(&wrong);
  cn_root_value v = {.n_packs = 1};
  memset(v.commit, 0x5a, sizeof v.commit);
  memset(v.packs[0], 0xa5, sizeof v.packs[0]);
  cn_root root = {.seq = 1000000};
  cn_root_value_build(&v, &root);
  uint8_t msg[1100];
  size_t mlen = cn_root_signing_bytes(root.seq, root.value, root.value_len, msg);
  cn_sign(wrong.seed, msg, mlen, root.sig);
  cn_lt *lt = cn_lt_start("127.0.0.1:0", "forgeforgefo", "forge", on_event, NULL, err, sizeof err);
  if (!lt) {
    fprintf(stderr, "forge_root: %s\n", err);
    return 1;
  }
  cn_lt_dht_add_node(lt, host, port);
  sleep(2); /* let the routing table fill */
  cn_lt_dht_put(lt, key.pk, NULL, 0, root.seq, root.sig, root.value, root.value_len);
  /* a push is one UDP query: repeat it, as nodes do, while the put runs */
  for (int i = 0; i < 100 && (!put_done || i < 20); i++) {
    if (i % 5 == 0) {
      cn_lt_push_root(lt, host, port, key.pk, root.seq, root.sig, root.value, root.value_len);
      cn_lt_push_held(lt, host, port, key.pk, root.seq, FORGED_TAG);
    }
    usleep(100000);
  }
  cn_lt_stop(lt);
  return 0;
}
