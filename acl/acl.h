/*
 * acl/ — which namespaces this node holds and with what access. The keyring
 * ($CAIRN_HOME/keyring, mode 0600) is a text file of "<cap string> <petname|->" lines;
 * adding a cap for a namespace already held keeps the higher access. Grants to other
 * people's keys and revocation (DESIGN.md §9) will live here too.
 */
#ifndef CAIRN_ACL_H
#define CAIRN_ACL_H

#include "dht/dht.h"

#define CN_PETNAME_MAX 63

typedef struct {
  char petname[CN_PETNAME_MAX + 1]; /* "" when none */
  cn_nskey key;
} cn_keyring_entry;

typedef struct {
  char *path;
  int lock_fd; /* held while loaded for update */
  cn_keyring_entry *entries;
  size_t n;
} cn_keyring;

/* for_update holds an exclusive lock until cn_keyring_free, so updates do not race. */
int cn_keyring_load(const char *home, int for_update, cn_keyring *kr);
int cn_keyring_save(const cn_keyring *kr);
void cn_keyring_free(cn_keyring *kr);
/* -EINVAL for a petname that is not [a-z0-9._-]{1,63} or could be mistaken for a cap/ID. */
int cn_petname_check(const char *name);
/* Adds or upgrades; a non-empty petname is set (-EEXIST if another namespace has it). */
int cn_keyring_add(cn_keyring *kr, const cn_nskey *key, const char *petname);
/* Finds by petname, namespace ID, or cap string (a cap not in the keyring is returned as
 * given, with *held = 0). -ENOENT / -EINVAL with a reason. */
int cn_keyring_resolve(const cn_keyring *kr, const char *name, cn_nskey *out, int *held);

#endif
