//! Kiln's use cases, each one a short story across the rooms: the API and the git receiver
//! call these, and these call the store (desired state), the builder, the dyno manager (which
//! converges running dynos to the desired state), the router's table and logplex.
//!
//! Rules kept here:
//! - every change that affects what runs appends exactly one release to the ledger, then
//!   converges dynos to it;
//! - what runs is always derived from the store (`converge`), so out-of-order or repeated
//!   calls, and a server restart, all end in the same place;
//! - every user-visible event is logged as `app[api]` in Heroku's wording, and one a user
//!   caused ("… by user EMAIL") is also the app's audit log;
//! - every use case that touches an app asks the one authorization module (`authz`,
//!   [`Platform::app_for`] with the [`Need`] it has) before anything else.

mod accounts;
mod acm;
mod addons;
mod authz;
mod backups;
mod deploy;
mod domains;
mod drains;
pub mod features;
pub mod metrics;
mod queries;
mod release;
pub mod scheduler;
pub mod sleep;
mod sni;
mod streams;
mod tenancy;

pub use accounts::{Caller, HEROKU_RATE_LIMIT_PER_HOUR, RateCheck, SignupMode};
pub use acm::{NOT_CONFIGURED as ACM_NOT_CONFIGURED, RouterChallenges};
pub use addons::CreateAddon;
pub use deploy::DeployError;
pub use deploy::GitBridge;
pub use domains::validate_hostname;
pub use kiln_addons::Addons;
pub use kiln_logplex::{Retention as LogRetention, Search as LogSearch};
pub use kiln_model::access::{Need, Permission, Permissions, Relation, TeamRole};
pub use queries::{AppView, LogSessionStream};
pub use release::GoLiveError;
pub use sni::{SniEndpointView, check_certificate};
pub use streams::BuildStream;
pub use tenancy::{AccessEntry, TransferOutcome};

/// A release phase's output (see [`Platform::release_output`]).
pub enum ReleaseOutput {
    Live(Arc<BuildStream>),
    Kept(String),
}

/// A one-off dyno to start (`run`, `run:detached`).
#[derive(Debug)]
pub struct RunOptions<'a> {
    /// A shell command line, run as `bash -c`.
    pub command: &'a str,
    /// Extra environment on top of the app's config (`TERM`, `COLUMNS`, the user's `--env`).
    pub env: Vec<(String, String)>,
    /// A dyno size name; the default size when absent.
    pub size: Option<&'a str>,
    /// The dyno is `<process_type>.<N>`: `run` unless the user asks for another.
    pub process_type: &'a str,
    /// Hand its stdio to the caller instead of the log stream.
    pub attach: bool,
    /// Give it a terminal (attached only).
    pub tty: bool,
}
// What the doors hold on to without reaching into the rooms behind the platform.
pub use kiln_dyno::{DynoError, OneOff};
pub use kiln_logplex::{Tail as LogTail, TailEvent};

