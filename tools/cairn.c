/*
 * cairn — the command-line interface. Every subcommand opens the node's home, does one
 * thing, commits once, and exits 0 (done), 1 (it failed: the reason is on stderr) or
 * 2 (the command line or a cap string was malformed).
 */
#include "acl/acl.h"
#include "compute/compute.h"
#include "fs/fs.h"
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

static char *home;

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("cairn: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return code;
}

/* A library error becomes exit 2 when the input was malformed, else 1. */
static int fail_rc(int rc, const char *what)
{
  return fail(rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL, "%s: %s", what, cn_err());
}

typedef struct {
  const char *name, *usage, *help;
  int (*run)(int argc, char **argv);
} command;

static const command *current;

static int usage_error(const char *msg)
{
  fprintf(stderr, "cairn %s: %s\nusage: cairn %s %s\n", current->name, msg, current->name, current->usage);
  return EXIT_USAGE;
}

static int open_store(cn_store **s)
{
  int rc = cn_store_open(home, s);
  return rc < 0 ? fail(EXIT_FAIL, "%s", cn_err()) : 0;
}

/* Whether name is a well-formed file or directory cap (fr, fv, dr, dv). */
static int object_cap(const char *name, cn_cap *cap)
{
  return !strncasecmp(name, "cairn-", 6) && cn_cap_parse(name, cap) == 0 &&
         cap->kind != CN_CAP_NS_WRITE && cap->kind != CN_CAP_NS_READ && cap->kind != CN_CAP_NS_VERIFY;
}

/* A file or directory cap stands for itself, without the keyring: "CAP", or "CAP:/path"
 * below a directory cap. Returns -1 when arg names a namespace instead. */
static int open_cap_target(const char *arg, cn_store *s, int for_write, cn_ns **ns, const char **path)
{
  static char file_path[300];
  const char *colon = strchr(arg, ':');
  char name[CN_CAP_STR_MAX + 8];
  cn_cap cap;
  snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - arg) : (int)strlen(arg), arg);
  if (strncasecmp(name, "cairn-", 6))
    return -1;
  if (cn_cap_parse(name, &cap) < 0)
    return fail(EXIT_USAGE, "%s: %s", name, cn_err());
  if (!object_cap(name, &cap))
    return -1;
  const char *kind = cn_cap_kind_name(cap.kind);
  if (for_write)
    return fail(EXIT_FAIL, "%s: a '%s' cap names a read-only snapshot: nothing can be changed through it",
                name, kind);
  int rc = cn_ns_open_cap(s, &cap, ns);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s: %s", name, cn_err());
  *path = colon && colon[1] ? colon + 1 : "/";
  const char *file = cn_ns_cap_file(*ns);
  if (file) {
    if (strspn(*path, "/") != strlen(*path)) {
      cn_ns_close(*ns);
      *ns = NULL;
      return fail(EXIT_USAGE, "%s: a file cap names one file: no path can follow it", name);
    }
    snprintf(file_path, sizeof file_path, "/%s", file);
    *path = file_path;
  }
  return 0;
}

/* Splits "NS:/path" and resolves NS; for_write opens it for writing. */
static int open_target(const char *arg, cn_store *s, int for_write, cn_ns **ns, const char **path)
{
  int as_cap = open_cap_target(arg, s, for_write, ns, path);
  if (as_cap >= 0)
    return as_cap;
  const char *colon = strchr(arg, ':');
  if (!colon)
    return fail(EXIT_USAGE, "'%s' is not of the form NS:/path", arg);
  char name[CN_CAP_STR_MAX + 8];
  snprintf(name, sizeof name, "%.*s", (int)(colon - arg), arg);
  cn_keyring kr;
  cn_nskey key;
  int held, rc = cn_keyring_load(home, 0, &kr);
  if (!rc)
    rc = cn_keyring_resolve(&kr, name, &key, &held);
  cn_keyring_free(&kr);
  if (rc < 0)
    return fail_rc(rc, name);
  *path = colon[1] ? colon + 1 : "/";
  rc = cn_ns_open(s, &key, for_write, ns);
  cn_nskey_wipe(&key);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s: %s", name, cn_err());
  return 0;
}

static int commit(cn_ns *ns)
{
  int rc = cn_ns_commit(ns);
  return rc < 0 ? fail(EXIT_FAIL, "commit failed, nothing was changed: %s", cn_err()) : 0;
}

static void attr_from_stat(cn_attr *a, const struct stat *st)
{
  memset(a, 0, sizeof *a);
  a->mode = st->st_mode & 07777;
  a->uid = st->st_uid;
  a->gid = st->st_gid;
  a->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  a->atime_ns = (int64_t)st->st_atim.tv_sec * 1000000000 + st->st_atim.tv_nsec;
  a->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* ---- init, ns, cap ---- */

/* The only option of init and serve: --listen HOST:PORT (checked). 0, or an exit status. */
static int listen_option(int argc, char **argv, const char **listen_on)
{
  static const struct option opts[] = {{"listen", required_argument, 0, 'l'}, {0, 0, 0, 0}};
  int c;
  *listen_on = NULL;
  while ((c = getopt_long(argc, argv, "l:", opts, NULL)) != -1) {
    if (c != 'l')
      return usage_error("unknown option");
    char host[256];
    int port;
    if (cn_parse_hostport(optarg, host, sizeof host, &port) < 0)
      return fail(EXIT_USAGE, "--listen: %s", cn_err());
    *listen_on = optarg;
  }
  return optind < argc ? usage_error("unexpected argument") : 0;
}

static int cmd_init(int argc, char **argv)
{
  const char *listen_on;
  int bad = listen_option(argc, argv, &listen_on);
  if (bad)
    return bad;
  int rc = cn_store_init(home);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s", cn_err());
  if (listen_on) {
    cn_store *s;
    if (open_store(&s))
      return EXIT_FAIL;
    rc = cn_config_set_listen(s, listen_on);
    cn_store_close(s);
    if (rc < 0)
      return fail_rc(rc, "--listen");
  }
  printf("cairn home ready at %s\n", home);
  return EXIT_OK;
}

static int ns_new(int argc, char **argv)
{
  static const struct option opts[] = {{"name", required_argument, 0, 'n'}, {0, 0, 0, 0}};
  const char *petname = "";
  int c;
  while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
    if (c != 'n')
      return usage_error("unknown option");
    petname = optarg;
  }
  if (optind != argc)
    return usage_error("unexpected argument");
  if (*petname && cn_petname_check(petname) < 0)
    return fail(EXIT_USAGE, "%s", cn_err());
  cn_store *s;
  if (open_store(&s))
    return EXIT_FAIL;
  cn_keyring kr;
  cn_nskey key;
  cn_ns *ns = NULL;
  cn_nskey_generate(&key);
  int rc = cn_keyring_load(home, 1, &kr);
  if (!rc)
    rc = cn_keyring_add(&kr, &key, petname);
  if (!rc)
    rc = cn_ns_open(s, &key, 1, &ns);
  if (!rc)
    rc = cn_ns_commit(ns); /* the first commit makes the empty namespace resolvable */
  if (!rc)
    rc = cn_keyring_save(&kr);
  if (!rc) {
    cn_cap cap;
    char str[CN_CAP_STR_MAX];
    cn_cap_from_nskey(&key, &cap);
    cn_cap_format(&cap, str);
    printf("%s\n", str);
  }
  int code = rc < 0 ? fail(rc == -EINVAL || rc == -EEXIST ? EXIT_USAGE : EXIT_FAIL, "%s", cn_err()) : EXIT_OK;
  cn_nskey_wipe(&key);
  cn_keyring_free(&kr);
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

static const char *access_name(enum cn_access a)
{
  return a == CN_ACCESS_WRITE ? "write" : a == CN_ACCESS_READ ? "read" : "verify";
}

static int ns_ls(int argc, char **argv)
{
  if (argc > 1)
    return usage_error("unexpected argument");
  cn_store *s;
  if (open_store(&s))
    return EXIT_FAIL;
  cn_keyring kr;
  int rc = cn_keyring_load(home, 0, &kr);
  if (rc < 0) {
    cn_store_close(s);
    return fail(EXIT_FAIL, "%s", cn_err());
  }
  for (size_t i = 0; i < kr.n; i++) {
    char id[CN_NSID_LEN + 1];
    cn_nsid(kr.entries[i].key.pk, id);
    printf("%s  %-6s  seq %-6" PRIu64 "  %s\n", id, access_name(kr.entries[i].key.access),
           cn_store_root_seq(s, kr.entries[i].key.pk),
           kr.entries[i].petname[0] ? kr.entries[i].petname : "-");
  }
  cn_keyring_free(&kr);
  cn_store_close(s);
  return EXIT_OK;
}

static int ns_add(int argc, char **argv)
{
  static const struct option opts[] = {{"name", required_argument, 0, 'n'}, {0, 0, 0, 0}};
  const char *petname = "";
  int c;
  while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
    if (c != 'n')
      return usage_error("unknown option");
    petname = optarg;
  }
  if (optind + 1 != argc)
    return usage_error("expected one cap string");
  cn_cap cap;
  cn_nskey key;
  if (cn_cap_parse(argv[optind], &cap) < 0 || cn_nskey_from_cap(&key, &cap) < 0)
    return fail(EXIT_USAGE, "malformed cap: %s", cn_err());
  cn_keyring kr;
  int rc = cn_keyring_load(home, 1, &kr);
  if (!rc)
    rc = cn_keyring_add(&kr, &key, petname);
  if (!rc)
    rc = cn_keyring_save(&kr);
  cn_keyring_free(&kr);
  if (rc < 0)
    return fail(rc == -EINVAL || rc == -EEXIST ? EXIT_USAGE : EXIT_FAIL, "%s", cn_err());
  char id[CN_NSID_LEN + 1];
  cn_nsid(key.pk, id);
  printf("%s  %s\n", id, access_name(key.access));
  cn_nskey_wipe(&key);
  return EXIT_OK;
}

