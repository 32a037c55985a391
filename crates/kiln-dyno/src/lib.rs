//! The dyno manager: converges what runs towards what should run.
//!
//! The platform tells it, per app, the desired state ([`AppDesired`]: the current release and
//! the formation). A single actor task owns all dyno bookkeeping and reconciles after every
//! change; each dyno instance has its own supervisor task ([`supervisor`]) that starts it
//! through the [`Runtime`](kiln_runtime::Runtime), relays its output to the log stream, watches
//! for `$PORT` to be bound, restarts it when it crashes (immediately, then with a growing
//! cool-off) and stops it gracefully (SIGTERM, then SIGKILL after the exit timeout).
//!
//! Deploys never drop traffic: when a release changes, each web dyno's replacement is started
//! beside it and the old one is stopped only once the new one is `up` (Heroku's preboot, for
//! every app). The router's table is republished after every state change.

mod oneoff;
mod ports;
mod supervisor;

pub use oneoff::{OneOff, OneOffRequest};

use kiln_model::config::ConfigVars;
use kiln_model::log::SharedSink;
use kiln_model::procfile::ProcessTypes;
use kiln_model::route::{Backend, DynoRoutes, WebStatus};
use kiln_model::{DynoName, DynoSize, DynoState, LogLine};
use kiln_runtime::SharedRuntime;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use supervisor::{Instance, InstanceCtl};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the manager looks for apps to put to sleep.
const SLEEP_CHECK: Duration = Duration::from_secs(1);

/// Timing of the lifecycle; Heroku's values by default.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// R10: a web dyno must bind `$PORT` within this (Heroku: 60 s).
    pub boot_timeout: Duration,
    /// R12: SIGKILL this long after SIGTERM (Heroku: 30 s).
    pub stop_timeout: Duration,
    /// First cool-off after repeated crashes; doubles each time up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Every dyno is restarted ("Cycling") after this long, plus a random jitter (Heroku:
    /// 24 h + up to 216 min), so long-running processes get a fresh start.
    pub cycle_interval: Duration,
    pub cycle_jitter: Duration,
    /// After a web dyno leaves the router, how long to wait for requests already on their
    /// way to it before its in-flight count is trusted and it gets SIGTERM.
    pub drain_grace: Duration,
    /// How often a dyno of an app with `log-runtime-metrics` logs its load and memory
    /// (Heroku: about every 20 s).
    pub metrics_every: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            boot_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(20 * 60),
            cycle_interval: Duration::from_secs(24 * 3600),
            cycle_jitter: Duration::from_secs(216 * 60),
            drain_grace: Duration::from_millis(300),
            metrics_every: Duration::from_secs(20),
        }
    }
}

/// An HTTP check a new web dyno must pass before it is `up` (app.json `healthchecks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub timeout: Duration,
}

/// The release an app should run.
#[derive(Debug, Clone)]
pub struct ReleaseDesired {
    pub release_id: String,
    pub version: u32,
    /// The unpacked slug.
    pub slug_dir: PathBuf,
    pub process_types: ProcessTypes,
    pub config: ConfigVars,
    /// Health check of new web dynos, if the app declares one.
    pub healthcheck: Option<HealthCheck>,
}

/// What should run for one app.
#[derive(Debug, Clone)]
pub struct AppDesired {
    pub app_id: String,
    pub app_name: String,
    /// The uid its dynos run as (container runtime).
    pub uid: Option<u32>,
    pub release: Option<ReleaseDesired>,
    /// Per process type: quantity and size.
    pub formation: BTreeMap<String, (u32, DynoSize)>,
    /// Whether its dynos log their load and memory (the `log-runtime-metrics` feature). Read
    /// when a dyno starts: as on Heroku, switching it takes a restart.
    pub runtime_metrics: bool,
    /// Whether and when the app sleeps (eco dynos, `ps:autosleep`); `None`: never.
    pub sleep: Option<SleepPolicy>,
}

impl AppDesired {
    /// Web dynos wanted by the formation (0 without a release that has a web process).
    fn web_quantity(&self) -> u32 {
        self.formation.get("web").map_or(0, |(q, _)| *q)
    }

