//! The router's own HTTP/1.1 path for the common request: a head with no body, on a
//! plain-HTTP listener. nginx-style, it reads the client's head, runs it through the same
//! pipeline as every request ([`proxy::handle`]: routing, Heroku's headers, H-codes, the
//! cache, gzip, the log line), sends it to the dyno over its own keep-alive connection and
//! writes the response back, all in the connection's one task. hyper's server and client do
//! the same work through a dispatcher per side, a task for the dyno connection and channels
//! between them; on a 2-core machine that machinery cost as much CPU per request as the
//! kernel's TCP work, and the router ran at 0.7x nginx (bench/README.md, "router").
//!
//! Everything else is handed over, connection and all, to the hyper path
//! ([`server::spawn_connection`], with the guard in front) together with the bytes read so
//! far, at a request boundary, so nothing is read twice or lost: requests with a body,
//! `Upgrade` (WebSocket), `Expect`, `CONNECT`, HTTP/1.0, heads the
//! [head scanner](crate::head) refuses (the guard then answers them with the router's page
//! and an H26 line), and heads whose target or fields the `http` types refuse (hyper then
//! answers them). The request is built from the fields the scanner found, without parsing
//! the head a second time. A connection handed over stays on the hyper path.
//!
//! The checks are the hyper path's: the head scanner's limits and smuggling rules run on
//! every head first, and the response always gets framing the router chose (a length, or
//! chunked), never the dyno's bytes about it.
//!
//! The dyno side ([`attempt`], [`DynoBody`]) is a small HTTP/1.1 client: one request head
//! written in one write, the response head parsed by [`dyno_head`], the body read as its
//! framing says (length, chunked, or until close) straight from the socket when the
//! client's side asks for it. A connection goes back to the dyno's pool once a body ended
//! cleanly with nothing left over.

use crate::ack;
use crate::backend::BackendState;
use crate::body::{BoxError, Inner, RouterBody};
use crate::config::RouterConfig;
use crate::dyno_head;
use crate::forward::{self, Forwarded};
use crate::guard::ClientConn;
use crate::hcode::HCode;
use crate::head::{FieldSpan, Framing, HeadScanner, Scan};
use crate::passthrough::{self, Passthrough};
use crate::proxy::{self, Attempt, Failure, ReqBody, Shared};
use crate::server;
use crate::upstream::{self, Pooled};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// A dyno's response head may not exceed this (hyper's client allows about as much).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;
/// A request head at the scanner's limit, plus a read: past this the guard refuses it.
const MAX_REQUEST_BUF: usize = crate::head::MAX_HEAD + READ_CHUNK;
/// Output is gathered up to this before a write.
const WRITE_BATCH: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// The client's side
// ---------------------------------------------------------------------------------------

struct Conn<IO> {
    io: IO,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    client: ClientConn,
    client_ip: HeaderValue,
    /// The head being served, while the request could still be handed over.
    out: Vec<u8>,
    /// Where the fields of the head being read lie, as the scanner found them (kept to
    /// reuse its allocation).
    fields: Vec<FieldSpan>,
    /// The connection's one timer, re-armed for each wait (the head timeout, and a write
    /// that blocks). Resetting a registered timer to a later deadline only records it, where
    /// a fresh timeout per wait would enter and leave the runtime's timer wheel each time.
    timer: Pin<Box<Sleep>>,
    /// Resolves once the router starts shutting down. Made once per connection, so it
    /// stays registered with the watch channel instead of re-registering per request.
    stopping: server::Stopping,
}

enum Next {
    Head(usize),
    Close,
    HandOver,
}

/// Serves a plain-HTTP client connection: here while its requests are common, on the
/// hyper path from the first that is not.
pub(crate) fn spawn_connection<IO>(
    io: IO,
    peer: SocketAddr,
    http: Arc<http1::Builder>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut conn = Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            client: ClientConn::detached(shared.config.idle_timeout),
            client_ip: server::client_ip_header(peer.ip()),
            out: Vec::with_capacity(1024),
            fields: Vec::new(),
            timer: Box::pin(tokio::time::sleep(shared.config.head_timeout)),
            stopping: server::Stopping::new(&shared.stopping, stop.clone()),
        };
        if let Some(pre) = serve(&mut conn, &shared).await {
            let io = kiln_net::Rewind::new(pre, conn.io);
            server::spawn_connection(io, peer, &http, &shared, stop);
        }
    });
}

