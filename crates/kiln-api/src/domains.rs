//! Heroku's `domain` resource: `GET/POST /apps/{app}/domains`,
//! `GET/DELETE /apps/{app}/domains/{id or hostname}`.
//!
//! Every app lists its default hostname `<app>.<domain>` first, as kind `heroku` (derived,
//! never stored, and not removable), then its custom domains, kind `custom`, whose `cname`
//! is the default hostname: the DNS target to point them at. Routing is immediate, so
//! `status` is `succeeded`; certificates are picked by hostname, so `sni_endpoint` is null.
//! With ACM on, `acm_status` (`pending`, `ok`, `failed`) and `acm_status_reason` say
//! where each custom domain's certificate stands.

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::{ApiState, json};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kiln_model::records::{Account, AcmDomain, App, Domain};
use kiln_platform::PlatformError;
use serde_json::Value;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app}/domains", get(list_domains).post(add_domain))
        .route(
            "/apps/{app}/domains/{domain}",
            get(domain_info).delete(remove_domain),
        )
}

/// The app's default domain, as a domain object.
fn default_domain(st: &ApiState, app: &App) -> Value {
    json::domain(
        app,
        &default_domain_id(&app.id),
        &st.platform.default_hostname(&app.name),
        "heroku",
        None,
        app.created_at,
        app.created_at,
    )
}

/// A stable id for the default domain: the app's id with its hex digits reversed (still a
/// UUID in form, and distinct for every app).
fn default_domain_id(app_id: &str) -> String {
    let hex: Vec<char> = app_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .rev()
        .collect();
    if hex.len() != 32 {
        return app_id.to_string();
    }
    let s: String = hex.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..]
    )
}

fn custom(st: &ApiState, app: &App, d: &Domain, acm: &[AcmDomain]) -> Value {
    let target = st.platform.default_hostname(&app.name);
    let mut v = json::domain(
        app,
        &d.id,
        &d.hostname,
        "custom",
        Some(&target),
        d.created_at,
        d.updated_at,
    );
    if let Some(state) = acm
        .iter()
        .find(|a| a.domain.id == d.id)
        .and_then(|a| a.state.as_ref())
    {
        v["acm_status"] = Value::from(state.status.as_str());
        v["acm_status_reason"] = state.reason.as_deref().map_or(Value::Null, Value::from);
    }
    v
}

/// The app's ACM states, when ACM is on (off: every `acm_status` is null).
fn acm_states(st: &ApiState, user: &Account, app: &App) -> ApiResult<Vec<AcmDomain>> {
    if !app.acm {
        return Ok(Vec::new());
    }
    Ok(st.platform.acm_domains(user, app)?)
}

/// Whether `id_or_hostname` names the app's default domain.
fn is_default(st: &ApiState, app: &App, id_or_hostname: &str) -> bool {
    let wanted = id_or_hostname.trim_end_matches('.');
    wanted.eq_ignore_ascii_case(&st.platform.default_hostname(&app.name))
        || wanted == default_domain_id(&app.id)
}

async fn list_domains(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let mut items = vec![default_domain(&st, &app)];
    let acm = acm_states(&st, &user, &app)?;
    items.extend(
        st.platform
            .domains(&user, &app)?
            .iter()
            .map(|d| custom(&st, &app, d, &acm)),
    );
    Ok(Json(Value::Array(items)))
}

async fn domain_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    if is_default(&st, &app, &domain) {
        return Ok(Json(default_domain(&st, &app)));
    }
    let d = st.platform.domain(&user, &app, &domain)?;
    Ok(Json(custom(&st, &app, &d, &acm_states(&st, &user, &app)?)))
}

async fn add_domain(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let hostname = match body.get("hostname") {
        Some(Value::String(h)) => h.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing hostname: POST {\"hostname\": \"www.example.com\"}",
            ));
        }
        Some(_) => return Err(ApiError::invalid("hostname must be a string")),
    };
    match body.get("sni_endpoint") {
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "Kiln picks each hostname's certificate by name; send \"sni_endpoint\": null",
            ));
        }
    }
    if is_default(&st, &app, &hostname) {
        return Err(ApiError::invalid(format!("{hostname} is already in use")));
    }
    let d = st
        .platform
        .add_domain(&app, &hostname, &user)
        .map_err(|e| match e {
            // Heroku answers a hostname in use with 422.
            PlatformError::Conflict(m) => ApiError::invalid(m),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(custom(&st, &app, &d, &[]))).into_response())
}

async fn remove_domain(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    if is_default(&st, &app, &domain) {
        return Err(ApiError::invalid(format!(
            "{} is the app's default domain and cannot be removed",
            st.platform.default_hostname(&app.name)
        )));
    }
    let d = st.platform.remove_domain(&app, &domain, &user)?;
    Ok(Json(custom(&st, &app, &d, &[])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_domain_ids_are_uuids_of_their_own() {
        let app = "01234567-89ab-cdef-0123-456789abcdef";
        assert_eq!(
            default_domain_id(app),
            "fedcba98-7654-3210-fedc-ba9876543210"
        );
        assert_ne!(default_domain_id(app), app);
    }
}