use kiln_build::Builder;
use kiln_dyno::{
    AppDesired, DeployOutcome, DynoInfo, DynoManager, PendingDeploy, ReleaseDesired, RestartTarget,
};
use kiln_logplex::Logplex;
use kiln_model::formation::{MAX_QUANTITY, QuantityChange};
use kiln_model::log::LogSink;
use kiln_model::route::AppRoutes;
use kiln_model::{AppName, DynoSize, Invalid, LogLine};
use kiln_runtime::slugcache::SlugCache;
use kiln_store::{Account, App, FormationEntry, NewRelease, Release, Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{message}")]
    NotFound {
        resource: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Forbidden(String),
    /// Credentials were missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// Too many attempts (failed logins) or requests; try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// A part of the platform the request needs is not running (the server is stopping).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<kiln_model::secret::SecretError> for PlatformError {
    fn from(e: kiln_model::secret::SecretError) -> Self {
        PlatformError::Unavailable(e.to_string())
    }
}

impl From<kiln_dyno::DynoError> for PlatformError {
    fn from(e: kiln_dyno::DynoError) -> Self {
        use kiln_dyno::DynoError;
        match e {
            DynoError::Stopped => PlatformError::Unavailable("The dyno manager has stopped (the server is shutting down); try again when it is back.".into()),
            DynoError::NoSuchDyno => PlatformError::NotFound { resource: "dyno", message: e.to_string() },
            DynoError::NoRelease => PlatformError::Conflict(e.to_string()),
            DynoError::Start { .. } => PlatformError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for PlatformError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { resource } => PlatformError::NotFound {
                resource,
                message: format!("Couldn't find that {resource}."),
            },
            StoreError::Conflict(m) => PlatformError::Conflict(m),
            StoreError::Invalid(i) => PlatformError::Invalid(i),
            StoreError::Db(m) => PlatformError::Internal(m),
        }
    }
}

pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// Facts about this installation that shape URLs and builds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Apps answer at `<app>.<domain>`.
    pub domain: String,
    /// The router's public port (omitted from URLs when 80).
    pub router_port: u16,
    /// Base URL of the API (and git), e.g. `http://127.0.0.1:5000`.
    pub api_url: String,
    pub stack: String,
    /// Run each app's dynos as its own uid (container runtime only).
    pub per_app_uid: bool,
    pub data_dir: PathBuf,
    /// The most a pushed commit's source may weigh once unpacked (Heroku: 1 GB).
    pub max_source_bytes: u64,
    /// How often scheduled backups and expired final backups are looked for.
    pub backup_tick: std::time::Duration,
    /// Who may make an account without an administrator.
    pub signup: SignupMode,
    /// API requests per hour per user (Heroku: 4,500).
    pub api_rate_limit: u32,
    /// How long a sleeping app (eco, or `ps:autosleep on`) may go without a request before
    /// its dynos sleep, unless it sets its own (Heroku: 30 minutes).
    pub sleep_after: std::time::Duration,
}

pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) logs: Arc<Logplex>,
    pub(crate) dynos: DynoManager,
    pub(crate) builder: Builder,
    pub(crate) slugs: Arc<SlugCache>,
    pub(crate) routes: Arc<dyn AppRoutes>,
    pub(crate) settings: Settings,
    pub(crate) addons: Arc<kiln_addons::Addons>,
    git: OnceLock<Arc<kiln_git::GitService>>,
    /// The HTTPS listener's certificate resolver, when there is one (see `sni`).
    certificates: OnceLock<Arc<kiln_tls::SniResolver>>,
    /// Automatic Certificate Management, when the server has an ACME CA (see `acm`).
    acm: OnceLock<Arc<acm::Acm>>,
    /// The log drains running on this server (see `drains`), once the server starts them.
    drain_set: OnceLock<drains::Drains>,
    /// The apps' metrics, when the server keeps them.
    metrics: OnceLock<Arc<kiln_metrics::Metrics>>,
    /// A handle on itself, for background tasks.
    me: std::sync::Weak<Platform>,
    /// When this server's platform was made (what a provider made before, unrecorded, is
    /// left over from a crash).
    started_at: std::time::SystemTime,
    /// One convergence at a time per app (hand-offs to the dyno manager stay ordered).
    app_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One build at a time per app.
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One release going live at a time per app.
    release_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The release each app is deploying right now: convergence targets it until it has
    /// succeeded or failed.
    deploying: Mutex<HashMap<String, String>>,
    build_streams: Mutex<HashMap<String, Arc<BuildStream>>>,
    /// Release phases running now, by release id: their output as it comes.
    release_streams: Mutex<HashMap<String, Arc<BuildStream>>>,
    login_throttle: accounts::LoginThrottle,
    rate_limiter: accounts::RateLimiter,
    /// Bumped whenever a credential or a grant is taken away, so that open sessions look
    /// again at whether they may go on.
    revocations: tokio::sync::watch::Sender<u64>,
    /// Scheduled jobs with a run going.
    running: scheduler::Running,
}

