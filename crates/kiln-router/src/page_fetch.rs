//! Fetching an app's own error and maintenance pages (`ERROR_PAGE_URL`,
//! `MAINTENANCE_PAGE_URL`), which Heroku serves with status 503 in place of its own.
//!
//! - Only `http://` URLs are fetched (the router has no TLS client); anything else, and any
//!   failure, falls back to the router's built-in page.
//! - A fetch is a plain `GET` (no redirects followed), must answer 200 within
//!   `page_timeout` (3 s by default) with at most [`MAX_PAGE`] bytes.
//! - Each URL is fetched once a minute at most: results are cached for [`TTL`] (failures
//!   for [`FAILURE_TTL`]), and concurrent requests for the same URL share one fetch, so a
//!   burst of errors never becomes a burst of fetches. Only a request that finds no fresh
//!   result waits, and never longer than the timeout.
//! - Unless `allow_private_page_urls` is set, the URL must resolve to a public address:
//!   an app owner must not be able to make the router fetch, and show the world, a page
//!   from the platform's own network (loopback, private ranges, link-local metadata
//!   services). The address checked is the one connected to.

use crate::config::RouterConfig;
use crate::dyno_client::{self, Sent};
use crate::pool::Pool;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a fetched page is served before it is fetched again.
pub(crate) const TTL: Duration = Duration::from_secs(60);
/// How long a failed fetch is remembered (the built-in page is served meanwhile).
pub(crate) const FAILURE_TTL: Duration = Duration::from_secs(10);
/// The largest page kept.
pub(crate) const MAX_PAGE: usize = 256 * 1024;
/// URLs remembered at once; past this, expired entries go, then the oldest.
const MAX_ENTRIES: usize = 256;

/// A fetched page.
pub(crate) struct Page {
    pub(crate) body: Bytes,
    pub(crate) content_type: HeaderValue,
}

struct Entry {
    created: Instant,
    page: OnceCell<Option<Arc<Page>>>,
}

impl Entry {
    fn expired(&self) -> bool {
        match self.page.get() {
            Some(Some(_)) => self.created.elapsed() > TTL,
            Some(None) => self.created.elapsed() > FAILURE_TTL,
            // Still being fetched: whoever asks now joins that fetch.
            None => false,
        }
    }
}

type Key = (String, bool);

fn entries() -> &'static Mutex<HashMap<Key, Arc<Entry>>> {
    static ENTRIES: OnceLock<Mutex<HashMap<Key, Arc<Entry>>>> = OnceLock::new();
    ENTRIES.get_or_init(Mutex::default)
}

/// The page at `url`, from the cache or fetched now (within `config.page_timeout`);
/// `None` if it cannot be had.
pub(crate) async fn page(url: &str, config: &RouterConfig) -> Option<Arc<Page>> {
    let key = (url.to_string(), config.allow_private_page_urls);
    let entry = {
        let mut map = entries().lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&key) {
            Some(e) if !e.expired() => Arc::clone(e),
            _ => {
                if map.len() >= MAX_ENTRIES {
                    map.retain(|_, e| !e.expired());
                    if map.len() >= MAX_ENTRIES {
                        if let Some(oldest) = map
                            .iter()
                            .min_by_key(|(_, e)| e.created)
                            .map(|(k, _)| k.clone())
                        {
                            map.remove(&oldest);
                        }
                    }
                }
                let e = Arc::new(Entry {
                    created: Instant::now(),
                    page: OnceCell::new(),
                });
                map.insert(key, Arc::clone(&e));
                e
            }
        }
    };
    let limit = config.page_timeout;
    // The timeout is inside the shared fetch, so a request that joins late never waits
    // longer than the fetch has left.
    entry
        .page
        .get_or_init(|| async move {
            match tokio::time::timeout(limit, fetch(url, config)).await {
                Ok(Ok(page)) => Some(Arc::new(page)),
                Ok(Err(why)) => {
                    tracing::warn!(url, %why, "could not fetch the app's page; serving the router's own");
                    None
                }
                Err(_) => {
                    tracing::warn!(url, ?limit, "the app's page did not arrive in time; serving the router's own");
                    None
                }
            }
        })
        .await
        .clone()
}

/// Why an app's page could not be fetched (logged; the router's own page is served).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(String);

impl From<String> for FetchError {
    fn from(why: String) -> Self {
        FetchError(why)
    }
}

impl From<&str> for FetchError {
    fn from(why: &str) -> Self {
        FetchError(why.to_string())
    }
}

async fn fetch(url: &str, config: &RouterConfig) -> Result<Page, FetchError> {
    let allow_private = config.allow_private_page_urls;
    let uri: Uri = url.trim().parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) => return Err(format!("{s}:// page URLs are not fetched, only http://").into()),
        None => return Err("the URL has no scheme".into()),
    }
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    if authority.as_str().contains('@') {
        return Err("credentials in page URLs are not supported".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| allow_private || is_public(a.ip()))
        .ok_or_else(|| format!("{host} resolves to no public address"))?;
    // The router's one HTTP/1.1 client, on a connection of its own (a pool of one, dropped
    // after), and without Heroku's forwarding fields: this request is the router's.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "kiln-router")
        .header(header::ACCEPT, "text/html")
        .header(header::CONNECTION, "close")
        .body(())
        .map_err(|e| e.to_string())?;
    let (out, _) = dyno_client::prepare(&req.into_parts().0, None, None);
    let response = match dyno_client::send(config, addr, &Pool::new(), out, None, None).await {
        Sent::Answered { response, .. } => response,
        Sent::Unreachable { code, .. } | Sent::Failed { code, .. } => {
            return Err(
                format!("connecting to {addr} or reading its answer failed ({code:?})").into(),
            );
        }
    };
    if response.status() != StatusCode::OK {
        return Err(format!("it answered {}", response.status()).into());
    }
    let (mut parts, mut body) = response.into_parts();
    if let Some(block) = body.passthrough.take() {
        block.append_to(&mut parts.headers);
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .filter(|v| v.as_bytes().starts_with(b"text/"))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/html; charset=utf-8"));
    let mut page = BytesMut::new();
    while let Some(frame) = poll_fn(|cx| body.poll_frame(cx)).await {
        let frame = frame.map_err(|e| format!("reading the page: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if page.len() + data.len() > MAX_PAGE {
                return Err(format!("the page is larger than {MAX_PAGE} bytes").into());
            }
            page.extend_from_slice(&data);
        }
    }
    Ok(Page {
        body: page.freeze(),
        content_type,
    })
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn only_http_urls_are_fetched() {
        for (url, why) in [
            (
                "https://example.com/x",
                "https:// page URLs are not fetched, only http://",
            ),
            ("example.com/x", "not a URL: invalid format"),
            ("/relative", "the URL has no scheme"),
            (
                "http://user:pw@example.com/",
                "credentials in page URLs are not supported",
            ),
            (
                "http://127.0.0.1:9/",
                "127.0.0.1 resolves to no public address",
            ),
        ] {
            assert_eq!(
                fetch(url, &RouterConfig::default())
                    .await
                    .err()
                    .map(|e| e.to_string())
                    .as_deref(),
                Some(why),
                "{url}"
            );
        }
    }
}
