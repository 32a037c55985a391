//! Who is calling: `Authorization: Bearer <key>`, or Basic with the key as the password (as
//! git and `.netrc` users send it).
//!
//! [`authenticate`] runs once per request, before any handler: it looks the key up, charges
//! the request to the user's hourly budget (Heroku's 4,500, `RateLimit-Remaining` on every
//! answer, 429 when spent) and leaves the caller in the request's extensions, where the
//! [`User`] and [`Authenticated`] extractors find it. A request without a valid key goes on
//! unauthenticated: public endpoints (capability URLs, sign-up, login) serve it, every
//! other one answers 401.

use crate::ApiState;
use crate::error::ApiError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kiln_model::records::Account;
use kiln_platform::Caller;

/// The calling user (most handlers need only this).
pub struct User(pub Account);

/// The calling user with the key they used (for sessions that must end with the key).
pub struct Authenticated(pub Caller);

/// The longest credential looked at; a longer one is refused unread.
const MAX_KEY: usize = 512;

/// `Authorization: Basic base64(user:password)`, decoded.
pub fn basic_credentials(parts: &axum::http::HeaderMap) -> Option<(String, String)> {
    let v = parts
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let b = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    if b.len() > 4 * MAX_KEY {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let s = String::from_utf8(decoded).ok()?;
    let (user, password) = s.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

pub fn api_key(headers: &axum::http::HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    if let Some(t) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    {
        return Some(t.trim().to_string());
    }
    basic_credentials(headers).map(|(_, password)| password)
}

/// The middleware: see the module doc.
pub async fn authenticate(State(st): State<ApiState>, mut req: Request, next: Next) -> Response {
    let key = api_key(req.headers()).filter(|k| !k.is_empty() && k.len() <= MAX_KEY);
    let caller = match key {
        None => None,
        Some(k) => match st.platform.authenticate(&k) {
            Ok(c) => c,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let Some(caller) = caller else {
        return next.run(req).await;
    };
    let budget = st.platform.charge_request(&caller.account);
    let remaining = HeaderValue::from(budget.remaining);
    if !budget.allowed {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            "Your account reached the API rate limit\nPlease wait a few minutes before making new requests",
        )
        .into_response();
        r.headers_mut().insert("ratelimit-remaining", remaining);
        return r;
    }
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("ratelimit-remaining", remaining);
    resp
}

impl FromRequestParts<ApiState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Authenticated)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl axum::extract::OptionalFromRequestParts<ApiState> for Authenticated {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &ApiState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().map(Authenticated))
    }
}

impl FromRequestParts<ApiState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .map(|c| User(c.account.clone()))
            .ok_or_else(ApiError::unauthorized)
    }
}
