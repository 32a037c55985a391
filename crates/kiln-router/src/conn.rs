//! What every client connection shares, whichever protocol serves it: waiting for the
//! router to shut down, and the client's address as `X-Forwarded-For` writes it.

use http::HeaderValue;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::sync::watch;

/// Resolves when the router starts shutting down (or has gone).
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The returned guard is dropped here, so it is never held across the connection's awaits.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// [`stopping`] for a connection that waits on it between every two requests. Polling
/// tokio's watch future takes a lock that every connection shares, twice a request; this
/// checks a flag instead ([`Shared::stopping`](crate::Shared::stopping)) and polls the channel only to register the
/// task's waker, when it is new. The router sets the flag before the channel wakes anyone,
/// so a woken connection sees it.
pub(crate) struct Stopping {
    flag: Arc<AtomicBool>,
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The waker the channel holds for this connection.
    registered: Option<Waker>,
}

impl Stopping {
    pub(crate) fn new(flag: &Arc<AtomicBool>, mut stop: watch::Receiver<bool>) -> Stopping {
        // Outside tokio's task budget: a budgeted future may answer `Pending` without
        // having polled the channel, and then nothing would be registered to wake us.
        let wait = tokio::task::coop::unconstrained(async move { stopping(&mut stop).await });
        Stopping {
            flag: Arc::clone(flag),
            wait: Box::pin(wait),
            registered: None,
        }
    }
}

impl Future for Stopping {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let polled = this.wait.as_mut().poll(cx);
        if polled.is_pending() {
            this.registered = Some(cx.waker().clone());
        }
        polled
    }
}

/// Sets a flag when dropped.
pub(crate) struct SetOnDrop<'a>(pub(crate) &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The client address as `X-Forwarded-For` shows it: IPv4-mapped IPv6 as plain IPv4.
pub(crate) fn client_ip_header(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    // An IP address always renders as a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection's first wait for shutdown may come when its task has spent tokio's
    /// budget (a hyper connection that just read a fast upload): it must still be woken.
    #[tokio::test(flavor = "current_thread")]
    async fn stopping_is_woken_even_when_first_polled_out_of_budget() {
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = watch::channel(false);
        let mut stopping = Stopping::new(&flag, rx);
        // One task, as a connection: the first poll out of budget, then the wait.
        let waiting = tokio::spawn(async move {
            let first = std::future::poll_fn(|cx| {
                while let Poll::Ready(progress) = tokio::task::coop::poll_proceed(cx) {
                    progress.made_progress();
                }
                Poll::Ready(Pin::new(&mut stopping).poll(cx))
            })
            .await;
            assert!(first.is_pending());
            (&mut stopping).await;
        });
        // Long enough for the task to settle into its wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        flag.store(true, Ordering::SeqCst);
        tx.send_replace(true);
        let woken = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(
            woken.is_ok_and(|joined| joined.is_ok()),
            "woken by the shutdown"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stopping_is_woken_when_the_router_goes_away() {
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = watch::channel(false);
        let stopping = Stopping::new(&flag, rx);
        let waiting = tokio::spawn(stopping);
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            // As in `serve_on`: the guard, declared after the sender, drops first.
            let _tx = tx;
            let _guard = SetOnDrop(&flag);
        }
        let woken = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(
            woken.is_ok_and(|joined| joined.is_ok()),
            "woken when the sender went"
        );
    }
}
