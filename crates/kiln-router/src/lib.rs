//! Kiln's HTTP router: the reverse proxy in front of every app. A request for
//! `Host: <app>.<domain>` goes to one of that app's `up` web dynos, with the headers,
//! error codes and log lines of Heroku's router (`shared/reference/heroku-runtime.md` §2).
//!
//! # Shape
//!
//! - [`RouteTable`] is the in-memory map of apps and their dynos. The dyno manager and the
//!   API publish into it through [`kiln_model::route::RouteUpdates`]; requests only read it.
//!   Nothing on the request path touches a database.
//! - [`serve`] accepts connections and runs each request through a short pipeline, one
//!   concern per module in the manner of linkerd2-proxy's layers: `host` (which app),
//!   `forward` (Heroku's headers, hop-by-hop stripping), `proxy` (decide, hold while
//!   booting, dispatch with retries), `cache` (the HTTP cache: lookup, coalescing,
//!   storing; see its doc for the exact rules), `compress` (gzip), `balance` (which dyno),
//!   `upstream` (connections and pooling), `body` (streaming and end-of-request
//!   accounting), `upgrade` (WebSocket),
//!   `access_log` (the router log line), `pages` (the router's own answers) and `hcode`.
//!
//! # Behaviour
//!
//! - **Routing.** The `Host` header, case-insensitive and without port, selects the app.
//!   Unknown hosts get a 404 "nothing here" page; a missing or repeated `Host` gets a 400.
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
//!   requests are held), H27 (client left, logged only), H80 (maintenance, `at=info`),
//!   H81 (blank app, `at=info`).
//! - **Log lines** go to the app's stream as `heroku[router]`, written when the response
//!   ends so `bytes=` and `service=` are final.
//! - **HTTPS** ([`serve_tls`], module `tls`): TLS (rustls) with the certificate picked per
//!   SNI name by `kiln_tls::SniResolver`, then HTTP/2 or HTTP/1.1 as ALPN decided, into the
//!   same pipeline. Dynos always get HTTP/1.1, with `X-Forwarded-Proto: https` and the TLS
//!   port; plain HTTP sent to the TLS port gets a 400; handshakes have 10 s.
//!
//! # Not yet (issue 5)
//!
//! Custom domains, Heroku's header size and count limits, the 55 s idle window after the
//! first byte (H15/H28), rejecting ambiguous framing (CL+TE and the like), TLS with SNI,
//! fetching `ERROR_PAGE_URL`/`MAINTENANCE_PAGE_URL`, and benchmarks.

mod access_log;
mod backend;
mod balance;
mod body;
mod cache;
mod compress;
mod config;
mod forward;
mod hcode;
mod host;
mod pages;
mod proxy;
mod request_id;
mod server;
mod table;
mod tls;
mod upgrade;
mod upstream;

pub use cache::{CacheConfig, CacheUsage};
pub use compress::CompressionConfig;
pub use config::RouterConfig;
pub use hcode::{HCode, Level};
pub use server::serve;
pub use table::{AppEntry, RouteTable};
pub use tls::serve_tls;
