//! Accounts and API keys: Heroku's OAuth authorizations (`/oauth/authorizations…`, what
//! `heroku login -i`, `authorizations*`, `auth:token` and `logout` send), the account's
//! password, and Kiln's own user administration (`/kiln/users`, `/kiln/invitations`,
//! `/kiln/signup`).
//!
//! Tokens are shown once: in the answer that makes (or regenerates) them. A listing shows
//! each as `KILN-**********` and its last six characters, the redacted form `heroku logout`
//! matches its own token against.

use crate::ApiState;
use crate::auth::{Authenticated, User, basic_credentials};
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::serve::ClientAddr;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_model::Timestamp;
use kiln_model::records::{Account, Authorization};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/oauth/authorizations",
            get(list_authorizations).post(create_authorization),
        )
        .route(
            "/oauth/authorizations/{id}",
            get(authorization_info)
                .patch(update_authorization)
                .delete(revoke_authorization),
        )
        .route(
            "/oauth/authorizations/{id}/actions/regenerate-tokens",
            post(regenerate_authorization),
        )
        .route(
            "/oauth/sessions/{id}",
            axum::routing::delete(delete_session),
        )
        .route("/account/password", axum::routing::put(change_password))
        .route("/kiln/users", get(list_users).post(create_user))
        .route("/kiln/invitations", post(invite_user))
        .route("/kiln/signup", post(signup))
}

/// The client's address, for throttling (unspecified when the request did not come through
/// a listener, as in unit tests).
pub(crate) struct Peer(pub IpAddr);

impl FromRequestParts<ApiState> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ClientAddr>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip()),
        ))
    }
}

/// An authorization as Heroku's schema shapes it. `token` is the whole token when the
/// caller may see it (just made, regenerated, or the one they are using); otherwise the
/// redacted form.
fn authorization_json(a: &Authorization, user: &Account, token: Option<&str>) -> Value {
    let now = Timestamp::now().0;
    // Timestamps count microseconds; `expires_in` is in seconds.
    let expires_in = a.expires_at.map(|t| (t.0 - now).max(0) / 1_000_000);
    let shown = match token {
        Some(t) => Some(t.to_string()),
        None if a.token_hint.is_empty() => None,
        None => Some(format!("KILN-**********{}", a.token_hint)),
    };
    json!({
        "id": a.id,
        "description": a.description,
        "scope": a.scope,
        "access_token": shown.map(|t| json!({ "id": a.id, "token": t, "expires_in": expires_in })),
        "client": null,
        "grant": null,
        "refresh_token": null,
        "session": null,
        "user": { "id": user.id, "email": user.email, "full_name": user.name },
        "created_at": a.created_at.rfc3339(),
        "updated_at": a.updated_at.rfc3339(),
    })
}

fn description_field(body: &Value, default: &str) -> ApiResult<String> {
    match body.get("description") {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) if s.len() <= 1024 && !s.chars().any(char::is_control) => {
            Ok(s.clone())
        }
        Some(_) => Err(ApiError::invalid(
            "description must be a line of text of at most 1024 bytes",
        )),
    }
}

/// `heroku login -i`: Basic `email:password`, or an authenticated caller making a key.
async fn create_authorization(
    State(st): State<ApiState>,
    caller: Option<Authenticated>,
    Peer(peer): Peer,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let user = match caller {
        Some(Authenticated(c)) => c.account,
        None => {
            let (email, password) =
                basic_credentials(&headers).ok_or_else(ApiError::unauthorized)?;
            st.platform.login(&email, &password, peer).await?
        }
    };
    let description = description_field(&body, "Kiln API key")?;
    let scope = match body.get("scope") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid("scope must be a list of names"))
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(ApiError::invalid("scope must be a list of names")),
    };
    // The CLI sends `expires_in` as a number (`login`) or a string (`authorizations:create -e`).
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| ApiError::invalid("expires_in must be a number of seconds"))?,
        ),
    };
    let (a, token) = st
        .platform
        .create_authorization(&user, &description, scope, expires_in)?;
    Ok((
        StatusCode::CREATED,
        Json(authorization_json(&a, &user, Some(&token))),
    )
        .into_response())
}

async fn list_authorizations(
    State(st): State<ApiState>,
    User(user): User,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        st.platform
            .authorizations(&user)?
            .iter()
            .map(|a| authorization_json(a, &user, None))
            .collect(),
    ))
}

fn no_such_authorization() -> ApiError {
    ApiError::not_found("authorization", "Couldn't find that authorization.")
}

