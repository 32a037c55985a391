//! The router end to end, through a real `kiln server` and a deployed app: custom domains
//! (`domains:add`/`domains:remove`, kept across a restart), maintenance mode (H80), and
//! request smuggling attempts sent over raw sockets, which must never reach the dyno.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

fn deploy(s: &Server, app: &str) {
    s.ok(&["apps:create", app]);
    let (ok, out) = s.push(&python_app(&[]), app);
    assert!(ok, "push failed:\n{out}\nserver log:\n{}", s.server_log());
}

/// A GET through the router with this `Host`.
fn get_host(s: &Server, host: &str, path: &str) -> Response {
    http(s.router_port, "GET", host, path, &[], None)
}

#[test]
fn custom_domains_and_maintenance_mode() {
    let mut s = Server::start("routing");
    deploy(&s, "routeapp");
    s.ok(&["apps:create", "otherapp"]);

    // Before domains:add, the hostname is nobody's.
    assert_eq!(get_host(&s, "www.example.test", "/").status, 404);
    let out = s.ok(&["domains:add", "WWW.Example.test", "-a", "routeapp"]);
    assert!(
        out.contains("Adding WWW.Example.test to ⬢ routeapp... done"),
        "{out}"
    );
    assert!(out.contains("DNS target routeapp.localhost"), "{out}");
    let r = get_host(&s, "www.example.test", "/via-domain");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("DYNO=web.1"), "{}", r.body);
    let r = get_host(&s, "WWW.EXAMPLE.TEST:80", "/");
    assert_eq!(r.status, 200, "case and port do not matter: {r:?}");
    let listed = s.ok(&["domains", "-a", "routeapp"]);
    assert!(
        listed.contains("=== routeapp Heroku Domain\n\nrouteapp.localhost\n"),
        "{listed}"
    );
    assert!(
        listed.contains("www.example.test  CNAME            routeapp.localhost"),
        "{listed}"
    );

    // One app per hostname; the platform's own names are not for the taking.
    let err = s.fails(&["domains:add", "www.example.test", "-a", "otherapp"]);
    assert!(err.contains("www.example.test is already in use"), "{err}");
    let err = s.fails(&["domains:add", "routeapp.localhost", "-a", "otherapp"]);
    assert!(err.contains("where Kiln serves apps by name"), "{err}");
    let err = s.fails(&["domains:add", "bad_host.example.test", "-a", "otherapp"]);
    assert!(err.contains("is not a valid hostname"), "{err}");

    // Custom domains survive a restart of the platform.
    s.stop();
    let s = Server::start_in(s.dir.clone(), &[]);
    let r = wait_for(
        BOOT,
        "the app to answer at its custom domain after a restart",
        || {
            let r = get_host(&s, "www.example.test", "/");
            (r.status == 200).then_some(r)
        },
    );
    assert!(r.body.contains("DYNO=web.1"), "{}", r.body);

    // Maintenance: every request gets the maintenance page, logged as H80; dynos keep running.
    assert_eq!(s.ok(&["maintenance", "-a", "routeapp"]), "off\n");
    assert_eq!(
        s.ok(&["maintenance:on", "-a", "routeapp"]),
        "Enabling maintenance mode for ⬢ routeapp... done\n"
    );
    assert_eq!(s.ok(&["maintenance", "-a", "routeapp"]), "on\n");
    for host in ["routeapp.localhost", "www.example.test"] {
        let r = get_host(&s, host, "/during-maintenance");
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.body.contains("Offline for maintenance"), "{}", r.body);
    }
    let logs = wait_for(Duration::from_secs(10), "the H80 line", || {
        let l = s.logs("routeapp");
        l.contains("path=\"/during-maintenance\"").then_some(l)
    });
    assert!(
        logs.contains("heroku[router]: at=info code=H80 desc=\"Maintenance mode\" method=GET path=\"/during-maintenance\" host=routeapp.localhost"),
        "{logs}"
    );
    assert!(
        logs.contains("app[api]: Enable maintenance mode by user"),
        "{logs}"
    );
    assert!(
        s.ok(&["ps", "-a", "routeapp"]).contains("web.1: up"),
        "dynos keep running"
    );
    s.ok(&["maintenance:off", "-a", "routeapp"]);
    let r = get_host(&s, "routeapp.localhost", "/");
    assert_eq!(r.status, 200, "{r:?}");

    // domains:remove: the hostname is nobody's again, at once.
    let out = s.ok(&["domains:remove", "www.example.test", "-a", "routeapp"]);
    assert_eq!(out, "Removing www.example.test from ⬢ routeapp... done\n");
    let r = get_host(&s, "www.example.test", "/");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        s.ok(&["domains", "-a", "routeapp"])
            .trim_end()
            .ends_with("routeapp.localhost")
    );
    s.ok(&["domains:add", "www.example.test", "-a", "otherapp"]);
}

