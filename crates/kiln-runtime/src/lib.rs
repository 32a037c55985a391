//! Dyno runtimes: how a dyno's process is started, isolated, signalled and cleaned up.
//!
//! Two backends implement [`Runtime`]:
//! - [`container::ContainerRuntime`] (the default where Kiln runs as root on Linux): the server
//!   execs a small single-threaded helper (`kiln dyno-helper`, see [`helper`]) that creates the
//!   dyno's namespaces, builds its root filesystem (read-only system directories, the slug at
//!   `/app` under a per-dyno writable overlay, private `/tmp`, `/proc` and `/dev`) and runs a
//!   tiny init as PID 1 that starts the command and forwards signals to the whole dyno. The
//!   async server never forks to do this work itself: forking a multi-threaded process and
//!   then doing more than `exec` is how youki and runwasi deadlocked. Each dyno gets cgroups
//!   (v2, or v1 and hybrid; see [`cgroup`]) with the memory, process and CPU limits of its
//!   size, created by the server and joined by the helper; [`Dyno::memory`] reads its use.
//!   When the server isolates dynos ([`network`]), each also gets a network namespace of its
//!   own with one veth pair to the host, made by the helper through rtnetlink, and a firewall
//!   (nftables) that lets it reach the internet, its app's add-ons and the router only.
//! - [`process::ProcessRuntime`]: plain processes in their own process group, for machines
//!   where Kiln has no privileges. It says so in `ps` and in the server log.
//!
//! Both start the command the way Heroku does: `bash -c`, after sourcing `.profile.d/*.sh` and
//! `.profile` from the app's home.

pub mod cgroup;
pub mod container;
pub mod helper;
mod netlink;
pub mod network;
pub mod output;
pub mod process;
#[cfg(feature = "scripted")]
pub mod scripted;
pub mod seccomp;
pub mod slugcache;
mod sys;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWrite;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

pub use cgroup::{MemoryDetail, MemoryStats};
pub use output::Output;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not start dyno {dyno}: {message}")]
    Start { dyno: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What `/app` is inside the dyno.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AppDir {
    /// An unpacked slug, shared read-only by every dyno of the host; each dyno writes to its
    /// own overlay on top, discarded when it stops (Heroku's ephemeral filesystem).
    Slug(PathBuf),
    /// A directory mounted read-write (a build's working directory).
    Writable(PathBuf),
}

/// An extra directory made visible in the dyno (builds: cache, env dir, buildpacks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute path inside the dyno.
    pub target: String,
    pub writable: bool,
}

/// Resource limits, from the dyno size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Soft quota (R14 above it), bytes.
    pub memory_bytes: Option<u64>,
    /// Hard limit (the dyno is killed, R15), bytes.
    pub memory_hard_bytes: Option<u64>,
    pub max_processes: Option<u64>,
    pub cpu_share: Option<u64>,
}

/// Everything needed to start one dyno.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DynoSpec {
    /// Unique per dyno instance; also the container's hostname.
    pub id: String,
    pub app_id: String,
    /// `web.1`, `build`, `run.4821`.
    pub name: String,
    pub command: String,
    /// The environment the command sees (config vars, PORT, DYNO, ...).
    pub env: Vec<(String, String)>,
    pub app_dir: AppDir,
    pub binds: Vec<Bind>,
    /// Run as this uid/gid; `None` runs as root inside the dyno.
    pub uid: Option<u32>,
    pub limits: Limits,
    /// Keep stdin open as a pipe (attached one-off dynos); otherwise stdin is /dev/null.
    pub stdin: bool,
    /// Give the command a terminal (interactive `kiln run`): the helper allocates a pty and
    /// relays it over its stdin/stdout. Container runtime only; plain processes get pipes.
    #[serde(default)]
    pub tty: bool,
    /// The `cgroup.procs` files the helper joins before it enters the dyno's namespaces. Set
    /// by the container runtime, which creates the cgroups; empty means none.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// The dyno's own network (a namespace with one veth link to the host); `None` shares
    /// the host's. Set by the container runtime when it isolates dynos.
    #[serde(default)]
    pub net: Option<DynoNet>,
}

