#!/usr/bin/env bash
# Log throughput, latency and memory (issue 17), each against a reference in the same run:
#   1. throughput from a dyno's stdout to a syslog drain receiver (RFC 5424, octet-counted
#      TCP), N lines of 100 bytes (default 1,000,000), the dyno writing at each of RATES lines/s
#      (default 200k to 500k) and then flat out; reference: rsyslog reading the same lines from
#      a file (imfile) and forwarding them the same way to the same receiver. Both report
#      lines/s (first to last line at the receiver) and CPU seconds per million lines (the
#      forwarder's own: Kiln's server process, rsyslogd); Kiln's figure is the best rate at
#      which every line arrived.
#   2. latency from a dyno's write to a syslog drain and to a `kiln logs --tail` client at
#      RATE lines/s (default 10,000) for SECONDS (default 10): p50, p99, max.
#   3. the server's memory (RSS) with APPS apps (default 100) of 1,500 lines each, and while
#      one app's drain is down under load for DOWN seconds (default 60).
# Run as root on the machine you want numbers for: sudo bench/logs/run.sh [throughput|latency|memory]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000} RATES=${RATES:-300000 400000 500000 700000 1000000} RATE=${RATE:-10000} SECS=${SECONDS_LAT:-10} APPS=${APPS:-100} DOWN=${DOWN:-60}
PARTS=("$@"); [ ${#PARTS[@]} -gt 0 ] || PARTS=(throughput latency memory)
command -v rsyslogd >/dev/null || { echo "rsyslogd is missing: apt-get install rsyslog"; exit 1; }

HERE=$PWD/bench/logs
source bench/lib.sh
start_kiln logs
bench_cleanup='pkill -f "$WORK/rsyslog"'
export KILN_API_URL=http://127.0.0.1:$API KILN_API_KEY=$KEY
kiln() { "$KILN" "$@"; }
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }   # utime + stime, seconds
rss_mb() { awk '/VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ms() { python3 -c "print(round(($2 - $1) / 1e6, 1))"; }

# An app to run one-off dynos in: a Procfile app, pushed with git.
app_repo() { # name [procfile]
  local d=$WORK/src/$1
  mkdir -p "$d"
  printf '%s\n' "${2:-web: python3 -m http.server \$PORT}" > "$d/Procfile"
  # The latency part's paced writer, a file of the app (multi-line code does not survive
  # being a one-off dyno's command line).
  cat > "$d/gen.py" <<'PY'
import sys, time
rate, total = int(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
for i in range(total):
    due = start + i / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    sys.stdout.write("XLAT %d t=%d\n" % (i, time.time_ns()))
    sys.stdout.flush()
PY
  # The throughput part's paced writer: RATE lines a second, a write every 2 ms.
  cat > "$d/pace.py" <<'PY'
import os, sys, time
rate, total = int(sys.argv[1]), int(sys.argv[2])
line = (sys.argv[3] + sys.argv[4] + "\n").encode()
per = max(1, rate // 500)
chunk = line * per
start, sent = time.monotonic(), 0
while sent < total:
    due = start + sent / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    data = chunk if total - sent >= per else line * (total - sent)
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    sent += len(data) // len(line)
PY
  (cd "$d" && git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm app)
  kiln apps:create "$1" >/dev/null
  (cd "$d" && git push -q "http://kiln:$KILN_API_KEY@127.0.0.1:$API/$1.git" main >/dev/null 2>&1)
}
# A receiver (bench/logs/receiver.py) for COUNT lines with MARKER, started in this shell so
# that it can be waited for: sets RPORT and RPID.
start_receiver() { # name count marker [--latency]
  rm -f "$WORK/$1.port"
  python3 "$HERE/receiver.py" "$WORK/$1.port" "$2" "$3" ${4:-} --idle ${IDLE:-5} > "$WORK/$1.json" &
  RPID=$!
  until [ -s "$WORK/$1.port" ]; do sleep 0.02; done
  RPORT=$(cat "$WORK/$1.port")
}
json() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
LINE="XBENCH$(printf 'x%.0s' $(seq 1 93))"   # 99 bytes + newline: 100-byte lines
# The line's marker cut in two where a dyno's command names it, so that the "Starting process
# with command" line is not counted as one of the lines.
REST=${LINE#XBE}

for part in "${PARTS[@]}"; do case $part in
throughput)
  echo; echo "== 1. throughput: $N lines of 100 bytes to a syslog drain"
  app_repo tput
  # Kiln: the dyno writes at a paced RATE (pace.py, a write every 2 ms), for each rate of the
  # ladder; a rate is carried when every line arrives. Then flat out (`yes | head`), where the
  # dyno outruns any forwarder and the drain keeps the newest lines (Logplex's L10 drops).
  best=0 top=0
  for rate in $RATES flat; do
    start_receiver "kiln-$rate" "$N" XBENCH; p=$RPORT rpid=$RPID
    kiln drains:add "syslog://127.0.0.1:$p" -a tput >/dev/null
    c0=$(cpu_s $SERVER)
    if [ "$rate" = flat ]; then
      kiln run:detached -a tput -- sh -c "yes XBE\"\"$REST | head -n $N" >/dev/null
    else
      kiln run:detached -a tput -- python3 pace.py "$rate" "$N" XBE "$REST" >/dev/null
    fi
    wait $rpid
    c1=$(cpu_s $SERVER)
    kiln drains:remove "syslog://127.0.0.1:$p" -a tput >/dev/null
    n=$(json "$WORK/kiln-$rate.json" '["n"]'); span=$(ms "$(json "$WORK/kiln-$rate.json" '["first_ns"]')" "$(json "$WORK/kiln-$rate.json" '["last_ns"]')")
    krate=$(python3 -c "print(round($n / max($span, 1) * 1000))")
    kcpu=$(python3 -c "print(round(($c1 - $c0) / $N * 1e6, 2))")
    echo "kiln at $rate lines/s: $n of $N lines delivered in $span ms: $krate lines/s; server CPU $kcpu s per million lines"
    if [ "$rate" != flat ] && [ "$n" -ge "$N" ] && [ "$krate" -gt "$best" ]; then best=$krate; fi
    if [ "$rate" != flat ] && [ "$krate" -gt "$top" ]; then top=$krate; fi
  done
  # The reference: rsyslog forwarding the same lines from a file, octet-counted TCP.
  seq 1 "$N" | sed "s/.*/$LINE/" > "$WORK/lines.txt"
  start_receiver rsyslog "$N" XBENCH; p=$RPORT rpid=$RPID
  mkdir -p "$WORK/rsyslog/work"
  cat > "$WORK/rsyslog/rsyslog.conf" <<CONF
global(workDirectory="$WORK/rsyslog/work" maxMessageSize="64k")
module(load="imfile")
input(type="imfile" file="$WORK/lines.txt" tag="app" ruleset="fwd" freshStartTail="off")
ruleset(name="fwd") {
  action(type="omfwd" target="127.0.0.1" port="$p" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}
CONF
  rsyslogd -n -f "$WORK/rsyslog/rsyslog.conf" -i "$WORK/rsyslog/pid" > "$WORK/rsyslog/log" 2>&1 &
  rs=$!
  wait $rpid
  RCPU_S=$(cpu_s $rs); kill $rs; wait $rs 2>/dev/null || true
  n=$(json "$WORK/rsyslog.json" '["n"]'); span=$(ms "$(json "$WORK/rsyslog.json" '["first_ns"]')" "$(json "$WORK/rsyslog.json" '["last_ns"]')")
  RRATE=$(python3 -c "print(round($n / max($span, 1) * 1000))")
  RCPU=$(python3 -c "print(round($RCPU_S / $n * 1e6, 2))")
  echo "rsyslog: $n of $N lines forwarded in $span ms: $RRATE lines/s; rsyslogd CPU $RCPU s per million lines"
  echo "kiln's best rate with every line delivered: $best lines/s ($(python3 -c "print(round($best / $RRATE, 2))")x rsyslog)"
  echo "kiln's delivery rate when offered more than it carries: $top lines/s; ratio kiln/rsyslog: $(python3 -c "print(round($top / $RRATE, 2))") (target >= 1, and >= 300,000 lines/s)"
  ;;
latency)
  echo; echo "== 2. latency at $RATE lines/s for $SECS s"
  app_repo lat
  total=$((RATE * SECS))
  start_receiver lat "$total" XLAT --latency; p=$RPORT rpid=$RPID
  kiln drains:add "syslog://127.0.0.1:$p" -a lat >/dev/null
  # The tail client: each line's arrival minus the send time it carries.
  ( kiln logs --tail -a lat | python3 -c '
import sys, time
lat = []
for line in sys.stdin:
    i = line.find("t=")
    if "XLAT" in line and i >= 0:
        lat.append((time.time_ns() - int(line[i + 2:].split()[0])) / 1e6)
        if len(lat) >= '"$total"': break
lat.sort() if lat else lat.append(float("nan"))
print("tail:  %d lines, p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (len(lat), lat[len(lat)//2], lat[int(len(lat)*0.99)], lat[-1]))
' ) > "$WORK/tail.out" &
  tailer=$!
  sleep 1
  kiln run:detached -a lat -- python3 gen.py "$RATE" "$total" >/dev/null
  wait $rpid
  # The tail may have missed lines (L11); end it once the drain has them all.
  sleep 2
  pkill -f "logs --tail -a lat" || true
  wait $tailer || true
  echo "drain: $(json "$WORK/lat.json" '["n"]') lines, p50 $(json "$WORK/lat.json" '["p50_ms"]') ms, p99 $(json "$WORK/lat.json" '["p99_ms"]') ms, max $(json "$WORK/lat.json" '["max_ms"]') ms (target p99 < 50 ms)"
  cat "$WORK/tail.out"
  ;;
memory)
  echo; echo "== 3. memory"
  echo "server RSS at start of this part: $(rss_mb $SERVER) MB"
  # Each app gets its 1,500 lines the real way: from a one-off dyno's output.
  app_repo memsrc "console: bash" >/dev/null   # no web process: no dyno per app
  for i in $(seq 1 "$APPS"); do
    kiln apps:create "mem$i" >/dev/null
    (cd "$WORK/src/memsrc" && git push -q "http://kiln:$KILN_API_KEY@127.0.0.1:$API/mem$i.git" main >/dev/null 2>&1)
    kiln run:detached -a "mem$i" -- sh -c "yes '$LINE' | head -n 1500" >/dev/null
  done
  sleep 5
  echo "server RSS with $APPS apps x 1,500 lines: $(rss_mb $SERVER) MB"
  dead=$(port)
  kiln drains:add "syslog://127.0.0.1:$dead" -a mem1 >/dev/null
  kiln run:detached -a mem1 -- sh -c "end=\$((\$(date +%s) + $DOWN)); while [ \$(date +%s) -lt \$end ]; do yes '$LINE' | head -n 100000; done" >/dev/null
  peak=0
  for _ in $(seq 1 "$DOWN"); do
    r=$(rss_mb $SERVER); peak=$(python3 -c "print(max($peak, $r))"); sleep 1
  done
  echo "server RSS with one drain down for $DOWN s under load: peak $peak MB, now $(rss_mb $SERVER) MB"
  ;;
esac; done
