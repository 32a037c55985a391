//! From a `Host` header to the app it names. Apps live at `<app>.<domain>`; the match
//! ignores case, the port and a trailing dot, as DNS does.

use std::borrow::Cow;

/// The hostname part of a `Host` value, lowercased, without port or trailing dot. `None`
/// for values no app can have: empty, bracketed IPv6 literals, bad ports, odd characters,
/// empty labels (`a..b`, `.a`, `a..`).
pub(crate) fn hostname(host: &str) -> Option<Cow<'_, str>> {
    if host.starts_with('[') {
        return None;
    }
    let name = match host.rsplit_once(':') {
        // An empty port is allowed by RFC 3986 (`host:`).
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    // One pass tells whether every byte may be in a hostname, whether any label is empty
    // (a dot first, last or after another) and whether any byte is uppercase (on every
    // request, so it is a table lookup a byte).
    let (class, last) = name.bytes().fold((0, b'.'), |(seen, prev), b| {
        let empty_label = if prev == b'.' && b == b'.' {
            INVALID
        } else {
            0
        };
        (seen | HOST_BYTES[usize::from(b)] | empty_label, b)
    });
    if name.is_empty() || class & INVALID != 0 || last == b'.' {
        return None;
    }
    // Clients nearly always send lowercase, so allocate only when they did not.
    if class & UPPER != 0 {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}

const INVALID: u8 = 1;
const UPPER: u8 = 2;

/// What each byte is in a hostname: letters, digits, `.`, `-` and `_` are allowed.
static HOST_BYTES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'_' {
            t[b] = 0;
        } else if c.is_ascii_uppercase() {
            t[b] = UPPER;
        }
        b += 1;
    }
    t
};

/// The app label of `<app>.<domain>`; `domain` must already be lowercase without dots at
/// either end. Only one label may precede the domain: app names have no dots.
pub(crate) fn app_label<'a>(hostname: &'a str, domain: &str) -> Option<&'a str> {
    let label = if domain.is_empty() {
        hostname
    } else {
        hostname.strip_suffix(domain)?.strip_suffix('.')?
    };
    if label.is_empty() || label.contains('.') {
        None
    } else {
        Some(label)
    }
}

/// A domain as configured, in the form [`app_label`] expects.
pub(crate) fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(host: &str) -> Option<String> {
        let name = hostname(host)?;
        app_label(&name, "localhost").map(str::to_string)
    }

    #[test]
    fn matches_app_subdomains() {
        assert_eq!(app("foo.localhost").as_deref(), Some("foo"));
        assert_eq!(app("FOO.LocalHost:8080").as_deref(), Some("foo"));
        assert_eq!(app("foo.localhost.").as_deref(), Some("foo"));
        assert_eq!(app("foo.localhost:").as_deref(), Some("foo"));
        assert_eq!(app("my-app-2.localhost").as_deref(), Some("my-app-2"));
    }

    #[test]
    fn rejects_other_hosts() {
        assert_eq!(app("localhost"), None);
        assert_eq!(app(".localhost"), None);
        assert_eq!(app("a.b.localhost"), None);
        assert_eq!(app("foolocalhost"), None);
        assert_eq!(app("foo.localhost:80x"), None);
        assert_eq!(app("foo.example.com"), None);
        assert_eq!(app("[::1]:80"), None);
        assert_eq!(app("foo bar.localhost"), None);
        assert_eq!(app(""), None);
        assert_eq!(app("foo..localhost"), None);
        assert_eq!(
            hostname("foo.localhost.."),
            None,
            "found by the fuzz target"
        );
        assert_eq!(hostname(".foo.localhost"), None);
    }

    #[test]
    fn normalizes_domains() {
        assert_eq!(normalize_domain(" .Apps.Example.COM. "), "apps.example.com");
        assert_eq!(
            app_label("foo.apps.example.com", "apps.example.com"),
            Some("foo")
        );
    }

    /// Fuzz target (see `crate::fuzz`): whatever `hostname` accepts, the `http` crate reads
    /// as an authority with the same host, and the answer does not depend on case, port or
    /// a trailing dot.
    #[test]
    fn fuzz_host_parser() {
        const SEEDS: &[&str] = &[
            "foo.localhost",
            "FOO.LocalHost:8080",
            "foo.localhost.",
            "my-app_2.apps.example.com:443",
            "[::1]:80",
            "127.0.0.1",
            "a.b.c.d.e.f.g",
            "x:",
        ];
        crate::fuzz::run("fuzz_host_parser", |rng| {
            let mut host = SEEDS[rng.usize(..SEEDS.len())].as_bytes().to_vec();
            if rng.u8(..4) > 0 {
                crate::fuzz::mutate(rng, &mut host, b".:-_[]@/ %\x00\x7fAZaz09");
            }
            let Ok(host) = String::from_utf8(host) else {
                return;
            };
            let Some(name) = hostname(&host) else {
                return;
            };
            // The reference: RFC 3986's authority as the `http` crate parses it.
            let authority: http::uri::Authority = host
                .parse()
                .unwrap_or_else(|e| panic!("{host:?} accepted as {name:?}, but http says {e}"));
            let theirs = authority.host().to_ascii_lowercase();
            assert_eq!(
                theirs.strip_suffix('.').unwrap_or(&theirs),
                name,
                "{host:?}"
            );
            assert!(
                !name.is_empty() && !name.ends_with('.'),
                "{host:?} → {name:?}"
            );
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b)),
                "{host:?} → {name:?}"
            );
            assert_eq!(hostname(&name).as_deref(), Some(&*name), "idempotent");
            assert_eq!(
                hostname(&host.to_ascii_uppercase()).as_deref(),
                Some(&*name),
                "case"
            );
            if !host.contains(':') {
                let port = rng.u16(..);
                assert_eq!(
                    hostname(&format!("{host}:{port}")).as_deref(),
                    Some(&*name),
                    "port"
                );
            }
        });
    }
}
