//! Kiln's TLS material, shared by the router (which terminates HTTPS) and the platform
//! (which checks certificates users upload):
//!
//! - [`Certificate::from_pem`] reads a PEM certificate chain and private key, checks that
//!   the key belongs to the certificate, and reads what a person needs to know about it
//!   ([`CertInfo`]: subject, issuer, validity, the hostnames it covers).
//! - [`LocalCa`] is a small certificate authority generated on first start and kept under
//!   the data directory (so clients told to trust it keep trusting it). It signs the
//!   default certificate for `*.<domain>` and `<domain>`, and a certificate per app
//!   hostname where a wildcard cannot serve (`*.localhost` is refused by every client).
//! - [`SniResolver`] picks the certificate for each TLS handshake by its SNI name: a
//!   certificate uploaded to the app that owns the hostname if one covers it, else one
//!   from the local CA. The platform publishes uploaded certificates into it; a handshake
//!   reads in-memory maps and never touches the database.
//! - [`server_config`] builds the rustls server configuration (ring provider, TLS 1.2 and
//!   1.3, ALPN `h2` then `http/1.1`).
//! - [`CertificateSource`] is the seam for certificates Kiln obtains itself; [`acme`] is
//!   its implementation, an RFC 8555 client (Let's Encrypt and the like) answering HTTP-01
//!   challenges through the router.

pub mod acme;
mod error;
mod local_ca;
mod material;
mod resolver;
mod sealed;
mod source;

pub use error::TlsError;
pub use local_ca::LocalCa;
pub use material::{CertInfo, Certificate, hostname_matches, self_signed};
pub use resolver::{HostOwner, SniResolver};
pub use rustls::ServerConfig;
pub use sealed::seal_files_with;
pub use source::{CertificateSource, IssuedCertificate};

use std::sync::Arc;

/// The protocols offered in ALPN, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider every Kiln TLS endpoint uses. Chosen explicitly rather than through
/// rustls's process-wide default, which panics when a build happens to enable two.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration that picks certificates with `resolver` and offers HTTP/2
/// and HTTP/1.1 through ALPN.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A rustls server configuration for one certificate, offering HTTP/1.1 only: the API and
/// git listener, whose clients (git, Heroku's CLI, its `run` rendezvous) speak nothing else.
pub fn single_cert_config(cert: &Certificate) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCertificate(Arc::clone(cert.certified_key()))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the same certificate whatever the client's SNI says (or when it sends none, as a
/// client connecting to an IP address does).
#[derive(Debug)]
struct OneCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
