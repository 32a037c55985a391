//! `drains`, `drains:add`, `drains:remove`, `drains:info`: log drains, worded as Heroku's CLI
//! words them.

use super::{Ctx, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::Result;
use serde_json::{Value, json};

pub async fn list(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    as_json: bool,
    extended: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let drains = ctx
        .api()?
        .get(&format!("/apps/{}/log-drains", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&drains));
    }
    ctx.out(&render(&app, &drains, extended))
}

/// Heroku's layout: user drains, then add-on drains, each `URL (TOKEN)`; `-x` adds the id.
pub fn render(app: &str, drains: &Value, extended: bool) -> String {
    let items = drains.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return format!("{app} has no drains.\n");
    }
    let line = |d: &Value| {
        let mut l = format!("{} ({})", str_at(d, "/url"), str_at(d, "/token"));
        if extended {
            l.push_str(&format!(" {}", str_at(d, "/id")));
        }
        l.push('\n');
        l
    };
    let mut out = String::new();
    let (addon, user): (Vec<&Value>, Vec<&Value>) =
        items.iter().partition(|d| !d["addon"].is_null());
    if !user.is_empty() {
        out.push_str(&format::header("Drains"));
        out.extend(user.iter().map(|d| line(d)));
    }
    if !addon.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format::header("Add-on Drains"));
        out.extend(addon.iter().map(|d| line(d)));
    }
    out
}

pub async fn add(ctx: &mut Ctx<'_>, flags: &AppFlags, url: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let d = ctx
        .api()?
        .post(
            &format!("/apps/{}/log-drains", segment(&app)),
            &json!({ "url": url }),
        )
        .await?;
    let text = format!("Successfully added drain {}\n", str_at(&d, "/url"));
    ctx.out(&text)
}

pub async fn remove(ctx: &mut Ctx<'_>, flags: &AppFlags, url_or_token: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let d = ctx
        .api()?
        .delete(&format!(
            "/apps/{}/log-drains/{}",
            segment(&app),
            segment(url_or_token)
        ))
        .await?;
    let text = format!("Successfully removed drain {}\n", str_at(&d, "/url"));
    ctx.out(&text)
}

pub async fn info(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    url_or_token: &str,
    as_json: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let d = ctx
        .api()?
        .get(&format!(
            "/apps/{}/log-drains/{}",
            segment(&app),
            segment(url_or_token)
        ))
        .await?;
    if as_json {
        return ctx.out(&format::json(&d));
    }
    let text = format!(
        "{}{}",
        format::header(str_at(&d, "/url")),
        format::styled_object(&[
            ("Id", str_at(&d, "/id")),
            ("Token", str_at(&d, "/token")),
            ("Created At", str_at(&d, "/created_at")),
        ])
    );
    ctx.out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_list_like_herokus_cli() {
        assert_eq!(render("a", &json!([]), false), "a has no drains.\n");
        let two = json!([
            {"id": "1", "url": "syslog://h:514", "token": "d.1", "addon": null},
            {"id": "2", "url": "https://x/", "token": "d.2", "addon": {"id": "a"}}
        ]);
        assert_eq!(
            render("a", &two, false),
            "=== Drains\n\nsyslog://h:514 (d.1)\n\n=== Add-on Drains\n\nhttps://x/ (d.2)\n"
        );
        assert!(render("a", &two, true).contains("syslog://h:514 (d.1) 1\n"));
    }
}
