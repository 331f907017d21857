/*
 * Jobs: specs, job IDs, running a job over a namespace and writing its results back.
 *
 * A run has three steps, so that a mount can do the long middle one without holding its
 * lock: prepare (read spec, program and inputs from a tree, work out the job ID and
 * whether the stored result is current), execute (compile the module if it is not cached,
 * run the worker, hash /out) and publish (write status, log and out/ into a writable
 * tree). The CLI does all three on one tree; the mount prepares and executes on a
 * snapshot and publishes through cn_mount_edit.
 */
#include "compute/compute.h"
#include "compute/internal.h"
#include "compute/job.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define SPEC_MAGIC "cairn-job 1"
#define JOB_ID_DOMAIN "cairn-job-id 1"
#define SEED_DOMAIN "cairn-job-random 1"
#define PROGRAM_MAX (256u << 20)

/* ---- specs ---- */

void cn_job_spec_free(cn_job_spec *spec)
{
  free(spec->program);
  for (size_t i = 0; i < spec->n_args; i++)
    free(spec->args[i]);
  free(spec->args);
  for (size_t i = 0; i < spec->n_inputs; i++)
    free(spec->inputs[i]);
  free(spec->inputs);
  memset(spec, 0, sizeof *spec);
}

static void push(char ***list, size_t *n, const char *s)
{
  *list = realloc(*list, (*n + 1) * sizeof **list);
  (*list)[(*n)++] = strdup(s);
}

static int parse_number(const char *v, unsigned lo, unsigned hi, unsigned *out)
{
  char *end;
  errno = 0;
  unsigned long x = strtoul(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi)
    return -1;
  *out = (unsigned)x;
  return 0;
}

/* The name an input path has under /in: its last component. */
static const char *input_name(const char *path)
{
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

int cn_job_spec_parse(const char *text, size_t len, cn_job_spec *out)
{
  memset(out, 0, sizeof *out);
  out->cpu_seconds = CN_JOB_DEFAULT_CPU_SECONDS;
  out->memory_mib = CN_JOB_DEFAULT_MEMORY_MIB;
  if (memchr(text, 0, len))
    return cn_fail(EINVAL, "job spec: contains a NUL byte");
  char *copy = strndup(text, len);
  int rc = 0, line_no = 0, seen_magic = 0;
  char *save = NULL;
  for (char *line = copy; line && !rc; line = save) {
    char *nl = strchr(line, '\n');
    save = nl ? nl + 1 : NULL;
    if (nl)
      *nl = 0;
    line_no++;
    size_t l = strlen(line);
    if (l && line[l - 1] == '\r')
      line[--l] = 0;
    if (!l || line[0] == '#')
      continue;
    if (!seen_magic) {
      if (strcmp(line, SPEC_MAGIC))
        rc = cn_fail(EINVAL, "job spec line %d: expected \"%s\" first (the spec format and its version)", line_no, SPEC_MAGIC);
      seen_magic = 1;
      continue;
    }
    char *sp = strchr(line, ' ');
    const char *key = line, *value = "";
    if (sp) {
      *sp = 0;
      value = sp + 1;
    }
    if (!strcmp(key, "program")) {
      if (out->program || !value[0])
        rc = cn_fail(EINVAL, "job spec line %d: exactly one non-empty program line is allowed", line_no);
      else
        out->program = strdup(value);
    } else if (!strcmp(key, "arg")) {
      push(&out->args, &out->n_args, value);
    } else if (!strcmp(key, "input")) {
      if (value[0] != '/' || !input_name(value)[0] || strstr(value, "/../") || strstr(value, "/./"))
        rc = cn_fail(EINVAL, "job spec line %d: an input is an absolute path in the namespace, not '%s'", line_no, value);
      for (size_t i = 0; !rc && i < out->n_inputs; i++)
        if (!strcmp(input_name(out->inputs[i]), input_name(value)))
          rc = cn_fail(EINVAL, "job spec line %d: two inputs would both appear as /in/%s", line_no, input_name(value));
      if (!rc)
        push(&out->inputs, &out->n_inputs, value);
    } else if (!strcmp(key, "quorum")) {
      if (parse_number(value, 1, 64, &out->quorum) < 0)
        rc = cn_fail(EINVAL, "job spec line %d: quorum is a number of nodes from 1 to 64", line_no);
    } else if (!strcmp(key, "cpu")) {
      if (parse_number(value, 1, 7 * 24 * 3600, &out->cpu_seconds) < 0)
        rc = cn_fail(EINVAL, "job spec line %d: cpu is a number of seconds from 1 to 604800", line_no);
    } else if (!strcmp(key, "memory")) {
      if (parse_number(value, 1, 4096, &out->memory_mib) < 0)
        rc = cn_fail(EINVAL, "job spec line %d: memory is a number of MiB from 1 to 4096", line_no);
    } else {
      rc = cn_fail(EINVAL, "job spec line %d: unknown key '%s' (program, input, arg, quorum, cpu, memory)", line_no, key);
    }
  }
  free(copy);
  if (!rc && !seen_magic)
    rc = cn_fail(EINVAL, "job spec: empty (the first line is \"%s\")", SPEC_MAGIC);
  if (!rc && !out->program)
    rc = cn_fail(EINVAL, "job spec: no program line");
  if (rc)
    cn_job_spec_free(out);
  return rc;
}

char *cn_job_spec_format(const cn_job_spec *spec)
{
  size_t cap = 256 + strlen(spec->program);
  for (size_t i = 0; i < spec->n_args; i++)
    cap += strlen(spec->args[i]) + 8;
  for (size_t i = 0; i < spec->n_inputs; i++)
    cap += strlen(spec->inputs[i]) + 8;
  char *out = malloc(cap), *p = out;
  if (strchr(spec->program, '\n'))
    goto bad;
  p += sprintf(p, "%s\nprogram %s\n", SPEC_MAGIC, spec->program);
  for (size_t i = 0; i < spec->n_inputs; i++) {
    if (strchr(spec->inputs[i], '\n'))
      goto bad;
    p += sprintf(p, "input %s\n", spec->inputs[i]);
  }
  for (size_t i = 0; i < spec->n_args; i++) {
    if (strchr(spec->args[i], '\n'))
      goto bad;
    p += sprintf(p, "arg %s\n", spec->args[i]);
  }
  if (spec->quorum)
    p += sprintf(p, "quorum %u\n", spec->quorum);
  if (spec->cpu_seconds && spec->cpu_seconds != CN_JOB_DEFAULT_CPU_SECONDS)
    p += sprintf(p, "cpu %u\n", spec->cpu_seconds);
  if (spec->memory_mib && spec->memory_mib != CN_JOB_DEFAULT_MEMORY_MIB)
    p += sprintf(p, "memory %u\n", spec->memory_mib);
  return out;
bad:
  free(out);
  return NULL;
}

/* ---- the compute context ---- */

static void load_tree_ids(cn_compute *c);

int cn_compute_open(const char *home, cn_store *store, cn_compute **out)
{
  cn_compute *c = calloc(1, sizeof *c);
  if (!c)
    return cn_fail(ENOMEM, "out of memory");
  c->home = strdup(home);
  c->store = store;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  load_tree_ids(c);
  *out = c;
  return 0;
}

void cn_compute_close(cn_compute *c)
{
  if (!c)
    return;
  compute_scheduler_stop(c);
  for (id_cache_entry *e = c->ids, *next; e; e = next) {
    next = e->next;
    free(e->path);
    free(e);
  }
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->wake);
  free(c->home);
  free(c);
}

