//! The HTTP cache and gzip, end to end: a real router in front of tiny dynos that count
//! the requests they get and answer with whatever headers a test asks for.

mod support;

use bytes::Bytes;
use flate2::read::GzDecoder;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kiln_model::route::DynoRoutes;
use kiln_router::{CacheConfig, RouterConfig};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Router, get};
use tokio::net::{TcpListener, TcpStream};

/// What a test dyno answers: status, headers and body, decided per request.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    delay: Duration,
}

fn answer(headers: &[(&'static str, &str)], body: &str) -> Answer {
    Answer {
        status: 200,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: Bytes::from(body.to_string()),
        delay: Duration::ZERO,
    }
}

/// A dyno that answers with `f(request)` and counts requests. Each body ends with
/// ` #<n>`, the request's number, so a test can tell a stored answer from a fresh one.
async fn dyno<F>(f: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(&http::request::Parts) -> Answer + Send + Sync + 'static,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let (addr, _) = kiln_testkit::dyno::http_dyno(move |req: Request<Incoming>| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let (parts, _) = req.into_parts();
        let a = f(&parts);
        async move {
            tokio::time::sleep(a.delay).await;
            let mut body = a.body.to_vec();
            if !body.is_empty() {
                body.extend_from_slice(format!(" #{n}").as_bytes());
            }
            let mut resp = http::Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = StatusCode::from_u16(a.status).unwrap();
            for (k, v) in a.headers {
                resp.headers_mut().append(k, v.parse().unwrap());
            }
            resp
        }
    })
    .await;
    (addr, hits)
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
    fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
}

async fn fetch(addr: SocketAddr, req: http::request::Builder) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn fetch_path(addr: SocketAddr, path: &str) -> Got {
    fetch(addr, get("foo.localhost", path)).await
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    GzDecoder::new(bytes).read_to_string(&mut out).unwrap();
    out
}

const PUBLIC: (&str, &str) = ("cache-control", "public, max-age=60");