/// A dyno's link to the host: a /30 with the host's end and the dyno's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynoNet {
    /// The host end's name (`kv…`), unique while the dyno runs.
    pub host_link: String,
    pub host_addr: std::net::Ipv4Addr,
    pub dyno_addr: std::net::Ipv4Addr,
    pub prefix: u8,
    /// The dyno's `/etc/resolv.conf` when the host's cannot serve it: a host whose resolver
    /// listens on its own loopback (systemd-resolved's 127.0.0.53) is out of a dyno's reach,
    /// so the dyno gets the upstream servers instead. `None`: the host's file, as is.
    #[serde(default)]
    pub resolv_conf: Option<String>,
}

impl Default for DynoSpec {
    fn default() -> Self {
        DynoSpec {
            id: String::new(),
            app_id: String::new(),
            name: String::new(),
            command: String::new(),
            env: Vec::new(),
            app_dir: AppDir::Writable(PathBuf::new()),
            binds: Vec::new(),
            uid: None,
            limits: Limits::default(),
            stdin: false,
            tty: false,
            cgroup_procs: Vec::new(),
            net: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Container,
    Process,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Container => "container",
            RuntimeKind::Process => "process",
        }
    }
}

/// A backend that runs dynos.
pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    /// Spawns the dyno. Returns once the process exists; [`Dyno::started`] tells when the
    /// user's command is actually running.
    fn start(&self, spec: DynoSpec) -> Result<Dyno, RuntimeError>;
    /// Where a bind's target appears to the command: its `target` inside a container, the
    /// host path for plain processes (which cannot remap paths).
    fn visible_path(&self, bind: &Bind) -> String;
    /// Removes what dynos of an earlier server life left behind (run directories, cgroups).
    /// Called once at startup, before any dyno starts.
    fn sweep(&self) -> Result<(), RuntimeError>;
    /// The server is stopping and its dynos have ended: release what the runtime holds on the
    /// host (the container runtime's per-server cgroup groups).
    fn shutdown(&self) {}
}

pub type SharedRuntime = Arc<dyn Runtime>;

/// How to reach every process of a dyno with a signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynoSignaller(SignalTarget);

#[derive(Debug, Clone)]
enum SignalTarget {
    /// Process backend: the process group; container backend: the helper, which forwards.
    Pid { pid: i32, group: bool },
    /// A dyno simulated by a task ([`TaskProcess`]): the signal numbers go to it.
    Task(mpsc::UnboundedSender<i32>),
}

impl DynoSignaller {
    /// Sends `sig` to every process of the dyno.
    pub fn signal(&self, sig: i32) {
        match &self.0 {
            // SAFETY: kill/killpg with a pid we spawned; at worst the process is gone (ESRCH).
            SignalTarget::Pid { pid, group: true } => unsafe {
                libc::killpg(*pid, sig);
            },
            SignalTarget::Pid { pid, group: false } => unsafe {
                libc::kill(*pid, sig);
            },
            // A task that has ended no longer listens: like ESRCH, nothing to do.
            SignalTarget::Task(tx) => {
                let _ = tx.send(sig);
            }
        }
    }

    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL: for the container backend this kills the helper, whose death takes its PID
    /// namespace (and so every process of the dyno) with it.
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }
}

/// Reads a dyno's memory use from its cgroup while it runs and, once it has ended, gives what
/// it was at the end (OOM kills included). Cheap to clone; usable while [`Dyno::wait`] runs.
#[derive(Clone)]
pub struct MemoryProbe(Arc<ProbeInner>);

