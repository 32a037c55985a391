//! The pre-receive hook and the server end it talks to.
//!
//! `kiln git-hook pre-receive` runs inside `git receive-pack` (so inside the push's object
//! quarantine). It sends the server one JSON line — the push token, the ref updates and git's
//! quarantine variables — over the unix socket named by `KILN_HOOK_SOCKET`, then relays what
//! comes back: `o <text>` lines go to stderr (the pusher sees `remote: <text>`), and a final
//! `x <code>` is the hook's exit status.

use crate::{GitService, Push, is_deploy_ref, is_zero_sha};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The quarantine variables git sets for hooks; the server needs them to read the objects.
const GIT_VARS: [&str; 3] = [
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
];
const MAX_REQUEST: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct HookRequest {
    token: String,
    /// (old, new, refname)
    refs: Vec<(String, String, String)>,
    env: Vec<(String, String)>,
}

/// The hook program. Returns its exit status.
pub fn main(args: &[String]) -> i32 {
    if args.first().map(String::as_str) != Some("pre-receive") {
        eprintln!("usage: kiln git-hook pre-receive");
        return 2;
    }
    let (Ok(socket), Ok(token)) = (
        std::env::var("KILN_HOOK_SOCKET"),
        std::env::var("KILN_PUSH_TOKEN"),
    ) else {
        eprintln!(" !     This repository is managed by Kiln; push through the Kiln server.");
        return 1;
    };
    let mut refs = Vec::new();
    for line in std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .take(10_000)
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [old, new, name] = parts[..] {
            refs.push((old.to_string(), new.to_string(), name.to_string()));
        }
    }
    let env = GIT_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let req = HookRequest { token, refs, env };
    let mut stream = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(" !     Could not reach the Kiln server ({socket}): {e}");
            return 1;
        }
    };
    let mut line = match serde_json::to_string(&req) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(" !     {e}");
            return 1;
        }
    };
    line.push('\n');
    if let Err(e) = stream.write_all(line.as_bytes()) {
        eprintln!(" !     Could not talk to the Kiln server: {e}");
        return 1;
    }
    let stderr = std::io::stderr();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Some(text) = line.strip_prefix("o ") {
            let mut e = stderr.lock();
            let _ = writeln!(e, "{text}");
            let _ = e.flush();
        } else if let Some(code) = line.strip_prefix("x ") {
            return code.trim().parse().unwrap_or(1);
        }
    }
    eprintln!(" !     The Kiln server closed the connection before the build finished.");
    1
}

/// Accepts hook connections for the life of the server.
pub(crate) async fn serve(svc: Arc<GitService>, listener: tokio::net::UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let svc = svc.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(svc, stream).await {
                        tracing::debug!(error = %e, "git hook connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a git hook connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(svc: Arc<GitService>, stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(r).take(MAX_REQUEST as u64);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let reply = |text: String| format!("o {}\n", text.replace('\n', " "));
    let req: HookRequest = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            w.write_all(format!("o  !     Bad hook request: {e}\nx 1\n").as_bytes())
                .await?;
            return Ok(());
        }
    };
    let Some(ctx) = svc.context(&req.token) else {
        w.write_all(b"o  !     This push is not known to the server.\nx 1\n")
            .await?;
        return Ok(());
    };
    let deploy: Vec<&(String, String, String)> = req
        .refs
        .iter()
        .filter(|(_, _, name)| is_deploy_ref(name))
        .collect();
    let chosen = deploy
        .iter()
        .find(|(_, _, n)| n == "refs/heads/main")
        .or_else(|| deploy.first())
        .copied();
    let Some((old, new, refname)) = chosen else {
        let names: Vec<&str> = req.refs.iter().map(|(_, _, n)| n.as_str()).collect();
        w.write_all(reply(format!(" !     Pushed to non-deploy branch {}. Kiln deploys `main` or `master`: git push kiln HEAD:main", names.join(", "))).as_bytes()).await?;
        w.write_all(b"x 1\n").await?;
        return Ok(());
    };
    if is_zero_sha(new) {
        w.write_all(
            reply(format!(
                " !     Deleting {refname} is not allowed: it is what the app runs."
            ))
            .as_bytes(),
        )
        .await?;
        w.write_all(b"x 1\n").await?;
        return Ok(());
    }
    let app_name = ctx.app_name.clone();
    let push = Push {
        context: ctx,
        refname: refname.clone(),
        old: old.clone(),
        new: new.clone(),
        repo: svc.repo_path(
            &svc.context(&req.token)
                .map(|c| c.app_id)
                .unwrap_or_default(),
        ),
        git_env: req.env.clone(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let deploy = svc.handler.deploy(push, tx);
    let deploy = tokio::spawn(deploy);
    // Relay output while the build runs; the channel closes when the handler is done with it.
    let mut client_gone = false;
    while let Some(text) = rx.recv().await {
        if !client_gone && w.write_all(reply(text).as_bytes()).await.is_err() {
            // The pusher went away; the deploy goes on, as on Heroku.
            client_gone = true;
        }
    }
    let result = deploy
        .await
        .unwrap_or_else(|e| Err(format!("the deploy task failed: {e}").into()));
    if client_gone {
        return Ok(());
    }
    match result {
        Ok(()) => w.write_all(b"x 0\n").await?,
        Err(rejection) => {
            for l in rejection_lines(&rejection, &app_name) {
                w.write_all(reply(l).as_bytes()).await?;
            }
            w.write_all(b"x 1\n").await?
        }
    }
    Ok(())
}

/// What the pusher sees of a rejection: git shows each as a `remote:` line. The one place
/// where why a push failed becomes git's words.
fn rejection_lines(rejection: &crate::Rejection, app_name: &str) -> Vec<String> {
    let mut lines: Vec<String> = rejection
        .to_string()
        .lines()
        .map(|l| format!(" !     {l}"))
        .collect();
    lines.push(format!(" !     Push rejected to {app_name}."));
    lines
}
