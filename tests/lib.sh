# Shared helpers for the shell tests: counters, assertions, a scratch dir removed on exit.
set -u
: "${CAIRN:?CAIRN must name the cairn binary}"
PASSED=0
FAILED=0
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cairn-test.XXXXXX")
BG_PIDS=""

cleanup() {
  for p in $BG_PIDS; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }

# check "description" command...: passes when the command exits 0
check() {
  local what=$1; shift
  if "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"; then ok "$what"; else
    not_ok "$what (exit $?)"; sed 's/^/    | /' "$SCRATCH/last.err" | head -5; fi
}

# expect_exit CODE "description" command...: passes on that exit code
expect_exit() {
  local want=$1 what=$2; shift 2
  "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"
  local got=$?
  if [ "$got" -eq "$want" ]; then ok "$what"; else
    not_ok "$what (exit $got, wanted $want)"; sed 's/^/    | /' "$SCRATCH/last.err" | head -5; fi
}

# stderr_has "description" PATTERN: the last command's stderr matched
stderr_has() {
  if grep -q -- "$2" "$SCRATCH/last.err"; then ok "$1"; else
    not_ok "$1 (stderr lacks '$2')"; sed 's/^/    | /' "$SCRATCH/last.err" | head -5; fi
}

summary() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# Flips one byte in the middle of a file, in place.
flip_byte() {
  python3 - "$1" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x40
open(p, 'wb').write(bytes(b))
PY
}
