//! End-to-end tests: a real router on 127.0.0.1:0 in front of real tiny dynos.

mod support;

use bytes::Bytes;
use kiln_model::route::{AppRoutes, DynoRoutes, WebStatus};
use kiln_router::RouterConfig;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RID: &str = "abcdefghij0123456789";

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

fn short(config: impl FnOnce(&mut RouterConfig)) -> RouterConfig {
    let mut c = RouterConfig::default();
    config(&mut c);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    let (b, _) = echo_dyno("b").await;
    router.app("foo", &[a]);
    router.app("bar", &[b]);

    let r = send(router.addr, get("foo.localhost", "/x?y=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "a");
    assert!(
        r.body.starts_with("backend=a GET /x?y=1 body=0"),
        "{}",
        r.body
    );
    assert_eq!(
        r.echoed("host").as_deref(),
        Some("foo.localhost"),
        "Host is passed through"
    );

    let r = send(router.addr, get("BAR.LocalHost:1234", "/")).await;
    assert_eq!(r.backend(), "b", "host matching ignores case and port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404() {
    let router = Router::start().await;
    let r = send(router.addr, get("nope.localhost", "/")).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("There’s nothing here, yet."), "{}", r.body);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let r = send(router.addr, get("localhost", "/")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_host_headers_are_400() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    let head = raw_request(
        router.addr,
        b"GET / HTTP/1.1\r\nHost: foo.localhost\r\nHost: bar.localhost\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let head = raw_request(
        router.addr,
        b"GET / HTTP/1.1\r\nHost: foo.localhost\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_routes_by_its_authority() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"GET http://foo.localhost/p?q HTTP/1.1\r\nHost: other.localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(
        out.contains("backend=a GET /p?q body=0"),
        "dyno gets origin form: {out}"
    );
    assert!(out.contains("host: foo.localhost\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_over_all_dynos() {
    let router = Router::start().await;
    let mut dynos = Vec::new();
    for name in ["a", "b", "c"] {
        dynos.push(echo_dyno(name).await.0);
    }
    router.app("foo", &dynos);
    let mut seen = HashSet::new();
    for _ in 0..60 {
        seen.insert(send(router.addr, get("foo.localhost", "/")).await.backend());
    }
    assert_eq!(
        seen,
        HashSet::from(["a".to_string(), "b".to_string(), "c".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_heroku_request_headers() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let r = send(
        router.addr,
        get("foo.localhost", "/")
            .header("x-forwarded-for", "10.1.2.3")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-port", "443")
            .header("via", "1.0 corp")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic Zm9v")
            .header("x-custom", "kept"),
    )
    .await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(
        r.echoed("x-forwarded-for").as_deref(),
        Some("10.1.2.3, 127.0.0.1")
    );
    assert_eq!(r.echoed("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.echoed("x-forwarded-port"),
        Some(router.addr.port().to_string())
    );
    assert_eq!(r.echoed("via").as_deref(), Some("1.0 corp, 1.1 kiln"));
    assert_eq!(r.echoed("x-custom").as_deref(), Some("kept"));
    let start: u128 = r.echoed("x-request-start").unwrap().parse().unwrap();
    assert!(
        before <= start && start <= after,
        "{before} <= {start} <= {after}"
    );
    for gone in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert_eq!(r.echoed(gone), None, "{gone} must not reach the dyno");
    }
    assert_eq!(r.headers["via"], "1.1 kiln", "responses carry Via too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_kept_or_replaced() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    let r = send(
        router.addr,
        get("foo.localhost", "/").header("x-request-id", RID),
    )
    .await;
    assert_eq!(r.echoed("x-request-id").as_deref(), Some(RID));

    for bad in [
        "too-short",
        "has spaces in it but is long",
        &"x".repeat(201),
    ] {
        let r = send(
            router.addr,
            get("foo.localhost", "/").header("x-request-id", bad),
        )
        .await;
        let id = r.echoed("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    }
    let r = send(router.addr, get("foo.localhost", "/")).await;
    assert_eq!(r.echoed("x-request-id").unwrap().len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_log_line() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    let id = router.app("foo", &[a]);
    let r = send(
        router.addr,
        get("foo.localhost", "/hello?x=1").header("x-request-id", RID),
    )
    .await;
    assert_eq!(r.status, 200);
    let line = router.logs.wait_for(&id, "status=200").await;
    assert_matches(
        &line.message,
        &format!(
            "at=info method=GET path=\"/hello?x=1\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service={{n}}ms status=200 bytes={} protocol=http",
            r.body.len()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_stream_to_the_dyno() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    let body = Bytes::from(vec![b'x'; 300_000]);
    let r = send_body(
        router.addr,
        http::Request::post("/upload").header("host", "foo.localhost"),
        body,
    )
    .await;
    assert!(
        r.body.starts_with("backend=a POST /upload body=300000"),
        "{}",
        &r.body[..80]
    );
}

/// Asserts the router answered with its error page and logged exactly `expected`.
async fn assert_refused(router: &Router, app_id: &str, status: u16, page: &str, expected: &str) {
    let r = send(
        router.addr,
        get("foo.localhost", "/").header("x-request-id", RID),
    )
    .await;
    assert_eq!(r.status, status);
    assert!(r.body.contains(page), "{}", r.body);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let code = expected
        .split("code=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let line = router.logs.wait_for(app_id, &format!("code={code}")).await;
    assert_eq!(line.message, expected);
}

fn refused_line(at: &str, code: &str, desc: &str) -> String {
    format!(
        "at={at} code={code} desc=\"{desc}\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno= connect= service= status=503 bytes= protocol=http"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h14_no_web_dynos() {
    let router = Router::start().await;
    let id = router.app("foo", &[]);
    assert_refused(
        &router,
        &id,
        503,
        "Application error",
        &refused_line("error", "H14", "No web processes running"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h10_crashed() {
    let router = Router::start().await;
    let id = router.app("foo", &[]);
    router.table.set_backends(&id, WebStatus::Crashed, vec![]);
    assert_refused(
        &router,
        &id,
        503,
        "An error occurred in the application",
        &refused_line("error", "H10", "App crashed"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h81_blank_app() {
    let router = Router::start().await;
    router.table.upsert_app("id-foo", "foo", false, None, None);
    assert_refused(
        &router,
        "id-foo",
        503,
        "Application error",
        &refused_line("info", "H81", "Blank app"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h80_maintenance_even_with_dynos_up() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    let id = router.app("foo", &[a]);
    router.table.upsert_app(
        &id,
        "foo",
        true,
        None,
        Some("https://example.com/m.html".into()),
    );
    assert_refused(
        &router,
        &id,
        503,
        "Offline for maintenance",
        &refused_line("info", "H80", "Maintenance mode"),
    )
    .await;
    router.table.upsert_app(&id, "foo", false, None, None);
    assert_eq!(
        send(router.addr, get("foo.localhost", "/")).await.status,
        200,
        "maintenance off routes again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h20_boot_timeout() {
    let router = Router::with_config(short(|c| c.boot_hold = Duration::from_millis(200))).await;
    let id = router.app("foo", &[]);
    router.table.set_backends(&id, WebStatus::Starting, vec![]);
    let started = std::time::Instant::now();
    assert_refused(
        &router,
        &id,
        503,
        "Application error",
        &refused_line("error", "H20", "App boot timeout"),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the request was held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_request_goes_through_when_a_dyno_comes_up() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    let id = router.app("foo", &[]);
    router.table.set_backends(&id, WebStatus::Starting, vec![]);
    let table = router.table.clone();
    let id2 = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        table.set_backends(&id2, WebStatus::Up, backends(&[a]));
    });
    let started = std::time::Instant::now();
    let r = send(router.addr, get("foo.localhost", "/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "a");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_request_on_destroyed_app_is_404() {
    let router = Router::start().await;
    let id = router.app("foo", &[]);
    router.table.set_backends(&id, WebStatus::Starting, vec![]);
    let table = router.table.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        table.remove_app(&id);
    });
    assert_eq!(
        send(router.addr, get("foo.localhost", "/")).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h21_connection_refused() {
    let router = Router::start().await;
    let dead = dead_dyno().await;
    let id = router.app("foo", &[dead]);
    let r = send(
        router.addr,
        get("foo.localhost", "/").header("x-request-id", RID),
    )
    .await;
    assert_eq!(r.status, 503);
    let line = router.logs.wait_for(&id, "code=H21").await;
    assert_matches(
        &line.message,
        &format!(
            "at=error code=H21 desc=\"Backend connection refused\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service=0ms status=503 bytes=0 protocol=http"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_from_a_dead_dyno() {
    let router = Router::start().await;
    let (live, _) = echo_dyno("live").await;
    // A dyno that refused a connection is avoided afterwards, and the choice between two is
    // random: each request goes to an app of its own, so that over twelve the dead dyno is
    // tried first almost surely (all but 1 in 4096), and every answer comes from the live one.
    for n in 0..12 {
        let app = format!("foo{n}");
        let id = router.app(&app, &[dead_dyno().await, live]);
        let r = send(router.addr, get(&format!("{app}.localhost"), "/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "live");
        let line = router.logs.wait_for(&id, "status=200").await;
        assert!(line.message.contains("dyno=web.2"), "{}", line.message);
        assert_eq!(router.logs.messages(&id).len(), 1, "one line per request");
    }
}

/// A request body goes whole to the next dyno when the first cannot be reached (the
/// router sent it none of it): with a length, and chunked. A dyno that refused a connection
/// is then avoided, and the choice between two is random, so each request goes to an app
/// of its own: over twelve apps, the dead dyno is tried first almost surely (all but
/// 1 in 4096).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_from_a_dead_dyno_with_a_request_body() {
    let router = Router::start().await;
    let (live, _) = echo_dyno("live").await;
    let body = Bytes::from(
        (0..100_000u32)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    for n in 0..12 {
        let app = format!("foo{n}");
        let id = router.app(&app, &[dead_dyno().await, live]);
        let host = format!("{app}.localhost");
        let echoed = if n % 2 == 0 {
            let r = send_body(
                router.addr,
                http::Request::post("/up").header("host", &host),
                body.clone(),
            )
            .await;
            assert_eq!((r.status.as_u16(), r.backend()), (200, "live".to_string()));
            r.body
        } else {
            let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
            let request = format!(
                "POST /up HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
            assert!(closed && answer.starts_with("HTTP/1.1 200"), "{answer}");
            answer
        };
        let expected = if n % 2 == 0 { 100_000 } else { 11 };
        assert!(
            echoed.contains(&format!("backend=live POST /up body={expected}\n")),
            "{echoed}"
        );
        let line = router.logs.wait_for(&id, "status=200").await;
        assert!(
            line.message.contains("method=POST") && line.message.contains("dyno=web.2"),
            "{}",
            line.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h12_request_timeout() {
    let router =
        Router::with_config(short(|c| c.first_byte_timeout = Duration::from_millis(300))).await;
    let silent = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let id = router.app("foo", &[silent]);
    let r = send(
        router.addr,
        get("foo.localhost", "/").header("x-request-id", RID),
    )
    .await;
    assert_eq!(r.status, 503);
    let line = router.logs.wait_for(&id, "code=H12").await;
    assert_matches(
        &line.message,
        &format!(
            "at=error code=H12 desc=\"Request timeout\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service={{n}}ms status=503 bytes=0 protocol=http"
        ),
    );
    let service: u64 = line
        .message
        .split("service=")
        .nth(1)
        .unwrap()
        .split("ms")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(service >= 300, "{service}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h13_closed_without_response() {
    let router = Router::start().await;
    let rude = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        drop(s);
    })
    .await;
    let id = router.app("foo", &[rude]);
    let r = send(router.addr, get("foo.localhost", "/")).await;
    assert_eq!(r.status, 503);
    let line = router.logs.wait_for(&id, "code=H13").await;
    assert!(
        line.message.starts_with(
            "at=error code=H13 desc=\"Connection closed without response\" method=GET"
        ),
        "{}",
        line.message
    );
    assert!(
        line.message.contains(" dyno=web.1 connect="),
        "{}",
        line.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_connections_to_dynos() {
    // Each worker thread keeps its own pool (their connections never cross threads), and
    // client connections are dealt to the workers in turn.
    let router = Router::with_config(short(|c| c.workers = 2)).await;
    let (a, accepted) = echo_dyno("a").await;
    router.app("foo", &[a]);
    for _ in 0..6 {
        assert_eq!(
            send(router.addr, get("foo.localhost", "/")).await.status,
            200
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "six requests over one kept-alive connection per worker"
    );
}

/// Issue 20: one HTTP/1 client and one idle pool per dyno. Requests with and without a
/// body (they took two different clients, each with its own pool) share one kept-alive
/// connection to the dyno.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_and_without_bodies_share_one_pool() {
    let router = Router::with_config(short(|c| c.workers = 1)).await;
    let (a, accepted) = echo_dyno("a").await;
    router.app("foo", &[a]);
    for i in 0..3 {
        let reply = send(router.addr, get("foo.localhost", "/")).await;
        assert_eq!(reply.status, 200);
        let body = Bytes::from(vec![b'x'; 20_000 + i]);
        let post = http::Request::post("/upload").header("host", "foo.localhost");
        let reply = send_body(router.addr, post, body).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .body
                .starts_with(&format!("backend=a POST /upload body={}", 20_000 + i)),
            "{}",
            reply.body
        );
        assert_eq!(
            reply.echoed("content-length"),
            Some(format!("{}", 20_000 + i))
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "six requests, GETs and POSTs, over one kept-alive connection"
    );
}

/// A dyno may answer before it has read the whole upload (a 413, say): the client gets
/// that answer, the connection is not reused for the next request (the rest of the body
/// was never sent on it), and the next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dyno_answering_before_the_upload_ends_is_relayed() {
    let router = Router::with_config(short(|c| c.workers = 1)).await;
    let dyno = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dyno.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = dyno.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                // Read the head only, then refuse, as a server with a body limit does.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let big = seen.starts_with(b"POST");
                let answer: &[u8] = if big {
                    // As servers that answer before reading a body do, it says it will not
                    // serve another request on this connection.
                    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                let _ = s.write_all(answer).await;
                if big {
                    // Keep reading (and dropping) what still comes, as servers do before
                    // closing, so the router is not reset mid-write.
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            });
        }
    });
    router.app("foo", &[addr]);
    let post = http::Request::post("/upload").header("host", "foo.localhost");
    let reply = send_body(router.addr, post, Bytes::from(vec![b'x'; 8 << 20])).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body, "too large");
    let reply = send(router.addr, get("foo.localhost", "/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the half-sent connection was not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_when_a_dyno_closes_pooled_connections() {
    let router = Router::start().await;
    // Answers one request per connection, then closes it (like a short keep-alive timeout).
    let once = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    })
    .await;
    router.app("foo", &[once]);
    for _ in 0..5 {
        let r = send(router.addr, get("foo.localhost", "/")).await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_without_buffering() {
    let router = Router::start().await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let streaming = raw_dyno(move |mut s| {
        let mut rx = rx.clone();
        async move {
            let _ = read_head(&mut s).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                .await;
            // The second chunk only goes out after the client has seen the first.
            let _ = rx.wait_for(|go| *go).await;
            let _ = s.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await;
        }
    })
    .await;
    let id = router.app("foo", &[streaming]);
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: foo.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("first chunk was held back")
            .unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    tx.send_replace(true);
    while !String::from_utf8_lossy(&seen).contains("0\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("second"));
    router.logs.wait_for(&id, "bytes=11 ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_piped_through() {
    let router = Router::start().await;
    let ws = raw_dyno(|mut s| async move {
        let head = read_head(&mut s).await.to_ascii_lowercase();
        assert!(head.contains("upgrade: websocket") && head.contains("connection: upgrade"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    })
    .await;
    let id = router.app("foo", &[ws]);
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"GET /chat HTTP/1.1\r\nHost: foo.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n").await.unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains("upgrade: websocket") && head.contains("sec-websocket-accept: x"),
        "{head}"
    );
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    router.logs.wait_for(&id, "status=101").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_router() {
    let router = Router::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    // Idle keep-alive connections must not keep the router from stopping: one that never
    // sent a request, and one between requests on each HTTP/1 path (the router's own, and
    // hyper's for HTTP/1.0), after two requests so the wait for shutdown has been re-armed.
    let never = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    let mut between = Vec::new();
    for request in [
        "GET / HTTP/1.1\r\nHost: foo.localhost\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: foo.localhost\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
        for _ in 0..2 {
            stream.write_all(request.as_bytes()).await.unwrap();
            let head = read_head(&mut stream).await;
            assert!(head.contains(" 200 "), "{head}");
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|n| n.trim().parse::<usize>().unwrap())
                })
                .expect("a length");
            stream.read_exact(&mut vec![0; length]).await.unwrap();
        }
        between.push(stream);
    }
    let addr = router.addr;
    tokio::time::timeout(Duration::from_secs(5), router.shutdown())
        .await
        .expect("serve returned")
        .unwrap();
    for mut stream in between {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut [0; 1]))
            .await
            .expect("closed, not left open");
        assert_eq!(read.unwrap(), 0, "the router closed the idle connection");
    }
    drop(never);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h18_response_broken_off_by_the_dyno() {
    let router = Router::start().await;
    let broken = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
            .await;
    })
    .await;
    let id = router.app("foo", &[broken]);
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: {RID}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 OK"),
        "the head had already gone out"
    );
    let line = router.logs.wait_for(&id, "code=H18").await;
    assert_matches(
        &line.message,
        &format!(
            "sock=backend at=error code=H18 desc=\"Server Request Interrupted\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service={{n}}ms status=200 bytes=10 protocol=http"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h27_client_gone_mid_response() {
    let router = Router::start().await;
    let endless = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"4\r\nmore\r\n").await.is_err() {
                return;
            }
        }
    })
    .await;
    let id = router.app("foo", &[endless]);
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: foo.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    // Gone for good: a close with nothing unread is a FIN, which could also be a client
    // that only closed its sending side, so the router notices when it next writes.
    drop(stream);
    let line = router.logs.wait_for(&id, "code=H27").await;
    assert!(
        line.message.starts_with(
            "sock=client at=warning code=H27 desc=\"Client Request Interrupted\" method=GET"
        ),
        "{}",
        line.message
    );
    assert!(
        line.message.contains(" status=499 bytes=") && line.message.ends_with(" protocol=http"),
        "{}",
        line.message
    );
    let app = router.table.get(&id).unwrap();
    assert_eq!(
        app.outstanding().map(|(_, n)| n).sum::<usize>(),
        0,
        "the abandoned request no longer counts"
    );
}

/// Linux drops SYNs to a listener whose accept queue is full, so connecting hangs.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h19_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let router =
        Router::with_config(short(|c| c.connect_timeout = Duration::from_millis(300))).await;
    let id = router.app("foo", &[addr]);
    let r = send(
        router.addr,
        get("foo.localhost", "/").header("x-request-id", RID),
    )
    .await;
    assert_eq!(r.status, 503);
    let line = router.logs.wait_for(&id, "code=H19").await;
    assert_matches(
        &line.message,
        &format!(
            "at=error code=H19 desc=\"Backend connection timeout\" method=GET path=\"/\" host=foo.localhost request_id={RID} fwd=\"127.0.0.1\" dyno=web.1 connect={{n}}ms service=0ms status=503 bytes=0 protocol=http"
        ),
    );
    drop((full, fillers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_dynos_get_fewer_requests() {
    let router = Router::start().await;
    // web.1 never answers, so every request sent to it stays outstanding.
    let stuck = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let (fast, _) = echo_dyno("fast").await;
    let id = router.app("foo", &[stuck, fast]);
    let mut pending = Vec::new();
    for _ in 0..20 {
        let addr = router.addr;
        pending.push(tokio::spawn(async move {
            send(addr, get("foo.localhost", "/")).await
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let app = router.table.get(&id).unwrap();
    let stuck_count = app
        .outstanding()
        .find(|(b, _)| b.dyno == "web.1")
        .unwrap()
        .1;
    // With two dynos both are compared every time, so once web.1 holds a request it
    // loses every tie; random routing would have sent it about 10.
    assert!(stuck_count <= 1, "web.1 has {stuck_count} outstanding");
    for p in pending {
        p.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_http01_challenges_are_answered_by_the_router() {
    let router = Router::start().await;
    let (a, hits) = echo_dyno("a").await;
    router.app("foo", &[a]);
    router
        .table
        .set_acme_challenge("tok-123", Some("tok-123.thumbprint".to_string()));

    // Any host, even one that routes nowhere: the domain may not point at an app yet.
    for host in ["foo.localhost", "www.example.org"] {
        let r = send(
            router.addr,
            get(host, "/.well-known/acme-challenge/tok-123"),
        )
        .await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.body, "tok-123.thumbprint");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the app never saw the challenge"
    );

    // Unknown tokens, and withdrawn ones, belong to the app (it may run its own ACME client).
    router.table.set_acme_challenge("tok-123", None);
    let r = send(
        router.addr,
        get("foo.localhost", "/.well-known/acme-challenge/tok-123"),
    )
    .await;
    assert_eq!(r.backend(), "a");
    let r = send(
        router.addr,
        get("www.example.org", "/.well-known/acme-challenge/other"),
    )
    .await;
    assert_eq!(r.status, 404);
}

/// Sequential requests on one kept-alive client connection to an app that writes its
/// responses in pieces with Nagle on: each must take about what the app takes, not the 40 ms
/// of Linux's delayed ACK (see the router's `ack` module), with request bodies and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_writing_in_pieces_are_not_delayed() {
    let router = Router::start().await;
    let dyno = nagle_dyno().await;
    router.app("nagle", &[dyno]);
    let stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    // The client's own writes go out at once, so only the dyno side is measured.
    stream.set_nodelay(true).unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (method, body) in [("GET", ""), ("POST", "a form, say")] {
        let mut samples = Vec::new();
        for _ in 0..25 {
            let started = std::time::Instant::now();
            let req = http::Request::builder()
                .method(method)
                .uri("/")
                .header("host", "nagle.localhost");
            tx.ready().await.unwrap();
            let resp = tx
                .send_request(
                    req.body(http_body_util::Full::new(Bytes::from(body)))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let got = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(got, format!("n={}\n", body.len()).as_bytes());
            samples.push(started.elapsed());
        }
        let median = median(samples);
        assert!(
            median < Duration::from_millis(5),
            "{method}: median {median:?} per request (Linux's delayed ACK is 40 ms)"
        );
    }
}
