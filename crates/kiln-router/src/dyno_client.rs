//! The router's HTTP/1.1 client for dynos: one request head written in one write, the
//! response head parsed by [`dyno_head`], the body read as its framing says (length,
//! chunked, or until close) straight from the socket when the client's side asks for it. A
//! connection goes back to the dyno's pool once a body ended cleanly with nothing left over.
//!
//! It knows the dyno only by its address and its pool: balancing, quarantine and the log
//! line are the caller's.

use crate::ack;
use crate::chunked::{ChunkDecoder, Piece};
use crate::client::{ClientConn, RequestBody};
use crate::config::RouterConfig;
use crate::dyno_head;
use crate::forward::{self, Forwarded};
use crate::hcode::HCode;
use crate::passthrough::{self, MapField, MapFields, Passthrough};
use crate::pool::{Pool, Pooled};
use crate::timer::Deadline;
use crate::wire::{BoxError, deadline, put_field, take};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// A dyno's response head may not exceed this (hyper's client allows about as much).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------
// The dyno's side
// ---------------------------------------------------------------------------------------

/// A keep-alive connection to a dyno, with what has been read from it and not yet used.
/// How an exchange with a dyno ended.
pub(crate) enum Sent {
    /// The response head arrived; the body follows from the connection.
    Answered {
        response: Response<DynoBody>,
        connect: Duration,
        dispatched_at: Instant,
    },
    /// No connection could be opened: the request was never written, another dyno may
    /// take it (it comes back for that).
    Unreachable {
        out: Outgoing,
        body: Option<RequestBody>,
        code: HCode,
        connect: Duration,
    },
    /// The request was (maybe partly) sent; resending could repeat its effects.
    Failed {
        code: HCode,
        connect: Duration,
        service: Duration,
    },
}

pub(crate) struct DynoConn {
    stream: TcpStream,
    buf: BytesMut,
    /// The first-byte timer, kept with the connection and re-armed per request: a later
    /// deadline is only recorded (see [`Deadline`]).
    timer: Deadline,
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
    /// The dyno did not take the request, or answer it, within the first-byte timeout.
    Timeout,
    /// The client's request body failed.
    Client,
}

/// A request as it goes to a dyno: its head, written out once (the same bytes for every
/// dyno tried), and what the exchange needs to know of it. Made by [`prepare`].
pub(crate) struct Outgoing {
    head: Vec<u8>,
    is_head: bool,
    /// Resending is harmless only for safe methods (RFC 9110 §9.2.1), and possible only
    /// while the body (if any) is untouched.
    resendable: bool,
    /// `None` without a body; `Some(None)` for a chunked one.
    length: Option<Option<u64>>,
}

/// Writes out the head of the request in `parts` for a dyno, with `fwd`, Heroku's fields,
/// after the request's own (none for a request of the router's, such as fetching an app's
/// error page), and framed for `body`; a body that has already ended is no body (a GET
/// through hyper, an upgrade), and comes back as `None`. The request itself stays with the
/// caller: only the bytes travel on, so nothing the size of a request is moved from step to
/// step, or held in each step's future.
pub(crate) fn prepare(
    parts: &http::request::Parts,
    fwd: Option<&Forwarded<'_>>,
    mut body: Option<RequestBody>,
) -> (Outgoing, Option<RequestBody>) {
    if body.as_ref().is_some_and(Body::is_end_stream) {
        body = None;
    }
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let length = body.as_ref().map(|b| b.size_hint().exact());
    let out = Outgoing {
        head: request_head(parts, fwd, length),
        is_head: parts.method == Method::HEAD,
        resendable: body.is_none() && safe,
        length,
    };
    (out, body)
}

