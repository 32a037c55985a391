#!/usr/bin/env bash
# Kiln's router benchmark (issue 5). Not a test and not run by CI: run it by hand, as root,
# on the machine you want numbers for. See bench/README.md ("router") for what it measures
# and the recorded results.
#
#   sudo bench/router/run.sh
#
# One run measures, with `wrk -t1 -c$CONNS -d$DURATION --latency` over keep-alive:
#   uploads too (issue 20): `POST /upload` with a 16 KB body (wrk's upload.lua), through
#   Kiln, through nginx and directly, reported as Kiln / nginx;
#   (a) Kiln's router in front of a fast dyno: a real app deployed with `git push` whose
#       Procfile runs nginx on $PORT serving a small static file;
#   (b) nginx as a reverse proxy in front of the same dyno (worker_processes auto, upstream
#       keepalive), as a user would put it there;
#   (c) the dyno directly;
# and cache hits: Kiln's cache against Varnish (Debian's), both in front of the same dyno.
#
# Other builds and tests on a small machine make single runs noisy, so the five setups are
# measured ROUNDS times, interleaved, and the report takes each setup's median run.
#
# Knobs (environment): ROUNDS (3), CONNS (32), DURATION (10s), WARMUP (3s), MAX_LOAD (1.0: wait up to
# LOAD_WAIT seconds, default 600, for the 1-minute load average to fall below it, since other
# builds on a 2-core machine skew everything), KILN_BIN (use this kiln binary instead of
# building one), KILN_ARGS (extra `kiln server` flags, e.g. "--router-workers 2"), PORT_BASE (18700: the router, API, nginx proxy and Varnish take the next
# four ports), PROFILE (1: during the Kiln runs, also record a flat `perf` profile of the
# kiln server, its context switches per request, and in an extra 3 s run its system calls
# per request with `strace -c`; reported after the results), HOLD (1: keep everything
# running after the report, for poking at by hand, until the script is interrupted),
# INSTRUCTIONS (1: afterwards, count user-space instructions per proxied request of Kiln
# and of nginx under callgrind, a measure the machine's noise does not move; CALLGRIND_ARGS
# adds callgrind options to both, e.g. "--cache-sim=yes" for cache misses per request), CPU
# (1: afterwards, the user and system CPU time each proxy spends per request, CPU_ROUNDS pairs).
#
# Realistic dynos (issue 21): besides the nginx dyno, the app servers people actually deploy,
# each a small app under bench/router/apps/ pushed with `git push`: Python's standard library
# server in HTTP/1.1 mode (Nagle on), gunicorn and uvicorn (from PyPI, through the Python
# buildpack), Node's http module, and Puma and Thin (Debian's). Each is measured through
# Kiln's router, through the nginx proxy (upstream keep-alive) and directly, with
# `wrk -t1 -c$APP_CONNS -d$APP_DURATION`, in every round. Knobs: DYNOS (the app types, space
# separated; "" for none), APP_CONNS (4), APP_DURATION (5s), APP_WARMUP (2s).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${ROUNDS:-3}
conns=${CONNS:-32}
duration=${DURATION:-10s}
warmup=${WARMUP:-3s}
max_load=${MAX_LOAD:-1.0}
load_wait=${LOAD_WAIT:-600}
base=${PORT_BASE:-18700}
router_port=$base
api_port=$((base + 1))
proxy_port=$((base + 2))
varnish_port=$((base + 3))
dynos=${DYNOS-python-stdlib gunicorn uvicorn node puma thin}
app_conns=${APP_CONNS:-4}
app_duration=${APP_DURATION:-5s}
app_warmup=${APP_WARMUP:-2s}

if [ "$(id -u)" != 0 ]; then
  echo "router bench: needs root (packages, dyno containers). Run: sudo $0" >&2
  exit 1
fi

# --- tools -----------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
command -v varnishd >/dev/null || missing+=(varnish)
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
command -v nft >/dev/null || missing+=(nftables)
for d in $dynos; do
  case $d in
    puma) command -v puma >/dev/null || missing+=(puma) ;;
    thin) command -v thin >/dev/null || missing+=(thin) ;;
    node) [ -x /usr/bin/node ] || missing+=(nodejs) ;;
    gunicorn|uvicorn) /usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip) ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian starts nginx and Varnish as services on install; this benchmark runs its own, so
  # keep the packaged ones from starting (and from competing for the CPU) while installing.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# --- build -----------------------------------------------------------------------------------
