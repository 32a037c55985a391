//! Hostile and slow clients, Heroku's limits and timeouts, custom domains and the apps'
//! own error pages: a real router on 127.0.0.1:0 in front of real dynos, driven over raw
//! sockets with hand-written bytes.
//!
//! The smuggling tests put a dyno behind the router that records every request its own
//! HTTP parser (hyper, keep-alive on) finds in the bytes it receives, and those bytes too.
//! Each attack hides a second request (`/hidden`) behind an ambiguous first one; the tests
//! prove the router refuses the first with a 400 and a closed connection, and that the dyno
//! never receives the hidden one — not as a request, and not even as bytes.

mod support;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kiln_model::route::AppRoutes;
use kiln_router::RouterConfig;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

const RID: &str = "abcdefghij0123456789";

fn config(change: impl FnOnce(&mut RouterConfig)) -> RouterConfig {
    let mut c = RouterConfig::default();
    change(&mut c);
    c
}

/// `pattern` with each `{n}` standing for one or more digits.
fn assert_matches(actual: &str, pattern: &str) {
    let mut rest = actual;
    let mut parts = pattern.split("{n}").peekable();
    while let Some(literal) = parts.next() {
        rest = rest
            .strip_prefix(literal)
            .unwrap_or_else(|| panic!("\n  line: {actual}\npattern: {pattern}\n at: {rest:?}"));
        if parts.peek().is_some() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            assert!(
                digits > 0,
                "\n  line: {actual}\npattern: {pattern}\nexpected digits at: {rest:?}"
            );
            rest = &rest[digits..];
        }
    }
    assert!(
        rest.is_empty(),
        "\n  line: {actual}\npattern: {pattern}\ntrailing: {rest:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A dyno that records everything
// ---------------------------------------------------------------------------------------

struct Recorder {
    addr: SocketAddr,
    /// `METHOD target body=<body>` for each request the dyno's parser found.
    requests: Arc<Mutex<Vec<String>>>,
    /// Every byte the dyno received, on any connection.
    raw: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    fn assert_never_saw(&self, needle: &str) {
        assert!(
            !self.raw().contains(needle),
            "the dyno received {needle:?}:\n{}",
            self.raw()
        );
        assert!(
            self.requests().iter().all(|r| !r.contains(needle)),
            "{:?}",
            self.requests()
        );
    }
}

/// Copies every byte read into `raw`.
struct Tee {
    stream: TcpStream,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tee {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.raw
            .lock()
            .unwrap()
            .extend_from_slice(&buf.filled()[before..]);
        polled
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

async fn recording_dyno() -> Recorder {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let raw = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (r, w, c) = (requests.clone(), raw.clone(), connections.clone());
    let addr = raw_dyno(move |stream| {
        c.fetch_add(1, Ordering::SeqCst);
        let (requests, raw) = (r.clone(), w.clone());
        async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let requests = requests.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let headers = parts
                        .headers
                        .keys()
                        .filter(|k| k.as_str().starts_with("x-many-"))
                        .count();
                    let line = format!(
                        "{} {} body={} many={headers}",
                        parts.method,
                        parts.uri,
                        String::from_utf8_lossy(&body)
                    );
                    requests.lock().unwrap().push(line.clone());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "recorded {line}"
                    )))))
                }
            });
            // Many headers allowed: the router's limit is what is under test, not hyper's.
            let _ = http1::Builder::new()
                .max_headers(4096)
                .serve_connection(TokioIo::new(Tee { stream, raw }), service)
                .await;
        }
    })
    .await;
    Recorder {
        addr,
        requests,
        raw,
        connections,
    }
}

/// Sends raw bytes and reads everything until the router closes the connection (or 5 s
/// pass). Returns what was read and whether the connection was closed.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    kiln_testkit::net::exchange(addr, bytes, Duration::from_secs(5)).await
}

// ---------------------------------------------------------------------------------------
// Request smuggling
// ---------------------------------------------------------------------------------------

