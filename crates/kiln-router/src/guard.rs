//! The guard in front of hyper on every HTTP/1 client connection: it reads the client's
//! bytes first, lets through only messages whose framing is unambiguous and within
//! Heroku's limits, and watches the connection's timing. One concern — hostile and slow
//! clients — in one place.
//!
//! # Framing
//!
//! Each request head is checked by [`head`](crate::head) before hyper may read it, and each
//! chunked body by [`chunked`](crate::chunked) as it streams; `Content-Length` bodies are
//! counted. So the guard always knows where the next head starts, and hyper never sees a
//! byte that follows something refused. A refused head is replaced by a tiny stand-in
//! request, which [`serve`] answers with the router's own page (400, 405, 414, 417, 431 or
//! 505), a `code=H26` log line when the `Host` names an app, and `Connection: close`;
//! nothing after it on the connection is read. A malformed chunked body fails the request
//! body, which the proxy turns into a 400 and H26 in the same way. Since hyper forwards only
//! what it parsed, with framing it regenerates, a dyno can never receive a request the
//! router did not see as one.
//!
//! After a head that asks to switch protocols, the guard holds further bytes until the
//! response is known: after a 101 the connection carries opaque bytes, otherwise HTTP again.
//!
//! # Timing (Heroku's router, `shared/reference/heroku-runtime.md` §2.3)
//!
//! - A request body that stops arriving for the idle window (55 s) fails with H28 (client
//!   idle); so does a response the client stops reading for as long (its writes stall).
//! - The first-byte timeout (H12, 30 s) counts from when the dyno has had the whole request
//!   — or from the last body byte it accepted, if it stopped reading — and is suspended
//!   while the router is waiting on the client: a slow upload is the client's idleness,
//!   not the app's.
//! - Heads themselves must arrive within `head_timeout` (hyper's header timer), which also
//!   ends idle keep-alive connections and slowloris trickles.

use crate::access_log::{Outcome, RequestLog};
use crate::backend::clock_ms;
use crate::body::RouterBody;
use crate::chunked::ChunkedCheck;
use crate::hcode::HCode;
use crate::head::{Framing, HeadScanner, Rejection, Scan};
use crate::pages;
use crate::proxy::{self, Shared};
use crate::request_id;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes read from the client per call.
const READ_CHUNK: usize = 16 * 1024;
/// The read buffer never grows past this: a head at its limit, plus one read.
const MAX_BUF: usize = crate::head::MAX_HEAD + 2 * READ_CHUNK;
/// What hyper reads in place of a refused head; [`serve`] answers it.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused.kiln.invalid\r\n\r\n";

/// What the guard and the requests served on its connection share.
pub(crate) struct ConnState {
    idle: Duration,
    /// Requests hyper has handed to [`serve`]: the index of the next one.
    requests: AtomicU64,
    /// A refused head, by its index among the connection's heads.
    rejected: Mutex<Option<(u64, Rejection)>>,
    /// 1 + the index of the latest head that asked to switch protocols; 0 if none.
    upgrade_head: AtomicU64,
    upgrade: Mutex<UpgradeWait>,
    /// A request body is still arriving from the client.
    body_pending: AtomicBool,
    /// When ([`clock_ms`]) the latest request body bytes were let through.
    body_progress_ms: AtomicU64,
    /// hyper wants request body bytes that the client has not sent.
    client_blocking: AtomicBool,
    /// Why the request body was refused (malformed chunking).
    body_fault: OnceLock<&'static str>,
    /// The client went idle for the whole window, sending or receiving.
    client_idle: AtomicBool,
    /// An HTTP/2 stream: the request body is watched as it is read, not by a guard.
    watch_body: bool,
}

#[derive(Default)]
struct UpgradeWait {
    outcome: Option<(u64, bool)>,
    waker: Option<Waker>,
}

impl ConnState {
    fn new(idle: Duration) -> ConnState {
        ConnState {
            idle,
            requests: AtomicU64::new(0),
            rejected: Mutex::new(None),
            upgrade_head: AtomicU64::new(0),
            upgrade: Mutex::new(UpgradeWait::default()),
            body_pending: AtomicBool::new(false),
            body_progress_ms: AtomicU64::new(0),
            client_blocking: AtomicBool::new(false),
            body_fault: OnceLock::new(),
            client_idle: AtomicBool::new(false),
            watch_body: false,
        }
    }

