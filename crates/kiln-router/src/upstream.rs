//! Talking to dynos: opening HTTP/1.1 connections with a connect timeout, and keeping idle
//! keep-alive connections per dyno for reuse (as Heroku's Router 2.0 does).
//!
//! The pool is ours rather than hyper-util's legacy client because the router must know
//! things that client hides: whether connecting failed (so the request, still unsent, can
//! go to another dyno), how long connecting took (`connect=` in the log line), and whether
//! a request on a reused connection was never written (so it can be retried safely).

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::h2_watch::RequestBody;
use crate::hcode::HCode;

/// One connection to a dyno, to send requests on. Request bodies are streamed from the
/// client straight to the dyno. The router can also [`abort`](Sender::abort) it: a response
/// that stalls past the idle window (H15) must reach the client as a failure, never as a
/// short but complete-looking body, so the connection is failed from underneath hyper.
pub(crate) struct Sender {
    inner: SendRequest<RequestBody>,
    abort: Arc<Abort>,
}

impl Sender {
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        self.inner.ready().await
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub(crate) fn try_send_request(
        &mut self,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>> + use<>
    {
        self.inner.try_send_request(req)
    }

    /// Fails the connection: a response body still arriving on it ends in an error.
    pub(crate) fn abort(&self) {
        self.abort.aborted.store(true, Ordering::Release);
        let waker = self
            .abort
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[derive(Default)]
struct Abort {
    aborted: AtomicBool,
    /// The connection task's, from its latest read that had to wait.
    waker: Mutex<Option<Waker>>,
}

/// The dyno's socket, failing every operation once [`Sender::abort`] was called, and
/// acknowledging what arrived before it waits for more (see [`ack`](crate::ack)).
struct DynoIo {
    stream: TcpStream,
    abort: Arc<Abort>,
    /// Bytes were read since the last wait. hyper does not say where a response ends, so
    /// this is the best it can know of "mid-response": a wait after a whole response costs
    /// one needless (harmless) ACK, the price of never stalling on one in pieces.
    received: bool,
}

impl DynoIo {
    fn check(&self) -> io::Result<()> {
        if self.abort.aborted.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the router gave up on this dyno connection (idle)",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for DynoIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        let filled = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.received |= buf.filled().len() > filled;
        }
        if polled.is_pending() {
            if std::mem::take(&mut this.received) {
                crate::ack::now(&this.stream);
            }
            let mut waker = this
                .abort
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            drop(waker);
            // An abort between the check and storing the waker would otherwise be missed.
            this.check()?;
        }
        polled
    }
}

impl AsyncWrite for DynoIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Vegur closes idle connections to dynos after a minute; dynos are advised to keep theirs
/// open longer, so reusing one rarely races with the dyno closing it.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough to absorb a burst without holding sockets for it forever.
const POOL_MAX_IDLE: usize = 256;

/// Idle connections to one dyno, most recently used first out: hot connections stay warm
/// and the rest age out.
///
/// The pool is sharded by thread. A connection's task runs on the thread that opened it
/// (a router worker, see [`crate::workers`]), so a request sent on it from another thread
/// would cross cores twice; each worker therefore reuses only the connections it opened.
/// Threads beyond [`SHARDS`] share shards, which costs only that crossing.
pub(crate) struct Pool<T = Sender> {
    shards: [Mutex<Vec<Idle<T>>>; SHARDS],
}

/// What a pool can hold: a connection that may have been closed by the dyno meanwhile.
pub(crate) trait Pooled {
    fn is_closed(&self) -> bool;
}

impl Pooled for Sender {
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

const SHARDS: usize = 16;

/// This thread's shard of every pool.
fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

struct Idle<T> {
    sender: T,
    since: Instant,
}

impl<T: Pooled> Pool<T> {
    pub(crate) fn new() -> Pool<T> {
        Pool {
            shards: std::array::from_fn(|_| Mutex::new(Vec::new())),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle<T>>> {
        self.shards[shard()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection that still looks alive, if any.
    pub(crate) fn take(&self) -> Option<T> {
        let mut idle = self.idle();
        while let Some(conn) = idle.pop() {
            if conn.since.elapsed() < POOL_IDLE_TIMEOUT && !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Returns a connection whose last exchange finished cleanly.
    pub(crate) fn put(&self, sender: T) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        // The oldest entry sits at the bottom where `take` rarely reaches; retire it here
        // once it expires so it does not pin a socket on the dyno.
        if idle
            .first()
            .is_some_and(|c| c.since.elapsed() >= POOL_IDLE_TIMEOUT)
        {
            idle.remove(0);
        }
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
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
    #[error("starting HTTP/1.1 with dyno at {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
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

/// Opens a connection to a dyno and drives it on its own task.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = open(addr, timeout).await?;
    let abort = Arc::new(Abort::default());
    let io = DynoIo {
        stream,
        abort: Arc::clone(&abort),
        received: false,
    };
    let (inner, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) take the socket over once the dyno answers 101.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "dyno connection ended with an error");
        }
    });
    Ok(Sender { inner, abort })
}
