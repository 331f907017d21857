#!/usr/bin/env bash
# CLI integration tests: store and fetch trees, caps, bad input, corruption, crash safety.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

export CAIRN_HOME="$SCRATCH/home"
C() { "$CAIRN" "$@"; }
chunk_count() { find "$CAIRN_HOME/chunks" -type f | wc -l; }
store_bytes() { du -sb "$CAIRN_HOME/chunks" | cut -f1; }

# ---- setup and help ----
expect_exit 1 "commands before init fail clearly" C ns ls
stderr_has "the error says to run init" "cairn init"
check "init" C init
check "init twice is harmless" C init
for cmd in init ns cap put get ls rm mkdir check; do
  expect_exit 0 "cairn $cmd --help" C "$cmd" --help
done
expect_exit 2 "unknown command is a usage error" C frobnicate
expect_exit 2 "put without a target is a usage error" C put

check "ns new --name site" C ns new --name site
WRITECAP=$(cat "$SCRATCH/last.out")
case "$WRITECAP" in cairn-nsw1-*) ok "ns new prints a write-cap" ;; *) not_ok "ns new printed '$WRITECAP'" ;; esac
expect_exit 2 "a duplicate petname is refused" C ns new --name site
expect_exit 2 "a bad petname is refused" C ns new --name 'Bad Name'
C ns ls > "$SCRATCH/nsls"
grep -q ' write .* site$' "$SCRATCH/nsls" && ok "ns ls shows the namespace" || not_ok "ns ls: $(cat "$SCRATCH/nsls")"
[ "$(stat -c %a "$CAIRN_HOME/keyring")" = 600 ] && ok "keyring is mode 0600" || not_ok "keyring mode"

# ---- a tree with every entry type, odd names, modes and times ----
SRC="$SCRATCH/src"
mkdir -p "$SRC/sub/deeper" "$SRC/empty dir" "$SRC/ünïcødé"
printf 'hello\n' > "$SRC/hello.txt"
: > "$SRC/empty"
head -c 3000000 /dev/urandom > "$SRC/sub/random.bin"
seq 1 400000 > "$SRC/sub/deeper/numbers.txt"
head -c 20000000 /dev/urandom > "$SRC/sub/big.bin"   # > 16 chunks: stored via a manifest
printf 'x%.0s' $(seq 1 1024) > "$SRC/inline-limit"
printf 'x%.0s' $(seq 1 1025) > "$SRC/just-over-inline"
echo "name with spaces" > "$SRC/ünïcødé/a file with spaces"
ln -s hello.txt "$SRC/link"
ln -s /nonexistent/target "$SRC/dangling"
mkfifo "$SRC/fifo"
chmod 0640 "$SRC/hello.txt"; chmod 0700 "$SRC/sub"; chmod 4755 "$SRC/sub/deeper/numbers.txt"
touch -d '2001-02-03 04:05:06.123456789' "$SRC/hello.txt"
touch -h -d '1999-12-31 23:59:59' "$SRC/link"
touch -d '2010-01-01 00:00:00' "$SRC/empty dir"

check "put -r a tree" C put -r "$SRC" site:/tree
check "get -r it back" C get -r "$SCRATCH/out" site:/tree
check "diff -r: identical content (fifos compared by the metadata check below)" diff -r --no-dereference -x fifo "$SRC" "$SCRATCH/out"
meta() { (cd "$1" && find . -printf '%p %y %m %s %T@\n' | grep -v '^\. ' | sort); }
meta "$SRC" > "$SCRATCH/meta.src"; meta "$SCRATCH/out" > "$SCRATCH/meta.out"
check "types, modes, sizes and mtimes (ns) survive" diff "$SCRATCH/meta.src" "$SCRATCH/meta.out"
C get site:/tree/sub/big.bin > "$SCRATCH/big.out"
check "get of one file to stdout" cmp "$SRC/sub/big.bin" "$SCRATCH/big.out"
C ls -l site:/tree > "$SCRATCH/ls"
grep -q '^lrwxrwxrwx .* link -> hello.txt$' "$SCRATCH/ls" && ok "ls -l shows symlink targets" || not_ok "ls -l: $(cat "$SCRATCH/ls")"
grep -q '^prw' "$SCRATCH/ls" && ok "ls -l shows the fifo" || not_ok "ls -l fifo"
expect_exit 1 "get of a missing file fails" C get site:/tree/nope
stderr_has "... saying it does not exist" "does not exist"
expect_exit 1 "get of a directory fails" C get site:/tree/sub
expect_exit 0 "check is clean" C check

