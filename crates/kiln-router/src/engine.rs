//! The router's HTTP/1.1 server, on plain-HTTP listeners and on TLS connections that chose
//! HTTP/1.1. nginx-style, it reads a client's request head, runs the request through the
//! pipeline ([`crate::handle`]: routing, Heroku's headers, H-codes, the cache, gzip, the
//! dyno client, the log line) and writes the response back, all in the connection's one
//! task. hyper's server did the same work through a dispatcher, a task per dyno connection
//! and channels between them; on a 2-core machine that machinery cost as much CPU per
//! request as the kernel's TCP work (bench/README.md, "router"). hyper now serves only
//! HTTP/2.
//!
//! - **Heads** are checked by the [head scanner](crate::head) (Heroku's limits, the
//!   smuggling rules) and the request built from the fields it found, without a second
//!   parse. A refused head gets the router's page with `Connection: close` and an H26 line
//!   when it names an app; nothing after it on the connection is read as HTTP.
//! - **Bodies** (a length, or chunked through the [one chunked codec](crate::chunked)) are
//!   read from the client only as the dyno's side asks for them ([`client::ClientBody`]),
//!   in the same task. A client that sends nothing for the idle window is H28, malformed
//!   chunking H26 (the connection then closes), a client that leaves mid-body H27.
//!   `Expect: 100-continue` is answered when a dyno first wants the body, never for a
//!   request the router answers itself.
//! - **Responses** always get framing the router chose (a length, chunked, or for HTTP/1.0
//!   the connection's end), never the dyno's bytes about it.
//! - **Upgrades** (WebSocket): after the dyno's 101, the connection is spliced to the
//!   dyno's ([`upgrade`]).
//! - A connection whose request body was not read to its end (the dyno answered early, the
//!   router refused the request) closes after the response, reading and dropping what the
//!   client still sends for a moment first, so that its answer is not lost to a reset.

use crate::Shared;
use crate::body::RouterBody;
use crate::chunked::{ChunkDecoder, Piece};
use crate::client::{self, BodyFeed, ClientConn, ReqBody};
use crate::conn;
use crate::forward;
use crate::head::{FieldSpan, Framing, HeadScanner, Rejection, Scan};
use crate::timer::Deadline;
use crate::upgrade;
use crate::wire::{self, put_field, take};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// A request head at the scanner's limit, plus a read.
const MAX_REQUEST_BUF: usize = crate::head::MAX_HEAD + READ_CHUNK;
/// Output is gathered up to this before a write.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a connection closed under a client that is still sending is read first (the
/// bytes dropped), so that closing does not reset it before the client has read its
/// answer (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

// ---------------------------------------------------------------------------------------
// The client's side
// ---------------------------------------------------------------------------------------

struct Conn<IO> {
    io: IO,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    client: ClientConn,
    client_ip: HeaderValue,
    /// Output gathered for the next write.
    out: Vec<u8>,
    /// Where the fields of the head being read lie, as the scanner found them (kept to
    /// reuse its allocation).
    fields: Vec<FieldSpan>,
    /// The head being read; after it is done, it still knows where the values for a
    /// refusal's log line are.
    scanner: HeadScanner,
    /// The connection's one timer, re-armed for each wait (the head timeout, a body read, a
    /// write that blocks). A later deadline is only recorded (see [`Deadline`]), where a
    /// fresh timeout per wait would enter and leave the runtime's timer wheel each time.
    timer: Deadline,
    /// Resolves once the router starts shutting down. Made once per connection, so it
    /// stays registered with the watch channel instead of re-registering per request.
    stopping: conn::Stopping,
}

enum Next {
    Head(crate::head::Head),
    Refuse(Rejection),
    Close,
}

/// Serves a client connection on a task of its own.
pub(crate) fn spawn_connection<IO>(
    io: IO,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(serve_connection(io, peer, shared, stop));
}

/// Serves a client connection until it ends.
pub(crate) async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        client: ClientConn::new(shared.config.idle_timeout),
        client_ip: conn::client_ip_header(peer.ip()),
        out: Vec::with_capacity(1024),
        fields: Vec::new(),
        scanner: HeadScanner::default(),
        timer: Deadline::after(shared.config.head_timeout),
        stopping: conn::Stopping::new(&shared.stopping, stop),
    };
    serve(&mut conn, &shared).await;
}

