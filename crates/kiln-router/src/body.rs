//! The body of every response the router sends: either a static page of its own, or a
//! dyno's body streamed through frame by frame (never buffered).
//!
//! A streamed body also carries the end of the request's life: when the last frame
//! passes, the connection goes back to the dyno's pool, the outstanding count drops and
//! the router log line is written with the bytes delivered. If the dyno's side breaks
//! first that is H18; if the client goes away first (the body is dropped unfinished) H27,
//! or H28 when the client stopped reading for the idle window.
//!
//! Once the response has started, the dyno must keep it moving: silence for the idle
//! window (Heroku's rolling 55 s) is H15, and the dyno connection is failed so the client
//! sees a broken response rather than a short one.

use crate::access_log::{Outcome, RequestLog};
use crate::backend::Outstanding;
use crate::client::IdleTimer;
use crate::dyno_client::DynoBody;
use crate::hcode::HCode;
use crate::passthrough::{MapField, Passthrough};
use crate::wire::BoxError;
use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Frame, SizeHint};
use kiln_net::Rewind;
use tokio::net::TcpStream;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub(crate) struct RouterBody(Kind);

enum Kind {
    Static(Option<Bytes>),
    /// A cache hit's body: its head is final (the cache keeps gzip copies itself), so no
    /// later step rewrites it. A plain hit's fields come as the object's written lines (see
    /// `cache::hit`), taken by the writer as a dyno's pass-through fields are.
    Stored(Option<Bytes>, Option<Passthrough>),
    /// A dyno's body, with what ends its request. Boxed: a response moves a dozen times on
    /// its way out (through the cache, gzip and the server's layers), and one allocation
    /// costs less than copying those few hundred bytes each time (measured with callgrind,
    /// bench/README.md); one box for both, not one each (session 19).
    Upstream(Box<Upstream>),
    /// Another body wrapped around this one (the cache's copy, gzip).
    Layered(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>),
    /// A 101's: no body, but the dyno's connection, for the engine to join to the client's.
    Switched(Option<Box<Switch>>),
}

struct Upstream {
    /// It holds the dyno connection and its buffer.
    inner: DynoBody,
    finish: Option<Finish>,
    idle: IdleTimer,
}

/// A protocol switch the dyno agreed to (see [`crate::upgrade`]).
pub(crate) struct Switch {
    /// The dyno's connection, with whatever it sent after its 101.
    pub(crate) dyno: Rewind<TcpStream>,
    /// The dyno counts the switched connection as load for as long as it is open.
    pub(crate) outstanding: Outstanding,
}

/// Everything needed to close the books on a proxied request.
pub(crate) struct Finish {
    pub(crate) log: Box<RequestLog>,
    pub(crate) outstanding: Outstanding,
    pub(crate) status: u16,
    pub(crate) connect: Duration,
    pub(crate) dispatched_at: Instant,
    pub(crate) bytes: u64,
}

#[derive(Clone, Copy)]
enum End {
    Complete,
    BackendBroke,
    /// The dyno sent nothing for the idle window.
    BackendIdle,
    ClientGone,
}

impl Finish {
    /// Writes the request's log line, its service time ending `now`.
    fn end(self, how: End, now: Instant) {
        let code = match how {
            End::Complete => None,
            // The dyno's side failed because the client's request body did (an H26 or
            // H28 the engine found while the dyno was already answering).
            End::BackendBroke => Some(match self.log.client.as_ref().map(|c| c.failure_code()) {
                Some(code @ (HCode::H26 | HCode::H28)) => code,
                _ => HCode::H18,
            }),
            End::BackendIdle => Some(HCode::H15),
            End::ClientGone if self.log.client.as_ref().is_some_and(|c| c.went_idle()) => {
                Some(HCode::H28)
            }
            End::ClientGone => Some(HCode::H27),
        };
        let status = match code {
            // H18 keeps the dyno's status, as Heroku logs it; the others log their own.
            Some(code) if code != HCode::H18 => code.status().as_u16(),
            _ => self.status,
        };
        self.log.emit(&Outcome {
            code,
            dyno: Some(&self.outstanding.state().backend.dyno),
            connect: Some(self.connect),
            service: Some(now.saturating_duration_since(self.dispatched_at)),
            status: Some(status),
            bytes: Some(self.bytes),
        });
    }
}

impl RouterBody {
    pub(crate) fn from_static(bytes: &'static [u8]) -> RouterBody {
        RouterBody(Kind::Static(
            (!bytes.is_empty()).then(|| Bytes::from_static(bytes)),
        ))
    }

    /// A body already in memory.
    pub(crate) fn full(bytes: Bytes) -> RouterBody {
        RouterBody(Kind::Static((!bytes.is_empty()).then_some(bytes)))
    }

    /// A cache hit's body (empty for `HEAD`, 204 and 304), with its head's fields as
    /// written lines when its map is empty.
    pub(crate) fn stored(bytes: Bytes, fields: Option<Passthrough>) -> RouterBody {
        RouterBody(Kind::Stored((!bytes.is_empty()).then_some(bytes), fields))
    }

    /// Takes the body out, leaving an empty one (for code that has the response by
    /// reference and must hand its body on).
    pub(crate) fn take(&mut self) -> RouterBody {
        std::mem::replace(self, RouterBody::from_static(b""))
    }

    /// Whether this is a cache hit's body, whose response head is final.
    pub(crate) fn is_stored(&self) -> bool {
        matches!(self.0, Kind::Stored(..))
    }