/// Requests that two HTTP parsers could read differently, each with a second request
/// (`/hidden`) behind it.
fn smuggling_attacks() -> Vec<(&'static str, String)> {
    let hidden = "GET /hidden HTTP/1.1\r\nHost: foo.localhost\r\n\r\n";
    vec![
        // CL.TE: a front end using Content-Length passes the whole thing; a back end using
        // chunked ends the body at `0` and reads the rest as a second request.
        (
            "CL.TE",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
                5 + hidden.len()
            ),
        ),
        // TE.CL: the reverse; the chunk hides the request from a chunked reader.
        (
            "TE.CL",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
                hidden.len()
            ),
        ),
        // TE.TE: one side is made to ignore Transfer-Encoding by obfuscating it.
        (
            "xchunked",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "space before colon",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "tab before colon",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "tab after colon",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "folded",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "leading space",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "two codings",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "coding list",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "vertical tab",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "underscore",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "bare LF",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "bare CR",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "HTTP/1.0 chunked",
            format!(
                "POST / HTTP/1.0\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        // Lengths that two parsers read differently.
        (
            "CL list",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 1, {}\r\n\r\nx{hidden}",
                1 + hidden.len()
            ),
        ),
        (
            "two CLs",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 1\r\nContent-Length: {}\r\n\r\nx{hidden}",
                1 + hidden.len()
            ),
        ),
        (
            "signed CL",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: +1\r\n\r\nx{hidden}"
            ),
        ),
        (
            "hex CL",
            format!(
                "POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 0x1\r\n\r\nx{hidden}"
            ),
        ),
        (
            "two Hosts",
            format!("GET / HTTP/1.1\r\nHost: foo.localhost\r\nHost: bar.localhost\r\n\r\n{hidden}"),
        ),
    ]
}

/// Each attack: refused with one 400, the connection closed, nothing reaches the dyno.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_refused_and_the_dyno_sees_nothing() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    let id = router.app("foo", &[dyno.addr]);
    let attacks = smuggling_attacks();
    for (name, attack) in &attacks {
        let (out, closed) = exchange(router.addr, attack.as_bytes()).await;
        assert_eq!(
            statuses(&out),
            [400],
            "{name}: one 400 and nothing else:\n{out}"
        );
        assert!(closed, "{name}: the connection must be closed");
        assert!(out.contains("connection: close"), "{name}: {out}");
        assert!(
            out.contains("Bad request"),
            "{name}: the router's own page: {out}"
        );
    }
    assert!(
        dyno.requests().is_empty(),
        "the dyno saw {:?}",
        dyno.requests()
    );
    assert_eq!(
        dyno.connections.load(Ordering::SeqCst),
        0,
        "no attack even opened a connection to the dyno"
    );
    dyno.assert_never_saw("hidden");
    // Attacks naming one app are logged for it.
    router
        .logs
        .wait_for(&id, "cause=\"Content-Length with Transfer-Encoding\"")
        .await;
    router
        .logs
        .wait_for(&id, "cause=\"Transfer-Encoding other than chunked\"")
        .await;
    router
        .logs
        .wait_for(&id, "cause=\"conflicting Content-Length values\"")
        .await;
}

/// The same attacks, each after two requests with bodies (a length, then chunked) on the
/// same connection: the bodies reach the dyno whole, the attack gets one 400 and a closed
/// connection, and the hidden request never reaches the dyno.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_after_bodies_are_refused() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let bodies = "POST /length HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 3\r\n\r\nabc\
                  POST /chunked HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n";
    let attacks = smuggling_attacks();
    for (name, attack) in &attacks {
        let (out, closed) = exchange(router.addr, format!("{bodies}{attack}").as_bytes()).await;
        assert_eq!(statuses(&out), [200, 200, 400], "{name}:\n{out}");
        assert!(closed, "{name}: the connection must be closed");
        assert!(out.contains("Bad request"), "{name}: {out}");
    }
    let expected: Vec<String> = attacks
        .iter()
        .flat_map(|_| {
            [
                "POST /length body=abc many=0",
                "POST /chunked body=hello many=0",
            ]
        })
        .map(String::from)
        .collect();
    assert_eq!(dyno.requests(), expected);
    dyno.assert_never_saw("hidden");
}

/// A target the scanner lets through but the URI type refuses (`<` is not allowed in a
/// path) gets the router's 400 and an H26 line, not a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_the_uri_type_refuses_get_the_routers_400() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    let id = router.app("foo", &[dyno.addr]);
    let (out, closed) = exchange(
        router.addr,
        b"GET /a<b HTTP/1.1\r\nHost: foo.localhost\r\n\r\nGET /hidden HTTP/1.1\r\nHost: foo.localhost\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), [400], "{out}");
    assert!(closed && out.contains("Bad request"), "{out}");
    let line = router.logs.wait_for(&id, "code=H26").await;
    assert!(
        line.message
            .contains("cause=\"malformed request target\" method=GET path=\"/a%3Cb\""),
        "{}",
        line.message
    );
    assert!(dyno.requests().is_empty());
    dyno.assert_never_saw("hidden");
}