    /// Whether dynos of `ptype` sleep when the app does (workers may stay up).
    fn sleeps_with_app(&self, ptype: &str) -> bool {
        ptype == "web" || !self.sleep.is_some_and(|p| p.workers_stay)
    }

    /// The formation's dynos by name, with their command and size, for the process types
    /// `include` takes (the release phase is never one).
    fn formation_dynos(
        &self,
        include: impl Fn(&str) -> bool,
    ) -> BTreeMap<DynoName, (String, DynoSize)> {
        let mut out = BTreeMap::new();
        let Some(rel) = &self.release else {
            return out;
        };
        for (ptype, command) in &rel.process_types {
            if ptype == "release" || !include(ptype) {
                continue;
            }
            let (q, size) = self
                .formation
                .get(ptype)
                .copied()
                .unwrap_or((0, DynoSize::default()));
            for i in 1..=q {
                out.insert(DynoName::new(ptype.clone(), i), (command.clone(), size));
            }
        }
        out
    }
}

/// Sleeping: after `after` without a request the app's web dynos (and, unless they stay, its
/// other formation dynos) stop, and the next request wakes them (Heroku's eco dynos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepPolicy {
    pub after: Duration,
    /// Worker dynos keep running while the web dynos sleep.
    pub workers_stay: bool,
}

pub use kiln_model::dyno::{DynoInfo, RestartTarget};

/// A queued desired-state change whose outcome can be awaited.
pub struct PendingDeploy {
    rx: Option<oneshot::Receiver<Vec<watch::Receiver<DynoState>>>>,
    deadline: Duration,
}

impl PendingDeploy {
    /// Waits until the web dynos the change started are `up`, one of them crashed, or the
    /// boot timeout passed.
    pub async fn wait(self) -> DeployOutcome {
        let Some(rx) = self.rx else {
            return DeployOutcome::Failed("the dyno manager has stopped".into());
        };
        let Ok(watchers) = rx.await else {
            return DeployOutcome::Failed("the dyno manager has stopped".into());
        };
        if watchers.is_empty() {
            return DeployOutcome::NothingToWaitFor;
        }
        let wait_all = async {
            for mut w in watchers {
                loop {
                    let s = *w.borrow_and_update();
                    match s {
                        DynoState::Up | DynoState::Down => break,
                        DynoState::Crashed => {
                            return DeployOutcome::Failed(
                                "a new web dyno crashed while booting".into(),
                            );
                        }
                        _ => {}
                    }
                    if w.changed().await.is_err() {
                        break;
                    }
                }
            }
            DeployOutcome::Up
        };
        match tokio::time::timeout(self.deadline, wait_all).await {
            Ok(o) => o,
            Err(_) => DeployOutcome::Failed(format!(
                "new web dynos did not come up within {} s",
                self.deadline.as_secs()
            )),
        }
    }
}

/// How a deploy went: every new web dyno came up, or one of them did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployOutcome {
    Up,
    /// Nothing to wait for (no web dynos, or nothing changed).
    NothingToWaitFor,
    Failed(String),
}

/// Why the dyno manager could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DynoError {
    /// The manager's task has ended (the server is shutting down): nothing can be done.
    #[error("the dyno manager has stopped")]
    Stopped,
    #[error("No such dyno or process type")]
    NoSuchDyno,
    #[error("The app has no release to run yet: push it first.")]
    NoRelease,
    #[error("starting {dyno}: {source}")]
    Start {
        dyno: String,
        #[source]
        source: kiln_runtime::RuntimeError,
    },
}

