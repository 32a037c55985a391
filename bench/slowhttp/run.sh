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
# probe is answered within $PROBE_TIMEOUT seconds; the report is the share of those seconds.
#
# Knobs (environment): DURATION (60), CONNS (500), RATE (200 connections/s), PROBE_TIMEOUT (5),
# KILN_BIN (use this kiln binary instead of building one), KILN_ARGS (extra server flags),
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
"$kiln" server --data-dir "$work/data" --api-listen "127.0.0.1:$api_port" --router-listen "127.0.0.1:$router_port" ${KILN_ARGS:-} >"$work/server.out" 2>"$work/server.log" &
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

# The router is reached as an HTTP proxy: slowhttptest then sends absolute-form requests
# (`GET http://slowapp.localhost/`), which the router routes by their host, as RFC 9112 says,
# without any name resolution for the app's hostname. The API is reached directly.
run() { # attack target -> prints the share of probe seconds answered
  local attack=$1 target=$2 url via=() mode=()
  case $target in
    router) url="http://slowapp.localhost/"; via=(-d "127.0.0.1:$router_port" -e "127.0.0.1:$router_port") ;;
    api) url="http://127.0.0.1:$api_port/apps" ;;
  esac
  case $attack in
    slowloris) mode=(-H -i 10 -x 24) ;;
    slowbody) mode=(-B -i 10 -s 8192 -x 10) ;;
    slowread) mode=(-X -w 512 -y 1024 -n 5 -z 32 -k 3) ;;
    range) mode=(-R -a 10 -b 3000) ;;
  esac
  local out="$work/$attack-$target"
  slowhttptest "${mode[@]}" -c "$conns" -r "$rate" -l "$duration" -p "$probe_timeout" -g -o "$out" -u "$url" "${via[@]}" >"$out.log" 2>&1 || true
  # The CSV: seconds, closed, pending, connected, service available (1 or 0) per second.
  awk -F, 'NR > 1 && $5 != "" {n++; up += ($5 > 0)} END {if (n) printf "%.1f %d %d\n", 100 * up / n, up, n; else print "- 0 0"}' "$out.csv"
}

load() { cut -d' ' -f1 /proc/loadavg; }
summary="$repo/target/bench/slowhttp-$(date -u +%Y%m%dT%H%M%SZ).txt"
mkdir -p "$(dirname "$summary")"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(nproc) cores, $(uname -r); $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9.]*\).*/slowhttptest \1/p')"
  echo "each attack: $conns connections at $rate/s for ${duration}s; probe timeout ${probe_timeout}s"
  echo
  printf "%-10s %-7s %10s %s\n" attack target answered "(probe seconds)"
} | tee "$summary"
for attack in $attacks; do
  for target in $targets; do
    read -r pct up n < <(run "$attack" "$target")
    printf "%-10s %-7s %9s%% %s\n" "$attack" "$target" "$pct" "($up of $n; load $(load))" | tee -a "$summary"
  done
done
echo
echo "raw output (logs, CSV, HTML): $work; summary: $summary"
grep -i "refused\|open-files" "$work/server.log" | head -5 || true
