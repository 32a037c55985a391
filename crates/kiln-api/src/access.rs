//! Sharing: collaborators (`/apps/{app}/collaborators`, `/teams/apps/{app}/collaborators`),
//! teams and their members (`/teams…`), team apps (`/teams/apps`), app transfers
//! (`/account/app-transfers`) and the audit log. Shapes follow the platform API schema and
//! what the `heroku` CLI reads (see the module tests and `tests/heroku_cli.rs`).

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{Body, app_json};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_model::records::{AppTransfer, Team, TeamMember, TransferState};
use kiln_platform::{AccessEntry, Need, Permission, Permissions, TeamRole, TransferOutcome};
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/apps/{app}/collaborators",
            get(list_collaborators).post(add_collaborator),
        )
        .route(
            "/apps/{app}/collaborators/{who}",
            get(collaborator_info)
                .patch(update_collaborator)
                .delete(remove_collaborator),
        )
        .route(
            "/teams/apps/{app}/collaborators",
            get(list_collaborators).post(add_collaborator),
        )
        .route(
            "/teams/apps/{app}/collaborators/{who}",
            get(collaborator_info)
                .patch(update_collaborator)
                .delete(remove_collaborator),
        )
        .route("/teams/permissions", get(permissions))
        .route("/teams", get(list_teams).post(create_team))
        .route("/teams/apps", post(crate::handlers::create_app))
        .route("/teams/apps/{app}", get(team_app).patch(update_team_app))
        .route("/teams/{team}", get(team_info))
        .route("/teams/{team}/features", get(team_features))
        .route("/teams/{team}/apps", get(team_apps))
        .route(
            "/teams/{team}/members",
            get(list_members)
                .put(set_member)
                .patch(set_member)
                .post(set_member),
        )
        .route(
            "/teams/{team}/members/{who}",
            axum::routing::delete(remove_member),
        )
        .route("/teams/{team}/invitations", get(no_invitations))
        .route(
            "/account/app-transfers",
            get(list_transfers).post(create_transfer),
        )
        .route(
            "/account/app-transfers/{id}",
            get(transfer_info)
                .patch(settle_transfer)
                .delete(withdraw_transfer),
        )
        .route("/apps/{app}/audit", get(audit_log))
}

fn permission_json(p: Permission) -> Value {
    json!({ "name": p.name(), "description": p.description() })
}

/// A collaborator. Personal apps' entries carry no `permissions` key: the CLI shows a
/// permissions column as soon as any entry has one (even `null`).
fn collaborator_json(e: &AccessEntry, team_app: bool) -> Value {
    let mut v = json!({
        "id": e.id,
        "app": { "id": e.app_id, "name": e.app_name },
        "user": { "id": e.user_id, "email": e.email, "federated": false },
        "role": e.role,
        "created_at": e.created_at.rfc3339(),
        "updated_at": e.updated_at.rfc3339(),
    });
    if team_app {
        v["permissions"] = e.permissions.iter().map(permission_json).collect();
    }
    v
}

/// The user named in a body (`user`: an email or id).
fn user_field(body: &Value) -> ApiResult<String> {
    match body.get("user") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 254 => Ok(s.clone()),
        Some(Value::Object(o)) => o
            .get("email")
            .or_else(|| o.get("id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 254)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid("user must name a user by email or id")),
        _ => Err(ApiError::invalid("user must name a user by email or id")),
    }
}

fn permissions_field(body: &Value) -> ApiResult<Option<Permissions>> {
    match body.get("permissions") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let mut names = Vec::new();
            for i in items {
                match i {
                    Value::String(s) => names.push(s.as_str()),
                    Value::Object(o) => names.push(
                        o.get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| ApiError::invalid("permissions must be names"))?,
                    ),
                    _ => return Err(ApiError::invalid("permissions must be names")),
                }
            }
            Ok(Some(
                Permissions::parse(names).map_err(|e| ApiError::invalid(e.message))?,
            ))
        }
        Some(_) => Err(ApiError::invalid("permissions must be a list of names")),
    }
}

async fn list_collaborators(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = st.platform.app_for(&user, &app, Need::View)?;
    let list = st.platform.access_list(&user, &a.id)?;
    Ok(Json(
        list.iter()
            .map(|e| collaborator_json(e, a.team.is_some()))
            .collect(),
    ))
}

async fn collaborator_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, who)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let a = st.platform.app_for(&user, &app, Need::View)?;
    st.platform
        .access_list(&user, &a.id)?
        .iter()
        .find(|e| e.user_id == who || e.email.eq_ignore_ascii_case(&who))
        .map(|e| Json(collaborator_json(e, a.team.is_some())))
        .ok_or_else(|| ApiError::not_found("collaborator", "Couldn't find that collaborator."))
}

