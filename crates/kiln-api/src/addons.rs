//! Heroku's add-on resources: `addon-services` and their `plans`, `add-on`s (per app, per
//! user, by id), `add-on-attachment`s (global, per app, per add-on; create and delete), and
//! the two resolve actions the CLI uses to find an add-on or attachment from what a user
//! typed. Shapes follow the Platform API schema; `plan` may be sent as `{"name": …}` or as a
//! string, as the schema allows and the CLI does.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_model::addon::{Plan, SERVICES, Service};
use kiln_model::records::{Account, Addon, AddonAttachment};
use kiln_platform::CreateAddon;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/addon-services", get(list_services))
        .route("/addon-services/{service}", get(service_info))
        .route("/addon-services/{service}/plans", get(list_plans))
        .route("/addon-services/{service}/plans/{plan}", get(plan_info))
        .route("/plans/{plan}", get(plan_by_id))
        .route("/addons", get(list_account_addons))
        .route("/users/{user}/addons", get(list_account_addons))
        .route("/addons/{addon}", get(addon_info))
        .route(
            "/addons/{addon}/addon-attachments",
            get(list_addon_attachments),
        )
        .route(
            "/apps/{app}/addons",
            get(list_app_addons).post(create_addon),
        )
        .route(
            "/apps/{app}/addons/{addon}",
            get(app_addon_info)
                .patch(update_addon)
                .delete(destroy_addon),
        )
        .route("/addon-attachments", get(list_attachments).post(attach))
        .route(
            "/addon-attachments/{id}",
            get(attachment_info).delete(detach),
        )
        .route("/apps/{app}/addon-attachments", get(list_app_attachments))
        .route(
            "/apps/{app}/addon-attachments/{name}",
            get(app_attachment_info),
        )
        .route("/actions/addons/resolve", post(resolve_addon))
        .route(
            "/actions/addon-attachments/resolve",
            post(resolve_attachment),
        )
}

fn service_json(s: &Service) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "human_name": s.human_name,
        "cli_plugin_name": null,
        "state": "ga",
        "supported_generations": [{"id": crate::json::GENERATION_ID, "name": "cedar"}],
        "supports_multiple_installations": true,
        "supports_sharing": true,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    })
}

fn plan_json(s: &Service, p: &Plan) -> Value {
    let mut description = vec![];
    if let Some(b) = p.storage_bytes {
        description.push(format!("{} storage", human(b)));
    }
    if let Some(b) = p.memory_bytes {
        description.push(format!("{} memory", human(b)));
    }
    if let Some(c) = p.connections {
        description.push(format!("{c} connections"));
    }
    json!({
        "id": s.plan_id(p),
        "name": format!("{}:{}", s.name, p.name),
        "human_name": p.human_name,
        "description": format!("{} {}: {}", s.human_name, p.human_name, description.join(", ")),
        "addon_service": { "id": s.id, "name": s.name },
        "default": s.default_plan == p.name,
        "price": { "cents": p.price_cents, "contract": false, "metered": false, "unit": "month" },
        "state": "public",
        "visible": true,
        "compliance": null,
        "installable_inside_private_network": false,
        "installable_outside_private_network": true,
        "space_default": false,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    })
}

fn human(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GB", b >> 30)
    } else {
        format!("{} MB", b >> 20)
    }
}

fn find_service(name: &str) -> ApiResult<&'static Service> {
    Service::find(name)
        .ok_or_else(|| ApiError::not_found("addon_service", "Couldn't find that add-on service."))
}

fn addon_json(a: &Addon) -> Value {
    let service = Service::find(&a.service);
    let plan = service.and_then(|s| s.plan(&a.plan));
    let (service_id, plan_json_v) = match (service, plan) {
        (Some(s), Some(p)) => (
            s.id.to_string(),
            json!({
                "id": s.plan_id(p),
                "name": format!("{}:{}", s.name, p.name),
                "price": { "cents": p.price_cents, "contract": false, "metered": false, "unit": "month" },
            }),
        ),
        _ => (
            String::new(),
            json!({ "id": null, "name": format!("{}:{}", a.service, a.plan) }),
        ),
    };
    let config_vars: Vec<String> = a.config.keys().cloned().collect();
    json!({
        "id": a.id,
        "name": a.name,
        "state": a.state.as_str(),
        "addon_service": { "id": service_id, "name": a.service },
        "plan": plan_json_v,
        "app": { "id": a.app_id, "name": a.app_name },
        "billing_entity": { "id": a.app_id, "name": a.app_name, "type": "app" },
        "billed_price": { "cents": 0, "contract": false, "unit": "month" },
        "config_vars": config_vars,
        "provider_id": a.id,
        "provision_message": a.provision_message,
        "web_url": null,
        "actions": [],
        "created_at": a.created_at.rfc3339(),
        "updated_at": a.updated_at.rfc3339(),
    })
}