/// Serves requests until the connection ends.
async fn serve<IO: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<IO>, shared: &Arc<Shared>) {
    let idle = shared.config.idle_timeout;
    loop {
        let head = match read_head(c, shared.config.head_timeout).await {
            Next::Head(head) => head,
            Next::Refuse(rejection) => return refuse(c, shared, rejection).await,
            Next::Close => return,
        };
        let bytes = c.buf.split_to(head.len).freeze();
        let message = match parse_request(&bytes, &head, &c.fields) {
            Ok(message) => message,
            Err(cause) => {
                let rejection = c.scanner.refusal(&bytes, StatusCode::BAD_REQUEST, cause);
                return refuse(c, shared, rejection).await;
            }
        };
        let Message {
            mut req,
            keep_alive,
            http10,
            expect_continue,
        } = message;
        let is_head = req.method() == Method::HEAD;
        let mut feed = match head.framing {
            Framing::None => None,
            Framing::Length(n) => Some(Feed::start(c, &mut req, Left::Length(n), expect_continue)),
            Framing::Chunked => Some(Feed::start(
                c,
                &mut req,
                Left::Chunked(ChunkDecoder::default()),
                expect_continue,
            )),
        };
        if feed.as_ref().is_some_and(|f| f.state == FeedState::Stopped) {
            // Malformed chunking among the bytes that came with the head: refused before
            // any dyno sees the request.
            let cause = c.client.fault().unwrap_or("malformed chunked request body");
            let rejection = c.scanner.refusal(&bytes, StatusCode::BAD_REQUEST, cause);
            return refuse(c, shared, rejection).await;
        }
        // The pipeline's future is made where it is awaited: it is large, and a move copies
        // all of it.
        let (ip, conn) = (c.client_ip.clone(), Some(c.client.clone()));
        let mut response = match feed.as_mut() {
            None => crate::handle(Arc::clone(shared), ip, conn, req).await,
            Some(feed) => {
                let handling = crate::handle(Arc::clone(shared), ip, conn, req);
                Box::pin(pump(c, feed, handling, idle)).await
            }
        };
        // A body not read to its end leaves the client inside a message: the connection
        // cannot carry another request.
        let body_left = feed
            .as_ref()
            .is_some_and(|f| f.state != FeedState::Complete);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS && !body_left {
            if let Some(switch) = response.body_mut().take_switch() {
                let switched = switch_head(c, &mut response, idle).await;
                // The 101's head is written; nothing of it need live as long as the tunnel.
                drop(response);
                if switched {
                    let pre = c.buf.split().freeze();
                    upgrade::splice(kiln_net::Rewind::new(pre, &mut c.io), switch, idle).await;
                }
                return;
            }
        }
        let framing = Framing1 {
            is_head,
            keep_alive: keep_alive && !body_left,
            http10,
        };
        // Written from where it lies: the response is large, and a move copies all of it.
        // Its body ends (and its log line is written, its dyno connection let go) before any
        // lingering close.
        let written = write_response(c, &mut response, framing, idle).await;
        crate::maps::give(std::mem::take(response.headers_mut()));
        drop(response);
        if !written {
            if body_left {
                linger(c).await;
            } else {
                let _ = c.io.shutdown().await;
            }
            return;
        }
    }
}

/// Reads until a whole head is buffered, within the head timeout (slowloris, and idle
/// keep-alive connections). Shutting down closes a connection that is between requests.
async fn read_head<IO: AsyncRead + Unpin>(c: &mut Conn<IO>, timeout: Duration) -> Next {
    c.scanner = HeadScanner::default();
    c.fields.clear();
    c.timer.set_after(timeout);
    loop {
        // Nothing to scan between requests; the read comes first.
        let scanned = if c.buf.is_empty() {
            Scan::More
        } else {
            c.scanner.scan_recording(&c.buf, &mut c.fields)
        };
        match scanned {
            Scan::Done(head) => return Next::Head(head),
            Scan::Reject(rejection) => return Next::Refuse(rejection),
            Scan::Skip(n) => {
                c.buf.advance(n);
                c.fields.clear();
                continue;
            }
            Scan::More => {}
        }
        if c.buf.len() >= MAX_REQUEST_BUF {
            // The scanner refuses a head past its limit long before this.
            return Next::Close;
        }
        // Between requests, shutting down closes the connection.
        let idle = c.buf.is_empty();
        c.buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = &mut c.stopping, if idle => return Next::Close,
            read = c.io.read_buf(&mut c.buf) => read,
            () = c.timer.expired() => return Next::Close,
        };
        match read {
            Ok(n) if n > 0 => {}
            // The client closed, failed or took too long; a partial head gets no answer.
            _ => return Next::Close,
        }
    }
}

