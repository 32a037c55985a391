//! Automatic Certificate Management (Heroku's ACM: `certs:auto:enable`, `certs:auto`,
//! `certs:auto:refresh`, `certs:auto:disable`): certificates for an app's custom domains,
//! ordered from an ACME CA through a [`CertificateSource`] and served by the router like
//! uploaded ones.
//!
//! A background task (the manager) converges the store's wishes into certificates:
//! - for each app with ACM on, each custom domain without an ACM certificate, with one that
//!   has fewer than [`RENEW_BEFORE`] left, or with a refresh asked for, gets an order of its
//!   own, one at a time (one certificate per domain, so one failing domain never holds up
//!   or spoils another's);
//! - wildcard domains are marked failed at once: HTTP-01 cannot prove control of them;
//! - a failed order is retried after a doubling backoff ([`BACKOFF_BASE`] to
//!   [`BACKOFF_MAX`]); `certs:auto:refresh` retries at once;
//! - it wakes on `certs:auto:enable`, `certs:auto:refresh` and `domains:add`, else when
//!   the next retry or renewal is due (at least every [`RECHECK`]).
//!
//! States are Heroku's words: `pending` (queued or being ordered), `ok` (issued and
//! served), `failed` (with `acm_status_reason`). Everything lives in the store, so a
//! restart picks up where it stopped; the certificate is stored before the state says ok.

use crate::{Platform, Result};
use kiln_model::route::AppRoutes;
use kiln_model::{Invalid, Timestamp};
use kiln_store::{Account, AcmDomain, AcmState, App, StoreError};
use kiln_tls::acme::ChallengeResponder;
use kiln_tls::{Certificate, CertificateSource};
use std::sync::Arc;
use std::time::Duration;

/// Certificates are renewed when fewer than this many seconds of validity remain (Let's
/// Encrypt's advice for 90-day certificates: at about 60 days).
pub const RENEW_BEFORE: i64 = 30 * 24 * 3600;
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);
/// The longest the manager sleeps without looking.
pub const RECHECK: Duration = Duration::from_secs(3600);

const WILDCARD_REASON: &str = "Wildcard domains cannot be validated over HTTP-01, so ACM cannot issue their certificate; upload one with certs:add";

/// What `certs:auto:enable` answers when the server has no ACME directory configured.
pub const NOT_CONFIGURED: &str = "Automatic Certificate Management is not configured on this Kiln server. Start `kiln server` with --acme-directory URL \
(Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory) and --router-tls-listen, with the router's HTTP listener on port 80 of a publicly reachable host.";

/// The manager's handle: the CA and the wake-up bell.
pub(crate) struct Acm {
    source: Arc<dyn CertificateSource>,
    wake: tokio::sync::Notify,
}

/// Publishes HTTP-01 answers in the router's table (see `AppRoutes::set_acme_challenge`).
pub struct RouterChallenges(pub Arc<dyn AppRoutes>);

impl ChallengeResponder for RouterChallenges {
    fn publish(&self, token: &str, key_authorization: &str) {
        self.0
            .set_acme_challenge(token, Some(key_authorization.to_string()));
    }
    fn withdraw(&self, token: &str) {
        self.0.set_acme_challenge(token, None);
    }
}

/// The backoff after `failures` failed orders in a row.
fn backoff(failures: u32) -> Duration {
    let doubled = BACKOFF_BASE.saturating_mul(
        1u32.checked_shl(failures.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX),
    );
    doubled.min(BACKOFF_MAX)
}

