//! `ps`, `ps:scale`, `ps:type`, `ps:restart`.

use super::{Ctx, app_label, resolve_app};
use crate::args::ScaleChange;
use crate::cli::AppFlags;
use crate::format::{self, plain, str_at};
use crate::transport::segment;
use anyhow::{Result, bail};
use kiln_model::{DynoSize, Timestamp};
use serde_json::{Value, json};

pub async fn list(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    types: &[String],
    as_json: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let dynos = ctx
        .api()?
        .get(&format!("/apps/{}/dynos", segment(&app)))
        .await?;
    let mut dynos: Vec<Value> = dynos.as_array().cloned().unwrap_or_default();
    if !types.is_empty() {
        dynos.retain(|d| types.iter().any(|t| t == str_at(d, "/type")));
        for t in types {
            if !dynos.iter().any(|d| str_at(d, "/type") == t) {
                bail!("No {t} dynos on {}", app_label(&app));
            }
        }
    }
    if as_json {
        return ctx.out(&format::json(&Value::Array(dynos)));
    }
    if dynos.is_empty() {
        return ctx.out(&format!("No dynos on {}\n", app_label(&app)));
    }
    let text = render_dynos(&dynos, ctx.now);
    ctx.out(&text)
}

/// The number after the dot (`web.12` → 12), for sorting dynos as people count them.
fn dyno_number(d: &Value) -> u64 {
    str_at(d, "/name")
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// Dynos grouped by process type, one-off (`run`) dynos first, as the Heroku CLI shows them.
pub fn render_dynos(dynos: &[Value], now: Timestamp) -> String {
    let mut out = String::new();
    let state = |d: &Value| {
        let mut s = format!(
            "{} {}",
            str_at(d, "/state"),
            format::ago_str(str_at(d, "/updated_at"), now)
        );
        // Kiln says why a dyno is crashed and when it will be tried again.
        let detail = str_at(d, "/state_detail");
        if !detail.is_empty() {
            s.push_str(&format!(" ({detail})"));
        }
        s
    };
    let size = |d: &Value| match str_at(d, "/size") {
        "" => "Standard-1X".to_string(),
        s => s.to_string(),
    };

    let mut one_offs: Vec<&Value> = dynos
        .iter()
        .filter(|d| str_at(d, "/type") == "run")
        .collect();
    one_offs.sort_by_key(|d| dyno_number(d));
    if !one_offs.is_empty() {
        out.push_str(&format::header(&format!(
            "run: one-off processes ({})",
            one_offs.len()
        )));
        for d in &one_offs {
            out.push_str(&format!(
                "{} ({}): {}: {}\n",
                str_at(d, "/name"),
                size(d),
                state(d),
                str_at(d, "/command")
            ));
        }
        out.push('\n');
    }

    let mut types: Vec<&str> = dynos
        .iter()
        .map(|d| str_at(d, "/type"))
        .filter(|t| *t != "run")
        .collect();
    types.sort_unstable();
    types.dedup();
    for t in types {
        let mut group: Vec<&Value> = dynos.iter().filter(|d| str_at(d, "/type") == t).collect();
        group.sort_by_key(|d| dyno_number(d));
        let first = group[0];
        out.push_str(&format::header(&format!(
            "{t} ({}): {} ({})",
            size(first),
            str_at(first, "/command"),
            group.len()
        )));
        for d in &group {
            out.push_str(&format!("{}: {}\n", str_at(d, "/name"), state(d)));
        }
        out.push('\n');
    }
    out
}

pub async fn scale(ctx: &mut Ctx<'_>, flags: &AppFlags, args: &[String]) -> Result<()> {
    let changes = args
        .iter()
        .map(|a| ScaleChange::parse(a))
        .collect::<Result<Vec<_>>>()?;
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/formation", segment(&app));
    if changes.is_empty() {
        let formation = api.get(&path).await?;
        let mut items: Vec<String> = formation
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|p| {
                        format!(
                            "{}={}:{}",
                            str_at(p, "/type"),
                            p.get("quantity").map(plain).unwrap_or_default(),
                            str_at(p, "/size")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            bail!(
                "No process types on {}.\nUpload a Procfile to add process types.",
                app_label(&app)
            );
        }
        items.sort();
        return ctx.out(&format!("{}\n", items.join(" ")));
    }

    let updates: Vec<Value> = changes
        .iter()
        .map(|c| {
            let mut u = json!({ "type": c.process_type, "quantity": c.quantity });
            if let Some(size) = &c.size {
                u["size"] = json!(size);
            }
            u
        })
        .collect();
    ctx.action("Scaling dynos")?;
    let formation = match api.patch(&path, &json!({ "updates": updates })).await {
        Ok(f) => f,
        Err(e) => return ctx.failed(e),
    };
    let running: Vec<String> = formation
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|p| changes.iter().any(|c| c.process_type == str_at(p, "/type")))
                .map(|p| {
                    format!(
                        "{} at {}:{}",
                        str_at(p, "/type"),
                        p.get("quantity").map(plain).unwrap_or_default(),
                        str_at(p, "/size")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if running.is_empty() {
        ctx.done("")
    } else {
        ctx.done(&format!("now running {}", running.join(", ")))
    }
}

/// `ps:type`: `web=standard-2x worker=basic` sets sizes per process type; a bare `SIZE`
/// sets every type's. Without arguments, or after a change, shows each type's size.
pub async fn resize(ctx: &mut Ctx<'_>, flags: &AppFlags, args: &[String]) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/formation", segment(&app));
    let changes = parse_type_changes(args)?;
    let formation = if changes.is_empty() {
        api.get(&path).await?
    } else {
        let types: Vec<(String, String)> = match &changes[..] {
            // One size for every process type of the app.
            [(None, size)] => {
                let current = api.get(&path).await?;
                current
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|p| (str_at(p, "/type").to_string(), size.clone()))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            _ => changes
                .iter()
                .map(|(t, s)| (t.clone().unwrap_or_default(), s.clone()))
                .collect(),
        };
        if types.is_empty() {
            bail!(
                "No process types on {}.\nUpload a Procfile to add process types.",
                app_label(&app)
            );
        }
        let updates: Vec<Value> = types
            .iter()
            .map(|(t, s)| json!({ "type": t, "size": s }))
            .collect();
        ctx.action(&format!("Scaling dynos on {}", app_label(&app)))?;
        if let Err(e) = api.patch(&path, &json!({ "updates": updates })).await {
            return ctx.failed(e);
        }
        ctx.done("")?;
        api.get(&path).await?
    };
    let items: Vec<Value> = formation.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        bail!(
            "No process types on {}.\nUpload a Procfile to add process types.",
            app_label(&app)
        );
    }
    ctx.out(&render_types(&items))
}

/// `TYPE=SIZE` pairs, or one bare `SIZE` (for every type); sizes checked before any request.
fn parse_type_changes(args: &[String]) -> Result<Vec<(Option<String>, String)>> {
    let mut out = Vec::new();
    for a in args {
        let (ptype, size) = match a.split_once('=') {
            Some((t, s)) => {
                kiln_model::procfile::validate_process_type(t)
                    .map_err(|e| anyhow::anyhow!("Invalid argument {a:?}: {}", e.message))?;
                (Some(t.to_string()), s)
            }
            None => (None, a.as_str()),
        };
        let size = DynoSize::parse(size).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        out.push((ptype, size.name().to_string()));
    }
    if out.len() > 1 && out.iter().any(|(t, _)| t.is_none()) {
        bail!(
            "Give either one SIZE for every process type, or TYPE=SIZE pairs (e.g. web=standard-2x worker=basic)"
        );
    }
    Ok(out)
}

/// The process types with their sizes, as `heroku ps:type` shows them (memory instead of cost).
fn render_types(formation: &[Value]) -> String {
    let mut rows = vec![vec![
        "Type".to_string(),
        "Size".to_string(),
        "Qty".to_string(),
        "Memory".to_string(),
    ]];
    let mut sorted: Vec<&Value> = formation.iter().collect();
    sorted.sort_by_key(|p| str_at(p, "/type").to_string());
    for p in sorted {
        let size = match str_at(p, "/size") {
            "" => "Standard-1X",
            s => s,
        };
        let memory = DynoSize::parse(size)
            .map(|s| format::filesize(s.memory_mb() * 1024 * 1024))
            .unwrap_or_default();
        rows.push(vec![
            str_at(p, "/type").to_string(),
            size.to_string(),
            p.get("quantity").map(plain).unwrap_or_default(),
            memory,
        ]);
    }
    format!(
        "{}{}",
        format::header("Process Types"),
        format::table(&rows)
    )
}

pub async fn restart(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    target: Option<&str>,
    process_type: Option<&str>,
    dyno_name: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let app_seg = segment(&app);
    // A dot means a dyno name (web.1); anything else is a process type (web).
    let (path, what) = match (target, process_type, dyno_name) {
        (_, _, Some(dyno)) => (
            format!("/apps/{app_seg}/dynos/{}", segment(dyno)),
            format!("{dyno} dyno"),
        ),
        (_, Some(t), None) => (
            format!("/apps/{app_seg}/formations/{}", segment(t)),
            format!("{t} dynos"),
        ),
        (Some(t), None, None) if t.contains('.') => (
            format!("/apps/{app_seg}/dynos/{}", segment(t)),
            format!("{t} dyno"),
        ),
        (Some(t), None, None) => (
            format!("/apps/{app_seg}/formations/{}", segment(t)),
            format!("{t} dynos"),
        ),
        (None, None, None) => (format!("/apps/{app_seg}/dynos"), "dynos".to_string()),
    };
    ctx.action(&format!("Restarting {what} on {}", app_label(&app)))?;
    match api.delete(&path).await {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_changes_parse_and_render() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_type_changes(&args(&["web=standard-2x", "worker=basic"])).unwrap(),
            vec![
                (Some("web".into()), "Standard-2X".into()),
                (Some("worker".into()), "Basic".into())
            ]
        );
        assert_eq!(
            parse_type_changes(&args(&["2x"])).unwrap(),
            vec![(None, "Standard-2X".into())]
        );
        assert!(
            parse_type_changes(&args(&["web=huge"]))
                .unwrap_err()
                .to_string()
                .contains("Unknown dyno size")
        );
        assert!(parse_type_changes(&args(&["basic", "web=basic"])).is_err());
        assert!(parse_type_changes(&args(&["we b=basic"])).is_err());
        let f = json!([
            {"type": "worker", "size": "Basic", "quantity": 0},
            {"type": "web", "size": "Standard-2X", "quantity": 2}
        ]);
        assert_eq!(
            render_types(f.as_array().unwrap()),
            "=== Process Types\n\n\
             Type    Size         Qty  Memory\n\
             web     Standard-2X  2    1 GB\n\
             worker  Basic        0    512 MB\n"
        );
    }

    #[test]
    fn dynos_grouped_like_heroku() {
        let now = Timestamp::parse_rfc3339("2026-11-21T12:00:05Z").unwrap();
        let dynos = json!([
            {"name": "worker.1", "type": "worker", "state": "crashed", "command": "node worker.js", "size": "Standard-1X", "updated_at": "2026-11-21T11:58:05Z"},
            {"name": "web.2", "type": "web", "state": "up", "command": "npm start", "size": "Standard-1X", "updated_at": "2026-11-21T12:00:00Z"},
            {"name": "web.10", "type": "web", "state": "starting", "command": "npm start", "size": "Standard-1X", "updated_at": "2026-11-21T12:00:00Z"},
            {"name": "run.4821", "type": "run", "state": "up", "command": "bash", "size": "Standard-2X", "updated_at": "2026-11-21T12:00:00Z"}
        ]);
        let text = render_dynos(dynos.as_array().unwrap(), now);
        assert_eq!(
            text,
            "=== run: one-off processes (1)\n\n\
             run.4821 (Standard-2X): up 2026/11/21 12:00:00 +0000 (~ 5s ago): bash\n\n\
             === web (Standard-1X): npm start (2)\n\n\
             web.2: up 2026/11/21 12:00:00 +0000 (~ 5s ago)\n\
             web.10: starting 2026/11/21 12:00:00 +0000 (~ 5s ago)\n\n\
             === worker (Standard-1X): node worker.js (1)\n\n\
             worker.1: crashed 2026/11/21 11:58:05 +0000 (~ 2m ago)\n\n"
        );
    }
}

/// `ps:stop TYPE|DYNO`: the dynos get SIGTERM; formation dynos are started again.
pub async fn stop(ctx: &mut Ctx<'_>, flags: &AppFlags, target: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let app_seg = segment(&app);
    let (path, what) = if target.contains('.') {
        (
            format!("/apps/{app_seg}/dynos/{}/actions/stop", segment(target)),
            format!("{target} dyno"),
        )
    } else {
        (
            format!(
                "/apps/{app_seg}/formations/{}/actions/stop",
                segment(target)
            ),
            format!("{target} dynos"),
        )
    };
    ctx.action(&format!("Stopping {what} on {}", app_label(&app)))?;
    match api.post(&path, &serde_json::json!({})).await {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}