enum Command {
    /// A desired state; `true` when restoring after a start of the server (an app the
    /// manager does not know yet that may sleep starts asleep).
    Apply(
        AppDesired,
        bool,
        oneshot::Sender<Vec<watch::Receiver<DynoState>>>,
    ),
    Restart(
        String,
        RestartTarget,
        bool,
        oneshot::Sender<Result<usize, DynoError>>,
    ),
    Cycle(String, String),
    Remove(String, oneshot::Sender<Vec<tokio::task::JoinHandle<()>>>),
    List(String, oneshot::Sender<Vec<DynoInfo>>),
    Changed(String),
    RunOneOff(OneOffRequest, oneshot::Sender<Result<OneOff, DynoError>>),
    OneOffDone(String, String),
    /// A request arrived for a sleeping app.
    Wake(String),
    Shutdown(oneshot::Sender<Vec<tokio::task::JoinHandle<()>>>),
}

/// Handle to the dyno manager actor; cheap to clone.
#[derive(Clone)]
pub struct DynoManager {
    tx: mpsc::UnboundedSender<Command>,
    config: LifecycleConfig,
    meters: Arc<std::sync::OnceLock<Arc<dyn kiln_model::meter::Meters>>>,
}

struct AppState {
    desired: AppDesired,
    instances: Vec<Instance>,
    one_offs: Vec<oneoff::OneOffRecord>,
    /// The release every web dyno in rotation last ran, as told to the router (whose HTTP
    /// cache drops the app's objects when it changes).
    live_release: std::cell::Cell<u32>,
    /// When the app went to sleep, while it sleeps.
    asleep: Option<kiln_model::Timestamp>,
    /// Since when it has been awake (its start, or its last wake): idle time counts from here
    /// at the most.
    awake_since: tokio::time::Instant,
    /// Woken by a request and no web dyno up yet: the router holds requests (H20 at the
    /// end of its hold, not H10), and a wake that fails puts the app back to sleep.
    waking: bool,
    /// When a web dyno was last seen answering a request: an app is not idle while a
    /// request is in flight, however long ago it arrived.
    busy_at: tokio::time::Instant,
}

pub(crate) struct Shared {
    pub runtime: SharedRuntime,
    pub routes: Arc<dyn DynoRoutes>,
    pub logs: SharedSink,
    pub config: LifecycleConfig,
    pub ports: ports::PortPool,
    pub changed: mpsc::UnboundedSender<Command>,
    /// Where dynos' samples, restarts and R-codes are counted, once the server sets it.
    pub meters: Arc<std::sync::OnceLock<Arc<dyn kiln_model::meter::Meters>>>,
}

impl Shared {
    pub(crate) fn notify(&self, app_id: &str) {
        let _ = self.changed.send(Command::Changed(app_id.to_string()));
    }
}

struct Actor {
    shared: Arc<Shared>,
    routes: Arc<dyn DynoRoutes>,
    apps: HashMap<String, AppState>,
    stopping: Vec<tokio::task::JoinHandle<()>>,
}

impl DynoManager {
    pub fn start(
        runtime: SharedRuntime,
        logs: SharedSink,
        routes: Arc<dyn DynoRoutes>,
        config: LifecycleConfig,
    ) -> DynoManager {
        let (tx, rx) = mpsc::unbounded_channel();
        let meters = Arc::new(std::sync::OnceLock::new());
        let shared = Arc::new(Shared {
            runtime,
            routes: routes.clone(),
            logs,
            config: config.clone(),
            ports: ports::PortPool::default(),
            changed: tx.clone(),
            meters: meters.clone(),
        });
        let actor = Actor {
            shared,
            routes,
            apps: HashMap::new(),
            stopping: Vec::new(),
        };
        tokio::spawn(actor.run(rx));
        DynoManager { tx, config, meters }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// Counts dynos' memory, load, restarts and R-codes in `meters` from now on (set once).
    pub fn set_meters(&self, meters: Arc<dyn kiln_model::meter::Meters>) {
        let _ = self.meters.set(meters);
    }

    /// Sets an app's desired state. The change is queued at once (so successive calls apply
    /// in call order); the returned [`PendingDeploy`] waits for its outcome.
    pub fn apply(&self, desired: AppDesired) -> PendingDeploy {
        self.send_apply(desired, false)
    }

    /// As [`apply`](Self::apply), for an app the server had before it started: one that may
    /// sleep starts asleep instead of booting, and wakes on its first request.
    pub fn restore(&self, desired: AppDesired) -> PendingDeploy {
        self.send_apply(desired, true)
    }

    fn send_apply(&self, desired: AppDesired, restoring: bool) -> PendingDeploy {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Command::Apply(desired, restoring, reply))
            .is_ok();
        PendingDeploy {
            rx: sent.then_some(rx),
            deadline: self.config.boot_timeout + Duration::from_secs(5),
        }
    }

