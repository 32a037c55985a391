//! The resource endpoints: account, apps, config vars, releases, formation, dynos, builds,
//! buildpack installations.

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::{ApiState, json, range};
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kiln_model::dyno::RestartTarget;
use kiln_model::formation::QuantityChange;
use kiln_model::records::{Account, App, ReleaseRange};
use kiln_platform::AppView;
use kiln_platform::PlatformError;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/account", get(account))
        .route("/users/{user}", get(account))
        .route("/apps", get(list_apps).post(create_app))
        .route("/users/{user}/apps", get(list_apps))
        .route(
            "/apps/{app}",
            get(app_info).patch(update_app).delete(destroy_app),
        )
        .route(
            "/apps/{app}/config-vars",
            get(config_vars).patch(update_config_vars),
        )
        .route(
            "/apps/{app}/releases",
            get(list_releases).post(create_release),
        )
        .route("/apps/{app}/releases/{release}", get(release_info))
        .route(
            "/apps/{app}/releases/{release}/config-vars",
            get(release_config_vars),
        )
        .route(
            "/apps/{app}/formation",
            get(list_formation).patch(batch_update_formation),
        )
        .route(
            "/apps/{app}/formation/{ptype}",
            get(formation_info).patch(update_formation),
        )
        .route(
            "/apps/{app}/dynos",
            get(list_dynos)
                .delete(restart_all)
                .post(crate::run::create_dyno),
        )
        .route(
            "/apps/{app}/dynos/{dyno}",
            get(dyno_info).delete(restart_dyno),
        )
        .route("/apps/{app}/formations/{ptype}", delete(restart_type))
        .route("/apps/{app}/builds", get(list_builds))
        .route("/apps/{app}/builds/{build}", get(build_info))
        .route("/build-output/{build}", get(build_output))
        .route("/release-output/{release}", get(release_output))
        .route(
            "/apps/{app}/buildpack-installations",
            get(list_buildpacks).put(set_buildpacks),
        )
        .route("/apps/{app}/dynos/{dyno}/actions/stop", post(stop_dyno))
        .route(
            "/apps/{app}/formations/{ptype}/actions/stop",
            post(stop_type),
        )
}

/// A JSON object request body, with Heroku-style errors for what is not one. An empty body is
/// `{}`. Every request body of the API is an object; an array or a scalar is refused here so no
/// handler mistakes it for "no fields given" (`POST /apps` with `[]` used to create an app).
pub struct Body(pub Value);

const MAX_BODY: usize = 1024 * 1024;

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                "Request body is larger than 1 MB",
            )
        };
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_json(v.as_bytes()));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            // axum stops reading at its own limit (2 MB); that is the same "too large" as ours.
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(format!("Could not read the request body: {e}"))
            }
        })?;
        if bytes.len() > MAX_BODY {
            return Err(too_large());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Value::Object(Map::new())));
        }
        // A form or a text body is not read as JSON just because it parses as JSON: the
        // client said it was something else (`curl -d` sends a form), and a browser may
        // send such a body across sites without asking first.
        if !json {
            return Err(ApiError::bad_request(
                "Request body must be JSON: send it with Content-Type: application/json",
            ));
        }
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(Body(v)),
            Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!(
                "Request body is not valid JSON: {e}"
            ))),
        }
    }
}

/// `application/json`, or a JSON-based type such as `application/vnd.heroku+json`, with any
/// parameters (`; charset=utf-8`).
fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    essence == b"application/json"
        || (essence.starts_with(b"application/") && essence.ends_with(b"+json"))
}

/// The request's `Range`, if any. A header that is not even text is malformed, not absent.
fn range_header(headers: &HeaderMap) -> ApiResult<Option<range::Range>> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let h = v
        .to_str()
        .map_err(|_| ApiError::bad_request("Invalid Range header: it must be printable ASCII"))?;
    range::parse(h)
        .map(Some)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

pub(crate) fn app_json(st: &ApiState, view: &AppView) -> Value {
    let slug = view.slug.as_ref();
    json::app(
        &st.platform,
        &view.app,
        slug.map(|s| s.size),
        slug.and_then(|s| s.buildpack_provided_description.as_deref()),
    )
}

// ---- account ----

