//! Kiln's HTTP router: the reverse proxy in front of every app. A request for
//! `Host: <app>.<domain>` goes to one of that app's `up` web dynos, with the headers,
//! error codes and log lines of Heroku's router (`shared/reference/heroku-runtime.md` §2).
//!
//! # Shape
//!
//! - [`RouteTable`] is the in-memory map of apps and their dynos. The dyno manager and the
//!   API publish into it through [`kiln_model::route::AppRoutes`]; requests only read it.
//!   Nothing on the request path touches a database.
//! - **One request's path is one function**, `handle` (below), in the manner of
//!   linkerd2-proxy's layers: route (`route`: host → app, and ACME answers) → Heroku's
//!   request fields (`forward`) → hold or refuse (`hold`: H80, H81, H14, H10, H20) → the
//!   access log (`access_log`; its line is written when the response body ends, `body`) →
//!   compression (`compress`) → the HTTP cache (`cache`) → dispatch (`dispatch`: `balance`,
//!   retries, quarantine) → the dyno client (`dyno_client`, with one idle `pool` per dyno).
//!   The cache and dispatch are each handed the next step as a closure, so each is generic
//!   over what follows and nothing is boxed on the common path; compression reads the
//!   request before and wraps the response after (`compress::Gzip`).
//! - **One HTTP/1.1 implementation.** `engine` serves every HTTP/1.1 client connection
//!   (plain, or TLS that chose HTTP/1.1) in one task: heads checked by `head` (Heroku's
//!   limits, the smuggling rules) and built into requests without a second parse, bodies
//!   read through the one chunked codec (`chunked`) as the dyno asks for them (`client`),
//!   `Expect: 100-continue`, upgrades (`upgrade`), HTTP/1.0, and refusals answered with
//!   the router's page and an H26 line (`refuse`). `dyno_client` is the other side: one
//!   request head written in one write, the response head read in one pass (`dyno_head`),
//!   with the fields no step reads kept as the dyno's bytes (`passthrough`). hyper serves
//!   HTTP/2 alone (`tls`, `h2_watch`). Heroku's request fields travel beside the client's
//!   header map (`forward::Forwarded`) and are written straight into the dyno's head.
//! - **Layers, not a web.** Each module names only modules below it; a test
//!   (`crates/kiln/tests/architecture.rs`) fails on any import cycle, the crate root
//!   included, and on any module naming hyper's HTTP/1 types. From the bottom: `config`,
//!   `hcode`, `head`, `host`, `maps` (header maps kept for reuse), `wire` (field lines, `Date`,
//!   deadlines, the clocks), `timer` (deadlines that move with each request), `pool`,
//!   `conn`, `request_id`, `ack`; then `forward`, `chunked`, `dyno_head`, `passthrough`,
//!   `client` (the client's connection state and request body), `dyno_client`; `backend`
//!   and `table` (which keeps per-app stores such as the cache without knowing them:
//!   `table::AppStore`); `route`, `hold`, `access_log`, `body`, `pages` (with `page_fetch`),
//!   `compress`, `cache`, `balance`, `upgrade`, `dispatch`; the pipeline (`handle`); and
//!   at the top the connections: `refuse`, `engine`, `h2_watch`, `tls`, `server`.
//!   Connections are dealt to `workers`: single-threaded runtimes on their own threads (one
//!   per two cores by default), so a request never crosses threads.
//!
//! # Behaviour
//!
//! - **Routing.** The `Host` header, case-insensitive and without port, selects the app:
//!   a custom domain with exactly that hostname first, then `<app>.<domain>`, then a
//!   wildcard custom domain (`*.example.com`, one label). Unknown hosts get a 404 "nothing
//!   here" page; a missing or repeated `Host` gets a 400.
//! - **Load balancing: least outstanding requests with two random choices.** For each
//!   request the router draws two distinct dynos at random and sends the request to the
//!   one with fewer requests in flight (counted from dispatch until the response body has
//!   been fully delivered, WebSockets included). Heroku picks a dyno uniformly at random,
//!   which keeps feeding a dyno stuck on a slow request; power-of-two choices steers around
//!   it almost always, costs O(1), and does not herd every request onto the single least
//!   loaded dyno. A dyno that refuses or times out a connection is quarantined for 5 s and
//!   the still-unsent request goes to another dyno (each at most once, at most 10).
//! - **Proxying.** HTTP/1.1 to the dyno over a per-dyno keep-alive pool; bodies stream in
//!   both directions without buffering. Requests gain `X-Forwarded-For` (client appended),
//!   `X-Forwarded-Proto`, `X-Forwarded-Port`, `X-Request-Id` (the client's kept if 20–200
//!   characters of `[A-Za-z0-9+/=-]`, else a UUID v4), `X-Request-Start` (epoch ms) and
//!   `Via: 1.1 kiln`; responses gain `Via`. Hop-by-hop headers are stripped both ways.
//!   `Upgrade` requests (WebSocket) are piped through once the dyno answers 101.
//! - **Errors**, each with Heroku's 503 page and an `at=error code=…` log line: H10 (crashed),
//!   H12 (no response head within 30 s), H13 (dyno closed without answering), H14 (no web
//!   dynos), H17 (malformed response), H18 (response broke off), H19/H21 (connect timeout /
//!   refused on every dyno tried), H20 (no dyno came up within the 75 s a booting app's
//!   requests are held), H15 (the dyno went silent for 55 s mid-response), H27 (client
//!   left, logged only), H28 (the client went silent for 55 s, sending its body or reading
//!   the response; `at=warning`, 499, the client gets a 408 if it still listens), H80
//!   (maintenance, `at=info`), H81 (blank app, `at=info`). An app's `ERROR_PAGE_URL`
//!   (`MAINTENANCE_PAGE_URL` for H80) replaces the page when it can be fetched (http://,
//!   3 s, 256 KiB, cached a minute, public addresses only by default).
//! - **Hostile input** is refused before any dyno sees it, with the router's page,
//!   `Connection: close`, and an H26 line (`cause="…"`) when the `Host` names an app:
//!   request line over 8192 bytes (414); a header line over 8192, a name over 1000, more
//!   than 1000 fields or a head over 256 KiB (431); `Content-Length` with
//!   `Transfer-Encoding`, differing or malformed lengths, any coding but exactly `chunked`,
//!   obfuscated or folded framing headers, bare CR/LF, several `Host`s, malformed chunking
//!   (400); `Expect` other than `100-continue` (417); `CONNECT` (405); other versions
//!   (505). Nothing after a refused message is read: no hidden request gets through.
//! - **Timeouts**: 30 s to the response head (H12, counted once the dyno has the whole
//!   request body, or from the last body byte it took), a rolling 55 s idle window after
//!   that in both directions (H15/H28; WebSockets close), 30 s to send a request head
//!   (slowloris, idle keep-alive). All are [`RouterConfig`] fields.
//! - **Log lines** go to the app's stream as `heroku[router]`, written when the response
//!   ends so `bytes=` and `service=` are final.
//! - **HTTP cache and gzip** (modules `cache` and `compress`): responses the app marks
//!   shareable by RFC 9111 (never `private`, `no-store`, `no-cache`, `Set-Cookie`, nor for
//!   `Authorization` without `public`/`s-maxage`) are kept per `Vary` variant in a bounded
//!   LRU ([`CacheConfig`]), answered with `Age` and `X-Cache: HIT` and a `dyno=cache` log
//!   line, fetched once for concurrent misses, and dropped when the app's release changes
//!   ([`DynoRoutes::release_changed`](kiln_model::route::DynoRoutes::release_changed)).
//!   Compressible responses the app left uncompressed are gzipped as they stream.
//! - **HTTPS** ([`serve_tls`], module `tls`): TLS (rustls) with the certificate picked per
//!   SNI name by `kiln_tls::SniResolver`, then HTTP/2 or HTTP/1.1 as ALPN decided, into the
//!   same pipeline. Dynos always get HTTP/1.1, with `X-Forwarded-Proto: https` and the TLS
//!   port; plain HTTP sent to the TLS port gets a 400; handshakes have 10 s.

