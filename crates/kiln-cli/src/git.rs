//! The local git repository: the `kiln` remote that names an app, and the credential helper
//! that lets `git push kiln main` authenticate with the stored API key. Uses the real `git`
//! so every config layout git understands is respected.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};

/// The remote `apps:create` and `git:remote` manage, and that names the app by default.
pub const REMOTE: &str = "kiln";

fn git(cwd: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run `git {}` (is git installed?)", args.join(" ")))
}

fn git_ok(cwd: &Path, args: &[&str]) -> Result<String> {
    let out = git(cwd, args)?;
    if !out.status.success() {
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `cwd` is inside a git work tree (false when git itself is missing).
pub fn is_repo(cwd: &Path) -> bool {
    git(cwd, &["rev-parse", "--git-dir"]).is_ok_and(|o| o.status.success())
}

/// The URL of remote `name`, if the directory is a repository that has it.
pub fn remote_url(cwd: &Path, name: &str) -> Option<String> {
    let out = git(cwd, &["remote", "get-url", name]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
}

/// The app a git URL points at: the last path segment without `.git`
/// (`http://host:5000/myapp.git`, `https://host/myapp.git/`, `git@host:myapp.git`).
pub fn app_from_git_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let stem = url.strip_suffix(".git")?;
    let name = stem.rsplit(['/', ':']).next()?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| name.to_string())
}

#[derive(Debug, PartialEq, Eq)]
pub enum RemoteChange {
    Added,
    Updated,
    Unchanged,
}

/// Points remote `name` at `url`, adding it when missing.
pub fn set_remote(cwd: &Path, name: &str, url: &str) -> Result<RemoteChange> {
    match remote_url(cwd, name) {
        Some(current) if current == url => Ok(RemoteChange::Unchanged),
        Some(_) => git_ok(cwd, &["remote", "set-url", name, url]).map(|_| RemoteChange::Updated),
        None => git_ok(cwd, &["remote", "add", name, url]).map(|_| RemoteChange::Added),
    }
}

pub fn remove_remote(cwd: &Path, name: &str) -> Result<()> {
    git_ok(cwd, &["remote", "remove", name]).map(|_| ())
}

/// The helper command git runs: `!'<exe>' git:credentials`, quoted for git's shell.
pub fn helper_command(exe: &Path) -> String {
    let path = exe.to_string_lossy().replace('\'', r"'\''");
    format!("!'{path}' git:credentials")
}

/// Makes this repository ask `kiln git:credentials` for `url`'s credentials. An empty helper
/// comes first: it clears helpers configured globally (a credential store holding an old
/// password, say), so the stored API key is the one git sends.
pub fn set_credential_helper(cwd: &Path, url: &str, exe: &Path) -> Result<()> {
    let key = format!("credential.{url}.helper");
    git_ok(cwd, &["config", "--local", "--replace-all", &key, ""])?;
    git_ok(
        cwd,
        &["config", "--local", "--add", &key, &helper_command(exe)],
    )?;
    Ok(())
}

/// Removes what [`set_credential_helper`] configured for `url` (nothing if there is none).
pub fn unset_credential_helper(cwd: &Path, url: &str) {
    let key = format!("credential.{url}.helper");
    let _ = git(cwd, &["config", "--local", "--unset-all", &key]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_from_urls() {
        assert_eq!(
            app_from_git_url("http://127.0.0.1:5000/myapp.git").as_deref(),
            Some("myapp")
        );
        assert_eq!(
            app_from_git_url("https://git.kiln.local/my-app-2.git/\n").as_deref(),
            Some("my-app-2")
        );
        assert_eq!(
            app_from_git_url("git@kiln.local:other.git").as_deref(),
            Some("other")
        );
        assert_eq!(
            app_from_git_url("ssh://git@kiln.local/x/deep.git").as_deref(),
            Some("deep")
        );
        for bad in [
            "http://host/app",
            "http://host/.git",
            "",
            "http://host/we%20ird.git",
        ] {
            assert_eq!(app_from_git_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn helper_quotes_the_path() {
        assert_eq!(
            helper_command(Path::new("/usr/bin/kiln")),
            "!'/usr/bin/kiln' git:credentials"
        );
        assert_eq!(
            helper_command(Path::new("/o'dd/kiln")),
            r"!'/o'\''dd/kiln' git:credentials"
        );
    }
}
