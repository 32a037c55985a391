//! `labs`, `labs:enable`, `labs:disable`: an app's switchable features, worded as Heroku's
//! CLI words them (`[+]` on, `[ ]` off). Kiln has no account features, so these act on the app.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::Result;
use serde_json::{Value, json};

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let features = ctx
        .api()?
        .get(&format!("/apps/{}/features", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&features));
    }
    ctx.out(&render(&app, &features))
}

/// `=== App Features ⬢ app`, then one `[+] name  description` line per feature, aligned.
pub fn render(app: &str, features: &Value) -> String {
    let items = features.as_array().map(Vec::as_slice).unwrap_or_default();
    let width = items
        .iter()
        .map(|f| str_at(f, "/name").chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format::header(&format!("App Features {}", app_label(app)));
    for f in items {
        let mark = if f["enabled"].as_bool() == Some(true) {
            "[+]"
        } else {
            "[ ]"
        };
        out.push_str(&format!(
            "{mark} {:<width$}  {}\n",
            str_at(f, "/name"),
            str_at(f, "/description")
        ));
    }
    out
}

pub async fn switch(ctx: &mut Ctx<'_>, flags: &AppFlags, feature: &str, on: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let verb = if on { "Enabling" } else { "Disabling" };
    ctx.step(
        &format!("{verb} {feature} for {}", app_label(&app)),
        api.patch(
            &format!("/apps/{}/features/{}", segment(&app), segment(feature)),
            &json!({ "enabled": on }),
        ),
    )
    .await?;
    if on {
        ctx.out("It takes effect as the app's dynos start again: kiln ps:restart\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labs_list_like_herokus_cli() {
        let f = json!([
            {"name": "preboot", "description": "Always.", "enabled": true},
            {"name": "log-runtime-metrics", "description": "Load and memory.", "enabled": false}
        ]);
        assert_eq!(
            render("a", &f),
            "=== App Features ⬢ a\n\n[+] preboot              Always.\n[ ] log-runtime-metrics  Load and memory.\n"
        );
    }
}
