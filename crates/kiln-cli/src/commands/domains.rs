//! `domains`, `domains:add`, `domains:remove`.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use serde_json::{Value, json};

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let domains = ctx
        .api()?
        .get(&format!("/apps/{}/domains", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&domains));
    }
    ctx.out(&render(&app, &domains))
}

/// Heroku's layout: the default domain, then a table of custom ones with their DNS target.
pub fn render(app: &str, domains: &Value) -> String {
    let items = domains.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = format::header(&format!("{app} Heroku Domain"));
    for d in items.iter().filter(|d| str_at(d, "/kind") == "heroku") {
        out.push_str(str_at(d, "/hostname"));
        out.push('\n');
    }
    let custom: Vec<&Value> = items
        .iter()
        .filter(|d| str_at(d, "/kind") == "custom")
        .collect();
    if !custom.is_empty() {
        out.push('\n');
        out.push_str(&format::header(&format!("{app} Custom Domains")));
        let mut rows = vec![vec![
            "Domain Name".to_string(),
            "DNS Record Type".to_string(),
            "DNS Target".to_string(),
        ]];
        for d in custom {
            let hostname = str_at(d, "/hostname");
            // A CNAME cannot sit at a zone apex (example.com); ALIAS/ANAME records can.
            let record = if hostname.starts_with("*.") || hostname.matches('.').count() >= 2 {
                "CNAME"
            } else {
                "ALIAS or ANAME"
            };
            rows.push(vec![
                hostname.to_string(),
                record.to_string(),
                str_at(d, "/cname").to_string(),
            ]);
        }
        out.push_str(&format::table(&rows));
    }
    out
}

pub async fn add(ctx: &mut Ctx<'_>, flags: &AppFlags, hostname: &str) -> Result<()> {
    let hostname = check(hostname)?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action(&format!("Adding {hostname} to {}", app_label(&app)))?;
    let domain = match api
        .post(
            &format!("/apps/{}/domains", segment(&app)),
            &json!({ "hostname": hostname, "sni_endpoint": null }),
        )
        .await
    {
        Ok(d) => d,
        Err(e) => return ctx.failed(e),
    };
    ctx.done("")?;
    let target = str_at(&domain, "/cname");
    if target.is_empty() {
        return Ok(());
    }
    ctx.out(&format!(
        "Configure your app's DNS provider to point {} at the DNS target {target}.\n",
        str_at(&domain, "/hostname")
    ))
}

pub async fn remove(ctx: &mut Ctx<'_>, flags: &AppFlags, hostname: &str) -> Result<()> {
    let hostname = check(hostname)?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action(&format!("Removing {hostname} from {}", app_label(&app)))?;
    match api
        .delete(&format!(
            "/apps/{}/domains/{}",
            segment(&app),
            segment(hostname)
        ))
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

/// A hostname argument, checked only for what would make a bad request; the API checks
/// the rest and says what is wrong.
fn check(hostname: &str) -> Result<&str> {
    let hostname = hostname.trim();
    if hostname.is_empty()
        || hostname.len() > 253
        || hostname
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c.is_control())
    {
        bail!("Invalid hostname {hostname:?}: give a name such as www.example.com");
    }
    Ok(hostname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_lists() {
        let only_default = json!([{"kind": "heroku", "hostname": "a.localhost", "cname": null}]);
        assert_eq!(
            render("a", &only_default),
            "=== a Heroku Domain\n\na.localhost\n"
        );
        let both = json!([
            {"kind": "heroku", "hostname": "a.localhost", "cname": null},
            {"kind": "custom", "hostname": "www.example.com", "cname": "a.localhost"},
            {"kind": "custom", "hostname": "example.com", "cname": "a.localhost"}
        ]);
        assert_eq!(
            render("a", &both),
            "=== a Heroku Domain\n\na.localhost\n\n=== a Custom Domains\n\n\
             Domain Name      DNS Record Type  DNS Target\n\
             www.example.com  CNAME            a.localhost\n\
             example.com      ALIAS or ANAME   a.localhost\n"
        );
    }
}
