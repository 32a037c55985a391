//! A runtime whose dynos follow a script instead of running a command: for testing what
//! drives dynos (the dyno manager's boot watch, crash restarts, backoff, preboot, cycling,
//! graceful stops) in milliseconds, without containers or processes, and under tokio's
//! paused clock so that minutes of cool-off pass at once.
//!
//! Each start asks the test's plan for a [`Script`]: how long the command takes to start (or
//! why it cannot), when it binds `$PORT` (a real listener on 127.0.0.1, so the manager's
//! port watch sees it), when it exits on its own, and what it does on SIGTERM. Every start
//! is recorded ([`ScriptedRuntime::dynos`]) with the signals the dyno received and its exit,
//! and a test can make a running dyno exit ([`ScriptedDyno::exit`]).

use crate::{Bind, Dyno, DynoSpec, Runtime, RuntimeError, RuntimeKind, StartFailure, TaskProcess};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What one started dyno does.
#[derive(Debug, Clone)]
pub struct Script {
    /// `Err`: the runtime refuses to start it at all (`Runtime::start` fails).
    pub spawn: Result<(), StartFailure>,
    /// How long the command takes to start; `Err`: it cannot (the helper's error).
    pub boot: Result<Duration, StartFailure>,
    /// Binds `$PORT` this long after starting; `None`: never.
    pub bind_after: Option<Duration>,
    /// Exits on its own with this status this long after starting; `None`: runs until
    /// signalled.
    pub exit_after: Option<(Duration, i32)>,
    /// On SIGTERM, exits with this status this long after; `None`: ignores SIGTERM.
    pub on_sigterm: Option<(Duration, i32)>,
    /// Lines it prints on stdout once started.
    pub output: Vec<String>,
}

impl Default for Script {
    /// A well-behaved dyno: starts at once, binds `$PORT` at once, runs until SIGTERM and
    /// then exits 0.
    fn default() -> Self {
        Script {
            spawn: Ok(()),
            boot: Ok(Duration::ZERO),
            bind_after: Some(Duration::ZERO),
            exit_after: None,
            on_sigterm: Some((Duration::ZERO, 0)),
            output: Vec::new(),
        }
    }
}

impl Script {
    /// Runs until it exits with `code` after `after`.
    pub fn exits(after: Duration, code: i32) -> Script {
        Script {
            exit_after: Some((after, code)),
            ..Script::default()
        }
    }

    /// Never binds `$PORT` (a web dyno that R10 will kill).
    pub fn never_binds() -> Script {
        Script {
            bind_after: None,
            ..Script::default()
        }
    }
}

type Plan = Box<dyn FnMut(&DynoSpec) -> Script + Send>;

/// One dyno the runtime started, as the test sees it.
#[derive(Clone)]
pub struct ScriptedDyno {
    pub spec: DynoSpec,
    /// When it was started (tokio's clock, so paused time counts).
    pub started_at: Instant,
    /// Its `$PORT`, if it was given one.
    pub port: Option<u16>,
    signals: Arc<Mutex<Vec<(i32, Instant)>>>,
    exit: watch::Receiver<Option<i32>>,
    control: mpsc::UnboundedSender<i32>,
}