    /// Restarts dynos (replacement first for web dynos, so nothing is dropped). Returns how
    /// many were restarted; `Err` if the target names no dyno.
    pub async fn restart(&self, app_id: &str, target: RestartTarget) -> Result<usize, DynoError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Restart(app_id.to_string(), target, false, reply))
            .map_err(|_| DynoError::Stopped)?;
        rx.await.map_err(|_| DynoError::Stopped)?
    }

    /// `ps:stop`: stops dynos (SIGTERM first, no replacement started beside them); formation
    /// dynos are then started again, as on Heroku's Common Runtime.
    pub async fn stop(&self, app_id: &str, target: RestartTarget) -> Result<usize, DynoError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Restart(app_id.to_string(), target, true, reply))
            .map_err(|_| DynoError::Stopped)?;
        rx.await.map_err(|_| DynoError::Stopped)?
    }

    /// Stops every dyno of an app and forgets it; returns when they are all gone.
    pub async fn remove_app(&self, app_id: &str) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Remove(app_id.to_string(), reply))
            .is_ok()
        {
            if let Ok(handles) = rx.await {
                for h in handles {
                    let _ = h.await;
                }
            }
        }
    }

    pub async fn dynos(&self, app_id: &str) -> Vec<DynoInfo> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::List(app_id.to_string(), reply))
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Wakes a sleeping app (the router asks, for every request held on it; only the first
    /// of a burst starts anything).
    pub fn wake(&self, app_id: &str) {
        let _ = self.tx.send(Command::Wake(app_id.to_string()));
    }

    /// Starts a one-off dyno from the app's current release.
    pub async fn run_one_off(&self, req: OneOffRequest) -> Result<OneOff, DynoError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::RunOneOff(req, reply))
            .map_err(|_| DynoError::Stopped)?;
        rx.await.map_err(|_| DynoError::Stopped)?
    }

    /// Stops every dyno gracefully; returns when all are gone.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(reply)).is_ok() {
            if let Ok(handles) = rx.await {
                for h in handles {
                    let _ = h.await;
                }
            }
        }
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        // Sleeping apps are looked at every second: a few comparisons per app that may sleep.
        let mut sleep_check = tokio::time::interval(SLEEP_CHECK);
        sleep_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let cmd = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(c) => c,
                    None => return,
                },
                _ = sleep_check.tick() => {
                    self.check_sleep();
                    continue;
                }
            };
            self.stopping.retain(|h| !h.is_finished());
            match cmd {
                Command::Apply(desired, restoring, reply) => {
                    let app_id = desired.app_id.clone();
                    let new = !self.apps.contains_key(&app_id);
                    let state = self.apps.entry(app_id.clone()).or_insert_with(|| AppState {
                        desired: desired.clone(),
                        instances: Vec::new(),
                        one_offs: Vec::new(),
                        live_release: Default::default(),
                        asleep: None,
                        awake_since: tokio::time::Instant::now(),
                        waking: false,
                        busy_at: tokio::time::Instant::now(),
                    });
                    state.desired = desired;
                    let serves_web = state
                        .desired
                        .release
                        .as_ref()
                        .is_some_and(|r| r.process_types.contains_key("web"))
                        && state.desired.web_quantity() > 0;
                    if new && restoring && serves_web && state.desired.sleep.is_some() {
                        state.asleep = Some(kiln_model::Timestamp::now());
                    }
                    // An app that may no longer sleep wakes; one that may sleep longer keeps
                    // sleeping (a deploy to a sleeping app waits for its next request).
                    if state.desired.sleep.is_none() && state.asleep.is_some() {
                        state.asleep = None;
                        state.awake_since = tokio::time::Instant::now();
                    }
                    let started = self.reconcile(&app_id);
                    let _ = reply.send(started);
                    self.publish(&app_id);
                }
                Command::Cycle(app_id, instance_id) => {
                    if let Some(state) = self.apps.get_mut(&app_id) {
                        if let Some(inst) = state
                            .instances
                            .iter_mut()
                            .find(|i| i.id == instance_id && !i.outdated)
                        {
                            inst.outdated = true;
                            self.reconcile(&app_id);
                            self.publish(&app_id);
                        }
                    }
                }
                Command::Restart(app_id, target, stop_first, reply) => {
                    let Some(state) = self.apps.get_mut(&app_id) else {
                        let _ = reply.send(Ok(0));
                        continue;
                    };
                    let mut n = 0;
                    for inst in state.instances.iter_mut() {
                        let hit = match &target {
                            RestartTarget::All => true,
                            RestartTarget::Type(t) => &inst.name.process_type == t,
                            RestartTarget::Dyno(d) => inst.name.to_string() == *d,
                        };
                        if hit && !inst.outdated {
                            inst.outdated = true;
                            inst.stop_first = stop_first;
                            n += 1;
                        }
                    }
                    if n == 0 && !matches!(target, RestartTarget::All) {
                        let _ = reply.send(Err(DynoError::NoSuchDyno));
                        continue;
                    }
                    self.reconcile(&app_id);
                    self.publish(&app_id);
                    let _ = reply.send(Ok(n));
                }
                Command::RunOneOff(req, reply) => {
                    let shared = self.shared.clone();
                    let result = match self.apps.get_mut(&req.app_id) {
                        None => Err(DynoError::NoRelease),
                        Some(state) => match req
                            .release
                            .clone()
                            .or_else(|| state.desired.release.clone())
                        {
                            None => Err(DynoError::NoRelease),
                            Some(rel) => {
                                // Heroku names one-offs run.N (and release.N) with a random N.
                                let name = loop {
                                    let n = format!(
                                        "{}.{}",
                                        req.process_type,
                                        fastrand::u32(1000..10000)
                                    );
                                    if !state.one_offs.iter().any(|o| o.name == n) {
                                        break n;
                                    }
                                };
                                oneoff::start(&shared, req, &rel, state.desired.uid, name).map(
                                    |(handle, record)| {
                                        state.one_offs.push(record);
                                        handle
                                    },
                                )
                            }
                        },
                    };
                    let _ = reply.send(result);
                }
                Command::Wake(app_id) => self.wake(&app_id),
                Command::OneOffDone(app_id, name) => {
                    if let Some(state) = self.apps.get_mut(&app_id) {
                        state.one_offs.retain(|o| o.name != name);
                    }
                }
                Command::Remove(app_id, reply) => {
                    let mut handles = Vec::new();
                    if let Some(state) = self.apps.remove(&app_id) {
                        for inst in state.instances {
                            handles.push(inst.stop());
                        }
                        for o in state.one_offs {
                            o.signaller.kill();
                            handles.push(o.task);
                        }
                    }
                    // Out of rotation before the reply: the platform forgets the app's route
                    // once it has it, and nothing of the app is published after that.
                    self.routes
                        .set_backends(&app_id, WebStatus::NoWebDynos, Vec::new());
                    let _ = reply.send(handles);
                }
                Command::List(app_id, reply) => {
                    let list = self
                        .apps
                        .get(&app_id)
                        .map(|s| list_dynos(s))
                        .unwrap_or_default();
                    let _ = reply.send(list);
                }
                Command::Changed(app_id) => {
                    if self.apps.contains_key(&app_id) {
                        self.reconcile(&app_id);
                        self.publish(&app_id);
                    }
                }
                Command::Shutdown(reply) => {
                    let mut handles: Vec<_> = self.stopping.drain(..).collect();
                    for (_, state) in self.apps.drain() {
                        for inst in state.instances {
                            handles.push(inst.stop());
                        }
                        for o in state.one_offs {
                            // SIGTERM, then SIGKILL after the stop timeout, as for other dynos.
                            o.signaller.terminate();
                            let (sig, limit, mut task) =
                                (o.signaller, self.shared.config.stop_timeout, o.task);
                            handles.push(tokio::spawn(async move {
                                tokio::select! {
                                    _ = &mut task => {}
                                    _ = tokio::time::sleep(limit) => {
                                        sig.kill();
                                        let _ = task.await;
                                    }
                                }
                            }));
                        }
                    }
                    let _ = reply.send(handles);
                    // Nothing starts after a shutdown: a deploy or `run` that arrives now is
                    // told the manager has stopped (503) rather than leaving a dyno behind.
                    return;
                }
            }
        }
    }

    /// Starts missing dynos, stops surplus ones, replaces outdated ones (web: only once the
    /// replacement is up). Returns state watches of the web dynos it started.
    fn reconcile(&mut self, app_id: &str) -> Vec<watch::Receiver<DynoState>> {
        let shared = self.shared.clone();
        let Some(state) = self.apps.get_mut(app_id) else {
            return Vec::new();
        };
        let mut started = Vec::new();
        let mut keep: Vec<Instance> = Vec::new();
        let mut stop: Vec<Instance> = Vec::new();
        let d = state.desired.clone();

        // Desired dyno names with their commands.
        // A sleeping app runs nothing of its formation (but workers that stay).
        let asleep = state.asleep.is_some();
        let want = d.formation_dynos(|t| !(asleep && d.sleeps_with_app(t)));
        let version = d.release.as_ref().map(|r| r.version).unwrap_or(0);

        let instances = std::mem::take(&mut state.instances);
        // Which names already have a current instance.
        let mut fresh_state: HashMap<DynoName, DynoState> = HashMap::new();
        for inst in &instances {
            let current = inst.release_version == version
                && !inst.outdated
                && want
                    .get(&inst.name)
                    .is_some_and(|(c, s)| *c == inst.command && *s == inst.size);
            if current {
                let st = inst.state();
                fresh_state
                    .entry(inst.name.clone())
                    .and_modify(|e| {
                        if st == DynoState::Up {
                            *e = st
                        }
                    })
                    .or_insert(st);
            }
        }
        for inst in instances {
            let current = inst.release_version == version
                && !inst.outdated
                && want
                    .get(&inst.name)
                    .is_some_and(|(c, s)| *c == inst.command && *s == inst.size);
            if current {
                keep.push(inst);
            } else if !want.contains_key(&inst.name) {
                stop.push(inst);
            } else if inst.name.process_type == "web"
                && !inst.stop_first
                && fresh_state.get(&inst.name) != Some(&DynoState::Up)
                && inst.state() == DynoState::Up
            {
                // Preboot: the old web dyno serves until its replacement is up.
                keep.push(inst);
            } else {
                stop.push(inst);
            }
        }
        for (name, (command, size)) in &want {
            if fresh_state.contains_key(name) {
                continue;
            }
            let Some(rel) = &d.release else { continue };
            let ctl = InstanceCtl {
                app_id: d.app_id.clone(),
                uid: d.uid,
                name: name.clone(),
                command: command.clone(),
                size: *size,
                release_id: rel.release_id.clone(),
                release_version: rel.version,
                slug_dir: rel.slug_dir.clone(),
                config: rel.config.clone(),
                runtime_metrics: d.runtime_metrics,
                healthcheck: if name.process_type == "web" {
                    rel.healthcheck.clone()
                } else {
                    None
                },
            };
            let inst = Instance::spawn(shared.clone(), ctl);
            if name.process_type == "web" {
                started.push(inst.watch());
            }
            keep.push(inst);
        }
        for inst in stop {
            self.stopping.push(inst.stop());
        }
        keep.sort_by(|a, b| a.name.cmp(&b.name));
        state.instances = keep;
        started
    }

    /// Puts apps to sleep that have had no request for their sleep time, and apps whose wake
    /// failed (no web dyno up within the boot timeout) back to sleep.
    fn check_sleep(&mut self) {
        let now = tokio::time::Instant::now();
        let boot_timeout = self.shared.config.boot_timeout;
        let mut due = Vec::new();
        for (id, state) in &mut self.apps {
            let Some(policy) = state.desired.sleep else {
                continue;
            };
            if state.asleep.is_some()
                || state.desired.release.is_none()
                || state.desired.web_quantity() == 0
            {
                continue;
            }
            let web_up = state
                .instances
                .iter()
                .any(|i| i.name.process_type == "web" && i.state() == DynoState::Up);
            if web_up && state.waking {
                // Awake from now: the time it took to boot was not idle.
                state.waking = false;
                state.awake_since = now;
            }
            let busy = state.instances.iter().any(|i| {
                i.name.process_type == "web"
                    && i.addr().is_some_and(|a| self.routes.in_flight(id, a) > 0)
            });
            if busy {
                state.busy_at = now;
            }
            let awake_for = now.saturating_duration_since(state.awake_since);
            let idle = self
                .routes
                .idle_secs(id)
                .map_or(awake_for, |s| Duration::from_secs(s).min(awake_for))
                .min(now.saturating_duration_since(state.busy_at));
            let failed_wake = state.waking && !web_up && awake_for >= boot_timeout;
            if idle >= policy.after || failed_wake {
                due.push(id.clone());
            }
        }
        for id in due {
            self.sleep(&id);
        }
    }

    fn sleep(&mut self, app_id: &str) {
        let shared = self.shared.clone();
        let Some(state) = self.apps.get_mut(app_id) else {
            return;
        };
        state.asleep = Some(kiln_model::Timestamp::now());
        state.waking = false;
        for inst in &state.instances {
            if state.desired.sleeps_with_app(&inst.name.process_type) {
                let name = inst.name.to_string();
                let from = inst.state();
                platform_log(&shared, app_id, &name, "Idling");
                platform_log(
                    &shared,
                    app_id,
                    &name,
                    format!("State changed from {from} to idle"),
                );
            }
        }
        self.reconcile(app_id);
        self.publish(app_id);
    }

    fn wake(&mut self, app_id: &str) {
        let shared = self.shared.clone();
        let Some(state) = self.apps.get_mut(app_id) else {
            return;
        };
        if state.asleep.take().is_none() {
            return;
        }
        state.awake_since = tokio::time::Instant::now();
        state.waking = true;
        for i in 1..=state.desired.web_quantity() {
            let name = DynoName::new("web".to_string(), i).to_string();
            platform_log(&shared, app_id, &name, "Unidling");
            platform_log(
                &shared,
                app_id,
                &name,
                "State changed from idle to starting",
            );
        }
        self.reconcile(app_id);
        self.publish(app_id);
    }

    fn publish(&self, app_id: &str) {
        let Some(state) = self.apps.get(app_id) else {
            return;
        };
        let web_quantity = state.desired.web_quantity();
        let has_web = state
            .desired
            .release
            .as_ref()
            .is_some_and(|r| r.process_types.contains_key("web"));
        let mut backends = Vec::new();
        let mut any_starting = false;
        for inst in state
            .instances
            .iter()
            .filter(|i| i.name.process_type == "web")
        {
            match inst.state() {
                DynoState::Up => {
                    if let Some(addr) = inst.addr() {
                        backends.push(Backend {
                            dyno: inst.name.to_string(),
                            addr,
                        });
                    }
                }
                DynoState::Starting => any_starting = true,
                _ => {}
            }
        }
        let status = if state
            .desired
            .release
            .as_ref()
            .is_none_or(|r| r.process_types.is_empty())
        {
            WebStatus::Blank
        } else if !has_web || web_quantity == 0 {
            WebStatus::NoWebDynos
        } else if !backends.is_empty() {
            WebStatus::Up
        } else if state.asleep.is_some() {
            WebStatus::Asleep
        } else if any_starting || state.waking {
            // A wake that has not brought a dyno up yet is still booting for the router: a
            // held request ends in H20 (boot timeout), as on Heroku, not H10.
            WebStatus::Starting
        } else {
            WebStatus::Crashed
        };
        self.routes.set_backends(app_id, status, backends);
        // A release is live once every web dyno in rotation runs it: from then on no new
        // request reaches an older release, so what the router cached for the app is stale.
        let mut serving = state
            .instances
            .iter()
            .filter(|i| {
                i.name.process_type == "web" && i.state() == DynoState::Up && i.port().is_some()
            })
            .map(|i| i.release_version);
        if let Some(v) = serving.next() {
            if serving.all(|w| w == v) && state.live_release.replace(v) != v {
                self.routes.release_changed(app_id, v);
            }
        }
    }
}

