//! Providers that run one server process per add-on (Redis, memcached): the story is the same
//! for each — allocate a port, a password and a uid, write the server's configuration, start
//! it supervised, wait until it answers with its credentials — and only the server's own
//! configuration, readiness check and config vars differ. A [`ServerKind`] says those; a
//! [`ServerProvider`] does the rest, idempotently and leaving nothing half made.

use crate::state::{StateDir, create_passable_dir, create_private_dir};
use crate::supervise::{ProcSpec, Supervised};
use crate::system::{allocate_uid, chown_tree, free_port, is_root, require};
use crate::{AddonError, AddonsConfig, BoxFuture, Provider, ProvisionRequest, Provisioned, Result};
use kiln_model::LogLine;
use kiln_model::addon::{Plan, Service};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What every per-add-on server keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Common {
    pub app_id: String,
    pub name: String,
    pub plan: String,
    pub port: u16,
    pub password: String,
    /// The uid (and gid) it runs as, when Kiln runs as root.
    pub uid: Option<u32>,
}

/// What is particular to one kind of server.
pub trait ServerKind: Send + Sync + 'static {
    /// The service's own facts, kept with [`Common`].
    type Extra: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The directory under the add-ons dir, and the name of its state.
    const DIR: &'static str;
    const PROGRAM: &'static str;
    const PACKAGE: &'static str;
    /// `app[heroku-redis]`: where its lines appear in the app's stream.
    const LOG_PROCESS: &'static str;
    /// The signal that stops it cleanly.
    const STOP_SIGNAL: i32 = libc::SIGTERM;

    fn service() -> &'static Service;
    fn extra(req: &ProvisionRequest) -> Result<Self::Extra>;
    /// Writes its configuration under `dir` (owned by its uid afterwards); returns its
    /// arguments and environment.
    fn prepare(
        config: &AddonsConfig,
        dir: &Path,
        common: &Common,
        extra: &Self::Extra,
    ) -> Result<(Vec<String>, Vec<(String, String)>)>;
    /// Waits until it answers to its credentials.
    fn ready<'a>(
        host: &'a str,
        common: &'a Common,
        extra: &'a Self::Extra,
    ) -> BoxFuture<'a, Result<()>>;
    fn provisioned(host: &str, common: &Common, extra: &Self::Extra) -> Provisioned;
    /// Refuses a plan the data do not fit in.
    fn check_plan<'a>(
        host: &'a str,
        common: &'a Common,
        extra: &'a Self::Extra,
        plan: &'static Plan,
    ) -> BoxFuture<'a, Result<()>>;
    /// One of its output lines as the app's stream shows it.
    fn log_line(line: &str) -> String {
        line.to_string()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State<E> {
    #[serde(flatten)]
    common: Common,
    extra: E,
}

pub struct ServerProvider<K: ServerKind> {
    config: AddonsConfig,
    states: StateDir,
    running: Mutex<HashMap<String, Arc<Supervised>>>,
    ops: tokio::sync::Mutex<()>,
    kind: std::marker::PhantomData<K>,
}

impl<K: ServerKind> ServerProvider<K> {
    pub fn new(config: AddonsConfig) -> Arc<ServerProvider<K>> {
        let states = StateDir::new(config.dir.join(K::DIR).join("state"));
        Arc::new(ServerProvider {
            config,
            states,
            running: Mutex::default(),
            ops: tokio::sync::Mutex::new(()),
            kind: std::marker::PhantomData,
        })
    }

    fn dir(&self, addon_id: &str) -> PathBuf {
        self.config.dir.join(K::DIR).join(addon_id)
    }

    fn load(&self, addon_id: &str) -> Result<Option<State<K::Extra>>> {
        self.states.load(addon_id)
    }

    /// Starts the add-on's server (if not running) and waits until it answers.
    async fn start(&self, addon_id: &str, s: &State<K::Extra>) -> Result<()> {
        let program = require(K::service().name, K::PROGRAM, K::PACKAGE, &[])?;
        let dir = self.dir(addon_id);
        create_passable_dir(&self.config.dir)?;
        create_passable_dir(&self.config.dir.join(K::DIR))?;
        create_private_dir(&dir)?;
        let (args, env) = K::prepare(&self.config, &dir, &s.common, &s.extra)?;
        if let Some(uid) = s.common.uid {
            chown_tree(&dir, uid, uid)?;
        }
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(addon_id);
        if !running {
            let logs = self.config.logs.clone();
            let app_id = s.common.app_id.clone();
            let sup = Supervised::start(
                ProcSpec {
                    name: s.common.name.clone(),
                    program,
                    args,
                    env,
                    cwd: dir,
                    user: s.common.uid.map(|u| (u, u)),
                    stop_signal: K::STOP_SIGNAL,
                    cgroup_procs: Vec::new(),
                },
                Arc::new(move |line: &str| {
                    logs.emit(&app_id, LogLine::app(K::LOG_PROCESS, K::log_line(line)));
                }),
            );
            self.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(addon_id.to_string(), Arc::new(sup));
        }
        K::ready(&self.config.host, &s.common, &s.extra).await
    }

    async fn stop(&self, addon_id: &str) {
        let sup = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addon_id);
        if let Some(sup) = sup {
            sup.stop().await;
        }
    }

    /// Stops the server and restarts it with its configuration written again (new
    /// credentials, a new plan).
    async fn restart(&self, addon_id: &str, s: &State<K::Extra>) -> Result<()> {
        self.stop(addon_id).await;
        self.start(addon_id, s).await
    }

    /// The add-on's facts and the address its server listens on.
    pub fn facts(&self, addon_id: &str) -> Result<(String, Common, K::Extra)> {
        let s = self
            .load(addon_id)?
            .ok_or_else(|| no_server("reading an add-on"))?;
        Ok((self.config.host.clone(), s.common, s.extra))
    }

    /// Changes the service's own facts (a Redis eviction policy, say) and restarts it with
    /// them written into its configuration.
    pub async fn update_extra(&self, addon_id: &str, f: impl FnOnce(&mut K::Extra)) -> Result<()> {
        let _op = self.ops.lock().await;
        let mut s = self
            .load(addon_id)?
            .ok_or_else(|| no_server("changing an add-on"))?;
        f(&mut s.extra);
        self.states.save(addon_id, &s)?;
        self.restart(addon_id, &s).await
    }

    /// A new password for the add-on (`credentials --reset`); returns the new config.
    pub async fn rotate_password(&self, addon_id: &str) -> Result<Provisioned> {
        let _op = self.ops.lock().await;
        let mut s = self
            .load(addon_id)?
            .ok_or_else(|| no_server("rotating credentials"))?;
        s.common.password = crate::redis::secret()?;
        self.states.save(addon_id, &s)?;
        self.restart(addon_id, &s).await?;
        Ok(K::provisioned(&self.config.host, &s.common, &s.extra))
    }
}

