//! Heroku's `sni-endpoint` resource: TLS certificates uploaded to an app.
//! `GET/POST /apps/{app}/sni-endpoints`, `GET/PATCH/DELETE /apps/{app}/sni-endpoints/{id or name}`.
//!
//! Create and update take `certificate_chain` and `private_key` (PEM). The private key is
//! never served back. `ssl_cert` describes the end-entity certificate; `ca_signed?` is the
//! opposite of `self_signed?` (Kiln does not check the chain against a public trust store).
//! `domains` lists the ids of the app's custom domains the certificate covers: those it is
//! served for.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kiln_model::records::{App, Domain};
use kiln_platform::SniEndpointView;
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app}/sni-endpoints", get(list).post(create))
        .route(
            "/apps/{app}/sni-endpoints/{endpoint}",
            get(info).patch(update).delete(remove),
        )
}

/// An SNI endpoint as Heroku shows it, given the app's custom domains.
pub fn sni_endpoint(app: &App, v: &SniEndpointView, domains: &[Domain]) -> Value {
    let e = &v.endpoint;
    let covered: Vec<&str> = domains
        .iter()
        .filter(|d| v.info.hostnames.contains(&d.hostname) || v.info.covers(&d.hostname))
        .map(|d| d.id.as_str())
        .collect();
    json!({
        "id": e.id,
        "name": e.name,
        "display_name": null,
        "certificate_chain": e.certificate_chain,
        "created_at": e.created_at.rfc3339(),
        "updated_at": e.updated_at.rfc3339(),
        "domains": covered,
        "app": { "id": app.id, "name": app.name },
        "ssl_cert": {
            "id": e.id,
            // Issued by Automatic Certificate Management (Heroku's CLI shows the type ACM).
            "acm": e.acm_domain_id.is_some(),
            "ca_signed?": !v.info.self_signed,
            "self_signed?": v.info.self_signed,
            "cert_domains": v.info.hostnames,
            "starts_at": v.info.starts_at.rfc3339(),
            "expires_at": v.info.expires_at.rfc3339(),
            "issuer": v.info.issuer,
            "subject": v.info.subject,
        },
    })
}

/// `certificate_chain` and `private_key`, both required strings.
fn pem_fields(body: &Value) -> ApiResult<(String, String)> {
    let field = |name: &str| match body.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(ApiError::invalid(format!("{name} is required (PEM text)")))
        }
        Some(_) => Err(ApiError::invalid(format!(
            "{name} must be a string (PEM text)"
        ))),
    };
    Ok((field("certificate_chain")?, field("private_key")?))
}

async fn list(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let items = st.platform.sni_endpoints(&user, &app)?;
    let domains = st.platform.domains(&user, &app)?;
    Ok(Json(Value::Array(
        items
            .iter()
            .map(|v| sni_endpoint(&app, v, &domains))
            .collect(),
    )))
}

async fn info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, endpoint)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let v = st.platform.sni_endpoint(&user, &app, &endpoint)?;
    Ok(Json(sni_endpoint(
        &app,
        &v,
        &st.platform.domains(&user, &app)?,
    )))
}

async fn create(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let (chain, key) = pem_fields(&body)?;
    let v = st.platform.add_sni_endpoint(&user, &app, &chain, &key)?;
    Ok((
        StatusCode::CREATED,
        Json(sni_endpoint(&app, &v, &st.platform.domains(&user, &app)?)),
    )
        .into_response())
}

async fn update(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, endpoint)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let (chain, key) = pem_fields(&body)?;
    let v = st
        .platform
        .update_sni_endpoint(&user, &app, &endpoint, &chain, &key)?;
    Ok(Json(sni_endpoint(
        &app,
        &v,
        &st.platform.domains(&user, &app)?,
    )))
}

async fn remove(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, endpoint)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let v = st.platform.remove_sni_endpoint(&user, &app, &endpoint)?;
    Ok(Json(sni_endpoint(
        &app,
        &v,
        &st.platform.domains(&user, &app)?,
    )))
}
