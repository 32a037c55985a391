//! The route table: which app a host names, and each app's settings and up web dynos.
//!
//! A host names an app in this order: a custom domain with exactly that hostname, then
//! `<app>.<domain>`, then a wildcard custom domain (`*.example.com` covers
//! `www.example.com`, one label deep). Hostnames ignore case, port and a trailing dot, and
//! belong to one app at most (the platform refuses duplicates; here the latest wins).
//!
//! It lives only in memory. The platform publishes each app's identity and settings into it
//! ([`AppRoutes`]), the dyno manager its up web dynos ([`DynoRoutes`]); requests read it.
//! Each app has a slot holding an immutable snapshot
//! ([`AppEntry`]) in a `tokio::sync::watch` channel: a read is a short lock and an `Arc`
//! clone, an update swaps the snapshot, and requests held while an app boots wait on the
//! same channel for the snapshot that brings a dyno up. No lock is held across an await.

use crate::backend::BackendState;
use crate::host;
use kiln_model::log::{AppLogSink, LogSink};
use kiln_model::meter::{Meters, RequestMeter};
use kiln_model::route::{AppRoutes, Backend, DynoRoutes, WebStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Wakes a sleeping app's dynos (the dyno manager's, set by the server).
pub type Waker = Arc<dyn Fn(&str) + Send + Sync>;
use tokio::sync::watch;

/// Every app the router knows, by id and by name.
pub struct RouteTable {
    /// Lowercase, without dots at either end.
    domain: String,
    index: RwLock<Index>,
    /// What the listeners keep per app beside the table (the HTTP cache), shared by every
    /// listener serving it; see [`AppStore`].
    stores: RwLock<Vec<Arc<dyn AppStore>>>,
    /// ACME HTTP-01 key authorizations by token, while an order is being validated.
    acme: RwLock<HashMap<String, String>>,
    /// Where each app's requests are counted (see `kiln-metrics`), when the server counts.
    meters: OnceLock<Arc<dyn Meters>>,
    /// Who wakes a sleeping app when a request for it arrives.
    waker: OnceLock<Waker>,
}

/// The host maps are read once per request, keyed by what the client sent: foldhash, seeded
/// at random per process as hashbrown's default, hashes a short name in a few dozen
/// instructions where std's SipHash took about 200 (bench/README.md, "router").
#[derive(Default)]
struct Index {
    by_id: HashMap<String, Arc<AppSlot>>,
    /// Apps registered only through `set_backends` have no name yet and are not here.
    by_name: foldhash::HashMap<String, Arc<AppSlot>>,
    /// Custom domains by exact hostname.
    by_domain: foldhash::HashMap<String, Arc<AppSlot>>,
    /// Wildcard custom domains, `*.example.com` kept as `example.com`.
    by_wildcard: foldhash::HashMap<String, Arc<AppSlot>>,
    /// Each app's custom domains as last published (normalized), so a new set replaces it.
    domains_of: HashMap<String, Vec<String>>,
}

/// One app's current snapshot, and the channel that announces the next.
pub(crate) struct AppSlot {
    tx: watch::Sender<Arc<AppEntry>>,
    /// Where the app's router lines go, found on the first request (a slot is one app id).
    log: OnceLock<LogTarget>,
    /// Where its requests are counted, found on the first request likewise.
    meter: OnceLock<Option<Arc<dyn RequestMeter>>>,
    /// When a request last arrived (Unix seconds; 0: none yet), for sleeping apps' idle time.
    /// One relaxed store per request.
    last_request: AtomicU64,
}

impl AppSlot {
    pub(crate) fn current(&self) -> Arc<AppEntry> {
        Arc::clone(&self.tx.borrow())
    }

    pub(crate) fn log_target(&self, logs: &Arc<dyn LogSink>) -> LogTarget {
        self.log
            .get_or_init(|| match logs.app_sink(&self.tx.borrow().app_id) {
                Some(app) => LogTarget::App(app),
                None => LogTarget::Shared(Arc::clone(logs)),
            })
            .clone()
    }

    pub(crate) fn meter(&self, table: &RouteTable) -> Option<Arc<dyn RequestMeter>> {
        self.meter
            .get_or_init(|| table.meter(&self.tx.borrow().app_id))
            .clone()
    }

