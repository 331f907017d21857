#!/usr/bin/env bash
# compute/: deterministic WebAssembly jobs, through the CLI and through a real mount.
# Modules come from compute/examples (wc, fixity, index) and tests/wasm (probe, escape,
# spin, trap, hello), built by make. Checks: results are right and stored read-only;
# the same job gives the same job ID and output on two homes; the clock and randomness
# are fixed; escapes, endless loops and traps end as "failed: …" with the mount still
# working; a changed input re-runs the job, an untouched one does not (run counter);
# the index example over the documentation corpus.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

: "${WASM_EXAMPLES:?WASM_EXAMPLES must name the directory of the example modules}"
: "${WASM_TESTS:?WASM_TESTS must name the directory of the test modules}"
export CAIRN_HOME="$SCRATCH/a"
C() { "$CAIRN" "$@"; }
status_of() { C job status "$1" | head -1; }
field() { sed -n "s/^$2 //p" <<<"$1" | head -1; }

C init >/dev/null
C ns new --name a >/dev/null

# ---- a small input tree with a known manifest ----
IN="$SCRATCH/site"
mkdir -p "$IN/sub" "$IN/empty"
printf 'hello world\n' >"$IN/index.html"
printf 'one two three\nfour\n' >"$IN/sub/b.txt"
head -c 300000 /dev/urandom >"$IN/sub/blob.bin"
ln -s index.html "$IN/link"
expected_manifest() { (cd "$(dirname "$1")" && find "$(basename "$1")" -type f | LC_ALL=C sort | xargs sha256sum); }

check "job new stores the module and the input, prints the spec" \
  C job new a:compute/fixity --program "$WASM_EXAMPLES/fixity.wasm" --input "$IN"
grep -q '^program /compute/fixity/fixity.wasm$' "$SCRATCH/last.out" && grep -q '^input /compute/fixity/in/site$' "$SCRATCH/last.out" \
  && ok "spec names the stored program and input" || not_ok "spec: $(cat "$SCRATCH/last.out")"
[ "$(C job ls a)" = "fixity	not run yet" ] && ok "job ls: not run yet" || not_ok "job ls: $(C job ls a)"

