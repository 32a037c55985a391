//! The dyno manager's decisions, on a scripted runtime under tokio's paused clock: boots, the
//! boot timeout (R10), crash restarts and their cool-off, preboot, replacing and scaling,
//! graceful stops (R12), daily cycling, what the router is told, one-offs, sleeping and waking. No container or
//! process is started, and minutes of cool-off pass at once, so each test takes milliseconds.

use kiln_dyno::{
    AppDesired, DeployOutcome, DynoError, DynoManager, LifecycleConfig, OneOffRequest,
    ReleaseDesired, RestartTarget, SleepPolicy,
};
use kiln_model::log::LogSink;
use kiln_model::route::{Backend, DynoRoutes, WebStatus};
use kiln_model::{DynoSize, DynoState, LogLine};
use kiln_runtime::scripted::{Script, ScriptedDyno, ScriptedRuntime};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
const APP: &str = "app-1";

/// What the router was told.
#[derive(Default)]
struct Routes {
    backends: Mutex<Vec<(WebStatus, Vec<Backend>)>>,
    releases: Mutex<Vec<u32>>,
}

impl DynoRoutes for Routes {
    fn set_backends(&self, app_id: &str, status: WebStatus, backends: Vec<Backend>) {
        assert_eq!(app_id, APP);
        self.backends.lock().unwrap().push((status, backends));
    }
    fn release_changed(&self, _app_id: &str, version: u32) {
        self.releases.lock().unwrap().push(version);
    }
}

impl Routes {
    fn last(&self) -> (WebStatus, Vec<Backend>) {
        self.backends
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the router was told something")
    }
    /// The ports of the backends in rotation now.
    fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.last().1.iter().map(|b| b.addr.port()).collect();
        ports.sort();
        ports
    }
}

#[derive(Default)]
struct Logs(Mutex<Vec<LogLine>>);

impl LogSink for Logs {
    fn emit(&self, app_id: &str, line: LogLine) {
        assert_eq!(app_id, APP);
        self.0.lock().unwrap().push(line);
    }
}

impl Logs {
    /// `source[process]: message` of every line so far.
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|l| format!("{}[{}]: {}", l.source, l.process, l.message))
            .collect()
    }
    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

struct Harness {
    manager: DynoManager,
    runtime: Arc<ScriptedRuntime>,
    routes: Arc<Routes>,
    logs: Arc<Logs>,
}

fn config() -> LifecycleConfig {
    LifecycleConfig {
        cycle_jitter: Duration::ZERO,
        ..LifecycleConfig::default()
    }
}

fn harness(plan: impl FnMut(&kiln_runtime::DynoSpec) -> Script + Send + 'static) -> Harness {
    harness_with(config(), plan)
}

fn harness_with(
    config: LifecycleConfig,
    plan: impl FnMut(&kiln_runtime::DynoSpec) -> Script + Send + 'static,
) -> Harness {
    let runtime = ScriptedRuntime::new(plan);
    let routes = Arc::new(Routes::default());
    let logs = Arc::new(Logs::default());
    let manager = DynoManager::start(runtime.clone(), logs.clone(), routes.clone(), config);
    Harness {
        manager,
        runtime,
        routes,
        logs,
    }
}

/// `desired(version, formation)` with one more config var, so that a script can tell releases apart.
fn desired_with(version: u32, formation: &[(&str, u32)], var: &str) -> AppDesired {
    let mut d = desired(version, formation);
    if let Some(release) = d.release.as_mut() {
        release.config.insert(var.into(), "1".into());
    }
    d
}

/// Whether a dyno's environment has `var`.
fn has_var(spec: &kiln_runtime::DynoSpec, var: &str) -> bool {
    spec.env.iter().any(|(k, _)| k == var)
}

/// Release `version` of an app with a web and a worker process type.
fn desired(version: u32, formation: &[(&str, u32)]) -> AppDesired {
    AppDesired {
        app_id: APP.into(),
        app_name: "my-app".into(),
        uid: None,
        release: Some(ReleaseDesired {
            release_id: format!("release-{version}"),
            version,
            slug_dir: "/nonexistent/slug".into(),
            process_types: [
                ("web".to_string(), "./web".to_string()),
                ("worker".to_string(), "./worker".to_string()),
            ]
            .into(),
            config: [("GREETING".to_string(), "hello".to_string())].into(),
            healthcheck: None,
        }),
        formation: formation
            .iter()
            .map(|(t, q)| (t.to_string(), (*q, DynoSize::default())))
            .collect(),
        runtime_metrics: false,
        sleep: None,
    }
}

