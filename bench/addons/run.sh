#!/usr/bin/env bash
# Add-on figures (issue 13), each against a reference measured in the same run:
#   1. provisioning: API call → URL connectable, for heroku-postgresql (essential), heroku-redis
#      and memcachier; reference: createdb + CREATE ROLE by hand on the same cluster;
#   2. pg:backups:capture and restore of a SIZE_MB database (default 1024) against pg_dump -Fc
#      and pg_restore run by hand on the same database;
#   3. pgbench -S for SECONDS (default 10) through DATABASE_URL, and straight to the same
#      server over its socket as its admin.
# Run as root on the machine you want numbers for: sudo bench/addons/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MB=${SIZE_MB:-1024} SECONDS_PGBENCH=${SECONDS:-10} ROUNDS=${ROUNDS:-5}

command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-contrib"; exit 1; }
source bench/lib.sh
start_kiln addons
ms() { python3 -c "print(round(($2 - $1) * 1000, 1))"; }
api POST /apps '{"name":"bench"}' >/dev/null

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== 1. provisioning: API call until the URL answers (median of $ROUNDS)"
provision() { # service → ms
  local t0 t1 body url
  t0=$(now)
  body=$(api POST /apps/bench/addons "{\"plan\":{\"name\":\"$1\"}}")
  url=$(api GET /apps/bench/config-vars | python3 -c "import json,sys; d=json.load(sys.stdin); print(d.get('$2',''))")
  case $1 in
    heroku-postgresql*) psql -X -q -d "$url" -c 'SELECT 1' >/dev/null ;;
    heroku-redis*) python3 - "$url" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); s = socket.create_connection((u.hostname, u.port))
