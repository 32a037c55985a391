//! `addons`, `addons:create`, `addons:info`, `addons:attach`, `addons:detach`,
//! `addons:upgrade`, `addons:destroy`, `addons:services`, `addons:plans`: Heroku's commands
//! and their output, against the add-on resources of the API.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use serde_json::{Value, json};

fn price(plan: &Value) -> String {
    match plan.pointer("/price/cents").and_then(Value::as_u64) {
        Some(0) | None => "free".into(),
        Some(c) => format!("${}/month", c as f64 / 100.0),
    }
}

/// `addons`: the app's add-ons (or, without an app, the user's), each with its attachments.
pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let api = ctx.api()?;
    let app = resolve_app(ctx.env, flags, None).ok();
    let (addons, attachments) = match &app {
        Some(app) => (
            api.get(&format!("/apps/{}/addons", segment(app))).await?,
            api.get(&format!("/apps/{}/addon-attachments", segment(app)))
                .await?,
        ),
        None => (
            api.get("/addons").await?,
            api.get("/addon-attachments").await?,
        ),
    };
    if as_json {
        return ctx.out(&format::json(&addons));
    }
    let items = addons.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return ctx.out(&match &app {
            Some(a) => format!("No add-ons for app {a}.\n"),
            None => "You have no add-ons.\n".into(),
        });
    }
    let atts = attachments
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut rows = vec![vec![
        "Add-on".to_string(),
        "Plan".to_string(),
        "Price".to_string(),
        "State".to_string(),
    ]];
    for a in items {
        let plan = str_at(a, "/plan/name");
        rows.push(vec![
            format!(
                "{} ({})",
                str_at(a, "/addon_service/name"),
                str_at(a, "/name")
            ),
            plan.split_once(':').map_or(plan, |(_, p)| p).to_string(),
            price(&a["plan"]),
            match str_at(a, "/state") {
                "provisioned" => "created".to_string(),
                s => s.to_string(),
            },
        ]);
        for t in atts
            .iter()
            .filter(|t| str_at(t, "/addon/id") == str_at(a, "/id"))
        {
            let on = str_at(t, "/app/name");
            let label =
                if app.as_deref() == Some(on) || app.is_none() && on == str_at(a, "/app/name") {
                    format!(" └─ as {}", str_at(t, "/name"))
                } else {
                    format!(" └─ as {} on {on} app", str_at(t, "/name"))
                };
            rows.push(vec![label]);
        }
    }
    ctx.out(&format::table(&rows))
}

/// `addons:create SERVICE[:PLAN] [--name N] [--as A] [-- --opt value]`.
pub async fn create(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    plan: &str,
    name: Option<&str>,
    as_: Option<&str>,
    options: &[String],
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let config = parse_options(options)?;
    let mut body = json!({ "plan": { "name": plan }, "config": config });
    if let Some(n) = name {
        body["name"] = json!(n);
    }
    if let Some(a) = as_ {
        body["attachment"] = json!({ "name": a });
    }
    let api = ctx.api()?;
    ctx.action(&format!("Creating {plan} on {}", app_label(&app)))?;
    let addon = match api
        .post(&format!("/apps/{}/addons", segment(&app)), &body)
        .await
    {
        Ok(a) => a,
        Err(e) => return ctx.failed(e),
    };
    ctx.done("")?;
    let message = str_at(&addon, "/provision_message");
    if !message.is_empty() {
        ctx.out(&format!("{message}\n"))?;
    }
    let vars: Vec<&str> = addon["config_vars"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ctx.out(&format!(
        "Created {} as {}\nUse kiln addons:docs {} to view documentation\n",
        str_at(&addon, "/name"),
        vars.join(", "),
        str_at(&addon, "/addon_service/name")
    ))
}

/// `-- --maxmemory_policy allkeys-lru` or `--key=value` → `{key: value}`.
fn parse_options(args: &[String]) -> Result<Value> {
    let mut out = serde_json::Map::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let Some(key) = a.strip_prefix("--") else {
            bail!("Unexpected argument {a}: add-on options look like --name value");
        };
        let (key, value) = match key.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match it.peek() {
                Some(v) if !v.starts_with("--") => {
                    (key.to_string(), it.next().cloned().unwrap_or_default())
                }
                _ => (key.to_string(), "true".to_string()),
            },
        };
        out.insert(key, Value::String(value));
    }
    Ok(Value::Object(out))
}

/// `addons:info ADDON`.
pub async fn info(ctx: &mut Ctx<'_>, flags: &AppFlags, addon: &str, as_json: bool) -> Result<()> {
    let api = ctx.api()?;
    let a = match resolve_app(ctx.env, flags, None).ok() {
        Some(app) => {
            api.get(&format!(
                "/apps/{}/addons/{}",
                segment(&app),
                segment(addon)
            ))
            .await?
        }
        None => api.get(&format!("/addons/{}", segment(addon))).await?,
    };
    if as_json {
        return ctx.out(&format::json(&a));
    }
    let atts = api
        .get(&format!(
            "/addons/{}/addon-attachments",
            segment(str_at(&a, "/id"))
        ))
        .await?;
    let attached: Vec<String> = atts
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}::{}", str_at(t, "/app/name"), str_at(t, "/name")))
        .collect();
    let mut out = format::header(str_at(&a, "/name"));
    out.push_str(&format::styled_object(&[
        ("Attachments", attached.join(", ")),
        ("Installed at", str_at(&a, "/created_at").to_string()),
        ("Owning app", str_at(&a, "/app/name").to_string()),
        ("Plan", str_at(&a, "/plan/name").to_string()),
        ("Price", price(&a["plan"])),
        ("State", str_at(&a, "/state").to_string()),
    ]));
    ctx.out(&out)
}

