//! The Heroku Platform API v3, served by axum, so that Heroku's own CLI and client libraries
//! work against Kiln: the same paths, JSON shapes, error bodies (`{id, message}`), `Accept:
//! application/vnd.heroku+json; version=3[.variant]`, Bearer (or Basic) auth, `Range`
//! pagination, `Request-Id` and `RateLimit-Remaining` headers, and log sessions whose
//! `logplex_url` serves server-sent events.
//!
//! Handlers are thin: they parse and check input, call the platform's use cases, and render
//! objects with [`json`].

mod access;
mod accounts;
mod acm;
mod addons;
mod auth;
mod catalog;
mod data;
mod domains;
mod drains;
pub mod error;
mod handlers;
pub mod json;
mod logs;
mod metrics;
pub mod range;
mod run;
mod schedules;
mod serve;
mod sleep;
mod sni;

pub use run::Rendezvous;
pub use serve::{ServeConfig, TlsDoor, serve};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::ApiError;
use kiln_platform::Platform;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub platform: Arc<Platform>,
    attaches: Arc<run::PendingAttaches>,
    /// The port of the API's HTTPS listener, where `heroku run`'s rendezvous connects.
    tls_port: Option<u16>,
}

pub(crate) use kiln_net::ViaTls;

/// Where the client reached this API: the base of the URLs handed to it to follow
/// (`logplex_url`, `attach_url`, a build's `output_stream_url`). It is the host the client
/// used, so a client that came through another name or address (a tunnel) can follow them,
/// with `https` when it came through the HTTPS listener and otherwise the scheme of the
/// configured API URL (a proxy in front may terminate TLS). A missing or malformed `Host`
/// falls back to the configured URL.
pub(crate) struct Origin {
    pub base: String,
    pub tls: bool,
    /// The host the client named, without the port, when it is a safe one.
    pub host: Option<String>,
}

impl axum::extract::FromRequestParts<ApiState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &ApiState,
    ) -> Result<Origin, Self::Rejection> {
        let tls = parts.extensions.get::<ViaTls>().is_some();
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| valid_host(h));
        let configured = st.platform.api_url().trim_end_matches('/');
        let base = match (host, tls) {
            (Some(h), true) => format!("https://{h}"),
            (host, false) => public_base(host, configured),
            (None, true) => match configured.split_once("://") {
                Some((_, rest)) => format!("https://{rest}"),
                None => configured.to_string(),
            },
        };
        Ok(Origin {
            base,
            tls,
            host: host.map(|h| host_without_port(h).to_string()),
        })
    }
}

/// `example.com:5000` → `example.com`, `[::1]:5000` → `[::1]`.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A host name, IPv4 or bracketed IPv6 address, and port: nothing that could add a path,
/// credentials or a second URL to the one we build.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

fn public_base(host: Option<&str>, configured: &str) -> String {
    let configured = configured.trim_end_matches('/');
    match host {
        Some(h) if valid_host(h) => {
            let scheme = configured
                .split_once("://")
                .map_or("http", |(scheme, _)| scheme);
            format!("{scheme}://{h}")
        }
        _ => configured.to_string(),
    }
}

/// The API's doors: its routes, and the rendezvous `heroku run` connects to.
pub struct Api {
    pub router: Router,
    pub rendezvous: Rendezvous,
}

/// The API's router; `extra` (the git routes) is merged in so one listener serves both.
/// A known path with the wrong verb is a JSON 404, as on Heroku (axum's default is an empty 405).
/// `tls_port` is the port of the API's HTTPS listener, if it has one.
pub fn api(platform: Arc<Platform>, extra: Router, tls_port: Option<u16>) -> Api {
    let state = ApiState {
        platform: platform.clone(),
        attaches: Arc::default(),
        tls_port,
    };
    let rendezvous = Rendezvous::new(state.attaches.clone(), platform);
    let api = handlers::routes()
        .merge(logs::routes())
        .merge(run::routes())
        .merge(sni::routes())
        .merge(domains::routes())
        .merge(drains::routes())
        .merge(metrics::routes())
        .merge(sleep::routes())
        .merge(schedules::routes())
        .merge(acm::routes())
        .merge(addons::routes())
        .merge(data::routes())
        .merge(catalog::routes())
        .merge(accounts::routes())
        .merge(access::routes())
        .with_state(state.clone())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(heroku_headers));
    let router = api
        .merge(extra)
        .layer(axum::middleware::from_fn(log_requests));
    Api { router, rendezvous }
}