mod access_log;
mod ack;
mod backend;
mod balance;
mod body;
mod cache;
mod chunked;
mod client;
mod compress;
mod config;
mod conn;
mod dispatch;
mod dyno_client;
mod dyno_head;
mod engine;
mod forward;
#[cfg(test)]
mod fuzz;
mod h2_watch;
mod hcode;
mod head;
mod hold;
mod host;
mod maps;
mod page_fetch;
mod pages;
mod passthrough;
mod pool;
mod refuse;
mod request_id;
mod route;
mod server;
mod table;
mod timer;
mod tls;
mod upgrade;
mod wire;
mod workers;

pub use cache::CacheUsage;
pub use config::{CacheConfig, CompressionConfig, RouterConfig};
pub use hcode::{HCode, Level};
pub use server::{serve, serve_tls};
pub use table::{AppEntry, RouteTable};

use access_log::{Outcome, RequestLog};
use body::RouterBody;
use cache::HttpCache;
use client::{ClientConn, ReqBody};
use forward::{Forwarded, ListenerInfo};
use hold::Decision;
use http::header::HeaderValue;
use http::{Request, Response};
use kiln_model::log::LogSink;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use table::AppSlot;

/// A request's whole way through the router, top to bottom. Each step is one module's; the
/// cache and dispatch are each handed the next as a closure (generic, so nothing is boxed on
/// the common path), and no step knows those after it. Never fails: every failure is an HTTP
/// answer (and, once the app is known, a router log line).
///
/// `client` is the connection (or HTTP/2 stream) the request came on: it knows whether a
/// failure on the client's side was malformed input (H26) or idleness (H28).
pub(crate) fn handle(
    shared: Arc<Shared>,
    client_ip: HeaderValue,
    client: Option<ClientConn>,
    mut req: Request<ReqBody>,
) -> impl Future<Output = Response<RouterBody>> {
    // An async block, not an `async fn`: an `async fn` copies each argument into a local
    // of its future when first polled, and keeps room for both (bench/README.md, session
    // 17); the block uses them where they were captured.
    async move {
        let (received_ms, config) = (wire::epoch_ms(), &shared.config);
        // Route: one `Host` names an app (else 400, 404); ACME challenges are answered first.
        let Some(host) = route::request_host(&mut req) else {
            return pages::bad_request();
        };
        if let Some(answer) = route::acme_challenge(&shared.table, &req) {
            return pages::acme_challenge(answer);
        }
        let Some(slot) = route::app_slot(&shared.table, &host) else {
            return pages::no_such_app();
        };
        // Heroku's request fields (`X-Forwarded-*`, `X-Request-Id`…); hop-by-hop ones go. The
        // same pass over the names notes a protocol switch and the fields later steps read.
        let (version, listener) = (req.version(), &shared.listener);
        let fwd = forward::prepare_request(
            req.headers_mut(),
            version,
            listener,
            &client_ip,
            received_ms,
        );
        // Hold while the app boots, or refuse: H80, H81, H14, H10, H20.
        slot.touch(received_ms);
        let (app, decision) = hold::decide(&shared.table, &slot, config.boot_hold).await;
        // The access log: its line is written when the response ends (`body::Finish`).
        let conn = client.clone();
        let log = request_log(&shared, &slot, app, &req, host, &fwd, client);
        match decision {
            Decision::Route => {}
            Decision::Refuse(code) => {
                log.emit(&Outcome::refused(code));
                return Box::pin(pages::error_page(code, &log.app, config)).await;
            }
            Decision::Gone => return pages::no_such_app(),
        }
        // Compression → cache → dispatch (balance, retry, quarantine) → the dyno client.
        // Compression has no future of its own: it reads the request before and wraps the
        // response after, so the futures below are not moved one level more.
        let gzip = compress::Gzip::for_request(&config.compression, &req, fwd.present);
        let (fwd, conn, up, gz) = (&fwd, conn.as_ref(), fwd.upgrade, gzip.accepts());
        let cache = &shared.cache;
        let mut response = cache::layer(cache, config, log, req, fwd, up, gz, |log, req, up| {
            dispatch::dispatch(config, log, req, fwd, up, |dyno, out, body| {
                let (addr, pool) = (dyno.backend.addr, backend::Conns(dyno));
                dyno_client::send(config, addr, pool, out, body, conn)
            })
        })
        .await;
        gzip.encode(&mut response);
        response
    }
}

