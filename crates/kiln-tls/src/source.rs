//! The seam for certificates Kiln would obtain itself rather than have uploaded: ACME
//! (Let's Encrypt and the like, RFC 8555).

use crate::TlsError;
use std::future::Future;
use std::pin::Pin;

/// A certificate chain and key a [`CertificateSource`] obtained, in PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Obtains certificates for hostnames.
///
/// An ACME source (for instance on the `instant-acme` crate) would plug in here:
///
/// 1. The platform asks it for each custom domain that has no uploaded certificate, and
///    again about 30 days before the one it got expires.
/// 2. The source places an order and answers the CA's challenge: HTTP-01 by having the
///    router answer `GET /.well-known/acme-challenge/<token>` on port 80, or TLS-ALPN-01 by
///    having the [`SniResolver`](crate::SniResolver) present a challenge certificate when
///    a client offers the `acme-tls/1` protocol.
/// 3. It returns the chain and key, which the platform checks with
///    [`Certificate::from_pem`](crate::Certificate::from_pem), stores like an uploaded
///    certificate (so it survives restarts) and publishes to the resolver.
///
/// No implementation ships: issuance needs the CA to reach this server from the internet
/// on ports 80 or 443, which the machines Kiln is developed and tested on cannot offer, so
/// it could not be shown to work.
pub trait CertificateSource: Send + Sync {
    /// A short name for logs and the API, such as `acme`.
    fn name(&self) -> &'static str;

    /// Obtains a certificate covering every name in `hostnames`.
    fn obtain<'a>(&'a self, hostnames: &'a [String]) -> Pin<Box<dyn Future<Output = Result<IssuedCertificate, TlsError>> + Send + 'a>>;
}
