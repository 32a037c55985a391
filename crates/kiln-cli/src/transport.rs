//! The HTTP transport: hyper's client over plain http. It is the only module that knows
//! about connectors, so adding https later means changing this file alone.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// API replies bigger than this are refused rather than buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request failed before any response arrived because the server could not be reached.
/// Kept apart from other failures so the CLI can say "is the platform running?".
#[derive(Debug)]
pub struct ConnectError {
    pub url: String,
    pub reason: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not connect to {} ({})", self.url, self.reason)
    }
}

impl std::error::Error for ConnectError {}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends a request and returns the response with its body still unread, so callers can
    /// stream it (log sessions) or collect it (API calls).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        let url = request.uri().to_string();
        check_scheme(request.uri())?;
        self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                anyhow!(ConnectError {
                    url,
                    reason: root_cause(&e)
                })
            } else {
                anyhow!("request to {url} failed: {}", root_cause(&e))
            }
        })
    }
}

fn check_scheme(uri: &Uri) -> Result<()> {
    match uri.scheme_str() {
        Some("http") => Ok(()),
        Some("https") => bail!("{uri}: https is not supported by this kiln CLI yet"),
        _ => bail!("{uri}: not an http:// URL"),
    }
}

/// The innermost error's text ("Connection refused (os error 111)" rather than hyper's
/// "client error (Connect)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>()
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return "connection refused".into();
    }
    cur.to_string()
}

/// Reads a whole response body, refusing one over `MAX_BODY_BYTES`.
pub async fn read_body(body: Incoming) -> Result<Bytes> {
    let collected = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the response failed: {e}"))?;
    Ok(collected.to_bytes())
}

/// The next chunk of a streamed body, or `None` at its end.
pub async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(frame) => {
                let frame = frame.context("reading the stream failed")?;
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
                // Trailers carry nothing we print.
            }
        }
    }
}

/// Percent-encodes one path segment (app names and dyno names are safe already; this keeps
/// a stray `/` or `?` in user input from changing which resource is addressed).
pub fn segment(s: &str) -> String {
    if s == "." || s == ".." {
        return s.replace('.', "%2E"); // dot segments would be resolved away, not addressed
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("web.1"), "web.1");
        assert_eq!(segment("../x?y"), "..%2Fx%3Fy");
        assert_eq!(segment("a b"), "a%20b");
        assert_eq!(segment(".."), "%2E%2E");
    }
}
