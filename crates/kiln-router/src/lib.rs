//! Kiln's HTTP router: the reverse proxy in front of every app. A request for
//! `Host: <app>.<domain>` goes to one of that app's `up` web dynos, with the headers,
//! error codes and log lines of Heroku's router (`shared/reference/heroku-runtime.md` §2).
//!
//! # Shape
//!
//! - [`RouteTable`] is the in-memory map of apps and their dynos. The dyno manager and the
//!   API publish into it through [`kiln_model::route::AppRoutes`]; requests only read it.
//!   Nothing on the request path touches a database.
//! - [`serve`] accepts connections and runs each request through a short pipeline, one
//!   concern per module in the manner of linkerd2-proxy's layers: `host` (which app),
//!   `forward` (Heroku's headers, hop-by-hop stripping), `proxy` (decide, hold while
//!   booting, dispatch with retries), `cache` (the HTTP cache: lookup, coalescing,
//!   storing; see its doc for the exact rules), `compress` (gzip), `balance` (which dyno),
//!   `dyno_client` (the router's one HTTP/1.1 client for dynos, every request's, with
//!   one idle `pool` per dyno), `body` (streaming and
//!   end-of-request accounting), `upgrade` (WebSocket), `access_log` (the router log
//!   line), `pages` (the router's own answers, or the app's fetched by `page_fetch`) and
//!   `hcode`. In front of hyper on every HTTP/1 connection sits `guard`, with `head` and
//!   `chunked`: framing, limits and slow clients.
//! - **Layers, not a web.** Each module names only modules below it; a test
//!   (`crates/kiln/tests/architecture.rs`) fails on any import cycle. From the bottom:
//!   `config`, `hcode`, `head`, `host`, `wire` (field lines, `Date`, deadlines, the
//!   clock), `pool`, `conn`, `request_id`, `ack`; then `forward`, `chunked`, `dyno_head`,
//!   `passthrough`, `client` (the client's connection state and request body),
//!   `dyno_client`; `backend` and `table` (which keeps per-app stores such as the cache
//!   without knowing them: `table::AppStore`); `access_log`, `body`, `pages`, `compress`,
//!   `cache` (generic over the dispatch step it calls on a miss), `balance`, `upgrade`;
//!   `proxy`; and at the top the connections: `engine`, `guard`, `h2_watch`, `tls`,
//!   `server`.
//! - **Two HTTP/1 paths, one pipeline.** On the plain-HTTP listener, `engine` serves
//!   bodiless HTTP/1.1 requests itself (its own head reading and response writing, with
//!   `dyno_client` for the dyno, in one task per connection) and hands every other
//!   connection to hyper with the guard in front; both feed the same
//!   `proxy`/`cache`/`compress` pipeline, so behaviour is the same either way. The engine
//!   builds a request from the fields the head scanner found, without a second parse;
//!   Heroku's request fields travel beside the client's header map (`forward::Forwarded`)
//!   and are written straight into the dyno's head (hyper's client gets them in the map,
//!   the cache reads them for `Vary`). The dyno client reads the response head in one pass
//!   (`dyno_head`) and puts into the header map only the fields that pipeline reads; the
//!   others travel as the dyno's bytes (`passthrough`) and are moved into the map only
//!   where a step needs every field.
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
mod dyno_client;
mod dyno_head;
mod engine;
mod forward;
#[cfg(test)]
mod fuzz;
mod h2_watch;
mod hcode;
mod head;
mod host;
mod page_fetch;
mod pages;
mod passthrough;
mod pool;
mod proxy;
mod request_id;
mod server;
mod table;
mod tls;
mod upgrade;
mod wire;
mod workers;

pub use cache::CacheUsage;
pub use config::{CacheConfig, CompressionConfig, RouterConfig};
pub use hcode::{HCode, Level};
pub use server::{serve, serve_tls};
pub use table::{AppEntry, RouteTable};