/// What every request on a listener shares.
pub(crate) struct Shared {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) logs: Arc<dyn LogSink>,
    pub(crate) config: RouterConfig,
    pub(crate) listener: ListenerInfo,
    /// Set once the router starts shutting down, before its connections are told (see
    /// [`conn::Stopping`]).
    pub(crate) stopping: Arc<AtomicBool>,
    /// HTTP/2 requests in flight on the listener. Each may hold a dyno connection, and one
    /// client connection carries many: capped at the connection cap, so that the
    /// descriptors budgeted for the listener (two per connection) hold whatever the mix.
    pub(crate) h2_streams: Arc<tokio::sync::Semaphore>,
    /// The HTTP cache, one per route table (shared by its listeners).
    pub(crate) cache: Arc<HttpCache>,
}

/// The router log line's facts about a request, known once its app is.
fn request_log(
    shared: &Shared,
    slot: &AppSlot,
    app: Arc<AppEntry>,
    req: &Request<ReqBody>,
    host: HeaderValue,
    fwd: &Forwarded<'_>,
    client: Option<ClientConn>,
) -> Box<RequestLog> {
    // Boxed: it goes down through the cache, dispatch and into the response body, and a
    // move of the boxed value copies eight bytes where the value would copy 272 at each
    // step, and make each step's future that much larger (bench/README.md, session 17).
    Box::new(RequestLog {
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
    })
}
