# Sourced by the benchmarks. settle: syncs, then waits (at most 30 s) until the CPUs are at
# least 90% idle over half a second, so that work one measurement left behind (cairn
# sealing after cp returns, hosts finishing a fetch, the kernel writing back pages) is
# not charged to the next one.
settle() {
  sync
  local label u n s i w q sq u2 n2 s2 i2 w2 q2 sq2 busy idle
  for _ in $(seq 1 60); do
    read -r label u n s i w q sq _ < /proc/stat
    sleep 0.5
    read -r label u2 n2 s2 i2 w2 q2 sq2 _ < /proc/stat
    busy=$(( (u2 + n2 + s2 + q2 + sq2) - (u + n + s + q + sq) ))
    idle=$(( (i2 + w2) - (i + w) ))
    [ $((busy * 10)) -le $((busy + idle)) ] && return 0
  done
}
