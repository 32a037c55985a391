//! Static sites (issue 16, acceptance 2): a site with a `static.json`, pushed with `git push`
//! and served through the router by the stack's nginx as heroku-buildpack-static serves it:
//! the headers static.json declares are on the responses, clean URLs work both ways, text is
//! gzipped when the client asks and only then, the error page is static.json's, and nginx's
//! access lines reach `kiln logs`. A malformed static.json fails the push with a message that
//! says what is wrong and creates no release; a `public/` directory alone is a static site.

use crate::common::*;
use std::path::Path;
use std::time::Duration;

const STATIC_JSON: &str = r#"{
  "clean_urls": true,
  "headers": {
    "/**": {"X-Kiln-Site": "every page"},
    "/assets/**": {"Cache-Control": "public, max-age=600", "X-Kiln-Site": "assets"}
  },
  "redirects": {"/old-about": "/about"},
  "error_page": "404.html"
}
"#;

fn css() -> String {
    // Longer than nginx's gzip_min_length (256 bytes).
    ".page { color: #333; margin: 0 auto; }\n".repeat(40)
}

fn nginx_installed() {
    assert!(
        Path::new("/usr/sbin/nginx").exists(),
        "nginx is not installed: test.sh installs nginx-light"
    );
}

/// A GET through the router with extra request headers.
fn get_with(s: &Server, app: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    http(s.router_port, "GET", &s.host(app), path, headers, None)
}

#[test]
fn a_static_json_site_gets_its_headers_clean_urls_and_gzip() {
    nginx_installed();
    let s = Server::start("lang-static");
    s.ok(&["apps:create", "site"]);
    let css = css();
    let dir = fixture_repo(
        "static-site",
        &[
            ("static.json", STATIC_JSON),
            ("public/index.html", "<h1>home page</h1>\n"),
            ("public/about.html", "<h1>about page</h1>\n"),
            ("public/404.html", "<h1>static.json's own 404</h1>\n"),
            ("public/assets/site.css", css.as_str()),
        ],
    );
    let (ok, out) = s.push(&dir, "site");
    assert!(ok, "{out}");
    assert!(out.contains("Static app detected"), "{out}");
    assert!(
        out.contains("Serving root public/, clean URLs, headers for 2 path(s), 1 redirect(s), error page /404.html"),
        "{out}"
    );

    let home = s.wait_for_app("site", Duration::from_secs(60), "the static site", || {
        let r = s.get("site", "/");
        (r.status == 200).then_some(r)
    });
    assert_eq!(home.body, "<h1>home page</h1>\n");
    assert_eq!(home.header("x-kiln-site"), Some("every page"), "{home:?}");
    assert!(
        home.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{home:?}"
    );

    // Clean URLs: /about serves about.html, /about.html redirects to /about.
    let r = s.get("site", "/about");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "<h1>about page</h1>\n");
    let r = s.get("site", "/about.html");
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("/about"), "{r:?}");
    // static.json's redirect.
    let r = s.get("site", "/old-about");
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("/about"), "{r:?}");

    // The last pattern that matches gives the headers: /assets/** over /**.
    let plain = s.get("site", "/assets/site.css");
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.body, css);
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=600"),
        "{plain:?}"
    );
    assert_eq!(plain.header("x-kiln-site"), Some("assets"), "{plain:?}");
    assert_eq!(plain.header("content-encoding"), None, "{plain:?}");
    assert!(
        plain
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/css"),
        "{plain:?}"
    );
    // gzip when the client asks for it.
    let gz = get_with(
        &s,
        "site",
        "/assets/site.css",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(gz.status, 200, "{gz:?}");
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{gz:?}");
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"), "{gz:?}");
    assert_eq!(
        gz.header("cache-control"),
        Some("public, max-age=600"),
        "{gz:?}"
    );
    assert!(
        gz.body.len() < css.len() / 4,
        "not compressed: {} bytes",
        gz.body.len()
    );

    // static.json's error page, with a 404.
    let r = s.get("site", "/no/such/page");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body, "<h1>static.json's own 404</h1>\n");
    // Files outside the root and dotfiles are not served.
    let r = s.get("site", "/static.json");
    assert_eq!(r.status, 404, "{r:?}");

    let logs = s.wait_for_app(
        "site",
        Duration::from_secs(20),
        "nginx's access lines",
        || {
            let l = s.logs("site");
            l.contains("\"GET /about HTTP/1.").then_some(l)
        },
    );
    assert!(logs.contains("\"GET /assets/site.css HTTP/1."), "{logs}");
}

#[test]
fn a_malformed_static_json_fails_the_push_and_creates_no_release() {
    nginx_installed();
    let s = Server::start("lang-static-bad");
    s.ok(&["apps:create", "badsite"]);
    let releases = s.release_versions("badsite");
    for (static_json, expect) in [
        (
            "{\"clean_urls\": true,\n",
            "static.json: is not valid JSON: Expecting property name enclosed in double quotes at line 2",
        ),
        (
            r#"{"clean_urls": "yes"}"#,
            "static.json: \"clean_urls\" must be true or false, not a string (\"yes\")",
        ),
        (
            r#"{"headers": {"/": {"X-Injected": "a\r\nSet-Cookie: stolen=1"}}}"#,
            "has a character a header cannot carry",
        ),
        (
            r#"{"headers": {"/": {"X-A; add_header X-B": "1"}}}"#,
            "is not a header name",
        ),
        (
            r#"{"root": "../../etc"}"#,
            "\"root\": \"../../etc\" leads outside the app",
        ),
        (
            r#"{"redirects": {"/a": "//evil.example"}}"#,
            "is not a URL to redirect to",
        ),
    ] {
        let dir = fixture_repo(
            "static-site-bad",
            &[
                ("static.json", static_json),
                ("public/index.html", "<h1>never served</h1>\n"),
            ],
        );
        let (ok, out) = s.push(&dir, "badsite");
        assert!(!ok, "{static_json}:\n{out}");
        assert!(out.contains(expect), "{expect}:\n{out}");
        assert_eq!(s.release_versions("badsite"), releases, "{static_json}");
    }

    // A public/ directory and nothing else is a static site, static.json or not.
    let dir = fixture_repo(
        "static-site-plain",
        &[("public/index.html", "<h1>just public</h1>\n")],
    );
    let (ok, out) = s.push(&dir, "badsite");
    assert!(ok, "{out}");
    assert!(out.contains("Static app detected"), "{out}");
    assert!(
        out.contains("No static.json: serving the files as they are"),
        "{out}"
    );
    let body = s.wait_for_app(
        "badsite",
        Duration::from_secs(60),
        "the static site",
        || {
            let r = s.get("badsite", "/");
            (r.status == 200).then_some(r.body)
        },
    );
    assert_eq!(body, "<h1>just public</h1>\n");
    assert_eq!(s.release_versions("badsite").len(), releases.len() + 1);
}
