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
//! ([`guard::spawn_connection`], with the guard in front) together with the bytes read so
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
//! The dyno side is [`dyno_client`](crate::dyno_client), reached through the proxy's
//! dispatch like every other request.

use crate::body::RouterBody;
use crate::client::{ClientConn, ReqBody};
use crate::conn;
use crate::forward;
use crate::guard;
use crate::head::{FieldSpan, Framing, HeadScanner, Scan};
use crate::proxy::{self, Shared};
use crate::wire::{self, deadline, put_field};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::server::conn::http1;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Sleep;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
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
    stopping: conn::Stopping,
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
            client_ip: conn::client_ip_header(peer.ip()),
            out: Vec::with_capacity(1024),
            fields: Vec::new(),
            timer: Box::pin(tokio::time::sleep(shared.config.head_timeout)),
            stopping: conn::Stopping::new(&shared.stopping, stop.clone()),
        };
        if let Some(pre) = serve(&mut conn, &shared).await {
            let io = kiln_net::Rewind::new(pre, conn.io);
            guard::spawn_connection(io, peer, &http, &shared, stop);
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
        wire::put_date(out);
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

#[cfg(test)]
mod tests {
    use super::*;

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
