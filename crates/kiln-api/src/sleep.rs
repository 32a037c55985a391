//! Sleeping apps, Kiln's own resource (Heroku's eco dynos sleep with no setting to change):
//!
//! - `GET /apps/{app}/sleep`: `{mode, after, workers_stay, sleeps, sleeps_after}`, where
//!   `mode` is `default` (sleep when the web dynos are eco, as on Heroku), `on` or `off`;
//!   `after` the app's own idle time in seconds (`null`: the server's); `sleeps` and
//!   `sleeps_after` what that amounts to with the app's formation as it is.
//! - `PATCH /apps/{app}/sleep` with any of `mode`, `after` (seconds, or `null` for the
//!   server's) and `workers_stay`. Reading takes `view`, changing `operate`.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use kiln_model::sleep::{SleepMode, SleepSetting};
use kiln_platform::sleep::SleepView;
use serde_json::{Value, json};
use std::time::Duration;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/apps/{app}/sleep", get(show).patch(update))
}

fn view_json(v: &SleepView) -> Value {
    json!({
        "mode": v.setting.mode.as_str(),
        "after": v.setting.after.map(|a| a.as_secs()),
        "workers_stay": v.setting.workers_stay,
        "sleeps": v.sleeps,
        "sleeps_after": v.after.as_secs(),
    })
}

async fn show(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    Ok(Json(view_json(&st.platform.app_sleep(&user, &app)?)))
}

async fn update(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Operate)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::invalid("Expected a JSON object"));
    };
    let mut setting: SleepSetting = st.platform.app_sleep(&user, &app)?.setting;
    for (k, v) in &fields {
        match (k.as_str(), v) {
            ("mode", Value::String(m)) => {
                setting.mode = SleepMode::parse(m).map_err(kiln_platform::PlatformError::from)?
            }
            ("after", Value::Null) => setting.after = None,
            ("after", Value::Number(n)) => {
                let secs = n
                    .as_u64()
                    .ok_or_else(|| ApiError::invalid("after must be a whole number of seconds"))?;
                setting.after = Some(Duration::from_secs(secs));
            }
            ("workers_stay", Value::Bool(b)) => setting.workers_stay = *b,
            ("mode" | "after" | "workers_stay", _) => {
                return Err(ApiError::invalid(format!("{k} has the wrong type")));
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "Unknown field {}: use mode, after or workers_stay",
                    kiln_model::records::shown(k)
                )));
            }
        }
    }
    let v = st.platform.set_app_sleep(&user, &app, setting).await?;
    Ok(Json(view_json(&v)))
}
