//! `releases`, `releases:info`, `releases:rollback`.

use super::config::LATEST_RELEASE_RANGE;
use super::{Ctx, app_label, resolve_app};
use crate::api::Api;
use crate::args::parse_version;
use crate::cli::AppFlags;
use crate::format::{self, plain, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use kiln_model::Timestamp;
use serde_json::{Value, json};

fn version_of(r: &Value) -> u64 {
    r.get("version").and_then(Value::as_u64).unwrap_or(0)
}

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, num: u32, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let range = format!("version ..; max={num}, order=desc");
    let releases = ctx
        .api()?
        .get_range(&format!("/apps/{}/releases", segment(&app)), &range)
        .await?;
    if as_json {
        return ctx.out(&format::json(&releases));
    }
    let releases: Vec<Value> = releases.as_array().cloned().unwrap_or_default();
    ctx.out(&render_list(&app, releases, ctx.now))
}

/// The release list: newest first, a status note on releases that are not simply live.
pub fn render_list(app: &str, mut releases: Vec<Value>, now: Timestamp) -> String {
    if releases.is_empty() {
        return format!("{} has no releases.\n", app_label(app));
    }
    // The API should already send newest first; sorting again costs nothing and the
    // Heroku CLI does the same.
    releases.sort_by_key(|r| std::cmp::Reverse(version_of(r)));
    let mut title = format!("{app} Releases");
    if let Some(current) = releases
        .iter()
        .find(|r| r.get("current").and_then(Value::as_bool) == Some(true))
    {
        title.push_str(&format!(" - Current: v{}", version_of(current)));
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            let mut description = str_at(r, "/description").to_string();
            if let Some(note) = format::release_status(str_at(r, "/status")) {
                description.push(' ');
                description.push_str(note);
            }
            let reason = str_at(r, "/status_reason");
            if !reason.is_empty() {
                description.push_str(&format!(" ({reason})"));
            }
            vec![
                format!("v{}", version_of(r)),
                description,
                str_at(r, "/user/email").to_string(),
                format::ago_str(str_at(r, "/created_at"), now),
            ]
        })
        .collect();
    format!("{}{}", format::header(&title), format::table(&rows))
}

async fn latest(api: &Api, app: &str) -> Result<Value> {
    let releases = api
        .get_range(
            &format!("/apps/{}/releases", segment(app)),
            LATEST_RELEASE_RANGE,
        )
        .await?;
    match releases
        .as_array()
        .and_then(|r| r.iter().max_by_key(|r| version_of(r)))
    {
        Some(r) => Ok(r.clone()),
        None => bail!("{} has no releases.", app_label(app)),
    }
}

pub async fn info(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    release: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let version = release.map(parse_version).transpose()?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let release = match version {
        Some(v) => {
            api.get(&format!("/apps/{}/releases/{v}", segment(&app)))
                .await?
        }
        None => latest(&api, &app).await?,
    };
    if as_json {
        return ctx.out(&format::json(&release));
    }
    let version = version_of(&release);
    let config = api
        .get(&format!(
            "/apps/{}/releases/{version}/config-vars",
            segment(&app)
        ))
        .await?;
    ctx.out(&render_info(&release, &config))
}

pub fn render_info(release: &Value, config: &Value) -> String {
    let version = version_of(release);
    let status = str_at(release, "/status");
    let mut change = str_at(release, "/description").to_string();
    if let Some(note) = format::release_status(status) {
        change.push_str(&format!(" ({note})"));
    }
    let addons: Vec<String> = release
        .get("addon_plan_names")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(plain).collect())
        .unwrap_or_default();
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if !addons.is_empty() {
        pairs.push(("Add-ons", addons.join(", ")));
    }
    pairs.push(("By", str_at(release, "/user/email").to_string()));
    pairs.push(("Change", change));
    if let Some(eligible) = release
        .get("eligible_for_rollback")
        .and_then(Value::as_bool)
    {
        pairs.push((
            "Eligible for Rollback?",
            if eligible { "Yes" } else { "No" }.to_string(),
        ));
    }
    let reason = str_at(release, "/status_reason");
    pairs.push((
        "Status",
        if reason.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {reason}")
        },
    ));
    pairs.push(("When", str_at(release, "/created_at").to_string()));
    let vars: Vec<(String, String)> = config
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        .unwrap_or_default();
    format!(
        "{}{}\n{}{}",
        format::header(&format!("Release v{version}")),
        format::styled_object(&pairs),
        format::header(&format!("v{version} Config vars")),
        format::styled_object(&vars)
    )
}

