//! Connecting to a drain's endpoint: resolve its name, keep only the addresses the platform
//! allows (checked now, not when the drain was added: DNS can change), connect with a
//! timeout, and speak TLS when asked, verifying the endpoint's certificate.

use crate::{DrainContext, Failure};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The platform's rule for where drains may connect: `Err` refuses an address.
pub type Guard = Arc<dyn Fn(SocketAddr) -> Result<(), Refused> + Send + Sync>;

/// Why the platform refuses an address, such as "Kiln's own listener".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Connecting (TCP and TLS) may take this long (Logplex's TCP send timeout is 4 s).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to `host:port` at an address the guard allows.
pub(crate) async fn tcp(host: &str, port: u16, ctx: &DrainContext) -> Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Failure::Retry(format!("resolving {host} timed out")))?
            .map_err(|e| Failure::Retry(format!("resolving {host}: {e}")))?
            .collect();
    let mut last = format!("{host} has no address");
    for addr in addrs {
        if let Err(why) = (ctx.guard)(addr) {
            last = format!("{addr} is refused: {why}");
            continue;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("connecting to {}: {e}", addr),
            Err(_) => last = format!("connecting to {} timed out", addr),
        }
    }
    Err(Failure::Retry(last))
}

/// TLS over `tcp`, the certificate verified for `host` against the context's roots. A
/// verification failure is [`Failure::Certificate`] (Heroku's L14).
pub(crate) async fn tls(
    host: &str,
    tcp: TcpStream,
    ctx: &DrainContext,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| Failure::Retry(format!("{host} is not a TLS server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(ctx.tls.clone());
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => Err(Failure::Retry(format!(
            "TLS handshake with {host} timed out"
        ))),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let certificate = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            if certificate {
                Err(Failure::Certificate(e.to_string()))
            } else {
                Err(Failure::Retry(format!("TLS handshake with {host}: {e}")))
            }
        }
    }
}
