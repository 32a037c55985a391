//! Scheduled jobs, Kiln's own resource (Heroku Scheduler's API is not public):
//!
//! - `GET /apps/{app}/schedules`: the app's jobs, each `{id, schedule, command,
//!   allow_overlap, next_run_at, last_run_at, running, user: {email}, created_at}`;
//! - `POST /apps/{app}/schedules` with `{schedule, command, allow_overlap?}` (the app must
//!   have the `scheduler` add-on and a release);
//! - `DELETE /apps/{app}/schedules/{id}`;
//! - `POST /apps/{app}/schedules/{id}/actions/run`: a run now, `{dyno}`.
//!
//! Reading takes `view`; adding, removing and running take `deploy`, as `run` does.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kiln_model::Timestamp;
use kiln_model::records::ScheduledJob;
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app}/schedules", get(list).post(add))
        .route("/apps/{app}/schedules/{id}", delete(remove))
        .route("/apps/{app}/schedules/{id}/actions/run", post(run))
}

fn at(secs: i64) -> String {
    Timestamp(secs.saturating_mul(1_000_000)).rfc3339()
}

fn job_json(st: &ApiState, j: &ScheduledJob) -> Value {
    json!({
        "id": j.id,
        "app": { "id": j.app_id, "name": j.app_name },
        "schedule": j.expression,
        "command": j.command,
        "allow_overlap": j.allow_overlap,
        "next_run_at": (j.next_run_at < i64::MAX / 2_000_000).then(|| at(j.next_run_at)),
        "last_run_at": j.last_run_at.map(at),
        "running": st.platform.schedule_running(&j.id),
        "user": { "id": j.user_id, "email": j.user_email },
        "created_at": j.created_at.rfc3339(),
    })
}

async fn list(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let jobs = st.platform.schedules(&user, &app)?;
    Ok(Json(Value::Array(
        jobs.iter().map(|j| job_json(&st, j)).collect(),
    )))
}

async fn add(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let text = |k: &str| -> ApiResult<String> {
        match body.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(ApiError::invalid(format!("{k} is required, as a string"))),
        }
    };
    let allow_overlap = match body.get("allow_overlap") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("allow_overlap must be true or false")),
    };
    let job = st.platform.add_schedule(
        &user,
        &app,
        &text("schedule")?,
        &text("command")?,
        allow_overlap,
    )?;
    Ok((StatusCode::CREATED, Json(job_json(&st, &job))))
}

async fn remove(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let job = st.platform.remove_schedule(&user, &app, &id)?;
    Ok(Json(job_json(&st, &job)))
}

async fn run(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let dyno = st.platform.run_schedule_now(&user, &app, &id).await?;
    Ok((StatusCode::CREATED, Json(json!({ "dyno": dyno }))))
}
