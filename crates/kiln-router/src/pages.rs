//! The pages the router answers with by itself. Like Heroku's they are small, static and
//! say what happened without revealing anything about the app. Issue 5 adds serving the
//! app's `ERROR_PAGE_URL` / `MAINTENANCE_PAGE_URL` instead; [`for_code`] already gets the
//! app for that.

use crate::body::RouterBody;
use crate::hcode::HCode;
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
const MAINTENANCE: &str = page!("Offline for maintenance", "<p>This app is undergoing maintenance right now.</p><p>Please check back in a little while.</p>");
const NO_SUCH_APP: &str =
    page!("There’s nothing here, yet.", "<p>No app is served at this address.</p><p>If you expected one, check the app’s name and domain.</p>");
const BAD_REQUEST: &str = page!("Bad request", "<p>The router could not understand this request.</p>");

/// The page for a router error on `app`.
pub(crate) fn for_code(code: HCode, _app: &AppEntry) -> Response<RouterBody> {
    let page = if code == HCode::H80 { MAINTENANCE } else { APPLICATION_ERROR };
    html(code.status(), page)
}

/// No app is served at the requested host.
pub(crate) fn no_such_app() -> Response<RouterBody> {
    html(StatusCode::NOT_FOUND, NO_SUCH_APP)
}

/// The request cannot be routed at all (e.g. several `Host` headers).
pub(crate) fn bad_request() -> Response<RouterBody> {
    let mut response = html(StatusCode::BAD_REQUEST, BAD_REQUEST);
    // After a malformed request the connection's state is suspect; do not reuse it.
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn html(status: StatusCode, page: &'static str) -> Response<RouterBody> {
    let mut response = Response::new(RouterBody::from_static(page.as_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // A transient router error must not be cached by browsers or CDNs in front.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    response
}