/// `GET /oauth/authorizations/{id}`; `~` is the account's long-lived API key when the caller
/// is using one (then `heroku logout` leaves it alone, as it leaves Heroku's API key), and
/// not found when the caller uses an expiring login token (which `logout` then revokes).
async fn authorization_info(
    State(st): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if id == "~" {
        if caller.authorization.expires_at.is_some() {
            return Err(no_such_authorization());
        }
        let key = caller.key_shown_to_its_holder();
        return Ok(Json(authorization_json(
            &caller.authorization,
            &caller.account,
            Some(&key),
        )));
    }
    let a = st.platform.authorization(&caller.account, &id)?;
    Ok(Json(authorization_json(&a, &caller.account, None)))
}

async fn update_authorization(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let current = st.platform.authorization(&user, &id)?;
    let description = description_field(&body, &current.description)?;
    match body.get("client") {
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "Kiln has no OAuth clients: only description can change",
            ));
        }
    }
    let a = st.platform.update_authorization(&user, &id, &description)?;
    Ok(Json(authorization_json(&a, &user, None)))
}

async fn revoke_authorization(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = st.platform.revoke_authorization(&user, &id)?;
    Ok(Json(authorization_json(&a, &user, None)))
}

async fn regenerate_authorization(
    State(st): State<ApiState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (a, token) = st.platform.regenerate_authorization(&user, &id)?;
    Ok(Json(authorization_json(&a, &user, Some(&token))))
}

/// Kiln has no browser sessions on the API; `heroku logout` asks to end one and is told
/// there is none, which it expects.
async fn delete_session(User(_): User, Path(_): Path<String>) -> ApiError {
    ApiError::not_found("session", "Couldn't find that session.")
}

/// `PUT /account/password` `{current_password, password}`: every key of the account ends,
/// and a new one is returned so the caller stays logged in.
async fn change_password(
    State(st): State<ApiState>,
    User(user): User,
    Peer(peer): Peer,
    Body(body): Body,
) -> ApiResult<Response> {
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(format!("{k} is required")))
    };
    let current = body
        .get("current_password")
        .and_then(Value::as_str)
        .unwrap_or("");
    let new = field("password")?;
    st.platform
        .change_password(&user, current, new, peer)
        .await?;
    let (a, token) = st.platform.create_authorization(
        &user,
        "Kiln login (after a password change)",
        Vec::new(),
        Some(30 * 24 * 3600),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(authorization_json(&a, &user, Some(&token))),
    )
        .into_response())
}

fn user_json(a: &Account) -> Value {
    let mut v = crate::json::account(a);
    v["admin"] = json!(a.admin);
    v
}

async fn list_users(State(st): State<ApiState>, User(user): User) -> ApiResult<Json<Value>> {
    Ok(Json(
        st.platform.users(&user)?.iter().map(user_json).collect(),
    ))
}

fn text<'a>(body: &'a Value, k: &str) -> ApiResult<&'a str> {
    body.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("{k} is required")))
}

/// `kiln users:create`: an administrator makes an account with a password.
async fn create_user(
    State(st): State<ApiState>,
    User(user): User,
    Body(body): Body,
) -> ApiResult<Response> {
    st.platform.require_admin(&user)?;
    let email = text(&body, "email")?;
    let password = text(&body, "password")?;
    let name = body.get("name").and_then(Value::as_str).unwrap_or("");
    let admin = match body.get("admin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("admin must be true or false")),
    };
    let a = st
        .platform
        .create_user(&user, email, name, password, admin)
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&a))).into_response())
}

/// `kiln users:invite`: an administrator invites an address; the answer carries the token
/// (once) and the command that uses it.
async fn invite_user(
    State(st): State<ApiState>,
    User(user): User,
    origin: crate::Origin,
    Body(body): Body,
) -> ApiResult<Response> {
    st.platform.require_admin(&user)?;
    let email = text(&body, "email")?;
    let (inv, token) = st.platform.invite_user(&user, email)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": inv.id,
            "email": inv.email,
            "token": token,
            "command": format!("kiln signup --api {} --email {} --invitation {token}", origin.base, inv.email),
            "expires_at": inv.expires_at.rfc3339(),
            "created_at": inv.created_at.rfc3339(),
        })),
    )
        .into_response())
}

/// `kiln signup`: with an invitation (for its own address), or freely when the server
/// allows it (`--signup open`).
async fn signup(State(st): State<ApiState>, Body(body): Body) -> ApiResult<Response> {
    let email = text(&body, "email")?;
    let password = text(&body, "password")?;
    let name = body.get("name").and_then(Value::as_str).unwrap_or("");
    let invitation = match body.get("invitation") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 512 => Some(s.as_str()),
        Some(_) => return Err(ApiError::invalid("invitation must be a token")),
    };
    let a = st
        .platform
        .signup(invitation, email, name, password)
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&a))).into_response())
}