target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$repo/target")
echo "== building kiln and the report (release)"
if [ -n "${KILN_BIN:-}" ]; then
  (cd "$repo" && cargo build --release -q -p kiln-bench-router)
  kiln=$KILN_BIN
else
  (cd "$repo" && cargo build --release -q -p kiln -p kiln-bench-router)
  kiln="$target/release/kiln"
fi
report="$target/release/router-report"

work=$(mktemp -d /tmp/kiln-bench-router.XXXXXX)
chmod 755 "$work"
out="$work/results"
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# --- Kiln, with the nginx app deployed -------------------------------------------------------
echo "== starting kiln server (data in $work/data)"
"$kiln" server --data-dir "$work/data" --api-listen "127.0.0.1:$api_port" --router-listen "127.0.0.1:$router_port" ${KILN_ARGS:-} >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 1 300); do grep -q "Kiln is running" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
grep -q "Kiln is running" "$work/server.log" || { cat "$work/server.log"; echo "kiln server did not start" >&2; exit 1; }
export KILN_API_URL="http://127.0.0.1:$api_port" KILN_API_KEY
KILN_API_KEY=$(cat "$work/data/admin-api-key")
export HOME="$work/home"
mkdir -p "$HOME"
git config --global user.email bench@kiln.invalid
git config --global user.name bench
git config --global init.defaultBranch main

app="$work/app"
mkdir -p "$app/public"
# The dyno: nginx on $PORT, one worker, no access log, keep-alive without a request cap.
cat >"$app/Procfile" <<'EOF'
web: sh start.sh
EOF
cat >"$app/start.sh" <<'EOF'
set -e
sed -e "s/@PORT@/$PORT/g" -e "s#@ROOT@#$HOME/public#g" nginx.conf.in > /tmp/nginx.conf
# Its address: its own network's (issue 15), or the host's when dynos share it.
echo "nginx dyno listening on $(hostname -I | cut -d' ' -f1):$PORT"
exec /usr/sbin/nginx -e stderr -p /tmp -c /tmp/nginx.conf -g 'daemon off;'
EOF
# `user root` only matters if dynos run as root (no per-app uid): the container's passwd has
# no `nobody` for nginx's default worker user. Otherwise nginx ignores it with a warning.
cat >"$app/nginx.conf.in" <<'EOF'
user root;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/html;
    keepalive_requests 1000000;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen @PORT@;
        root @ROOT@;
        location = /cached.html { add_header Cache-Control "public, max-age=3600"; }
        # Uploads (issue 20): nginx reads the body and answers a few bytes.
        location = /upload { client_max_body_size 1m; return 200 "stored\n"; }
    }
}
EOF
# A small static page (nginx's own welcome page is 615 bytes); /cached.html is the same
# page marked cacheable.
python3 - "$app/public" <<'EOF'
import sys
body = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>\n" + "<p>Kiln router benchmark page.</p>\n" * 14 + "</body></html>\n"
for name in ("index.html", "cached.html"):
    open(f"{sys.argv[1]}/{name}", "w").write(body)
EOF
(cd "$app" && git init -q && git add -A && git commit -qm "nginx dyno")
"$kiln" apps:create benchapp >/dev/null
echo "== deploying the nginx app (git push)"
(cd "$app" && git push -q "http://kiln:$KILN_API_KEY@127.0.0.1:$api_port/benchapp.git" HEAD:main) >"$work/push.log" 2>&1 || { cat "$work/push.log"; exit 1; }
dyno_port=
for _ in $(seq 1 100); do
  dyno_port=$("$kiln" logs -a benchapp -n 200 2>/dev/null | sed -n 's/.*nginx dyno listening on \([0-9.:]*\).*/\1/p' | tail -1)
  [ -n "$dyno_port" ] && curl -fsS -o /dev/null "http://$dyno_port/index.html" && break
  sleep 0.2
done
[ -n "$dyno_port" ] || { "$kiln" logs -a benchapp; echo "the nginx dyno did not come up" >&2; exit 1; }
echo "   web.1 is nginx on port $dyno_port"
host="benchapp.localhost"
curl -fsS -o /dev/null -H "Host: $host" "http://127.0.0.1:$router_port/index.html"

