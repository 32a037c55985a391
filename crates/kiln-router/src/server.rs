//! Accepting client connections and serving HTTP/1.1 on them until shutdown.
//!
//! Each connection runs on its own task, on one of the listener's worker threads
//! ([`crate::workers`]). Shutdown stops accepting at once, then lets every
//! connection finish the request it is on (idle keep-alive connections close straight
//! away) before [`serve`] returns.

use crate::config::RouterConfig;
use crate::forward::ListenerInfo;
use crate::guard;
use crate::proxy::Shared;
use crate::table::RouteTable;
use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use kiln_model::log::LogSink;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves the router on `listener` until `shutdown` completes, then waits for open
/// connections to finish their current request. Wrap the call in a timeout to bound that
/// wait (streaming responses and WebSockets can last indefinitely).
///
/// Only fails if the listener's address cannot be read; errors accepting or serving single
/// connections are logged and never stop the router.
pub async fn serve(
    listener: TcpListener,
    table: Arc<RouteTable>,
    logs: Arc<dyn LogSink>,
    config: RouterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_on(listener, table, logs, config, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (see [`crate::tls`]).
pub(crate) async fn serve_on(
    listener: TcpListener,
    table: Arc<RouteTable>,
    logs: Arc<dyn LogSink>,
    config: RouterConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    if crate::host::normalize_domain(&config.domain) != table.domain() {
        tracing::warn!(
            config = config.domain,
            table = table.domain(),
            "router config and route table disagree on the domain; the table's is used"
        );
    }
    let mut http = http1::Builder::new();
    // Bounds how long a client may take to send a request head, idle keep-alive included
    // (slowloris). Heroku's limits are enforced by the guard (`crate::guard`) before hyper
    // reads a head; hyper's own limits are set just above them so they never bite first.
    http.timer(TokioTimer::new())
        .header_read_timeout(config.head_timeout)
        // A client may close its sending side once its request is out (`shutdown(SHUT_WR)`,
        // `curl --no-buffer` with stdin, many scripts): it still reads the answer. Without
        // this hyper took the early FIN for a vanished client, dropped the request mid-way
        // and wrote no log line, while the dyno went on with it.
        .half_close(true)
        .max_headers(crate::head::MAX_HEADERS + 1)
        .max_buf_size(crate::head::MAX_HEAD + 64 * 1024);
    let listener_info = if tls.is_some() {
        crate::tls::listener_info(local.port())
    } else {
        ListenerInfo::http(local.port())
    };
    let h2_streams = Arc::new(tokio::sync::Semaphore::new(
        config
            .connections
            .total
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let shared = Arc::new(Shared {
        table,
        logs,
        config,
        listener: listener_info,
        stopping: Arc::new(AtomicBool::new(false)),
        h2_streams,
    });
    tracing::info!(%local, tls = tls.is_some(), "router listening");

    let name = if tls.is_some() {
        "kiln-router-tls"
    } else {
        "kiln-router"
    };
    let workers = crate::workers::Workers::start(shared.config.workers, name)?;
    let gate = kiln_net::Gate::new(
        if tls.is_some() {
            "router (HTTPS)"
        } else {
            "router"
        },
        shared.config.connections,
    );
    let http = Arc::new(http);
    let tls = tls.map(Arc::new);

    let (stop_tx, stop_rx) = watch::channel(false);
    // Connections read the flag before the channel (`Stopping`), so it is set before the
    // channel says anything: before the send below, and (declared after the sender, so
    // dropped before it) before the sender's drop wakes them if this future is dropped.
    let _flag_first = SetOnDrop(&shared.stopping);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (stream, peer, permit) = kiln_net::accept(&listener, &gate) => {
                // The connection moves to a worker's runtime (see `crate::workers`).
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "handing a connection to a worker failed");
                        continue;
                    }
                };
                let (http, shared, tls, stop) = (Arc::clone(&http), Arc::clone(&shared), tls.clone(), stop_rx.clone());
                workers.run(move || {
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => stream,
                        Err(e) => return tracing::warn!(%peer, error = %e, "registering a connection on a worker failed"),
                    };
                    // Responses are written in few, full writes; Nagle would only delay them.
                    let _ = stream.set_nodelay(true);
                    // The connection's place under the listener's caps goes with its socket.
                    let stream = kiln_net::Admitted::new(stream, permit);
                    match tls.as_deref() {
                        None => crate::engine::spawn_connection(stream, peer, http, shared, stop),
                        Some(acceptor) => crate::tls::spawn_connection(stream, peer, acceptor, &http, &shared, stop),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(stop_rx);
    shared.stopping.store(true, Ordering::SeqCst);
    stop_tx.send_replace(true);
    // Every connection task holds a receiver; this resolves once all have finished.
    stop_tx.closed().await;
    Ok(())
}

/// Serves one client connection. Generic over the transport so TLS (issue 5) reuses it.
pub(crate) fn spawn_connection<IO>(
    io: IO,
    peer: SocketAddr,
    http: &http1::Builder,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_ip = client_ip_header(peer.ip());
    let mut stopping = Stopping::new(&shared.stopping, stop);
    let shared = Arc::clone(shared);
    // Every byte from the client passes the guard first: framing, limits, idle clients.
    let (io, conn_state) = guard::guard(io, shared.config.idle_timeout);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let client_ip = client_ip.clone();
        let conn_state = Arc::clone(&conn_state);
        async move { Ok::<_, Infallible>(guard::serve(shared, client_ip, conn_state, req).await) }
    });
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::spawn(async move {
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = &mut stopping => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            // Clients resetting or timing out is routine.
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    });
}

/// Resolves when the router starts shutting down (or has gone).
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The returned guard is dropped here, so it is never held across the connection's awaits.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// [`stopping`] for a connection that waits on it between every two requests. Polling
/// tokio's watch future takes a lock that every connection shares, twice a request; this
/// checks a flag instead ([`Shared::stopping`]) and polls the channel only to register the
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
struct SetOnDrop<'a>(&'a AtomicBool);

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
