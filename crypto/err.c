/* Thread-local error reasons: a failing call records one readable line for the caller. */
#include "crypto/crypto.h"
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

int cn_fail(int err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return -err;
}

const char *cn_err(void)
{
  return last_error[0] ? last_error : "unknown error";
}
