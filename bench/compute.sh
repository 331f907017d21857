#!/usr/bin/env bash
# Compute benchmark: the fixity example (SHA-256 manifest of a tree) over the documentation
# corpus, as a cairn job and as the same C program built natively.
#   (a) the corpus (HTML trees of python3.11-doc, libboost1.74-doc, postgresql-doc-15,
#       symlinks resolved, as bench/fs.sh copies them) is stored as b:/corpus
#   (b) fixity-native over the local copy, and sha256sum over the same files, warm
#   (c) the job b:compute/fixity (fixity.wasm over /corpus) run twice: first with the
#       module translated and compiled, then again (--force) with the compiled module
#       cached; the table's ratio is native seconds / cached job seconds (target >= 0.5)
# The job's manifest must equal the native one and sha256sum's, or the script fails.
# Usage: bench/compute.sh path/to/cairn [MODULE_DIR]
#   MODULE_DIR holds fixity.wasm and fixity-native (default: compute/examples of the build
#   tree the cairn binary is in, i.e. CAIRN/../../compute/examples).
set -euo pipefail
CAIRN=$(realpath "${1:?usage: bench/compute.sh path/to/cairn [MODULE_DIR]}")
MODULES=$(realpath "${2:-$(dirname "$CAIRN")/../compute/examples}")
for f in "$MODULES/fixity.wasm" "$MODULES/fixity-native"; do
  [ -f "$f" ] || { echo "missing $f: build it first (make -C BUILD/compute/examples)" >&2; exit 2; }
done

need=()
for p in python3.11-doc libboost1.74-doc postgresql-doc-15; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

W=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-bench-compute.XXXXXX")
cleanup() { rm -rf "$W"; }
trap cleanup EXIT
export CAIRN_HOME="$W/home"
C() { "$CAIRN" "$@"; }
secs() { date +%s.%N; }
calc() { python3 -c "print('%.2f' % ($1))"; }
die() { echo "bench/compute.sh: $*" >&2; exit 1; }
# same A B WHAT: fail loudly, with the first differences, unless files A and B are equal
same() {
  cmp -s "$1" "$2" && return 0
  diff "$1" "$2" | head -6 >&2 || true
  die "$3"
}

# The job sees its input /corpus as /in/corpus and names files corpus/...: the local runs
# get the same paths by starting from the corpus's parent.
DATA="$W/data"
CORPUS="$DATA/corpus"
mkdir -p "$CORPUS"
cp -rL /usr/share/doc/python3.11-doc/html "$CORPUS/python"
cp -rL /usr/share/doc/libboost1.74-doc/doc/html "$CORPUS/boost"
cp -rL /usr/share/doc/postgresql-doc-15/html "$CORPUS/postgresql"
FILES=$(find "$CORPUS" -type f | wc -l)
BYTES=$(du -sb "$CORPUS" | cut -f1)
echo "corpus: $FILES files, $BYTES bytes"

echo "== (a) storing the corpus as b:/corpus"
C init >/dev/null
C ns new --name b >/dev/null # prints the write-cap; the keyring keeps it
C put -r "$CORPUS" b:/corpus

