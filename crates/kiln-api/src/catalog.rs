//! What the platform offers, as Heroku's catalogue resources: stacks (`heroku stack`),
//! regions (`heroku regions`), app and account features (`heroku features`, `heroku labs`),
//! and the buildpack registry's lookup and search (`buildpacks:set heroku/python` with
//! `HEROKU_BUILDPACK_REGISTRY_URL` pointing here), which name Kiln's built-in buildpacks.
//!
//! The registry is public on Heroku and its client sends no credentials, so its routes are
//! the only ones here that need none; they serve nothing but the built-in buildpacks' names.

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::{ApiState, json};
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use kiln_model::Timestamp;
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/stacks", get(list_stacks))
        .route("/stacks/{stack}", get(stack_info))
        .route("/regions", get(list_regions))
        .route("/regions/{region}", get(region_info))
        .route("/apps/{app}/features", get(app_features))
        .route(
            "/apps/{app}/features/{feature}",
            get(app_feature).patch(update_app_feature),
        )
        .route("/account/features", get(account_features))
        .route("/account/features/{feature}", get(account_feature))
        .route("/buildpacks", get(search_buildpacks))
        .route("/buildpacks/{buildpack}", get(registry_buildpack))
        .route("/buildpacks/{buildpack}/revisions", get(registry_revisions))
        .route("/buildpacks/{buildpack}/readme", get(registry_readme))
}

/// Kiln's one stack is the machine's own system (what its dynos and builds see).
fn stack(st: &ApiState) -> Value {
    let mut s = json::stack(st.platform.stack());
    s["state"] = json!("public");
    s["default"] = json!(true);
    s["created_at"] = json!(Timestamp::from_unix_seconds(0).rfc3339());
    s["updated_at"] = json!(Timestamp::from_unix_seconds(0).rfc3339());
    s
}

async fn list_stacks(State(st): State<ApiState>, User(_): User) -> Json<Value> {
    Json(json!([stack(&st)]))
}

async fn stack_info(
    State(st): State<ApiState>,
    User(_): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = stack(&st);
    if s["name"] == id.as_str() || s["id"] == id.as_str() {
        Ok(Json(s))
    } else {
        Err(ApiError::not_found("stack", "Couldn't find that stack."))
    }
}

fn region() -> Value {
    json!({
        "id": json::REGION_ID,
        "name": "local",
        "description": "This Kiln server",
        "country": "",
        "locale": "",
        "private_capable": false,
        "provider": { "name": "kiln", "region": "local" },
        "created_at": Timestamp::from_unix_seconds(0).rfc3339(),
        "updated_at": Timestamp::from_unix_seconds(0).rfc3339(),
    })
}

async fn list_regions(User(_): User) -> Json<Value> {
    Json(json!([region()]))
}

async fn region_info(User(_): User, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    if id == "local" || id == json::REGION_ID {
        Ok(Json(region()))
    } else {
        Err(ApiError::not_found("region", "Couldn't find that region."))
    }
}

/// An app feature, as Heroku shows it: either how Kiln always behaves (shown as the feature
/// that turns it on, and fixed), or one the app may switch (labs).
struct Feature {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    doc_url: &'static str,
    /// How it is: fixed, or switched per app (then the store says).
    kind: FeatureKind,
}

#[derive(Clone, Copy, PartialEq)]
enum FeatureKind {
    Always(bool),
    Switchable,
}

const APP_FEATURES: [Feature; 2] = [
    Feature {
        id: "7e3b2a1c-0000-4000-8000-000000000201",
        name: "preboot",
        description: "Start new web dynos and wait for them to be up before stopping the old ones, on every release (Kiln always does).",
        doc_url: "https://devcenter.heroku.com/articles/preboot",
        kind: FeatureKind::Always(true),
    },
    Feature {
        id: "7e3b2a1c-0000-4000-8000-000000000202",
        name: kiln_platform::features::RUNTIME_METRICS,
        description: "Every dyno logs its load average and memory use about every 20 seconds (takes effect as dynos restart).",
        doc_url: "https://devcenter.heroku.com/articles/log-runtime-metrics",
        kind: FeatureKind::Switchable,
    },
];

fn feature_json(f: &Feature, on: &[String]) -> Value {
    let (enabled, state) = match f.kind {
        FeatureKind::Always(e) => (e, "general"),
        FeatureKind::Switchable => (on.iter().any(|n| n == f.name), "beta"),
    };
    json!({
        "id": f.id,
        "name": f.name,
        "description": f.description,
        "doc_url": f.doc_url,
        "enabled": enabled,
        "state": state,
        "display_name": f.name,
        "feedback_email": "",
        "created_at": Timestamp::from_unix_seconds(0).rfc3339(),
        "updated_at": Timestamp::from_unix_seconds(0).rfc3339(),
    })
}

fn find_feature(name: &str) -> ApiResult<&'static Feature> {
    APP_FEATURES
        .iter()
        .find(|f| f.name == name || f.id == name)
        .ok_or_else(|| ApiError::not_found("feature", "Couldn't find that feature."))
}

async fn app_features(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let on = st.platform.app_features(&app)?;
    Ok(Json(Value::Array(
        APP_FEATURES.iter().map(|f| feature_json(f, &on)).collect(),
    )))
}

async fn app_feature(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, feature)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let f = find_feature(&feature)?;
    Ok(Json(feature_json(f, &st.platform.app_features(&app)?)))
}