/// Marks the answer to a request for an endpoint that does not exist.
#[derive(Clone, Copy)]
struct UnknownEndpoint;

async fn not_found() -> Response {
    let mut response = ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header?",
    )
    .into_response();
    response.extensions_mut().insert(UnknownEndpoint);
    response
}

/// Logs every request to the API and git, for the operator: method, path, status, time to the
/// response head, request id. Never a credential or a value: headers and bodies are not
/// logged, nor query strings, and the paths that carry a secret (`kiln run`'s rendezvous, log
/// sessions) are cut at it. Unknown endpoints are logged as warnings.
async fn log_requests(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = loggable_path(req.uri().path());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    let request_id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if response.extensions().get::<UnknownEndpoint>().is_some() {
        tracing::warn!(%method, path, status, ms, request_id, "unknown API endpoint");
    } else {
        tracing::info!(%method, path, status, ms, request_id, "API request");
    }
    response
}

/// The path as logged: cut after the prefix of a route whose next segment is a secret.
fn loggable_path(path: &str) -> String {
    const SECRET_AFTER: [&str; 4] = [
        "/attach/",
        "/log-sessions/",
        "/build-output/",
        "/release-output/",
    ];
    let end = (0..=path.len().min(512))
        .rev()
        .find(|&i| path.is_char_boundary(i))
        .unwrap_or(0);
    let path = &path[..end];
    for prefix in SECRET_AFTER {
        if path.starts_with(prefix) {
            return format!("{prefix}…");
        }
    }
    // A dashboard build page names the build, whose id reads its output.
    if path.starts_with("/dashboard/apps/") {
        if let Some(i) = path.find("/builds/") {
            return format!("{}…", &path[..i + "/builds/".len()]);
        }
    }
    path.to_string()
}

/// Checks the API version asked for and adds Heroku's response headers.
async fn heroku_headers(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Some(accept) = req
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(pos) = accept.find("application/vnd.heroku+json") {
            let params = &accept[pos..];
            let version = params
                .split(';')
                .skip(1)
                .find_map(|p| p.trim().strip_prefix("version="))
                .map(|v| v.split(',').next().unwrap_or(v).trim());
            if let Some(v) = version {
                if v != "3" && !v.starts_with("3.") {
                    return ApiError::new(
                        StatusCode::NOT_ACCEPTABLE,
                        "not_acceptable",
                        format!("Kiln serves API version 3; version={v} was requested."),
                    )
                    .into_response();
                }
            }
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::public_base;

    #[test]
    fn handed_out_urls_follow_the_clients_host_safely() {
        assert_eq!(
            public_base(Some("kiln.example:5000"), "http://127.0.0.1:5000/"),
            "http://kiln.example:5000"
        );
        assert_eq!(
            public_base(Some("[::1]:5000"), "http://127.0.0.1:5000"),
            "http://[::1]:5000"
        );
        assert_eq!(
            public_base(Some("kiln.example.com"), "https://kiln.example.com"),
            "https://kiln.example.com",
            "behind a TLS proxy"
        );
        for hostile in [
            "",
            "evil.example/path",
            "user@evil.example",
            "a b",
            "evil\\x",
            "é.example",
            &"a".repeat(300),
        ] {
            assert_eq!(
                public_base(Some(hostile), "http://127.0.0.1:5000"),
                "http://127.0.0.1:5000",
                "{hostile:?}"
            );
        }
        assert_eq!(
            public_base(None, "http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
    }
}
