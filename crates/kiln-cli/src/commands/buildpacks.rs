//! `buildpacks`, `buildpacks:set`.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use serde_json::{Value, json};

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let installed = ctx
        .api()?
        .get(&format!("/apps/{}/buildpack-installations", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&installed));
    }
    ctx.out(&render(&app, &installed))
}

pub fn render(app: &str, installed: &Value) -> String {
    let mut items: Vec<&Value> = installed
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    items.sort_by_key(|b| b.get("ordinal").and_then(Value::as_i64).unwrap_or(0));
    let urls: Vec<&str> = items
        .iter()
        .map(|b| match str_at(b, "/buildpack/url") {
            "" => str_at(b, "/buildpack/name"),
            url => url,
        })
        .collect();
    match urls.as_slice() {
        [] => format!("{app} has no Buildpacks.\n"),
        [one] => format!("{}{one}\n", format::header(&format!("{app} Buildpack URL"))),
        many => {
            let lines: String = many
                .iter()
                .enumerate()
                .map(|(i, u)| format!("{}. {u}\n", i + 1))
                .collect();
            format!(
                "{}{lines}",
                format::header(&format!("{app} Buildpack URLs"))
            )
        }
    }
}

pub async fn set(ctx: &mut Ctx<'_>, flags: &AppFlags, url: &str) -> Result<()> {
    let url = url.trim();
    if url.is_empty() || url.chars().any(char::is_whitespace) {
        bail!("Invalid buildpack {url:?}: give a URL or a name such as heroku/nodejs");
    }
    let app = resolve_app(ctx.env, flags, None)?;
    let body = json!({ "updates": [{ "buildpack": url }] });
    ctx.api()?
        .put(
            &format!("/apps/{}/buildpack-installations", segment(&app)),
            &body,
        )
        .await?;
    ctx.out(&format!(
        "Buildpack set. Next release on {} will use {url}.\nRun git push kiln main to create a new release using this buildpack.\n",
        app_label(&app)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildpack_lists() {
        assert_eq!(render("a", &json!([])), "a has no Buildpacks.\n");
        let one =
            json!([{"ordinal": 0, "buildpack": {"url": "heroku/nodejs", "name": "heroku/nodejs"}}]);
        assert_eq!(render("a", &one), "=== a Buildpack URL\n\nheroku/nodejs\n");
        let two = json!([
            {"ordinal": 1, "buildpack": {"url": "https://example.test/b.tgz", "name": "b"}},
            {"ordinal": 0, "buildpack": {"url": "heroku/python"}}
        ]);
        assert_eq!(
            render("a", &two),
            "=== a Buildpack URLs\n\n1. heroku/python\n2. https://example.test/b.tgz\n"
        );
    }
}
