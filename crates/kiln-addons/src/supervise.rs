//! Service processes (a PostgreSQL cluster, a redis-server, a memcached) supervised like
//! dynos: started, their output passed to the log stream line by line, restarted with
//! backoff when they die, stopped cleanly (each with the signal its program treats as a fast,
//! safe shutdown) when Kiln stops or the add-on goes.
//!
//! Every process is forked by one long-lived thread that does nothing else, with
//! `PR_SET_PDEATHSIG`: the kernel sends the death signal when the *thread* that forked the
//! child exits, so forking from tokio's blocking pool (whose threads come and go) would kill
//! services at random. With one thread that lives as long as the server, a Kiln killed with
//! SIGKILL still takes its services down cleanly, and the next start finds their ports and
//! data directories free.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    /// A name for logs: `redis-calm-01234`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Run as this uid and gid (when Kiln runs as root).
    pub user: Option<(u32, u32)>,
    /// The signal that stops it quickly and safely (PostgreSQL: SIGINT, a fast shutdown).
    pub stop_signal: i32,
    /// cgroup `cgroup.procs` files it joins before its program starts (its memory limit).
    pub cgroup_procs: Vec<PathBuf>,
}

/// Where a service's output lines go.
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A supervised process. Dropping it does not stop it; call [`Supervised::stop`].
pub struct Supervised {
    stop: watch::Sender<bool>,
    done: Mutex<Option<oneshot::Receiver<()>>>,
    /// Bumped each time the process (re)starts: tests and readiness checks wait on it.
    pub starts: watch::Receiver<u64>,
}

impl Supervised {
    /// Starts `spec` and keeps it running until stopped.
    pub fn start(spec: ProcSpec, sink: LineSink) -> Supervised {
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = oneshot::channel();
        let (starts_tx, starts) = watch::channel(0);
        tokio::spawn(async move {
            run(spec, sink, stop_rx, starts_tx).await;
            let _ = done_tx.send(());
        });
        Supervised {
            stop,
            done: Mutex::new(Some(done_rx)),
            starts,
        }
    }

    /// Stops the process (its stop signal, SIGKILL after `grace`) and waits for it to end.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

/// How long a service has to stop before it is killed.
const GRACE: Duration = Duration::from_secs(20);
/// A process that ran this long before dying starts again at once; a quicker death waits,
/// doubling up to [`MAX_BACKOFF`].
const STABLE: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

async fn run(
    spec: ProcSpec,
    sink: LineSink,
    mut stop: watch::Receiver<bool>,
    starts: watch::Sender<u64>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        let child = match spawn(&spec, &sink).await {
            Ok(c) => c,
            Err(e) => {
                sink(&format!("could not start {}: {e}", spec.program.display()));
                tracing::warn!(service = %spec.name, error = %e, "could not start an add-on service");
                if wait_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        starts.send_modify(|n| *n += 1);
        let pid = child.pid;
        let mut exit = child.exit;
        let stopping = tokio::select! {
            status = &mut exit => {
                let status = status.unwrap_or(-1);
                sink(&format!("process exited with status {status}"));
                tracing::warn!(service = %spec.name, status, "an add-on service exited; it will be restarted");
                false
            }
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            signal(pid, spec.stop_signal);
            if tokio::time::timeout(GRACE, &mut exit).await.is_err() {
                sink("did not stop in time: killed");
                signal(pid, libc::SIGKILL);
                let _ = exit.await;
            }
            return;
        }
        if started.elapsed() >= STABLE {
            backoff = FIRST_BACKOFF;
        } else {
            if wait_or_stop(&mut stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Sleeps `d`; `true` if told to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: kill(2) with a pid this supervisor started and has not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

struct Running {
    pid: i32,
    exit: oneshot::Receiver<i32>,
}

type SpawnRequest = (Command, std_mpsc::Sender<std::io::Result<Child>>);

/// The one thread that forks services (see the module doc).
fn spawner() -> &'static Mutex<std_mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<std_mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("kiln-addon-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the add-on spawner thread");
        Mutex::new(tx)
    })
}

async fn spawn(spec: &ProcSpec, sink: &LineSink) -> std::io::Result<Running> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stop_signal = spec.stop_signal;
    let user = spec.user;
    // Opened here; written in the child before exec, so everything the program starts is in
    // its groups from the first instruction.
    let groups: Vec<std::fs::File> = spec
        .cgroup_procs
        .iter()
        .map(|p| std::fs::OpenOptions::new().write(true).open(p))
        .collect::<std::io::Result<_>>()?;
    let group_fds: Vec<i32> = {
        use std::os::fd::AsRawFd;
        groups.iter().map(|f| f.as_raw_fd()).collect()
    };
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, stop_signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Its own process group: a terminal's Ctrl-C to Kiln is Kiln's to handle.
            libc::setpgid(0, 0);
            for fd in &group_fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The death signal is cleared by a change of credentials: set it again.
                if libc::prctl(libc::PR_SET_PDEATHSIG, stop_signal as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let (tx, rx) = std_mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the add-on spawner has stopped"))?;
    let spawned = tokio::task::spawn_blocking(move || rx.recv()).await;
    drop(groups);
    let mut child = spawned
        .map_err(std::io::Error::other)?
        .map_err(|_| std::io::Error::other("the add-on spawner has stopped"))??;
    let pid = child.id() as i32;
    Ok(Running {
        pid,
        exit: {
            let (tx, rx) = oneshot::channel();
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            // Output and the exit status are read on plain threads: a handful of services,
            // each blocking on its pipes, costs nothing and needs no reactor registration.
            let readers: Vec<_> = [
                stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ]
            .into_iter()
            .flatten()
            .map(|r| {
                let sink = sink.clone();
                std::thread::spawn(move || pump(r, &sink))
            })
            .collect();
            std::thread::spawn(move || {
                let code = match child.wait() {
                    Ok(s) => s
                        .code()
                        .or_else(|| {
                            use std::os::unix::process::ExitStatusExt;
                            s.signal().map(|sig| 128 + sig)
                        })
                        .unwrap_or(-1),
                    Err(_) => -1,
                };
                for r in readers {
                    let _ = r.join();
                }
                let _ = tx.send(code);
            });
            rx
        },
    })
}

/// Passes a pipe's lines to `sink`, a line longer than 16 KiB in pieces.
fn pump(r: Box<dyn std::io::Read + Send>, sink: &LineSink) {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(16 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                sink(text);
            }
        }
    }
}