/// `GET /account`, and `GET /users/{user}` for the caller themselves (`~`, their id or
/// email); another user's account is not shown.
async fn account(User(user): User, path: Option<Path<String>>) -> ApiResult<Json<Value>> {
    if let Some(Path(who)) = path {
        if who != "~" && who != user.id && !who.eq_ignore_ascii_case(&user.email) {
            return Err(ApiError::not_found("user", "Couldn't find that user."));
        }
    }
    Ok(Json(json::account(&user)))
}

// ---- apps ----

async fn list_apps(State(st): State<ApiState>, User(user): User) -> ApiResult<Json<Value>> {
    let apps: Vec<Value> = st
        .platform
        .apps(&user)?
        .iter()
        .map(|v| app_json(&st, v))
        .collect();
    Ok(Json(Value::Array(apps)))
}

/// `POST /apps`, and `POST /teams/apps` (`apps:create --team`), which names the team.
pub(crate) async fn create_app(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Response> {
    let text = |k: &str| match body.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{k} must be a string"))),
    };
    let name = text("name")?;
    let team = text("team")?.or(text("organization")?);
    let app = st
        .platform
        .create_app(&user, name.as_deref(), team.as_deref())
        .await
        .map_err(|e| match e {
            // Heroku answers a taken name with 422.
            PlatformError::Conflict(m) => ApiError::invalid(m),
            other => other.into(),
        })?;
    Ok(created(app_json(&st, &st.platform.app_view(&user, &app)?)))
}

async fn app_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    Ok(Json(app_json(&st, &st.platform.app_view(&user, &app)?)))
}

async fn update_app(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let mut app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let Value::Object(fields) = &body else {
        return Err(ApiError::invalid("Expected a JSON object"));
    };
    // Check every field before changing anything, so a bad field leaves the app as it was.
    let mut maintenance = None;
    let mut rename = None;
    for (k, v) in fields {
        match (k.as_str(), v) {
            ("maintenance", Value::Bool(on)) => maintenance = Some(*on),
            ("maintenance", _) => {
                return Err(ApiError::invalid("maintenance must be true or false"));
            }
            ("name", Value::String(n)) if *n == app.name => {}
            ("name", Value::String(n)) => {
                kiln_model::app::AppName::parse(n).map_err(|e| ApiError::invalid(e.message))?;
                rename = Some(n.clone());
            }
            ("name", _) => return Err(ApiError::invalid("name must be a string")),
            // `stack:set` sends a name; the schema also allows `{"name": …}` or an id.
            ("build_stack", Value::String(stack)) => st.platform.check_build_stack(stack)?,
            ("build_stack", Value::Object(o)) => match o.get("name").and_then(Value::as_str) {
                Some(stack) => st.platform.check_build_stack(stack)?,
                None => return Err(ApiError::invalid("build_stack must name a stack")),
            },
            ("build_stack", _) => return Err(ApiError::invalid("build_stack must name a stack")),
            (other, _) => return Err(ApiError::invalid(format!("Unknown app field {other:?}"))),
        }
    }
    // Every permission the change needs, before any part of it is made.
    if rename.is_some() {
        st.platform
            .app_for(&user, &app.id, kiln_platform::Need::Owner)?;
    }
    if maintenance.is_some() {
        st.platform
            .app_for(&user, &app.id, kiln_platform::Need::Operate)?;
    }
    if fields.contains_key("build_stack") {
        st.platform
            .app_for(&user, &app.id, kiln_platform::Need::Deploy)?;
    }
    if let Some(name) = rename {
        app = st.platform.rename_app(&app, &name, &user).await?;
    }
    if let Some(on) = maintenance {
        app = st.platform.set_maintenance(&app, on, &user).await?;
    }
    Ok(Json(app_json(&st, &st.platform.app_view(&user, &app)?)))
}

async fn destroy_app(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Owner)?;
    let body = app_json(&st, &st.platform.app_view(&user, &app)?);
    st.platform.destroy_app(&user, &app).await?;
    Ok(Json(body))
}

// ---- config vars ----

async fn config_vars(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    Ok(Json(json!(app.config)))
}

async fn update_config_vars(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::invalid("Expected a JSON object of config vars"));
    };
    let mut patch = BTreeMap::new();
    for (k, v) in fields {
        let v = match v {
            Value::String(s) => Some(s),
            Value::Null => None,
            // Heroku's CLI always sends strings; numbers and booleans are taken as their text.
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                return Err(ApiError::invalid(format!(
                    "Config var {k} must be a string or null"
                )));
            }
        };
        patch.insert(k, v);
    }
    let (config, _) = st.platform.update_config(&app, &patch, &user).await?;
    Ok(Json(json!(config)))
}