async fn update_app_feature(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, feature)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Manage)?;
    let f = find_feature(&feature)?;
    let enabled = body
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::invalid("enabled must be true or false"))?;
    match f.kind {
        FeatureKind::Always(fixed) if enabled != fixed => {
            return Err(ApiError::invalid(format!(
                "{} is how Kiln always works; it cannot be turned {}.",
                f.name,
                if enabled { "on" } else { "off" }
            )));
        }
        FeatureKind::Always(_) => {}
        FeatureKind::Switchable => {
            st.platform
                .set_app_feature(&app, f.name, enabled, &user)
                .await?;
        }
    }
    Ok(Json(feature_json(f, &st.platform.app_features(&app)?)))
}

/// Kiln has no experimental account features.
async fn account_features(User(_): User) -> Json<Value> {
    Json(json!([]))
}

async fn account_feature(User(_): User, Path(_): Path<String>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found(
        "feature",
        "Couldn't find that feature.",
    ))
}

// ---- the buildpack registry ----

/// A built-in buildpack as the registry describes it. `blob_url` is Heroku's canonical URL
/// for it, which Kiln's builds map back to the built-in (and the CLI shows as
/// `heroku/<name>`).
fn registry_entry(name: &str) -> Value {
    json!({
        "id": registry_id(name),
        "namespace": "heroku",
        "name": name,
        "blob_url": kiln_model::buildpack::canonical_url(name),
        "description": kiln_model::buildpack::builtin_description(name),
        "category": "languages",
        "support": { "method": "unsupported" },
        "source": { "type": "kiln" },
        "created_at": Timestamp::from_unix_seconds(0).rfc3339(),
        "updated_at": Timestamp::from_unix_seconds(0).rfc3339(),
    })
}

fn registry_id(name: &str) -> String {
    // Fixed per buildpack, whatever the detection order.
    let i = match name {
        "nodejs" => 0,
        "python" => 1,
        "procfile" => 2,
        "go" => 3,
        "ruby" => 4,
        "php" => 5,
        "java" => 6,
        "static" => 7,
        _ => 99,
    };
    format!("7e3b2a1c-0000-4000-8000-0000000003{i:02}")
}

/// The built-in named `heroku/NAME` (the registry's `namespace/name`, URL-decoded by axum).
fn registry_lookup(slug: &str) -> ApiResult<&'static str> {
    let not_found = || {
        ApiError::not_found(
            "buildpack",
            format!(
                "{slug} is not a buildpack this Kiln has; its built-in buildpacks are {}.",
                builtin_names()
            ),
        )
    };
    let (namespace, name) = slug.split_once('/').ok_or_else(not_found)?;
    if namespace != "heroku" && namespace != "kiln" {
        return Err(not_found());
    }
    kiln_model::buildpack::BUILTIN
        .iter()
        .copied()
        .find(|b| *b == name)
        .ok_or_else(not_found)
}

fn builtin_names() -> String {
    kiln_model::buildpack::BUILTIN
        .iter()
        .map(|b| format!("heroku/{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn registry_buildpack(Path(slug): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(registry_entry(registry_lookup(&slug)?)))
}

async fn registry_revisions(Path(slug): Path<String>) -> ApiResult<Json<Value>> {
    let name = registry_lookup(&slug)?;
    Ok(Json(json!([{
        "id": registry_id(name),
        "release": 1,
        "license": "MIT",
        "checksum": null,
        "published_by": "kiln",
        "created_at": Timestamp::from_unix_seconds(0).rfc3339(),
    }])))
}

async fn registry_readme(Path(slug): Path<String>) -> ApiResult<Json<Value>> {
    use base64::Engine;
    let name = registry_lookup(&slug)?;
    let text = format!(
        "# heroku/{name}\n\nKiln's built-in {name} buildpack, run by the Kiln server itself (no download).\n"
    );
    Ok(Json(json!({
        "content": base64::engine::general_purpose::STANDARD.encode(text),
        "encoding": "base64",
    })))
}

/// `GET /buildpacks?in[namespace][]=…&in[name][]=…&like[description]=…`: the built-ins
/// matching every given filter.
async fn search_buildpacks(RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let query = query.unwrap_or_default();
    if query.len() > 4096 {
        return Err(ApiError::bad_request("The search is too long."));
    }
    let (mut namespaces, mut names, mut like) = (Vec::new(), Vec::new(), None::<String>);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k);
        let v = percent_decode(v).to_ascii_lowercase();
        match k.as_str() {
            "in[namespace][]" => namespaces.push(v),
            "in[name][]" => names.push(v),
            "like[description]" => like = Some(v),
            _ => {}
        }
    }
    let found = kiln_model::buildpack::BUILTIN
        .iter()
        .filter(|_| {
            namespaces.is_empty() || namespaces.iter().any(|n| n == "heroku" || n == "kiln")
        })
        .filter(|b| names.is_empty() || names.iter().any(|n| n == *b))
        .filter(|b| {
            like.as_ref().is_none_or(|d| {
                kiln_model::buildpack::builtin_description(b)
                    .to_ascii_lowercase()
                    .contains(d.as_str())
            })
        })
        .map(|b| registry_entry(b))
        .collect();
    Ok(Json(Value::Array(found)))
}

/// `%XX` and `+` decoding of one query component; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_components_decode_and_survive_garbage() {
        assert_eq!(percent_decode("in%5Bname%5D%5B%5D"), "in[name][]");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
