//! `config`, `config:get`, `config:set`, `config:unset`.

use super::{Ctx, app_label, resolve_app};
use crate::api::Api;
use crate::args::{parse_config_keys, parse_config_pairs};
use crate::cli::AppFlags;
use crate::format::{self, plain};
use crate::transport::segment;
use anyhow::Result;
use serde_json::{Map, Value};

/// The Range the Heroku CLI uses to learn which release a config change made.
pub const LATEST_RELEASE_RANGE: &str = "version ..; max=1, order=desc";

pub async fn show(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool, shell: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let config = ctx
        .api()?
        .get(&format!("/apps/{}/config-vars", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&config));
    }
    let vars: Vec<(String, String)> = config
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        .unwrap_or_default();
    if shell {
        let lines: String = vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
            .collect();
        return ctx.out(&lines);
    }
    ctx.out(&format!(
        "{}{}",
        format::header(&format!("{app} Config Vars")),
        format::styled_object(&vars)
    ))
}

pub async fn get(ctx: &mut Ctx<'_>, flags: &AppFlags, key: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let config = ctx
        .api()?
        .get(&format!("/apps/{}/config-vars", segment(&app)))
        .await?;
    // An unset var prints an empty line, as in the Heroku CLI, so `$(kiln config:get X)` works.
    let value = config.get(key).map(plain).unwrap_or_default();
    ctx.out(&format!("{value}\n"))
}

pub async fn set(ctx: &mut Ctx<'_>, flags: &AppFlags, args: &[String]) -> Result<()> {
    let pairs = parse_config_pairs(args)?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let body: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    ctx.action(&format!(
        "Setting {} and restarting {}",
        names.join(", "),
        app_label(&app)
    ))?;
    let result = async {
        let config = api
            .patch(
                &format!("/apps/{}/config-vars", segment(&app)),
                &Value::Object(body),
            )
            .await?;
        let version = latest_version(&api, &app).await?;
        Ok::<_, anyhow::Error>((config, version))
    }
    .await;
    let (config, version) = match result {
        Ok(r) => r,
        Err(e) => return ctx.failed(e),
    };
    ctx.done(&version.map(|v| format!("v{v}")).unwrap_or_default())?;
    // Show what the API now holds for the keys we set (it is the source of truth).
    let shown: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                config.get(k).map(plain).unwrap_or_else(|| v.clone()),
            )
        })
        .collect();
    ctx.out(&format::styled_object(&shown))
}

pub async fn unset(ctx: &mut Ctx<'_>, flags: &AppFlags, args: &[String]) -> Result<()> {
    let keys = parse_config_keys(args)?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let body: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
    ctx.action(&format!(
        "Unsetting {} and restarting {}",
        keys.join(", "),
        app_label(&app)
    ))?;
    let result = async {
        api.patch(
            &format!("/apps/{}/config-vars", segment(&app)),
            &Value::Object(body),
        )
        .await?;
        latest_version(&api, &app).await
    }
    .await;
    match result {
        Ok(version) => ctx.done(&version.map(|v| format!("v{v}")).unwrap_or_default()),
        Err(e) => ctx.failed(e),
    }
}

/// The newest release's version (the one a config change just made).
async fn latest_version(api: &Api, app: &str) -> Result<Option<u64>> {
    let releases = api
        .get_range(
            &format!("/apps/{}/releases", segment(app)),
            LATEST_RELEASE_RANGE,
        )
        .await?;
    Ok(releases
        .as_array()
        .and_then(|r| r.iter().filter_map(|r| r.get("version")?.as_u64()).max()))
}

/// Quotes a value for a POSIX shell, leaving plain words bare.
pub fn shell_quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+,=".contains(&b))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("postgres://u:p@h/db"), "postgres://u:p@h/db");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