impl Platform {
    /// Starts Automatic Certificate Management with `source` (an ACME client): the manager
    /// runs until the platform is dropped. Without it, enabling ACM is refused.
    pub fn start_acm(&self, source: Arc<dyn CertificateSource>) {
        let acm = Arc::new(Acm {
            source,
            wake: tokio::sync::Notify::new(),
        });
        if self.acm.set(acm.clone()).is_err() {
            return;
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            loop {
                let Some(platform) = me.upgrade() else { return };
                let next = platform.acm_pass(&acm).await;
                drop(platform);
                tokio::select! {
                    _ = acm.wake.notified() => {}
                    _ = tokio::time::sleep(next) => {}
                }
            }
        });
    }

    pub fn acm_configured(&self) -> bool {
        self.acm.get().is_some()
    }

    /// Asks the manager to look now (a domain was added, ACM enabled or refreshed).
    pub(crate) fn wake_acm(&self) {
        if let Some(acm) = self.acm.get() {
            acm.wake.notify_one();
        }
    }

    /// `certs:auto:enable`.
    pub fn enable_acm(&self, app: &App, user: &Account) -> Result<App> {
        if !self.acm_configured() {
            return Err(Invalid::new("acm", NOT_CONFIGURED).into());
        }
        let app = self.store.set_acm(&app.id, true)?;
        self.api_log(
            &app.id,
            format!(
                "Enable Automatic Certificate Management by user {}",
                user.email
            ),
        );
        self.wake_acm();
        Ok(app)
    }

    /// `certs:auto:disable`: ACM certificates stop being served and are deleted.
    pub fn disable_acm(&self, app: &App, user: &Account) -> Result<App> {
        let was = app.acm;
        let app = self.store.set_acm(&app.id, false)?;
        self.publish_certificates(&app.id);
        if was {
            self.api_log(
                &app.id,
                format!(
                    "Disable Automatic Certificate Management by user {}",
                    user.email
                ),
            );
        }
        Ok(app)
    }

    /// `certs:auto:refresh`: a new certificate for every custom domain, now.
    pub fn refresh_acm(&self, app: &App, user: &Account) -> Result<App> {
        if !self.acm_configured() {
            return Err(Invalid::new("acm", NOT_CONFIGURED).into());
        }
        if !app.acm {
            return Err(Invalid::new("acm", "Automatic Certificate Management is not enabled for this app; enable it with certs:auto:enable").into());
        }
        self.store.request_acm_refresh(&app.id)?;
        self.api_log(
            &app.id,
            format!(
                "Refresh Automatic Certificate Management by user {}",
                user.email
            ),
        );
        self.wake_acm();
        Ok(self.store.app(&app.id)?)
    }

    /// The app's custom domains with their ACM states, for the API.
    pub fn acm_domains(&self, user: &Account, app: &App) -> Result<Vec<AcmDomain>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.acm_domains(&app.id)?)
    }

    /// One pass over every app with ACM on; returns how long until something is due.
    async fn acm_pass(&self, acm: &Acm) -> Duration {
        let mut next = RECHECK;
        let apps = match self.store.acm_apps() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "ACM: could not list apps");
                return BACKOFF_BASE;
            }
        };
        for app_id in apps {
            match self.acm_app(acm, &app_id).await {
                Ok(due) => next = next.min(due),
                Err(e) => {
                    tracing::warn!(app = %app_id, error = %e, "ACM: could not manage the app's certificates");
                    next = next.min(BACKOFF_BASE);
                }
            }
        }
        next
    }

    async fn acm_app(&self, acm: &Acm, app_id: &str) -> Result<Duration> {
        let mut next = RECHECK;
        let certificates: Vec<(String, Certificate)> = self
            .store
            .sni_endpoints(app_id)?
            .into_iter()
            .filter_map(|e| {
                let domain = e.acm_domain_id.clone()?;
                Certificate::from_pem(&e.certificate_chain, &e.private_key)
                    .ok()
                    .map(|c| (domain, c))
            })
            .collect();
        for d in self.store.acm_domains(app_id)? {
            let now = Timestamp::now();
            let hostname = d.domain.hostname.clone();
            let state = d.state.clone();
            if hostname.starts_with("*.") {
                if state.as_ref().is_none_or(|s| s.status != "failed") {
                    self.set_state(&d, AcmState::new("failed", Some(WILDCARD_REASON.into())));
                }
                continue;
            }
            let refresh = state.as_ref().is_some_and(|s| s.refresh);
            let current = certificates
                .iter()
                .find(|(id, _)| *id == d.domain.id)
                .map(|(_, c)| c);
            if let Some(cert) = current.filter(|_| !refresh) {
                let left = cert.info.expires_at.unix_seconds() - now.unix_seconds();
                if left > RENEW_BEFORE {
                    if state.as_ref().is_none_or(|s| s.status != "ok") {
                        self.set_state(&d, AcmState::new("ok", None));
                    }
                    next = next.min(Duration::from_secs(
                        u64::try_from(left - RENEW_BEFORE).unwrap_or(0),
                    ));
                    continue;
                }
            }
            if let Some(at) = state.as_ref().and_then(|s| s.next_attempt_at) {
                if at.unix_seconds() > now.unix_seconds() {
                    next = next.min(Duration::from_secs(
                        u64::try_from(at.unix_seconds() - now.unix_seconds()).unwrap_or(0),
                    ));
                    continue;
                }
            }
            let failures = state.as_ref().map_or(0, |s| s.failures);
            let mut pending = AcmState::new("pending", None);
            (pending.failures, pending.refresh) = (failures, refresh);
            self.set_state(&d, pending);
            tracing::info!(app = %app_id, hostname, source = acm.source.name(), "ACM: ordering a certificate");
            match self.acm_order(acm, &d).await {
                Ok(Some(expires)) => {
                    self.set_state(&d, AcmState::new("ok", None));
                    self.api_log(app_id, format!("Automatic Certificate Management issued a certificate for {hostname}, valid until {}", expires.rfc3339()));
                }
                // ACM was turned off or the domain removed while the order ran.
                Ok(None) => {}
                Err(why) => {
                    let failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    let why = why.to_string();
                    let mut failed = AcmState::new("failed", Some(why.clone()));
                    failed.failures = failures;
                    failed.next_attempt_at = Some(Timestamp::from_unix_seconds(
                        Timestamp::now().unix_seconds() + wait.as_secs() as i64,
                    ));
                    self.set_state(&d, failed);
                    self.api_log(app_id, format!("Automatic Certificate Management failed for {hostname}: {why} (next attempt in {} s)", wait.as_secs()));
                    next = next.min(wait);
                }
            }
        }
        Ok(next)
    }

    /// Orders, checks and stores one domain's certificate and starts serving it. `Ok(None)`
    /// when there is nothing to store it for any longer.
    async fn acm_order(
        &self,
        acm: &Acm,
        d: &AcmDomain,
    ) -> std::result::Result<Option<Timestamp>, AcmOrderError> {
        let issued = acm
            .source
            .obtain(std::slice::from_ref(&d.domain.hostname))
            .await
            .map_err(|e| AcmOrderError::Ca(e.to_string()))?;
        let cert = crate::check_certificate(&issued.chain_pem, &issued.key_pem)
            .map_err(|e| AcmOrderError::Unusable(e.to_string()))?;
        if !cert.info.covers(&d.domain.hostname) {
            return Err(AcmOrderError::WrongName(d.domain.hostname.clone()));
        }
        let mut last = None;
        for _ in 0..10 {
            match self.store.put_acm_certificate(
                &d.domain.id,
                &crate::sni::random_name(),
                &issued.chain_pem,
                &issued.key_pem,
            ) {
                Ok(_) => {
                    self.publish_certificates(&d.domain.app_id);
                    return Ok(Some(cert.info.expires_at));
                }
                Err(StoreError::Conflict(m)) if m.contains("name") => {
                    last = Some(StoreError::Conflict(m))
                }
                Err(StoreError::Conflict(_) | StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(AcmOrderError::Store(e)),
            }
        }
        Err(AcmOrderError::Store(last.unwrap_or_else(|| {
            StoreError::Conflict("no free certificate name".into())
        })))
    }

    fn set_state(&self, d: &AcmDomain, state: AcmState) {
        match self.store.set_acm_state(&d.domain.id, &state) {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(hostname = d.domain.hostname, error = %e, "ACM: could not record a domain's state")
            }
        }
    }
}

/// Why one domain's certificate could not be had (recorded as its `acm_status_reason`).
#[derive(Debug, thiserror::Error)]
enum AcmOrderError {
    /// The CA's own words (the ACME client's error).
    #[error("{0}")]
    Ca(String),
    #[error("the certificate authority issued an unusable certificate: {0}")]
    Unusable(String),
    #[error("the certificate authority issued a certificate that does not cover {0}")]
    WrongName(String),
    #[error("storing the certificate: {0}")]
    Store(#[source] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(5), BACKOFF_BASE * 16);
        assert_eq!(backoff(30), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        assert_eq!(backoff(0), BACKOFF_BASE);
    }
}
