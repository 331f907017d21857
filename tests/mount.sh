#!/usr/bin/env bash
# The FUSE mount with real shell tools: cp, diff, rsync, tar, find, du, sparse files,
# renames, unlink-while-open, xattrs, caps at the root, remounts and kill -9.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

[ -c /dev/fuse ] || { not_ok "no /dev/fuse on this machine"; summary; exit 1; }
export CAIRN_HOME="$SCRATCH/home"
C() { "$CAIRN" "$@"; }
M="$SCRATCH/mnt"
C init --listen 127.0.0.1:0 >/dev/null  # the mount is a node too: loopback only in tests
C ns new --name site >/dev/null
ID=$(C ns ls | awk '$4 == "site" || $NF == "site" {print $1}')
seq_of() { C ns ls | awk -v id="$ID" '$1 == id {print $4}'; }

# ---- daemon mode returns once the mount is live ----
mkdir -p "$M"
check "cairn mount (daemonized) returns with the mount live" sh -c "\"$CAIRN\" mount '$M' && mountpoint -q '$M'"
MOUNTS="$MOUNTS $M"
# ... its node included: status right after it asks that node, not the store alone
C status site > "$SCRATCH/status.out" 2>&1
grep -q "hosts 0" "$SCRATCH/status.out" && ! grep -q "no node running" "$SCRATCH/status.out" \
  && ok "... with its node answering at once (cairn status)" || not_ok "status right after mount: $(cat "$SCRATCH/status.out")"
head -c 30000000 /dev/urandom > "$SCRATCH/before-umount"
cp "$SCRATCH/before-umount" "$M/site/before-umount"
check "cairn umount" C umount "$M"
! pgrep -f "cairn mount $M" >/dev/null && ok "the daemon has exited when cairn umount returns" || not_ok "daemon still running"
C get site:/before-umount 2>/dev/null | cmp -s - "$SCRATCH/before-umount" \
  && ok "... with everything written committed" || not_ok "data written before umount is not committed"
C rm site:/before-umount

# ---- thousands of files copied under a low descriptor limit ----
# A copied file's staging is a file descriptor until the file is sealed or committed;
# with a hard limit of 256 the copy must wait for sealing, never fail with EMFILE.
MANY="$SCRATCH/many"
python3 - "$MANY" <<'PY'
import os, random, sys
rng = random.Random(7)
for d in range(10):
    os.makedirs(f"{sys.argv[1]}/d{d}")
    for i in range(150):
        size = 200 if i % 3 == 0 else 3000 + rng.randrange(5000)  # in entries, and chunked
        open(f"{sys.argv[1]}/d{d}/f{i}", "wb").write(rng.randbytes(size))
PY
check "a mount with a hard limit of 256 open files" sh -c "ulimit -n 256 && \"$CAIRN\" mount '$M' && mountpoint -q '$M'"
check "... takes a cp -r of 1500 files" cp -r "$MANY" "$M/site/many"
check "... which diff -r finds identical" diff -r "$MANY" "$M/site/many"
! grep -q "Too many open files" "$CAIRN_HOME/cairn.log" && ok "... with no descriptor run out" || not_ok "$(grep -m1 "Too many open files" "$CAIRN_HOME/cairn.log")"
check "... and unmounts" C umount "$M"
C rm -r site:/many

mount_fg "$M" || { summary; exit 1; }
S="$M/site"
ra="/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb"
if [ "$(id -u)" = 0 ]; then
  [ "$(cat "$ra")" = 1024 ] && ok "the mount's readahead is raised to 1 MiB" || not_ok "readahead is $(cat "$ra") KiB"
else
  grep -q "cannot raise it to 1024 KiB" "$SCRATCH/daemon.log" && ok "not root: the log says readahead stays at the kernel's" \
    || not_ok "no log line about the readahead"
fi

# ---- the root ----
[ -d "$M/$ID" ] && ok "the namespace appears as a directory named by its ID" || not_ok "no $ID in $(ls "$M")"
[ "$(readlink "$M/site")" = "$ID" ] && ok "the petname is a symlink to it" || not_ok "petname link"
ls "$M/cairn-nsr1-notacapatall" >/dev/null 2>&1; [ $? -ne 0 ] && ok "a malformed cap at the root is not found" || not_ok "malformed cap found"
grep -q "lookup of 'cairn-nsr1-notacapatall" "$SCRATCH/daemon.log" && ok "... and the log says why" || not_ok "no log line for the malformed cap"
mkdir "$M/newdir" 2>/dev/null; [ $? -ne 0 ] && ok "mkdir at the root is refused" || not_ok "mkdir at root"

# ---- xattrs ----

getfattr --absolute-names --only-values -n user.cairn.writecap "$S/" | grep -q '^cairn-nsw1-' && ok "user.cairn.writecap on the namespace root" || not_ok "writecap xattr"
getfattr --absolute-names --only-values -n user.cairn.readcap "$S/" | grep -q '^cairn-nsr1-' && ok "user.cairn.readcap" || not_ok "readcap xattr"
getfattr --absolute-names --only-values -n user.cairn.verifycap "$S/" | grep -q '^cairn-nsv1-' && ok "user.cairn.verifycap" || not_ok "verifycap xattr"

# ---- a source tree with every kind of entry ----
SRC="$SCRATCH/src"
mkdir -p "$SRC/a/b/c" "$SRC/empty"
for i in $(seq 1 200); do echo "file $i" > "$SRC/a/f$i.txt"; done
head -c 5000000 /dev/urandom > "$SRC/a/b/random.bin"
seq 1 300000 > "$SRC/a/b/c/numbers"
ln -s ../a/f1.txt "$SRC/empty/link"
mkfifo "$SRC/a/pipe"
chmod 0751 "$SRC/a/b"; chmod 0600 "$SRC/a/f2.txt"
touch -d '2003-04-05 06:07:08.5' "$SRC/a/f3.txt"

