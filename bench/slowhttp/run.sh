#!/usr/bin/env bash
# Slow-client attacks against Kiln's router and API (issue 22), with slowhttptest, a tool
# Kiln's team did not write. Not a test and not run by CI: run it by hand, as root.
#
#   sudo bench/slowhttp/run.sh
#
# Starts a real `kiln server` in a temporary directory, deploys a small app with `git push`,
# then runs each of slowhttptest's four attacks for $DURATION seconds with $CONNS connections
# against the router (the app) and against the API: slowloris (-H, headers a line at a time),
# slow body (-B, a POST body a few bytes at a time), slow read (-X, a tiny receive window read
# slowly) and range (-R, many overlapping byte ranges). slowhttptest probes the target with
# a fresh request every second while the attack runs and counts the target available when the
# probe is answered within $PROBE_TIMEOUT seconds; the report is the share of those seconds,
# and the share of requests answered for a second probe from another address (see below).
#
# Knobs (environment): DURATION (60), CONNS (500), RATE (200 connections/s), PROBE_TIMEOUT (5),
# KILN_BIN (use this kiln binary instead of building one), KILN_ARGS (extra server flags),
# ONE_ADDRESS (1: attack and probes from the same address),
# PORT_BASE (18900), ATTACKS ("slowloris slowbody slowread range"), TARGETS ("router api").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
duration=${DURATION:-60}
conns=${CONNS:-500}
rate=${RATE:-200}
probe_timeout=${PROBE_TIMEOUT:-5}
base=${PORT_BASE:-18900}
router_port=$base
api_port=$((base + 1))
attacks=${ATTACKS:-slowloris slowbody slowread range}
targets=${TARGETS:-router api}

if [ "$(id -u)" != 0 ]; then
  echo "slowhttp bench: needs root (packages, dyno containers). Run: sudo $0" >&2
  exit 1
fi
missing=()
command -v slowhttptest >/dev/null || missing+=(slowhttptest)
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${KILN_BIN:-}" ]; then
  kiln=$KILN_BIN
else
  echo "== building kiln (release)"
  (cd "$repo" && cargo build --release -q -p kiln)
  kiln="$repo/target/release/kiln"
fi

work=$(mktemp -d /tmp/kiln-bench-slowhttp.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "== starting kiln server (data in $work/data)"
# On every address: the attack comes from a network namespace (below).
"$kiln" server --data-dir "$work/data" --api-listen "0.0.0.0:$api_port" --router-listen "0.0.0.0:$router_port" ${KILN_ARGS:-} >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 1 300); do grep -q "Kiln is running" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
grep -q "Kiln is running" "$work/server.log" || { cat "$work/server.log"; echo "kiln server did not start" >&2; exit 1; }
export KILN_API_URL="http://127.0.0.1:$api_port" KILN_API_KEY HOME="$work/home"
KILN_API_KEY=$(cat "$work/data/admin-api-key")
mkdir -p "$HOME"
git config --global user.email bench@kiln.invalid
git config --global user.name bench
git config --global init.defaultBranch main

app="$work/app"
mkdir -p "$app"
cat >"$app/app.py" <<'PY'
import os, http.server
BODY = b"Hello from behind the router.\n" * 100
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    do_HEAD = do_GET
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.do_GET()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
PY
echo 'web: python3 app.py' >"$app/Procfile"
(cd "$app" && git init -q && git add -A && git commit -qm app)
"$kiln" apps:create slowapp >/dev/null
(cd "$app" && git push -q "http://kiln:$KILN_API_KEY@127.0.0.1:$api_port/slowapp.git" HEAD:main) >"$work/push.log" 2>&1 || { cat "$work/push.log"; exit 1; }
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: slowapp.localhost' "http://127.0.0.1:$router_port/")" = 200 ] && break
  sleep 0.2
done

# Two kinds of probes. slowhttptest's own probe (a fresh request every $PROBE_TIMEOUT seconds,
# answered in time or not, the same for every second in between) comes from the attacker's
# address: the per-address caps turn it away with the attack once the attack holds its share,
# which is what they are for. So a second probe, as the app's other users, comes from another
# address: slowhttptest runs in a network namespace of its own (10.250.0.2, joined to this one
# by a veth pair) and the other probe asks every second from here (127.0.0.1) with curl.
# ONE_ADDRESS=1 runs the attack from 127.0.0.1 too. slowhttptest resolves the app's hostname
# itself; it sees a private /etc/hosts (a mount namespace), so the machine's file is untouched.
ns=kilnslow$$
if [ -z "${ONE_ADDRESS:-}" ]; then
  ip netns add "$ns"
  ip link add "ks$$a" type veth peer name "ks$$b"
  ip link set "ks$$b" netns "$ns"
  ip addr add 10.250.0.1/24 dev "ks$$a"
  ip link set "ks$$a" up
  ip netns exec "$ns" ip addr add 10.250.0.2/24 dev "ks$$b"
  ip netns exec "$ns" ip link set "ks$$b" up
  ip netns exec "$ns" ip link set lo up
  attack_ip=10.250.0.1 in_ns=(ip netns exec "$ns")