static int cmd_ns(int argc, char **argv)
{
  if (argc < 2)
    return usage_error("expected new, ls or add");
  if (!strcmp(argv[1], "new"))
    return ns_new(argc - 1, argv + 1);
  if (!strcmp(argv[1], "ls"))
    return ns_ls(argc - 1, argv + 1);
  if (!strcmp(argv[1], "add"))
    return ns_add(argc - 1, argv + 1);
  return usage_error("expected new, ls or add");
}

/* cap NS:/path: the file or directory cap of an immutable snapshot of that entry. */
static int cap_of_path(const char *arg, enum cn_access want)
{
  if (want == CN_ACCESS_WRITE)
    return usage_error("--write is for a namespace: a file or directory cap is read-only");
  cn_store *s;
  cn_ns *ns = NULL;
  const char *path;
  cn_cap cap, out;
  if (open_store(&s))
    return EXIT_FAIL;
  /* read-only first: a directory, or a file whose cap object a commit already holds, needs
   * no writer's lock (a mount may hold it) */
  int rc = 0, code = open_target(arg, s, 0, &ns, &path);
  if (!code && (rc = cn_ns_cap(ns, path, &cap)) == -EROFS) {
    /* a new file-cap object: commit it as the namespace's writer */
    cn_ns_close(ns);
    ns = NULL;
    if (!(code = open_target(arg, s, 1, &ns, &path)))
      rc = cn_ns_cap(ns, path, &cap);
  }
  if (!code && rc < 0)
    code = fail(rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL, "%s: %s", path, cn_err());
  if (!code) {
    char str[CN_CAP_STR_MAX];
    out = cap;
    if (want == CN_ACCESS_VERIFY)
      cn_cap_diminish(&cap, cap.kind == CN_CAP_FILE_READ ? CN_CAP_FILE_VERIFY : CN_CAP_DIR_VERIFY, &out);
    cn_cap_format(&out, str);
    printf("%s\n", str);
  }
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

static int cmd_cap(int argc, char **argv)
{
  static const struct option opts[] = {{"write", no_argument, 0, 'w'}, {"read", no_argument, 0, 'r'},
                                       {"verify", no_argument, 0, 'v'}, {0, 0, 0, 0}};
  int c;
  enum cn_access want = CN_ACCESS_READ;
  while ((c = getopt_long(argc, argv, "wrv", opts, NULL)) != -1) {
    if (c == 'w') want = CN_ACCESS_WRITE;
    else if (c == 'r') want = CN_ACCESS_READ;
    else if (c == 'v') want = CN_ACCESS_VERIFY;
    else return usage_error("unknown option");
  }
  if (optind + 1 != argc)
    return usage_error("expected one namespace or NS:/path");
  cn_cap object, out;
  if (!strchr(argv[optind], ':') && object_cap(argv[optind], &object)) {
    /* diminishing a file or directory cap is pure: no store, no object needed */
    enum cn_cap_kind to = object.kind == CN_CAP_FILE_READ || object.kind == CN_CAP_FILE_VERIFY ?
                          CN_CAP_FILE_VERIFY : CN_CAP_DIR_VERIFY;
    if (want == CN_ACCESS_WRITE)
      return usage_error("--write is for a namespace: a file or directory cap is read-only");
    if (want == CN_ACCESS_READ && object.kind == to)
      return fail(EXIT_FAIL, "a verify cap cannot give a read cap");
    cn_cap_diminish(&object, want == CN_ACCESS_VERIFY ? to : object.kind, &out);
    char str[CN_CAP_STR_MAX];
    cn_cap_format(&out, str);
    printf("%s\n", str);
    return EXIT_OK;
  }
  if (strchr(argv[optind], ':'))
    return cap_of_path(argv[optind], want);
  cn_keyring kr;
  cn_nskey key;
  int held, rc = cn_keyring_load(home, 0, &kr);
  if (!rc)
    rc = cn_keyring_resolve(&kr, argv[optind], &key, &held);
  cn_keyring_free(&kr);
  if (rc < 0)
    return fail_rc(rc, argv[optind]);
  if (cn_nskey_diminish(&key, want) < 0)
    return fail(EXIT_FAIL, "%s: only a %s-cap is held, which cannot give a %s-cap", argv[optind],
                access_name(key.access), access_name(want));
  cn_cap cap;
  char str[CN_CAP_STR_MAX];
  cn_cap_from_nskey(&key, &cap);
  cn_cap_format(&cap, str);
  printf("%s\n", str);
  cn_nskey_wipe(&key);
  return EXIT_OK;
}

/* ---- put ---- */

/* put -r mirrors LOCALDIR into NS:/path the way rsync -a does: entries whose type, size,
 * mtime, mode and owner are unchanged are left alone (so re-storing a tree writes almost
 * nothing), changed ones are re-stored, and entries missing locally are removed. */

static int import_tree(cn_ns *ns, const char *local, const char *path, int *bad);

static int same_meta(const cn_attr *a, const cn_attr *b)
{
  return a->type == b->type && a->size == b->size && a->mtime_ns == b->mtime_ns &&
         a->mode == b->mode && a->uid == b->uid && a->gid == b->gid;
}

static int import_one(cn_ns *ns, const char *local, const char *path, int *bad)
{
  struct stat st;
  cn_attr meta, old;
  if (lstat(local, &st) < 0) {
    (*bad)++;
    return fail(EXIT_FAIL, "%s: %s", local, strerror(errno)), 0;
  }
  attr_from_stat(&meta, &st);
  int have_old = cn_ns_stat(ns, path, &old) == 0, rc = 0;
  cn_ftype type = S_ISREG(st.st_mode) ? CN_FILE : S_ISDIR(st.st_mode) ? CN_DIR :
                  S_ISLNK(st.st_mode) ? CN_SYMLINK : S_ISFIFO(st.st_mode) ? CN_FIFO :
                  S_ISSOCK(st.st_mode) ? CN_SOCKET : 0;
  if (!type) {
    (*bad)++;
    fail(EXIT_FAIL, "%s: device files are not stored (skipped)", local);
    return 0;
  }
  meta.type = type;
  meta.size = type == CN_FILE || type == CN_SYMLINK ? (uint64_t)st.st_size : 0;
  if (have_old && old.type != type) {
    if ((rc = cn_ns_remove(ns, path, 1)) < 0)
      goto done;
    have_old = 0;
  }
  if (type == CN_DIR) {
    if (!have_old)
      rc = cn_ns_mkdir(ns, path, &meta, 0);
    if (!rc)
      rc = import_tree(ns, local, path, bad);
    cn_attr now;
    /* children may have touched the directory's times: put the originals back */
    if (!rc && (cn_ns_stat(ns, path, &now) < 0 || !same_meta(&now, &meta)))
      rc = cn_ns_setattr(ns, path, &meta);
  } else if (have_old && same_meta(&old, &meta)) {
    return 0; /* unchanged, by rsync's quick check */
  } else if (type == CN_FILE) {
    int fd = open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      (*bad)++;
      return fail(EXIT_FAIL, "%s: %s", local, strerror(errno)), 0;
    }
    rc = cn_ns_write_from_fd(ns, path, fd, &meta);
    close(fd);
  } else if (type == CN_SYMLINK) {
    char target[4096];
    ssize_t n = readlink(local, target, sizeof target - 1);
    if (n < 0) {
      (*bad)++;
      return fail(EXIT_FAIL, "%s: %s", local, strerror(errno)), 0;
    }
    target[n] = 0;
    rc = cn_ns_symlink(ns, path, target, &meta);
  } else {
    if (have_old)
      rc = cn_ns_remove(ns, path, 0);
    if (!rc)
      rc = cn_ns_mknod(ns, path, type, &meta);
  }
done:
  if (rc < 0) {
    /* a store or index failure stops the import; one bad source file does not */
    if (rc == -ENOSPC || rc == -EIO || rc == -ENOMEM)
      return fail(EXIT_FAIL, "%s: %s", local, cn_err()), rc;
    (*bad)++;
    fail(EXIT_FAIL, "%s: %s", local, cn_err());
  }
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dots(const struct dirent *e)
{
  return strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
}

typedef struct { char **names; size_t n, cap; } name_list;

static int collect_name(const char *name, const cn_attr *a, void *ctx)
{
  name_list *l = ctx;
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->names = realloc(l->names, l->cap * sizeof *l->names);
    if (!l->names)
      abort();
  }
  l->names[l->n++] = strdup(name);
  return 0;
}

static char *child_path(const char *dir, const char *name)
{
  char *p;
  if (asprintf(&p, "%s/%s", strcmp(dir, "/") ? dir : "", name) < 0)
    abort();
  return p;
}