/// An uncacheable answer gets the router's `Via` and `X-Cache` once each, written with the
/// fields that pass through untouched; a dyno's own `Via` is joined and its `X-Cache`
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_carries_the_routers_fields_once() {
    let router = Router::start().await;
    let (d, _) = dyno(|req| {
        let mut fields = vec![
            ("x-app", "a".to_string()),
            ("content-type", "text/plain".to_string()),
        ];
        if req.uri.path() == "/own" {
            fields.push(("via", "1.0 app".to_string()));
            fields.push(("x-cache", "app".to_string()));
        }
        Answer {
            status: 200,
            headers: fields,
            body: Bytes::from("hi ".repeat(2000)),
            delay: Duration::ZERO,
        }
    })
    .await;
    router.app("foo", &[d]);
    let once = |r: &Got, name: &str| {
        let all: Vec<_> = r.headers.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {:?}", r.headers);
        all[0].to_str().unwrap().to_string()
    };
    let plain = fetch_path(router.addr, "/plain").await;
    assert_eq!(plain.header("x-app"), "a");
    assert_eq!(once(&plain, "via"), "1.1 kiln");
    assert_eq!(once(&plain, "x-cache"), "MISS");
    let own = fetch_path(router.addr, "/own").await;
    assert_eq!(once(&own, "via"), "1.0 app, 1.1 kiln");
    assert_eq!(once(&own, "x-cache"), "MISS");
    // Compressed on the way out, the same fields come from the map.
    let gz = fetch(
        router.addr,
        get("foo.localhost", "/plain").header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(once(&gz, "via"), "1.1 kiln");
    assert_eq!(once(&gz, "x-cache"), "MISS");
    assert!(gunzip(&gz.body).starts_with(&"hi ".repeat(2000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_reaches_the_app_once() {
    let router = Router::start().await;
    let (d, hits) = dyno(|_| answer(&[PUBLIC, ("content-type", "text/plain")], "hello")).await;
    let id = router.app("foo", &[d]);

    let first = fetch(
        router.addr,
        get("foo.localhost", "/page?q=1").header("x-request-id", "abcdefghij0123456789"),
    )
    .await;
    assert_eq!(
        (first.status, first.x_cache(), first.text().as_str()),
        (StatusCode::OK, "MISS", "hello #1")
    );
    let second = fetch(
        router.addr,
        get("FOO.localhost", "/page?q=1").header("x-request-id", "bcdefghij0123456789a"),
    )
    .await;
    assert_eq!(
        (second.status, second.x_cache(), second.text().as_str()),
        (StatusCode::OK, "HIT", "hello #1")
    );
    assert!(
        second.header("age").parse::<u64>().unwrap() <= 1,
        "{}",
        second.header("age")
    );
    assert_eq!(second.header("content-length"), "8");
    assert_eq!(second.header("via"), "1.1 kiln");
    assert_eq!(second.header("cache-control"), "public, max-age=60");
    // A hit's head is written from the stored lines and its own `Age`: each field once, and
    // the same fields as the miss's (with `Age`, and `X-Cache` changed).
    for name in [
        "age",
        "content-length",
        "date",
        "x-cache",
        "via",
        "content-type",
    ] {
        assert_eq!(
            second.headers.get_all(name).iter().count(),
            1,
            "{name}: {:?}",
            second.headers
        );
    }
    let names = |h: &HeaderMap| -> Vec<String> {
        let mut n: Vec<String> = h
            .keys()
            .map(|k| k.as_str().to_string())
            .filter(|k| k != "age")
            .collect();
        n.sort_unstable();
        n
    };
    assert_eq!(names(&first.headers), names(&second.headers));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the app saw one request");

    // Another URL, and HEAD answered from the stored GET.
    assert_eq!(fetch_path(router.addr, "/page?q=2").await.x_cache(), "MISS");
    let head = fetch(
        router.addr,
        Request::head("/page?q=1").header("host", "foo.localhost"),
    )
    .await;
    assert_eq!(
        (
            head.x_cache(),
            head.header("content-length"),
            head.body.len()
        ),
        ("HIT", "8", 0)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let line = router
        .logs
        .wait_for(&id, "request_id=bcdefghij0123456789a")
        .await;
    assert!(
        line.message.starts_with("at=info method=GET path=\"/page?q=1\" host=FOO.localhost request_id=bcdefghij0123456789a fwd=\"127.0.0.1\" dyno=cache connect=0ms service="),
        "{}",
        line.message
    );
    assert!(
        line.message.ends_with(" status=200 bytes=8 protocol=http"),
        "{}",
        line.message
    );
    let miss = router
        .logs
        .wait_for(&id, "request_id=abcdefghij0123456789")
        .await;
    assert!(miss.message.contains(" dyno=web.1 "), "{}", miss.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_and_expiry() {
    let router = Router::start().await;
    let (d, hits) = dyno(|p| match p.uri.path() {
        "/aged" => answer(&[("cache-control", "max-age=60"), ("age", "10")], "aged"),
        "/short" => answer(&[("cache-control", "max-age=1")], "short"),
        _ => answer(&[("cache-control", "s-maxage=1, max-age=600")], "shared"),
    })
    .await;
    router.app("foo", &[d]);

    fetch_path(router.addr, "/aged").await;
    let r = fetch_path(router.addr, "/aged").await;
    assert_eq!(
        (r.x_cache(), r.header("age")),
        ("HIT", "10"),
        "the origin's Age counts"
    );

    for path in ["/short", "/shared"] {
        assert_eq!(fetch_path(router.addr, path).await.x_cache(), "MISS");
        assert_eq!(fetch_path(router.addr, path).await.x_cache(), "HIT");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = fetch_path(router.addr, "/short").await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("MISS", "short #4"),
        "stale after max-age"
    );
    let r = fetch_path(router.addr, "/shared").await;
    assert_eq!(
        r.x_cache(),
        "MISS",
        "s-maxage wins over max-age for a shared cache"
    );
    let r = fetch_path(router.addr, "/aged").await;
    let age: u64 = r.header("age").parse().unwrap();
    assert!(
        (11..=13).contains(&age),
        "stored age plus time in the cache: {age}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_variants_apart() {
    let router = Router::start().await;
    let (d, hits) = dyno(|p| {
        let lang = p
            .headers
            .get("x-lang")
            .map_or("none", |v| v.to_str().unwrap())
            .to_string();
        answer(&[PUBLIC, ("vary", "X-Lang")], &lang)
    })
    .await;
    router.app("foo", &[d]);
    let with = |lang: &'static str| get("foo.localhost", "/").header("x-lang", lang);

    assert_eq!(fetch(router.addr, with("en")).await.text(), "en #1");
    assert_eq!(fetch(router.addr, with("fr")).await.text(), "fr #2");
    assert_eq!(fetch_path(router.addr, "/").await.text(), "none #3");
    let r = fetch(router.addr, with("en")).await;
    assert_eq!((r.x_cache(), r.text().as_str()), ("HIT", "en #1"));
    let r = fetch(router.addr, with("fr")).await;
    assert_eq!((r.x_cache(), r.text().as_str()), ("HIT", "fr #2"));
    let r = fetch_path(router.addr, "/").await;
    assert_eq!((r.x_cache(), r.text().as_str()), ("HIT", "none #3"));
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

/// Heroku's fields are the router's, not the client's: a response that varies on them is
/// keyed on what the dyno saw. The dyno client writes them beside the request's map; the
/// cache must see the same values for HTTP/1.1 and HTTP/1.0 clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_on_heroku_fields_keys_on_what_the_dyno_saw() {
    let router = Router::start().await;
    let (d, hits) = dyno(|p| {
        let seen = |name: &str| {
            p.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join("|")
        };
        let body = format!(
            "{};{};{}",
            seen("via"),
            seen("x-forwarded-for"),
            seen("x-forwarded-proto")
        );
        answer(
            &[PUBLIC, ("vary", "Via, X-Forwarded-For, X-Forwarded-Proto")],
            &body,
        )
    })
    .await;
    router.app("foo", &[d]);
    let plain = || get("foo.localhost", "/");

    let r = fetch(router.addr, plain()).await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("MISS", "1.1 kiln;127.0.0.1;http #1")
    );
    let r = fetch(router.addr, plain().header("via", "1.0 corp")).await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("MISS", "1.0 corp, 1.1 kiln;127.0.0.1;http #2")
    );
    // What the client says of the protocol is replaced, so it is the same variant.
    let r = fetch(router.addr, plain().header("x-forwarded-proto", "https")).await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("HIT", "1.1 kiln;127.0.0.1;http #1")
    );
    let r = fetch(router.addr, plain().header("via", "1.0 corp")).await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("HIT", "1.0 corp, 1.1 kiln;127.0.0.1;http #2")
    );
    let r = fetch(router.addr, plain().header("x-forwarded-for", "9.9.9.9")).await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("MISS", "1.1 kiln;9.9.9.9, 127.0.0.1;http #3")
    );
    // An HTTP/1.0 request finds the same stored variants.
    let r = fetch(
        router.addr,
        plain()
            .version(http::Version::HTTP_10)
            .header("x-forwarded-for", "9.9.9.9"),
    )
    .await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("HIT", "1.1 kiln;9.9.9.9, 127.0.0.1;http #3")
    );
    let r = fetch(
        router.addr,
        plain()
            .version(http::Version::HTTP_10)
            .header("via", "2.0 other"),
    )
    .await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("MISS", "2.0 other, 1.1 kiln;127.0.0.1;http #4")
    );
    let r = fetch(router.addr, plain().header("via", "2.0 other")).await;
    assert_eq!(
        (r.x_cache(), r.text().as_str()),
        ("HIT", "2.0 other, 1.1 kiln;127.0.0.1;http #4")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_responses_always_reach_the_app() {
    let router = Router::start().await;
    let (d, hits) = dyno(|p| match p.uri.path() {
        "/private" => answer(&[("cache-control", "private, max-age=60")], "x"),
        "/no-store" => answer(&[("cache-control", "no-store, max-age=60")], "x"),
        "/no-cache" => answer(&[("cache-control", "no-cache, max-age=60")], "x"),
        "/cookie" => answer(&[PUBLIC, ("set-cookie", "session=secret")], "x"),
        "/vary-star" => answer(&[PUBLIC, ("vary", "*")], "x"),
        "/no-lifetime" => answer(&[("cache-control", "public")], "x"),
        "/plain" => answer(&[], "x"),
        "/max-age-only" => answer(&[("cache-control", "max-age=60")], "x"),
        "/public" => answer(&[PUBLIC], "x"),
        _ => {
            let mut a = answer(&[PUBLIC], "x");
            a.status = 500;
            a
        }
    })
    .await;
    router.app("foo", &[d]);

    for path in [
        "/private",
        "/no-store",
        "/no-cache",
        "/cookie",
        "/vary-star",
        "/no-lifetime",
        "/plain",
        "/error",
    ] {
        let before = hits.load(Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!(
                fetch_path(router.addr, path).await.x_cache(),
                "MISS",
                "{path}"
            );
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            before + 2,
            "{path} must not be stored"
        );
    }
    assert_eq!(
        fetch_path(router.addr, "/cookie")
            .await
            .header("set-cookie"),
        "session=secret"
    );

    // Authorization: stored only with explicit permission, and a response stored without
    // it never answers a request that has credentials.
    let auth =
        |path: &'static str| get("foo.localhost", path).header("authorization", "Bearer alice");
    let before = hits.load(Ordering::SeqCst);
    fetch(router.addr, auth("/max-age-only")).await;
    fetch(router.addr, auth("/max-age-only")).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before + 2,
        "max-age alone does not allow storing an authorized response"
    );
    fetch_path(router.addr, "/max-age-only").await;
    assert_eq!(
        fetch_path(router.addr, "/max-age-only").await.x_cache(),
        "HIT",
        "stored for anonymous requests"
    );
    assert_eq!(
        fetch(router.addr, auth("/max-age-only")).await.x_cache(),
        "MISS",
        "but not used for authorized ones"
    );
    fetch(router.addr, auth("/public")).await;
    assert_eq!(
        fetch(router.addr, auth("/public")).await.x_cache(),
        "HIT",
        "public allows it"
    );

    // Only GET (and HEAD) are looked up.
    let before = hits.load(Ordering::SeqCst);
    fetch(
        router.addr,
        Request::post("/public").header("host", "foo.localhost"),
    )
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_are_coalesced() {
    let router = Router::start().await;
    let (d, hits) = dyno(|p| {
        let (mut a, delay) = match p.uri.path() {
            "/slow" => (answer(&[PUBLIC], "slow"), 300),
            _ => (answer(&[], "dynamic"), 600),
        };
        a.delay = Duration::from_millis(delay);
        a
    })
    .await;
    router.app("foo", &[d]);

    let all: Vec<_> = (0..20)
        .map(|_| tokio::spawn(fetch_path(router.addr, "/slow")))
        .collect();
    let mut bodies = Vec::new();
    let mut misses = 0;
    for t in all {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        misses += usize::from(r.x_cache() == "MISS");
        bodies.push(r.text());
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "20 concurrent requests, one fetch"
    );
    assert_eq!(misses, 1);
    assert!(bodies.iter().all(|b| b == "slow #1"), "{bodies:?}");

    // An uncacheable answer releases the waiters, and later requests do not queue.
    let started = Instant::now();
    let all: Vec<_> = (0..5)
        .map(|_| tokio::spawn(fetch_path(router.addr, "/dynamic")))
        .collect();
    for t in all {
        assert!(t.await.unwrap().text().starts_with("dynamic #"));
    }
    let first_round = started.elapsed();
    assert_eq!(hits.load(Ordering::SeqCst), 6);
    let started = Instant::now();
    let all: Vec<_> = (0..5)
        .map(|_| tokio::spawn(fetch_path(router.addr, "/dynamic")))
        .collect();
    for t in all {
        t.await.unwrap();
    }
    // Queued behind one fetch they would take two dyno delays (1.2 s); side by side, one.
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "hit-for-miss: no queueing ({:?}, first round {first_round:?})",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bound_evicts_least_recently_used() {
    let config = RouterConfig {
        cache: CacheConfig {
            max_bytes: 64 * 1024,
            max_object_bytes: 16 * 1024,
        },
        ..RouterConfig::default()
    };
    let router = Router::with_config(config).await;
    let big = "x".repeat(10_000);
    let (d, hits) =
        dyno(move |p| answer(&[PUBLIC], if p.uri.path() == "/huge" { "" } else { &big })).await;
    let (huge, huge_hits) = dyno(|_| answer(&[PUBLIC], &"y".repeat(20_000))).await;
    router.app("foo", &[d]);
    router.app("bar", &[huge]);

    for i in 0..20 {
        fetch_path(router.addr, &format!("/{i}")).await;
        // Keep /0 warm: it is used more recently than everything evicted.
        fetch_path(router.addr, "/0").await;
    }
    let usage = router.table.cache_usage();
    assert!(usage.bytes <= 64 * 1024, "{usage:?}");
    assert!((4..=6).contains(&usage.objects), "{usage:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 20);
    assert_eq!(fetch_path(router.addr, "/19").await.x_cache(), "HIT");
    assert_eq!(
        fetch_path(router.addr, "/0").await.x_cache(),
        "HIT",
        "recently used survives"
    );
    assert_eq!(
        fetch_path(router.addr, "/1").await.x_cache(),
        "MISS",
        "least recently used went first"
    );

    // Bigger than the per-object cap: passed through, never stored.
    for _ in 0..2 {
        let r = fetch(router.addr, get("bar.localhost", "/")).await;
        assert_eq!((r.x_cache(), r.body.len()), ("MISS", 20_003));
    }
    assert_eq!(huge_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_release_purges_the_app() {
    let router = Router::start().await;
    let (d, hits) = dyno(|_| answer(&[PUBLIC], "v")).await;
    let (other, _) = dyno(|_| answer(&[PUBLIC], "other")).await;
    let id = router.app("foo", &[d]);
    router.app("bar", &[other]);
    fetch_path(router.addr, "/").await;
    fetch(router.addr, get("bar.localhost", "/")).await;
    assert_eq!(fetch_path(router.addr, "/").await.x_cache(), "HIT");

    router.table.release_changed(&id, 2);
    let r = fetch_path(router.addr, "/").await;
    assert_eq!((r.x_cache(), r.text().as_str()), ("MISS", "v #2"));
    assert_eq!(fetch_path(router.addr, "/").await.x_cache(), "HIT");
    assert_eq!(
        fetch(router.addr, get("bar.localhost", "/"))
            .await
            .x_cache(),
        "HIT",
        "other apps keep theirs"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_on_hits() {
    let router = Router::start().await;
    let (d, _) = dyno(|_| answer(&[PUBLIC, ("etag", "\"v1\"")], "body")).await;
    router.app("foo", &[d]);
    fetch_path(router.addr, "/").await;
    let r = fetch(
        router.addr,
        get("foo.localhost", "/").header("if-none-match", "\"v1\""),
    )
    .await;
    assert_eq!(
        (r.status, r.x_cache(), r.body.len()),
        (StatusCode::NOT_MODIFIED, "HIT", 0)
    );
    let r = fetch(
        router.addr,
        get("foo.localhost", "/").header("if-none-match", "\"v0\""),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "body #1"));
}

const PAGE: &str =
    "<html><body>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</body></html>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_for_compressible_responses() {
    let router = Router::start().await;
    let page = PAGE.repeat(40);
    let (d, _) = dyno(move |p| match p.uri.path() {
        "/html" => answer(
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("etag", "\"e\""),
            ],
            &page,
        ),
        "/json" => answer(
            &[("content-type", "application/json")],
            &format!("{{\"a\":\"{}\"}}", "b".repeat(3000)),
        ),
        "/png" => answer(&[("content-type", "image/png")], &page),
        "/small" => answer(&[("content-type", "text/html")], "<p>hi</p>"),
        "/done" => answer(
            &[("content-type", "text/html"), ("content-encoding", "br")],
            &page,
        ),
        "/no-transform" => answer(
            &[
                ("content-type", "text/html"),
                ("cache-control", "no-transform"),
            ],
            &page,
        ),
        _ => answer(&[("content-type", "text/css"), ("vary", "Cookie")], &page),
    })
    .await;
    router.app("foo", &[d]);
    let gz = |path: &'static str| {
        get("foo.localhost", path).header("accept-encoding", "gzip, deflate, br")
    };

    let r = fetch(router.addr, gz("/html")).await;
    assert_eq!(
        (
            r.header("content-encoding"),
            r.header("vary"),
            r.header("etag")
        ),
        ("gzip", "Accept-Encoding", "W/\"e\"")
    );
    assert!(
        r.body.len() < PAGE.len() * 40 / 4,
        "compressed to {}",
        r.body.len()
    );
    assert_eq!(gunzip(&r.body), format!("{} #1", PAGE.repeat(40)));
    assert!(r.headers.get("content-length").is_none());

    let r = fetch(router.addr, gz("/json")).await;
    assert_eq!(r.header("content-encoding"), "gzip");
    assert!(gunzip(&r.body).starts_with("{\"a\":\"bbb"));

    let r = fetch(router.addr, gz("/css")).await;
    assert_eq!(r.header("content-encoding"), "gzip");
    assert_eq!(
        r.headers.get_all("vary").iter().collect::<Vec<_>>(),
        ["Cookie", "Accept-Encoding"]
    );

    let r = fetch_path(router.addr, "/html").await;
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        ("", "Accept-Encoding"),
        "not accepted: identity, still Vary"
    );
    assert!(r.text().starts_with(PAGE));
    let r = fetch(
        router.addr,
        get("foo.localhost", "/html").header("accept-encoding", "gzip;q=0, identity"),
    )
    .await;
    assert_eq!(r.header("content-encoding"), "");

    for path in ["/png", "/small", "/no-transform"] {
        let r = fetch(router.addr, gz(path)).await;
        assert_eq!(
            (r.header("content-encoding"), r.header("vary")),
            ("", ""),
            "{path}"
        );
    }
    let r = fetch(router.addr, gz("/done")).await;
    assert_eq!(
        r.header("content-encoding"),
        "br",
        "the app's own encoding is left alone"
    );
    assert_eq!(r.body.len(), PAGE.len() * 40 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_pages_are_gzipped_for_get_and_head_alike() {
    // The router's own pages have no Content-Length and are compressed whatever their size;
    // a GET and a HEAD must get the same headers. A dyno that refuses connections gets the
    // page from the dispatch, which the gzip layer wraps.
    let router = Router::start().await;
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    router.app("foo", &[gone]);
    let gz = || get("foo.localhost", "/").header("accept-encoding", "gzip");
    let r = fetch(router.addr, gz()).await;
    assert_eq!(
        (r.status, r.header("content-encoding"), r.header("vary")),
        (StatusCode::SERVICE_UNAVAILABLE, "gzip", "Accept-Encoding")
    );
    assert!(gunzip(&r.body).contains("Application error"));
    let r = fetch(router.addr, gz().method("HEAD")).await;
    assert_eq!(
        (r.status, r.header("content-encoding"), r.header("vary")),
        (StatusCode::SERVICE_UNAVAILABLE, "gzip", "Accept-Encoding")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_objects_are_served_gzipped_or_plain() {
    let router = Router::start().await;
    let page = PAGE.repeat(40);
    let (d, hits) = dyno(move |_| answer(&[PUBLIC, ("content-type", "text/html")], &page)).await;
    router.app("foo", &[d]);
    let gz = || get("foo.localhost", "/").header("accept-encoding", "gzip");

    let miss = fetch(router.addr, gz()).await;
    assert_eq!(
        (miss.x_cache(), miss.header("content-encoding")),
        ("MISS", "gzip")
    );
    let hit = fetch(router.addr, gz()).await;
    assert_eq!(
        (
            hit.x_cache(),
            hit.header("content-encoding"),
            hit.header("vary")
        ),
        ("HIT", "gzip", "Accept-Encoding")
    );
    assert_eq!(hit.header("content-length"), hit.body.len().to_string());
    assert_eq!(gunzip(&hit.body), gunzip(&miss.body));
    let plain = fetch_path(router.addr, "/").await;
    assert_eq!(
        (
            plain.x_cache(),
            plain.header("content-encoding"),
            plain.header("vary")
        ),
        ("HIT", "", "Accept-Encoding")
    );
    assert_eq!(plain.text(), gunzip(&miss.body));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_streams_without_buffering_the_body() {
    let router = Router::start().await;
    // A dyno that sends the first half of a page, waits, then sends the rest.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = service_fn(|_req: Request<Incoming>| async {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from(PAGE.repeat(20))))).await;
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from(PAGE.repeat(20))))).await;
            });
            let body = ChannelBody(rx);
            let resp = http::Response::builder()
                .header("content-type", "text/html")
                .body(body)
                .unwrap();
            Ok::<_, Infallible>(resp)
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    router.app("foo", &[addr]);

    let stream = TcpStream::connect(router.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let req = get("foo.localhost", "/")
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "first half arrives before the dyno finishes ({:?})",
        started.elapsed()
    );
    let mut all = first.to_vec();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            all.extend_from_slice(&data);
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(gunzip(&all), PAGE.repeat(40));
}

/// A body fed through a channel, frame by frame.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_the_dynos_head_reaches_the_client_on_every_path() {
    // The engine keeps only the fields the pipeline reads in its header map and passes the
    // rest through as bytes; plain, gzipped, stored and hop-by-hop answers must all still
    // carry exactly the dyno's fields.
    let router = Router::start().await;
    let page = PAGE.repeat(40);
    let (d, _) = dyno(move |req| {
        let mut fields = vec![
            ("server", "testdyno"),
            ("set-cookie", "a=1"),
            ("content-type", "text/html"),
            ("set-cookie", "b=2; Path=/"),
            ("etag", "\"abc\""),
            ("last-modified", "Sun, 22 Nov 2026 04:00:00 GMT"),
            ("x-custom", "caf\u{e9}"),
        ];
        match req.uri.path() {
            "/stored" => fields.retain(|f| f.0 != "set-cookie"),
            "/hop" => fields.extend([("connection", "x-secret"), ("x-secret", "1")]),
            _ => {}
        }
        fields.push(if req.uri.path() == "/stored" {
            PUBLIC
        } else {
            ("x-plain", "1")
        });
        answer(&fields, &page)
    })
    .await;
    router.app("foo", &[d]);
    let check = |r: &Got, what: &str| {
        assert_eq!(r.status, StatusCode::OK, "{what}");
        assert_eq!(r.header("server"), "testdyno", "{what}");
        assert_eq!(
            r.header("last-modified"),
            "Sun, 22 Nov 2026 04:00:00 GMT",
            "{what}"
        );
        assert_eq!(
            r.headers["x-custom"].as_bytes(),
            "caf\u{e9}".as_bytes(),
            "{what}"
        );
        assert_eq!(
            r.headers.get_all("date").iter().count(),
            1,
            "{what}: the dyno's Date, and no second one"
        );
        assert_eq!(r.header("via"), "1.1 kiln", "{what}");
    };

    let plain = fetch_path(router.addr, "/").await;
    check(&plain, "plain");
    assert_eq!(
        plain
            .headers
            .get_all("set-cookie")
            .iter()
            .collect::<Vec<_>>(),
        ["a=1", "b=2; Path=/"],
        "both cookies, in order"
    );
    assert_eq!((plain.header("etag"), plain.x_cache()), ("\"abc\"", "MISS"));

    let gz = fetch(
        router.addr,
        get("foo.localhost", "/").header("accept-encoding", "gzip"),
    )
    .await;
    check(&gz, "gzipped");
    assert_eq!(
        (gz.header("content-encoding"), gz.header("etag")),
        ("gzip", "W/\"abc\""),
        "the ETag is weakened with the rest of the head kept"
    );
    assert_eq!(gz.headers.get_all("set-cookie").iter().count(), 2);

    let miss = fetch_path(router.addr, "/stored").await;
    check(&miss, "stored miss");
    let hit = fetch_path(router.addr, "/stored").await;
    check(&hit, "stored hit");
    assert_eq!((hit.x_cache(), hit.header("etag")), ("HIT", "\"abc\""));

    let hop = fetch_path(router.addr, "/hop").await;
    check(&hop, "hop-by-hop");
    assert!(
        hop.headers.get("x-secret").is_none() && hop.headers.get("connection").is_none(),
        "a field the dyno's Connection names is dropped: {:?}",
        hop.headers
    );
    assert_eq!(hop.headers.get_all("set-cookie").iter().count(), 2);
}