    /// Notes that a request arrived at `received_ms` (Unix milliseconds, the time the
    /// request's handling already read).
    pub(crate) fn touch(&self, received_ms: u64) {
        self.last_request
            .store(received_ms / 1000, Ordering::Relaxed);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<AppEntry>> {
        self.tx.subscribe()
    }

    fn update(&self, change: impl FnOnce(&mut AppEntry)) {
        let mut next = AppEntry::clone(&self.current());
        change(&mut next);
        self.tx.send_replace(Arc::new(next));
    }
}

/// An immutable snapshot of one app as the router routes it.
#[derive(Clone)]
pub struct AppEntry {
    pub(crate) app_id: String,
    pub(crate) app_name: String,
    pub(crate) maintenance: bool,
    pub(crate) error_page_url: Option<String>,
    pub(crate) maintenance_page_url: Option<String>,
    pub(crate) status: WebStatus,
    pub(crate) backends: Vec<Arc<BackendState>>,
    /// Dynos taken out of rotation that may still be answering requests: the dyno manager
    /// waits for their in-flight count to reach zero before it stops them.
    pub(crate) draining: Vec<Arc<BackendState>>,
    /// Set on the last snapshot of a destroyed app, to release requests held on it.
    pub(crate) removed: bool,
}

impl AppEntry {
    pub(crate) fn new(app_id: &str) -> AppEntry {
        AppEntry {
            app_id: app_id.to_string(),
            app_name: String::new(),
            maintenance: false,
            error_page_url: None,
            maintenance_page_url: None,
            status: WebStatus::Blank,
            backends: Vec::new(),
            draining: Vec::new(),
            removed: false,
        }
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// `ERROR_PAGE_URL`, kept for issue 5 (the router serves its own page for now).
    pub fn error_page_url(&self) -> Option<&str> {
        self.error_page_url.as_deref()
    }

    /// `MAINTENANCE_PAGE_URL`, kept for issue 5.
    pub fn maintenance_page_url(&self) -> Option<&str> {
        self.maintenance_page_url.as_deref()
    }

    pub fn status(&self) -> WebStatus {
        self.status
    }

    /// The up web dynos requests are spread over.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().map(|b| &b.backend)
    }

    /// Each dyno with the number of requests it is serving through this router right now.
    pub fn outstanding(&self) -> impl Iterator<Item = (&Backend, usize)> {
        self.backends.iter().map(|b| (&b.backend, b.outstanding()))
    }
}

impl RouteTable {
    /// An empty table serving apps at `<app>.<domain>`.
    pub fn new(domain: &str) -> Arc<RouteTable> {
        Arc::new(RouteTable {
            domain: host::normalize_domain(domain),
            index: RwLock::new(Index::default()),
            stores: RwLock::new(Vec::new()),
            acme: RwLock::default(),
            meters: OnceLock::new(),
            waker: OnceLock::new(),
        })
    }

    /// Counts every app's requests in `meters` from now on (set once, before serving).
    pub fn set_meters(&self, meters: Arc<dyn Meters>) {
        let _ = self.meters.set(meters);
    }

    /// Sets who wakes sleeping apps (set once, when the server starts).
    pub fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Asks for a sleeping app's dynos; every request held on it may ask, the waker starts
    /// them once.
    pub(crate) fn wake(&self, app_id: &str) {
        if let Some(w) = self.waker.get() {
            w(app_id);
        }
    }

    /// An app's request meter, looked up (for the rare requests that have no slot at hand).
    pub(crate) fn meter(&self, app_id: &str) -> Option<Arc<dyn RequestMeter>> {
        self.meters.get().map(|m| m.requests(app_id))
    }

    /// The domain apps are served under, normalized.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The app a `Host` header value (port and case ignored) routes to.
    pub fn lookup_host(&self, host: &str) -> Option<Arc<AppEntry>> {
        self.lookup_slot(host).map(|slot| slot.current())
    }

    /// The app with this id, whether or not it has a name yet.
    pub fn get(&self, app_id: &str) -> Option<Arc<AppEntry>> {
        self.read().by_id.get(app_id).map(|slot| slot.current())
    }

