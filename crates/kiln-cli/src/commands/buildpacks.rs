//! `buildpacks`, `buildpacks:set`, `:add`, `:remove`, `:clear` and `:search`. The API takes an
//! app's whole list at once (`PUT /apps/{app}/buildpack-installations`), so each change reads
//! the list, edits it and writes it back, as Heroku's CLI does.

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
    let urls = urls(installed);
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

/// The app's buildpack URLs in order (the API's `ordinal`).
async fn current(ctx: &mut Ctx<'_>, app: &str) -> Result<Vec<String>> {
    let installed = ctx
        .api()?
        .get(&format!("/apps/{}/buildpack-installations", segment(app)))
        .await?;
    Ok(urls(&installed))
}

fn urls(installed: &Value) -> Vec<String> {
    let mut items: Vec<&Value> = installed
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    items.sort_by_key(|b| b.get("ordinal").and_then(Value::as_i64).unwrap_or(0));
    items
        .iter()
        .map(|b| match str_at(b, "/buildpack/url") {
            "" => str_at(b, "/buildpack/name").to_string(),
            url => url.to_string(),
        })
        .collect()
}

async fn replace(ctx: &mut Ctx<'_>, app: &str, list: &[String]) -> Result<()> {
    let updates: Vec<Value> = list.iter().map(|u| json!({ "buildpack": u })).collect();
    ctx.api()?
        .put(
            &format!("/apps/{}/buildpack-installations", segment(app)),
            &json!({ "updates": updates }),
        )
        .await?;
    Ok(())
}

fn check_url(url: &str) -> Result<&str> {
    let url = url.trim();
    if url.is_empty() || url.chars().any(char::is_whitespace) {
        bail!("Invalid buildpack {url:?}: give a URL or a name such as heroku/nodejs");
    }
    Ok(url)
}

/// A 1-based `--index` as a position in a list of `len` (an index one past the end appends
/// when `appending`).
fn position(index: u32, len: usize, appending: bool) -> Result<usize> {
    let max = if appending { len + 1 } else { len.max(1) };
    if index == 0 || index as usize > max {
        bail!("Invalid index {index}. Only valid value is 1 to {max}.");
    }
    Ok(index as usize - 1)
}

/// "Next release on APP will use …", as Heroku's CLI words it for one or several buildpacks.
fn next_release(app: &str, list: &[String]) -> String {
    match list {
        [] => format!(
            "Next release on {} will detect buildpacks normally.\n",
            app_label(app)
        ),
        [one] => format!(
            "Next release on {} will use {one}.\nRun git push kiln main to create a new release using this buildpack.\n",
            app_label(app)
        ),
        many => {
            let lines: String = many
                .iter()
                .enumerate()
                .map(|(i, u)| format!("  {}. {u}\n", i + 1))
                .collect();
            format!(
                "Next release on {} will use:\n{lines}Run git push kiln main to create a new release using these buildpacks.\n",
                app_label(app)
            )
        }
    }
}

/// `buildpacks:set URL [-i N]`: replaces the buildpack at N (default 1), or sets the only one.
pub async fn set(ctx: &mut Ctx<'_>, flags: &AppFlags, url: &str, index: Option<u32>) -> Result<()> {
    let url = check_url(url)?;
    let app = resolve_app(ctx.env, flags, None)?;
    let mut list = current(ctx, &app).await?;
    let at = position(index.unwrap_or(1), list.len(), true)?;
    if list.iter().enumerate().any(|(i, u)| u == url && i != at) {
        bail!("The buildpack {url} is already set on your app.");
    }
    if at == list.len() {
        list.push(url.to_string());
    } else {
        list[at] = url.to_string();
    }
    if index.is_none() {
        list.truncate(1);
    }
    replace(ctx, &app, &list).await?;
    let text = format!("Buildpack set. {}", next_release(&app, &list));
    ctx.out(&text)
}