struct ProbeInner {
    cgroup: cgroup::DynoCgroup,
    last: Mutex<Option<MemoryStats>>,
    ended: AtomicBool,
    removed: AtomicBool,
}

impl MemoryProbe {
    pub(crate) fn new(cgroup: cgroup::DynoCgroup) -> MemoryProbe {
        MemoryProbe(Arc::new(ProbeInner {
            cgroup,
            last: Mutex::new(None),
            ended: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        }))
    }

    /// Current usage and OOM kills; after the dyno ended, the last reading taken before its
    /// cgroup was removed. `None` where there is no memory controller.
    pub fn read(&self) -> Option<MemoryStats> {
        let mut last = self.0.last.lock().unwrap_or_else(|e| e.into_inner());
        if !self.0.ended.load(Ordering::SeqCst)
            && let Some(now) = self.0.cgroup.memory()
        {
            *last = Some(now);
        }
        *last
    }

    /// The dyno's cgroups (where its processes are accounted).
    pub fn cgroup(&self) -> &cgroup::DynoCgroup {
        &self.0.cgroup
    }

    /// Takes the final reading: the cgroup is about to go.
    fn end(&self) {
        self.read();
        self.0.ended.store(true, Ordering::SeqCst);
    }

    /// Removes the cgroups, once (blocking, up to ~2 s while processes die).
    fn remove(&self) {
        self.end();
        if !self.0.removed.swap(true, Ordering::SeqCst)
            && let Err(e) = self.0.cgroup.remove()
        {
            tracing::warn!(error = %e, "could not remove a dyno's cgroup");
        }
    }

    fn removed(&self) -> bool {
        self.0.removed.load(Ordering::SeqCst)
    }
}

/// Why a dyno's command could not start, in the words of what tried to start it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StartFailure(pub String);

impl From<&str> for StartFailure {
    fn from(s: &str) -> Self {
        StartFailure(s.to_string())
    }
}

/// A dyno's standard input, when it is kept open.
pub type Input = Box<dyn AsyncWrite + Unpin + Send>;

/// A dyno whose process is simulated by a task instead of run by the kernel: what a test
/// runtime (see [`scripted`]) hands the dyno manager, which supervises it like any other.
pub struct TaskProcess {
    /// Resolves once the command "runs": `Err` carries why it could not start.
    pub started: oneshot::Receiver<Result<(), StartFailure>>,
    /// The exit status, once there is one.
    pub exit: watch::Receiver<Option<i32>>,
    /// Where the signals sent to the dyno go.
    pub signals: mpsc::UnboundedSender<i32>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub stdin: Option<Input>,
}

enum Process {
    Os(Child),
    Task(watch::Receiver<Option<i32>>),
}

enum StartStatus {
    /// The helper's status pipe: EOF once the user's command has been exec'd, or an error
    /// message if setup failed.
    Pipe(tokio::net::unix::pipe::Receiver),
    Task(oneshot::Receiver<Result<(), StartFailure>>),
}

/// A running dyno.
pub struct Dyno {
    pub spec_id: String,
    pub name: String,
    process: Process,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub stdin: Option<Input>,
    signaller: DynoSignaller,
    status: Option<StartStatus>,
    run_dir: Option<PathBuf>,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
    /// Its cgroups (container runtime on a host with cgroups), removed when it ends.
    memory: Option<MemoryProbe>,
    /// Where it listens: its own network's address, or the host's loopback.
    ip: std::net::IpAddr,
}