    /// Wraps a body; its response's pass-through fields must already be in the map
    /// ([`materialize`]), since the wrapper hides the dyno's body.
    pub(crate) fn layered(
        body: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>,
    ) -> RouterBody {
        RouterBody(Kind::Layered(body))
    }

    /// The dyno response's pass-through header fields (see [`crate::passthrough`]), which
    /// the engine's dyno client keeps with the body. A layered body has none: whoever
    /// wraps a body moves them into the map first.
    pub(crate) fn take_passthrough(&mut self) -> Option<Passthrough> {
        match &mut self.0 {
            Kind::Upstream(up) => up.inner.passthrough.take(),
            Kind::Stored(_, fields) => fields.take(),
            _ => None,
        }
    }

    /// A dyno body's pass-through block, for the router to add a field of this name to
    /// ([`Added`](crate::passthrough::Added)): only when the dyno's map holds none.
    pub(crate) fn passthrough_for(&mut self, name: MapField) -> Option<&mut Passthrough> {
        match &mut self.0 {
            Kind::Upstream(up) if !up.inner.fields.has(name) => up.inner.passthrough.as_mut(),
            _ => None,
        }
    }

    /// The length a dyno's `Content-Length` gave this body (the framing it was read with),
    /// `None` for any other body, or a dyno's without the field.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        match &self.0 {
            Kind::Upstream(up) if up.inner.fields.has(MapField::ContentLength) => {
                up.inner.size_hint().exact()
            }
            _ => None,
        }
    }

    /// The body of a 101 the dyno sent: its connection, now the switch's.
    pub(crate) fn switched(dyno: Rewind<TcpStream>, outstanding: Outstanding) -> RouterBody {
        RouterBody(Kind::Switched(Some(Box::new(Switch { dyno, outstanding }))))
    }

    /// The switch a 101 carries (once).
    pub(crate) fn take_switch(&mut self) -> Option<Box<Switch>> {
        match &mut self.0 {
            Kind::Switched(switch) => switch.take(),
            _ => None,
        }
    }

    /// The client went away (or went idle) before taking a response whose body is empty:
    /// the log line says so (H27 or H28) instead of counting it delivered.
    pub(crate) fn client_gone(mut self) {
        if let Kind::Upstream(up) = &mut self.0 {
            if let Some(f) = up.finish.take() {
                f.end(End::ClientGone, Instant::now());
            }
        }
    }

    pub(crate) fn upstream(inner: DynoBody, finish: Finish) -> RouterBody {
        RouterBody(Kind::Upstream(Box::new(Upstream {
            inner,
            finish: Some(finish),
            idle: IdleTimer::default(),
        })))
    }
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Static(bytes) | Kind::Stored(bytes, _) => {
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))))
            }
            Kind::Switched(_) => Poll::Ready(None),
            Kind::Layered(body) => body.as_mut().poll_frame(cx),
            Kind::Upstream(up) => {
                let Upstream {
                    inner,
                    finish,
                    idle,
                } = &mut **up;
                let polled = inner.poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        idle.progress();
                        if let (Some(data), Some(f)) = (frame.data_ref(), finish.as_mut()) {
                            f.bytes += data.len() as u64;
                        }
                        // hyper stops polling once a body says it has ended, so this may
                        // be the last chance to finish cleanly.
                        if inner.is_end_stream() {
                            if let Some(f) = finish.take() {
                                complete(inner, f);
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(f) = finish.take() {
                            complete(inner, f);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "dyno response body broke");
                        if let Some(f) = finish.take() {
                            f.end(End::BackendBroke, Instant::now());
                        }
                    }
                    Poll::Pending => {
                        // Only hyper's wish for more (it polls when the client can take it)
                        // runs this clock, so a slow client never makes the dyno look idle.
                        if finish
                            .as_ref()
                            .is_some_and(|f| idle.expired(cx, f.log.idle))
                        {
                            if let Some(f) = finish.take() {
                                // The aborted connection fails `inner`, which wakes this
                                // body again to pass the error on.
                                inner.abort();
                                f.end(End::BackendIdle, Instant::now());
                                cx.waker().wake_by_ref();
                            }
                        }
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Static(bytes) | Kind::Stored(bytes, _) => bytes.is_none(),
            Kind::Switched(_) => true,
            Kind::Layered(body) => body.is_end_stream(),
            Kind::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Static(bytes) | Kind::Stored(bytes, _) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Switched(_) => SizeHint::with_exact(0),
            Kind::Layered(body) => body.size_hint(),
            Kind::Upstream(up) => up.inner.size_hint(),
        }
    }
}

impl Drop for RouterBody {
    fn drop(&mut self) {
        if let Kind::Upstream(up) = &mut self.0 {
            if let Some(f) = up.finish.take() {
                // Bodies known to be empty (HEAD, 204, 304) are dropped without a poll.
                if up.inner.is_end_stream() {
                    complete(&mut up.inner, f);
                } else {
                    f.end(End::ClientGone, Instant::now());
                }
            }
        }
    }
}

/// The body was delivered whole: its connection may carry another request.
fn complete(inner: &mut DynoBody, finish: Finish) {
    // One clock read for both: the pooled connection's idle time starts when the
    // request's service time ends.
    let now = Instant::now();
    if let Some(conn) = inner.take_reusable() {
        finish.outstanding.state().conns.put(conn, now);
    }
    finish.end(End::Complete, now);
}

/// Moves a response's pass-through fields into its `HeaderMap`, for code that needs them
/// all. Does nothing to a response that has none.
pub(crate) fn materialize(response: &mut Response<RouterBody>) {
    if let Some(block) = response.body_mut().take_passthrough() {
        block.append_to(response.headers_mut());
    }
}
