//! Errors, worded for the person who uploaded the certificate or runs the server.

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain or key is unusable; the message says why, for the uploader.
    #[error("{0}")]
    Invalid(String),
    /// The default certificate could not be read, written or generated.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("generating a certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    /// An ACME order failed; the message says at which step and why.
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
}

impl TlsError {
    pub(crate) fn invalid(msg: impl Into<String>) -> TlsError {
        TlsError::Invalid(msg.into())
    }
}