/// Serves requests until the connection ends (`None`) or one must go to the hyper path:
/// then the bytes it must read first are returned.
async fn serve<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    shared: &Arc<Shared>,
) -> Option<Bytes> {
    loop {
        let len = match read_head(c, shared.config.head_timeout).await {
            Next::Head(len) => len,
            Next::Close => return None,
            Next::HandOver => return Some(c.buf.split().freeze()),
        };
        let head = c.buf.split_to(len).freeze();
        let Some((req, keep_alive)) = parse_request(&head, &c.fields) else {
            let mut pre = BytesMut::with_capacity(head.len() + c.buf.len());
            pre.extend_from_slice(&head);
            pre.extend_from_slice(&c.buf);
            return Some(pre.freeze());
        };
        let is_head = req.method() == Method::HEAD;
        let response = proxy::handle(
            Arc::clone(shared),
            c.client_ip.clone(),
            Some(c.client.clone()),
            req,
        )
        .await;
        if !write_response(c, response, is_head, keep_alive, shared.config.idle_timeout).await {
            let _ = c.io.shutdown().await;
            return None;
        }
    }
}

/// Reads until a whole head is buffered, within the head timeout (slowloris, and idle
/// keep-alive connections). Shutting down closes a connection that is between requests.
async fn read_head<IO: AsyncRead + Unpin>(c: &mut Conn<IO>, timeout: Duration) -> Next {
    let mut scanner = HeadScanner::default();
    c.fields.clear();
    c.timer
        .as_mut()
        .reset(deadline(tokio::time::Instant::now(), timeout));
    loop {
        // Nothing to scan between requests; the read comes first.
        let scanned = if c.buf.is_empty() {
            Scan::More
        } else {
            scanner.scan_recording(&c.buf, &mut c.fields)
        };
        match scanned {
            Scan::Done(head) if head.framing == Framing::None && !head.upgrade => {
                return Next::Head(head.len);
            }
            Scan::Done(_) | Scan::Reject(_) => return Next::HandOver,
            Scan::Skip(n) => {
                c.buf.advance(n);
                c.fields.clear();
                continue;
            }
            Scan::More => {}
        }
        if c.buf.len() >= MAX_REQUEST_BUF {
            return Next::HandOver;
        }
        // Between requests, shutting down closes the connection.
        let idle = c.buf.is_empty();
        c.buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = &mut c.stopping, if idle => return Next::Close,
            read = c.io.read_buf(&mut c.buf) => read,
            () = c.timer.as_mut() => return Next::Close,
        };
        match read {
            Ok(n) if n > 0 => {}
            // The client closed, failed or took too long; a partial head gets no answer,
            // as on the hyper path.
            _ => return Next::Close,
        }
    }
}

