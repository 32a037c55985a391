//! The records of Kiln's state, as the store keeps them and the platform and its doors read
//! them: accounts, apps, slugs, releases, builds, formation, domains, certificates. Plain
//! data and the rules on their values; how they are stored is `kiln-store`'s business.
//!
//! Every store backend checks what it is given with the rules here before writing, so the
//! rules are the same whatever the database, and a backend is only its SQL. The bounds keep a
//! hostile or buggy caller from filling the database with one call; the API has its own,
//! usually tighter.

use crate::buildpack::BuildpackRef;
use crate::config::ConfigVars;
use crate::dyno::DynoSize;
use crate::procfile::{ProcessTypes, validate_process_type};
use crate::release::ReleaseStatus;
use crate::{Invalid, Timestamp};

/// The most each kind of text field may hold.
pub mod limits {
    pub const EMAIL: usize = 254;
    /// Names, commit ids, short descriptions.
    pub const SHORT_TEXT: usize = 1024;
    /// Commands, commit messages, reasons.
    pub const LONG_TEXT: usize = 64 * 1024;
    /// Release descriptions name every var a config change touched, so they can outgrow the
    /// 32 kB of the config itself (short names joined by ", "); this is above any valid change.
    pub const RELEASE_DESCRIPTION: usize = 256 * 1024;
    pub const STACK: usize = 64;
    pub const API_KEY: usize = 4096;
    /// The longest DNS name.
    pub const HOSTNAME: usize = 253;
    pub const CERTIFICATE_CHAIN: usize = 100 * 1024;
    pub const PRIVATE_KEY: usize = 16 * 1024;
    pub const ACM_STATUS: usize = 32;
    /// An ACM reason quotes the CA; a longer one is cut, not refused (it is only for reading).
    pub const ACM_REASON: usize = 2048;
}

/// Apps get uids from here up, leaving the range below to the host's own users and services.
pub const FIRST_APP_UID: u32 = 20_000;

/// A value for an error message: long hostile input is cut so the error stays readable.
pub fn shown(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        format!("{:?}…", s.chars().take(MAX).collect::<String>())
    }
}

/// Text a record may hold: at most `max` bytes and no NUL (which some databases cannot store
/// and every C consumer would cut at).
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.len() > max {
        return Err(Invalid::new(
            field,
            format!(
                "{field} is too long ({} bytes; the limit is {max})",
                value.len()
            ),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(field, format!("{field} contains a NUL byte")));
    }
    Ok(())
}

/// An account's email (compared case-insensitively by the store) and name.
pub fn validate_account(email: &str, name: &str) -> Result<(), Invalid> {
    let plausible = !email.is_empty()
        && email.len() <= limits::EMAIL
        && email.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plausible {
        return Err(Invalid::new(
            "email",
            format!("Invalid email address {}", shown(email)),
        ));
    }
    check_text("name", name, limits::SHORT_TEXT)
}

/// An API key as given (only its hash is kept) and the description it is registered with.
pub fn validate_api_key(key: &str, description: &str) -> Result<(), Invalid> {
    if !api_key_has_valid_length(key) {
        return Err(Invalid::new(
            "api_key",
            format!("An API key must be 1 to {} bytes long", limits::API_KEY),
        ));
    }
    check_text("description", description, limits::SHORT_TEXT)
}

/// Whether a presented key could be one at all: a longer one is refused without hashing it.
pub fn api_key_has_valid_length(key: &str) -> bool {
    !key.is_empty() && key.len() <= limits::API_KEY
}

pub fn validate_stack(stack: &str) -> Result<(), Invalid> {
    let ok = !stack.is_empty()
        && stack.len() <= limits::STACK
        && stack
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "stack",
            format!(
                "Invalid stack {}: use letters, digits, '-', '_' or '.'",
                shown(stack)
            ),
        ))
    }
}

/// The ids the store hands out are canonical lowercase UUIDs; ids chosen by callers (slugs)
/// must be too, so that every id looks alike and none can smuggle in path or SQL fragments.
pub fn validate_uuid(field: &'static str, id: &str) -> Result<(), Invalid> {
    let b = id.as_bytes();
    let ok = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                matches!(c, b'0'..=b'9' | b'a'..=b'f')
            }
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("Invalid {field} {}: expected a lowercase UUID", shown(id)),
        ))
    }
}

