//! The client's side of a request as every layer below the connection sees it: the
//! connection's state (what failed, and whether the client went idle: H26, H27, H28), the
//! idle timer, and the request body on its way to a dyno: read from the client connection
//! by the [engine](crate::engine) as the dyno takes it, or an HTTP/2 stream's (watched as it
//! is read).

use crate::hcode::HCode;
use crate::wire::BoxError;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A request's body as the pipeline carries it.
pub(crate) enum ReqBody {
    /// None (a `GET`, or a head that declared no body).
    Empty,
    /// An HTTP/1.1 body the engine reads from its client connection.
    Client(ClientBody),
    /// An HTTP/2 stream's, from hyper.
    Hyper(Incoming),
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Client(body) => body.poll_frame(cx),
            ReqBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Client(body) => body.is_end_stream(),
            ReqBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Client(body) => body
                .length
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            ReqBody::Hyper(body) => body.size_hint(),
        }
    }
}

/// The state of the connection a request came on, shared by its requests and their bodies.
pub(crate) struct ConnState {
    pub(crate) idle: Duration,
    /// Why the request body was refused (malformed chunking).
    pub(crate) body_fault: OnceLock<&'static str>,
    /// The client went idle for the whole window, sending or receiving.
    pub(crate) client_idle: AtomicBool,
    /// An HTTP/2 stream: the request body is watched as it is read (the engine watches an
    /// HTTP/1.1 body itself, as it reads it).
    pub(crate) watch_body: bool,
}

impl ConnState {
    fn new(idle: Duration) -> ConnState {
        ConnState {
            idle,
            body_fault: OnceLock::new(),
            client_idle: AtomicBool::new(false),
            watch_body: false,
        }
    }
}

/// The connection a request arrived on, as the proxy sees it.
#[derive(Clone)]
pub(crate) struct ClientConn(pub(crate) Arc<ConnState>);

impl ClientConn {
    /// The state of an HTTP/1.1 connection the [engine](crate::engine) serves.
    pub(crate) fn new(idle: Duration) -> ClientConn {
        ClientConn(Arc::new(ConnState::new(idle)))
    }

    /// The state of one HTTP/2 stream, whose request body is watched as it is read (see
    /// [`crate::h2_watch`]).
    pub(crate) fn stream(idle: Duration) -> ClientConn {
        ClientConn(Arc::new(ConnState {
            watch_body: true,
            ..ConnState::new(idle)
        }))
    }

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

    /// The request body was malformed (H26, with this cause).
    pub(crate) fn mark_fault(&self, cause: &'static str) {
        let _ = self.0.body_fault.set(cause);
    }

    pub(crate) fn went_idle(&self) -> bool {
        self.0.client_idle.load(Ordering::Relaxed)
    }

    /// The client sent or read nothing for the idle window (H28).
    pub(crate) fn mark_idle(&self) {
        self.0.client_idle.store(true, Ordering::Relaxed);
    }

    /// Whether the request body must be watched as it is read (an HTTP/2 stream's).
    pub(crate) fn watches_body(&self) -> bool {
        self.0.watch_body
    }

    /// The idle window (H28).
    pub(crate) fn idle_window(&self) -> Duration {
        self.0.idle
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

/// Why a client's request body failed, for whoever reads the error chain (the code itself is
/// the connection's [`ClientConn::failure_code`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientFault {
    #[error("the client's request body broke off, was malformed or stalled")]
    Broken,
    #[error("the client sent nothing for the idle window")]
    Idle,
}

// ---------------------------------------------------------------------------------------
// An HTTP/1.1 request body, read by the engine on demand
// ---------------------------------------------------------------------------------------

/// An HTTP/1.1 request body as the dyno's side reads it. The engine's connection task reads
/// the client only when this body is polled for more ([`BodyFeed::wanted`]), one frame at a
/// time: the client is read no faster than the dyno takes the bytes, and `100 Continue`
/// goes out only once a dyno wants the body (as hyper does), never for a request the router
/// answers itself.
pub(crate) struct ClientBody {
    slot: Arc<Slot>,
    /// `Content-Length`, if the head gave one (else the body is chunked).
    length: Option<u64>,
}

/// The engine's end of a [`ClientBody`].
pub(crate) struct BodyFeed {
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Slot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    /// A frame read and not yet taken.
    data: Option<Bytes>,
    /// The body's last byte has been read (it may still be in `data`).
    end: bool,
    /// The client's side failed (the code is the connection's).
    failed: bool,
    /// The body was polled and found nothing.
    wanted: bool,
    /// The body was dropped: nobody reads on.
    dropped: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A body and the engine's end of it. `length` is the declared `Content-Length` (`None`:
/// chunked).
pub(crate) fn client_body(length: Option<u64>) -> (ClientBody, BodyFeed) {
    let slot = Arc::new(Slot::default());
    (
        ClientBody {
            slot: Arc::clone(&slot),
            length,
        },
        BodyFeed { slot },
    )
}

impl ClientBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut s = self.slot.lock();
        if let Some(data) = s.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if s.failed {
            return Poll::Ready(Some(Err(Box::new(ClientFault::Broken))));
        }
        if s.end {
            return Poll::Ready(None);
        }
        s.wanted = true;
        store(&mut s.reader, cx);
        wake(&mut s.feeder);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let s = self.slot.lock();
        s.end && s.data.is_none()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let mut s = self.slot.lock();
        s.dropped = true;
        wake(&mut s.feeder);
    }
}

