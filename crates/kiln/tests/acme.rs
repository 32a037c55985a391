//! Automatic Certificate Management end to end, against a real ACME server: Debian's
//! `pebble` (Let's Encrypt's RFC 8555 test CA) with `pebble-challtestsrv` as its DNS,
//! answering 127.0.0.1 for every name. Pebble validates HTTP-01 for real: it connects to
//! Kiln's router on its HTTP port and fetches `/.well-known/acme-challenge/<token>`
//! (`PEBBLE_VA_ALWAYS_VALID` is never set). Kiln trusts Pebble's HTTPS through
//! `--acme-ca-file`; the test trusts only Pebble's issuing root when it checks what Kiln's
//! HTTPS listener presents.
//!
//! `./test.sh` installs pebble when it is missing.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const ISSUE: Duration = Duration::from_secs(120);

/// A child process killed and reaped when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str) {
    wait_for(Duration::from_secs(20), what, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

struct Pebble {
    _dns: Proc,
    _pebble: Option<Proc>,
    dns_admin: u16,
    admin: u16,
    api_ca: PathBuf,
}

impl Pebble {
    /// A DNS record of the mock DNS server: `host` resolves to `ip`.
    fn add_a(&self, host: &str, ip: &str) {
        let r = http(
            self.dns_admin,
            "POST",
            "127.0.0.1",
            "/add-a",
            &[],
            Some(&format!(r#"{{"host":"{host}","addresses":["{ip}"]}}"#)),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }

    /// The root Pebble issues under (it makes a new one at every start).
    fn issuing_root(&self) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.api_ca)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.admin))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fetching Pebble's root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// Starts the mock DNS; Pebble itself starts in [`start_pebble`] once Kiln's router port is
/// known (Pebble validates on one fixed HTTP port).
fn start_dns(dir: &Path) -> (Proc, u16, u16) {
    let (dns, admin) = (free_port(), free_port());
    let child = Command::new("pebble-challtestsrv")
        .args([
            "-management",
            &format!("127.0.0.1:{admin}"),
            "-dns01",
            &format!("127.0.0.1:{dns}"),
        ])
        .args([
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("challtestsrv.log")).unwrap())
        .spawn()
        .expect("pebble-challtestsrv is installed (apt-get install pebble; ./test.sh does it)");
    let p = Proc(child);
    wait_listening(admin, "pebble-challtestsrv's management API");
    (p, dns, admin)
}

fn start_pebble(
    dir: &Path,
    listen: u16,
    admin: u16,
    dns: u16,
    http_port: u16,
    cert: &Path,
    key: &Path,
) -> Proc {
    let config = dir.join("pebble.json");
    let json = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{admin}"),
        "certificate": cert, "privateKey": key,
        "httpPort": http_port, "tlsPort": free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
    }});
    std::fs::write(&config, json.to_string()).unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(&config)
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        // No artificial validation delay; a real check still happens.
        .env("PEBBLE_VA_NOSLEEP", "1")
        // Some nonces are refused at random, so the client's badNonce retry is exercised.
        .env("PEBBLE_WFE_NONCEREJECT", "10")
        // Every order validates again (a refresh must prove control anew).
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(std::fs::File::create(dir.join("pebble.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble is installed (apt-get install pebble; ./test.sh does it)");
    let p = Proc(child);
    wait_listening(listen, "pebble's ACME API");
    p
}

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

/// A TLS handshake with Kiln's HTTPS listener naming `host`, trusting only `root` (PEM):
/// the leaf's serial and DNS names, or the handshake's error.
fn handshake(port: u16, host: &str, root: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(root) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let _ = conn.writer().flush();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?
        .clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| e.to_string())?;
    let names = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| {
                    if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                        Some(d.to_string())
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((parsed.raw_serial().to_vec(), names))
}

/// The custom domain's object from the API.
fn domain(s: &Server, app: &str, host: &str) -> serde_json::Value {
    let r = s.api("GET", &format!("/apps/{app}/domains/{host}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// Waits until the domain's `acm_status` is `want` (panicking early on the other outcome).
fn wait_status(s: &Server, app: &str, host: &str, want: &str) -> serde_json::Value {
    wait_for(ISSUE, &format!("{host}'s acm_status to be {want}"), || {
        let d = domain(s, app, host);
        let status = d["acm_status"].as_str().unwrap_or("").to_string();
        if status == want {
            return Some(d);
        }
        if (status == "failed" || status == "ok") && want != status {
            panic!(
                "{host}: acm_status {status}, reason {:?}",
                d["acm_status_reason"]
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        None
    })
}

#[test]
fn certificates_are_issued_renewed_and_removed_through_a_real_acme_server() {
    let work = TempDir::new("acme-pebble");
    let (api_ca, cert, key) = test_ca(&work, "pebble");
    let (dns, dns_port, dns_admin) = start_dns(&work);
    let (listen, admin) = (free_port(), free_port());
    let directory = format!("https://127.0.0.1:{listen}/dir");
    // Kiln starts first (the client reaches the CA only when it first orders), so Pebble
    // can be pointed at the router's HTTP port.
    let s = Server::start_with(
        "acme",
        &[
            "--router-tls-listen",
            "127.0.0.1:0",
            "--acme-directory",
            &directory,
            "--acme-ca-file",
            api_ca.to_str().unwrap(),
            "--acme-contact",
            "ops@example.test",
        ],
    );
    wait_for(Duration::from_secs(10), "the ACME start line", || {
        s.server_log()
            .contains(&format!("ACME:         {directory}"))
            .then_some(())
    });
    let pebble = Pebble {
        _pebble: Some(start_pebble(
            &work,
            listen,
            admin,
            dns_port,
            s.router_port,
            &cert,
            &key,
        )),
        _dns: dns,
        dns_admin,
        admin,
        api_ca,
    };
    let tls = https_port(&s);
    let app = "acme-app";
    s.ok(&["apps:create", app]);
    s.ok(&["domains:add", "www.example.test", "-a", app]);
    assert!(
        s.ok(&["certs:auto", "-a", app])
            .contains("Automatic Certificate Management is disabled on ⬢ acme-app")
    );

    let out = s.ok(&["certs:auto:enable", "-a", app]);
    assert!(
        out.starts_with("Enabling Automatic Certificate Management... starting."),
        "{out}"
    );
    let d = wait_status(&s, app, "www.example.test", "ok");
    assert_eq!(d["acm_status_reason"], serde_json::Value::Null);
    let root = pebble.issuing_root();

    // The HTTPS router presents a chain that Pebble's root verifies, for this name.
    let (serial, names) =
        handshake(tls, "www.example.test", &root).expect("a certificate Pebble's root vouches for");
    assert_eq!(names, ["www.example.test"]);
    let app_json = s.api("GET", &format!("/apps/{app}"), None).json();
    assert_eq!(app_json["acm"], true);
    let certs = s.ok(&["certs", "-a", app]);
    assert!(
        certs.contains("www.example.test") && certs.contains("ACM"),
        "{certs}"
    );
    let status = s.ok(&["certs:auto", "-a", app]);
    assert!(
        status.contains("enabled on ⬢ acme-app") && status.contains("www.example.test  OK"),
        "{status}"
    );

    // A domain whose name points where nothing answers: the CA cannot validate it; the
    // reason says why, and the certificate already issued keeps being served.
    pebble.add_a("broken.example.test", "127.0.0.2");
    s.ok(&["domains:add", "broken.example.test", "-a", app]);
    let broken = wait_status(&s, app, "broken.example.test", "failed");
    let reason = broken["acm_status_reason"].as_str().unwrap();
    assert!(
        reason.contains("could not validate broken.example.test") && reason.contains("127.0.0.2"),
        "{reason}"
    );
    // Wildcards cannot be validated over HTTP-01 and are said to be so at once.
    s.ok(&["domains:add", "*.wild.example.test", "-a", app]);
    let wild = wait_status(&s, app, "*.wild.example.test", "failed");
    assert!(
        wild["acm_status_reason"]
            .as_str()
            .unwrap()
            .contains("Wildcard"),
        "{wild}"
    );
    assert_eq!(
        handshake(tls, "www.example.test", &root).unwrap().0,
        serial,
        "untouched by the failures"
    );
    let status = s.ok(&["certs:auto", "-a", app]);
    assert!(
        status.contains("Some domains are failing validation") && status.contains("Failed"),
        "{status}"
    );
    // Editing ACM's certificate by hand is refused.
    let name = s
        .api("GET", &format!("/apps/{app}/sni-endpoints"), None)
        .json()[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.api("DELETE", &format!("/apps/{app}/sni-endpoints/{name}"), None);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("certs:auto:disable"), "{r:?}");

    // certs:auto:refresh orders a new certificate: a different serial, still verified.
    let out = s.ok(&["certs:auto:refresh", "-a", app]);
    assert!(
        out.contains("Refreshing Automatic Certificate Management for ⬢ acme-app... done"),
        "{out}"
    );
    let (renewed, names) = wait_for(ISSUE, "a new certificate after certs:auto:refresh", || {
        let (serial2, names) = handshake(tls, "www.example.test", &root).ok()?;
        (serial2 != serial).then_some((serial2, names))
    });
    assert_ne!(renewed, serial);
    assert_eq!(names, ["www.example.test"]);
    wait_status(&s, app, "www.example.test", "ok");
    wait_status(&s, app, "broken.example.test", "failed");
    let logs = s.logs(app);
    assert!(
        logs.contains("Automatic Certificate Management issued a certificate for www.example.test"),
        "{logs}"
    );
    assert!(
        logs.contains("Automatic Certificate Management failed for broken.example.test"),
        "{logs}"
    );

    // Disabling removes ACM's certificates: the name is back on the local CA's.
    let out = s.ok(&["certs:auto:disable", "-a", app, "--confirm", app]);
    assert!(
        out.contains("Disabling Automatic Certificate Management for ⬢ acme-app... done"),
        "{out}"
    );
    assert!(
        handshake(tls, "www.example.test", &root).is_err(),
        "no longer Pebble's certificate"
    );
    assert_eq!(
        domain(&s, app, "www.example.test")["acm_status"],
        serde_json::Value::Null
    );
    assert!(!s.ok(&["certs", "-a", app]).contains("ACM"));
    assert_eq!(
        s.api("GET", &format!("/apps/{app}"), None).json()["acm"],
        false
    );
}

/// Without `--acme-directory`, enabling is refused with how to configure it; bad input and
/// unknown apps get Heroku's errors, and nothing changes.
#[test]
fn acm_without_an_acme_server_says_how_to_configure_it() {
    let s = Server::start("acme-off");
    s.ok(&["apps:create", "plain-app"]);
    let r = s.api("POST", "/apps/plain-app/acm", None);
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["id"], "invalid_params");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("--acme-directory"),
        "{r:?}"
    );
    assert_eq!(s.api("PATCH", "/apps/plain-app/acm", None).status, 422);
    let r = s.api("DELETE", "/apps/plain-app/acm", None);
    assert_eq!(
        (r.status, r.json()["acm"].clone()),
        (200, serde_json::Value::Bool(false)),
        "disabling is always possible"
    );
    for method in ["POST", "PATCH", "DELETE"] {
        let r = s.api(method, "/apps/no-such-app/acm", None);
        assert_eq!(
            (r.status, r.json()["id"].as_str()),
            (404, Some("not_found")),
            "{method}: {r:?}"
        );
    }
    assert_eq!(
        s.api("GET", "/apps/plain-app/acm", None).status,
        404,
        "no GET on Heroku either"
    );
    let out = s.fails(&["certs:auto:enable", "-a", "plain-app"]);
    assert!(
        out.contains("Enabling Automatic Certificate Management... !")
            && out.contains("--acme-directory"),
        "{out}"
    );
    assert!(
        s.fails(&["certs:auto:refresh", "-a", "plain-app"])
            .contains("--acme-directory")
    );
    assert!(
        s.fails(&[
            "certs:auto:disable",
            "-a",
            "plain-app",
            "--confirm",
            "other"
        ])
        .contains("did not match")
    );
    assert!(
        s.ok(&["certs:auto", "-a", "plain-app"])
            .contains("disabled")
    );
    assert!(
        s.fails(&["certs:auto", "-a", "no-such-app"])
            .contains("Couldn't find that app")
    );
    assert_eq!(s.api("GET", "/apps/plain-app", None).json()["acm"], false);

    // ACME flags without a directory are a configuration mistake, said at start.
    let out = Command::new(KILN)
        .args(["server", "--data-dir"])
        .arg(s.dir.join("other"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
            "--acme-contact",
            "a@example.test",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("off without --acme-directory"),
        "{out:?}"
    );
    let out = Command::new(KILN)
        .args(["server", "--data-dir"])
        .arg(s.dir.join("other2"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
            "--acme-directory",
            "http://insecure.example/dir",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be https"),
        "{out:?}"
    );
}