check "cp -a into the mount" cp -a "$SRC" "$S/cp"
check "diff -r against the source" diff -r -x pipe "$SRC" "$S/cp"
meta() { (cd "$1" && find . -printf '%p %y %m %s %T@\n' | grep -v '^\. ' | awk '$2 == "d" { $4 = "-" } 1' | sort); }
meta "$SRC" > "$SCRATCH/m1"; meta "$S/cp" > "$SCRATCH/m2"
check "modes, types, sizes and mtimes match" diff "$SCRATCH/m1" "$SCRATCH/m2"
check "rsync -a into the mount" rsync -a "$SRC/" "$S/rsync/"
rsync -a --stats "$SRC/" "$S/rsync/" > "$SCRATCH/rsync2"
grep -q 'Number of regular files transferred: 0' "$SCRATCH/rsync2" && ok "a second rsync -a copies nothing" || not_ok "second rsync copied: $(grep transferred "$SCRATCH/rsync2")"
mkdir -p "$SCRATCH/untar"
check "tar c | tar x out of the mount" sh -c "tar cf - -C '$S/cp' . | tar xf - -C '$SCRATCH/untar'"
check "tar round trip is identical" diff -r -x pipe "$SRC" "$SCRATCH/untar"
check "tar c | tar x into the mount" sh -c "tar cf - -C '$SRC' . | tar xf - -C '$S/rsync'"
check "ls -lR" sh -c "ls -lR '$S' > /dev/null"
touch -d '2030-01-01' "$SCRATCH/future"; touch "$S/cp/a/f5.txt"
n=$(find "$S/cp" -newer "$SRC/a/f4.txt" -name 'f5.txt' | wc -l)
[ "$n" = 1 ] && ok "find -newer sees a touched file" || not_ok "find -newer found $n"
du -s "$S/cp" > /dev/null && ok "du works" || not_ok "du"

# ---- POSIX corner cases ----
cd "$S" || exit 1
echo one > f1; echo two > f2
mv f2 f1 && [ "$(cat f1)" = two ] && ok "rename over an existing file" || not_ok "rename over file"
mkdir -p d1/sub d2; echo deep > d1/sub/x
mv d1 d2/ && [ "$(cat d2/d1/sub/x)" = deep ] && ok "rename of a directory across directories" || not_ok "dir rename"
mv d2/d1 d2/d1/sub/ 2>/dev/null; [ $? -ne 0 ] && ok "a directory cannot move into itself" || not_ok "moved into itself"
mkdir full; touch full/x; rmdir full 2>/dev/null; [ $? -ne 0 ] && ok "rmdir of a non-empty directory fails" || not_ok "rmdir non-empty"
python3 - <<'PY' && ok "renameat2 NOREPLACE and EXCHANGE" || not_ok "renameat2 flags"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
AT = -100
def renameat2(a, b, flags):
    if libc.renameat2(AT, a.encode(), AT, b.encode(), flags) != 0:
        return ctypes.get_errno()
    return 0
open('ex1', 'w').write('1'); open('ex2', 'w').write('2')
assert renameat2('ex1', 'ex2', 1) == 17          # RENAME_NOREPLACE: EEXIST
assert renameat2('ex1', 'ex2', 2) == 0           # RENAME_EXCHANGE
assert open('ex1').read() == '2' and open('ex2').read() == '1'
PY
python3 - <<'PY' && ok "unlink and rename of open files keep their data readable" || not_ok "unlink while open"
import os
with open('open1', 'w') as f: f.write('still here')
fd = os.open('open1', os.O_RDONLY)
os.unlink('open1')
assert os.read(fd, 100) == b'still here'
assert os.fstat(fd).st_nlink == 0
os.close(fd)
with open('open2', 'w') as f: f.write('old')
with open('open3', 'w') as f: f.write('new')
fd = os.open('open2', os.O_RDWR)
os.rename('open3', 'open2')        # replaces the open file's name
assert os.pread(fd, 10, 0) == b'old'
os.pwrite(fd, b'OLD', 0)           # writing an unlinked file is fine
assert os.pread(fd, 10, 0) == b'OLD'
os.close(fd)
assert open('open2').read() == 'new'
PY
python3 - <<'PY' && ok "O_EXCL, O_APPEND, O_TRUNC, ftruncate grow and shrink, pwrite in the middle" || not_ok "open flags"
import os, errno
fd = os.open('flags', os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644); os.write(fd, b'abc'); os.close(fd)
try:
    os.open('flags', os.O_CREAT | os.O_EXCL | os.O_WRONLY); raise SystemExit(1)
