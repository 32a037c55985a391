//! One request's way through the router, as a short pipeline of the other modules:
//!
//! 1. **host** — exactly one `Host` names an app in the [route table](crate::table), or
//!    the router answers 400/404 itself;
//! 2. **forward** — Heroku's request headers are added and hop-by-hop ones dropped;
//! 3. **decide** — maintenance, blank, scaled-down and crashed apps are answered with their
//!    H-code; a booting app holds the request until a dyno is up or `boot_hold` runs out;
//! 4. **dispatch** — a dyno is chosen ([balance](crate::balance)) and the request sent over
//!    a pooled or new connection ([upstream](crate::upstream)); a dyno that cannot be
//!    reached is quarantined and the next one tried, since the request is still unsent;
//! 5. **respond** — the response streams back through [`RouterBody`], which writes the
//!    router log line when it ends; a 101 hands both connections to [upgrade](crate::upgrade).

use crate::access_log::{Outcome, RequestLog};
use crate::backend::{BackendState, Outstanding};
use crate::balance::{self, Tried};
use crate::body::{Finish, RouterBody};
use crate::cache::HttpCache;
use crate::client::{ClientConn, ReqBody, RequestBody};
use crate::config::RouterConfig;
use crate::dyno_client::{self, DynoBody, Sent};
use crate::forward::{self, Forwarded, ListenerInfo};
use crate::hcode::HCode;
use crate::head::Rejection;
use crate::pages;
use crate::request_id;
use crate::table::{AppEntry, AppSlot, LogTarget, RouteTable};
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use kiln_model::log::LogSink;
use kiln_model::route::WebStatus;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What every request on a listener shares.
pub(crate) struct Shared {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) logs: Arc<dyn LogSink>,
    pub(crate) config: RouterConfig,
    pub(crate) listener: ListenerInfo,
    /// Set once the router starts shutting down, before its connections are told (see
    /// [`server::Stopping`](crate::server::Stopping)).
    pub(crate) stopping: Arc<AtomicBool>,
    /// HTTP/2 requests in flight on the listener. Each may hold a dyno connection, and one
    /// client connection carries many: capped at the connection cap, so that the
    /// descriptors budgeted for the listener (two per connection) hold whatever the mix.
    pub(crate) h2_streams: Arc<tokio::sync::Semaphore>,
    /// The HTTP cache, one per route table (shared by its listeners).
    pub(crate) cache: Arc<HttpCache>,
}

/// Routes one request and produces the client's response. Never fails: every failure is
/// an HTTP answer (and, once the app is known, a router log line).
///
/// `client` is the client connection (or HTTP/2 stream) the request came on: it knows
/// whether a failure on the client's side was malformed input (H26) or idleness (H28).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client_ip: HeaderValue,
    client: Option<ClientConn>,
    mut req: Request<ReqBody>,
) -> Response<RouterBody> {
    let received_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);

    let Some(host) = request_host(&mut req) else {
        return pages::bad_request();
    };
    if let Some(answer) = acme_challenge(&shared.table, &req) {
        return pages::acme_challenge(answer);
    }
    let Some(slot) = host.to_str().ok().and_then(|h| shared.table.lookup_slot(h)) else {
        return pages::no_such_app();
    };

    let upgrade = forward::wants_upgrade(&req);
    let fwd = forward::prepare_request(
        req.headers_mut(),
        &shared.listener,
        &client_ip,
        received_ms,
        upgrade,
    );

    // Futures that only some requests need are boxed: an async fn's future is as large as
    // everything it might await, and every request pays for moving it.
    slot.touch(received_ms);
    let current = slot.current();
    let (app, decision) = match classify(&current) {
        Some(decision) => (current, decision),
        None => Box::pin(decide(&shared.table, &slot, shared.config.boot_hold)).await,
    };
    let log = RequestLog {
        logs: slot.log_target(&shared.logs),
        app,
        method: req.method().clone(),
        path: req.uri().path_and_query().cloned(),
        host,
        request_id: fwd.request_id.clone(),
        fwd: fwd.forwarded_for.clone(),
        proto: shared.listener.proto,
        idle: shared.config.idle_timeout,
        client,
        meter: slot.meter(&shared.table),
    };
    match decision {
        // The cache answers what it can and hands the rest to `dispatch`.
        Decision::Route => {
            let next = |log, req, upgrade| dispatch(&shared.config, log, req, &fwd, upgrade);
            crate::cache::route(&shared.cache, &shared.config, log, req, &fwd, upgrade, next).await
        }
        Decision::Refuse(code) => {
            log.emit(&Outcome::refused(code));
            Box::pin(pages::error_page(code, &log.app, &shared.config)).await
        }
        Decision::Gone => pages::no_such_app(),
    }
}

