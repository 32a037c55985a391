//! Protocol switches (WebSocket and any other `Upgrade`): once the dyno answers 101, the
//! router stops speaking HTTP on both connections and pipes bytes between them.
//!
//! The client's connection switches only after the dyno has agreed, so a refused upgrade
//! leaves both sides speaking HTTP. The pipe closes after Heroku's idle window with
//! no byte in either direction (the 101 was logged already; nothing more is).

use crate::body::Switch;
use crate::wire::clock_ms;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Pipes bytes between the client's connection (the bytes it sent after its request first)
/// and the dyno's until either side closes or neither moves a byte for the idle window.
/// The dyno counts the connection as outstanding until then: a WebSocket is load.
pub(crate) async fn splice<C>(client: C, switch: Box<Switch>, idle: Duration)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Switch { dyno, outstanding } = *switch;
    let last = Arc::new(AtomicU64::new(clock_ms()));
    let mut client = Active {
        io: client,
        last: Arc::clone(&last),
    };
    let mut dyno = Active {
        io: dyno,
        last: Arc::clone(&last),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut dyno);
    tokio::pin!(copy);
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let deadline = last.load(Ordering::Relaxed).saturating_add(idle_ms);
        let now = clock_ms();
        if now >= deadline {
            tracing::debug!("upgraded connection idle for the whole window; closing it");
            break;
        }
        tokio::select! {
            result = &mut copy => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
        }
    }
    drop(outstanding);
}

/// Notes the time of every byte that moves through `io`.
struct Active<T> {
    io: T,
    last: Arc<AtomicU64>,
}

impl<T> Active<T> {
    fn moved(&self) {
        self.last.store(clock_ms(), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