async fn add_collaborator(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let a = st.platform.app_for(&user, &app, Need::Manage)?;
    let who = user_field(&body)?;
    let perms = permissions_field(&body)?;
    match body.get("silent") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(_) => return Err(ApiError::invalid("silent must be true or false")),
    }
    let e = st.platform.add_collaborator(&user, &a.id, &who, perms)?;
    Ok((
        StatusCode::CREATED,
        Json(collaborator_json(&e, a.team.is_some())),
    )
        .into_response())
}

async fn update_collaborator(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, who)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let a = st.platform.app_for(&user, &app, Need::Manage)?;
    let perms =
        permissions_field(&body)?.ok_or_else(|| ApiError::invalid("permissions are required"))?;
    let e = st.platform.update_collaborator(&user, &a.id, &who, perms)?;
    Ok(Json(collaborator_json(&e, a.team.is_some())))
}

async fn remove_collaborator(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, who)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let a = st.platform.app_for(&user, &app, Need::View)?;
    let e = st.platform.remove_collaborator(&user, &a.id, &who)?;
    Ok(Json(collaborator_json(&e, a.team.is_some())))
}

async fn permissions(User(_): User) -> Json<Value> {
    Json(Permission::ALL.into_iter().map(permission_json).collect())
}

// ---- teams ----

fn team_json(t: &Team, role: TeamRole) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "role": role.name(),
        "type": "team",
        "default": false,
        "membership_limit": null,
        "provisioned_licenses": false,
        "credit_card_collections": false,
        "enterprise_account": null,
        "identity_provider": null,
        "created_at": t.created_at.rfc3339(),
        "updated_at": t.updated_at.rfc3339(),
    })
}

fn member_json(m: &TeamMember) -> Value {
    json!({
        "id": m.account_id,
        "email": m.email,
        "role": m.role.name(),
        "federated": false,
        "two_factor_authentication": false,
        "user": { "id": m.account_id, "email": m.email, "name": null },
        "created_at": m.created_at.rfc3339(),
        "updated_at": m.updated_at.rfc3339(),
    })
}

async fn list_teams(State(st): State<ApiState>, User(user): User) -> ApiResult<Json<Value>> {
    Ok(Json(
        st.platform
            .teams(&user)?
            .iter()
            .map(|(t, r)| team_json(t, *r))
            .collect(),
    ))
}

async fn create_team(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Response> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("name is required"))?;
    let (t, role) = st.platform.create_team(&user, name)?;
    Ok((StatusCode::CREATED, Json(team_json(&t, role))).into_response())
}

async fn team_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    let (t, role) = st.platform.team_for(&user, &team, false)?;
    Ok(Json(team_json(&t, role)))
}

/// Team features the CLI asks about. `org-access-controls` makes `access:add` send
/// permissions (Kiln has per-app permissions); there is no invitation flow for members
/// (`team-invite-acceptance` is off), so `members:add` adds existing users at once. Never
/// a 404: the CLI fails on one.
async fn team_features(
    State(st): State<ApiState>,
    User(user): User,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    st.platform.team_for(&user, &team, false)?;
    Ok(Json(json!([{
        "id": "7e3b2a1c-0000-4000-8000-000000000201",
        "name": "org-access-controls",
        "display_name": "Access controls",
        "description": "Per-app permissions for team members: view, deploy, operate, manage.",
        "doc_url": "https://devcenter.heroku.com/articles/app-permissions",
        "enabled": true,
        "state": "general",
    }])))
}

async fn no_invitations(
    State(st): State<ApiState>,
    User(user): User,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    st.platform.team_for(&user, &team, false)?;
    Ok(Json(json!([])))
}

async fn team_apps(
    State(st): State<ApiState>,
    User(user): User,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    let apps = st.platform.team_apps(&user, &team)?;
    Ok(Json(
        apps.into_iter()
            .map(|(app, slug)| app_json(&st, &kiln_platform::AppView { app, slug }))
            .collect(),
    ))
}

async fn list_members(
    State(st): State<ApiState>,
    User(user): User,
    Path(team): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        st.platform
            .team_members(&user, &team)?
            .iter()
            .map(member_json)
            .collect(),
    ))
}

