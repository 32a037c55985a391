"""A syslog receiver for bench/logs: accepts TCP connections, reads RFC 6587 octet-counted
frames, and reports, as JSON on stdout when it has seen COUNT messages containing MARKER (or
after --idle seconds without data): how many, the time of the first and the last, and, when
the messages carry a send time (`t=<ns>` in the message), the latency percentiles.

usage: receiver.py PORTFILE COUNT MARKER [--latency] [--idle S]
It binds 127.0.0.1:0 and writes its port to PORTFILE."""
import json, socket, sys, threading, time

portfile, count, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
latency = "--latency" in sys.argv
idle = float(sys.argv[sys.argv.index("--idle") + 1]) if "--idle" in sys.argv else 30.0

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
import os
os.rename(portfile + ".tmp", portfile)

lock = threading.Lock()
state = {"n": 0, "first": None, "last": None, "lat": [], "seen": time.time()}
done = threading.Event()


def handle(conn):
    # Throughput: count the marker with bytes.count (C speed), keeping the last bytes of each
    # read so a marker split between reads is counted once; latency: parse each frame.
    keep = len(marker) - 1
    tail = b""
    buf = b""
    while True:
        data = conn.recv(1 << 20)
        if not data:
            return
        now = time.time_ns()
        if not latency:
            chunk = tail + data
            n = chunk.count(marker)
            tail = chunk[-keep:] if keep else b""
            # A marker wholly inside the kept tail was counted already; tail is shorter than it.
            with lock:
                state["seen"] = time.time()
                if n:
                    state["n"] += n
                    if state["first"] is None:
                        state["first"] = now
                    state["last"] = now
                if state["n"] >= count:
                    done.set()
            continue
        buf += data
        i = 0
        msgs = []
        while True:
            sp = buf.find(b" ", i)
            if sp < 0:
                break
            n = int(buf[i:sp])
            if len(buf) < sp + 1 + n:
                break
            msgs.append(buf[sp + 1 : sp + 1 + n])
            i = sp + 1 + n
        buf = buf[i:]
        with lock:
            state["seen"] = time.time()
            for m in msgs:
                if marker not in m:
                    continue
                state["n"] += 1
                if state["first"] is None:
                    state["first"] = now
                state["last"] = now
                j = m.find(b"t=")
                if j >= 0:
                    k = m.find(b" ", j)
                    try:
                        sent = int(m[j + 2 : k if k > 0 else len(m)])
                    except ValueError:
                        continue
                    state["lat"].append((now - sent) / 1e6)
            if state["n"] >= count:
                done.set()


def accept():
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


threading.Thread(target=accept, daemon=True).start()
while not done.wait(0.2):
    # Idle after the first line; a minute without any line means the sender never started.
    if time.time() - state["seen"] > (idle if state["first"] is not None else 60):
        break
with lock:
    out = {"n": state["n"], "first_ns": state["first"], "last_ns": state["last"]}
    if latency and state["lat"]:
        lat = sorted(state["lat"])
        out["p50_ms"] = lat[len(lat) // 2]
        out["p99_ms"] = lat[int(len(lat) * 0.99)]
        out["max_ms"] = lat[-1]
print(json.dumps(out), flush=True)
