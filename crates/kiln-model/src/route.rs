//! What the router needs to know about an app, published by the dyno manager and the API.
//! The router keeps this in memory; no request ever touches the database.

use std::net::SocketAddr;

/// A web dyno that is `up` and may receive requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `web.1`, for the router log line.
    pub dyno: String,
    pub addr: SocketAddr,
}

/// Why an app has no backend, which decides the router's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebStatus {
    /// Nothing has been deployed yet (H81, "Blank app").
    Blank,
    /// The web process is scaled to zero (H14).
    NoWebDynos,
    /// Web dynos exist but none is up: booting (the router may hold) or crashed (H10).
    Starting,
    Crashed,
    /// At least one backend is up.
    Up,
    /// The app sleeps (idle for its sleep time): a request is held while it is woken.
    Asleep,
}

/// The router's view of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoute {
    pub app_id: String,
    pub app_name: String,
    pub maintenance: bool,
    /// `ERROR_PAGE_URL` / `MAINTENANCE_PAGE_URL` config vars.
    pub error_page_url: Option<String>,
    pub maintenance_page_url: Option<String>,
    pub status: WebStatus,
    pub backends: Vec<Backend>,
}

/// What the platform publishes about an app: its name, its settings, its domains, and the
/// ACME answers it serves. Only the platform calls these: each setting has one owner, and the
/// dyno manager, which once republished an app with defaults, cannot (it holds [`DynoRoutes`]).
pub trait AppRoutes: Send + Sync {
    /// Registers or refreshes an app's identity and settings; keeps its backends.
    fn upsert_app(
        &self,
        app_id: &str,
        app_name: &str,
        maintenance: bool,
        error_page_url: Option<String>,
        maintenance_page_url: Option<String>,
    );
    /// Forgets an app entirely (destroyed).
    fn remove_app(&self, app_id: &str);
    /// Replaces the app's custom domains (hostnames routed to it besides `<app>.<domain>`).
    fn set_domains(&self, _app_id: &str, _hostnames: Vec<String>) {}
    /// Publishes (`Some`) or withdraws (`None`) the answer to an ACME HTTP-01 challenge:
    /// the router answers `GET /.well-known/acme-challenge/<token>` on any host with the key
    /// authorization while it is published, before the request reaches an app.
    fn set_acme_challenge(&self, _token: &str, _key_authorization: Option<String>) {}
}

/// What the dyno manager publishes about an app: which web dynos serve it, and which release.
pub trait DynoRoutes: Send + Sync {
    /// Replaces an app's web backends and status. An app the platform has not registered
    /// (or has removed) is ignored.
    fn set_backends(&self, app_id: &str, status: WebStatus, backends: Vec<Backend>);
    /// A new release went live: anything cached for the app is stale.
    fn release_changed(&self, _app_id: &str, _version: u32) {}
    /// Requests in flight to one backend of the app, so a dyno taken out of rotation can be
    /// stopped once its last request has finished.
    fn in_flight(&self, _app_id: &str, _addr: SocketAddr) -> usize {
        0
    }
    /// Seconds since a request for the app last reached the router; `None` if none has since
    /// the router started (the dyno manager then counts from the app's own start).
    fn idle_secs(&self, _app_id: &str) -> Option<u64> {
        None
    }
}
