//! `maintenance`, `maintenance:on`, `maintenance:off`: while on, the router answers every
//! request with the maintenance page (503, H80); dynos keep running. And `ps:autosleep`:
//! whether the app's dynos sleep when no request comes, until the next one wakes them.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::transport::segment;
use anyhow::Result;
use serde_json::{Value, json};

pub async fn show(ctx: &mut Ctx<'_>, flags: &AppFlags) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let info = ctx.api()?.get(&format!("/apps/{}", segment(&app))).await?;
    let on = info
        .get("maintenance")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    ctx.out(if on { "on\n" } else { "off\n" })
}

pub async fn set(ctx: &mut Ctx<'_>, flags: &AppFlags, on: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action(&format!(
        "{} maintenance mode for {}",
        if on { "Enabling" } else { "Disabling" },
        app_label(&app)
    ))?;
    match api
        .patch(
            &format!("/apps/{}", segment(&app)),
            &json!({ "maintenance": on }),
        )
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

/// `ps:autosleep [on|off|default] [--after 30m] [--workers-stay|--workers-sleep]`: shows the
/// setting, or changes what is given.
pub async fn autosleep(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    mode: Option<&str>,
    after: Option<&str>,
    workers_stay: Option<bool>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/sleep", segment(&app));
    let v = if mode.is_none() && after.is_none() && workers_stay.is_none() {
        api.get(&path).await?
    } else {
        let mut body = serde_json::Map::new();
        if let Some(m) = mode {
            body.insert("mode".into(), json!(m));
        }
        if let Some(a) = after {
            let d = kiln_model::sleep::parse_duration(a).map_err(|e| anyhow::anyhow!("{e}"))?;
            body.insert("after".into(), json!(d.as_secs()));
        }
        if let Some(w) = workers_stay {
            body.insert("workers_stay".into(), json!(w));
        }
        api.patch(&path, &Value::Object(body)).await?
    };
    let sleeps = v.get("sleeps").and_then(Value::as_bool).unwrap_or(false);
    let mode = v.get("mode").and_then(Value::as_str).unwrap_or("default");
    let secs = v.get("sleeps_after").and_then(Value::as_u64).unwrap_or(0);
    let workers = if v.get("workers_stay").and_then(Value::as_bool) == Some(true) {
        "worker dynos stay up"
    } else {
        "worker dynos sleep too"
    };
    let line = if sleeps {
        format!(
            "{} sleeps after {} without a request ({mode}); {workers}\n",
            app_label(&app),
            human_secs(secs)
        )
    } else {
        format!("{} does not sleep ({mode})\n", app_label(&app))
    };
    ctx.out(&line)
}

fn human_secs(s: u64) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
