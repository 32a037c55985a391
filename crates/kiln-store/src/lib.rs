//! Persistence behind the [`Store`] trait.
//!
//! The store holds desired state (apps, config, releases, formation); controllers converge the
//! running system towards it. The trait is synchronous and coarse-grained: each method is one
//! transaction, so the rules that span rows (a config change appends exactly one release, the
//! next release version is one more than the last) hold under concurrency and crashes. SQLite
//! (WAL) is the embedded default; a PostgreSQL implementation can sit behind the same trait.

mod sqlite;

pub use kiln_model::records::{
    AcmDomain, AcmState, Addon, AddonAttachment, BackupSchedule, Domain, NewAddon, SniEndpoint,
    Transfer, TransferKind, TransferStatus, validate_sni_endpoint_name,
};
pub use sqlite::{MasterKey, SqliteStore};

use kiln_model::Invalid;
use kiln_model::config::ConfigVars;
use kiln_model::release::ReleaseStatus;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("database error: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

use kiln_model::Timestamp;
use kiln_model::access::{Permissions, TeamRole};
pub use kiln_model::records::{
    AccessFacts, Account, App, AppTransfer, AuditEntry, Authorization, Build, BuildStatus,
    Collaborator, FormationEntry, Invitation, NewRelease, Release, ReleaseRange, Slug, Team,
    TeamMember, TransferState,
};

pub trait Store: Send + Sync {
    // --- accounts and API keys ---

    /// Returns the account with this email, creating it if missing.
    fn ensure_account(&self, email: &str, name: &str) -> Result<Account>;
    /// Registers an API key for an account. Only a SHA-256 of the key is stored.
    fn add_api_key(&self, account_id: &str, key: &str, description: &str) -> Result<()>;
    /// The account and authorization an API key belongs to, if any (expired ones too).
    fn account_by_api_key(&self, key: &str) -> Result<Option<(Account, Authorization)>>;
    fn account(&self, id: &str) -> Result<Account>;
    /// By email (case-insensitively) or id.
    fn find_account(&self, email_or_id: &str) -> Result<Option<Account>>;
    fn accounts(&self) -> Result<Vec<Account>>;
    /// A new account; `Conflict` if the email is taken. The hash is the platform's (argon2).
    fn create_account(
        &self,
        email: &str,
        name: &str,
        password_hash: Option<&str>,
        admin: bool,
    ) -> Result<Account>;
    fn set_admin(&self, account_id: &str, admin: bool) -> Result<Account>;
    fn password_hash(&self, account_id: &str) -> Result<Option<String>>;
    /// Sets the password hash and deletes every authorization of the account.
    fn set_password(&self, account_id: &str, hash: &str) -> Result<()>;

    // --- authorizations (API keys) ---

    fn create_authorization(
        &self,
        account_id: &str,
        token: &str,
        description: &str,
        scope: &[String],
        expires_at: Option<Timestamp>,
    ) -> Result<Authorization>;
    fn authorizations(&self, account_id: &str) -> Result<Vec<Authorization>>;
    /// One of the account's authorizations (another account's is `NotFound`).
    fn authorization(&self, account_id: &str, id: &str) -> Result<Authorization>;
    fn update_authorization(
        &self,
        account_id: &str,
        id: &str,
        description: &str,
    ) -> Result<Authorization>;
    fn delete_authorization(&self, account_id: &str, id: &str) -> Result<Authorization>;
    fn regenerate_authorization(
        &self,
        account_id: &str,
        id: &str,
        token: &str,
    ) -> Result<Authorization>;

    // --- invitations ---

    fn create_invitation(
        &self,
        email: &str,
        token: &str,
        invited_by: &str,
        expires_at: Timestamp,
    ) -> Result<Invitation>;
    fn invitation_by_token(&self, token: &str) -> Result<Option<Invitation>>;
    /// Makes the invitation's account (with the invitation's email), once.
    fn accept_invitation(&self, id: &str, name: &str, password_hash: &str) -> Result<Account>;

    // --- access: teams, collaborators, transfers, audit ---

    /// What the authorization module needs about a user and an app (empty for a missing app).
    fn access_facts(&self, app: &str, account_id: &str) -> Result<AccessFacts>;
    fn create_team(&self, name: &str, creator_id: &str) -> Result<Team>;
    fn team(&self, id_or_name: &str) -> Result<Team>;
    fn teams_of(&self, account_id: &str) -> Result<Vec<(Team, TeamRole)>>;
    fn team_members(&self, team_id: &str) -> Result<Vec<TeamMember>>;
    fn team_member(&self, team_id: &str, account_id: &str) -> Result<Option<TeamMember>>;
    fn set_team_member(
        &self,
        team_id: &str,
        account_id: &str,
        role: TeamRole,
    ) -> Result<TeamMember>;
    fn remove_team_member(&self, team_id: &str, account_id: &str) -> Result<TeamMember>;
    fn team_apps(&self, team_id: &str) -> Result<Vec<(App, Option<Slug>)>>;
    fn collaborators(&self, app: &str) -> Result<Vec<Collaborator>>;
    fn set_collaborator(
        &self,
        app: &str,
        account_id: &str,
        permissions: Permissions,
        update: bool,
    ) -> Result<Collaborator>;
    fn remove_collaborator(&self, app: &str, account_id: &str) -> Result<Collaborator>;
    /// Gives the app to a person (`team_id` None) or a team, at once.
    fn move_app(&self, app: &str, owner_id: &str, team_id: Option<&str>) -> Result<App>;
    fn create_app_transfer(
        &self,
        app: &str,
        owner_id: &str,
        recipient_id: &str,
    ) -> Result<AppTransfer>;
    /// By id, or the pending transfer of an app named so.
    fn app_transfer(&self, id_or_app: &str) -> Result<AppTransfer>;
    fn app_transfers_of(&self, account_id: &str) -> Result<Vec<AppTransfer>>;
    fn settle_app_transfer(&self, id: &str, state: TransferState) -> Result<AppTransfer>;
    fn audit(
        &self,
        app_id: &str,
        account_id: Option<&str>,
        email: &str,
        action: &str,
    ) -> Result<()>;
    /// The app's latest `limit` audit entries, oldest first.
    fn audit_log(&self, app: &str, limit: u32) -> Result<Vec<AuditEntry>>;

    // --- apps ---

    /// Creates an app with the initial config and appends release v1 ("Initial release").
    /// Fails with `Conflict` if the name is taken.
    fn create_app(&self, name: &str, owner_id: &str, stack: &str) -> Result<(App, Release)> {
        self.create_app_in(name, owner_id, None, stack)
    }
    /// As [`Store::create_app`], owned by a team when `team_id` is given.
    fn create_app_in(
        &self,
        name: &str,
        owner_id: &str,
        team_id: Option<&str>,
        stack: &str,
    ) -> Result<(App, Release)>;
    /// Looks an app up by id or name.
    fn app(&self, id_or_name: &str) -> Result<App>;
    fn apps(&self) -> Result<Vec<App>>;
    /// The apps `owner_id` may see (owns, collaborates on, or its teams own), by name, each with the slug of its current release: what a
    /// listing shows, read in a fixed number of queries however many apps there are.
    fn apps_of(&self, owner_id: &str) -> Result<Vec<(App, Option<Slug>)>>;
    fn set_maintenance(&self, app_id: &str, on: bool) -> Result<App>;
    /// Sets the app's current config vars without a release: used to put back the config of
    /// the running release when a config change's release failed.
    fn restore_config(&self, app_id: &str, config: &ConfigVars) -> Result<App>;
    /// Marks every pending release failed with `reason` (used at startup: a deploy that a
    /// crash interrupted did not go live). Returns (app id, version) of each.
    fn fail_pending_releases(&self, reason: &str) -> Result<Vec<(String, u32)>>;
    /// Deletes the app and everything it owns (releases, builds, slugs rows, formation).
    fn delete_app(&self, app_id: &str) -> Result<()>;
    /// Renames an app; the name must be valid and free.
    fn rename_app(&self, app_id: &str, new_name: &str) -> Result<App>;

    // --- config and releases (the ledger) ---

    /// Applies a config PATCH and, if anything changed, appends one release (same slug as the
    /// newest release, new config) in the same transaction. The release is `pending` when it
    /// has a slug (the platform then deploys it), `succeeded` when there is no code yet. Returns the new config and the
    /// release, or `None` when the patch changed nothing.
    fn update_config(
        &self,
        app_id: &str,
        patch: &BTreeMap<String, Option<String>>,
        user_id: &str,
    ) -> Result<(ConfigVars, Option<Release>)>;
    /// Appends a release; the version is one more than the newest. Also sets the app's current
    /// config to the release's config and its `released_at`.
    fn append_release(&self, app_id: &str, release: NewRelease) -> Result<Release>;
    /// Moves a pending release to succeeded or failed; anything else is refused.
    fn set_release_status(
        &self,
        release_id: &str,
        status: ReleaseStatus,
        reason: Option<&str>,
    ) -> Result<Release>;
    /// A release by id or by version number (`"3"` or `"v3"`).
    fn release(&self, app_id: &str, id_or_version: &str) -> Result<Release>;
    fn releases(&self, app_id: &str, range: ReleaseRange) -> Result<Vec<Release>>;
    /// The newest release whose status is `succeeded`: what should be running.
    fn current_release(&self, app_id: &str) -> Result<Option<Release>>;
    /// Keeps the output of a release's release phase (replacing what was kept).
    fn set_release_output(&self, release_id: &str, output: &str) -> Result<()>;
    /// The output of a release's release phase, if it had one.
    fn release_output(&self, release_id: &str) -> Result<Option<String>>;

    // --- slugs and builds ---

    fn insert_slug(&self, slug: &Slug) -> Result<()>;
    fn slug(&self, slug_id: &str) -> Result<Slug>;
    fn create_build(
        &self,
        app_id: &str,
        user_id: &str,
        source_version: Option<&str>,
        buildpacks: &[String],
    ) -> Result<Build>;
    /// Ends a build: status, full output, and the slug/release it produced.
    fn finish_build(
        &self,
        build_id: &str,
        status: BuildStatus,
        output: &str,
        slug_id: Option<&str>,
        release_id: Option<&str>,
    ) -> Result<Build>;
    fn build(&self, app_id: &str, build_id: &str) -> Result<Build>;
    /// A build found by its id alone (`GET /builds/{id}`), with one lookup.
    fn build_by_id(&self, build_id: &str) -> Result<Build>;
    /// Builds, newest first.
    fn builds(&self, app_id: &str) -> Result<Vec<Build>>;
    /// The newest `limit` builds, newest first, with their output left empty.
    fn recent_builds(&self, app_id: &str, limit: u32) -> Result<Vec<Build>>;
    /// Marks every pending build failed (used at startup: a build interrupted by a crash).
    fn fail_pending_builds(&self, reason: &str) -> Result<usize>;

    // --- formation ---

    fn formation(&self, app_id: &str) -> Result<Vec<FormationEntry>>;
    /// Makes sure each process type has a formation entry, creating missing ones with the
    /// given initial quantity. Existing entries are left alone.
    fn ensure_formation(
        &self,
        app_id: &str,
        initial: &BTreeMap<String, u32>,
    ) -> Result<Vec<FormationEntry>>;
    /// Sets quantities and/or sizes of existing entries in one transaction; `NotFound` if a
    /// type has no entry (nothing is changed then).
    fn update_formation(
        &self,
        app_id: &str,
        updates: &[(String, Option<u32>, Option<String>)],
    ) -> Result<Vec<FormationEntry>>;

    // --- buildpacks ---

    fn buildpacks(&self, app_id: &str) -> Result<Vec<String>>;
    fn set_buildpacks(&self, app_id: &str, urls: &[String]) -> Result<()>;

    // --- SNI endpoints (uploaded TLS certificates; see the `sni` module) ---

    /// The app's certificates, oldest first.
    fn sni_endpoints(&self, app_id: &str) -> Result<Vec<SniEndpoint>>;
    /// Every app's certificates, to publish to the router at start.
    fn all_sni_endpoints(&self) -> Result<Vec<SniEndpoint>>;
    /// One of the app's certificates, by id or name.
    fn sni_endpoint(&self, app_id: &str, id_or_name: &str) -> Result<SniEndpoint>;
    /// Adds a certificate under a new unique name (`Conflict` if taken).
    fn create_sni_endpoint(
        &self,
        app_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<SniEndpoint>;
    /// Replaces a certificate's chain and key; id and name stay.
    fn update_sni_endpoint(
        &self,
        app_id: &str,
        id_or_name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<SniEndpoint>;
    /// Removes a certificate and returns what it was.
    fn delete_sni_endpoint(&self, app_id: &str, id_or_name: &str) -> Result<SniEndpoint>;

    // --- custom domains (see the `domains` module) ---

    /// The app's custom domains, oldest first.
    fn domains(&self, app_id: &str) -> Result<Vec<Domain>>;
    /// One of the app's custom domains, by id or hostname.
    fn domain(&self, app_id: &str, id_or_hostname: &str) -> Result<Domain>;
    /// Adds a custom domain (a lowercase hostname); `Conflict` if any app has it already.
    fn add_domain(&self, app_id: &str, hostname: &str) -> Result<Domain>;
    /// Removes one of the app's custom domains and returns what it was.
    fn remove_domain(&self, app_id: &str, id_or_hostname: &str) -> Result<Domain>;

    /// An app's log drains, oldest first.
    fn drains(&self, app_id: &str) -> Result<Vec<kiln_model::drain::LogDrain>>;
    /// Every app's drains (to start them when the server starts).
    fn all_drains(&self) -> Result<Vec<kiln_model::drain::LogDrain>>;
    /// A drain by id, token or URL.
    fn drain(&self, app_id: &str, identity: &str) -> Result<kiln_model::drain::LogDrain>;
    /// Adds a drain; its URL must already be checked. Conflict: the app has it, or has the
    /// most it may have.
    fn add_drain(
        &self,
        app_id: &str,
        url: &str,
        addon_id: Option<&str>,
    ) -> Result<kiln_model::drain::LogDrain>;
    fn remove_drain(&self, app_id: &str, identity: &str) -> Result<kiln_model::drain::LogDrain>;

    /// The features switched on for an app (labs), by name, sorted.
    fn app_features(&self, app_id: &str) -> Result<Vec<String>>;
    /// Switches an app feature on or off; `true` if that changed anything.
    fn set_app_feature(&self, app_id: &str, name: &str, on: bool) -> Result<bool>;

    // --- Scheduled jobs (see the `schedules` module) ---

    /// Adds a job; refused past the per-app limit.
    fn add_schedule(
        &self,
        app_id: &str,
        account_id: &str,
        expression: &str,
        command: &str,
        allow_overlap: bool,
        next_run_at: i64,
    ) -> Result<kiln_model::records::ScheduledJob>;
    fn schedules(&self, app_id: &str) -> Result<Vec<kiln_model::records::ScheduledJob>>;
    fn schedule(&self, app_id: &str, id: &str) -> Result<kiln_model::records::ScheduledJob>;
    fn remove_schedule(&self, app_id: &str, id: &str) -> Result<kiln_model::records::ScheduledJob>;
    /// Removes every job of the app (its scheduler add-on is gone); how many there were.
    fn remove_schedules(&self, app_id: &str) -> Result<usize>;
    /// Jobs due at `now` (Unix seconds), soonest first.
    fn due_schedules(&self, now: i64) -> Result<Vec<kiln_model::records::ScheduledJob>>;
    /// Records a run (`ran_at`) or a skipped one (`None`), and the job's next run.
    fn schedule_advanced(&self, id: &str, ran_at: Option<i64>, next_run_at: i64) -> Result<()>;

    /// Whether and when the app sleeps (`ps:autosleep`); the default if never set.
    fn app_sleep(&self, app_id: &str) -> Result<kiln_model::sleep::SleepSetting>;
    fn set_app_sleep(&self, app_id: &str, s: &kiln_model::sleep::SleepSetting) -> Result<()>;

    // --- Automatic Certificate Management (see the `acm` module) ---

    /// Turns ACM on or off; off also removes the app's ACM certificates and states.
    fn set_acm(&self, app_id: &str, on: bool) -> Result<App>;
    /// The ids of the apps with ACM on.
    fn acm_apps(&self) -> Result<Vec<String>>;
    /// The app's custom domains with their ACM states, oldest first.
    fn acm_domains(&self, app_id: &str) -> Result<Vec<AcmDomain>>;
    /// Records a domain's ACM state (`NotFound` if the domain is gone).
    fn set_acm_state(&self, domain_id: &str, state: &AcmState) -> Result<()>;
    /// Marks every domain of the app for a new certificate (`certs:auto:refresh`).
    fn request_acm_refresh(&self, app_id: &str) -> Result<()>;
    /// Stores the certificate issued for a domain, replacing the one before (a new
    /// endpoint is named `name`; `Conflict` if that name is taken).
    fn put_acm_certificate(
        &self,
        domain_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<SniEndpoint>;

    // --- add-ons (see the `addons` module) ---

    /// An add-on by id or name.
    fn addon(&self, id_or_name: &str) -> Result<Addon>;
    /// Every add-on on the server (to start their services after a restart).
    fn all_addons(&self) -> Result<Vec<Addon>>;
    /// The add-ons an app owns.
    fn app_addons(&self, app_id: &str) -> Result<Vec<Addon>>;
    /// The add-ons of the apps an account owns.
    fn account_addons(&self, account_id: &str) -> Result<Vec<Addon>>;
    fn app_attachments(&self, app_id: &str) -> Result<Vec<AddonAttachment>>;
    fn addon_attachments(&self, addon_id: &str) -> Result<Vec<AddonAttachment>>;
    /// Attachments on, or of, the apps an account owns.
    fn account_attachments(&self, account_id: &str) -> Result<Vec<AddonAttachment>>;
    fn attachment(&self, id: &str) -> Result<AddonAttachment>;
    /// Records a provisioned add-on attached to its app as `attachment_name`, and the
    /// release that gives the app its config vars.
    fn create_addon(
        &self,
        addon: &NewAddon,
        attachment_name: &str,
        user_id: &str,
    ) -> Result<(Addon, AddonAttachment, Release)>;
    fn attach_addon(
        &self,
        addon_id: &str,
        app_id: &str,
        name: &str,
        namespace: Option<&str>,
        user_id: &str,
    ) -> Result<(AddonAttachment, Release)>;
    fn detach_addon(
        &self,
        attachment_id: &str,
        user_id: &str,
    ) -> Result<(AddonAttachment, Release)>;
    /// Detaches an add-on everywhere (a release per app) and deletes its record.
    fn destroy_addon(&self, addon_id: &str, user_id: &str) -> Result<(Addon, Vec<Release>)>;
    fn change_addon_plan(
        &self,
        addon_id: &str,
        plan: &str,
        config: &BTreeMap<String, String>,
        message: &str,
        user_id: &str,
    ) -> Result<(Addon, Vec<Release>)>;
    /// Records an add-on's new credentials, with a release per app it is attached to.
    fn rotate_addon_config(
        &self,
        addon_id: &str,
        config: &BTreeMap<String, String>,
        user_id: &str,
    ) -> Result<(Addon, Vec<Release>)>;

    // --- PostgreSQL backups (see the `backups` module) ---

    /// Records a new backup or restore of `addon`, numbered after the app's last.
    fn create_transfer(
        &self,
        addon: &Addon,
        kind: TransferKind,
        path: &str,
        expires_at: Option<kiln_model::Timestamp>,
    ) -> Result<Transfer>;
    fn transfer(&self, id: &str) -> Result<Transfer>;
    fn transfer_by_num(&self, app_id: &str, num: u32) -> Result<Transfer>;
    /// The app's transfers, newest first.
    fn transfers(&self, app_id: &str) -> Result<Vec<Transfer>>;
    fn all_transfers(&self) -> Result<Vec<Transfer>>;
    /// Moves a transfer on (pending → running → succeeded or failed; never back).
    fn set_transfer_status(
        &self,
        id: &str,
        status: TransferStatus,
        error: Option<&str>,
        bytes: u64,
    ) -> Result<Transfer>;
    fn delete_transfer(&self, id: &str) -> Result<()>;
    /// At start: transfers the server was running when it stopped are failed.
    fn fail_unfinished_transfers(&self, reason: &str) -> Result<usize>;
    /// Sets (or moves) the add-on's daily backup, at `hour` UTC.
    fn set_backup_schedule(&self, addon: &Addon, name: &str, hour: u8) -> Result<BackupSchedule>;
    fn backup_schedules(&self, app_id: Option<&str>) -> Result<Vec<BackupSchedule>>;
    fn delete_backup_schedule(&self, addon_id: &str) -> Result<()>;
}
