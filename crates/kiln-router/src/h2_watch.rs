//! HTTP/2 streams held to the same timing as HTTP/1 connections. On HTTP/1 the
//! [engine](crate::engine) sees every byte the client sends and every write that blocks; on
//! HTTP/2 many streams share one connection, and flow control works per stream, so each
//! stream is watched on its own:
//!
//! - [`RequestBody`](crate::client::RequestBody) wraps the body of a request as the dyno
//!   client reads it: a body that sends nothing for the idle window fails with H28, and
//!   while the client owes body bytes the first-byte clock (H12) stands still, since the
//!   dyno client only runs it while writing or awaiting the answer, exactly as on HTTP/1.
//! - [`ResponseWatch`] wraps the response: hyper asks for the next piece of the body only
//!   when the client has room for it, so a client that stops reading stalls the stream
//!   without any write blocking anywhere. When hyper has not come back for a piece owed to it
//!   for the idle window, the client is idle (H28): the response body is dropped, which
//!   writes the log line and releases the dyno's connection, and the stream is reset when
//!   hyper next looks at it. Other streams of the connection go on.

use crate::body::RouterBody;
use crate::client::{ClientConn, ClientFault};
use crate::wire::{BoxError, clock_ms};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

/// A response body whose stream is watched for a client that stops reading. It also holds
/// the stream's place under the listener's cap on requests in flight (`permit`).
pub(crate) struct ResponseWatch {
    shared: Arc<Shared>,
    client: ClientConn,
    idle: Duration,
    watching: bool,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

struct Shared {
    /// `None` once the watchdog gave up on the client.
    body: Mutex<Option<RouterBody>>,
    /// When ([`clock_ms`]) a piece of the body went to hyper that hyper has not followed
    /// up by asking for the next; 0 while the router itself waits (for the dyno).
    owed_since: AtomicU64,
    done: AtomicBool,
    /// Wakes the watchdog when the response is over, so it does not outlive it.
    finished: tokio::sync::Notify,
}

impl Shared {
    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        // A stored permit if the watchdog is not waiting yet: it sees it on its next wait.
        self.finished.notify_one();
    }
}

impl ResponseWatch {
    pub(crate) fn new(
        body: RouterBody,
        client: ClientConn,
        idle: Duration,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> ResponseWatch {
        let shared = Arc::new(Shared {
            body: Mutex::new(Some(body)),
            owed_since: AtomicU64::new(0),
            done: AtomicBool::new(false),
            finished: tokio::sync::Notify::new(),
        });
        ResponseWatch {
            shared,
            client,
            idle,
            watching: false,
            _permit: permit,
        }
    }

    /// The watchdog, started with the first piece handed to hyper (a response that is over
    /// at once never needs one).
    fn watch(&mut self) {
        if std::mem::replace(&mut self.watching, true) {
            return;
        }
        let (shared, client, idle) = (Arc::clone(&self.shared), self.client.clone(), self.idle);
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        tokio::spawn(async move {
            loop {
                if shared.done.load(Ordering::Acquire) {
                    return;
                }
                let since = shared.owed_since.load(Ordering::Acquire);
                let now = clock_ms();
                if since != 0 && now.saturating_sub(since) >= idle_ms {
                    client.mark_idle();
                    // Dropped outside the lock: its end writes the H28 line and lets the dyno go.
                    let body = shared
                        .body
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    drop(body);
                    return;
                }
                let wait = if since == 0 {
                    idle_ms
                } else {
                    since.saturating_add(idle_ms).saturating_sub(now)
                };
                tokio::select! {
                    () = shared.finished.notified() => return,
                    () = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
                }
            }
        });
    }
}

impl Body for ResponseWatch {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        this.shared.owed_since.store(0, Ordering::Release);
        let polled = {
            let mut body = this
                .shared
                .body
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(body) = body.as_mut() else {
                return Poll::Ready(Some(Err(Box::new(ClientFault::Idle))));
            };
            Pin::new(body).poll_frame(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                this.shared.owed_since.store(clock_ms(), Ordering::Release);
                this.watch();
            }
            Poll::Ready(_) => this.shared.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A body the watchdog took is cut short: never complete, it fails on the next poll.
        self.shared
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.shared
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

impl Drop for ResponseWatch {
    fn drop(&mut self) {
        self.shared.finish();
        let body = self
            .shared
            .body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(body);
    }
}
