//! `certs:auto`, `certs:auto:enable`, `certs:auto:disable`, `certs:auto:refresh`: Automatic
//! Certificate Management, certificates ordered from an ACME CA (Let's Encrypt) for the
//! app's custom domains and renewed before they expire. The API is `POST`, `PATCH` and
//! `DELETE /apps/{app}/acm`; each domain's state is its `acm_status`.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long `certs:auto --wait` waits for every domain to be issued or failed.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// The Heroku CLI's words for `acm_status`.
fn humanize(status: Option<&str>) -> String {
    match status {
        None | Some("") => "Waiting".into(),
        Some("ok") => "OK".into(),
        Some("failed") => "Failed".into(),
        Some("verified") => "In Progress".into(),
        Some("dns-verified") => "DNS Verified".into(),
        Some(other) => other
            .split('-')
            .map(capitalize)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The status view: on or off, then each custom domain's state (and why, when it failed).
pub fn render(app: &str, app_json: &Value, domains: &Value) -> String {
    if !app_json
        .get("acm")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return format::header(&format!(
            "Automatic Certificate Management is disabled on {}",
            app_label(app)
        ));
    }
    let mut out = format::header(&format!(
        "Automatic Certificate Management is enabled on {}",
        app_label(app)
    ));
    let custom: Vec<&Value> = domains
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| str_at(d, "/kind") == "custom")
                .collect()
        })
        .unwrap_or_default();
    if custom.is_empty() {
        out.push_str(&format!(
            "{} has no custom domains. Add one with kiln domains:add HOSTNAME.\n",
            app_label(app)
        ));
        return out;
    }
    let failing = custom
        .iter()
        .any(|d| d.get("acm_status").and_then(Value::as_str) == Some("failed"));
    let mut rows = vec![vec!["Domain".to_string(), "Status".to_string()]];
    if failing {
        rows[0].push("Reason".into());
    }
    rows[0].push("Last Updated".into());
    for d in &custom {
        let mut row = vec![
            str_at(d, "/hostname").to_string(),
            humanize(d.get("acm_status").and_then(Value::as_str)),
        ];
        if failing {
            row.push(
                d.get("acm_status_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
        }
        row.push(format::when(str_at(d, "/updated_at")));
        rows.push(row);
    }
    out.push_str(&format::table(&rows));
    if failing {
        out.push('\n');
        out.push_str(&format::header("Some domains are failing validation, please verify that your DNS matches: kiln domains"));
        out.truncate(out.trim_end().len());
        out.push('\n');
        out.push_str("    Each must resolve to this server, whose router must answer on port 80. Retry with kiln certs:auto:refresh.\n");
    }
    out
}

/// Whether every custom domain has an outcome (issued or failed).
fn settled(domains: &Value) -> bool {
    domains.as_array().is_none_or(|a| {
        a.iter()
            .filter(|d| str_at(d, "/kind") == "custom")
            .all(|d| {
                matches!(
                    d.get("acm_status").and_then(Value::as_str),
                    Some("ok" | "failed")
                )
            })
    })
}

pub async fn status(ctx: &mut Ctx<'_>, flags: &AppFlags, wait: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let mut app_json = api.get(&format!("/apps/{}", segment(&app))).await?;
    let mut domains = api.get(&format!("/apps/{}/domains", segment(&app))).await?;
    if wait
        && app_json
            .get("acm")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    {
        let deadline = Instant::now() + WAIT_LIMIT;
        ctx.action("Waiting until the certificate is issued to all domains")?;
        while !settled(&domains) {
            if Instant::now() > deadline {
                let _ = ctx.out("!\n");
                bail!(
                    "Still waiting after {} minutes; see kiln certs:auto.",
                    WAIT_LIMIT.as_secs() / 60
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            domains = api.get(&format!("/apps/{}/domains", segment(&app))).await?;
        }
        app_json = api.get(&format!("/apps/{}", segment(&app))).await?;
        ctx.done("")?;
    }
    ctx.out(&render(&app, &app_json, &domains))
}

pub async fn enable(ctx: &mut Ctx<'_>, flags: &AppFlags) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action("Enabling Automatic Certificate Management")?;
    if let Err(e) = api
        .post(&format!("/apps/{}/acm", segment(&app)), &json!({}))
        .await
    {
        return ctx.failed(e);
    }
    ctx.out("starting. See status with kiln certs:auto or wait until active with kiln certs:auto --wait\n")?;
    ctx.out("=== Your certificate will now be managed by Kiln. Check the status by running kiln certs:auto.\n")
}

pub async fn disable(ctx: &mut Ctx<'_>, flags: &AppFlags, confirm: Option<&str>) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    if let Some(confirm) = confirm.filter(|c| *c != app) {
        bail!("Confirmation {confirm} did not match {app}. Aborted.");
    }
    let api = ctx.api()?;
    ctx.action(&format!(
        "Disabling Automatic Certificate Management for {}",
        app_label(&app)
    ))?;
    match api.delete(&format!("/apps/{}/acm", segment(&app))).await {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn refresh(ctx: &mut Ctx<'_>, flags: &AppFlags) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action(&format!(
        "Refreshing Automatic Certificate Management for {}",
        app_label(&app)
    ))?;
    match api
        .patch(&format!("/apps/{}/acm", segment(&app)), &json!({}))
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        assert_eq!(humanize(None), "Waiting");
        assert_eq!(humanize(Some("ok")), "OK");
        assert_eq!(humanize(Some("failed")), "Failed");
        assert_eq!(humanize(Some("pending")), "Pending");
        assert_eq!(humanize(Some("dns-verified")), "DNS Verified");
        assert_eq!(humanize(Some("cert-issued")), "Cert Issued");
        assert_eq!(humanize(Some("-")), " ");
        assert_eq!(humanize(Some("élan-ß")), "Élan SS");
    }

    #[test]
    fn renders_like_heroku() {
        assert_eq!(
            render("a", &json!({"acm": false}), &json!([])),
            "=== Automatic Certificate Management is disabled on ⬢ a\n\n"
        );
        let domains = json!([
            {"kind": "heroku", "hostname": "a.localhost"},
            {"kind": "custom", "hostname": "www.example.com", "acm_status": "ok", "acm_status_reason": null, "updated_at": "2026-03-01T12:34:56Z"},
            {"kind": "custom", "hostname": "new.example.com", "acm_status": null, "updated_at": "2026-03-01T12:35:00Z"}
        ]);
        assert_eq!(
            render("a", &json!({"acm": true}), &domains),
            "=== Automatic Certificate Management is enabled on ⬢ a\n\n\
             Domain           Status   Last Updated\n\
             www.example.com  OK       2026-03-01 12:34 UTC\n\
             new.example.com  Waiting  2026-03-01 12:35 UTC\n"
        );
        let failing = json!([{"kind": "custom", "hostname": "*.example.com", "acm_status": "failed", "acm_status_reason": "Wildcard", "updated_at": "2026-03-01T12:34:56Z"}]);
        let text = render("a", &json!({"acm": true}), &failing);
        assert!(text.contains("Domain         Status  Reason    Last Updated\n*.example.com  Failed  Wildcard  2026-03-01 12:34 UTC\n"), "{text}");
        assert!(
            text.contains("=== Some domains are failing validation"),
            "{text}"
        );
        assert!(render("a", &json!({"acm": true}), &json!([])).contains("has no custom domains"));
    }
}
