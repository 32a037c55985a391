//! `pg:*` and `redis:*`: Heroku's data commands. Databases are named as Heroku's CLI names
//! them (an attachment such as `DATABASE` or `HEROKU_POSTGRESQL_AMBER`, with or without
//! `_URL`, or the add-on's name), resolved through the API; backups are jobs this command
//! waits for, as `heroku pg:backups:capture` does.

use super::{Ctx, app_label, resolve_app};
use crate::api::Api;
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::time::Duration;

/// The add-on (its JSON attachment) a database name means in `app`.
async fn resolve(api: &Api, app: &str, which: Option<&str>, service: &str) -> Result<Value> {
    let default = if service == "heroku-redis" {
        "REDIS"
    } else {
        "DATABASE"
    };
    let name = which.unwrap_or(default);
    let name = name.strip_suffix("_URL").unwrap_or(name);
    let found = api
        .post(
            "/actions/addon-attachments/resolve",
            &json!({ "addon_attachment": name, "app": app, "addon_service": service }),
        )
        .await;
    match found {
        Ok(list) => match list.as_array().and_then(|l| l.first()) {
            Some(a) => Ok(a.clone()),
            None => bail!("{app} has no {service} {name}"),
        },
        Err(_) => {
            // An add-on name rather than an attachment's.
            let addon = api
                .get(&format!("/apps/{}/addons/{}", segment(app), segment(name)))
                .await
                .map_err(|_| anyhow::anyhow!("{app} has no {service} {name}"))?;
            Ok(json!({ "name": name, "addon": { "id": addon["id"], "name": addon["name"] } }))
        }
    }
}

/// The app, the API, and the attachment a command's database (or Redis) argument names.
async fn target(
    ctx: &Ctx<'_>,
    flags: &AppFlags,
    which: Option<&str>,
    service: &str,
) -> Result<(String, Api, Value)> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let att = resolve(&api, &app, which, service).await?;
    Ok((app, api, att))
}

/// The attachment's add-on id, as a path segment.
fn addon_id(att: &Value) -> String {
    segment(str_at(att, "/addon/id"))
}