/// An add-on with its attachment config var names, as the CLI reads after creating one.
fn addon_with_vars(a: &Addon, attachments: &[AddonAttachment]) -> Value {
    let mut v = addon_json(a);
    let vars: Vec<String> = attachments
        .iter()
        .flat_map(|t| a.config.keys().map(move |k| format!("{}_{k}", t.name)))
        .collect();
    v["config_vars"] = json!(vars);
    v
}

fn attachment_json(t: &AddonAttachment) -> Value {
    // The vars this attachment gives its app; Heroku's CLI (`pg:*`) finds databases by them.
    let config_vars: Vec<String> = Service::find(&t.addon_service)
        .map(|s| {
            s.config_keys
                .iter()
                .map(|k| format!("{}_{k}", t.name))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": t.id,
        "name": t.name,
        "config_vars": config_vars,
        "namespace": t.namespace,
        "addon": {
            "id": t.addon_id,
            "name": t.addon_name,
            "app": { "id": t.addon_app_id, "name": t.addon_app_name },
            "plan": { "name": format!("{}:{}", t.addon_service, t.addon_plan) },
        },
        "app": { "id": t.app_id, "name": t.app_name },
        "web_url": null,
        "log_input_url": null,
        "created_at": t.created_at.rfc3339(),
        "updated_at": t.updated_at.rfc3339(),
    })
}

async fn list_services(User(_): User) -> Json<Value> {
    Json(Value::Array(SERVICES.iter().map(service_json).collect()))
}

async fn service_info(User(_): User, Path(service): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(service_json(find_service(&service)?)))
}

async fn list_plans(User(_): User, Path(service): Path<String>) -> ApiResult<Json<Value>> {
    let s = find_service(&service)?;
    Ok(Json(Value::Array(
        s.plans.iter().map(|p| plan_json(s, p)).collect(),
    )))
}

async fn plan_info(
    User(_): User,
    Path((service, plan)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let s = find_service(&service)?;
    let p = s
        .plans
        .iter()
        .find(|p| {
            p.name == plan || s.plan_id(p) == plan || format!("{}:{}", s.name, p.name) == plan
        })
        .ok_or_else(|| ApiError::not_found("plan", "Couldn't find that plan."))?;
    Ok(Json(plan_json(s, p)))
}

async fn plan_by_id(User(_): User, Path(plan): Path<String>) -> ApiResult<Json<Value>> {
    let r = kiln_model::addon::PlanRef::parse(&plan)
        .map_err(|_| ApiError::not_found("plan", "Couldn't find that plan."))?;
    Ok(Json(plan_json(r.service, r.plan)))
}

async fn list_account_addons(
    State(st): State<ApiState>,
    User(user): User,
) -> ApiResult<Json<Value>> {
    let addons = st.platform.account_addons(&user)?;
    Ok(Json(Value::Array(addons.iter().map(addon_json).collect())))
}

async fn list_app_addons(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let addons = st.platform.app_addons(&user, &app)?;
    Ok(Json(Value::Array(addons.iter().map(addon_json).collect())))
}

/// The app's add-on, once the user is known to hold `need` on the app (checked first, so
/// the answer does not depend on which add-ons exist).
fn addon_in_app(
    st: &ApiState,
    user: &Account,
    app: &str,
    addon: &str,
    need: kiln_platform::Need,
) -> ApiResult<Addon> {
    let app = st.platform.app_for(user, app, need)?;
    st.platform
        .app_addons(user, &app)?
        .into_iter()
        .find(|a| a.id == addon || a.name == addon)
        .ok_or_else(|| ApiError::not_found("add-on", "Couldn't find that add-on."))
}

async fn addon_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(addon): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(addon_json(&st.platform.addon_for(&user, &addon)?)))
}