/// A request as the pipeline takes it, and what the connection must know of its head.
struct Message {
    req: Request<ReqBody>,
    /// The client lets the connection stay open after this request.
    keep_alive: bool,
    http10: bool,
    expect_continue: bool,
}

/// The request in a scanned head. The head scanner has checked the syntax (request line,
/// token names, values without control characters) and noted where the fields lie, so the
/// head is not parsed a second time; what the `http` types still refuse is a 400 with the
/// cause given.
fn parse_request(
    head: &Bytes,
    scanned: &crate::head::Head,
    fields: &[FieldSpan],
) -> Result<Message, &'static str> {
    // The scanner checked the request line and knows where its parts are.
    let malformed = "malformed request line";
    let (start, end) = (scanned.target.0 as usize, scanned.target.1 as usize);
    let method = head
        .get(..start.checked_sub(1).ok_or(malformed)?)
        .ok_or(malformed)?;
    let target = head.get(start..end).ok_or(malformed)?;
    let http10 = scanned.http10;
    let method = Method::from_bytes(method).map_err(|_| "malformed method")?;
    let uri =
        Uri::from_maybe_shared(head.slice_ref(target)).map_err(|_| "malformed request target")?;
    // Heroku's fields travel beside the map (`forward::Forwarded`): the client's are all
    // it needs room for. The map is one the worker kept, when it has one (`maps`).
    let mut headers = crate::maps::take(fields.len());
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for field in fields {
        let span = |(start, end): (u32, u32)| start as usize..end as usize;
        let bad = "malformed header";
        let name = head.get(span(field.name)).ok_or(bad)?;
        // Every request names its host: known without `from_bytes`'s search of the
        // standard names.
        let name = if name.eq_ignore_ascii_case(b"host") {
            header::HOST
        } else {
            HeaderName::from_bytes(name).map_err(|_| bad)?
        };
        let value = head.get(span(field.value)).ok_or(bad)?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(value)).map_err(|_| bad)?;
        if name == header::CONNECTION {
            close |= forward::list_has(value.as_bytes(), b"close");
            keep_alive |= forward::list_has(value.as_bytes(), b"keep-alive");
        } else if name == header::EXPECT {
            // The scanner lets through no other expectation (417).
            expect_continue = true;
        }
        headers.append(name, value);
    }
    let mut req = Request::new(ReqBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    if http10 {
        *req.version_mut() = Version::HTTP_10;
    }
    Ok(Message {
        req,
        // HTTP/1.0 closes unless the client asks otherwise.
        keep_alive: !close && (!http10 || keep_alive),
        http10,
        // No interim answers to an HTTP/1.0 client (RFC 9110 §10.1.1).
        expect_continue: expect_continue && !http10,
    })
}

/// The router's answer to a refused head; the connection then closes.
async fn refuse<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    shared: &Shared,
    rejection: Rejection,
) {
    let mut response = crate::refuse::refused_head(shared, &c.client_ip, rejection);
    let framing = Framing1 {
        is_head: false,
        keep_alive: false,
        http10: false,
    };
    if write_response(c, &mut response, framing, shared.config.idle_timeout).await {
        return;
    }
    linger(c).await;
}