/// The host the request is for; `None` (answered 400) without one, or with several, which
/// Heroku has refused since 2016 because two parties could each read a different one. An absolute-form target
/// (`GET http://host/ HTTP/1.1`) overrides `Host` (RFC 9112 §3.2.2) and is rewritten to
/// origin form for the dyno.
fn request_host<B>(req: &mut Request<B>) -> Option<HeaderValue> {
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
fn acme_challenge<B>(table: &RouteTable, req: &Request<B>) -> Option<String> {
    const PREFIX: &str = "/.well-known/acme-challenge/";
    let token = req.uri().path().strip_prefix(PREFIX)?;
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return None;
    }
    table.acme_challenge(token)
}

enum Decision {
    Route,
    Refuse(HCode),
    /// The app was destroyed while the request was held.
    Gone,
}

/// Whether the app can take the request now, must refuse it, or (`None`) is booting.
fn classify(app: &AppEntry) -> Option<Decision> {
    if app.removed {
        return Some(Decision::Gone);
    }
    if app.maintenance {
        return Some(Decision::Refuse(HCode::H80));
    }
    if !app.backends.is_empty() {
        return Some(Decision::Route);
    }
    match app.status {
        WebStatus::Blank => Some(Decision::Refuse(HCode::H81)),
        WebStatus::NoWebDynos => Some(Decision::Refuse(HCode::H14)),
        WebStatus::Crashed => Some(Decision::Refuse(HCode::H10)),
        // `Up` without backends is a transient report from the dyno manager: a dyno is
        // about to be published, so it waits like a boot. A sleeping app is woken and waited
        // for the same way.
        WebStatus::Starting | WebStatus::Up | WebStatus::Asleep => None,
    }
}

/// Classifies the app, holding the request while it boots: Heroku queues requests for up
/// to 75 s for a dyno to come up rather than failing the first visitor after a deploy.
async fn decide(table: &RouteTable, slot: &AppSlot, hold: Duration) -> (Arc<AppEntry>, Decision) {
    let app = slot.current();
    if let Some(d) = classify(&app) {
        return (app, d);
    }
    if app.status == WebStatus::Asleep {
        table.wake(&app.app_id);
    }
    let deadline = tokio::time::Instant::now() + hold;
    let mut rx = slot.subscribe();
    loop {
        let app = Arc::clone(&rx.borrow_and_update());
        if let Some(d) = classify(&app) {
            return (app, d);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            // The slot (hence the sender) outlives this wait; an error means the app is
            // being torn down, and the held request gets the same answer as a timeout.
            Ok(Err(_)) | Err(_) => return (app, Decision::Refuse(HCode::H20)),
        }
    }
}

/// Why an attempt on one dyno failed, for the log line if it is the last.
struct Failure {
    code: HCode,
    backend: Arc<BackendState>,
    connect: Duration,
    service: Duration,
}

/// Sends the request to a dyno, moving on to the next while the request is still unsent.
/// The request's headers come back with the response when the engine sent it (the cache
/// may need them for `Vary`, and then need not copy them beforehand). `fwd` are Heroku's
/// fields, which the engine writes beside the map and hyper's client finds in it.
pub(crate) async fn dispatch(
    config: &RouterConfig,
    log: RequestLog,
    mut req: Request<ReqBody>,
    fwd: &Forwarded<'_>,
    upgrade: bool,
) -> (Response<RouterBody>, Option<HeaderMap>) {
    let app = Arc::clone(&log.app);
    let mut tried = Tried::default();
    let mut last_failure = None;
    while let Some(i) = balance::pick(&app.backends, &tried) {
        tried.insert(i);
        let outstanding = app.backends[i].begin();
        let state = outstanding.state();
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let client = log.client.as_ref();
        let attempted = match RequestBody::new(body, client) {
            // The engine serves each of its connection's requests to the end: nothing drops
            // this future half way.
            None => {
                dyno_client::send(
                    config,
                    state.backend.addr,
                    &state.conns,
                    head,
                    None,
                    fwd,
                    client,
                )
                .await
            }
            Some(body) => {
                // Until the attempt returns, the request is the dyno's: if hyper drops this
                // future meanwhile (the client reset its HTTP/2 stream), the line says so
                // (H27) instead of the request vanishing from the log.
                let mut unanswered = Unanswered {
                    log: &log,
                    dyno: &state.backend.dyno,
                    received_ms: fwd.received_ms,
                    armed: true,
                };
                // Boxed (see `handle`): most requests have no body.
                let sent = Box::pin(dyno_client::send(
                    config,
                    state.backend.addr,
                    &state.conns,
                    head,
                    Some(body),
                    fwd,
                    client,
                ))
                .await;
                unanswered.armed = false;
                sent
            }
        };
        match attempted {
            Sent::Answered {
                response,
                connect,
                dispatched_at,
                request_headers,
            } => {
                let response = respond(log, response, outstanding, connect, dispatched_at, upgrade);
                return (response, Some(request_headers));
            }
            // The request was never written: another dyno may take it.
            Sent::Unreachable {
                req: unsent,
                body,
                code,
                connect,
            } => {
                state.quarantine();
                let body = body.map_or(ReqBody::Empty, RequestBody::into_inner);
                req = unsent.map(|()| body);
                last_failure = Some(Failure {
                    code,
                    backend: Arc::clone(state),
                    connect,
                    service: Duration::ZERO,
                });
            }
            // The request was (maybe partly) sent; retrying could repeat its effects.
            Sent::Failed {
                code,
                connect,
                service,
            } => {
                last_failure = Some(Failure {
                    code,
                    backend: Arc::clone(state),
                    connect,
                    service,
                });
                break;
            }
        }
    }
    // `decide` routes only apps with backends, so at least one attempt was made.
    let Some(f) = last_failure else {
        log.emit(&Outcome::refused(HCode::H14));
        return (
            Box::pin(pages::error_page(HCode::H14, &app, config)).await,
            None,
        );
    };
    log.emit(&Outcome {
        code: Some(f.code),
        dyno: Some(&f.backend.backend.dyno),
        connect: Some(f.connect),
        service: Some(f.service),
        status: Some(f.code.status().as_u16()),
        bytes: Some(0),
    });
    (
        Box::pin(pages::error_page(f.code, &app, config)).await,
        None,
    )
}