# --- realistic dynos -------------------------------------------------------------------------
# Each app prints "dyno listening on $PORT" at start; the port is read from its log.
declare -A dyno_ports app_proxy_ports
i=0
for d in $dynos; do
  [ -d "$here/apps/$d" ] || { echo "no app for dyno type $d under $here/apps" >&2; exit 1; }
  src="$work/apps/$d"
  mkdir -p "$src"
  cp -a "$here/apps/$d/." "$src/"
  # Sourced before the web process starts: the dyno's address (its own network's, issue 15).
  echo 'echo "dyno at $(hostname -I | cut -d" " -f1)"' >"$src/.profile"
  (cd "$src" && git init -q && git add -A && git commit -qm "$d dyno")
  "$kiln" apps:create "bench-$d" >/dev/null
  echo "== deploying the $d app (git push)"
  (cd "$src" && git push -q "http://kiln:$KILN_API_KEY@127.0.0.1:$api_port/bench-$d.git" HEAD:main) >"$work/push-$d.log" 2>&1 || { cat "$work/push-$d.log"; exit 1; }
  port=
  for _ in $(seq 1 150); do
    port=$("$kiln" logs -a "bench-$d" -n 200 2>/dev/null | sed -n 's/.*dyno listening on \([0-9]*\).*/\1/p' | tail -1)
    ip=$("$kiln" logs -a "bench-$d" -n 200 2>/dev/null | sed -n 's/.*dyno at \([0-9.]*\).*/\1/p' | tail -1)
    [ -n "$port" ] && [ -n "$ip" ] && port="$ip:$port" && curl -fsS -o /dev/null "http://$port/" 2>/dev/null && break
    sleep 0.2
  done
  curl -fsS -o /dev/null "http://$port/" || { "$kiln" logs -a "bench-$d"; echo "the $d dyno did not come up" >&2; exit 1; }
  curl -fsS -o /dev/null -H "Host: bench-$d.localhost" "http://127.0.0.1:$router_port/"
  dyno_ports[$d]=$port
  app_proxy_ports[$d]=$((base + 10 + i))
  i=$((i + 1))
  echo "   web.1 of bench-$d listens on port $port"
done

