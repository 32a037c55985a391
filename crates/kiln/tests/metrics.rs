//! Metrics end to end (issue 18): a scripted load with known status codes and latencies
//! through the router, then the API's figures for the step: counts exactly as sent, response
//! time percentiles within the histogram's resolution of the router's own measurements (its
//! log lines), H-codes counted, the dynos' memory reported, all still there after a restart.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const APP_PY: &str = r#"import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        # /s/CODE/MS: answer CODE after MS milliseconds.
        parts = self.path.strip("/").split("/")
        code, ms = (int(parts[1]), int(parts[2])) if len(parts) == 3 and parts[0] == "s" else (200, 0)
        time.sleep(ms / 1000)
        body = b"ok"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

/// `connect=Xms service=Yms` of a router line, in ms.
fn router_ms(line: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))?
            .strip_suffix("ms")?
            .parse()
            .ok()
    };
    Some(field("connect=")? + field("service=")?)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn the_router_and_dyno_figures_match_a_scripted_load_and_survive_a_restart() {
    // One step of a day: the whole load falls in one point, written when the server stops.
    let mut s = Server::start_with("metrics", &["--metrics-step", "86400"]);
    s.ok(&["apps:create", "gauge"]);
    let repo = fixture_repo(
        "metrics-app",
        &[
            ("Procfile", "web: python3 app.py\n"),
            ("app.py", APP_PY),
            ("requirements.txt", ""),
        ],
    );
    let (ok, out) = s.push(&repo, "gauge");
    assert!(ok, "{out}");
    s.wait_for_app(
        "gauge",
        Duration::from_secs(60),
        "the app to answer",
        || (s.get("gauge", "/").status == 200).then_some(()),
    );

    let send = |path: &str, n: usize, status: u16| {
        for _ in 0..n {
            assert_eq!(s.get("gauge", path).status, status, "{path}");
        }
    };
    send("/s/200/0", 30, 200);
    send("/s/404/0", 10, 404);
    send("/s/500/0", 5, 500);
    send("/s/302/0", 4, 302);
    send("/s/200/40", 10, 200);
    send("/s/200/250", 5, 200);
    // H14: no web dynos.
    s.ok(&["ps:scale", "web=0", "-a", "gauge"]);
    s.wait_for_app("gauge", Duration::from_secs(30), "H14", || {
        (s.get("gauge", "/s/200/0").status == 503).then_some(())
    });
    send("/s/200/0", 2, 503);

    // What the router itself logged, request by request: the reference.
    let logs = s.ok(&["logs", "-n", "1500", "-a", "gauge", "-d", "router"]);
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("heroku[router]:"))
        .collect();
    let status_of = |l: &str| -> u16 {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("status="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let class = |c: u16| lines.iter().filter(|l| status_of(l) / 100 == c).count() as u64;
    let h14 = lines.iter().filter(|l| l.contains("code=H14")).count() as u64;
    let mut served: Vec<f64> = lines.iter().filter_map(|l| router_ms(l)).collect();
    served.sort_by(f64::total_cmp);
    assert_eq!(class(4), 10);
    assert_eq!(class(3), 4);
    assert!(h14 >= 3, "{logs}");

    // The step in progress is written when the server stops, and read after it starts.
    s.stop_and_restart(&["--metrics-step", "86400"]);
    let points = s.api("GET", "/apps/gauge/metrics/router", None).json();
    let points = points.as_array().expect("an array");
    assert_eq!(points.len(), 1, "{points:?}");
    let p = &points[0];
    assert_eq!(p["step"], 86400);
    let req = &p["requests"];
    assert_eq!(req["2xx"].as_u64(), Some(class(2)), "{p}");
    assert_eq!(req["3xx"].as_u64(), Some(4), "{p}");
    assert_eq!(req["4xx"].as_u64(), Some(10), "{p}");
    assert_eq!(req["5xx"].as_u64(), Some(class(5)), "{p}");
    assert_eq!(p["total"].as_u64(), Some(lines.len() as u64), "{p}");
    assert_eq!(p["errors"]["H14"].as_u64(), Some(h14), "{p}");
    // Percentiles: the router's log lines carry whole milliseconds, the histogram is within
    // 1/16 of the true value; together, within 7% plus a millisecond.
    for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
        let want = quantile(&served, q);
        let got = p["latency_ms"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("{p}"));
        assert!(
            (got - want).abs() <= want * 0.07 + 1.0,
            "{name}: {got} ms from the metrics, {want} ms from the router's lines"
        );
    }
    assert!(p["latency_ms"]["p99"].as_f64().unwrap() >= 240.0, "{p}");

    // The dynos: web.1's memory (sampled every 2 s, from its first moments) and quota.
    let dynos = s.api("GET", "/apps/gauge/metrics/dynos", None).json();
    let d = &dynos[0]["dynos"]["web.1"];
    assert!(d["memory_rss_mb"].as_f64().unwrap_or(0.0) > 0.0, "{dynos}");
    assert_eq!(d["memory_quota_mb"].as_f64(), Some(512.0), "{dynos}");

    // The CLI's table.
    let out = s.ok(&["metrics", "-a", "gauge", "--since", "2h"]);
    assert!(out.contains("REQUESTS") && out.contains("H14×"), "{out}");
    let out = s.ok(&["metrics", "-a", "gauge", "--dynos"]);
    assert!(out.contains("web.1") && out.contains("512"), "{out}");

    // Hostile queries are refused with a reason; an unknown app is not found.
    for q in [
        "?resolution=hourly",
        "?since=yesterday",
        "?since=2026-12-05T10:00:00Z&until=2026-12-05T09:00:00Z",
    ] {
        let r = s.api("GET", &format!("/apps/gauge/metrics/router{q}"), None);
        assert_eq!(r.status, 422, "{q}: {r:?}");
    }
    assert_eq!(s.api("GET", "/apps/nope/metrics/router", None).status, 404);
    let none: Value = s
        .api(
            "GET",
            "/apps/gauge/metrics/router?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z",
            None,
        )
        .json();
    assert_eq!(none, serde_json::json!([]));
}
