/* Unit tests for compute/: job specs and content tree IDs (docs/FORMAT.md §15). Running
 * modules is tested end to end by compute.sh. */
#include "compute/compute.h"
#include "compute/internal.h"
#include "check_main.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static char dir[256];

static void setup(void)
{
  snprintf(dir, sizeof dir, "/tmp/cairn-test-compute.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}

static int parse(const char *text, cn_job_spec *spec)
{
  return cn_job_spec_parse(text, strlen(text), spec);
}

START_TEST(spec_round_trip)
{
  cn_job_spec s;
  const char *text = "# a comment\n\ncairn-job 1\nprogram /tools/wc.wasm\ninput /site\ninput /more/docs\r\n"
                     "arg -l\narg two words\narg \nquorum 2\ncpu 60\nmemory 128\n";
  ck_assert_int_eq(parse(text, &s), 0);
  ck_assert_str_eq(s.program, "/tools/wc.wasm");
  ck_assert_uint_eq(s.n_inputs, 2);
  ck_assert_str_eq(s.inputs[1], "/more/docs");
  ck_assert_uint_eq(s.n_args, 3);
  ck_assert_str_eq(s.args[1], "two words");
  ck_assert_str_eq(s.args[2], "");
  ck_assert_uint_eq(s.quorum, 2);
  ck_assert_uint_eq(s.cpu_seconds, 60);
  ck_assert_uint_eq(s.memory_mib, 128);
  char *out = cn_job_spec_format(&s);
  cn_job_spec again;
  ck_assert_int_eq(parse(out, &again), 0);
  ck_assert_str_eq(again.args[1], "two words");
  ck_assert_uint_eq(again.n_inputs, 2);
  ck_assert_uint_eq(again.quorum, 2);
  ck_assert_uint_eq(again.cpu_seconds, 60);
  free(out);
  cn_job_spec_free(&again);
  s.args[0] = realloc(s.args[0], 8);
  strcpy(s.args[0], "a\nb");
  ck_assert_ptr_null(cn_job_spec_format(&s)); /* a newline cannot be written */
  cn_job_spec_free(&s);
  ck_assert_int_eq(parse("cairn-job 1\nprogram /p.wasm\n", &s), 0);
  ck_assert_uint_eq(s.cpu_seconds, CN_JOB_DEFAULT_CPU_SECONDS);
  ck_assert_uint_eq(s.quorum, 0);
  cn_job_spec_free(&s);
}
END_TEST

static void expect_error(const char *text, const char *needle)
{
  cn_job_spec s;
  ck_assert_int_eq(parse(text, &s), -EINVAL);
  ck_assert_msg(strstr(cn_err(), needle), "error '%s' does not mention '%s'", cn_err(), needle);
}

START_TEST(spec_errors_name_the_line)
{
  expect_error("", "empty");
  expect_error("cairn-job 2\nprogram /p\n", "line 1");
  expect_error("cairn-job 1\ninput /a\n", "no program");
  expect_error("cairn-job 1\nprogram /p\nprogram /q\n", "line 3");
  expect_error("cairn-job 1\nprogram /p\nfrobnicate yes\n", "unknown key 'frobnicate'");
  expect_error("cairn-job 1\nprogram /p\ninput relative/path\n", "line 3");
  expect_error("cairn-job 1\nprogram /p\ninput /a/x\ninput /b/x\n", "/in/x");
  expect_error("cairn-job 1\nprogram /p\nquorum 0\n", "quorum");
  expect_error("cairn-job 1\nprogram /p\ncpu lots\n", "cpu");
  expect_error("cairn-job 1\nprogram /p\nmemory 5000\n", "memory");
  expect_error("cairn-job 1\nprogram /p\ninput /a/../b\n", "line 3");
}
END_TEST

static void be64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/* The IDs computed by hand from the definition in FORMAT §15.3. */
START_TEST(tree_id_matches_the_definition)
{
  char path[400], sub[300];
  snprintf(sub, sizeof sub, "%s/t", dir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  snprintf(path, sizeof path, "%s/a", sub);
  write_file(path, "hi");
  snprintf(path, sizeof path, "%s/l", sub);
  ck_assert_int_eq(symlink("a", path), 0);

  uint8_t buf[256], file_id[32], link_id[32], want[32], got[32];
  size_t n = 0;
  memcpy(buf, "cairn-tree 1 file", 18), n = 18;
  be64(buf + n, 2), n += 8;
  memcpy(buf + n, "hi", 2), n += 2;
  cn_sha256(buf, n, file_id);
  n = 0;
  memcpy(buf, "cairn-tree 1 link", 18), n = 18;
  be64(buf + n, 1), n += 8;
  buf[n++] = 'a';
  cn_sha256(buf, n, link_id);
  n = 0;
  memcpy(buf, "cairn-tree 1 dir", 17), n = 17;
  be64(buf + n, 2), n += 8;
  be64(buf + n, 1), n += 8;
  buf[n++] = 'a';
  memcpy(buf + n, file_id, 32), n += 32;
  be64(buf + n, 1), n += 8;
  buf[n++] = 'l';
  memcpy(buf + n, link_id, 32), n += 32;
  cn_sha256(buf, n, want);

  ck_assert_int_eq(compute_tree_id(sub, got), 0);
  ck_assert_mem_eq(got, want, 32);
  snprintf(path, sizeof path, "%s/empty", dir); /* an empty directory: a count of 0 */
  ck_assert_int_eq(mkdir(path, 0755), 0);
  n = 0;
  memcpy(buf, "cairn-tree 1 dir", 17), n = 17;
  be64(buf + n, 0), n += 8;
  cn_sha256(buf, n, want);
  ck_assert_int_eq(compute_tree_id(path, got), 0);
  ck_assert_mem_eq(got, want, 32);
  snprintf(path, sizeof path, "%s/a", sub);
  ck_assert_int_eq(compute_tree_id(path, got), 0);
  ck_assert_mem_eq(got, file_id, 32);
}
END_TEST

START_TEST(tree_id_sees_content_only)
{
  char a[300], b[300], path[400];
  uint8_t ida[32], idb[32];
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  mkdir(a, 0755);
  mkdir(b, 0700);
  snprintf(path, sizeof path, "%s/x.txt", a);
  write_file(path, "same bytes\n");
  snprintf(path, sizeof path, "%s/x.txt", b);
  write_file(path, "same bytes\n");
  chmod(path, 0600);
  struct timeval old[2] = {{1000, 0}, {1000, 0}};
  utimes(path, old);
  snprintf(path, sizeof path, "%s/fifo", b);
  ck_assert_int_eq(mkfifo(path, 0644), 0); /* not part of a job's world */
  ck_assert_int_eq(compute_tree_id(a, ida), 0);
  ck_assert_int_eq(compute_tree_id(b, idb), 0);
  ck_assert_mem_eq(ida, idb, 32);
  snprintf(path, sizeof path, "%s/x.txt", b);
  write_file(path, "same bytes!\n");
  ck_assert_int_eq(compute_tree_id(b, idb), 0);
  ck_assert_mem_ne(ida, idb, 32);
  snprintf(path, sizeof path, "%s/x.txt", b);
  write_file(path, "same bytes\n");
  snprintf(path, sizeof path, "%s/y.txt", b); /* a renamed file is a different tree */
  char from[400];
  snprintf(from, sizeof from, "%s/x.txt", b);
  ck_assert_int_eq(rename(from, path), 0);
  ck_assert_int_eq(compute_tree_id(b, idb), 0);
  ck_assert_mem_ne(ida, idb, 32);
  ck_assert_int_eq(compute_tree_id("/nonexistent/cairn", idb), -ENOENT);
}
END_TEST

int main(void)
{
  if (cn_crypto_init() < 0)
    return EXIT_FAILURE;
  Suite *suite = suite_create("compute");
  TCase *tc = tcase_create("specs and trees");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, spec_round_trip);
  tcase_add_test(tc, spec_errors_name_the_line);
  tcase_add_test(tc, tree_id_matches_the_definition);
  tcase_add_test(tc, tree_id_sees_content_only);
  suite_add_tcase(suite, tc);
  return run_suite(suite);
}
