//! Heroku's error bodies: `{"id": "...", "message": "..."}` with the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_platform::PlatformError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: &'static str,
    pub message: String,
    pub resource: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
            resource: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }
    pub fn not_found(resource: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            resource: Some(resource),
            ..ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
        }
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "id": self.id, "message": self.message });
        if let Some(r) = self.resource {
            body["resource"] = json!(r);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        match e {
            PlatformError::NotFound { resource, message } => ApiError::not_found(resource, message),
            PlatformError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            PlatformError::Invalid(i) => ApiError::invalid(i.message),
            PlatformError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            PlatformError::Unauthorized(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
            }
            PlatformError::TooManyRequests(m) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit", m)
            }
            PlatformError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            PlatformError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    format!("Internal server error: {m}"),
                )
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each dyno manager failure gets the status a client can act on: a stopped manager is
    /// the platform being unavailable (503, retry later), never a missing dyno (404).
    #[test]
    fn dyno_manager_failures_map_to_their_statuses() {
        use kiln_platform::DynoError;
        let status = |e: DynoError| ApiError::from(PlatformError::from(e));
        let stopped = status(DynoError::Stopped);
        assert_eq!(
            (stopped.status, stopped.id),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(stopped.message.contains("try again"), "{}", stopped.message);
        let missing = status(DynoError::NoSuchDyno);
        assert_eq!(
            (missing.status, missing.id, missing.resource),
            (StatusCode::NOT_FOUND, "not_found", Some("dyno"))
        );
        assert_eq!(status(DynoError::NoRelease).status, StatusCode::CONFLICT);
    }
}

impl From<kiln_model::secret::SecretError> for ApiError {
    fn from(e: kiln_model::secret::SecretError) -> Self {
        tracing::error!(error = %e, "no secret could be made");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    }
}