    /// The key authorization published for an ACME HTTP-01 challenge token.
    pub(crate) fn acme_challenge(&self, token: &str) -> Option<String> {
        self.acme
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    pub(crate) fn lookup_slot(&self, host: &str) -> Option<Arc<AppSlot>> {
        let hostname = host::hostname(host)?;
        let index = self.read();
        // The emptiness checks keep the common case (no custom domains) to one hash.
        if !index.by_domain.is_empty() {
            if let Some(slot) = index.by_domain.get(hostname.as_ref()) {
                return Some(Arc::clone(slot));
            }
        }
        if let Some(slot) =
            host::app_label(&hostname, &self.domain).and_then(|label| index.by_name.get(label))
        {
            return Some(Arc::clone(slot));
        }
        if !index.by_wildcard.is_empty() {
            let parent = hostname.split_once('.').map(|(_, parent)| parent)?;
            return index.by_wildcard.get(parent).cloned();
        }
        None
    }

    /// Drops an app's custom domains from the maps (those another app has not taken since).
    fn forget_domains(index: &mut Index, app_id: &str, slot: &Arc<AppSlot>) {
        for hostname in index.domains_of.remove(app_id).unwrap_or_default() {
            let (map, key) = match hostname.strip_prefix("*.") {
                Some(parent) => (&mut index.by_wildcard, parent),
                None => (&mut index.by_domain, hostname.as_str()),
            };
            if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                map.remove(key);
            }
        }
    }

    // A poisoned lock only means a writer panicked between two map operations; each map
    // is still valid on its own, and refusing all traffic would be worse.
    /// The table's store of type `T`, made by `make` the first time it is asked for. The
    /// listeners share it through the table, and the table tells it when apps change, but
    /// knows nothing else of it.
    pub(crate) fn store<T: AppStore>(&self, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let find = |stores: &[Arc<dyn AppStore>]| {
            stores.iter().find_map(|s| {
                let any: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(s) as _;
                any.downcast::<T>().ok()
            })
        };
        if let Some(found) = find(&self.stores.read().unwrap_or_else(PoisonError::into_inner)) {
            return found;
        }
        let mut stores = self.stores.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = find(&stores) {
            return found;
        }
        let made = make();
        stores.push(Arc::clone(&made) as Arc<dyn AppStore>);
        made
    }

    /// Tells every store that what it keeps for `app_id` is stale.
    fn forget_app(&self, app_id: &str) {
        for store in self
            .stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            store.forget_app(app_id);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot_or_insert(index: &mut Index, app_id: &str) -> Arc<AppSlot> {
        Arc::clone(index.by_id.entry(app_id.to_string()).or_insert_with(|| {
            let (tx, _) = watch::channel(Arc::new(AppEntry::new(app_id)));
            Arc::new(AppSlot {
                tx,
                log: OnceLock::new(),
                meter: OnceLock::new(),
                last_request: AtomicU64::new(0),
            })
        }))
    }
}

impl AppRoutes for RouteTable {
    fn upsert_app(
        &self,
        app_id: &str,
        app_name: &str,
        maintenance: bool,
        error_page_url: Option<String>,
        maintenance_page_url: Option<String>,
    ) {
        let app_name = app_name.to_ascii_lowercase();
        let mut index = self.write();
        let slot = Self::slot_or_insert(&mut index, app_id);
        let old_name = slot.current().app_name.clone();
        if old_name != app_name {
            // A rename frees the old host at once; only drop it if it is still ours.
            if index
                .by_name
                .get(&old_name)
                .is_some_and(|s| Arc::ptr_eq(s, &slot))
            {
                index.by_name.remove(&old_name);
            }
        }
        if !app_name.is_empty() {
            if let Some(other) = index.by_name.insert(app_name.clone(), Arc::clone(&slot)) {
                if !Arc::ptr_eq(&other, &slot) {
                    tracing::warn!(
                        app_name,
                        app_id,
                        other = other.current().app_id,
                        "app name moved to another app id"
                    );
                }
            }
        }
        slot.update(|e| {
            e.app_name = app_name;
            e.maintenance = maintenance;
            e.error_page_url = error_page_url;
            e.maintenance_page_url = maintenance_page_url;
        });
    }

    fn set_acme_challenge(&self, token: &str, key_authorization: Option<String>) {
        let mut acme = self.acme.write().unwrap_or_else(PoisonError::into_inner);
        match key_authorization {
            Some(answer) => acme.insert(token.to_string(), answer),
            None => acme.remove(token),
        };
    }