async fn app_addon_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, addon)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(addon_json(&addon_in_app(
        &st,
        &user,
        &app,
        &addon,
        kiln_platform::Need::View,
    )?)))
}

/// A string field, absent or null as `None`; anything else is refused.
fn opt_str<'a>(body: &'a Value, field: &str) -> ApiResult<Option<&'a str>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a string"))),
    }
}

/// A resource named by a string or by `{"id": …}` / `{"name": …}`, as the schema allows.
fn identity(body: &Value, field: &str) -> ApiResult<String> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => match (o.get("id"), o.get("name")) {
            (Some(Value::String(s)), _) | (_, Some(Value::String(s))) => Ok(s.clone()),
            _ => Err(ApiError::invalid(format!(
                "{field} must name one: {{\"name\": …}}"
            ))),
        },
        None | Some(Value::Null) => Err(ApiError::invalid(format!("Missing {field}"))),
        Some(_) => Err(ApiError::invalid(format!(
            "{field} must be a string or an object with an id or name"
        ))),
    }
}

/// `plan` as `{"name": …}` / `{"id": …}` or a plain string.
fn plan_field(body: &Value) -> ApiResult<String> {
    match body.get("plan") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => match (o.get("name"), o.get("id")) {
            (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => Ok(s.clone()),
            _ => Err(ApiError::invalid(
                "plan must name a plan: {\"name\": \"heroku-postgresql:essential-0\"}",
            )),
        },
        None | Some(Value::Null) => Err(ApiError::invalid(
            "Missing plan: POST {\"plan\": {\"name\": \"heroku-postgresql:essential-0\"}}",
        )),
        Some(_) => Err(ApiError::invalid(
            "plan must be a string or an object with a name",
        )),
    }
}

/// `config` options: an object of strings (`{"maxmemory_policy": "allkeys-lru"}`).
fn options(body: &Value) -> ApiResult<BTreeMap<String, String>> {
    match body.get("config") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => {
            if o.len() > 32 {
                return Err(ApiError::invalid("Too many add-on options"));
            }
            o.iter()
                .map(|(k, v)| match v {
                    Value::String(s) if k.len() <= 64 && s.len() <= 1024 => {
                        Ok((k.clone(), s.clone()))
                    }
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    _ => Err(ApiError::invalid(format!(
                        "Option {k} must be a short string"
                    ))),
                })
                .collect()
        }
        Some(_) => Err(ApiError::invalid(
            "config must be an object of option names and values",
        )),
    }
}

async fn create_addon(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let attachment_name = match body.get("attachment") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => match o.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::invalid("attachment.name must be a string")),
        },
        Some(_) => {
            return Err(ApiError::invalid(
                "attachment must be an object: {\"name\": \"DATABASE\"}",
            ));
        }
    };
    let req = CreateAddon {
        plan: plan_field(&body)?,
        name: opt_str(&body, "name")?.map(str::to_string),
        attachment_name,
        options: options(&body)?,
    };
    let (addon, att, _) = st.platform.create_addon(&user, &app, req).await?;
    Ok((StatusCode::CREATED, Json(addon_with_vars(&addon, &[att]))).into_response())
}

async fn update_addon(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, addon)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let addon = addon_in_app(&st, &user, &app, &addon, kiln_platform::Need::Deploy)?;
    let plan = plan_field(&body)?;
    let (addon, _) = st.platform.change_addon_plan(&user, &addon, &plan).await?;
    Ok(Json(addon_json(&addon)))
}

async fn destroy_addon(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, addon)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let addon = addon_in_app(&st, &user, &app, &addon, kiln_platform::Need::Deploy)?;
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    let (gone, _) = st.platform.destroy_addon(&user, &addon, force).await?;
    Ok(Json(addon_json(&gone)))
}

async fn list_attachments(State(st): State<ApiState>, User(user): User) -> ApiResult<Json<Value>> {
    let list = st.platform.account_attachments(&user)?;
    Ok(Json(Value::Array(
        list.iter().map(attachment_json).collect(),
    )))
}

async fn list_app_attachments(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let list = st.platform.app_attachments(&user, &app)?;
    Ok(Json(Value::Array(
        list.iter().map(attachment_json).collect(),
    )))
}