/* ---- reading from and writing to trees ---- */

static char *path_join(const char *a, const char *b)
{
  size_t la = strlen(a);
  char *out = malloc(la + strlen(b) + 2);
  sprintf(out, "%s%s%s", a, la && a[la - 1] == '/' ? "" : "/", b);
  return out;
}

/* A file of the tree, whole, in memory. */
static int read_tree_file(cn_ns *ns, const char *path, size_t max, uint8_t **data, size_t *len)
{
  cn_attr a;
  int rc = cn_ns_stat(ns, path, &a);
  if (rc < 0)
    return rc;
  if (a.type != CN_FILE)
    return cn_fail(EINVAL, "%s is not a regular file", path);
  if (a.size > max)
    return cn_fail(EFBIG, "%s is larger than %zu bytes", path, max);
  int fd = memfd_create("cairn-read", MFD_CLOEXEC);
  if (fd < 0)
    return cn_fail(errno, "memfd: %s", strerror(errno));
  if ((rc = cn_ns_read_to_fd(ns, path, fd)) < 0) {
    close(fd);
    return rc;
  }
  off_t size = lseek(fd, 0, SEEK_END);
  *data = malloc(size ? (size_t)size : 1);
  *len = (size_t)size;
  if (pread(fd, *data, (size_t)size, 0) != size) {
    close(fd);
    free(*data);
    return cn_fail(EIO, "cannot read back %s", path);
  }
  close(fd);
  return 0;
}

typedef struct {
  char **names;
  cn_attr *attrs;
  size_t n;
} listing;

static int collect(const char *name, const cn_attr *attr, void *ctx)
{
  listing *l = ctx;
  l->names = realloc(l->names, (l->n + 1) * sizeof *l->names);
  l->attrs = realloc(l->attrs, (l->n + 1) * sizeof *l->attrs);
  l->names[l->n] = strdup(name);
  l->attrs[l->n++] = *attr;
  return 0;
}

static void listing_free(listing *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->names[i]);
  free(l->names);
  free(l->attrs);
}

static int is_skipped(const char *path, char *const *skip)
{
  for (; skip && *skip; skip++)
    if (!strcmp(path, *skip))
      return 1;
  return 0;
}

/* Copies path of the tree to host path dst: files, directories and symlinks (FIFOs and
 * sockets are not part of a job's world). Paths in skip are left out. */
static int materialize(cn_ns *ns, const char *path, const char *dst, char *const *skip)
{
  cn_attr a;
  int rc = cn_ns_stat(ns, path, &a);
  if (rc < 0)
    return rc;
  if (a.type == CN_FILE) {
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0)
      return cn_fail(errno, "cannot write %s: %s", dst, strerror(errno));
    rc = cn_ns_read_to_fd(ns, path, fd);
    close(fd);
    return rc;
  }
  if (a.type == CN_SYMLINK) {
    char *target;
    if ((rc = cn_ns_readlink(ns, path, &target)) < 0)
      return rc;
    if (symlink(target, dst) < 0)
      rc = cn_fail(errno, "cannot make %s: %s", dst, strerror(errno));
    free(target);
    return rc;
  }
  if (a.type != CN_DIR)
    return 0;
  if (mkdir(dst, 0755) < 0)
    return cn_fail(errno, "cannot make %s: %s", dst, strerror(errno));
  listing l = {0};
  if ((rc = cn_ns_list(ns, path, collect, &l)) < 0) {
    listing_free(&l);
    return rc;
  }
  for (size_t i = 0; i < l.n && !rc; i++) {
    char *child = path_join(path, l.names[i]);
    char *child_dst = path_join(dst, l.names[i]);
    if (!is_skipped(child, skip))
      rc = materialize(ns, child, child_dst, skip);
    free(child);
    free(child_dst);
  }
  listing_free(&l);
  chmod(dst, 0555);
  return rc;
}