s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(u.password), u.password.encode()))
assert b"PONG" in s.recv(100) or b"PONG" in s.recv(100)
PY
    ;;
  esac
  t1=$(now)
  ms "$t0" "$t1"
  api DELETE "/apps/bench/addons/$(echo "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" '{"force":true}' >/dev/null
}
for svc in heroku-postgresql:DATABASE_URL heroku-redis:REDIS_URL memcachier:MEMCACHIER_SERVERS; do
  plan=${svc%%:*} var=${svc##*:}
  provision "$plan" "$var" >/dev/null   # the first PostgreSQL one creates the cluster
  samples=(); for _ in $(seq "$ROUNDS"); do samples+=("$(provision "$plan" "$var")"); done
  echo "$plan: $(median "${samples[@]}") ms (samples: ${samples[*]})"
done
SOCK="$WORK/data/addons/postgres/shared/run"
PGPORT=$(python3 -c "import json; print(json.load(open('$WORK/data/addons/postgres/shared/cluster.json'))['port'])")
samples=()
for i in $(seq "$ROUNDS"); do
  t0=$(now)
  psql -X -q -h "$SOCK" -p "$PGPORT" -U kiln -d postgres -c "CREATE ROLE ref$i LOGIN PASSWORD 'x' CONNECTION LIMIT 20" -c "CREATE DATABASE ref$i OWNER ref$i TEMPLATE template0" >/dev/null
  t1=$(now); samples+=("$(ms "$t0" "$t1")")
done
echo "reference, CREATE ROLE + CREATE DATABASE by hand: $(median "${samples[@]}") ms"

echo
echo "== 2. backups of a ${SIZE_MB} MB database"
api POST /apps/bench/addons '{"plan":{"name":"heroku-postgresql:essential-1"}}' >/dev/null
URL=$(api GET /apps/bench/config-vars | python3 -c 'import json,sys; print(json.load(sys.stdin)["DATABASE_URL"])')
ADDON=$(api GET /apps/bench/addons | python3 -c 'import json,sys; print([a["id"] for a in json.load(sys.stdin) if a["addon_service"]["name"]=="heroku-postgresql"][0])')
ROWS=$((SIZE_MB * 1024 * 1024 / 1100))
psql -X -q -d "$URL" -c "CREATE TABLE filler (id bigint, body text); INSERT INTO filler SELECT g, md5(g::text) || repeat('x', 1000) FROM generate_series(1, $ROWS) g; CREATE INDEX ON filler (id);"
echo "database size: $(psql -X -A -t -d "$URL" -c 'SELECT pg_size_pretty(pg_database_size(current_database()))')"
wait_transfer() { while :; do s=$(api GET "/client/v11/apps/bench/transfers/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'); [ "$s" = succeeded ] && return; [ "$s" = failed ] && { echo failed; exit 1; }; sleep 0.05; done; }
t0=$(now); n=$(api POST "/client/v11/databases/$ADDON/backups" '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["num"])'); wait_transfer "$n"; t1=$(now)
KILN_CAPTURE=$(ms "$t0" "$t1")
t0=$(now); PGPASSWORD=$(python3 -c "import urllib.parse,sys; print(urllib.parse.urlparse('$URL').password)") pg_dump --format=custom --no-acl --no-owner -d "$URL" -f "$WORK/ref.dump"; t1=$(now)
REF_DUMP=$(ms "$t0" "$t1")
echo "capture: kiln $KILN_CAPTURE ms, pg_dump by hand $REF_DUMP ms, ratio $(python3 -c "print(round($KILN_CAPTURE / $REF_DUMP, 2))") (target <= 1.2)"
t0=$(now); r=$(api POST "/client/v11/databases/$ADDON/restores" "{\"backup\":\"b$(printf %03d "$n")\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["num"])'); wait_transfer "$r"; t1=$(now)
KILN_RESTORE=$(ms "$t0" "$t1")
psql -X -q -h "$SOCK" -p "$PGPORT" -U kiln -d postgres -c "CREATE DATABASE scratch TEMPLATE template0" >/dev/null
t0=$(now); pg_restore --no-acl --no-owner --exit-on-error -h "$SOCK" -p "$PGPORT" -U kiln -d scratch "$WORK/ref.dump"; t1=$(now)
REF_RESTORE=$(ms "$t0" "$t1")
echo "restore: kiln $KILN_RESTORE ms, pg_restore by hand $REF_RESTORE ms, ratio $(python3 -c "print(round($KILN_RESTORE / $REF_RESTORE, 2))") (target <= 1.2)"

echo
echo "== 3. pgbench -S, ${SECONDS_PGBENCH} s each"
pgbench -q -i -s 10 -d "$URL" >/dev/null 2>&1
tps() { pgbench -S -n -c 4 -j 2 -T "$SECONDS_PGBENCH" "$@" 2>/dev/null | awk '/^tps/{print $3; exit}'; }
VIA=$(tps -d "$URL")
DB=$(python3 -c "import urllib.parse; print(urllib.parse.urlparse('$URL').path[1:])")
DIRECT=$(tps -h "$SOCK" -p "$PGPORT" -U kiln "$DB")
# The reference over the same transport: a PostgreSQL of the same version made by hand
# (initdb, pg_ctl), the same pgbench data, TCP on 127.0.0.1 with password authentication.
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
REFPORT=$(port)
mkdir -p "$WORK/ref" && chown kiln-postgres "$WORK/ref"
su -s /bin/sh kiln-postgres -c "$BIN/initdb -D $WORK/ref/data -U ref --auth-local=trust --auth-host=scram-sha-256 >/dev/null && echo \"ALTER ROLE ref PASSWORD 'pw'\" >/dev/null"
su -s /bin/sh kiln-postgres -c "$BIN/pg_ctl -D $WORK/ref/data -o '-p $REFPORT -k $WORK/ref -c listen_addresses=127.0.0.1' -l $WORK/ref/log -w start >/dev/null"
psql -X -q -h "$WORK/ref" -p "$REFPORT" -U ref -d postgres -c "ALTER ROLE ref PASSWORD 'pw'" >/dev/null
REFURL="postgres://ref:pw@127.0.0.1:$REFPORT/postgres"
pgbench -q -i -s 10 -d "$REFURL" >/dev/null 2>&1
REF_TCP=$(tps -d "$REFURL")
su -s /bin/sh kiln-postgres -c "$BIN/pg_ctl -D $WORK/ref/data -m fast stop >/dev/null"
echo "through DATABASE_URL (TCP, the app's role): $VIA tps"
echo "a PostgreSQL made by hand, same version and data, TCP with a password: $REF_TCP tps; ratio $(python3 -c "print(round($VIA / $REF_TCP, 2))") (target ~1: no proxy on the path)"
echo "for scale, Kiln's cluster over its Unix socket as its admin: $DIRECT tps"
