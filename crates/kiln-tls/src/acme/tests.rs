//! The client against a scripted CA on a local TLS socket: hostile and broken answers must
//! end in clear errors (never a panic or a hang), and published challenges must always be
//! withdrawn.

use super::*;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Handler = Arc<dyn Fn(&str, &str, &[u8]) -> Vec<u8> + Send + Sync>;

/// A TLS server on 127.0.0.1 answering each request with `handler(method, path, body)`.
struct MockCa {
    url: String,
    ca_file: PathBuf,
    dir: kiln_testkit::TempDir,
}

async fn mock(handler: Handler) -> MockCa {
    let dir = kiln_testkit::TempDir::new("acme-mock");
    let (cert, key) = crate::self_signed(&["127.0.0.1"]).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &cert).unwrap();
    let served = Certificate::from_pem(&cert, &key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(Arc::clone(served.certified_key()))));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut words = head.split_whitespace();
                let (method, path) = (
                    words.next().unwrap_or("").to_string(),
                    words.next().unwrap_or("").to_string(),
                );
                let out = handler(&method, &path, &buf[head_end..]);
                let _ = tls.write_all(&out).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    MockCa {
        url: format!("https://127.0.0.1:{port}/dir"),
        ca_file,
        dir,
    }
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl ChallengeResponder for Recorder {
    fn publish(&self, token: &str, key_authorization: &str) {
        assert!(key_authorization.starts_with(&format!("{token}.")));
        self.0.lock().unwrap().push(format!("+{token}"));
    }
    fn withdraw(&self, token: &str) {
        self.0.lock().unwrap().push(format!("-{token}"));
    }
}

fn client(ca: &MockCa, responder: Arc<dyn ChallengeResponder>) -> AcmeClient {
    let mut config = AcmeConfig::new(&ca.url, ca.dir.join("account.key"));
    config.system_roots = None;
    config.extra_ca = Some(ca.ca_file.clone());
    config.request_timeout = Duration::from_secs(2);
    AcmeClient::new(config, responder).unwrap()
}

