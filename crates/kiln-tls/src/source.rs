//! The seam for certificates Kiln obtains itself rather than have uploaded: ACME (Let's
//! Encrypt and the like, RFC 8555), implemented by [`AcmeClient`](crate::acme::AcmeClient).

use crate::TlsError;
use std::future::Future;
use std::pin::Pin;

/// A certificate chain and key a [`CertificateSource`] obtained, in PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("IssuedCertificate")
            .field("chain_pem_len", &self.chain_pem.len())
            .finish_non_exhaustive()
    }
}

/// Obtains certificates for hostnames.
///
/// The platform's ACM manager asks for each custom domain of an app with Automatic
/// Certificate Management on, and again when fewer than 30 days remain; it checks what it
/// gets with [`Certificate::from_pem`](crate::Certificate::from_pem), stores it like an
/// uploaded certificate (marked as ACM's) and publishes it to the
/// [`SniResolver`](crate::SniResolver). Behind a trait so the manager's rules (backoff,
/// renewal, statuses) are tested without a CA.
pub trait CertificateSource: Send + Sync {
    /// A short name for logs and the API, such as `acme`.
    fn name(&self) -> &'static str;

    /// Obtains a certificate covering every name in `hostnames`.
    fn obtain<'a>(
        &'a self,
        hostnames: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<IssuedCertificate, TlsError>> + Send + 'a>>;
}
