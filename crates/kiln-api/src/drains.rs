//! Heroku's `log-drain` resource: `GET/POST /apps/{app}/log-drains`,
//! `GET/DELETE /apps/{app}/log-drains/{id, token or url}` (the `heroku drains*` commands).
//!
//! A drain's URL may carry a password (HTTPS Basic authentication). The response to `POST`
//! shows it once, as given; every later answer masks it (`user:****@`), so that collaborators
//! who may only view the app cannot read it. Viewing takes `view`; adding and removing take
//! `manage`, because a drain sends the app's whole log stream elsewhere.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kiln_model::drain::{LogDrain, masked_url};
use kiln_model::records::App;
use kiln_platform::{Need, PlatformError};
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app}/log-drains", get(list).post(add))
        .route("/apps/{app}/log-drains/{drain}", get(info).delete(remove))
}

fn drain_json(app: &App, d: &LogDrain, reveal: bool) -> Value {
    json!({
        "id": d.id,
        "url": if reveal { d.url.clone() } else { masked_url(&d.url) },
        "token": d.token,
        "addon": d.addon_id.as_ref().map(|id| json!({ "id": id, "name": null, "app": { "id": app.id, "name": app.name } })),
        "app": { "id": app.id, "name": app.name },
        "created_at": d.created_at.rfc3339(),
        "updated_at": d.updated_at.rfc3339(),
    })
}

async fn list(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st.platform.app_for(&user, &app, Need::View)?;
    let items: Vec<Value> = st
        .platform
        .drains(&app)?
        .iter()
        .map(|d| drain_json(&app, d, false))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, drain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st.platform.app_for(&user, &app, Need::View)?;
    let d = st.platform.drain(&app, &drain)?;
    Ok(Json(drain_json(&app, &d, false)))
}

async fn add(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st.platform.app_for(&user, &app, Need::Manage)?;
    let url = match body.get("url") {
        Some(Value::String(u)) => u.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing url: POST {\"url\": \"syslog://logs.example.com:514\"}",
            ));
        }
        Some(_) => return Err(ApiError::invalid("url must be a string")),
    };
    let d = st
        .platform
        .add_drain(&app, &url, &user)
        .await
        .map_err(|e| match e {
            // Heroku answers a URL the app already has with 422.
            PlatformError::Conflict(m) => ApiError::invalid(m),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(drain_json(&app, &d, true))).into_response())
}

async fn remove(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, drain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st.platform.app_for(&user, &app, Need::Manage)?;
    let d = st
        .platform
        .remove_drain(&app, &drain, &user)
        .map_err(|e| match e {
            PlatformError::Conflict(m) => ApiError::invalid(m),
            other => other.into(),
        })?;
    Ok(Json(drain_json(&app, &d, false)))
}
