#!/usr/bin/env bash
# Jobs across nodes on loopback: A's mount runs a job with quorum 2; C (a host) publishes
# a forged result: flagged, not verified; B (a host with the read-cap) re-runs the job
# with `cairn job verify`: the same output, and A's status turns verified.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

[ -c /dev/fuse ] || { not_ok "no /dev/fuse on this machine"; summary; exit 1; }
: "${WASM_EXAMPLES:?WASM_EXAMPLES must name the directory of the example modules}"
: "${FORGE_RESULT:?FORGE_RESULT must name the forge_result test tool}"
# below the kernel's ephemeral range (32768 and up), where an outgoing connection may hold a port
BASE=$((20000 + RANDOM % 12000))
port_of() { case $1 in a) echo $BASE;; b) echo $((BASE + 1));; c) echo $((BASE + 2));; esac; }
H() { echo "$SCRATCH/$1"; }
C() { local n=$1; shift; "$CAIRN" --home "$(H "$n")" "$@"; }
for n in a b c; do
  C $n init --listen "127.0.0.1:$(port_of $n)" >/dev/null
  for m in a b c; do [ $n != $m ] && C $n peers add "127.0.0.1:$(port_of $m)"; done
done
serve() {
  "$CAIRN" --home "$(H "$1")" serve 2>>"$SCRATCH/$1.log" &
  BG_PIDS="$BG_PIDS $!"
  for _ in $(seq 1 100); do [ -S "$(H "$1")/run/node.sock" ] && return 0; sleep 0.05; done
  return 1
}
# retry SECONDS COMMAND...: runs the command until it succeeds (output in last.out/err).
# A host's node adopts downloaded chunks into its store in batches, a little after
# libtorrent (and so `sync`) counts them, and the CLI reads only the store.
retry() {
  local t=$1; shift
  for _ in $(seq 1 $((t * 2))); do "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err" && return 0; sleep 0.5; done
  return 1
}
# status_within SECONDS PATTERN: waits until A's job status matches
status_within() {
  for _ in $(seq 1 $(($1 * 4))); do grep -q -- "$2" "$JOB/status" 2>/dev/null && return 0; sleep 0.25; done
  return 1
}

# ---- A: a namespace with data and a quorum job, run by its mount ----
C a ns new --name site >/dev/null
RCAP=$(C a cap site --read)
MA="$SCRATCH/ma"
mkdir -p "$MA"
"$CAIRN" --home "$(H a)" mount -f --commit-interval 1 "$MA" 2>>"$SCRATCH/a.log" &
BG_PIDS="$BG_PIDS $!"
MOUNTS="$MOUNTS $MA"
for _ in $(seq 1 200); do mountpoint -q "$MA" && break; sleep 0.05; done
mountpoint -q "$MA" || { not_ok "A's mount did not come up"; summary; exit 1; }
mkdir -p "$MA/site/data" "$MA/site/compute/fix"
for i in $(seq 1 40); do head -c $((i * 977)) /dev/urandom >"$MA/site/data/f$i.bin"; done
cp "$WASM_EXAMPLES/fixity.wasm" "$MA/site/fixity.wasm"
printf 'cairn-job 1\nprogram /fixity.wasm\ninput /data\nquorum 2\n' >"$MA/site/compute/fix/job"
JOB="$MA/site/compute/fix"
status_within 60 '^done ' && ok "A's mount ran the quorum job" || not_ok "status: $(cat "$JOB/status" 2>&1)"
JOB_ID=$(sed -n 's/^done //p' "$JOB/status")
OUTPUT=$(sed -n 's/^output //p' "$JOB/status")
grep -q '^quorum 2: not verified (1 of 2 nodes agree)$' "$JOB/status" && ok "alone, it is not verified (1 of 2)" \
  || not_ok "status: $(cat "$JOB/status")"

# ---- B and C host the namespace with the read-cap ----
for n in b c; do C $n host "$RCAP" >/dev/null; serve $n || not_ok "$n's node did not start"; done
check "B and C hold the latest commit" timeout 120 "$CAIRN" --home "$(H a)" sync site --replicas 2 --timeout 90

# ---- C publishes a forged output for the job ----
check "C publishes a record with a made-up output" "$FORGE_RESULT" "$(H c)" "$JOB_ID"
FORGED=$(cat "$SCRATCH/last.out")
status_within 60 "DISAGREES: output $FORGED" && ok "A flags C's record as disagreeing" || not_ok "status: $(cat "$JOB/status")"
grep -q '^quorum 2: not verified' "$JOB/status" && ok "…and the result is still not verified" || not_ok "status: $(cat "$JOB/status")"

# ---- B re-runs the job and agrees ----
retry 60 C b job verify "$RCAP:compute/fix" && ok "B verifies the job by running it again" \
  || { not_ok "B verifies the job (exit $?)"; sed 's/^/    | /' "$SCRATCH/last.err" | head -3; }
grep -q "verified: output $OUTPUT" "$SCRATCH/last.out" && ok "B computed the same output tree ID" || not_ok "verify: $(cat "$SCRATCH/last.out")"
status_within 60 '^quorum 2: verified (2 of 2 nodes agree)$' && ok "A's status turns verified (2 of 2)" \
  || not_ok "status: $(cat "$JOB/status")"
grep -q "DISAGREES: output $FORGED" "$JOB/status" && ok "C stays flagged" || not_ok "status: $(cat "$JOB/status")"
retry 60 C b job status "$RCAP:compute/fix" && grep -q "^done $JOB_ID$" "$SCRATCH/last.out" \
  && ok "B reads the job's status through its read-cap" || not_ok "B job status: $(cat "$SCRATCH/last.out" "$SCRATCH/last.err")"

# ---- a changed input: a new job ID, whose quorum starts again ----
printf 'x' >"$MA/site/data/f1.bin"
sync "$MA/site/data/f1.bin"
new_id=""
for _ in $(seq 1 240); do
  new_id=$(sed -n 's/^done //p' "$JOB/status" 2>/dev/null)
  [ -n "$new_id" ] && [ "$new_id" != "$JOB_ID" ] && break
  sleep 0.25
done
[ -n "$new_id" ] && [ "$new_id" != "$JOB_ID" ] && ok "a changed input gives a new job ID" || not_ok "status: $(cat "$JOB/status")"
grep -q '^quorum 2: not verified' "$JOB/status" && ok "…whose quorum starts again" || not_ok "status: $(cat "$JOB/status")"
grep -q -E 'ERROR: AddressSanitizer|runtime error:' "$SCRATCH"/[abc].log && not_ok "sanitizer report in a node's log" \
  || ok "no sanitizer report in the nodes' logs"
summary