echo "== (b) native fixity and sha256sum, warm"
find "$CORPUS" -type f -exec cat {} + >/dev/null # the page cache holds the corpus
mkdir -p "$W/native"
t0=$(secs); "$MODULES/fixity-native" "$DATA" "$W/native"; t1=$(secs)
NATIVE=$(calc "$t1 - $t0")
t0=$(secs)
(cd "$DATA" && LC_ALL=C find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$W/sha256sum.raw"
t1=$(secs)
SHA256SUM=$(calc "$t1 - $t0")
# sha256sum names them ./corpus/...: drop the ./ (after a leading \ of an escaped name)
sed 's#^\(\\\{0,1\}[0-9a-f]\{64\}\)  \./#\1  #' "$W/sha256sum.raw" >"$W/sha256sum.txt"
same "$W/native/manifest.sha256" "$W/sha256sum.txt" "fixity-native's manifest differs from sha256sum's"
[ "$(wc -l <"$W/native/manifest.sha256")" -eq "$FILES" ] || die "the native manifest does not list $FILES files"
echo "fixity-native $NATIVE s, sha256sum $SHA256SUM s; the manifests agree"
# the same program over the stored corpus: first out of the store (decrypted), then run
rm -rf "$W/fromstore"
mkdir -p "$W/fromstore" "$W/native2"
t0=$(secs); C get -r "$W/fromstore/corpus" b:/corpus && "$MODULES/fixity-native" "$W/fromstore" "$W/native2"; t1=$(secs)
NATIVE_STORED=$(calc "$t1 - $t0")
same "$W/native2/manifest.sha256" "$W/native/manifest.sha256" "fixity-native over the stored corpus differs"
rm -rf "$W/fromstore"
echo "cairn get -r + fixity-native: $NATIVE_STORED s"

echo "== (c) the job b:compute/fixity"
C job new b:compute/fixity --program "$MODULES/fixity.wasm" --input /corpus
t0=$(secs); C job run b:compute/fixity >"$W/run1.txt"; t1=$(secs)
FIRST=$(calc "$t1 - $t0")
C job log b:compute/fixity >"$W/log1.txt"
t0=$(secs); C job run b:compute/fixity --force >"$W/run2.txt"; t1=$(secs)
CACHED=$(calc "$t1 - $t0")
C job log b:compute/fixity >"$W/log2.txt"
C job status b:compute/fixity >"$W/status.txt"
C get b:/compute/fixity/out/manifest.sha256 >"$W/job-manifest.sha256"
same "$W/job-manifest.sha256" "$W/native/manifest.sha256" "the job's manifest differs from fixity-native's"
same "$W/job-manifest.sha256" "$W/sha256sum.txt" "the job's manifest differs from sha256sum's"
grep -q "compiled module cached" "$W/run2.txt" "$W/log2.txt" \
  || echo "warning: the second run does not say its compiled module was cached" >&2

# the log's own timings: "cairn: compiled the module in X s", "cairn: done in X s, ..."
log_seconds() { sed -n "s/^cairn: $2 \([0-9.]*\) s.*/\1/p" "$1" | tail -1; }
BUILD=$(log_seconds "$W/log1.txt" "compiled the module in")
RUN1=$(log_seconds "$W/log1.txt" "done in")
RUN2=$(log_seconds "$W/log2.txt" "done in")
STAGE2=$(log_seconds "$W/log2.txt" "inputs copied out and hashed in")

echo
echo "status: $(tr '\n' ' ' <"$W/status.txt")"
echo "log of the second run:"
sed 's/^/  /' "$W/log2.txt"
printf '\n| fixity over %s files, %s bytes | seconds | native / this |\n|---|---|---|\n' "$FILES" "$BYTES"
printf '| fixity-native | %s | 1.00 |\n' "$NATIVE"
printf '| sha256sum (find, sort, xargs) | %s | %s |\n' "$SHA256SUM" "$(calc "$NATIVE / $SHA256SUM")"
printf '| cairn get -r of the stored corpus, then fixity-native | %s | %s |\n' "$NATIVE_STORED" "$(calc "$NATIVE / $NATIVE_STORED")"
printf '| cairn job run, first (module compiled%s) | %s | %s |\n' \
  "${BUILD:+ in $BUILD s}" "$FIRST" "$(calc "$NATIVE / $FIRST")"
printf '| cairn job run --force, compiled module cached | %s | **%s** (target >= 0.5) |\n' \
  "$CACHED" "$(calc "$NATIVE / $CACHED")"
if [ -n "$STAGE2" ]; then
  printf '| of which inputs were copied out of the store and hashed | %s | |\n' "$STAGE2"
fi
if [ -n "$RUN2" ]; then
  printf '| of which the module ran (log: done in) | %s | %s |\n' "$RUN2" "$(calc "$NATIVE / $RUN2")"
fi
[ -z "$RUN1" ] || echo "first run: the module ran in $RUN1 s (log)"
echo "manifests: job = fixity-native = sha256sum ($FILES lines)"
