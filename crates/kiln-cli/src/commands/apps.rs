//! `apps`, `apps:create`, `apps:info`, `apps:destroy`.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::git;
use crate::transport::segment;
use anyhow::{Result, bail};
use serde_json::{Value, json};

/// Heroku's layout: the apps you own, then the ones you collaborate on (team apps show their
/// team as `<team>@herokumanager.com`).
pub async fn list(ctx: &mut Ctx<'_>, as_json: bool) -> Result<()> {
    let api = ctx.api()?;
    let apps = api.get("/apps").await?;
    if as_json {
        return ctx.out(&format::json(&apps));
    }
    let account = api.get("/account").await?;
    let me = str_at(&account, "/email");
    let mut all: Vec<(&str, &str)> = apps
        .as_array()
        .map(|a| {
            a.iter()
                .map(|app| (str_at(app, "/name"), str_at(app, "/owner/email")))
                .collect()
        })
        .unwrap_or_default();
    all.sort_unstable();
    if all.is_empty() {
        return ctx.out("You have no apps.\n");
    }
    let title = match me {
        "" => "Apps".to_string(),
        email => format!("{email} Apps"),
    };
    let mut out = format::header(&title);
    // An app without an owner in the reply is counted as the caller's.
    let mine = |owner: &str| owner == me || owner.is_empty();
    for (name, _) in all.iter().filter(|(_, owner)| mine(owner)) {
        out.push_str(name);
        out.push('\n');
    }
    let others: Vec<Vec<String>> = all
        .iter()
        .filter(|(_, owner)| !mine(owner))
        .map(|(n, o)| vec![n.to_string(), o.to_string()])
        .collect();
    if !others.is_empty() {
        out.push('\n');
        out.push_str(&format::header("Collaborated Apps"));
        let mut rows = vec![vec!["Name".to_string(), "Email".to_string()]];
        rows.extend(others);
        out.push_str(&format::table(&rows));
    }
    ctx.out(&out)
}

pub async fn create(
    ctx: &mut Ctx<'_>,
    name: Option<&str>,
    team: Option<&str>,
    no_remote: bool,
) -> Result<()> {
    let api = ctx.api()?;
    let mut body = match name {
        Some(name) => json!({ "name": name }),
        None => json!({}),
    };
    if let Some(t) = team {
        body["team"] = json!(t);
    }
    let path = if team.is_some() {
        "/teams/apps"
    } else {
        "/apps"
    };
    match name {
        Some(name) => ctx.action(&format!("Creating {}", app_label(name)))?,
        None => ctx.action("Creating app")?,
    }
    let app = match api.post(path, &body).await {
        Ok(app) => app,
        Err(e) => return ctx.failed(e),
    };
    let created = str_at(&app, "/name").to_string();
    match name {
        Some(_) => ctx.done("")?,
        None => ctx.done(&app_label(&created))?,
    }
    let git_url = str_at(&app, "/git_url").to_string();
    ctx.out(&format!("{} | {git_url}\n", str_at(&app, "/web_url")))?;

    if !no_remote && !git_url.is_empty() && git::is_repo(ctx.env.cwd()) {
        // The app exists now; a local git problem is worth a warning, not a failure.
        if let Err(e) = add_remote(ctx, &git_url) {
            ctx.warn(&format!(
                "could not add the git remote {}: {e:#}",
                git::REMOTE
            ));
        }
    }
    Ok(())
}

/// Adds (or repoints) the `kiln` remote and the credential helper for it.
fn add_remote(ctx: &mut Ctx<'_>, git_url: &str) -> Result<()> {
    let cwd = ctx.env.cwd();
    let change = git::set_remote(cwd, git::REMOTE, git_url)?;
    if let Some(exe) = ctx.env.exe() {
        git::set_credential_helper(cwd, git_url, exe)?;
    }
    match change {
        git::RemoteChange::Added => ctx.out(&format!("Git remote {} added\n", git::REMOTE)),
        git::RemoteChange::Updated => ctx.out(&format!("Git remote {} updated\n", git::REMOTE)),
        git::RemoteChange::Unchanged => Ok(()),
    }
}

