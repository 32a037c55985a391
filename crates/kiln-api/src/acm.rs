//! Heroku's ACM links on the app resource: `POST /apps/{app}/acm` (enable),
//! `PATCH /apps/{app}/acm` (refresh), `DELETE /apps/{app}/acm` (disable), each answering
//! with the app, whose `acm` says whether Automatic Certificate Management is on. Domains
//! carry the per-hostname `acm_status` and `acm_status_reason` (see `domains`), and issued
//! certificates are listed among the SNI endpoints with `ssl_cert.acm` true.

use crate::ApiState;
use crate::auth::User;
use crate::error::ApiResult;
use crate::handlers::app_json;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<ApiState> {
    Router::new().route(
        "/apps/{app}/acm",
        post(enable).patch(refresh).delete(disable),
    )
}

async fn enable(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let app = st.platform.enable_acm(&app, &user)?;
    Ok(Json(app_json(&st, &st.platform.app_view(&user, &app)?)))
}

async fn refresh(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let app = st.platform.refresh_acm(&app, &user)?;
    Ok(Json(app_json(&st, &st.platform.app_view(&user, &app)?)))
}

async fn disable(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let app = st.platform.disable_acm(&app, &user)?;
    Ok(Json(app_json(&st, &st.platform.app_view(&user, &app)?)))
}
