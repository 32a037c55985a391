//! The answer to a request head the router refused (Heroku's limits, smuggling rules,
//! malformed targets): the router's page, and an H26 line when the head named an app.

use crate::Shared;
use crate::access_log::{Outcome, RequestLog};
use crate::body::RouterBody;
use crate::hcode::HCode;
use crate::head::Rejection;
use crate::pages;
use crate::request_id;
use crate::table::LogTarget;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Response, Uri};
use std::sync::Arc;

/// The router's answer to a refused head, logged as H26 when the head named an app.
pub(crate) fn refused_head(
    shared: &Shared,
    client_ip: &HeaderValue,
    r: Rejection,
) -> Response<RouterBody> {
    let target = r.target.as_deref().and_then(|t| {
        // A target refused for its characters is logged with them percent-encoded.
        t.parse::<Uri>()
            .or_else(|_| loggable_target(t).parse::<Uri>())
            .ok()
    });
    let host = target
        .as_ref()
        .and_then(|u| u.authority())
        .map(|a| a.as_str().to_string())
        .or(r.host.clone());
    let app = host
        .as_deref()
        .and_then(|h| shared.table.lookup_host(h))
        .filter(|a| !a.removed);
    if let (Some(app), Some(host)) = (app, host) {
        let fwd = match r.forwarded_for.as_deref().and_then(|f| {
            HeaderValue::from_str(&format!("{f}, {}", client_ip.to_str().unwrap_or_default())).ok()
        }) {
            Some(v) => v,
            None => client_ip.clone(),
        };
        let request_id = match r.request_id.as_deref() {
            Some(id) if request_id::is_valid(id.as_bytes()) => {
                HeaderValue::from_str(id).unwrap_or_else(|_| request_id::generate())
            }
            _ => request_id::generate(),
        };
        let meter = shared.table.meter(&app.app_id);
        let log = RequestLog {
            logs: LogTarget::Shared(Arc::clone(&shared.logs)),
            app,
            method: r
                .method
                .as_deref()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                .unwrap_or(Method::GET),
            path: target
                .and_then(|u| u.path_and_query().cloned())
                .or_else(|| Some(PathAndQuery::from_static("/"))),
            host: HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("")),
            request_id,
            fwd,
            proto: shared.listener.proto,
            idle: shared.config.idle_timeout,
            client: None,
            meter,
        };
        log.emit_with_cause(
            &Outcome {
                code: Some(HCode::H26),
                status: Some(r.status.as_u16()),
                ..Outcome::default()
            },
            Some(r.cause),
        );
    }
    pages::refused(r.status)
}

/// `target` with the characters a URI may not hold (`<`, `"`, spaces…) percent-encoded.
fn loggable_target(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for c in target.chars() {
        if c.is_ascii() && (c <= ' ' || c == '\x7f' || "<>\"`{}\\^|".contains(c)) {
            out.push_str(&format!("%{:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
    out
}
