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

/// Why the platform refused a push: shown to the pusher, a `remote: !` line for each line of
/// it, then "Push rejected" (see [`hook`]).
pub type Rejection = Box<dyn std::error::Error + Send + Sync>;

/// The platform side of a push.
pub trait PushHandler: Send + Sync {
    /// Builds and releases a push; an `Err` rejects it.
    fn deploy(
        &self,
        push: Push,
        output: PushOutput,
    ) -> futures_util::future::BoxFuture<'static, Result<(), Rejection>>;
}

/// How git requests are authenticated and mapped to apps.
pub trait GitAuth: Send + Sync {
    /// The user an API key belongs to: (id, email).
    fn authenticate(&self, api_key: &str) -> Option<(String, String)>;
    /// The app with this name, if the user may fetch from and push to it (Heroku's
    /// `deploy` permission): (id, name).
    fn app(&self, name: &str, user_id: &str) -> Result<(String, String), GitRefusal>;
}

/// Why a user may not use an app's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRefusal {
    /// No such app, or one the user may not see: the same answer for both.
    NoSuchApp,
    /// The user may see the app but not deploy it.
    Forbidden(String),
}

/// The bounds of what a push may bring.
#[derive(Debug, Clone, Copy)]
pub struct GitLimits {
    /// The largest pack a push may send (git's `receive.maxInputSize`).
    pub max_pack_bytes: u64,
}

impl Default for GitLimits {
    /// Heroku's repository limit, 1 GB.
    fn default() -> Self {
        GitLimits {
            max_pack_bytes: 1024 * 1024 * 1024,
        }
    }
}

pub struct GitService {
    limits: GitLimits,
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
    pub fn start(
        data_dir: &Path,
        kiln_exe: &Path,
        handler: Arc<dyn PushHandler>,
        auth: Arc<dyn GitAuth>,
        limits: GitLimits,
    ) -> Result<Arc<GitService>, GitError> {
        let repos_dir = data_dir.join("repos");
        let hooks_dir = data_dir.join("git-hooks");
        let run_dir = data_dir.join("run");
        for d in [&repos_dir, &hooks_dir, &run_dir] {
            std::fs::create_dir_all(d).map_err(gerr(format!("creating {}", d.display())))?;
        }
        let exe = kiln_exe.to_string_lossy().replace('\'', "'\\''");
        let hook = format!(
            "#!/bin/sh\n# Installed by Kiln: hands the push to the server, which builds it.\nexec '{exe}' git-hook pre-receive\n"
        );
        let hook_path = hooks_dir.join("pre-receive");
        std::fs::write(&hook_path, hook).map_err(gerr("writing the pre-receive hook"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook_path, std::fs::Permissions::from_mode(0o755))
                .map_err(gerr("chmod the hook"))?;
        }
        let socket = run_dir.join("git-hook.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(gerr(format!("listening on {}", socket.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                .map_err(gerr("chmod the hook socket"))?;
        }
        let svc = Arc::new(GitService {
            limits,
            repos_dir,
            hooks_dir,
            socket,
            pushes: Mutex::new(HashMap::new()),
            handler,
            auth,
        });
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
            return Err(GitError {
                context: format!("git init {}", path.display()),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).to_string()),
            });
        }
        Ok(path)
    }

    /// Removes the app's repository (app destroyed).
    pub fn remove_repo(&self, app_id: &str) {
        let _ = std::fs::remove_dir_all(self.repo_path(app_id));
    }

    fn register(&self, ctx: PushContext) -> Result<String, kiln_model::secret::SecretError> {
        let token = kiln_model::secret::new_secret()?;
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), ctx);
        Ok(token)
    }

    fn unregister(&self, token: &str) {
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    fn context(&self, token: &str) -> Option<PushContext> {
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

/// Why a pushed commit's source could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid commit id {0:?}")]
    BadCommit(String),
    #[error("the app's source is larger than the {} MB limit once unpacked", .limit / (1024 * 1024))]
    TooLarge { limit: u64 },
    #[error("the app's source has more than {limit} files")]
    TooManyFiles { limit: u64 },
    #[error("the source contains a path outside the app")]
    Escape,
    #[error("git archive failed: {0}")]
    Git(String),
    #[error("unpacking the source: {0}")]
    Io(#[from] std::io::Error),
}

/// More files than any app needs; an archive past it is refused before it fills the disk
/// with inodes (an empty file costs one, however small the push).
const MAX_SOURCE_FILES: u64 = 1_000_000;

/// Writes the tree of `sha` from `repo` into `dest` (which must exist), reading objects through
/// the push's quarantine environment, and returns the unpacked size. Uses `git archive`, so
/// the result is exactly the committed tree: no `.git`, no untracked files.
///
/// The archive streams from git straight onto the disk; nothing of it is held in memory (a
/// 1.5 GiB file of zeros pushes as 1.7 MB and once unpacked into one buffer here). Sizes are
/// counted from each entry's header before it is written, so a source over `max_bytes` is
/// refused at the entry that crosses the limit, without writing it.
pub async fn export_tree(
    repo: &Path,
    sha: &str,
    git_env: &[(String, String)],
    dest: &Path,
    max_bytes: u64,
) -> Result<u64, ExportError> {
    if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ExportError::BadCommit(sha.to_string()));
    }
    let mut cmd = std::process::Command::new("git");
    // Large blobs are streamed by git too, instead of read whole into its memory.
    cmd.args(["-c", "core.bigFileThreshold=1m", "--git-dir"])
        .arg(repo)
        .args(["archive", "--format=tar", sha]);
    cmd.envs(git_env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn()?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ExportError::Git("its output pipes are missing".into()));
        };
        // git must never block on a full stderr pipe; what it says is kept up to a point.
        let errors = std::thread::spawn(move || {
            use std::io::Read;
            let mut said = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut said);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            said
        });
        let mut archive = std::io::BufReader::with_capacity(256 * 1024, stdout);
        let unpacked = unpack(&mut archive, &dest, max_bytes);
        if unpacked.is_err() {
            // Stops git at once instead of letting it stream the rest of a refused tree.
            let _ = child.kill();
        } else {
            // tar stops at the first end-of-archive block; git may still be writing the
            // rest of its trailer, and would die of SIGPIPE if the pipe closed under it.
            let _ = std::io::copy(&mut archive, &mut std::io::sink());
        }
        let status = child.wait()?;
        let said = errors.join().unwrap_or_default();
        match unpacked {
            Ok(size) if status.success() => Ok(size),
            Ok(_) => Err(ExportError::Git(
                String::from_utf8_lossy(&said).trim().to_string(),
            )),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| ExportError::Io(std::io::Error::other(e)))?
}

