//! `kiln metrics`: an app's metrics in the terminal, a compact table per step and a
//! sparkline, from `/apps/{app}/metrics/router` (or `/dynos` with `--dynos`).

use super::logs::when;
use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format;
use crate::transport::segment;
use anyhow::Result;
use serde_json::Value;

pub struct MetricsOptions {
    pub since: String,
    pub until: Option<String>,
    pub dynos: bool,
    pub coarse: bool,
    pub json: bool,
}

pub async fn metrics(ctx: &mut Ctx<'_>, flags: &AppFlags, opts: MetricsOptions) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let now = kiln_model::Timestamp::now();
    // The API takes RFC 3339 to the second.
    let at = |s: &str| -> Result<String> {
        let t = when(s, now)?;
        Ok(kiln_model::Timestamp::parse_rfc3339(&t).map_or(t, |t| t.rfc3339()))
    };
    let mut query = format!("since={}", segment(&at(&opts.since)?));
    if let Some(u) = &opts.until {
        query.push_str(&format!("&until={}", segment(&at(u)?)));
    }
    if opts.coarse {
        query.push_str("&resolution=coarse");
    }
    let kind = if opts.dynos { "dynos" } else { "router" };
    let points = ctx
        .api()?
        .get(&format!("/apps/{}/metrics/{kind}?{query}", segment(&app)))
        .await?;
    if opts.json {
        return ctx.out(&format::json(&points));
    }
    let text = if opts.dynos {
        render_dynos(&app, &opts.since, &points)
    } else {
        render_router(&app, &opts.since, &points)
    };
    ctx.out(&text)
}

/// `▁▂▃▄▅▆▇█`, one per value, scaled to the largest.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

/// `12:01` (or `12-05 12:01` for points of other days than today's last).
fn clock(t: &str) -> String {
    t.get(11..16).unwrap_or(t).to_string()
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        Some(f) => format!("{f:.1}"),
        None => String::new(),
    }
}

fn errors(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k}×{}", num(n)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub fn render_router(app: &str, since: &str, points: &Value) -> String {
    let items = points.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = format::header(&format!("{} requests, since {since}", app_label(app)));
    if items.is_empty() {
        out.push_str("No requests in this window.\n");
        return out;
    }
    let mut rows = vec![
        [
            "TIME (UTC)",
            "REQUESTS",
            "2XX",
            "3XX",
            "4XX",
            "5XX",
            "P50 MS",
            "P95 MS",
            "P99 MS",
            "ERRORS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in items {
        rows.push(vec![
            clock(format::str_at(p, "/time")),
            num(&p["total"]),
            num(&p["requests"]["2xx"]),
            num(&p["requests"]["3xx"]),
            num(&p["requests"]["4xx"]),
            num(&p["requests"]["5xx"]),
            num(&p["latency_ms"]["p50"]),
            num(&p["latency_ms"]["p95"]),
            num(&p["latency_ms"]["p99"]),
            errors(&p["errors"]),
        ]);
    }
    out.push_str(&format::table(&rows));
    let totals: Vec<f64> = items
        .iter()
        .map(|p| p["total"].as_f64().unwrap_or(0.0))
        .collect();
    let p95: Vec<f64> = items
        .iter()
        .map(|p| p["latency_ms"]["p95"].as_f64().unwrap_or(0.0))
        .collect();
    out.push_str(&format!(
        "\nrequests  {}\np95 ms    {}\n",
        sparkline(&totals),
        sparkline(&p95)
    ));
    out
}

pub fn render_dynos(app: &str, since: &str, points: &Value) -> String {
    let items = points.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = format::header(&format!("{} dynos, since {since}", app_label(app)));
    if items.is_empty() {
        out.push_str("No dyno samples in this window.\n");
        return out;
    }
    let mut rows = vec![
        [
            "TIME (UTC)",
            "DYNO",
            "RSS MB",
            "SWAP MB",
            "QUOTA MB",
            "LOAD",
            "RESTARTS",
            "ERRORS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in items {
        let time = clock(format::str_at(p, "/time"));
        let dynos = p["dynos"].as_object().cloned().unwrap_or_default();
        if dynos.is_empty() {
            rows.push(vec![
                time.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                num(&p["restarts"]),
                errors(&p["errors"]),
            ]);
        }
        for (i, (name, d)) in dynos.iter().enumerate() {
            let first = i == 0;
            rows.push(vec![
                if first { time.clone() } else { String::new() },
                name.clone(),
                num(&d["memory_rss_mb"]),
                num(&d["memory_swap_mb"]),
                num(&d["memory_quota_mb"]),
                num(&d["load"]),
                if first {
                    num(&p["restarts"])
                } else {
                    String::new()
                },
                if first {
                    errors(&p["errors"])
                } else {
                    String::new()
                },
            ]);
        }
    }
    out.push_str(&format::table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sparklines_scale_to_the_largest() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0]), "▁▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn the_router_table_shows_each_step() {
        let points = json!([{
            "time": "2026-12-05T12:01:00Z", "step": 60, "total": 3,
            "requests": {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 0, "5xx": 1},
            "latency_ms": {"p50": 10.0, "p95": 30000.5, "p99": 30000.5},
            "errors": {"H12": 1}
        }]);
        let out = render_router("a", "1h", &points);
        assert!(out.starts_with("=== ⬢ a requests, since 1h\n\n"), "{out}");
        assert!(
            out.contains(
                "12:01       3         2    0    0    1    10      30000.5  30000.5  H12×1"
            ),
            "{out}"
        );
        assert!(out.contains("requests  █\n"), "{out}");
        assert!(render_router("a", "1h", &json!([])).contains("No requests"));
    }
}
