//! Custom domains (`domains:add`, `domains:remove`): hostnames an app is served at besides
//! its default `<app>.<domain>`. The store keeps them; the router's table gets the app's
//! whole set after every change and at start.
//!
//! A hostname is a lowercase DNS name (letters, digits and hyphens in labels of 1 to 63,
//! at most 253 in all, at least two labels, not an IP address), optionally a wildcard
//! `*.example.com` (one label deep). It belongs to one app at most, and never to the
//! platform's own domain: `other.<domain>` would otherwise steal another app's traffic,
//! since custom hostnames are matched before default ones.

use crate::{Platform, PlatformError, Result};
use kiln_model::Invalid;
use kiln_store::{Account, App, Domain, StoreError};

/// The longest DNS name.
const MAX_HOSTNAME: usize = 253;
const MAX_LABEL: usize = 63;

/// Checks a hostname given by a user and returns it normalized (lowercase, without a
/// trailing dot).
/// The host of a URL, lowercase, without scheme, credentials, port or path.
fn host_of_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.to_ascii_lowercase()
}

/// Whether a domain (maybe a `*.` wildcard) would route `host`.
fn covers_host(domain: &str, host: &str) -> bool {
    if domain == host {
        return true;
    }
    domain.strip_prefix("*.").is_some_and(|base| {
        host.strip_suffix(base)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    })
}

pub fn validate_hostname(
    input: &str,
    platform_domain: &str,
) -> std::result::Result<String, Invalid> {
    let invalid = |why: String| Invalid::new("hostname", why);
    let trimmed = input.trim();
    let hostname = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if hostname.is_empty() {
        return Err(invalid(
            "A hostname is required, such as www.example.com".into(),
        ));
    }
    let shown: String = hostname.chars().take(64).collect();
    if hostname.len() > MAX_HOSTNAME {
        return Err(invalid(format!(
            "{shown}… is longer than {MAX_HOSTNAME} characters"
        )));
    }
    let name = hostname.strip_prefix("*.").unwrap_or(&hostname);
    if name.contains('*') {
        return Err(invalid(format!(
            "{shown} is not a valid hostname: a wildcard may only be the whole first label, as in *.example.com"
        )));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid(format!(
            "{shown} is not a valid hostname: it needs a domain, as in www.example.com"
        )));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid(format!(
                "{shown} is not a valid hostname: each part between dots must be 1 to {MAX_LABEL} letters, digits or hyphens, not starting or ending with a hyphen"
            )));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(format!(
            "{shown} is not a hostname: IP addresses cannot be added as domains"
        )));
    }
    let platform = platform_domain
        .trim()
        .trim_matches('.')
        .to_ascii_lowercase();
    if !platform.is_empty() && (name == platform || name.ends_with(&format!(".{platform}"))) {
        return Err(invalid(format!(
            "{shown} is under {platform}, where Kiln serves apps by name; add a hostname of your own domain"
        )));
    }
    Ok(hostname)
}