    fn take_rejection(&self, index: u64) -> Option<Rejection> {
        let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        if rejected.as_ref().is_some_and(|(i, _)| *i == index) {
            rejected.take().map(|(_, r)| r)
        } else {
            None
        }
    }

    /// The answer to a head that asked to switch protocols is known.
    fn settle_upgrade(&self, index: u64, upgraded: bool) {
        let mut wait = self.upgrade.lock().unwrap_or_else(PoisonError::into_inner);
        wait.outcome = Some((index, upgraded));
        if let Some(waker) = wait.waker.take() {
            waker.wake();
        }
    }

    fn upgrade_outcome(&self, index: u64, waker: &Waker) -> Option<bool> {
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
pub(crate) struct ClientConn(Arc<ConnState>);

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
        if !pending {
            self.0.client_blocking.store(false, Ordering::Relaxed);
        }
    }

    /// A watched body moved: the first-byte clock restarts from here (see [`first_byte`]).
    pub(crate) fn body_progress(&self) {
        self.0.body_progress_ms.store(clock_ms(), Ordering::Relaxed);
        self.0.client_blocking.store(false, Ordering::Relaxed);
    }

    /// A watched body is waiting for the client: the first-byte clock stands still.
    pub(crate) fn body_waiting(&self) {
        self.0.client_blocking.store(true, Ordering::Relaxed);
    }
}

/// Wraps a client connection; the state goes to [`serve`] for each request on it.
pub(crate) fn guard<IO>(io: IO, idle: Duration) -> (Guarded<IO>, Arc<ConnState>) {
    let conn = Arc::new(ConnState::new(idle));
    let guarded = Guarded {
        io,
        conn: Arc::clone(&conn),
        buf: Vec::new(),
        start: 0,
        end: 0,
        approved: 0,
        state: State::Head,
        scanner: HeadScanner::default(),
        heads: 0,
        upgrade_after: None,
        read_idle: IdleTimer::default(),
        write_idle: IdleTimer::default(),
    };
    (guarded, conn)
}

/// Serves one request hyper read through the guard: a refused head gets its answer here,
/// anything else goes to the [proxy](crate::proxy).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    client_ip: HeaderValue,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Response<RouterBody> {
    let index = conn.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(rejection) = conn.take_rejection(index) {
        return refuse(&shared, &client_ip, rejection);
    }
    let switching = conn.upgrade_head.load(Ordering::Relaxed) == index + 1;
    let mut response = proxy::handle(
        shared,
        client_ip,
        Some(ClientConn(Arc::clone(&conn))),
        req.map(proxy::ReqBody::Hyper),
    )
    .await;
    // hyper writes only the map (the engine's dyno client is not used for these requests
    // today; this keeps it so whatever the pipeline does).
    crate::passthrough::materialize(&mut response);
    if switching {
        conn.settle_upgrade(index, response.status() == StatusCode::SWITCHING_PROTOCOLS);
    }
    response
}

/// The router's answer to a refused head, logged as H26 when the head named an app.
pub(crate) fn refuse(
    shared: &Shared,
    client_ip: &HeaderValue,
    r: Rejection,
) -> Response<RouterBody> {
    let target = r.target.as_deref().and_then(|t| t.parse::<Uri>().ok());
    let host = target
        .as_ref()
        .and_then(|u| u.authority())
        .map(|a| a.as_str().to_string())
        .or(r.host.clone());
    let app = host
        .as_deref()
        .and_then(|h| shared.table.lookup_host(h))
        .filter(|a| !a.removed);
    if let (Some(app), Some(host)) = (app, host) {
        let fwd = match r.forwarded_for.as_deref().and_then(|f| {
            HeaderValue::from_str(&format!("{f}, {}", client_ip.to_str().unwrap_or_default())).ok()
        }) {
            Some(v) => v,
            None => client_ip.clone(),
        };
        let request_id = match r.request_id.as_deref() {
            Some(id) if request_id::is_valid(id.as_bytes()) => {
                HeaderValue::from_str(id).unwrap_or_else(|_| request_id::generate())
            }
            _ => request_id::generate(),
        };
        let meter = shared.table.meter(&app.app_id);
        let log = RequestLog {
            logs: crate::access_log::LogTarget::Shared(Arc::clone(&shared.logs)),
            app,
            method: r
                .method
                .as_deref()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                .unwrap_or(Method::GET),
            path: target
                .and_then(|u| u.path_and_query().cloned())
                .or_else(|| Some(PathAndQuery::from_static("/"))),
            host: HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("")),
            request_id,
            fwd,
            proto: shared.listener.proto,
            idle: shared.config.idle_timeout,
            client: None,
            meter,
        };
        log.emit_with_cause(
            &Outcome {
                code: Some(HCode::H26),
                status: Some(r.status.as_u16()),
                ..Outcome::default()
            },
            Some(r.cause),
        );
    }
    pages::refused(r.status)
}