pub async fn info(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    name: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let app_name = resolve_app(ctx.env, flags, name)?;
    let api = ctx.api()?;
    let app = api.get(&format!("/apps/{}", segment(&app_name))).await?;
    let formation = api
        .get(&format!("/apps/{}/formation", segment(&app_name)))
        .await?;
    if as_json {
        return ctx.out(&format::json(
            &json!({ "app": app, "formation": formation }),
        ));
    }
    ctx.out(&render_info(&app, &formation))
}

/// The `apps:info` text: Heroku's keys, in its (alphabetical) order.
pub fn render_info(app: &Value, formation: &Value) -> String {
    let dynos: Vec<String> = formation
        .as_array()
        .map(|f| {
            f.iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        str_at(p, "/type"),
                        p.get("quantity").map(format::plain).unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let size = |key: &str| format::filesize(app.get(key).and_then(Value::as_u64).unwrap_or(0));
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let create_status = str_at(app, "/create_status");
    if !create_status.is_empty() && create_status != "complete" {
        pairs.push(("Create Status", create_status.to_string()));
    }
    pairs.push(("Dynos", dynos.join(", ")));
    pairs.push(("Git URL", str_at(app, "/git_url").to_string()));
    if app.get("maintenance").and_then(Value::as_bool) == Some(true) {
        pairs.push(("Maintenance", "on".to_string()));
    }
    pairs.push(("Owner", str_at(app, "/owner/email").to_string()));
    pairs.push(("Region", str_at(app, "/region/name").to_string()));
    if app.get("repo_size").is_some_and(Value::is_u64) {
        pairs.push(("Repo Size", size("repo_size")));
    }
    pairs.push(("Slug Size", size("slug_size")));
    let mut stack = str_at(app, "/stack/name").to_string();
    let build_stack = str_at(app, "/build_stack/name");
    if !build_stack.is_empty() && build_stack != stack {
        stack.push_str(&format!(" (next build will use {build_stack})"));
    }
    pairs.push(("Stack", stack));
    pairs.push(("Web URL", str_at(app, "/web_url").to_string()));
    format!(
        "{}{}",
        format::header(str_at(app, "/name")),
        format::styled_object(&pairs)
    )
}

pub async fn destroy(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    name: Option<&str>,
    confirm: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, name)?;
    match confirm {
        None => bail!(
            "This will permanently destroy {}, including its releases, config vars and add-ons.\nTo proceed, re-run this command with --confirm {app}",
            app_label(&app)
        ),
        Some(c) if c != app => bail!("Confirmation {c} did not match {app}. Aborted."),
        Some(_) => {}
    }
    let api = ctx.api()?;
    ctx.action(&format!(
        "Destroying {} (including all add-ons)",
        app_label(&app)
    ))?;
    if let Err(e) = api.delete(&format!("/apps/{}", segment(&app))).await {
        return ctx.failed(e);
    }
    ctx.done("")?;

    // A remote that points at an app that no longer exists only produces confusing errors.
    let cwd = ctx.env.cwd();
    if let Some(url) = git::remote_url(cwd, git::REMOTE)
        && git::app_from_git_url(&url).as_deref() == Some(app.as_str())
    {
        git::unset_credential_helper(cwd, &url);
        match git::remove_remote(cwd, git::REMOTE) {
            Ok(()) => ctx.out(&format!("Git remote {} removed\n", git::REMOTE))?,
            Err(e) => ctx.warn(&format!(
                "could not remove the git remote {}: {e:#}",
                git::REMOTE
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text() {
        let app = json!({
            "name": "myapp", "git_url": "http://127.0.0.1:5000/myapp.git", "web_url": "http://myapp.kiln.local/",
            "owner": {"email": "admin@kiln.local"}, "region": {"name": "local"}, "stack": {"name": "heroku-24"},
            "build_stack": {"name": "heroku-24"}, "slug_size": 2_500_000, "repo_size": null, "create_status": "complete"
        });
        let formation = json!([{"type": "web", "quantity": 1}, {"type": "worker", "quantity": 1}]);
        assert_eq!(
            render_info(&app, &formation),
            "=== myapp\n\n\
             Dynos:     web: 1, worker: 1\n\
             Git URL:   http://127.0.0.1:5000/myapp.git\n\
             Owner:     admin@kiln.local\n\
             Region:    local\n\
             Slug Size: 2 MB\n\
             Stack:     heroku-24\n\
             Web URL:   http://myapp.kiln.local/\n"
        );
    }
}