// ---- releases ----

fn current_id(st: &ApiState, user: &Account, app: &App) -> Option<String> {
    st.platform
        .current_release(user, app)
        .ok()
        .flatten()
        .map(|r| r.id)
}

async fn list_releases(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    origin: crate::Origin,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let r = range_header(&headers)?.unwrap_or(range::Range {
        field: "version".into(),
        start: None,
        end: None,
        max: None,
        descending: false,
    });
    if r.field != "version" && r.field != "id" {
        return Err(ApiError::bad_request(format!(
            "Releases can be ranged by version, not {}",
            r.field
        )));
    }
    let parse_v = |s: &Option<String>| -> ApiResult<Option<u32>> {
        s.as_deref()
            .map(|v| {
                v.trim_start_matches('v')
                    .parse::<u32>()
                    .map_err(|_| ApiError::bad_request(format!("Invalid version {v:?} in Range")))
            })
            .transpose()
    };
    let (first, last) = if r.field == "version" {
        (parse_v(&r.start)?, parse_v(&r.end)?)
    } else {
        (None, None)
    };
    let max = r.max.unwrap_or(range::DEFAULT_MAX);
    // Ask for one more than a page to know whether there is a next page.
    let mut rows = st.platform.releases(
        &user,
        &app,
        ReleaseRange {
            first,
            last,
            max: max + 1,
            descending: r.descending,
        },
    )?;
    let more = rows.len() > max as usize;
    rows.truncate(max as usize);
    let cur = current_id(&st, &user, &app);
    let items: Vec<Value> = rows
        .iter()
        .map(|rel| json::release(&origin.base, &app, rel, cur.as_deref()))
        .collect();
    let mut resp = Json(Value::Array(items)).into_response();
    let h = resp.headers_mut();
    h.insert("accept-ranges", HeaderValue::from_static("id, version"));
    if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
        if let Ok(v) = HeaderValue::from_str(&format!("version {}..{}", a.version, b.version)) {
            h.insert("content-range", v);
        }
        if more {
            let next = if r.descending {
                format!("version ..{}; max={max}, order=desc", b.version - 1)
            } else {
                format!("version {}..; max={max}, order=asc", b.version + 1)
            };
            if let Ok(v) = HeaderValue::from_str(&next) {
                h.insert("next-range", v);
            }
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
    }
    Ok(resp)
}

async fn release_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, release)): Path<(String, String)>,
    origin: crate::Origin,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let rel = st.platform.release(&user, &app, &release)?;
    Ok(Json(json::release(
        &origin.base,
        &app,
        &rel,
        current_id(&st, &user, &app).as_deref(),
    )))
}

async fn release_config_vars(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, release)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let rel = st.platform.release(&user, &app, &release)?;
    Ok(Json(json!(rel.config)))
}

/// `{release}` rolls back to that release; `{slug}` releases a slug with the current config.
async fn create_release(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    origin: crate::Origin,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let target = match (body.get("release"), body.get("slug")) {
        (Some(Value::String(id)), _) => st.platform.release(&user, &app, id)?,
        (Some(_), _) => return Err(ApiError::invalid("release must be a release id or version")),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "Creating a release from a slug is not supported yet; push with git",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "Missing release: POST {\"release\": \"<id or version>\"} to roll back",
            ));
        }
    };
    if target.status != kiln_model::release::ReleaseStatus::Succeeded {
        return Err(ApiError::invalid(format!(
            "v{} did not succeed and cannot be rolled back to",
            target.version
        )));
    }
    let rel = st.platform.rollback(&app, &target, &user).await?;
    Ok(created(json::release(
        &origin.base,
        &app,
        &rel,
        current_id(&st, &user, &app).as_deref(),
    )))
}

// ---- formation ----

async fn list_formation(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let items: Vec<Value> = st
        .platform
        .formation(&user, &app)?
        .iter()
        .map(|(f, c)| json::formation(&app, f, c))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn formation_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, ptype)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let all = st.platform.formation(&user, &app)?;
    let (f, c) = all
        .iter()
        .find(|(f, _)| f.process_type == ptype || f.id == ptype)
        .ok_or_else(|| {
            ApiError::not_found(
                "formation",
                format!("Couldn't find that process type ({ptype})."),
            )
        })?;
    Ok(Json(json::formation(&app, f, c)))
}

