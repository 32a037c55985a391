//! The client's side of a request as every layer below the connection sees it: the
//! connection's state (what failed, and whether the client went idle: H26, H27, H28), the
//! idle timer, and the request body on its way to a dyno (watched when it is an HTTP/2
//! stream's).

use crate::hcode::HCode;
use crate::head::Rejection;
use crate::wire::BoxError;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A request's body as the pipeline carries it: hyper's (HTTP/2, and HTTP/1 requests the
/// [engine](crate::engine) hands over), or none, from the engine, whose own client then
/// takes the request to the dyno.
pub(crate) enum ReqBody {
    Hyper(Incoming),
    Empty,
}

impl ReqBody {
    pub(crate) fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Hyper(body) => hyper::body::Body::is_end_stream(body),
            ReqBody::Empty => true,
        }
    }
}

/// What the guard and the requests served on its connection share.
pub(crate) struct ConnState {
    pub(crate) idle: Duration,
    /// Requests hyper has handed to [`serve`]: the index of the next one.
    pub(crate) requests: AtomicU64,
    /// A refused head, by its index among the connection's heads.
    pub(crate) rejected: Mutex<Option<(u64, Rejection)>>,
    /// 1 + the index of the latest head that asked to switch protocols; 0 if none.
    pub(crate) upgrade_head: AtomicU64,
    pub(crate) upgrade: Mutex<UpgradeWait>,
    /// A request body is still arriving from the client. (The dyno client times the first
    /// byte itself, from what it writes: `dyno_client::exchange`.)
    pub(crate) body_pending: AtomicBool,
    /// Why the request body was refused (malformed chunking).
    pub(crate) body_fault: OnceLock<&'static str>,
    /// The client went idle for the whole window, sending or receiving.
    pub(crate) client_idle: AtomicBool,
    /// An HTTP/2 stream: the request body is watched as it is read, not by a guard.
    pub(crate) watch_body: bool,
}

#[derive(Default)]
pub(crate) struct UpgradeWait {
    outcome: Option<(u64, bool)>,
    waker: Option<Waker>,
}

impl ConnState {
    pub(crate) fn new(idle: Duration) -> ConnState {
        ConnState {
            idle,
            requests: AtomicU64::new(0),
            rejected: Mutex::new(None),
            upgrade_head: AtomicU64::new(0),
            upgrade: Mutex::new(UpgradeWait::default()),
            body_pending: AtomicBool::new(false),
            body_fault: OnceLock::new(),
            client_idle: AtomicBool::new(false),
            watch_body: false,
        }
    }

    pub(crate) fn take_rejection(&self, index: u64) -> Option<Rejection> {
        let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        if rejected.as_ref().is_some_and(|(i, _)| *i == index) {
            rejected.take().map(|(_, r)| r)
        } else {
            None
        }
    }

    /// The answer to a head that asked to switch protocols is known.
    pub(crate) fn settle_upgrade(&self, index: u64, upgraded: bool) {
        let mut wait = self.upgrade.lock().unwrap_or_else(PoisonError::into_inner);
        wait.outcome = Some((index, upgraded));
        if let Some(waker) = wait.waker.take() {
            waker.wake();
        }
    }

    pub(crate) fn upgrade_outcome(&self, index: u64, waker: &Waker) -> Option<bool> {
        let mut wait = self.upgrade.lock().unwrap_or_else(PoisonError::into_inner);
        match wait.outcome {
            Some((i, upgraded)) if i == index => Some(upgraded),
            _ => {
                wait.waker = Some(waker.clone());
                None
            }
        }
    }
}

/// The connection a request arrived on, as the proxy sees it (a request extension).
#[derive(Clone)]
pub(crate) struct ClientConn(pub(crate) Arc<ConnState>);

impl ClientConn {
    /// The code for a request whose body failed on the client's side: malformed (H26),
    /// idle (H28) or broken off (H27).
    pub(crate) fn failure_code(&self) -> HCode {
        if self.0.body_fault.get().is_some() {
            HCode::H26
        } else if self.0.client_idle.load(Ordering::Relaxed) {
            HCode::H28
        } else {
            HCode::H27
        }
    }

    /// `cause=` for an H26 line.
    pub(crate) fn fault(&self) -> Option<&'static str> {
        self.0.body_fault.get().copied()
    }

    pub(crate) fn went_idle(&self) -> bool {
        self.0.client_idle.load(Ordering::Relaxed)
    }

    /// The state of a connection the [engine](crate::engine) serves itself.
    pub(crate) fn detached(idle: Duration) -> ClientConn {
        ClientConn(Arc::new(ConnState::new(idle)))
    }

    /// The client stopped reading the response for the idle window (H28).
    pub(crate) fn mark_idle(&self) {
        self.0.client_idle.store(true, Ordering::Relaxed);
    }

    /// The state of one HTTP/2 stream, whose request body no guard sees: it is watched as it
    /// is read instead (see [`crate::h2_watch`]).
    pub(crate) fn stream(idle: Duration) -> ClientConn {
        ClientConn(Arc::new(ConnState {
            watch_body: true,
            ..ConnState::new(idle)
        }))
    }

    /// Whether the request body must be watched as it is read (an HTTP/2 stream's).
    pub(crate) fn watches_body(&self) -> bool {
        self.0.watch_body
    }

    /// The idle window (H28).
    pub(crate) fn idle_window(&self) -> Duration {
        self.0.idle
    }

    /// A watched body: it is still arriving (`pending`) or has ended.
    pub(crate) fn body_pending(&self, pending: bool) {
        self.0.body_pending.store(pending, Ordering::Relaxed);
    }
}

/// A timer for "no progress for the idle window", armed only while the connection waits
/// (so the common case, where data is ready, never touches a timer).
#[derive(Default)]
pub(crate) struct IdleTimer {
    timer: Option<Pin<Box<Sleep>>>,
    moved: bool,
}

impl IdleTimer {
    pub(crate) fn progress(&mut self) {
        self.moved = true;
    }

    /// Called when the connection has to wait; true once it has waited the whole window.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>, window: Duration) -> bool {
        match &mut self.timer {
            None => self.timer = Some(Box::pin(tokio::time::sleep(window))),
            Some(t) if self.moved => t.as_mut().reset(Instant::now() + window),
            Some(_) => {}
        }
        self.moved = false;
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }
}

/// Why the guard failed a read, for whoever reads the error chain.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientFault {
    #[error("malformed chunked request body: {0}")]
    BadChunk(&'static str),
    #[error("the client sent nothing for the idle window")]
    Idle,
}

/// A client's request body on its way to the dyno; watched when it is an HTTP/2 stream's.
pub(crate) struct RequestBody {
    inner: Incoming,
    watch: Option<(ClientConn, IdleTimer)>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, client: Option<&ClientConn>) -> RequestBody {
        let watch = client.filter(|c| c.watches_body()).map(|c| {
            c.body_pending(!inner.is_end_stream());
            (c.clone(), IdleTimer::default())
        });
        RequestBody { inner, watch }
    }

    /// The body as it came, for another attempt.
    pub(crate) fn into_inner(self) -> Incoming {
        self.inner
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Some((client, idle)) = this.watch.as_mut() else {
            return polled.map_err(Into::into);
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                idle.progress();
                if this.inner.is_end_stream() {
                    client.body_pending(false);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                client.body_pending(false);
                Poll::Ready(other.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                if idle.expired(cx, client.idle_window()) {
                    client.mark_idle();
                    client.body_pending(false);
                    return Poll::Ready(Some(Err(Box::new(ClientFault::Idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