async fn list_addon_attachments(
    State(st): State<ApiState>,
    User(user): User,
    Path(addon): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = st.platform.addon_for(&user, &addon)?;
    let list = st.platform.addon_attachments(&user, &addon)?;
    Ok(Json(Value::Array(
        list.iter().map(attachment_json).collect(),
    )))
}

async fn attachment_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(attachment_json(
        &st.platform.attachment_for(&user, None, &id)?,
    )))
}

async fn app_attachment_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    Ok(Json(attachment_json(&st.platform.attachment_for(
        &user,
        Some(&app),
        &name,
    )?)))
}

async fn attach(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Response> {
    let addon = identity(&body, "addon")?;
    let app = identity(&body, "app")?;
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let name = opt_str(&body, "name")?;
    let namespace = opt_str(&body, "namespace")?;
    let (att, _) = st
        .platform
        .attach_addon(&user, &addon, &app, name, namespace)
        .await?;
    Ok((StatusCode::CREATED, Json(attachment_json(&att))).into_response())
}

async fn detach(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let att = st.platform.attachment_for(&user, None, &id)?;
    let (att, _) = st.platform.detach_addon(&user, &att).await?;
    Ok(Json(attachment_json(&att)))
}

/// `{addon, app?, addon_service?}` → the add-ons that name could mean (Heroku answers a list).
async fn resolve_addon(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let wanted = opt_str(&body, "addon")?
        .ok_or_else(|| ApiError::invalid("Missing addon"))?
        .to_string();
    let service = opt_str(&body, "addon_service")?.map(str::to_string);
    let found: Vec<Addon> = match opt_str(&body, "app")? {
        Some(app) => {
            let app = st.platform.app_for(&user, app, kiln_platform::Need::View)?;
            let by_attachment: Vec<String> = st
                .platform
                .app_attachments(&user, &app)?
                .into_iter()
                .filter(|t| t.name == wanted)
                .map(|t| t.addon_id)
                .collect();
            st.platform
                .app_addons(&user, &app)?
                .into_iter()
                .filter(|a| a.id == wanted || a.name == wanted || by_attachment.contains(&a.id))
                .collect()
        }
        None => st.platform.addon_for(&user, &wanted).into_iter().collect(),
    };
    let found: Vec<Value> = found
        .iter()
        .filter(|a| {
            service
                .as_deref()
                .is_none_or(|s| Service::find(s).is_some_and(|s| s.name == a.service))
        })
        .map(addon_json)
        .collect();
    if found.is_empty() {
        return Err(ApiError::not_found(
            "add_on",
            format!("Couldn't find that add-on ({wanted})."),
        ));
    }
    Ok(Json(Value::Array(found)))
}

/// `{addon_attachment, app?, addon_service?}` → the matching attachments, each with its
/// add-on's config var names when `Accept-Inclusion` asks (the CLI's `pg:*` use them).
async fn resolve_attachment(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let wanted = opt_str(&body, "addon_attachment")?
        .ok_or_else(|| ApiError::invalid("Missing addon_attachment"))?
        .to_string();
    // `DATABASE_URL` names the attachment `DATABASE`, as Heroku's CLI sends it.
    let bare = wanted.strip_suffix("_URL").unwrap_or(&wanted).to_string();
    let service = opt_str(&body, "addon_service")?.map(str::to_string);
    let candidates = match opt_str(&body, "app")? {
        Some(app) => {
            let app = st.platform.app_for(&user, app, kiln_platform::Need::View)?;
            st.platform.app_attachments(&user, &app)?
        }
        None => st.platform.account_attachments(&user)?,
    };
    let mut out = Vec::new();
    for t in candidates.iter().filter(|t| {
        (t.name == wanted || t.name == bare || t.id == wanted || t.addon_name == wanted)
            && service
                .as_deref()
                .is_none_or(|s| Service::find(s).is_some_and(|s| s.name == t.addon_service))
    }) {
        let mut v = attachment_json(t);
        if let Ok(addon) = st.platform.addon_for(&user, &t.addon_id) {
            v["addon"]["config_vars"] = json!(
                addon
                    .config
                    .keys()
                    .map(|k| format!("{}_{k}", t.name))
                    .collect::<Vec<_>>()
            );
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(ApiError::not_found(
            "add_on attachment",
            format!("Couldn't find that add-on attachment ({wanted})."),
        ));
    }
    Ok(Json(Value::Array(out)))
}
