//! What every listener of Kiln shares, so that no door can be knocked over by connections
//! alone (issue 22): idle or slow connections to one port once used up the process's file
//! descriptors and took every other port down with it, without a single credential.
//!
//! - [`Gate`] caps a listener's open connections, in all and per client address. A
//!   connection over a cap is closed at once, before anything is read from it. The
//!   [`Permit`] a connection holds travels inside its transport ([`Admitted`]), so it is
//!   released exactly when the socket closes, whichever task owns it by then (a router
//!   connection moves from the engine to hyper, an API connection to a `kiln run` bridge).
//! - [`accept`] is the accept loop's step: it admits through the gate, retries what the
//!   kernel reports as transient, and when the process is out of descriptors it backs off
//!   and says so (at most every ten seconds) instead of spinning.
//! - [`nofile`] raises the soft open-files limit to the hard one at start and divides what
//!   there is between the listeners ([`nofile::budgets`]), keeping a reserve for everything
//!   else the platform opens (dyno pipes, git, the database, build logs), so that the caps
//!   together can never exhaust it: one listener flooded leaves the others serving.
//!
//! Time limits (how long a head may take, how long a connection may idle) belong to each
//! listener's protocol and are set where it is served; this crate only counts.

pub mod nofile;
mod rewind;

pub use rewind::Rewind;

/// The address a request came from, as the listener saw it (no proxy header is trusted).
/// The API's listener puts it on every request it serves, for the doors behind it (the API,
/// git, the dashboard) to throttle by.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Marks a request that came through the API's HTTPS listener: links handed back use
/// `https`, and the dashboard's cookies are `Secure`.
#[derive(Debug, Clone, Copy)]
pub struct ViaTls;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How many connections a listener holds open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// In all.
    pub total: usize,
    /// From one client address (an IPv4 address, or an IPv6 /64: one host's share of a
    /// typical allocation). 0: no per-address cap.
    pub per_ip: usize,
}

/// The connection counts of one listener.
pub struct Gate {
    name: &'static str,
    limits: ConnLimits,
    open: AtomicUsize,
    /// Open connections per client address; entries leave when their count drops to zero,
    /// so the map is never larger than the connections themselves.
    per_ip: Mutex<HashMap<IpKey, usize>>,
    refused: AtomicU64,
    /// When (ms since `started`) a refusal was last reported.
    last_report_ms: AtomicU64,
    started: Instant,
}

/// Which share of the per-address cap a client draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IpKey {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl IpKey {
    fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(u32::from(v4)),
                None => IpKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its maximum number of connections.
    Full,
    /// This client address holds its maximum.
    AddressFull,
}

impl Gate {
    pub fn new(name: &'static str, limits: ConnLimits) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            last_report_ms: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a new connection from `ip` in, if both caps allow it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::Full, ip));
        }
        let key = IpKey::of(ip);
        if self.limits.per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let count = per_ip.entry(key).or_insert(0);
            if *count >= self.limits.per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(self.refuse(Refusal::AddressFull, ip));
            }
            *count += 1;
        }
        Ok(Permit {
            gate: Arc::clone(self),
            key,
        })
    }

    fn refuse(&self, why: Refusal, ip: IpAddr) -> Refusal {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // A flood would otherwise log a line per connection.
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_report_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .last_report_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let limit = match why {
                Refusal::Full => format!("{} connections in all", self.limits.total),
                Refusal::AddressFull => {
                    format!("{} connections from one address", self.limits.per_ip)
                }
            };
            tracing::warn!(listener = self.name, client = %ip, refused_so_far = refused, "connection refused: the listener holds its maximum of {limit}");
        }
        why
    }
}

/// One admitted connection's place; released when dropped.
pub struct Permit {
    gate: Arc<Gate>,
    key: IpKey,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.gate.limits.per_ip > 0 {
            let mut per_ip = self
                .gate
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = per_ip.get_mut(&self.key) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&self.key);
                }
            }
        }
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A transport that holds its connection's [`Permit`] for as long as it lives.
pub struct Admitted<IO> {
    io: IO,
    _permit: Permit,
}

