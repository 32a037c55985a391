//! One-off dynos (`kiln run`): `run.N`, started from the app's current release, never
//! restarted. Attached ones hand their stdio to the caller (only their start and end go to the
//! log stream, as on Heroku); detached ones log their output.

use crate::{Shared, platform_log};
use kiln_model::{DynoSize, DynoState, Timestamp};
use kiln_runtime::{AppDir, DynoSignaller, DynoSpec, Input, Limits, Output};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};

/// What to run.
#[derive(Debug, Clone)]
pub struct OneOffRequest {
    pub app_id: String,
    pub command: String,
    /// Extra environment (e.g. `TERM`, `COLUMNS`, `LINES`).
    pub env: Vec<(String, String)>,
    pub size: DynoSize,
    /// Hand stdio to the caller instead of the log stream.
    pub attach: bool,
    /// Give the command a terminal (attached only).
    pub tty: bool,
    /// Who ran it, for the log line.
    pub user_email: String,
    /// `run` for `kiln run`, `release` for a release phase: the dyno is `<type>.<N>`.
    pub process_type: String,
    /// Run this release instead of the current one (the release phase runs the new release
    /// before it goes live).
    pub release: Option<crate::ReleaseDesired>,
}

/// A started one-off dyno.
pub struct OneOff {
    pub name: String,
    pub id: String,
    pub release_id: String,
    pub release_version: u32,
    pub created_at: Timestamp,
    /// Present for attached dynos.
    pub stdin: Option<Input>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    /// The exit status, once the dyno ends.
    pub exit: oneshot::Receiver<i32>,
    pub signaller: DynoSignaller,
}

/// The manager's record of a running one-off, for `ps`.
pub(crate) struct OneOffRecord {
    pub id: String,
    pub name: String,
    pub command: String,
    pub size: DynoSize,
    pub release_id: String,
    pub release_version: u32,
    pub created_at: Timestamp,
    pub state: watch::Receiver<DynoState>,
    pub updated_at: Arc<Mutex<Timestamp>>,
    pub signaller: DynoSignaller,
    pub task: tokio::task::JoinHandle<()>,
}

pub(crate) fn start(
    shared: &Arc<Shared>,
    req: OneOffRequest,
    rel: &crate::ReleaseDesired,
    uid: Option<u32>,
    name: String,
) -> Result<(OneOff, OneOffRecord), crate::DynoError> {
    let mut env: Vec<(String, String)> = rel
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(req.env.iter().cloned());
    env.push(("DYNO".into(), name.clone()));
    let mb = req.size.memory_mb() * 1024 * 1024;
    let spec = DynoSpec {
        id: uuid::Uuid::new_v4().to_string(),
        app_id: req.app_id.clone(),
        name: name.clone(),
        command: req.command.clone(),
        env,
        app_dir: AppDir::Slug(rel.slug_dir.clone()),
        binds: Vec::new(),
        uid,
        limits: Limits {
            memory_bytes: Some(mb),
            memory_hard_bytes: Some(mb * 2),
            max_processes: Some(req.size.max_processes()),
            cpu_share: Some(req.size.cpu_share()),
        },
        stdin: req.attach,
        tty: req.attach && req.tty,
        ..Default::default()
    };
    platform_log(
        shared,
        &req.app_id,
        &name,
        format!(
            "Starting process with command `{}` by user {}",
            req.command, req.user_email
        ),
    );
    let mut dyno = shared
        .runtime
        .start(spec)
        .map_err(|source| crate::DynoError::Start {
            dyno: name.clone(),
            source,
        })?;
    let signaller = dyno.signaller();
    let (state_tx, state_rx) = watch::channel(DynoState::Starting);
    let (exit_tx, exit_rx) = oneshot::channel();
    let updated_at = Arc::new(Mutex::new(Timestamp::now()));
    let (stdin, stdout, stderr) = if req.attach {
        (dyno.stdin.take(), dyno.stdout.take(), dyno.stderr.take())
    } else {
        (None, None, None)
    };
    let pumps: Vec<_> = if req.attach {
        Vec::new()
    } else {
        [dyno.stdout.take(), dyno.stderr.take()]
            .into_iter()
            .flatten()
            .map(|r| {
                let (shared, app, n) = (shared.clone(), req.app_id.clone(), name.clone());
                tokio::spawn(async move {
                    crate::supervisor::emit_output(&*shared.logs, &app, &n, r).await;
                })
            })
            .collect()
    };
    let task = {
        let (shared, app, n, upd) = (
            shared.clone(),
            req.app_id.clone(),
            name.clone(),
            updated_at.clone(),
        );
        tokio::spawn(async move {
            let set = |s: DynoState| {
                let prev = *state_tx.borrow();
                *upd.lock().unwrap_or_else(|e| e.into_inner()) = Timestamp::now();
                state_tx.send_replace(s);
                if prev != s {
                    platform_log(
                        &shared,
                        &app,
                        &n,
                        format!("State changed from {prev} to {s}"),
                    );
                }
                shared.notify(&app);
            };
            let code = match dyno.started().await {
                Ok(()) => {
                    set(DynoState::Up);
                    dyno.wait().await
                }
                Err(e) => {
                    platform_log(
                        &shared,
                        &app,
                        &n,
                        format!("Error R99 (Platform error) -> {e}"),
                    );
                    dyno.wait().await
                }
            };
            for p in pumps {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p).await;
            }
            platform_log(
                &shared,
                &app,
                &n,
                format!("Process exited with status {code}"),
            );
            // One-offs end as `complete` on Heroku; the API's closest state is `down`.
            set(DynoState::Down);
            let _ = exit_tx.send(code);
            let _ = shared.changed.send(crate::Command::OneOffDone(app, n));
        })
    };
    let created_at = Timestamp::now();
    let id = uuid::Uuid::new_v4().to_string();
    let record = OneOffRecord {
        id: id.clone(),
        name: name.clone(),
        command: req.command.clone(),
        size: req.size,
        release_id: rel.release_id.clone(),
        release_version: rel.version,
        created_at,
        state: state_rx,
        updated_at,
        signaller: signaller.clone(),
        task,
    };
    Ok((
        OneOff {
            name,
            id,
            release_id: rel.release_id.clone(),
            release_version: rel.version,
            created_at,
            stdin,
            stdout,
            stderr,
            exit: exit_rx,
            signaller,
        },
        record,
    ))
}