except FileExistsError: pass
fd = os.open('flags', os.O_WRONLY | os.O_APPEND); os.write(fd, b'def'); os.close(fd)
assert open('flags', 'rb').read() == b'abcdef'
fd = os.open('flags', os.O_RDWR); os.ftruncate(fd, 10); os.pwrite(fd, b'X', 8); os.close(fd)
assert open('flags', 'rb').read() == b'abcdef\0\0X\0'
fd = os.open('flags', os.O_RDWR); os.ftruncate(fd, 2); os.close(fd)
assert open('flags', 'rb').read() == b'ab'
fd = os.open('flags', os.O_WRONLY | os.O_TRUNC); os.close(fd)
assert os.path.getsize('flags') == 0
PY
# A file opened only for writing bypasses the page cache (direct_io): the kernel then
# leaves clearing set-ID bits on write to the file system, and other handles' cached
# pages must still see what it wrote.
python3 - <<'PY' && ok "a write-only handle's writes reach a reader's cached view" || not_ok "write-only handle and the page cache"
import os
with open('coherent', 'wb') as f: f.write(b'a' * 8192)
r = os.open('coherent', os.O_RDONLY)
assert os.pread(r, 8192, 0) == b'a' * 8192   # now in the page cache
w = os.open('coherent', os.O_WRONLY)
os.pwrite(w, b'B' * 100, 4000)
os.close(w)
assert os.pread(r, 8192, 0) == b'a' * 4000 + b'B' * 100 + b'a' * 4092
os.close(r)
PY
kills_setid() { # MODE OPEN-FLAG [COMMAND PREFIX...]: the mode a write through such a handle leaves
  rm -f setid; touch setid; chmod "$1" setid
  local flag=$2; shift 2
  "$@" python3 -c "import os; fd = os.open('setid', os.$flag); os.write(fd, b'x'); print(oct(os.fstat(fd).st_mode & 0o7777)); os.close(fd)"
}
NOFSETID="setpriv --bounding-set -fsetid"
[ "$(kills_setid 4755 O_WRONLY $NOFSETID)" = 0o755 ] && [ "$(stat -c %a setid)" = 755 ] \
  && [ "$(kills_setid 6775 O_WRONLY $NOFSETID)" = 0o775 ] && [ "$(kills_setid 2745 O_WRONLY $NOFSETID)" = 0o2745 ] \
  && [ "$(kills_setid 4755 O_RDWR $NOFSETID)" = 0o755 ] \
  && ok "a write without CAP_FSETID clears set-user-ID (and set-group-ID with group execute)" \
  || not_ok "set-ID bits after a write: $(kills_setid 4755 O_WRONLY $NOFSETID) $(stat -c %a setid)"
if [ "$(id -u)" = 0 ]; then
  [ "$(kills_setid 4755 O_WRONLY)" = 0o4755 ] && [ "$(kills_setid 4755 O_RDWR)" = 0o4755 ] \
    && ok "... and one with CAP_FSETID keeps them" || not_ok "set-ID bits after a privileged write"
fi
truncate -s 100M sparse && printf 'end' | dd of=sparse bs=1 seek=104857597 conv=notrunc 2>/dev/null
[ "$(tail -c 3 sparse)" = end ] && [ "$(stat -c %s sparse)" = 104857600 ] && ok "sparse file: size and tail" || not_ok "sparse file"
head -c 30000000 /dev/urandom > "$SCRATCH/mid.bin"; cp "$SCRATCH/mid.bin" mid.bin; sync mid.bin
printf 'PATCHED' | dd of=mid.bin bs=1 seek=15000000 conv=notrunc 2>/dev/null
printf 'PATCHED' | dd of="$SCRATCH/mid.bin" bs=1 seek=15000000 conv=notrunc 2>/dev/null
cmp -s mid.bin "$SCRATCH/mid.bin" && ok "overwrite in the middle of a large file" || not_ok "mid overwrite"
mkfifo fifo; ln -s f1 symlink
[ -p fifo ] && [ "$(readlink symlink)" = f1 ] && ok "fifo and symlink" || not_ok "fifo/symlink"
mknod dev c 1 3 2>/dev/null; [ $? -ne 0 ] && ok "device nodes are refused" || not_ok "device node created"
ln f1 hardlink 2>/dev/null; [ $? -ne 0 ] && ok "hard links are refused cleanly" || not_ok "hard link created"
chmod 640 f1 && chown 1234:5678 f1 && [ "$(stat -c '%a %u %g' f1)" = "640 1234 5678" ] && ok "chmod and chown" || not_ok "chmod/chown"
touch -m -d '2001-02-03 04:05:06' f1; touch -a -d '2002-02-03 04:05:06' f1
[ "$(stat -c %Y f1)" = "$(date -d '2001-02-03 04:05:06' +%s)" ] && [ "$(stat -c %X f1)" = "$(date -d '2002-02-03 04:05:06' +%s)" ] \
  && ok "utimens keeps mtime and atime apart" || not_ok "utimens"
getfattr --absolute-names --only-values -n user.cairn.chunks "$S/cp/a/b/random.bin" 2>/dev/null | grep -qE '^[0-9]+$' && ok "user.cairn.chunks on a file" || not_ok "chunks xattr"
getfattr --absolute-names -n security.selinux "$S/cp/a/b/random.bin" 2>&1 | grep -q 'Operation not supported' \
  && getfattr --absolute-names -n system.posix_acl_access "$S/cp/a/b/random.bin" 2>&1 | grep -q 'Operation not supported' \
  && ok "xattrs outside user.cairn.* are not supported (ENOTSUP)" || not_ok "foreign xattr names"
python3 - <<'PY' && ok "flock and fcntl locks exclude a second process" || not_ok "locks"
import fcntl, os
f = open('f1', 'r+')
fcntl.flock(f, fcntl.LOCK_EX)
fcntl.lockf(f, fcntl.LOCK_EX, 1, 0)
pid = os.fork()
if pid == 0:
    g = open('f1', 'r+')
    for lock in (lambda: fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB),
                 lambda: fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)):
        try:
            lock(); os._exit(1)
        except OSError:
            pass
    os._exit(0)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.WEXITSTATUS(status))
PY
df "$S" > /dev/null && ok "statfs" || not_ok "statfs"
cd "$SCRATCH" || exit 1