fn no_server(context: &str) -> AddonError {
    AddonError::Service {
        context: context.into(),
        message: "the add-on has no server".into(),
    }
}

impl<K: ServerKind> Provider for ServerProvider<K> {
    fn service(&self) -> &'static Service {
        K::service()
    }

    fn provision<'a>(&'a self, req: &'a ProvisionRequest) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            let _op = self.ops.lock().await;
            let s = match self.load(&req.addon_id)? {
                Some(s) => s,
                None => {
                    // Fail before anything is made when the program is missing.
                    require(K::service().name, K::PROGRAM, K::PACKAGE, &[])?;
                    let uid = if is_root() {
                        Some(allocate_uid(&self.config.dir)?)
                    } else {
                        None
                    };
                    let s = State {
                        common: Common {
                            app_id: req.app_id.clone(),
                            name: req.addon_name.clone(),
                            plan: req.plan.name.to_string(),
                            port: free_port(&self.config.host)?,
                            password: crate::redis::secret()?,
                            uid,
                        },
                        extra: K::extra(req)?,
                    };
                    self.states.save(&req.addon_id, &s)?;
                    s
                }
            };
            if let Err(e) = self.start(&req.addon_id, &s).await {
                // Nothing half made: the process, its data and its state go.
                self.stop(&req.addon_id).await;
                let _ = std::fs::remove_dir_all(self.dir(&req.addon_id));
                let _ = self.states.remove(&req.addon_id);
                return Err(e);
            }
            Ok(K::provisioned(&self.config.host, &s.common, &s.extra))
        })
    }

    fn change_plan<'a>(
        &'a self,
        addon_id: &'a str,
        plan: &'static Plan,
    ) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            let _op = self.ops.lock().await;
            let mut s = self
                .load(addon_id)?
                .ok_or_else(|| no_server("changing a plan"))?;
            K::check_plan(&self.config.host, &s.common, &s.extra, plan).await?;
            s.common.plan = plan.name.to_string();
            self.states.save(addon_id, &s)?;
            // The new limits take effect on a restart with the new configuration.
            self.restart(addon_id, &s).await?;
            Ok(K::provisioned(&self.config.host, &s.common, &s.extra))
        })
    }

    fn deprovision<'a>(&'a self, addon_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let _op = self.ops.lock().await;
            self.stop(addon_id).await;
            let dir = self.dir(addon_id);
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(AddonError::Io {
                        context: format!("removing {}", dir.display()),
                        source: e,
                    });
                }
                _ => {}
            }
            self.states.remove(addon_id)
        })
    }

    fn resume(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for id in self.states.ids() {
                match self.load(&id) {
                    Ok(Some(s)) => {
                        if let Err(e) = self.start(&id, &s).await {
                            tracing::warn!(addon = %s.common.name, error = %e, "could not start an add-on's server");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(addon = %id, error = %e, "could not read an add-on's state")
                    }
                }
            }
        })
    }

    fn held_before(&self, t: std::time::SystemTime) -> Vec<String> {
        self.states.ids_written_before(t)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let all: Vec<_> = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .map(|(_, s)| s)
                .collect();
            for s in all {
                s.stop().await;
            }
        })
    }
}
