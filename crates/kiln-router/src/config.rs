//! The router's tunables. Defaults are Heroku's documented values (see
//! `shared/reference/heroku-runtime.md` §2.3 and §1.3).

use std::time::Duration;

/// How the router behaves; every duration defaults to Heroku's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Apps are served at `<app>.<domain>`, e.g. `myapp.localhost`. The binary passes the
    /// same value to [`RouteTable::new`](crate::RouteTable::new), which does the matching.
    pub domain: String,
    /// Time allowed to open a TCP connection to a dyno before trying another (H19).
    pub connect_timeout: Duration,
    /// Time from handing the request to a dyno until its response head arrives (H12).
    pub first_byte_timeout: Duration,
    /// How long a client may take to send a request head, which also bounds idle
    /// keep-alive connections. Issue 5 extends it to Heroku's rolling window in both
    /// directions once a response has started (H15/H28).
    pub idle_timeout: Duration,
    /// How long a request waits for a booting app's first web dyno before H20.
    pub boot_hold: Duration,
    /// The HTTP cache's memory bounds (64 MiB, 4 MiB per object; `max_bytes: 0` turns it off).
    pub cache: crate::cache::CacheConfig,
    /// gzip of compressible responses (on; 1 KiB minimum; level 1 while streaming).
    pub compression: crate::compress::CompressionConfig,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            domain: "localhost".to_string(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(55),
            boot_hold: Duration::from_secs(75),
            cache: crate::cache::CacheConfig::default(),
            compression: crate::compress::CompressionConfig::default(),
        }
    }
}