impl<IO> Admitted<IO> {
    pub fn new(io: IO, permit: Permit) -> Admitted<IO> {
        Admitted {
            io,
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Admitted<IO> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Admitted<IO> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The next connection the gate admits. Connections over a cap are closed unread; errors
/// that concern only the connection that failed are skipped; running out of descriptors
/// (or kernel memory) is reported and waited out, since accepting again at once would fail
/// the same way.
pub async fn accept(listener: &TcpListener, gate: &Arc<Gate>) -> (TcpStream, SocketAddr, Permit) {
    let mut last_warning: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => match gate.admit(peer.ip()) {
                Ok(permit) => return (stream, peer, permit),
                // Dropped: closed before a byte is read.
                Err(_) => continue,
            },
            Err(e) if is_out_of_resources(&e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(listener = gate.name, open = gate.open(), error = %e, "cannot accept connections: out of file descriptors or memory; raise the open-files limit (LimitNOFILE=) or lower the connection caps");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // ECONNABORTED, EPROTO, a reset before accept: that connection is gone, the
            // listener is fine.
            Err(e) => {
                tracing::debug!(listener = gate.name, error = %e, "accept failed for one connection")
            }
        }
    }
}

fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_in_all_and_per_address() {
        let gate = Gate::new(
            "test",
            ConnLimits {
                total: 3,
                per_ip: 2,
            },
        );
        let a1 = gate.admit(ip("10.0.0.1")).unwrap();
        let a2 = gate.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.1")).err(), Some(Refusal::AddressFull));
        // The same host over IPv4-mapped IPv6 is the same address.
        assert_eq!(
            gate.admit(ip("::ffff:10.0.0.1")).err(),
            Some(Refusal::AddressFull)
        );
        let b1 = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3")).err(), Some(Refusal::Full));
        assert_eq!((gate.open(), gate.refused()), (3, 3));
        drop(a1);
        let a3 = gate.admit(ip("10.0.0.1")).unwrap();
        drop((a2, a3, b1));
        assert_eq!(gate.open(), 0);
        assert!(
            gate.per_ip.lock().unwrap().is_empty(),
            "addresses leave the map with their last connection"
        );
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let gate = Gate::new(
            "test",
            ConnLimits {
                total: 10,
                per_ip: 1,
            },
        );
        let _a = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::AddressFull)
        );
        let _b = gate.admit(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn no_per_address_cap() {
        let gate = Gate::new(
            "test",
            ConnLimits {
                total: 2,
                per_ip: 0,
            },
        );
        let _a = gate.admit(ip("127.0.0.1")).unwrap();
        let _b = gate.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(gate.admit(ip("127.0.0.1")).err(), Some(Refusal::Full));
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_unread() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Gate::new(
            "test",
            ConnLimits {
                total: 1,
                per_ip: 0,
            },
        );
        let server = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let (stream, _, permit) = accept(&listener, &gate).await;
                let mut held = Admitted::new(stream, permit);
                // The second client is turned away while the first is held.
                let (second, _, _) =
                    tokio::time::timeout(Duration::from_millis(300), accept(&listener, &gate))
                        .await
                        .map_or((None, None, None), |(s, a, p)| (Some(s), Some(a), Some(p)));
                assert!(second.is_none(), "admitted over the cap");
                held.write_all(b"hello").await.unwrap();
                drop(held);
                // Released with the transport: the next one gets in.
                let (_s, _, _p) = accept(&listener, &gate).await;
            })
        };
        let mut first = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            second.read(&mut buf).await.unwrap_or(0),
            0,
            "closed at once"
        );
        assert_eq!(first.read(&mut buf).await.unwrap(), 5);
        let _third = TcpStream::connect(addr).await.unwrap();
        server.await.unwrap();
    }
}
