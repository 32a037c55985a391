//! Uploaded TLS certificates (Heroku's SNI endpoints): checked, stored, and published to
//! the router's SNI resolver, which presents each for the hostnames of the app it belongs to.
//!
//! A certificate is checked before anything is stored: the chain and key must parse, the
//! key must be the certificate's, it must name at least one DNS hostname and must not have
//! expired. Whether its names are the app's custom domains is not required (Heroku does
//! not either); the router only ever presents it for hostnames that route to the app.

use crate::{Platform, PlatformError, Result};
use kiln_model::records::Account;
use kiln_model::{Invalid, Timestamp};
use kiln_store::{App, SniEndpoint, StoreError};
use kiln_tls::{CertInfo, Certificate, SniResolver};
use std::sync::Arc;

/// An SNI endpoint with what its certificate says.
#[derive(Debug, Clone)]
pub struct SniEndpointView {
    pub endpoint: SniEndpoint,
    pub info: CertInfo,
}

/// Names Heroku gives SNI endpoints (`tyrannosaurus-12345`): a dinosaur and a number.
const NAMES: &[&str] = &[
    "allosaurus",
    "ankylosaurus",
    "apatosaurus",
    "brachiosaurus",
    "carnotaurus",
    "diplodocus",
    "gallimimus",
    "iguanodon",
    "kentrosaurus",
    "maiasaura",
    "oviraptor",
    "parasaurolophus",
    "spinosaurus",
    "stegosaurus",
    "triceratops",
    "tyrannosaurus",
    "velociraptor",
];

fn invalid(e: kiln_tls::TlsError) -> PlatformError {
    match e {
        kiln_tls::TlsError::Invalid(m) => Invalid::new("certificate_chain", m).into(),
        other => PlatformError::Internal(other.to_string()),
    }
}

/// Checks an uploaded chain and key; the error says what is wrong with them.
pub fn check_certificate(certificate_chain: &str, private_key: &str) -> Result<Certificate> {
    let cert = Certificate::from_pem(certificate_chain, private_key).map_err(invalid)?;
    if cert.info.hostnames.is_empty() {
        return Err(Invalid::new("certificate_chain", "The certificate names no DNS hostname (no subjectAltName DNS entry and no usable common name).").into());
    }
    if cert.info.is_expired(Timestamp::now()) {
        return Err(Invalid::new(
            "certificate_chain",
            format!(
                "The certificate expired at {}.",
                cert.info.expires_at.rfc3339()
            ),
        )
        .into());
    }
    Ok(cert)
}

pub(crate) fn random_name() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let pick = NAMES[usize::from(bytes[0]) % NAMES.len()];
    let number = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], 0]) % 100_000;
    format!("{pick}-{number:05}")
}

impl Platform {
    /// Hands the platform the router's resolver and publishes every stored certificate.
    /// Without it (no HTTPS listener), certificates are still checked and stored.
    pub fn set_certificates(&self, resolver: Arc<SniResolver>) -> Result<()> {
        let _ = self.certificates.set(resolver);
        let mut app_ids: Vec<String> = self
            .store
            .all_sni_endpoints()?
            .into_iter()
            .map(|e| e.app_id)
            .collect();
        app_ids.dedup();
        for app_id in app_ids {
            self.publish_certificates(&app_id);
        }
        Ok(())
    }