/// The request in a scanned head, or `None` if the hyper path should serve it. The second
/// value is whether the client lets the connection stay open. The head scanner has checked
/// the syntax (request line, token names, values without control characters) and noted
/// where the fields lie, so the head is not parsed a second time.
fn parse_request(head: &Bytes, fields: &[FieldSpan]) -> Option<(Request<ReqBody>, bool)> {
    let line = &head[..memchr::memchr(b'\n', head)?];
    let line = line.strip_suffix(b"\r")?;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    // HTTP/1.0 (keep-alive rules of its own) goes to hyper.
    if version != b"HTTP/1.1" {
        return None;
    }
    let method = Method::from_bytes(method).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let uri = Uri::from_maybe_shared(head.slice_ref(target)).ok()?;
    // Heroku's fields travel beside the map (`forward::Forwarded`): the client's are all
    // it needs room for.
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut keep_alive = true;
    for field in fields {
        let span = |(start, end): (u32, u32)| start as usize..end as usize;
        let name = HeaderName::from_bytes(head.get(span(field.name))?).ok()?;
        if name == header::EXPECT {
            return None;
        }
        let value =
            HeaderValue::from_maybe_shared(head.slice_ref(head.get(span(field.value))?)).ok()?;
        if name == header::CONNECTION && forward::list_has(value.as_bytes(), b"close") {
            keep_alive = false;
        }
        headers.append(name, value);
    }
    let mut req = Request::new(ReqBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some((req, keep_alive))
}

/// Writes a response with the router's framing; `false` when the connection must close
/// (the client asked, the response says so, or the body or the client failed).
async fn write_response<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    response: Response<RouterBody>,
    is_head: bool,
    mut keep_alive: bool,
    idle: Duration,
) -> bool {
    let (parts, mut body) = response.into_parts();
    let passing = body.take_passthrough();
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = body.size_hint().exact();
    let out = &mut c.out;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    // What the rest needs to know of the headers is noted while writing them.
    let (mut has_length, mut has_date) = (false, false);
    for (name, value) in &parts.headers {
        // Framing and connection handling are this side's, except that a HEAD answer
        // keeps the length the dyno gave for the body it did not send.
        if *name == header::CONNECTION {
            keep_alive &= !forward::list_has(value.as_bytes(), b"close");
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            has_length = true;
            if !is_head {
                continue;
            }
        }
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        has_date |= *name == header::DATE;
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(passing) = &passing {
        out.extend_from_slice(passing.lines());
        has_date |= passing.has_date();
    }
    let chunked = !bodiless && !is_head && length.is_none();
    if !bodiless && !is_head {
        match length {
            Some(n) => put_field(
                out,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            ),
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
        DATE.with(|d| put_field(out, b"date", d.borrow_mut().now()));
    }
    if !keep_alive {
        put_field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if bodiless || is_head {
        drop(body);
        return flush(c, idle).await && keep_alive;
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

/// Writes one `name: value` line of a head (also used for pass-through fields).
pub(crate) fn put_field(out: &mut impl BufMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes the gathered output. A client that takes nothing for the idle window is H28.
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
    let written = {
        let mut write = std::pin::pin!(async {
            io.write_all(out).await?;
            io.flush().await
        });
        // Nearly every write completes at once; only one that has to wait arms the timer.
        match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
            Poll::Ready(result) => Some(result),
            Poll::Pending => {
                timer
                    .as_mut()
                    .reset(deadline(tokio::time::Instant::now(), idle));
                tokio::select! {
                    biased;
                    result = write.as_mut() => Some(result),
                    () = timer.as_mut() => None,
                }
            }
        }
    };
    out.clear();
    match written {
        Some(Ok(())) => true,
        Some(Err(_)) => false,
        None => {
            client.mark_idle();
            false
        }
    }
}

/// `from + after`, or a day past the end of any test or deploy when a configured duration
/// is too large to add (as `tokio::time::timeout` would saturate rather than panic).
fn deadline(from: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    from.checked_add(after)
        .unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 86_400))
}

thread_local! {
    static DATE: RefCell<CachedDate> = RefCell::new(CachedDate { second: 0, value: Vec::new() });
}

/// The `Date` header, formatted once a second per thread.
struct CachedDate {
    second: u64,
    value: Vec<u8>,
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.value.is_empty() {
            self.second = second;
            self.value = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.value
    }
}

// ---------------------------------------------------------------------------------------
// The dyno's side
// ---------------------------------------------------------------------------------------

/// A keep-alive connection to a dyno, with what has been read from it and not yet used.
pub(crate) struct DynoConn {
    stream: TcpStream,
    buf: BytesMut,
    /// The first-byte timer, kept with the connection and re-armed per request: moving a
    /// registered timer's deadline later only records it (see `Conn::timer`).
    timer: Pin<Box<Sleep>>,
}

impl Pooled for DynoConn {
    /// A dyno's close is only seen on use; a request that finds it stale is retried.
    fn is_closed(&self) -> bool {
        false
    }
}

/// Why an exchange with a dyno failed before its response head was complete.
enum Exchange {
    /// Nothing at all came back (the connection was closed or reset): on a pooled
    /// connection, the dyno had closed it while idle.
    Nothing,
    /// The response head broke off.
    Broken,
    /// Not an HTTP/1.x response head.
    Malformed,
}

/// Sends a bodiless request to one dyno: a pooled connection if there is one, else a new
/// one, as [`proxy`]'s attempt does with hyper's client.
pub(crate) async fn attempt(
    config: &RouterConfig,
    backend: &Arc<BackendState>,
    req: Request<()>,
    fwd: &Forwarded<'_>,
) -> Attempt {
    let failure = |code, connect, service| Failure {
        code,
        backend: Arc::clone(backend),
        connect,
        service,
    };
    let is_head = req.method() == Method::HEAD;
    // Resending is harmless only for safe methods (RFC 9110 §9.2.1).
    let resendable = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let head = request_head(&req, fwd);
    let mut stale = 0;
    loop {
        let connect_started = Instant::now();
        let pooled = if stale < 3 {
            backend.conns.take()
        } else {
            None
        };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => match upstream::open(backend.backend.addr, config.connect_timeout).await {
                Ok(stream) => DynoConn {
                    stream,
                    buf: BytesMut::with_capacity(READ_CHUNK),
                    timer: Box::pin(tokio::time::sleep(config.first_byte_timeout)),
                },
                Err(e) => {
                    tracing::debug!(dyno = %backend.backend.dyno, error = %e, "dyno unreachable");
                    backend.quarantine();
                    return Attempt::Retry {
                        req: req.map(|()| ReqBody::Empty),
                        failure: failure(e.hcode(), connect_started.elapsed(), Duration::ZERO),
                    };
                }
            },
        };
        // A pooled connection needs no second clock read: it was ready at once.
        let (connect, dispatched_at) = if reused {
            (Duration::ZERO, connect_started)
        } else {
            (connect_started.elapsed(), Instant::now())
        };
        // No request body, so the first-byte clock simply runs from dispatch (the guard's
        // version pauses it while a client uploads).
        let answer = {
            let DynoConn { stream, buf, timer } = &mut conn;
            timer.as_mut().reset(deadline(
                tokio::time::Instant::from_std(dispatched_at),
                config.first_byte_timeout,
            ));
            let exchange = async {
                if stream.write_all(&head).await.is_err() {
                    return Err(Exchange::Nothing);
                }
                read_response_head(stream, buf, is_head).await
            };
            tokio::select! {
                biased;
                answer = exchange => Ok(answer),
                () = timer.as_mut() => Err(()),
            }
        };
        match answer {
            Ok(Ok(DynoHead {
                response,
                framing,
                keep_alive,
                passthrough,
            })) => {
                let body = DynoBody {
                    conn: Some(conn),
                    framing,
                    keep_alive,
                    aborted: false,
                    passthrough,
                };
                let request_headers = Some(req.into_parts().0.headers);
                return Attempt::Answered {
                    response: response.map(|()| Inner::Own(Box::new(body))),
                    sender: None,
                    connect,
                    dispatched_at,
                    request_headers,
                };
            }
            Ok(Err(Exchange::Nothing)) if reused && resendable => stale += 1,
            Ok(Err(Exchange::Malformed)) => {
                return Attempt::Failed(failure(HCode::H17, connect, dispatched_at.elapsed()));
            }
            Ok(Err(Exchange::Nothing | Exchange::Broken)) => {
                return Attempt::Failed(failure(HCode::H13, connect, dispatched_at.elapsed()));
            }
            // The dyno keeps working on the request; only the router gives up (as Heroku).
            Err(()) => {
                return Attempt::Failed(failure(HCode::H12, connect, dispatched_at.elapsed()));
            }
        }
    }
}

/// The request head as the dyno gets it, in one buffer for one write: the client's fields
/// as the pipeline left them, then Heroku's.
fn request_head(req: &Request<()>, fwd: &Forwarded<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        put_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    fwd.write_to(&mut out);
    out.extend_from_slice(b"\r\n");
    out
}

/// How a response body is delimited, and how much of it is left.
#[derive(Debug, PartialEq, Eq)]
enum BodyFraming {
    Length(u64),
    Chunked(ChunkDecoder),
    /// Until the dyno closes the connection.
    Close,
    Done,
}

/// Reads the response head (skipping interim 1xx answers other than 101).
async fn read_response_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    is_head: bool,
) -> Result<DynoHead, Exchange> {
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            match parse_response(buf, is_head)? {
                Some(Parsed::Interim) => continue,
                Some(Parsed::Final(head)) => return Ok(head),
                None if buf.len() > MAX_RESPONSE_HEAD => return Err(Exchange::Malformed),
                None => {}
            }
        }
        // Part of a head already in means the dyno may be holding the rest back for an ACK;
        // the first read of a response (nearly always the whole of it) needs no such care.
        let read = if received {
            std::future::poll_fn(|cx| poll_read_more(stream, buf, true, cx)).await
        } else {
            buf.reserve(READ_CHUNK);
            stream.read_buf(buf).await
        };
        match read {
            Ok(n) if n > 0 => {}
            _ if received => return Err(Exchange::Broken),
            _ => return Err(Exchange::Nothing),
        }
    }
}