/// One update: `quantity` (number or string, absolute or `+N`/`-N`) and `size` or `dyno_size`
/// (a name, or `{name}`), as the schema and the real CLI send them.
fn parse_update(
    v: &Value,
    ptype_override: Option<&str>,
) -> ApiResult<(String, Option<QuantityChange>, Option<String>)> {
    let Value::Object(o) = v else {
        return Err(ApiError::invalid("Each formation update must be an object"));
    };
    let ptype = match ptype_override {
        Some(t) => t.to_string(),
        None => o
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("Each formation update needs a type"))?
            .to_string(),
    };
    let quantity = match o.get("quantity") {
        None | Some(Value::Null) => None,
        Some(q) => Some(QuantityChange::from_json(q).map_err(|e| ApiError::invalid(e.message))?),
    };
    let size = match o.get("size").or_else(|| o.get("dyno_size")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(d)) => d.get("name").and_then(Value::as_str).map(str::to_string),
        Some(_) => return Err(ApiError::invalid("size must be a dyno size name")),
    };
    Ok((ptype, quantity, size))
}

async fn batch_update_formation(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Operate)?;
    let Some(Value::Array(items)) = body.get("updates") else {
        return Err(ApiError::invalid(
            "Expected {\"updates\": [{\"type\": ..., \"quantity\": ...}]}",
        ));
    };
    if items.len() > 100 {
        return Err(ApiError::invalid("Too many formation updates"));
    }
    let updates = items
        .iter()
        .map(|v| parse_update(v, None))
        .collect::<ApiResult<Vec<_>>>()?;
    let all = st.platform.scale(&app, &updates, &user).await?;
    Ok(Json(Value::Array(
        all.iter()
            .filter(|(f, _)| updates.iter().any(|(t, _, _)| t == &f.process_type))
            .map(|(f, c)| json::formation(&app, f, c))
            .collect(),
    )))
}

async fn update_formation(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, ptype)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Operate)?;
    let update = parse_update(&body, Some(&ptype))?;
    let all = st
        .platform
        .scale(&app, std::slice::from_ref(&update), &user)
        .await?;
    let (f, c) = all
        .iter()
        .find(|(f, _)| f.process_type == ptype)
        .ok_or_else(|| {
            ApiError::not_found(
                "formation",
                format!("Couldn't find that process type ({ptype})."),
            )
        })?;
    Ok(Json(json::formation(&app, f, c)))
}

// ---- dynos ----

async fn list_dynos(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let items: Vec<Value> = st
        .platform
        .dynos(&user, &app)
        .await?
        .iter()
        .map(|d| json::dyno(&app, d))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn dyno_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let d = st
        .platform
        .dynos(&user, &app)
        .await?
        .into_iter()
        .find(|d| d.name == dyno || d.id == dyno)
        .ok_or_else(|| ApiError::not_found("dyno", format!("Couldn't find that dyno ({dyno}).")))?;
    Ok(Json(json::dyno(&app, &d)))
}

async fn restart(
    st: &ApiState,
    user: &kiln_model::records::Account,
    app: &str,
    target: RestartTarget,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(user, app, kiln_platform::Need::Operate)?;
    st.platform.restart(&app, target, user).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

async fn restart_all(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Response> {
    restart(&st, &user, &app, RestartTarget::All).await
}

async fn restart_dyno(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Response> {
    restart(&st, &user, &app, dyno_or_type(dyno)?).await
}

/// `web.1` names a dyno; a bare `web` all dynos of that type, as Heroku accepts it where a
/// dyno name is expected (`heroku ps:restart web`, `heroku ps:stop web`).
fn dyno_or_type(name: String) -> ApiResult<RestartTarget> {
    if !name.contains('.') {
        if kiln_model::procfile::validate_process_type(&name).is_ok() {
            return Ok(RestartTarget::Type(name));
        }
    }
    kiln_model::DynoName::parse(&name).map_err(|e| ApiError::invalid(e.message))?;
    Ok(RestartTarget::Dyno(name))
}

async fn stop(
    st: &ApiState,
    user: &kiln_model::records::Account,
    app: &str,
    target: RestartTarget,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(user, app, kiln_platform::Need::Operate)?;
    st.platform.stop(&app, target, user).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

async fn stop_dyno(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Response> {
    stop(&st, &user, &app, dyno_or_type(dyno)?).await
}

async fn stop_type(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, ptype)): Path<(String, String)>,
) -> ApiResult<Response> {
    kiln_model::procfile::validate_process_type(&ptype)
        .map_err(|e| ApiError::invalid(e.message))?;
    stop(&st, &user, &app, RestartTarget::Type(ptype)).await
}

async fn restart_type(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, ptype)): Path<(String, String)>,
) -> ApiResult<Response> {
    kiln_model::procfile::validate_process_type(&ptype)
        .map_err(|e| ApiError::invalid(e.message))?;
    restart(&st, &user, &app, RestartTarget::Type(ptype)).await
}

// ---- builds ----

async fn list_builds(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    origin: crate::Origin,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let base = origin.base;
    let mut builds = st.platform.builds(&user, &app)?;
    if let Some(r) = range_header(&headers)? {
        if !r.descending {
            builds.reverse();
        }
        builds.truncate(r.max.unwrap_or(range::DEFAULT_MAX) as usize);
    } else {
        builds.reverse();
    }
    Ok(Json(Value::Array(
        builds.iter().map(|b| json::build(&base, &app, b)).collect(),
    )))
}

async fn build_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, build)): Path<(String, String)>,
    origin: crate::Origin,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let b = st.platform.build(&user, &app, &build)?;
    Ok(Json(json::build(&origin.base, &app, &b)))
}