check "job run fixity" C job run a:compute/fixity
run1=$(cat "$SCRATCH/last.out")
JOB=$(sed -n 's/.*: done \([0-9a-f]*\)$/\1/p' <<<"$run1")
OUT=$(field "$run1" output)
[ ${#JOB} = 64 ] && [ ${#OUT} = 64 ] && ok "job ID and output ID reported" || not_ok "run output: $run1"
[ "$(status_of a:compute/fixity)" = "done $JOB" ] && ok "status: done <job-id>" || not_ok "status: $(status_of a:compute/fixity)"
C get a:/compute/fixity/out/manifest.sha256 >"$SCRATCH/manifest" 2>/dev/null
diff <(expected_manifest "$IN") "$SCRATCH/manifest" >"$SCRATCH/manifest.diff" \
  && ok "fixity manifest equals sha256sum over the input" \
  || { not_ok "fixity manifest differs"; head -5 "$SCRATCH/manifest.diff"; }
C ls -l a:/compute/fixity/out >"$SCRATCH/ls" 2>&1
grep -q '^-r--r--r--' "$SCRATCH/ls" && ok "outputs are stored read-only (0444)" || not_ok "out/ listing: $(head -3 "$SCRATCH/ls")"
C job log a:compute/fixity | head -1 | grep -q "^cairn: run 1 of job $JOB$" && ok "log starts with run 1" || not_ok "log: $(C job log a:compute/fixity | head -2)"

check "second run with nothing changed" C job run a:compute/fixity
grep -q "up to date: done $JOB" "$SCRATCH/last.out" && ok "unchanged job ID: not run again" || not_ok "second run: $(cat "$SCRATCH/last.out")"
C job log a:compute/fixity | head -1 | grep -q "run 1 of" && ok "run counter still 1" || not_ok "run counter moved"
check "--force runs it again" C job run a:compute/fixity --force
[ "$(field "$(cat "$SCRATCH/last.out")" output)" = "$OUT" ] && ok "same output tree ID on a re-run" || not_ok "re-run output differs"
grep -q 'compiled module cached' "$SCRATCH/last.out" && ok "the compiled module is cached" || not_ok "no cache: $(cat "$SCRATCH/last.out")"
C job log a:compute/fixity | head -1 | grep -q "run 2 of" && ok "run counter now 2" || not_ok "run counter: $(C job log a:compute/fixity | head -1)"
check "job verify re-runs and agrees" C job verify a:compute/fixity
grep -q "verified: output $OUT" "$SCRATCH/last.out" && ok "verify names the same output" || not_ok "verify: $(cat "$SCRATCH/last.out")"

# ---- the same job ID in another job directory: answered from the stored result ----
C job new a:compute/fixity-again --program /compute/fixity/fixity.wasm --input /compute/fixity/in/site >/dev/null
check "the same job in another directory" C job run a:compute/fixity-again
grep -q "answered from this node's stored result of the job (not run)" "$SCRATCH/last.out" \
  && [ "$(field "$(cat "$SCRATCH/last.out")" output)" = "$OUT" ] \
  && ok "…is answered from the stored result, without running" || not_ok "fixity-again: $(cat "$SCRATCH/last.out")"
cmp -s <(C get a:/compute/fixity-again/out/manifest.sha256) "$SCRATCH/manifest" && ok "…with the same outputs" \
  || not_ok "fixity-again outputs differ"

# ---- several inputs: each under /in by its last name ----
mkdir -p "$SCRATCH/other"
printf 'x y\n' >"$SCRATCH/other/note.txt"
C job new a:compute/count2 --program "$WASM_EXAMPLES/wc.wasm" --input "$IN" "$SCRATCH/other" >/dev/null
C job run a:compute/count2 >/dev/null 2>&1
C get a:/compute/count2/out/counts.txt >"$SCRATCH/counts2" 2>&1
grep -q '^1 2 4 other/note.txt$' "$SCRATCH/counts2" && grep -q '^2 4 19 site/sub/b.txt$' "$SCRATCH/counts2" \
  && ok "two inputs given to one --input appear as /in/site and /in/other" || not_ok "counts: $(head -5 "$SCRATCH/counts2")"

# ---- the same job on another node, in another namespace: same IDs ----
CAIRN_HOME="$SCRATCH/b" C init >/dev/null
CAIRN_HOME="$SCRATCH/b" C ns new --name b >/dev/null
CAIRN_HOME="$SCRATCH/b" C job new b:compute/f2 --program "$WASM_EXAMPLES/fixity.wasm" --input "$IN" >/dev/null
CAIRN_HOME="$SCRATCH/b" C job run b:compute/f2 >"$SCRATCH/b.out" 2>&1
grep -q ": done $JOB$" "$SCRATCH/b.out" && [ "$(field "$(cat "$SCRATCH/b.out")" output)" = "$OUT" ] \
  && ok "another home and namespace: same job ID and output tree ID" || not_ok "node B: $(cat "$SCRATCH/b.out")"

# ---- determinism of the host: fixed clock, seeded randomness ----
C job new a:compute/probe --program "$WASM_TESTS/probe.wasm" --arg x >/dev/null
check "probe job" C job run a:compute/probe
P1=$(C get a:/compute/probe/out/probe.txt)
grep -q '^time 946684800$' <<<"$P1" && ok "time() is the fixed epoch 946684800" || not_ok "probe: $P1"
grep -q '^clock_realtime_ns 94668480000000' <<<"$P1" && ok "the realtime clock starts at the fixed epoch" || not_ok "probe: $P1"
check "probe --force" C job run a:compute/probe --force
[ "$(C get a:/compute/probe/out/probe.txt)" = "$P1" ] && ok "same job: same random bytes" || not_ok "random differs between runs"
C job new a:compute/probe2 --program "$WASM_TESTS/probe.wasm" --arg y >/dev/null
C job run a:compute/probe2 >/dev/null 2>&1
[ "$(grep '^random' <<<"$P1")" != "$(C get a:/compute/probe2/out/probe.txt | grep '^random')" ] \
  && ok "another job ID: other random bytes" || not_ok "random did not depend on the job"

# ---- the sandbox ----
ln -s /etc/passwd "$IN/sub/../outside" 2>/dev/null
C job new a:compute/escape --program "$WASM_TESTS/escape.wasm" --input "$IN" --arg read-host >/dev/null
for how in write-in write-host read-host dotdot "symlink site/outside"; do
  spec="cairn-job 1
program /compute/escape/escape.wasm
input /compute/escape/in/site"
  for a in $how; do spec="$spec
arg $a"; done
  printf '%s\n' "$spec" | C put a:/compute/escape/job
  C job run a:compute/escape >/dev/null 2>&1
  st=$(status_of a:compute/escape)
  log=$(C job log a:compute/escape)
  if [ "${st%% *}" = done ] && grep -q refused <<<"$log" && ! grep -q SUCCEEDED <<<"$log"; then
    ok "escape $how: refused by the WASI host"
  else
    not_ok "escape $how: status '$st'"; sed 's/^/    | /' <<<"$log" | head -8
  fi
done
ls /tmp/cairn-escape-* >/dev/null 2>&1 && not_ok "a file appeared in the host's /tmp" || ok "nothing written to the host's /tmp"

C job new a:compute/spin --program "$WASM_TESTS/spin.wasm" --cpu 2 >/dev/null
expect_exit 1 "an endless loop fails the job" C job run a:compute/spin
grep -q 'failed: CPU time limit (2 s) exceeded' "$SCRATCH/last.err" && ok "…as 'failed: CPU time limit'" || not_ok "spin: $(cat "$SCRATCH/last.err")"
for how in oob unreachable stack divzero; do
  C job new a:compute/trap-$how --program "$WASM_TESTS/trap.wasm" --arg $how >/dev/null
  C job run a:compute/trap-$how >/dev/null 2>&1
  st=$(status_of a:compute/trap-$how)
  case "$st" in "failed: trap"*) ok "trap $how: $st" ;; *) not_ok "trap $how: status '$st'" ;; esac