    /// Re-reads an app's certificates from the store into the router's resolver.
    pub(crate) fn publish_certificates(&self, app_id: &str) {
        let Some(resolver) = self.certificates.get() else {
            return;
        };
        let endpoints = match self.store.sni_endpoints(app_id) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(app = app_id, error = %e, "could not read the app's certificates");
                return;
            }
        };
        let certificates = endpoints
            .iter()
            .filter_map(|e| match Certificate::from_pem(&e.certificate_chain, &e.private_key) {
                Ok(c) => Some(c),
                // Checked at upload; only a change of crypto provider could make one unusable.
                Err(err) => {
                    tracing::warn!(app = app_id, endpoint = e.name, error = %err, "a stored certificate cannot be used");
                    None
                }
            })
            .collect();
        resolver.set_app_certificates(app_id, certificates);
    }

    /// Forgets a destroyed app's certificates in the router.
    pub(crate) fn withdraw_certificates(&self, app_id: &str) {
        if let Some(resolver) = self.certificates.get() {
            resolver.set_app_certificates(app_id, Vec::new());
        }
    }

    fn view(endpoint: SniEndpoint) -> Result<SniEndpointView> {
        let info = Certificate::from_pem(&endpoint.certificate_chain, &endpoint.private_key)
            .map_err(|e| {
                PlatformError::Internal(format!("stored certificate {}: {e}", endpoint.name))
            })?;
        Ok(SniEndpointView {
            endpoint,
            info: info.info,
        })
    }

    fn not_found(e: StoreError) -> PlatformError {
        match e {
            StoreError::NotFound {
                resource: "sni-endpoint",
            } => PlatformError::NotFound {
                resource: "sni-endpoint",
                message: "Couldn't find that SNI endpoint.".into(),
            },
            other => other.into(),
        }
    }

    /// ACM renews and removes its own certificates; a hand-made change would be undone.
    fn refuse_acm_managed(&self, app: &App, id_or_name: &str) -> Result<()> {
        let endpoint = self
            .store
            .sni_endpoint(&app.id, id_or_name)
            .map_err(Self::not_found)?;
        if endpoint.acm_domain_id.is_some() {
            return Err(Invalid::new("sni_endpoint", format!("{} is managed by Automatic Certificate Management; turn it off with certs:auto:disable to manage certificates by hand", endpoint.name)).into());
        }
        Ok(())
    }

    pub fn sni_endpoints(&self, user: &Account, app: &App) -> Result<Vec<SniEndpointView>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        self.store
            .sni_endpoints(&app.id)?
            .into_iter()
            .map(Self::view)
            .collect()
    }

    pub fn sni_endpoint(
        &self,
        user: &Account,
        app: &App,
        id_or_name: &str,
    ) -> Result<SniEndpointView> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Self::view(
            self.store
                .sni_endpoint(&app.id, id_or_name)
                .map_err(Self::not_found)?,
        )
    }

    /// Checks and stores a certificate for the app, and starts serving it.
    pub fn add_sni_endpoint(
        &self,
        user: &Account,
        app: &App,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<SniEndpointView> {
        self.app_for(user, &app.id, kiln_model::access::Need::Manage)?;
        let cert = check_certificate(certificate_chain, private_key)?;
        let mut last = None;
        for _ in 0..10 {
            match self.store.create_sni_endpoint(
                &app.id,
                &random_name(),
                certificate_chain,
                private_key,
            ) {
                Ok(endpoint) => {
                    self.publish_certificates(&app.id);
                    return Ok(SniEndpointView {
                        endpoint,
                        info: cert.info,
                    });
                }
                Err(StoreError::Conflict(m)) => last = Some(m),
                Err(e) => return Err(e.into()),
            }
        }
        Err(PlatformError::Conflict(last.unwrap_or_default()))
    }

    /// Replaces an endpoint's certificate and key (a renewal); the old one stops being served.
    pub fn update_sni_endpoint(
        &self,
        user: &Account,
        app: &App,
        id_or_name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<SniEndpointView> {
        self.app_for(user, &app.id, kiln_model::access::Need::Manage)?;
        let cert = check_certificate(certificate_chain, private_key)?;
        self.refuse_acm_managed(app, id_or_name)?;
        let endpoint = self
            .store
            .update_sni_endpoint(&app.id, id_or_name, certificate_chain, private_key)
            .map_err(Self::not_found)?;
        self.publish_certificates(&app.id);
        Ok(SniEndpointView {
            endpoint,
            info: cert.info,
        })
    }

    pub fn remove_sni_endpoint(
        &self,
        user: &Account,
        app: &App,
        id_or_name: &str,
    ) -> Result<SniEndpointView> {
        self.app_for(user, &app.id, kiln_model::access::Need::Manage)?;
        self.refuse_acm_managed(app, id_or_name)?;
        let endpoint = self
            .store
            .delete_sni_endpoint(&app.id, id_or_name)
            .map_err(Self::not_found)?;
        self.publish_certificates(&app.id);
        Self::view(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_herokus_pattern() {
        for _ in 0..200 {
            let n = random_name();
            kiln_store::validate_sni_endpoint_name(&n).unwrap_or_else(|e| panic!("{n}: {e:?}"));
        }
    }

    #[test]
    fn certificates_are_checked() {
        let (chain, key) = kiln_tls::self_signed(&["www.example.com"]).unwrap();
        assert_eq!(
            check_certificate(&chain, &key).unwrap().info.hostnames,
            ["www.example.com"]
        );
        let (_, other_key) = kiln_tls::self_signed(&["www.example.com"]).unwrap();
        let err = check_certificate(&chain, &other_key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
        let err = check_certificate("nope", &key).unwrap_err();
        assert!(matches!(err, PlatformError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn expired_certificates_are_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["old.example.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let err = check_certificate(&cert.pem(), &key.serialize_pem())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired at 2021-01-01"), "{err}");
    }
}
