//! One dyno instance and the task that supervises it for its whole life: start, boot watch
//! (R10), output relay, memory watch (R14, R15), crash restarts with cool-off, graceful stop
//! (R12).

use crate::{DynoInfo, Shared, platform_log, ports};
use kiln_model::config::ConfigVars;
use kiln_model::{DynoName, DynoSize, DynoState, LogLine, Timestamp};
use kiln_runtime::{AppDir, DynoSpec, Limits, MemoryStats};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock throughout, so a paused clock (the reconciler's tests) governs every timeout.
use tokio::sync::watch;
use tokio::time::Instant;

/// What to run for one dyno instance.
#[derive(Debug, Clone)]
pub(crate) struct InstanceCtl {
    pub app_id: String,
    pub uid: Option<u32>,
    pub name: DynoName,
    pub command: String,
    pub size: DynoSize,
    pub release_id: String,
    pub release_version: u32,
    pub slug_dir: PathBuf,
    pub config: ConfigVars,
    pub healthcheck: Option<crate::HealthCheck>,
    /// Log load and memory samples (`log-runtime-metrics`).
    pub runtime_metrics: bool,
}

#[derive(Debug, Default)]
struct Meta {
    port: Option<u16>,
    /// The dyno's address: its own network's, or the host's loopback when it shares it.
    ip: Option<std::net::IpAddr>,
    updated_at: Timestamp,
    detail: Option<String>,
}

pub(crate) struct Instance {
    pub id: String,
    pub name: DynoName,
    pub command: String,
    pub size: DynoSize,
    pub release_id: String,
    pub release_version: u32,
    /// Marked by `ps:restart`, `ps:stop` or cycling: reconcile replaces it.
    pub outdated: bool,
    /// `ps:stop`: stop it before its replacement starts (no preboot).
    pub stop_first: bool,
    created_at: Timestamp,
    state: watch::Receiver<DynoState>,
    meta: Arc<Mutex<Meta>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    pub fn spawn(shared: Arc<Shared>, ctl: InstanceCtl) -> Instance {
        let id = uuid::Uuid::new_v4().to_string();
        let (state_tx, state_rx) = watch::channel(DynoState::Starting);
        let (stop_tx, stop_rx) = watch::channel(false);
        let meta = Arc::new(Mutex::new(Meta {
            port: None,
            ip: None,
            updated_at: Timestamp::now(),
            detail: None,
        }));
        let inst = Instance {
            id: id.clone(),
            name: ctl.name.clone(),
            command: ctl.command.clone(),
            size: ctl.size,
            release_id: ctl.release_id.clone(),
            release_version: ctl.release_version,
            outdated: false,
            stop_first: false,
            created_at: Timestamp::now(),
            state: state_rx,
            meta: meta.clone(),
            stop: stop_tx,
            task: tokio::spawn(supervise(shared, ctl, id, state_tx, meta, stop_rx)),
        };
        inst
    }

    pub fn state(&self) -> DynoState {
        *self.state.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<DynoState> {
        self.state.clone()
    }

    pub fn port(&self) -> Option<u16> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).port
    }

    /// Where the router reaches the dyno's `$PORT`.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        let m = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        let ip =
            m.ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        m.port.map(|p| std::net::SocketAddr::new(ip, p))
    }

    pub fn info(&self) -> DynoInfo {
        // One lock for both fields: two guards in one expression would deadlock.
        let (updated_at, detail) = {
            let m = self.meta.lock().unwrap_or_else(|e| e.into_inner());
            (m.updated_at, m.detail.clone())
        };
        DynoInfo {
            id: self.id.clone(),
            name: self.name.to_string(),
            process_type: self.name.process_type.clone(),
            state: self.state(),
            command: self.command.clone(),
            size: self.size,
            release_id: self.release_id.clone(),
            release_version: self.release_version,
            created_at: self.created_at,
            updated_at,
            detail,
        }
    }

    /// Asks the supervisor to stop the dyno gracefully; the handle ends when it has.
    pub fn stop(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

enum Ending {
    Exited(i32),
    Stopped,
}

async fn supervise(
    shared: Arc<Shared>,
    ctl: InstanceCtl,
    id: String,
    state: watch::Sender<DynoState>,
    meta: Arc<Mutex<Meta>>,
    mut stop: watch::Receiver<bool>,
) {
    let dyno = ctl.name.to_string();
    let is_web = ctl.name.process_type == "web";
    let cfg = shared.config.clone();
    let mut crashes = 0u32;
    let set_state = |s: DynoState, port: Option<u16>| {
        let prev = *state.borrow();
        {
            let mut m = meta.lock().unwrap_or_else(|e| e.into_inner());
            m.updated_at = Timestamp::now();
            m.port = port;
        }
        state.send_replace(s);
        if prev != s {
            platform_log(
                &shared,
                &ctl.app_id,
                &dyno,
                format!("State changed from {prev} to {s}"),
            );
        }
        shared.notify(&ctl.app_id);
    };

    loop {
        if *stop.borrow() {
            state.send_replace(DynoState::Down);
            return;
        }
        let port = if is_web {
            match shared.ports.allocate() {
                Ok(p) => Some(p),
                Err(e) => {
                    platform_log(
                        &shared,
                        &ctl.app_id,
                        &dyno,
                        format!("Error R99 (Platform error) -> no port available: {e}"),
                    );
                    None
                }
            }
        } else {
            None
        };
        if *state.borrow() != DynoState::Starting {
            set_state(DynoState::Starting, port);
        } else {
            meta.lock().unwrap_or_else(|e| e.into_inner()).port = port;
        }
        platform_log(
            &shared,
            &ctl.app_id,
            &dyno,
            format!("Starting process with command `{}`", ctl.command),
        );
        let started_at = Instant::now();
        meta.lock().unwrap_or_else(|e| e.into_inner()).detail = None;
        let set_ip = |ip: std::net::IpAddr| {
            meta.lock().unwrap_or_else(|e| e.into_inner()).ip = Some(ip);
        };
        let ending = run_once(&shared, &ctl, &id, port, &mut stop, &set_state, &set_ip).await;
        if let Some(p) = port {
            shared.ports.release(p);
        }
        let code = match ending {
            Ending::Stopped => {
                set_state(DynoState::Down, None);
                return;
            }
            Ending::Exited(code) => {
                meta.lock().unwrap_or_else(|e| e.into_inner()).detail =
                    Some(format!("exited with status {code}"));
                set_state(DynoState::Crashed, None);
                code
            }
        };
        // A dyno that stayed up a while starts with a clean slate.
        if started_at.elapsed() >= Duration::from_secs(60) {
            crashes = 0;
        }
        crashes += 1;
        if let Some(m) = shared.meters.get() {
            m.dynos(&ctl.app_id).restart(&dyno);
        }
        let delay = if crashes <= 1 {
            Duration::ZERO
        } else {
            backoff(cfg.backoff_base, cfg.backoff_cap, crashes - 2)
        };
        if !delay.is_zero() {
            // Why the dyno is down and when it comes back, for `ps` and the log stream.
            let detail = format!(
                "exited with status {code}, {crashes} crashes in a row; next start in {}",
                human(delay)
            );
            meta.lock().unwrap_or_else(|e| e.into_inner()).detail = Some(detail.clone());
            platform_log(
                &shared,
                &ctl.app_id,
                &dyno,
                format!(
                    "Crashed {crashes} times in a row; restarting in {}",
                    human(delay)
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

pub(crate) fn backoff(base: Duration, cap: Duration, step: u32) -> Duration {
    let mult = 1u64.checked_shl(step.min(30)).unwrap_or(u64::MAX);
    let d = base
        .checked_mul(mult.min(u32::MAX as u64) as u32)
        .unwrap_or(cap);
    d.min(cap)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Runs the dyno once, until it exits or is stopped.
async fn run_once(
    shared: &Arc<Shared>,
    ctl: &InstanceCtl,
    id: &str,
    port: Option<u16>,
    stop: &mut watch::Receiver<bool>,
    set_state: &impl Fn(DynoState, Option<u16>),
    set_ip: &impl Fn(std::net::IpAddr),
) -> Ending {
    let dyno = ctl.name.to_string();
    let cfg = &shared.config;
    let mut env: Vec<(String, String)> = ctl
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("DYNO".into(), dyno.clone()));
    if let Some(p) = port {
        env.push(("PORT".into(), p.to_string()));
    }
    let mb = ctl.size.memory_mb() * 1024 * 1024;
    let spec = DynoSpec {
        id: uuid::Uuid::new_v4().to_string(),
        app_id: ctl.app_id.clone(),
        name: dyno.clone(),
        command: ctl.command.clone(),
        env,
        app_dir: AppDir::Slug(ctl.slug_dir.clone()),
        binds: Vec::new(),
        uid: ctl.uid,
        limits: Limits {
            memory_bytes: Some(mb),
            memory_hard_bytes: Some(mb * 2),
            max_processes: Some(ctl.size.max_processes()),
            cpu_share: Some(ctl.size.cpu_share()),
        },
        stdin: false,
        tty: false,
        ..Default::default()
    };
    let mut d = match shared.runtime.start(spec) {
        Ok(d) => d,
        Err(e) => {
            platform_log(
                shared,
                &ctl.app_id,
                &dyno,
                format!("Error R99 (Platform error) -> {e}"),
            );
            return Ending::Exited(255);
        }
    };
    let pumps = [
        pump(
            shared.clone(),
            ctl.app_id.clone(),
            dyno.clone(),
            d.stdout.take(),
        ),
        pump(
            shared.clone(),
            ctl.app_id.clone(),
            dyno.clone(),
            d.stderr.take(),
        ),
    ];
    let signaller = d.signaller();
    // Known before the dyno can be up, so the router never has a stale address for it.
    let ip = d.ip();
    set_ip(ip);
    // Its sockets are seen from a process in its network namespace.
    let netns_pid = d.pid();
    if let Err(e) = d.started().await {
        platform_log(
            shared,
            &ctl.app_id,
            &dyno,
            format!("Error R99 (Platform error) -> {e}"),
        );
        let code = d.wait().await;
        return Ending::Exited(code);
    }
    let boot_started = Instant::now();
    let mut up = false;
    if !ctl.name.process_type.eq("web") {
        set_state(DynoState::Up, port);
        up = true;
    }
    let probe = d.memory_probe();
    let mut memory = MemoryWatch::new(mb);
    let exit = d.wait();
    tokio::pin!(exit);
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mem_tick = tokio::time::interval(MEMORY_SAMPLE);
    mem_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The app's metrics: every memory sample is also the dyno's point for the minute.
    let meter = shared.meters.get().map(|m| m.dynos(&ctl.app_id));
    // log-runtime-metrics: the load is sampled with the memory, the lines logged less often.
    let metrics_on = ctl.runtime_metrics && probe.is_some();
    let mut load = LoadAverage::default();
    let mut metrics_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + cfg.metrics_every,
        cfg.metrics_every,
    );
    metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let log = |msg: String| platform_log(shared, &ctl.app_id, &dyno, msg);
    let jitter = cfg.cycle_jitter.as_millis() as u64;
    let cycle_at = tokio::time::Instant::now()
        + cfg.cycle_interval
        + Duration::from_millis(if jitter == 0 {
            0
        } else {
            fastrand::u64(0..jitter)
        });
    let mut cycling = false;
    let mut last_check: Option<Instant> = None;
    let ending = loop {
        tokio::select! {
            code = &mut exit => {
                // The kernel may have OOM-killed the command itself between two samples: the
                // final reading still tells, and R15 comes before the exit, as on Heroku.
                if let Some(stats) = probe.as_ref().and_then(|p| p.read())
                    && memory.observe(stats, Instant::now()) == MemoryVerdict::R15
                {
                    log("Error R15 (Memory quota vastly exceeded)".into());
                    log("Stopping process with SIGKILL".into());
                }
                break Ending::Exited(code)
            }
            _ = stop.changed() => break Ending::Stopped,
            _ = metrics_tick.tick(), if metrics_on => {
                // The memory as it is now; the load as the 2 s samples have averaged it.
                let detail = probe.as_ref().and_then(|p| p.cgroup().memory_detail());
                for line in runtime_metrics(&dyno, &ctl.app_id, id, &load, detail, mb) {
                    log(line);
                }
            }
            _ = mem_tick.tick(), if probe.is_some() => {
                // The load, once per sample, for whichever wants it.
                if let Some(p) = probe.as_ref().filter(|_| metrics_on || meter.is_some()) {
                    let runnable = p.cgroup().runnable_threads();
                    load.sample(runnable, Instant::now());
                    if let Some(m) = &meter {
                        let detail = p.cgroup().memory_detail().unwrap_or_default();
                        m.sample(&dyno, kiln_model::meter::DynoSample {
                            rss_bytes: detail.rss_bytes,
                            swap_bytes: detail.swap_bytes,
                            quota_bytes: mb,
                            load: runnable as f64,
                        });
                    }
                }
                let Some(stats) = probe.as_ref().and_then(|p| p.read()) else { continue };
                match memory.observe(stats, Instant::now()) {
                    MemoryVerdict::Fine => {}
                    MemoryVerdict::R14 { usage } => {
                        log(memory_line(usage, mb));
                        log("Error R14 (Memory quota exceeded)".into());
                    }
                    MemoryVerdict::R15 => {
                        log("Error R15 (Memory quota vastly exceeded)".into());
                        log("Stopping process with SIGKILL".into());
                        signaller.kill();
                        let code = (&mut exit).await;
                        break Ending::Exited(code);
                    }
                }
            }
            _ = tokio::time::sleep_until(cycle_at), if up && !cycling => {
                // Daily cycling: the manager starts a replacement (web: beside it) and then
                // stops this one.
                cycling = true;
                log("Cycling".into());
                let _ = shared.changed.send(crate::Command::Cycle(ctl.app_id.clone(), id.to_string()));
            }
            _ = tick.tick(), if !up => {
                let bound = port.is_some_and(|p| ports::is_listening_in(netns_pid, p));
                let healthy = match (&ctl.healthcheck, port) {
                    (Some(hc), Some(p)) if bound => {
                        if last_check.is_none_or(|t: Instant| t.elapsed() >= Duration::from_millis(500)) {
                            last_check = Some(Instant::now());
                            health_ok(std::net::SocketAddr::new(ip, p), hc).await
                        } else {
                            false
                        }
                    }
                    _ => bound,
                };
                if healthy {
                    up = true;
                    set_state(DynoState::Up, port);
                } else if boot_started.elapsed() >= cfg.boot_timeout {
                    match (&ctl.healthcheck, bound) {
                        (Some(hc), true) => platform_log(shared, &ctl.app_id, &dyno, format!("Error R10 (Boot timeout) -> Web process did not pass its health check (GET {}) within {} seconds of launch", hc.path, cfg.boot_timeout.as_secs())),
                        _ => platform_log(shared, &ctl.app_id, &dyno, format!("Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} seconds of launch", cfg.boot_timeout.as_secs())),
                    }
                    platform_log(shared, &ctl.app_id, &dyno, "Stopping process with SIGKILL");
                    signaller.kill();
                    let code = (&mut exit).await;
                    break Ending::Exited(code);
                }
            }
        }
    };
    let ending = match ending {
        Ending::Stopped => {
            // A web dyno has just left the router's table: let the requests it is serving
            // finish before it hears SIGTERM, so replacing dynos drops nothing.
            if let Some(p) = port.filter(|_| up) {
                drain(
                    shared,
                    &ctl.app_id,
                    std::net::SocketAddr::new(ip, p),
                    cfg,
                    &mut exit,
                )
                .await;
            }
            platform_log(
                shared,
                &ctl.app_id,
                &dyno,
                "Stopping all processes with SIGTERM",
            );
            signaller.terminate();
            let code = tokio::select! {
                code = &mut exit => code,
                _ = tokio::time::sleep(cfg.stop_timeout) => {
                    platform_log(shared, &ctl.app_id, &dyno, format!("Error R12 (Exit timeout) -> Process failed to exit within {} seconds of SIGTERM", cfg.stop_timeout.as_secs()));
                    platform_log(shared, &ctl.app_id, &dyno, "Stopping process with SIGKILL");
                    signaller.kill();
                    (&mut exit).await
                }
            };
            platform_log(
                shared,
                &ctl.app_id,
                &dyno,
                format!("Process exited with status {code}"),
            );
            Ending::Stopped
        }
        Ending::Exited(code) => {
            platform_log(
                shared,
                &ctl.app_id,
                &dyno,
                format!("Process exited with status {code}"),
            );
            Ending::Exited(code)
        }
    };
    // The output of the dyno's last moments is flushed before its end is reported.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    ending
}

/// Waits until the router has no request in flight to the dyno on `port` (after a short grace
/// for requests already dispatched), at most the stop timeout, or until the dyno exits.
async fn drain(
    shared: &Arc<Shared>,
    app_id: &str,
    addr: std::net::SocketAddr,
    cfg: &crate::LifecycleConfig,
    exit: &mut std::pin::Pin<&mut impl std::future::Future<Output = i32>>,
) {
    let deadline = Instant::now() + cfg.stop_timeout;
    tokio::select! {
        _ = tokio::time::sleep(cfg.drain_grace) => {}
        _ = exit.as_mut() => return,
    }
    while shared.routes.in_flight(app_id, addr) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One health check attempt: `GET <path>` on the dyno's port must answer 2xx or 3xx within
/// the check's timeout. Plain HTTP/1.0 over a socket: the dyno manager needs no HTTP client.
async fn health_ok(addr: std::net::SocketAddr, hc: &crate::HealthCheck) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!(
                "GET {} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: kiln-healthcheck\r\n\r\n",
                hc.path
            )
            .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let head = std::str::from_utf8(&buf[..n]).ok()?;
        let code: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(hc.timeout, attempt).await,
        Ok(Some(true))
    )
}

/// How often a running dyno's memory is sampled.
const MEMORY_SAMPLE: Duration = Duration::from_secs(2);
/// R14 is logged at most this often while a dyno stays above its quota (Heroku: ~20 s).
const R14_EVERY: Duration = Duration::from_secs(20);

/// What a memory sample means, Heroku's way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryVerdict {
    Fine,
    /// Above the quota: log `Process running mem=…` and R14; the dyno keeps running.
    R14 {
        usage: u64,
    },
    /// The kernel killed a process at the hard limit: R15, and the dyno is killed.
    R15,
}

/// Follows one dyno run's memory samples: R14 when above the quota (at most every
/// [`R14_EVERY`]), R15 as soon as the OOM-kill count grows.
#[derive(Debug)]
pub(crate) struct MemoryWatch {
    quota: u64,
    oom_kills: u64,
    last_r14: Option<Instant>,
}

impl MemoryWatch {
    pub(crate) fn new(quota: u64) -> MemoryWatch {
        // A fresh cgroup per run: its count starts at zero.
        MemoryWatch {
            quota,
            oom_kills: 0,
            last_r14: None,
        }
    }

    pub(crate) fn observe(&mut self, s: MemoryStats, now: Instant) -> MemoryVerdict {
        if s.oom_kills > self.oom_kills {
            self.oom_kills = s.oom_kills;
            return MemoryVerdict::R15;
        }
        if s.usage_bytes > self.quota
            && self
                .last_r14
                .is_none_or(|t| now.duration_since(t) >= R14_EVERY)
        {
            self.last_r14 = Some(now);
            return MemoryVerdict::R14 {
                usage: s.usage_bytes,
            };
        }
        MemoryVerdict::Fine
    }
}

/// A dyno's load average as the kernel computes the system's (exponentially damped over 1,
/// 5 and 15 minutes) from samples of how many of its threads are running or ready to run.
#[derive(Debug, Default)]
pub(crate) struct LoadAverage {
    avg: [f64; 3],
    last: Option<Instant>,
}

impl LoadAverage {
    const WINDOWS: [f64; 3] = [60.0, 300.0, 900.0];

    pub(crate) fn sample(&mut self, runnable: usize, now: Instant) {
        let n = runnable as f64;
        match self.last {
            // The first sample is the best estimate there is of the past.
            None => self.avg = [n; 3],
            Some(t) => {
                let dt = now.duration_since(t).as_secs_f64();
                for (avg, window) in self.avg.iter_mut().zip(Self::WINDOWS) {
                    let keep = (-dt / window).exp();
                    *avg = *avg * keep + n * (1.0 - keep);
                }
            }
        }
        self.last = Some(now);
    }
}

/// Heroku's `log-runtime-metrics` lines for one dyno: its load averages, then its memory.
pub(crate) fn runtime_metrics(
    dyno: &str,
    app_id: &str,
    instance: &str,
    load: &LoadAverage,
    memory: Option<kiln_runtime::MemoryDetail>,
    quota: u64,
) -> Vec<String> {
    let head = format!("source={dyno} dyno=heroku.{app_id}.{instance}");
    let mut lines = vec![format!(
        "{head} sample#load_avg_1m={:.2} sample#load_avg_5m={:.2} sample#load_avg_15m={:.2}",
        load.avg[0], load.avg[1], load.avg[2]
    )];
    if let Some(m) = memory {
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        lines.push(format!(
            "{head} sample#memory_total={:.2}MB sample#memory_rss={:.2}MB sample#memory_cache={:.2}MB \
             sample#memory_swap={:.2}MB sample#memory_pgpgin={}pages sample#memory_pgpgout={}pages \
             sample#memory_quota={:.2}MB",
            mb(m.rss_bytes + m.swap_bytes),
            mb(m.rss_bytes),
            mb(m.cache_bytes),
            mb(m.swap_bytes),
            m.pgpgin,
            m.pgpgout,
            mb(quota)
        ));
    }
    lines
}

/// `Process running mem=612MB(119.5%)`: usage in MB and as a share of the quota.
pub(crate) fn memory_line(usage: u64, quota: u64) -> String {
    const MB: u64 = 1024 * 1024;
    let pct = if quota == 0 {
        0.0
    } else {
        usage as f64 * 100.0 / quota as f64
    };
    format!("Process running mem={}MB({pct:.1}%)", (usage + MB / 2) / MB)
}

fn pump(
    shared: Arc<Shared>,
    app_id: String,
    dyno: String,
    r: Option<kiln_runtime::output::Output>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(r) = r else { return };
        emit_output(&*shared.logs, &app_id, &dyno, r).await;
    })
}

/// A dyno's output into its app's stream, as `app[PROCESS]` lines, a pipe read at a time.
pub(crate) async fn emit_output(
    logs: &dyn kiln_model::log::LogSink,
    app_id: &str,
    process: &str,
    r: kiln_runtime::output::Output,
) {
    let app = logs.app_sink(app_id);
    kiln_runtime::output::for_each_batch(r, |messages| {
        let lines = messages
            .into_iter()
            .map(|m| LogLine::app(process, m))
            .collect();
        match &app {
            Some(app) => app.emit_all(lines),
            None => logs.emit_all(app_id, lines),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_verdicts_follow_heroku() {
        const MB: u64 = 1024 * 1024;
        let quota = 512 * MB;
        let mut w = MemoryWatch::new(quota);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let stats = |mb: u64, oom: u64| MemoryStats {
            usage_bytes: mb * MB,
            oom_kills: oom,
        };
        assert_eq!(w.observe(stats(100, 0), at(0)), MemoryVerdict::Fine);
        assert_eq!(
            w.observe(stats(512, 0), at(2)),
            MemoryVerdict::Fine,
            "at the quota is not above it"
        );
        assert_eq!(
            w.observe(stats(612, 0), at(4)),
            MemoryVerdict::R14 { usage: 612 * MB }
        );
        // Still above: not again until 20 s later.
        assert_eq!(w.observe(stats(700, 0), at(6)), MemoryVerdict::Fine);
        assert_eq!(w.observe(stats(700, 0), at(22)), MemoryVerdict::Fine);
        assert_eq!(
            w.observe(stats(700, 0), at(24)),
            MemoryVerdict::R14 { usage: 700 * MB }
        );
        // An OOM kill is R15 once per kill, whatever the usage now.
        assert_eq!(w.observe(stats(300, 1), at(26)), MemoryVerdict::R15);
        assert_eq!(w.observe(stats(300, 1), at(28)), MemoryVerdict::Fine);
        assert_eq!(w.observe(stats(300, 3), at(30)), MemoryVerdict::R15);
        assert_eq!(
            memory_line(612 * MB, quota),
            "Process running mem=612MB(119.5%)"
        );
        assert_eq!(
            memory_line(1_028 * MB, 1024 * MB),
            "Process running mem=1028MB(100.4%)"
        );
        assert_eq!(memory_line(1, 0), "Process running mem=0MB(0.0%)");
    }

    #[test]
    fn runtime_metrics_are_herokus_lines() {
        const MB: u64 = 1024 * 1024;
        let t0 = Instant::now();
        let mut load = LoadAverage::default();
        load.sample(2, t0);
        load.sample(0, t0 + Duration::from_secs(60));
        // After one window at 0 the 1-minute average keeps 1/e of 2; the others more.
        assert!((load.avg[0] - 2.0 / std::f64::consts::E).abs() < 1e-9);
        assert!(load.avg[1] > load.avg[0] && load.avg[2] > load.avg[1]);
        let lines = runtime_metrics(
            "web.1",
            "app-id",
            "inst",
            &load,
            Some(kiln_runtime::MemoryDetail {
                rss_bytes: 21 * MB + MB / 4,
                cache_bytes: 0,
                swap_bytes: 0,
                pgpgin: 348_836,
                pgpgout: 343_403,
            }),
            512 * MB,
        );
        assert_eq!(
            lines[0],
            "source=web.1 dyno=heroku.app-id.inst sample#load_avg_1m=0.74 sample#load_avg_5m=1.64 sample#load_avg_15m=1.87"
        );
        assert_eq!(
            lines[1],
            "source=web.1 dyno=heroku.app-id.inst sample#memory_total=21.25MB sample#memory_rss=21.25MB \
             sample#memory_cache=0.00MB sample#memory_swap=0.00MB sample#memory_pgpgin=348836pages \
             sample#memory_pgpgout=343403pages sample#memory_quota=512.00MB"
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Duration::from_secs(10);
        let c = Duration::from_secs(60);
        assert_eq!(backoff(b, c, 0), Duration::from_secs(10));
        assert_eq!(backoff(b, c, 1), Duration::from_secs(20));
        assert_eq!(backoff(b, c, 5), c);
        assert_eq!(backoff(b, c, 1000), c);
    }
}