impl Dyno {
    /// Wraps a spawned process: takes its pipes, and keeps what `wait` needs to clean up.
    pub(crate) fn spawned(
        spec: &DynoSpec,
        mut child: Child,
        group: bool,
        status: Option<tokio::net::unix::pipe::Receiver>,
        run_dir: PathBuf,
        memory: Option<MemoryProbe>,
        cleanup: Option<Box<dyn FnOnce() + Send>>,
    ) -> Dyno {
        let pid = child.id().unwrap_or(0) as i32;
        Dyno {
            spec_id: spec.id.clone(),
            name: spec.name.clone(),
            stdout: child.stdout.take().map(|s| Box::new(s) as Output),
            stderr: child.stderr.take().map(|s| Box::new(s) as Output),
            stdin: child.stdin.take().map(|s| Box::new(s) as Input),
            process: Process::Os(child),
            signaller: DynoSignaller(SignalTarget::Pid { pid, group }),
            status: status.map(StartStatus::Pipe),
            run_dir: Some(run_dir),
            cleanup,
            memory,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }

    /// A dyno simulated by a task. Dropped before it was waited for, it gets SIGKILL, as a
    /// real one does.
    pub fn from_task(spec: &DynoSpec, task: TaskProcess) -> Dyno {
        Dyno {
            spec_id: spec.id.clone(),
            name: spec.name.clone(),
            stdout: task.stdout,
            stderr: task.stderr,
            stdin: task.stdin,
            process: Process::Task(task.exit),
            signaller: DynoSignaller(SignalTarget::Task(task.signals)),
            status: Some(StartStatus::Task(task.started)),
            run_dir: None,
            cleanup: Some(Box::new(|| {})),
            memory: None,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }

    pub fn signaller(&self) -> DynoSignaller {
        self.signaller.clone()
    }

    /// The address the dyno's ports are reached at.
    pub fn ip(&self) -> std::net::IpAddr {
        self.ip
    }

    pub(crate) fn with_ip(mut self, ip: std::net::IpAddr) -> Dyno {
        self.ip = ip;
        self
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Os(child) => child.id(),
            Process::Task(_) => None,
        }
    }

    /// Memory use now (once the dyno has ended: at its end). `None` without cgroups (plain
    /// processes, or no memory controller).
    pub fn memory(&self) -> Option<MemoryStats> {
        self.memory.as_ref()?.read()
    }

    /// A handle for sampling memory while [`Dyno::wait`] holds the dyno.
    pub fn memory_probe(&self) -> Option<MemoryProbe> {
        self.memory.clone()
    }

    /// Waits until the user's command is running (for containers: exec'd inside the dyno).
    /// An error carries the helper's explanation.
    pub async fn started(&mut self) -> Result<(), RuntimeError> {
        let message = match self.status.take() {
            None => return Ok(()),
            Some(StartStatus::Pipe(mut rx)) => {
                use tokio::io::AsyncReadExt;
                let mut msg = Vec::new();
                rx.read_to_end(&mut msg)
                    .await
                    .map_err(|e| RuntimeError::io("reading dyno status", e))?;
                if msg.is_empty() {
                    return Ok(());
                }
                String::from_utf8_lossy(&msg).trim().to_string()
            }
            Some(StartStatus::Task(rx)) => match rx.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(StartFailure(message))) => message,
                Err(_) => "the dyno ended before it started".to_string(),
            },
        };
        Err(RuntimeError::Start {
            dyno: self.name.clone(),
            message,
        })
    }

    /// Waits for the dyno to end and cleans up after it. Returns Heroku's exit status: the
    /// command's exit code, or 128 + N when it was killed by signal N.
    pub async fn wait(&mut self) -> i32 {
        let code = match &mut self.process {
            Process::Os(child) => match child.wait().await {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
                }
                Err(_) => 255,
            },
            Process::Task(exit) => match exit.wait_for(Option::is_some).await {
                Ok(code) => (*code).unwrap_or(255),
                Err(_) => 255,
            },
        };
        if let Some(probe) = self.memory.clone().filter(|p| !p.removed()) {
            // The final reading first (OOM kills), then the groups go: anything left in them
            // is killed, which can take a moment, so not on an async worker.
            probe.end();
            let p = probe.clone();
            if tokio::task::spawn_blocking(move || p.remove())
                .await
                .is_err()
            {
                probe.remove();
            }
        }
        self.cleanup_now();
        code
    }

    fn cleanup_now(&mut self) {
        if let Some(f) = self.cleanup.take() {
            f();
        }
        if let Some(dir) = self.run_dir.take() {
            remove_run_dir(&dir);
        }
    }
}