/// A build's output as plain text, streamed while the build runs. The build's id (a random
/// UUID known only to the app's owner) is the capability, as with Heroku's stream URLs.
async fn build_output(
    State(st): State<ApiState>,
    Path(build): Path<String>,
) -> ApiResult<Response> {
    if uuid::Uuid::parse_str(&build).is_err() {
        return Err(ApiError::not_found("build", "Couldn't find that build."));
    }
    let text_headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if let Some(stream) = st.platform.build_stream(&build) {
        return Ok((text_headers, axum::body::Body::from_stream(follow(stream))).into_response());
    }
    let output = st.platform.build_output(&build)?;
    Ok((text_headers, output).into_response())
}

/// A release phase's output, for `releases:output` (read without credentials, like a build's
/// output: the release's id is the capability). Live while the release command runs; 404
/// ("not started yet", the CLI says) when there is none.
async fn release_output(
    State(st): State<ApiState>,
    Path(release): Path<String>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("release", "This release has no release output.");
    if uuid::Uuid::parse_str(&release).is_err() {
        return Err(not_found());
    }
    let text_headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match st.platform.release_output(&release)? {
        Some(kiln_platform::ReleaseOutput::Live(stream)) => {
            Ok((text_headers, axum::body::Body::from_stream(follow(stream))).into_response())
        }
        Some(kiln_platform::ReleaseOutput::Kept(text)) => Ok((text_headers, text).into_response()),
        None => Err(not_found()),
    }
}

/// Every line of a live output stream so far, then new ones until it finishes.
fn follow(
    stream: std::sync::Arc<kiln_platform::BuildStream>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold((stream, 0usize, false), |(stream, from, done)| async move {
        if done {
            return None;
        }
        let (lines, finished) = stream.next(from).await;
        let n = from + lines.len();
        let mut chunk = lines.join("\n");
        if !lines.is_empty() {
            chunk.push('\n');
        }
        Some((Ok(Bytes::from(chunk)), (stream, n, finished)))
    })
}

// ---- buildpacks ----

fn buildpack_list(urls: &[String]) -> Value {
    Value::Array(
        urls.iter()
            .enumerate()
            .map(|(i, u)| json!({ "ordinal": i, "buildpack": { "url": u, "name": u } }))
            .collect(),
    )
}

async fn list_buildpacks(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    Ok(Json(buildpack_list(&st.platform.buildpacks(&user, &app)?)))
}

async fn set_buildpacks(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let Some(Value::Array(items)) = body.get("updates") else {
        return Err(ApiError::invalid(
            "Expected {\"updates\": [{\"buildpack\": \"<url or name>\"}]}",
        ));
    };
    if items.len() > 16 {
        return Err(ApiError::invalid("At most 16 buildpacks"));
    }
    let urls = items
        .iter()
        .map(|i| {
            i.get("buildpack")
                .and_then(|b| b.as_str().or_else(|| b.get("url").and_then(Value::as_str)))
                .map(str::to_string)
                .ok_or_else(|| ApiError::invalid("Each update needs a buildpack"))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let saved = st.platform.set_buildpacks(&user, &app, &urls)?;
    Ok(Json(buildpack_list(&saved)))
}