impl Platform {
    /// The app's custom domains, oldest first.
    pub fn domains(&self, user: &Account, app: &App) -> Result<Vec<Domain>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.domains(&app.id)?)
    }

    /// One of the app's custom domains, by id or hostname.
    pub fn domain(&self, user: &Account, app: &App, id_or_hostname: &str) -> Result<Domain> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        self.store
            .domain(&app.id, id_or_hostname)
            .map_err(|e| match e {
                StoreError::NotFound { resource: "domain" } => PlatformError::NotFound {
                    resource: "domain",
                    message: format!("Couldn't find that domain ({}).", shown(id_or_hostname)),
                },
                other => other.into(),
            })
    }

    /// The hostname every app has: `<app>.<domain>`.
    pub fn default_hostname(&self, app_name: &str) -> String {
        format!("{app_name}.{}", self.settings.domain.trim_matches('.'))
    }

    /// Adds a custom domain and routes it at once. A hostname in use by any app is
    /// `Conflict` ("… is already in use").
    pub fn add_domain(&self, app: &App, hostname: &str, user: &Account) -> Result<Domain> {
        let hostname = validate_hostname(hostname, &self.settings.domain)?;
        // The API's own name served by an app would hand that app every browser's dashboard
        // cookies (cookies do not keep to a port).
        if covers_host(&hostname, &host_of_url(self.api_url())) {
            return Err(Invalid::new(
                "hostname",
                format!("{hostname} is this platform's own API address; an app cannot take it"),
            )
            .into());
        }
        let domain = self.store.add_domain(&app.id, &hostname)?;
        self.publish_domains(&app.id);
        self.api_log(
            &app.id,
            format!("Add {hostname} domain by user {}", user.email),
        );
        if app.acm {
            self.wake_acm();
        }
        Ok(domain)
    }

    /// Removes a custom domain (by id or hostname); the router stops serving it at once.
    pub fn remove_domain(&self, app: &App, id_or_hostname: &str, user: &Account) -> Result<Domain> {
        let domain = self.domain(user, app, id_or_hostname)?;
        let removed = self.store.remove_domain(&app.id, &domain.id)?;
        self.publish_domains(&app.id);
        // An ACM certificate went with the domain.
        self.publish_certificates(&app.id);
        self.api_log(
            &app.id,
            format!("Remove {} domain by user {}", removed.hostname, user.email),
        );
        Ok(removed)
    }

    /// Hands the app's whole set of custom domains to the router.
    pub(crate) fn publish_domains(&self, app_id: &str) {
        match self.store.domains(app_id) {
            Ok(domains) => self
                .routes
                .set_domains(app_id, domains.into_iter().map(|d| d.hostname).collect()),
            Err(e) => {
                tracing::warn!(app = %app_id, error = %e, "could not read the app's domains for the router")
            }
        }
    }
}

fn shown(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apis_own_host_is_not_an_apps_domain() {
        assert_eq!(
            host_of_url("https://Kiln.Example.com:5000/x"),
            "kiln.example.com"
        );
        assert_eq!(
            host_of_url("http://u:p@kiln.example.com"),
            "kiln.example.com"
        );
        assert_eq!(host_of_url("http://[::1]:5000"), "[::1]");
        assert!(covers_host("kiln.example.com", "kiln.example.com"));
        assert!(covers_host("*.example.com", "kiln.example.com"));
        assert!(!covers_host("*.example.com", "a.kiln.example.com"));
        assert!(!covers_host("*.example.com", "example.com"));
        assert!(!covers_host("www.example.com", "kiln.example.com"));
    }

    #[test]
    fn hostnames() {
        let ok = |h: &str| validate_hostname(h, "localhost").unwrap();
        assert_eq!(ok("www.example.com"), "www.example.com");
        assert_eq!(ok(" WWW.Example.COM. "), "www.example.com");
        assert_eq!(ok("*.example.com"), "*.example.com");
        assert_eq!(ok("a-1.b2.example.co.uk"), "a-1.b2.example.co.uk");
        assert_eq!(
            ok(&format!("{}.com", "a".repeat(63))),
            format!("{}.com", "a".repeat(63))
        );
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert_eq!(long.len(), 259);

        for bad in [
            "",
            "localhost",
            "com",
            "*.com",
            "*",
            "www.*.example.com",
            "*example.com",
            "**.example.com",
            "-www.example.com",
            "www-.example.com",
            "www..example.com",
            ".example.com",
            "www_x.example.com",
            "www.example.com/path",
            "http://www.example.com",
            "www.example.com:80",
            "1.2.3.4",
            "[::1]",
            "ex ample.com",
            "exämple.com",
            &format!("{}.com", "a".repeat(64)),
            &long,
            "foo.localhost",
            "LOCALHOST",
            "*.localhost",
            "a.b.localhost",
        ] {
            assert!(
                validate_hostname(bad, "localhost").is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(validate_hostname("myapp.apps.example.com", "apps.example.com").is_err());
        assert!(validate_hostname("apps.example.com", ".Apps.Example.com.").is_err());
        assert!(validate_hostname("www.example.com", "apps.example.com").is_ok());
    }
}
