#!/usr/bin/env bash
# A full disk: $CAIRN_HOME on a small tmpfs. Writes that do not fit get ENOSPC at once,
# what was written before stays, and cairn umount refuses to drop what it cannot commit.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

[ -c /dev/fuse ] || { not_ok "no /dev/fuse on this machine"; summary; exit 1; }
export CAIRN_HOME="$SCRATCH/home"
mkdir -p "$CAIRN_HOME"
if ! mount -t tmpfs -o size=48m tmpfs "$CAIRN_HOME" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs for the home (that needs root)"
  SUMMARY_DONE=1
  exit 77 # counted as skipped by the test driver, not as passed
fi
AT_EXIT="umount -l '$CAIRN_HOME' 2>/dev/null"
C() { "$CAIRN" "$@"; }
M="$SCRATCH/mnt"
mkdir -p "$M"
C init --listen 127.0.0.1:0 >/dev/null
C ns new --name s >/dev/null
# ---- a commit that cannot be made: cairn umount keeps the mount ----
check "cairn mount with its home on a 48 MiB tmpfs" sh -c "\"$CAIRN\" mount --commit-interval 3600 '$M' && mountpoint -q '$M'"
MOUNTS="$M"
seq_of() { C ns ls | awk '$NF == "s" {print $4}'; }
echo "committed" > "$M/s/old.txt"
python3 -c "import os, sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))" "$M/s/old.txt"
echo "written before the disk fills" > "$M/s/late.txt"
# (the commit interval is an hour: nothing commits late.txt behind the test's back)
seq_before=$(seq_of)
getfattr --only-values -n user.cairn.cap "$M/s/old.txt" > /dev/null 2>&1 && [ "$(seq_of)" = "$seq_before" ] \
  && ok "the cap of a committed file makes no commit while another file waits for one" \
  || not_ok "user.cairn.cap of a committed file committed ($seq_before -> $(seq_of))"
head -c 100000000 /dev/zero > "$CAIRN_HOME/filler" 2>/dev/null # fills the tmpfs
expect_exit 1 "cairn umount with a commit failing for room exits 1" C umount "$M"
stderr_has "... saying the mount stays and why" "still mounted: its changes cannot be committed (No space left on device"
mountpoint -q "$M" && ok "... and the mount is still there" || not_ok "the mount is gone"
[ "$(cat "$M/s/late.txt" 2>/dev/null)" = "written before the disk fills" ] && ok "... with the uncommitted file" \
  || not_ok "the uncommitted file is gone"
rm -f "$CAIRN_HOME/filler"
check "once there is room, cairn umount succeeds" C umount "$M"
MOUNTS=""

# ---- writes that do not fit ----
check "cairn mount again" sh -c "\"$CAIRN\" mount '$M' && mountpoint -q '$M'"
MOUNTS="$M"
[ "$(cat "$M/s/late.txt" 2>/dev/null)" = "written before the disk fills" ] && ok "the file written before the disk filled is committed" \
  || not_ok "late.txt lost"
for i in 1 2 3 4 5 6 7; do head -c 8000000 /dev/urandom > "$SCRATCH/big$i"; done
copied=0
for i in 1 2 3 4 5 6 7; do
  cp "$SCRATCH/big$i" "$M/s/big$i" 2>"$SCRATCH/cp.err" || break
  copied=$i
done
[ "$copied" -ge 3 ] && [ "$copied" -lt 7 ] && ok "cp of 8 MB files succeeds $copied times, then fails" \
  || not_ok "copied $copied of 7 files of 8 MB into 48 MiB"
grep -q "No space left on device" "$SCRATCH/cp.err" && ok "... with ENOSPC" || not_ok "cp said: $(cat "$SCRATCH/cp.err")"
grep -q "writes refused (ENOSPC)" "$CAIRN_HOME/cairn.log" && ok "... and one log line saying why" \
  || not_ok "no log line for the full disk"
[ "$(grep -c "writes refused" "$CAIRN_HOME/cairn.log")" -eq 1 ] && ok "... only one" \
  || not_ok "$(grep -c "writes refused" "$CAIRN_HOME/cairn.log") log lines for one full disk"
check "fsync of a file that fitted succeeds" python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$M/s/big1"
same=1
for i in $(seq 1 "$copied"); do cmp -s "$SCRATCH/big$i" "$M/s/big$i" || same=0; done
[ "$same" = 1 ] && ok "the files that fitted read back" || not_ok "a file that fitted differs"
check "cairn umount" C umount "$M"
MOUNTS=""

# ---- everything that was accepted is there after a remount ----
check "cairn mount again" sh -c "\"$CAIRN\" mount '$M' && mountpoint -q '$M'"
MOUNTS="$M"
same=1
for i in $(seq 1 "$copied"); do cmp -s "$SCRATCH/big$i" "$M/s/big$i" || same=0; done
[ "$same" = 1 ] && ok "every file that fitted is there after a remount" || not_ok "a file that fitted differs after the remount"
check "cairn umount" C umount "$M"
MOUNTS=""
check "cairn check finds the namespace sound" C check s
if crash_reports "$CAIRN_HOME/cairn.log"; then not_ok "cairn died of a fatal signal"; else ok "no fatal signal"; fi
summary
