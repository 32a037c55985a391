//! The HTTPS listener, end to end: a real router on 127.0.0.1:0 behind TLS, real tiny
//! HTTP/1.1 dynos, and a real TLS client (rustls) that trusts only the certificates these
//! tests generate, so a handshake succeeding proves which certificate was served.

mod support;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kiln_router::{RouteTable, RouterConfig};
use kiln_testkit::TempDir;
use kiln_tls::{Certificate, LocalCa, SniResolver};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct TlsRouter {
    addr: SocketAddr,
    table: Arc<RouteTable>,
    logs: Arc<TestLogs>,
    resolver: Arc<SniResolver>,
    ca: Arc<LocalCa>,
    // Holds the CA's files until the router is dropped.
    _dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TlsRouter {
    async fn start() -> TlsRouter {
        TlsRouter::with_config(RouterConfig::default()).await
    }

    async fn with_config(config: RouterConfig) -> TlsRouter {
        let dir = TempDir::new("router-tls");
        let ca = Arc::new(LocalCa::load_or_create(&dir, "localhost").unwrap());
        let table = RouteTable::new(&config.domain);
        let resolver = SniResolver::new(ca.clone(), table.clone());
        let tls = kiln_tls::server_config(resolver.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let logs = Arc::new(TestLogs::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kiln_router::serve_tls(
            listener,
            table.clone(),
            logs.clone(),
            config,
            tls,
            async move {
                let _ = stopped.await;
            },
        ));
        TlsRouter {
            addr,
            table,
            logs,
            resolver,
            ca,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn app(&self, name: &str, dynos: &[SocketAddr]) -> String {
        use kiln_model::route::{AppRoutes, DynoRoutes, WebStatus};
        let id = format!("id-{name}");
        self.table.upsert_app(&id, name, false, None, None);
        self.table.set_backends(&id, WebStatus::Up, backends(dynos));
        id
    }

    /// The local CA: what a client trusts for the platform's own hostnames.
    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.ca_der().clone()
    }

    /// The certificate served when nothing more specific fits.
    fn default_der(&self) -> CertificateDer<'static> {
        self.ca.default_certificate().certified_key().cert[0].clone()
    }

    async fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        let result = self.task.take().unwrap().await.unwrap();
        result
    }
}

/// A self-signed certificate for `names`, as an upload would bring it.
fn upload(names: &[&str]) -> Certificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    Certificate::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()
}