/// The buildpacks an app or a build names.
pub fn validate_buildpacks(urls: &[String]) -> Result<(), Invalid> {
    for url in urls {
        BuildpackRef::parse(url)?;
    }
    Ok(())
}

impl App {
    /// The uid a new app may get from the store's counter: a uid is never reused, so that a
    /// new app cannot read files a deleted one left behind.
    pub fn usable_uid(counter: i64) -> Option<u32> {
        u32::try_from(counter)
            .ok()
            .filter(|uid| *uid >= FIRST_APP_UID && *uid < u32::MAX)
    }
}

impl Slug {
    /// What the store checks before keeping a slug: the checksum names its file in the slug
    /// store, so it must not be able to name anything else.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_uuid("id", &self.id)?;
        let checksum_ok = self
            .checksum
            .strip_prefix("SHA256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !checksum_ok {
            return Err(Invalid::new(
                "checksum",
                format!(
                    "Invalid slug checksum {}: expected SHA256:<64 hex digits>",
                    shown(&self.checksum)
                ),
            ));
        }
        validate_stack(&self.stack)?;
        for (name, command) in &self.process_types {
            validate_process_type(name)?;
            check_text("process_types", command, limits::LONG_TEXT)?;
        }
        if let Some(commit) = &self.commit {
            check_text("commit", commit, limits::SHORT_TEXT)?;
        }
        if let Some(d) = &self.commit_description {
            check_text("commit_description", d, limits::LONG_TEXT)?;
        }
        if let Some(d) = &self.buildpack_provided_description {
            check_text("buildpack_provided_description", d, limits::SHORT_TEXT)?;
        }
        if i64::try_from(self.size).is_err() {
            return Err(Invalid::new(
                "size",
                format!("Slug size {} is too large", self.size),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    /// A server administrator: manages users and invitations (not other people's apps).
    pub admin: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An API key, as Heroku's OAuth authorization. Only the token's SHA-256 is stored; the
/// token itself is shown once, when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub id: String,
    pub account_id: String,
    pub description: String,
    pub scope: Vec<String>,
    /// The token's last characters, so a listing can show which token it is, redacted.
    pub token_hint: String,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Authorization {
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t.0 <= now.0)
    }
}

/// The team that owns a team app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    pub team_id: String,
    pub account_id: String,
    pub email: String,
    pub role: crate::access::TeamRole,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user given permissions on an app they do not own (Heroku's collaborator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collaborator {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub account_id: String,
    pub email: String,
    pub permissions: crate::access::Permissions,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What the store knows about one user and one app, for the authorization module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessFacts {
    /// The app exists, is personal, and this user owns it.
    pub owner: bool,
    /// The app belongs to a team; the user's role in it, if a member.
    pub team: Option<Option<crate::access::TeamRole>>,
    /// What the user was granted as a collaborator, if anything.
    pub granted: Option<crate::access::Permissions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    Pending,
    Accepted,
    Declined,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Pending => "pending",
            TransferState::Accepted => "accepted",
            TransferState::Declined => "declined",
        }
    }
    pub fn parse(s: &str) -> Option<TransferState> {
        match s {
            "pending" => Some(TransferState::Pending),
            "accepted" => Some(TransferState::Accepted),
            "declined" => Some(TransferState::Declined),
            _ => None,
        }
    }
}

/// An app offered to another user, pending until they accept (Heroku's app transfer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTransfer {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub owner_id: String,
    pub owner_email: String,
    pub recipient_id: String,
    pub recipient_email: String,
    pub state: TransferState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One line of an app's audit log: who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub email: String,
    pub action: String,
    pub created_at: Timestamp,
}

