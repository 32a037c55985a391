//! Issue 22: the doors are hard to knock over. Connections alone, without a credential,
//! must not take the platform down: idle connections to one port leave the others serving
//! even under a service manager's 1024 open-files limit, and clients too slow to send a
//! head or a body are cut off.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(90);

const WEB_PY: &str = r#"
import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"still here\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#;

/// This test process opens thousands of sockets; its own limit must allow them.
fn raise_own_open_files_limit() {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            "--nofile=8192:8192",
        ])
        .output()
        .expect("prlimit");
    assert!(
        out.status.success()
            || std::fs::read_to_string("/proc/self/limits")
                .unwrap_or_default()
                .contains("Max open files            8192"),
        "{out:?}"
    );
}

/// `n` connections that send nothing, as an attacker holds them. Connecting is bounded:
/// past its caps the server closes connections, and a full accept queue may drop a SYN.
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
        .collect()
}

/// Waits (a few seconds at most) until the server has taken in what the flood queued: its
/// count of open descriptors stops changing.
fn settle(s: &Server) {
    let open = || std::fs::read_dir(format!("/proc/{}/fd", s.pid())).map_or(0, Iterator::count);
    let (mut last, mut stable_since, started) = (open(), Instant::now(), Instant::now());
    while stable_since.elapsed() < Duration::from_millis(700)
        && started.elapsed() < Duration::from_secs(8)
    {
        std::thread::sleep(Duration::from_millis(100));
        let now = open();
        if now != last {
            (last, stable_since) = (now, Instant::now());
        }
    }
    eprintln!("the server holds {last} descriptors");
}

fn deploy_web(s: &Server, app: &str) {
    s.ok(&["apps:create", app]);
    let repo = fixture_repo(
        app,
        &[("app.py", WEB_PY), ("Procfile", "web: python3 app.py\n")],
    );
    let (ok, out) = s.push(&repo, app);
    assert!(ok, "push failed:\n{out}");
    wait_for(BOOT, "the app to answer", || {
        (s.get(app, "/").status == 200).then_some(())
    });
}

/// Acceptance 2: with the open-files limit at 1024, 1,000 idle connections to the API port
/// leave the router answering, and 1,000 to the router port leave the API answering. (1,200
/// here: with a thousand, whether a server without caps still had a descriptor to spare
/// depended on how many it held already.)
#[test]
fn idle_connections_to_one_door_leave_the_others_answering() {
    raise_own_open_files_limit();
    let s = Server::start_with_nofile("doors-flood", 1024, &[]);
    assert!(
        s.server_log().contains("the open-files limit is low"),
        "the server says its caps were lowered: {}",
        s.server_log()
    );
    deploy_web(&s, "doorapp");
    let api: SocketAddr = format!("127.0.0.1:{}", s.api_port()).parse().unwrap();
    let router: SocketAddr = format!("127.0.0.1:{}", s.router_port).parse().unwrap();

    let flood = idle_connections(api, 1200);
    assert!(flood.len() > 500, "the flood connected: {}", flood.len());
    settle(&s);
    for i in 0..20 {
        let r = s.get("doorapp", &format!("/during-api-flood/{i}"));
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "still here\n"),
            "request {i} through the router with the API flooded"
        );
    }
    drop(flood);
    wait_for(
        Duration::from_secs(10),
        "the API to answer once the flood is gone",
        || (s.api("GET", "/apps", None).status == 200).then_some(()),
    );

    let flood = idle_connections(router, 1200);
    assert!(flood.len() > 500, "the flood connected: {}", flood.len());
    settle(&s);
    for i in 0..20 {
        let r = s.api("GET", "/apps/doorapp", None);
        assert_eq!(
            r.status, 200,
            "API request {i} with the router flooded: {r:?}"
        );
    }
    assert!(
        s.kiln(&["ps", "-a", "doorapp"]).status.success(),
        "the CLI works with the router flooded"
    );
    drop(flood);
    wait_for(
        Duration::from_secs(10),
        "the router to answer once the flood is gone",
        || (s.get("doorapp", "/").status == 200).then_some(()),
    );
    assert!(
        s.server_log()
            .contains("connection refused: the listener holds its maximum"),
        "refusals are reported: {}",
        s.server_log()
    );
}

/// Sends `bytes` one at a time, one every `every`, until the server answers or closes the
/// connection, or everything is sent; returns how long that took and whether the server
/// stopped it.
fn trickle(addr: SocketAddr, bytes: &[u8], every: Duration) -> (Duration, bool) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    for b in bytes {
        if sock.write_all(&[*b]).is_err() {
            return (started.elapsed(), true);
        }
        let mut buf = [0u8; 512];
        match sock.read(&mut buf) {
            // Nothing from the server yet: `every` has passed.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // An answer, a close or a reset: the server stopped waiting.
            _ => return (started.elapsed(), true),
        }
    }
    (started.elapsed(), false)
}

/// A client sending a request head byte by byte to the API is cut off at the head timeout;
/// one sending a body that stalls is cut off at the idle timeout.
#[test]
fn slow_clients_are_cut_off_at_the_api() {
    let s = Server::start_with(
        "doors-slow",
        &["--api-head-timeout", "2", "--api-idle-timeout", "2"],
    );
    let api: SocketAddr = format!("127.0.0.1:{}", s.api_port()).parse().unwrap();
    let mut head = String::from("GET /apps HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    head.push_str(&"X-Slow: a\r\n".repeat(40));
    let (took, cut) = trickle(api, head.as_bytes(), Duration::from_millis(100));
    assert!(cut, "a head trickled over {took:?} was never cut off");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "cut off after {took:?}, the head timeout is 2 s"
    );

    // A body that stops: the request fails once the body has been idle for the window.
    let mut sock = TcpStream::connect(api).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let request = format!(
        "PATCH /apps/nosuch/config-vars HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"A\":",
        s.key
    );
    sock.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "a stalled body held the connection for {took:?}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out}");

    // Meanwhile, and afterwards, the API answers.
    assert_eq!(s.api("GET", "/apps", None).status, 200);
}
