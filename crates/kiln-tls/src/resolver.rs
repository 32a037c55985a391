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
//!
//! The local CA's leaves are valid for 397 days (the most clients accept); a server that
//! runs that long must not start serving expired ones, so a leaf within 30 days of its expiry
//! is signed again on the next handshake that would present it.

use crate::local_ca::{LEAF_VALIDITY_DAYS, RENEW_BEFORE_DAYS};
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
    default: RwLock<Signed>,
    owners: Arc<dyn HostOwner>,
    by_app: RwLock<HashMap<String, Arc<[Certificate]>>>,
    signed: RwLock<HashMap<String, Signed>>,
}

/// A leaf from the local CA, and when (unix seconds) to sign it again.
#[derive(Clone)]
struct Signed {
    key: Arc<CertifiedKey>,
    renew_at: i64,
}

impl Signed {
    fn from_certificate(c: &Certificate) -> Signed {
        Signed {
            key: Arc::clone(c.certified_key()),
            renew_at: renew_at(c.info.expires_at.unix_seconds()),
        }
    }
}

fn renew_at(expires_at: i64) -> i64 {
    expires_at - RENEW_BEFORE_DAYS * 86_400
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("domain", &self.ca.domain())
            .field("apps", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver serving the local CA's certificates unless an app's own certificate fits.
    pub fn new(ca: Arc<LocalCa>, owners: Arc<dyn HostOwner>) -> Arc<SniResolver> {
        let default = RwLock::new(Signed::from_certificate(ca.default_certificate()));
        Arc::new(SniResolver {
            ca,
            default,
            owners,
            by_app: RwLock::new(HashMap::new()),
            signed: RwLock::new(HashMap::new()),
        })
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
        self.select_at(server_name, Timestamp::now().unix_seconds())
    }

    /// [`select`](Self::select) at time `now` (unix seconds).
    fn select_at(&self, server_name: Option<&str>, now: i64) -> Arc<CertifiedKey> {
        server_name
            .and_then(|name| self.for_name(name, now))
            .unwrap_or_else(|| self.default_at(now))
    }

    /// The local CA's default certificate, signed again once it nears its expiry.
    fn default_at(&self, now: i64) -> Arc<CertifiedKey> {
        let current = self
            .default
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if now < current.renew_at {
            return current.key;
        }
        let mut default = self.default.write().unwrap_or_else(PoisonError::into_inner);
        if now >= default.renew_at {
            match self.ca.sign_default_at(now) {
                Ok(c) => *default = Signed::from_certificate(&c),
                // Serving the old one until it expires beats serving none; the next
                // handshake tries again.
                Err(e) => tracing::warn!(error = %e, "renewing the default certificate failed"),
            }
        }
        Arc::clone(&default.key)
    }

    fn for_name(&self, name: &str, now: i64) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let app_id = self.owners.owner_of(&name)?;
        if let Some(uploaded) = self.uploaded(&app_id, &name) {
            return Some(uploaded);
        }
        if self.ca.wildcard_usable() || !self.ca.in_domain(&name) || name == self.ca.domain() {
            return None;
        }
        if let Some(signed) = self
            .signed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .filter(|s| now < s.renew_at)
        {
            return Some(Arc::clone(&signed.key));
        }
        let key = match self.ca.issue_at(&name, now) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(hostname = name, error = %e, "signing a certificate failed; serving the default one");
                return None;
            }
        };
        let signed = Signed {
            key,
            renew_at: renew_at(now + LEAF_VALIDITY_DAYS * 86_400),
        };
        let mut cache = self.signed.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_SIGNED {
            cache.clear();
        }
        let entry = cache.entry(name).or_insert_with(|| signed.clone());
        if now >= entry.renew_at {
            *entry = signed;
        }
        Some(Arc::clone(&entry.key))
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
            self.0
                .iter()
                .find(|(h, _)| *h == hostname)
                .map(|(_, a)| a.to_string())
        }
    }

    fn cert(names: &[&str]) -> Certificate {
        let (c, k) = self_signed(names);
        Certificate::from_pem(&c, &k).unwrap()
    }

    fn same(a: &Arc<CertifiedKey>, b: &Certificate) -> bool {
        a.cert == b.certified_key().cert
    }

    fn local_ca(domain: &str) -> (Arc<LocalCa>, kiln_testkit::TempDir) {
        let dir = kiln_testkit::TempDir::new(&format!("tls-resolver-{domain}"));
        (
            Arc::new(LocalCa::load_or_create(&dir, domain).unwrap()),
            dir,
        )
    }

    #[test]
    fn picks_the_owning_apps_certificate_or_the_default() {
        let (ca, _dir) = local_ca("apps.test");
        let default = ca.default_certificate().clone();
        let owners = Owners(vec![
            ("www.example.com", "app1"),
            ("shop.example.com", "app1"),
            ("other.example.com", "app2"),
            ("foo.apps.test", "app1"),
        ]);
        let r = SniResolver::new(ca, Arc::new(owners));
        let wildcard = cert(&["*.example.com"]);
        let exact = cert(&["www.example.com"]);
        r.set_app_certificates("app1", vec![wildcard.clone(), exact.clone()]);

        assert!(
            same(&r.select(Some("www.example.com")), &exact),
            "an exact name beats a wildcard"
        );
        assert!(same(&r.select(Some("WWW.Example.com.")), &exact));
        assert!(same(&r.select(Some("shop.example.com")), &wildcard));
        assert!(
            same(&r.select(Some("other.example.com")), &default),
            "app1's wildcard is never shown for app2's host"
        );
        assert!(
            same(&r.select(Some("foo.apps.test")), &default),
            "no uploaded certificate covers it"
        );
        assert!(same(&r.select(Some("unknown.example.com")), &default));
        assert!(same(&r.select(None), &default));

        r.set_app_certificates("app1", vec![]);
        assert!(
            same(&r.select(Some("www.example.com")), &default),
            "removed"
        );
    }

    #[test]
    fn single_label_domains_sign_per_app_hostname() {
        let (ca, _dir) = local_ca("localhost");
        let default = ca.default_certificate().clone();
        let r = SniResolver::new(
            ca,
            Arc::new(Owners(vec![
                ("foo.localhost", "app1"),
                ("bar.localhost", "app2"),
            ])),
        );
        let foo = r.select(Some("foo.localhost"));
        assert!(!Arc::ptr_eq(&foo, default.certified_key()));
        assert!(
            Arc::ptr_eq(&foo, &r.select(Some("FOO.localhost"))),
            "signed once, then cached"
        );
        let (parsed, _) = (
            x509_parser::parse_x509_certificate(&foo.cert[0]).unwrap(),
            (),
        );
        let names: Vec<String> = parsed
            .1
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["DNSName(foo.localhost)"]);
        assert!(!Arc::ptr_eq(&foo, &r.select(Some("bar.localhost"))));
        assert!(
            same(&r.select(Some("nobody.localhost")), &default),
            "names no app answers to are not signed"
        );
        let uploaded = cert(&["foo.localhost"]);
        r.set_app_certificates("app1", vec![uploaded.clone()]);
        assert!(
            same(&r.select(Some("foo.localhost")), &uploaded),
            "an upload beats the local CA"
        );
    }

    fn not_after(key: &CertifiedKey) -> i64 {
        x509_parser::parse_x509_certificate(&key.cert[0])
            .unwrap()
            .1
            .validity()
            .not_after
            .timestamp()
    }

    #[test]
    fn leaves_are_signed_again_before_they_expire() {
        for domain in ["localhost", "apps.test"] {
            let (ca, _dir) = local_ca(domain);
            let r = SniResolver::new(ca, Arc::new(Owners(vec![("foo.localhost", "app1")])));
            let now = Timestamp::now().unix_seconds();
            let (named, default) = (
                r.select_at(Some("foo.localhost"), now),
                r.select_at(None, now),
            );
            for key in [&named, &default] {
                assert!(
                    not_after(key) <= now + 398 * 86_400,
                    "{domain}: valid for at most 398 days"
                );
            }
            // A day before the renewal window: still the same certificates.
            let soon = not_after(&default) - (RENEW_BEFORE_DAYS + 1) * 86_400;
            assert!(Arc::ptr_eq(&default, &r.select_at(None, soon)), "{domain}");
            assert!(
                Arc::ptr_eq(&named, &r.select_at(Some("foo.localhost"), soon))
                    || domain != "localhost"
            );
            // Inside it: signed again, once.
            let late = not_after(&default) - (RENEW_BEFORE_DAYS - 1) * 86_400;
            let renewed = r.select_at(None, late);
            assert!(
                !Arc::ptr_eq(&default, &renewed),
                "{domain}: the default certificate is renewed"
            );
            assert!(
                Arc::ptr_eq(&renewed, &r.select_at(None, late)),
                "{domain}: and kept"
            );
            if domain == "localhost" {
                let named_again = r.select_at(Some("foo.localhost"), late);
                assert!(
                    !Arc::ptr_eq(&named, &named_again),
                    "the per-name certificate is renewed"
                );
                assert!(Arc::ptr_eq(
                    &named_again,
                    &r.select_at(Some("foo.localhost"), late)
                ));
            }
        }
    }
}