/// `Expect: 100-continue`: the client hears `100 Continue` once a dyno wants the body and
/// then sends it; a request the router answers itself gets that answer and no 100, and the
/// connection closes (whether a body follows can no longer be told).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    s.write_all(b"POST /e HTTP/1.1\r\nHost: foo.localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body),
        "recorded POST /e body=hello many=0"
    );
    // Kept open: the same connection, now for an app that does not exist.
    s.write_all(b"POST /e HTTP/1.1\r\nHost: nope.localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), [404], "{out}");
    assert!(closed && out.contains("connection: close"), "{out}");
    assert_eq!(dyno.requests(), ["POST /e body=hello many=0"]);
}

/// HTTP/1.0 clients: no chunking (a body of unknown length ends with the connection), and
/// `Connection: keep-alive` only when they asked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_clients_get_bodies_they_can_read() {
    let router = Router::start().await;
    let streaming = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .await;
    })
    .await;
    router.app("foo", &[streaming]);
    let (out, closed) = exchange(
        router.addr,
        b"GET / HTTP/1.0\r\nHost: foo.localhost\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), [200], "{out}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "hello world");
    assert!(closed, "the body ends with the connection");

    let dyno = recording_dyno().await;
    router.app("bar", &[dyno.addr]);
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"POST /k HTTP/1.0\r\nHost: bar.localhost\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.contains("connection: keep-alive"), "{head}");
        let mut body = vec![0; "recorded POST /k body=hi many=0".len()];
        s.read_exact(&mut body).await.unwrap();
    }
    s.write_all(b"GET /last HTTP/1.0\r\nHost: bar.localhost\r\n\r\n")
        .await
        .unwrap();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), [200], "{out}");
    assert!(closed && out.contains("connection: close"), "{out}");
}

/// Requests before a bad one are served; the bad one gets a 400; what follows it is never
/// read, let alone forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_after_a_bad_one_are_dropped() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let bytes = "GET /first HTTP/1.1\r\nHost: foo.localhost\r\n\r\n\
                 POST /second HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 3\r\n\r\nabc\
                 POST /bad HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                 GET /hidden HTTP/1.1\r\nHost: foo.localhost\r\n\r\n";
    let (out, closed) = exchange(router.addr, bytes.as_bytes()).await;
    assert_eq!(statuses(&out), [200, 200, 400], "{out}");
    assert!(closed);
    assert_eq!(
        dyno.requests(),
        ["GET /first body= many=0", "POST /second body=abc many=0"]
    );
    dyno.assert_never_saw("hidden");
    dyno.assert_never_saw("/bad");
}

/// A body that looks like a request is data: the dyno gets it as the body of one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_inside_a_body_stays_a_body() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let inner = "GET /hidden HTTP/1.1\r\nHost: foo.localhost\r\n\r\n";
    let chunked = format!(
        "POST /c HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    let (out, _) = exchange(router.addr, chunked.as_bytes()).await;
    assert_eq!(statuses(&out), [200], "{out}");
    // Equal duplicate lengths are one length, and reach the dyno as one header.
    let length = format!(
        "POST /l HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: {}\r\nContent-Length: {0}\r\nConnection: close\r\n\r\n{inner}",
        inner.len()
    );
    let (out, _) = exchange(router.addr, length.as_bytes()).await;
    assert_eq!(statuses(&out), [200], "{out}");
    assert_eq!(
        dyno.requests(),
        [
            format!("POST /c body={inner} many=0"),
            format!("POST /l body={inner} many=0")
        ]
    );
    assert_eq!(
        dyno.raw().matches("content-length:").count(),
        1,
        "{}",
        dyno.raw()
    );
}

