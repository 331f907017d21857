#!/usr/bin/env bash
# The documentation corpus (HTML trees of Debian's python3.11-doc, libboost1.74-doc and
# postgresql-doc-15, symlinks resolved): store it, get it back byte for byte, re-store it
# (dedupe), store a 1%-edited copy, and kill -9 a put -r midway.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

export CAIRN_HOME="$SCRATCH/home"
C() { "$CAIRN" "$@"; }
store_bytes() { du -sb "$CAIRN_HOME/chunks" | cut -f1; }

CORPUS="$SCRATCH/corpus"
mkdir -p "$CORPUS"
for spec in python3.11-doc:/usr/share/doc/python3.11-doc/html:python \
            libboost1.74-doc:/usr/share/doc/libboost1.74-doc/doc/html:boost \
            postgresql-doc-15:/usr/share/doc/postgresql-doc-15/html:postgresql; do
  IFS=: read -r pkg dir name <<<"$spec"
  if [ ! -d "$dir" ]; then
    not_ok "corpus: $dir is missing (apt-get install $pkg)"
    summary; exit 1
  fi
  cp -rL "$dir" "$CORPUS/$name"
done
files=$(find "$CORPUS" -type f | wc -l)
bytes=$(du -sb "$CORPUS" | cut -f1)
echo "# corpus: $files files, $bytes bytes"

C init >/dev/null
C ns new --name lib >/dev/null
t0=$(date +%s.%N)
check "put -r of the corpus" C put -r "$CORPUS" lib:/docs
t1=$(date +%s.%N)
stored=$(store_bytes)
echo "# put -r: $(echo "$t1 - $t0" | bc) s; store holds $stored bytes for $bytes logical ($(echo "scale=3; $stored / $bytes" | bc))"
check "get -r of the corpus" C get -r "$SCRATCH/out" lib:/docs
check "diff -r: byte-for-byte identical" diff -r "$CORPUS" "$SCRATCH/out"
rm -rf "$SCRATCH/out"
# a sample of single-file gets through the read-cap
READCAP=$(C cap lib --read)
bad=0
while read -r f; do
  rel=${f#"$CORPUS"/}
  C get "$READCAP:/docs/$rel" | cmp -s - "$f" || bad=$((bad + 1))
done < <(find "$CORPUS" -type f | awk 'NR % 25 == 0')
[ "$bad" -eq 0 ] && ok "single-file gets through the read-cap match" || not_ok "$bad single-file gets differ"

seq1=$(C ns ls | awk '{print $4}')
before=$(store_bytes)
check "put -r of the unchanged corpus again" C put -r "$CORPUS" lib:/docs
[ "$(store_bytes)" -eq "$before" ] && [ "$(C ns ls | awk '{print $4}')" = "$seq1" ] \
  && ok "storing it twice adds nothing and commits nothing" || not_ok "re-store added $(( $(store_bytes) - before )) bytes"

before=$(store_bytes)
check "put -r of the corpus to a second path" C put -r "$CORPUS" lib:/copy
growth=$(( $(store_bytes) - before ))
echo "# second copy under another path: +$growth bytes ($(echo "scale=4; 100 * $growth / $bytes" | bc)% of the corpus)"
[ $((growth * 100)) -lt $((bytes * 2)) ] && ok "a second copy adds < 2% (dedupe)" || not_ok "a second copy added $growth bytes"

# 1% of the files get a line inserted in the middle
python3 - "$CORPUS" <<'PY' > "$SCRATCH/edit.txt"
import os, random, sys
root = sys.argv[1]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
rng = random.Random(1)
touched = 0
for path in rng.sample(files, len(files) // 100):
    data = open(path, 'rb').read()
    mid = len(data) // 2
    open(path, 'wb').write(data[:mid] + b'<!-- edited -->\n' + data[mid:])
    touched += len(data)
print(touched)
PY
edited=$(cat "$SCRATCH/edit.txt")
before=$(store_bytes)
check "put -r of the 1%-edited corpus" C put -r "$CORPUS" lib:/docs
growth=$(( $(store_bytes) - before ))
echo "# 1% of files edited ($edited bytes, $(echo "scale=2; 100 * $edited / $bytes" | bc)% of the corpus): store grew $growth bytes ($(echo "scale=2; 100 * $growth / $bytes" | bc)%)"
[ $((growth * 100)) -lt $((bytes * 3)) ] && ok "a 1% edit re-stores about 1% (< 3%)" || not_ok "a 1% edit grew the store by $growth bytes"
check "the edited tree reads back" sh -c "\"$CAIRN\" get -r '$SCRATCH/out' lib:/docs && diff -r '$CORPUS' '$SCRATCH/out'"
rm -rf "$SCRATCH/out"

# kill -9 during put -r, at a few moments; the store must stay consistent
for delay in 0.3 0.8; do
  "$CAIRN" put -r "$CORPUS" "lib:/killed-$delay" 2>/dev/null & pid=$!  # $! must be cairn itself
  BG_PIDS="$BG_PIDS $pid"
  sleep "$delay"; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  ! kill -0 "$pid" 2>/dev/null && ok "the put was killed at ${delay}s" || not_ok "the put survived kill -9"
  expect_exit 0 "check --all clean after kill -9 at ${delay}s into put -r" C check --all
done
check "a re-run put -r completes" C put -r "$CORPUS" lib:/killed-0.8
check "and matches" sh -c "\"$CAIRN\" get -r '$SCRATCH/out' lib:/killed-0.8 && diff -r '$CORPUS' '$SCRATCH/out'"
expect_exit 0 "check --all is clean at the end" C check --all
summary
