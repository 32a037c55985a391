//! The native container backend, server side: prepares a dyno's run directory and execs the
//! helper (see [`crate::helper`]) that does the privileged work.

use crate::cgroup::Cgroups;
use crate::{AppDir, Bind, Dyno, DynoSpec, MemoryProbe, Runtime, RuntimeError, RuntimeKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::PathBuf;
use std::process::Stdio;

pub struct ContainerRuntime {
    run_dir: PathBuf,
    helper_exe: PathBuf,
    /// Where dynos get their limits; `None` on a host without cgroup hierarchies.
    cgroups: Option<Cgroups>,
    /// Each dyno's own network, when the server isolates them.
    network: Option<std::sync::Arc<crate::network::DynoNetwork>>,
}

impl ContainerRuntime {
    /// A runtime using the host's cgroup hierarchies (v2, v1 or hybrid), if it has any.
    pub fn new(run_dir: PathBuf, helper_exe: PathBuf) -> ContainerRuntime {
        let cgroups = Cgroups::detect(&run_dir);
        match &cgroups {
            Some(c) => {
                let missing = c.layout().missing();
                if missing.is_empty() {
                    tracing::info!(cgroups = %c.layout().describe(), "dyno limits");
                } else {
                    tracing::warn!(cgroups = %c.layout().describe(), missing = %missing.join(", "), "dynos run without the limits of the missing cgroup controllers");
                }
            }
            None => tracing::warn!(
                "no cgroup hierarchy under /sys/fs/cgroup: dynos run without memory, process or CPU limits"
            ),
        }
        ContainerRuntime::with_cgroups(run_dir, helper_exe, cgroups)
    }

    /// A runtime with the given cgroups (tests: a fake tree; `None`: no limits).
    pub fn with_cgroups(
        run_dir: PathBuf,
        helper_exe: PathBuf,
        cgroups: Option<Cgroups>,
    ) -> ContainerRuntime {
        ContainerRuntime {
            run_dir,
            helper_exe,
            cgroups,
            network: None,
        }
    }

    /// Gives every dyno from now on a network namespace of its own on `network`.
    pub fn with_network(mut self, network: std::sync::Arc<crate::network::DynoNetwork>) -> Self {
        self.network = Some(network);
        self
    }

    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }

    /// Whether this server can create namespaces and mounts: it runs as root on Linux.
    pub fn available() -> bool {
        // SAFETY: geteuid never fails.
        cfg!(target_os = "linux")
            && unsafe { libc::geteuid() } == 0
            && std::path::Path::new("/proc/self/ns/pid").exists()
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: freshly created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Runtime for ContainerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Container
    }

    fn visible_path(&self, bind: &Bind) -> String {
        bind.target.clone()
    }

    fn sweep(&self) -> Result<(), RuntimeError> {
        // Dynos of an earlier server life died with it (PDEATHSIG on helper and init); their
        // mounts lived in their own namespaces. What remains is files.
        let dynos = self.run_dir.join("dynos");
        if dynos.exists() {
            std::fs::remove_dir_all(&dynos)
                .map_err(|e| RuntimeError::io(format!("clearing {}", dynos.display()), e))?;
        }
        // Their cgroups stay, though, and whatever a crash left running in them: killed here.
        if let Some(c) = &self.cgroups {
            for e in c.sweep() {
                tracing::warn!(error = %e, "could not remove a cgroup left by an earlier run");
            }
        }
        Ok(())
    }

    fn shutdown(&self) {
        // Every dyno has ended: this server's (by now empty) groups go too.
        if let Some(c) = &self.cgroups {
            c.remove_instance();
        }
    }

    fn start(&self, mut spec: DynoSpec) -> Result<Dyno, RuntimeError> {
        // The limits exist before the helper does: it joins these groups before it starts
        // anything of the dyno, so nothing of it ever runs unlimited.
        let cgroup = match &self.cgroups {
            Some(c) => Some(
                c.create(&spec.id, &spec.limits)
                    .map_err(|e| RuntimeError::Start {
                        dyno: spec.name.clone(),
                        message: format!("setting up its cgroups: {e}"),
                    })?,
            ),
            None => None,
        };
        spec.cgroup_procs = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        let memory = cgroup.map(MemoryProbe::new);
        // Its addresses, and the firewall's leave to reach its add-ons, before it exists.
        let slot = match &self.network {
            Some(n) => match n.allocate(n.addon_ports(&spec.env)) {
                Ok(slot) => {
                    spec.net = Some(slot.net.clone());
                    Some((n.clone(), slot))
                }
                Err(message) => {
                    if let Some(m) = &memory {
                        m.remove();
                    }
                    return Err(RuntimeError::Start {
                        dyno: spec.name.clone(),
                        message: format!("setting up its network: {message}"),
                    });
                }
            },
            None => None,
        };
        let ip = spec
            .net
            .as_ref()
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |n| {
                std::net::IpAddr::V4(n.dyno_addr)
            });
        let slot = std::sync::Mutex::new(slot);
        let release = move || {
            if let Some((n, s)) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                n.release(s);
            }
        };
        let run_dir = self.run_dir.join("dynos").join(&spec.id);
        let fail = |what: &str, e: std::io::Error| {
            release();
            crate::remove_run_dir(&run_dir);
            if let Some(m) = &memory {
                m.remove();
            }
            RuntimeError::io(format!("{what} for dyno {}", spec.name), e)
        };
        for sub in ["upper", "work", "tmp"] {
            std::fs::create_dir_all(run_dir.join(sub))
                .map_err(|e| fail("creating the run directory", e))?;
        }
        // SAFETY-free permission work: the dyno's user owns its writable layer and /tmp.
        std::fs::set_permissions(run_dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| fail("chmod tmp", e))?;
        if let Some(uid) = spec.uid {
            if matches!(spec.app_dir, AppDir::Slug(_)) {
                chown(run_dir.join("upper"), Some(uid), Some(uid))
                    .map_err(|e| fail("chown upper", e))?;
            }
            chown(run_dir.join("tmp"), Some(uid), Some(uid)).map_err(|e| fail("chown tmp", e))?;
        }
        let spec_path = run_dir.join("spec.json");
        let json = serde_json::to_vec(&spec)
            .map_err(|e| fail("encoding the spec", std::io::Error::other(e)))?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&spec_path)
                .map_err(|e| fail("writing the spec", e))?;
            f.write_all(&json)
                .map_err(|e| fail("writing the spec", e))?;
        }

        let (status_rx, status_tx) = pipe().map_err(|e| fail("creating the status pipe", e))?;
        let tx_fd = status_tx.as_raw_fd();
        let mut cmd = tokio::process::Command::new(&self.helper_exe);
        cmd.arg("dyno-helper").arg(&spec_path);
        cmd.env_clear();
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec: dup2 puts the status
        // pipe on fd 3 (clearing CLOEXEC there), prctl ties the helper's life to ours, and the
        // dyno's open-files limit is set with getrlimit/setrlimit.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(tx_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                crate::restore_open_files();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| fail("spawning the dyno helper", e))?;
        drop(status_tx);
        let status = tokio::net::unix::pipe::Receiver::from_owned_fd(status_rx)
            .map_err(|e| fail("watching the status pipe", e))?;
        Ok(Dyno::spawned(
            &spec,
            child,
            false,
            Some(status),
            run_dir,
            memory,
            Some(Box::new(release)),
        )
        .with_ip(ip))
    }
}