/// Malformed chunking: 400, H26 with the cause, closed; the dyno gets at most the valid
/// start of that one request, aborted, and never what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunking_is_refused() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    let id = router.app("foo", &[dyno.addr]);
    let hidden = "GET /hidden HTTP/1.1\r\nHost: foo.localhost\r\n\r\n";
    for (name, body) in [
        ("bad size", format!("3\r\nabc\r\nzz\r\n{hidden}")),
        (
            "data longer than its size",
            format!("3\r\nabcd\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "size overflow",
            format!("10000000000000003\r\nabc\r\n0\r\n\r\n{hidden}"),
        ),
        ("bare LF", format!("3\nabc\r\n0\r\n\r\n{hidden}")),
        ("negative", format!("-3\r\nabc\r\n0\r\n\r\n{hidden}")),
    ] {
        let req = format!(
            "POST /upload HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: {RID}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let (out, closed) = exchange(router.addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), [400], "{name}: {out}");
        assert!(closed, "{name}");
    }
    dyno.assert_never_saw("hidden");
    assert!(
        dyno.requests()
            .iter()
            .all(|r| r.starts_with("POST /upload ")),
        "{:?}",
        dyno.requests()
    );
    let line = router.logs.wait_for(&id, "code=H26").await;
    assert_matches(
        &line.message,
        &format!(
            "at=error code=H26 desc=\"Request Error\" cause=\"chunk size is not a hex number\" method=POST path=\"/upload\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno= connect= service= status=400 bytes= protocol=http"
        ),
    );
}

// ---------------------------------------------------------------------------------------
// Heroku's limits (H26)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_line_limit() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let line = |len: usize| {
        format!(
            "GET /{} HTTP/1.1\r\nHost: foo.localhost\r\nConnection: close\r\n\r\n",
            "a".repeat(len - 14)
        )
    };
    let (out, _) = exchange(router.addr, line(8192).as_bytes()).await;
    assert_eq!(
        statuses(&out),
        [200],
        "8192 bytes is allowed: {}",
        &out[..out.len().min(200)]
    );
    let (out, closed) = exchange(router.addr, line(8193).as_bytes()).await;
    assert_eq!(statuses(&out), [414], "{out}");
    assert!(closed && out.contains("Request line too long"), "{out}");
    assert_eq!(dyno.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    let id = router.app("foo", &[dyno.addr]);
    let head = |extra: &str| {
        format!(
            "GET /h HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: {RID}\r\nConnection: close\r\n{extra}\r\n"
        )
    };

    // 1000 headers pass (hyper alone would refuse more than 100) and reach the dyno.
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("X-Many-{i}: v\r\n"))
            .collect::<String>()
    };
    // (Host, X-Request-Id and Connection count too.)
    let (out, _) = exchange(router.addr, head(&many(997)).as_bytes()).await;
    assert_eq!(statuses(&out), [200], "{}", &out[..out.len().min(300)]);
    assert!(out.contains("many=997"), "{out}");
    let (out, closed) = exchange(router.addr, head(&many(998)).as_bytes()).await;
    assert_eq!((statuses(&out), closed), (vec![431], true), "{out}");
    assert!(out.contains("Request headers too large"), "{out}");

    // A header line of 8192 bytes passes, 8193 does not.
    let (out, _) = exchange(
        router.addr,
        head(&format!("X-Big: {}\r\n", "v".repeat(8192 - 7))).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), [200]);
    let (out, _) = exchange(
        router.addr,
        head(&format!("X-Big: {}\r\n", "v".repeat(8193 - 7))).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), [431], "{out}");

    // A header name of 1000 bytes passes, 1001 does not.
    let (out, _) = exchange(
        router.addr,
        head(&format!("{}: v\r\n", "n".repeat(1000))).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), [200]);
    let (out, _) = exchange(
        router.addr,
        head(&format!("{}: v\r\n", "n".repeat(1001))).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), [431], "{out}");

    // Only `Expect: 100-continue` is understood.
    let (out, _) = exchange(
        router.addr,
        head("Expect: 100-continue-please\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), [417], "{out}");

    assert_eq!(dyno.requests().len(), 3, "{:?}", dyno.requests());
    let line = router
        .logs
        .wait_for(&id, "cause=\"header line too long\"")
        .await;
    assert_eq!(
        line.message,
        format!(
            "at=error code=H26 desc=\"Request Error\" cause=\"header line too long\" method=GET path=\"/h\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno= connect= service= status=431 bytes= protocol=http"
        )
    );
    router
        .logs
        .wait_for(&id, "cause=\"too many headers\" method=GET")
        .await;
    router
        .logs
        .wait_for(&id, "cause=\"header name too long\"")
        .await;
    router
        .logs
        .wait_for(
            &id,
            "cause=\"unexpected expect header value\" method=GET path=\"/h\" host=foo.localhost",
        )
        .await;
    router.logs.wait_for(&id, "status=417").await;
}

// ---------------------------------------------------------------------------------------
// Timeouts: H12, H15, H28, slow clients
// ---------------------------------------------------------------------------------------

/// Response started, then the dyno goes quiet: H15 after the idle window, and the client
/// sees a broken response (no final chunk), never a short "complete" one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h15_idle_dyno_after_the_first_byte() {
    let router = Router::with_config(config(|c| c.idle_timeout = Duration::from_millis(300))).await;
    let stalls = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let id = router.app("foo", &[stalls]);
    let started = Instant::now();
    let (out, closed) = exchange(
        router.addr,
        format!("GET / HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: {RID}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(closed, "the router gave up on the response");
    assert!(
        out.starts_with("HTTP/1.1 200 OK") && out.contains("first"),
        "{out}"
    );
    assert!(
        !out.contains("0\r\n\r\n"),
        "the response must not look complete: {out:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let line = router.logs.wait_for(&id, "code=H15").await;
    assert_matches(
        &line.message,
        &format!(
            "at=error code=H15 desc=\"Idle connection\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service={{n}}ms status=503 bytes=5 protocol=http"
        ),
    );
}

/// A dyno that keeps sending (slowly, within the window) is never idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_steady_responses_are_not_idle() {
    let router = Router::with_config(config(|c| c.idle_timeout = Duration::from_millis(600))).await;
    let trickles = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..6 {
            let _ = s.write_all(b"1\r\nx\r\n").await;
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let id = router.app("foo", &[trickles]);
    let (out, _) = exchange(
        router.addr,
        b"GET / HTTP/1.1\r\nHost: foo.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.ends_with("0\r\n\r\n"), "{out:?}");
    router.logs.wait_for(&id, "status=200 bytes=6 ").await;
}

/// The client stops sending its body: H28 (499) after the idle window — not H12, although
/// the first-byte timeout is shorter, since the dyno is waiting for the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h28_client_stops_sending_its_body() {
    let router = Router::with_config(config(|c| {
        c.idle_timeout = Duration::from_millis(400);
        c.first_byte_timeout = Duration::from_millis(100);
    }))
    .await;
    let (dyno, _) = echo_dyno("a").await;
    let id = router.app("foo", &[dyno]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(format!("POST /up HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: {RID}\r\nContent-Length: 10\r\n\r\nabc").as_bytes()).await.unwrap();
    let (out, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), [408], "{out}");
    assert!(closed);
    let line = router.logs.wait_for(&id, "code=H28").await;
    assert_matches(
        &line.message,
        &format!(
            "at=warning code=H28 desc=\"Client Connection Idle\" method=POST path=\"/up\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service={{n}}ms status=499 bytes=0 protocol=http"
        ),
    );
    assert!(
        !router.logs.messages(&id).iter().any(|l| l.contains("H12")),
        "{:?}",
        router.logs.messages(&id)
    );
}

/// A slow upload that keeps moving is neither H12 nor H28.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_are_not_h12() {
    let router = Router::with_config(config(|c| {
        c.idle_timeout = Duration::from_secs(2);
        c.first_byte_timeout = Duration::from_millis(500);
    }))
    .await;
    let (dyno, _) = echo_dyno("a").await;
    let id = router.app("foo", &[dyno]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"POST /slow HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 8\r\nConnection: close\r\n\r\n").await.unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(b"x").await.unwrap();
    }
    let (out, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), [200], "{out}");
    assert!(out.contains("backend=a POST /slow body=8"), "{out}");
    router.logs.wait_for(&id, "status=200").await;
}

