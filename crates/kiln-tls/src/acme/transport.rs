//! HTTPS to the ACME server: one short-lived HTTP/1.1 connection per request (an order is a
//! dozen requests minutes apart; pooling would buy nothing), the server verified against
//! the system's roots plus an optional extra CA (for test CAs such as Pebble), a bound on
//! each response body and a deadline on each whole exchange.

use super::AcmeError;
use super::wire::MAX_BODY;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where Debian and most distributions keep the trusted roots as one PEM bundle.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A response, read whole (and bounded).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) struct Transport {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl Transport {
    /// Trusts the PEM roots in `system_roots` (if the file exists) and in `extra_ca`.
    pub(crate) fn new(
        system_roots: Option<&Path>,
        extra_ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Transport, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = system_roots.filter(|p| p.exists()) {
            let certs = read_pem_certs(path)?;
            roots.add_parsable_certificates(certs);
        }
        if let Some(path) = extra_ca {
            let certs = read_pem_certs(path)?;
            if certs.is_empty() {
                return Err(AcmeError::Config(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(AcmeError::Config(format!(
                    "no certificate in {} can be used as a trusted root",
                    path.display()
                )));
            }
        }
        if roots.is_empty() {
            return Err(AcmeError::Config(format!(
                "no trusted root certificates: {SYSTEM_ROOTS} is missing (Debian: apt-get install ca-certificates) and no --acme-ca-file was given"
            )));
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Config(format!("TLS client configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// One request; the whole exchange (connect, TLS, response, body) within the timeout.
    pub(crate) async fn request(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Response, AcmeError> {
        match tokio::time::timeout(
            self.timeout,
            self.exchange(method, url, content_type, accept, body),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(AcmeError::Transport {
                url: url.to_string(),
                message: format!("no complete answer within {} s", self.timeout.as_secs()),
            }),
        }
    }

    async fn exchange(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Response, AcmeError> {
        let fail = |message: String| AcmeError::Transport {
            url: url.to_string(),
            message,
        };
        let uri: http::Uri = url.parse().map_err(|e| fail(format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(fail("only https URLs are used for ACME".into()));
        }
        let host = uri
            .host()
            .ok_or_else(|| fail("the URL has no host".into()))?;
        let port = uri.port_u16().unwrap_or(443);
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name = ServerName::try_from(bare_host.clone())
            .map_err(|e| fail(format!("{host} is not a valid server name: {e}")))?;
        let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| fail(format!("connecting: {e}")))?;
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            // Ends with the connection; its error, if any, surfaces through the request.
            let _ = conn.await;
        });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.to_string());
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority)
            .header(
                http::header::USER_AGENT,
                concat!("kiln-acme/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::ACCEPT, accept)
            .header(http::header::ACCEPT_LANGUAGE, "en");
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("building the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let (parts, body) = resp.into_parts();
        if let Some(len) = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > MAX_BODY as u64 {
                return Err(fail(format!(
                    "the response is {len} bytes, more than the {} kB an ACME response may be",
                    MAX_BODY / 1024
                )));
            }
        }
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                fail(format!(
                    "reading the response (at most {} kB): {e}",
                    MAX_BODY / 1024
                ))
            })?
            .to_bytes();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AcmeError> {
    let text = std::fs::read(path).map_err(|source| AcmeError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::Config(format!("{} is not valid PEM: {e:?}", path.display())))
}
