//! Serving the API and git listener: axum's router on hyper's HTTP/1.1, with the limits
//! every Kiln door has (issue 22), where `axum::serve` offers none:
//!
//! - a cap on open connections, in all and per client address (`kiln_net::Gate`): over it, a
//!   connection is closed unread;
//! - a head timeout: a request head (and so an idle keep-alive connection, and a slowloris
//!   client sending a head a byte at a time) must arrive whole within it;
//! - an idle timeout while a request body streams in (a slow-body attack, or a stalled
//!   `git push`): a body that sends nothing for it fails;
//! - a stall timeout while responses go out: a client that stops reading (a slow-read attack)
//!   for it is disconnected, releasing the connection and what it holds.
//!
//! Shutdown stops accepting, asks every connection to finish its current request, and
//! waits for them (the caller bounds that wait).

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kiln_net::{Admitted, ConnLimits, Gate};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;

/// The API listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    pub connections: ConnLimits,
    /// How long a request head may take, counted from when the connection is ready for one.
    pub head_timeout: Duration,
    /// How long a request body, or a response, may make no progress.
    pub idle_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            connections: ConnLimits {
                total: 1_000,
                per_ip: 100,
            },
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The API's HTTPS listener: its TLS configuration, and the rendezvous that `heroku run`'s
/// connections (TLS, then a line that is not an HTTP request) are handed to.
#[derive(Clone)]
pub struct TlsDoor {
    pub config: Arc<rustls::ServerConfig>,
    pub rendezvous: crate::Rendezvous,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for open connections
/// to finish their current request. With `tls`, every connection is TLS, and carries either
/// HTTP (the API and git) or a rendezvous.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    tls: Option<TlsDoor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let gate = Gate::new(
        if tls.is_some() { "API (HTTPS)" } else { "API" },
        config.connections,
    );
    let idle = config.idle_timeout;
    let mut app = app.layer(axum::middleware::map_request(
        move |req: Request| async move { req.map(|body| Body::new(IdleBody::new(body, idle))) },
    ));
    if tls.is_some() {
        app = app.layer(axum::middleware::map_request(
            |mut req: Request| async move {
                req.extensions_mut().insert(crate::ViaTls);
                req
            },
        ));
    }
    let acceptor = tls.as_ref().map(|t| {
        (
            tokio_rustls::TlsAcceptor::from(Arc::clone(&t.config)),
            t.rendezvous.clone(),
        )
    });
    let mut http = http1::Builder::new();
    // hyper's header timer also runs while a kept-alive connection waits for its next request.
    http.timer(TokioTimer::new())
        .header_read_timeout(config.head_timeout)
        .max_buf_size(256 * 1024);
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            () = &mut shutdown => break,
            accepted = kiln_net::accept(&listener, &gate) => accepted,
        };
        let _ = stream.set_nodelay(true);
        let io = StallTimeout::new(Admitted::new(stream, permit), idle);
        let service = TowerToHyperService::new(WithPeer {
            app: app.clone(),
            peer,
        });
        let (http, stop) = (Arc::clone(&http), stop_rx.clone());
        let Some((acceptor, rendezvous)) = acceptor.clone() else {
            tokio::spawn(serve_http(io, service, http, stop, peer));
            continue;
        };
        let head_timeout = config.head_timeout;
        tokio::spawn(async move {
            // The handshake and the first line together must come within the head timeout,
            // as a plain request head must.
            let opened = tokio::time::timeout(head_timeout, async {
                let mut tls = acceptor.accept(io).await?;
                let first = sniff(&mut tls).await?;
                Ok::<_, io::Error>((tls, first))
            })
            .await;
            match opened {
                Ok(Ok((tls, Sniffed::Http(prefix)))) => {
                    serve_http(
                        kiln_net::Rewind::new(prefix, tls),
                        service,
                        http,
                        stop,
                        peer,
                    )
                    .await
                }
                Ok(Ok((tls, Sniffed::Rendezvous(line)))) => rendezvous.attach(&line, tls).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "API TLS connection failed"),
                Err(_) => tracing::debug!(%peer, "API TLS connection sent no request in time"),
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver; this resolves once all have finished.
    stop_tx.closed().await;
    Ok(())
}

/// One HTTP/1.1 connection, until it ends or the server stops (then after its current request).
async fn serve_http<IO, S>(
    io: IO,
    service: S,
    http: Arc<http1::Builder>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // `kiln run` switches the connection to its attach protocol.
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // (The guard `wait_for` returns is dropped at once: it must not be held.)
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "API connection ended with an error");
    }
}

pub use kiln_net::ClientAddr;

/// The router, handing each request its connection's [`ClientAddr`].
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: std::net::SocketAddr,
}

impl tower_service::Service<hyper::Request<hyper::body::Incoming>> for WithPeer {
    type Response =
        <Router as tower_service::Service<hyper::Request<hyper::body::Incoming>>>::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<hyper::Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<hyper::Request<hyper::body::Incoming>>::poll_ready(
            &mut self.app,
            cx,
        )
    }

    fn call(&mut self, mut req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(ClientAddr(self.peer));
        self.app.call(req)
    }
}

/// What a TLS connection to the API opens with.
enum Sniffed {
    /// The start of an HTTP request (a method, then a space), to be read again by hyper.
    Http(Bytes),
    /// A line with no space in it: a rendezvous secret, without its line ending.
    Rendezvous(String),
}

/// Reads just enough to tell an HTTP request (`GET /… HTTP/1.1`: a space before the first line
/// ends) from a rendezvous line (`SECRET\r\n`: no space at all).
async fn sniff<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<Sniffed> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(i) = buf.iter().position(|&b| b == b' ' || b == b'\n') {
            if buf[i] == b' ' {
                return Ok(Sniffed::Http(Bytes::from(buf)));
            }
            let line = String::from_utf8_lossy(&buf[..i])
                .trim_end_matches('\r')
                .to_string();
            // Whatever came after the line is input the client sent early; a rendezvous
            // client waits for the answer before sending any, so there is none to keep.
            return Ok(Sniffed::Rendezvous(line));
        }
        if buf.len() >= crate::run::MAX_RENDEZVOUS_LINE {
            // Neither: hyper reads it and answers as it answers garbage.
            return Ok(Sniffed::Http(Bytes::from(buf)));
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a request",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request body that fails once it has sent nothing for `idle`.
struct IdleBody {
    inner: Body,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleBody {
    fn new(inner: Body, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            timer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
struct BodyIdle(Duration);

impl hyper::body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Progress: the window starts again at the next wait.
                this.timer = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(axum::Error::new(BodyIdle(idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A transport whose writes fail once they have been blocked for `limit`: the client is not
/// reading. Reads are left to hyper's head timer and [`IdleBody`].
struct StallTimeout<IO> {
    io: IO,
    limit: Duration,
    /// Armed while a write waits.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> StallTimeout<IO> {
    fn new(io: IO, limit: Duration) -> StallTimeout<IO> {
        StallTimeout {
            io,
            limit,
            stalled: None,
        }
    }

    /// After a write attempt: progress disarms the timer, waiting arms it (once) and fails
    /// when it fires.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