/// Sends a request ([`prepare`]d) to the dyno at `addr`: over a connection from its pool
/// if there is one, else a new one (`pool` may be owned by the future, so that a caller
/// need not wrap it in another). `body` is the client's request body, if it has one: it
/// streams to the dyno as it arrives, framed by its length or chunked. `client` is whose
/// body it is, to name the code when it fails on the client's side (H26, H27, H28).
pub(crate) fn send<P: std::ops::Deref<Target = Pool<DynoConn>>>(
    config: &RouterConfig,
    addr: SocketAddr,
    pool: P,
    out: Outgoing,
    mut body: Option<RequestBody>,
    client: Option<&ClientConn>,
) -> impl Future<Output = Sent> {
    // An async block, not an `async fn`: an `async fn` copies each argument into a local
    // of its future when first polled, and keeps room for both (bench/README.md, session
    // 17); the block uses them where they were captured.
    async move {
        let (is_head, resendable, length) = (out.is_head, out.resendable, out.length);
        let mut stale = 0;
        loop {
            let connect_started = Instant::now();
            let pooled = match stale {
                0..3 if body.is_some() => take_open(&pool, connect_started),
                0..3 => pool.take(connect_started),
                _ => None,
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => match open(addr, config.connect_timeout).await {
                    Ok(stream) => DynoConn {
                        stream,
                        buf: BytesMut::with_capacity(READ_CHUNK),
                        timer: Deadline::after(config.first_byte_timeout),
                    },
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "dyno unreachable");
                        return Sent::Unreachable {
                            out,
                            body,
                            code: e.hcode(),
                            connect: connect_started.elapsed(),
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
            let answer = {
                let DynoConn { stream, buf, timer } = &mut conn;
                let limit = config.first_byte_timeout;
                timer.set(deadline(
                    tokio::time::Instant::from_std(dispatched_at),
                    limit,
                ));
                exchange(
                    stream,
                    buf,
                    timer,
                    limit,
                    &out.head,
                    body.as_mut(),
                    length,
                    is_head,
                )
                .await
            };
            let failed = |code| Sent::Failed {
                code,
                connect,
                service: dispatched_at.elapsed(),
            };
            match answer {
                Ok((
                    DynoHead {
                        response,
                        framing,
                        keep_alive,
                        passthrough,
                        fields,
                    },
                    whole,
                )) => {
                    let body = DynoBody {
                        conn: Some(conn),
                        framing,
                        // A connection whose request went out only in part cannot carry another.
                        keep_alive: keep_alive && whole,
                        aborted: false,
                        passthrough,
                        fields,
                    };
                    return Sent::Answered {
                        response: response.map(|()| body),
                        connect,
                        dispatched_at,
                    };
                }
                Err(Exchange::Nothing) if reused && resendable => stale += 1,
                Err(Exchange::Malformed) => return failed(HCode::H17),
                Err(Exchange::Nothing | Exchange::Broken) => return failed(HCode::H13),
                // The dyno keeps working on the request; only the router gives up (as Heroku).
                Err(Exchange::Timeout) => return failed(HCode::H12),
                // The client's body failed: malformed (H26), idle (H28) or broken off (H27).
                Err(Exchange::Client) => {
                    return failed(client.map_or(HCode::H27, ClientConn::failure_code));
                }
            }
        }
    }
}

/// A pooled connection the dyno has not closed meanwhile, as far as can be told without
/// waiting: a request with a body cannot be sent again once it has gone out, so a stale
/// connection must not get it. (A bodiless request simply retries.)
fn take_open(pool: &Pool<DynoConn>, now: Instant) -> Option<DynoConn> {
    loop {
        let conn = pool.take(now)?;
        match conn.stream.try_read(&mut [0u8; 1]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(conn),
            // Closed, failed, or saying something unasked: not reusable.
            _ => continue,
        }
    }
}

/// One request and its response head on one connection: the head in one write, then the
/// body as the client sends it, while watching for the dyno answering early (an error page
/// before the whole upload, say). The first-byte clock (H12) runs from the last byte the
/// dyno took, and stands still while the client owes body bytes, whose own idle window
/// applies then. On success, also whether the whole request went out.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timer: &mut Deadline,
    limit: Duration,
    head: &[u8],
    mut body: Option<&mut RequestBody>,
    length: Option<Option<u64>>,
    is_head: bool,
) -> Result<(DynoHead, bool), Exchange> {
    let chunked = matches!(length, Some(None));
    match write_timed(stream, head, timer).await {
        Ok(()) => {}
        Err(Exchange::Broken) => return Err(Exchange::Nothing),
        Err(e) => return Err(e),
    }
    // Only a chunked body needs it: no allocation for the usual request.
    let mut frame_head = Vec::new();
    while let Some(b) = body.as_deref_mut() {
        // A body whose size says it has ended may not be polled again.
        if Body::is_end_stream(&*b) {
            if chunked {
                write_timed(stream, &b"0\r\n\r\n"[..], timer).await?;
            }
            break;
        }
        tokio::select! {
            biased;
            // Bytes from the dyno before the request is out: an interim 100, or an answer.
            ready = stream.readable() => {
                if ready.is_err() {
                    return Err(Exchange::Broken);
                }
                match stream.try_read_buf(buf) {
                    Ok(0) => return Err(Exchange::Broken),
                    Ok(_) => {
                        if let Some(head) = early_head(buf, is_head)? {
                            return Ok((head, false));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(Exchange::Broken),
                }
            }
            frame = b.frame() => match frame {
                None => {
                    if chunked {
                        write_timed(stream, &b"0\r\n\r\n"[..], timer).await?;
                    }
                    body = None;
                }
                Some(Err(_)) => return Err(Exchange::Client),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    // The clock restarts once the dyno takes bytes again (see below).
                    timer.set_after(limit);
                    if chunked {
                        // Size line, data and CRLF in one (vectored) write, data uncopied.
                        frame_head.clear();
                        write!(frame_head, "{:x}\r\n", data.len()).ok();
                        let chunk = Buf::chain(Buf::chain(&frame_head[..], &data[..]), &b"\r\n"[..]);
                        write_timed(stream, chunk, timer).await?;
                    } else {
                        write_timed(stream, &data[..], timer).await?;
                    }
                    timer.set_after(limit);
                }
            },
        }
    }
    let mut whole = true;
    if length.is_some() {
        // The dyno has the whole request from now: the clock runs from its last byte (a
        // client may have paused before the end, say before a chunked body's last chunk).
        timer.set_after(limit);
        // Part of an answer the watch above already read began before the request ended:
        // the dyno answered early, and its connection is not trusted with another request.
        // (One that answers early and keeps the connection says so by draining the rest, as
        // nginx does; one that will not serve another says `Connection: close`.)
        whole = buf.is_empty();
    }
    tokio::select! {
        biased;
        head = read_response_head(stream, buf, is_head) => head.map(|h| (h, whole)),
        () = timer.expired() => Err(Exchange::Timeout),
    }
}

/// A final response head among bytes that arrived while the request was still going out;
/// interim ones (100 Continue) are passed over.
fn early_head(buf: &mut BytesMut, is_head: bool) -> Result<Option<DynoHead>, Exchange> {
    loop {
        match parse_response(buf, is_head)? {
            Some(Parsed::Interim) => continue,
            Some(Parsed::Final(head)) => return Ok(Some(head)),
            None if buf.len() > MAX_RESPONSE_HEAD => return Err(Exchange::Malformed),
            None => return Ok(None),
        }
    }
}

/// Writes to the dyno within the first-byte deadline: a dyno that stops taking the request
/// for that long is H12, as one that takes it and does not answer.
async fn write_timed(
    stream: &mut TcpStream,
    mut bytes: impl Buf,
    timer: &mut Deadline,
) -> Result<(), Exchange> {
    tokio::select! {
        biased;
        written = stream.write_all_buf(&mut bytes) => written.map_err(|_| Exchange::Broken),
        () = timer.expired() => Err(Exchange::Timeout),
    }
}

/// The request head as the dyno gets it, in one buffer for one write: the client's fields
/// as the pipeline left them, then Heroku's. `length` is the body's framing when there is
/// one (`Some(None)`: unknown, so chunked); the router writes it, never the client's.
fn request_head(
    req: &http::request::Parts,
    fwd: Option<&Forwarded<'_>>,
    length: Option<Option<u64>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        if *name == header::TRANSFER_ENCODING
            || (*name == header::CONTENT_LENGTH && length.is_some())
        {
            continue;
        }
        put_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    match length {
        Some(Some(n)) => put_field(
            &mut out,
            b"content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        ),
        Some(None) => put_field(&mut out, b"transfer-encoding", b"chunked"),
        None => {}
    }
    if let Some(fwd) = fwd {
        fwd.write_to(&mut out);
    }
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
    /// The map fields the head held.
    fields: MapFields,
}

enum Parsed {
    Interim,
    Final(DynoHead),
}

/// Parses a complete response head off the front of `buf`; `None` while incomplete.
fn parse_response(buf: &mut BytesMut, is_head: bool) -> Result<Option<Parsed>, Exchange> {
    let malformed = |_| Exchange::Malformed;
    // Positions in the head are kept as `u32` (here and in `passthrough`). The reader stops
    // long before (`MAX_RESPONSE_HEAD` and one read more); this makes the bound explicit.
    if u32::try_from(buf.len()).is_err() {
        return Err(Exchange::Malformed);
    }
    let Some((code, http11, mut at)) = dyno_head::status_line(buf).map_err(malformed)? else {
        return Ok(None);
    };
    let status = StatusCode::from_u16(code).map_err(|_| Exchange::Malformed)?;
    let interim = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
    // One pass over the lines sorts the fields: the few the pipeline reads go into the map
    // (their positions are kept until the head is split off, so the values can share its
    // bytes); the rest pass through as bytes (see `passthrough`). What decides the framing
    // and the connection is noted on the way.
    let mut for_map = ForMap::default();
    let mut fields = MapFields::default();
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
        let Some(kind) = MapField::of(&buf[name.clone()]).map_err(|_| Exchange::Malformed)? else {
            passing.push(buf, (name.start, name.end), (value.start, value.end));
            continue;
        };
        if framing_fields.note(kind, &buf[value.clone()]) {
            fields = fields.with(kind);
            for_map.push(MapEntry {
                kind,
                name: (name.start as u32, name.end as u32),
                value: (value.start as u32, value.end as u32),
            });
        }
    };
    let head = buf.split_to(len).freeze();
    if interim {
        return Ok(Some(Parsed::Interim));
    }
    // Room for the usual few, `Via` and `X-Cache` without growing (a map the worker kept
    // from an earlier response, when it has one: `maps`).
    let mut headers = crate::maps::take(6);
    for entry in for_map.entries() {
        let span = |(start, end): (u32, u32)| start as usize..end as usize;
        let name = entry
            .kind
            .name(&head[span(entry.name)])
            .map_err(|_| Exchange::Malformed)?;
        let value = HeaderValue::from_maybe_shared(head.slice(span(entry.value)))
            .map_err(|_| Exchange::Malformed)?;
        headers.append(name, value);
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
        fields,
    })))
}

