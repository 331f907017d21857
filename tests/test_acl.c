/* Unit tests for acl/: the keyring. */
#include "acl/acl.h"
#include "check_main.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char home[256];

static void setup(void)
{
  snprintf(home, sizeof home, "/tmp/cairn-test-acl.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(home));
}

static void teardown(void)
{
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
  ck_assert_int_eq(system(cmd), 0);
}

START_TEST(petnames)
{
  ck_assert_int_eq(cn_petname_check("site"), 0);
  ck_assert_int_eq(cn_petname_check("my-site_2.old"), 0);
  ck_assert_int_eq(cn_petname_check(""), -EINVAL);
  ck_assert_int_eq(cn_petname_check("Site"), -EINVAL);
  ck_assert_int_eq(cn_petname_check("a b"), -EINVAL);
  ck_assert_int_eq(cn_petname_check("a/b"), -EINVAL);
  ck_assert_int_eq(cn_petname_check(".hidden"), -EINVAL);
  ck_assert_int_eq(cn_petname_check("cairn-nsw1-x"), -EINVAL);
  char long_name[80];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[79] = 0;
  ck_assert_int_eq(cn_petname_check(long_name), -EINVAL);
  long_name[CN_NSID_LEN] = 0; /* exactly an ID's length could shadow an ID */
  ck_assert_int_eq(cn_petname_check(long_name), -EINVAL);
}
END_TEST

START_TEST(save_load_resolve)
{
  cn_keyring kr;
  cn_nskey a, b, got;
  cn_nskey_generate(&a);
  cn_nskey_generate(&b);
  cn_nskey_diminish(&b, CN_ACCESS_READ);
  ck_assert_int_eq(cn_keyring_load(home, 1, &kr), 0);
  ck_assert_uint_eq(kr.n, 0);
  ck_assert_int_eq(cn_keyring_add(&kr, &a, "alpha"), 0);
  ck_assert_int_eq(cn_keyring_add(&kr, &b, ""), 0);
  ck_assert_int_eq(cn_keyring_add(&kr, &b, "alpha"), -EEXIST);
  ck_assert_int_eq(cn_keyring_save(&kr), 0);
  cn_keyring_free(&kr);

  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "%s/keyring", home);
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0600);

  int held;
  ck_assert_int_eq(cn_keyring_load(home, 0, &kr), 0);
  ck_assert_uint_eq(kr.n, 2);
  ck_assert_int_eq(cn_keyring_resolve(&kr, "alpha", &got, &held), 0);
  ck_assert_int_eq(held, 1);
  ck_assert_int_eq(got.access, CN_ACCESS_WRITE);
  ck_assert_mem_eq(got.seed, a.seed, 32);
  char id[CN_NSID_LEN + 1];
  cn_nsid(b.pk, id);
  ck_assert_int_eq(cn_keyring_resolve(&kr, id, &got, &held), 0);
  ck_assert_int_eq(got.access, CN_ACCESS_READ);
  ck_assert_mem_eq(got.read_key, b.read_key, 32);
  ck_assert_int_eq(cn_keyring_resolve(&kr, "nobody", &got, &held), -ENOENT);
  ck_assert_ptr_nonnull(strstr(cn_err(), "nobody"));

  /* a cap string resolves whether held or not */
  cn_cap cap;
  char str[CN_CAP_STR_MAX];
  cn_nskey c;
  cn_nskey_generate(&c);
  cn_cap_from_nskey(&c, &cap);
  cn_cap_format(&cap, str);
  ck_assert_int_eq(cn_keyring_resolve(&kr, str, &got, &held), 0);
  ck_assert_int_eq(held, 0);
  ck_assert_mem_eq(got.pk, c.pk, 32);
  str[20] = str[20] == 'a' ? 'b' : 'a';
  ck_assert_int_eq(cn_keyring_resolve(&kr, str, &got, &held), -EINVAL);
  cn_keyring_free(&kr);
}
END_TEST

START_TEST(adding_keeps_the_highest_access)
{
  cn_keyring kr;
  cn_nskey w, r, v, got;
  cn_nskey_generate(&w);
  r = w;
  cn_nskey_diminish(&r, CN_ACCESS_READ);
  v = w;
  cn_nskey_diminish(&v, CN_ACCESS_VERIFY);
  ck_assert_int_eq(cn_keyring_load(home, 1, &kr), 0);
  ck_assert_int_eq(cn_keyring_add(&kr, &v, "ns"), 0);
  ck_assert_int_eq(cn_keyring_add(&kr, &r, ""), 0);
  ck_assert_uint_eq(kr.n, 1);
  ck_assert_int_eq(kr.entries[0].key.access, CN_ACCESS_READ);
  ck_assert_str_eq(kr.entries[0].petname, "ns");
  ck_assert_int_eq(cn_keyring_add(&kr, &w, ""), 0);
  ck_assert_int_eq(cn_keyring_add(&kr, &v, ""), 0); /* never downgraded */
  int held;
  ck_assert_int_eq(cn_keyring_resolve(&kr, "ns", &got, &held), 0);
  ck_assert_int_eq(got.access, CN_ACCESS_WRITE);
  cn_keyring_free(&kr);
}
END_TEST

START_TEST(malformed_keyring_is_reported)
{
  char path[300];
  snprintf(path, sizeof path, "%s/keyring", home);
  FILE *f = fopen(path, "w");
  fputs("# comment\ncairn-nsw1-notacap site\n", f);
  fclose(f);
  cn_keyring kr;
  ck_assert_int_eq(cn_keyring_load(home, 0, &kr), -EINVAL);
  ck_assert_ptr_nonnull(strstr(cn_err(), "line 2"));
  cn_keyring_free(&kr);
}
END_TEST

int main(void)
{
  if (cn_crypto_init() < 0)
    return EXIT_FAILURE;
  Suite *suite = suite_create("acl");
  TCase *tc = tcase_create("keyring");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, petnames);
  tcase_add_test(tc, save_load_resolve);
  tcase_add_test(tc, adding_keeps_the_highest_access);
  tcase_add_test(tc, malformed_keyring_is_reported);
  suite_add_tcase(suite, tc);
  return run_suite(suite);
}
