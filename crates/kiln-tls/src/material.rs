//! Reading a PEM certificate chain and private key into something rustls can serve, and
//! the facts about it that the API shows and the resolver matches on.

use crate::TlsError;
use kiln_model::Timestamp;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

/// Larger inputs are refused before parsing: a real chain is a few kilobytes.
const MAX_CHAIN_PEM: usize = 100 * 1024;
const MAX_KEY_PEM: usize = 16 * 1024;
const MAX_CHAIN_CERTS: usize = 10;

/// What a certificate says about itself, read from the first (end-entity) certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name, e.g. `CN=www.example.com, O=Example`.
    pub subject: String,
    pub issuer: String,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    /// The DNS names it covers, lowercase, wildcards as `*.example.com`: the
    /// subjectAltName entries, or the common names when it has none (old certificates).
    pub hostnames: Vec<String>,
    /// Issued by itself (issuer and subject are the same name): no CA vouches for it.
    pub self_signed: bool,
}

impl CertInfo {
    /// Whether the certificate is valid for `hostname` (no port, any case).
    pub fn covers(&self, hostname: &str) -> bool {
        self.hostnames
            .iter()
            .any(|pattern| hostname_matches(pattern, hostname))
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now.unix_seconds() > self.expires_at.unix_seconds()
    }
}

/// Whether a certificate name (`www.example.com` or `*.example.com`) covers `hostname`.
/// A wildcard stands for exactly one whole label, as in RFC 6125 §6.4.3 and browsers:
/// `*.example.com` covers `a.example.com` but neither `example.com` nor `a.b.example.com`.
pub fn hostname_matches(pattern: &str, hostname: &str) -> bool {
    let hostname = hostname.strip_suffix('.').unwrap_or(hostname);
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(parent) => match hostname.split_once('.') {
            Some((label, rest)) => {
                !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(parent)
            }
            None => false,
        },
        None => pattern.eq_ignore_ascii_case(hostname),
    }
}

/// A certificate chain with its private key, checked and ready to serve.
#[derive(Clone)]
pub struct Certificate {
    pub info: CertInfo,
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("Certificate")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Reads a PEM chain (end-entity certificate first, then intermediates) and a PEM
    /// private key (PKCS#8, PKCS#1 RSA or SEC1 EC), and checks that the key is the
    /// certificate's. Expiry is reported in [`CertInfo`], not refused here: the platform
    /// decides what to accept, and a server must still start with an expired certificate.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Certificate, TlsError> {
        if chain_pem.len() > MAX_CHAIN_PEM {
            return Err(TlsError::invalid(format!(
                "The certificate chain is larger than {} kB.",
                MAX_CHAIN_PEM / 1024
            )));
        }
        if key_pem.len() > MAX_KEY_PEM {
            return Err(TlsError::invalid(format!(
                "The private key is larger than {} kB.",
                MAX_KEY_PEM / 1024
            )));
        }
        let chain = read_chain(chain_pem)?;
        let key = read_key(key_pem)?;
        let info = inspect(&chain)?;
        let signing_key = crate::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::invalid(format!("The private key cannot be used: {e}.")))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::invalid(
                    "The private key does not match the certificate (the first certificate of the chain must be the one the key belongs to).",
                ));
            }
            // ring's keys always expose their public half; an unknown answer is no evidence
            // of a mismatch, and rustls itself treats it the same way.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(TlsError::invalid(format!(
                    "The certificate cannot be used: {e}."
                )));
            }
        }
        Ok(Certificate {
            info,
            key: Arc::new(certified),
        })
    }

    /// What rustls serves.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }
}

fn read_chain(chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        let cert = item.map_err(|e| {
            TlsError::invalid(format!(
                "The certificate chain is not valid PEM: {}.",
                pem_error(&e)
            ))
        })?;
        if chain.len() == MAX_CHAIN_CERTS {
            return Err(TlsError::invalid(format!(
                "The certificate chain has more than {MAX_CHAIN_CERTS} certificates."
            )));
        }
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(TlsError::invalid(
            "No certificate found: the certificate chain must contain at least one -----BEGIN CERTIFICATE----- block.",
        ));
    }
    Ok(chain)
}