/// A field of a response head bound for the map, by its positions in the head (kept
/// until the head is split off, so that the value can share the head's bytes).
#[derive(Clone, Copy)]
struct MapEntry {
    kind: MapField,
    name: (u32, u32),
    value: (u32, u32),
}

/// The map fields of one head: the usual few in place, more (a head of many `Vary` or
/// `Cache-Control` lines) in a vector.
#[derive(Default)]
struct ForMap {
    first: [Option<MapEntry>; 8],
    count: usize,
    more: Vec<MapEntry>,
}

impl ForMap {
    fn push(&mut self, entry: MapEntry) {
        match self.first.get_mut(self.count) {
            Some(slot) => *slot = Some(entry),
            None => self.more.push(entry),
        }
        self.count += 1;
    }

    fn entries(&self) -> impl Iterator<Item = &MapEntry> {
        self.first.iter().flatten().chain(&self.more)
    }
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
    fn note(&mut self, kind: MapField, value: &[u8]) -> bool {
        if kind == MapField::TransferEncoding {
            self.chunked = Some(
                value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if kind == MapField::ContentLength {
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
        } else if kind == MapField::Connection {
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
    /// The map fields the dyno's head held (the map holds no other, but for what the
    /// router adds): the hop-by-hop rule has nothing to look for without one of its fields
    /// among them (pass-through fields are never such), and the router's own fields can go
    /// with the pass-through block when the dyno sent none of the name.
    pub(crate) fields: MapFields,
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

    /// The connection after a 101, with whatever the dyno sent past its head: it now
    /// speaks the switched protocol, and never returns to the pool.
    pub(crate) fn into_upgraded(mut self) -> Option<kiln_net::Rewind<TcpStream>> {
        let conn = self.conn.take()?;
        Some(kiln_net::Rewind::new(conn.buf.freeze(), conn.stream))
    }

    /// Fails the body (H15): the connection is closed and the next poll reports it.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
        self.conn = None;
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

/// Why no connection to a dyno could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connection to dyno at {addr} refused")]
    Refused { addr: SocketAddr },
    #[error("connection to dyno at {addr} not established within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("connecting to dyno at {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
}

impl ConnectError {
    /// Heroku has two codes for failing to reach a dyno; every failure that is not a
    /// timeout counts as refused.
    pub(crate) fn hcode(&self) -> HCode {
        match self {
            ConnectError::Timeout { .. } => HCode::H19,
            _ => HCode::H21,
        }
    }
}

/// Opens a TCP connection to a dyno within `timeout`.
pub(crate) async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                addr,
                after: timeout,
            });
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused { addr });
        }
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(stream)) => stream,
    };
    // Requests and response heads are small; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Not a check: a loop for counting the parser's instructions under callgrind
    /// (`--toggle-collect='kiln_router::dyno_client::parse_response'`), on the head the router bench's nginx dyno
    /// sends.
    #[test]
    #[ignore]
    fn dyno_head_cost() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 05:48:38 GMT\r\nContent-Type: text/html\r\nContent-Length: 620\r\nLast-Modified: Sun, 06 Dec 2026 05:47:58 GMT\r\nConnection: keep-alive\r\nETag: \"6752d1ee-26c\"\r\nAccept-Ranges: bytes\r\n\r\n";
        for _ in 0..10_000 {
            let mut buf = BytesMut::from(head);
            let parsed = std::hint::black_box(parse_response(&mut buf, false));
            assert!(matches!(parsed, Ok(Some(Parsed::Final(_)))));
        }
    }

    /// The hop-by-hop pass over a response's map is skipped only when the map holds none
    /// of the fields it drops.
    #[test]
    fn heads_say_whether_the_hop_by_hop_rule_has_work() {
        let hop = |fields: &str| {
            let raw = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{fields}Content-Length: 0\r\n\r\n"
            );
            match parse_response(&mut BytesMut::from(raw.as_bytes()), false) {
                Ok(Some(Parsed::Final(h))) => h.fields.hop_by_hop(),
                _ => panic!("{raw:?} did not parse"),
            }
        };
        for plain in [
            "",
            "Connection: keep-alive\r\n",
            "Server: x\r\nVia: 1.1 a\r\n",
        ] {
            assert!(!hop(plain), "{plain:?}");
        }
        for dropped in [
            "Connection: close, X-Secret\r\n",
            "Keep-Alive: timeout=5\r\n",
            "TE: trailers\r\n",
            "Trailer: X-Sum\r\n",
            "Upgrade: h2c\r\n",
            "Proxy-Authenticate: Basic\r\n",
            "Transfer-Encoding: gzip\r\n",
        ] {
            assert!(hop(dropped), "{dropped:?}");
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
        assert_eq!(String::from_utf8_lossy(&block.lines()), expected);
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
}
