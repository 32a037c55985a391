//! Idle keep-alive connections to one dyno, sharded so that workers rarely contend, with an
//! idle timeout and a cap. Generic over the connection: it knows nothing of HTTP.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Vegur closes idle connections to dynos after a minute; dynos are advised to keep theirs
/// open longer, so reusing one rarely races with the dyno closing it.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough to absorb a burst without holding sockets for it forever.
const POOL_MAX_IDLE: usize = 256;

/// Idle connections to one dyno, most recently used first out: hot connections stay warm
/// and the rest age out.
///
/// The pool is sharded by thread. A connection's task runs on the thread that opened it
/// (a router worker, see [`crate::workers`]), so a request sent on it from another thread
/// would cross cores twice; each worker therefore reuses only the connections it opened.
/// Threads beyond [`SHARDS`] share shards, which costs only that crossing.
pub(crate) struct Pool<T> {
    shards: [Mutex<Vec<Idle<T>>>; SHARDS],
}

/// What a pool can hold: a connection that may have been closed by the dyno meanwhile.
pub(crate) trait Pooled {
    fn is_closed(&self) -> bool;
}

const SHARDS: usize = 16;

/// This thread's shard of every pool.
fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

struct Idle<T> {
    sender: T,
    since: Instant,
}

impl<T: Pooled> Pool<T> {
    pub(crate) fn new() -> Pool<T> {
        Pool {
            shards: std::array::from_fn(|_| Mutex::new(Vec::new())),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle<T>>> {
        self.shards[shard()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection that still looks alive, if any. `now` is the caller's: it has
    /// read the clock already (each read is a few dozen nanoseconds, on every request).
    pub(crate) fn take(&self, now: Instant) -> Option<T> {
        let mut idle = self.idle();
        while let Some(conn) = idle.pop() {
            if now.saturating_duration_since(conn.since) < POOL_IDLE_TIMEOUT
                && !conn.sender.is_closed()
            {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Returns a connection whose last exchange finished cleanly, `now` (the caller's clock
    /// read, as for [`Pool::take`]).
    pub(crate) fn put(&self, sender: T, now: Instant) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        // The oldest entry sits at the bottom where `take` rarely reaches; retire it here
        // once it expires so it does not pin a socket on the dyno.
        if idle
            .first()
            .is_some_and(|c| now.saturating_duration_since(c.since) >= POOL_IDLE_TIMEOUT)
        {
            idle.remove(0);
        }
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle { sender, since: now });
        }
    }
}
