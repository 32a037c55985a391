//! The Metrics page: response time percentiles, throughput by status class, memory and dyno
//! load over the last hour, day or week, with deploys, restarts and H/R errors marked.
//! The charts are a partial the page's script refreshes.

use super::{Tab, error_page, fragment, page, query};
use crate::DashState;
use crate::chart::{self, Event, Frame};
use crate::html::bytes as human_bytes;
use crate::session::Session;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_model::access::Need;
use kiln_model::records::App;
use kiln_platform::metrics::{Point, Resolution};
use std::fmt::Write;

/// A window the page offers: its name, length, resolution, and the width of one drawn step.
const RANGES: [(&str, i64, Resolution, i64); 3] = [
    ("1h", 3600, Resolution::Fine, 60),
    ("24h", 86_400, Resolution::Fine, 600),
    ("7d", 7 * 86_400, Resolution::Coarse, 3600),
];

fn range_of(q: &[(String, String)]) -> (&'static str, i64, Resolution, i64) {
    let wanted = query(q, "range").unwrap_or("1h");
    RANGES
        .into_iter()
        .find(|r| r.0 == wanted)
        .unwrap_or(RANGES[0])
}

async fn page_(st: DashState, s: Session, name: String, q: Vec<(String, String)>) -> Response {
    let app = match super::app::load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (range, ..) = range_of(&q);
    let charts = match charts(&st, &s, &app, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let p = super::app_path(&app.name);
    let mut ranges = String::from(r#"<nav class="ranges" aria-label="Time range">"#);
    for (r, ..) in RANGES {
        let current = if r == range {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(
            ranges,
            r#"<a href="{p}/metrics?range={r}"{current}>{r}</a>"#
        );
    }
    ranges.push_str("</nav>");
    let body = format!(
        r#"{ranges}<div data-refresh="{p}/metrics/charts?range={range}" data-every="15000" id="charts">{charts}</div>"#
    );
    page(
        &s,
        StatusCode::OK,
        &app.name.clone(),
        Some((&app.name, Tab::Metrics)),
        None,
        &body,
    )
}

pub async fn show(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    page_(st, s, name, q).await
}

pub async fn charts_partial(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let app = match super::app::load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match charts(&st, &s, &app, &q).await {
        Ok(c) => fragment(c),
        Err(r) => r,
    }
}

/// Points merged into buckets of `bucket` seconds from `since`.
fn bucketed(points: Vec<Point>, since: i64, bucket: i64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    for p in points {
        let start = since + (p.t - since).div_euclid(bucket) * bucket;
        match out.last_mut() {
            Some(last) if last.t == start => {
                let step = last.step;
                last.merge(&p);
                last.step = step;
            }
            _ => {
                let mut first = p.clone();
                first.t = start;
                first.step = bucket as u32;
                out.push(first);
            }
        }
    }
    out
}

async fn charts(
    st: &DashState,
    s: &Session,
    app: &App,
    q: &[(String, String)],
) -> Result<String, Response> {
    let (_, span, resolution, bucket) = range_of(q);
    let now = kiln_model::Timestamp::now().unix_seconds();
    let since = now - span;
    let platform = st.platform.clone();
    let app2 = app.clone();
    let points = tokio::task::spawn_blocking(move || {
        platform.app_metrics(&app2, resolution, since, now + 1)
    })
    .await
    .map_err(|_| {
        error_page(
            Some(s),
            kiln_platform::PlatformError::Internal("reading metrics stopped".into()),
        )
    })?
    .map_err(|e| error_page(Some(s), e))?;
    let points = bucketed(points, since, bucket);

    // Events: deploys from the ledger, restarts and errors from the points.
    let mut events = Vec::new();
    let range = kiln_model::records::ReleaseRange {
        first: None,
        last: None,
        max: 200,
        descending: true,
    };
    for r in st
        .platform
        .releases(s.user(), app, range)
        .unwrap_or_default()
    {
        let t = r.created_at.unix_seconds();
        if t >= since {
            events.push(Event {
                t,
                class: "ev-deploy",
                label: format!("v{}: {}", r.version, r.description),
            });
        }
    }
    for p in &points {
        if p.restarts > 0 {
            events.push(Event {
                t: p.t,
                class: "ev-restart",
                label: format!("{} restart(s)", p.restarts),
            });
        }
        let errors: Vec<String> =
            p.h.iter()
                .chain(p.r.iter())
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
        if !errors.is_empty() {
            events.push(Event {
                t: p.t,
                class: "ev-error",
                label: errors.join(", "),
            });
        }
    }
    let f = |max: f64| Frame {
        t0: since,
        t1: now,
        max: chart::nice_max(max),
    };

    // Response time.
    let mut series: [(&str, Vec<(i64, f64)>); 3] =
        [("p50", vec![]), ("p95", vec![]), ("p99", vec![])];
    for p in &points {
        for (i, q) in [0.5, 0.95, 0.99].into_iter().enumerate() {
            if let Some(ms) = p.latency_ms(q) {
                series[i].1.push((p.t, ms));
            }
        }
    }
    let max_ms = series
        .iter()
        .flat_map(|s| s.1.iter().map(|v| v.1))
        .fold(0.0, f64::max);
    let ms = |v: f64| {
        if v >= 1000.0 {
            format!("{:.1} s", v / 1000.0)
        } else if v < 10.0 {
            format!("{v:.1} ms")
        } else {
            format!("{v:.0} ms")
        }
    };
    let latency = chart::lines("Response time", &f(max_ms), &series, bucket, &ms, &events);

    // Throughput by status class.
    let classes = ["s1", "s2", "s3", "s4", "s5"];
    let bars: Vec<(i64, Vec<(&str, f64)>)> = points
        .iter()
        .map(|p| {
            (
                p.t,
                classes
                    .iter()
                    .zip(p.status)
                    .map(|(c, n)| (*c, n as f64))
                    .collect(),
            )
        })
        .collect();
    let max_req = points
        .iter()
        .map(|p| p.requests() as f64)
        .fold(0.0, f64::max);
    let count = |v: f64| format!("{v:.0}");
    let throughput = chart::stacked(
        "Requests by status",
        &f(max_req),
        &bars,
        bucket,
        &count,
        &events,
    );

    // Memory (the largest dyno) and load (the mean of the dynos).
    let mut rss = Vec::new();
    let mut quota = Vec::new();
    let mut load = Vec::new();
    for p in points.iter().filter(|p| !p.dynos.is_empty()) {
        let top = p.dynos.values().map(|d| d.rss + d.swap).max().unwrap_or(0);
        rss.push((p.t, top as f64));
        if let Some(q) = p.dynos.values().map(|d| d.quota).filter(|q| *q > 0).max() {
            quota.push((p.t, q as f64));
        }
        let n = p.dynos.len() as f64;
        load.push((p.t, p.dynos.values().map(|d| d.load).sum::<f64>() / n));
    }
    let max_mem = rss
        .iter()
        .chain(quota.iter())
        .map(|v| v.1)
        .fold(0.0, f64::max);
    let mem_unit = |v: f64| human_bytes(v as u64);
    let memory = chart::lines(
        "Memory",
        &f(max_mem),
        &[("rss", rss), ("quota", quota)],
        bucket,
        &mem_unit,
        &events,
    );
    let max_load = load.iter().map(|v| v.1).fold(0.0, f64::max);
    let load_unit = |v: f64| format!("{v:.2}");
    let load = chart::lines(
        "Dyno load",
        &f(max_load),
        &[("load", load)],
        bucket,
        &load_unit,
        &events,
    );

    let total: u64 = points.iter().map(|p| p.requests()).sum();
    let errors: u64 = points.iter().map(|p| p.status[4]).sum();
    let mut all = Point::default();
    for p in &points {
        all.merge(p);
    }
    let p95 = all.latency_ms(0.95).map(ms).unwrap_or_else(|| "–".into());
    let codes: Vec<String> = all
        .h
        .iter()
        .chain(all.r.iter())
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
    Ok(format!(
        r#"<p class="card" id="metrics-summary" data-requests="{total}">{total} requests · {errors} 5xx · p95 {p95} · errors: {codes}</p>
<div class="grid"><section class="card"><h2>Response time</h2>{latency}<ul class="legend"><li><span class="k p50"></span>p50</li><li><span class="k p95"></span>p95</li><li><span class="k p99"></span>p99</li></ul></section>
<section class="card"><h2>Throughput</h2>{throughput}<ul class="legend"><li><span class="k s2"></span>2xx</li><li><span class="k s3"></span>3xx</li><li><span class="k s4"></span>4xx</li><li><span class="k s5"></span>5xx</li></ul></section>
<section class="card"><h2>Memory</h2>{memory}<ul class="legend"><li><span class="k rss"></span>largest dyno (RAM + swap)</li><li><span class="k quota"></span>quota</li></ul></section>
<section class="card"><h2>Dyno load</h2>{load}<ul class="legend"><li><span class="k load"></span>mean load</li><li><span class="k ev-deploy"></span>deploy</li><li><span class="k ev-restart"></span>restart</li><li><span class="k ev-error"></span>H/R error</li></ul></section></div>"#,
        codes = if codes.is_empty() {
            "none".to_string()
        } else {
            crate::html::esc(&codes.join(", ")).to_string()
        },
    ))
}
