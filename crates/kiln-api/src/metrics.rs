//! An app's metrics, Kiln's own resource (Heroku serves its metrics from a private API):
//!
//! - `GET /apps/{app}/metrics/router`: per step, requests by status class, response time
//!   percentiles (p50, p95, p99, from the router's histogram) and H-codes;
//! - `GET /apps/{app}/metrics/dynos`: per step, each dyno's memory (the most it held in RAM
//!   and swap, and its quota) and load, restarts and R-codes.
//!
//! Both take `since` and `until` (RFC 3339; the last hour by default) and `resolution`
//! (`fine`, one point per step, a minute unless the server says otherwise; or `coarse`, one
//! per ten steps; by default fine for windows the fine series still covers). Steps with
//! nothing to report are left out. Reading takes `view`.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use kiln_model::Timestamp;
use kiln_platform::metrics::{Point, Resolution};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app}/metrics/router", get(router))
        .route("/apps/{app}/metrics/dynos", get(dynos))
}

/// The window and resolution a query asks for.
struct Window {
    since: i64,
    until: i64,
    resolution: Resolution,
}

fn window(q: &HashMap<String, String>, fine_span: i64) -> ApiResult<Window> {
    let time = |name: &str| -> ApiResult<Option<i64>> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => Timestamp::parse_rfc3339(v)
                .map(|t| Some(t.unix_seconds()))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name} must be a time such as 2026-12-05T10:00:00Z"
                    ))
                }),
        }
    };
    let until = time("until")?.unwrap_or_else(|| Timestamp::now().unix_seconds() + 1);
    let since = time("since")?.unwrap_or(until - 3600);
    if since >= until {
        return Err(ApiError::invalid("since must be before until"));
    }
    let resolution = match q.get("resolution").map(String::as_str) {
        None => {
            if Timestamp::now().unix_seconds() - since <= fine_span {
                Resolution::Fine
            } else {
                Resolution::Coarse
            }
        }
        Some("fine") => Resolution::Fine,
        Some("coarse") => Resolution::Coarse,
        Some(_) => return Err(ApiError::invalid("resolution must be fine or coarse")),
    };
    Ok(Window {
        since,
        until,
        resolution,
    })
}

async fn points(
    st: &ApiState,
    user: &kiln_model::records::Account,
    app: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Vec<Point>> {
    let app = st.platform.app_for(user, app, kiln_platform::Need::View)?;
    let w = window(q, st.platform.metrics_fine_span())?;
    let platform = st.platform.clone();
    tokio::task::spawn_blocking(move || platform.app_metrics(&app, w.resolution, w.since, w.until))
        .await
        .map_err(|e| kiln_platform::PlatformError::Internal(format!("reading the metrics: {e}")))?
        .map_err(Into::into)
}

fn codes(m: &std::collections::BTreeMap<String, u64>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

fn router_json(p: &Point) -> Value {
    let ms = |q: f64| p.latency_ms(q).map(|v| (v * 100.0).round() / 100.0);
    json!({
        "time": Timestamp::from_unix_seconds(p.t).rfc3339(),
        "step": p.step,
        "requests": {
            "1xx": p.status[0], "2xx": p.status[1], "3xx": p.status[2],
            "4xx": p.status[3], "5xx": p.status[4],
        },
        "total": p.requests(),
        "latency_ms": if p.lat.is_empty() { Value::Null } else {
            json!({ "p50": ms(0.50), "p95": ms(0.95), "p99": ms(0.99) })
        },
        "errors": codes(&p.h),
    })
}

fn dynos_json(p: &Point) -> Value {
    let mb = |b: u64| (b as f64 / 1_048_576.0 * 100.0).round() / 100.0;
    let dynos: Map<String, Value> = p
        .dynos
        .iter()
        .map(|(name, d)| {
            (
                name.clone(),
                json!({
                    "memory_rss_mb": mb(d.rss),
                    "memory_swap_mb": mb(d.swap),
                    "memory_quota_mb": mb(d.quota),
                    "load": (d.load * 100.0).round() / 100.0,
                }),
            )
        })
        .collect();
    json!({
        "time": Timestamp::from_unix_seconds(p.t).rfc3339(),
        "step": p.step,
        "dynos": dynos,
        "restarts": p.restarts,
        "errors": codes(&p.r),
    })
}

/// Which figures: the router's or the dynos'.
#[derive(Clone, Copy)]
enum Kind {
    Router,
    Dynos,
}

async fn series(
    kind: Kind,
    st: ApiState,
    user: kiln_model::records::Account,
    app: String,
    q: HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let points = points(&st, &user, &app, &q).await?;
    // Steps with nothing of this kind to report are left out.
    let (has, render): (fn(&Point) -> bool, fn(&Point) -> Value) = match kind {
        Kind::Router => (|p| p.requests() > 0 || !p.h.is_empty(), router_json),
        Kind::Dynos => (
            |p| !p.dynos.is_empty() || p.restarts > 0 || !p.r.is_empty(),
            dynos_json,
        ),
    };
    Ok(Json(Value::Array(
        points.iter().filter(|p| has(p)).map(render).collect(),
    )))
}

async fn router(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    series(Kind::Router, st, user, app, q).await
}

async fn dynos(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    series(Kind::Dynos, st, user, app, q).await
}