pub async fn info(ctx: &mut Ctx<'_>, flags: &AppFlags, which: Option<&str>) -> Result<()> {
    let (_, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    let info = api
        .get(&format!("/client/v11/databases/{}", addon_id(&att)))
        .await?;
    let mut out = format::header(&format!("{}_URL", str_at(&att, "/name")));
    out.push_str(&info_rows(&info));
    ctx.out(&out)
}

/// The data API's `info: [{name, values}]` rows as `Name: value` lines.
fn info_rows(info: &Value) -> String {
    let rows: Vec<(String, String)> = info["info"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let values: Vec<&str> = r["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            (str_at(r, "/name").to_string(), values.join(", "))
        })
        .collect();
    format::styled_object(&rows)
}

fn status(t: &Value) -> String {
    match str_at(t, "/status") {
        "succeeded" => format!("Completed {}", format::when(str_at(t, "/finished_at"))),
        "failed" => format!("Failed {}", format::when(str_at(t, "/finished_at"))),
        "running" => "Running".to_string(),
        other => other.to_string(),
    }
}

pub async fn backups(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let list = ctx
        .api()?
        .get(&format!("/client/v11/apps/{}/transfers", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = format::header("Backups");
    let header = |what: &str| {
        vec![vec![
            "ID".to_string(),
            "Created at".to_string(),
            "Status".to_string(),
            "Size".to_string(),
            what.to_string(),
        ]]
    };
    let mut rows = header("Database");
    let mut restores = header("Database");
    for t in items {
        let row = vec![
            str_at(t, "/name").to_string(),
            format::when(str_at(t, "/created_at")),
            status(t),
            format::filesize(t["processed_bytes"].as_u64().unwrap_or(0)),
            str_at(t, "/addon/name").to_string(),
        ];
        if str_at(t, "/to_type") == "pg_restore" {
            restores.push(row);
        } else {
            rows.push(row);
        }
    }
    if rows.len() == 1 {
        out.push_str(&format!(
            "No backups. Capture one with kiln pg:backups:capture -a {app}\n"
        ));
    } else {
        out.push_str(&format::table(&rows));
    }
    out.push('\n');
    out.push_str(&format::header("Restores"));
    if restores.len() == 1 {
        out.push_str(&format!(
            "No restores found. Use kiln pg:backups:restore -a {app} to restore a backup\n"
        ));
    } else {
        out.push_str(&format::table(&restores));
    }
    ctx.out(&out)
}

/// Polls a transfer until it ends; an error if it failed.
async fn wait(api: &Api, app: &str, t: &Value) -> Result<Value> {
    let num = t["num"].as_u64().unwrap_or(0);
    loop {
        let now = api
            .get(&format!(
                "/client/v11/apps/{}/transfers/{num}",
                segment(app)
            ))
            .await?;
        match str_at(&now, "/status") {
            "succeeded" => return Ok(now),
            "failed" => bail!(
                "{} failed: {}",
                str_at(&now, "/name"),
                str_at(&now, "/error")
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub async fn capture(ctx: &mut Ctx<'_>, flags: &AppFlags, which: Option<&str>) -> Result<()> {
    let (app, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    let t = api
        .post(
            &format!("/client/v11/databases/{}/backups", addon_id(&att)),
            &json!({}),
        )
        .await?;
    ctx.action(&format!(
        "Backing up {} to {}",
        str_at(&att, "/name"),
        str_at(&t, "/name")
    ))?;
    match wait(&api, &app, &t).await {
        Ok(_) => ctx.done("")?,
        Err(e) => return ctx.failed(e),
    }
    ctx.out(&format!(
        "Use Ctrl-C at any time to stop watching progress; the backup will continue running.\nUse kiln pg:backups:info {} to check progress.\n",
        str_at(&t, "/name")
    ))
}

fn confirm(app: &str, given: Option<&str>, what: &str) -> Result<()> {
    match given {
        None => bail!("{what}\nTo proceed, re-run this command with --confirm {app}"),
        Some(c) if c != app => bail!("Confirmation {c} did not match {app}. Aborted."),
        Some(_) => Ok(()),
    }
}

pub async fn restore(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    backup: Option<&str>,
    which: Option<&str>,
    confirmation: Option<&str>,
) -> Result<()> {
    let (app, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    confirm(
        &app,
        confirmation,
        &format!(
            "This will overwrite all data in {} on {}.",
            str_at(&att, "/name"),
            app_label(&app)
        ),
    )?;
    let backup = match backup {
        Some(b) => b.to_string(),
        None => latest(&api, &app).await?,
    };
    let t = api
        .post(
            &format!("/client/v11/databases/{}/restores", addon_id(&att)),
            &json!({ "backup": backup }),
        )
        .await?;
    ctx.action(&format!("Restoring {backup} to {}", str_at(&att, "/name")))?;
    match wait(&api, &app, &t).await {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

/// The newest backup that succeeded.
async fn latest(api: &Api, app: &str) -> Result<String> {
    let list = api
        .get(&format!("/client/v11/apps/{}/transfers", segment(app)))
        .await?;
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .find(|t| str_at(t, "/status") == "succeeded" && str_at(t, "/to_type") != "pg_restore")
        .map(|t| str_at(t, "/name").to_string())
        .ok_or_else(|| anyhow::anyhow!("No backups. Capture one with kiln pg:backups:capture"))
}

pub async fn download(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    backup: Option<&str>,
    output: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let backup = match backup {
        Some(b) => b.to_string(),
        None => latest(&api, &app).await?,
    };
    let dest = ctx.env.cwd().join(output.unwrap_or("latest.dump"));
    ctx.action(&format!("Downloading {backup} to {}", dest.display()))?;
    match api
        .download(
            &format!(
                "/client/v11/apps/{}/transfers/{}/dump",
                segment(&app),
                segment(&backup)
            ),
            &dest,
        )
        .await
    {
        Ok(n) => ctx.done(&format!(", {}", format::filesize(n))),
        Err(e) => ctx.failed(e),
    }
}

pub async fn backup_info(ctx: &mut Ctx<'_>, flags: &AppFlags, backup: Option<&str>) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let backup = match backup {
        Some(b) => b.to_string(),
        None => latest(&api, &app).await?,
    };
    let t = api
        .get(&format!(
            "/client/v11/apps/{}/transfers/{}",
            segment(&app),
            segment(&backup)
        ))
        .await?;
    let mut out = format::header(&format!("Backup {}", str_at(&t, "/name")));
    let mut rows = vec![
        ("Database", str_at(&t, "/addon/name").to_string()),
        ("Started at", format::when(str_at(&t, "/started_at"))),
        ("Finished at", format::when(str_at(&t, "/finished_at"))),
        ("Status", status(&t)),
        ("Type", str_at(&t, "/kind").to_string()),
        (
            "Backup Size",
            format::filesize(t["processed_bytes"].as_u64().unwrap_or(0)),
        ),
    ];
    rows.retain(|(_, v)| !v.is_empty());
    if !str_at(&t, "/error").is_empty() {
        rows.push(("Error", str_at(&t, "/error").to_string()));
    }
    out.push_str(&format::styled_object(&rows));
    ctx.out(&out)
}

pub async fn delete(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    backup: &str,
    confirmation: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    confirm(
        &app,
        confirmation,
        &format!("This will delete backup {backup} of {}.", app_label(&app)),
    )?;
    let api = ctx.api()?;
    ctx.step(
        &format!("Deleting backup {backup} on {}", app_label(&app)),
        api.delete(&format!(
            "/client/v11/apps/{}/transfers/{}",
            segment(&app),
            segment(backup)
        )),
    )
    .await
    .map(|_| ())
}

pub async fn url(ctx: &mut Ctx<'_>, flags: &AppFlags, backup: Option<&str>) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let backup = match backup {
        Some(b) => b.to_string(),
        None => latest(&api, &app).await?,
    };
    let u = api
        .post(
            &format!(
                "/client/v11/apps/{}/transfers/{}/actions/public-url",
                segment(&app),
                segment(&backup)
            ),
            &json!({}),
        )
        .await?;
    ctx.out(&format!("{}\n", str_at(&u, "/url")))
}

/// `--at '02:00 UTC'` → 2.
fn parse_at(at: &str) -> Result<u8> {
    let t = at.trim();
    let (time, tz) = t.split_once(' ').unwrap_or((t, "UTC"));
    if !matches!(tz.trim(), "UTC" | "utc" | "Etc/UTC") {
        bail!("Kiln schedules backups in UTC: --at '02:00 UTC'");
    }
    let hour = time.split(':').next().unwrap_or("");
    match hour.parse::<u8>() {
        Ok(h) if h < 24 => Ok(h),
        _ => bail!("--at takes an hour such as '02:00 UTC'"),
    }
}

pub async fn schedule(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    which: Option<&str>,
    at: &str,
) -> Result<()> {
    let hour = parse_at(at)?;
    let (_, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    ctx.step(&format!(
        "Scheduling daily backups of {} at {hour:02}:00 UTC",
        str_at(&att, "/name")
    ), api
        .post(
            &format!("/client/v11/databases/{}/transfer-schedules", addon_id(&att)),
            &json!({ "hour": hour, "timezone": "UTC", "schedule_name": format!("{}_URL", str_at(&att, "/name")) }),
        ))
        .await
        .map(|_| ())
}

pub async fn unschedule(ctx: &mut Ctx<'_>, flags: &AppFlags, which: Option<&str>) -> Result<()> {
    let (_, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    ctx.step(
        &format!("Unscheduling {} daily backups", str_at(&att, "/name")),
        api.delete(&format!(
            "/client/v11/databases/{}/transfer-schedules/default",
            addon_id(&att)
        )),
    )
    .await
    .map(|_| ())
}

pub async fn schedules(ctx: &mut Ctx<'_>, flags: &AppFlags) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let atts = api
        .get(&format!("/apps/{}/addon-attachments", segment(&app)))
        .await?;
    let mut out = format::header("Backup Schedules");
    let mut any = false;
    let mut seen = Vec::new();
    for a in atts.as_array().map(Vec::as_slice).unwrap_or_default() {
        let id = str_at(a, "/addon/id");
        if !str_at(a, "/addon/plan/name").starts_with("heroku-postgresql") || seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let list = api
            .get(&format!(
                "/client/v11/databases/{}/transfer-schedules",
                segment(id)
            ))
            .await?;
        for s in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            any = true;
            out.push_str(&format!(
                "{}: daily at {}:00 UTC\n",
                str_at(s, "/name"),
                s["hour"].as_u64().map_or("?".into(), |h| format!("{h:02}"))
            ));
        }
    }
    if !any {
        out.push_str(&format!(
            "No backup schedules found on {}\nUse kiln pg:backups:schedule to set one up\n",
            app_label(&app)
        ));
    }
    ctx.out(&out)
}

pub async fn reset(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    which: Option<&str>,
    confirmation: Option<&str>,
) -> Result<()> {
    let (app, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    confirm(
        &app,
        confirmation,
        &format!(
            "This will destroy all data in {} on {}.",
            str_at(&att, "/name"),
            app_label(&app)
        ),
    )?;
    ctx.step(
        &format!("Resetting {}", str_at(&att, "/name")),
        api.put(
            &format!("/client/v11/databases/{}/reset", addon_id(&att)),
            &json!({}),
        ),
    )
    .await
    .map(|_| ())
}

/// `pg:credentials:rotate` and `redis:credentials --reset`.
pub async fn rotate(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    which: Option<&str>,
    service: &str,
    confirmation: Option<&str>,
) -> Result<()> {
    let (app, api, att) = target(ctx, flags, which, service).await?;
    confirm(
        &app,
        confirmation,
        &format!(
            "This will end every connection with {}'s current credentials and restart the dynos of the apps it is attached to.",
            str_at(&att, "/name")
        ),
    )?;
    let base = if service == "heroku-redis" {
        "/redis/v0"
    } else {
        "/postgres/v0"
    };
    ctx.step(
        &format!(
            "Rotating the credentials of {}",
            str_at(&att, "/addon/name")
        ),
        api.post(
            &format!("{base}/databases/{}/credentials_rotation", addon_id(&att)),
            &json!({}),
        ),
    )
    .await
    .map(|_| ())
}

/// `pg:psql` and `redis:cli`: the service's client in a one-off dyno, which has the app's
/// config vars and reaches the service from wherever the command is typed.
pub async fn client(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    which: Option<&str>,
    service: &str,
    command: Option<&str>,
) -> Result<()> {
    let (_, _, att) = target(ctx, flags, which, service).await?;
    let var = format!("{}_URL", str_at(&att, "/name"));
    let mut args = if service == "heroku-redis" {
        vec![
            "redis-cli".to_string(),
            "--no-auth-warning".into(),
            "-u".into(),
            format!("${var}"),
        ]
    } else {
        vec!["psql".to_string(), format!("${var}")]
    };
    match command {
        Some(c) if service == "heroku-redis" => args.push(c.to_string()),
        Some(c) => {
            args.push("-c".into());
            args.push(shell_quote(c));
        }
        None => {}
    }
    super::run::attached(ctx, flags, &[args.join(" ")], false, &[], None).await
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `pg:ps`: the database's sessions and what they run.
pub async fn ps(ctx: &mut Ctx<'_>, flags: &AppFlags, which: Option<&str>) -> Result<()> {
    let (_, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    let list = api
        .get(&format!(
            "/client/v11/databases/{}/activity",
            addon_id(&att)
        ))
        .await?;
    let mut rows = vec![vec![
        "pid".to_string(),
        "state".to_string(),
        "source".to_string(),
        "running_for".to_string(),
        "waiting".to_string(),
        "query".to_string(),
    ]];
    for s in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        rows.push(vec![
            s["pid"].to_string(),
            str_at(s, "/state").to_string(),
            str_at(s, "/source").to_string(),
            format!("{}s", s["running_for"]),
            if s["waiting"].as_bool() == Some(true) {
                "t"
            } else {
                "f"
            }
            .to_string(),
            str_at(s, "/query").replace('\n', " "),
        ]);
    }
    ctx.out(&format::table(&rows))
}

/// `pg:kill PID [--force]`.
pub async fn kill(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    pid: u32,
    force: bool,
    which: Option<&str>,
) -> Result<()> {
    let (_, api, att) = target(ctx, flags, which, "heroku-postgresql").await?;
    ctx.step(
        &format!(
            "{} session {pid} on {}",
            if force {
                "Ending"
            } else {
                "Cancelling the query of"
            },
            str_at(&att, "/name")
        ),
        api.post(
            &format!(
                "/client/v11/databases/{}/activity/{pid}/actions/kill",
                addon_id(&att)
            ),
            &json!({ "force": force }),
        ),
    )
    .await
    .map(|_| ())
}

/// `redis:info`.
pub async fn redis_info(ctx: &mut Ctx<'_>, flags: &AppFlags, which: Option<&str>) -> Result<()> {
    let (_, api, att) = target(ctx, flags, which, "heroku-redis").await?;
    let info = api
        .get(&format!("/redis/v0/databases/{}", addon_id(&att)))
        .await?;
    let mut out = format::header(&format!(
        "{} ({})",
        str_at(&att, "/addon/name"),
        str_at(&att, "/name")
    ));
    out.push_str(&info_rows(&info));
    ctx.out(&out)
}

/// `redis:maxmemory --policy P`.
pub async fn redis_maxmemory(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    which: Option<&str>,
    policy: &str,
) -> Result<()> {
    let (_, api, att) = target(ctx, flags, which, "heroku-redis").await?;
    ctx.step(
        &format!(
            "Setting the maxmemory policy of {} to {policy}",
            str_at(&att, "/addon/name")
        ),
        api.patch(
            &format!("/redis/v0/databases/{}/config", addon_id(&att)),
            &json!({ "maxmemory_policy": policy }),
        ),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_hours() {
        assert_eq!(parse_at("02:00 UTC").unwrap(), 2);
        assert_eq!(parse_at("23:00").unwrap(), 23);
        assert!(parse_at("24:00 UTC").is_err());
        assert!(parse_at("02:00 America/New_York").is_err());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
