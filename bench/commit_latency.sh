#!/usr/bin/env bash
# How long the file system stops answering while it commits: copies the documentation
# corpus into an offline mount (no timer commits), lets sealing finish, then fsyncs one
# file (a commit of the whole copy) while another thread creates a file every 5 ms, and
# prints the commit's time and the creates' latencies.
# Usage: bench/commit_latency.sh [CAIRN_BINARY]   (installs the corpus from Debian)
set -euo pipefail
CAIRN=${1:-$(cd "$(dirname "$0")/.." && pwd)/build/tools/cairn}
[ -x "$CAIRN" ] || { echo "build cairn first (./run.sh demo) or pass its path" >&2; exit 2; }
CAIRN=$(realpath "$CAIRN")
need=()
for p in python3.11-doc libboost1.74-doc postgresql-doc-15; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
W=$(mktemp -d /var/tmp/cairn-bench-commit.XXXXXX)
export CAIRN_HOME="$W/home"
cleanup() { fusermount3 -u -z "$W/mnt" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/corpus" "$W/mnt"
cp -rL /usr/share/doc/python3.11-doc/html "$W/corpus/python"
cp -rL /usr/share/doc/libboost1.74-doc/doc/html "$W/corpus/boost"
cp -rL /usr/share/doc/postgresql-doc-15/html "$W/corpus/postgresql"
"$CAIRN" init >/dev/null
"$CAIRN" ns new --name bench >/dev/null
"$CAIRN" mount --offline --commit-interval 3600 "$W/mnt"
cp -r "$W/corpus" "$W/mnt/bench/corpus"
sleep 3 # the sealing threads finish the copied files: the commit then only writes the tree
python3 - "$W/mnt/bench" <<'PY'
import os, sys, threading, time
d = sys.argv[1]
took = []
def commit():
    t = time.monotonic()
    fd = os.open(d + "/corpus/python/index.html", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    took.append(time.monotonic() - t)
th = threading.Thread(target=commit)
th.start()
lat = []
while not took:
    t = time.monotonic()
    open("%s/x%d" % (d, len(lat)), "w").close()
    lat.append(time.monotonic() - t)
    time.sleep(0.005)
th.join()
lat.sort()
print("commit of the corpus: %.2f s; %d creates meanwhile: median %.2f ms, longest %.1f ms"
      % (took[0], len(lat), 1000 * lat[len(lat) // 2], 1000 * lat[-1]))
PY
"$CAIRN" umount "$W/mnt"