# ---- names looked up before they exist: the kernel caches that they are missing ----
# (negative entries, in namespaces the mount writes); each way of making the name must
# still show it at once, by the petname and by the namespace's ID alike
mkdir -p "$S/neg"
for n in file dir link moved fifo; do stat "$S/neg/$n" "$M/$ID/neg/$n" >/dev/null 2>&1 && not_ok "neg/$n exists early"; done
echo made > "$S/neg/file"; mkdir "$S/neg/dir"; ln -s file "$S/neg/link"; mkfifo "$S/neg/fifo"
echo moved > "$S/neg/tmp"; mv "$S/neg/tmp" "$S/neg/moved"
[ "$(cat "$S/neg/file")" = made ] && [ "$(cat "$M/$ID/neg/link")" = made ] && [ -d "$M/$ID/neg/dir" ] \
  && [ -p "$S/neg/fifo" ] && [ "$(cat "$M/$ID/neg/moved")" = moved ] \
  && ok "names stat'ed while missing appear once created, linked, made or renamed there" \
  || not_ok "a name looked up while missing stays missing: $(ls "$S/neg" | tr '\n' ' ')"
rm -r "$S/neg"

# ---- a 2 GiB file, written and read back by checksum across a remount ----
head -c 2G /dev/urandom | tee "$S/two-gib" | sha256sum > "$SCRATCH/two-gib.sum"
cd "$SCRATCH" || exit 1
unmount_fg "$M"; mount_fg "$M"
[ "$(stat -c %s "$S/two-gib")" = 2147483648 ] && sha256sum < "$S/two-gib" | cmp -s - "$SCRATCH/two-gib.sum" \
  && ok "a 2 GiB file reads back with the same SHA-256 after a remount" || not_ok "2 GiB file differs"
rm -f "$S/two-gib"

# ---- sealing behind an appending writer (fs/mount.c seal_ahead) ----
# A file appended to from empty is sealed while it is written; a write elsewhere drops
# what was sealed. Both must give the bytes written, and sealing ahead must cut exactly
# where chunking the whole file does: a copy written backwards (never sealed ahead) then
# adds no chunk to the store.
head -c 100M /dev/urandom > "$SCRATCH/sa.bin"
cat > "$SCRATCH/sa.py" <<'PY'
import os, sys, time
data = open(sys.argv[1], 'rb').read()
mib = 1 << 20
blocks = [(o, mib) for o in range(0, len(data), mib)]
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
mode = sys.argv[3]
if mode == 'append':       # 70 MiB, a commit once the sealer caught up, 30 MiB more
    plan, fsync_after = blocks, 69
elif mode == 'overwrite':  # rewrites MiB 10 after 70 MiB were appended and sealed
    plan, fsync_after = blocks[:70] + [(10 * mib, mib)] + blocks[70:], None
elif mode == 'truncate':   # 70 MiB, sealed, cut back to 50 MiB, then appended from there
    plan, fsync_after = blocks[:70] + [('truncate', 50 * mib)] + blocks[50:], None
elif mode == 'read':       # 70 MiB, sealed, read back while still open, 30 MiB more
    plan, fsync_after = blocks[:70] + [('read', 70 * mib)] + blocks[70:], None
else:                      # backwards: never an append
    plan, fsync_after = blocks[::-1], None
for i, (off, ln) in enumerate(plan):
    if i == 70 and mode in ('overwrite', 'truncate', 'read'):
        time.sleep(2)  # the sealer takes the first 64 MiB out of the staging file meanwhile
    if off == 'truncate':
        os.ftruncate(fd, ln)
    elif off == 'read':
        with open(sys.argv[2], 'rb') as r:
            if r.read(ln) != data[:ln]:
                sys.exit('a sealed-ahead file reads back wrong while open')
    else:
        os.pwrite(fd, data[off:off + ln], off)
    if i == fsync_after:
        time.sleep(1)
        os.fsync(fd)
os.fsync(fd)
os.close(fd)
sys.exit(0 if open(sys.argv[2], 'rb').read() == data else sys.argv[3] + ' differs')
PY
python3 "$SCRATCH/sa.py" "$SCRATCH/sa.bin" "$S/sa-append" append && ok "a file sealed behind its appending writer, with a commit between appends" || not_ok "sealing ahead of appends"
# backwards_adds SCRIPT DATA DEST: how many chunks a copy of DATA written backwards (so
# never sealed ahead: whole-file chunking) adds to the store. Objects over 16 KiB are file
# chunks; commits and directory nodes are smaller (and a timer commit during a slow run
# may add a pair of those). A sealing job that cut anywhere but at a content-defined cut
# would have left chunks the backwards copy does not share.
backwards_adds() {
  local before after
  before=$(find "$CAIRN_HOME/chunks" -type f -size +16k | wc -l)
  python3 "$1" "$2" "$3" backwards || { echo "no count: the backwards copy failed"; return; }
  after=$(find "$CAIRN_HOME/chunks" -type f -size +16k | wc -l)
  echo $((after - before))
}
added=$(backwards_adds "$SCRATCH/sa.py" "$SCRATCH/sa.bin" "$S/sa-backwards")
[ "$added" = 0 ] && ok "sealing ahead cuts where whole-file chunking does (a backwards copy added no chunk)" \
  || not_ok "a backwards copy of a sealed-ahead file added $added chunks"
python3 "$SCRATCH/sa.py" "$SCRATCH/sa.bin" "$S/sa-overwrite" overwrite && ok "a write behind the writer drops what was sealed ahead" || not_ok "overwrite behind a sealed-ahead writer"
python3 "$SCRATCH/sa.py" "$SCRATCH/sa.bin" "$S/sa-truncate" truncate && ok "a truncate into what was sealed ahead, then appends" || not_ok "truncate of a sealed-ahead file"
python3 "$SCRATCH/sa.py" "$SCRATCH/sa.bin" "$S/sa-read" read && ok "a sealed-ahead file reads back while its writer still has it open" || not_ok "reading a sealed-ahead file while open"