/// A dyno's final response head: the fields the pipeline reads in the map, the others in
/// the pass-through block (see `passthrough`), and how the body and connection go on.
struct DynoHead {
    response: Response<()>,
    framing: BodyFraming,
    keep_alive: bool,
    passthrough: Option<Passthrough>,
}

enum Parsed {
    Interim,
    Final(DynoHead),
}

/// Parses a complete response head off the front of `buf`; `None` while incomplete.
fn parse_response(buf: &mut BytesMut, is_head: bool) -> Result<Option<Parsed>, Exchange> {
    let malformed = |_| Exchange::Malformed;
    let Some((code, http11, mut at)) = dyno_head::status_line(buf).map_err(malformed)? else {
        return Ok(None);
    };
    let status = StatusCode::from_u16(code).map_err(|_| Exchange::Malformed)?;
    let interim = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
    // One pass over the lines sorts the fields: the few the pipeline reads go into the map
    // (their positions are kept until the head is split off, so the values can share its
    // bytes); the rest pass through as bytes (see `passthrough`). What decides the framing
    // and the connection is noted on the way.
    let mut for_map: [Option<(HeaderName, usize, usize)>; 8] = [const { None }; 8];
    let mut more_for_map = Vec::new();
    let mut count = 0;
    let mut passing = passthrough::Builder::default();
    let mut framing_fields = FramingFields::default();
    let len = loop {
        let Some((field, next)) = dyno_head::line_at(buf, at).map_err(malformed)? else {
            return Ok(None);
        };
        at = next;
        let Some(dyno_head::Field { name, value }) = field else {
            break next;
        };
        count += 1;
        if count > dyno_head::MAX_FIELDS {
            return Err(Exchange::Malformed);
        }
        if interim {
            continue;
        }
        let Some(name) =
            passthrough::map_name(&buf[name.clone()]).map_err(|_| Exchange::Malformed)?
        else {
            passing.push(buf, (name.start, name.end), (value.start, value.end));
            continue;
        };
        if framing_fields.note(&name, &buf[value.clone()]) {
            let field = (name, value.start, value.end);
            match for_map.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(field),
                None => more_for_map.push(field),
            }
        }
    };
    let head = buf.split_to(len).freeze();
    if interim {
        return Ok(Some(Parsed::Interim));
    }
    // Room for the usual few, `Via` and `X-Cache` without growing.
    let mut headers = HeaderMap::with_capacity(6);
    for (name, start, end) in for_map.into_iter().flatten().chain(more_for_map) {
        headers.append(
            name,
            HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| Exchange::Malformed)?,
        );
    }
    let framing = framing_fields.framing(status, is_head)?;
    let keep_alive = http11 && !framing_fields.close && framing != BodyFraming::Close;
    let mut passthrough = passing.finish(&head);
    if framing_fields.names_fields {
        // `Connection` names fields to drop, which may be any of them: all go into the map,
        // where the hop-by-hop rule sees them.
        if let Some(block) = passthrough.take() {
            block.append_to(&mut headers);
        }
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *response.headers_mut() = headers;
    Ok(Some(Parsed::Final(DynoHead {
        response,
        framing,
        keep_alive,
        passthrough,
    })))
}

