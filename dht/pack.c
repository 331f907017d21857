/*
 * Signed root values, packs and the node's small config files.
 *
 * A pack is a BitTorrent v2 torrent over stored objects (files chunks/ab/<hex>, whose
 * pieces roots are their chunk IDs), so any node holding the objects can seed it straight
 * from the store. Packs named by roots of versions 1 and 2 have the paths of home format
 * 2, chunks/ab/cd/<hex>; they are fetched and seeded through a tree of links. The signed root
 * lists a namespace's packs; merging keeps the list short (DESIGN §6: few torrents, one
 * announce per pack).
 */
#include "dht/internal.h"
#include "dht/lt.h"
#include <dirent.h>
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROOT_VALUE_V1 1
#define ROOT_VALUE_V2 2
#define ROOT_VALUE_V3 3 /* as 2; its packs have format-3 paths (FORMAT §11.1) */

int cn_root_value_parse(const uint8_t *value, size_t len, cn_root_value *out)
{
  memset(out, 0, sizeof *out);
  if (len >= 1 && value[0] == ROOT_VALUE_V1 && len == 1 + CN_ID_BYTES) {
    memcpy(out->commit, value + 1, CN_ID_BYTES);
    return 0;
  }
  if (len >= 2 + CN_ID_BYTES && (value[0] == ROOT_VALUE_V2 || value[0] == ROOT_VALUE_V3)) {
    size_t n = value[1 + CN_ID_BYTES];
    if (n <= CN_PACKS_MAX && len == 2 + CN_ID_BYTES + n * CN_ID_BYTES) {
      memcpy(out->commit, value + 1, CN_ID_BYTES);
      out->n_packs = n;
      memcpy(out->packs, value + 2 + CN_ID_BYTES, n * CN_ID_BYTES);
      return 0;
    }
  }
  if (len && value[0] != ROOT_VALUE_V1 && value[0] != ROOT_VALUE_V2 && value[0] != ROOT_VALUE_V3)
    return cn_fail(EBADMSG, "root value version %u is not supported", value[0]);
  return cn_fail(EBADMSG, "malformed root value (%zu bytes)", len);
}

void cn_root_value_build(const cn_root_value *v, cn_root *root)
{
  root->value[0] = ROOT_VALUE_V3;
  memcpy(root->value + 1, v->commit, CN_ID_BYTES);
  root->value[1 + CN_ID_BYTES] = (uint8_t)v->n_packs;
  memcpy(root->value + 2 + CN_ID_BYTES, v->packs, v->n_packs * CN_ID_BYTES);
  root->value_len = 2 + CN_ID_BYTES + v->n_packs * CN_ID_BYTES;
}

void store_pack_torrent_name(const uint8_t ih[CN_ID_BYTES], char out[96])
{
  char hex[CN_HEX_ID_LEN + 1];
  cn_hex(ih, CN_ID_BYTES, hex);
  snprintf(out, 96, "packs/%s.torrent", hex);
}