/// A chunked upload that pauses before its last chunk, for longer than the first-byte
/// timeout but within the idle window: the clock starts once the dyno has it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_before_the_last_chunk_is_not_h12() {
    let router = Router::with_config(config(|c| {
        c.idle_timeout = Duration::from_secs(3);
        c.first_byte_timeout = Duration::from_millis(300);
    }))
    .await;
    let (dyno, _) = echo_dyno("a").await;
    let id = router.app("foo", &[dyno]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"POST /pause HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let (out, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), [200], "{out}");
    assert!(out.contains("backend=a POST /pause body=5"), "{out}");
    router.logs.wait_for(&id, "status=200").await;
}

/// Malformed chunking that arrives after the request went to a dyno: H26 all the same, and
/// the dyno's connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunking_mid_upload_is_h26() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    let id = router.app("foo", &[dyno.addr]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"POST /late HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(b"zz\r\nGET /hidden HTTP/1.1\r\nHost: foo.localhost\r\n\r\n")
        .await
        .unwrap();
    let (out, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), [400], "{out}");
    assert!(closed);
    let line = router.logs.wait_for(&id, "code=H26").await;
    assert!(
        line.message
            .contains("cause=\"chunk size is not a hex number\" method=POST path=\"/late\"")
            && line.message.contains(" dyno=web.1 "),
        "{}",
        line.message
    );
    dyno.assert_never_saw("hidden");
}

