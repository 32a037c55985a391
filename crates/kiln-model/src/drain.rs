//! Log drains: where an app's log stream is copied to, as Heroku's Logplex does (the
//! `log-drain` resource). A drain URL names one of three transports:
//!
//! - `syslog://host:port`: RFC 5424 messages over TCP, framed by octet counting (RFC 6587);
//! - `syslog+tls://host:port`: the same over TLS, the server's certificate verified;
//! - `https://[user:password@]host[:port]/path`: batches POSTed as `application/logplex-1`,
//!   the URL's userinfo sent as Basic authentication.
//!
//! This module only parses and checks the URL's shape; whether its address may be reached (not
//! Kiln itself, not a link-local metadata service) is the platform's decision, made when the
//! drain is added and again each time it connects, because a name may resolve differently later.

use crate::Invalid;
use crate::time::Timestamp;

/// Drains an app may have: Logplex's limit per channel.
pub const MAX_DRAINS_PER_APP: usize = 6;

/// Longest drain URL accepted.
pub const MAX_URL_BYTES: usize = 2048;

/// A drain as stored: its URL (secret when it carries a password) and its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDrain {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// `d.<uuid>`: names the drain in syslog's HOSTNAME field and the HTTPS
    /// `Logplex-Drain-Token` header, so that a receiver can tell apps apart.
    pub token: String,
    /// Set for drains an add-on made; those go with the add-on.
    pub addon_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A drain URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainTarget {
    Syslog {
        host: String,
        port: u16,
        tls: bool,
    },
    Https {
        host: String,
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
        /// From the URL's userinfo, percent-decoded.
        basic_auth: Option<(String, String)>,
    },
}

impl DrainTarget {
    pub fn host(&self) -> &str {
        match self {
            DrainTarget::Syslog { host, .. } | DrainTarget::Https { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            DrainTarget::Syslog { port, .. } | DrainTarget::Https { port, .. } => *port,
        }
    }

    /// The URL without its password, for logs and error lines.
    pub fn redacted(&self) -> String {
        match self {
            DrainTarget::Syslog { host, port, tls } => {
                let scheme = if *tls { "syslog+tls" } else { "syslog" };
                format!("{scheme}://{}:{port}", bracket(host))
            }
            DrainTarget::Https {
                host,
                port,
                path,
                basic_auth,
            } => {
                let user = match basic_auth {
                    Some((u, _)) => format!("{u}:...@"),
                    None => String::new(),
                };
                format!("https://{user}{}:{port}{path}", bracket(host))
            }
        }
    }

    /// Parses a drain URL. Refused: other schemes, missing hosts or ports, whitespace and
    /// control characters, and URLs over [`MAX_URL_BYTES`].
    pub fn parse(url: &str) -> Result<DrainTarget, Invalid> {
        let bad = |why: &str| Err(Invalid::new("url", format!("Invalid drain URL: {why}")));
        if url.is_empty() {
            return bad("it is empty");
        }
        if url.len() > MAX_URL_BYTES {
            return bad("it is longer than 2048 bytes");
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("it contains whitespace or control characters");
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return bad("use syslog://HOST:PORT, syslog+tls://HOST:PORT or https://HOST/PATH");
        };
        let scheme = scheme.to_ascii_lowercase();
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains('#') {
            return bad("a drain URL has no #fragment");
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = match split_host_port(hostport) {
            Ok(hp) => hp,
            Err(why) => return bad(why),
        };
        if host.is_empty() {
            return bad("it has no host");
        }
        match scheme.as_str() {
            "syslog" | "syslog+tls" => {
                if userinfo.is_some() {
                    return bad("a syslog drain URL has no user or password");
                }
                if !(path.is_empty() || path == "/") {
                    return bad("a syslog drain URL has no path or query");
                }
                let Some(port) = port else {
                    return bad("a syslog drain URL needs a port (syslog://HOST:PORT)");
                };
                Ok(DrainTarget::Syslog {
                    host,
                    port,
                    tls: scheme == "syslog+tls",
                })
            }
            "https" => {
                let basic_auth = match userinfo {
                    None => None,
                    Some(u) => {
                        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                        Some((percent_decode(user)?, percent_decode(pass)?))
                    }
                };
                let path = if path.is_empty() || path.starts_with('?') {
                    format!("/{path}")
                } else {
                    path.to_string()
                };
                Ok(DrainTarget::Https {
                    host,
                    port: port.unwrap_or(443),
                    path,
                    basic_auth,
                })
            }
            _ => bad(&format!(
                "the scheme {scheme:?} is not a drain transport; use syslog://, syslog+tls:// or https://"
            )),
        }
    }
}

/// The URL with the password of its userinfo replaced by `****`, for showing a drain after
/// it was added (the URL as stored, not re-rendered: `drains:remove URL` finds it by it).
pub fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                user.to_string()
            };
            format!("{scheme}://{shown}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the host lowercased.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address lacks its ']'")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the address in [] is not an IPv6 address");
        }
        match after {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err("the port is not a number from 1 to 65535"),
            Ok(n) => Some(n),
        },
    };
    if !host.contains(':')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return Err("the host is not a DNS name or an IP address");
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn percent_decode(s: &str) -> Result<String, Invalid> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => {
                    return Err(Invalid::new(
                        "url",
                        "Invalid drain URL: a bad %-escape in its user or password",
                    ));
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        Invalid::new(
            "url",
            "Invalid drain URL: its user or password is not UTF-8",
        )
    })
}

