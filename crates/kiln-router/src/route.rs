//! The first step of a request: which app it is for. Exactly one `Host` (or an
//! absolute-form target's authority) must name an app in the [route table](crate::table);
//! ACME HTTP-01 challenges Kiln published are answered before that, whatever the host.

use crate::table::{AppSlot, RouteTable};
use http::header::{self, HeaderValue};
use http::{Request, Uri};
use std::sync::Arc;

/// The host the request is for; `None` (answered 400) without one, or with several, which
/// Heroku has refused since 2016 because two parties could each read a different one. An
/// absolute-form target (`GET http://host/ HTTP/1.1`) overrides `Host` (RFC 9112 §3.2.2) and is rewritten to
/// origin form for the dyno.
pub(crate) fn request_host<B>(req: &mut Request<B>) -> Option<HeaderValue> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return None;
    }
    let Some(authority) = req.uri().authority() else {
        return host;
    };
    let authority = HeaderValue::from_str(authority.as_str()).ok()?;
    req.headers_mut().insert(header::HOST, authority.clone());
    let origin = req
        .uri()
        .path_and_query()
        .cloned()
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    *req.uri_mut() = origin;
    Some(authority)
}

/// ACME HTTP-01 validation requests for a challenge Kiln published are answered by the
/// router itself, whatever the host routes to (or whether it routes at all: a domain can be
/// validated before its app has a web dyno). Other tokens go to the app as usual, which may
/// run its own ACME client.
pub(crate) fn acme_challenge<B>(table: &RouteTable, req: &Request<B>) -> Option<String> {
    const PREFIX: &str = "/.well-known/acme-challenge/";
    let token = req.uri().path().strip_prefix(PREFIX)?;
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return None;
    }
    table.acme_challenge(token)
}

/// The app `host` names, if any.
pub(crate) fn app_slot(table: &RouteTable, host: &HeaderValue) -> Option<Arc<AppSlot>> {
    table.lookup_slot(host.to_str().ok()?)
}