/// An `Upgrade` request with a body is refused: after a 101 the connection carries the new
/// protocol, and a body still owed to the old one would be read as either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_with_a_body_are_refused() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let (out, closed) = exchange(
        router.addr,
        b"GET /ws HTTP/1.1\r\nHost: foo.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(statuses(&out), [400], "{out}");
    assert!(closed);
    assert!(dyno.requests().is_empty());
}

/// A dyno that neither reads the body nor answers still gets its H12: the first-byte clock
/// runs from the last body byte it accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h12_when_the_dyno_stops_reading_the_body() {
    let router = Router::with_config(config(|c| {
        c.first_byte_timeout = Duration::from_millis(300)
    }))
    .await;
    let deaf = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let id = router.app("foo", &[deaf]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    let size = 32 << 20;
    stream
        .write_all(
            format!("POST / HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: {size}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(size / chunk.len()) {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") && rd.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
    });
    answered.await.expect("the router answered");
    assert!(
        head.starts_with(b"HTTP/1.1 503 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    router.logs.wait_for(&id, "code=H12").await;
    writer.abort();
}

/// The client stops reading a large response: its writes stall, and after the idle window
/// the router closes the connection and logs H28.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h28_client_stops_reading() {
    let router = Router::with_config(config(|c| c.idle_timeout = Duration::from_millis(300))).await;
    let firehose = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let chunk = [b"10000\r\n".as_slice(), &vec![b'x'; 0x10000], b"\r\n"].concat();
        while s.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let id = router.app("foo", &[firehose]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: foo.localhost\r\n\r\n")
        .await
        .unwrap();
    let line = router.logs.wait_for(&id, "code=H28").await;
    assert!(
        line.message.starts_with(
            "at=warning code=H28 desc=\"Client Connection Idle\" method=GET path=\"/big\""
        ),
        "{}",
        line.message
    );
    assert!(
        line.message.contains(" dyno=web.1 ") && line.message.contains(" status=499 "),
        "{}",
        line.message
    );
    let app = router.table.get(&id).unwrap();
    assert_eq!(app.outstanding().map(|(_, n)| n).sum::<usize>(), 0);
    drop(stream);
}

/// Slowloris: a head trickled in line by line is cut off at `head_timeout`, however
/// steadily it trickles, and never reaches a dyno.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_cut_off() {
    let router = Router::with_config(config(|c| c.head_timeout = Duration::from_millis(400))).await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: foo.localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stream
            .write_all(format!("X-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the router closed the trickling connection");
    assert!(
        closed_after < Duration::from_millis(1500),
        "{closed_after:?}"
    );
    assert_eq!(dyno.connections.load(Ordering::SeqCst), 0);

    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(router.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(closed);
}

/// A WebSocket with no traffic either way for the idle window is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websockets_are_closed() {
    let router = Router::with_config(config(|c| c.idle_timeout = Duration::from_millis(800))).await;
    let ws = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let _ = s.write_all(&buf[..n]).await;
        }
    })
    .await;
    router.app("foo", &[ws]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"GET /chat HTTP/1.1\r\nHost: foo.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Traffic within the window keeps it open.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
    }
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
}

/// A dyno answering with something that is not HTTP: H17, with the router's 503 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h17_malformed_response() {
    let router = Router::start().await;
    let garbage = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 2OO Fine\r\nContent-Length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let id = router.app("foo", &[garbage]);
    let (out, _) = exchange(router.addr, format!("GET /x HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: {RID}\r\nConnection: close\r\n\r\n").as_bytes()).await;
    assert_eq!(statuses(&out), [503], "{out}");
    assert!(out.contains("Application error"), "{out}");
    let line = router.logs.wait_for(&id, "code=H17").await;
    assert_matches(
        &line.message,
        &format!(
            "at=error code=H17 desc=\"Poorly formatted HTTP response\" method=GET path=\"/x\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service={{n}}ms status=503 bytes=0 protocol=http"
        ),
    );
}

