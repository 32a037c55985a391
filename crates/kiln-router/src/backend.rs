//! One web dyno as the router sees it: its address, how many requests it is serving right
//! now (what least-outstanding balancing compares), whether it is quarantined after a
//! failed connect, and its pool of idle keep-alive connections.
//!
//! A `BackendState` outlives route table updates that keep the same dyno at the same
//! address, so counters, quarantine and pooled connections survive a republish.

use crate::dyno_client::DynoConn;
use crate::pool::Pool;
use crate::wire::clock_ms;
use kiln_model::route::Backend;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Heroku takes a dyno out of rotation on one router for up to 5 s after it refuses or
/// times out a connection, so other requests do not pay for the same failure.
pub(crate) const QUARANTINE: Duration = Duration::from_secs(5);

pub(crate) struct BackendState {
    pub(crate) backend: Backend,
    outstanding: AtomicUsize,
    /// Milliseconds on [`clock_ms`] until which the dyno is skipped; 0 when it is not.
    quarantined_until: AtomicU64,
    /// Idle connections of the router's HTTP/1.1 client ([`crate::dyno_client`]).
    pub(crate) conns: Pool<DynoConn>,
}

impl BackendState {
    pub(crate) fn new(backend: Backend) -> Arc<BackendState> {
        Arc::new(BackendState {
            backend,
            outstanding: AtomicUsize::new(0),
            quarantined_until: AtomicU64::new(0),
            conns: Pool::new(),
        })
    }

    /// Requests sent to this dyno whose responses have not finished.
    pub(crate) fn outstanding(&self) -> usize {
        // Relaxed: the count steers balancing, it does not guard memory.
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request against this dyno until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Outstanding {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(Arc::clone(self))
    }

    pub(crate) fn is_quarantined(&self, now_ms: u64) -> bool {
        now_ms < self.quarantined_until.load(Ordering::Relaxed)
    }

    pub(crate) fn quarantine(&self) {
        let until = clock_ms() + QUARANTINE.as_millis() as u64;
        self.quarantined_until.store(until, Ordering::Relaxed);
    }
}

/// One outstanding request on a dyno; dropping it (response finished, failed or abandoned)
/// gives the slot back.
pub(crate) struct Outstanding(Arc<BackendState>);

impl Outstanding {
    pub(crate) fn state(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A dyno's idle pool, held through its state: what the dyno client is given, so that its
/// future owns what it borrows and no step needs a future of its own around it.
pub(crate) struct Conns(pub(crate) Arc<BackendState>);

impl std::ops::Deref for Conns {
    type Target = Pool<DynoConn>;

    fn deref(&self) -> &Pool<DynoConn> {
        &self.0.conns
    }
}
