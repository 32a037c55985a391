//! The plain-process fallback: each dyno is a process group on the host, with its own copy of
//! the slug as its home. No isolation, no limits; used only where Kiln lacks privileges.

use crate::{AppDir, Bind, Dyno, DynoSpec, PRELUDE, Runtime, RuntimeError, RuntimeKind};
use std::path::PathBuf;
use std::process::Stdio;

pub struct ProcessRuntime {
    run_dir: PathBuf,
}

impl ProcessRuntime {
    pub fn new(run_dir: PathBuf) -> ProcessRuntime {
        ProcessRuntime { run_dir }
    }
}

impl Runtime for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    fn visible_path(&self, bind: &Bind) -> String {
        bind.host.to_string_lossy().into_owned()
    }

    fn sweep(&self) -> Result<(), RuntimeError> {
        let dynos = self.run_dir.join("dynos");
        if dynos.exists() {
            std::fs::remove_dir_all(&dynos)
                .map_err(|e| RuntimeError::io(format!("clearing {}", dynos.display()), e))?;
        }
        Ok(())
    }

    fn start(&self, spec: DynoSpec) -> Result<Dyno, RuntimeError> {
        let run_dir = self.run_dir.join("dynos").join(&spec.id);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", run_dir.display()), e))?;
        // The dyno's home: a private copy of the slug (its "ephemeral filesystem"), or the
        // build directory itself.
        let home = match &spec.app_dir {
            AppDir::Slug(slug) => {
                let home = run_dir.join("app");
                let out = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(slug)
                    .arg(&home)
                    .output()
                    .map_err(|e| RuntimeError::io("copying the slug", e))?;
                if !out.status.success() {
                    crate::remove_run_dir(&run_dir);
                    return Err(RuntimeError::Start {
                        dyno: spec.name.clone(),
                        message: format!(
                            "copying the slug failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    });
                }
                home
            }
            AppDir::Writable(dir) => dir.clone(),
        };
        let tmp = run_dir.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| RuntimeError::io("creating the dyno's tmp", e))?;

        let mut cmd = tokio::process::Command::new("/bin/bash");
        cmd.arg("-c")
            .arg(PRELUDE)
            .arg("kiln-dyno")
            .arg(&spec.command);
        cmd.env_clear();
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        cmd.env("HOME", &home).env("TMPDIR", &tmp);
        cmd.current_dir(&home);
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.process_group(0);
        cmd.kill_on_drop(false);
        // SAFETY: prctl is async-signal-safe; it makes the dyno die with the server's thread
        // that spawned it (tokio workers live as long as the runtime). The open-files limit
        // is set with getrlimit/setrlimit, also async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                crate::restore_open_files();
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                crate::remove_run_dir(&run_dir);
                return Err(RuntimeError::Start {
                    dyno: spec.name.clone(),
                    message: format!("spawning bash: {e}"),
                });
            }
        };
        let pid = child.id().unwrap_or(0) as i32;
        // Anything the command left running in its group goes with it.
        let cleanup: Box<dyn FnOnce() + Send> = Box::new(move || {
            // SAFETY: signalling our own process group.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        });
        Ok(Dyno::spawned(
            &spec,
            child,
            true,
            None,
            run_dir,
            None,
            Some(cleanup),
        ))
    }
}