/// An HTTP/1.0 dyno does not make the router speak HTTP/1.0 to its clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_http_1_1_from_http_1_0_dynos() {
    let router = Router::start().await;
    let old = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
    })
    .await;
    router.app("foo", &[old]);
    let (out, _) = exchange(
        router.addr,
        b"GET / HTTP/1.1\r\nHost: foo.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("ok"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Custom domains
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_domains_route_to_their_app() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    let (b, _) = echo_dyno("b").await;
    let id = router.app("foo", &[a]);
    router.app("bar", &[b]);
    router
        .table
        .set_domains(&id, vec!["www.example.com".into(), "*.example.org".into()]);
    let r = send(router.addr, get("WWW.Example.COM", "/")).await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "a".to_string()));
    assert_eq!(
        r.echoed("host").as_deref(),
        Some("WWW.Example.COM"),
        "the dyno sees the Host the client sent"
    );
    assert_eq!(
        send(router.addr, get("shop.example.org:80", "/"))
            .await
            .backend(),
        "a"
    );
    assert_eq!(
        send(router.addr, get("bar.localhost", "/")).await.backend(),
        "b"
    );
    router.logs.wait_for(&id, "host=WWW.Example.COM").await;
    router.table.set_domains(&id, vec![]);
    assert_eq!(
        send(router.addr, get("www.example.com", "/")).await.status,
        404
    );
}

// ---------------------------------------------------------------------------------------
// The app's own pages
// ---------------------------------------------------------------------------------------

/// An HTTP server for error pages; counts its hits, answers after `delay`.
async fn page_server(body: &'static str, delay: Duration) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let (addr, _) = http_dyno(move |_req: Request<Incoming>| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            resp.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("text/html; charset=iso-8859-1"),
            );
            resp
        }
    })
    .await;
    (format!("http://{addr}/pages/page.html"), hits)
}

