//! HTTPS end to end: a real `kiln server --router-tls-listen`, a deployed app, and the real
//! `curl` (OpenSSL, nghttp2) as the client, trusting only the certificates it is given:
//! the local CA for `<app>.localhost`, then certificates uploaded with `kiln certs:add`, for
//! the app's own hostname and for a custom domain.
//! HTTP/2 from curl reaches the dyno as HTTP/1.1; everything survives a restart.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

/// Answers with what the dyno saw: the protocol it was spoken to in and the forwarding headers.
const ECHO_APP: &str = r#"import os
import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = "path=%s version=%s proto=%s port=%s dyno=%s\n" % (
            self.path, self.request_version, self.headers.get("X-Forwarded-Proto"),
            self.headers.get("X-Forwarded-Port"), os.environ.get("DYNO"))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The HTTPS port from the server's start lines.
fn https_port(s: &Server) -> u16 {
    wait_for(Duration::from_secs(10), "the HTTPS start line", || {
        let log = s.server_log();
        let line = log.lines().find(|l| l.contains("HTTPS:"))?.to_string();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("https://"))?;
        url.trim_end_matches('/').rsplit(':').next()?.parse().ok()
    })
}

struct Curl {
    status: u16,
    /// `HTTP/2` or `HTTP/1.1`, from the status line.
    version: String,
    body: String,
    stderr: String,
}