/// Unpacks a tar stream under `dest`, refusing it once its entries add up to more than
/// `max_bytes` or `MAX_SOURCE_FILES`.
fn unpack(archive: impl std::io::Read, dest: &Path, max_bytes: u64) -> Result<u64, ExportError> {
    let mut ar = tar::Archive::new(archive);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let (mut total, mut files) = (0u64, 0u64);
    for entry in ar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        total = total.saturating_add(entry.size());
        files += 1;
        if total > max_bytes {
            return Err(ExportError::TooLarge { limit: max_bytes });
        }
        if files > MAX_SOURCE_FILES {
            return Err(ExportError::TooManyFiles {
                limit: MAX_SOURCE_FILES,
            });
        }
        entry.set_mask(0o6000);
        if !entry.unpack_in(dest)? {
            return Err(ExportError::Escape);
        }
    }
    Ok(total)
}

/// Whether a ref deploys (Heroku deploys only `main` and `master`).
pub fn is_deploy_ref(refname: &str) -> bool {
    refname == "refs/heads/main" || refname == "refs/heads/master"
}

/// A SHA of all zeros: the ref is being created or deleted.
pub fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, u64)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, std::io::repeat(b'x').take(*size))
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    use std::io::Read;

    fn temp() -> kiln_testkit::TempDir {
        kiln_testkit::TempDir::new("git-unpack")
    }

    #[test]
    fn unpacks_within_the_limit() {
        let dir = temp();
        let size = unpack(&tar_of(&[("a.txt", 10), ("b/c.txt", 20)])[..], &dir, 30).unwrap();
        assert_eq!(size, 30);
        assert_eq!(std::fs::read(dir.join("b/c.txt")).unwrap().len(), 20);
    }

    #[test]
    fn refuses_the_entry_that_crosses_the_limit_without_writing_it() {
        let dir = temp();
        let err = unpack(&tar_of(&[("small", 10), ("huge", 1000)])[..], &dir, 500).unwrap_err();
        assert!(
            matches!(err, ExportError::TooLarge { limit: 500 }),
            "{err:?}"
        );
        assert!(dir.join("small").exists() && !dir.join("huge").exists());
    }

    #[test]
    fn refuses_paths_outside_the_app() {
        let dir = temp();
        let mut raw = tar_of(&[("placeholder", 1)]);
        // tar::Builder refuses `..`, so the name is patched into the header afterwards.
        raw[..11].copy_from_slice(b"../escaped\0");
        let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
        h.set_cksum();
        raw[..512].copy_from_slice(h.as_bytes());
        let err = unpack(&raw[..], &dir, 100).unwrap_err();
        assert!(
            matches!(err, ExportError::Escape | ExportError::Io(_)),
            "{err:?}"
        );
        assert!(!dir.parent().unwrap().join("escaped").exists());
    }
}