/// Closes a connection whose client may still be sending: the sending side first, then
/// what arrives is read and dropped until the client closes too, or for [`LINGER`].
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<IO>) {
    if c.io.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            c.buf.clear();
            c.buf.reserve(READ_CHUNK);
            match c.io.read_buf(&mut c.buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------

/// A request body being read from the client, for the [`client::ClientBody`] the pipeline
/// carries.
struct Feed {
    feed: BodyFeed,
    left: Left,
    /// `Expect: 100-continue`, not answered yet.
    continue_owed: bool,
    state: FeedState,
}

/// What of the body is still to come from the client.
enum Left {
    Length(u64),
    Chunked(ChunkDecoder),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FeedState {
    /// More is to be read.
    Open,
    /// The body's last byte was read.
    Complete,
    /// The body failed on the client's side (the connection's state says how), or nobody
    /// reads it any more.
    Stopped,
}

/// What the feed needs next.
enum FeedStep {
    /// The body wants bytes the client will only send after `100 Continue`.
    SendContinue,
    /// A frame went to the body, or the feed stopped.
    Done,
}

impl Feed {
    /// Starts the body of `req`; what arrived with the head goes to it at once.
    fn start<IO>(c: &mut Conn<IO>, req: &mut Request<ReqBody>, left: Left, expect: bool) -> Feed {
        let length = match &left {
            Left::Length(n) => Some(*n),
            Left::Chunked(_) => None,
        };
        let (body, feed) = client::client_body(length);
        *req.body_mut() = ReqBody::Client(body);
        let mut feed = Feed {
            feed,
            left,
            // A client that sent body bytes already did not wait for it.
            continue_owed: expect && c.buf.is_empty(),
            state: FeedState::Open,
        };
        feed.decode(c);
        feed
    }

    /// Moves the body bytes in `c.buf` to the body as one frame; false if more must be
    /// read. Every chunk already here is checked at once, so malformed chunking among the
    /// bytes that came with the head is refused before any dyno sees the request.
    fn decode<IO>(&mut self, c: &mut Conn<IO>) -> bool {
        if c.buf.is_empty() {
            return false;
        }
        let (data, end) = match &mut self.left {
            Left::Length(n) => {
                let len = usize::try_from(*n).unwrap_or(usize::MAX).min(c.buf.len());
                *n -= len as u64;
                (take(&mut c.buf, len), *n == 0)
            }
            Left::Chunked(decoder) => {
                // One chunk's data is passed on as it is; several are joined.
                let (mut first, mut joined) = (Bytes::new(), BytesMut::new());
                let end = loop {
                    match decoder.next(&mut c.buf) {
                        Ok(Some(Piece::Data(piece))) if first.is_empty() => first = piece,
                        Ok(Some(Piece::Data(piece))) => {
                            if joined.is_empty() {
                                joined.extend_from_slice(&first);
                            }
                            joined.extend_from_slice(&piece);
                        }
                        Ok(Some(Piece::End)) => break true,
                        Ok(None) => break false,
                        Err(cause) => {
                            c.client.mark_fault(cause);
                            self.stop_failed();
                            return true;
                        }
                    }
                };
                let data = if joined.is_empty() {
                    first
                } else {
                    joined.freeze()
                };
                if data.is_empty() && !end {
                    return false;
                }
                (data, end)
            }
        };
        self.feed.put(data, end);
        if end {
            self.state = FeedState::Complete;
        }
        true
    }

    fn stop_failed(&mut self) {
        self.feed.fail();
        self.state = FeedState::Stopped;
    }

    /// Waits until the body wants more, then reads and hands it the next frame, within the
    /// idle window. Cancel-safe: every await is a wait or a read into `c.buf`.
    async fn step<IO: AsyncRead + Unpin>(&mut self, c: &mut Conn<IO>, idle: Duration) -> FeedStep {
        if !self.feed.wanted().await {
            self.state = FeedState::Stopped;
            return FeedStep::Done;
        }
        if std::mem::take(&mut self.continue_owed) && c.buf.is_empty() {
            return FeedStep::SendContinue;
        }
        loop {
            if self.decode(c) {
                return FeedStep::Done;
            }
            c.timer.set_after(idle);
            c.buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                read = c.io.read_buf(&mut c.buf) => Some(read),
                () = c.timer.expired() => None,
            };
            match read {
                Some(Ok(n)) if n > 0 => {}
                // The client closed or failed mid-body (H27).
                Some(_) => {
                    self.stop_failed();
                    return FeedStep::Done;
                }
                None => {
                    c.client.mark_idle();
                    self.stop_failed();
                    return FeedStep::Done;
                }
            }
        }
    }
}

/// Runs the pipeline for a request with a body, reading the body as it is asked for, until
/// the response is there.
async fn pump<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    feed: &mut Feed,
    handling: impl Future<Output = Response<RouterBody>>,
    idle: Duration,
) -> Response<RouterBody> {
    let mut handling = std::pin::pin!(handling);
    while feed.state == FeedState::Open {
        let step = tokio::select! {
            biased;
            response = &mut handling => return response,
            step = feed.step(c, idle) => step,
        };
        if let FeedStep::SendContinue = step {
            c.out.clear();
            c.out.extend_from_slice(CONTINUE);
            if !flush(c, idle).await {
                feed.stop_failed();
            }
        }
    }
    handling.await
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

/// How a response goes to the client.
struct Framing1 {
    is_head: bool,
    keep_alive: bool,
    /// An HTTP/1.0 client: no chunked framing.
    http10: bool,
}

/// Writes a 101's head as the dyno gave it (its `Connection` and `Upgrade` included);
/// false if the client could not take it.
async fn switch_head<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    response: &mut Response<RouterBody>,
    idle: Duration,
) -> bool {
    c.out.clear();
    let fields = put_head(&mut c.out, response.status(), response.headers(), false);
    if !fields.has_date {
        wire::put_date(&mut c.out);
    }
    c.out.extend_from_slice(b"\r\n");
    flush(c, idle).await
}

/// What [`put_head`] found among the fields it wrote.
struct HeadFields {
    has_length: bool,
    has_date: bool,
    /// `Connection: close`.
    close: bool,
}

/// The status line and the response's own fields, the one writer of a response head.
/// Framing is this side's: `Transfer-Encoding` never passes, `Content-Length` only when
/// `keep_length` (a HEAD answer keeps the length of the body it did not send), and
/// `Connection` only in a 101, where it says `Upgrade`.
fn put_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    keep_length: bool,
) -> HeadFields {
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut found = HeadFields {
        has_length: false,
        has_date: false,
        close: false,
    };
    for (name, value) in headers {
        if *name == header::CONNECTION && !switching {
            found.close |= forward::list_has(value.as_bytes(), b"close");
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            found.has_length = true;
            if !keep_length {
                continue;
            }
        }
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        found.has_date |= *name == header::DATE;
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    found
}

/// Writes a response with the router's framing; `false` when the connection must close
/// (the client asked, the response says so, or the body or the client failed).
async fn write_response<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    response: &mut Response<RouterBody>,
    framing: Framing1,
    idle: Duration,
) -> bool {
    let Framing1 {
        is_head,
        mut keep_alive,
        http10,
    } = framing;
    let passing = response.body_mut().take_passthrough();
    let status = response.status();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = response.body().size_hint().exact();
    let out = &mut c.out;
    out.clear();
    let fields = put_head(out, status, response.headers(), is_head);
    let mut body = response.body_mut();
    keep_alive &= !fields.close;
    let (has_length, mut has_date) = (fields.has_length, fields.has_date);
    if let Some(passing) = &passing {
        passing.put(out);
        has_date |= passing.has_date();
    }
    // An HTTP/1.0 client knows no chunking: a body of unknown length ends with the
    // connection.
    let chunked = !bodiless && !is_head && length.is_none() && !http10;
    if !bodiless && !is_head {
        match length {
            Some(n) => put_field(
                out,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            ),
            None if http10 => keep_alive = false,
            None => put_field(out, b"transfer-encoding", b"chunked"),
        }
    } else if is_head && !has_length {
        // The router's own pages say how long they would be; a dyno's HEAD answer keeps
        // whatever length it gave, and none is made up for it.
        if let Some(n) = length.filter(|&n| n > 0) {
            put_field(out, b"content-length", n.to_string().as_bytes());
        }
    }
    if !has_date {
        wire::put_date(out);
    }
    if !keep_alive {
        put_field(out, b"connection", b"close");
    } else if http10 {
        put_field(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless || is_head {
        // Flushed before the (empty) body ends, so that its log line can say whether the
        // client took the answer.
        let sent = flush(c, idle).await;
        if !sent {
            body.take().client_gone();
        }
        return sent && keep_alive;
    }
    let mut client_done = false;
    loop {
        // Take what the body has at once; only when it must wait does the gathered output
        // go out first, so a small response leaves in one write.
        let frame = match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)))
            .await
        {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !flush(c, idle).await {
                    return false;
                }
                // While the dyno is quiet, a client that goes away must be noticed (H27), as
                // hyper does by reading on: bytes it sends meanwhile (a pipelined request)
                // are kept for later, an error ends the exchange. An end of input is only
                // the client closing its sending side: it still reads the response, after
                // which the connection closes (a client that left altogether fails the
                // writes, and the log line says H27).
                loop {
                    if c.buf.len() >= MAX_REQUEST_BUF || client_done {
                        break body.frame().await;
                    }
                    c.buf.reserve(1024);
                    tokio::select! {
                        biased;
                        frame = body.frame() => break frame,
                        read = c.io.read_buf(&mut c.buf) => match read {
                            Ok(0) => {
                                client_done = true;
                                keep_alive = false;
                            }
                            Ok(_) => {}
                            Err(_) => return false,
                        },
                    }
                }
            }
        };
        match frame {
            None => break,
            // The body's own end wrote the log line (H18, H15); the client must see a
            // broken message, not a complete-looking short one.
            Some(Err(_)) => {
                let _ = flush(c, idle).await;
                return false;
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    c.out
                        .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    c.out.extend_from_slice(&data);
                    c.out.extend_from_slice(b"\r\n");
                } else {
                    c.out.extend_from_slice(&data);
                }
                if c.out.len() >= WRITE_BATCH && !flush(c, idle).await {
                    return false;
                }
            }
        }
    }
    if chunked {
        c.out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(c, idle).await && keep_alive
}

