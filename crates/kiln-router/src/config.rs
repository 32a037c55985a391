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
    /// Time from handing the request to a dyno until its response head arrives (H12). It
    /// counts from when the dyno has had the whole request body (or from the last body byte
    /// it took, if it stopped reading), never while the client is still uploading.
    pub first_byte_timeout: Duration,
    /// Heroku's rolling idle window: once a response has started, silence from the dyno
    /// this long is H15; a client that stops sending its request body or stops reading
    /// the response this long is H28; a WebSocket with no byte either way this long closes.
    pub idle_timeout: Duration,
    /// How long a client may take to send a whole request head, counted from when the
    /// connection is ready for one. This also ends idle keep-alive connections and clients
    /// that trickle their headers (slowloris).
    pub head_timeout: Duration,
    /// How long fetching an app's `ERROR_PAGE_URL` / `MAINTENANCE_PAGE_URL` may take
    /// before the router's own page is served instead.
    pub page_timeout: Duration,
    /// Whether those page URLs may point at loopback, private or link-local addresses.
    /// Off by default: an app owner must not be able to make the router fetch (and show
    /// the world) pages from the platform's own network.
    pub allow_private_page_urls: bool,
    /// How long a request waits for a booting app's first web dyno before H20.
    pub boot_hold: Duration,
    /// The HTTP cache's memory bounds (64 MiB, 4 MiB per object; `max_bytes: 0` turns it off).
    pub cache: CacheConfig,
    /// Threads serving client connections, each with its own single-threaded runtime
    /// (see the `workers` module); `0`, the default, starts one per two cores (at least one).
    pub workers: usize,
    /// gzip of compressible responses (on; 1 KiB minimum; level 1 while streaming).
    pub compression: CompressionConfig,
    /// Client connections held open at once, in all and per client address; past either,
    /// a new connection is closed unread (see `kiln_net::Gate`). Each listener (HTTP, HTTPS)
    /// counts its own.
    pub connections: kiln_net::ConnLimits,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            domain: "localhost".to_string(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(55),
            head_timeout: Duration::from_secs(30),
            page_timeout: Duration::from_secs(3),
            allow_private_page_urls: false,
            boot_hold: Duration::from_secs(75),
            cache: CacheConfig::default(),
            compression: CompressionConfig::default(),
            workers: 0,
            connections: kiln_net::ConnLimits {
                total: 10_000,
                per_ip: 1_000,
            },
        }
    }
}

/// How much the HTTP cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Total bytes the cache may use (bodies, gzip copies, headers and bookkeeping). `0`
    /// turns the cache off.
    pub max_bytes: usize,
    /// Largest single object; bigger responses pass through unstored.
    pub max_object_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 << 20,
            max_object_bytes: 4 << 20,
        }
    }
}

/// Whether and how the router compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// Smaller bodies (when their length is known) are sent as they are.
    pub min_bytes: u64,
    /// zlib level (1–9) for responses compressed as they stream.
    pub level: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            min_bytes: 1024,
            level: 1,
        }
    }
}