impl ScriptedDyno {
    /// `web.1`, `run.4821`.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The signals it received, in order, with when.
    pub fn signals(&self) -> Vec<(i32, Instant)> {
        self.signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Its exit status, once it has exited.
    pub fn exit_status(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    /// Waits until it has exited; its status.
    pub async fn exited(&self) -> i32 {
        let mut exit = self.exit.clone();
        let code = exit
            .wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(255))
            .unwrap_or(255);
        code
    }

    /// Makes it exit now with `code` (a crash, when the manager did not ask for it).
    pub fn exit(&self, code: i32) {
        let _ = self.control.send(code);
    }

    /// The value of one of its environment variables.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.spec
            .env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The runtime. Cheap to share: the dyno manager holds it as a `SharedRuntime`.
pub struct ScriptedRuntime {
    plan: Mutex<Plan>,
    dynos: Mutex<Vec<ScriptedDyno>>,
    starts: watch::Sender<usize>,
}

impl ScriptedRuntime {
    /// Every dyno follows `plan`'s script for it.
    pub fn new(plan: impl FnMut(&DynoSpec) -> Script + Send + 'static) -> Arc<ScriptedRuntime> {
        Arc::new(ScriptedRuntime {
            plan: Mutex::new(Box::new(plan)),
            dynos: Mutex::new(Vec::new()),
            starts: watch::channel(0).0,
        })
    }

    /// Replaces the plan for the dynos started from now on.
    pub fn set_plan(&self, plan: impl FnMut(&DynoSpec) -> Script + Send + 'static) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(plan);
    }

    /// Every dyno started so far, in start order.
    pub fn dynos(&self) -> Vec<ScriptedDyno> {
        self.dynos.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The dynos started so far with this name (`web.1`), in start order.
    pub fn named(&self, name: &str) -> Vec<ScriptedDyno> {
        self.dynos()
            .into_iter()
            .filter(|d| d.spec.name == name)
            .collect()
    }

    /// Waits until `n` dynos have been started in all; all of them.
    pub async fn wait_for_starts(&self, n: usize) -> Vec<ScriptedDyno> {
        let mut starts = self.starts.subscribe();
        let _ = starts.wait_for(|s| *s >= n).await;
        self.dynos()
    }
}

impl Runtime for ScriptedRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    fn start(&self, spec: DynoSpec) -> Result<Dyno, RuntimeError> {
        let script = (self.plan.lock().unwrap_or_else(|e| e.into_inner()))(&spec);
        if let Err(StartFailure(message)) = script.spawn {
            return Err(RuntimeError::Start {
                dyno: spec.name.clone(),
                message,
            });
        }
        let port = spec
            .env
            .iter()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse().ok());
        let (started_tx, started_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (stdout, output) = tokio::io::duplex(64 * 1024);
        let record = ScriptedDyno {
            spec: spec.clone(),
            started_at: Instant::now(),
            port,
            signals: Arc::default(),
            exit: exit_rx.clone(),
            control: control_tx,
        };
        tokio::spawn(play(
            script,
            port,
            started_tx,
            exit_tx,
            signal_rx,
            control_rx,
            stdout,
            record.signals.clone(),
        ));
        self.dynos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        self.starts.send_modify(|n| *n += 1);
        Ok(Dyno::from_task(
            &spec,
            TaskProcess {
                started: started_rx,
                exit: exit_rx,
                signals: signal_tx,
                stdout: Some(Box::new(output)),
                stderr: None,
                stdin: None,
            },
        ))
    }

    fn visible_path(&self, bind: &Bind) -> String {
        bind.host.display().to_string()
    }

    fn sweep(&self) -> Result<(), RuntimeError> {
        Ok(())
    }
}

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Plays one dyno's script to its exit.
#[allow(clippy::too_many_arguments)]
async fn play(
    script: Script,
    port: Option<u16>,
    started: oneshot::Sender<Result<(), StartFailure>>,
    exit: watch::Sender<Option<i32>>,
    mut signals: mpsc::UnboundedReceiver<i32>,
    mut control: mpsc::UnboundedReceiver<i32>,
    mut stdout: tokio::io::DuplexStream,
    received: Arc<Mutex<Vec<(i32, Instant)>>>,
) {
    let record = |sig: i32| {
        received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((sig, Instant::now()))
    };
    let code = 'run: {
        let boot = match script.boot {
            Ok(d) => d,
            Err(message) => {
                let _ = started.send(Err(message));
                break 'run 1;
            }
        };
        // Starting: only SIGKILL ends it early.
        let boot_done = Instant::now() + boot;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(boot_done) => break,
                sig = signals.recv() => {
                    let sig = sig.unwrap_or(SIGKILL);
                    record(sig);
                    if sig == SIGKILL {
                        drop(started);
                        break 'run 128 + SIGKILL;
                    }
                }
            }
        }
        let _ = started.send(Ok(()));
        for line in &script.output {
            let _ = stdout.write_all(format!("{line}\n").as_bytes()).await;
        }
        let t0 = Instant::now();
        let bind_at = script.bind_after.map(|d| t0 + d);
        let exit_at = script.exit_after.map(|(d, code)| (t0 + d, code));
        let mut term_at: Option<(Instant, i32)> = None;
        let mut listener = None;
        loop {
            let until_bind = bind_at.filter(|_| listener.is_none());
            tokio::select! {
                _ = tokio::time::sleep_until(until_bind.unwrap_or(t0)), if until_bind.is_some() => {
                    // A real listener, so the manager's port watch sees it bound.
                    listener = port.and_then(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok());
                    if listener.is_none() {
                        // Bound elsewhere, or no port: nothing to listen on; stop trying.
                        listener = Some(std::net::TcpListener::bind(("127.0.0.1", 0)).expect("binding a port"));
                    }
                }
                _ = tokio::time::sleep_until(exit_at.map_or(t0, |(at, _)| at)), if exit_at.is_some() => {
                    break 'run exit_at.map_or(0, |(_, code)| code);
                }
                _ = tokio::time::sleep_until(term_at.map_or(t0, |(at, _)| at)), if term_at.is_some() => {
                    break 'run term_at.map_or(0, |(_, code)| code);
                }
                sig = signals.recv() => {
                    let sig = sig.unwrap_or(SIGKILL);
                    record(sig);
                    match sig {
                        SIGKILL => break 'run 128 + SIGKILL,
                        SIGTERM => {
                            if let Some((after, code)) = script.on_sigterm {
                                term_at.get_or_insert((Instant::now() + after, code));
                            }
                        }
                        _ => {}
                    }
                }
                Some(code) = control.recv() => break 'run code,
            }
        }
    };
    drop(stdout);
    let _ = exit.send(Some(code));
}