/// The fields of a response head that decide how its body is delimited and whether the
/// connection stays open.
#[derive(Default)]
struct FramingFields {
    /// The last `Transfer-Encoding` ends in `chunked`; `None` without the header.
    chunked: Option<bool>,
    length: Option<u64>,
    /// A `Content-Length` that is not a number, or differs from another.
    bad_length: bool,
    close: bool,
    /// A `Connection` lists more than keep-alive/close: it names fields to drop.
    names_fields: bool,
}

impl FramingFields {
    /// Notes a field; `false` when it has nothing more to say and need not be kept: a
    /// `Connection` of only `keep-alive`/`close` names no other header for the hop-by-hop
    /// pass to drop, which would only find and remove it again.
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if *name == header::TRANSFER_ENCODING {
            self.chunked = Some(
                value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if *name == header::CONTENT_LENGTH {
            for item in value.split(|&b| b == b',') {
                let item = item.trim_ascii();
                let n =
                    (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
                        .then(|| {
                            item.iter().try_fold(0u64, |n, &d| {
                                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                            })
                        })
                        .flatten();
                match n {
                    Some(n) if self.length.is_none_or(|l| l == n) => self.length = Some(n),
                    _ => self.bad_length = true,
                }
            }
        } else if *name == header::CONNECTION {
            // The usual value, settled without splitting the list.
            if value.eq_ignore_ascii_case(b"keep-alive") {
                return false;
            }
            self.close |= forward::list_has(value, b"close");
            let names = !value.split(|&b| b == b',').all(|t| {
                let t = t.trim_ascii();
                t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
            });
            self.names_fields |= names;
            return names;
        }
        true
    }

    /// RFC 9112 §6.3, strictly: where the length decides, conflicting or malformed lengths
    /// are a malformed response (H17).
    fn framing(&self, status: StatusCode, is_head: bool) -> Result<BodyFraming, Exchange> {
        if is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(BodyFraming::Length(0));
        }
        Ok(match (self.chunked, self.length) {
            (Some(true), _) => BodyFraming::Chunked(ChunkDecoder::default()),
            (Some(false), _) => BodyFraming::Close,
            _ if self.bad_length => return Err(Exchange::Malformed),
            (None, None) => BodyFraming::Close,
            (None, Some(n)) => BodyFraming::Length(n),
        })
    }
}

/// A dyno's response body read straight from its connection.
pub(crate) struct DynoBody {
    /// `None` once the connection was given back to the pool or dropped.
    conn: Option<DynoConn>,
    framing: BodyFraming,
    keep_alive: bool,
    aborted: bool,
    /// The response's pass-through fields, until the writer or `materialize` takes them.
    pub(crate) passthrough: Option<Passthrough>,
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the dyno closed the connection before the end of the response body")]
    Truncated,
    #[error("malformed chunked response body: {0}")]
    BadChunk(&'static str),
    #[error("the router gave up on this dyno connection (idle)")]
    Aborted,
    #[error("reading the response body: {0}")]
    Io(#[from] io::Error),
}

impl DynoBody {
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.aborted {
            return Poll::Ready(Some(Err(BodyError::Aborted.into())));
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut self.framing {
                BodyFraming::Done | BodyFraming::Length(0) => {
                    self.framing = BodyFraming::Done;
                    return Poll::Ready(None);
                }
                BodyFraming::Length(left) if !conn.buf.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    *left -= n as u64;
                    return Poll::Ready(Some(Ok(Frame::data(take(&mut conn.buf, n)))));
                }
                BodyFraming::Chunked(decoder) if !conn.buf.is_empty() => match decoder
                    .next(&mut conn.buf)
                {
                    Ok(Some(Piece::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Piece::End)) => {
                        self.framing = BodyFraming::Done;
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(cause) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(BodyError::BadChunk(cause).into())));
                    }
                },
                BodyFraming::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                _ => {}
            }
            // Only ever reached with the response's head in: mid-response.
            match ready!(poll_read_more(&mut conn.stream, &mut conn.buf, true, cx)) {
                Ok(0) if self.framing == BodyFraming::Close => {
                    self.framing = BodyFraming::Done;
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(BodyError::Truncated.into())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(BodyError::Io(e).into())));
                }
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(self.framing, BodyFraming::Done | BodyFraming::Length(0))
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            BodyFraming::Length(n) => SizeHint::with_exact(n),
            BodyFraming::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The connection, if the body ended cleanly and it can carry another request.
    pub(crate) fn take_reusable(&mut self) -> Option<DynoConn> {
        if !self.is_end_stream() || !self.keep_alive {
            return None;
        }
        self.conn.take().filter(|c| c.buf.is_empty())
    }