# ---- sealing to the end once a file's writers close it ----
# A closed file is sealed whole, its last chunk ending at the end of file. Growing it
# again must put that chunk back to be cut with what follows (else its chunks would no
# longer be those of the whole file); any other change drops what was sealed.
head -c 6M /dev/urandom > "$SCRATCH/se.bin"
cat > "$SCRATCH/se.py" <<'PY'
import os, sys, time
data, path, mode = open(sys.argv[1], 'rb').read(), sys.argv[2], sys.argv[3]
half = 3 * (1 << 20) + 12345
def put(flags, off, chunk):
    fd = os.open(path, flags, 0o644)
    os.pwrite(fd, chunk, off) if off is not None else os.write(fd, chunk)
    os.close(fd)
if mode == 'backwards':  # never appended, never sealed ahead: whole-file chunking
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for off in reversed(range(0, len(data), 1 << 20)):
        os.pwrite(fd, data[off:off + (1 << 20)], off)
    os.fsync(fd); os.close(fd)
    sys.exit(0)
put(os.O_WRONLY | os.O_CREAT | os.O_TRUNC, None, data[:half])
time.sleep(1.5)  # the sealer seals the closed file to its end meanwhile
if open(path, 'rb').read() != data[:half]:
    sys.exit('a file sealed to its end reads back wrong before any commit')
if mode == 'append':
    put(os.O_WRONLY | os.O_APPEND, None, data[half:])
    want = data
elif mode == 'overwrite':
    put(os.O_WRONLY, 1 << 20, b'x' * 5000)
    want = data[:1 << 20] + b'x' * 5000 + data[(1 << 20) + 5000:half]
else:  # truncate
    os.truncate(path, 2 << 20)
    want = data[:2 << 20]
fd = os.open(path, os.O_RDONLY); os.fsync(fd); os.close(fd)
sys.exit(0 if open(path, 'rb').read() == want else mode + ' differs')
PY
python3 "$SCRATCH/se.py" "$SCRATCH/se.bin" "$S/se-append" append \
  && ok "a file sealed to its end when closed reads back, then grows by O_APPEND" || not_ok "sealed to end, then appended"
added=$(backwards_adds "$SCRATCH/se.py" "$SCRATCH/se.bin" "$S/se-backwards")
[ "$added" = 0 ] && ok "... and its chunks are the whole file's (a backwards copy added no chunk)" \
  || not_ok "a backwards copy of a closed-then-appended file added $added chunks"
python3 "$SCRATCH/se.py" "$SCRATCH/se.bin" "$S/se-overwrite" overwrite && ok "a write into a file sealed to its end" || not_ok "overwrite of a file sealed to its end"
python3 "$SCRATCH/se.py" "$SCRATCH/se.bin" "$S/se-truncate" truncate && ok "a truncate of a file sealed to its end" || not_ok "truncate of a file sealed to its end"
head -c 2M "$SCRATCH/se.bin" > "$SCRATCH/se-truncated"
cp "$S/se-overwrite" "$SCRATCH/se-overwritten"

unmount_fg "$M"; mount_fg "$M"
differs=""
for f in append overwrite truncate read; do cmp -s "$S/sa-$f" "$SCRATCH/sa.bin" || differs="$differs sa-$f"; done
cmp -s "$S/se-append" "$SCRATCH/se.bin" || differs="$differs se-append"
cmp -s "$S/se-truncate" "$SCRATCH/se-truncated" || differs="$differs se-truncate"
cmp -s "$S/se-overwrite" "$SCRATCH/se-overwritten" || differs="$differs se-overwrite"
[ -z "$differs" ] && ok "... and all read back after a remount" || not_ok "after a remount these differ:$differs"
rm -f "$S"/sa-* "$S"/se-* "$SCRATCH"/sa.* "$SCRATCH"/se.* "$SCRATCH"/se-*

# ---- durability: fsync commits; umount commits; remount shows everything ----
seq_before=$(seq_of)
python3 -c "
import os
fd = os.open('$S/synced', os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'durable'); os.fsync(fd); os.close(fd)"
[ "$(seq_of)" -gt "$seq_before" ] && ok "fsync makes a commit" || not_ok "fsync did not commit"
unmount_fg "$M" && ok "umount" || not_ok "umount"
mount_fg "$M"
check "everything is there after a remount" diff -r -x pipe "$SRC" "$S/cp"
[ "$(cat "$S/f1")" = two ] && [ "$(tail -c 3 "$S/sparse")" = end ] && cmp -s "$S/mid.bin" "$SCRATCH/mid.bin" \
  && ok "small, sparse and patched files survive the remount" || not_ok "files changed across remount"
# cold reads of a committed file: random 4 KiB reads (each pushes its whole chunk into the
# page cache), then a sequential read with the kernel's own 128 KiB readahead (no pushes)
if [ "$(id -u)" = 0 ]; then echo 128 > "/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb"; fi
python3 - "$S/mid.bin" "$SCRATCH/mid.bin" <<'PY' && ok "random 4 KiB reads of a committed file return its bytes" || not_ok "random reads differ"
import os, random, sys
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:])
rng = random.Random(3)
size = os.fstat(b).st_size
for off in (rng.randrange(size) for _ in range(300)):
    if os.pread(a, 4096, off) != os.pread(b, 4096, off):
        sys.exit(1)
PY
cmp -s "$S/mid.bin" "$SCRATCH/mid.bin" && ok "... and a sequential read after them" || not_ok "sequential read after random reads differs"

echo "kill me" > "$S/unsynced-but-fsynced"
python3 -c "
import os
fd = os.open('$S/unsynced-but-fsynced', os.O_RDONLY); os.fsync(fd); os.close(fd)"
kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null; fusermount3 -u -z "$M" 2>/dev/null
mount_fg "$M"
[ "$(cat "$S/unsynced-but-fsynced" 2>/dev/null)" = "kill me" ] && ok "fsync'd data survives kill -9 of the daemon" || not_ok "fsync'd data lost"
unmount_fg "$M"
expect_exit 0 "cairn check is clean" C check --all