# ---- put from stdin, mkdir, rm ----
echo "v1" | C put site:/notes/today.txt
check "put from stdin creates parents" sh -c "\"$CAIRN\" get site:/notes/today.txt | grep -qx v1"
echo "v2" | C put site:/notes/today.txt
check "put replaces a file" sh -c "\"$CAIRN\" get site:/notes/today.txt | grep -qx v2"
check "mkdir -p" C mkdir -p site:/a/b/c
expect_exit 1 "mkdir of an existing dir without -p fails" C mkdir site:/a/b
expect_exit 1 "rm of a non-empty dir without -r fails" C rm site:/a
stderr_has "... with ENOTEMPTY's reason" "non-empty"
check "rm -r" C rm -r site:/a
expect_exit 1 "removed dir is gone" C ls site:/a
expect_exit 2 "'..' in a path is refused" C ls site:/tree/../tree

# ---- re-storing, dedupe ----
before=$(chunk_count); seq_before=$(C ns ls | awk '{print $4}')
check "put -r of an unchanged tree" C put -r "$SRC" site:/tree
[ "$(chunk_count)" -eq "$before" ] && ok "unchanged tree stores nothing" || not_ok "unchanged tree stored $(( $(chunk_count) - before )) chunks"
[ "$(C ns ls | awk '{print $4}')" = "$seq_before" ] && ok "and makes no commit" || not_ok "a no-op put committed"
bytes_before=$(store_bytes)
check "put -r of the same tree to a second path" C put -r "$SRC" site:/copy
growth=$(( $(store_bytes) - bytes_before ))
[ "$growth" -lt 200000 ] && ok "second copy adds only directory nodes ($growth bytes)" || not_ok "second copy added $growth bytes"
rm "$SRC/empty"; echo changed >> "$SRC/hello.txt"
check "put -r mirrors deletions and changes" C put -r "$SRC" site:/tree
expect_exit 1 "deleted file is gone" C get site:/tree/empty
check "changed file is new" sh -c "\"$CAIRN\" get site:/tree/hello.txt | grep -qx changed"

# ---- caps ----
READCAP=$(C cap site --read); VERIFYCAP=$(C cap site --verify)
case "$READCAP" in cairn-nsr1-*) ok "cap --read" ;; *) not_ok "cap --read gave '$READCAP'" ;; esac
case "$VERIFYCAP" in cairn-nsv1-*) ok "cap --verify" ;; *) not_ok "cap --verify gave '$VERIFYCAP'" ;; esac
check "get through the read-cap" sh -c "\"$CAIRN\" get '$READCAP:/tree/sub/random.bin' | cmp - '$SRC/sub/random.bin'"
echo nope | C put "$READCAP:/x" >/dev/null 2>"$SCRATCH/last.err"; rc=$?
[ "$rc" -eq 1 ] && ok "put through a read-cap fails" || not_ok "put through a read-cap exited $rc"
stderr_has "... saying a write-cap is needed" "write-cap"
expect_exit 1 "rm through a read-cap fails" C rm "$READCAP:/tree/hello.txt"
expect_exit 1 "get through a verify-cap fails" C get "$VERIFYCAP:/tree/hello.txt"
stderr_has "... saying a verify-cap cannot read" "verify-cap"
expect_exit 0 "check through a verify-cap" C check "$VERIFYCAP"

# second home holding only the read-cap: it can name the namespace but not write
export CAIRN_HOME="$SCRATCH/home2"
C init >/dev/null
check "ns add of a read-cap" C ns add --name mirror "$READCAP"
expect_exit 1 "cap --write cannot be derived from a read-cap" C cap mirror --write
check "cap --verify from a read-cap" C cap mirror --verify
[ "$(cat "$SCRATCH/last.out")" = "$VERIFYCAP" ] && ok "read-cap diminishes to the same verify-cap" || not_ok "verify-cap differs"
echo x | C put mirror:/x >/dev/null 2>"$SCRATCH/last.err"; [ $? -eq 1 ] && ok "put into a read-only namespace fails" || not_ok "put into read-only namespace"
export CAIRN_HOME="$SCRATCH/home"

