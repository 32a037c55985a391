//! An ACME client (RFC 8555) for certificates from Let's Encrypt and the like, answering
//! HTTP-01 challenges through a [`ChallengeResponder`] (the router).
//!
//! Why not the `instant-acme` crate: with its default features off it needs its HTTP client
//! supplied anyway and brings `async-trait`, `serde` derive and its own error types, for a
//! protocol that is a dozen signed POSTs. On ring, hyper's client connection and
//! tokio-rustls — all already in the build for the router — the whole client is this
//! module, and every response is read as hostile input in one place (`wire`).
//!
//! One order, step by step ([`AcmeClient::obtain`]):
//! 1. the directory is fetched on first use (so the server starts even while the CA is
//!    unreachable), and the account is registered (or found again: `newAccount` with a key
//!    the CA knows answers with the existing account) with the key kept under the data
//!    directory;
//! 2. `newOrder` for the hostnames; for each pending authorization, the HTTP-01 key
//!    authorization is published, the challenge is triggered, and the authorization polled
//!    (honouring `Retry-After`, within a bound) until valid or invalid;
//! 3. finalize with a CSR for a fresh P-256 key (never the account key, never reused), poll
//!    the order until valid, and download the PEM chain, which is checked (it parses, the
//!    key matches, it covers every hostname) before it is returned;
//! 4. published challenges are withdrawn on every path, errors and cancellation included.
//!
//! Every signed request takes the last `Replay-Nonce` and retries with a new one when the
//! CA answers `badNonce`.

mod jws;
mod transport;
mod wire;

pub use transport::SYSTEM_ROOTS;
pub use wire::Problem;

use crate::{Certificate, CertificateSource, IssuedCertificate, TlsError};
use jws::AccountKey;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::{Response, Transport};
use wire::{Authorization, Directory, Order, Status};

/// Attempts per signed request when the CA rejects the nonce (`badNonce` is retryable).
const NONCE_ATTEMPTS: usize = 4;
/// Longest wait for a challenge to be validated, and for a finalized order to be issued.
const POLL_BOUND: Duration = Duration::from_secs(180);
/// The pace of polling when the CA gives no `Retry-After`, and the bounds on what it gives.
const POLL_DEFAULT: Duration = Duration::from_secs(1);
const POLL_MAX: Duration = Duration::from_secs(30);

/// Why an ACME order failed, in words for the person who runs the server or owns the domain.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not reach the ACME server at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("the ACME server sent something unusable: {0}")]
    Protocol(String),
    #[error("the ACME server refused {what}: {problem}")]
    Refused { what: String, problem: String },
    #[error("the certificate authority could not validate {hostname}: {detail}")]
    Validation { hostname: String, detail: String },
    #[error("{0}")]
    Timeout(String),
}

impl AcmeError {
    fn protocol(message: impl Into<String>) -> AcmeError {
        AcmeError::Protocol(message.into())
    }
}

/// Publishes HTTP-01 key authorizations where the CA will fetch them: the router answers
/// `GET /.well-known/acme-challenge/<token>` with `key_authorization` on port 80.
pub trait ChallengeResponder: Send + Sync {
    fn publish(&self, token: &str, key_authorization: &str);
    fn withdraw(&self, token: &str);
}

/// Where the client talks to and what it keeps.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The CA's directory URL (https), e.g. Let's Encrypt's
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// An email address for the CA's expiry and policy notices.
    pub contact: Option<String>,
    /// Where the account key is kept (created on first use).
    pub account_key: PathBuf,
    /// Trusted roots for the CA's HTTPS: the system bundle ([`SYSTEM_ROOTS`]) and/or an extra
    /// PEM file (a test CA such as Pebble).
    pub system_roots: Option<PathBuf>,
    pub extra_ca: Option<PathBuf>,
    /// Deadline of each HTTP exchange with the CA.
    pub request_timeout: Duration,
}