# ---- batching: a copy of many files is a handful of commits ----
mount_fg "$M" --commit-interval 3
seq_before=$(seq_of)
mkdir -p "$SCRATCH/many"; for i in $(seq 1 2000); do echo "$i" > "$SCRATCH/many/$i"; done
cp -r "$SCRATCH/many" "$S/many"
unmount_fg "$M"
commits=$(( $(seq_of) - seq_before ))
[ "$commits" -le 5 ] && ok "cp -r of 2000 files made $commits commits" || not_ok "cp -r of 2000 files made $commits commits"

# ---- early commits: with peers to replicate to, a large copy is committed in parts ----
mkdir -p "$SCRATCH/early"; for i in $(seq 1 12); do head -c 4M /dev/urandom > "$SCRATCH/early/$i"; done
mount_fg "$M" --commit-interval 3600
seq_before=$(seq_of)
cp -r "$SCRATCH/early" "$S/early-alone"
sleep 3
[ "$(seq_of)" = "$seq_before" ] && ok "no peers: a 48 MiB copy waits for the timer" \
  || not_ok "no peers: a 48 MiB copy was committed early ($seq_before -> $(seq_of))"
unmount_fg "$M"
cp "$CAIRN_HOME/peers" "$SCRATCH/peers.saved" 2>/dev/null || : > "$SCRATCH/peers.saved"
C peers add 127.0.0.1:9 # nobody answers there: a peer to replicate to, in name only
mount_fg "$M" --commit-interval 3600
seq_before=$(seq_of)
cp -r "$SCRATCH/early" "$S/early-shared"
for _ in $(seq 1 100); do [ "$(seq_of)" -ge $((seq_before + 2)) ] && break; sleep 0.2; done
[ "$(seq_of)" -ge $((seq_before + 2)) ] && ok "with a peer: a 48 MiB copy was committed in parts before any fsync" \
  || not_ok "with a peer: $(( $(seq_of) - seq_before )) commits during a 48 MiB copy"
unmount_fg "$M"
cp "$SCRATCH/peers.saved" "$CAIRN_HOME/peers"
mount_fg "$M"
expect_exit 0 "the early-committed copy matches its source" diff -r "$SCRATCH/early" "$S/early-shared"
rm -rf "$S/early-alone" "$S/early-shared"
unmount_fg "$M"

# ---- kill -9 during a copy: remount shows a consistent tree ----
for delay in 0.5 1.5; do
  mount_fg "$M" --commit-interval 1
  cp -r "$SRC" "$S/crash-$delay" & cp_pid=$!
  sleep "$delay"; kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null
  wait "$cp_pid" 2>/dev/null; fusermount3 -u -z "$M" 2>/dev/null
  expect_exit 0 "check clean after kill -9 at ${delay}s into a copy" C check --all
  mount_fg "$M"
  torn=0
  while read -r f; do
    rel=${f#"$S/crash-$delay"/}
    n=$(stat -c %s "$f")
    cmp -s -n "$n" "$f" "$SRC/$rel" || torn=$((torn + 1))
  done < <(find "$S/crash-$delay" -type f 2>/dev/null)
  [ "$torn" -eq 0 ] && ok "no torn file after the crash (each is a prefix of its source)" || not_ok "$torn files differ from their source"
  unmount_fg "$M"
done

# ---- .snapshots: earlier commits, read-only ----
mount_fg "$M"
echo "version 1" > "$S/history.txt"; python3 -c "import os; fd=os.open('$S/history.txt', os.O_RDONLY); os.fsync(fd)"
first=$(seq_of)
echo "version 2" > "$S/history.txt"; python3 -c "import os; fd=os.open('$S/history.txt', os.O_RDONLY); os.fsync(fd)"
snap=$(ls "$S/.snapshots" | grep "^$first-")
[ -n "$snap" ] && ok ".snapshots lists commit $first by seq and time ($snap)" || not_ok ".snapshots: $(ls "$S/.snapshots" | head -3)"
[ "$(cat "$S/.snapshots/$snap/history.txt" 2>/dev/null)" = "version 1" ] && ok "a snapshot shows the file as it was" || not_ok "snapshot content"
[ "$(cat "$S/history.txt")" = "version 2" ] && ok "while the live tree has the new version" || not_ok "live content"
check "a whole snapshot tree diffs clean against its source" diff -r -x pipe "$SRC" "$S/.snapshots/$snap/cp"
(echo x > "$S/.snapshots/$snap/new") 2>/dev/null; [ $? -ne 0 ] && ok "snapshots are read-only" || not_ok "wrote into a snapshot"
rm "$S/.snapshots/$snap/history.txt" 2>/dev/null; [ $? -ne 0 ] && ok "nothing can be removed from a snapshot" || not_ok "removed from a snapshot"
! ls -a "$S" | grep -q '^\.snapshots$' && ok ".snapshots is not listed, so cp -r and rsync of a namespace skip it" || not_ok ".snapshots is listed"
unmount_fg "$M"

# ---- file and directory caps: user.cairn.cap, and caps looked up at the root ----
getcap() { getfattr --absolute-names --only-values -n user.cairn.cap "$1" 2>/dev/null; }
fsync_path() { python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$1"; }
mount_fg "$M" --commit-interval 2
mkdir -p "$S/shared/sub"
head -c 2000000 /dev/urandom > "$SCRATCH/shared.bin"
cp "$SCRATCH/shared.bin" "$S/shared/data.bin"; echo "v1" > "$S/shared/note"; echo deep > "$S/shared/sub/deep"
fsync_path "$S/shared/note"
getfattr --absolute-names -d "$S/shared/data.bin" 2>/dev/null | grep -q '^user.cairn.cap=' && ok "listxattr lists user.cairn.cap on a file" || not_ok "user.cairn.cap not listed"
seq_before=$(seq_of)
FCAP=$(getcap "$S/shared/data.bin"); NCAP=$(getcap "$S/shared/note"); DCAP=$(getcap "$S/shared"); RCAP=$(getcap "$S/")
case "$FCAP $DCAP $RCAP" in "cairn-fr1-"*" cairn-dr1-"*" cairn-dr1-"*) ok "user.cairn.cap: fr on a file, dr on a directory and a namespace root" ;;
  *) not_ok "user.cairn.cap gave '$FCAP' '$DCAP' '$RCAP'" ;; esac
