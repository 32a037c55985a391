//! Kiln's add-ons room. One interface, shaped like Heroku's Add-on Partner API, stands
//! between the platform and every service: provision an add-on (its id, a plan, options) and
//! get its config vars; change its plan; deprovision it. Each call is idempotent on the add-on
//! id, as Heroku's partner calls are ("delivered at least once"), so a retry after a crash or
//! a timeout never makes a second database.
//!
//! The built-in providers run real servers from the machine's packages, as processes Kiln
//! supervises (see [`supervise`]): a shared PostgreSQL cluster with a database and role per
//! `essential-*` add-on and a cluster of its own per `standard-*` one ([`postgres`]), a
//! redis-server per Redis add-on ([`redis`]), a memcached with SASL per memcached add-on
//! ([`memcached`]); the last two share [`server`]. What each add-on was given (port, password, plan) is kept in a small
//! JSON file per add-on under the data dir ([`state`]), so a restarted Kiln brings every
//! service back with the same credentials.

pub mod memcached;
pub mod postgres;
pub mod redis;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod supervise;
pub mod system;

use kiln_model::Invalid;
use kiln_model::addon::{Plan, Service};
use kiln_model::log::LogSink;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    /// The machine lacks the programs a service needs; nothing was made.
    #[error(
        "{service} needs {what}, which is not installed on this server: install the Debian package {package} (apt-get install {package}) and try again"
    )]
    MissingProgram {
        service: &'static str,
        what: &'static str,
        package: &'static str,
    },
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A service refused or failed an operation; its own words.
    #[error("{context}: {message}")]
    Service { context: String, message: String },
    #[error("{0}")]
    NotSupported(String),
}

impl AddonError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AddonError {
        let context = context.into();
        move |source| AddonError::Io { context, source }
    }
}

pub type Result<T, E = AddonError> = std::result::Result<T, E>;

/// What a provider is asked to make.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub addon_id: String,
    /// `postgresql-concave-52656`: for logs and process names.
    pub addon_name: String,
    /// The app that owns the add-on: its log stream gets the service's lines.
    pub app_id: String,
    pub plan: &'static Plan,
    /// Options given at creation (`--maxmemory_policy allkeys-lru`), already checked.
    pub options: BTreeMap<String, String>,
}

/// What a provider gives back: config vars without the attachment's prefix (`URL`), and a
/// message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub config: BTreeMap<String, String>,
    pub message: String,
}

/// One add-on service's provider (Heroku's Add-on Partner API, in-process).
pub trait Provider: Send + Sync {
    fn service(&self) -> &'static Service;
    /// Makes the add-on, or, if it exists, makes sure it runs and returns what it was given.
    fn provision<'a>(&'a self, req: &'a ProvisionRequest) -> BoxFuture<'a, Result<Provisioned>>;
    /// Moves the add-on to `plan`; refuses (changing nothing) what the plan cannot hold.
    fn change_plan<'a>(
        &'a self,
        addon_id: &'a str,
        plan: &'static Plan,
    ) -> BoxFuture<'a, Result<Provisioned>>;
    /// Removes the add-on and its data. An add-on it does not know is already gone: `Ok`.
    fn deprovision<'a>(&'a self, addon_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// After a restart: starts what the provisioned add-ons need.
    fn resume(&self) -> BoxFuture<'_, ()>;
    /// The add-ons it holds whose facts were last written before `t` (to find those made
    /// by a server that stopped before recording them).
    fn held_before(&self, t: std::time::SystemTime) -> Vec<String>;
    /// Stops every process the provider runs (the server is stopping).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// How the built-in providers run.
#[derive(Clone)]
pub struct AddonsConfig {
    /// Where add-ons keep their data (`<data-dir>/addons`).
    pub dir: PathBuf,
    /// The address services listen on, and the host in their URLs: where dynos reach them.
    pub host: String,
    /// An existing PostgreSQL server (an admin URL) to host the shared plans instead of the
    /// embedded cluster.
    pub postgres_url: Option<String>,
    /// How often database sizes are checked against their plans' limits.
    pub check_interval: Duration,
    /// Where services' log lines go (the owning app's stream).
    pub logs: Arc<dyn LogSink>,
}

/// The providers, by service.
pub struct Addons {
    providers: Vec<Arc<dyn Provider>>,
    /// The built-in ones again, for what only they do (backups, `pg:info`, rotation).
    pub postgres: Arc<postgres::PostgresProvider>,
    pub redis: Arc<redis::RedisProvider>,
    pub memcached: Arc<memcached::MemcachedProvider>,
}

impl Addons {
    /// The built-in providers.
    pub fn builtin(config: AddonsConfig) -> Arc<Addons> {
        let postgres = postgres::PostgresProvider::new(config.clone());
        let redis = redis::provider(config.clone());
        let memcached = memcached::provider(config);
        let providers: Vec<Arc<dyn Provider>> = vec![
            postgres.clone(),
            redis.clone(),
            memcached.clone(),
            Arc::new(scheduler::SchedulerProvider),
        ];
        Arc::new(Addons {
            providers,
            postgres,
            redis,
            memcached,
        })
    }

    pub fn provider(&self, service: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.service().name == service)
    }

    /// Deprovisions what a provider holds that the platform never recorded (a server that
    /// died between provisioning an add-on and recording it), made before `t`; returns them.
    pub async fn sweep(
        &self,
        known: &std::collections::HashSet<String>,
        t: std::time::SystemTime,
    ) -> Vec<String> {
        let mut swept = Vec::new();
        for p in &self.providers {
            for id in p
                .held_before(t)
                .into_iter()
                .filter(|id| !known.contains(id))
            {
                match p.deprovision(&id).await {
                    Ok(()) => swept.push(id),
                    Err(e) => {
                        tracing::warn!(addon = %id, error = %e, "could not remove an unrecorded add-on")
                    }
                }
            }
        }
        swept
    }

    pub async fn resume(&self) {
        for p in &self.providers {
            p.resume().await;
        }
    }

    pub async fn shutdown(&self) {
        for p in &self.providers {
            p.shutdown().await;
        }
    }
}