/// Waits (on the paused clock) until `f` holds; panics after a virtual day.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(24 * 3600);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Harness {
    /// Applies release `version` with `formation` and waits until its deploy is up.
    async fn deploy(&self, version: u32, formation: &[(&str, u32)]) {
        assert_eq!(
            self.manager.apply(desired(version, formation)).wait().await,
            DeployOutcome::Up
        );
    }

    async fn states(&self) -> BTreeMap<String, DynoState> {
        self.manager
            .dynos(APP)
            .await
            .into_iter()
            .map(|d| (d.name, d.state))
            .collect()
    }

    async fn until_state(&self, name: &str, state: DynoState) {
        let deadline = Instant::now() + Duration::from_secs(24 * 3600);
        while self.states().await.get(name) != Some(&state) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name} to be {state}: {:?}",
                self.states().await
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The one dyno started under this name, the `n`th (from 0) if several were.
    fn nth(&self, name: &str, n: usize) -> ScriptedDyno {
        self.runtime.named(name).get(n).cloned().unwrap_or_else(|| {
            panic!(
                "no start #{n} of {name}: {:?}",
                self.runtime
                    .dynos()
                    .iter()
                    .map(|d| d.name().to_string())
                    .collect::<Vec<_>>()
            )
        })
    }
}

fn signal_numbers(d: &ScriptedDyno) -> Vec<i32> {
    d.signals().into_iter().map(|(s, _)| s).collect()
}

#[tokio::test(start_paused = true)]
async fn dynos_start_to_the_formation_with_their_environment() {
    let h = harness(|_| Script::default());
    h.deploy(1, &[("web", 2), ("worker", 3)]).await;
    h.until_state("worker.3", DynoState::Up).await;
    let states = h.states().await;
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["web.1", "web.2", "worker.1", "worker.2", "worker.3"]
    );
    assert!(states.values().all(|s| *s == DynoState::Up), "{states:?}");
    let web = h.nth("web.1", 0);
    assert_eq!(web.env("DYNO"), Some("web.1"));
    assert_eq!(web.env("GREETING"), Some("hello"));
    assert_eq!(web.spec.command, "./web");
    let worker = h.nth("worker.2", 0);
    assert_eq!(worker.env("PORT"), None, "only web dynos get a port");
    // Both web dynos are in rotation, on the ports they were given.
    let mut ports: Vec<u16> = ["web.1", "web.2"]
        .iter()
        .map(|n| h.nth(n, 0).port.unwrap())
        .collect();
    ports.sort();
    assert_eq!(h.routes.last().0, WebStatus::Up);
    assert_eq!(h.routes.ports(), ports);
    assert_eq!(*h.routes.releases.lock().unwrap(), [1]);
    assert_eq!(h.runtime.dynos().len(), 5, "nothing started twice");
}