fn list_dynos(state: &AppState) -> Vec<DynoInfo> {
    // During a preboot two instances share a name; `ps` shows the newest, as Heroku does.
    let mut by_name: BTreeMap<DynoName, DynoInfo> = BTreeMap::new();
    for inst in &state.instances {
        let info = inst.info();
        match by_name.get(&inst.name) {
            Some(existing) if existing.created_at > info.created_at => {}
            _ => {
                by_name.insert(inst.name.clone(), info);
            }
        }
    }
    // A sleeping app's formation dynos are listed as idle, since when they slept.
    if let (Some(slept), Some(rel)) = (state.asleep, &state.desired.release) {
        let d = &state.desired;
        for (name, (command, size)) in d.formation_dynos(|t| d.sleeps_with_app(t)) {
            by_name.entry(name.clone()).or_insert_with(|| DynoInfo {
                id: String::new(),
                name: name.to_string(),
                process_type: name.process_type.clone(),
                state: DynoState::Idle,
                command,
                size,
                release_id: rel.release_id.clone(),
                release_version: rel.version,
                created_at: slept,
                updated_at: slept,
                detail: Some(format!("sleeping since {}", slept.rfc3339())),
            });
        }
    }
    let mut out: Vec<DynoInfo> = by_name.into_values().collect();
    for o in &state.one_offs {
        out.push(DynoInfo {
            id: o.id.clone(),
            name: o.name.clone(),
            process_type: o.name.split('.').next().unwrap_or("run").to_string(),
            state: *o.state.borrow(),
            command: o.command.clone(),
            size: o.size,
            release_id: o.release_id.clone(),
            release_version: o.release_version,
            created_at: o.created_at,
            updated_at: *o.updated_at.lock().unwrap_or_else(|e| e.into_inner()),
            detail: None,
        });
    }
    out
}