# --- nginx as a reverse proxy ----------------------------------------------------------------
mkdir -p "$work/proxy"
cat >"$work/proxy/nginx.conf" <<EOF
worker_processes auto;
pid $work/proxy/nginx.pid;
error_log stderr;
events { worker_connections 4096; }
http {
    access_log off;
    upstream dyno {
        server $dyno_port;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$proxy_port;
        location / {
            proxy_pass http://dyno;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
    include $work/proxy/apps.conf;
}
EOF
# The realistic dynos' proxies, in a file of their own (the callgrind run below leaves it out).
cat >"$work/proxy/apps.conf" <<EOF
$(for d in $dynos; do cat <<APP
    upstream dyno_${d//-/_} {
        server ${dyno_ports[$d]};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${app_proxy_ports[$d]};
        location / {
            proxy_pass http://dyno_${d//-/_};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            # The rest of what Heroku's router (and so Kiln's) sends every request, so that
            # the app parses the same fields behind both proxies (gunicorn spends about 3 µs
            # of Python on each).
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_set_header X-Request-Id \$request_id;
            proxy_set_header X-Request-Start \$msec;
            proxy_set_header Via "1.1 nginx";
        }
    }
APP
done)
EOF
nginx -e stderr -p "$work/proxy" -c "$work/proxy/nginx.conf" -g 'daemon off;' 2>"$work/proxy/error.log" &
pids+=($!)

# --- Varnish ---------------------------------------------------------------------------------
varnishd -F -n "$work/varnish" -a "127.0.0.1:$varnish_port" -b "$dyno_port" -s malloc,64m >"$work/varnish.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$proxy_port/index.html" 2>/dev/null && curl -fsS -o /dev/null "http://127.0.0.1:$varnish_port/cached.html" 2>/dev/null && break
  sleep 0.1
done

# Both caches hold /cached.html before measuring; say so if one does not.
for _ in 1 2; do
  curl -fsS -o /dev/null -H "Host: $host" "http://127.0.0.1:$router_port/cached.html"
  curl -fsS -o /dev/null "http://127.0.0.1:$varnish_port/cached.html"
done
kiln_xcache=$(curl -fsS -D - -o /dev/null -H "Host: $host" "http://127.0.0.1:$router_port/cached.html" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache: //p')
varnish_age=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$varnish_port/cached.html" | tr -d '\r' | sed -n 's/^[Xx]-[Vv]arnish: //p')
echo "   Kiln cache: X-Cache: $kiln_xcache; Varnish: X-Varnish: $varnish_age (two ids = hit)"

# --- measure ---------------------------------------------------------------------------------
load() { cut -d' ' -f1 /proc/loadavg; }
echo "== waiting for a quiet machine (1-min load < $max_load, at most ${load_wait}s); now $(load)"
waited=0
while awk -v l="$(load)" -v m="$max_load" 'BEGIN{exit !(l >= m)}' && [ "$waited" -lt "$load_wait" ]; do
  sleep 10
  waited=$((waited + 10))
done
echo "   load before measuring: $(cat /proc/loadavg)"

kiln_pid=${pids[0]}
# Context switches of every kiln thread so far.
switches() { cat /proc/"$kiln_pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
requests() { awk '/requests in/ {print $1}' "$1"; }
measure() { # name url [wrk args...]; uses $round
  local name=$1 url=$2 perf_pid= profile=
  shift 2
  [ -n "${PROFILE:-}" ] && [ "$round" = 1 ] && [[ $name == kiln* ]] && profile=1
  wrk -t1 -c"$conns" -d"$warmup" "$@" "$url" >/dev/null
  echo "-- $name, round $round: $url (load $(load))"
  if [ -n "$profile" ] && command -v perf >/dev/null; then
    perf record -q -F 999 -p "$kiln_pid" -o "$out/$name.perf" 2>/dev/null &
    perf_pid=$!
  fi
  local sw0
  sw0=$(switches)
  wrk -t1 -c"$conns" -d"$duration" --latency "$@" "$url" | tee "$out/$name.$round.txt" | grep -E "Requests/sec|50%|99%|errors|Non-2xx" || true
  if [ -n "$profile" ]; then
    echo "   kiln context switches per request: $(awk -v s=$(( $(switches) - sw0 )) -v r="$(requests "$out/$name.$round.txt")" 'BEGIN{printf "%.2f", s/r}')" | tee "$out/$name.switches.txt"
  fi
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf report -q -i "$out/$name.perf" --no-children --sort dso 2>/dev/null | head -8 >"$out/$name.profile.txt" || true
    perf report -q -i "$out/$name.perf" --no-children --sort dso,sym 2>/dev/null | head -40 >>"$out/$name.profile.txt" || true
  fi
  if [ -n "$profile" ] && command -v strace >/dev/null; then
    # strace slows the server a lot; only the calls per request mean anything here.
    timeout -s INT 4 strace -c -f -p "$kiln_pid" -o "$out/$name.strace" 2>/dev/null &
    local strace_pid=$!
    sleep 0.5
    wrk -t1 -c"$conns" -d3s "$@" "$url" >"$out/$name.strace-wrk.txt"
    wait "$strace_pid" 2>/dev/null || true
    awk -v r="$(requests "$out/$name.strace-wrk.txt")" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ {printf "   %-14s %6.2f per request\n", $NF, $4 / r}' "$out/$name.strace" | sort -k2 -nr | head -8 >"$out/$name.syscalls.txt" || true
  fi
}
measure_app() { # name url [wrk args...]; uses $round
  local name=$1 url=$2
  shift 2
  wrk -t1 -c"$app_conns" -d"$app_warmup" "$@" "$url" >/dev/null
  echo "-- $name, round $round: $url (load $(load))"
  wrk -t1 -c"$app_conns" -d"$app_duration" --latency "$@" "$url" | tee "$out/$name.$round.txt" | grep -E "Requests/sec|50%|99%|errors|Non-2xx" || true
}
# A POST with a 16 KB body, the same for every setup.
cat >"$work/upload.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("k", 16384)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
for round in $(seq 1 "$rounds"); do
  measure direct "http://$dyno_port/index.html"
  measure nginx "http://127.0.0.1:$proxy_port/index.html"
  measure kiln "http://127.0.0.1:$router_port/index.html" -H "Host: $host"
  measure varnish "http://127.0.0.1:$varnish_port/cached.html"
  measure kiln-cache "http://127.0.0.1:$router_port/cached.html" -H "Host: $host"
  measure upload-direct "http://$dyno_port/upload" -s "$work/upload.lua"
  measure upload-nginx "http://127.0.0.1:$proxy_port/upload" -s "$work/upload.lua"
  measure kiln-upload "http://127.0.0.1:$router_port/upload" -H "Host: $host" -s "$work/upload.lua"
  for d in $dynos; do
    measure_app "app-$d-direct" "http://${dyno_ports[$d]}/"
    measure_app "app-$d-nginx" "http://127.0.0.1:${app_proxy_ports[$d]}/"
    measure_app "app-$d-kiln" "http://127.0.0.1:$router_port/" -H "Host: bench-$d.localhost"
  done
done
echo "   load after measuring: $(cat /proc/loadavg)"

# --- report ----------------------------------------------------------------------------------
echo
summary="$target/bench/router-$(date -u +%Y%m%dT%H%M%SZ).txt"
mkdir -p "$(dirname "$summary")"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)${KILN_BIN:+ (kiln binary: $KILN_BIN)}"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
  echo "wrk: -t1 -c$conns -d$duration (keep-alive), warm-up $warmup, $rounds interleaved rounds (median shown); small static page $(wc -c <"$app/public/index.html") bytes"
  echo "versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(varnishd -V 2>&1 | head -1 | sed 's/^varnishd //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  [ -n "$dynos" ] && echo "realistic dynos: wrk -t1 -c$app_conns -d$app_duration (keep-alive), warm-up $app_warmup; $(/usr/bin/python3 --version 2>&1), $(node --version 2>/dev/null | sed 's/^/Node.js /'), $(ruby --version 2>/dev/null | cut -d' ' -f1-2)$(for d in gunicorn puma thin; do "$kiln" logs -a "bench-$d" -n 300 2>/dev/null | grep -oE 'Starting gunicorn [0-9.]+|Puma version: [0-9.]+|Thin web server \(v[0-9.]+' | head -1 | sed 's/^/, /'; done | tr -d '\n')"
  echo
  "$report" "$out"
} | tee "$summary"
echo
echo "raw wrk output: $out; summary: $summary"
if [ -n "${PROFILE:-}" ]; then
  for f in "$out"/*.profile.txt "$out"/*.syscalls.txt "$out"/*.switches.txt; do [ -e "$f" ] && { echo "== $(basename "$f")"; head -30 "$f"; }; done
fi

# --- CPU per request (CPU=1) -----------------------------------------------------------------------
# On a busy 2-core VM the request rate follows the scheduler as much as the proxy, and rounds
# swing by 5-10 %. What each proxy spends is steadier: the user and system time of its threads
# (Kiln's whole process; nginx's worker processes) per request over a wrk run, read from
# /proc/<pid>/task/*/stat, alternating the two CPU_ROUNDS times (3).
if [ -n "${CPU:-}" ]; then
  cpu_ticks() { # pids...: "user system" clock ticks of every thread of these processes
    local u=0 s=0 t a b
    for p in "$@"; do
      for t in /proc/"$p"/task/*/stat; do
        read -r a b < <(sed 's/^.*) //' "$t" | awk '{print $12, $13}') || continue
        u=$((u + a)); s=$((s + b))
      done
    done
    echo "$u $s"
  }
  cpu_run() { # name url [wrk args...] -- pids...: prints the proxy's µs per request
    local name=$1 url=$2 args=() u0 s0 u1 s1 n hz
    shift 2
    while [ "$1" != "--" ]; do args+=("$1"); shift; done
    shift
    hz=$(getconf CLK_TCK)
    wrk -t1 -c"$conns" -d2s "${args[@]}" "$url" >/dev/null
    read -r u0 s0 < <(cpu_ticks "$@")
    wrk -t1 -c"$conns" -d8s "${args[@]}" "$url" >"$out/$name.cpu.txt"
    read -r u1 s1 < <(cpu_ticks "$@")
    n=$(requests "$out/$name.cpu.txt")
    awk -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v name="$name" -v rps="$(awk '/Requests\/sec/ {print $2}' "$out/$name.cpu.txt")" \
      'BEGIN {printf "  %-12s %8.0f requests/s   user %5.2f us   system %5.2f us   total %5.2f us per request\n", name, rps, u * 1e6 / hz / n, s * 1e6 / hz / n, (u + s) * 1e6 / hz / n}'
  }
  nginx_workers=$(pgrep -P "$(cat "$work/proxy/nginx.pid")" | tr '\n' ' ')
  {
    echo
    echo "CPU per proxied request (user and system time of the proxy's threads, 8 s runs):"
    for round in $(seq 1 "${CPU_ROUNDS:-3}"); do
      # shellcheck disable=SC2086 # one pid per word
      cpu_run "kiln.$round" "http://127.0.0.1:$router_port/index.html" -H "Host: $host" -- "$kiln_pid"
      # shellcheck disable=SC2086
      cpu_run "nginx.$round" "http://127.0.0.1:$proxy_port/index.html" -- $nginx_workers
    done
  } | tee -a "$summary"
fi

# --- instructions per request (INSTRUCTIONS=1) -------------------------------------------------
# Requests per second on a shared 2-core VM swing by a third between runs; instructions are
# what valgrind counts, the same in every run whatever else the machine does. This restarts
# Kiln under callgrind (same data, so the app comes back on a new dyno port) and runs a
# single-process nginx proxy under callgrind in front of that dyno, then counts each one's
# user-space instructions per proxied request over the same wrk load.
if [ -n "${INSTRUCTIONS:-}" ] && [ -z "${HOLD:-}" ]; then
  command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq valgrind >/dev/null; }
  echo
  echo "== instructions per proxied request (callgrind)"
  kill "$kiln_pid" 2>/dev/null || true
  wait "$kiln_pid" 2>/dev/null || true
  cg="$work/callgrind"
  mkdir -p "$cg"
  valgrind --tool=callgrind --dump-instr=no ${CALLGRIND_ARGS:-} --callgrind-out-file="$cg/kiln.%p" "$kiln" server --data-dir "$work/data" --api-listen "127.0.0.1:$api_port" --router-listen "127.0.0.1:$router_port" >"$work/server-vg.out" 2>"$work/server-vg.log" &
  vg_kiln=$!
  pids+=("$vg_kiln")
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "http://127.0.0.1:$router_port/index.html")" = 200 ] && break
    sleep 0.5
  done
  new_dyno=$("$kiln" logs -a benchapp -n 400 2>/dev/null | sed -n 's/.*nginx dyno listening on \([0-9.:]*\).*/\1/p' | tail -1)
  vg_port=$((base + 9))
  mkdir -p "$work/proxy-vg"
  sed -e "s/worker_processes auto;/worker_processes 1; master_process off;/" -e "s/$dyno_port/$new_dyno/" -e "s/127.0.0.1:$proxy_port/127.0.0.1:$vg_port/" -e "s#$work/proxy/nginx.pid#$work/proxy-vg/nginx.pid#" -e "\\#include $work/proxy/apps.conf;#d" "$work/proxy/nginx.conf" >"$work/proxy-vg/nginx.conf"
  valgrind --tool=callgrind --dump-instr=no ${CALLGRIND_ARGS:-} --callgrind-out-file="$cg/nginx.%p" nginx -e stderr -p "$work/proxy-vg" -c "$work/proxy-vg/nginx.conf" -g 'daemon off;' 2>"$work/proxy-vg/error.log" &
  vg_nginx=$!
  pids+=("$vg_nginx")
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$vg_port/index.html" 2>/dev/null && break; sleep 0.3; done
  per_request() { # name pid url [wrk args...]: instructions per request over a 5 s run
    local name=$1 pid=$2 url=$3
    shift 3
    wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    wrk -t1 -c"$conns" -d5s "$@" "$url" >"$out/$name.vg.txt"
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    local file total
    file=$(ls -t "$cg/$name.$pid"* | head -1)
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
    awk -v t="$total" -v r="$(requests "$out/$name.vg.txt")" 'BEGIN {printf "%.0f", t / r}'
  }
  kiln_ir=$(per_request kiln "$vg_kiln" "http://127.0.0.1:$router_port/index.html" -H "Host: $host")
  kiln_hit_ir=$(per_request kiln "$vg_kiln" "http://127.0.0.1:$router_port/cached.html" -H "Host: $host")
  nginx_ir=$(per_request nginx "$vg_nginx" "http://127.0.0.1:$vg_port/index.html")
  {
    echo "instructions per proxied request (user space, callgrind; nginx: one worker process):"
    echo "  Kiln router -> dyno   $kiln_ir"
    echo "  nginx proxy -> dyno   $nginx_ir"
    echo "  Kiln cache hit        $kiln_hit_ir"
    awk -v k="$kiln_ir" -v n="$nginx_ir" 'BEGIN {printf "  Kiln / nginx:         %.2fx the instructions\n", k / n}'
  } | tee -a "$summary"
fi
if [ -n "${HOLD:-}" ]; then
  echo "holding: kiln router 127.0.0.1:$router_port (Host: $host; pid $kiln_pid), nginx proxy :$proxy_port, Varnish :$varnish_port, dyno $dyno_port"
  while :; do sleep 3600 & wait $!; done
fi