#[tokio::test(start_paused = true)]
async fn a_web_dyno_is_starting_until_it_binds_its_port() {
    let h = harness(|_| Script {
        bind_after: Some(Duration::from_secs(5)),
        ..Script::default()
    });
    let t0 = Instant::now();
    let deploy = h.manager.apply(desired(1, &[("web", 1)]));
    h.runtime.wait_for_starts(1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.states().await["web.1"], DynoState::Starting);
    assert_eq!(
        h.routes.last(),
        (WebStatus::Starting, Vec::new()),
        "not in rotation before it listens"
    );
    assert_eq!(deploy.wait().await, DeployOutcome::Up);
    assert!(t0.elapsed() >= Duration::from_secs(5));
    assert_eq!(h.routes.ports(), [h.nth("web.1", 0).port.unwrap()]);
    assert_eq!(
        h.logs
            .count("heroku[web.1]: State changed from starting to up"),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn r10_kills_a_web_dyno_that_never_binds_and_starts_it_again() {
    // A short boot timeout: while a web dyno boots, the manager looks at its port every 25 ms
    // of the (paused) clock, and each look reads /proc for real.
    let h = harness_with(
        LifecycleConfig {
            boot_timeout: Duration::from_secs(3),
            ..config()
        },
        |_| Script::never_binds(),
    );
    let deploy = h.manager.apply(desired(1, &[("web", 1)]));
    assert!(matches!(deploy.wait().await, DeployOutcome::Failed(_)));
    let first = h.nth("web.1", 0);
    assert_eq!(first.exited().await, 128 + SIGKILL);
    let (sig, at) = first.signals()[0];
    assert_eq!(sig, SIGKILL);
    assert_eq!((at - first.started_at).as_secs(), 3, "the boot timeout");
    assert!(h.logs.count("heroku[web.1]: Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 3 seconds of launch") >= 1, "{:#?}", h.logs.lines());
    // The first crash is retried at once.
    h.runtime.wait_for_starts(2).await;
    assert_eq!((h.nth("web.1", 1).started_at - at).as_secs(), 0);
}

#[tokio::test(start_paused = true)]
async fn crashes_are_restarted_at_once_then_after_a_growing_cool_off_up_to_the_cap() {
    let cfg = LifecycleConfig {
        backoff_base: Duration::from_secs(10),
        backoff_cap: Duration::from_secs(40),
        ..config()
    };
    let h = harness_with(cfg, |_| Script::exits(Duration::from_secs(1), 1));
    h.manager.apply(desired(1, &[("worker", 1)]));
    let starts = h.runtime.wait_for_starts(6).await;
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1].started_at - w[0].started_at).as_secs())
        .collect();
    // Each run lasts 1 s; the first crash restarts at once, then 10, 20, 40, 40 s of cool-off.
    assert_eq!(gaps, [1, 11, 21, 41, 41]);
    assert_eq!(
        h.logs
            .count("heroku[worker.1]: Process exited with status 1"),
        5
    );
    assert_eq!(
        h.logs.count("Crashed 2 times in a row; restarting in 10s"),
        1
    );
    assert_eq!(
        h.logs.count("Crashed 4 times in a row; restarting in 40s"),
        1
    );
    // While it cools off, `ps` says why and when it comes back.
    let info = h
        .manager
        .dynos(APP)
        .await
        .into_iter()
        .find(|d| d.name == "worker.1")
        .unwrap();
    assert!(matches!(
        info.state,
        DynoState::Crashed | DynoState::Starting | DynoState::Up
    ));
}

#[tokio::test(start_paused = true)]
async fn ps_shows_why_a_crashed_dyno_is_down_and_when_it_returns() {
    let h = harness(|_| Script::exits(Duration::ZERO, 3));
    h.manager.apply(desired(1, &[("worker", 1)]));
    h.runtime.wait_for_starts(2).await;
    h.until_state("worker.1", DynoState::Crashed).await;
    let info = h
        .manager
        .dynos(APP)
        .await
        .into_iter()
        .find(|d| d.name == "worker.1")
        .unwrap();
    assert_eq!(
        info.detail.as_deref(),
        Some("exited with status 3, 2 crashes in a row; next start in 10s")
    );
}

#[tokio::test(start_paused = true)]
async fn a_dyno_that_stayed_up_a_minute_starts_with_a_clean_slate() {
    let runs = Arc::new(Mutex::new(vec![1u64, 1, 120, 1].into_iter()));
    let h = harness(move |_| {
        Script::exits(
            Duration::from_secs(runs.lock().unwrap().next().unwrap_or(3600)),
            1,
        )
    });
    h.manager.apply(desired(1, &[("worker", 1)]));
    let starts = h.runtime.wait_for_starts(5).await;
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1].started_at - w[0].started_at).as_secs())
        .collect();
    // 1 s run, at once; 1 s run, 10 s cool-off; 120 s run: its crash is the first again (at
    // once); 1 s run: the second in a row, 10 s.
    assert_eq!(gaps, [1, 11, 120, 11]);
}