[ "$(getcap "$S/shared/data.bin")" = "$FCAP" ] && ok "the same file gives the same cap" || not_ok "file cap changed between reads"
cmp -s "$M/$FCAP" "$SCRATCH/shared.bin" && ok "cat MNT/<file cap> reads the file" || not_ok "file cap at the root"
[ "$(cat "$M/$NCAP")" = v1 ] && ok "... a small inline one too" || not_ok "inline file cap"
[ "$(ls "$M/$DCAP" | tr '\n' ' ')" = "data.bin note sub " ] && ok "ls MNT/<dir cap> lists the directory" || not_ok "ls of a dir cap: $(ls "$M/$DCAP" 2>&1)"
check "cp -r MNT/<dir cap> copies it" cp -r "$M/$DCAP" "$SCRATCH/fromcap"
[ "$(cat "$SCRATCH/fromcap/sub/deep")" = deep ] && cmp -s "$SCRATCH/fromcap/data.bin" "$SCRATCH/shared.bin" && ok "... with the right content" || not_ok "cp -r of a dir cap differs"
check "cp MNT/<file cap> copies it" cp "$M/$FCAP" "$SCRATCH/fromcap.bin"
! ls "$M" | grep -q '^cairn-' && ok "caps looked up are not listed at the root" || not_ok "caps listed at the root"
python3 - "$M/$FCAP" "$M/$DCAP" <<'PY' && ok "writes through caps get EROFS" || not_ok "a cap view is writable"
import errno, os, sys
f, d = sys.argv[1], sys.argv[2]
for op in (lambda: os.open(f, os.O_WRONLY), lambda: os.open(d + '/new', os.O_CREAT | os.O_WRONLY),
           lambda: os.mkdir(d + '/newdir'), lambda: os.unlink(d + '/note'), lambda: os.chmod(f, 0o600),
           lambda: os.truncate(f, 0)):
    try:
        op(); raise SystemExit(1)
    except OSError as e:
        if e.errno != errno.EROFS: raise SystemExit(2)
PY
[ "$(getcap "$M/$FCAP")" = "$FCAP" ] && [ "$(getcap "$M/$DCAP")" = "$DCAP" ] && ok "a cap's view answers user.cairn.cap with that cap" || not_ok "cap of a cap view"
getcap "$M/$DCAP/note" >/dev/null; [ $? -ne 0 ] && ok "a file inside a directory cap has no cap of its own" || not_ok "file cap inside a dir cap"
# snapshot semantics: change and remove what the caps name
echo "v2" > "$S/shared/note"; rm "$S/shared/data.bin"; fsync_path "$S/shared/note"
[ "$(cat "$M/$NCAP")" = v1 ] && cmp -s "$M/$FCAP" "$SCRATCH/shared.bin" && [ -e "$M/$DCAP/data.bin" ] \
  && ok "caps still show the old content after a change, a delete and a commit" || not_ok "a cap followed the change"
NCAP2=$(getcap "$S/shared/note")
[ -n "$NCAP2" ] && [ "$NCAP2" != "$NCAP" ] && [ "$(cat "$M/$NCAP2")" = v2 ] && ok "the changed file has a new cap" || not_ok "new cap of a changed file"
# uncommitted writes: the cap names the file as it is now
seq_before=$(seq_of)
echo "v3, not yet committed" > "$S/shared/note"
NCAP3=$(getcap "$S/shared/note")
[ "$(cat "$M/$NCAP3" 2>/dev/null)" = "v3, not yet committed" ] && ok "user.cairn.cap of a file with unsaved writes names them" || not_ok "cap of an uncommitted file"
[ "$(seq_of)" -gt "$seq_before" ] && ok "... after committing them" || not_ok "unsaved writes were not committed for the cap"
# a cap of a file in .snapshots: the live namespace stores its object
snap=$(ls "$S/.snapshots" | sort -n | tail -1)
[ -n "$snap" ] && OLDCAP=$(getcap "$S/.snapshots/$snap/history.txt")
[ "$(cat "$M/$OLDCAP" 2>/dev/null)" = "version 2" ] && ok "user.cairn.cap works inside .snapshots" || not_ok "cap of a snapshot file: '$OLDCAP'"
FVCAP=$(C cap --verify "$FCAP")
cat "$M/$FVCAP" >/dev/null 2>"$SCRATCH/last.err"; grep -q "Permission denied" "$SCRATCH/last.err" && ok "a verify cap at the root cannot be read (EACCES)" || not_ok "verify cap at the root: $(cat "$SCRATCH/last.err")"
grep -q "lookup of a 'fv' cap at the mount root: a verify cap" "$SCRATCH/daemon.log" && ok "... and the log says why" || not_ok "no log line for the verify cap"
BADCAP=$(mistype "$FCAP")
cat "$M/$BADCAP" >/dev/null 2>&1; [ $? -ne 0 ] && grep -q "checksum mismatch" "$SCRATCH/daemon.log" && ok "a mistyped file cap is not found, and logged" || not_ok "mistyped file cap"
unmount_fg "$M"
# every object the caps name was listed by a commit: the CLI finds them without committing
seq_before=$(seq_of)
[ "$(C cap site:/shared/note)" = "$NCAP3" ] && [ "$(seq_of)" = "$seq_before" ] && ok "the cap objects made in the mount were committed" || not_ok "cap objects not committed by the mount"
# another node with only the chunk files, no keyring: by CLI and by its own mount
H2="$SCRATCH/home-peer"
CAIRN_HOME="$H2" C init >/dev/null
cp -r "$CAIRN_HOME/chunks/." "$H2/chunks/"
CAIRN_HOME="$H2" C get "$FCAP" | cmp -s - "$SCRATCH/shared.bin" && ok "another home with only the chunks gets the file cap" || not_ok "file cap in another home"
M2="$SCRATCH/mnt-peer"
CAIRN_HOME="$H2" mount_fg "$M2"
cmp -s "$M2/$FCAP" "$SCRATCH/shared.bin" && ok "... and its mount shows the file cap" || not_ok "file cap in another home's mount"
check "... and the directory cap" diff -r "$M2/$DCAP" "$SCRATCH/fromcap"
[ -z "$(ls "$M2")" ] && ok "... while its root lists no namespace" || not_ok "peer mount root: $(ls "$M2")"
unmount_fg "$M2"

