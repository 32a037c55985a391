//! The HTTPS listener: TLS termination, then HTTP/2 or HTTP/1.1 as the client chose in
//! ALPN, into the same request pipeline as plain HTTP. Dynos are always reached over
//! HTTP/1.1 on the pooled connections; requests gain `X-Forwarded-Proto: https` and the
//! TLS port in `X-Forwarded-Port`, and router log lines say `protocol=https`.
//!
//! Certificates are chosen per handshake by [`kiln_tls::SniResolver`] (an app's uploaded
//! certificate for its hostnames, else the generated default), which is built into the
//! rustls configuration passed to [`serve_tls`](crate::serve_tls).
//!
//! What a connection may do before it is served:
//! - the first byte must arrive and the handshake finish within [`HANDSHAKE_TIMEOUT`], so
//!   a client that opens connections and sends nothing cannot hold them;
//! - a connection whose first byte is not a TLS handshake record is not given to rustls:
//!   plain HTTP sent to the HTTPS port gets a short 400 saying so (as nginx does), anything
//!   else is closed. Malformed handshakes end in a TLS alert and a close; neither stops the
//!   listener.

use crate::Shared;
use crate::body::RouterBody;
use crate::client::{ClientConn, ReqBody};
use crate::conn;
use crate::forward::ListenerInfo;
use crate::pages;
use crate::table::RouteTable;
use http::Request;
use http::header::{self, HeaderMap, HeaderValue};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A client's connection as accepted: its socket, holding its place under the listener's caps.
pub(crate) type Client = kiln_net::Admitted<TcpStream>;

/// Time from accepting a connection to the end of the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open at once (what nginx allows by default is 128;
/// browsers rarely open more than 100).
const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Bound on one HTTP/2 request's header block once decompressed: past HTTP/1.1's own limit on
/// a head (HTTP/2 counts 32 bytes more per field), so that the router's per-line checks
/// (`head::check_h2`) answer first, with the router's page and an H26 line.
const MAX_HEADER_LIST_SIZE: u32 =
    (crate::head::MAX_HEAD + 32 * (crate::head::MAX_HEADERS + 1)) as u32;

/// The answer to plain HTTP on the HTTPS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 61\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL to reach an app.\n";

/// What requests on a TLS listener on `port` are forwarded as.
pub(crate) fn listener_info(port: u16) -> ListenerInfo {
    ListenerInfo::https(port)
}

/// The route table answers which app a TLS client's SNI name belongs to.
impl kiln_tls::HostOwner for RouteTable {
    fn owner_of(&self, hostname: &str) -> Option<String> {
        self.lookup_host(hostname)
            .map(|app| app.app_id().to_string())
    }
}

/// Handshakes on its own task, then serves the connection with the protocol negotiated.
pub(crate) fn spawn_connection(
    stream: Client,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = acceptor.clone();
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let handshake = tokio::select! {
            result = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, &acceptor)) => result,
            () = conn::stopping(&mut stop) => return,
        };
        let tls = match handshake {
            Ok(Ok(Some(tls))) => tls,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                // Scanners, old clients and clients that distrust the certificate: routine.
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            serve_h2(tls, peer, shared, stop).await;
        } else {
            crate::engine::serve_connection(tls, peer, shared, stop).await;
        }
    });
}

/// The TLS handshake, after a look at the first byte: `Ok(None)` for a connection that was
/// not TLS (and has been answered or closed).
async fn handshake(
    stream: Client,
    acceptor: &TlsAcceptor,
) -> io::Result<Option<tokio_rustls::server::TlsStream<Client>>> {
    let mut first = [0u8; 1];
    if stream.get_ref().peek(&mut first).await? == 0 {
        return Ok(None);
    }
    // 0x16 starts every TLS handshake record (a ClientHello included).
    if first[0] != 0x16 {
        if first[0].is_ascii_uppercase() {
            answer_plain_http(stream).await;
        }
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}

/// Reads what the client sent (so closing does not reset the connection under its
/// response), answers 400 and closes.
async fn answer_plain_http(mut stream: Client) {
    let mut buf = vec![0u8; 8192];
    let _ = stream.read(&mut buf).await;
    if stream.write_all(PLAIN_HTTP_ANSWER).await.is_ok() {
        let _ = stream.shutdown().await;
        // Drain briefly so the client reads the answer before the socket closes.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// Serves an HTTP/2 connection until the client closes it, it sits idle for the router's
/// idle timeout, or the router shuts down (GOAWAY, letting open streams finish).
async fn serve_h2(
    io: tokio_rustls::server::TlsStream<Client>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let idle_timeout = shared.config.idle_timeout;
    let started = Instant::now();
    // Milliseconds after `started` when the last request arrived.
    let last_request = Arc::new(AtomicU64::new(0));
    let client_ip = conn::client_ip_header(peer.ip());
    let service = {
        let last_request = Arc::clone(&last_request);
        service_fn(move |mut req: Request<Incoming>| {
            last_request.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            join_cookies(req.headers_mut());
            let shared = Arc::clone(&shared);
            let client_ip = client_ip.clone();
            async move {
                let permit = Arc::clone(&shared.h2_streams).try_acquire_owned().ok();
                let mut response = match crate::head::check_h2(&req) {
                    Err(rejection) => crate::refuse::refused_head(&shared, &client_ip, rejection),
                    Ok(()) if permit.is_none() => pages::busy(),
                    Ok(()) => {
                        // The stream's own state, as the engine keeps one per HTTP/1 connection:
                        // its body's idleness decides H28.
                        let client = ClientConn::stream(shared.config.idle_timeout);
                        let idle = shared.config.idle_timeout;
                        let mut response = crate::handle(
                            shared,
                            client_ip,
                            Some(client.clone()),
                            req.map(ReqBody::Hyper),
                        )
                        .await;
                        // hyper writes only the map, and the watch hides the body that holds
                        // the dyno's other fields.
                        crate::body::materialize(&mut response);
                        response.map(|body| {
                            RouterBody::layered(Box::pin(crate::h2_watch::ResponseWatch::new(
                                body, client, idle, permit,
                            )))
                        })
                    }
                };
                // HTTP/2 has no `Connection`, and refusing a stream does not close the connection.
                response.headers_mut().remove(header::CONNECTION);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    let result = loop {
        let idle_at =
            started + Duration::from_millis(last_request.load(Ordering::Relaxed)) + idle_timeout;
        tokio::select! {
            result = conn.as_mut() => break result,
            () = conn::stopping(&mut stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(idle_at.into()), if !closing => {
                // Requests still open keep it going: a graceful shutdown lets them finish.
                if started + Duration::from_millis(last_request.load(Ordering::Relaxed)) + idle_timeout <= Instant::now() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP/2 client connection ended with an error");
    }
}

/// HTTP/2 lets a client split `Cookie` into one field per cookie; HTTP/1.1 servers expect
/// one line, so they are joined with `; ` before the request goes on (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    // Joining valid values with "; " stays valid; outside input still never gets an unwrap.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_joined_for_http1() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        assert_eq!(
            h.get_all(header::COOKIE).iter().collect::<Vec<_>>(),
            ["a=1; b=2; c=3"]
        );
        let mut one = HeaderMap::new();
        one.append(header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut one);
        assert_eq!(one[header::COOKIE], "a=1");
    }

    #[test]
    fn plain_http_answer_is_well_formed() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }
}