#[tokio::test(start_paused = true)]
async fn preboot_keeps_the_old_web_dyno_serving_until_its_replacement_is_up() {
    let h = harness(|spec| {
        if has_var(spec, "SLOW_BOOT") {
            Script {
                bind_after: Some(Duration::from_secs(2)),
                ..Script::default()
            }
        } else {
            Script::default()
        }
    });
    h.deploy(1, &[("web", 1)]).await;
    let old = h.nth("web.1", 0);
    let deploy = h.manager.apply(desired_with(2, &[("web", 1)], "SLOW_BOOT"));
    h.runtime.wait_for_starts(2).await;
    tokio::time::sleep(Duration::from_millis(1900)).await;
    // The new dyno is booting: the old one still serves, untouched.
    assert!(old.signals().is_empty());
    assert_eq!(h.routes.ports(), [old.port.unwrap()]);
    assert_eq!(deploy.wait().await, DeployOutcome::Up);
    let new = h.nth("web.1", 1);
    assert_eq!(old.exited().await, 0);
    assert_eq!(signal_numbers(&old), [SIGTERM]);
    assert!(
        old.signals()[0].1 >= new.started_at + Duration::from_secs(2),
        "SIGTERM only once the new dyno was up"
    );
    assert_eq!(h.routes.ports(), [new.port.unwrap()]);
    // The router's cache is told once every dyno in rotation runs v2.
    assert_eq!(*h.routes.releases.lock().unwrap(), [1, 2]);
    assert_eq!(h.states().await["web.1"], DynoState::Up);
}

#[tokio::test(start_paused = true)]
async fn a_replacement_that_crashes_while_booting_leaves_the_old_dyno_serving() {
    let h = harness(|spec| {
        if has_var(spec, "BROKEN") {
            Script {
                bind_after: None,
                exit_after: Some((Duration::from_secs(2), 1)),
                ..Script::default()
            }
        } else {
            Script::default()
        }
    });
    h.deploy(1, &[("web", 1)]).await;
    let old = h.nth("web.1", 0);
    assert_eq!(
        h.manager
            .apply(desired_with(2, &[("web", 1)], "BROKEN"))
            .wait()
            .await,
        DeployOutcome::Failed("a new web dyno crashed while booting".into())
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        old.signals().is_empty(),
        "the old dyno keeps serving: {:?}",
        old.signals()
    );
    assert_eq!(old.exit_status(), None);
    assert!(h.routes.ports().contains(&old.port.unwrap()));
    assert_eq!(*h.routes.releases.lock().unwrap(), [1]);
}

#[tokio::test(start_paused = true)]
async fn workers_are_replaced_without_preboot() {
    let h = harness(|_| Script::default());
    h.manager.apply(desired(1, &[("worker", 1)]));
    h.until_state("worker.1", DynoState::Up).await;
    let old = h.nth("worker.1", 0);
    h.manager.apply(desired(2, &[("worker", 1)]));
    assert_eq!(old.exited().await, 0);
    let new = h.nth("worker.1", 1);
    assert_eq!(signal_numbers(&old), [SIGTERM]);
    assert_eq!(
        old.signals()[0].1,
        new.started_at,
        "stopped as its replacement starts"
    );
    h.until_state("worker.1", DynoState::Up).await;
    assert_eq!(h.manager.dynos(APP).await[0].release_version, 2);
}

#[tokio::test(start_paused = true)]
async fn ps_stop_stops_a_web_dyno_without_waiting_for_a_replacement() {
    let h = harness(|_| Script::default());
    h.deploy(1, &[("web", 1)]).await;
    let old = h.nth("web.1", 0);
    h.runtime.set_plan(|_| Script::never_binds());
    assert_eq!(
        h.manager
            .stop(APP, RestartTarget::Dyno("web.1".into()))
            .await
            .unwrap(),
        1
    );
    // Stopped although its replacement never binds (a restart would have waited for it).
    assert_eq!(old.exited().await, 0);
    assert_eq!(signal_numbers(&old), [SIGTERM]);
    h.runtime.wait_for_starts(2).await;
}

#[tokio::test(start_paused = true)]
async fn restarts_hit_the_dynos_they_name() {
    let h = harness(|_| Script::default());
    h.deploy(1, &[("web", 2), ("worker", 2)]).await;
    h.until_state("worker.2", DynoState::Up).await;
    let restart = |target| h.manager.restart(APP, target);
    assert_eq!(
        restart(RestartTarget::Type("worker".into())).await.unwrap(),
        2
    );
    h.runtime.wait_for_starts(6).await;
    assert_eq!(h.runtime.named("worker.1").len(), 2);
    assert_eq!(h.runtime.named("web.1").len(), 1, "web dynos untouched");
    assert_eq!(
        restart(RestartTarget::Dyno("web.2".into())).await.unwrap(),
        1
    );
    h.runtime.wait_for_starts(7).await;
    assert_eq!(h.runtime.named("web.2").len(), 2);
    assert_eq!(h.runtime.named("web.1").len(), 1);
    assert!(matches!(
        restart(RestartTarget::Dyno("web.9".into())).await,
        Err(DynoError::NoSuchDyno)
    ));
    assert!(matches!(
        restart(RestartTarget::Type("clock".into())).await,
        Err(DynoError::NoSuchDyno)
    ));
    assert_eq!(restart(RestartTarget::All).await.unwrap(), 4);
    h.runtime.wait_for_starts(11).await;
}