/* Writes host tree src into the tree at path (which must not exist), read-only. */
static int import_tree(cn_ns *ns, const char *src, const char *path, int64_t when)
{
  struct stat st;
  if (lstat(src, &st) < 0)
    return cn_fail(errno, "cannot read %s: %s", src, strerror(errno));
  cn_attr meta = {0};
  meta.uid = getuid();
  meta.gid = getgid();
  meta.mtime_ns = meta.atime_ns = meta.ctime_ns = when;
  if (S_ISREG(st.st_mode)) {
    meta.mode = 0444;
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return cn_fail(errno, "cannot read %s: %s", src, strerror(errno));
    int rc = cn_ns_write_from_fd(ns, path, fd, &meta);
    close(fd);
    return rc;
  }
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = readlink(src, target, sizeof target - 1);
    if (n < 0)
      return cn_fail(errno, "cannot read %s: %s", src, strerror(errno));
    target[n] = 0;
    meta.mode = 0777;
    return cn_ns_symlink(ns, path, target, &meta);
  }
  if (!S_ISDIR(st.st_mode))
    return 0;
  meta.mode = 0555;
  int rc = cn_ns_mkdir(ns, path, &meta, 0);
  if (rc < 0)
    return rc;
  int dfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return cn_fail(errno, "cannot list %s: %s", src, strerror(errno));
  DIR *d = fdopendir(dfd);
  struct dirent *de;
  while (!rc && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char *child_src = path_join(src, de->d_name), *child = path_join(path, de->d_name);
    rc = import_tree(ns, child_src, child, when);
    free(child_src);
    free(child);
  }
  closedir(d);
  return rc;
}

