//! The pages the router answers with by itself. Like Heroku's they are small, static and
//! say what happened without revealing anything about the app. For its 503s the router
//! serves the app's `MAINTENANCE_PAGE_URL` (H80) or `ERROR_PAGE_URL` (the other codes)
//! instead when the app has one and it can be fetched ([`page_fetch`](crate::page_fetch)).

use crate::body::RouterBody;
use crate::config::RouterConfig;
use crate::hcode::HCode;
use crate::page_fetch;
use crate::table::AppEntry;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

// One stylesheet for every page, inlined so a page needs no second request.
macro_rules! style {
    () => {
        "<style>html,body{margin:0;height:100%}body{display:flex;align-items:center;justify-content:center;\
font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;background:#f6f4f1;color:#3b3633}\
main{max-width:32rem;padding:2.5rem;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}\
h1{margin:0 0 1rem;font-size:1.5rem;color:#b4451f}p{line-height:1.5;margin:.5rem 0}\
code{background:#f1ece6;padding:.1rem .35rem;border-radius:4px}</style>"
    };
}

macro_rules! page {
    ($title:literal, $body:literal) => {
        concat!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
            $title,
            "</title>",
            style!(),
            "</head><body><main><h1>",
            $title,
            "</h1>",
            $body,
            "</main></body></html>\n"
        )
    };
}

const APPLICATION_ERROR: &str = page!(
    "Application error",
    "<p>An error occurred in the application and your page could not be served. If you are the application owner, check your logs for details.</p><p>You can do this with the command <code>kiln logs --tail</code>.</p>"
);
const MAINTENANCE: &str = page!(
    "Offline for maintenance",
    "<p>This app is undergoing maintenance right now.</p><p>Please check back in a little while.</p>"
);
const NO_SUCH_APP: &str = page!(
    "There’s nothing here, yet.",
    "<p>No app is served at this address.</p><p>If you expected one, check the app’s name and domain.</p>"
);
const BAD_REQUEST: &str = page!(
    "Bad request",
    "<p>The router could not understand this request.</p>"
);
const TIMEOUT: &str = page!(
    "Request timeout",
    "<p>The request was not received in time.</p>"
);
const METHOD_NOT_ALLOWED: &str = page!(
    "Method not allowed",
    "<p>The router does not serve this method.</p>"
);
const URI_TOO_LONG: &str = page!(
    "Request line too long",
    "<p>The request line is longer than 8192 bytes.</p>"
);
const EXPECTATION_FAILED: &str = page!(
    "Expectation failed",
    "<p>Only <code>Expect: 100-continue</code> is supported.</p>"
);
const HEADERS_TOO_LARGE: &str = page!(
    "Request headers too large",
    "<p>A header line is longer than 8192 bytes, a header name longer than 1000, or there are more than 1000 headers.</p>"
);
const BUSY: &str = page!(
    "Busy",
    "<p>The router is serving as many requests over HTTP/2 as it allows right now.</p><p>Please try again in a moment.</p>"
);
const VERSION_NOT_SUPPORTED: &str = page!(
    "HTTP version not supported",
    "<p>The router speaks HTTP/1.0 and HTTP/1.1 here.</p>"
);

/// The router's own page for a router error on `app`.
pub(crate) fn for_code(code: HCode, _app: &AppEntry) -> Response<RouterBody> {
    match code {
        // The request was at fault, not the app.
        HCode::H26 => bad_request(),
        // The client stopped sending; it is told so if it still listens (H28 logs 499).
        HCode::H28 => closing(html(StatusCode::REQUEST_TIMEOUT, TIMEOUT)),
        HCode::H80 => html(code.status(), MAINTENANCE),
        _ => html(code.status(), APPLICATION_ERROR),
    }
}

/// The page for a router error on `app`: the app's own maintenance or error page when it
/// has one that can be fetched (always with the error's 503), else the router's.
pub(crate) async fn error_page(
    code: HCode,
    app: &AppEntry,
    config: &RouterConfig,
) -> Response<RouterBody> {
    let url = match code {
        HCode::H80 => app.maintenance_page_url.as_deref(),
        _ if code.status() == StatusCode::SERVICE_UNAVAILABLE => app.error_page_url.as_deref(),
        _ => None,
    };
    if let Some(page) = match url {
        Some(url) => page_fetch::page(url, config).await,
        None => None,
    } {
        let mut response = Response::new(RouterBody::full(page.body.clone()));
        *response.status_mut() = code.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, page.content_type.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store"),
        );
        return response;
    }
    for_code(code, app)
}

/// The answer to a request whose head the router refused before it reached an app.
pub(crate) fn refused(status: StatusCode) -> Response<RouterBody> {
    let page = match status {
        StatusCode::METHOD_NOT_ALLOWED => METHOD_NOT_ALLOWED,
        StatusCode::URI_TOO_LONG => URI_TOO_LONG,
        StatusCode::EXPECTATION_FAILED => EXPECTATION_FAILED,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => HEADERS_TOO_LARGE,
        StatusCode::HTTP_VERSION_NOT_SUPPORTED => VERSION_NOT_SUPPORTED,
        _ => BAD_REQUEST,
    };
    closing(html(status, page))
}

/// An HTTP/2 stream over the listener's cap on requests in flight (see `tls`).
pub(crate) fn busy() -> Response<RouterBody> {
    html(StatusCode::SERVICE_UNAVAILABLE, BUSY)
}

/// No app is served at the requested host.
pub(crate) fn no_such_app() -> Response<RouterBody> {
    html(StatusCode::NOT_FOUND, NO_SUCH_APP)
}

/// The request cannot be routed at all (e.g. several `Host` headers).
pub(crate) fn bad_request() -> Response<RouterBody> {
    closing(html(StatusCode::BAD_REQUEST, BAD_REQUEST))
}

/// The key authorization for an ACME HTTP-01 challenge (RFC 8555 §8.3).
pub(crate) fn acme_challenge(key_authorization: String) -> Response<RouterBody> {
    let mut response = Response::new(RouterBody::full(key_authorization.into()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// After a malformed request the connection's state is suspect; it is not reused.
fn closing(mut response: Response<RouterBody>) -> Response<RouterBody> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn html(status: StatusCode, page: &'static str) -> Response<RouterBody> {
    let mut response = Response::new(RouterBody::from_static(page.as_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // A transient router error must not be cached by browsers or CDNs in front.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}
