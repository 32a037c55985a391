//! Git deploys: `git push http://kiln:<API key>@host/<app>.git main` over git's smart HTTP
//! protocol, served by the real `git` (gitoxide has no server side; shelling out is what its
//! maintainer recommends).
//!
//! Each app has a bare repository. During a push, `git receive-pack` runs Kiln's pre-receive
//! hook (`kiln git-hook pre-receive`, see [`hook`]), which connects back to the server over a
//! unix socket. The server builds and releases the pushed commit while the hook relays build
//! output to the pusher (git shows it as `remote:` lines). A non-zero hook exit rejects the
//! push, so a failed build leaves the branch, and the running release, as they were.

pub mod hook;
mod http;

pub use http::router;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Who is pushing to which app; registered for the duration of one receive-pack.
#[derive(Debug, Clone)]
pub struct PushContext {
    pub app_id: String,
    pub app_name: String,
    pub user_id: String,
    pub user_email: String,
}

/// A pushed ref update the server should deploy.
#[derive(Debug, Clone)]
pub struct Push {
    pub context: PushContext,
    pub refname: String,
    pub old: String,
    pub new: String,
    pub repo: PathBuf,
    /// The quarantine environment git gives hooks; needed to read the pushed objects.
    pub git_env: Vec<(String, String)>,
}

/// Streams lines back to the pusher.
pub type PushOutput = tokio::sync::mpsc::UnboundedSender<String>;

/// The platform side of a push.
pub trait PushHandler: Send + Sync {
    /// Builds and releases a push. `Err(message)` rejects it; the message is shown.
    fn deploy(&self, push: Push, output: PushOutput) -> futures_util::future::BoxFuture<'static, Result<(), String>>;
}

/// How git requests are authenticated and mapped to apps.
pub trait GitAuth: Send + Sync {
    /// The user an API key belongs to: (id, email).
    fn authenticate(&self, api_key: &str) -> Option<(String, String)>;
    /// The app with this name, if it exists and the user may push to it: (id, name).
    fn app(&self, name: &str, user_id: &str) -> Option<(String, String)>;
}

pub struct GitService {
    repos_dir: PathBuf,
    hooks_dir: PathBuf,
    socket: PathBuf,
    pushes: Mutex<HashMap<String, PushContext>>,
    handler: Arc<dyn PushHandler>,
    auth: Arc<dyn GitAuth>,
}

#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct GitError {
    context: String,
    source: std::io::Error,
}

fn gerr(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
    let context = context.into();
    move |source| GitError { context, source }
}

impl GitService {
    /// Prepares the repos directory, the shared hooks directory (pointing at `kiln_exe`) and
    /// starts listening for hooks on a unix socket under `run_dir`.
    pub fn start(data_dir: &Path, kiln_exe: &Path, handler: Arc<dyn PushHandler>, auth: Arc<dyn GitAuth>) -> Result<Arc<GitService>, GitError> {
        let repos_dir = data_dir.join("repos");
        let hooks_dir = data_dir.join("git-hooks");
        let run_dir = data_dir.join("run");
        for d in [&repos_dir, &hooks_dir, &run_dir] {
            std::fs::create_dir_all(d).map_err(gerr(format!("creating {}", d.display())))?;
        }
        let exe = kiln_exe.to_string_lossy().replace('\'', "'\\''");
        let hook = format!("#!/bin/sh\n# Installed by Kiln: hands the push to the server, which builds it.\nexec '{exe}' git-hook pre-receive\n");
        let hook_path = hooks_dir.join("pre-receive");
        std::fs::write(&hook_path, hook).map_err(gerr("writing the pre-receive hook"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook_path, std::fs::Permissions::from_mode(0o755)).map_err(gerr("chmod the hook"))?;
        }
        let socket = run_dir.join("git-hook.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).map_err(gerr(format!("listening on {}", socket.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(gerr("chmod the hook socket"))?;
        }
        let svc = Arc::new(GitService { repos_dir, hooks_dir, socket, pushes: Mutex::new(HashMap::new()), handler, auth });
        tokio::spawn(hook::serve(svc.clone(), listener));
        Ok(svc)
    }

    pub fn repo_path(&self, app_id: &str) -> PathBuf {
        self.repos_dir.join(format!("{app_id}.git"))
    }

    /// Creates the app's bare repository if it does not exist yet.
    pub async fn ensure_repo(&self, app_id: &str) -> Result<PathBuf, GitError> {
        let path = self.repo_path(app_id);
        if path.join("HEAD").is_file() {
            return Ok(path);
        }
        let out = tokio::process::Command::new("git")
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&path)
            .env_remove("GIT_DIR")
            .output()
            .await
            .map_err(gerr("running git init"))?;
        if !out.status.success() {
            return Err(GitError { context: format!("git init {}", path.display()), source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).to_string()) });
        }
        Ok(path)
    }

    /// Removes the app's repository (app destroyed).
    pub fn remove_repo(&self, app_id: &str) {
        let _ = std::fs::remove_dir_all(self.repo_path(app_id));
    }

    fn register(&self, ctx: PushContext) -> String {
        let token = format!("{}", uuid::Uuid::new_v4().simple());
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), ctx);
        token
    }

    fn unregister(&self, token: &str) {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    }

    fn context(&self, token: &str) -> Option<PushContext> {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }
}

/// Writes the tree of `sha` from `repo` into `dest` (which must exist), reading objects through
/// the push's quarantine environment. Uses `git archive`, so the result is exactly the
/// committed tree: no `.git`, no untracked files.
pub async fn export_tree(repo: &Path, sha: &str, git_env: &[(String, String)], dest: &Path) -> Result<(), String> {
    if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("invalid commit id {sha:?}"));
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("--git-dir").arg(repo).args(["archive", "--format=tar", sha]);
    for (k, v) in git_env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.map_err(|e| format!("running git archive: {e}"))?;
    if !out.status.success() {
        return Err(format!("git archive failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut ar = tar::Archive::new(std::io::Cursor::new(out.stdout));
        ar.set_preserve_permissions(true);
        ar.set_overwrite(true);
        for entry in ar.entries().map_err(|e| format!("reading the source archive: {e}"))? {
            let mut entry = entry.map_err(|e| format!("reading the source archive: {e}"))?;
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            entry.set_mask(0o6000);
            if !entry.unpack_in(&dest).map_err(|e| format!("unpacking the source: {e}"))? {
                return Err("the source contains a path outside the app".to_string());
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("unpacking the source: {e}"))?
}

/// Whether a ref deploys (Heroku deploys only `main` and `master`).
pub fn is_deploy_ref(refname: &str) -> bool {
    refname == "refs/heads/main" || refname == "refs/heads/master"
}

/// A SHA of all zeros: the ref is being created or deleted.
pub fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}
