//! `certs`, `certs:info`, `certs:add`, `certs:update`, `certs:remove`: TLS certificates
//! uploaded to an app (the API's SNI endpoints), served by the router's HTTPS listener for
//! the app's hostnames that they cover.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

fn base(app: &str) -> String {
    format!("/apps/{}/sni-endpoints", segment(app))
}

use format::when;

fn names(endpoint: &Value) -> String {
    endpoint
        .pointer("/ssl_cert/cert_domains")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn trusted(endpoint: &Value) -> &'static str {
    if endpoint
        .pointer("/ssl_cert/ca_signed?")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        "True"
    } else {
        "False"
    }
}

/// `ACM` for certificates Automatic Certificate Management issued, `SNI` for uploads.
fn kind(endpoint: &Value) -> &'static str {
    if endpoint
        .pointer("/ssl_cert/acm")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        "ACM"
    } else {
        "SNI"
    }
}

pub fn render_list(app: &str, endpoints: &Value) -> String {
    let items = endpoints.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return format!(
            "{} has no SSL certificates.\nUse kiln certs:add CRT KEY to add one.\n",
            app_label(app)
        );
    }
    let mut rows = vec![
        [
            "Name",
            "Common Name(s)",
            "Expires",
            "Trusted",
            "Type",
            "Domains",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in &items {
        let domains = e
            .get("domains")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        rows.push(vec![
            str_at(e, "/name").to_string(),
            names(e),
            when(str_at(e, "/ssl_cert/expires_at")),
            trusted(e).to_string(),
            kind(e).into(),
            domains.to_string(),
        ]);
    }
    format::table(&rows)
}

pub fn render_info(endpoint: &Value) -> String {
    let mut out = String::from("Certificate details:\n");
    out.push_str(&format::styled_object(&[
        ("Common Name(s)", names(endpoint)),
        ("Expires At", when(str_at(endpoint, "/ssl_cert/expires_at"))),
        ("Issuer", str_at(endpoint, "/ssl_cert/issuer").to_string()),
        ("Starts At", when(str_at(endpoint, "/ssl_cert/starts_at"))),
        ("Subject", str_at(endpoint, "/ssl_cert/subject").to_string()),
    ]));
    if endpoint
        .pointer("/ssl_cert/self_signed?")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        out.push_str("SSL certificate is self signed.\n");
    } else {
        out.push_str("SSL certificate is not self signed.\n");
    }
    out
}

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let endpoints = ctx.api()?.get(&base(&app)).await?;
    if as_json {
        return ctx.out(&format::json(&endpoints));
    }
    ctx.out(&render_list(&app, &endpoints))
}

/// The endpoint `--name` names, or the app's only one.
async fn pick(ctx: &Ctx<'_>, app: &str, name: Option<&str>) -> Result<String> {
    if let Some(name) = name {
        return Ok(name.to_string());
    }
    let endpoints = ctx.api()?.get(&base(app)).await?;
    match endpoints.as_array().map(Vec::as_slice).unwrap_or_default() {
        [] => bail!("{} has no SSL certificates.", app_label(app)),
        [one] => Ok(str_at(one, "/name").to_string()),
        many => {
            let names: Vec<&str> = many.iter().map(|e| str_at(e, "/name")).collect();
            bail!(
                "{} has more than one SSL certificate ({}); choose one with --name.",
                app_label(app),
                names.join(", ")
            )
        }
    }
}

pub async fn info(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    name: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let name = pick(ctx, &app, name).await?;
    let endpoint = ctx
        .api()?
        .get(&format!("{}/{}", base(&app), segment(&name)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&endpoint));
    }
    ctx.out(&format!(
        "Fetching SSL certificate {name} info for {}... done\n",
        app_label(&app)
    ))?;
    ctx.out(&render_info(&endpoint))
}

/// The PEM files' contents, read before anything is sent.
fn read_pem(ctx: &Ctx<'_>, cert: &str, key: &str) -> Result<Value> {
    let read = |path: &str, what: &str| {
        let full = ctx.env.cwd().join(path);
        std::fs::read_to_string(&full)
            .with_context(|| format!("reading the {what} {}", full.display()))
    };
    Ok(
        json!({ "certificate_chain": read(cert, "certificate chain")?, "private_key": read(key, "private key")? }),
    )
}

pub async fn add(ctx: &mut Ctx<'_>, flags: &AppFlags, cert: &str, key: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let body = read_pem(ctx, cert, key)?;
    ctx.action(&format!("Adding SSL certificate to {}", app_label(&app)))?;
    let endpoint = match ctx.api()?.post(&base(&app), &body).await {
        Ok(e) => e,
        Err(e) => return ctx.failed(e),
    };
    ctx.done("")?;
    ctx.out(&format!(
        "Certificate {} added.\n",
        str_at(&endpoint, "/name")
    ))?;
    ctx.out(&render_info(&endpoint))
}

pub async fn update(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    cert: &str,
    key: &str,
    name: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let body = read_pem(ctx, cert, key)?;
    let name = pick(ctx, &app, name).await?;
    ctx.action(&format!(
        "Updating SSL certificate {name} for {}",
        app_label(&app)
    ))?;
    let endpoint = match ctx
        .api()?
        .patch(&format!("{}/{}", base(&app), segment(&name)), &body)
        .await
    {
        Ok(e) => e,
        Err(e) => return ctx.failed(e),
    };
    ctx.done("")?;
    ctx.out(&render_info(&endpoint))
}

pub async fn remove(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    name: Option<&str>,
    confirm: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    if let Some(confirm) = confirm.filter(|c| *c != app) {
        bail!("Confirmation {confirm} did not match {app}. Aborted.");
    }
    let name = pick(ctx, &app, name).await?;
    ctx.action(&format!(
        "Removing SSL certificate {name} from {}",
        app_label(&app)
    ))?;
    match ctx
        .api()?
        .delete(&format!("{}/{}", base(&app), segment(&name)))
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Value {
        json!({
            "name": "tyrannosaurus-01234",
            "domains": [],
            "ssl_cert": {
                "cert_domains": ["www.example.com", "*.example.com"],
                "expires_at": "2027-03-01T12:34:56Z",
                "starts_at": "2026-03-01T00:00:00Z",
                "issuer": "CN=Example CA",
                "subject": "CN=www.example.com",
                "ca_signed?": true,
                "self_signed?": false
            }
        })
    }

    #[test]
    fn lists_like_heroku() {
        assert_eq!(
            render_list("a", &json!([])),
            "⬢ a has no SSL certificates.\nUse kiln certs:add CRT KEY to add one.\n"
        );
        assert_eq!(
            render_list("a", &json!([endpoint()])),
            "Name                 Common Name(s)                  Expires               Trusted  Type  Domains\n\
             tyrannosaurus-01234  www.example.com, *.example.com  2027-03-01 12:34 UTC  True     SNI   0\n"
        );
    }

    #[test]
    fn shows_details() {
        let text = render_info(&endpoint());
        assert!(text.starts_with("Certificate details:\nCommon Name(s): www.example.com, *.example.com\nExpires At:     2027-03-01 12:34 UTC\n"), "{text}");
        assert!(
            text.ends_with(
                "Subject:        CN=www.example.com\nSSL certificate is not self signed.\n"
            ),
            "{text}"
        );
    }
}