/// Whether an address must never be a drain's destination, whatever the operator allows:
/// link-local addresses (cloud metadata services such as 169.254.169.254 live there), the
/// unspecified address, multicast and broadcast.
pub fn forbidden_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_address(IpAddr::V4(v4));
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified() || v6.is_multicast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_transports() {
        assert_eq!(
            DrainTarget::parse("syslog://logs.example.com:514").unwrap(),
            DrainTarget::Syslog {
                host: "logs.example.com".into(),
                port: 514,
                tls: false
            }
        );
        assert_eq!(
            DrainTarget::parse("SYSLOG+TLS://[::1]:6514").unwrap(),
            DrainTarget::Syslog {
                host: "::1".into(),
                port: 6514,
                tls: true
            }
        );
        let t = DrainTarget::parse("https://user:p%40ss@Example.com/logs?x=1").unwrap();
        assert_eq!(
            t,
            DrainTarget::Https {
                host: "example.com".into(),
                port: 443,
                path: "/logs?x=1".into(),
                basic_auth: Some(("user".into(), "p@ss".into())),
            }
        );
        assert_eq!(t.redacted(), "https://user:...@example.com:443/logs?x=1");
        assert_eq!(
            DrainTarget::parse("https://h:8443").unwrap(),
            DrainTarget::Https {
                host: "h".into(),
                port: 8443,
                path: "/".into(),
                basic_auth: None
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_drain() {
        for bad in [
            "",
            "logs.example.com:514",
            "http://example.com/logs",
            "ftp://example.com",
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/_FLUSHALL",
            "syslog://example.com",
            "syslog://example.com:0",
            "syslog://example.com:99999",
            "syslog://user@example.com:514",
            "syslog://example.com:514/path",
            "syslog://:514",
            "https://exa mple.com/",
            "https://example.com/\r\nX-Injected: 1",
            "https://ex\u{0}ample.com/",
            "https://[::1/",
            "https://[nothex]:443/",
            "https://a%zz:b@example.com/",
            "https://example.com/#frag",
            "https://exa$mple.com/",
        ] {
            assert!(DrainTarget::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(DrainTarget::parse(&long).is_err());
    }

    #[test]
    fn metadata_and_unspecified_addresses_are_forbidden() {
        for ip in [
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "::",
            "::ffff:169.254.169.254",
        ] {
            assert!(forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "93.184.216.34",
            "::1",
            "2001:db8::1",
        ] {
            assert!(!forbidden_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            masked_url("https://user:secret@logs.example.com/x?a=b"),
            "https://user:****@logs.example.com/x?a=b"
        );
        assert_eq!(
            masked_url("https://token@logs.example.com/"),
            "https://token@logs.example.com/"
        );
        assert_eq!(
            masked_url("syslog://logs.example.com:514"),
            "syslog://logs.example.com:514"
        );
        assert_eq!(
            masked_url("https://a:b@c@logs.example.com/p@q"),
            "https://a:****@logs.example.com/p@q"
        );
    }
}
