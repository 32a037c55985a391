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
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client::RequestBody;
use crate::dyno_client::{ConnectError, open};
use crate::pool::Pooled;

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

impl Pooled for Sender {
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
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