static int import_tree(cn_ns *ns, const char *local, const char *path, int *bad)
{
  struct dirent **names;
  int n = scandir(local, &names, skip_dots, by_name);
  if (n < 0) {
    (*bad)++;
    return fail(EXIT_FAIL, "%s: %s", local, strerror(errno)), 0;
  }
  /* both lists are in strcmp order: walk them together to find what went away */
  name_list old = {0};
  int rc = cn_ns_list(ns, path, collect_name, &old);
  for (size_t i = 0, j = 0; !rc && i < old.n; i++) {
    while (j < (size_t)n && strcmp(names[j]->d_name, old.names[i]) < 0)
      j++;
    if (j < (size_t)n && !strcmp(names[j]->d_name, old.names[i]))
      continue;
    char *gone = child_path(path, old.names[i]);
    rc = cn_ns_remove(ns, gone, 1);
    free(gone);
  }
  for (size_t i = 0; i < old.n; i++)
    free(old.names[i]);
  free(old.names);
  for (int i = 0; i < n; i++) {
    if (!rc) {
      char *child_local, *child = child_path(path, names[i]->d_name);
      if (asprintf(&child_local, "%s/%s", local, names[i]->d_name) < 0)
        abort();
      rc = import_one(ns, child_local, child, bad);
      free(child_local);
      free(child);
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

/* put and get: "[-r LOCALDIR] NS:/path", opening the store and the namespace. */
static int open_transfer(int argc, char **argv, int for_write, const char **local, cn_store **s,
                         cn_ns **ns, const char **path)
{
  static const struct option opts[] = {{"recursive", required_argument, 0, 'r'}, {0, 0, 0, 0}};
  int c;
  *local = NULL;
  while ((c = getopt_long(argc, argv, "r:", opts, NULL)) != -1) {
    if (c != 'r')
      return usage_error("unknown option");
    *local = optarg;
  }
  if (optind + 1 != argc)
    return usage_error("expected one NS:/path");
  if (open_store(s))
    return EXIT_FAIL;
  int code = open_target(argv[optind], *s, for_write, ns, path);
  if (code)
    cn_store_close(*s);
  return code;
}

static int cmd_put(int argc, char **argv)
{
  const char *local, *path;
  cn_store *s;
  cn_ns *ns;
  int code = open_transfer(argc, argv, 1, &local, &s, &ns, &path);
  if (code)
    return code;
  int bad = 0, rc = 0;
  if (local) {
    struct stat st;
    cn_attr meta;
    if (stat(local, &st) < 0 || !S_ISDIR(st.st_mode)) {
      code = fail(EXIT_FAIL, "%s: not a directory", local);
      goto out;
    }
    /* NS:/path becomes a copy of LOCALDIR; the parents are made as needed */
    cn_attr old;
    attr_from_stat(&meta, &st);
    meta.type = CN_DIR;
    rc = cn_ns_stat(ns, path, &old);
    if (!rc && old.type != CN_DIR)
      rc = cn_ns_remove(ns, path, 0);
    else if (rc == -ENOENT)
      rc = 0;
    if (!rc && cn_ns_stat(ns, path, &old) == -ENOENT)
      rc = cn_ns_mkdir(ns, path, &meta, 1);
    if (!rc)
      rc = import_tree(ns, local, path, &bad);
    if (!rc && (cn_ns_stat(ns, path, &old) < 0 || !same_meta(&old, &meta)))
      rc = cn_ns_setattr(ns, path, &meta);
    if (rc < 0) {
      code = fail(EXIT_FAIL, "%s: %s", path, cn_err());
      goto out;
    }
  } else {
    if (isatty(STDIN_FILENO)) {
      code = fail(EXIT_USAGE, "put reads the file from standard input (redirect it: cairn put NS:/path < FILE)");
      goto out;
    }
    if ((rc = cn_ns_write_from_fd(ns, path, STDIN_FILENO, NULL)) < 0) {
      code = fail(rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL, "%s: %s", path, cn_err());
      goto out;
    }
  }
  code = commit(ns);
  if (!code && bad)
    code = fail(EXIT_FAIL, "%d entries could not be stored (see above); the rest were committed", bad);
out:
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

/* ---- get ---- */

static int export_tree(cn_ns *ns, const char *path, const char *local);

typedef struct {
  cn_ns *ns;
  const char *path, *local;
  int rc;
} export_ctx;

static void set_times(const char *local, const cn_attr *a)
{
  struct timespec ts[2] = {{a->atime_ns / 1000000000, a->atime_ns % 1000000000},
                           {a->mtime_ns / 1000000000, a->mtime_ns % 1000000000}};
  utimensat(AT_FDCWD, local, ts, AT_SYMLINK_NOFOLLOW);
}

static int export_entry(const char *name, const cn_attr *a, void *ctx_)
{
  export_ctx *ctx = ctx_;
  char *path, *local;
  if (asprintf(&path, "%s/%s", strcmp(ctx->path, "/") ? ctx->path : "", name) < 0 ||
      asprintf(&local, "%s/%s", ctx->local, name) < 0)
    abort();
  int rc = 0;
  if (a->type == CN_DIR) {
    if (mkdir(local, 0700) < 0 && errno != EEXIST)
      rc = cn_fail(errno, "%s: %s", local, strerror(errno));
    else
      rc = export_tree(ctx->ns, path, local);
  } else if (a->type == CN_FILE) {
    /* a file appears only once all of it was verified: no partial file on bad data */
    char *partial;
    if (asprintf(&partial, "%s/.%s.cairn-partial", ctx->local, name) < 0)
      abort();
    int fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      rc = cn_fail(errno, "%s: %s", local, strerror(errno));
    else {
      rc = cn_ns_read_to_fd(ctx->ns, path, fd);
      if (close(fd) < 0 && !rc)
        rc = cn_fail(errno, "%s: %s", local, strerror(errno));
      if (!rc && rename(partial, local) < 0)
        rc = cn_fail(errno, "%s: %s", local, strerror(errno));
      if (rc)
        unlink(partial);
    }
    free(partial);
  } else if (a->type == CN_SYMLINK) {
    char *target;
    rc = cn_ns_readlink(ctx->ns, path, &target);
    if (!rc && symlink(target, local) < 0)
      rc = cn_fail(errno, "%s: %s", local, strerror(errno));
    if (!rc)
      free(target);
  } else if (a->type == CN_FIFO) {
    if (mkfifo(local, 0600) < 0)
      rc = cn_fail(errno, "%s: %s", local, strerror(errno));
  } /* sockets cannot be recreated without a listener: the entry is skipped */
  if (!rc && a->type != CN_SYMLINK && a->type != CN_SOCKET) {
    if (geteuid() == 0 && lchown(local, a->uid, a->gid) < 0)
      rc = cn_fail(errno, "%s: %s", local, strerror(errno));
    chmod(local, a->mode);
  }
  if (!rc && a->type != CN_SOCKET)
    set_times(local, a);
  if (rc < 0) {
    fail(EXIT_FAIL, "%s", cn_err());
    ctx->rc = rc;
    rc = (rc == -EIO) ? rc : 0; /* keep going past local problems; stop on corrupt data */
  }
  free(path);
  free(local);
  return rc;
}

static int export_tree(cn_ns *ns, const char *path, const char *local)
{
  export_ctx ctx = {ns, path, local, 0};
  int rc = cn_ns_list(ns, path, export_entry, &ctx);
  return rc < 0 ? rc : ctx.rc;
}

static int cmd_get(int argc, char **argv)
{
  const char *local, *path;
  cn_store *s;
  cn_ns *ns;
  int code = open_transfer(argc, argv, 0, &local, &s, &ns, &path);
  if (code)
    return code;
  int rc;
  if (local) {
    cn_attr a;
    rc = cn_ns_stat(ns, path, &a);
    if (!rc && a.type != CN_DIR)
      rc = cn_fail(ENOTDIR, "'%s' is not a directory", path);
    if (!rc && mkdir(local, 0755) < 0 && errno != EEXIST)
      rc = cn_fail(errno, "%s: %s", local, strerror(errno));
    if (!rc)
      rc = export_tree(ns, path, local);
    if (!rc) {
      chmod(local, a.mode);
      set_times(local, &a);
    }
  } else {
    rc = cn_ns_read_to_fd(ns, path, STDOUT_FILENO);
  }
  if (rc < 0)
    code = fail(rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL, "%s: %s", path, cn_err());
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

/* ---- ls, rm, mkdir ---- */

typedef struct {
  cn_ns *ns;
  const char *dir;
  int longform;
} ls_ctx;

static void mode_string(const cn_attr *a, char out[11])
{
  static const char types[] = {'?', '-', 'd', 'l', 'p', 's'};
  out[0] = types[a->type <= CN_SOCKET ? a->type : 0];
  const char *rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; i++)
    out[1 + i] = (a->mode & (0400 >> i)) ? rwx[i] : '-';
  if (a->mode & 04000) out[3] = (a->mode & 0100) ? 's' : 'S';
  if (a->mode & 02000) out[6] = (a->mode & 0010) ? 's' : 'S';
  if (a->mode & 01000) out[9] = (a->mode & 0001) ? 't' : 'T';
  out[10] = 0;
}

static int ls_entry(const char *name, const cn_attr *a, void *ctx_)
{
  ls_ctx *ctx = ctx_;
  if (!ctx->longform) {
    printf("%s\n", name);
    return 0;
  }
  char mode[11], when[32];
  time_t t = (time_t)(a->mtime_ns / 1000000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  mode_string(a, mode);
  printf("%s %6u %6u %12" PRIu64 " %s %s", mode, a->uid, a->gid, a->size, when, name);
  if (a->type == CN_SYMLINK) {
    char *path, *target;
    if (asprintf(&path, "%s/%s", strcmp(ctx->dir, "/") ? ctx->dir : "", name) < 0)
      abort();
    if (cn_ns_readlink(ctx->ns, path, &target) == 0) {
      printf(" -> %s", target);
      free(target);
    }
    free(path);
  }
  putchar('\n');
  return 0;
}

static int cmd_ls(int argc, char **argv)
{
  int c, longform = 0;
  while ((c = getopt(argc, argv, "l")) != -1) {
    if (c != 'l')
      return usage_error("unknown option");
    longform = 1;
  }
  if (optind + 1 != argc)
    return usage_error("expected one NS:/path");
  cn_store *s;
  cn_ns *ns;
  const char *path;
  if (open_store(&s))
    return EXIT_FAIL;
  int code = open_target(argv[optind], s, 0, &ns, &path);
  if (code) {
    cn_store_close(s);
    return code;
  }
  cn_attr a;
  ls_ctx ctx = {ns, path, longform};
  int rc = cn_ns_stat(ns, path, &a);
  if (!rc && a.type == CN_DIR)
    rc = cn_ns_list(ns, path, ls_entry, &ctx);
  else if (!rc) {
    const char *base = strrchr(path, '/');
    ctx.dir = "/";
    rc = ls_entry(base ? base + 1 : path, &a, &ctx);
  }
  if (rc < 0)
    code = fail(rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL, "%s: %s", path, cn_err());
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

static int mutate(int argc, char **argv, const char *flags, int (*op)(cn_ns *ns, const char *path, int flag))
{
  int c, flag = 0;
  while ((c = getopt(argc, argv, flags)) != -1) {
    if (c == '?')
      return usage_error("unknown option");
    flag = 1;
  }
  if (optind >= argc)
    return usage_error("expected NS:/path");
  cn_store *s;
  if (open_store(&s))
    return EXIT_FAIL;
  int code = EXIT_OK;
  for (int i = optind; i < argc && !code; i++) {
    cn_ns *ns;
    const char *path;
    code = open_target(argv[i], s, 1, &ns, &path);
    if (code)
      break;
    int rc = op(ns, path, flag);
    code = rc < 0 ? fail(rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL, "%s: %s", argv[i], cn_err()) : commit(ns);
    cn_ns_close(ns);
  }
  cn_store_close(s);
  return code;
}

static int rm_op(cn_ns *ns, const char *path, int recursive) { return cn_ns_remove(ns, path, recursive); }
static int mkdir_op(cn_ns *ns, const char *path, int parents) { return cn_ns_mkdir(ns, path, NULL, parents); }
static int cmd_rm(int argc, char **argv) { return mutate(argc, argv, "r", rm_op); }
static int cmd_mkdir(int argc, char **argv) { return mutate(argc, argv, "p", mkdir_op); }

/* ---- check ---- */

typedef struct { uint64_t seen, bad; cn_store *s; } scan_ctx;

static int scan_chunk(const uint8_t id[CN_ID_BYTES], void *ctx_)
{
  scan_ctx *ctx = ctx_;
  ctx->seen++;
  if (cn_store_verify(ctx->s, id) < 0)
    ctx->bad++; /* cn_store_get already logged the chunk */
  return 0;
}

static int check_one(cn_store *s, const cn_nskey *key, const char *label)
{
  cn_check_report r;
  char id[CN_NSID_LEN + 1];
  cn_nsid(key->pk, id);
  int rc = cn_ns_check(s, key, &r);
  printf("%s%s%s%s: %" PRIu64 " commits, %" PRIu64 " chunks, %" PRIu64 " files (%s access): %s\n", id,
         label[0] ? " (" : "", label, label[0] ? ")" : "", r.commits, r.chunks, r.files,
         access_name(key->access), rc < 0 ? "PROBLEMS" : "ok");
  if (rc < 0)
    printf("  %" PRIu64 " problems (listed above on stderr)\n", r.bad);
  return rc < 0;
}

static int start_node(cn_store *s, const char *listen_on, cn_node **node);

static int cmd_check(int argc, char **argv)
{
  static const struct option opts[] = {{"all", no_argument, 0, 'a'}, {"store", no_argument, 0, 's'},
                                       {"repair", no_argument, 0, 'r'}, {0, 0, 0, 0}};
  int c, all_chunks = 0, store_only = 0, repair = 0;
  while ((c = getopt_long(argc, argv, "asr", opts, NULL)) != -1) {
    if (c == 'a')
      all_chunks = 1;
    else if (c == 's')
      all_chunks = store_only = 1;
    else if (c == 'r')
      repair = 1;
    else
      return usage_error("unknown option");
  }
  if (repair && store_only)
    return usage_error("--repair checks namespaces: it does not go with --store");
  if (optind + 1 < argc)
    return usage_error("expected at most one namespace");
  cn_store *s;
  if (open_store(&s))
    return EXIT_FAIL;
  cn_cap cap;
  if (optind < argc && object_cap(argv[optind], &cap)) {
    cn_check_report r;
    int rc = cn_cap_check(s, &cap, &r);
    printf("%s cap: %" PRIu64 " chunks, %" PRIu64 " files: %s\n", cn_cap_kind_name(cap.kind), r.chunks,
           r.files, rc < 0 ? "PROBLEMS" : "ok");
    if (rc < 0)
      printf("  %" PRIu64 " problems (listed above on stderr)\n", r.bad);
    scan_ctx ctx = {0, 0, s};
    if (all_chunks) {
      cn_store_foreach(s, scan_chunk, &ctx);
      printf("store: %" PRIu64 " chunk files, %" PRIu64 " corrupt\n", ctx.seen, ctx.bad);
    }
    cn_store_close(s);
    return rc < 0 || ctx.bad ? EXIT_FAIL : EXIT_OK;
  }
  cn_node *node = NULL;
  if (repair && cn_node_ask(home, "port", NULL, NULL) == 0) {
    cn_store_close(s);
    return fail(EXIT_FAIL, "a node (cairn serve or mount) is running on %s: stop it, then repair", home);
  }
  if (repair) {
    /* first pass, offline: every corrupt chunk file in the store is moved aside (so that
     * no torrent claims it); then a node of its own, on any port of the configured
     * address, fetches whatever is missing during the real check below */
    cn_store_set_repair(s, 1);
    scan_ctx moved = {0, 0, s};
    cn_store_foreach(s, scan_chunk, &moved);
    if (moved.bad)
      printf("repair: %" PRIu64 " corrupt chunk files moved to tmp/.corrupt.*\n", moved.bad);
    cn_store_set_repair(s, 0);
    char addr[300], host[256], any[300];
    int port;
    cn_config_listen(s, addr, sizeof addr);
    if (cn_parse_hostport(addr, host, sizeof host, &port) < 0)
      snprintf(host, sizeof host, "0.0.0.0");
    snprintf(any, sizeof any, strchr(host, ':') ? "[%s]:0" : "%s:0", host);
    if (start_node(s, any, &node)) {
      cn_store_close(s);
      return EXIT_FAIL;
    }
  }
  cn_keyring kr;
  int bad = 0, rc = cn_keyring_load(home, 0, &kr);
  if (rc < 0) {
    cn_node_stop(node);
    cn_store_close(s);
    return fail(EXIT_FAIL, "%s", cn_err());
  }
  if (store_only) {
    /* a node holding part of a namespace (a reader): only what it holds is checked */
  } else if (optind < argc) {
    cn_nskey key;
    int held;
    rc = cn_keyring_resolve(&kr, argv[optind], &key, &held);
    if (rc < 0) {
      cn_keyring_free(&kr);
      cn_node_stop(node);
      cn_store_close(s);
      return fail_rc(rc, argv[optind]);
    }
    bad += check_one(s, &key, "");
    cn_nskey_wipe(&key);
  } else {
    for (size_t i = 0; i < kr.n; i++)
      bad += check_one(s, &kr.entries[i].key, kr.entries[i].petname);
  }
  if (all_chunks) {
    scan_ctx ctx = {0, 0, s};
    cn_store_foreach(s, scan_chunk, &ctx);
    printf("store: %" PRIu64 " chunk files, %" PRIu64 " corrupt\n", ctx.seen, ctx.bad);
    bad += ctx.bad > 0;
  }
  cn_keyring_free(&kr);
  cn_node_stop(node);
  cn_store_close(s);
  return bad ? EXIT_FAIL : EXIT_OK;
}

/* ---- mount ---- */

/* Splits "-o a,b,commit_interval=3,c": cairn's own options are taken out, the rest go to
 * libfuse. Returns -1 on a malformed cairn option. */
static int parse_mount_options(const char *in, cn_mount_opts *o, char *fuse_out, size_t cap)
{
  char *copy = strdup(in), *save = NULL;
  fuse_out[0] = 0;
  int rc = 0;
  for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
    if (!strncmp(opt, "commit_interval=", 16)) {
      char *end;
      long v = strtol(opt + 16, &end, 10);
      if (*end || v < 1 || v > 3600)
        rc = -1;
      o->commit_interval_s = (int)v;
    } else if (!strcmp(opt, "_netdev") || !strcmp(opt, "defaults") || !strcmp(opt, "auto") ||
               !strcmp(opt, "noauto") || !strcmp(opt, "user") || !strcmp(opt, "nofail")) {
      continue; /* fstab's own words, meaningless to FUSE */
    } else {
      if (fuse_out[0])
        strncat(fuse_out, ",", cap - strlen(fuse_out) - 1);
      strncat(fuse_out, opt, cap - strlen(fuse_out) - 1);
    }
  }
  free(copy);
  return rc;
}

static int run_mount(cn_mount_opts *o)
{
  struct stat st;
  if (stat(o->mountpoint, &st) < 0 || !S_ISDIR(st.st_mode))
    return fail(EXIT_FAIL, "%s: not a directory", o->mountpoint);
  /* jobs in writable namespaces run inside the mount (compute/ plugs into its hooks) */
  cn_compute *jobs;
  int rc = cn_compute_open(home, NULL, &jobs);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s", cn_err());
  cn_compute_mount_hooks(jobs, &o->hooks);
  rc = cn_mount(home, o);
  cn_compute_close(jobs);
  return rc < 0 ? fail(EXIT_FAIL, "mount: %s", cn_err()) : EXIT_OK;
}

static int cmd_mount(int argc, char **argv)
{
  static const struct option opts[] = {{"foreground", no_argument, 0, 'f'},
                                       {"options", required_argument, 0, 'o'},
                                       {"commit-interval", required_argument, 0, 'c'},
                                       {"debug", no_argument, 0, 'd'},
                                       {"listen", required_argument, 0, 'l'},
                                       {"offline", no_argument, 0, 'n'},
                                       {0, 0, 0, 0}};
  cn_mount_opts o = {0};
  char fuse_options[1024] = "";
  int c;
  while ((c = getopt_long(argc, argv, "fo:c:dl:n", opts, NULL)) != -1) {
    switch (c) {
    case 'f': o.foreground = 1; break;
    case 'l': {
      char host[256];
      int port;
      if (cn_parse_hostport(optarg, host, sizeof host, &port) < 0)
        return fail(EXIT_USAGE, "--listen: %s", cn_err());
      o.listen = optarg;
      break;
    }
    case 'n': o.offline = 1; break;
    case 'd': o.debug = 1; o.foreground = 1; break;
    case 'o':
      if (parse_mount_options(optarg, &o, fuse_options, sizeof fuse_options) < 0)
        return usage_error("commit_interval must be 1..3600 seconds");
      break;
    case 'c':
      o.commit_interval_s = atoi(optarg);
      if (o.commit_interval_s < 1 || o.commit_interval_s > 3600)
        return usage_error("--commit-interval must be 1..3600 seconds");
      break;
    default: return usage_error("unknown option");
    }
  }
  if (optind + 1 != argc)
    return usage_error("expected one mount point");
  o.mountpoint = argv[optind];
  o.fuse_options = fuse_options;
  return run_mount(&o);
}

/* Unmounts, then waits for the daemon to finish its last commit and exit: when umount
 * returns, everything written is committed. */
static int cmd_umount(int argc, char **argv)
{
  if (argc != 2)
    return usage_error("expected one mount point");
  char pidfile[4300];
  pid_t daemon_pid = 0;
  if (cn_mount_pidfile(home, argv[1], pidfile, sizeof pidfile) == 0) {
    FILE *f = fopen(pidfile, "re");
    int pid;
    if (f && fscanf(f, "%d", &pid) == 1)
      daemon_pid = (pid_t)pid;
    if (f)
      fclose(f);
  }
  /* Commit first (an fsync of the mount root commits every namespace): if that fails, a
   * full disk say, unmounting would drop what is not committed, so nothing is unmounted.
   * A child asks, so that a long commit can be reported while it runs; it checks the
   * mount is FUSE's (any way it was mounted) and lets a dead daemon's mount through. */
  pid_t committer = fork();
  if (committer == 0) {
    struct statfs sf;
    if (statfs(argv[1], &sf) < 0 || sf.f_type != FUSE_SUPER_MAGIC)
      _exit(0);
    int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _exit(root < 0 || fsync(root) == 0 ? 0 : errno > 0 && errno < 126 ? errno : EIO);
  }
  int commit_status = 0;
  for (int waited = 0; committer > 0 && waitpid(committer, &commit_status, WNOHANG) == 0; waited++) {
    if (waited == 20)
      fprintf(stderr, "cairn: committing what %s holds before unmounting...\n", argv[1]);
    usleep(100 * 1000);
  }
  if (committer > 0 && WIFEXITED(commit_status) && WEXITSTATUS(commit_status) != 0)
    return fail(EXIT_FAIL,
                "%s is still mounted: its changes cannot be committed (%s; the log says more: %s/cairn.log). "
                "Make room and run cairn umount again; fusermount3 -u %s unmounts and drops what is not committed",
                argv[1], strerror(WEXITSTATUS(commit_status)), home, argv[1]);
  pid_t child = fork();
  if (child == 0) {
    /* fusermount3 works for the mounting user and for root alike */
    execlp("fusermount3", "fusermount3", "-u", argv[1], (char *)NULL);
    _exit(127);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) < 0)
    return fail(EXIT_FAIL, "cannot run fusermount3: %s", strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(EXIT_FAIL, "fusermount3 -u %s failed%s", argv[1],
                WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (is fuse3 installed?)" : "");
  for (int waited = 0; daemon_pid > 0 && kill(daemon_pid, 0) == 0; waited++) {
    if (waited == 20)
      fprintf(stderr, "cairn: waiting for the last commit to finish...\n");
    usleep(100 * 1000);
  }
  return EXIT_OK;
}

/* mount -t fuse.cairn and fstab call "cairn HOME MOUNTPOINT -o OPTIONS". */
static int mount_helper(int argc, char **argv)
{
  cn_mount_opts o = {0};
  char fuse_options[1024] = "";
  free(home);
  home = strdup(argv[1]);
  o.mountpoint = argv[2];
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "-o") && i + 1 < argc) {
      if (parse_mount_options(argv[++i], &o, fuse_options, sizeof fuse_options) < 0)
        return fail(EXIT_USAGE, "commit_interval must be 1..3600 seconds");
    } else if (!strcmp(argv[i], "-f")) {
      o.foreground = 1;
    } else {
      return fail(EXIT_USAGE, "unexpected mount helper argument '%s'", argv[i]);
    }
  }
  o.fuse_options = fuse_options;
  return run_mount(&o);
}

/* ---- peers: serve, peers, host, status, sync ---- */

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) { (void)sig; stop_requested = 1; }

/* Follows every namespace in the keyring: hosted ones in full, the rest on demand. */
static int follow_keyring(cn_store *s, cn_node *node)
{
  cn_keyring kr;
  int rc = cn_keyring_load(home, 0, &kr);
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < kr.n; i++)
    cn_node_follow(node, kr.entries[i].key.pk,
                   cn_hosted_has(s, kr.entries[i].key.pk) ? CN_FOLLOW_HOST : CN_FOLLOW_READ);
  cn_keyring_free(&kr);
  return 0;
}

static int start_node(cn_store *s, const char *listen_on, cn_node **node)
{
  char addr[300];
  if (listen_on)
    snprintf(addr, sizeof addr, "%s", listen_on);
  else
    cn_config_listen(s, addr, sizeof addr);
  int rc = cn_node_start(s, addr, node);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s", cn_err());
  return follow_keyring(s, *node) < 0 ? fail(EXIT_FAIL, "%s", cn_err()) : 0;
}

static int cmd_serve(int argc, char **argv)
{
  const char *listen_on;
  int bad = listen_option(argc, argv, &listen_on);
  if (bad)
    return bad;
  cn_store *s;
  cn_node *node;
  if (open_store(&s))
    return EXIT_FAIL;
  if (start_node(s, listen_on, &node)) {
    cn_store_close(s);
    return EXIT_FAIL;
  }
  cn_log("serving %s on port %d", home, cn_node_port(node));
  signal(SIGINT, on_stop_signal);
  signal(SIGTERM, on_stop_signal);
  /* the keyring may grow (cairn host / ns add): follow new entries as they appear */
  while (!stop_requested) {
    usleep(200 * 1000);
    follow_keyring(s, node);
  }
  cn_log("stopping");
  cn_node_stop(node);
  cn_store_close(s);
  return EXIT_OK;
}

static int print_line(const char *line, void *ctx)
{
  (void)ctx;
  printf("%s\n", line);
  return 0;
}

static int print_peer(const char *host, int port, void *ctx)
{
  (void)ctx;
  printf("%s:%d known (no node running here)\n", host, port);
  return 0;
}

static int cmd_peers(int argc, char **argv)
{
  if (argc >= 2 && strcmp(argv[1], "add") != 0)
    return usage_error("expected nothing, or add HOST:PORT...");
  cn_store *s;
  if (open_store(&s))
    return EXIT_FAIL;
  int rc = 0;
  if (argc >= 2) {
    if (argc < 3) {
      cn_store_close(s);
      return usage_error("expected add HOST:PORT...");
    }
    for (int i = 2; i < argc && rc >= 0; i++)
      rc = cn_peers_add(s, argv[i]);
  } else if (cn_node_ask(home, "peers", print_line, NULL) < 0) {
    rc = cn_peers_foreach(s, print_peer, NULL);
  }
  cn_store_close(s);
  return rc < 0 ? fail_rc(rc, "peers") : EXIT_OK;
}

static int cmd_host(int argc, char **argv)
{
  if (argc != 2)
    return usage_error("expected one namespace cap (a verify-cap is enough)");
  cn_cap cap;
  cn_nskey key;
  if (cn_cap_parse(argv[1], &cap) < 0 || cn_nskey_from_cap(&key, &cap) < 0)
    return fail(EXIT_USAGE, "malformed cap: %s", cn_err());
  cn_keyring kr;
  int rc = cn_keyring_load(home, 1, &kr);
  if (!rc)
    rc = cn_keyring_add(&kr, &key, "");
  if (!rc)
    rc = cn_keyring_save(&kr);
  cn_keyring_free(&kr);
  cn_store *s;
  if (!rc && open_store(&s) == 0) {
    rc = cn_hosted_add(s, key.pk);
    cn_store_close(s);
  }
  if (rc < 0)
    return fail(EXIT_FAIL, "%s", cn_err());
  char id[CN_NSID_LEN + 1], req[128], hex[2 * CN_PK_BYTES + 1];
  cn_nsid(key.pk, id);
  cn_hex(key.pk, CN_PK_BYTES, hex);
  snprintf(req, sizeof req, "host %s", hex);
  int running = cn_node_ask(home, req, NULL, NULL) == 0;
  printf("%s hosted%s\n", id, running ? "" : " (a node starts hosting it with 'cairn serve' or 'cairn mount')");
  cn_nskey_wipe(&key);
  return EXIT_OK;
}

/* Resolves NS through the keyring to its key. */
static int ns_key(const char *name, cn_nskey *key)
{
  cn_keyring kr;
  int held, rc = cn_keyring_load(home, 0, &kr);
  if (!rc)
    rc = cn_keyring_resolve(&kr, name, key, &held);
  cn_keyring_free(&kr);
  return rc < 0 ? fail_rc(rc, name) : 0;
}

typedef struct {
  uint64_t seq, local, total;
  size_t packs, n_hosts;
  char hosts[16][64];
  char error[256];
} status_reply;

static int parse_status(const char *line, void *ctx)
{
  status_reply *r = ctx;
  unsigned long long a, b;
  if (sscanf(line, "seq %llu", &a) == 1)
    r->seq = a;
  else if (sscanf(line, "bytes %llu %llu", &a, &b) == 2)
    r->local = a, r->total = b;
  else if (sscanf(line, "packs %llu", &a) == 1)
    r->packs = (size_t)a;
  else if (!strncmp(line, "host ", 5) && r->n_hosts < 16)
    snprintf(r->hosts[r->n_hosts++], sizeof r->hosts[0], "%s", line + 5);
  else if (!strncmp(line, "error ", 6))
    snprintf(r->error, sizeof r->error, "%s", line + 6);
  return 0;
}

/* Status from the node serving this home, or from a node started here for the call. */
static int query_status(cn_node *own, const uint8_t pk[CN_PK_BYTES], status_reply *r)
{
  memset(r, 0, sizeof *r);
  if (own) {
    cn_ns_status st;
    int rc = cn_node_status(own, pk, &st);
    if (rc < 0)
      return rc;
    r->seq = st.seq, r->local = st.bytes_local, r->total = st.bytes_total, r->packs = st.n_packs;
    r->n_hosts = st.n_hosts;
    memcpy(r->hosts, st.hosts, sizeof r->hosts);
    return 0;
  }
  char req[128], hex[2 * CN_PK_BYTES + 1];
  cn_hex(pk, CN_PK_BYTES, hex);
  snprintf(req, sizeof req, "status %s", hex);
  int rc = cn_node_ask(home, req, parse_status, r);
  if (!rc && r->error[0])
    return cn_fail(ENOENT, "%s", r->error);
  return rc;
}

static int cmd_status(int argc, char **argv)
{
  if (argc > 2)
    return usage_error("expected at most one namespace");
  cn_keyring kr;
  int rc = cn_keyring_load(home, 0, &kr);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s", cn_err());
  cn_store *s;
  if (open_store(&s)) {
    cn_keyring_free(&kr);
    return EXIT_FAIL;
  }
  int bad = 0;
  for (size_t i = 0; i < kr.n; i++) {
    cn_nskey key;
    int held;
    if (argc == 2) {
      if (i > 0)
        break;
      if (cn_keyring_resolve(&kr, argv[1], &key, &held) < 0) {
        bad = fail_rc(-EINVAL, argv[1]);
        break;
      }
    } else {
      key = kr.entries[i].key;
    }
    char id[CN_NSID_LEN + 1];
    cn_nsid(key.pk, id);
    status_reply r;
    rc = query_status(NULL, key.pk, &r);
    if (rc == -ENOENT || rc == -ECONNREFUSED) {
      printf("%s  seq %llu  (no node running here: hosts unknown)\n", id,
             (unsigned long long)cn_store_root_seq(s, key.pk));
    } else if (rc < 0) {
      printf("%s  %s\n", id, cn_err());
    } else {
      printf("%s  seq %llu  packs %zu  local %llu of %llu bytes  hosts %zu\n", id,
             (unsigned long long)r.seq, r.packs, (unsigned long long)r.local,
             (unsigned long long)r.total, r.n_hosts);
      for (size_t h = 0; h < r.n_hosts; h++)
        printf("  host %s\n", r.hosts[h]);
    }
    cn_nskey_wipe(&key);
  }
  if (argc == 1 && kr.n == 0)
    printf("no namespaces held\n");
  cn_keyring_free(&kr);
  cn_store_close(s);
  return bad;
}

static int cmd_sync(int argc, char **argv)
{
  static const struct option opts[] = {{"replicas", required_argument, 0, 'r'},
                                       {"timeout", required_argument, 0, 't'},
                                       {0, 0, 0, 0}};
  long replicas = 1, timeout_s = 60;
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "r:t:", opts, NULL)) != -1) {
    switch (c) {
    case 'r':
      replicas = strtol(optarg, &end, 10);
      if (*end || replicas < 1 || replicas > 16)
        return usage_error("--replicas must be 1..16");
      break;
    case 't':
      timeout_s = strtol(optarg, &end, 10);
      if (*end || timeout_s < 1)
        return usage_error("--timeout must be a number of seconds");
      break;
    default: return usage_error("unknown option");
    }
  }
  if (optind + 1 != argc)
    return usage_error("expected one namespace");
  cn_nskey key;
  if (ns_key(argv[optind], &key))
    return EXIT_USAGE;
  cn_store *s;
  if (open_store(&s))
    return EXIT_FAIL;
  cn_node *own = NULL;
  status_reply r;
  int rc = query_status(NULL, key.pk, &r);
  if (rc == -ENOENT || rc == -ECONNREFUSED) {
    /* no node serves this home: be one for as long as the sync takes */
    if (start_node(s, NULL, &own)) {
      cn_store_close(s);
      return EXIT_FAIL;
    }
  }
  time_t until = time(NULL) + timeout_s;
  int ok = 0;
  for (;;) {
    rc = query_status(own, key.pk, &r);
    if (rc == 0 && r.n_hosts >= (size_t)replicas) {
      ok = 1;
      break;
    }
    if (time(NULL) >= until)
      break;
    usleep(50 * 1000); /* a local query: asking often returns soon after the last host's word */
  }
  char id[CN_NSID_LEN + 1];
  cn_nsid(key.pk, id);
  if (ok) {
    printf("%s seq %llu held in full by %zu hosts:\n", id, (unsigned long long)r.seq, r.n_hosts);
  } else if (rc < 0) {
    fprintf(stderr, "cairn: sync %s: %s\n", id, cn_err());
  } else {
    fprintf(stderr, "cairn: sync %s: seq %llu is held in full by %zu of the %ld hosts wanted "
            "after %ld s; missing %zu\n", id, (unsigned long long)r.seq, r.n_hosts, replicas,
            timeout_s, (size_t)replicas - r.n_hosts);
  }
  for (size_t h = 0; h < r.n_hosts; h++)
    printf("  host %s\n", r.hosts[h]);
  cn_node_stop(own);
  cn_store_close(s);
  cn_nskey_wipe(&key);
  return ok ? EXIT_OK : EXIT_FAIL;
}

