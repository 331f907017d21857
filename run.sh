#!/usr/bin/env bash
# cairn's two entry points (see README.md):
#   ./run.sh demo   install dependencies, build, and store/list/fetch files in a demo home
#   ./run.sh test   install dependencies, build with -Werror, run every test, then run the
#                   tests again under AddressSanitizer + UBSan
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD

BUILD_PACKAGES="build-essential autoconf automake pkg-config libsodium-dev liblz4-dev libssl-dev
  liblmdb-dev libfuse3-dev fuse3 check python3 bc attr rsync libtorrent-rasterbar-dev
  wabt clang lld wasi-libc libclang-rt-14-dev-wasm32"
# the documentation corpus the integration tests store and fetch
CORPUS_PACKAGES="python3.11-doc libboost1.74-doc postgresql-doc-15"

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [configure flags...]: an out-of-tree build, so several can coexist
build() {
  local dir=$1; shift
  [ -x configure ] || ./autogen.sh >/dev/null 2>&1
  mkdir -p "$dir"
  (cd "$dir" && { [ -f Makefile ] || "$top/configure" -q "$@"; } && make -s -j"$(nproc)")
}

# check_in DIR: runs make check there and prints every test's summary lines
check_in() {
  local dir=$1 rc=0
  (cd "$dir" && make -s check VERBOSE=1 -j1) || rc=$?
  echo "== summaries ($dir)"
  grep -h -E '^[0-9]+%: Checks: |^[0-9]+ passed, [0-9]+ failed' "$dir"/tests/*.log || true
  return $rc
}

case "${1:-}" in
  demo)
    install_packages $BUILD_PACKAGES
    build build --enable-werror
    export CAIRN_HOME="$top/demo-home"
    cairn="$top/build/tools/cairn"
    $cairn init
    $cairn ns ls | grep -q ' demo$' || $cairn ns new --name demo > "$CAIRN_HOME/demo.writecap"
    mnt="$top/demo-mnt"
    mkdir -p "$mnt"
    mountpoint -q "$mnt" || $cairn mount "$mnt"
    echo "== mounted at $mnt (namespace 'demo'; write-cap in $CAIRN_HOME/demo.writecap)"
    cp -r "$top/docs" "$mnt/demo/"
    cp "$top/README.md" "$mnt/demo/"
    ls -l "$mnt" "$mnt/demo/" "$mnt/demo/docs"
    echo "== read-cap to share: $(getfattr --absolute-names --only-values -n user.cairn.readcap "$mnt/demo/")"
    cmp "$mnt/demo/README.md" "$top/README.md" && echo "== README.md reads back byte for byte"
    echo "== cairn stays mounted at $mnt; 'build/tools/cairn umount $mnt' (with CAIRN_HOME=$CAIRN_HOME) to stop"
    ;;
  test)
    install_packages $BUILD_PACKAGES $CORPUS_PACKAGES
    status=0
    echo "== build (-Werror) and test"
    build build --enable-werror
    check_in build || status=1
    echo "== build with AddressSanitizer + UBSan and test again"
    build build-asan --enable-werror --enable-sanitizers
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      check_in build-asan || status=1
    [ $status -eq 0 ] && echo "== all tests passed" || echo "== TESTS FAILED"
    exit $status
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
