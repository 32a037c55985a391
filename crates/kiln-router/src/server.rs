//! Accepting client connections and serving HTTP/1.1 on them until shutdown.
//!
//! Each connection runs on its own task, on one of the listener's worker threads
//! ([`crate::workers`]). Shutdown stops accepting at once, then lets every
//! connection finish the request it is on (idle keep-alive connections close straight
//! away) before [`serve`] returns.

use crate::Shared;
use crate::config::RouterConfig;
use crate::conn::SetOnDrop;
use crate::forward::ListenerInfo;
use crate::table::RouteTable;
use kiln_model::log::LogSink;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
        logs,
        config,
        listener: listener_info,
        stopping: Arc::new(AtomicBool::new(false)),
        h2_streams,
        cache: table.store(crate::cache::HttpCache::new),
        table,
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
                let (shared, tls, stop) = (Arc::clone(&shared), tls.clone(), stop_rx.clone());
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
                        None => crate::engine::spawn_connection(stream, peer, shared, stop),
                        Some(acceptor) => crate::tls::spawn_connection(stream, peer, acceptor, &shared, stop),
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

/// Serves the router over TLS on `listener` until `shutdown` completes, as
/// [`serve`](crate::serve) does for plain HTTP. `tls` comes from
/// [`kiln_tls::server_config`]; its ALPN list decides whether clients may speak HTTP/2.
pub async fn serve_tls(
    listener: TcpListener,
    table: Arc<RouteTable>,
    logs: Arc<dyn LogSink>,
    config: RouterConfig,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_on(
        listener,
        table,
        logs,
        config,
        Some(tokio_rustls::TlsAcceptor::from(tls)),
        shutdown,
    )
    .await
}
