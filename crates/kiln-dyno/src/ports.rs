//! Ports for web dynos, and how Kiln notices that a dyno has bound its `$PORT`.
//!
//! A dyno with a network of its own is reached at its address; one that shares the host's
//! network at 127.0.0.1. A port is chosen by asking the kernel for a free one and remembered
//! until the dyno stops, so two dynos never get the same port from Kiln (which matters for
//! the second kind).

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct PortPool {
    used: Mutex<HashSet<u16>>,
}

impl PortPool {
    pub fn allocate(&self) -> std::io::Result<u16> {
        for _ in 0..64 {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
            let port = l.local_addr()?.port();
            drop(l);
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            if used.insert(port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free port"))
    }

    pub fn release(&self, port: u16) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&port);
    }
}

/// Whether something listens on TCP `port` (any address, IPv4 or IPv6), read from
/// `/proc/net/tcp{,6}` so the app never sees a probe connection; in the network namespace of
/// process `pid` (a dyno's own network) when given, through `/proc/<pid>/net`.
pub fn is_listening_in(pid: Option<u32>, port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    let dir = match pid {
        Some(p) => format!("/proc/{p}/net"),
        None => "/proc/net".to_string(),
    };
    for file in [format!("{dir}/tcp"), format!("{dir}/tcp6")] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(st)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            if st == "0A" && format!("{local} ").ends_with(&needle) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener() {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(is_listening_in(None, port));
        assert!(is_listening_in(Some(std::process::id()), port));
        drop(l);
        assert!(!is_listening_in(None, port));
    }

    #[test]
    fn ports_are_unique() {
        let p = PortPool::default();
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_ne!(a, b);
        p.release(a);
    }
}