/// `addons:attach ADDON -a APP [--as NAME]`.
pub async fn attach(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    addon: &str,
    as_: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let label = as_.map(|a| format!(" as {a}")).unwrap_or_default();
    ctx.action(&format!("Attaching {addon}{label} to {}", app_label(&app)))?;
    let mut body = json!({ "addon": addon, "app": app });
    if let Some(a) = as_ {
        body["name"] = json!(a);
    }
    let att = match api.post("/addon-attachments", &body).await {
        Ok(t) => t,
        Err(e) => return ctx.failed(e),
    };
    ctx.done("")?;
    let v = latest_version(&api, &app).await;
    ctx.out(&format!(
        "Setting {} config vars and restarting {}... done, v{v}\n",
        str_at(&att, "/name"),
        app_label(&app)
    ))
}

async fn latest_version(api: &crate::api::Api, app: &str) -> String {
    api.get(&format!("/apps/{}/releases", segment(app)))
        .await
        .ok()
        .and_then(|r| {
            r.as_array()?
                .iter()
                .filter_map(|r| r["version"].as_u64())
                .max()
        })
        .map_or_else(|| "?".into(), |v| v.to_string())
}

/// `addons:detach ATTACHMENT -a APP`.
pub async fn detach(ctx: &mut Ctx<'_>, flags: &AppFlags, attachment: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let att = api
        .get(&format!(
            "/apps/{}/addon-attachments/{}",
            segment(&app),
            segment(attachment)
        ))
        .await?;
    ctx.action(&format!(
        "Detaching {} to {} from {}",
        str_at(&att, "/name"),
        str_at(&att, "/addon/name"),
        app_label(&app)
    ))?;
    if let Err(e) = api
        .delete(&format!(
            "/addon-attachments/{}",
            segment(str_at(&att, "/id"))
        ))
        .await
    {
        return ctx.failed(e);
    }
    ctx.done("")?;
    let v = latest_version(&api, &app).await;
    ctx.out(&format!(
        "Unsetting {} config vars and restarting {}... done, v{v}\n",
        str_at(&att, "/name"),
        app_label(&app)
    ))
}

/// `addons:upgrade ADDON PLAN` (and `addons:downgrade`).
pub async fn upgrade(ctx: &mut Ctx<'_>, flags: &AppFlags, addon: &str, plan: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let current = api
        .get(&format!(
            "/apps/{}/addons/{}",
            segment(&app),
            segment(addon)
        ))
        .await?;
    ctx.action(&format!(
        "Changing {} on {} from {} to {plan}",
        str_at(&current, "/name"),
        app_label(&app),
        str_at(&current, "/plan/name")
    ))?;
    let a = match api
        .patch(
            &format!(
                "/apps/{}/addons/{}",
                segment(&app),
                segment(str_at(&current, "/id"))
            ),
            &json!({ "plan": { "name": plan } }),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => return ctx.failed(e),
    };
    ctx.done("")?;
    let message = str_at(&a, "/provision_message");
    if message.is_empty() {
        Ok(())
    } else {
        ctx.out(&format!("{message}\n"))
    }
}

/// `addons:destroy ADDON -a APP --confirm APP [--force]`.
pub async fn destroy(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    addon: &str,
    confirm: Option<&str>,
    force: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    match confirm {
        None => bail!(
            "This will destroy {addon} on {} and its data.\nTo proceed, re-run this command with --confirm {app}",
            app_label(&app)
        ),
        Some(c) if c != app => bail!("Confirmation {c} did not match {app}. Aborted."),
        Some(_) => {}
    }
    let api = ctx.api()?;
    ctx.action(&format!("Destroying {addon} on {}", app_label(&app)))?;
    if let Err(e) = api
        .call(
            http::Method::DELETE,
            &format!("/apps/{}/addons/{}", segment(&app), segment(addon)),
            Some(&json!({ "force": force })),
            None,
        )
        .await
    {
        return ctx.failed(e);
    }
    ctx.done("")
}

/// `addons:services`.
pub async fn services(ctx: &mut Ctx<'_>, as_json: bool) -> Result<()> {
    let list = ctx.api()?.get("/addon-services").await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    let mut rows = vec![vec![
        "Slug".to_string(),
        "Name".to_string(),
        "State".to_string(),
    ]];
    for s in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        rows.push(vec![
            str_at(s, "/name").to_string(),
            str_at(s, "/human_name").to_string(),
            str_at(s, "/state").to_string(),
        ]);
    }
    let mut out = format::table(&rows);
    out.push_str("\nSee plans with kiln addons:plans SERVICE\n");
    ctx.out(&out)
}

/// `addons:plans SERVICE`.
pub async fn plans(ctx: &mut Ctx<'_>, service: &str, as_json: bool) -> Result<()> {
    let list = ctx
        .api()?
        .get(&format!("/addon-services/{}/plans", segment(service)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    let mut rows = vec![vec![
        String::new(),
        "Slug".to_string(),
        "Name".to_string(),
        "Price".to_string(),
    ]];
    for p in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        rows.push(vec![
            if p["default"].as_bool() == Some(true) {
                "default".into()
            } else {
                String::new()
            },
            str_at(p, "/name").to_string(),
            str_at(p, "/human_name").to_string(),
            price(p),
        ]);
    }
    ctx.out(&format::table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_after_the_double_dash() {
        let o = parse_options(&[
            "--maxmemory_policy".into(),
            "allkeys-lru".into(),
            "--x=1".into(),
            "--flag".into(),
        ])
        .unwrap();
        assert_eq!(
            o,
            json!({"maxmemory_policy": "allkeys-lru", "x": "1", "flag": "true"})
        );
        assert!(parse_options(&["stray".into()]).is_err());
    }
}