#[tokio::test(start_paused = true)]
async fn scaling_down_stops_the_surplus_and_zero_web_dynos_is_told_to_the_router() {
    let h = harness(|_| Script::default());
    h.deploy(1, &[("web", 3)]).await;
    assert_eq!(h.routes.ports().len(), 3);
    h.manager.apply(desired(1, &[("web", 1)]));
    for name in ["web.2", "web.3"] {
        assert_eq!(h.nth(name, 0).exited().await, 0);
        assert_eq!(signal_numbers(&h.nth(name, 0)), [SIGTERM]);
    }
    assert!(h.nth("web.1", 0).signals().is_empty(), "web.1 stays");
    until("one backend", || {
        h.routes.ports() == [h.nth("web.1", 0).port.unwrap()]
    })
    .await;
    h.manager.apply(desired(1, &[("web", 0)]));
    assert_eq!(h.nth("web.1", 0).exited().await, 0);
    until("no web dynos", || {
        h.routes.last() == (WebStatus::NoWebDynos, Vec::new())
    })
    .await;
    assert!(h.states().await.is_empty());
    assert_eq!(h.runtime.dynos().len(), 3, "scaling down starts nothing");
}

#[tokio::test(start_paused = true)]
async fn a_dyno_that_ignores_sigterm_is_killed_after_the_exit_timeout() {
    let h = harness(|_| Script {
        on_sigterm: None,
        ..Script::default()
    });
    h.manager.apply(desired(1, &[("worker", 1)]));
    h.until_state("worker.1", DynoState::Up).await;
    h.manager.apply(desired(1, &[("worker", 0)]));
    let d = h.nth("worker.1", 0);
    assert_eq!(d.exited().await, 128 + SIGKILL);
    let signals = d.signals();
    assert_eq!(
        signals.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [SIGTERM, SIGKILL]
    );
    assert_eq!(
        (signals[1].1 - signals[0].1).as_secs(),
        30,
        "Heroku's 30 s exit timeout"
    );
    until("R12 logged", || h.logs.count("heroku[worker.1]: Error R12 (Exit timeout) -> Process failed to exit within 30 seconds of SIGTERM") == 1).await;
    assert_eq!(
        h.runtime.dynos().len(),
        1,
        "a stopped dyno is not restarted"
    );
}

#[tokio::test(start_paused = true)]
async fn dynos_are_cycled_daily_with_preboot_for_web() {
    let h = harness(|_| Script::default());
    h.deploy(1, &[("web", 1), ("worker", 1)]).await;
    let old_web = h.nth("web.1", 0);
    let starts = h.runtime.wait_for_starts(4).await;
    let cycled_web = &starts
        .iter()
        .filter(|d| d.name() == "web.1")
        .nth(1)
        .expect("web.1 cycled")
        .clone();
    assert_eq!(
        (cycled_web.started_at - old_web.started_at).as_secs(),
        24 * 3600
    );
    assert_eq!(old_web.exited().await, 0);
    assert!(
        old_web.signals()[0].1 >= cycled_web.started_at,
        "the old web dyno stops once its replacement is up"
    );
    assert_eq!(h.logs.count("heroku[web.1]: Cycling"), 1);
    assert_eq!(h.logs.count("heroku[worker.1]: Cycling"), 1);
    assert_eq!(h.nth("worker.1", 1).env("DYNO"), Some("worker.1"));
}

#[tokio::test(start_paused = true)]
async fn a_start_the_runtime_refuses_is_r99_and_is_retried() {
    let failures = Arc::new(Mutex::new(1));
    let h = harness(move |_| {
        let mut left = failures.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            Script {
                spawn: Err("no cgroup for you".into()),
                ..Script::default()
            }
        } else {
            Script::default()
        }
    });
    h.manager.apply(desired(1, &[("worker", 1)]));
    h.until_state("worker.1", DynoState::Up).await;
    assert_eq!(h.logs.count("heroku[worker.1]: Error R99 (Platform error) -> could not start dyno worker.1: no cgroup for you"), 1, "{:#?}", h.logs.lines());
    assert_eq!(h.runtime.dynos().len(), 1, "the refused start made no dyno");
}

