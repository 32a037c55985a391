"""The dashboard bench's two halves (see run.sh).

fill API KEY METRICS_DIR
    Writes 24 hours of per-minute metrics for every app of KEY's user, as the server keeps
    them (`<data-dir>/metrics/<app id>.fine`, one JSON point per line).
run API EMAIL PASSWORD NGINX_PORT NGINX_ROOT ROUNDS NGINX_CMD
    Signs in like a browser, times every page ROUNDS times over one keep-alive connection,
    then nginx serving a static copy of the apps page, and prints p50/p95 per page, the ratio
    of each page's p95 to nginx's, and the bytes of the first page load.
"""
import gzip
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.parse


def fill(api, key, metrics_dir):
    c = http.client.HTTPConnection("127.0.0.1", int(api))
    c.request("GET", "/apps", headers={"Authorization": "Bearer " + key,
                                       "Accept": "application/vnd.heroku+json; version=3",
                                       "Range": "id ..; max=1000"})
    apps = json.loads(c.getresponse().read())
    os.makedirs(metrics_dir, exist_ok=True)
    now = int(time.time()) // 60 * 60
    rnd = random.Random(7)
    for app in apps:
        lines = []
        for m in range(24 * 60, 0, -1):
            n = rnd.randint(50, 400)
            p = {
                "t": now - m * 60, "step": 60,
                "status": [0, n - n // 20, n // 40, n // 50, n // 100],
                "lat": [[b, rnd.randint(1, n // 4 + 1)] for b in range(150, 190, 3)],
                "dynos": {f"web.{d}": {"rss": rnd.randint(40, 200) << 20, "swap": 0, "quota": 512 << 20,
                                       "load": rnd.random(), "n": 30} for d in (1, 2)},
                "restarts": 1 if m % 300 == 0 else 0,
            }
            if m % 97 == 0:
                p["h"] = {"H12": 2}
            lines.append(json.dumps(p, separators=(",", ":")))
        with open(os.path.join(metrics_dir, app["id"] + ".fine"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print(f"   {len(apps)} apps, {24 * 60} points each")


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port)
        self.cookies = {}

    def req(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            body = urllib.parse.urlencode(body)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        self.c.request(method, path, body=body, headers=h)
        r = self.c.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                self.cookies[name] = rest.split(";")[0]
        return r.status, data


def timed(client, path, rounds):
    for _ in range(5):
        client.req("GET", path)
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        status, _ = client.req("GET", path)
        out.append((time.perf_counter() - t) * 1000)
        if status != 200:
            sys.exit(f"{path}: {status}")
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.95) - 1]


def run(api, email, password, nginx_port, nginx_root, rounds, nginx_cmd):
    rounds = int(rounds)
    b = Client(int(api))
    _, page = b.req("GET", "/dashboard/login")
    token = re.search(rb'name="_csrf" value="([^"]+)"', page).group(1).decode()
    status, _ = b.req("POST", "/dashboard/login", {"_csrf": token, "email": email, "password": password, "next": "/dashboard"})
    assert status == 303, status
    app = "/dashboard/apps/bench-app-50"
    pages = [("apps list (100 apps)", "/dashboard"), ("overview", app), ("resources", app + "/resources"),
             ("deploy", app + "/deploy"), ("metrics 1 h", app + "/metrics"),
             ("metrics 24 h", app + "/metrics?range=24h"), ("metrics 7 d", app + "/metrics?range=7d"),
             ("metrics charts partial", app + "/metrics/charts?range=24h"), ("activity", app + "/activity"),
             ("logs", app + "/logs"), ("access", app + "/access"), ("settings", app + "/settings"),
             ("dynos partial", app + "/dynos"), ("account", "/dashboard/account"), ("teams", "/dashboard/teams")]
    results = [(name, *timed(b, path, rounds)) for name, path in pages]

    # The first load: the page, its stylesheet and its script, as sent (no compression on the
    # wire) and gzipped.
    _, html = b.req("GET", "/dashboard")
    total, total_gz = len(html), len(gzip.compress(html))
    for asset in re.findall(rb'(?:href|src)="(/dashboard/assets/[^"]+)"', html):
        _, data = b.req("GET", asset.decode())
        total += len(data)
        total_gz += len(gzip.compress(data))

    with open(os.path.join(nginx_root, "index.html"), "wb") as f:
        f.write(html)
    subprocess.run(nginx_cmd.split(), check=True)
    time.sleep(0.3)
    ref50, ref95 = timed(Client(int(nginx_port)), "/index.html", rounds)

    print(f"== pages, {rounds} requests each (ms)")
    print(f"   {'page':28} {'p50':>7} {'p95':>7} {'p95 / nginx p95':>16}")
    for name, p50, p95 in results:
        print(f"   {name:28} {p50:7.2f} {p95:7.2f} {p95 / ref95:16.1f}")
    print(f"   {'nginx, static apps page':28} {ref50:7.2f} {ref95:7.2f} {1.0:16.1f}")
    worst = max(r[2] for r in results)
    print(f"   slowest page p95: {worst:.2f} ms (target < 20 ms): {'meets' if worst < 20 else 'MISSES'}")
    print(f"== first load: {total / 1024:.1f} KB as sent, {total_gz / 1024:.1f} KB gzipped (target < 100 KB)")


if __name__ == "__main__":
    {"fill": fill, "run": run}[sys.argv[1]](*sys.argv[2:])
