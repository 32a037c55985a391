//! The records of Kiln's state, as the store keeps them and the platform and its doors read
//! them: accounts, apps, slugs, releases, builds, formation, domains, certificates. Plain
//! data and the rules on their values; how they are stored is `kiln-store`'s business.

use crate::config::ConfigVars;
use crate::procfile::ProcessTypes;
use crate::release::ReleaseStatus;
use crate::{Invalid, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub owner_email: String,
    /// The unprivileged uid (and gid) this app's dynos run as; unique per app.
    pub uid: u32,
    pub stack: String,
    pub maintenance: bool,
    /// Automatic Certificate Management is on (Heroku's `acm`).
    pub acm: bool,
    /// The app's current config vars (the desired state; each release keeps its own snapshot).
    pub config: ConfigVars,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub released_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug {
    pub id: String,
    pub app_id: String,
    /// `SHA256:<hex>` of the compressed tarball; also its name in the slug store.
    pub checksum: String,
    pub size: u64,
    pub process_types: ProcessTypes,
    pub commit: Option<String>,
    pub commit_description: Option<String>,
    pub stack: String,
    pub buildpack_provided_description: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub app_id: String,
    pub version: u32,
    pub description: String,
    pub status: ReleaseStatus,
    /// Why a release failed, shown by `releases`.
    pub status_reason: Option<String>,
    pub slug_id: Option<String>,
    pub config: ConfigVars,
    pub user_id: String,
    pub user_email: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a new release is made of. The store assigns `id` and `version`.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub description: String,
    pub status: ReleaseStatus,
    pub slug_id: Option<String>,
    pub config: ConfigVars,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    Pending,
    Succeeded,
    Failed,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "pending",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub id: String,
    pub app_id: String,
    pub status: BuildStatus,
    /// The git commit (or other source version) built.
    pub source_version: Option<String>,
    /// The whole build output, filled in when the build ends.
    pub output: String,
    pub buildpacks: Vec<String>,
    pub slug_id: Option<String>,
    pub release_id: Option<String>,
    pub user_id: String,
    pub user_email: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormationEntry {
    pub id: String,
    pub app_id: String,
    pub process_type: String,
    pub quantity: u32,
    /// Heroku's size name, e.g. `Standard-1X`.
    pub size: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which slice of the release ledger to read (Heroku's `Range: version a..b; max=n, order=desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseRange {
    pub first: Option<u32>,
    pub last: Option<u32>,
    pub max: u32,
    pub descending: bool,
}

/// A custom domain of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub id: String,
    pub app_id: String,
    /// Lowercase, without a trailing dot; may start with `*.` (a wildcard).
    pub hostname: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where ACM stands for one custom domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmState {
    /// Heroku's words: `pending`, `ok`, `failed`.
    pub status: String,
    /// Why, when it failed; shown as `acm_status_reason`.
    pub reason: Option<String>,
    /// Failed attempts in a row, for the backoff.
    pub failures: u32,
    /// Not before this time (a failure's backoff); `None`: whenever the manager gets to it.
    pub next_attempt_at: Option<Timestamp>,
    /// A new certificate was asked for (`certs:auto:refresh`) even if the one there is good.
    pub refresh: bool,
    pub updated_at: Timestamp,
}

impl AcmState {
    pub fn new(status: &str, reason: Option<String>) -> AcmState {
        AcmState {
            status: status.to_string(),
            reason,
            failures: 0,
            next_attempt_at: None,
            refresh: false,
            updated_at: Timestamp::now(),
        }
    }
}

/// A custom domain of an app and its ACM state (`None`: not looked at yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmDomain {
    pub domain: Domain,
    pub state: Option<AcmState>,
}

/// A certificate uploaded to an app.
#[derive(Clone, PartialEq, Eq)]
pub struct SniEndpoint {
    pub id: String,
    pub app_id: String,
    /// Unique, Heroku's pattern `^[a-z][a-z0-9-]{2,29}$`; usable instead of the id.
    pub name: String,
    pub certificate_chain: String,
    pub private_key: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when ACM issued it: the custom domain it was issued for (see the `acm` module).
    pub acm_domain_id: Option<String>,
}

impl std::fmt::Debug for SniEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key, not even in a debug log.
        f.debug_struct("SniEndpoint")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Heroku's rule for endpoint names.
pub fn validate_sni_endpoint_name(name: &str) -> std::result::Result<(), Invalid> {
    let ok = (3..=30).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "name",
            format!(
                "{name:?} is not a valid SNI endpoint name: 3 to 30 of a-z, 0-9 and -, starting with a letter"
            ),
        ))
    }
}