impl Platform {
    pub fn new(
        store: Arc<dyn Store>,
        logs: Arc<Logplex>,
        dynos: DynoManager,
        builder: Builder,
        routes: Arc<dyn AppRoutes>,
        settings: Settings,
        addons: Arc<kiln_addons::Addons>,
    ) -> Arc<Platform> {
        let slugs = Arc::new(SlugCache::new(settings.data_dir.join("slug-cache")));
        Arc::new_cyclic(|me| Platform {
            me: me.clone(),
            store,
            logs,
            dynos,
            builder,
            slugs,
            routes,
            addons,
            git: OnceLock::new(),
            certificates: OnceLock::new(),
            acm: OnceLock::new(),
            drain_set: OnceLock::new(),
            metrics: OnceLock::new(),
            started_at: std::time::SystemTime::now(),
            app_locks: Mutex::default(),
            build_locks: Mutex::default(),
            release_locks: Mutex::default(),
            deploying: Mutex::default(),
            build_streams: Mutex::new(HashMap::new()),
            release_streams: Mutex::new(HashMap::new()),
            login_throttle: accounts::LoginThrottle::default(),
            rate_limiter: accounts::RateLimiter::new(settings.api_rate_limit),
            revocations: tokio::sync::watch::Sender::new(0),
            running: scheduler::Running::default(),
            settings,
        })
    }

    fn myself(&self) -> Option<Arc<Platform>> {
        self.me.upgrade()
    }

    pub fn set_git(&self, git: Arc<kiln_git::GitService>) {
        let _ = self.git.set(git);
    }