fn pages_allowed() -> RouterConfig {
    config(|c| {
        c.allow_private_page_urls = true;
        c.page_timeout = Duration::from_millis(500);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h80_serves_maintenance_page_url() {
    let router = Router::with_config(pages_allowed()).await;
    let (url, hits) = page_server("<h1>Back soon</h1>", Duration::ZERO).await;
    let (a, _) = echo_dyno("a").await;
    let id = router.app("foo", &[a]);
    router.table.upsert_app(&id, "foo", true, None, Some(url));
    for _ in 0..3 {
        let r = send(
            router.addr,
            get("foo.localhost", "/").header("x-request-id", RID),
        )
        .await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "<h1>Back soon</h1>");
        assert_eq!(r.headers["content-type"], "text/html; charset=iso-8859-1");
        assert_eq!(r.headers["cache-control"], "no-cache, no-store");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "fetched once, then served from the cache"
    );
    let line = router.logs.wait_for(&id, "code=H80").await;
    assert_eq!(
        line.message,
        format!(
            "at=info code=H80 desc=\"Maintenance mode\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno= connect= service= status=503 bytes= protocol=http"
        )
    );
    router.table.upsert_app(&id, "foo", false, None, None);
    assert_eq!(
        send(router.addr, get("foo.localhost", "/")).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_page_url_replaces_the_503_page() {
    let router = Router::with_config(pages_allowed()).await;
    let (url, _) = page_server("<h1>Oops</h1>", Duration::ZERO).await;
    let id = router.app("foo", &[]);
    router.table.upsert_app(&id, "foo", false, Some(url), None);
    let r = send(router.addr, get("foo.localhost", "/")).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, "<h1>Oops</h1>"));
    router.logs.wait_for(&id, "code=H14").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_page_urls_fall_back_to_the_routers_page() {
    // Too slow: the router's page, within about the page timeout.
    let router = Router::with_config(config(|c| {
        c.allow_private_page_urls = true;
        c.page_timeout = Duration::from_millis(200);
    }))
    .await;
    let (slow, _) = page_server("<h1>late</h1>", Duration::from_secs(5)).await;
    let id = router.app("foo", &[]);
    router.table.upsert_app(&id, "foo", true, None, Some(slow));
    let started = Instant::now();
    let r = send(router.addr, get("foo.localhost", "/")).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("Offline for maintenance"), "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A private address, with the default policy: never fetched.
    let router = Router::start().await;
    let (private, hits) = page_server("<h1>internal</h1>", Duration::ZERO).await;
    let id = router.app("foo", &[]);
    router
        .table
        .upsert_app(&id, "foo", true, None, Some(private));
    let r = send(router.addr, get("foo.localhost", "/")).await;
    assert!(r.body.contains("Offline for maintenance"), "{}", r.body);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Not http://.
    router
        .table
        .upsert_app(&id, "foo", true, None, Some("ftp://example.com/x".into()));
    assert!(
        send(router.addr, get("foo.localhost", "/"))
            .await
            .body
            .contains("Offline for maintenance")
    );
}

/// Raw UTF-8 in a request path (sent by some clients) is routed, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_utf8_paths_are_routed() {
    let router = Router::start().await;
    let dyno = recording_dyno().await;
    router.app("foo", &[dyno.addr]);
    let (out, _) = exchange(
        router.addr,
        "GET /caf\u{e9} HTTP/1.1\r\nHost: foo.localhost\r\nConnection: close\r\n\r\n".as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), [200], "{out}");
}

// ---------------------------------------------------------------------------------------
// Half-closed clients
// ---------------------------------------------------------------------------------------

/// A dyno that reads a whole request (length or chunked body), takes its time, then answers
/// with what it read, in two pieces with a pause between.
async fn slow_answering_dyno() -> SocketAddr {
    raw_dyno(|stream| async move {
        let service = service_fn(|req: Request<Incoming>| async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (mut tx, rx) = http_body_util::channel::Channel::<Bytes>::new(2);
            tokio::spawn(async move {
                let _ = tx
                    .send_data(Bytes::from(format!("got {} bytes;", body.len())))
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = tx.send_data(Bytes::from_static(b" done")).await;
            });
            Ok::<_, Infallible>(Response::new(rx))
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// A client that closes its sending side once its request is out still gets the whole
/// response, and the request its log line: with a length body, a chunked body and none, on
/// a dyno that answers late and in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_clients_get_their_response() {
    let router = Router::start().await;
    let dyno = slow_answering_dyno().await;
    let id = router.app("foo", &[dyno]);
    let requests = [
        (
            "length",
            "POST /length HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\n\r\nhello",
            5,
        ),
        (
            "chunked",
            "POST /chunked HTTP/1.1\r\nHost: foo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            11,
        ),
        (
            "none",
            "GET /none HTTP/1.1\r\nHost: foo.localhost\r\n\r\n",
            0,
        ),
    ];
    for (what, request, received) in requests {
        let mut stream = TcpStream::connect(router.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let (out, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert_eq!(statuses(&out), [200], "{what}: {out}");
        assert!(
            out.contains(&format!("got {received} bytes;")) && out.contains(" done"),
            "{what}: the whole body: {out:?}"
        );
        assert!(closed, "{what}: the connection closes after the response");
        let line = router
            .logs
            .wait_for(&id, &format!("path=\"/{what}\""))
            .await;
        assert!(
            line.message.starts_with("at=info method=") && line.message.contains(" status=200 "),
            "{what}: {}",
            line.message
        );
    }
}

/// A client that goes away altogether (a reset) while the dyno has its request leaves an
/// H27 line, with a request body and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_are_logged_h27() {
    let router = Router::start().await;
    let dyno = slow_answering_dyno().await;
    let id = router.app("foo", &[dyno]);
    for request in [
        "POST /gone-post HTTP/1.1\r\nHost: foo.localhost\r\nContent-Length: 5\r\n\r\nhello",
        "GET /gone-get HTTP/1.1\r\nHost: foo.localhost\r\n\r\n",
    ] {
        let stream = TcpStream::connect(router.addr).await.unwrap();
        let mut stream = stream;
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Closing with linger 0 sends a reset (and cannot block: nothing is unsent).
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream);
    }
    for path in ["/gone-post", "/gone-get"] {
        let line = router.logs.wait_for(&id, &format!("path=\"{path}\"")).await;
        assert!(
            line.message
                .starts_with("sock=client at=warning code=H27 desc=\"Client Request Interrupted\""),
            "{}",
            line.message
        );
        assert!(
            line.message.contains(" dyno=web.1 ") && line.message.contains(" status=499 "),
            "{}",
            line.message
        );
    }
}
