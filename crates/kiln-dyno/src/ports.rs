//! Ports for web dynos, and how Kiln notices that a dyno has bound its `$PORT`.
//!
//! Dynos share the host's network namespace, so the router reaches them on 127.0.0.1. A port
//! is chosen by asking the kernel for a free one and remembered until the dyno stops, so two
//! dynos never get the same port from Kiln.

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
/// `/proc/net/tcp{,6}` so the app never sees a probe connection.
pub fn is_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
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
        assert!(is_listening(port));
        drop(l);
        assert!(!is_listening(port));
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
