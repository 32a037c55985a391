#!/usr/bin/env bash
# The dashboard's speed (issue 18): every page's latency, p50 and p95 over ROUNDS requests
# each (default 200), with APPS apps (default 100) and 24 hours of per-minute metrics for each
# app, and the bytes the first page load transfers (the page, the stylesheet, the script).
# Reference, in the same run: nginx serving a static copy of the apps page, the same number
# of times (the floor a page served over HTTP/1.1 on this machine can reach).
# Run as root on the machine you want numbers for: sudo bench/dashboard/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
APPS=${APPS:-100} ROUNDS=${ROUNDS:-200}
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx-light"; exit 1; }
source bench/lib.sh
# A bench makes more requests than a person's hourly API budget.
KILN_SERVER_ARGS="--api-rate-limit 100000000" start_kiln dashboard
NGINX_PORT=$(port)
bench_cleanup='[ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")"'

EMAIL=bench@example.com PASSWORD="a password for the bench"
api POST /kiln/users "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
USER_KEY=$(curl -fsS -X POST "http://127.0.0.1:$API/oauth/authorizations" -u "$EMAIL:$PASSWORD" \
  -H 'Accept: application/vnd.heroku+json; version=3' -H 'Content-Type: application/json' -d '{}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"]["token"])')
echo "== $APPS apps, each with 24 h of per-minute metrics"
for i in $(seq 1 "$APPS"); do
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$API/apps" -H "Authorization: Bearer $USER_KEY" \
    -H 'Accept: application/vnd.heroku+json; version=3' -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-app-$i\"}"
done
python3 bench/dashboard/measure.py fill "$API" "$USER_KEY" "$WORK/data/metrics"

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  server { listen 127.0.0.1:$NGINX_PORT; root $WORK/nginx; location / { default_type text/html; } }
}
NGX
python3 bench/dashboard/measure.py run "$API" "$EMAIL" "$PASSWORD" "$NGINX_PORT" "$WORK/nginx" "$ROUNDS" \
  "nginx -c $WORK/nginx/nginx.conf"