done
printf 'not wasm' >"$SCRATCH/bogus.wasm"
C job new a:compute/bogus --program "$SCRATCH/bogus.wasm" >/dev/null
expect_exit 1 "a file that is not a module fails cleanly" C job run a:compute/bogus
grep -q 'failed: translating the module' "$SCRATCH/last.err" && ok "…saying the module could not be translated" || not_ok "bogus: $(cat "$SCRATCH/last.err")"
printf 'cairn-job 1\nprogram /compute/fixity/fixity.wasm\nbogus line\n' | C put a:/compute/badspec/job
C job run a:compute/badspec >/dev/null 2>&1
case "$(status_of a:compute/badspec)" in "failed: job spec line 3"*) ok "a bad spec fails naming the line" ;; *) not_ok "bad spec: $(status_of a:compute/badspec)" ;; esac

# ---- in a mount: jobs run by themselves ----
MNT="$SCRATCH/mnt"
mount_fg "$MNT" --offline --commit-interval 1 || { not_ok "mount"; summary; exit 1; }
M="$MNT/a"
mkdir -p "$M/data" "$M/compute/count"
printf 'a b c\nd e\n' >"$M/data/one.txt"
cp "$WASM_EXAMPLES/wc.wasm" "$M/wc.wasm"
printf 'cairn-job 1\nprogram /wc.wasm\ninput /data\n' >"$M/compute/count/job"
wait_status() { # dir prefix: waits up to 30 s for status to start with prefix
  for _ in $(seq 1 300); do
    case "$(head -1 "$1/status" 2>/dev/null)" in "$2"*) return 0 ;; esac
    sleep 0.1
  done
  return 1
}
wait_status "$M/compute/count" done && ok "closing the spec ran the job in the mount" || not_ok "mount job status: $(cat "$M/compute/count/status" 2>&1)"
grep -q "^2 5 10 data/one.txt$" "$M/compute/count/out/counts.txt" 2>/dev/null && ok "wc output: 2 lines, 5 words, 10 bytes" \
  || not_ok "counts.txt: $(cat "$M/compute/count/out/counts.txt" 2>&1 | head -3)"
