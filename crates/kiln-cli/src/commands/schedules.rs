//! `schedules`, `schedules:add`, `schedules:remove`, `schedules:run`: an app's scheduled jobs
//! (after `kiln addons:create scheduler`). Each run is a detached one-off dyno `scheduler.N`
//! with its output in the app's logs.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::Result;
use serde_json::{Value, json};

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let jobs = ctx
        .api()?
        .get(&format!("/apps/{}/schedules", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&jobs));
    }
    let items = jobs.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return ctx.out(&format!(
            "{} has no scheduled jobs. Add one with: kiln schedules:add \"every 10 minutes\" -- COMMAND\n",
            app_label(&app)
        ));
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "Schedule".to_string(),
        "Command".to_string(),
        "Next run".to_string(),
        "Last run".to_string(),
    ]];
    for j in items {
        let last = match str_at(j, "/last_run_at") {
            "" => "never".to_string(),
            t => t.to_string(),
        };
        let running = if j.get("running") == Some(&Value::Bool(true)) {
            " (running)"
        } else {
            ""
        };
        rows.push(vec![
            str_at(j, "/id").to_string(),
            str_at(j, "/schedule").to_string(),
            str_at(j, "/command").to_string(),
            str_at(j, "/next_run_at").to_string(),
            format!("{last}{running}"),
        ]);
    }
    let mut out = format::header(&format!("{app} Scheduled Jobs"));
    out.push_str(&format::table(&rows));
    ctx.out(&out)
}

pub async fn add(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    schedule: &str,
    command: &[String],
    allow_overlap: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let command = command.join(" ");
    let job = ctx
        .api()?
        .post(
            &format!("/apps/{}/schedules", segment(&app)),
            &json!({ "schedule": schedule, "command": command, "allow_overlap": allow_overlap }),
        )
        .await?;
    ctx.out(&format!(
        "Scheduled `{}` {} on {} (job {}); next run {}\n",
        str_at(&job, "/command"),
        str_at(&job, "/schedule"),
        app_label(&app),
        str_at(&job, "/id"),
        str_at(&job, "/next_run_at"),
    ))
}

pub async fn remove(ctx: &mut Ctx<'_>, flags: &AppFlags, id: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let job = ctx
        .api()?
        .delete(&format!(
            "/apps/{}/schedules/{}",
            segment(&app),
            segment(id)
        ))
        .await?;
    ctx.out(&format!(
        "Removed the job `{}` ({}) from {}\n",
        str_at(&job, "/command"),
        str_at(&job, "/schedule"),
        app_label(&app)
    ))
}

pub async fn run(ctx: &mut Ctx<'_>, flags: &AppFlags, id: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let out = ctx
        .api()?
        .post(
            &format!(
                "/apps/{}/schedules/{}/actions/run",
                segment(&app),
                segment(id)
            ),
            &json!({}),
        )
        .await?;
    ctx.out(&format!(
        "Running the job now as {}: see its output with kiln logs --dyno {} -a {app}\n",
        str_at(&out, "/dyno"),
        str_at(&out, "/dyno"),
    ))
}