    /// Fails the body (H15): the connection is closed and the next poll reports it.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
        self.conn = None;
    }
}

/// The next `n` bytes of `buf`. Small pieces are copied, so the read buffer stays whole
/// and is reused for the connection's next response instead of reallocated.
fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= 4096 {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

/// Reads what the dyno has sent into `buf`. `mid_response`: part of the response is in, so
/// before waiting for the rest the router acknowledges it at once (see [`ack`]).
///
/// Through tokio's `read_buf` rather than `try_read_buf`: a read that does not fill the
/// buffer tells tokio the socket is drained, so the next wait goes straight to the event
/// loop instead of costing a `recv` that would only answer "would block" (one per request,
/// measured with callgrind).
fn poll_read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mid_response: bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    buf.reserve(READ_CHUNK);
    let polled = std::future::Future::poll(std::pin::pin!(stream.read_buf(buf)), cx);
    if polled.is_pending() && mid_response {
        ack::now(stream);
    }
    polled
}

/// Decodes a chunked body (RFC 9112 §7.1) as it arrives; trailers are read and dropped.
#[derive(Debug, Default, PartialEq, Eq)]
struct ChunkDecoder {
    state: ChunkState,
    /// Trailer bytes so far, bounded.
    trailer: usize,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

enum Piece {
    Data(Bytes),
    End,
}

/// A chunk-size line (with extensions) or a trailer line may not be longer.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;

impl ChunkDecoder {
    /// The next piece of the body from `buf`, consuming what it used; `None` when more
    /// bytes are needed.
    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, &'static str> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let digits = line
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    if digits.is_empty()
                        || digits.len() > 15
                        || !digits.iter().all(u8::is_ascii_hexdigit)
                    {
                        return Err("bad chunk size");
                    }
                    let size = digits.iter().fold(0u64, |n, &d| {
                        n * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))
                    });
                    buf.advance(line.len() + 2);
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    self.state = if left == n as u64 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    return Ok(Some(Piece::Data(take(buf, n))));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let used = line.len() + 2;
                    let done = line.is_empty();
                    buf.advance(used);
                    if done {
                        return Ok(Some(Piece::End));
                    }
                    self.trailer += used;
                    if self.trailer > MAX_TRAILERS {
                        return Err("trailers too large");
                    }
                }
            }
        }
    }
}