impl Drop for Dyno {
    fn drop(&mut self) {
        // A dyno handle dropped without wait (server shutting down, task aborted) must not
        // leave its processes behind.
        if self.cleanup.is_some() || self.run_dir.is_some() {
            self.signaller.kill();
        }
        if let Some(probe) = self.memory.take().filter(|p| !p.removed()) {
            self.signaller.kill();
            // Removal waits for the processes to die: not on the dropping thread.
            let _ = std::thread::Builder::new()
                .name("kiln-cgroup-cleanup".into())
                .spawn(move || probe.remove());
        }
    }
}

/// Removes a dyno's run directory (its overlay upper layer, /tmp, spec). Mounts live in the
/// dyno's own mount namespace, so once its processes are gone nothing here is mounted.
pub(crate) fn remove_run_dir(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove dyno run directory");
        }
    }
}

/// The bash prelude Heroku runs before a process type's command: source `.profile.d/*.sh`
/// then `.profile` from `$HOME` (the app), then run the command with `bash -c`, as Heroku
/// does. The command arrives as `$1` so it is never pasted into shell source, and `exec`
/// makes it the dyno's main process (bash itself execs a simple command), so a process that
/// handles SIGTERM is not cut short by its shell dying first.
pub const PRELUDE: &str = r#"for __kiln_f in "$HOME"/.profile.d/*.sh; do if [ -r "$__kiln_f" ]; then . "$__kiln_f"; fi; done; unset __kiln_f; if [ -r "$HOME/.profile" ]; then . "$HOME/.profile"; fi; __kiln_cmd=$1; shift; exec bash -c "$__kiln_cmd""#;

/// Chooses the best backend this server can use.
/// The soft open-files limit dynos (and builds) start with; 0 leaves them the server's.
static DYNO_OPEN_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the soft open-files limit dynos start with. The server raises its own limit to the
/// hard one for its sockets; dynos keep the one the server was given, as before: some
/// programs misbehave with a huge one (`select()` beyond 1024, or closing every possible
/// descriptor at start).
pub fn set_dyno_open_files(soft: u64) {
    DYNO_OPEN_FILES.store(soft, Ordering::Relaxed);
}

/// In a child between fork and exec: applies [`set_dyno_open_files`]'s limit. Only
/// async-signal-safe calls (an atomic load, getrlimit, setrlimit).
fn restore_open_files() {
    let soft = DYNO_OPEN_FILES.load(Ordering::Relaxed);
    if soft == 0 {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls read or write one rlimit we own; a failure keeps the inherited limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && soft < lim.rlim_cur {
            lim.rlim_cur = soft;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub fn detect(
    data_dir: &std::path::Path,
    helper_exe: PathBuf,
    prefer: Option<RuntimeKind>,
    network: Option<Arc<network::DynoNetwork>>,
) -> SharedRuntime {
    let run_dir = data_dir.join("run");
    let container = |run_dir, helper_exe| {
        let c = container::ContainerRuntime::new(run_dir, helper_exe);
        match network {
            Some(n) => c.with_network(n),
            None => c,
        }
    };
    match prefer {
        Some(RuntimeKind::Process) => Arc::new(process::ProcessRuntime::new(run_dir)),
        Some(RuntimeKind::Container) => Arc::new(container(run_dir, helper_exe)),
        None => {
            if container::ContainerRuntime::available() {
                Arc::new(container(run_dir, helper_exe))
            } else {
                tracing::warn!(
                    "not running as root with namespaces: dynos run as plain processes, without isolation"
                );
                Arc::new(process::ProcessRuntime::new(run_dir))
            }
        }
    }
}