# ---- malformed caps ----
bad_cap() {
  expect_exit 2 "malformed cap ($1) is a usage error" C ls "$2:/"
  stderr_has "... with a specific reason ($1)" "$3"
}
expect_exit 1 "a name that is no cap nor petname is not found" C ls "nsr1-abc:/"
stderr_has "... saying so" "no namespace called"
bad_cap "unknown kind" "cairn-xyz1-aaaa" "unknown cap kind"
bad_cap "future version" "cairn-nsr9-aaaa" "unsupported cap format version"
bad_cap "uppercase" "$(echo "$READCAP" | tr a-z A-Z)" "lowercase"
bad_cap "truncated" "${READCAP%??????}" "cap body"
bad_cap "typo" "$(mistype "$READCAP")" "checksum mismatch"
bad_cap "bad character" "${READCAP%?}1" "base32"
expect_exit 2 "ns add of garbage" C ns add cairn-nsw1-xxxx

# ---- corruption: a flipped byte in a stored chunk ----
victim_id=$(find "$CAIRN_HOME/chunks" -type f -size +100k | head -1)
flip_byte "$victim_id"
name=$(basename "$victim_id")
C check site >"$SCRATCH/check.out" 2>"$SCRATCH/last.err"; rc=$?
[ "$rc" -eq 1 ] && ok "check finds the corrupt chunk (exit 1)" || not_ok "check exited $rc after corruption"
stderr_has "... and names it" "$name"
C check --all >/dev/null 2>&1; [ $? -eq 1 ] && ok "check --all also fails" || not_ok "check --all"
# find which file holds that chunk: get every file; exactly the affected ones fail with EIO
fails=0
for f in sub/big.bin sub/random.bin sub/deeper/numbers.txt; do
  if ! C get "site:/tree/$f" > "$SCRATCH/f.out" 2>"$SCRATCH/f.err"; then
    fails=$((fails + 1)); grep -q "$name" "$SCRATCH/f.err" && ok "get of the damaged file fails naming the chunk" || not_ok "error lacks chunk name"
  elif ! cmp -s "$SCRATCH/f.out" "$SRC/$f"; then
    not_ok "get returned wrong data for $f without failing"
  fi
done
[ "$fails" -ge 1 ] && ok "the damage was detected on read" || not_ok "no read failed after corrupting a chunk"
rm -rf "$SCRATCH/out2"
C get -r "$SCRATCH/out2" site:/tree 2>/dev/null; [ $? -eq 1 ] && ok "get -r fails on the damaged tree" || not_ok "get -r succeeded"
partial=$(find "$SCRATCH/out2" -name '*.cairn-partial' | wc -l)
[ "$partial" -eq 0 ] && ok "no partial files are left behind" || not_ok "$partial partial files left"
flip_byte "$victim_id"   # flip back: the store is whole again
expect_exit 0 "check is clean after repair" C check --all