impl AcmeConfig {
    pub fn new(directory_url: &str, account_key: PathBuf) -> AcmeConfig {
        AcmeConfig {
            directory_url: directory_url.to_string(),
            contact: None,
            account_key,
            system_roots: Some(PathBuf::from(SYSTEM_ROOTS)),
            extra_ca: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What is learnt while talking to the CA, kept between orders.
#[derive(Default)]
struct Session {
    directory: Option<Directory>,
    account_url: Option<String>,
    nonce: Option<String>,
}

/// An ACME account at one CA, able to order certificates.
pub struct AcmeClient {
    config: AcmeConfig,
    transport: Transport,
    key: AccountKey,
    responder: Arc<dyn ChallengeResponder>,
    /// One order at a time: they share the nonce and the account, and a CA rate-limits anyway.
    session: tokio::sync::Mutex<Session>,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory", &self.config.directory_url)
            .finish_non_exhaustive()
    }
}

impl AcmeClient {
    /// Checks the configuration, loads (or makes) the account key and the trusted roots.
    /// Nothing is sent until the first order.
    pub fn new(
        config: AcmeConfig,
        responder: Arc<dyn ChallengeResponder>,
    ) -> Result<AcmeClient, AcmeError> {
        wire::https_url("configuration", "directory URL", &config.directory_url).map_err(|_| {
            AcmeError::Config(format!(
                "the directory URL must be https://…, not {:?}",
                wire::shown(&config.directory_url)
            ))
        })?;
        if let Some(c) = &config.contact {
            if c.is_empty()
                || c.len() > 254
                || !c.contains('@')
                || c.chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control() || ch == ',')
            {
                return Err(AcmeError::Config(format!("{c:?} is not an email address")));
            }
        }
        let transport = Transport::new(
            config.system_roots.as_deref(),
            config.extra_ca.as_deref(),
            config.request_timeout,
        )?;
        let key = AccountKey::load_or_create(&config.account_key)?;
        Ok(AcmeClient {
            config,
            transport,
            key,
            responder,
            session: tokio::sync::Mutex::default(),
        })
    }

    pub fn directory_url(&self) -> &str {
        &self.config.directory_url
    }

    /// Orders, validates and downloads a certificate for `hostnames` (DNS names, no
    /// wildcards: HTTP-01 cannot prove control of those).
    pub async fn order(&self, hostnames: &[String]) -> Result<IssuedCertificate, AcmeError> {
        if hostnames.is_empty() {
            return Err(AcmeError::Config(
                "no hostname to order a certificate for".into(),
            ));
        }
        if let Some(w) = hostnames.iter().find(|h| h.contains('*')) {
            return Err(AcmeError::Config(format!(
                "{w} is a wildcard, which HTTP-01 validation cannot prove; upload a certificate for it instead"
            )));
        }
        let mut session = self.session.lock().await;
        self.ensure_account(&mut session).await?;
        let new_order = session
            .directory
            .as_ref()
            .map(|d| d.new_order.clone())
            .unwrap_or_default();
        let identifiers: Vec<Value> = hostnames
            .iter()
            .map(|h| json!({ "type": "dns", "value": h }))
            .collect();
        let resp = self
            .post(
                &mut session,
                &new_order,
                Some(&json!({ "identifiers": identifiers })),
                "the new order",
            )
            .await?;
        let order_url = match resp.header("location") {
            Some(l) => wire::https_url("new order", "Location", l)?,
            None => {
                return Err(AcmeError::protocol(
                    "the new order's answer has no Location",
                ));
            }
        };
        let order = Order::parse(&resp.body)?;

        let mut published = Published {
            responder: self.responder.as_ref(),
            tokens: Vec::new(),
        };
        for authz_url in order.authorizations.clone() {
            self.authorize(&mut session, &authz_url, &mut published)
                .await?;
        }
        // Validated: the key authorizations need not be served any longer.
        drop(published);

        // The order as it stands now that every authorization is valid.
        let resp = self
            .post(&mut session, &order_url, None, "the order")
            .await?;
        let mut order = Order::parse(&resp.body)?;
        let deadline = Instant::now() + POLL_BOUND;
        let key = rcgen::KeyPair::generate()
            .map_err(|e| AcmeError::Config(format!("generating the certificate key: {e}")))?;
        let mut finalized = false;
        let cert_url = loop {
            let wait = match order.status {
                Status::Valid => {
                    break order.certificate.clone().ok_or_else(|| {
                        AcmeError::protocol("the valid order names no certificate")
                    })?;
                }
                Status::Ready if !finalized => {
                    let csr = csr(hostnames, &key)?;
                    let resp = self
                        .post(
                            &mut session,
                            &order.finalize,
                            Some(&json!({ "csr": jws::b64(&csr) })),
                            "the certificate request",
                        )
                        .await?;
                    finalized = true;
                    let wait = pace(&resp);
                    order = Order::parse(&resp.body)?;
                    wait
                }
                Status::Invalid | Status::Dead => {
                    let why = order
                        .error
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(AcmeError::Refused {
                        what: format!("the order for {}", hostnames.join(", ")),
                        problem: why,
                    });
                }
                Status::Pending | Status::Ready | Status::Processing => {
                    if Instant::now() > deadline {
                        return Err(AcmeError::Timeout(format!(
                            "the certificate for {} was not issued within {} s",
                            hostnames.join(", "),
                            POLL_BOUND.as_secs()
                        )));
                    }
                    let resp = self
                        .post(&mut session, &order_url, None, "the order")
                        .await?;
                    let wait = pace(&resp);
                    order = Order::parse(&resp.body)?;
                    wait
                }
            };
            if matches!(order.status, Status::Pending | Status::Processing)
                || (order.status == Status::Ready && finalized)
            {
                tokio::time::sleep(wait).await;
            }
        };

        let resp = self
            .post_accepting(
                &mut session,
                &cert_url,
                None,
                "the certificate",
                "application/pem-certificate-chain",
            )
            .await?;
        let chain = std::str::from_utf8(&resp.body)
            .map_err(|_| AcmeError::protocol("the certificate chain is not text"))?
            .to_string();
        let key_pem = key.serialize_pem();
        let cert = Certificate::from_pem(&chain, &key_pem)
            .map_err(|e| AcmeError::protocol(format!("the issued certificate is unusable: {e}")))?;
        if let Some(missing) = hostnames.iter().find(|h| !cert.info.covers(h)) {
            return Err(AcmeError::protocol(format!(
                "the issued certificate does not cover {missing}"
            )));
        }
        Ok(IssuedCertificate {
            chain_pem: chain,
            key_pem,
        })
    }

    /// Gets one authorization to `valid`, answering its HTTP-01 challenge if need be.
    async fn authorize(
        &self,
        session: &mut Session,
        url: &str,
        published: &mut Published<'_>,
    ) -> Result<(), AcmeError> {
        let resp = self.post(session, url, None, "an authorization").await?;
        let authz = Authorization::parse(&resp.body)?;
        match authz.status {
            // Reused from an earlier order (CAs keep them for a while).
            Status::Valid => return Ok(()),
            Status::Pending => {}
            _ => return Err(failed_validation(&authz)),
        }
        let challenge = authz
            .http01()
            .cloned()
            .ok_or_else(|| AcmeError::Validation {
                hostname: authz.identifier.clone(),
                detail: "the certificate authority offers no http-01 challenge for it".into(),
            })?;
        let key_authorization = self.key.key_authorization(&challenge.token);
        self.responder.publish(&challenge.token, &key_authorization);
        published.tokens.push(challenge.token.clone());
        self.post(session, &challenge.url, Some(&json!({})), "the challenge")
            .await?;

        let deadline = Instant::now() + POLL_BOUND;
        loop {
            let resp = self.post(session, url, None, "an authorization").await?;
            let wait = pace(&resp);
            let authz = Authorization::parse(&resp.body)?;
            match authz.status {
                Status::Valid => return Ok(()),
                Status::Pending => {}
                _ => return Err(failed_validation(&authz)),
            }
            if Instant::now() > deadline {
                return Err(AcmeError::Timeout(format!(
                    "the certificate authority did not validate {} within {} s",
                    authz.identifier,
                    POLL_BOUND.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Fetches the directory and registers the account, once per client.
    async fn ensure_account(&self, session: &mut Session) -> Result<(), AcmeError> {
        if session.directory.is_none() {
            let resp = self
                .transport
                .request(
                    http::Method::GET,
                    &self.config.directory_url,
                    None,
                    "application/json",
                    Vec::new(),
                )
                .await?;
            if resp.status != 200 {
                return Err(AcmeError::protocol(format!(
                    "the directory {} answered HTTP {}",
                    self.config.directory_url, resp.status
                )));
            }
            session.directory = Some(Directory::parse(&resp.body)?);
        }
        if session.account_url.is_none() {
            let url = session
                .directory
                .as_ref()
                .map(|d| d.new_account.clone())
                .unwrap_or_default();
            let mut payload = json!({ "termsOfServiceAgreed": true });
            if let Some(c) = &self.config.contact {
                payload["contact"] = json!([format!("mailto:{c}")]);
            }
            let resp = self
                .post(session, &url, Some(&payload), "the account registration")
                .await?;
            let account = match resp.header("location") {
                Some(l) => wire::https_url("account", "Location", l)?,
                None => {
                    return Err(AcmeError::protocol(
                        "the account registration's answer has no Location",
                    ));
                }
            };
            tracing::info!(
                account,
                directory = self.config.directory_url,
                "ACME account ready"
            );
            session.account_url = Some(account);
        }
        Ok(())
    }

    async fn post(
        &self,
        session: &mut Session,
        url: &str,
        payload: Option<&Value>,
        what: &str,
    ) -> Result<Response, AcmeError> {
        self.post_accepting(session, url, payload, what, "application/json")
            .await
    }

    /// A signed POST (POST-as-GET when `payload` is `None`), retried on `badNonce`. Any
    /// answer other than 2xx is an error carrying the CA's problem document.
    async fn post_accepting(
        &self,
        session: &mut Session,
        url: &str,
        payload: Option<&Value>,
        what: &str,
        accept: &str,
    ) -> Result<Response, AcmeError> {
        let mut last = None;
        for _ in 0..NONCE_ATTEMPTS {
            let nonce = match session.nonce.take() {
                Some(n) => n,
                None => self.new_nonce(session).await?,
            };
            let body = self
                .key
                .sign(url, &nonce, session.account_url.as_deref(), payload)?;
            let resp = self
                .transport
                .request(
                    http::Method::POST,
                    url,
                    Some("application/jose+json"),
                    accept,
                    body,
                )
                .await?;
            session.nonce = resp.header("replay-nonce").and_then(wire::nonce);
            if (200..300).contains(&resp.status) {
                return Ok(resp);
            }
            let problem = wire::Problem::parse(&resp.body);
            match problem {
                Some(p) if p.is_bad_nonce() => {
                    tracing::debug!(url, "ACME server rejected the nonce; retrying");
                    last = Some(p);
                }
                Some(p) => {
                    return Err(AcmeError::Refused {
                        what: what.to_string(),
                        problem: format!("{p} (HTTP {})", resp.status),
                    });
                }
                None => {
                    return Err(AcmeError::Refused {
                        what: what.to_string(),
                        problem: format!("HTTP {} without a problem document", resp.status),
                    });
                }
            }
        }
        Err(AcmeError::Refused {
            what: what.to_string(),
            problem: format!(
                "{} after {NONCE_ATTEMPTS} attempts",
                last.map(|p| p.to_string()).unwrap_or_default()
            ),
        })
    }

    async fn new_nonce(&self, session: &Session) -> Result<String, AcmeError> {
        let url = session
            .directory
            .as_ref()
            .map(|d| d.new_nonce.clone())
            .ok_or_else(|| AcmeError::protocol("no directory"))?;
        let resp = self
            .transport
            .request(http::Method::HEAD, &url, None, "*/*", Vec::new())
            .await?;
        resp.header("replay-nonce")
            .and_then(wire::nonce)
            .ok_or_else(|| {
                AcmeError::protocol(format!(
                    "newNonce answered HTTP {} without a usable Replay-Nonce",
                    resp.status
                ))
            })
    }
}

impl CertificateSource for AcmeClient {
    fn name(&self) -> &'static str {
        "acme"
    }

    fn obtain<'a>(
        &'a self,
        hostnames: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<IssuedCertificate, TlsError>> + Send + 'a>> {
        Box::pin(async move { self.order(hostnames).await.map_err(TlsError::from) })
    }
}

/// Challenges published for one order; withdrawn when it is dropped, whichever way the
/// order ends (an error, success, or the task being cancelled).
struct Published<'a> {
    responder: &'a dyn ChallengeResponder,
    tokens: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.responder.withdraw(token);
        }
    }
}

/// How long to wait before polling again: the CA's `Retry-After`, within bounds.
fn pace(resp: &Response) -> Duration {
    wire::retry_after(resp.header("retry-after"))
        .map(Duration::from_secs)
        .unwrap_or(POLL_DEFAULT)
        .clamp(POLL_DEFAULT, POLL_MAX)
}

fn failed_validation(authz: &Authorization) -> AcmeError {
    let detail = authz
        .challenges
        .iter()
        .find_map(|c| c.error.as_ref())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "the authorization is no longer pending or valid".to_string());
    AcmeError::Validation {
        hostname: authz.identifier.clone(),
        detail,
    }
}

/// A DER certificate signing request for `hostnames`, signed by `key`.
fn csr(hostnames: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params = rcgen::CertificateParams::new(hostnames.to_vec()).map_err(|e| {
        AcmeError::Config(format!(
            "a hostname cannot go in a certificate request: {e}"
        ))
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostnames[0].as_str());
    let request = params
        .serialize_request(key)
        .map_err(|e| AcmeError::Config(format!("making the certificate request: {e}")))?;
    Ok(request.der().to_vec())
}

#[cfg(test)]
mod tests;