/// Classic smuggling attempts against a deployed app whose web server (Python's
/// `http.server`, which honours only Content-Length) would be fooled by a hidden request:
/// each gets a 400 and a closed connection, and the dyno logs no request but the honest ones.
#[test]
fn smuggled_requests_never_reach_the_dyno() {
    let s = Server::start("smuggling");
    deploy(&s, "smugapp");
    let host = "smugapp.localhost";
    let hidden = format!("GET /hidden HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let attacks = [
        format!(
            "POST /cl-te HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
            5 + hidden.len()
        ),
        format!(
            "POST /te-cl HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
            hidden.len()
        ),
        format!(
            "POST /te-te HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
        ),
        format!(
            "POST /te-space HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
        ),
        format!(
            "POST /cl-list HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1, {}\r\n\r\nx{hidden}",
            1 + hidden.len()
        ),
        format!(
            "POST /bad-chunk HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n{hidden}"
        ),
    ];
    for attack in &attacks {
        let (out, closed) = raw_exchange(s.router_port, attack.as_bytes());
        let first = attack.lines().next().unwrap();
        assert_eq!(statuses(&out), [400], "{first}: {out}");
        assert!(closed, "{first}: the connection must be closed");
    }
    // A good request pipelined before a bad one is served; nothing after the bad one is.
    let pipelined = format!(
        "GET /honest HTTP/1.1\r\nHost: {host}\r\n\r\nPOST /cl-te HTTP/1.1\r\nHost: {host}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
    );
    let (out, closed) = raw_exchange(s.router_port, pipelined.as_bytes());
    assert_eq!(statuses(&out), [200, 400], "{out}");
    assert!(closed);

    let logs = wait_for(
        Duration::from_secs(10),
        "the dyno's line for the honest request",
        || {
            let l = s.logs("smugapp");
            l.contains("app[web.1]: request GET /honest").then_some(l)
        },
    );
    // Give a hidden request, had one got through, time to show up.
    std::thread::sleep(Duration::from_secs(1));
    let logs = format!("{logs}{}", s.logs("smugapp"));
    assert!(
        !logs.contains("/hidden"),
        "a hidden request reached the dyno:\n{logs}"
    );
    let dyno_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("app[web.1]: request "))
        .collect();
    assert!(
        dyno_lines.iter().all(|l| l.contains("request GET /honest")
            || l.contains("request POST /bad-chunk")
            || l.contains("request GET / ")),
        "{dyno_lines:?}"
    );
    assert!(logs.contains("heroku[router]: at=error code=H26 desc=\"Request Error\" cause=\"Content-Length with Transfer-Encoding\" method=POST path=\"/cl-te\" host=smugapp.localhost"), "{logs}");
    assert!(
        logs.contains("cause=\"chunk size is not a hex number\" method=POST path=\"/bad-chunk\""),
        "{logs}"
    );
}