# ---- file and directory caps: immutable snapshots of one entry ----
site_seq() { C ns ls | awk '$NF == "site" {print $4}'; }
check "put -r a tree to share" C put -r "$SRC/sub" site:/share
seq_before=$(site_seq)
check "cap NS:/file" C cap site:/share/random.bin
FILECAP=$(cat "$SCRATCH/last.out")
case "$FILECAP" in cairn-fr1-*) ok "... is a file read cap" ;; *) not_ok "cap of a file gave '$FILECAP'" ;; esac
[ "$(site_seq)" -gt "$seq_before" ] && ok "... whose new object was committed" || not_ok "no commit holds the file cap's object"
seq_before=$(site_seq)
[ "$(C cap site:/share/random.bin)" = "$FILECAP" ] && ok "the same file gives the same cap" || not_ok "file cap changed"
[ "$(site_seq)" = "$seq_before" ] && ok "... without another commit" || not_ok "a repeated cap committed again"
BIGCAP=$(C cap site:/share/big.bin)
DIRCAP=$(C cap site:/share); FILEVCAP=$(C cap --verify site:/share/random.bin); DIRVCAP=$(C cap site:/share --verify)
case "$DIRCAP" in cairn-dr1-*) ok "cap NS:/dir is a directory read cap" ;; *) not_ok "cap of a dir gave '$DIRCAP'" ;; esac
case "$FILEVCAP $DIRVCAP" in "cairn-fv1-"*" cairn-dv1-"*) ok "cap --verify gives fv and dv caps" ;; *) not_ok "verify caps: $FILEVCAP $DIRVCAP" ;; esac
[ "$(C cap --verify "$FILECAP")" = "$FILEVCAP" ] && ok "a file cap diminishes to its verify cap" || not_ok "fr -> fv differs"
expect_exit 2 "cap --write of a path is refused" C cap --write site:/share/random.bin
sum_random=$(sha256sum < "$SRC/sub/random.bin"); sum_big=$(sha256sum < "$SRC/sub/big.bin")
# change and delete everything the caps name
head -c 100000 /dev/urandom | C put site:/share/random.bin
check "rm -r the shared tree" C rm -r site:/share
[ "$(C get "$FILECAP" | sha256sum)" = "$sum_random" ] && ok "get FILECAP still returns the old content" || not_ok "file cap content changed"
[ "$(C get "$BIGCAP" | sha256sum)" = "$sum_big" ] && ok "... also for a file stored via a manifest" || not_ok "big file cap content"
check "get -r DIR DIRCAP copies the old tree" C get -r "$SCRATCH/capdir" "$DIRCAP"
check "... identical to the source" diff -r "$SRC/sub" "$SCRATCH/capdir"
meta "$SRC/sub" > "$SCRATCH/meta.src"; meta "$SCRATCH/capdir" > "$SCRATCH/meta.out"
check "... with modes and mtimes" diff "$SCRATCH/meta.src" "$SCRATCH/meta.out"
check "get DIRCAP:/path reads below a directory cap" sh -c "\"$CAIRN\" get '$DIRCAP:/deeper/numbers.txt' | cmp - '$SRC/sub/deeper/numbers.txt'"
C ls -l "$FILECAP" > "$SCRATCH/ls"
grep -q '^-rw.* 3000000 .* random.bin$' "$SCRATCH/ls" && ok "ls -l FILECAP shows the file's name, mode and size" || not_ok "ls -l of a file cap: $(cat "$SCRATCH/ls")"
C ls "$DIRCAP" > "$SCRATCH/ls"
[ "$(tr '\n' ' ' < "$SCRATCH/ls")" = "big.bin deeper random.bin " ] && ok "ls DIRCAP lists the directory" || not_ok "ls of a dir cap: $(cat "$SCRATCH/ls")"
check "check DIRCAP decrypts everything below it" C check "$DIRCAP"
check "check of a verify cap" C check "$FILEVCAP"
expect_exit 1 "a verify cap cannot read" C get "$FILEVCAP"
stderr_has "... saying the read cap is needed" "cannot read it"
expect_exit 1 "nothing can be written through a file cap" C put "$FILECAP" < /dev/null
stderr_has "... it is a read-only snapshot" "read-only snapshot"
expect_exit 1 "nor removed through a directory cap" C rm "$DIRCAP:/big.bin"
expect_exit 2 "a file cap takes no path" C get "$FILECAP:/x"
expect_exit 2 "a mistyped file cap is a usage error" C get "$(mistype "$FILECAP")"
stderr_has "... saying why" "checksum mismatch"
expect_exit 2 "a truncated directory cap too" C ls "${DIRCAP%??????}"
stderr_has "... saying why" "cap body"
# a cap with a valid checksum naming nothing stored: forged, or not fetched yet
FORGED=$(python3 - "$FILECAP" <<'PY'
import base64, hashlib, sys
cap = sys.argv[1]
prefix, body = cap[:10], cap[10:]
raw = bytearray(base64.b32decode(body.upper() + '=' * (-len(body) % 8)))
raw[3] ^= 1
payload = bytes(raw[:64])
raw = payload + hashlib.blake2b(prefix.encode() + payload, digest_size=32).digest()[:4]
print(prefix + base64.b32encode(raw).decode().rstrip('=').lower())
PY
)
expect_exit 1 "a forged cap with a valid checksum is refused" C get "$FORGED"
stderr_has "... its object is not stored" "not in the local store"