fn read_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    if key_pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || key_pem.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::invalid(
            "The private key is encrypted. Give the key without a passphrase (e.g. `openssl pkey -in key.pem -out plain.pem`).",
        ));
    }
    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            TlsError::invalid("No private key found: expected a -----BEGIN PRIVATE KEY----- (or RSA PRIVATE KEY / EC PRIVATE KEY) block.")
        }
        other => TlsError::invalid(format!("The private key is not valid PEM: {}.", pem_error(&other))),
    })
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a -----BEGIN block has no matching -----END line".to_string()
        }
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(_) => {
            "the base64 between -----BEGIN and -----END does not decode".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// Reads every certificate of the chain (so garbage is refused) and the facts of the first.
fn inspect(chain: &[CertificateDer<'_>]) -> Result<CertInfo, TlsError> {
    for (i, der) in chain.iter().enumerate().skip(1) {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            TlsError::invalid(format!(
                "Certificate {} of the chain is not a valid X.509 certificate: {e}.",
                i + 1
            ))
        })?;
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| {
        TlsError::invalid(format!(
            "The certificate is not a valid X.509 certificate: {e}."
        ))
    })?;
    let mut hostnames = Vec::new();
    match leaf.subject_alternative_name() {
        Ok(Some(san)) => {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    push_hostname(&mut hostnames, dns);
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            return Err(TlsError::invalid(format!(
                "The certificate's subjectAltName extension cannot be read: {e}."
            )));
        }
    }
    if hostnames.is_empty() {
        for cn in leaf.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                push_hostname(&mut hostnames, cn);
            }
        }
    }
    let validity = leaf.validity();
    Ok(CertInfo {
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        starts_at: Timestamp::from_unix_seconds(validity.not_before.timestamp()),
        expires_at: Timestamp::from_unix_seconds(validity.not_after.timestamp()),
        hostnames,
        self_signed: leaf.subject().as_raw() == leaf.issuer().as_raw(),
    })
}

/// Keeps names that can be DNS names (a CN may be anything); lowercase, no trailing dot.
fn push_hostname(out: &mut Vec<String>, name: &str) {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let plain = name.strip_prefix("*.").unwrap_or(&name);
    let valid = !plain.is_empty()
        && plain.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid && !out.contains(&name) {
        out.push(name);
    }
}

/// A new self-signed certificate for `names` and its private key, in PEM: what a person
/// would make with `openssl req -x509` to try certificate uploads, and what tests upload.
pub fn self_signed(names: &[&str]) -> Result<(String, String), TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn self_signed(names: &[&str]) -> (String, String) {
        super::self_signed(names).unwrap()
    }

    #[test]
    fn reads_a_chain_and_key() {
        let (cert, key) = self_signed(&["www.example.com", "*.api.example.com"]);
        let c = Certificate::from_pem(&cert, &key).unwrap();
        assert_eq!(c.info.hostnames, ["www.example.com", "*.api.example.com"]);
        assert!(c.info.self_signed);
        assert!(c.info.covers("WWW.example.com"));
        assert!(c.info.covers("v1.api.example.com"));
        assert!(!c.info.covers("api.example.com"));
        assert!(!c.info.covers("a.v1.api.example.com"));
        assert!(!c.info.covers("example.com"));
        assert!(c.info.expires_at.unix_seconds() > c.info.starts_at.unix_seconds());
        assert_eq!(c.certified_key().cert.len(), 1);
    }

    #[test]
    fn refuses_a_key_that_is_not_the_certificates() {
        let (cert, _) = self_signed(&["a.example.com"]);
        let (_, other_key) = self_signed(&["a.example.com"]);
        let err = Certificate::from_pem(&cert, &other_key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn refuses_garbage_clearly() {
        let (cert, key) = self_signed(&["a.example.com"]);
        let cases: Vec<(String, String, &str)> = vec![
            (String::new(), key.clone(), "No certificate found"),
            ("hello".into(), key.clone(), "No certificate found"),
            (cert.clone(), String::new(), "No private key found"),
            (cert.clone(), cert.clone(), "No private key found"),
            ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".into(), key.clone(), "not valid PEM"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(), key.clone(), "not a valid X.509"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n".into(), key.clone(), "not valid PEM"),
            (cert.clone(), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".into(), "encrypted"),
            (cert.clone(), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(), "cannot be used"),
            ("x".repeat(MAX_CHAIN_PEM + 1), key.clone(), "larger than"),
        ];
        for (chain, key, expect) in cases {
            let err = Certificate::from_pem(&chain, &key).unwrap_err().to_string();
            assert!(err.contains(expect), "expected {expect:?} in {err:?}");
        }
        let mut long = String::new();
        for _ in 0..=MAX_CHAIN_CERTS {
            long.push_str(&cert);
        }
        assert!(
            Certificate::from_pem(&long, &key)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
    }

    #[test]
    fn falls_back_to_the_common_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Legacy.Example.com");
        let cert = params.self_signed(&key).unwrap();
        let c = Certificate::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
        assert_eq!(c.info.hostnames, ["legacy.example.com"]);
        assert!(
            c.info.subject.contains("CN=Legacy.Example.com"),
            "{}",
            c.info.subject
        );
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(hostname_matches("*.example.com", "a.example.com"));
        assert!(hostname_matches("*.example.com", "A.Example.COM."));
        assert!(!hostname_matches("*.example.com", ".example.com"));
        assert!(!hostname_matches("*.example.com", "example.com"));
        assert!(!hostname_matches("*.example.com", "a.b.example.com"));
        assert!(!hostname_matches("*.example.com", "*.example.com.evil"));
        assert!(hostname_matches("example.com", "EXAMPLE.com"));
        assert!(!hostname_matches("example.com", "www.example.com"));
    }
}