/* ---- dispatch ---- */

/* ---- job ---- */

/* "NS:compute/NAME" (the leading slash is optional): opens NS and gives the job's dir. */
static int open_job(const char *arg, cn_store *s, int for_write, cn_ns **ns, char *dir, size_t cap)
{
  const char *path;
  int code = open_target(arg, s, for_write, ns, &path);
  if (code)
    return code;
  snprintf(dir, cap, "%s%s", path[0] == '/' ? "" : "/", path);
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/')
    dir[--len] = 0;
  const char *name = dir + strlen("/compute/");
  if (strncmp(dir, "/compute/", 9) || !name[0] || strchr(name, '/')) {
    cn_ns_close(*ns);
    *ns = NULL;
    return fail(EXIT_USAGE, "'%s': a job is a directory /compute/NAME of a namespace", arg);
  }
  return 0;
}

/* A program or input given to 'job new': a path the namespace has is used as it is; a
 * local file or directory is stored into the job's directory first. */
static int job_source(cn_ns *ns, const char *given, const char *store_dir, char **out)
{
  cn_attr a;
  if (given[0] == '/' && cn_ns_stat(ns, given, &a) == 0) {
    *out = strdup(given);
    return 0;
  }
  if (!strncasecmp(given, "cairn-", 6)) { /* a file cap */
    *out = strdup(given);
    return 0;
  }
  struct stat st;
  if (stat(given, &st) < 0)
    return fail(EXIT_FAIL, "%s: neither in the namespace nor a local file or directory", given);
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", given);
  size_t len = strlen(copy);
  while (len > 1 && copy[len - 1] == '/')
    copy[--len] = 0;
  const char *base = strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
  if (asprintf(out, "%s/%s", store_dir, base) < 0)
    abort();
  int rc = cn_ns_mkdir(ns, store_dir, NULL, 1);
  if (!rc && cn_ns_stat(ns, *out, &a) == 0)
    rc = cn_ns_remove(ns, *out, 1);
  int bad = 0;
  if (!rc && S_ISDIR(st.st_mode)) {
    cn_attr meta;
    attr_from_stat(&meta, &st);
    rc = cn_ns_mkdir(ns, *out, &meta, 0);
    if (!rc)
      rc = import_tree(ns, copy, *out, &bad);
  } else if (!rc) {
    int fd = open(copy, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return fail(EXIT_FAIL, "%s: %s", given, strerror(errno));
    cn_attr meta;
    attr_from_stat(&meta, &st);
    rc = cn_ns_write_from_fd(ns, *out, fd, &meta);
    close(fd);
  }
  if (rc < 0)
    return fail(EXIT_FAIL, "%s: %s", given, cn_err());
  if (bad)
    return fail(EXIT_FAIL, "%s: %d entries could not be stored", given, bad);
  return 0;
}

static int job_new(int argc, char **argv)
{
  static const struct option opts[] = {{"program", required_argument, 0, 'p'},
                                       {"input", required_argument, 0, 'i'},
                                       {"arg", required_argument, 0, 'a'},
                                       {"quorum", required_argument, 0, 'q'},
                                       {"cpu", required_argument, 0, 'c'},
                                       {"memory", required_argument, 0, 'm'},
                                       {0, 0, 0, 0}};
  const char *program = NULL;
  const char **inputs = calloc((size_t)argc, sizeof *inputs);
  const char **args = calloc((size_t)argc, sizeof *args);
  size_t n_inputs = 0, n_args = 0;
  char extra[128] = "";
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "p:i:a:q:c:m:", opts, NULL)) != -1) {
    switch (c) {
    case 'p': program = optarg; break;
    case 'i': inputs[n_inputs++] = optarg; break;
    case 'a': args[n_args++] = optarg; break;
    case 'q': case 'c': case 'm': {
      size_t l = strlen(extra);
      snprintf(extra + l, sizeof extra - l, "%s %s\n", c == 'q' ? "quorum" : c == 'c' ? "cpu" : "memory", optarg);
      break;
    }
    default: free(inputs); free(args); return usage_error("unknown option");
    }
  }
  if (optind >= argc || !program) {
    free(inputs);
    free(args);
    return usage_error("expected NS:compute/NAME --program PATH [--input PATH...]...");
  }
  /* "--input A B C": the paths after the job's name are inputs too */
  for (int i = optind + 1; i < argc; i++)
    inputs[n_inputs++] = argv[i];
  cn_store *s;
  cn_ns *ns;
  char dir[4096];
  int code = open_store(&s);
  if (!code && (code = open_job(argv[optind], s, 1, &ns, dir, sizeof dir))) {
    cn_store_close(s);
  }
  if (code) {
    free(inputs);
    free(args);
    return code;
  }
  char *in_dir;
  if (asprintf(&in_dir, "%s/in", dir) < 0)
    abort();
  cn_job_spec spec = {0};
  char *text = NULL;
  spec.inputs = calloc(n_inputs + 1, sizeof *spec.inputs);
  spec.args = calloc(n_args + 1, sizeof *spec.args);
  int rc = cn_ns_mkdir(ns, dir, NULL, 1);
  if (rc < 0)
    code = fail(EXIT_FAIL, "%s: %s", dir, cn_err());
  if (!code)
    code = job_source(ns, program, dir, &spec.program);
  for (size_t i = 0; i < n_inputs && !code; i++)
    if (!(code = job_source(ns, inputs[i], in_dir, &spec.inputs[spec.n_inputs])))
      spec.n_inputs++;
  for (size_t i = 0; i < n_args; i++)
    spec.args[spec.n_args++] = strdup(args[i]);
  /* the spec is checked the way the runner will read it */
  if (!code && !(text = cn_job_spec_format(&spec)))
    code = fail(EXIT_USAGE, "a program path, input or argument contains a newline");
  if (!code && extra[0]) {
    char *full;
    if (asprintf(&full, "%s%s", text, extra) < 0)
      abort();
    free(text);
    text = full;
  }
  cn_job_spec check;
  if (!code && cn_job_spec_parse(text, strlen(text), &check) < 0)
    code = fail(EXIT_USAGE, "%s", cn_err());
  else if (!code)
    cn_job_spec_free(&check);
  if (!code) {
    char *spec_path;
    if (asprintf(&spec_path, "%s/job", dir) < 0)
      abort();
    int fd = memfd_create("job", MFD_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || lseek(fd, 0, SEEK_SET) != 0)
      code = fail(EXIT_FAIL, "cannot stage the spec");
    else if ((rc = cn_ns_write_from_fd(ns, spec_path, fd, NULL)) < 0)
      code = fail(EXIT_FAIL, "%s: %s", spec_path, cn_err());
    if (fd >= 0)
      close(fd);
    free(spec_path);
  }
  if (!code)
    code = commit(ns);
  if (!code)
    fputs(text, stdout);
  free(text);
  cn_job_spec_free(&spec);
  free(in_dir);
  free(inputs);
  free(args);
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

