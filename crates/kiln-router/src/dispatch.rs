//! Dispatch: a dyno is chosen ([balance](crate::balance)) and the request handed to the
//! next step (the [dyno client](crate::dyno_client)); a dyno that cannot be reached is
//! quarantined and the next one tried, since the request is still unsent. The dyno's
//! response becomes the client's: its body streams back through [`RouterBody`], which
//! writes the router log line when it ends; a 101 carries the dyno's connection for the
//! engine to join to the client's ([upgrade](crate::upgrade)).

use crate::access_log::{Outcome, RequestLog};
use crate::backend::{BackendState, Outstanding};
use crate::balance::{self, Tried};
use crate::body::{Finish, RouterBody};
use crate::client::{ClientConn, ReqBody, RequestBody};
use crate::config::RouterConfig;
use crate::dyno_client::{self, DynoBody, Outgoing, Sent};
use crate::forward::{self, Forwarded};
use crate::hcode::HCode;
use crate::pages;
use crate::passthrough::{Added, MapField};
use http::header::HeaderMap;
use http::{Request, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why an attempt on one dyno failed, for the log line if it is the last.
struct Failure {
    code: HCode,
    backend: Arc<BackendState>,
    connect: Duration,
    service: Duration,
}

/// Sends the request to a dyno through `send` (the next step), moving on to the next dyno
/// while the request is still unsent. The request's head is written out once
/// ([`dyno_client::prepare`]) and only those bytes go on, so the request stays here; its
/// headers come back with the response (the cache may need them for `Vary`).
pub(crate) fn dispatch<S, F>(
    config: &RouterConfig,
    log: Box<RequestLog>,
    req: Request<ReqBody>,
    fwd: &Forwarded<'_>,
    upgrade: bool,
    mut send: S,
) -> impl Future<Output = (Response<RouterBody>, Option<HeaderMap>)>
where
    S: FnMut(Arc<BackendState>, Outgoing, Option<RequestBody>) -> F,
    F: Future<Output = Sent>,
{
    // An async block, not an `async fn`: an `async fn` copies each argument into a local
    // of its future when first polled, and keeps room for both (bench/README.md, session
    // 17); the block uses them where they were captured.
    async move {
        let app = Arc::clone(&log.app);
        let mut tried = Tried::default();
        let mut last_failure = None;
        let (parts, body) = req.into_parts();
        let body = RequestBody::new(body, log.client.as_ref());
        // Whether the request came with a body of its own, as every HTTP/2 request does (one
        // already ended, a GET's, included), decided before `prepare` drops an ended one: such
        // a request's future may be dropped half way (below).
        let guarded = body.is_some();
        let (mut out, mut body) = dyno_client::prepare(&parts, Some(fwd), body);
        while let Some(i) = balance::pick(&app.backends, &tried) {
            tried.insert(i);
            let outstanding = app.backends[i].begin();
            let state = outstanding.state();
            let attempted = if !guarded {
                // The engine serves each of its connection's requests to the end: nothing drops
                // this future half way.
                send(Arc::clone(state), out, None).await
            } else {
                // Until the attempt returns, the request is the dyno's: if hyper drops this
                // future meanwhile (the client reset its HTTP/2 stream), the line says so
                // (H27) instead of the request vanishing from the log.
                let mut unanswered = Unanswered {
                    log: &log,
                    dyno: &state.backend.dyno,
                    received_ms: fwd.received_ms,
                    armed: true,
                };
                // Boxed: most requests have no body, and an async fn's future is as large as
                // everything it might await.
                let sent = Box::pin(send(Arc::clone(state), out, body.take())).await;
                unanswered.armed = false;
                sent
            };
            match attempted {
                Sent::Answered {
                    response,
                    connect,
                    dispatched_at,
                } => {
                    let response =
                        respond(log, response, outstanding, connect, dispatched_at, upgrade);
                    return (response, Some(parts.headers));
                }
                // The request was never written: another dyno may take it.
                Sent::Unreachable {
                    out: unsent,
                    body: untouched,
                    code,
                    connect,
                } => {
                    state.quarantine();
                    (out, body) = (unsent, untouched);
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
            let now_ms = crate::wire::epoch_ms();
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
    log: Box<RequestLog>,
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
        let (mut parts, mut body) = response.into_parts();
        // The fields no step reads travel with the body, which the switch does not keep.
        if let Some(block) = body.passthrough.take() {
            block.append_to(&mut parts.headers);
        }
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
    let (mut parts, mut body) = response.into_parts();
    // The router speaks HTTP/1.1 to clients whatever the dyno spoke (an HTTP/1.0 server
    // would otherwise make the router answer an HTTP/1.1 client in 1.0).
    parts.version = http::Version::HTTP_11;
    // The dyno client knows which fields it put in the map: the hop-by-hop pass only runs
    // when one of them is such a field, and `Via` goes with the pass-through fields unless
    // the dyno sent one to join.
    let fields = body.fields;
    if fields.hop_by_hop() {
        forward::strip_response(&mut parts.headers);
    }
    match body.passthrough.as_mut() {
        Some(block) if !fields.has(MapField::Via) => block.add(Added::VIA),
        _ => forward::add_via(&mut parts.headers),
    }
    let finish = Finish {
        log,
        outstanding,
        status: status.as_u16(),
        connect,
        dispatched_at,
        bytes: 0,
    };
    Response::from_parts(parts, RouterBody::upstream(body, finish))
}

fn fail_after_dispatch(
    log: Box<RequestLog>,
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