/// An invitation to make an account, bound to one email address. Only its token's SHA-256
/// is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: String,
    pub email: String,
    pub invited_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub accepted_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub name: String,
    /// The account that owns a personal app. For a team app, the account that created it or
    /// moved it into the team (kept for the record: the team owns it).
    pub owner_id: String,
    pub owner_email: String,
    /// The team that owns the app, when it is a team app.
    pub team: Option<TeamRef>,
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
    /// The plans of the add-ons attached when the release was made (`heroku-redis:mini`).
    pub addon_plan_names: Vec<String>,
    /// Whether its release phase ran and its output is kept (`releases:output`).
    pub has_output: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a new release is made of. The store assigns `id` and `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    pub description: String,
    pub status: ReleaseStatus,
    pub slug_id: Option<String>,
    pub config: ConfigVars,
    pub user_id: String,
}

impl NewRelease {
    /// Every release obeys the same rules, however it was made: config vars that do not come
    /// through a PATCH (a rollback's) are checked as if they did.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_text(
            "description",
            &self.description,
            limits::RELEASE_DESCRIPTION,
        )?;
        let patch = self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        crate::config::apply_patch(&ConfigVars::new(), &patch).map(|_| ())
    }
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

    pub fn parse(s: &str) -> Option<BuildStatus> {
        match s {
            "pending" => Some(BuildStatus::Pending),
            "succeeded" => Some(BuildStatus::Succeeded),
            "failed" => Some(BuildStatus::Failed),
            _ => None,
        }
    }
}

/// A build starts pending (with the source version it builds) and ends once.
pub fn validate_new_build(
    source_version: Option<&str>,
    buildpacks: &[String],
) -> Result<(), Invalid> {
    if let Some(v) = source_version {
        check_text("source_version", v, limits::SHORT_TEXT)?;
    }
    validate_buildpacks(buildpacks)
}

/// How a build ends: succeeded or failed, never pending again.
pub fn validate_build_end(status: BuildStatus) -> Result<(), Invalid> {
    if status == BuildStatus::Pending {
        return Err(Invalid::new(
            "status",
            "A build ends as succeeded or failed, not pending",
        ));
    }
    Ok(())
}

/// The line a build interrupted by a crash gets at the end of its output: on a line of its
/// own, whatever the output ended with.
pub fn interrupted_build_line(reason: &str) -> Result<String, Invalid> {
    check_text("reason", reason, limits::LONG_TEXT)?;
    Ok(format!("{}\n", reason.trim_end_matches('\n')))
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

impl FormationEntry {
    /// The size an entry gets when nobody asked for one (Heroku's default).
    pub fn default_size() -> &'static str {
        DynoSize::default().name()
    }
}

/// One process type's change in a scale: a new quantity, a new size, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormationUpdate {
    pub process_type: String,
    pub quantity: Option<u32>,
    /// Heroku's spelling, whatever form the caller used ("1x", "standard-1x").
    pub size: Option<&'static str>,
}

impl FormationUpdate {
    /// Checks a scale's changes before anything is written (a scale of several types is all
    /// or nothing), putting sizes in Heroku's spelling.
    pub fn parse_all(
        updates: &[(String, Option<u32>, Option<String>)],
    ) -> Result<Vec<FormationUpdate>, Invalid> {
        updates
            .iter()
            .map(|(process_type, quantity, size)| {
                validate_process_type(process_type)?;
                let size = size
                    .as_deref()
                    .map(DynoSize::parse)
                    .transpose()?
                    .map(DynoSize::name);
                Ok(FormationUpdate {
                    process_type: process_type.clone(),
                    quantity: *quantity,
                    size,
                })
            })
            .collect()
    }

    pub fn changes_anything(&self) -> bool {
        self.quantity.is_some() || self.size.is_some()
    }
}

/// Which slice of the release ledger to read (Heroku's `Range: version a..b; max=n, order=desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseRange {
    pub first: Option<u32>,
    pub last: Option<u32>,
    pub max: u32,
    pub descending: bool,
}

/// A scheduled job of an app (`kiln schedules:add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    /// As the user wrote it (`every 10 minutes`); checked when added.
    pub expression: String,
    pub command: String,
    /// Start a run even while the previous one still runs.
    pub allow_overlap: bool,
    /// Who added it: its runs are theirs.
    pub user_id: String,
    pub user_email: String,
    /// Unix seconds.
    pub next_run_at: i64,
    pub last_run_at: Option<i64>,
    pub created_at: Timestamp,
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