/// Waits for the dyno's response head under the first-byte timeout (H12), which counts
/// from dispatch or from the last request body byte the dyno accepted, whichever is later,
/// and stands still while the client owes body bytes (its own idle window applies then).
/// `Err` is a timeout.
pub(crate) async fn first_byte<F: Future>(
    limit: Duration,
    client: Option<&ClientConn>,
    fut: F,
) -> Result<F::Output, ()> {
    let Some(ClientConn(state)) = client else {
        return tokio::time::timeout(limit, fut).await.map_err(|_| ());
    };
    tokio::pin!(fut);
    let dispatched = clock_ms();
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    loop {
        let wait = if state.body_pending.load(Ordering::Relaxed)
            && state.client_blocking.load(Ordering::Relaxed)
        {
            limit_ms
        } else {
            let deadline = dispatched
                .max(state.body_progress_ms.load(Ordering::Relaxed))
                .saturating_add(limit_ms);
            let now = clock_ms();
            if now >= deadline {
                return Err(());
            }
            deadline - now
        };
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The IO wrapper
// ---------------------------------------------------------------------------------------

enum State {
    /// Expecting a request head.
    Head,
    /// Inside a `Content-Length` body: this many bytes to go.
    Length(u64),
    Chunked(ChunkedCheck),
    /// A head asked to switch protocols (this index); nothing more until the answer.
    AwaitUpgrade(u64),
    /// The protocol was switched: bytes pass untouched.
    Opaque,
    /// Something was refused: nothing more is read.
    Closed,
    /// The client closed its side.
    Eof,
}

enum Step {
    /// Bytes were let through (or dropped), look again.
    Progress,
    NeedInput,
    Hold,
    Eof,
    Fail(io::Error),
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

/// A client connection seen through the guard; see the module documentation.
pub(crate) struct Guarded<IO> {
    io: IO,
    conn: Arc<ConnState>,
    /// Bytes read from the client live in `buf[start..end]`; the first `approved` of them
    /// may go to hyper. The buffer stays initialized, so reads need no unsafe code.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    approved: usize,
    state: State,
    scanner: HeadScanner,
    /// Heads let through (or refused) so far: the index of the next.
    heads: u64,
    /// The head being served asked to switch protocols (its index).
    upgrade_after: Option<u64>,
    read_idle: IdleTimer,
    write_idle: IdleTimer,
}

impl<IO> Guarded<IO> {
    fn advance(&mut self, cx: &mut Context<'_>) -> Step {
        let window = &self.buf[self.start..self.end];
        match &mut self.state {
            State::Head => match self.scanner.scan(window) {
                Scan::More => Step::NeedInput,
                Scan::Skip(n) => {
                    self.start += n;
                    Step::Progress
                }
                Scan::Done(head) => {
                    self.scanner = HeadScanner::default();
                    let index = self.heads;
                    self.heads += 1;
                    self.approved = head.len;
                    if head.upgrade {
                        self.conn.upgrade_head.store(index + 1, Ordering::Relaxed);
                        self.upgrade_after = Some(index);
                    }
                    self.state = match head.framing {
                        Framing::None => self.after_body(),
                        Framing::Length(n) => self.body_starts(State::Length(n)),
                        Framing::Chunked => self.body_starts(State::Chunked(ChunkedCheck::new())),
                    };
                    Step::Progress
                }
                Scan::Reject(rejection) => {
                    let index = self.heads;
                    self.heads += 1;
                    *self
                        .conn
                        .rejected
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some((index, rejection));
                    self.buf.clear();
                    self.buf.extend_from_slice(STAND_IN);
                    (self.start, self.end, self.approved) = (0, STAND_IN.len(), STAND_IN.len());
                    self.state = State::Closed;
                    Step::Progress
                }
            },
            State::Length(remaining) => {
                if window.is_empty() {
                    return Step::NeedInput;
                }
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(window.len());
                *remaining -= n as u64;
                self.approved = n;
                self.conn
                    .body_progress_ms
                    .store(clock_ms(), Ordering::Relaxed);
                if *remaining == 0 {
                    self.state = self.after_body();
                }
                Step::Progress
            }
            State::Chunked(check) => {
                if window.is_empty() {
                    return Step::NeedInput;
                }
                match check.feed(window) {
                    Ok(fed) => {
                        self.approved = fed.used;
                        self.conn
                            .body_progress_ms
                            .store(clock_ms(), Ordering::Relaxed);
                        if fed.done {
                            self.state = self.after_body();
                        }
                        Step::Progress
                    }
                    Err(cause) => {
                        let _ = self.conn.body_fault.set(cause);
                        self.conn.body_pending.store(false, Ordering::Relaxed);
                        self.state = State::Closed;
                        Step::Fail(io::Error::new(
                            io::ErrorKind::InvalidData,
                            ClientFault::BadChunk(cause),
                        ))
                    }
                }
            }
            State::AwaitUpgrade(index) => match self.conn.upgrade_outcome(*index, cx.waker()) {
                Some(true) => {
                    self.state = State::Opaque;
                    Step::Progress
                }
                Some(false) => {
                    self.state = State::Head;
                    Step::Progress
                }
                None => Step::Hold,
            },
            State::Opaque => {
                if window.is_empty() {
                    return Step::NeedInput;
                }
                self.approved = window.len();
                Step::Progress
            }
            State::Closed => Step::Hold,
            State::Eof => Step::Eof,
        }
    }

    fn body_starts(&mut self, state: State) -> State {
        self.conn.body_pending.store(true, Ordering::Relaxed);
        self.conn
            .body_progress_ms
            .store(clock_ms(), Ordering::Relaxed);
        self.read_idle.progress();
        state
    }

    /// The state after a message's body (or after a head without one).
    fn after_body(&mut self) -> State {
        self.conn.body_pending.store(false, Ordering::Relaxed);
        self.conn.client_blocking.store(false, Ordering::Relaxed);
        match self.upgrade_after.take() {
            Some(index) => State::AwaitUpgrade(index),
            None => State::Head,
        }
    }

    /// Room to read into at `buf[end..]`; false if the buffer is full (cannot happen while
    /// the head checker enforces its limit, but reading into nothing would look like EOF).
    fn make_room(&mut self) -> bool {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_CHUNK];
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            // A big head grew the buffer; do not keep it for the connection's lifetime.
            if self.buf.len() > READ_CHUNK {
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else if self.buf.len() < MAX_BUF {
                let grown = (self.buf.len() * 2).min(MAX_BUF);
                self.buf.resize(grown, 0);
            }
        }
        self.end < self.buf.len()
    }

    fn in_body(&self) -> bool {
        matches!(self.state, State::Length(_) | State::Chunked(_))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.approved > 0 {
                let n = this.approved.min(out.remaining());
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                this.approved -= n;
                return Poll::Ready(Ok(()));
            }
            match this.advance(cx) {
                Step::Progress => continue,
                Step::NeedInput => {}
                Step::Hold => return Poll::Pending,
                Step::Eof => return Poll::Ready(Ok(())),
                Step::Fail(e) => return Poll::Ready(Err(e)),
            }
            if !this.make_room() {
                this.state = State::Closed;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head too large",
                )));
            }
            let mut read = ReadBuf::new(&mut this.buf[this.end..]);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        // Whatever was not let through (part of a head) is dropped: to
                        // hyper the connection simply ends.
                        this.state = State::Eof;
                        this.conn.body_pending.store(false, Ordering::Relaxed);
                        return Poll::Ready(Ok(()));
                    }
                    this.end += n;
                    this.read_idle.progress();
                    this.conn.client_blocking.store(false, Ordering::Relaxed);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if !this.in_body() {
                        return Poll::Pending;
                    }
                    this.conn.client_blocking.store(true, Ordering::Relaxed);
                    if this.read_idle.expired(cx, this.conn.idle) {
                        this.conn.client_idle.store(true, Ordering::Relaxed);
                        this.state = State::Closed;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            ClientFault::Idle,
                        )));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<IO> Guarded<IO> {
    /// A write or flush could not go out: the client is not reading. After the idle window
    /// the connection fails (H28).
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.write_idle.expired(cx, self.conn.idle) {
            self.conn.client_idle.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                ClientFault::Idle,
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, data) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(result) => {
                this.write_idle.progress();
                Poll::Ready(result)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(result) => {
                this.write_idle.progress();
                Poll::Ready(result)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(result) => {
                this.write_idle.progress();
                Poll::Ready(result)
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// Feeds `input` to a guard and returns what hyper would read (until it holds).
    async fn through(input: &[u8]) -> (Vec<u8>, Arc<ConnState>) {
        let (mut client, server) = duplex(1 << 20);
        client.write_all(input).await.unwrap();
        let (mut guarded, conn) = guard(server, Duration::from_secs(55));
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(50), guarded.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => {
                    out.extend_from_slice(format!("<error: {e}>").as_bytes());
                    break;
                }
            }
        }
        (out, conn)
    }

    #[tokio::test]
    async fn good_requests_pass_unchanged() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\n\r\n";
        let (out, conn) = through(input).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(input)
        );
        assert!(conn.rejected.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn nothing_after_a_refused_head_gets_through() {
        let input = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n";
        let (out, conn) = through(input).await;
        let expected = [&b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"[..], STAND_IN].concat();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        let (index, r) = conn.rejected.lock().unwrap().clone().unwrap();
        assert_eq!(
            (index, r.status.as_u16(), r.cause),
            (1, 400, "Content-Length with Transfer-Encoding")
        );
    }

    #[tokio::test]
    async fn a_bad_chunk_fails_the_body_and_stops_there() {
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nGET /hidden HTTP/1.1\r\n\r\n";
        let (out, conn) = through(input).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.ends_with(
                "<error: malformed chunked request body: chunk size is not a hex number>"
            ),
            "{text}"
        );
        assert!(!text.contains("hidden"));
        assert_eq!(ClientConn(conn).failure_code(), HCode::H26);
    }

    #[tokio::test]
    async fn content_length_bodies_are_counted_not_parsed() {
        // The body happens to look like a request; it is data, and the next head is checked.
        let first = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 28\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let input = [&first[..], b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"].concat();
        let (out, conn) = through(&input).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&[&first[..], STAND_IN].concat())
        );
        assert_eq!(
            conn.rejected.lock().unwrap().as_ref().unwrap().1.cause,
            "several Host headers"
        );
    }

    #[tokio::test]
    async fn upgrade_holds_bytes_until_the_answer() {
        let (mut client, server) = duplex(1 << 16);
        client.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello").await.unwrap();
        let (mut guarded, conn) = guard(server, Duration::from_secs(55));
        let mut buf = [0u8; 256];
        let n = guarded.read(&mut buf).await.unwrap();
        assert!(buf[..n].ends_with(b"\r\n\r\n"));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), guarded.read(&mut buf))
                .await
                .is_err(),
            "held"
        );
        assert_eq!(conn.upgrade_head.load(Ordering::Relaxed), 1);
        conn.settle_upgrade(0, true);
        let n = guarded.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"\x81\x05hello", "opaque bytes pass after a 101");
    }

    #[tokio::test]
    async fn refused_upgrade_goes_back_to_http() {
        let (mut client, server) = duplex(1 << 16);
        client.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await.unwrap();
        let (mut guarded, conn) = guard(server, Duration::from_secs(55));
        let mut buf = [0u8; 256];
        let n = guarded.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"GET /ws "));
        conn.settle_upgrade(0, false);
        let n = guarded.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], STAND_IN, "the next head is checked again");
    }

    #[tokio::test]
    async fn an_idle_body_fails_with_h28() {
        let (mut client, server) = duplex(1 << 16);
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let (mut guarded, conn) = guard(server, Duration::from_millis(100));
        let mut buf = [0u8; 256];
        let head = guarded.read(&mut buf).await.unwrap();
        assert!(buf[..head].ends_with(b"\r\n\r\n"));
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 3);
        assert!(conn.body_pending.load(Ordering::Relaxed));
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(ClientConn(conn).failure_code(), HCode::H28);
        drop(client);
    }
}