/// Writes the gathered output. A client that takes nothing for the idle window is H28; the
/// window starts again with every write it takes, so a slow reader of a large response is
/// not cut off while it keeps reading.
async fn flush<IO: AsyncWrite + Unpin>(c: &mut Conn<IO>, idle: Duration) -> bool {
    if c.out.is_empty() {
        return true;
    }
    let Conn {
        io,
        out,
        timer,
        client,
        ..
    } = c;
    let mut at = 0;
    let sent = loop {
        let done = if at < out.len() {
            match within(io.write(&out[at..]), timer, idle).await {
                Some(Ok(n)) if n > 0 => {
                    at += n;
                    continue;
                }
                Some(_) => Some(false),
                None => None,
            }
        } else {
            // TLS holds records until flushed.
            within(io.flush(), timer, idle).await.map(|r| r.is_ok())
        };
        match done {
            Some(sent) => break sent,
            None => {
                client.mark_idle();
                break false;
            }
        }
    };
    out.clear();
    sent
}

/// `op`, which nearly always completes at once (a write the socket has room for); only one
/// that has to wait arms the timer, for the idle window. `None` if the window passed.
async fn within<F: Future>(op: F, timer: &mut Deadline, idle: Duration) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    match std::future::poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx))).await {
        Poll::Ready(out) => Some(out),
        Poll::Pending => {
            timer.set_after(idle);
            tokio::select! {
                biased;
                out = op.as_mut() => Some(out),
                () = timer.expired() => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_built_from_the_scanned_head() {
        let parse = |raw: &[u8]| {
            let mut fields = Vec::new();
            let Scan::Done(head) = HeadScanner::default().scan_recording(raw, &mut fields) else {
                panic!("{raw:?}");
            };
            parse_request(&Bytes::copy_from_slice(raw), &head, &fields).map(|m| {
                (
                    m.req.method().clone(),
                    (m.keep_alive, m.http10, m.expect_continue),
                    m.req.uri().to_string(),
                    m.req.headers().clone(),
                )
            })
        };
        let (method, flags, uri, headers) = parse(
            b"GET /a?b=c HTTP/1.1\r\nHost: a\r\nX-Pad: \t v  w \t\r\nX-Empty:\r\nX-Pad: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (method, flags, uri.as_str()),
            (Method::GET, (true, false, false), "/a?b=c")
        );
        assert_eq!(headers.len(), 4);
        assert_eq!(headers["host"], "a");
        assert_eq!(
            headers.get_all("x-pad").iter().collect::<Vec<_>>(),
            ["v  w", "2"],
            "values as the scanner trimmed them, in order"
        );
        assert_eq!(headers["x-empty"], "");
        let flags = |raw: &str| parse(raw.as_bytes()).unwrap().1;
        assert_eq!(
            flags("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"),
            (false, false, false)
        );
        assert_eq!(
            flags("GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
            (false, true, false),
            "HTTP/1.0 closes by default"
        );
        assert_eq!(
            flags("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"),
            (true, true, false)
        );
        assert_eq!(
            flags(
                "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
            ),
            (true, false, true)
        );
        assert_eq!(
            flags(
                "POST / HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
            ),
            (false, true, false),
            "no interim answer to HTTP/1.0"
        );
        assert_eq!(
            parse("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes())
                .unwrap()
                .2,
            "/caf\u{e9}",
            "raw UTF-8 in a path, as hyper allows"
        );
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: v{i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let headers = parse(&many).unwrap().3;
        assert_eq!(
            (headers.len(), headers["x-99"].to_str().unwrap()),
            (101, "v99")
        );
    }
}
