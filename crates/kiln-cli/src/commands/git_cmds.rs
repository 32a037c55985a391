//! `git:remote` and `git:credentials` (the credential helper git runs during a push).

use super::{Ctx, resolve_app};
use crate::cli::AppFlags;
use crate::format::str_at;
use crate::transport::segment;
use crate::{git, settings};
use anyhow::{Result, bail};

pub async fn remote(ctx: &mut Ctx<'_>, flags: &AppFlags) -> Result<()> {
    let cwd = ctx.env.cwd().to_path_buf();
    if !git::is_repo(&cwd) {
        bail!(
            "{} is not inside a git repository. Run `git init` first.",
            cwd.display()
        );
    }
    // Here `-r` names the remote to write, so it must not also be read to find the app.
    let lookup = AppFlags {
        app: flags.app.clone(),
        remote: None,
    };
    let app_name = resolve_app(ctx.env, &lookup, None)?;
    let app = ctx
        .api()?
        .get(&format!("/apps/{}", segment(&app_name)))
        .await?;
    let git_url = str_at(&app, "/git_url");
    if git_url.is_empty() {
        bail!("The API did not return a git_url for {app_name}.");
    }
    let name = flags.remote.as_deref().unwrap_or(git::REMOTE);
    git::set_remote(&cwd, name, git_url)?;
    match ctx.env.exe() {
        Some(exe) => git::set_credential_helper(&cwd, git_url, exe)?,
        None => ctx.warn(
            "could not tell where this kiln executable is, so no git credential helper was set",
        ),
    }
    ctx.out(&format!("set git remote {name} to {git_url}\n"))
}

/// git's credential helper protocol: git writes `key=value` lines and a blank line on stdin;
/// for `get` we answer with a username and the API key as password. `store` and `erase` have
/// nothing to do: the key is managed by `kiln login`.
pub fn credentials(ctx: &mut Ctx<'_>, operation: &str) -> Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if ctx.io.stdin.read_line(&mut line)? == 0 || line.trim_end_matches(['\r', '\n']).is_empty()
        {
            break;
        }
    }
    if operation != "get" {
        return Ok(());
    }
    let url = settings::api_url(ctx.env, None)?;
    match settings::api_key(ctx.env, &url)? {
        Some(key) => ctx.out(&format!("username=kiln\npassword={key}\n")),
        None => {
            // Saying nothing lets git fall back to asking; the note says why it asks.
            let _ = writeln!(
                ctx.io.stderr,
                "kiln: no API key for {} (run `kiln login`)",
                url.base
            );
            Ok(())
        }
    }
}