/// The release a bare `releases:rollback` goes back to: among the newest releases, the second
/// one that is eligible (the first is the one running now), as the Heroku CLI picks it.
pub fn previous_eligible(releases: &Value) -> Option<&Value> {
    let mut eligible: Vec<&Value> = releases
        .as_array()?
        .iter()
        .filter(|r| r.get("eligible_for_rollback").and_then(Value::as_bool) == Some(true))
        .collect();
    eligible.sort_by_key(|r| std::cmp::Reverse(version_of(r)));
    eligible.get(1).copied()
}

pub async fn rollback(ctx: &mut Ctx<'_>, flags: &AppFlags, release: Option<&str>) -> Result<()> {
    let version = release.map(parse_version).transpose()?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let target = match version {
        Some(v) => {
            api.get(&format!("/apps/{}/releases/{v}", segment(&app)))
                .await?
        }
        None => {
            let recent = api
                .get_range(
                    &format!("/apps/{}/releases", segment(&app)),
                    "version ..; max=10, order=desc",
                )
                .await?;
            match previous_eligible(&recent) {
                Some(r) => r.clone(),
                None => bail!(
                    "No eligible release found for {} to roll back to.",
                    app_label(&app)
                ),
            }
        }
    };
    let target_version = version_of(&target);
    // The API finds a release by id or by version; the id is what Heroku's CLI sends.
    let id = match target.get("id").and_then(Value::as_str) {
        Some(id) => json!(id),
        None => json!(target_version.to_string()),
    };
    ctx.action(&format!(
        "Rolling back {} to v{target_version}",
        app_label(&app)
    ))?;
    let created = match api
        .post(
            &format!("/apps/{}/releases", segment(&app)),
            &json!({ "release": id }),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return ctx.failed(e),
    };
    let new_version = version_of(&created);
    ctx.done(&format!("v{new_version}"))?;
    ctx.warn("Rollback affects code and config vars; it doesn't add or remove add-ons, and attached add-ons keep their current credentials.");
    if new_version > 1 {
        ctx.warn(&format!("To undo, run: kiln rollback v{}", new_version - 1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_text() {
        let now = Timestamp::parse_rfc3339("2026-11-21T12:01:00Z").unwrap();
        let releases = json!([
            {"version": 4, "description": "Deploy abc123", "status": "failed", "user": {"email": "admin@kiln.local"}, "created_at": "2026-11-21T12:00:30Z", "current": false},
            {"version": 5, "description": "Set FOO config vars", "status": "succeeded", "user": {"email": "admin@kiln.local"}, "created_at": "2026-11-21T12:00:00Z", "current": true},
            {"version": 6, "description": "Deploy def456", "status": "pending", "user": {"email": "admin@kiln.local"}, "created_at": "2026-11-21T12:00:59Z"}
        ]);
        let text = render_list("myapp", releases.as_array().unwrap().clone(), now);
        assert_eq!(
            text,
            "=== myapp Releases - Current: v5\n\n\
             v6  Deploy def456 release command executing  admin@kiln.local  2026/11/21 12:00:59 +0000 (~ 1s ago)\n\
             v5  Set FOO config vars                      admin@kiln.local  2026/11/21 12:00:00 +0000 (~ 1m ago)\n\
             v4  Deploy abc123 release command failed     admin@kiln.local  2026/11/21 12:00:30 +0000 (~ 30s ago)\n"
        );
        assert_eq!(
            render_list("myapp", vec![], now),
            "⬢ myapp has no releases.\n"
        );
    }

    #[test]
    fn info_text() {
        let release = json!({"version": 5, "description": "Deploy abc", "status": "failed", "user": {"email": "a@b"},
            "created_at": "2026-11-21T12:00:00Z", "eligible_for_rollback": false, "addon_plan_names": []});
        let text = render_info(&release, &json!({"FOO": "bar"}));
        assert_eq!(
            text,
            "=== Release v5\n\n\
             By:                     a@b\n\
             Change:                 Deploy abc (release command failed)\n\
             Eligible for Rollback?: No\n\
             Status:                 failed\n\
             When:                   2026-11-21T12:00:00Z\n\n\
             === v5 Config vars\n\n\
             FOO: bar\n"
        );
    }

    #[test]
    fn rollback_picks_the_second_eligible() {
        let releases = json!([
            {"id": "c", "version": 7, "eligible_for_rollback": true},
            {"id": "b", "version": 6, "eligible_for_rollback": false},
            {"id": "a", "version": 5, "eligible_for_rollback": true},
            {"id": "z", "version": 4, "eligible_for_rollback": true}
        ]);
        assert_eq!(
            previous_eligible(&releases).and_then(|r| r["id"].as_str()),
            Some("a")
        );
        assert!(
            previous_eligible(&json!([{"id": "c", "version": 7}])).is_none(),
            "no field means not eligible"
        );
    }
}
