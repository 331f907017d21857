/* The tail of every unit test's main: run the suite, print Check's summary line, and
 * turn failures into the exit status automake reads. */
#ifndef CAIRN_CHECK_MAIN_H
#define CAIRN_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int run_suite(Suite *suite)
{
  SRunner *sr = srunner_create(suite);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