/// Emits a `heroku[<dyno>]` line.
pub(crate) fn platform_log(shared: &Shared, app_id: &str, dyno: &str, msg: impl Into<String>) {
    let msg = msg.into();
    // Every runtime error the dyno manager reports passes here: count it for the metrics.
    if let Some(code) = msg
        .strip_prefix("Error R")
        .and_then(|r| r.get(..2))
        .and_then(|d| d.parse::<u8>().ok())
        && let Some(m) = shared.meters.get()
    {
        m.dynos(app_id).r_code(code);
    }
    shared.logs.emit(app_id, LogLine::heroku(dyno, msg));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manager whose task has ended says so (the platform answers 503), for every request
    /// that needs an answer from it.
    #[tokio::test]
    async fn a_stopped_manager_says_it_has_stopped() {
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let manager = DynoManager {
            tx,
            config: LifecycleConfig::default(),
            meters: Arc::default(),
        };
        assert!(matches!(
            manager.restart("app", RestartTarget::All).await,
            Err(DynoError::Stopped)
        ));
        assert!(matches!(
            manager.stop("app", RestartTarget::All).await,
            Err(DynoError::Stopped)
        ));
        let req = OneOffRequest {
            app_id: "app".into(),
            command: "true".into(),
            env: Vec::new(),
            size: kiln_model::DynoSize::default(),
            attach: false,
            tty: false,
            user_email: "a@b".into(),
            process_type: "run".into(),
            release: None,
        };
        assert!(matches!(
            manager.run_one_off(req).await,
            Err(DynoError::Stopped)
        ));
        assert!(manager.dynos("app").await.is_empty());
    }
}
