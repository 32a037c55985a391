#!/usr/bin/env bash
# Kiln's dyno start benchmark (issue 3). Not a test: run it by hand, as root, on the machine
# you want numbers for. See bench/README.md for what it measures and the recorded results.
#
#   sudo bench/dyno-start/run.sh              # both measurements
#   sudo bench/dyno-start/run.sh starts       # A only: Kiln vs runc start latency
#   sudo bench/dyno-start/run.sh scale        # B only: web=0 -> web=50 until routable
#
# Knobs (environment): RUNS (starts per runtime, default 200), WARMUP (10), SPORADIC_RUNS
# (100) and PAUSE_MS (150) for the idle-start pass, DYNOS (50), ROUNDS (scale rounds, 3), WORK_DIR (scratch; default the system temp dir, must not be tmpfs
# for overlay upper dirs of some kernels).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
what=${1:-all}
case "$what" in all|starts|scale) ;; *) echo "usage: $0 [all|starts|scale]" >&2; exit 2 ;; esac

if [ "$(id -u)" != 0 ]; then
  echo "dyno-start: needs root (namespaces, mounts, cgroups, runc). Run: sudo $0 $*" >&2
  exit 1
fi

# Tools: runc is what Kiln is compared with; crun is tried too and skipped where it cannot
# run (Debian's crun 1.8.1 refuses hybrid cgroup hierarchies). git serves pushes (scale).
missing=()
command -v runc >/dev/null || missing+=(runc)
command -v crun >/dev/null || missing+=(crun)
command -v git >/dev/null || missing+=(git)
command -v nft >/dev/null || missing+=(nftables)
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  for p in "${missing[@]}"; do
    apt-get install -y -qq "$p" >/dev/null || { [ "$p" = crun ] && echo "   (crun not installable here: it will be skipped)"; } || true
  done
  command -v runc >/dev/null || { echo "dyno-start: runc is required and could not be installed" >&2; exit 1; }
fi

echo "== building kiln and the benchmark (release)"
(cd "$repo" && cargo build --release -p kiln -p kiln-bench-dyno-start)
target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$repo/target")
kiln="$target/release/kiln"
bench="$target/release/dyno-start"

out_dir="$target/bench"
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$out_dir/dyno-start-$stamp.txt"

cgroups="cgroup v1"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cgroups="cgroup v2"
elif [ -d /sys/fs/cgroup/unified ]; then
  cgroups="hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)"
fi
commit=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$repo" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
{
  echo "== dyno-start, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "   commit $commit$dirty"
  echo "   $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GB RAM, kernel $(uname -r), $cgroups"
  echo "   $(runc --version | head -1); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
} | tee "$log"

work_args=()
# Dynos get network namespaces of their own (issue 15): measured with one on both sides
# unless NETWORK=0.
net_args=()
[ "${NETWORK:-1}" = 1 ] && net_args=(--network)
[ -n "${WORK_DIR:-}" ] && work_args=(--work-dir "$WORK_DIR")
if [ "$what" = all ] || [ "$what" = starts ]; then
  "$bench" starts --kiln "$kiln" --runs "${RUNS:-200}" --warmup "${WARMUP:-10}" --csv "$out_dir/dyno-start-$stamp-samples.csv" "${work_args[@]}" "${net_args[@]}" | tee -a "$log"
  echo | tee -a "$log"
  # The same, each start after an idle pause, as sporadic starts in production find the
  # machine (back-to-back starts keep kernel state warm, e.g. the cgroup attach lock).
  echo "== sporadic starts: ${PAUSE_MS:-150} ms idle before each" | tee -a "$log"
  "$bench" starts --kiln "$kiln" --runs "${SPORADIC_RUNS:-100}" --warmup 5 --pause-ms "${PAUSE_MS:-150}" --burst 0 --only kiln,runc "${work_args[@]}" "${net_args[@]}" | tee -a "$log"
  echo | tee -a "$log"
fi
if [ "$what" = all ] || [ "$what" = scale ]; then
  "$bench" scale --kiln "$kiln" --dynos "${DYNOS:-50}" --rounds "${ROUNDS:-3}" "${work_args[@]}" | tee -a "$log"
fi
echo | tee -a "$log"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
echo "(this output: $log)"