/// A TLS client trusting exactly `roots`, offering `alpn`.
fn connector(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(kiln_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    sni: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    connector(roots, alpn).connect(name, tcp).await
}

fn served_cert(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One request over HTTP/1.1 on a TLS stream.
async fn h1_request(tls: TlsStream<TcpStream>, req: Request<Full<Bytes>>) -> Reply {
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_default_certificate_adds_https_headers_and_logs() {
    let router = TlsRouter::start().await;
    let (a, _) = echo_dyno("a").await;
    let app = router.app("foo", &[a]);

    let tls = connect(
        router.addr,
        "foo.localhost",
        &[router.ca_der()],
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    // Trusting the local CA is enough: foo.localhost got a certificate naming it.
    assert_ne!(served_cert(&tls), router.default_der());
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = h1_request(
        tls,
        Request::get("/path?q=1")
            .header("host", "foo.localhost")
            .header("x-forwarded-proto", "http")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.starts_with("backend=a GET /path?q=1 body=0"),
        "{}",
        r.body
    );
    assert_eq!(
        r.echoed("x-forwarded-proto").as_deref(),
        Some("https"),
        "the client's claim is replaced"
    );
    assert_eq!(
        r.echoed("x-forwarded-port"),
        Some(router.addr.port().to_string())
    );
    assert_eq!(r.echoed("host").as_deref(), Some("foo.localhost"));
    let line = router.logs.wait_for(&app, "path=\"/path?q=1\"").await;
    assert!(line.message.contains(" protocol=https"), "{}", line.message);

    router.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_owning_apps_uploaded_certificate() {
    let router = TlsRouter::start().await;
    let (a, _) = echo_dyno("a").await;
    let (b, _) = echo_dyno("b").await;
    let foo = router.app("foo", &[a]);
    router.app("bar", &[b]);
    // foo uploads a certificate naming its own host, and (mischievously) bar's.
    let uploaded = upload(&["foo.localhost", "bar.localhost"]);
    let uploaded_der = uploaded.certified_key().cert[0].clone();
    router.resolver.set_app_certificates(&foo, vec![uploaded]);

    let both = [router.ca_der(), uploaded_der.clone()];
    let tls = connect(router.addr, "foo.localhost", &both, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(
        served_cert(&tls),
        uploaded_der,
        "foo's own certificate for foo's host"
    );
    let r = h1_request(
        tls,
        Request::get("/")
            .header("host", "foo.localhost")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.backend(), "a");

    let tls = connect(router.addr, "bar.localhost", &both, &[b"http/1.1"])
        .await
        .unwrap();
    assert_ne!(
        served_cert(&tls),
        uploaded_der,
        "foo's certificate is never shown for bar"
    );

    // A client that trusts only the uploaded certificate cannot be fooled into bar.
    let err = connect(
        router.addr,
        "bar.localhost",
        &[uploaded_der.clone()],
        &[b"http/1.1"],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // The domain itself gets the default certificate.
    let tls = connect(router.addr, "localhost", &both, &[]).await.unwrap();
    assert_eq!(served_cert(&tls), router.default_der());

    router.resolver.set_app_certificates(&foo, vec![]);
    let tls = connect(router.addr, "foo.localhost", &[router.ca_der()], &[])
        .await
        .unwrap();
    assert_ne!(
        served_cert(&tls),
        uploaded_der,
        "withdrawn certificates are no longer served"
    );
    router.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_from_the_client_reaches_an_http1_dyno() {
    let router = TlsRouter::start().await;
    let (a, _) = echo_dyno("a").await;
    let app = router.app("foo", &[a]);

    let tls = connect(
        router.addr,
        "foo.localhost",
        &[router.ca_der()],
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 is preferred"
    );
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    // Several streams at once on the one connection.
    let mut requests = Vec::new();
    for i in 0..5 {
        let mut tx = tx.clone();
        requests.push(tokio::spawn(async move {
            let req = Request::post(format!("https://foo.localhost/stream/{i}"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(Full::new(Bytes::from(vec![b'x'; 1000 * (i + 1)])))
                .unwrap();
            let resp = tx.send_request(req).await.unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (
                i,
                Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                },
            )
        }));
    }
    for request in requests {
        let (i, r) = request.await.unwrap();
        assert_eq!(r.status, 200);
        // The echo dyno speaks only HTTP/1.1; it saw an origin-form request with the body.
        assert!(
            r.body.starts_with(&format!(
                "backend=a POST /stream/{i} body={}",
                1000 * (i + 1)
            )),
            "{}",
            r.body
        );
        assert_eq!(
            r.echoed("host").as_deref(),
            Some("foo.localhost"),
            "the :authority becomes Host"
        );
        assert_eq!(r.echoed("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            r.echoed("cookie").as_deref(),
            Some("a=1; b=2"),
            "cookies joined for HTTP/1.1"
        );
        assert!(r.headers.get("connection").is_none() && r.headers.get("keep-alive").is_none());
    }
    let line = router.logs.wait_for(&app, "path=\"/stream/0\"").await;
    assert!(line.message.contains(" protocol=https"), "{}", line.message);
    router.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_broken_handshakes_do_not_hurt_the_listener() {
    let router = TlsRouter::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);

    // Plain HTTP on the HTTPS port: told so, then closed.
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: foo.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("HTTPS"), "{out}");

    // A handshake record whose ClientHello is garbage, random bytes, and a truncated hello.
    let garbage: [&[u8]; 4] = [
        b"\x16\x03\x01\x00\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x16\x03\x01\xff\xff\x01\x00",
        b"\x00\x01\x02\x03 not tls at all",
        b"\x16\x03",
    ];
    for bytes in garbage {
        let mut s = TcpStream::connect(router.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        if bytes.len() <= 7 {
            // An incomplete record: the client gives up first, as a scanner would.
            let _ = s.shutdown().await;
        }
        let mut sink = Vec::new();
        // Closed (maybe after a TLS alert) rather than left hanging.
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "connection for {bytes:?} was not closed");
    }

    // A client that does not trust the certificate fails its own handshake; nothing else.
    let untrusted = upload(&["foo.localhost"]).certified_key().cert[0].clone();
    assert!(
        connect(router.addr, "foo.localhost", &[untrusted], &[])
            .await
            .is_err()
    );

    // And the listener still serves.
    let tls = connect(router.addr, "foo.localhost", &[router.ca_der()], &[])
        .await
        .unwrap();
    let r = h1_request(
        tls,
        Request::get("/")
            .header("host", "foo.localhost")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    router.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_http2_connections() {
    let router = TlsRouter::start().await;
    let (a, _) = echo_dyno("a").await;
    router.app("foo", &[a]);
    let tls = connect(router.addr, "foo.localhost", &[router.ca_der()], &[b"h2"])
        .await
        .unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("https://foo.localhost/")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // The open, idle HTTP/2 connection must not keep the router from stopping.
    tokio::time::timeout(Duration::from_secs(10), router.shutdown())
        .await
        .expect("router stopped")
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("client saw the connection close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_domains_get_their_apps_uploaded_certificates() {
    use kiln_model::route::AppRoutes;
    let router = TlsRouter::start().await;
    let (a, _) = echo_dyno("a").await;
    let (b, _) = echo_dyno("b").await;
    let foo = router.app("foo", &[a]);
    let bar = router.app("bar", &[b]);
    router.table.set_domains(
        &foo,
        vec!["www.example.com".into(), "*.shop.example".into()],
    );
    router
        .table
        .set_domains(&bar, vec!["bar.example.net".into()]);
    let www = upload(&["www.example.com"]);
    let wildcard = upload(&["*.shop.example"]);
    let (www_der, wildcard_der) = (
        www.certified_key().cert[0].clone(),
        wildcard.certified_key().cert[0].clone(),
    );
    router
        .resolver
        .set_app_certificates(&foo, vec![www, wildcard]);

    let tls = connect(router.addr, "www.example.com", &[www_der.clone()], &[b"h2"])
        .await
        .unwrap();
    assert_eq!(served_cert(&tls), www_der);
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("https://www.example.com/hi")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-backend"],
        "a",
        "the custom domain routes to its app"
    );

    let tls = connect(router.addr, "eu.shop.example", &[wildcard_der.clone()], &[])
        .await
        .unwrap();
    assert_eq!(
        served_cert(&tls),
        wildcard_der,
        "a wildcard domain with a wildcard certificate"
    );
    let r = h1_request(
        tls,
        Request::get("/")
            .header("host", "eu.shop.example")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, "a"));

    // bar's custom domain has no certificate of its own: foo's are never offered for it, and
    // the local CA does not sign names outside the platform domain.
    let err = connect(
        router.addr,
        "bar.example.net",
        &[www_der, wildcard_der, router.ca_der()],
        &[],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    router.shutdown().await.unwrap();
}

/// HTTP/2 clients' requests reach dynos through hyper's client: an app writing its
/// responses in pieces with Nagle on answers them without the 40 ms delayed-ACK stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_to_apps_writing_in_pieces_are_not_delayed() {
    let router = TlsRouter::start().await;
    let dyno = nagle_dyno().await;
    router.app("nagle", &[dyno]);
    let tls = connect(router.addr, "nagle.localhost", &[router.ca_der()], &[b"h2"])
        .await
        .unwrap();
    tls.get_ref().0.set_nodelay(true).unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (method, body) in [("GET", ""), ("POST", "a form, say")] {
        let mut samples = Vec::new();
        for _ in 0..25 {
            let started = std::time::Instant::now();
            let req = Request::builder()
                .method(method)
                .uri("https://nagle.localhost/")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = tx.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, format!("n={}\n", body.len()).as_bytes());
            samples.push(started.elapsed());
        }
        let median = median(samples);
        assert!(
            median < Duration::from_millis(5),
            "{method} over HTTP/2: median {median:?} per request (Linux's delayed ACK is 40 ms)"
        );
    }
    router.shutdown().await.unwrap();
}

/// Uploads streamed over HTTP/2 without a `content-length` (as `curl --http2 -T -` and
/// browsers' streamed fetches send them) reach the dyno byte for byte, chunked: they used
/// to arrive empty, with the router logging a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_uploads_without_a_length_arrive_whole() {
    let router = TlsRouter::start().await;
    let dyno = hashing_dyno().await;
    let app = router.app("up", &[dyno]);
    let tls = connect(router.addr, "up.localhost", &[router.ca_der()], &[b"h2"])
        .await
        .unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (method, size) in [
        ("POST", 0usize),
        ("POST", 5_000),
        ("PUT", 50 * 1024 * 1024),
        ("GET", 5_000),
    ] {
        let (mut body_tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
        // A pattern that would show bytes lost, repeated or reordered.
        let chunk: Vec<u8> = (0..65_536u32)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect();
        let mut expected = FNV_START;
        let mut pieces = Vec::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() - (pieces.len() % 3));
            let piece = Bytes::copy_from_slice(&chunk[pieces.len() % 3..pieces.len() % 3 + n]);
            expected = fnv1a(expected, &piece);
            pieces.push(piece);
            left -= n;
        }
        tokio::spawn(async move {
            for piece in pieces {
                if body_tx.send_data(piece).await.is_err() {
                    return;
                }
            }
        });
        let req = Request::builder()
            .method(method)
            .uri(format!("https://up.localhost/{method}/{size}"))
            .body(body)
            .unwrap();
        let mut tx = tx.clone();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{method} {size}");
        let answer = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            answer.starts_with(&format!("len={size} fnv={expected:x} te=")),
            "{method} {size}: {answer}"
        );
        // Its length unknown when it left, the body goes chunked (an empty one may have been
        // seen to end first, and then needs no framing).
        assert!(
            answer.contains(" te=chunked cl=-") || (size == 0 && answer.ends_with(" te=- cl=-")),
            "{method} {size}: {answer}"
        );
        router
            .logs
            .wait_for(&app, &format!("path=\"/{method}/{size}\""))
            .await;
    }
    router.shutdown().await.unwrap();
}

/// Over HTTP/2 too, a request and its body go whole to the next dyno when the first cannot
/// be reached. Each request goes to an app of its own (a dyno that refused a connection is
/// then avoided, and the choice between two is random), so that over twelve the dead dyno
/// is tried first almost surely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_fail_over_from_a_dead_dyno() {
    let router = TlsRouter::start().await;
    let live = hashing_dyno().await;
    let upload = Bytes::from(
        (0..70_000u32)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    for n in 0..12 {
        let app = format!("over{n}");
        let id = router.app(&app, &[dead_dyno().await, live]);
        let mut tx = h2::<Full<Bytes>>(&router, &app).await;
        let (method, sent) = match n % 2 {
            0 => ("POST", upload.clone()),
            _ => ("GET", Bytes::new()),
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{app}.localhost/up"))
            .body(Full::new(sent.clone()))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let answer = resp.into_body().collect().await.unwrap().to_bytes();
        let answer = String::from_utf8_lossy(&answer);
        let expected = format!("len={} fnv={:x} ", sent.len(), fnv1a(FNV_START, &sent));
        assert!(answer.starts_with(&expected), "{method}: {answer}");
        let line = router.logs.wait_for(&id, "status=200").await;
        assert!(
            line.message.contains("dyno=web.2") && line.message.contains("protocol=https"),
            "{}",
            line.message
        );
    }
    router.shutdown().await.unwrap();
}

/// An HTTP/2 connection to `app`.localhost, as a client that reads responses only when told.
async fn h2<B>(router: &TlsRouter, app: &str) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = connect(
        router.addr,
        &format!("{app}.localhost"),
        &[router.ca_der()],
        &[b"h2"],
    )
    .await
    .unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

/// A request with a body the test feeds (or never finishes).
fn request(
    method: &str,
    uri: &str,
    headers: &[(String, String)],
) -> (
    http_body_util::channel::Sender<Bytes>,
    Request<http_body_util::channel::Channel<Bytes>>,
) {
    let (tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    (tx, req.body(body).unwrap())
}

/// Heroku's limits on a head hold over HTTP/2 as over HTTP/1.1, with the same status, page
/// and H26 line; a refused stream leaves the connection serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_header_limits_answer_as_http1_does() {
    let router = TlsRouter::start().await;
    // A dyno that takes any number of fields (hyper's server stops at 100).
    let dyno = raw_dyno(|mut s| async move {
        loop {
            if read_head(&mut s).await.is_empty()
                || s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
            {
                return;
            }
        }
    })
    .await;
    let app = router.app("lim", &[dyno]);
    let tx = h2(&router, "lim").await;
    let rid = (
        "x-request-id".to_string(),
        "abcdefghij0123456789".to_string(),
    );
    let send = |extra: Vec<(String, String)>, path: &'static str| {
        let mut tx = tx.clone();
        let rid = rid.clone();
        async move {
            let mut headers = vec![rid];
            headers.extend(extra);
            let (body_tx, req) = request("GET", &format!("https://lim.localhost{path}"), &headers);
            drop(body_tx);
            let resp = tx.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body =
                String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
                    .into_owned();
            (status, body)
        }
    };
    let many = |n: usize| {
        (0..n)
            .map(|i| (format!("x-many-{i}"), "v".to_string()))
            .collect::<Vec<_>>()
    };
    // 1000 fields pass: Host (the :authority), X-Request-Id and 998 more.
    let (status, page) = send(many(998), "/many").await;
    assert_eq!(status, 200, "{page}");
    let (status, page) = send(many(999), "/toomany").await;
    assert_eq!(status, 431, "{page}");
    assert!(
        page.contains("Request headers too large"),
        "the router's page: {page}"
    );
    // A field line of 8192 bytes as the dyno will see it (`name: value`) passes, 8193 does not.
    let big = |n: usize| vec![("x-big".to_string(), "v".repeat(n - 7))];
    assert_eq!(send(big(8192), "/big-ok").await.0, 200);
    assert_eq!(send(big(8193), "/big").await.0, 431);
    assert_eq!(
        send(vec![("n".repeat(1001), "v".to_string())], "/name")
            .await
            .0,
        431
    );
    assert_eq!(
        send(vec![("n".repeat(1000), "v".to_string())], "/name-ok")
            .await
            .0,
        200
    );
    // The connection is still good.
    assert_eq!(send(vec![], "/after").await.0, 200);

    let line = router
        .logs
        .wait_for(&app, "cause=\"header line too long\"")
        .await;
    assert_eq!(
        line.message,
        "at=error code=H26 desc=\"Request Error\" cause=\"header line too long\" method=GET path=\"/big\" host=lim.localhost request_id=abcdefghij0123456789 fwd=\"127.0.0.1\" dyno= connect= service= status=431 bytes= protocol=https"
    );
    router
        .logs
        .wait_for(
            &app,
            "cause=\"too many headers\" method=GET path=\"/toomany\"",
        )
        .await;
    router
        .logs
        .wait_for(
            &app,
            "cause=\"header name too long\" method=GET path=\"/name\"",
        )
        .await;
    router.shutdown().await.unwrap();
}

/// Over HTTP/2 as over HTTP/1.1: a client that stops sending its body is H28 (not H12, the
/// dyno is waiting for the client); a dyno that does not answer is H12; a client that stops
/// reading the response is H28, and the connection's other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_idle_windows_answer_as_http1_does() {
    let mut config = RouterConfig::default();
    config.idle_timeout = Duration::from_millis(500);
    config.first_byte_timeout = Duration::from_millis(200);
    let router = TlsRouter::with_config(config).await;
    let (echo, _) = echo_dyno("a").await;
    let silent = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let big = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        let body = vec![b'x'; 8 * 1024 * 1024];
        let _ = s
            .write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(),
            )
            .await;
        let _ = s.write_all(&body).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let echo_app = router.app("echo", &[echo]);
    let silent_app = router.app("silent", &[silent]);
    let big_app = router.app("big", &[big]);

    // The body stops after three bytes.
    let mut tx = h2(&router, "echo").await;
    let (mut body_tx, req) = request("POST", "https://echo.localhost/upload", &[]);
    body_tx.send_data(Bytes::from_static(b"abc")).await.unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 408);
    let line = router.logs.wait_for(&echo_app, "path=\"/upload\"").await;
    assert!(
        line.message
            .starts_with("at=warning code=H28 desc=\"Client Connection Idle\""),
        "{}",
        line.message
    );
    assert!(
        !router
            .logs
            .messages(&echo_app)
            .iter()
            .any(|l| l.contains("H12")),
        "{:?}",
        router.logs.messages(&echo_app)
    );
    drop(body_tx);

    // The dyno never answers.
    let mut tx = h2(&router, "silent").await;
    let (body_tx, req) = request("GET", "https://silent.localhost/wait", &[]);
    drop(body_tx);
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    let line = router.logs.wait_for(&silent_app, "path=\"/wait\"").await;
    assert!(
        line.message
            .starts_with("at=error code=H12 desc=\"Request timeout\""),
        "{}",
        line.message
    );

    // The client takes the response head, then reads nothing of an 8 MB body.
    let mut tx = h2(&router, "big").await;
    let (body_tx, req) = request("GET", "https://big.localhost/unread", &[]);
    drop(body_tx);
    let unread = tx.send_request(req).await.unwrap();
    assert_eq!(unread.status(), 200);
    // Another stream on the same connection is served while that one is stalled.
    let (body_tx, req) = request("GET", "https://big.localhost/meanwhile", &[]);
    drop(body_tx);
    let meanwhile = tokio::time::timeout(Duration::from_secs(5), tx.send_request(req))
        .await
        .expect("the connection still serves")
        .unwrap();
    assert_eq!(meanwhile.status(), 200);
    let line = router.logs.wait_for(&big_app, "path=\"/unread\"").await;
    assert!(
        line.message
            .starts_with("at=warning code=H28 desc=\"Client Connection Idle\""),
        "{}",
        line.message
    );
    assert!(line.message.contains(" status=499 "), "{}", line.message);
    drop((unread, meanwhile));
    router.shutdown().await.unwrap();
}

/// A client that resets its HTTP/2 stream while a dyno has the request leaves an H27 line
/// (the stream's work is dropped, and nothing else would say it happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_reset_while_a_dyno_has_them_are_logged_h27() {
    let (body_tx, req) = request("GET", "https://slow.localhost/abandoned", &[]);
    drop(body_tx);
    reset_while_a_dyno_has_it(req, "/abandoned").await;
}

/// The same for a stream without a body (`END_STREAM` on its head, as browsers send GETs):
/// the router ends such a body before a dyno sees the request, and the request must still
/// be watched while the dyno has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodiless_streams_reset_while_a_dyno_has_them_are_logged_h27() {
    let req = Request::get("https://slow.localhost/abandoned-get")
        .body(Full::new(Bytes::new()))
        .unwrap();
    reset_while_a_dyno_has_it(req, "/abandoned-get").await;
}

/// Sends `req` over HTTP/2 to an app whose dyno takes 2 s to answer, resets its stream
/// after 300 ms, and checks the H27 line for `path`, and that the connection still serves.
async fn reset_while_a_dyno_has_it<B>(req: Request<B>, path: &str)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let router = TlsRouter::start().await;
    let slow = raw_dyno(|mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let app = router.app("slow", &[slow]);
    let tx = h2::<B>(&router, "slow").await;
    // The connection stays open: only the stream is reset.
    let mut keep = tx.clone();
    let mut sender = tx.clone();
    let pending = tokio::spawn(async move { sender.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pending.abort();
    let line = router
        .logs
        .wait_for(&app, &format!("path=\"{path}\""))
        .await;
    assert!(
        line.message
            .starts_with("sock=client at=warning code=H27 desc=\"Client Request Interrupted\""),
        "{}",
        line.message
    );
    assert!(
        line.message.contains(" dyno=web.1 ") && line.message.contains(" status=499 bytes=0 "),
        "{}",
        line.message
    );
    keep.ready().await.expect("the connection is still open");
    router.shutdown().await.unwrap();
}

/// Cache hits over HTTP/2: hyper writes only the map, so a hit's stored head (which the
/// HTTP/1 writer takes as written lines) must reach it whole, with its own `Age` and the
/// body's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cache_hits_carry_the_stored_head() {
    let router = TlsRouter::start().await;
    let (d, _) = kiln_testkit::dyno::http_dyno(|_req: Request<hyper::body::Incoming>| async {
        let mut resp = http::Response::new(Full::new(Bytes::from_static(b"stored page")));
        let h = resp.headers_mut();
        h.insert("cache-control", "public, max-age=60".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        resp
    })
    .await;
    router.app("foo", &[d]);
    // A request without a body (`END_STREAM` on its head): one the cache may answer.
    let tx = h2::<Full<Bytes>>(&router, "foo").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut tx = tx.clone();
        let req = Request::get("https://foo.localhost/page")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        got.push((parts.headers, body));
    }
    let (miss, hit) = (&got[0].0, &got[1].0);
    assert_eq!(miss.get("x-cache").unwrap(), "MISS");
    assert_eq!(hit.get("x-cache").unwrap(), "HIT", "{hit:?}");
    assert_eq!(got[1].1, Bytes::from_static(b"stored page"));
    assert!(hit.get("age").is_some(), "{hit:?}");
    for name in ["content-type", "x-app", "date", "cache-control"] {
        assert_eq!(hit.get_all(name).iter().count(), 1, "{name}: {hit:?}");
        assert_eq!(hit.get(name), miss.get(name), "{name}");
    }
    assert_eq!(
        hit.get("content-length").map(|v| v.to_str().unwrap()),
        Some("11"),
        "{hit:?}"
    );
    router.shutdown().await.unwrap();
}