int cn_store_pack_torrent(cn_store *s, const uint8_t ih[CN_ID_BYTES], uint8_t **data, size_t *len)
{
  char name[96];
  store_pack_torrent_name(ih, name);
  int fd = openat(s->home_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? cn_fail(ENOENT, "pack %s is not here", name + 6)
                           : cn_fail(errno, "cannot open %s: %s", name, strerror(errno));
  struct stat st;
  uint8_t *buf = NULL;
  int rc = 0;
  if (fstat(fd, &st) < 0 || !(buf = malloc((size_t)st.st_size + 1)) ||
      pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
    rc = cn_fail(EIO, "cannot read %s", name);
  close(fd);
  if (rc) {
    free(buf);
    return rc;
  }
  *data = buf;
  *len = (size_t)st.st_size;
  return 0;
}

/* Chunk ID from a pack file path "chunks/ab/cd/<64 hex>". */
static int id_of_path(const char *path, uint8_t id[CN_ID_BYTES])
{
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (strlen(base) != CN_HEX_ID_LEN || cn_unhex(base, id, CN_ID_BYTES) < 0)
    return -EBADMSG;
  return 0;
}

typedef int (*object_fn)(const uint8_t id[CN_ID_BYTES], uint64_t size, const uint8_t *layer, void *ctx);

typedef struct {
  object_fn fn;
  void *ctx;
} foreach_ctx;

static int foreach_file(int file, const char *path, uint64_t size, const uint8_t *layer, void *ctx)
{
  (void)file;
  foreach_ctx *f = ctx;
  uint8_t id[CN_ID_BYTES];
  if (id_of_path(path, id) < 0)
    return cn_fail(EBADMSG, "pack file %s is not named by a chunk ID", path);
  return f->fn(id, size, layer, f->ctx);
}

/* Calls fn for every object of a pack, with its piece layer from the torrent. */
static int pack_foreach(cn_store *s, const uint8_t ih[CN_ID_BYTES], object_fn fn, void *ctx)
{
  uint8_t *t, got[CN_ID_BYTES];
  size_t len;
  int rc = cn_store_pack_torrent(s, ih, &t, &len);
  if (rc < 0)
    return rc;
  foreach_ctx f = {fn, ctx};
  char err[256] = "";
  rc = cn_lt_torrent_parse(t, len, got, foreach_file, &f, err, sizeof err);
  free(t);
  if (rc < 0 && *err)
    return cn_fail(EBADMSG, "bad pack torrent: %s", err);
  if (!rc && memcmp(got, ih, CN_ID_BYTES))
    return cn_fail(EBADMSG, "pack torrent does not match its name");
  return rc;
}

typedef struct {
  int (*fn)(const uint8_t id[CN_ID_BYTES], uint64_t size, void *ctx);
  void *ctx;
} plain_ctx;

static int without_layer(const uint8_t id[CN_ID_BYTES], uint64_t size, const uint8_t *layer, void *ctx)
{
  (void)layer;
  plain_ctx *p = ctx;
  return p->fn(id, size, p->ctx);
}

int cn_store_pack_foreach(cn_store *s, const uint8_t ih[CN_ID_BYTES],
                          int (*fn)(const uint8_t id[CN_ID_BYTES], uint64_t size, void *ctx), void *ctx)
{
  plain_ctx p = {fn, ctx};
  return pack_foreach(s, ih, without_layer, &p);
}

typedef struct {
  cn_store *s;
  uint8_t (*ids)[CN_ID_BYTES];
  uint64_t *sizes;
  uint8_t **layers; /* each malloc'd, or NULL for an object of one piece */
  size_t n, cap;
} obj_list;

static void list_grow(obj_list *l)
{
  if (l->n < l->cap)
    return;
  l->cap = l->cap ? 2 * l->cap : 256;
  l->ids = realloc(l->ids, l->cap * CN_ID_BYTES);
  l->sizes = realloc(l->sizes, l->cap * sizeof *l->sizes);
  l->layers = realloc(l->layers, l->cap * sizeof *l->layers);
  if (!l->ids || !l->sizes || !l->layers)
    abort();
}

/* Adds an object with a copy of the piece layer a pack torrent gives; a torrent fetched by
 * info-hash has none, and then the layer comes from the store. */
static int list_add(const uint8_t id[CN_ID_BYTES], uint64_t size, const uint8_t *layer, void *ctx)
{
  obj_list *l = ctx;
  size_t bytes = (size_t)cn_piece_count(size) * 32;
  list_grow(l);
  memcpy(l->ids[l->n], id, CN_ID_BYTES);
  l->sizes[l->n] = size;
  l->layers[l->n] = NULL;
  if (bytes && layer) {
    if (!(l->layers[l->n] = malloc(bytes)))
      abort();
    memcpy(l->layers[l->n], layer, bytes);
  } else if (bytes) {
    int rc = store_piece_layer(l->s, id, size, &l->layers[l->n]);
    if (rc < 0)
      return rc;
  }
  l->n++;
  return 0;
}

static void list_clear(obj_list *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->layers[i]);
  l->n = 0;
}

static void list_free(obj_list *l)
{
  list_clear(l);
  free(l->ids);
  free(l->sizes);
  free(l->layers);
}

static int count_object(const uint8_t id[CN_ID_BYTES], uint64_t size, const uint8_t *layer, void *ctx)
{
  (void)id, (void)size, (void)layer;
  ++*(size_t *)ctx;
  return 0;
}

/* Makes the pack of l's objects and writes its torrent, unless one by that info-hash is
 * there already. same_as: the pack is made again (with piece layers) and must come out as
 * that info-hash, whose torrent it replaces. */
static int write_pack(cn_store *s, obj_list *l, const uint8_t *same_as, uint8_t ih[CN_ID_BYTES])
{
  uint8_t *t;
  size_t len;
  char err[256];
  int rc = cn_lt_pack_create((const uint8_t(*)[32])l->ids, l->sizes, (const uint8_t *const *)l->layers,
                             l->n, &t, &len, ih, err, sizeof err);
  if (rc < 0)
    return cn_fail(-rc, "cannot make a pack: %s", err);
  if (same_as && memcmp(same_as, ih, CN_ID_BYTES)) {
    free(t); /* its objects at other paths (FORMAT §11.1) */
    return cn_fail(EBADMSG, "the pack made again has another info-hash");
  }
  char name[96];
  store_pack_torrent_name(ih, name);
  if (mkdirat(s->home_fd, "packs", 0700) < 0 && errno != EEXIST)
    rc = -errno;
  if (!rc && (same_as || faccessat(s->home_fd, name, F_OK, 0) < 0))
    rc = store_write_file_atomic(s->home_fd, name, t, len, 0600);
  free(t);
  return rc < 0 ? cn_fail(-rc, "cannot write %s: %s", name, strerror(-rc)) : 0;
}

static void unlink_pack_torrent(cn_store *s, const uint8_t ih[CN_ID_BYTES])
{
  char name[96];
  store_pack_torrent_name(ih, name);
  if (unlinkat(s->home_fd, name, 0) < 0 && errno != ENOENT) {
    char hex[CN_HEX_ID_LEN + 1];
    cn_hex(ih, CN_ID_BYTES, hex);
    cn_log("pack %.16s: cannot delete its merged-away torrent: %s", hex, strerror(errno));
  }
}

void cn_store_pack_forget(cn_store *s, const cn_root_value *before, const cn_root_value *after)
{
  for (size_t i = 0; i < before->n_packs; i++) {
    size_t k = 0;
    while (k < after->n_packs && memcmp(before->packs[i], after->packs[k], CN_ID_BYTES))
      k++;
    if (k == after->n_packs)
      unlink_pack_torrent(s, before->packs[i]);
  }
}

static ssize_t pack_objects(cn_store *s, const uint8_t ih[CN_ID_BYTES])
{
  size_t n = 0;
  int rc = pack_foreach(s, ih, count_object, &n);
  return rc < 0 ? rc : (ssize_t)n;
}

int cn_store_pack_add(cn_store *s, cn_root_value *v, const uint8_t (*ids)[CN_ID_BYTES], size_t n,
                      int newest_settled)
{
  obj_list l = {.s = s};
  int rc = 0;
  /* Merge the last two of the packs already published while the older holds at most
   * twice as many files as the newer (a binary counter), or while there would be no room
   * for the new one. The new pack is never merged in the commit that makes it: the
   * namespace's hosts hold every older pack, so they can rebuild a merge of those
   * themselves (store_pack_rebuild) instead of fetching it. Nor is one so new that they
   * may not hold it yet, unless the list is full. */
  int last_merged_here = 0;
  while (v->n_packs >= 2 && (newest_settled || v->n_packs == CN_PACKS_MAX)) {
    ssize_t older = pack_objects(s, v->packs[v->n_packs - 2]);
    ssize_t newer = pack_objects(s, v->packs[v->n_packs - 1]);
    if (older < 0 || newer < 0)
      break; /* a pack this node has not got: leave the list as it is */
    if (older > 2 * newer && v->n_packs < CN_PACKS_MAX)
      break;
    uint8_t merged[CN_ID_BYTES];
    if ((rc = store_pack_rebuild(s, (const uint8_t(*)[CN_ID_BYTES])v->packs + v->n_packs - 2, 2, merged)) < 0)
      break;
    /* a merge made by this call and merged again was never published: nobody needs it */
    if (last_merged_here)
      unlink_pack_torrent(s, v->packs[v->n_packs - 1]);
    memcpy(v->packs[--v->n_packs - 1], merged, CN_ID_BYTES);
    last_merged_here = 1;
  }
  for (size_t i = 0; !rc && i < n; i++) {
    char rel[80];
    struct stat st;
    store_chunk_relpath(ids[i], rel);
    if (fstatat(s->home_fd, rel, &st, 0) < 0) {
      rc = cn_fail(errno, "cannot pack %s: %s", rel, strerror(errno));
      break;
    }
    rc = list_add(ids[i], (uint64_t)st.st_size, NULL, &l);
  }
  uint8_t ih[CN_ID_BYTES];
  if (!rc && l.n)
    rc = write_pack(s, &l, NULL, ih);
  if (!rc && l.n) {
    if (v->n_packs == CN_PACKS_MAX) /* cannot happen: the merges above made room */
      rc = cn_fail(EOVERFLOW, "namespace has too many packs");
    else
      memcpy(v->packs[v->n_packs++], ih, CN_ID_BYTES);
  }
  list_free(&l);
  return rc;
}

int store_pack_rebuild(cn_store *s, const uint8_t (*packs)[CN_ID_BYTES], size_t n, uint8_t ih[CN_ID_BYTES])
{
  obj_list l = {.s = s};
  int rc = n ? 0 : cn_fail(EINVAL, "nothing to merge");
  for (size_t i = 0; !rc && i < n; i++)
    rc = pack_foreach(s, packs[i], list_add, &l);
  if (!rc)
    rc = write_pack(s, &l, NULL, ih);
  list_free(&l);
  return rc;
}

static int count_missing_layer(const uint8_t id[CN_ID_BYTES], uint64_t size, const uint8_t *layer, void *ctx)
{
  (void)id;
  *(size_t *)ctx += cn_piece_count(size) && !layer;
  return 0;
}

int store_pack_add_layers(cn_store *s, const uint8_t ih[CN_ID_BYTES])
{
  size_t missing = 0;
  int rc = pack_foreach(s, ih, count_missing_layer, &missing);
  if (rc < 0 || !missing)
    return rc;
  obj_list l = {.s = s};
  uint8_t made[CN_ID_BYTES];
  rc = pack_foreach(s, ih, list_add, &l);
  if (!rc)
    rc = write_pack(s, &l, ih, made);
  list_free(&l);
  return rc;
}

/* ---- peers and config ---- */

int cn_parse_hostport(const char *str, char *host, size_t host_len, int *port)
{
  const char *colon;
  size_t hl;
  const char *h = str;
  if (*str == '[') {
    const char *end = strchr(str, ']');
    if (!end || end[1] != ':')
      return cn_fail(EINVAL, "'%s' is not HOST:PORT", str);
    h = str + 1;
    hl = (size_t)(end - h);
    colon = end + 1;
  } else {
    colon = strrchr(str, ':');
    if (!colon)
      return cn_fail(EINVAL, "'%s' is not HOST:PORT (no port)", str);
    hl = (size_t)(colon - str);
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (!hl || hl >= host_len || *end || colon[1] == 0 || p < 0 || p > 65535)
    return cn_fail(EINVAL, "'%s' is not HOST:PORT (port 0-65535)", str);
  for (size_t i = 0; i < hl; i++)
    if (h[i] <= ' ' || h[i] == 0x7f)
      return cn_fail(EINVAL, "'%s' is not HOST:PORT", str);
  memcpy(host, h, hl);
  host[hl] = 0;
  *port = (int)p;
  return 0;
}

static int read_small(cn_store *s, const char *name, char **out)
{
  *out = NULL;
  int fd = openat(s->home_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  char *buf = malloc(65537);
  ssize_t n = buf ? read(fd, buf, 65536) : -1;
  close(fd);
  if (n < 0) {
    free(buf);
    return -EIO;
  }
  buf[n] = 0;
  *out = buf;
  return 0;
}

int cn_peers_foreach(cn_store *s, int (*fn)(const char *host, int port, void *ctx), void *ctx)
{
  char *text;
  int rc = read_small(s, "peers", &text);
  if (rc < 0 || !text)
    return rc;
  char *save, *line;
  for (line = strtok_r(text, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
    char host[256];
    int port;
    if (*line == '#' || !*line || cn_parse_hostport(line, host, sizeof host, &port) < 0)
      continue;
    rc = fn(host, port, ctx);
  }
  free(text);
  return rc;
}

static int update_file(cn_store *s, const char *name, const char *key, const char *line)
{
  /* serialised like the keyring: one updater at a time, atomic replace */
  char lockname[64];
  snprintf(lockname, sizeof lockname, "%s.lock", name);
  int lfd = openat(s->home_fd, lockname, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lfd < 0 || flock(lfd, LOCK_EX) < 0)
    return cn_fail(errno, "cannot lock %s: %s", lockname, strerror(errno));
  char *text;
  int rc = read_small(s, name, &text);
  cn_buf out = {0};
  int present = 0;
  if (!rc && text) {
    char *save, *l;
    for (l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
      if (key ? strncmp(l, key, strlen(key)) == 0 : strcmp(l, line) == 0) {
        if (!key)
          present = 1;
        else
          continue;
      }
      cn_buf_put(&out, l, strlen(l));
      cn_buf_u8(&out, '\n');
    }
  }
  if (!rc && !present) {
    cn_buf_put(&out, line, strlen(line));
    cn_buf_u8(&out, '\n');
    rc = store_write_file_atomic(s->home_fd, name, out.p, out.len, 0600);
  }
  free(text);
  cn_buf_free(&out);
  close(lfd);
  return rc < 0 ? cn_fail(-rc, "cannot update %s: %s", name, strerror(-rc)) : 0;
}

int cn_peers_add(cn_store *s, const char *hostport)
{
  char host[256];
  int port;
  int rc = cn_parse_hostport(hostport, host, sizeof host, &port);
  if (rc < 0)
    return rc;
  if (port == 0)
    return cn_fail(EINVAL, "'%s': a peer needs a port other than 0", hostport);
  return update_file(s, "peers", NULL, hostport);
}

int cn_config_listen(cn_store *s, char *out, size_t len)
{
  char *text;
  snprintf(out, len, "0.0.0.0:0");
  int rc = read_small(s, "config", &text);
  if (rc < 0 || !text)
    return rc;
  char *save, *line;
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    if (strncmp(line, "listen ", 7) == 0)
      snprintf(out, len, "%s", line + 7);
  free(text);
  return 0;
}

int cn_config_set_listen(cn_store *s, const char *hostport)
{
  char host[256], line[300];
  int port;
  int rc = cn_parse_hostport(hostport, host, sizeof host, &port);
  if (rc < 0)
    return rc;
  snprintf(line, sizeof line, "listen %s", hostport);
  return update_file(s, "config", "listen ", line);
}

int cn_hosted_add(cn_store *s, const uint8_t pk[CN_PK_BYTES])
{
  char id[CN_NSID_LEN + 1];
  cn_nsid(pk, id);
  return update_file(s, "hosted", NULL, id);
}

int cn_hosted_has(cn_store *s, const uint8_t pk[CN_PK_BYTES])
{
  char id[CN_NSID_LEN + 1], *text;
  cn_nsid(pk, id);
  if (read_small(s, "hosted", &text) < 0 || !text)
    return 0;
  int found = 0;
  char *save, *line;
  for (line = strtok_r(text, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save))
    found = !strcmp(line, id);
  free(text);
  return found;
}

/* ---- signed items this node publishes (items/<salt hex>: u64 seq ‖ value) ---- */

int cn_store_item_add(cn_store *s, const uint8_t *salt, size_t salt_len, const uint8_t *value, size_t len)
{
  if (salt_len == 0 || salt_len > CN_ITEM_SALT_MAX || len > CN_ITEM_VALUE_MAX)
    return cn_fail(EINVAL, "an item has a salt of 1 to %d bytes and at most %d bytes of value",
                   CN_ITEM_SALT_MAX, CN_ITEM_VALUE_MAX);
  mkdirat(s->home_fd, "items", 0700);
  char hex[2 * CN_ITEM_SALT_MAX + 1], name[2 * CN_ITEM_SALT_MAX + 16];
  cn_hex(salt, salt_len, hex);
  snprintf(name, sizeof name, "items/%s", hex);
  /* seq: milliseconds since the epoch, and always above the last one for this salt, so a
   * changed record replaces the old one everywhere */
  uint8_t buf[8 + CN_ITEM_VALUE_MAX];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t seq = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, old = 0;
  int fd = openat(s->home_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, buf, 8) == 8)
      for (int i = 0; i < 8; i++)
        old = old << 8 | buf[i];
    close(fd);
  }
  if (seq <= old)
    seq = old + 1;
  for (int i = 0; i < 8; i++)
    buf[i] = (uint8_t)(seq >> (56 - 8 * i));
  memcpy(buf + 8, value, len);
  int rc = store_write_file_atomic(s->home_fd, name, buf, 8 + len, 0600);
  return rc < 0 ? cn_fail(-rc, "cannot write %s: %s", name, strerror(-rc)) : 0;
}

int cn_store_items_foreach(cn_store *s, cn_item_fn fn, void *ctx)
{
  int dfd = openat(s->home_fd, "items", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return errno == ENOENT ? 0 : cn_fail(errno, "cannot list items: %s", strerror(errno));
  DIR *d = fdopendir(dfd);
  struct dirent *de;
  int rc = 0;
  while (!rc && d && (de = readdir(d))) {
    uint8_t salt[CN_ITEM_SALT_MAX], buf[8 + CN_ITEM_VALUE_MAX];
    size_t hexlen = strlen(de->d_name);
    if (hexlen == 0 || hexlen % 2 || hexlen > 2 * CN_ITEM_SALT_MAX ||
        cn_unhex(de->d_name, salt, hexlen / 2) < 0)
      continue;
    int fd = openat(dfd, de->d_name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 8)
      continue;
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
      seq = seq << 8 | buf[i];
    rc = fn(salt, hexlen / 2, seq, buf + 8, (size_t)n - 8, ctx);
  }
  if (d)
    closedir(d);
  return rc;
}