# a second home holding only copies of the chunk files: no keyring, no index entries
export CAIRN_HOME="$SCRATCH/home3"
C init >/dev/null
cp -r "$SCRATCH/home/chunks/." "$CAIRN_HOME/chunks/"
[ -z "$(C ns ls)" ] && ok "the second home holds no namespace" || not_ok "second home keyring: $(C ns ls)"
[ "$(C get "$FILECAP" | sha256sum)" = "$sum_random" ] && ok "it reads the file cap" || not_ok "file cap in a second home"
check "and copies the directory cap" C get -r "$SCRATCH/capdir3" "$DIRCAP"
check "... identical to the source" diff -r "$SRC/sub" "$SCRATCH/capdir3"
check "check of the directory cap there" C check "$DIRCAP"
for f in $(find "$CAIRN_HOME/chunks" -type f -size +100k); do flip_byte "$f"; done
expect_exit 1 "check of the directory cap finds damaged chunks" C check "$DIRCAP"
stderr_has "... naming them" "is corrupt"
expect_exit 1 "get of the file cap fails on damaged chunks" C get "$FILECAP"

# a home holding the namespace by its read-cap only: directory caps yes, file caps only
# where the writer already made them
export CAIRN_HOME="$SCRATCH/home"
TREEDIRCAP=$(C cap site:/tree/sub)
cp -r "$SCRATCH/home/." "$SCRATCH/home4"
export CAIRN_HOME="$SCRATCH/home4"
printf '# cairn keyring\n%s ro\n' "$READCAP" > "$CAIRN_HOME/keyring"
check "cap of a directory through a read-cap" C cap ro:/tree/sub
[ "$(cat "$SCRATCH/last.out")" = "$TREEDIRCAP" ] && ok "... is the writer's directory cap" || not_ok "reader's dir cap differs"
expect_exit 1 "cap of a file nobody made a cap for, through a read-cap, is refused" C cap ro:/tree/sub/random.bin
stderr_has "... saying only the writer can make it" "only the writer"
export CAIRN_HOME="$SCRATCH/home"
TREEFILECAP=$(C cap site:/tree/sub/random.bin)
cp "$SCRATCH/home/index/"* "$SCRATCH/home4/index/"   # the writer's commit reaches the reader
cp -r "$SCRATCH/home/chunks/." "$SCRATCH/home4/chunks/"
export CAIRN_HOME="$SCRATCH/home4"
[ "$(C cap ro:/tree/sub/random.bin)" = "$TREEFILECAP" ] && ok "once the writer made it, a reader gets the same file cap" || not_ok "reader's file cap differs"
export CAIRN_HOME="$SCRATCH/home"
expect_exit 0 "check --all is clean after all the caps" C check --all

# ---- crash safety: SIGKILL during a large put, at several moments ----
head -c 150000000 /dev/urandom > "$SCRATCH/large.bin"
for delay in 0.2 0.7 1.5; do
  "$CAIRN" put site:/large.bin < "$SCRATCH/large.bin" 2>/dev/null & pid=$!  # $! must be cairn itself
  BG_PIDS="$BG_PIDS $pid"
  sleep "$delay"; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  ! kill -0 "$pid" 2>/dev/null && ok "the put was killed at ${delay}s" || not_ok "the put survived kill -9"
  expect_exit 0 "check is clean after kill -9 at ${delay}s" C check --all
done
check "re-running the put completes" sh -c "\"$CAIRN\" put site:/large.bin < '$SCRATCH/large.bin'"
check "and the file reads back" sh -c "\"$CAIRN\" get site:/large.bin | cmp - '$SCRATCH/large.bin'"
expect_exit 0 "check is clean at the end" C check --all
leftover=$(find "$CAIRN_HOME/tmp" -type f | wc -l)
[ "$leftover" -eq 0 ] && ok "no staging files are left" || not_ok "$leftover staging files left"

summary
