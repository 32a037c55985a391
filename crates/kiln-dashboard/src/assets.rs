//! The stylesheet and the script, compiled into the binary (no CDN; the dashboard works with
//! no network but the server's). Their names carry a hash of their content, so a browser may
//! keep them for a year and still never runs an old script against a new page.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// FNV-1a: enough to tell two versions of a file apart, and computed at compile time.
const fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

const CSS_HASH: u64 = fnv(CSS.as_bytes());
const JS_HASH: u64 = fnv(JS.as_bytes());

static CSS_NAME: LazyLock<String> = LazyLock::new(|| format!("dashboard-{CSS_HASH:016x}.css"));
static JS_NAME: LazyLock<String> = LazyLock::new(|| format!("dashboard-{JS_HASH:016x}.js"));

pub fn css_name() -> &'static str {
    &CSS_NAME
}

pub fn js_name() -> &'static str {
    &JS_NAME
}

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = if file == *CSS_NAME {
        (CSS, "text/css; charset=utf-8")
    } else if file == *JS_NAME {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
