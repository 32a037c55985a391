#!/usr/bin/env bash
# Sleeping apps (issue 19), against references in the same run:
#   1. wake latency: a request to a sleeping app (the Python sample's web process, woken by
#      the request) until its answer, ROUNDS times (default 5); reference: the same command
#      started by hand on the same machine, from exec until it answers its first request.
#   2. density: APPS apps (default 1000), each with one web dyno that has gone to sleep, and
#      the server's RSS then (target: under 200 MB), and the platform's memory per running
#      dyno (the server's RSS with RUNNING dynos up, less its RSS with none, per dyno, plus
#      the proportional set size of each dyno's helper and init processes).
# Run as root on the machine you want numbers for: sudo bench/sleeping/run.sh [wake|density]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5} APPS=${APPS:-1000} RUNNING=${RUNNING:-20} PARALLEL=${PARALLEL:-4}
PARTS=("$@"); [ ${#PARTS[@]} -gt 0 ] || PARTS=(wake density)
source bench/lib.sh
start_kiln sleeping
export KILN_API_URL=http://127.0.0.1:$API KILN_API_KEY=$KEY
# Outside any git repository: `apps:create` adds a git remote to the one it runs in.
kiln() { (cd "$WORK" && "$KILN" "$@"); }
rss_mb() { awk '/VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ms_since() { python3 -c "import time,sys; print(round((time.time() - float(sys.argv[1])) * 1000))" "$1"; }

# The sample app: Python's own HTTP server, nothing to install.
SRC=$WORK/src
mkdir -p "$SRC"
printf 'web: python3 -m http.server $PORT\n' > "$SRC/Procfile"
echo "print('sample')" > "$SRC/app.py"
: > "$SRC/requirements.txt"
git -C "$SRC" init -q -b main && git -C "$SRC" add -A && git -C "$SRC" -c user.name=b -c user.email=b@b commit -qm app
push() { git -C "$SRC" push -q "http://kiln:$KEY@127.0.0.1:$API/$1.git" HEAD:main >/dev/null 2>&1; }
get() { curl -s -o /dev/null -w '%{http_code}' -H "Host: $1.localhost" "http://127.0.0.1:$ROUTER/"; }

wake() {
  echo "== wake latency, $ROUNDS rounds"
  kiln apps:create wake-me >/dev/null
  push wake-me
  kiln ps:scale worker=0 -a wake-me >/dev/null 2>&1 || true
  kiln ps:autosleep on --after 1s -a wake-me >/dev/null
  local w=() b=()
  for _ in $(seq "$ROUNDS"); do
    until kiln ps -a wake-me | grep -q 'web.1: idle'; do sleep 0.2; done
    sleep 0.5
    local t0; t0=$(now)
    [ "$(get wake-me)" = 200 ] || { echo "the wake failed"; exit 1; }
    w+=("$(ms_since "$t0")")
    # The reference: the same command by hand, until it answers.
    local p; p=$(port); t0=$(now)
    (cd "$SRC" && exec python3 -m http.server "$p" >/dev/null 2>&1) &
    local pid=$!
    until curl -s -o /dev/null "http://127.0.0.1:$p/"; do sleep 0.005; done
    b+=("$(ms_since "$t0")")
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  local mw mb; mw=$(median "${w[@]}") mb=$(median "${b[@]}")
  echo "   wake (request to answer, through the router): ${w[*]} ms, median $mw"
  echo "   cold boot by hand (exec to answer):            ${b[*]} ms, median $mb"
  python3 -c "import sys; d=float(sys.argv[1])-float(sys.argv[2]); print(f'   the wake costs {d:.0f} ms more than the boot (target: at most 300 ms)')" "$mw" "$mb"
}

density() {
  echo "== density: $APPS sleeping apps"
  local base; base=$(rss_mb "$SERVER")
  echo "   server RSS with no app: $base MB"
  make_app() {
    local name=idle-$1
    kiln apps:create "$name" >/dev/null
    kiln ps:autosleep on --after 1s -a "$name" >/dev/null
    push "$name"
  }
  export -f make_app push kiln
  export KILN SRC KEY API WORK
  local t0; t0=$(now)
  seq "$APPS" | xargs -P "$PARALLEL" -I{} bash -c 'make_app {}'
  echo "   made and pushed $APPS apps in $(ms_since "$t0") ms"
  until [ "$(kiln ps -a "idle-$APPS" | grep -c 'idle')" -ge 1 ]; do sleep 1; done
  sleep 5
  local procs; procs=$(ps -e -o comm= | grep -c python3 || true)
  echo "   python processes still running: $procs"
  echo "   server RSS with $APPS sleeping apps: $(rss_mb "$SERVER") MB (target: under 200 MB)"
  echo "== memory per running dyno: $RUNNING apps awake"
  local before; before=$(rss_mb "$SERVER")
  for i in $(seq "$RUNNING"); do kiln ps:autosleep off -a "idle-$i" >/dev/null; done
  for i in $(seq "$RUNNING"); do until [ "$(get "idle-$i")" = 200 ]; do sleep 0.2; done; done
  local after; after=$(rss_mb "$SERVER")
  local pss; pss=$(python3 - "$RUNNING" <<'PY'
import os, sys
total = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        # The dyno helper and each dyno's init (a fork of it): kiln-dyno-helper, or the kiln
        # binary's own `dyno-helper` where the small one is missing.
        helper = exe.endswith("/kiln-dyno-helper")
        own = exe.endswith("/kiln") and open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[1:2] == [b"dyno-helper"]
        if not (helper or own):
            continue
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    except (OSError, IndexError):
        pass
print(f"{total / 1024 / int(sys.argv[1]):.2f}")
PY
)
  echo "   server RSS: $before MB with none awake, $after MB with $RUNNING awake"
  echo "   per running dyno: $(python3 -c "import sys; print(round((float(sys.argv[2])-float(sys.argv[1]))/int(sys.argv[3]),2))" "$before" "$after" "$RUNNING") MB in the server, $pss MB of helper and init processes (PSS) (target: at most 1 MB in all)"
}

restarted() {
  echo "== after a restart of the server with the same apps"
  kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
  # shellcheck disable=SC2086
  "$KILN" server --data-dir "$WORK/data" --api-listen "127.0.0.1:$API" --router-listen "127.0.0.1:$ROUTER" ${KILN_SERVER_ARGS:-} >>"$WORK/server.log" 2>&1 &
  SERVER=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$API/account" -H "Authorization: Bearer $KEY"; do sleep 0.2; done
  sleep 15
  echo "   python processes running: $(ps -e -o comm= | grep -c python3 || true) (the sleeping apps stay asleep)"
  echo "   server RSS: $(rss_mb "$SERVER") MB"
}

for part in "${PARTS[@]}"; do "$part"; done
if [[ " ${PARTS[*]} " == *" density "* ]]; then restarted; fi
