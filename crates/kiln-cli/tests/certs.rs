//! `kiln certs*` against an in-process fake API: what is sent and what is printed.

mod support;

use serde_json::json;
use support::{FakeApi, Reply, TempDir, env_for, kiln};

fn endpoint(name: &str) -> serde_json::Value {
    json!({
        "id": "01234567-89ab-cdef-0123-456789abcdef",
        "name": name,
        "domains": [],
        "ssl_cert": {
            "cert_domains": ["www.example.com"],
            "expires_at": "2027-03-01T12:34:56Z",
            "starts_at": "2026-03-01T00:00:00Z",
            "issuer": "CN=www.example.com",
            "subject": "CN=www.example.com",
            "ca_signed?": false,
            "self_signed?": true
        }
    })
}

#[test]
fn certs_add_sends_the_pem_files() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apps/myapp/sni-endpoints") => Reply::Json(201, endpoint("stegosaurus-00042")),
        _ => Reply::Json(404, json!({"id": "not_found", "message": "nope"})),
    });
    let dir = TempDir::new("certs-add");
    std::fs::write(
        dir.path().join("server.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("server.key"),
        "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = kiln(
        &env_for(&api, dir.path()),
        &["certs:add", "server.crt", "server.key", "-a", "myapp"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("Adding SSL certificate to ⬢ myapp... done\nCertificate stegosaurus-00042 added.\nCertificate details:\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("SSL certificate is self signed."),
        "{}",
        out.stdout
    );
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].json(),
        json!({
            "certificate_chain": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "private_key": "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"
        })
    );

    // A missing file is reported before anything is sent.
    let out = kiln(
        &env_for(&api, dir.path()),
        &["certs:add", "nope.crt", "server.key", "-a", "myapp"],
        "",
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nope.crt"), "{}", out.stderr);
    assert_eq!(api.requests().len(), 1);
}

#[test]
fn certs_remove_picks_the_only_certificate_or_asks_for_a_name() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apps/one/sni-endpoints") => {
            Reply::Json(200, json!([endpoint("iguanodon-00001")]))
        }
        ("GET", "/apps/two/sni-endpoints") => Reply::Json(
            200,
            json!([endpoint("iguanodon-00001"), endpoint("oviraptor-00002")]),
        ),
        ("DELETE", "/apps/one/sni-endpoints/iguanodon-00001") => {
            Reply::Json(200, endpoint("iguanodon-00001"))
        }
        _ => Reply::Json(404, json!({"id": "not_found", "message": "nope"})),
    });
    let dir = TempDir::new("certs-remove");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["certs:remove", "-a", "one"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Removing SSL certificate iguanodon-00001 from ⬢ one... done\n"
    );
    let out = kiln(&env, &["certs:remove", "-a", "two"], "");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--name"), "{}", out.stderr);
    let out = kiln(&env, &["certs", "-a", "two"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("oviraptor-00002  www.example.com  2027-03-01 12:34 UTC  False    SNI   0"),
        "{}",
        out.stdout
    );
}
