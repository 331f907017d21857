/* The keyring: caps held by this node, with petnames. Saved atomically, mode 0600. */
#include "acl/acl.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

int cn_petname_check(const char *name)
{
  size_t n = strlen(name);
  if (n == 0 || n > CN_PETNAME_MAX)
    return cn_fail(EINVAL, "petname must be 1 to %d characters", CN_PETNAME_MAX);
  if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != n)
    return cn_fail(EINVAL, "petname '%s' may use only a-z, 0-9, '.', '_' and '-'", name);
  if (!strncmp(name, "cairn-", 6) || n == CN_NSID_LEN || name[0] == '.')
    return cn_fail(EINVAL, "petname '%s' could be mistaken for a cap, a namespace ID or a hidden name", name);
  return 0;
}

int cn_keyring_load(const char *home, int for_update, cn_keyring *kr)
{
  memset(kr, 0, sizeof *kr);
  kr->lock_fd = -1;
  if (asprintf(&kr->path, "%s/keyring", home) < 0)
    abort();
  if (for_update) {
    char *lock;
    if (asprintf(&lock, "%s/keyring.lock", home) < 0)
      abort();
    kr->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock);
    if (kr->lock_fd < 0 || flock(kr->lock_fd, LOCK_EX) < 0)
      return cn_fail(errno, "cannot lock the keyring: %s", strerror(errno));
  }
  FILE *f = fopen(kr->path, "re");
  if (!f)
    return errno == ENOENT ? 0 : cn_fail(errno, "cannot read %s: %s", kr->path, strerror(errno));
  char line[512];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    char cap_str[CN_CAP_STR_MAX], pet[CN_PETNAME_MAX + 2];
    if (line[0] == '#' || line[0] == '\n')
      continue;
    if (sscanf(line, "%159s %64s", cap_str, pet) != 2) {
      rc = cn_fail(EINVAL, "%s line %d is malformed", kr->path, lineno);
      break;
    }
    cn_cap cap;
    cn_nskey key;
    if (cn_cap_parse(cap_str, &cap) < 0 || cn_nskey_from_cap(&key, &cap) < 0) {
      char why[256];
      snprintf(why, sizeof why, "%s", cn_err()); /* cn_fail rewrites the buffer cn_err reads */
      rc = cn_fail(EINVAL, "%s line %d: %s", kr->path, lineno, why);
      break;
    }
    rc = cn_keyring_add(kr, &key, strcmp(pet, "-") ? pet : "");
    cn_nskey_wipe(&key);
  }
  fclose(f);
  return rc;
}

int cn_keyring_save(const cn_keyring *kr)
{
  char *tmp;
  if (asprintf(&tmp, "%s.%d.tmp", kr->path, (int)getpid()) < 0)
    abort();
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    int e = errno;
    free(tmp);
    return cn_fail(e, "cannot write the keyring: %s", strerror(e));
  }
  fprintf(f, "# cairn keyring: <cap> <petname or ->. Keep this file secret.\n");
  for (size_t i = 0; i < kr->n; i++) {
    char cap_str[CN_CAP_STR_MAX];
    cn_cap cap;
    cn_cap_from_nskey(&kr->entries[i].key, &cap);
    cn_cap_format(&cap, cap_str);
    fprintf(f, "%s %s\n", cap_str, kr->entries[i].petname[0] ? kr->entries[i].petname : "-");
  }
  int rc = 0;
  if (fflush(f) != 0 || fsync(fd) != 0)
    rc = cn_fail(errno, "cannot write the keyring: %s", strerror(errno));
  fclose(f);
  if (!rc && rename(tmp, kr->path) < 0)
    rc = cn_fail(errno, "cannot replace the keyring: %s", strerror(errno));
  if (!rc) { /* the rename itself must survive a crash */
    char *dir = strdup(kr->path);
    char *slash = strrchr(dir, '/');
    if (slash)
      *slash = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
  if (rc)
    unlink(tmp);
  free(tmp);
  return rc;
}

void cn_keyring_free(cn_keyring *kr)
{
  for (size_t i = 0; i < kr->n; i++)
    cn_nskey_wipe(&kr->entries[i].key);
  free(kr->entries);
  free(kr->path);
  if (kr->lock_fd >= 0)
    close(kr->lock_fd);
  memset(kr, 0, sizeof *kr);
  kr->lock_fd = -1;
}

int cn_keyring_add(cn_keyring *kr, const cn_nskey *key, const char *petname)
{
  if (petname && *petname && cn_petname_check(petname) < 0)
    return -EINVAL;
  cn_keyring_entry *held = NULL;
  for (size_t i = 0; i < kr->n; i++) {
    if (!memcmp(kr->entries[i].key.pk, key->pk, CN_PK_BYTES))
      held = &kr->entries[i];
    else if (petname && *petname && !strcmp(kr->entries[i].petname, petname))
      return cn_fail(EEXIST, "petname '%s' already names another namespace", petname);
  }
  if (!held) {
    kr->entries = realloc(kr->entries, (kr->n + 1) * sizeof *kr->entries);
    if (!kr->entries)
      abort();
    held = &kr->entries[kr->n++];
    memset(held, 0, sizeof *held);
    held->key = *key;
  } else if (key->access > held->key.access) {
    held->key = *key;
  }
  if (petname && *petname)
    snprintf(held->petname, sizeof held->petname, "%s", petname);
  return 0;
}

int cn_keyring_resolve(const cn_keyring *kr, const char *name, cn_nskey *out, int *held)
{
  *held = 0;
  if (!strncasecmp(name, "cairn-", 6)) { /* the parser explains a wrongly-cased cap */
    cn_cap cap;
    if (cn_cap_parse(name, &cap) < 0 || cn_nskey_from_cap(out, &cap) < 0)
      return -EINVAL;
    for (size_t i = 0; i < kr->n; i++)
      if (!memcmp(kr->entries[i].key.pk, out->pk, CN_PK_BYTES))
        *held = 1;
    return 0;
  }
  for (size_t i = 0; i < kr->n; i++) {
    char id[CN_NSID_LEN + 1];
    cn_nsid(kr->entries[i].key.pk, id);
    if (!strcmp(kr->entries[i].petname, name) || !strcmp(id, name)) {
      *out = kr->entries[i].key;
      *held = 1;
      return 0;
    }
  }
  return cn_fail(ENOENT, "no namespace called '%s' in the keyring (see 'cairn ns ls')", name);
}
