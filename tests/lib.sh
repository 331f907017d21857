# Shared helpers for the shell tests: counters, assertions, a scratch dir removed on exit.
set -u
: "${CAIRN:?CAIRN must name the cairn binary}"
PASSED=0
FAILED=0
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cairn-test.XXXXXX")
BG_PIDS=""

MOUNTS=""
SUMMARY_DONE=0

cleanup() {
  local status=$?
  for m in $MOUNTS; do fusermount3 -u -z "$m" 2>/dev/null; done
  for p in $BG_PIDS; do kill -9 "$p" 2>/dev/null; done
  for m in $MOUNTS; do fusermount3 -u -z "$m" 2>/dev/null; done
  eval "${AT_EXIT:-}" # what a test set up beyond mounts and processes (a tmpfs, say)
  [ -n "${CAIRN_TEST_KEEP:-}" ] && echo "kept $SCRATCH" || rm -rf "$SCRATCH"
  if [ "$SUMMARY_DONE" = 0 ]; then
    # a script that stops early must not pass for one that ran every check
    echo "FAIL - the test script ended before its summary (exit $status)"
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
  fi
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
  SUMMARY_DONE=1
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# crash_reports LOG...: prints each fatal-signal report (tools/cairn.c) in the logs, its
# frames inside cairn resolved against $CAIRN; fails when there is none.
crash_reports() {
  grep -q "cairn: fatal signal" "$@" 2>/dev/null || return 1
  local line off
  grep -h -A40 "cairn: fatal signal" "$@" | while IFS= read -r line; do
    echo "    | $line"
    off=$(printf '%s\n' "$line" | sed -n "s|^${CAIRN}(+\(0x[0-9a-f]*\)).*|\1|p")
    [ -n "$off" ] && command -v addr2line >/dev/null && addr2line -f -i -e "$CAIRN" "$off" | paste -sd' ' | sed 's/^/    |     /'
  done
  return 0
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

# mistype CAP: the cap with its 31st character (inside the body, never its final
# character, whose spare bits base32 rejects first) changed, as a typo would.
mistype() {
  echo "$1" | sed 's/^\(.\{30\}\)a/\1b/; t; s/^\(.\{30\}\)./\1a/'
}

# mount_fg MNT [args...]: runs "cairn mount -f" in the background and waits until the
# mount is live; MOUNT_PID is the daemon. Unmounted by cleanup whatever happens.
mount_fg() {
  local mnt=$1; shift
  mkdir -p "$mnt"
  "$CAIRN" mount -f "$@" "$mnt" 2>>"$SCRATCH/daemon.log" &
  MOUNT_PID=$!
  BG_PIDS="$BG_PIDS $MOUNT_PID"
  MOUNTS="$MOUNTS $mnt"
  for _ in $(seq 1 100); do
    mountpoint -q "$mnt" && return 0
    sleep 0.05
  done
  echo "mount at $mnt did not come up" >&2
  return 1
}

# unmount_fg MNT: unmounts and waits for the daemon (which commits first) to exit.
unmount_fg() {
  fusermount3 -u "$1" && wait "$MOUNT_PID" 2>/dev/null
}