/// The simplest Python web app there is, in HTTP/1.1 mode: the standard library's server
/// writes the head and the body of each response separately, with Nagle's algorithm on.
const NAGLE_APP: &str = r#"
import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer(b"hello\n")
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(b"got %d\n" % len(data))
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Issue 21: sequential requests on one client connection to that app answer in about
/// the app's own time, not the 44 ms Linux's delayed ACK added to each of them when the
/// router reused a dyno connection: GETs on the engine's path, POSTs on hyper's.
#[test]
fn apps_writing_in_pieces_answer_without_delay() {
    let s = Server::start("nagle");
    s.ok(&["apps:create", "nagle"]);
    let repo = fixture_repo(
        "nagle-app",
        &[("app.py", NAGLE_APP), ("Procfile", "web: python3 app.py\n")],
    );
    let (ok, out) = s.push(&repo, "nagle");
    assert!(ok, "push failed:\n{out}");
    wait_for(BOOT, "the app to answer", || {
        (s.get("nagle", "/").status == 200).then_some(())
    });

    let mut sock = TcpStream::connect(("127.0.0.1", s.router_port)).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for (method, body, answer) in [("GET", "", "hello\n"), ("POST", "name=kiln", "got 9\n")] {
        let mut samples = Vec::new();
        for _ in 0..30 {
            let started = std::time::Instant::now();
            let request = format!(
                "{method} / HTTP/1.1\r\nHost: nagle.localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(request.as_bytes()).unwrap();
            let response = read_response(&mut sock);
            assert!(
                response.starts_with("HTTP/1.1 200 ") && response.ends_with(answer),
                "{response}"
            );
            samples.push(started.elapsed());
        }
        samples.sort();
        let median = samples[samples.len() / 2];
        assert!(
            median < Duration::from_millis(5),
            "{method}: median {median:?} per request; all: {samples:?}"
        );
    }
}

/// One response with a `Content-Length` body, read off a kept-alive connection.
fn read_response(sock: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return String::from_utf8_lossy(&raw).into_owned();
            }
        }
        let n = sock.read(&mut buf).expect("response");
        assert!(
            n > 0,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Issue 12: maintenance mode belongs to the platform. Scaling, a one-off dyno and a restart
/// of the server each used to republish the app with maintenance off (the dyno manager wrote
/// settings it does not own): the router served the app while `maintenance` said `on`.
#[test]
fn maintenance_survives_scale_run_and_restart() {
    let s = Server::start("maint");
    deploy(&s, "maintapp");
    wait_for(BOOT, "the app to answer", || {
        (s.get("maintapp", "/").status == 200).then_some(())
    });
    s.ok(&["maintenance:on", "-a", "maintapp"]);
    let in_maintenance = |s: &Server, after: &str| {
        let r = s.get("maintapp", &format!("/after-{after}"));
        assert_eq!(r.status, 503, "after {after}: {r:?}");
        assert!(
            r.body.contains("Offline for maintenance"),
            "after {after}: {}",
            r.body
        );
        assert_eq!(
            s.ok(&["maintenance", "-a", "maintapp"]),
            "on\n",
            "after {after}"
        );
    };
    in_maintenance(&s, "enabling");

    s.ok(&["ps:scale", "web=2", "-a", "maintapp"]);
    wait_for(BOOT, "web.2 up", || {
        s.ok(&["ps", "-a", "maintapp"])
            .contains("web.2: up")
            .then_some(())
    });
    in_maintenance(&s, "scale");

    let out = s.ok(&["run", "-a", "maintapp", "--", "echo", "one-off"]);
    assert!(out.contains("one-off"), "{out}");
    in_maintenance(&s, "run");

    let mut s = s;
    s.stop();
    let s = Server::start_in(s.dir.clone(), &[]);
    wait_for(BOOT, "the web dynos back after the restart", || {
        let ps = s.ok(&["ps", "-a", "maintapp"]);
        (ps.contains("web.1: up") && ps.contains("web.2: up")).then_some(())
    });
    in_maintenance(&s, "restart");

    s.ok(&["maintenance:off", "-a", "maintapp"]);
    wait_for(BOOT, "the app to answer again", || {
        (s.get("maintapp", "/").status == 200).then_some(())
    });
}