static void print_outcome(const char *dir, const cn_job_outcome *o)
{
  if (o->reused)
    printf("%s: done %s\noutput %s\nanswered from this node's stored result of the job (not run)\n", dir, o->job_id,
           o->output_id);
  else if (!o->ran && o->ok)
    printf("%s: up to date: done %s\n", dir, o->job_id);
  else if (o->ok)
    printf("%s: done %s\noutput %s\nran in %.3f s (%s)\n", dir, o->job_id, o->output_id, o->run_seconds,
           o->built ? "module compiled" : "compiled module cached");
}

static int job_run(int argc, char **argv)
{
  int force = 0;
  const char *target = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--force"))
      force = 1;
    else if (!target)
      target = argv[i];
    else
      return usage_error("expected NS:compute/NAME [--force]");
  }
  if (!target)
    return usage_error("expected NS:compute/NAME [--force]");
  cn_store *s;
  cn_ns *ns;
  char dir[4096];
  int code = open_store(&s);
  if (code)
    return code;
  if ((code = open_job(target, s, 1, &ns, dir, sizeof dir))) {
    cn_store_close(s);
    return code;
  }
  cn_compute *c;
  cn_job_outcome o;
  int rc = cn_compute_open(home, s, &c);
  if (!rc)
    rc = cn_job_run(c, ns, dir, force, &o);
  cn_compute_close(c);
  cn_ns_close(ns);
  cn_store_close(s);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s: %s", dir, cn_err());
  print_outcome(dir, &o);
  return o.ok ? EXIT_OK : fail(EXIT_FAIL, "%s: failed: %s", dir, o.reason);
}