# ---- mount(8) and fstab: mount -t fuse.cairn HOME MNT, or -t fuse 'CAIRN#HOME' ----
if [ -x /sbin/mount.fuse3 ] || [ -x /usr/sbin/mount.fuse3 ]; then
  MOUNTS="$MOUNTS $M"
  # mount(8) runs helpers with a fixed PATH, so name the binary: "prog#source" (fstab form)
  check "mount -t fuse 'CAIRN#HOME' MNT (the mount helper convention)" mount -t fuse -o commit_interval=2 "$CAIRN#$CAIRN_HOME" "$M"
  [ -d "$M/$ID" ] && ok "... serves the namespaces" || not_ok "helper mount is empty"
  check "umount" umount "$M"
  for _ in $(seq 1 50); do pgrep -f "cairn $CAIRN_HOME" >/dev/null || break; sleep 0.1; done
else
  not_ok "mount.fuse3 is missing (package fuse3)"
fi

# ---- caps at the root, read-only namespaces ----
C ns new --name other >/dev/null
OTHER_READ=$(C cap other --read); OTHER_ID=$(C ns ls | awk '$NF == "other" {print $1}')
mount_fg "$M"
echo "data" > "$M/other/file"; sync -f "$M/other/file"
echo "more" > "$M/other/file2"
python3 -c "import os; fd=os.open('$M/other/file', os.O_RDONLY); os.fsync(fd)"
unmount_fg "$M"
# forget the write-cap: the namespace is only reachable by its read-cap now
grep -v " other$" "$CAIRN_HOME/keyring" > "$SCRATCH/kr" && cat "$SCRATCH/kr" > "$CAIRN_HOME/keyring"
mount_fg "$M"
[ ! -e "$M/$OTHER_ID" ] && ok "a namespace not in the keyring is not listed" || not_ok "listed without a cap"
[ "$(cat "$M/$OTHER_READ/file" 2>/dev/null)" = data ] && ok "looking up a read-cap at the root shows the namespace" || not_ok "read-cap lookup"
grep -q "^cairn-nsr1-" "$CAIRN_HOME/keyring" && ok "and adds the cap to the keyring" || not_ok "keyring not updated"
(echo x > "$M/$OTHER_ID/new") 2>/dev/null; [ $? -ne 0 ] && ok "writes to a read-cap namespace fail" || not_ok "wrote to a read-only namespace"
python3 -c "
import os, errno
try:
    os.open('$M/$OTHER_ID/new', os.O_CREAT | os.O_WRONLY)
except OSError as e:
    raise SystemExit(0 if e.errno == errno.EROFS else 1)
raise SystemExit(1)" && ok "... with EROFS" || not_ok "not EROFS"
[ -n "$(getcap "$M/$OTHER_ID/")" ] && ok "user.cairn.cap of a directory in a read-cap namespace" || not_ok "dir cap in a read-only namespace"
getcap "$M/$OTHER_ID/file2" >/dev/null; [ $? -ne 0 ] && ok "a file whose writer made no cap has none in a read-cap namespace" || not_ok "file cap made without the write-cap"
! getfattr --absolute-names -d "$M/$OTHER_ID/file2" 2>/dev/null | grep -q user.cairn.cap && ok "... and none is listed" || not_ok "user.cairn.cap listed where it cannot be read"
grep -q "user.cairn.cap of 'file2'.*only the writer" "$SCRATCH/daemon.log" && ok "... and the log says why" || not_ok "no log line for the refused file cap"
unmount_fg "$M"

# ---- the corpus, if installed: cp -r then diff -r ----
if [ -d /usr/share/doc/postgresql-doc-15/html ]; then
  mount_fg "$M"
  check "cp -r of the postgresql documentation" cp -r /usr/share/doc/postgresql-doc-15/html "$S/pgdoc"
  check "diff -r" diff -r /usr/share/doc/postgresql-doc-15/html "$S/pgdoc"
  unmount_fg "$M"
fi
expect_exit 0 "cairn check is clean at the end" C check --all
if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$SCRATCH/daemon.log"; then
  not_ok "the daemon reported sanitizer errors:"; grep -E -A5 'Sanitizer|runtime error' "$SCRATCH/daemon.log" | head -40
else
  ok "the daemon ran clean (no sanitizer reports)"
fi
if crash_reports "$SCRATCH/daemon.log"; then not_ok "the daemon died of a fatal signal (above)"
else ok "the daemon did not die of a fatal signal"; fi
summary