static int write_text(cn_ns *ns, const char *path, const char *text, size_t len, int64_t when)
{
  int fd = memfd_create("cairn-text", MFD_CLOEXEC);
  if (fd < 0)
    return cn_fail(errno, "memfd: %s", strerror(errno));
  if (write(fd, text, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0) {
    close(fd);
    return cn_fail(EIO, "cannot stage %s", path);
  }
  cn_attr meta = {0};
  meta.mode = 0444;
  meta.uid = getuid();
  meta.gid = getgid();
  meta.mtime_ns = meta.atime_ns = meta.ctime_ns = when;
  int rc = cn_ns_write_from_fd(ns, path, fd, &meta);
  close(fd);
  return rc;
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void hex(const uint8_t *in, char out[65])
{
  cn_hex(in, 32, out);
}

/* ---- content IDs of inputs, remembered by what the tree stores ---- */

/* The cache is keyed by namespace, job directory and input path (which of the job's own
 * results an input leaves out depends on where the job is) and by the stored ID; it is
 * kept in $CAIRN_HOME/cache/inputs, one line per entry, so the CLI gets it too. */
static char *cache_key(const char *job_dir, const char *path)
{
  char *key;
  if (asprintf(&key, "%s\t%s", job_dir, path) < 0)
    abort();
  return key;
}

static void insert_tree_id(cn_compute *c, const uint8_t pk[32], const char *key, const uint8_t stored[32],
                           const uint8_t id[32])
{
  id_cache_entry *e = calloc(1, sizeof *e);
  memcpy(e->pk, pk, 32);
  e->path = strdup(key);
  memcpy(e->stored, stored, 32);
  memcpy(e->tree_id, id, 32);
  /* one entry per (namespace, key): replace the older one */
  for (id_cache_entry **pp = &c->ids; *pp; pp = &(*pp)->next)
    if (!memcmp((*pp)->pk, e->pk, 32) && !strcmp((*pp)->path, key)) {
      id_cache_entry *old = *pp;
      *pp = old->next;
      free(old->path);
      free(old);
      break;
    }
  e->next = c->ids;
  c->ids = e;
}

static void load_tree_ids(cn_compute *c)
{
  char path[4300];
  snprintf(path, sizeof path, "%s/cache/inputs", c->home);
  FILE *f = fopen(path, "re");
  if (!f)
    return;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    char pk_hex[65], stored_hex[65], id_hex[65];
    int key_at = 0;
    uint8_t pk[32], stored[32], id[32];
    line[strcspn(line, "\n")] = 0;
    if (sscanf(line, "%64s %64s %64s %n", pk_hex, stored_hex, id_hex, &key_at) == 3 && key_at &&
        cn_unhex(pk_hex, pk, 32) == 0 && cn_unhex(stored_hex, stored, 32) == 0 && cn_unhex(id_hex, id, 32) == 0)
      insert_tree_id(c, pk, line + key_at, stored, id);
  }
  free(line);
  fclose(f);
}

static int cached_tree_id(cn_compute *c, cn_ns *ns, const char *job_dir, const char *path, uint8_t stored[32],
                          uint8_t id[32])
{
  const uint8_t *pk = cn_ns_key(ns)->pk;
  char *key = cache_key(job_dir, path);
  int hit = 0;
  pthread_mutex_lock(&c->lock);
  for (id_cache_entry *e = c->ids; e; e = e->next)
    if (!memcmp(e->pk, pk, 32) && !strcmp(e->path, key) && !memcmp(e->stored, stored, 32)) {
      memcpy(id, e->tree_id, 32);
      hit = 1;
      break;
    }
  pthread_mutex_unlock(&c->lock);
  free(key);
  return hit;
}

static void remember_tree_id(cn_compute *c, cn_ns *ns, const char *job_dir, const char *path,
                             const uint8_t stored[32], const uint8_t id[32])
{
  char *key = cache_key(job_dir, path);
  const uint8_t *pk = cn_ns_key(ns)->pk;
  pthread_mutex_lock(&c->lock);
  insert_tree_id(c, pk, key, stored, id);
  if (!strchr(key, '\n')) {
    char dir[4200], file[4300], a[65], b[65], d[65];
    snprintf(dir, sizeof dir, "%s/cache", c->home);
    mkdir(dir, 0700);
    snprintf(file, sizeof file, "%s/inputs", dir);
    FILE *f = fopen(file, "ae");
    if (f) {
      hex(pk, a);
      hex(stored, b);
      hex(id, d);
      fprintf(f, "%s %s %s %s\n", a, b, d, key);
      fclose(f);
    }
  }
  pthread_mutex_unlock(&c->lock);
  free(key);
}

/* ---- prepare, execute, publish ---- */

void compute_job_free(compute_job *j)
{
  if (!j)
    return;
  if (j->work[0])
    compute_rm_rf(j->work);
  cn_job_spec_free(&j->spec);
  free(j->wasm);
  free(j->job_dir);
  for (char **s = j->skip; s && *s; s++)
    free(*s);
  free(j->skip);
  free(j->quorum_report);
  free(j);
}

/* The first line of the job's status, and the output it names (its "output" line). */
static int job_status_line(cn_ns *ns, const char *job_dir, char *line, size_t cap, int *has_output,
                           uint8_t output[32])
{
  char *path = path_join(job_dir, "status");
  uint8_t *data;
  size_t len;
  line[0] = 0;
  *has_output = 0;
  int rc = read_tree_file(ns, path, 64 * 1024, &data, &len);
  free(path);
  if (rc < 0)
    return rc;
  size_t n = 0;
  while (n < len && n + 1 < cap && data[n] != '\n')
    n++;
  memcpy(line, data, n);
  line[n] = 0;
  char *text = strndup((const char *)data, len);
  char *out = strstr(text, "\noutput ");
  const size_t tag = strlen("\noutput ");
  if (out && strlen(out) >= tag + 64) {
    out[tag + 64] = 0;
    *has_output = cn_unhex(out + tag, output, 32) == 0;
  }
  free(text);
  free(data);
  return 0;
}

/* How many times this job has run here before: the counter in its log's first line. */
static unsigned previous_runs(cn_ns *ns, const char *job_dir)
{
  char *path = path_join(job_dir, "log");
  uint8_t *data;
  size_t len;
  unsigned runs = 0;
  if (read_tree_file(ns, path, 64u << 20, &data, &len) == 0) {
    char head[128] = {0};
    memcpy(head, data, len < sizeof head - 1 ? len : sizeof head - 1);
    sscanf(head, "cairn: run %u", &runs);
    free(data);
  }
  free(path);
  return runs;
}

/* ---- stored results by job ID ($CAIRN_HOME/results/<job id hex>) ---- */

/* Remembers where job_id's outputs are stored: a directory cap of the committed out/. */
int compute_result_remember(cn_compute *c, cn_ns *ns, const char *job_dir, const uint8_t job_id[32],
                            const uint8_t output_id[32])
{
  char *out_path = path_join(job_dir, "out");
  cn_cap cap;
  int rc = cn_ns_cap(ns, out_path, &cap);
  free(out_path);
  if (rc < 0)
    return rc;
  char dir[4200], path[4300], tmp[4400], id[65], oid[65], capstr[CN_CAP_STR_MAX];
  hex(job_id, id);
  hex(output_id, oid);
  cn_cap_format(&cap, capstr);
  snprintf(dir, sizeof dir, "%s/results", c->home);
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/%s", dir, id);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "we");
  if (!f)
    return cn_fail(errno, "cannot write %s: %s", tmp, strerror(errno));
  fprintf(f, "output %s\ncap %s\n", oid, capstr);
  if (fclose(f) != 0 || rename(tmp, path) < 0)
    return cn_fail(errno, "cannot write %s: %s", path, strerror(errno));
  return 0;
}

/* The stored result of job_id, if this node has one: its output ID and cap. */
static int result_lookup(cn_compute *c, const uint8_t job_id[32], uint8_t output_id[32], cn_cap *cap)
{
  char path[4300], id[65], line[300], oid[65] = "", capstr[CN_CAP_STR_MAX] = "";
  hex(job_id, id);
  snprintf(path, sizeof path, "%s/results/%s", c->home, id);
  FILE *f = fopen(path, "re");
  if (!f)
    return -ENOENT;
  while (fgets(line, sizeof line, f)) {
    sscanf(line, "output %64s", oid);
    sscanf(line, "cap %159s", capstr);
  }
  fclose(f);
  if (cn_unhex(oid, output_id, 32) < 0 || cn_cap_parse(capstr, cap) < 0)
    return cn_fail(EIO, "%s is damaged", path);
  return 0;
}

/* Copies a stored result into dst and checks it is the output it claims to be. */
static int result_restore(cn_compute *c, const cn_cap *cap, const uint8_t output_id[32], const char *dst)
{
  cn_ns *view;
  int rc = cn_ns_open_cap(c->store, cap, &view);
  if (rc < 0)
    return rc;
  rc = materialize(view, "/", dst, NULL);
  cn_ns_close(view);
  uint8_t got[32];
  if (!rc && (rc = compute_tree_id(dst, got)) == 0 && memcmp(got, output_id, 32))
    rc = cn_fail(EIO, "the stored result does not hash to its output ID");
  return rc;
}

static int add_size(const char *name, const cn_attr *attr, void *ctx)
{
  uint64_t *total = ctx;
  *total += attr->type == CN_FILE ? attr->size : 0;
  return 0;
}

/* Bytes of the files at and below path (the committed sizes). */
static uint64_t tree_size(cn_ns *ns, const char *path)
{
  cn_attr a;
  if (cn_ns_stat(ns, path, &a) < 0)
    return 0;
  if (a.type != CN_DIR)
    return a.type == CN_FILE ? a.size : 0;
  uint64_t total = 0;
  listing l = {0};
  if (cn_ns_list(ns, path, collect, &l) == 0)
    for (size_t i = 0; i < l.n; i++) {
      if (l.attrs[i].type == CN_DIR) {
        char *child = path_join(path, l.names[i]);
        total += tree_size(ns, child);
        free(child);
      } else {
        add_size(l.names[i], &l.attrs[i], &total);
      }
    }
  listing_free(&l);
  return total;
}

/* Where a job's inputs and outputs are staged: in memory (/dev/shm) when they fit with
 * room to spare, because creating and deleting thousands of small files costs more on a
 * disk file system than the job itself; else under $CAIRN_HOME/tmp. */
static void work_dir_template(cn_compute *c, cn_ns *ns, const cn_job_spec *spec, char *out, size_t cap)
{
  uint64_t need = 64u << 20;
  for (size_t i = 0; i < spec->n_inputs; i++)
    need += 2 * tree_size(ns, spec->inputs[i]);
  struct statvfs vfs;
  if (statvfs("/dev/shm", &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize / 4 > need &&
      access("/dev/shm", W_OK) == 0)
    snprintf(out, cap, "/dev/shm/cairn-job-XXXXXX");
  else
    snprintf(out, cap, "%s/tmp/job-XXXXXX", c->home);
}

int compute_job_prepare(cn_compute *c, cn_ns *ns, const char *job_dir, int force, compute_job **out)
{
  *out = NULL;
  compute_job *j = calloc(1, sizeof *j);
  j->c = c;
  j->job_dir = strdup(job_dir);
  j->cpu_seconds = CN_JOB_DEFAULT_CPU_SECONDS;
  char *spec_path = path_join(job_dir, "job");
  uint8_t *text;
  size_t len;
  int rc = read_tree_file(ns, spec_path, 1 << 20, &text, &len);
  free(spec_path);
  if (rc < 0) {
    compute_job_free(j);
    return rc;
  }
  rc = cn_job_spec_parse((const char *)text, len, &j->spec);
  free(text);
  if (!rc)
    work_dir_template(c, ns, &j->spec, j->work, sizeof j->work);
  if (!rc && !mkdtemp(j->work)) {
    rc = cn_fail(errno, "cannot make a job directory %s: %s", j->work, strerror(errno));
    j->work[0] = 0;
  }
  if (rc < 0) {
    /* a spec that cannot be read is the job's failure, reported in its status */
    j->prepare_failed = 1;
    snprintf(j->reason, sizeof j->reason, "%s", cn_err());
    *out = j;
    return 0;
  }
  /* the job's own results are never its inputs, even when an input holds the job */
  j->skip = calloc(4, sizeof *j->skip);
  j->skip[0] = path_join(job_dir, "out");
  j->skip[1] = path_join(job_dir, "status");
  j->skip[2] = path_join(job_dir, "log");
  j->cpu_seconds = j->spec.cpu_seconds;
  j->memory_bytes = (uint64_t)j->spec.memory_mib << 20;

  /* the program: a path in this tree or a file cap */
  if (!strncmp(j->spec.program, "cairn-", 6)) {
    cn_cap cap;
    cn_ns *capns = NULL;
    rc = cn_cap_parse(j->spec.program, &cap);
    if (!rc)
      rc = cn_ns_open_cap(c->store, &cap, &capns);
    if (!rc) {
      const char *name = cn_ns_cap_file(capns);
      if (!name)
        rc = cn_fail(EINVAL, "the program cap names a directory, not a file");
      else {
        char *p = path_join("/", name);
        rc = read_tree_file(capns, p, PROGRAM_MAX, &j->wasm, &j->wasm_len);
        free(p);
      }
      cn_ns_close(capns);
    }
  } else {
    rc = read_tree_file(ns, j->spec.program, PROGRAM_MAX, &j->wasm, &j->wasm_len);
  }
  if (rc < 0) {
    j->prepare_failed = 1;
    snprintf(j->reason, sizeof j->reason, "cannot read the program %s: %s", j->spec.program, cn_err());
    *out = j;
    return 0;
  }
  cn_sha256(j->wasm, j->wasm_len, j->module_id);

  /* inputs: content tree IDs, from the cache when the stored tree has not changed */
  struct timespec staged_from;
  clock_gettime(CLOCK_MONOTONIC, &staged_from);
  char in_root[4200];
  snprintf(in_root, sizeof in_root, "%s/in", j->work);
  mkdir(in_root, 0755);
  cn_sha256_stream *h = cn_sha256_begin();
  cn_sha256_add(h, JOB_ID_DOMAIN, sizeof JOB_ID_DOMAIN);
  uint8_t u32b[4];
#define ADD_U32(v) (u32b[0] = (uint8_t)((v) >> 24), u32b[1] = (uint8_t)((v) >> 16), u32b[2] = (uint8_t)((v) >> 8), \
                    u32b[3] = (uint8_t)(v), cn_sha256_add(h, u32b, 4))
  ADD_U32(CN_COMPUTE_RUNTIME_VERSION);
  cn_sha256_add(h, j->module_id, 32);
  ADD_U32(j->spec.n_args);
  for (size_t i = 0; i < j->spec.n_args; i++) {
    ADD_U32(strlen(j->spec.args[i]));
    cn_sha256_add(h, j->spec.args[i], strlen(j->spec.args[i]));
  }
  ADD_U32(j->spec.n_inputs);
  for (size_t i = 0; i < j->spec.n_inputs && !rc; i++) {
    const char *path = j->spec.inputs[i], *name = input_name(path);
    char *dst = path_join(in_root, name);
    uint8_t stored[32], tree_id[32];
    if (is_skipped(path, j->skip) || !strncmp(path, j->skip[0], strlen(j->skip[0])))
      rc = cn_fail(EINVAL, "input %s is this job's own output", path);
    else if ((rc = cn_ns_content_id(ns, path, stored)) < 0)
      ;
    else if (!cached_tree_id(c, ns, job_dir, path, stored, tree_id)) {
      rc = materialize(ns, path, dst, j->skip);
      if (!rc)
        rc = compute_tree_id(dst, tree_id);
      if (!rc)
        remember_tree_id(c, ns, job_dir, path, stored, tree_id);
    }
    free(dst);
    if (!rc) {
      ADD_U32(strlen(name));
      cn_sha256_add(h, name, strlen(name));
      cn_sha256_add(h, tree_id, 32);
    } else {
      j->prepare_failed = 1;
      snprintf(j->reason, sizeof j->reason, "input %s: %s", path, cn_err());
    }
  }
#undef ADD_U32
  cn_sha256_end(h, j->job_id);
  struct timespec staged_to;
  clock_gettime(CLOCK_MONOTONIC, &staged_to);
  j->stage_seconds = (double)(staged_to.tv_sec - staged_from.tv_sec) + (staged_to.tv_nsec - staged_from.tv_nsec) / 1e9;
  if (j->prepare_failed) {
    *out = j;
    return 0;
  }
  char line[256], id[65];
  hex(j->job_id, id);
  job_status_line(ns, job_dir, line, sizeof line, &j->has_stored_output, j->stored_output);
  char expect[80];
  snprintf(expect, sizeof expect, "done %s", id);
  j->up_to_date = !force && !strcmp(line, expect);
  j->previous_runs = previous_runs(ns, job_dir);
  /* a job ID this node has a stored result for is answered from it, not run again */
  if (!j->up_to_date && !force && result_lookup(c, j->job_id, j->reuse_output, &j->reuse_cap) == 0)
    j->reuse = 1;
  *out = j;
  return 0;
}

/* Fills in inputs that prepare found in the cache and so did not copy out. */
static int materialize_missing(compute_job *j, cn_ns *ns)
{
  for (size_t i = 0; i < j->spec.n_inputs; i++) {
    char in_root[4200];
    snprintf(in_root, sizeof in_root, "%s/in", j->work);
    char *dst = path_join(in_root, input_name(j->spec.inputs[i]));
    struct stat st;
    int rc = 0;
    if (lstat(dst, &st) < 0)
      rc = materialize(ns, j->spec.inputs[i], dst, j->skip);
    free(dst);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static void log_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(int fd, const char *fmt, ...)
{
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0 && write(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0) {
  }
}

int compute_job_execute(compute_job *j, cn_ns *ns, volatile int *cancel)
{
  char id[65], mod[65];
  hex(j->job_id, id);
  hex(j->module_id, mod);
  char log_path[4200], out_dir[4200], in_dir[4200];
  snprintf(log_path, sizeof log_path, "%s/log", j->work);
  snprintf(out_dir, sizeof out_dir, "%s/out", j->work);
  snprintf(in_dir, sizeof in_dir, "%s/in", j->work);
  j->log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (j->log_fd < 0)
    return cn_fail(errno, "cannot write %s: %s", log_path, strerror(errno));
  char out_dir_reuse[4200];
  snprintf(out_dir_reuse, sizeof out_dir_reuse, "%s/out", j->work);
  if (j->reuse) {
    compute_rm_rf(out_dir_reuse);
    if (result_restore(j->c, &j->reuse_cap, j->reuse_output, out_dir_reuse) == 0) {
      char oid[65];
      hex(j->reuse_output, oid);
      log_line(j->log_fd, "cairn: job %s answered from this node's stored result (not run)\n"
                          "cairn: module %s\ncairn: output %s\n", id, mod, oid);
      memcpy(j->output_id, j->reuse_output, 32);
      j->ok = 1;
      return 0;
    }
    compute_rm_rf(out_dir_reuse); /* gone or damaged: run it */
    j->reuse = 0;
  }
  j->runs = j->previous_runs + 1;
  log_line(j->log_fd, "cairn: run %u of job %s\ncairn: module %s\n", j->runs, id, mod);
  j->executed = 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = materialize_missing(j, ns);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  j->stage_seconds += (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (!rc)
    log_line(j->log_fd, "cairn: inputs copied out and hashed in %.2f s\n", j->stage_seconds);
  if (rc < 0) {
    snprintf(j->reason, sizeof j->reason, "cannot copy the inputs: %s", cn_err());
    log_line(j->log_fd, "cairn: failed: %s\n", j->reason);
    return 0;
  }
  char so[4200];
  rc = compute_build_module(j->c->home, j->wasm, j->wasm_len, so, sizeof so, &j->built, &j->build_seconds);
  if (rc < 0) {
    snprintf(j->reason, sizeof j->reason, "%s", cn_err());
    log_line(j->log_fd, "cairn: failed: %s\n", j->reason);
    return 0;
  }
  if (j->built)
    log_line(j->log_fd, "cairn: compiled the module in %.2f s\n", j->build_seconds);
  else
    log_line(j->log_fd, "cairn: compiled module cached\n");
  mkdir(out_dir, 0755);
  uint8_t seed[32];
  cn_sha256_stream *h = cn_sha256_begin();
  cn_sha256_add(h, SEED_DOMAIN, sizeof SEED_DOMAIN);
  cn_sha256_add(h, j->job_id, 32);
  cn_sha256_end(h, seed);
  char *program_name = strdup(input_name(j->spec.program));
  char **argv = calloc(j->spec.n_args + 2, sizeof *argv);
  argv[0] = program_name;
  for (size_t i = 0; i < j->spec.n_args; i++)
    argv[i + 1] = j->spec.args[i];
  worker_request req = {.module_so = so, .in_dir = in_dir, .out_dir = out_dir, .work_dir = j->work,
                        .log_fd = j->log_fd, .argv = argv, .argc = (int)j->spec.n_args + 1,
                        .memory_bytes = j->memory_bytes, .cpu_seconds = j->cpu_seconds, .cancel = cancel};
  memcpy(req.seed, seed, 32);
  worker_result res;
  rc = compute_run_worker(&req, &res);
  free(argv);
  free(program_name);
  if (rc < 0) {
    snprintf(j->reason, sizeof j->reason, "%s", cn_err());
    log_line(j->log_fd, "cairn: failed: %s\n", j->reason);
    return 0;
  }
  j->run_seconds = res.seconds;
  if (!res.exited || res.exit_code) {
    snprintf(j->reason, sizeof j->reason, "%s", res.reason);
    log_line(j->log_fd, "\ncairn: failed after %.2f s: %s\n", res.seconds, res.reason);
    return 0;
  }
  if ((rc = compute_tree_id(out_dir, j->output_id)) < 0) {
    snprintf(j->reason, sizeof j->reason, "cannot read the outputs: %s", cn_err());
    log_line(j->log_fd, "cairn: failed: %s\n", j->reason);
    return 0;
  }
  char oid[65];
  hex(j->output_id, oid);
  log_line(j->log_fd, "\ncairn: done in %.2f s, output %s\n", res.seconds, oid);
  j->ok = 1;
  return 0;
}

int compute_job_publish(compute_job *j, cn_ns *ns)
{
  int64_t when = now_ns();
  char *out_path = path_join(j->job_dir, "out");
  char *status_path = path_join(j->job_dir, "status");
  char *log_path = path_join(j->job_dir, "log");
  char id[65], oid[65];
  hex(j->job_id, id);
  hex(j->output_id, oid);
  int rc = 0;
  cn_attr a;
  if (cn_ns_stat(ns, out_path, &a) == 0)
    rc = cn_ns_remove(ns, out_path, 1);
  if (!rc && j->ok) {
    char src[4200];
    snprintf(src, sizeof src, "%s/out", j->work);
    rc = import_tree(ns, src, out_path, when);
  }
  int n;
  char *status = compute_job_status_text(j);
  if (!rc)
    rc = write_text(ns, status_path, status, strlen(status), when);
  free(status);
  if (!rc && j->log_fd > 0) {
    off_t size = lseek(j->log_fd, 0, SEEK_END);
    lseek(j->log_fd, 0, SEEK_SET);
    cn_attr meta = {0};
    meta.mode = 0444;
    meta.uid = getuid();
    meta.gid = getgid();
    meta.mtime_ns = meta.atime_ns = meta.ctime_ns = when;
    rc = size >= 0 ? cn_ns_write_from_fd(ns, log_path, j->log_fd, &meta) : -EIO;
  } else if (!rc && j->prepare_failed) {
    char text[600];
    n = snprintf(text, sizeof text, "cairn: failed before running: %s\n", j->reason);
    rc = write_text(ns, log_path, text, (size_t)n, when);
  }
  free(out_path);
  free(status_path);
  free(log_path);
  return rc;
}

char *compute_job_status_text(const compute_job *j)
{
  char id[65], oid[65], *text;
  hex(j->job_id, id);
  hex(j->output_id, oid);
  int rc = j->ok ? asprintf(&text, "done %s\noutput %s\n%s", id, oid, j->quorum_report ? j->quorum_report : "")
                 : asprintf(&text, "failed: %s\n", j->reason);
  if (rc < 0)
    abort();
  return text;
}

int compute_job_set_status(cn_ns *ns, const char *job_dir, const char *text)
{
  char *status_path = path_join(job_dir, "status");
  int rc = write_text(ns, status_path, text, strlen(text), now_ns());
  free(status_path);
  return rc;
}

int compute_job_mark(cn_ns *ns, const char *job_dir, const char *state)
{
  char *status_path = path_join(job_dir, "status");
  char text[64];
  int n = snprintf(text, sizeof text, "%s\n", state);
  int rc = write_text(ns, status_path, text, (size_t)n, now_ns());
  free(status_path);
  return rc;
}

void compute_job_outcome(const compute_job *j, cn_job_outcome *o)
{
  memset(o, 0, sizeof *o);
  hex(j->job_id, o->job_id);
  if (j->ok)
    hex(j->output_id, o->output_id);
  o->ran = j->executed;
  o->reused = j->reuse;
  o->ok = j->up_to_date || j->ok;
  snprintf(o->reason, sizeof o->reason, "%s", j->reason);
  o->run_seconds = j->run_seconds;
  o->build_seconds = j->build_seconds;
  o->built = j->built;
}

int cn_job_run(cn_compute *c, cn_ns *ns, const char *job_dir, int force, cn_job_outcome *outcome)
{
  compute_job *j;
  int rc = compute_job_prepare(c, ns, job_dir, force, &j);
  if (rc < 0)
    return rc;
  if (j->up_to_date) {
    compute_job_outcome(j, outcome);
    compute_job_free(j);
    return 0;
  }
  if (!j->prepare_failed) {
    if ((rc = compute_job_mark(ns, job_dir, "running")) < 0 || (rc = cn_ns_commit(ns)) < 0) {
      compute_job_free(j);
      return rc;
    }
    if ((rc = compute_job_execute(j, ns, NULL)) < 0) {
      compute_job_free(j);
      return rc;
    }
  }
  /* our signed record goes out with the result; with a quorum, status says how many
   * nodes agree so far (only this one, without a node to ask) */
  if (j->ok) {
    if (compute_record_publish(c->store, NULL, j->job_id, j->output_id) == 0)
      cn_node_ask(c->home, "publish", NULL, NULL);
    if (j->spec.quorum >= 2) {
      char report[8192];
      compute_quorum(NULL, c->store, cn_ns_key(ns)->pk, j->job_id, j->output_id, j->spec.quorum, report,
                     sizeof report);
      j->quorum_report = strdup(report);
    }
  }
  rc = compute_job_publish(j, ns);
  if (!rc)
    rc = cn_ns_commit(ns);
  if (!rc && j->ok && compute_result_remember(c, ns, job_dir, j->job_id, j->output_id) < 0)
    cn_log("job %s: cannot remember its result: %s", job_dir, cn_err());
  compute_job_outcome(j, outcome);
  if (j->log_fd > 0)
    close(j->log_fd);
  compute_job_free(j);
  return rc;
}

int cn_job_verify(cn_compute *c, cn_ns *ns, const char *job_dir, cn_job_outcome *outcome)
{
  compute_job *j;
  int rc = compute_job_prepare(c, ns, job_dir, 1, &j);
  if (rc < 0)
    return rc;
  char line[256], id[65];
  int has_output;
  uint8_t stored[32];
  job_status_line(ns, job_dir, line, sizeof line, &has_output, stored);
  hex(j->job_id, id);
  if (!j->prepare_failed && !has_output)
    rc = cn_fail(ENOENT, "%s/status names no output to check (has the job run?)", job_dir);
  else if (!j->prepare_failed && (strncmp(line, "done ", 5) || strcmp(line + 5, id)))
    rc = cn_fail(ESTALE, "the stored result is for another job (%s); its program or inputs are now job %s",
                 line, id);
  if (!rc && !j->prepare_failed)
    rc = compute_job_execute(j, ns, NULL);
  if (!rc) {
    compute_job_outcome(j, outcome);
    hex(stored, outcome->stored_output);
    outcome->ok = j->ok && !memcmp(j->output_id, stored, 32);
    if (j->ok && compute_record_publish(c->store, NULL, j->job_id, j->output_id) == 0)
      cn_node_ask(c->home, "publish", NULL, NULL);
  }
  if (j->log_fd > 0)
    close(j->log_fd);
  compute_job_free(j);
  return rc;
}

static int collect_dirs(const char *name, const cn_attr *attr, void *ctx)
{
  listing *l = ctx;
  if (attr->type == CN_DIR)
    collect(name, attr, l);
  return 0;
}

int cn_job_list(cn_ns *ns, char ***dirs, size_t *n)
{
  *dirs = NULL;
  *n = 0;
  cn_attr a;
  if (cn_ns_stat(ns, "/compute", &a) < 0 || a.type != CN_DIR)
    return 0;
  listing l = {0};
  int rc = cn_ns_list(ns, "/compute", collect_dirs, &l);
  for (size_t i = 0; i < l.n && !rc; i++) {
    char *dir = path_join("/compute", l.names[i]);
    char *spec = path_join(dir, "job");
    if (cn_ns_stat(ns, spec, &a) == 0 && a.type == CN_FILE)
      push(dirs, n, dir);
    free(spec);
    free(dir);
  }
  listing_free(&l);
  return rc;
}