/* Prints a job's file (status or log) from the latest commit. */
static int job_show(int argc, char **argv, const char *file)
{
  if (argc != 2)
    return usage_error("expected NS:compute/NAME");
  cn_store *s;
  cn_ns *ns;
  char dir[4096], path[4200];
  int code = open_store(&s);
  if (code)
    return code;
  if ((code = open_job(argv[1], s, 0, &ns, dir, sizeof dir))) {
    cn_store_close(s);
    return code;
  }
  snprintf(path, sizeof path, "%s/%s", dir, file);
  cn_attr a;
  int rc = cn_ns_stat(ns, path, &a);
  if (rc == -ENOENT && !strcmp(file, "status"))
    printf("%s\n", cn_ns_stat(ns, dir, &a) == 0 ? "not run yet" : "no such job");
  else if (!rc)
    rc = cn_ns_read_to_fd(ns, path, STDOUT_FILENO);
  if (rc < 0 && !(rc == -ENOENT && !strcmp(file, "status")))
    code = fail(EXIT_FAIL, "%s: %s", path, cn_err());
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

static int job_ls(int argc, char **argv)
{
  if (argc != 2)
    return usage_error("expected NS");
  char target[512];
  snprintf(target, sizeof target, "%s%s", argv[1], strchr(argv[1], ':') ? "" : ":/");
  cn_store *s;
  cn_ns *ns;
  const char *path;
  int code = open_store(&s);
  if (code)
    return code;
  if ((code = open_target(target, s, 0, &ns, &path))) {
    cn_store_close(s);
    return code;
  }
  char **dirs;
  size_t n;
  int rc = cn_job_list(ns, &dirs, &n);
  for (size_t i = 0; i < n; i++) {
    char status_path[4200], line[256] = "not run yet";
    snprintf(status_path, sizeof status_path, "%s/status", dirs[i]);
    int fd = memfd_create("status", MFD_CLOEXEC);
    if (fd >= 0 && cn_ns_read_to_fd(ns, status_path, fd) == 0) {
      ssize_t got = pread(fd, line, sizeof line - 1, 0);
      line[got > 0 ? got : 0] = 0;
      line[strcspn(line, "\n")] = 0;
    }
    if (fd >= 0)
      close(fd);
    printf("%s\t%s\n", dirs[i] + strlen("/compute/"), line);
    free(dirs[i]);
  }
  free(dirs);
  if (rc < 0)
    code = fail(EXIT_FAIL, "%s", cn_err());
  cn_ns_close(ns);
  cn_store_close(s);
  return code;
}

static int job_verify(int argc, char **argv)
{
  if (argc != 2)
    return usage_error("expected NS:compute/NAME");
  cn_store *s;
  cn_ns *ns;
  char dir[4096];
  int code = open_store(&s);
  if (code)
    return code;
  if ((code = open_job(argv[1], s, 0, &ns, dir, sizeof dir))) {
    cn_store_close(s);
    return code;
  }
  cn_compute *c;
  cn_job_outcome o;
  int rc = cn_compute_open(home, s, &c);
  if (!rc)
    rc = cn_job_verify(c, ns, dir, &o);
  cn_compute_close(c);
  cn_ns_close(ns);
  cn_store_close(s);
  if (rc < 0)
    return fail(EXIT_FAIL, "%s: %s", dir, cn_err());
  if (!o.output_id[0])
    return fail(EXIT_FAIL, "%s: the job failed here: %s", dir, o.reason);
  if (!o.ok)
    return fail(EXIT_FAIL, "%s: MISMATCH: this node computed output %s, the status says %s", dir, o.output_id,
                o.stored_output);
  printf("%s: verified: output %s (job %s, ran in %.3f s)\n", dir, o.output_id, o.job_id, o.run_seconds);
  return EXIT_OK;
}

static int cmd_job(int argc, char **argv)
{
  if (argc < 2)
    return usage_error("expected new, run, ls, status or log");
  const char *sub = argv[1];
  if (!strcmp(sub, "new"))
    return job_new(argc - 1, argv + 1);
  if (!strcmp(sub, "run"))
    return job_run(argc - 1, argv + 1);
  if (!strcmp(sub, "ls"))
    return job_ls(argc - 1, argv + 1);
  if (!strcmp(sub, "status"))
    return job_show(argc - 1, argv + 1, "status");
  if (!strcmp(sub, "log"))
    return job_show(argc - 1, argv + 1, "log");
  if (!strcmp(sub, "verify"))
    return job_verify(argc - 1, argv + 1);
  return usage_error("expected new, run, ls, status, log or verify");
}

static const command commands[] = {
  {"mount", "[-f] [-o OPTIONS] [--commit-interval S] [--listen HOST:PORT|--offline] MOUNTPOINT",
   "Mount every namespace in the keyring at MOUNTPOINT, one directory per namespace ID,\n"
   "petnames as symlinks; looking up a cap string at the root adds it. Without -f it\n"
   "returns once the mount is live and serves in the background. Writes are committed on\n"
   "fsync, every S seconds (default 5; -o commit_interval=S) and at unmount. -o passes\n"
   "FUSE options (allow_other, ro, ...). Also usable as mount -t fuse.cairn HOME MNT.\n"
   "The mount is also a node (see serve): --listen overrides the home's address,\n"
   "--offline runs without peers.", cmd_mount},
  {"serve", "[--listen HOST:PORT]",
   "Run a node without a mount: seed what this home holds, host the namespaces given to\n"
   "'cairn host', re-publish their signed roots. Stops on SIGINT/SIGTERM.", cmd_serve},
  {"peers", "[add HOST:PORT...]",
   "List known peers (with their state when a node runs here) or add some; nodes\n"
   "bootstrap from this list.", cmd_peers},
  {"host", "CAP",
   "Host a namespace (a verify-cap is enough): fetch every pack, seed it, re-publish its\n"
   "root. Takes effect in the running node, or the next 'serve'/'mount'.", cmd_host},
  {"status", "[NS]",
   "Latest seq, packs, bytes held here of the total, and the hosts that hold the latest\n"
   "commit in full (needs a running node for hosts).", cmd_status},
  {"sync", "NS [--replicas N] [--timeout S]",
   "Wait until N other nodes (default 1) hold the latest commit of NS in full: exit 0, or\n"
   "exit 1 after S seconds (default 60) saying how many are missing.", cmd_sync},
  {"job", "new NS:compute/NAME --program PATH [--input PATH]... [--arg A]... [--quorum N] [--cpu S] [--memory MIB]\n"
          "     | run NS:compute/NAME [--force] | ls NS | status|log|verify NS:compute/NAME",
   "Deterministic WebAssembly jobs (docs/COMPUTE.md). 'new' writes the spec\n"
   "/compute/NAME/job (a PATH the namespace lacks is taken from the local disk and stored\n"
   "in the job's directory first); 'run' runs it unless its job ID matches the stored\n"
   "result (--force runs it anyway) and writes status, log and out/; 'ls' lists jobs with\n"
   "their status; 'status' and 'log' print those files; 'verify' runs the job again here\n"
   "(a read-cap is enough), compares its output with the status and publishes this node's\n"
   "signed record (quorum). In a mount, jobs run by themselves when their spec is written\n"
   "or an input changes.", cmd_job},
  {"umount", "MOUNTPOINT", "Unmount (the daemon commits what is pending, then exits).", cmd_umount},
  {"init", "[--listen HOST:PORT]",
   "Create the node's home ($CAIRN_HOME or --home): identity, keyring, store; --listen\n"
   "sets the address its node listens on (default 0.0.0.0:0, any port).", cmd_init},
  {"ns", "new [--name PETNAME] | ls | add CAP [--name PETNAME]",
   "Namespaces: 'new' makes one and prints its write-cap (keep it secret); 'ls' lists\n"
   "those held (ID, access, seq, petname); 'add' takes a write-, read- or verify-cap.", cmd_ns},
  {"cap", "NS [--write|--read|--verify] | NS:/path [--read|--verify]",
   "Print a cap for NS (default --read). Caps only ever diminish: write > read > verify.\n"
   "With NS:/path, print a file or directory cap (cairn-fr1-/cairn-dr1-, or with --verify\n"
   "cairn-fv1-/cairn-dv1-) naming an immutable snapshot of that entry as it is now: it\n"
   "keeps reading the same bytes after the entry changes or is removed. A file's first cap\n"
   "needs a commit, so only the namespace's writer can make it.", cmd_cap},
  {"put", "NS:/path < FILE | -r LOCALDIR NS:/path",
   "Store standard input as a file, or (-r) make NS:/path a copy of LOCALDIR the way\n"
   "rsync -a does: unchanged entries (same type, size, mtime, mode, owner) are kept,\n"
   "changed ones re-stored, vanished ones removed. Missing parents are created.\n"
   "One commit per run; nothing is committed if the run is interrupted.", cmd_put},
  {"get", "NS:/path > FILE | -r LOCALDIR NS:/path",
   "Write a file to standard output, or (-r) copy a directory tree into LOCALDIR,\n"
   "with modes, times and (as root) owners. Every chunk is verified and decrypted.\n"
   "NS:/path may be a file cap, or a directory cap with an optional :/path below it;\n"
   "these need no keyring entry.", cmd_get},
  {"ls", "[-l] NS:/path", "List a directory (or one entry); -l adds mode, owner, size, mtime.\n"
   "NS:/path may be a file or directory cap, as for get.", cmd_ls},
  {"rm", "[-r] NS:/path...", "Remove entries; -r for non-empty directories.", cmd_rm},
  {"mkdir", "[-p] NS:/path...", "Make directories; -p makes parents and accepts existing ones.", cmd_mkdir},
  {"check", "[--all|--store|--repair] [NS | CAP]",
   "Verify every commit and listed chunk of NS (default: every namespace held) and, with\n"
   "a read- or write-cap, decrypt every node and chunk of the latest tree. A file or\n"
   "directory read cap: decrypt everything it names; a verify cap: check its one object.\n"
   "--all also verifies every chunk file in the store; --store only that (for a node\n"
   "holding part of a namespace). --repair joins the peers and fetches every missing or\n"
   "corrupt chunk again (corrupt ones are kept as tmp/.corrupt.<id>). Exit 1 if anything\n"
   "is still bad.", cmd_check},
};

static void usage(FILE *f)
{
  fprintf(f, "usage: cairn [--home DIR] COMMAND [ARGS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-6s %s\n", commands[i].name, commands[i].usage);
  fprintf(f, "\nNS is a petname, a namespace ID or a cap string. 'cairn COMMAND --help' for more.\n"
             "A file or directory cap (cairn-fr1-..., cairn-dr1-...) names a read-only snapshot\n"
             "and stands for NS:/path in get, ls and check.\n"
             "Exit status: 0 done, 1 failed, 2 bad command line or cap.\n");
}

/* A fatal signal leaves a line and the stack in the log (frames inside cairn resolve with
 * addr2line -e against this binary): a mount that dies, dies far from a terminal, and
 * "Transport endpoint is not connected" says nothing of why. Only async-signal-safe calls,
 * besides backtrace, whose library is loaded beforehand. AddressSanitizer reports these
 * signals itself, better: its builds leave them alone. */
#if !defined(__SANITIZE_ADDRESS__)
static void report_fatal_signal(int sig)
{
  char line[64] = "cairn: fatal signal ";
  size_t len = strlen(line);
  if (sig >= 10)
    line[len++] = (char)('0' + sig / 10);
  line[len++] = (char)('0' + sig % 10);
  memcpy(line + len, "; stack:\n", 9);
  len += 9;
  (void)!write(STDERR_FILENO, line, len);
  void *frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}
#endif

static void install_fatal_signal_report(void)
{
#if !defined(__SANITIZE_ADDRESS__)
  void *warm[1];
  backtrace(warm, 1);
  static char alt_stack[64 * 1024]; /* the main thread's overflow still gets its report */
  stack_t ss = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = report_fatal_signal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
  for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
    sigaction(fatal[i], &sa, NULL);
#endif
}

/* The soft limit on open files is often 1024 while the hard limit is far higher. A node
 * holds a descriptor per staged file (until it is sealed or committed), per peer
 * connection and per pack file libtorrent has open, so it takes what it is allowed. */
static void raise_open_file_limit(void)
{
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
}

int main(int argc, char **argv)
{
  install_fatal_signal_report();
  /* a job worker (compute/worker.c) is this program started again: nothing else runs */
  if (argc > 1 && !strcmp(argv[1], "__wasm-worker")) {
    if (cn_crypto_init() < 0)
      return 70;
    return cn_compute_worker_main(argc, argv);
  }
  raise_open_file_limit();
  /* --home may appear anywhere before the command's own arguments end */
  int out = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--home") && i + 1 < argc) {
      home = strdup(argv[++i]);
    } else if (!strncmp(argv[i], "--home=", 7)) {
      home = strdup(argv[i] + 7);
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  argv[argc] = NULL;
  if (!home)
    home = cn_default_home();
  if (home && home[0] != '/') {
    /* a mount daemon changes to / : keep a relative home meaning what the user meant */
    char cwd[4096], *abs = NULL;
    if (getcwd(cwd, sizeof cwd) && asprintf(&abs, "%s/%s", cwd, home) > 0) {
      free(home);
      home = abs;
    }
  }
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return EXIT_OK;
  }
  if (cn_crypto_init() < 0)
    return fail(EXIT_FAIL, "%s", cn_err());
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
    if (strcmp(argv[1], commands[i].name))
      continue;
    current = &commands[i];
    for (int j = 2; j < argc; j++)
      if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
        printf("usage: cairn %s %s\n\n%s\n", commands[i].name, commands[i].usage, commands[i].help);
        return EXIT_OK;
      }
    int code = commands[i].run(argc - 1, argv + 1);
    free(home);
    return code;
  }
  struct stat st;
  if (argc >= 3 && strchr(argv[1], '/') && stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))
    return mount_helper(argc, argv);
  fprintf(stderr, "cairn: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return EXIT_USAGE;
}