else
  attack_ip=127.0.0.1 in_ns=()
fi
cleanup_net() { [ -n "${ONE_ADDRESS:-}" ] || { ip netns del "$ns" 2>/dev/null; ip link del "ks$$a" 2>/dev/null; } || true; }
trap 'cleanup; cleanup_net' EXIT
{ cat /etc/hosts; echo "$attack_ip slowapp.localhost"; } >"$work/hosts"
attack_cmd() { "${in_ns[@]}" unshare -m sh -c 'mount --bind "$0" /etc/hosts && shift && exec slowhttptest "$@"' "$work/hosts" - "$@"; }
# Another user's probe: a request every second for `duration` seconds; prints how many were
# answered (any HTTP status) within the probe timeout, and how many were sent.
other_probe() { # target
  local answered=0 sent=0 code
  for _ in $(seq 1 "$duration"); do
    case $1 in
      router) code=$(curl -s -o /dev/null -m "$probe_timeout" -w '%{http_code}' -H 'Host: slowapp.localhost' "http://127.0.0.1:$router_port/" || true) ;;
      api) code=$(curl -s -o /dev/null -m "$probe_timeout" -w '%{http_code}' "http://127.0.0.1:$api_port/apps" || true) ;;
    esac
    sent=$((sent + 1))
    [ "${code:-000}" != 000 ] && answered=$((answered + 1))
    sleep 1
  done
  echo "$answered $sent"
}
run() { # attack target -> prints both probes' shares answered
  local attack=$1 target=$2 url mode=()
  case $target in
    router) url="http://slowapp.localhost:$router_port/" ;;
    api) url="http://$attack_ip:$api_port/apps" ;;
  esac
  case $attack in
    slowloris) mode=(-H -i 10 -x 24) ;;
    slowbody) mode=(-B -i 10 -s 8192 -x 10) ;;
    slowread) mode=(-X -w 512 -y 1024 -n 5 -z 32 -k 3) ;;
    range) mode=(-R -a 10 -b 3000) ;;
  esac
  local out="$work/$attack-$target"
  attack_cmd "${mode[@]}" -c "$conns" -r "$rate" -l "$duration" -p "$probe_timeout" -g -o "$out" -u "$url" >"$out.log" 2>&1 &
  local attacker=$!
  # Once the attack has its connections up.
  sleep 3
  local other
  other=$(other_probe "$target")
  wait "$attacker" || true
  # The CSV: seconds, closed, pending, connected, service available (non-zero or 0) per second.
  local own
  own=$(awk -F, 'NR > 1 && $5 != "" {n++; up += ($5 > 0)} END {if (n) printf "%.1f", 100 * up / n; else printf "-"}' "$out.csv" 2>/dev/null || echo -)
  read -r answered sent <<<"$other"
  echo "$own $(awk -v a="$answered" -v s="$sent" 'BEGIN {printf "%.1f", s ? 100 * a / s : 0}') $answered $sent"
}

load() { cut -d' ' -f1 /proc/loadavg; }
summary="$repo/target/bench/slowhttp-$(date -u +%Y%m%dT%H%M%SZ).txt"
mkdir -p "$(dirname "$summary")"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(nproc) cores, $(uname -r); $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9.]*\).*/slowhttptest \1/p')"
  echo "each attack: $conns connections at $rate/s for ${duration}s from $(if [ -n "${ONE_ADDRESS:-}" ]; then echo 127.0.0.1; else echo "10.250.0.2 (a network namespace)"; fi); probe timeout ${probe_timeout}s"
  echo
  printf "%-10s %-7s %22s %26s\n" attack target "slowhttptest's probe" "another address's probe"
} | tee "$summary"
for attack in $attacks; do
  for target in $targets; do
    read -r own other answered sent < <(run "$attack" "$target")
    printf "%-10s %-7s %21s%% %17s%% (%s of %s)   load %s\n" "$attack" "$target" "$own" "$other" "$answered" "$sent" "$(load)" | tee -a "$summary"
  done
done
echo
echo "raw output (logs, CSV, HTML): $work; summary: $summary"
grep -i "refused\|open-files" "$work/server.log" | head -5 || true