    fn set_domains(&self, app_id: &str, hostnames: Vec<String>) {
        let mut index = self.write();
        let slot = Self::slot_or_insert(&mut index, app_id);
        Self::forget_domains(&mut index, app_id, &slot);
        let mut published = Vec::with_capacity(hostnames.len());
        for hostname in hostnames {
            let hostname = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
            if hostname.is_empty() || published.contains(&hostname) {
                continue;
            }
            let (map, key) = match hostname.strip_prefix("*.") {
                Some(parent) => (&mut index.by_wildcard, parent.to_string()),
                None => (&mut index.by_domain, hostname.clone()),
            };
            if let Some(other) = map.insert(key, Arc::clone(&slot)) {
                if !Arc::ptr_eq(&other, &slot) {
                    tracing::warn!(
                        hostname,
                        app_id,
                        other = other.current().app_id,
                        "custom domain moved to another app"
                    );
                }
            }
            published.push(hostname);
        }
        index.domains_of.insert(app_id.to_string(), published);
    }

    fn remove_app(&self, app_id: &str) {
        self.forget_app(app_id);
        let mut index = self.write();
        let Some(slot) = index.by_id.remove(app_id) else {
            return;
        };
        let name = slot.current().app_name.clone();
        if index
            .by_name
            .get(&name)
            .is_some_and(|s| Arc::ptr_eq(s, &slot))
        {
            index.by_name.remove(&name);
        }
        Self::forget_domains(&mut index, app_id, &slot);
        drop(index);
        slot.update(|e| {
            e.removed = true;
            e.backends.clear();
        });
    }
}

impl DynoRoutes for RouteTable {
    fn set_backends(&self, app_id: &str, status: WebStatus, backends: Vec<Backend>) {
        // The platform registers an app before its first dynos start and removes it after its
        // last have stopped: one it does not know is gone, and is not brought back.
        let Some(slot) = self.read().by_id.get(app_id).cloned() else {
            return;
        };
        let current = slot.current();
        // Keep the state of dynos that are still there: their outstanding counts,
        // quarantine and warm connections stay meaningful.
        let states: Vec<Arc<BackendState>> = backends
            .into_iter()
            .map(|b| {
                current
                    .backends
                    .iter()
                    .find(|s| s.backend == b)
                    .cloned()
                    .unwrap_or_else(|| BackendState::new(b))
            })
            .collect();
        // Dynos leaving rotation are remembered while they still have requests in flight.
        let mut draining: Vec<Arc<BackendState>> = current
            .draining
            .iter()
            .chain(current.backends.iter())
            .filter(|d| !states.iter().any(|s| Arc::ptr_eq(s, d)) && d.outstanding() > 0)
            .cloned()
            .collect();
        draining.dedup_by(|a, b| Arc::ptr_eq(a, b));
        slot.update(|e| {
            e.status = status;
            e.backends = states;
            e.draining = draining;
        });
    }

    fn release_changed(&self, app_id: &str, _version: u32) {
        self.forget_app(app_id);
    }

    fn idle_secs(&self, app_id: &str) -> Option<u64> {
        let slot = self.read().by_id.get(app_id).cloned()?;
        match slot.last_request.load(Ordering::Relaxed) {
            0 => None,
            t => Some(unix_now().saturating_sub(t)),
        }
    }

