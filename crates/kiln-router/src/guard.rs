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
use crate::body::RouterBody;
use crate::chunked::ChunkedCheck;
use crate::client::{ClientConn, ClientFault, ConnState, IdleTimer, ReqBody};
use crate::conn::{Stopping, client_ip_header};
use crate::hcode::HCode;
use crate::head::{Framing, HeadScanner, Rejection, Scan};
use crate::pages;
use crate::proxy::{self, Shared};
use crate::request_id;
use crate::table::LogTarget;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// Bytes read from the client per call.
const READ_CHUNK: usize = 16 * 1024;
/// The read buffer never grows past this: a head at its limit, plus one read.
const MAX_BUF: usize = crate::head::MAX_HEAD + 2 * READ_CHUNK;
/// What hyper reads in place of a refused head; [`serve`] answers it.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused.kiln.invalid\r\n\r\n";

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
        req.map(ReqBody::Hyper),
    )
    .await;
    // hyper writes only the map (the engine's dyno client is not used for these requests
    // today; this keeps it so whatever the pipeline does).
    crate::body::materialize(&mut response);
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
            logs: LogTarget::Shared(Arc::clone(&shared.logs)),
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
        self.read_idle.progress();
        state
    }

    /// The state after a message's body (or after a head without one).
    fn after_body(&mut self) -> State {
        self.conn.body_pending.store(false, Ordering::Relaxed);
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
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if !this.in_body() {
                        return Poll::Pending;
                    }
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

/// Serves one client connection. Generic over the transport so TLS (issue 5) reuses it.
pub(crate) fn spawn_connection<IO>(
    io: IO,
    peer: SocketAddr,
    http: &http1::Builder,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_ip = client_ip_header(peer.ip());
    let mut stopping = Stopping::new(&shared.stopping, stop);
    let shared = Arc::clone(shared);
    // Every byte from the client passes the guard first: framing, limits, idle clients.
    let (io, conn_state) = guard(io, shared.config.idle_timeout);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let client_ip = client_ip.clone();
        let conn_state = Arc::clone(&conn_state);
        async move { Ok::<_, Infallible>(serve(shared, client_ip, conn_state, req).await) }
    });
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::spawn(async move {
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = &mut stopping => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            // Clients resetting or timing out is routine.
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    });
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
