#!/usr/bin/env bash
# Several nodes on loopback: A writes through its mount, B and C host by verify-cap, A is
# killed, D (a fresh node holding only the read-cap) mounts and reads everything; then the
# faults: corrupt and killed hosts, stale and forged roots, and no plaintext on a host.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

[ -c /dev/fuse ] || { not_ok "no /dev/fuse on this machine"; summary; exit 1; }
# below the kernel's ephemeral range (32768 and up), where an outgoing connection may hold a port
BASE=$((20000 + RANDOM % 12000))
port_of() { case $1 in a) echo $BASE;; b) echo $((BASE + 1));; c) echo $((BASE + 2));;
  d) echo $((BASE + 3));; e) echo $((BASE + 4));; f) echo $((BASE + 5));; old) echo $((BASE + 6));; esac; }
H() { echo "$SCRATCH/$1"; }
C() { local n=$1; shift; "$CAIRN" --home "$(H "$n")" "$@"; }
ALL="a b c d e f old"
for n in $ALL; do
  C $n init --listen "127.0.0.1:$(port_of $n)" >/dev/null
  for m in a b c; do [ $n != $m ] && C $n peers add "127.0.0.1:$(port_of $m)"; done
done

# serve N: a node without a mount, in the background; SERVE_PID_N is its pid
# B and C poll the DHT only every 10 minutes: what reaches them in the test was pushed
serve() {
  local n=$1 poll=""
  case $n in b|c) poll=600000;; esac
  CAIRN_POLL_MS=$poll "$CAIRN" --home "$(H "$n")" serve 2>>"$SCRATCH/$n.log" &
  eval "SERVE_PID_$n=$!"
  BG_PIDS="$BG_PIDS $!"
  for _ in $(seq 1 100); do [ -S "$(H "$n")/run/node.sock" ] && return 0; sleep 0.05; done
  return 1
}
# node_mount N MNT: a mount (which is a node too) in the foreground, in the background
node_mount() {
  local n=$1 mnt=$2
  mkdir -p "$mnt"
  "$CAIRN" --home "$(H "$n")" mount -f "$mnt" 2>>"$SCRATCH/$n.log" &
  eval "MOUNT_PID_$n=$!"
  BG_PIDS="$BG_PIDS $!"
  MOUNTS="$MOUNTS $mnt"
  for _ in $(seq 1 200); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  return 1
}
# within SECONDS COMMAND...: retries until the command succeeds
within() {
  local t=$1; shift
  for _ in $(seq 1 $((t * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  return 1
}

# ---- the corpus: a documentation tree (installed by the test command), or made up ----
CORPUS=/usr/share/doc/postgresql-doc-15/html
if [ ! -d "$CORPUS" ]; then
  CORPUS="$SCRATCH/made-up"
  mkdir -p "$CORPUS/sub"
  for i in $(seq 1 300); do head -c $((i * 331)) /dev/urandom | base64 > "$CORPUS/sub/f$i.txt"; done
fi
MARKER="cairn-plaintext-marker-$RANDOM$RANDOM$RANDOM"
head -c 40000000 /dev/urandom > "$SCRATCH/big.bin"

# ---- A writes through its mount; B and C host by verify-cap ----
C a ns new --name site >/dev/null
VCAP=$(C a cap site --verify)
RCAP=$(C a cap site --read)
node_mount a "$SCRATCH/ma" || { not_ok "A's mount did not come up"; summary; exit 1; }
cp -r "$CORPUS" "$SCRATCH/ma/site/docs"
cp "$SCRATCH/big.bin" "$SCRATCH/ma/site/big.bin"
sync "$SCRATCH/ma/site/big.bin"
# two small commits last: their packs are the pair A's first commit after its restart
# merges (FORMAT §11; commits seconds apart in one process merge nothing)
printf '%s\n' "$MARKER" > "$SCRATCH/ma/site/marker.txt"
sync "$SCRATCH/ma/site/marker.txt"
echo "second small commit" > "$SCRATCH/ma/site/small.txt"
sync "$SCRATCH/ma/site/small.txt"
for n in b c; do check "$n hosts the namespace by its verify-cap" C $n host "$VCAP"; serve $n; done
check "cairn sync --replicas 2 returns once B and C hold the latest commit" \
  timeout 120 "$CAIRN" --home "$(H a)" sync site --replicas 2 --timeout 90
grep -q "host" "$SCRATCH/last.out" && ok "... and names the hosts" || not_ok "sync printed no hosts"
C a status site > "$SCRATCH/status.out" 2>&1
grep -q "hosts 2" "$SCRATCH/status.out" && ok "cairn status counts 2 hosts" || { not_ok "status: $(cat "$SCRATCH/status.out")"; }
expect_exit 1 "sync asking for more replicas than exist says so and fails" \
  timeout 60 "$CAIRN" --home "$(H a)" sync site --replicas 3 --timeout 3
stderr_has "... naming how many are missing" "missing 1"
[ "$(getfattr --absolute-names --only-values -n user.cairn.replicas "$SCRATCH/ma/site/" 2>/dev/null)" = 2 ] \
  && ok "user.cairn.replicas on the namespace root says 2" || not_ok "user.cairn.replicas"

# a verify-cap host holds ciphertext only
! grep -rqa "$MARKER" "$(H b)" && ok "B's home holds no plaintext of a known file" || not_ok "plaintext found on B"
expect_exit 1 "B (verify-cap) cannot read a file" C b get site:/marker.txt

# ---- A dies; D, a fresh node with the read-cap only, mounts and reads it all ----
kill -9 "$MOUNT_PID_a"; wait "$MOUNT_PID_a" 2>/dev/null
fusermount3 -u -z "$SCRATCH/ma"
C d ns add "$RCAP" --name site >/dev/null
node_mount d "$SCRATCH/md" || not_ok "D's mount did not come up"
check "D reads the whole corpus from the hosts: diff -r is clean" diff -r "$CORPUS" "$SCRATCH/md/site/docs"
check "D reads the 40 MB file byte for byte" cmp "$SCRATCH/big.bin" "$SCRATCH/md/site/big.bin"
if echo x 2>"$SCRATCH/last.err" > "$SCRATCH/md/site/new.txt"; then not_ok "D (read-cap) could create a file"
else grep -q "Read-only file system" "$SCRATCH/last.err" && ok "D's mount of the read-cap refuses writes with EROFS" || not_ok "D's write failed oddly: $(cat "$SCRATCH/last.err")"; fi
C d check --store > "$SCRATCH/check.out" 2>&1 && ok "every chunk D stored hashes to its name" || not_ok "check on D: $(tail -3 "$SCRATCH/check.out")"

# ---- A comes back and writes; D sees it within seconds ----
node_mount a "$SCRATCH/ma" || not_ok "A's remount"
echo "written after the restart" > "$SCRATCH/ma/site/later.txt"
sync "$SCRATCH/ma/site/later.txt"
start=$(date +%s%N)
if within 20 grep -q "written after the restart" "$SCRATCH/md/site/later.txt"; then
  ok "D sees A's later write ($(( ($(date +%s%N) - start) / 1000000 )) ms after fsync)"
else not_ok "D never saw A's later write"; fi
check "B and C hold that commit too, though they poll only every 10 minutes: A pushed its root" \
  timeout 60 "$CAIRN" --home "$(H a)" sync site --replicas 2 --timeout 30
# that commit merged A's two small packs (FORMAT §11): the hosts hold both, so they make
# the merged pack from their own stores instead of fetching it
for n in b c; do
  grep -q "merged 2 packs here, as the writer did" "$SCRATCH/$n.log" && ok "$n made the merged pack itself" \
    || not_ok "$n did not make the merged pack itself"
done
# the torrents of the packs that merge replaced are deleted, on the writer and on the hosts
listed=$(C a status site | sed -n 's/.* packs \([0-9]*\) .*/\1/p')
for n in a b c; do
  held=$(ls "$(H $n)/packs" | grep -c '\.torrent$')
  [ -n "$listed" ] && [ "$held" = "$listed" ] && ok "$n keeps only the $listed pack torrents the root lists" \
    || not_ok "$n holds $held pack torrents, the root lists '$listed'"
done

# a pack fetched by info-hash comes without piece layers; a host writes them into its
# torrent once it holds every object, as the writer's has them. Without them B's repair
# below banned the good peers (libtorrent 2.0.8 then checks pieces against peers' hashes)
layers_as_writer() {
  local t
  for t in "$(H a)"/packs/*.torrent; do
    grep -q "12:piece layersd32:" "$t" || continue # a layer, not an empty dictionary
    grep -q "12:piece layersd32:" "$(H "$1")/packs/${t##*/}" 2>/dev/null || return 1
  done
}
within 10 layers_as_writer b && ok "B's pack torrents carry piece layers, as A's do" \
  || not_ok "B's pack torrents lack piece layers A's have"

# ---- a corrupt host: B's chunks have flipped bytes; E still reads correct data ----
# Chunks of one 16 KiB block, of two blocks (one 32 KiB piece) and of several pieces.
# libtorrent 2.0.8 crashed on the first two kinds (docs/PEERS.md, "Bad data"): after a
# bad piece it asks a peer for block hashes that A, holding its packs without them,
# refuses. C stays away while E reads, so A is the only other peer.
n=0
for size in "-size -17k" "-size +16k -size -33k" "-size +32k"; do
  # shellcheck disable=SC2086
  for f in $(find "$(H b)/chunks" -type f $size | head -150); do flip_byte "$f"; n=$((n + 1)); done
done
[ "$n" -gt 0 ] && ok "corrupted $n of B's chunk files" || not_ok "nothing to corrupt on B"
kill -9 "$SERVE_PID_c"; wait "$SERVE_PID_c" 2>/dev/null
C e ns add "$RCAP" --name site >/dev/null
node_mount e "$SCRATCH/me" || not_ok "E's mount"
# the corpus first: its small chunks are the ones to meet before B is banned
check "E reads the corpus correctly although B serves corrupt chunks" diff -r "$CORPUS" "$SCRATCH/me/site/docs"
check "... and the 40 MB file" cmp "$SCRATCH/big.bin" "$SCRATCH/me/site/big.bin"
kill -0 "$MOUNT_PID_e" 2>/dev/null && ok "... and E's node is still running" || not_ok "E's node died"
C e check --store > "$SCRATCH/check.out" 2>&1 && ok "E's store holds no corrupt chunk" || not_ok "E stored corrupt chunks"
grep -q "banned\|failed its hash check" "$SCRATCH/e.log" && ok "E's log names the bad data it refused" || not_ok "E never received bad data (the case did not happen)"
serve c

# ---- B repairs itself from the others ----
expect_exit 1 "check --repair refuses while B's node runs" C b check --repair "$VCAP"
stderr_has "... saying why" "is running on"
kill -9 "$SERVE_PID_b"; wait "$SERVE_PID_b" 2>/dev/null
if timeout 300 "$CAIRN" --home "$(H b)" check --repair "$VCAP" > "$SCRATCH/repair.out" 2> "$SCRATCH/repair.err"; then
  ok "cairn check --repair on B fetches its corrupt chunks again"
else
  not_ok "check --repair on B: $(cat "$SCRATCH/repair.out")"
  grep -v "failed its hash check\|is corrupt:" "$SCRATCH/repair.err" | head -5 | sed 's/^/    | /'
fi
C b check --store > "$SCRATCH/check.out" 2>&1 && ok "... after which every chunk B holds is intact" || not_ok "B still corrupt: $(tail -2 "$SCRATCH/check.out")"
ls -A "$(H b)/tmp/" | grep -q '^\.corrupt\.' && ok "... keeping the corrupt copies aside" || not_ok "no quarantined copies"

# ---- a host killed mid-transfer: F's read completes from the other ----
C f ns add "$RCAP" --name site >/dev/null
serve b
within 60 sh -c "\"$CAIRN\" --home '$(H a)' status site | grep -q 'hosts 2'" || not_ok "B did not come back as a host"
node_mount f "$SCRATCH/mf" || not_ok "F's mount"
( sleep 0.3; kill -9 "$SERVE_PID_b" ) &
check "F's read of the 40 MB file completes although a host died during it" \
  cmp "$SCRATCH/big.bin" "$SCRATCH/mf/site/big.bin"

# ---- stale and forged roots ----
SEQ_D=$(C d status site | awk 'NR == 1 {print $3}')
cp -a "$(H d)" "$SCRATCH/d-copy"
echo "one more" > "$SCRATCH/ma/site/more.txt"; sync "$SCRATCH/ma/site/more.txt"
within 20 test -f "$SCRATCH/md/site/more.txt" && ok "D follows to the next commit" || not_ok "D missed more.txt"
# the old home replays its older root into the DHT from another node. It gets a node key
# of its own: a copy running with D's would share D's peer id, and A and C keep one
# connection per torrent and peer id, so D would lose its sources to the copy (docs/PEERS.md)
rm -rf "$(H old)"; cp -a "$SCRATCH/d-copy" "$(H old)"; rm -f "$(H old)/run/"* "$(H old)/node.key"
C old init --listen "127.0.0.1:$(port_of old)" >/dev/null
cmp -s "$(H old)/node.key" "$(H d)/node.key" && not_ok "the copy of D's home kept D's node key"
serve old
sleep 4
SEQ_NOW=$(C d status site | awk 'NR == 1 {print $3}')
[ "$SEQ_NOW" -gt "$SEQ_D" ] && ok "a replayed older root (seq $SEQ_D) does not move D back from seq $SEQ_NOW" \
  || not_ok "D's seq went from $SEQ_NOW back to $SEQ_D"
test -f "$SCRATCH/md/site/more.txt" && ok "... and D still shows the newer tree" || not_ok "D lost more.txt"
if [ -x "${FORGE_TOOL:-}" ]; then
  check "a root signed by the wrong key is put into the DHT and pushed to D" \
    "$FORGE_TOOL" "127.0.0.1:$(port_of d)" "$(C a cap site --verify)"
  sleep 3
  [ "$(C d status site | awk 'NR == 1 {print $3}')" = "$SEQ_NOW" ] && ok "D refuses the forged root" || not_ok "D took a forged root"
  test -f "$SCRATCH/md/site/more.txt" && ok "... and its tree is unchanged" || not_ok "forged root changed D's tree"
  C d status site | grep -q 0f0f0f0f0f0f && not_ok "D counts a peer that only said it holds the commit" \
    || ok "... and a holder that only says so, never connected, is not counted"
  within 20 grep -q "refused a root whose signature does not verify" "$SCRATCH/d.log" && ok "... and its log says why" \
    || not_ok "D's log does not mention the forged root"
else
  not_ok "FORGE_TOOL (tests/forge_root) is not built"
fi

# ---- a read waiting for silent peers does not stop the mount answering others ----
# A and C, the only holders of a new file and directory, are stopped (SIGSTOP: their
# connections stay open and nothing answers) once D has its root. D's read of the file and
# ls of the directory wait; D's mount must still answer other requests meanwhile, and both
# complete when they resume.
mkdir -p "$SCRATCH/ma/site/quietdir/inner"; echo "in a quiet directory" > "$SCRATCH/ma/site/quietdir/f.txt"
sync "$SCRATCH/ma/site/quietdir/f.txt"
head -c 20000 /dev/urandom > "$SCRATCH/quiet.bin"
cp "$SCRATCH/quiet.bin" "$SCRATCH/ma/site/quiet.bin"; sync "$SCRATCH/ma/site/quiet.bin"
within 20 test -f "$SCRATCH/md/site/quiet.bin" || { not_ok "D never saw quiet.bin (A is at seq $(C a status site | awk 'NR == 1 {print $3}'))"
  grep -h "namespace\|root\|seq" "$SCRATCH/d.log" | tail -6 | sed 's/^/    | /'; }
kill -STOP "$MOUNT_PID_a" "$SERVE_PID_c"
# kill returns before every thread has stopped: one still in a system call stops after it
all_stopped() {
  local p t
  for p in "$@"; do for t in /proc/"$p"/task/*/status; do
    grep -q '^State:.*(stopped)' "$t" || return 1
  done; done
}
within 5 all_stopped "$MOUNT_PID_a" "$SERVE_PID_c" || not_ok "A and C did not stop"
head -c 100 "$SCRATCH/md/site/quiet.bin" > "$SCRATCH/quiet.head" 2>"$SCRATCH/quiet.err" &
QUIET_READ=$!
ls "$SCRATCH/md/site/quietdir" > "$SCRATCH/quietdir.ls" 2>&1 &
QUIET_LS=$!
sleep 1
kill -0 "$QUIET_READ" 2>/dev/null && ok "D's read of a file only stopped peers hold waits" \
  || not_ok "D's read of quiet.bin did not wait (the case did not happen)"
kill -0 "$QUIET_LS" 2>/dev/null && ok "... as does its ls of a directory they alone hold" \
  || not_ok "D's ls of quietdir did not wait (the case did not happen): $(cat "$SCRATCH/quietdir.ls")"
check "... while D's mount opens and reads another file" \
  timeout 5 grep -q "second small commit" "$SCRATCH/md/site/small.txt"
expect_exit 2 "... and looks up a name" timeout 5 ls "$SCRATCH/md/site/absent-$RANDOM"
[ "$(timeout 5 stat -c %h "$SCRATCH/md/site/quietdir")" = 1 ] \
  && ok "... and stats the directory being fetched: link count 1, not counted yet" \
  || not_ok "stat of quietdir while it is fetched: '$(timeout 5 stat -c %h "$SCRATCH/md/site/quietdir" 2>&1)'"
kill -0 "$QUIET_READ" 2>/dev/null && kill -0 "$QUIET_LS" 2>/dev/null && ok "... all before the read and the ls ended" \
  || not_ok "the read or the ls ended before the checks"
kill -CONT "$MOUNT_PID_a" "$SERVE_PID_c"
timeout 60 sh -c "while kill -0 $QUIET_READ 2>/dev/null || kill -0 $QUIET_LS 2>/dev/null; do sleep 0.1; done"
wait "$QUIET_READ" 2>/dev/null
cmp -s "$SCRATCH/quiet.head" <(head -c 100 "$SCRATCH/quiet.bin") \
  && ok "... which complete once the peers answer again" || not_ok "the read after SIGCONT: $(cat "$SCRATCH/quiet.err")"
wait "$QUIET_LS" 2>/dev/null
[ "$(tr '\n' ' ' < "$SCRATCH/quietdir.ls")" = "f.txt inner " ] && ok "... the ls listing the directory" \
  || not_ok "the ls after SIGCONT: $(cat "$SCRATCH/quietdir.ls")"

for m in ma md me mf; do fusermount3 -u "$SCRATCH/$m" 2>/dev/null; done
if grep -h "AddressSanitizer\|runtime error" "$SCRATCH"/*.log >/dev/null 2>&1; then
  not_ok "a node's log shows a sanitizer report"; grep -h -A5 "AddressSanitizer\|runtime error" "$SCRATCH"/*.log | head -20
else ok "no sanitizer report in any node's log"; fi
if crash_reports "$SCRATCH"/*.log; then not_ok "a node died of a fatal signal (above)"
else ok "no node died of a fatal signal"; fi
summary