expect_exit 2 "out/ is read-only to users" sh -c "echo x > '$M/compute/count/out/new'"
stderr_has "…with EROFS" "Read-only file system"
expect_exit 2 "status is read-only to users" sh -c "echo x >> '$M/compute/count/status'"
head -1 "$M/compute/count/log" | grep -q 'run 1 of' && ok "mount: run 1" || not_ok "mount log: $(head -1 "$M/compute/count/log")"
printf 'f g h i\n' >>"$M/data/one.txt"
sync "$M/data/one.txt" 2>/dev/null || python3 -c "import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))" "$M/data/one.txt"
for _ in $(seq 1 300); do head -1 "$M/compute/count/log" | grep -q 'run 2 of' && break; sleep 0.1; done
head -1 "$M/compute/count/log" | grep -q 'run 2 of' && ok "a changed input re-ran the job" || not_ok "no re-run: $(head -1 "$M/compute/count/log")"
wait_status "$M/compute/count" done
grep -q "^3 9 18 data/one.txt$" "$M/compute/count/out/counts.txt" && ok "…and out/ follows the input" || not_ok "counts now: $(cat "$M/compute/count/out/counts.txt")"
touch "$M/data/one.txt"
sleep 3
head -1 "$M/compute/count/log" | grep -q 'run 2 of' && ok "touching an input without changing it does not re-run" || not_ok "re-ran: $(head -1 "$M/compute/count/log")"
mkdir -p "$M/compute/loop"
printf 'cairn-job 1\nprogram /compute/spin/spin.wasm\ncpu 1\n' >"$M/compute/loop/job"
wait_status "$M/compute/loop" "failed: CPU time limit" && ok "an endless loop in the mount fails the job" || not_ok "loop: $(cat "$M/compute/loop/status" 2>&1)"
mkdir -p "$M/compute/crash"
printf 'cairn-job 1\nprogram /compute/trap-oob/trap.wasm\narg oob\n' >"$M/compute/crash/job"
wait_status "$M/compute/crash" "failed: trap" && ok "a trap in the mount fails the job" || not_ok "trap: $(cat "$M/compute/crash/status" 2>&1)"
ls "$M/data" >/dev/null && [ "$(cat "$M/data/one.txt" | wc -l)" = 3 ] && ok "the mount still works after both" || not_ok "mount broken"
rm -r "$M/compute/crash" && ok "a job directory can be removed, results and all" || not_ok "rm -r of a job"
unmount_fg "$MNT"
C check a >/dev/null 2>&1 && ok "cairn check after the mount's jobs" || not_ok "check failed"

# ---- the index example over the documentation corpus ----
CORPUS="$SCRATCH/corpus"
mkdir -p "$CORPUS"
corpus_ok=1
for spec in python3.11-doc:/usr/share/doc/python3.11-doc/html:python \
            libboost1.74-doc:/usr/share/doc/libboost1.74-doc/doc/html:boost \
            postgresql-doc-15:/usr/share/doc/postgresql-doc-15/html:postgresql; do
  IFS=: read -r pkg dir name <<<"$spec"
  if [ -d "$dir" ]; then cp -rL "$dir" "$CORPUS/$name"; else not_ok "corpus: $dir is missing (apt-get install $pkg)"; corpus_ok=0; fi
done
if [ "$corpus_ok" = 1 ]; then
  C job new a:compute/index --program "$WASM_EXAMPLES/index.wasm" --input "$CORPUS" >/dev/null 2>"$SCRATCH/err" || cat "$SCRATCH/err"
  t0=$(date +%s.%N)
  check "index job over the documentation corpus (python, boost, postgresql HTML)" C job run a:compute/index
  echo "# index job: $(echo "$(date +%s.%N) - $t0" | bc) s; $(C job log a:compute/index | grep 'done in')"
  n_html=$(find "$CORPUS" \( -name '*.html' -o -name '*.htm' \) -type f | wc -l)
  n_files=$(C get a:/compute/index/out/files.txt | wc -l)
  [ "$n_files" = "$n_html" ] && ok "files.txt lists all $n_html HTML files" || not_ok "files.txt: $n_files of $n_html"
  C get a:/compute/index/out/index.txt >"$SCRATCH/index.txt"
  grep -q $'^postgresql\t' "$SCRATCH/index.txt" && grep -q $'^boost\t' "$SCRATCH/index.txt" && ! grep -q $'^<' "$SCRATCH/index.txt" \
    && ok "the index has terms, not markup ($(wc -l <"$SCRATCH/index.txt") terms)" || not_ok "index: $(head -3 "$SCRATCH/index.txt")"
  # the index agrees with grep on one term: every file whose text has it is listed
  term_files=$(grep $'^vacuum\t' "$SCRATCH/index.txt" | cut -f2 | wc -w)
  [ "$term_files" -gt 10 ] && ok "'vacuum' is indexed in $term_files files" || not_ok "'vacuum' in $term_files files"
fi
grep -q -E 'ERROR: AddressSanitizer|runtime error:' "$SCRATCH/daemon.log" && not_ok "sanitizer report in the mount's log" || ok "no sanitizer report from the mount"

summary