/// `buildpacks:add URL [-i N]`: inserts at N, or appends.
pub async fn add(ctx: &mut Ctx<'_>, flags: &AppFlags, url: &str, index: Option<u32>) -> Result<()> {
    let url = check_url(url)?;
    let app = resolve_app(ctx.env, flags, None)?;
    let mut list = current(ctx, &app).await?;
    if list.iter().any(|u| u == url) {
        bail!("The buildpack {url} is already set on your app.");
    }
    let at = match index {
        Some(i) => position(i, list.len(), true)?,
        None => list.len(),
    };
    list.insert(at, url.to_string());
    replace(ctx, &app, &list).await?;
    let text = format!("Buildpack added. {}", next_release(&app, &list));
    ctx.out(&text)
}

/// `buildpacks:remove [URL] [-i N]`: one of the two picks the buildpack.
pub async fn remove(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    url: Option<&str>,
    index: Option<u32>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let mut list = current(ctx, &app).await?;
    let at = match (url, index) {
        (Some(_), Some(_)) => bail!("Please choose either index or Buildpack URL, but not both."),
        (None, None) => bail!("Usage: kiln buildpacks:remove [URL] [-i INDEX]"),
        (Some(url), None) => {
            let url = check_url(url)?;
            list.iter()
                .position(|u| u == url)
                .ok_or_else(|| anyhow::anyhow!("Buildpack {url} not found."))?
        }
        (None, Some(i)) => {
            if list.is_empty() {
                bail!(
                    "No buildpacks were found. Next release on {app} will detect buildpack normally."
                );
            }
            position(i, list.len(), false)?
        }
    };
    list.remove(at);
    replace(ctx, &app, &list).await?;
    let text = format!("Buildpack removed. {}", next_release(&app, &list));
    ctx.out(&text)
}

/// `buildpacks:clear`: back to detection.
pub async fn clear(ctx: &mut Ctx<'_>, flags: &AppFlags) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    replace(ctx, &app, &[]).await?;
    let text = format!("Buildpacks cleared. {}", next_release(&app, &[]));
    ctx.out(&text)
}

/// `buildpacks:search [TERM]`: the server's buildpack registry (Kiln's built-ins).
pub async fn search(
    ctx: &mut Ctx<'_>,
    term: Option<&str>,
    name: Option<&str>,
    namespace: Option<&str>,
    description: Option<&str>,
) -> Result<()> {
    let enc = |s: &str| crate::transport::segment(s);
    let mut query = Vec::new();
    if let Some(ns) = namespace {
        query.push(format!("in%5Bnamespace%5D%5B%5D={}", enc(ns)));
    }
    if let Some(n) = name {
        query.push(format!("in%5Bname%5D%5B%5D={}", enc(n)));
    }
    if let Some(d) = description {
        query.push(format!("like%5Bdescription%5D={}", enc(d)));
    }
    let path = if query.is_empty() {
        "/buildpacks".to_string()
    } else {
        format!("/buildpacks?{}", query.join("&"))
    };
    let found = ctx.api()?.get(&path).await?;
    let term = term.map(str::to_ascii_lowercase);
    let mut rows = vec![vec![
        "Buildpack".to_string(),
        "Category".to_string(),
        "Description".to_string(),
    ]];
    for b in found.as_array().map(Vec::as_slice).unwrap_or_default() {
        let full = format!("{}/{}", str_at(b, "/namespace"), str_at(b, "/name"));
        let desc = str_at(b, "/description");
        if let Some(t) = &term {
            if !full.to_ascii_lowercase().contains(t.as_str())
                && !desc.to_ascii_lowercase().contains(t.as_str())
            {
                continue;
            }
        }
        rows.push(vec![
            full,
            str_at(b, "/category").to_string(),
            desc.to_string(),
        ]);
    }
    let n = rows.len() - 1;
    let text = format!(
        "{}\n{n} buildpack{} found\n",
        format::table(&rows),
        if n == 1 { "" } else { "s" }
    );
    ctx.out(&text)
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