impl Domain {
    /// What the store keeps: lowercase printable ASCII of DNS length (that it is a valid DNS
    /// name is checked by the platform, which knows the rules of hostnames).
    pub fn validate_hostname(hostname: &str) -> Result<(), Invalid> {
        if hostname.is_empty()
            || hostname.len() > limits::HOSTNAME
            || hostname
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b.is_ascii_uppercase())
        {
            return Err(Invalid::new(
                "hostname",
                format!(
                    "{} is not a lowercase hostname of at most {} characters",
                    shown(hostname),
                    limits::HOSTNAME
                ),
            ));
        }
        Ok(())
    }
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
    /// The state as it may be kept: a short status word, and a reason cut to
    /// [`limits::ACM_REASON`] (a reason is only for reading, so it is cut rather than refused).
    pub fn checked(&self) -> Result<AcmState, Invalid> {
        if self.status.is_empty() || self.status.len() > limits::ACM_STATUS {
            return Err(Invalid::new("acm_status", "an ACM status is a short word"));
        }
        let reason = self.reason.as_ref().map(|r| {
            if r.len() > limits::ACM_REASON {
                format!(
                    "{}…",
                    r.chars().take(limits::ACM_REASON / 4).collect::<String>()
                )
            } else {
                r.clone()
            }
        });
        Ok(AcmState {
            reason,
            ..self.clone()
        })
    }

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

