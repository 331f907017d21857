/*
 * Result records (docs/FORMAT.md §15.5): "this node ran job J and got output tree O",
 * signed by the node's key and published as a BEP 44 item under that key, salted with
 * the job ID, so any node that knows the key can fetch and check it. Quorum counts the
 * distinct nodes whose records name the same output.
 */
#include "compute/internal.h"
#include "compute/job.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define RECORD_MAGIC "cairn-result 1"
#define SALT_PREFIX "cairn-job:"

void compute_record_salt(const uint8_t job_id[32], uint8_t salt[RECORD_SALT_LEN])
{
  memcpy(salt, SALT_PREFIX, strlen(SALT_PREFIX));
  memcpy(salt + strlen(SALT_PREFIX), job_id, 32);
}

void compute_record_make(const uint8_t node_seed[32], const uint8_t job_id[32], const uint8_t output_id[32],
                         uint8_t out[RECORD_LEN])
{
  cn_nskey k;
  cn_nskey_from_seed(&k, node_seed);
  size_t n = 0;
  memcpy(out, RECORD_MAGIC, sizeof RECORD_MAGIC), n = sizeof RECORD_MAGIC;
  memcpy(out + n, job_id, 32), n += 32;
  memcpy(out + n, output_id, 32), n += 32;
  memcpy(out + n, k.pk, 32), n += 32;
  cn_sign(node_seed, out, n, out + n);
  cn_nskey_wipe(&k);
}

int compute_record_check(const uint8_t *v, size_t len, const uint8_t signer[32], const uint8_t job_id[32],
                         uint8_t output_id[32])
{
  size_t body = sizeof RECORD_MAGIC + 96;
  if (len != RECORD_LEN || memcmp(v, RECORD_MAGIC, sizeof RECORD_MAGIC))
    return cn_fail(EINVAL, "not a version 1 result record");
  const uint8_t *job = v + sizeof RECORD_MAGIC, *out = job + 32, *pk = out + 32;
  if (memcmp(pk, signer, 32) || memcmp(job, job_id, 32))
    return cn_fail(EINVAL, "the record names another node or job");
  if (cn_verify(pk, v, body, v + body) < 0)
    return cn_fail(EBADMSG, "the record's signature does not verify");
  memcpy(output_id, out, 32);
  return 0;
}

/* Publishes this node's record for a result it computed (or checked). */
int compute_record_publish(cn_store *s, cn_node *node, const uint8_t job_id[32], const uint8_t output_id[32])
{
  uint8_t seed[32], rec[RECORD_LEN], salt[RECORD_SALT_LEN];
  int rc = cn_store_node_seed(s, seed);
  if (rc < 0)
    return rc;
  compute_record_make(seed, job_id, output_id, rec);
  memset(seed, 0, sizeof seed);
  compute_record_salt(job_id, salt);
  if ((rc = cn_store_item_add(s, salt, sizeof salt, rec, sizeof rec)) < 0)
    return rc;
  if (node)
    cn_node_publish_items(node);
  return 0;
}

int compute_quorum(cn_node *node, cn_store *s, const uint8_t nspk[32], const uint8_t job_id[32],
                   const uint8_t output_id[32], unsigned quorum, char *report, size_t cap)
{
  uint8_t seed[32];
  cn_nskey self;
  int rc = cn_store_node_seed(s, seed);
  if (rc < 0)
    return rc;
  cn_nskey_from_seed(&self, seed);
  memset(seed, 0, sizeof seed);
  uint8_t keys[64][32];
  size_t n_keys = node ? cn_node_peer_keys(node, nspk, keys, 64) : 0;
  unsigned agree = 1; /* this node computed it */
  char lines[4096] = "";
  size_t used = 0;
  char hex[65];
  cn_hex(self.pk, 32, hex);
  used += (size_t)snprintf(lines + used, sizeof lines - used, "node %s agrees (this node)\n", hex);
  uint8_t salt[RECORD_SALT_LEN];
  compute_record_salt(job_id, salt);
  for (size_t i = 0; i < n_keys; i++) {
    if (!memcmp(keys[i], self.pk, 32))
      continue;
    uint8_t v[CN_ITEM_VALUE_MAX], theirs[32];
    size_t len;
    if (cn_node_item_get(node, keys[i], salt, sizeof salt, 2000, v, &len) < 0)
      continue; /* has not run it, or not published yet */
    cn_hex(keys[i], 32, hex);
    if (compute_record_check(v, len, keys[i], job_id, theirs) < 0) {
      if (used < sizeof lines)
        used += (size_t)snprintf(lines + used, sizeof lines - used, "node %s sent a bad record: %s\n", hex, cn_err());
      continue;
    }
    if (!memcmp(theirs, output_id, 32)) {
      agree++;
      if (used < sizeof lines)
        used += (size_t)snprintf(lines + used, sizeof lines - used, "node %s agrees\n", hex);
    } else {
      char other[65];
      cn_hex(theirs, 32, other);
      if (used < sizeof lines)
        used += (size_t)snprintf(lines + used, sizeof lines - used, "node %s DISAGREES: output %s\n", hex, other);
    }
  }
  cn_nskey_wipe(&self);
  snprintf(report, cap, "quorum %u: %s (%u of %u nodes agree)\n%s", quorum,
           agree >= quorum ? "verified" : "not verified", agree, quorum, lines);
  return agree >= quorum;
}
