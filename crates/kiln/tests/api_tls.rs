//! The API's HTTPS listener (`--api-tls-listen`): the same API and git over TLS with a
//! certificate from Kiln's CA, `heroku run`'s rendezvous on the same port, and what hostile
//! or confused clients get from it. Heroku's own CLI against it is in `heroku_cli.rs`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

fn tls_port(s: &Server) -> u16 {
    s.api_tls_url
        .as_deref()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the server has an HTTPS listener")
}

/// A TLS connection to the API's HTTPS port that trusts only the server's CA and checks the
/// certificate names 127.0.0.1, as Node and git do.
fn tls(s: &Server) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(s.dir.join("data/tls/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", tls_port(s))).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Everything the server sends until it closes (or the read times out).
fn read_all(stream: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/1.1 request over TLS; the raw response.
fn https(s: &Server, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> String {
    let mut t = tls(s);
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        t,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: application/vnd.heroku+json; version=3\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        tls_port(s),
        body.len()
    )
    .unwrap();
    read_all(&mut t)
}

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn body_json(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn the_https_listener_serves_the_api_with_the_same_authorization() {
    let s = Server::start_with("api-tls", &["--api-tls-listen", "127.0.0.1:0"]);
    let key = s.key.clone();
    let r = https(
        &s,
        "POST",
        "/apps",
        Some(&key),
        Some(r#"{"name":"tls-app"}"#),
    );
    assert_eq!(status(&r), 201, "{r}");
    let r = https(&s, "GET", "/apps/tls-app", Some(&key), None);
    assert_eq!(body_json(&r)["name"], "tls-app", "{r}");

    // Every catalogue endpoint is behind the same authentication as the rest.
    for path in [
        "/apps/tls-app",
        "/stacks",
        "/stacks/heroku-24",
        "/regions",
        "/regions/local",
        "/apps/tls-app/features",
        "/apps/tls-app/features/preboot",
        "/account/features",
    ] {
        assert_eq!(status(&https(&s, "GET", path, None, None)), 401, "{path}");
        assert_eq!(
            status(&https(&s, "GET", path, Some("wrong-key"), None)),
            401,
            "{path}"
        );
        assert_eq!(
            status(&https(&s, "GET", path, Some(&key), None)),
            200,
            "{path}"
        );
    }
    for (path, id) in [
        ("/stacks/heroku-22", "not_found"),
        ("/regions/eu", "not_found"),
        ("/apps/tls-app/features/no-such-feature", "not_found"),
        ("/apps/nope/features", "not_found"),
    ] {
        let r = https(&s, "GET", path, Some(&key), None);
        assert_eq!(body_json(&r)["id"], id, "{path}: {r}");
    }
    // The buildpack registry is public (its client sends no credentials) and knows only the
    // built-ins.
    let r = https(&s, "GET", "/buildpacks/heroku%2Fpython", None, None);
    assert_eq!(
        body_json(&r)["blob_url"],
        "https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz"
    );
    for path in [
        "/buildpacks/heroku%2Fcobol",
        "/buildpacks/evil%2Fpython",
        "/buildpacks/python",
        "/buildpacks/..%2F..%2Fetc%2Fpasswd",
    ] {
        assert_eq!(status(&https(&s, "GET", path, None, None)), 404, "{path}");
    }
    let r = https(
        &s,
        "GET",
        &format!("/buildpacks?{}", "in[name][]=x&".repeat(400)),
        None,
        None,
    );
    assert_eq!(status(&r), 400, "{r}");

    // Hostile app changes are refused and change nothing.
    let other = https(
        &s,
        "POST",
        "/apps",
        Some(&key),
        Some(r#"{"name":"tls-other"}"#),
    );
    assert_eq!(status(&other), 201);
    for (body, code) in [
        (r#"{"name":"tls-other"}"#, 409),
        (r#"{"name":"Not A Name"}"#, 422),
        (r#"{"name":"../etc"}"#, 422),
        (r#"{"name":7}"#, 422),
        (r#"{"build_stack":"heroku-22"}"#, 422),
        (r#"{"build_stack":42}"#, 422),
        (r#"{"build_stack":{"id":"x"}}"#, 422),
        (r#"{"name":"tls-new","build_stack":"cedar"}"#, 422),
    ] {
        let r = https(&s, "PATCH", "/apps/tls-app", Some(&key), Some(body));
        assert_eq!(status(&r), code, "{body}: {r}");
    }
    let r = https(&s, "GET", "/apps/tls-app", Some(&key), None);
    assert_eq!(status(&r), 200, "nothing was renamed: {r}");
    for (body, code) in [
        (r#"{"command":"true","type":"../x"}"#, 422),
        (r#"{"command":"true","type":7}"#, 422),
        (r#"{"command":"true","size":[1]}"#, 422),
        (r#"{"command":"true","force_no_tty":"yes"}"#, 422),
    ] {
        let r = https(&s, "POST", "/apps/tls-app/dynos", Some(&key), Some(body));
        assert_eq!(status(&r), code, "{body}: {r}");
    }
    // A release output id that is not one is a plain 404.
    for id in ["x", "..%2F..", &"0".repeat(5000)] {
        let r = https(&s, "GET", &format!("/release-output/{id}"), None, None);
        assert!(matches!(status(&r), 404 | 414 | 431), "{r}");
    }
}

#[test]
fn rendezvous_claims_a_one_off_once_and_refuses_garbage() {
    let s = Server::start_with(
        "api-tls-rendezvous",
        &["--api-tls-listen", "127.0.0.1:0", "--api-head-timeout", "2"],
    );
    let app = "tls-run";
    s.ok(&["apps:create", app]);
    let dir = fixture_repo(
        "tls-run",
        &[
            ("requirements.txt", ""),
            ("Procfile", "web: python3 -m http.server $PORT\n"),
        ],
    );
    let (ok, out) = s.push(&dir, app);
    assert!(ok, "{out}");

    // Over plain HTTP the attach URL names the HTTPS port; over HTTPS, the address used.
    let r = s.api(
        "POST",
        &format!("/apps/{app}/dynos"),
        Some(
            r#"{"command":"read line; echo got-$line; exit 4","attach":true,"force_no_tty":true}"#,
        ),
    );
    let url = r.json()["attach_url"].as_str().unwrap().to_string();
    let prefix = format!("rendezvous://127.0.0.1:{}/", tls_port(&s));
    assert!(url.starts_with(&prefix), "{url}");
    let secret = url.trim_start_matches(&prefix).to_string();

    let mut t = tls(&s);
    t.write_all(format!("{secret}\r\n").as_bytes()).unwrap();
    t.flush().unwrap();
    let mut ack = [0u8; 12];
    t.read_exact(&mut ack).unwrap();
    assert_eq!(&ack, b"rendezvous\r\n");
    // Input, then the end of stdin as the CLI sends it without a terminal.
    t.write_all(b"hello\n\x04ignored").unwrap();
    t.flush().unwrap();
    let rest = read_all(&mut t);
    assert!(rest.contains("got-hello"), "{rest:?}");

    // The same secret again: nothing waits for it any more.
    let mut t = tls(&s);
    t.write_all(format!("{secret}\r\n").as_bytes()).unwrap();
    let out = read_all(&mut t);
    assert!(
        out.starts_with("rendezvous\r\n") && out.contains("no one-off dyno is waiting"),
        "{out:?}"
    );

    // Unknown and hostile first lines.
    for line in [
        "nope\r\n".to_string(),
        "\r\n".to_string(),
        format!("{}\r\n", "a".repeat(100_000)),
        "../../etc/passwd\n".to_string(),
    ] {
        let mut t = tls(&s);
        let _ = t.write_all(line.as_bytes());
        let out = read_all(&mut t);
        assert!(
            out.is_empty() || out.starts_with("rendezvous\r\n") || out.starts_with("HTTP/1.1 4"),
            "{out:?}"
        );
        assert!(!out.contains("got-"), "{out:?}");
    }
    // Plain HTTP on the TLS port, and a client that never finishes its handshake, are
    // dropped; the listener keeps serving.
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port(&s))).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /stacks HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let out = read_all(&mut plain);
    assert!(!out.contains("heroku-24"), "{out:?}");
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port(&s))).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let _ = read_all(&mut silent);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "closed at the head timeout"
    );
    assert_eq!(
        status(&https(&s, "GET", "/stacks", Some(&s.key.clone()), None)),
        200
    );

    // `kiln run` takes the same secret through its own door when the server has both.
    let out = s.ok(&["run", "-a", app, "--", "echo", "kiln-run-ok"]);
    assert!(out.contains("kiln-run-ok"), "{out}");
}

#[test]
fn without_the_https_listener_run_says_what_herokus_cli_needs() {
    let s = Server::start("api-no-tls");
    let app = "plain-run";
    s.ok(&["apps:create", app]);
    let dir = fixture_repo(
        "plain-run",
        &[
            ("requirements.txt", ""),
            ("Procfile", "web: python3 -m http.server $PORT\n"),
        ],
    );
    let (ok, out) = s.push(&dir, app);
    assert!(ok, "{out}");
    let r = s.api(
        "POST",
        &format!("/apps/{app}/dynos"),
        Some(r#"{"command":"true","attach":true}"#),
    );
    assert!(
        r.json()["attach_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1"),
        "{:?}",
        r.json()
    );
    assert!(
        r.json()["attach_url"]
            .as_str()
            .unwrap()
            .contains("/attach/")
    );
    assert!(
        r.header("x-heroku-warning")
            .is_some_and(|w| w.contains("--api-tls-listen")),
        "{:?}",
        r.headers
    );
    let out = s.ok(&["run", "-a", app, "--", "echo", "plain-ok"]);
    assert!(out.contains("plain-ok"), "{out}");
}

/// The dashboard answers on the HTTPS listener too, and there its cookies are ones only a
/// secure page of this host may set (`__Host-`, `Secure`).
#[test]
fn the_dashboard_is_served_over_https_with_host_only_secure_cookies() {
    let s = Server::start_with("dash-tls", &["--api-tls-listen", "127.0.0.1:0"]);
    let r = https(&s, "GET", "/dashboard/login", None, None);
    assert_eq!(status(&r), 200, "{r}");
    let cookie = r
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {r}"));
    for part in [
        "__Host-kiln_login=",
        "Path=/",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
    ] {
        assert!(cookie.contains(part), "{part} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "{cookie}");
    assert!(
        r.to_ascii_lowercase().contains("content-security-policy:"),
        "{r}"
    );
    // A page behind the sign-in sends a visitor without a session there.
    let r = https(&s, "GET", "/dashboard/apps/anything", None, None);
    assert_eq!(status(&r), 303, "{r}");
    assert!(r.contains("location: /dashboard/login?next="), "{r}");
}
