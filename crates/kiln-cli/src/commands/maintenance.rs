//! `maintenance`, `maintenance:on`, `maintenance:off`: while on, the router answers every
//! request with the maintenance page (503, H80); dynos keep running.

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
