# Shared by the shell benchmarks (bench/*/run.sh): a release-built Kiln server on free ports in
# a temporary directory, stopped and removed on exit, and small helpers. Source it from the
# repository's root; then `start_kiln NAME` sets KILN, WORK, API, ROUTER, SERVER and KEY.
# A script that starts more processes sets `bench_cleanup` to a command that stops them;
# KILN_SERVER_ARGS adds flags to `kiln server`.

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
api() { curl -fsS -X "$1" "http://127.0.0.1:$API$2" -H "Authorization: Bearer $KEY" -H 'Accept: application/vnd.heroku+json; version=3' -H 'Content-Type: application/json' ${3:+-d "$3"}; }

bench_cleanup=:
_bench_exit() {
  local status=$?
  [ $status -eq 0 ] || tail -20 "$WORK/server.log"
  kill "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  eval "$bench_cleanup" || true
  rm -rf "$WORK"
  exit $status
}

start_kiln() { # name
  cargo build --release -q -p kiln
  KILN=$PWD/target/release/kiln
  WORK=$(mktemp -d "/tmp/kiln-bench-$1.XXXXXX")
  chmod 711 "$WORK"   # add-on services' own users pass through it to their directories
  trap _bench_exit EXIT
  API=$(port) ROUTER=$(port)
  # shellcheck disable=SC2086 # KILN_SERVER_ARGS is a list of flags
  "$KILN" server --data-dir "$WORK/data" --api-listen "127.0.0.1:$API" --router-listen "127.0.0.1:$ROUTER" ${KILN_SERVER_ARGS:-} >"$WORK/server.log" 2>&1 &
  SERVER=$!
  until [ -s "$WORK/data/admin-api-key" ] && curl -fs -o /dev/null "http://127.0.0.1:$API/account" -H "Authorization: Bearer $(cat "$WORK/data/admin-api-key")"; do sleep 0.1; done
  KEY=$(cat "$WORK/data/admin-api-key")
}