/// Logs H27 if dropped while armed: the client went away while a dyno had its request.
/// (Timed from the request's arrival, so that the common path reads no clock for it.)
struct Unanswered<'a> {
    log: &'a RequestLog,
    dyno: &'a str,
    received_ms: u64,
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.armed {
            let code = if self.log.client.as_ref().is_some_and(ClientConn::went_idle) {
                HCode::H28
            } else {
                HCode::H27
            };
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let service = Duration::from_millis(now_ms.saturating_sub(self.received_ms));
            self.log.emit(&Outcome {
                code: Some(code),
                dyno: Some(self.dyno),
                connect: None,
                service: Some(service),
                status: Some(code.status().as_u16()),
                bytes: Some(0),
            });
        }
    }
}

/// Turns the dyno's response into the client's.
fn respond(
    log: RequestLog,
    response: Response<DynoBody>,
    outstanding: Outstanding,
    connect: Duration,
    dispatched_at: Instant,
    upgrade: bool,
) -> Response<RouterBody> {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade {
            // A switch nobody asked for cannot be relayed.
            return fail_after_dispatch(log, HCode::H17, &outstanding, connect, dispatched_at);
        }
        let (mut parts, body) = response.into_parts();
        let Some(dyno) = body.into_upgraded() else {
            return fail_after_dispatch(log, HCode::H17, &outstanding, connect, dispatched_at);
        };
        log.emit(&Outcome {
            code: None,
            dyno: Some(&outstanding.state().backend.dyno),
            connect: Some(connect),
            service: Some(dispatched_at.elapsed()),
            status: Some(status.as_u16()),
            bytes: Some(0),
        });
        // The connection now belongs to the switch (the engine joins it to the client's);
        // it never returns to the pool.
        forward::prepare_response(&mut parts.headers, true);
        return Response::from_parts(parts, RouterBody::switched(dyno, outstanding));
    }
    let (mut parts, body) = response.into_parts();
    // The router speaks HTTP/1.1 to clients whatever the dyno spoke (an HTTP/1.0 server
    // would otherwise make the router answer an HTTP/1.1 client in 1.0).
    parts.version = http::Version::HTTP_11;
    forward::prepare_response(&mut parts.headers, false);
    let finish = Finish {
        log,
        outstanding,
        status: status.as_u16(),
        connect,
        dispatched_at,
        bytes: 0,
    };
    Response::from_parts(parts, RouterBody::upstream(Box::new(body), finish))
}

fn fail_after_dispatch(
    log: RequestLog,
    code: HCode,
    outstanding: &Outstanding,
    connect: Duration,
    dispatched_at: Instant,
) -> Response<RouterBody> {
    log.emit(&Outcome {
        code: Some(code),
        dyno: Some(&outstanding.state().backend.dyno),
        connect: Some(connect),
        service: Some(dispatched_at.elapsed()),
        status: Some(code.status().as_u16()),
        bytes: Some(0),
    });
    pages::for_code(code, &log.app)
}

/// The router's answer to a refused head, logged as H26 when the head named an app.
pub(crate) fn refuse(
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