/// `curl` over HTTPS to `host` (resolved to 127.0.0.1), trusting only `cacert`.
fn curl(port: u16, host: &str, path: &str, cacert: &Path, extra: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(cacert)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status_line = text.lines().next().unwrap_or_default().to_string();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Curl {
        status,
        version,
        body,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn https_with_sni_http2_and_uploaded_certificates() {
    let flags = ["--router-tls-listen", "127.0.0.1:0"];
    let s = Server::start_with("tls", &flags);
    let port = https_port(&s);
    let ca = s.dir.join("data/tls/ca.crt");
    assert!(ca.is_file(), "the local CA is kept in the data directory");
    let ca_before = std::fs::read(&ca).unwrap();

    s.ok(&["apps:create", "tlsapp"]);
    let (ok, out) = s.push(&python_app(&[("app.py", ECHO_APP)]), "tlsapp");
    assert!(ok, "push failed:\n{out}\nserver log:\n{}", s.server_log());
    let host = "tlsapp.localhost";

    // HTTP/1.1 over TLS, trusting the local CA: the dyno sees Heroku's https headers.
    let r = wait_for(BOOT, "the app to answer over HTTPS", || {
        let r = curl(port, host, "/hello", &ca, &["--http1.1"]);
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.version, "HTTP/1.1");
    assert!(
        r.body.starts_with(&format!(
            "path=/hello version=HTTP/1.1 proto=https port={port} dyno=web.1"
        )),
        "{}",
        r.body
    );

    // HTTP/2 from the client (ALPN); the dyno is still spoken to in HTTP/1.1.
    let r = curl(port, host, "/two?x=1", &ca, &["--http2"]);
    assert_eq!(
        (r.status, r.version.as_str()),
        (200, "HTTP/2"),
        "{}",
        r.stderr
    );
    assert!(
        r.body.starts_with(&format!(
            "path=/two?x=1 version=HTTP/1.1 proto=https port={port}"
        )),
        "{}",
        r.body
    );

    // The router log line says so.
    let logs = wait_for(Duration::from_secs(10), "the https router line", || {
        let logs = s.logs("tlsapp");
        logs.contains("path=\"/two?x=1\"").then_some(logs)
    });
    let line = logs
        .lines()
        .find(|l| l.contains("path=\"/two?x=1\""))
        .unwrap();
    assert!(
        line.contains("heroku[router]") && line.contains(" protocol=https"),
        "{line}"
    );

    // Plain HTTP sent to the HTTPS port is told so.
    let r = http(port, "GET", host, "/", &[], None);
    assert_eq!(r.status, 400, "{r:?}");

    // Upload a certificate for the app's hostname; the router serves it from then on.
    let work = s.dir.join("certs");
    std::fs::create_dir_all(&work).unwrap();
    let (chain, key) = kiln_tls::self_signed(&[host]).unwrap();
    let crt = write(&work, "server.crt", &chain);
    let key_file = write(&work, "server.key", &key);
    let (_, wrong_key) = kiln_tls::self_signed(&[host]).unwrap();
    let wrong_key = write(&work, "wrong.key", &wrong_key);
    let err = s.fails(&[
        "certs:add",
        crt.to_str().unwrap(),
        wrong_key.to_str().unwrap(),
        "-a",
        "tlsapp",
    ]);
    assert!(err.contains("does not match"), "{err}");

    let added = s.ok(&[
        "certs:add",
        crt.to_str().unwrap(),
        key_file.to_str().unwrap(),
        "-a",
        "tlsapp",
    ]);
    assert!(
        added.contains("Adding SSL certificate to ⬢ tlsapp... done"),
        "{added}"
    );
    assert!(
        added.contains(&format!("Common Name(s): {host}")),
        "{added}"
    );
    let listed = s.ok(&["certs", "-a", "tlsapp"]);
    assert!(
        listed.contains(&format!("  {host}  ")) && listed.contains("False    SNI"),
        "{listed}"
    );
    let endpoints = s.api("GET", "/apps/tlsapp/sni-endpoints", None).json();
    let endpoint = &endpoints[0];
    assert_eq!(
        endpoint["ssl_cert"]["cert_domains"],
        serde_json::json!([host])
    );
    assert_eq!(endpoint["ssl_cert"]["self_signed?"], true);
    assert_eq!(endpoint["app"]["name"], "tlsapp");
    assert!(
        endpoint.get("private_key").is_none(),
        "the key is never served back"
    );

    let r = curl(port, host, "/uploaded", &crt, &["--http2"]);
    assert_eq!(
        (r.status, r.version.as_str()),
        (200, "HTTP/2"),
        "the uploaded certificate is served: {}",
        r.stderr
    );
    let r = curl(port, host, "/", &ca, &[]);
    assert_eq!(
        r.status, 0,
        "the local CA's certificate is no longer the one served"
    );

    // A custom domain with its own uploaded certificate, over HTTP/2.
    let custom = "www.tls-example.test";
    s.ok(&["domains:add", custom, "-a", "tlsapp"]);
    let (chain2, key2) = kiln_tls::self_signed(&[custom]).unwrap();
    let crt2 = write(&work, "custom.crt", &chain2);
    let key2 = write(&work, "custom.key", &key2);
    s.ok(&[
        "certs:add",
        crt2.to_str().unwrap(),
        key2.to_str().unwrap(),
        "-a",
        "tlsapp",
    ]);
    let r = curl(port, custom, "/custom", &crt2, &["--http2"]);
    assert_eq!(
        (r.status, r.version.as_str()),
        (200, "HTTP/2"),
        "{}",
        r.stderr
    );
    assert!(
        r.body
            .starts_with("path=/custom version=HTTP/1.1 proto=https"),
        "{}",
        r.body
    );
    let domain_id = s
        .api("GET", &format!("/apps/tlsapp/domains/{custom}"), None)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let endpoints = s.api("GET", "/apps/tlsapp/sni-endpoints", None).json();
    let for_custom = endpoints
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ssl_cert"]["cert_domains"] == serde_json::json!([custom]))
        .unwrap();
    assert_eq!(
        for_custom["domains"],
        serde_json::json!([domain_id]),
        "the endpoint lists the domain it serves"
    );
    let first_name = endpoints
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ssl_cert"]["cert_domains"] == serde_json::json!([host]))
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();

    // A restart keeps the CA clients trust and the uploaded certificates.
    let mut s = s;
    s.stop();
    let s = Server::start_in(s.dir.clone(), &flags);
    let port = https_port(&s);
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        ca_before,
        "the local CA survives a restart"
    );
    let r = wait_for(BOOT, "the app to answer over HTTPS after a restart", || {
        let r = curl(port, host, "/again", &crt, &[]);
        (r.status == 200).then_some(r)
    });
    assert!(r.body.contains("proto=https"), "{}", r.body);
    assert_eq!(curl(port, custom, "/", &crt2, &[]).status, 200);

    // Removed, the local CA's certificate is back.
    let err = s.fails(&["certs:remove", "-a", "tlsapp"]);
    assert!(err.contains("--name"), "two certificates: which one? {err}");
    let removed = s.ok(&[
        "certs:remove",
        "-a",
        "tlsapp",
        "--name",
        &first_name,
        "--confirm",
        "tlsapp",
    ]);
    assert_eq!(
        removed,
        format!("Removing SSL certificate {first_name} from ⬢ tlsapp... done\n")
    );
    let r = curl(port, host, "/back", &ca, &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let listed = s.ok(&["certs", "-a", "tlsapp"]);
    assert!(
        !listed.contains(&first_name) && listed.contains(custom),
        "{listed}"
    );
}