    fn app_lock(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.app_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn build_lock(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.build_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn release_lock(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.release_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_default()
            .clone()
    }

    /// An `app[api]` line. Every event a user caused is worded "… by user EMAIL" (Heroku's
    /// wording), and is also the app's audit log (`kiln audit`), kept in the store.
    fn api_log(&self, app_id: &str, msg: impl Into<String>) {
        let msg = msg.into();
        if let Some((action, email)) = msg.rsplit_once(" by user ") {
            if let Err(e) = self.store.audit(app_id, None, email.trim(), action) {
                tracing::debug!(app_id, error = %e, "not in the audit log");
            }
        }
        self.logs.emit(app_id, LogLine::api(msg));
    }

    pub fn web_url(&self, app_name: &str) -> String {
        match self.settings.router_port {
            80 => format!("http://{app_name}.{}/", self.settings.domain),
            p => format!("http://{app_name}.{}:{p}/", self.settings.domain),
        }
    }

    pub fn git_url(&self, app_name: &str) -> String {
        format!(
            "{}/{app_name}.git",
            self.settings.api_url.trim_end_matches('/')
        )
    }

    // ---- apps ----

    /// Creates an app owned by the user, or by a team they may create apps in. A team app's
    /// creator holds every permission on it.
    pub async fn create_app(
        &self,
        user: &Account,
        name: Option<&str>,
        team: Option<&str>,
    ) -> Result<App> {
        let team = match team {
            Some(t) => Some(self.team_for_new_app(user, t)?),
            None => None,
        };
        let team_id = team.as_ref().map(|t| t.id.as_str());
        let (app, _) = match name {
            Some(n) => {
                AppName::parse(n)?;
                self.store
                    .create_app_in(n, &user.id, team_id, &self.settings.stack)?
            }
            None => {
                let mut last = None;
                let mut made = None;
                for _ in 0..10 {
                    match self.store.create_app_in(
                        AppName::generate().as_str(),
                        &user.id,
                        team_id,
                        &self.settings.stack,
                    ) {
                        Ok(r) => {
                            made = Some(r);
                            break;
                        }
                        Err(StoreError::Conflict(m)) => last = Some(m),
                        Err(e) => return Err(e.into()),
                    }
                }
                made.ok_or_else(|| PlatformError::Conflict(last.unwrap_or_default()))?
            }
        };
        if team_id.is_some() {
            let member_role = team
                .as_ref()
                .map(|t| self.store.team_member(&t.id, &user.id))
                .transpose()?
                .flatten()
                .map(|m| m.role);
            if member_role != Some(TeamRole::Admin) {
                self.store
                    .set_collaborator(&app.id, &user.id, Permissions::ALL, false)?;
            }
        }
        self.api_log(&app.id, format!("Initial release by user {}", user.email));
        self.api_log(
            &app.id,
            format!("Release v1 created by user {}", user.email),
        );
        self.publish_app(&app);
        self.converge(&app.id).await?;
        Ok(app)
    }

    /// Destroys an app: dynos first (so nothing runs a deleted release), then its repo, build
    /// cache, routes, logs and rows.
    pub async fn destroy_app(&self, user: &Account, app: &App) -> Result<()> {
        self.app_for(user, &app.id, kiln_model::access::Need::Owner)?;
        // Its add-ons first: a failure here leaves the app whole, to try again.
        self.destroy_app_addons(user, app).await?;
        let lock = self.app_lock(&app.id);
        let _guard = lock.lock().await;
        self.dynos.remove_app(&app.id).await;
        if let Some(git) = self.git.get() {
            git.remove_repo(&app.id);
        }
        self.builder.remove_cache(&app.id);
        self.routes.remove_app(&app.id);
        self.withdraw_certificates(&app.id);
        self.store.delete_app(&app.id)?;
        self.stop_app_drains(&app.id);
        self.logs.remove_app(&app.id);
        if let Some(m) = self.metrics.get() {
            m.remove_app(&app.id);
        }
        self.app_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&app.id);
        self.build_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&app.id);
        self.release_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&app.id);
        Ok(())
    }

    pub async fn set_maintenance(&self, app: &App, on: bool, user: &Account) -> Result<App> {
        self.app_for(user, &app.id, kiln_model::access::Need::Operate)?;
        let app = self.store.set_maintenance(&app.id, on)?;
        self.publish_app(&app);
        self.api_log(
            &app.id,
            format!(
                "{} maintenance mode by user {}",
                if on { "Enable" } else { "Disable" },
                user.email
            ),
        );
        Ok(app)
    }

    /// `apps:rename`: the app answers at its new name at once and no longer at the old one.
    /// Its releases, repository, log stream and add-ons key on its id and follow it; git
    /// remotes and the web URL name it, so they change (Heroku's CLI updates the `heroku`
    /// remote itself).
    pub async fn rename_app(&self, app: &App, new_name: &str, user: &Account) -> Result<App> {
        self.app_for(user, &app.id, kiln_model::access::Need::Owner)?;
        let renamed = self.store.rename_app(&app.id, new_name)?;
        if renamed.name != app.name {
            // Custom domains do not name the app; only `<app>.<domain>` moves.
            self.publish_app(&renamed);
            self.api_log(
                &renamed.id,
                format!(
                    "Rename {} to {} by user {}",
                    app.name, renamed.name, user.email
                ),
            );
            // The dyno manager keeps the name with the app's desired state.
            self.converge_in_background(&renamed.id).await;
        }
        Ok(renamed)
    }

    /// `stack:set`: Kiln builds on its machine's stack only, so that is the one stack an app
    /// can be set to; any other name is refused rather than silently ignored.
    pub fn check_build_stack(&self, stack: &str) -> Result<()> {
        if stack == self.settings.stack {
            return Ok(());
        }
        Err(Invalid::new(
            "build_stack",
            format!(
                "Stack {stack:?} is not available: this Kiln builds and runs apps on {} (see `heroku stack`).",
                self.settings.stack
            ),
        )
        .into())
    }

    fn publish_app(&self, app: &App) {
        self.routes.upsert_app(
            &app.id,
            &app.name,
            app.maintenance,
            app.config.get("ERROR_PAGE_URL").cloned(),
            app.config.get("MAINTENANCE_PAGE_URL").cloned(),
        );
    }

    // ---- config and releases ----

    pub async fn update_config(
        &self,
        app: &App,
        patch: &BTreeMap<String, Option<String>>,
        user: &Account,
    ) -> Result<(kiln_model::ConfigVars, Option<Release>)> {
        self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        let (config, release) = self.store.update_config(&app.id, patch, &user.id)?;
        if let Some(r) = &release {
            self.api_log(&app.id, format!("{} by user {}", r.description, user.email));
            self.api_log(
                &app.id,
                format!("Release v{} created by user {}", r.version, user.email),
            );
            self.go_live_in_background(&app.id, r);
        }
        Ok((config, release))
    }

    /// Appends a release that restores `target`'s slug and config, except the vars of the
    /// add-ons attached now, which keep their current values: rolling back never rolls back
    /// an add-on's credentials to ones it no longer accepts.
    pub async fn rollback(&self, app: &App, target: &Release, user: &Account) -> Result<Release> {
        self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        let mut config = target.config.clone();
        for att in self.store.app_attachments(&app.id)? {
            let addon = self.store.addon(&att.addon_id)?;
            config.extend(kiln_model::addon::attachment_config(
                &att.name,
                &addon.config,
            ));
        }
        let release = self.store.append_release(
            &app.id,
            NewRelease {
                description: format!("Rollback to v{}", target.version),
                status: if target.slug_id.is_some() {
                    kiln_model::release::ReleaseStatus::Pending
                } else {
                    kiln_model::release::ReleaseStatus::Succeeded
                },
                slug_id: target.slug_id.clone(),
                config,
                user_id: user.id.clone(),
            },
        )?;
        self.api_log(
            &app.id,
            format!("Rollback to v{} by user {}", target.version, user.email),
        );
        self.api_log(
            &app.id,
            format!(
                "Release v{} created by user {}",
                release.version, user.email
            ),
        );
        self.go_live_in_background(&app.id, &release);
        Ok(release)
    }

    // ---- formation and dynos ----

    /// The app's formation, limited to the process types of its current release, with commands.
    pub fn formation(&self, user: &Account, app: &App) -> Result<Vec<(FormationEntry, String)>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        let types = self.current_process_types(&app.id)?;
        Ok(self
            .store
            .formation(&app.id)?
            .into_iter()
            .filter_map(|f| types.get(&f.process_type).map(|c| (f.clone(), c.clone())))
            .collect())
    }

    fn current_process_types(&self, app_id: &str) -> Result<kiln_model::procfile::ProcessTypes> {
        let Some(rel) = self.store.current_release(app_id)? else {
            return Ok(Default::default());
        };
        let Some(slug_id) = rel.slug_id else {
            return Ok(Default::default());
        };
        Ok(self.store.slug(&slug_id)?.process_types)
    }

    /// Scales process types: `(type, quantity change, size)`. All-or-nothing.
    pub async fn scale(
        &self,
        app: &App,
        updates: &[(String, Option<QuantityChange>, Option<String>)],
        user: &Account,
    ) -> Result<Vec<(FormationEntry, String)>> {
        self.app_for(user, &app.id, kiln_model::access::Need::Operate)?;
        let current = self.formation(user, app)?;
        let mut resolved = Vec::new();
        for (ptype, change, size) in updates {
            let Some((entry, _)) = current.iter().find(|(f, _)| &f.process_type == ptype) else {
                return Err(PlatformError::NotFound {
                    resource: "formation",
                    message: format!("Couldn't find that process type ({ptype})."),
                });
            };
            if ptype == "release" {
                return Err(Invalid::new(
                    "type",
                    "The release process type runs once per release and cannot be scaled",
                )
                .into());
            }
            let quantity = change
                .map(|c| c.apply(entry.quantity, MAX_QUANTITY))
                .transpose()?;
            let size = size
                .as_deref()
                .map(DynoSize::parse)
                .transpose()?
                .map(|s| s.name().to_string());
            resolved.push((ptype.clone(), quantity, size));
        }
        let updated = self.store.update_formation(&app.id, &resolved)?;
        let summary: Vec<String> = updated
            .iter()
            .filter(|f| resolved.iter().any(|(t, _, _)| t == &f.process_type))
            .map(|f| format!("{}@{}:{}", f.process_type, f.quantity, f.size))
            .collect();
        self.api_log(
            &app.id,
            format!("Scaled to {} by user {}", summary.join(" "), user.email),
        );
        self.converge_in_background(&app.id).await;
        self.formation(user, app)
    }

    pub async fn dynos(&self, user: &Account, app: &App) -> Result<Vec<DynoInfo>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.dynos.dynos(&app.id).await)
    }

    pub async fn restart(&self, app: &App, target: RestartTarget, user: &Account) -> Result<usize> {
        self.app_for(user, &app.id, kiln_model::access::Need::Operate)?;
        let what = match &target {
            RestartTarget::All => "all dynos".to_string(),
            RestartTarget::Type(t) => format!("{t} dynos"),
            RestartTarget::Dyno(d) => d.clone(),
        };
        let n = self.dynos.restart(&app.id, target).await?;
        self.api_log(&app.id, format!("Restart {what} by user {}", user.email));
        Ok(n)
    }

    /// Starts a one-off dyno (`kiln run`) from the current release.
    pub async fn run_one_off(
        &self,
        app: &App,
        user: &Account,
        options: RunOptions<'_>,
    ) -> Result<kiln_dyno::OneOff> {
        self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        let RunOptions {
            command,
            env,
            size,
            process_type,
            attach,
            tty,
        } = options;
        if command.trim().is_empty() {
            return Err(Invalid::new("command", "The command is empty").into());
        }
        if command.len() > 64 * 1024 || command.contains('\0') {
            return Err(
                Invalid::new("command", "The command is too long or contains a NUL byte").into(),
            );
        }
        for (k, v) in &env {
            kiln_model::config::validate_key(k)?;
            kiln_model::config::validate_value(k, v)?;
        }
        let size = size.map(DynoSize::parse).transpose()?.unwrap_or_default();
        // Make sure the dyno manager knows the current release.
        self.queue_converge(&app.id).await?;
        let handle = self
            .dynos
            .run_one_off(kiln_dyno::OneOffRequest {
                app_id: app.id.clone(),
                command: command.to_string(),
                env,
                size,
                attach,
                tty,
                user_email: user.email.clone(),
                process_type: process_type.to_string(),
                release: None,
            })
            .await?;
        self.api_log(
            &app.id,
            format!(
                "Starting process with command `{command}` by user {}",
                user.email
            ),
        );
        Ok(handle)
    }

    /// `ps:stop`: the dynos get SIGTERM; formation dynos are then started again.
    pub async fn stop(&self, app: &App, target: RestartTarget, user: &Account) -> Result<usize> {
        self.app_for(user, &app.id, kiln_model::access::Need::Operate)?;
        let what = match &target {
            RestartTarget::All => "all dynos".to_string(),
            RestartTarget::Type(t) => format!("{t} dynos"),
            RestartTarget::Dyno(d) => d.clone(),
        };
        let n = self.dynos.stop(&app.id, target).await?;
        self.api_log(&app.id, format!("Stop {what} by user {}", user.email));
        Ok(n)
    }

    // ---- buildpacks ----

    pub fn set_buildpacks(
        &self,
        user: &Account,
        app: &App,
        urls: &[String],
    ) -> Result<Vec<String>> {
        self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        for u in urls {
            kiln_model::buildpack::BuildpackRef::parse(u)?;
        }
        self.store.set_buildpacks(&app.id, urls)?;
        Ok(self.store.buildpacks(&app.id)?)
    }

    // ---- convergence ----

    /// Reads the app's desired state from the store and hands it to the dyno manager. The
    /// per-app lock orders hand-offs, so the last one always carries the newest state.
    async fn queue_converge(&self, app_id: &str) -> Result<PendingDeploy> {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.queue_converge_locked(app_id).await
    }

    async fn queue_converge_locked(&self, app_id: &str) -> Result<PendingDeploy> {
        let desired = self.desired_for(app_id).await?;
        Ok(self.dynos.apply(desired))
    }

    /// What the dyno manager should run for the app now.
    async fn desired_for(&self, app_id: &str) -> Result<AppDesired> {
        let app = self.store.app(app_id)?;
        let deploying = self
            .deploying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
            .cloned();
        let target = match deploying {
            Some(id) => Some(self.store.release(app_id, &id)?),
            None => self.store.current_release(app_id)?,
        };
        let release = match target {
            Some(r) => match &r.slug_id {
                Some(slug_id) => {
                    let slug = self.store.slug(slug_id)?;
                    let tarball =
                        kiln_build::slug::path_for(&self.builder.slugs_dir(), &slug.checksum);
                    let uid = self.dyno_uid(&app);
                    let checksum = slug.checksum.clone();
                    let cache = self.slugs.clone();
                    let dir =
                        tokio::task::spawn_blocking(move || cache.ensure(&checksum, &tarball, uid))
                            .await
                            .map_err(|e| PlatformError::Internal(format!("preparing a slug: {e}")))?
                            .map_err(|e| {
                                PlatformError::Internal(format!(
                                    "preparing slug {}: {e}",
                                    slug.checksum
                                ))
                            })?;
                    let healthcheck = read_healthcheck(&dir);
                    Some(ReleaseDesired {
                        release_id: r.id.clone(),
                        version: r.version,
                        slug_dir: dir,
                        process_types: slug.process_types.clone(),
                        config: r.config.clone(),
                        healthcheck,
                    })
                }
                None => None,
            },
            None => None,
        };
        let formation = self
            .store
            .formation(app_id)?
            .into_iter()
            .map(|f| {
                (
                    f.process_type.clone(),
                    (f.quantity, DynoSize::parse(&f.size).unwrap_or_default()),
                )
            })
            .collect();
        let runtime_metrics = self
            .store
            .app_features(app_id)?
            .iter()
            .any(|f| f == features::RUNTIME_METRICS);
        let sleep = self.sleep_policy(app_id, &formation)?;
        Ok(AppDesired {
            app_id: app.id.clone(),
            app_name: app.name.clone(),
            uid: self.dyno_uid(&app),
            release,
            formation,
            runtime_metrics,
            sleep,
        })
    }

    fn dyno_uid(&self, app: &App) -> Option<u32> {
        self.settings.per_app_uid.then_some(app.uid)
    }

    /// Converges and waits for the outcome.
    pub async fn converge(&self, app_id: &str) -> Result<DeployOutcome> {
        Ok(self.queue_converge(app_id).await?.wait().await)
    }

    /// Converges without waiting for dynos to boot. The hand-off still happens in order
    /// under the app lock; only the wait is detached.
    async fn converge_in_background(&self, app_id: &str) {
        // When nothing else holds the app lock (the usual case) the hand-off happens now, in
        // call order; otherwise a task waits for the lock so the API does not.
        let lock = self.app_lock(app_id);
        if let Ok(guard) = lock.clone().try_lock_owned() {
            match self.queue_converge_locked(app_id).await {
                Ok(pending) => {
                    drop(guard);
                    tokio::spawn(pending.wait());
                }
                Err(e) => tracing::warn!(app = %app_id, error = %e, "could not converge"),
            }
            return;
        }
        let Some(me) = self.myself() else { return };
        let app_id = app_id.to_string();
        tokio::spawn(async move {
            match me.queue_converge(&app_id).await {
                Ok(pending) => {
                    pending.wait().await;
                }
                Err(e) => tracing::warn!(app = %app_id, error = %e, "could not converge"),
            }
        });
    }

    /// After a (re)start: interrupted builds are failed, leftovers swept, every app's routes
    /// published and its dynos started.
    pub async fn recover(&self) -> Result<()> {
        let n = self
            .store
            .fail_pending_builds("Build interrupted: the Kiln server stopped during the build.")?;
        if n > 0 {
            tracing::info!(builds = n, "marked interrupted builds failed");
        }
        // A release that was going live when the server died did not: it is failed, and its
        // app's config goes back to that of the release that runs.
        for (app_id, version) in self.store.fail_pending_releases(
            "Deploy interrupted: the Kiln server restarted before the release went live.",
        )? {
            tracing::info!(app = %app_id, version, "marked an interrupted release failed");
            if let Some(current) = self.store.current_release(&app_id)? {
                self.store.restore_config(&app_id, &current.config)?;
            }
            self.api_log(
                &app_id,
                format!("Release v{version} failed: the Kiln server restarted before it went live"),
            );
        }
        self.builder.sweep();
        let n = self.store.fail_unfinished_transfers(
            "Interrupted: the Kiln server stopped during the transfer.",
        )?;
        if n > 0 {
            tracing::info!(
                transfers = n,
                "marked interrupted backups and restores failed"
            );
        }
        // Add-ons a provider made but the store never recorded (the server died in between)
        // are removed; any made since this server started are left to the request making them.
        let known: std::collections::HashSet<String> =
            self.store.all_addons()?.into_iter().map(|a| a.id).collect();
        for id in self.addons.sweep(&known, self.started_at).await {
            tracing::info!(addon = %id, "removed an add-on that was provisioned but never recorded");
        }
        self.addons.resume().await;
        if let Some(me) = self.myself() {
            // Scheduled jobs: a look every second.
            let weak = std::sync::Arc::downgrade(&me);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(p) = weak.upgrade() else { return };
                    p.scheduler_tick().await;
                }
            });
        }
        if let Some(me) = self.myself() {
            let tick = self.settings.backup_tick;
            let weak = std::sync::Arc::downgrade(&me);
            drop(me);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(tick).await;
                    let Some(p) = weak.upgrade() else { return };
                    p.backup_tick().await;
                }
            });
        }
        let apps = self.store.apps()?;
        let mut keep = Vec::new();
        for app in &apps {
            if let Some(r) = self.store.current_release(&app.id)? {
                if let Some(s) = r.slug_id {
                    keep.push(self.store.slug(&s)?.checksum);
                }
            }
        }
        self.slugs.prune(&keep);
        for app in apps {
            self.publish_app(&app);
            self.publish_domains(&app.id);
            // Apps that may sleep start asleep: a server with a thousand idle apps must not
            // boot a thousand dynos when it starts; a request wakes each as it comes.
            let lock = self.app_lock(&app.id);
            let _guard = lock.lock().await;
            match self.desired_for(&app.id).await {
                Ok(desired) => drop(self.dynos.restore(desired)),
                Err(e) => {
                    tracing::warn!(app = %app.name, error = %e, "could not start the app's dynos")
                }
            }
        }
        Ok(())
    }

    // ---- build output streams ----

    /// A release phase's output: live while it runs, else as kept. `None` when the
    /// release had no release phase (or there is no such release).
    pub fn release_output(&self, release_id: &str) -> Result<Option<ReleaseOutput>> {
        if let Some(stream) = self
            .release_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(release_id)
        {
            return Ok(Some(ReleaseOutput::Live(stream.clone())));
        }
        Ok(self
            .store
            .release_output(release_id)?
            .map(ReleaseOutput::Kept))
    }

    pub fn build_stream(&self, build_id: &str) -> Option<Arc<BuildStream>> {
        self.build_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(build_id)
            .cloned()
    }
}

/// The web health check an app's slug declares in its app.json, if any.
fn read_healthcheck(slug_dir: &std::path::Path) -> Option<kiln_dyno::HealthCheck> {
    let text = std::fs::read_to_string(slug_dir.join("app.json")).ok()?;
    let spec = kiln_model::appjson::parse(&text).ok()?.web_healthcheck?;
    Some(kiln_dyno::HealthCheck {
        path: spec.path,
        timeout: std::time::Duration::from_secs(spec.timeout_secs),
    })
}