impl BodyFeed {
    /// Resolves when the body has been asked for more (`true`), or dropped (`false`).
    pub(crate) async fn wanted(&self) -> bool {
        poll_fn(|cx| {
            let mut s = self.slot.lock();
            if s.dropped {
                return Poll::Ready(false);
            }
            if s.wanted && s.data.is_none() {
                return Poll::Ready(true);
            }
            store(&mut s.feeder, cx);
            Poll::Pending
        })
        .await
    }

    /// Hands the body its next frame; `end` if it is the last.
    pub(crate) fn put(&self, data: Bytes, end: bool) {
        let mut s = self.slot.lock();
        debug_assert!(s.data.is_none(), "one frame at a time");
        if !data.is_empty() {
            s.data = Some(data);
        }
        s.end |= end;
        s.wanted = false;
        wake(&mut s.reader);
    }

    /// The client's side failed; the body's reader gets an error.
    pub(crate) fn fail(&self) {
        let mut s = self.slot.lock();
        s.failed = true;
        wake(&mut s.reader);
    }
}

// ---------------------------------------------------------------------------------------
// The body on its way to the dyno
// ---------------------------------------------------------------------------------------

/// A client's request body on its way to the dyno; watched when it is an HTTP/2 stream's.
pub(crate) struct RequestBody {
    inner: ReqBody,
    watch: Option<(ClientConn, IdleTimer)>,
}

impl RequestBody {
    /// `None` for a request without a body.
    pub(crate) fn new(inner: ReqBody, client: Option<&ClientConn>) -> Option<RequestBody> {
        if matches!(inner, ReqBody::Empty) {
            return None;
        }
        let watch = client
            .filter(|c| c.watches_body())
            .map(|c| (c.clone(), IdleTimer::default()));
        Some(RequestBody { inner, watch })
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
            return polled;
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                idle.progress();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending if idle.expired(cx, client.idle_window()) => {
                client.mark_idle();
                Poll::Ready(Some(Err(Box::new(ClientFault::Idle))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_client_body_is_read_only_when_asked_for() {
        let (body, feed) = client_body(Some(5));
        let mut body = ReqBody::Client(body);
        feed.put(Bytes::from_static(b"he"), false);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), feed.wanted())
                .await
                .is_err(),
            "a frame is waiting: nothing more is wanted"
        );
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "he");
        let (frame, wanted) = tokio::join!(body.frame(), async {
            assert!(feed.wanted().await);
            feed.put(Bytes::from_static(b"llo"), true);
        });
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "llo");
        assert!(body.is_end_stream());
        let () = wanted;
        drop(body);
        assert!(!feed.wanted().await, "dropped");
        let (sized, _feed) = client_body(Some(5));
        assert_eq!(ReqBody::Client(sized).size_hint().exact(), Some(5));
    }

    #[tokio::test]
    async fn a_failed_feed_fails_the_body() {
        let (body, feed) = client_body(None);
        let mut body = ReqBody::Client(body);
        let (frame, ()) = tokio::join!(body.frame(), async {
            assert!(feed.wanted().await);
            feed.fail();
        });
        assert!(frame.unwrap().is_err());
    }
}