    fn in_flight(&self, app_id: &str, addr: std::net::SocketAddr) -> usize {
        let Some(slot) = self.read().by_id.get(app_id).cloned() else {
            return 0;
        };
        let entry = slot.current();
        entry
            .backends
            .iter()
            .chain(entry.draining.iter())
            .filter(|b| b.backend.addr == addr)
            .map(|b| b.outstanding())
            .sum()
    }
}

/// Where the line goes: the app's own stream when the sink offers a handle (kept per app
/// in the route table, so a request does not look the app up in the log store), else the
/// shared sink.
#[derive(Clone)]
pub(crate) enum LogTarget {
    App(Arc<dyn AppLogSink>),
    Shared(Arc<dyn LogSink>),
}

/// Something the router keeps per app beside the table (the HTTP cache): told when an app's
/// release changes or the app is removed, so that it drops what it held for the old one.
pub(crate) trait AppStore: std::any::Any + Send + Sync {
    fn forget_app(&self, app_id: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dyno: &str, port: u16) -> Backend {
        Backend {
            dyno: dyno.to_string(),
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    #[test]
    fn routes_by_name_and_follows_renames() {
        let t = RouteTable::new("LocalHost.");
        t.upsert_app("id1", "foo", false, None, None);
        assert_eq!(t.lookup_host("foo.localhost").unwrap().app_id(), "id1");
        assert_eq!(t.lookup_host("Foo.LOCALHOST:80").unwrap().app_name(), "foo");
        t.upsert_app("id1", "bar", true, Some("https://e/x".into()), None);
        assert!(t.lookup_host("foo.localhost").is_none());
        let e = t.lookup_host("bar.localhost").unwrap();
        assert!(e.maintenance());
        assert_eq!(e.error_page_url(), Some("https://e/x"));
        t.remove_app("id1");
        assert!(t.lookup_host("bar.localhost").is_none());
        assert!(t.get("id1").is_none());
    }

    #[test]
    fn backends_of_unknown_apps_are_ignored_and_state_kept() {
        let t = RouteTable::new("localhost");
        // Dynos reported for an app the platform has not registered (or has removed) do not
        // bring it into the table.
        t.set_backends("id1", WebStatus::Up, vec![backend("web.1", 1)]);
        assert!(t.get("id1").is_none());
        t.upsert_app("id1", "foo", true, Some("https://e/x".into()), None);
        t.set_backends(
            "id1",
            WebStatus::Up,
            vec![backend("web.1", 1), backend("web.2", 2)],
        );
        let e = t.lookup_host("foo.localhost").unwrap();
        assert_eq!(e.status(), WebStatus::Up);
        assert!(
            e.maintenance && e.error_page_url() == Some("https://e/x"),
            "dynos do not touch the app's settings"
        );
        t.upsert_app("id1", "foo", true, Some("https://e/x".into()), None);
        let e = t.lookup_host("foo.localhost").unwrap();
        assert_eq!(e.backends().count(), 2, "upsert keeps backends");
        let _busy = e.backends[1].begin();
        t.set_backends(
            "id1",
            WebStatus::Up,
            vec![backend("web.2", 2), backend("web.3", 3)],
        );
        let e2 = t.get("id1").unwrap();
        let counts: Vec<_> = e2
            .outstanding()
            .map(|(b, n)| (b.dyno.as_str(), n))
            .collect();
        assert_eq!(counts, vec![("web.2", 1), ("web.3", 0)]);
    }

    #[test]
    fn custom_domains() {
        let t = RouteTable::new("localhost");
        t.upsert_app("id1", "foo", false, None, None);
        t.upsert_app("id2", "bar", false, None, None);
        t.set_domains(
            "id1",
            vec![
                "WWW.Example.com.".into(),
                "*.example.org".into(),
                "bar.localhost".into(),
            ],
        );
        let app = |host: &str| t.lookup_host(host).map(|a| a.app_id().to_string());
        assert_eq!(app("www.example.com").as_deref(), Some("id1"));
        assert_eq!(app("WWW.EXAMPLE.COM:8080").as_deref(), Some("id1"));
        assert_eq!(app("example.com"), None);
        assert_eq!(
            app("a.example.org").as_deref(),
            Some("id1"),
            "wildcard, one label"
        );
        assert_eq!(app("a.b.example.org"), None);
        assert_eq!(app("example.org"), None);
        assert_eq!(
            app("bar.localhost").as_deref(),
            Some("id1"),
            "exact custom domains come first"
        );
        assert_eq!(app("foo.localhost").as_deref(), Some("id1"));

        // A new set replaces the old one; another app may take a freed hostname.
        t.set_domains("id1", vec!["api.example.com".into()]);
        assert_eq!(app("www.example.com"), None);
        assert_eq!(app("a.example.org"), None);
        assert_eq!(app("bar.localhost").as_deref(), Some("id2"));
        t.set_domains(
            "id2",
            vec!["www.example.com".into(), "api.example.com".into()],
        );
        assert_eq!(
            app("api.example.com").as_deref(),
            Some("id2"),
            "the latest publisher wins"
        );
        // id1 dropping its (already taken) hostname does not unroute id2's.
        t.set_domains("id1", vec![]);
        assert_eq!(app("api.example.com").as_deref(), Some("id2"));
        t.remove_app("id2");
        assert_eq!(
            app("www.example.com"),
            None,
            "a removed app's domains go with it"
        );
    }

    #[tokio::test]
    async fn removal_wakes_waiters() {
        let t = RouteTable::new("localhost");
        t.upsert_app("id1", "foo", false, None, None);
        let slot = t.lookup_slot("foo.localhost").unwrap();
        let mut rx = slot.subscribe();
        rx.borrow_and_update();
        t.remove_app("id1");
        rx.changed().await.unwrap();
        assert!(rx.borrow().removed);
    }
}