fn directory(base: &str) -> String {
    format!(r#"{{"newNonce":"{base}/nonce","newAccount":"{base}/acct","newOrder":"{base}/order"}}"#)
}

async fn order_error(handler: Handler) -> String {
    let ca = mock(handler).await;
    let c = client(&ca, Arc::new(Recorder::default()));
    c.order(&["www.example.test".to_string()])
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn refuses_bad_configuration() {
    let ca = mock(Arc::new(|_: &str, _: &str, _: &[u8]| reply(200, &[], "{}"))).await;
    let mut config = AcmeConfig::new("http://ca.example/dir", ca.dir.join("k"));
    config.extra_ca = Some(ca.ca_file.clone());
    assert!(
        AcmeClient::new(config.clone(), Arc::new(Recorder::default()))
            .unwrap_err()
            .to_string()
            .contains("must be https")
    );
    config.directory_url = ca.url.clone();
    config.contact = Some("not an email".into());
    assert!(
        AcmeClient::new(config.clone(), Arc::new(Recorder::default()))
            .unwrap_err()
            .to_string()
            .contains("not an email address")
    );
    config.contact = None;
    config.system_roots = None;
    config.extra_ca = Some(ca.dir.join("missing.pem"));
    assert!(
        AcmeClient::new(config.clone(), Arc::new(Recorder::default()))
            .unwrap_err()
            .to_string()
            .contains("missing.pem")
    );
    std::fs::write(ca.dir.join("empty.pem"), "nothing").unwrap();
    config.extra_ca = Some(ca.dir.join("empty.pem"));
    assert!(
        AcmeClient::new(config.clone(), Arc::new(Recorder::default()))
            .unwrap_err()
            .to_string()
            .contains("holds no PEM certificate")
    );
    let c = client(&ca, Arc::new(Recorder::default()));
    assert!(
        c.order(&["*.example.test".to_string()])
            .await
            .unwrap_err()
            .to_string()
            .contains("wildcard")
    );
    assert!(c.order(&[]).await.is_err());
}

#[tokio::test]
async fn hostile_directories() {
    let huge = "x".repeat(wire::MAX_BODY + 1);
    let err = order_error(Arc::new(move |_: &str, _: &str, _: &[u8]| {
        reply(200, &[], &huge)
    }))
    .await;
    assert!(err.contains("more than the 256 kB"), "{err}");

    // No Content-Length: the limit holds while reading.
    let err = order_error(Arc::new(|_: &str, _: &str, _: &[u8]| {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..100 {
            out.extend_from_slice(format!("{:x}\r\n{}\r\n", 4096, "y".repeat(4096)).as_bytes());
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }))
    .await;
    assert!(
        err.contains("reading the response (at most 256 kB)"),
        "{err}"
    );

    let err = order_error(Arc::new(|_: &str, _: &str, _: &[u8]| {
        reply(500, &[], "oops")
    }))
    .await;
    assert!(err.contains("answered HTTP 500"), "{err}");
    let err = order_error(Arc::new(|_: &str, _: &str, _: &[u8]| {
        reply(200, &[], "{\"newNonce\": ")
    }))
    .await;
    assert!(err.contains("ACME directory is not valid JSON"), "{err}");
    let err = order_error(Arc::new(|_: &str, _: &str, _: &[u8]| {
        b"garbage, not HTTP\r\n\r\n".to_vec()
    }))
    .await;
    assert!(err.contains("could not reach the ACME server"), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let ca = mock(Arc::new(|_: &str, _: &str, _: &[u8]| Vec::new())).await;
    let mut config = AcmeConfig::new(&format!("https://127.0.0.1:{port}/dir"), ca.dir.join("k"));
    config.system_roots = None;
    config.extra_ca = Some(ca.ca_file.clone());
    config.request_timeout = Duration::from_millis(300);
    let c = AcmeClient::new(config, Arc::new(Recorder::default())).unwrap();
    let err = c
        .order(&["a.example.test".to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no complete answer within"), "{err}");
}

#[tokio::test]
async fn nonces_are_retried_then_given_up() {
    let calls = Arc::new(Mutex::new(0usize));
    let seen = calls.clone();
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let ca = mock(Arc::new(move |method: &str, path: &str, _: &[u8]| {
        match (method, path) {
            ("GET", "/dir") => reply(200, &[], &directory(&b.lock().unwrap())),
            ("HEAD", "/nonce") => reply(200, &[("Replay-Nonce", "n0")], ""),
            (_, "/acct") => {
                *seen.lock().unwrap() += 1;
                reply(
                    400,
                    &[
                        ("Replay-Nonce", "n1"),
                        ("Content-Type", "application/problem+json"),
                    ],
                    r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}"#,
                )
            }
            _ => reply(404, &[], ""),
        }
    }))
    .await;
    *base.lock().unwrap() = ca.url.trim_end_matches("/dir").to_string();
    let c = client(&ca, Arc::new(Recorder::default()));
    let err = c
        .order(&["a.example.test".to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("stale (badNonce) after 4 attempts"), "{err}");
    assert_eq!(*calls.lock().unwrap(), NONCE_ATTEMPTS);
}

/// A CA that goes through a whole order but serves a chain that is not for our key: the
/// challenge is published, then withdrawn, and the error says what is wrong.
#[tokio::test]
async fn a_whole_order_against_a_lying_ca() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    let polls = Arc::new(Mutex::new(0));
    let (foreign, _) = crate::self_signed(&["www.example.test"]).unwrap();
    let ca = mock(Arc::new(move |method: &str, path: &str, body: &[u8]| {
        let base = b.lock().unwrap().clone();
        let nonce = [("Replay-Nonce", "abc")];
        if method == "POST" {
            let jws: Value = serde_json::from_slice(body).unwrap();
            assert!(jws["signature"].is_string());
        }
        match path {
            "/dir" => reply(200, &[], &directory(&base)),
            "/nonce" => reply(200, &nonce, ""),
            "/acct" => reply(201, &[("Replay-Nonce", "abc"), ("Location", &format!("{base}/acct/1"))], "{}"),
            "/order" => reply(201, &[("Replay-Nonce", "abc"), ("Location", &format!("{base}/order/1"))], &format!(r#"{{"status":"pending","authorizations":["{base}/authz/1"],"finalize":"{base}/fin/1"}}"#)),
            "/authz/1" => {
                let mut n = polls.lock().unwrap();
                *n += 1;
                let status = if *n >= 3 { "valid" } else { "pending" };
                reply(200, &nonce, &format!(r#"{{"status":"{status}","identifier":{{"type":"dns","value":"www.example.test"}},"challenges":[{{"type":"http-01","url":"{base}/chall/1","token":"{token}"}}]}}"#))
            }
            "/chall/1" => reply(200, &nonce, r#"{"status":"processing"}"#),
            "/order/1" => reply(200, &nonce, &format!(r#"{{"status":"ready","authorizations":[],"finalize":"{base}/fin/1"}}"#)),
            "/fin/1" => reply(200, &nonce, &format!(r#"{{"status":"valid","authorizations":[],"finalize":"{base}/fin/1","certificate":"{base}/cert/1"}}"#)),
            "/cert/1" => reply(200, &nonce, &foreign),
            _ => reply(404, &nonce, r#"{"type":"urn:ietf:params:acme:error:malformed","detail":"no such thing"}"#),
        }
    }))
    .await;
    *base.lock().unwrap() = ca.url.trim_end_matches("/dir").to_string();
    let recorder = Arc::new(Recorder::default());
    let c = client(&ca, recorder.clone());
    let err = c
        .order(&["www.example.test".to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the issued certificate is unusable") && err.contains("does not match"),
        "{err}"
    );
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [format!("+{token}"), format!("-{token}")],
        "published, then withdrawn"
    );
}

/// A challenge the CA could not validate: its reason reaches the error, and the challenge
/// is withdrawn.
#[tokio::test]
async fn failed_validation_says_why() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let ca = mock(Arc::new(move |_: &str, path: &str, _: &[u8]| {
        let base = b.lock().unwrap().clone();
        let nonce = [("Replay-Nonce", "abc")];
        match path {
            "/dir" => reply(200, &[], &directory(&base)),
            "/nonce" => reply(200, &nonce, ""),
            "/acct" => reply(200, &[("Replay-Nonce", "abc"), ("Location", &format!("{base}/acct/1"))], "{}"),
            "/order" => reply(201, &[("Replay-Nonce", "abc"), ("Location", &format!("{base}/order/1"))], &format!(r#"{{"status":"pending","authorizations":["{base}/authz/1"],"finalize":"{base}/fin/1"}}"#)),
            "/chall/1" => reply(200, &nonce, "{}"),
            "/authz/1" => reply(200, &nonce, &format!(r#"{{"status":"invalid","identifier":{{"value":"www.example.test"}},"challenges":[{{"type":"http-01","url":"{base}/chall/1","token":"{token}","error":{{"type":"urn:ietf:params:acme:error:connection","detail":"Connection refused"}}}}]}}"#)),
            _ => reply(404, &nonce, ""),
        }
    }))
    .await;
    *base.lock().unwrap() = ca.url.trim_end_matches("/dir").to_string();
    let recorder = Arc::new(Recorder::default());
    let c = client(&ca, recorder.clone());
    let err = c
        .order(&["www.example.test".to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "the certificate authority could not validate www.example.test: Connection refused (connection)"
    );
    // The authorization was already invalid when first read: nothing was published.
    assert!(recorder.0.lock().unwrap().is_empty());
    // A location that is not https is refused before it is used.
    let err = order_error(Arc::new(|path_method: &str, path: &str, _: &[u8]| {
        let _ = path_method;
        match path {
            "/dir" => reply(200, &[], r#"{"newNonce":"https://127.0.0.1:1/n","newAccount":"https://127.0.0.1:1/a","newOrder":"https://127.0.0.1:1/o"}"#),
            _ => reply(404, &[], ""),
        }
    }))
    .await;
    assert!(err.contains("could not reach"), "{err}");
}