#[tokio::test(start_paused = true)]
async fn a_command_that_cannot_start_is_r99_with_the_reason() {
    let h = harness(|_| Script {
        boot: Err("mounting /app: no such slug".into()),
        ..Script::default()
    });
    h.manager.apply(desired(1, &[("worker", 1)]));
    h.runtime.wait_for_starts(2).await;
    until("R99 logged", || h.logs.count("heroku[worker.1]: Error R99 (Platform error) -> could not start dyno worker.1: mounting /app: no such slug") >= 1).await;
    assert!(
        h.runtime
            .dynos()
            .iter()
            .all(|d| d.exit_status().is_some() || d.signals().is_empty())
    );
}

#[tokio::test(start_paused = true)]
async fn the_router_is_told_blank_starting_up_and_crashed() {
    let h = harness(|_| Script {
        bind_after: Some(Duration::from_secs(1)),
        exit_after: Some((Duration::from_secs(10), 1)),
        ..Script::default()
    });
    let mut blank = desired(1, &[("web", 1)]);
    blank.release = None;
    h.manager.apply(blank).wait().await;
    assert_eq!(h.routes.last(), (WebStatus::Blank, Vec::new()));
    h.manager.apply(desired(1, &[("web", 1)]));
    h.runtime.wait_for_starts(1).await;
    until("starting", || h.routes.last().0 == WebStatus::Starting).await;
    until("up", || h.routes.last().0 == WebStatus::Up).await;
    // It crashes twice; in its cool-off nothing serves.
    h.runtime.wait_for_starts(2).await;
    until("crashed", || {
        h.routes.last() == (WebStatus::Crashed, Vec::new())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_new_size_or_command_replaces_the_dyno() {
    let h = harness(|_| Script::default());
    h.manager.apply(desired(1, &[("worker", 1)]));
    h.until_state("worker.1", DynoState::Up).await;
    let mut bigger = desired(1, &[("worker", 1)]);
    bigger
        .formation
        .insert("worker".into(), (1, DynoSize::PerformanceL));
    h.manager.apply(bigger.clone());
    let starts = h.runtime.wait_for_starts(2).await;
    assert_eq!(
        starts[1].spec.limits.memory_bytes,
        Some(DynoSize::PerformanceL.memory_mb() * 1024 * 1024)
    );
    assert_eq!(signal_numbers(&starts[0]), [SIGTERM]);
    let mut other = bigger;
    other
        .release
        .as_mut()
        .unwrap()
        .process_types
        .insert("worker".into(), "./worker --fast".into());
    h.manager.apply(other);
    let starts = h.runtime.wait_for_starts(3).await;
    assert_eq!(starts[2].spec.command, "./worker --fast");
}

#[tokio::test(start_paused = true)]
async fn removing_an_app_stops_its_dynos_and_takes_it_out_of_rotation() {
    let h = harness(|_| Script::default());
    h.deploy(1, &[("web", 2), ("worker", 1)]).await;
    h.until_state("worker.1", DynoState::Up).await;
    h.manager.remove_app(APP).await;
    // Returned once every dyno has exited, each after SIGTERM.
    for d in h.runtime.dynos() {
        assert_eq!(d.exit_status(), Some(0), "{}", d.name());
        assert_eq!(signal_numbers(&d), [SIGTERM]);
    }
    assert_eq!(h.routes.last(), (WebStatus::NoWebDynos, Vec::new()));
    assert!(h.manager.dynos(APP).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_dyno_gracefully() {
    let h = harness(|spec| {
        if spec.name == "worker.1" {
            Script {
                on_sigterm: Some((Duration::from_secs(5), 0)),
                ..Script::default()
            }
        } else {
            Script::default()
        }
    });
    h.deploy(1, &[("web", 1), ("worker", 1)]).await;
    h.until_state("worker.1", DynoState::Up).await;
    let t0 = Instant::now();
    h.manager.shutdown().await;
    assert!(
        t0.elapsed() >= Duration::from_secs(5),
        "shutdown waits for the slowest dyno"
    );
    for d in h.runtime.dynos() {
        assert_eq!(signal_numbers(&d), [SIGTERM], "{}", d.name());
        assert_eq!(d.exit_status(), Some(0));
    }
    assert!(matches!(
        h.manager.restart(APP, RestartTarget::All).await,
        Err(DynoError::Stopped)
    ));
}

#[tokio::test(start_paused = true)]
async fn dyno_output_goes_to_the_log_stream() {
    let h = harness(|_| Script {
        output: vec!["hello from the dyno".into(), "a second line".into()],
        ..Script::default()
    });
    h.manager.apply(desired(1, &[("worker", 1)]));
    until("output logged", || {
        h.logs.count("app[worker.1]: a second line") == 1
    })
    .await;
    let lines = h.logs.lines();
    let start = lines
        .iter()
        .position(|l| l == "heroku[worker.1]: Starting process with command `./worker`")
        .expect("start logged");
    let hello = lines
        .iter()
        .position(|l| l == "app[worker.1]: hello from the dyno")
        .expect("output logged");
    assert!(start < hello);
}

#[tokio::test(start_paused = true)]
async fn one_off_dynos_are_named_run_n_and_leave_ps_when_done() {
    let h = harness(|spec| {
        if spec.name.starts_with("run.") {
            Script {
                output: vec!["migrated".into()],
                ..Script::exits(Duration::from_secs(3), 0)
            }
        } else {
            Script::default()
        }
    });
    h.manager.apply(desired(1, &[("web", 0)])).wait().await;
    let req = OneOffRequest {
        app_id: APP.into(),
        command: "rake db:migrate".into(),
        env: Vec::new(),
        size: DynoSize::default(),
        attach: false,
        tty: false,
        user_email: "me@example.com".into(),
        process_type: "run".into(),
        release: None,
    };
    let handle = h.manager.run_one_off(req).await.unwrap();
    assert!(
        handle.name.starts_with("run.")
            && handle.name[4..]
                .parse::<u32>()
                .is_ok_and(|n| (1000..10000).contains(&n)),
        "{}",
        handle.name
    );
    let ps = h.manager.dynos(APP).await;
    assert_eq!(
        ps.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        [handle.name.as_str()]
    );
    assert_eq!(ps[0].command, "rake db:migrate");
    assert_eq!(handle.exit.await.unwrap(), 0);
    until("gone from ps", || {
        h.logs.count(&format!("app[{}]: migrated", handle.name)) == 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.manager.dynos(APP).await.is_empty() {
        assert!(Instant::now() < deadline, "the one-off stayed in ps");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Without a release there is nothing to run.
    let mut none = desired(1, &[]);
    none.release = None;
    h.manager.apply(none).wait().await;
    let req = OneOffRequest {
        app_id: APP.into(),
        command: "true".into(),
        env: Vec::new(),
        size: DynoSize::default(),
        attach: false,
        tty: false,
        user_email: "me@example.com".into(),
        process_type: "run".into(),
        release: None,
    };
    assert!(matches!(
        h.manager.run_one_off(req).await,
        Err(DynoError::NoRelease)
    ));
}

/// `desired` for an app that sleeps after a minute without a request.
fn sleepy(formation: &[(&str, u32)], workers_stay: bool) -> AppDesired {
    let mut d = desired(1, formation);
    d.sleep = Some(SleepPolicy {
        after: Duration::from_secs(60),
        workers_stay,
    });
    d
}

#[tokio::test(start_paused = true)]
async fn an_idle_app_sleeps_and_a_burst_of_wakes_starts_each_dyno_once() {
    let h = harness(|_| Script::default());
    assert_eq!(
        h.manager
            .apply(sleepy(&[("web", 1), ("worker", 1)], false))
            .wait()
            .await,
        DeployOutcome::Up
    );
    h.until_state("worker.1", DynoState::Up).await;
    let started = Instant::now();
    until("the app to sleep", || {
        h.routes.last().0 == WebStatus::Asleep
    })
    .await;
    let slept_after = started.elapsed().as_secs();
    assert!(
        (59..=62).contains(&slept_after),
        "slept after {slept_after} s"
    );
    // Its dynos were stopped gracefully (after the router's drain), and ps shows them idle.
    until("the dynos to be stopped", || {
        !h.nth("web.1", 0).signals().is_empty() && !h.nth("worker.1", 0).signals().is_empty()
    })
    .await;
    assert_eq!(signal_numbers(&h.nth("web.1", 0))[0], SIGTERM);
    assert_eq!(signal_numbers(&h.nth("worker.1", 0))[0], SIGTERM);
    let states = h.states().await;
    assert_eq!(
        states,
        [
            ("web.1".to_string(), DynoState::Idle),
            ("worker.1".to_string(), DynoState::Idle)
        ]
        .into()
    );
    assert_eq!(
        h.logs.count("heroku[web.1]: Idling"),
        1,
        "{:#?}",
        h.logs.lines()
    );
    assert_eq!(
        h.logs.count("heroku[web.1]: State changed from up to idle"),
        1
    );
    // A burst of requests: fifty wakes start each dyno once.
    for _ in 0..50 {
        h.manager.wake(APP);
    }
    h.until_state("web.1", DynoState::Up).await;
    h.until_state("worker.1", DynoState::Up).await;
    assert_eq!(h.runtime.named("web.1").len(), 2);
    assert_eq!(h.runtime.named("worker.1").len(), 2);
    assert_eq!(h.logs.count("heroku[web.1]: Unidling"), 1);
    assert_eq!(h.routes.last().0, WebStatus::Up);
    // A wake is no crash: nothing waits for a cool-off.
    let web = h
        .manager
        .dynos(APP)
        .await
        .into_iter()
        .find(|d| d.name == "web.1")
        .unwrap();
    assert_eq!(web.detail, None);
    // A wake while awake does nothing.
    h.manager.wake(APP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.runtime.named("web.1").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn worker_dynos_may_stay_up_while_the_web_sleeps() {
    let h = harness(|_| Script::default());
    h.manager
        .apply(sleepy(&[("web", 1), ("worker", 1)], true))
        .wait()
        .await;
    until("the app to sleep", || {
        h.routes.last().0 == WebStatus::Asleep
    })
    .await;
    let states = h.states().await;
    assert_eq!(states.get("web.1"), Some(&DynoState::Idle));
    assert_eq!(states.get("worker.1"), Some(&DynoState::Up));
    assert!(h.nth("worker.1", 0).signals().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wake_that_cannot_boot_is_held_as_booting_and_sleeps_again() {
    // The first start boots; after that the release no longer binds its port.
    let mut starts = 0;
    let h = harness_with(
        LifecycleConfig {
            boot_timeout: Duration::from_secs(3),
            ..config()
        },
        move |_| {
            starts += 1;
            if starts == 1 {
                Script::default()
            } else {
                Script::never_binds()
            }
        },
    );
    h.manager.apply(sleepy(&[("web", 1)], false)).wait().await;
    until("the app to sleep", || {
        h.routes.last().0 == WebStatus::Asleep
    })
    .await;
    let told_before = h.routes.backends.lock().unwrap().len();
    h.manager.wake(APP);
    until("the app to sleep again", || {
        h.logs.count("heroku[web.1]: Idling") == 2
    })
    .await;
    until("the router to be told", || {
        h.routes.last().0 == WebStatus::Asleep
    })
    .await;
    // While it tried, the router held requests (booting), never refused them as crashed (H10):
    // they end in H20 when its hold runs out.
    let told: Vec<WebStatus> = h.routes.backends.lock().unwrap()[told_before..]
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert!(told.contains(&WebStatus::Starting), "{told:?}");
    assert!(!told.contains(&WebStatus::Crashed), "{told:?}");
    assert!(h.logs.count("Error R10") >= 1, "{:#?}", h.logs.lines());
    assert_eq!(h.states().await.get("web.1"), Some(&DynoState::Idle));
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_an_app_that_may_sleep_starts_asleep_until_a_request() {
    let h = harness(|_| Script::default());
    h.manager
        .restore(sleepy(&[("web", 1), ("worker", 1)], false));
    until("the router to be told", || {
        h.routes
            .backends
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(s, _)| *s == WebStatus::Asleep)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.runtime.dynos().is_empty(), "nothing booted");
    assert_eq!(h.states().await.get("web.1"), Some(&DynoState::Idle));
    h.manager.wake(APP);
    h.until_state("web.1", DynoState::Up).await;
    // An app that does not sleep starts as usual when restored.
    let h = harness(|_| Script::default());
    h.manager.restore(desired(1, &[("web", 1)]));
    h.until_state("web.1", DynoState::Up).await;
}
