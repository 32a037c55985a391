//! Who is calling: `Authorization: Bearer <key>`, or Basic with the key as the password (as
//! git and `.netrc` users send it).

use crate::ApiState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use kiln_model::records::Account;

pub struct User(pub Account);

pub fn api_key(parts: &Parts) -> Option<String> {
    let v = parts
        .headers
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
    let b = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let s = String::from_utf8(decoded).ok()?;
    let (_, password) = s.split_once(':')?;
    Some(password.to_string())
}

impl FromRequestParts<ApiState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let key = api_key(parts)
            .filter(|k| !k.is_empty() && k.len() <= 512)
            .ok_or_else(ApiError::unauthorized)?;
        match state.platform.authenticate(&key) {
            Ok(Some(a)) => Ok(User(a)),
            Ok(None) => Err(ApiError::unauthorized()),
            Err(e) => Err(e.into()),
        }
    }
}
