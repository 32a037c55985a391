//! The router's HTTP cache with a deployed app: a response the app marks public is served
//! from the cache (the dyno sees one request), and a new release purges it.

mod common;

use common::*;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(60);

/// A web process that counts the requests it serves and marks `/cached` shareable.
const APP: &str = r#"
import os
import http.server

HITS = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global HITS
        HITS += 1
        body = ("hits=%d FOO=%s\n" % (HITS, os.environ.get("FOO"))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/cached":
            self.send_header("Cache-Control", "public, max-age=300")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[test]
fn cache_hits_spare_the_dyno_and_a_new_release_purges() {
    let s = Server::start("cache");
    s.ok(&["apps:create", "cacheapp"]);
    let app = python_app(&[
        ("app.py", APP),
        (
            "app.json",
            r#"{"formation": {"web": {"quantity": 1}, "worker": {"quantity": 0}}}"#,
        ),
    ]);
    let (ok, out) = s.push(&app, "cacheapp");
    assert!(ok, "push failed:\n{out}");

    let first = s.get("cacheapp", "/cached");
    assert_eq!(
        (first.status, first.header("x-cache")),
        (200, Some("MISS")),
        "{first:?}"
    );
    assert_eq!(first.body, "hits=1 FOO=None\n");
    for _ in 0..3 {
        let r = s.get("cacheapp", "/cached");
        assert_eq!(
            (r.header("x-cache"), r.body.as_str()),
            (Some("HIT"), "hits=1 FOO=None\n"),
            "{r:?}"
        );
        assert!(r.header("age").is_some(), "{r:?}");
    }
    // The dyno saw one request for /cached: this is its second.
    let other = s.get("cacheapp", "/other");
    assert_eq!(
        (other.header("x-cache"), other.body.as_str()),
        (Some("MISS"), "hits=2 FOO=None\n")
    );
    wait_for(
        Duration::from_secs(10),
        "a router line for a cache hit",
        || {
            s.logs("cacheapp")
                .lines()
                .any(|l| {
                    l.contains("heroku[router]")
                        && l.contains("path=\"/cached\"")
                        && l.contains("dyno=cache")
                })
                .then_some(())
        },
    );

    // config:set creates a release; once its dyno is the one in rotation, the cache is purged.
    s.ok(&["config:set", "FOO=bar", "-a", "cacheapp"]);
    let fresh = wait_for(BOOT, "the new release to serve /cached", || {
        let r = s.get("cacheapp", "/cached");
        r.body.contains("FOO=bar").then_some(r)
    });
    assert_eq!(fresh.header("x-cache"), Some("MISS"), "{fresh:?}");
    // Later requests are hits on the new release's answer, never the old one.
    wait_for(Duration::from_secs(10), "a hit on the new release", || {
        let r = s.get("cacheapp", "/cached");
        assert!(
            r.body.contains("FOO=bar"),
            "an old release's answer came back from the cache: {r:?}"
        );
        (r.header("x-cache") == Some("HIT")).then_some(())
    });
}
