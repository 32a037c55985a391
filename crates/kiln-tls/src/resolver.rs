//! Choosing the certificate for a TLS handshake from its SNI name.
//!
//! In order:
//! 1. a certificate uploaded to the app that the hostname routes to, if one covers the
//!    name. Only the owning app's are considered, so a certificate uploaded to one app is
//!    never presented for another app's hostname, whatever names it covers. Among several,
//!    an unexpired one beats an expired one, an exact name a wildcard, a later expiry an
//!    earlier one;
//! 2. for a hostname in the platform domain that an app answers to, when the domain's
//!    wildcard is unusable (a single-label domain such as `localhost`), a certificate for
//!    exactly that name from the [`LocalCa`], signed on first use and kept in memory;
//! 3. the local CA's default certificate (`*.<domain>`, `<domain>`): also for handshakes
//!    without SNI, or for names nobody serves.
//!
//! Uploaded certificates are published by the platform from the store; the route table
//! says which app owns a hostname. A handshake takes read locks and clones `Arc`s.

use crate::material::hostname_matches;
use crate::{Certificate, LocalCa};
use kiln_model::Timestamp;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Signed certificates kept for app hostnames; past this the cache starts over (only
/// hostnames some app answers to are signed, so this is a bound on churn, not on apps).
const MAX_SIGNED: usize = 10_000;

/// Which app a hostname routes to; the router's route table answers.
pub trait HostOwner: Send + Sync {
    /// The id of the app serving `hostname` (lowercase, no port), if any.
    fn owner_of(&self, hostname: &str) -> Option<String>;
}

/// The SNI certificate resolver of the HTTPS listener.
pub struct SniResolver {
    ca: Arc<LocalCa>,
    default: Arc<CertifiedKey>,
    owners: Arc<dyn HostOwner>,
    by_app: RwLock<HashMap<String, Arc<[Certificate]>>>,
    signed: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").field("domain", &self.ca.domain()).field("apps", &self.read().len()).finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver serving the local CA's certificates unless an app's own certificate fits.
    pub fn new(ca: Arc<LocalCa>, owners: Arc<dyn HostOwner>) -> Arc<SniResolver> {
        let default = Arc::clone(ca.default_certificate().certified_key());
        Arc::new(SniResolver { ca, default, owners, by_app: RwLock::new(HashMap::new()), signed: RwLock::new(HashMap::new()) })
    }

    /// The local CA whose certificate clients trust for the platform's own hostnames.
    pub fn local_ca(&self) -> &LocalCa {
        &self.ca
    }

    /// Replaces the certificates uploaded to an app (none: forgets the app).
    pub fn set_app_certificates(&self, app_id: &str, certificates: Vec<Certificate>) {
        let mut map = self.by_app.write().unwrap_or_else(PoisonError::into_inner);
        if certificates.is_empty() {
            map.remove(app_id);
        } else {
            map.insert(app_id.to_string(), certificates.into());
        }
    }

    /// The certificate a handshake naming `server_name` gets (`None`: no SNI, as with an
    /// IP address).
    pub fn select(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        server_name.and_then(|name| self.for_name(name)).unwrap_or_else(|| Arc::clone(&self.default))
    }

    fn for_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let app_id = self.owners.owner_of(&name)?;
        if let Some(uploaded) = self.uploaded(&app_id, &name) {
            return Some(uploaded);
        }
        if self.ca.wildcard_usable() || !self.ca.in_domain(&name) || name == self.ca.domain() {
            return None;
        }
        if let Some(signed) = self.signed.read().unwrap_or_else(PoisonError::into_inner).get(&name) {
            return Some(Arc::clone(signed));
        }
        let signed = match self.ca.issue(&name) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(hostname = name, error = %e, "signing a certificate failed; serving the default one");
                return None;
            }
        };
        let mut cache = self.signed.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_SIGNED {
            cache.clear();
        }
        Some(Arc::clone(cache.entry(name).or_insert(signed)))
    }

    fn uploaded(&self, app_id: &str, name: &str) -> Option<Arc<CertifiedKey>> {
        let certificates = self.read().get(app_id).cloned()?;
        let now = Timestamp::now();
        certificates
            .iter()
            .filter_map(|c| {
                let exact = c.info.hostnames.iter().any(|h| h == name);
                let covers = exact || c.info.hostnames.iter().any(|h| hostname_matches(h, name));
                covers.then_some(((!c.info.is_expired(now), exact, c.info.expires_at), c))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, c)| Arc::clone(c.certified_key()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<[Certificate]>>> {
        self.by_app.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::tests::self_signed;

    struct Owners(Vec<(&'static str, &'static str)>);

    impl HostOwner for Owners {
        fn owner_of(&self, hostname: &str) -> Option<String> {
            self.0.iter().find(|(h, _)| *h == hostname).map(|(_, a)| a.to_string())
        }
    }

    fn cert(names: &[&str]) -> Certificate {
        let (c, k) = self_signed(names);
        Certificate::from_pem(&c, &k).unwrap()
    }

    fn same(a: &Arc<CertifiedKey>, b: &Certificate) -> bool {
        a.cert == b.certified_key().cert
    }

    fn local_ca(domain: &str) -> (Arc<LocalCa>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("kiln-tls-resolver-{}-{}-{domain}", std::process::id(), Timestamp::now().0));
        (Arc::new(LocalCa::load_or_create(&dir, domain).unwrap()), dir)
    }

    #[test]
    fn picks_the_owning_apps_certificate_or_the_default() {
        let (ca, dir) = local_ca("apps.test");
        let default = ca.default_certificate().clone();
        let owners = Owners(vec![("www.example.com", "app1"), ("shop.example.com", "app1"), ("other.example.com", "app2"), ("foo.apps.test", "app1")]);
        let r = SniResolver::new(ca, Arc::new(owners));
        let wildcard = cert(&["*.example.com"]);
        let exact = cert(&["www.example.com"]);
        r.set_app_certificates("app1", vec![wildcard.clone(), exact.clone()]);

        assert!(same(&r.select(Some("www.example.com")), &exact), "an exact name beats a wildcard");
        assert!(same(&r.select(Some("WWW.Example.com.")), &exact));
        assert!(same(&r.select(Some("shop.example.com")), &wildcard));
        assert!(same(&r.select(Some("other.example.com")), &default), "app1's wildcard is never shown for app2's host");
        assert!(same(&r.select(Some("foo.apps.test")), &default), "no uploaded certificate covers it");
        assert!(same(&r.select(Some("unknown.example.com")), &default));
        assert!(same(&r.select(None), &default));

        r.set_app_certificates("app1", vec![]);
        assert!(same(&r.select(Some("www.example.com")), &default), "removed");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn single_label_domains_sign_per_app_hostname() {
        let (ca, dir) = local_ca("localhost");
        let default = ca.default_certificate().clone();
        let r = SniResolver::new(ca, Arc::new(Owners(vec![("foo.localhost", "app1"), ("bar.localhost", "app2")])));
        let foo = r.select(Some("foo.localhost"));
        assert!(!Arc::ptr_eq(&foo, default.certified_key()));
        assert!(Arc::ptr_eq(&foo, &r.select(Some("FOO.localhost"))), "signed once, then cached");
        let (parsed, _) = (x509_parser::parse_x509_certificate(&foo.cert[0]).unwrap(), ());
        let names: Vec<String> = parsed.1.subject_alternative_name().unwrap().unwrap().value.general_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["DNSName(foo.localhost)"]);
        assert!(!Arc::ptr_eq(&foo, &r.select(Some("bar.localhost"))));
        assert!(same(&r.select(Some("nobody.localhost")), &default), "names no app answers to are not signed");
        let uploaded = cert(&["foo.localhost"]);
        r.set_app_certificates("app1", vec![uploaded.clone()]);
        assert!(same(&r.select(Some("foo.localhost")), &uploaded), "an upload beats the local CA");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