/// The CRLF-terminated line at the front of `buf` (without the CRLF), if complete.
fn line(buf: &BytesMut, max: usize) -> Result<Option<&[u8]>, &'static str> {
    match buf.iter().take(max + 2).position(|&b| b == b'\n') {
        Some(nl) if nl > 0 && buf[nl - 1] == b'\r' => Ok(Some(&buf[..nl - 1])),
        Some(_) => Err("line ended by a bare LF"),
        None if buf.len() > max + 1 => Err("line too long"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, bool), &'static str> {
        let mut buf = BytesMut::from(input);
        let mut d = ChunkDecoder::default();
        let mut out = Vec::new();
        loop {
            match d.next(&mut buf)? {
                Some(Piece::Data(b)) => out.extend_from_slice(&b),
                Some(Piece::End) => return Ok((out, true)),
                None => return Ok((out, false)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            decode_all(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n").unwrap(),
            (b"hello world".to_vec(), true)
        );
        assert_eq!(decode_all(b"5\r\nhel").unwrap(), (b"hel".to_vec(), false));
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            (b"0123456789".to_vec(), true)
        );
    }

    #[test]
    fn hostile_chunking_is_refused() {
        assert!(decode_all(b"zz\r\nhello\r\n").is_err());
        assert!(decode_all(b"5\nhello\r\n").is_err(), "bare LF");
        assert!(
            decode_all(b"5\r\nhelloXX0\r\n\r\n").is_err(),
            "data overrun"
        );
        assert!(
            decode_all(b"fffffffffffffffff\r\n").is_err(),
            "size overflow"
        );
        assert!(decode_all(&[b'1'; 5000]).is_err(), "endless size line");
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..20_000 {
            trailers.extend_from_slice(b"X-A: b\r\n");
        }
        assert!(decode_all(&trailers).is_err(), "unbounded trailers");
    }

    fn response(raw: &[u8], is_head: bool) -> Result<Option<(u16, BodyFraming, bool)>, ()> {
        let mut buf = BytesMut::from(raw);
        match parse_response(&mut buf, is_head) {
            Ok(Some(Parsed::Final(h))) => Ok(Some((
                h.response.status().as_u16(),
                h.framing,
                h.keep_alive,
            ))),
            Ok(Some(Parsed::Interim)) => Ok(Some((100, BodyFraming::Done, false))),
            Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }

    #[test]
    fn response_framing() {
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            Ok(Some((200, BodyFraming::Length(5), true)))
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Ok(Some((200, BodyFraming::Length(0), true)))
        );
        assert_eq!(
            response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok(Some((
                200,
                BodyFraming::Chunked(ChunkDecoder::default()),
                true
            )))
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\n\r\n", false),
            Ok(Some((200, BodyFraming::Close, false)))
        );
        assert_eq!(
            response(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            Ok(Some((200, BodyFraming::Length(1), false)))
        );
        assert_eq!(
            response(
                b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                false
            ),
            Ok(Some((204, BodyFraming::Length(0), false)))
        );
        assert_eq!(
            response(b"HTTP/1.1 100 Continue\r\n\r\n", false),
            Ok(Some((100, BodyFraming::Done, false)))
        );
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None));
    }

    #[test]
    fn hostile_responses_are_malformed() {
        assert_eq!(
            response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false
            ),
            Err(())
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false),
            Err(())
        );
        assert_eq!(
            response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                false
            ),
            Err(())
        );
        assert_eq!(response(b"SSH-2.0-OpenSSH\r\n\r\n", false), Err(()));
        assert_eq!(response(b"HTTP/1.1 999999 Big\r\n\r\n", false), Err(()));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..500 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(
            response(&many, false),
            Ok(Some((200, BodyFraming::Length(0), true))),
            "more fields than the stack holds"
        );
    }

    /// More map fields than the inline slots keep their order; pass-through positions hold
    /// after skipped empty lines; a `Proxy-*` name the map cannot hold is malformed.
    #[test]
    fn response_fields_sort_into_map_and_block() {
        let mut raw = b"\r\nHTTP/1.1 200 OK\r\nServer: s\r\n".to_vec();
        for i in 0..10 {
            raw.extend_from_slice(format!("Vary: v{i}\r\nX-P{i}: p{i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut buf = BytesMut::from(&raw[..]);
        let Ok(Some(Parsed::Final(head))) = parse_response(&mut buf, false) else {
            panic!("not parsed")
        };
        let vary: Vec<_> = head
            .response
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(vary, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
        let block = head.passthrough.expect("a block");
        let expected: String = std::iter::once("Server: s\r\n".to_string())
            .chain((0..10).map(|i| format!("X-P{i}: p{i}\r\n")))
            .collect();
        assert_eq!(String::from_utf8_lossy(block.lines()), expected);
        assert!(buf.is_empty());
        let long = format!(
            "HTTP/1.1 200 OK\r\nProxy-{}: v\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(70_000)
        );
        assert!(matches!(
            parse_response(&mut BytesMut::from(long.as_bytes()), false),
            Err(Exchange::Malformed)
        ));
    }

    #[test]
    fn requests_the_engine_leaves_to_hyper() {
        let parse = |raw: &[u8]| {
            let mut fields = Vec::new();
            assert!(
                matches!(
                    HeadScanner::default().scan_recording(raw, &mut fields),
                    Scan::Done(_)
                ),
                "{raw:?}"
            );
            parse_request(&Bytes::copy_from_slice(raw), &fields).map(|(r, keep_alive)| {
                (
                    r.method().clone(),
                    keep_alive,
                    r.uri().to_string(),
                    r.headers().clone(),
                )
            })
        };
        let (method, keep_alive, uri, headers) = parse(
            b"GET /a?b=c HTTP/1.1\r\nHost: a\r\nX-Pad: \t v  w \t\r\nX-Empty:\r\nX-Pad: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (method, keep_alive, uri.as_str()),
            (Method::GET, true, "/a?b=c")
        );
        assert_eq!(headers.len(), 4);
        assert_eq!(headers["host"], "a");
        assert_eq!(
            headers.get_all("x-pad").iter().collect::<Vec<_>>(),
            ["v  w", "2"],
            "values as the scanner trimmed them, in order"
        );
        assert_eq!(headers["x-empty"], "");
        assert!(
            !parse(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .1
        );
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
            None,
            "HTTP/1.0"
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"),
            None
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