/// `members:add` (PUT), `members:set` (PATCH): `{email, role}`. The CLI's `collaborator`
/// and `owner` roles have no Kiln meaning and are refused.
async fn set_member(
    State(st): State<ApiState>,
    User(user): User,
    Path(team): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    st.platform.team_for(&user, &team, true)?;
    let email = body
        .get("email")
        .or_else(|| body.get("user"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 254)
        .ok_or_else(|| ApiError::invalid("email is required"))?;
    let role = body
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("role is required"))?;
    let role = TeamRole::parse(role).map_err(|e| ApiError::invalid(e.message))?;
    let m = st.platform.set_team_member(&user, &team, email, role)?;
    Ok(Json(member_json(&m)))
}

async fn remove_member(
    State(st): State<ApiState>,
    User(user): User,
    Path((team, who)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let m = st.platform.remove_team_member(&user, &team, &who)?;
    Ok(Json(member_json(&m)))
}

async fn team_app(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = st.platform.app_for(&user, &app, Need::View)?;
    Ok(Json(app_json(&st, &st.platform.app_view(&user, &a)?)))
}

/// `PATCH /teams/apps/{app}`: `{owner}` transfers (into a team, or to a user, who must
/// accept), `{locked}` is refused (Kiln has no locking yet).
async fn update_team_app(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    st.platform.app_for(&user, &app, Need::Owner)?;
    if body.get("locked").is_some() {
        return Err(ApiError::invalid(
            "Kiln does not lock apps: control who may join a team app with permissions.",
        ));
    }
    let owner = body
        .get("owner")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 254)
        .ok_or_else(|| ApiError::invalid("owner must name a team or a user"))?;
    transfer_response(&st, &user, st.platform.transfer_app(&user, &app, owner)?)
}

fn transfer_response(
    st: &ApiState,
    user: &kiln_model::records::Account,
    outcome: TransferOutcome,
) -> ApiResult<Response> {
    Ok(match outcome {
        TransferOutcome::Moved(app) => {
            Json(app_json(st, &st.platform.app_view(user, &app)?)).into_response()
        }
        TransferOutcome::Pending(t) => {
            (StatusCode::CREATED, Json(transfer_json(&t))).into_response()
        }
    })
}

// ---- transfers ----

fn transfer_json(t: &AppTransfer) -> Value {
    json!({
        "id": t.id,
        "app": { "id": t.app_id, "name": t.app_name },
        "owner": { "id": t.owner_id, "email": t.owner_email },
        "recipient": { "id": t.recipient_id, "email": t.recipient_email },
        "state": t.state.as_str(),
        "created_at": t.created_at.rfc3339(),
        "updated_at": t.updated_at.rfc3339(),
    })
}

async fn list_transfers(State(st): State<ApiState>, User(user): User) -> ApiResult<Json<Value>> {
    Ok(Json(
        st.platform
            .transfers(&user)?
            .iter()
            .map(transfer_json)
            .collect(),
    ))
}

async fn create_transfer(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Response> {
    let name = |k: &str| {
        match body.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o
                .get("name")
                .or_else(|| o.get("email"))
                .or_else(|| o.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        }
        .filter(|s| !s.is_empty() && s.len() <= 254)
    };
    let app = name("app").ok_or_else(|| ApiError::invalid("app is required"))?;
    let recipient = name("recipient").ok_or_else(|| ApiError::invalid("recipient is required"))?;
    if !recipient.contains('@') && uuid::Uuid::parse_str(&recipient).is_err() {
        return Err(ApiError::invalid("recipient must be a user's email or id"));
    }
    transfer_response(
        &st,
        &user,
        st.platform.transfer_app(&user, &app, &recipient)?,
    )
}

async fn transfer_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(transfer_json(&st.platform.transfer(&user, &id)?)))
}

async fn settle_transfer(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let state = match body.get("state").and_then(Value::as_str) {
        Some("accepted") => TransferState::Accepted,
        Some("declined") => TransferState::Declined,
        _ => return Err(ApiError::invalid("state must be accepted or declined")),
    };
    Ok(Json(transfer_json(
        &st.platform.settle_transfer(&user, &id, state)?,
    )))
}

async fn withdraw_transfer(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(transfer_json(&st.platform.settle_transfer(
        &user,
        &id,
        TransferState::Declined,
    )?)))
}

// ---- audit ----

/// `GET /apps/{app}/audit?limit=N` (Kiln's own): who did what, oldest first.
async fn audit_log(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| ApiError::invalid("limit must be a number"))?,
    };
    let entries = st.platform.audit_log(&user, &app, limit)?;
    Ok(Json(
        entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq,
                    "user": { "email": e.email },
                    "action": e.action,
                    "created_at": e.created_at.rfc3339(),
                })
            })
            .collect(),
    ))
}