impl SniEndpoint {
    /// The bounds on what an endpoint holds (that the PEM parses and the key matches is the
    /// platform's check, made before anything is written).
    pub fn validate_pem(certificate_chain: &str, private_key: &str) -> Result<(), Invalid> {
        if certificate_chain.len() > limits::CERTIFICATE_CHAIN {
            return Err(Invalid::new(
                "certificate_chain",
                "The certificate chain is too large",
            ));
        }
        if private_key.len() > limits::PRIVATE_KEY {
            return Err(Invalid::new("private_key", "The private key is too large"));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slug() -> Slug {
        Slug {
            id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            app_id: "a".into(),
            checksum: format!("SHA256:{}", "a".repeat(64)),
            size: 10,
            process_types: [("web".to_string(), "./server".to_string())].into(),
            commit: Some("abc".into()),
            commit_description: None,
            stack: "heroku-24".into(),
            buildpack_provided_description: Some("Go".into()),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn hostile_record_values_are_refused() {
        assert!(slug().validate().is_ok());
        let bad = |f: fn(&mut Slug)| {
            let mut s = slug();
            f(&mut s);
            s.validate().unwrap_err().field
        };
        assert_eq!(
            bad(|s| s.id = "0F8FAD5B-D9CB-469F-A165-70867728950E".into()),
            "id"
        );
        assert_eq!(bad(|s| s.id = "../../etc/passwd".into()), "id");
        assert_eq!(
            bad(|s| s.id = "0f8fad5bd9cb469fa16570867728950e".into()),
            "id"
        );
        assert_eq!(bad(|s| s.checksum = "SHA256:../../x".into()), "checksum");
        assert_eq!(
            bad(|s| s.checksum = format!("MD5:{}", "a".repeat(64))),
            "checksum"
        );
        assert_eq!(bad(|s| s.stack = "heroku 24".into()), "stack");
        assert_eq!(bad(|s| s.stack = String::new()), "stack");
        assert_eq!(
            bad(|s| {
                s.process_types.insert("Bad Type".into(), "x".into());
            }),
            "type"
        );
        assert_eq!(
            bad(|s| {
                s.process_types
                    .insert("web".into(), "x".repeat(limits::LONG_TEXT + 1));
            }),
            "process_types"
        );
        assert_eq!(bad(|s| s.commit = Some("a\0b".into())), "commit");
        assert_eq!(bad(|s| s.size = u64::MAX), "size");

        assert!(validate_account("bob@example.com", "Bob").is_ok());
        for email in [
            "",
            "bob",
            "bob @x",
            "bob@x\n",
            &format!("{}@x", "a".repeat(300)),
        ] {
            assert_eq!(
                validate_account(email, "Bob").unwrap_err().field,
                "email",
                "{email:?}"
            );
        }
        assert_eq!(
            validate_account("b@x", &"n".repeat(limits::SHORT_TEXT + 1))
                .unwrap_err()
                .field,
            "name"
        );
        assert!(validate_api_key("k", "d").is_ok());
        assert_eq!(validate_api_key("", "d").unwrap_err().field, "api_key");
        assert_eq!(
            validate_api_key(&"k".repeat(limits::API_KEY + 1), "d")
                .unwrap_err()
                .field,
            "api_key"
        );
        assert!(validate_uuid("id", "0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(validate_uuid("id", "0f8fad5b-d9cb-469f-a165-70867728950").is_err());
        assert!(validate_uuid("id", "0f8fad5b-d9cb-469f-a165-70867728950ee").is_err());
        assert!(validate_uuid("id", "0f8fad5b+d9cb-469f-a165-70867728950e").is_err());
        // Error messages quote hostile input, cut short.
        let long = "x".repeat(10_000);
        assert!(validate_stack(&long).unwrap_err().message.len() < 200);

        assert!(Domain::validate_hostname("www.example.com").is_ok());
        for h in ["", "WWW.example.com", "a b", &"a".repeat(254)] {
            assert!(Domain::validate_hostname(h).is_err(), "{h:?}");
        }
        assert!(
            SniEndpoint::validate_pem(&"c".repeat(limits::CERTIFICATE_CHAIN + 1), "k").is_err()
        );
        assert!(SniEndpoint::validate_pem("c", &"k".repeat(limits::PRIVATE_KEY + 1)).is_err());
        let state = AcmState::new("failed", Some("é".repeat(limits::ACM_REASON)));
        let kept = state.checked().unwrap();
        assert!(kept.reason.unwrap().len() <= limits::ACM_REASON + 4);
        assert!(AcmState::new("", None).checked().is_err());
        assert!(AcmState::new(&"s".repeat(33), None).checked().is_err());
    }

    #[test]
    fn builds_formation_and_uids_follow_their_rules() {
        assert!(validate_build_end(BuildStatus::Pending).is_err());
        assert!(validate_build_end(BuildStatus::Failed).is_ok());
        assert!(validate_new_build(Some(&"v".repeat(limits::SHORT_TEXT + 1)), &[]).is_err());
        assert!(validate_new_build(None, &["not a buildpack url\n".into()]).is_err());
        assert_eq!(
            interrupted_build_line("Kiln restarted\n\n").unwrap(),
            "Kiln restarted\n"
        );
        for s in ["pending", "succeeded", "failed"] {
            assert_eq!(BuildStatus::parse(s).map(BuildStatus::as_str), Some(s));
        }
        assert_eq!(BuildStatus::parse("PENDING"), None);

        let updates = FormationUpdate::parse_all(&[
            ("web".into(), Some(2), Some("1x".into())),
            ("worker".into(), None, None),
        ])
        .unwrap();
        assert_eq!(
            updates[0],
            FormationUpdate {
                process_type: "web".into(),
                quantity: Some(2),
                size: Some("Standard-1X")
            }
        );
        assert!(!updates[1].changes_anything());
        assert!(
            FormationUpdate::parse_all(&[("web".into(), Some(1), Some("huge".into()))]).is_err()
        );
        assert!(FormationUpdate::parse_all(&[("../web".into(), Some(1), None)]).is_err());
        assert_eq!(FormationEntry::default_size(), "Standard-1X");

        assert_eq!(App::usable_uid(20_000), Some(20_000));
        assert_eq!(App::usable_uid(19_999), None);
        assert_eq!(App::usable_uid(i64::from(u32::MAX)), None);
        assert_eq!(App::usable_uid(-1), None);
    }
}

/// A provisioned add-on: one resource (a database, a Redis) owned by one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addon {
    pub id: String,
    /// `postgresql-concave-52656`: unique on the server.
    pub name: String,
    /// The owning (billing) app.
    pub app_id: String,
    pub app_name: String,
    /// `heroku-postgresql`.
    pub service: String,
    /// `essential-0`.
    pub plan: String,
    pub state: crate::addon::AddonState,
    /// What the provider gave, without an attachment's prefix (`URL` → …).
    pub config: std::collections::BTreeMap<String, String>,
    pub provision_message: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An add-on made visible to an app under a name; the app's config gets `<name>_<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonAttachment {
    pub id: String,
    /// `DATABASE`.
    pub name: String,
    pub addon_id: String,
    pub addon_name: String,
    /// The add-on's owning app.
    pub addon_app_id: String,
    pub addon_app_name: String,
    pub addon_service: String,
    pub addon_plan: String,
    /// The app it is attached to.
    pub app_id: String,
    pub app_name: String,
    pub namespace: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What the platform asks the store to record once a provider has made an add-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAddon {
    pub id: String,
    pub name: String,
    pub app_id: String,
    pub service: String,
    pub plan: String,
    pub config: std::collections::BTreeMap<String, String>,
    pub provision_message: String,
}

impl NewAddon {
    pub fn validate(&self) -> Result<(), Invalid> {
        crate::addon::validate_addon_name(&self.name)?;
        let plan = crate::addon::PlanRef::parse(&format!("{}:{}", self.service, self.plan))?;
        for (k, v) in &self.config {
            if !plan.service.config_keys.contains(&k.as_str()) {
                return Err(Invalid::new(
                    "config",
                    format!("{} gives no config var {}", plan.service.name, shown(k)),
                ));
            }
            check_text("config", v, limits::SHORT_TEXT)?;
        }
        check_text(
            "provision_message",
            &self.provision_message,
            limits::LONG_TEXT,
        )
    }
}

/// A PostgreSQL backup or restore: Heroku's "transfer", a job with a visible state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: String,
    /// Per app, from 1: `b001` (manual), `a002` (scheduled), `r003` (restore), `f004` (final).
    pub num: u32,
    pub kind: TransferKind,
    pub app_id: String,
    pub app_name: String,
    /// The add-on, by name (the record outlives it: a final backup is kept for 7 days).
    pub addon_id: String,
    pub addon_name: String,
    /// Where the dump is (backups) or comes from (restores).
    pub path: String,
    pub status: TransferStatus,
    pub error: Option<String>,
    pub bytes: u64,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// When it is removed on its own (final backups).
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Manual,
    Scheduled,
    Restore,
    Final,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Manual => "manual",
            TransferKind::Scheduled => "scheduled",
            TransferKind::Restore => "restore",
            TransferKind::Final => "final",
        }
    }
    pub fn parse(s: &str) -> Option<TransferKind> {
        [
            TransferKind::Manual,
            TransferKind::Scheduled,
            TransferKind::Restore,
            TransferKind::Final,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
    /// The letter of its display name (`b001`).
    pub fn letter(self) -> char {
        match self {
            TransferKind::Manual => 'b',
            TransferKind::Scheduled => 'a',
            TransferKind::Restore => 'r',
            TransferKind::Final => 'f',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Running => "running",
            TransferStatus::Succeeded => "succeeded",
            TransferStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<TransferStatus> {
        [
            TransferStatus::Pending,
            TransferStatus::Running,
            TransferStatus::Succeeded,
            TransferStatus::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl Transfer {
    /// `b001`.
    pub fn display_name(&self) -> String {
        format!("{}{:03}", self.kind.letter(), self.num)
    }

    /// Parses `b001`/`a12`/`1` into a number.
    pub fn parse_name(name: &str) -> Option<u32> {
        let digits = name.trim_start_matches(['a', 'b', 'r', 'f']);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
            return None;
        }
        digits.parse().ok()
    }
}

/// A daily backup schedule of one add-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub id: String,
    pub addon_id: String,
    pub app_id: String,
    /// The attachment's config var the schedule names (`DATABASE_URL`), as Heroku does.
    pub name: String,
    /// 0–23, UTC.
    pub hour: u8,
    pub created_at: Timestamp,
}
