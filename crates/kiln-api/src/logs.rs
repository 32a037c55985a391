//! Log sessions: `POST /apps/{app}/log-sessions` returns a `logplex_url` carrying a secret;
//! `GET` on it streams server-sent events, one event per log line (history first, then, when
//! tailing, new lines as they happen). The Heroku CLI reads exactly this.

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_model::log::LogFilter;
use kiln_platform::TailEvent;
use serde_json::{Value, json as j};
use std::time::Duration;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app}/log-sessions", post(create_session))
        .route("/log-sessions/{id}", get(stream_session))
}

async fn create_session(
    State(st): State<ApiState>,
    crate::auth::Authenticated(caller): crate::auth::Authenticated,
    Path(app): Path<String>,
    origin: crate::Origin,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&caller.account, &app, kiln_platform::Need::View)?;
    let text = |k: &str| -> ApiResult<Option<String>> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= 100 => {
                Ok(Some(s.clone()).filter(|s| !s.is_empty()))
            }
            Some(_) => Err(ApiError::invalid(format!("{k} must be a short string"))),
        }
    };
    // The CLI sends `dyno`; the schema says `dyno_name`.
    let dyno = text("dyno")?.or(text("dyno_name")?);
    let source = text("source")?;
    let lines = match body.get("lines") {
        None | Some(Value::Null) => 100,
        Some(v) => {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::invalid("lines must be a number"))? as usize
        }
    };
    let tail = match body.get("tail") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("tail must be true or false")),
    };
    // Kiln's own: a search over the retained history.
    let long_text = |k: &str| -> ApiResult<Option<String>> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= 1000 => {
                Ok(Some(s.clone()).filter(|s| !s.is_empty()))
            }
            Some(_) => Err(ApiError::invalid(format!(
                "{k} must be a string of at most 1000 bytes"
            ))),
        }
    };
    let search = st.platform.log_search(
        long_text("since")?.as_deref(),
        long_text("until")?.as_deref(),
        long_text("grep")?.as_deref(),
    )?;
    let id = st.platform.create_log_session(
        &caller,
        &app,
        LogFilter { source, dyno },
        lines,
        tail,
        search,
    )?;
    let base = origin.base;
    let now = kiln_model::Timestamp::now().rfc3339();
    Ok((StatusCode::CREATED, axum::Json(j!({ "id": uuid::Uuid::new_v4().to_string(), "logplex_url": format!("{base}/log-sessions/{id}"), "created_at": now, "updated_at": now }))).into_response())
}

fn event(id: i64, line: &str) -> String {
    // A line never contains a newline (logplex splits them), but it may hold a carriage
    // return (progress bars), which ends an event-stream line: each piece goes in a `data:`
    // field of its own, so a client gets the whole message, the pieces joined by newlines,
    // instead of losing what follows the carriage return.
    let mut out = format!("id: {id}\n");
    for piece in line.split('\r') {
        out.push_str("data: ");
        out.push_str(piece);
        out.push('\n');
    }
    out.push('\n');
    out
}

async fn stream_session(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Opening reads the store and, for `--since`, `--until`, `--grep` or more lines than
    // memory holds, the history on disk: off the async workers.
    let platform = st.platform.clone();
    let opened = tokio::task::spawn_blocking(move || platform.open_log_session(&id))
        .await
        .ok()
        .flatten();
    let Some(kiln_platform::LogSessionStream {
        history,
        tail,
        ended,
    }) = opened
    else {
        return ApiError::not_found(
            "log-session",
            "This log session has expired or does not exist.",
        )
        .into_response();
    };
    // A reconnecting EventSource says what it saw last; do not repeat it.
    let last_seen: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut initial = String::new();
    let mut newest = last_seen.unwrap_or(i64::MIN);
    for l in history
        .iter()
        .filter(|l| last_seen.is_none_or(|s| l.time.0 > s))
    {
        initial.push_str(&event(l.time.0, &l.render()));
        newest = newest.max(l.time.0);
    }
    let sse_headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    let Some(tail) = tail else {
        return (sse_headers, initial).into_response();
    };
    let first =
        futures_util::stream::once(
            async move { Ok::<Bytes, std::io::Error>(Bytes::from(initial)) },
        );
    let rest = futures_util::stream::unfold((tail, newest), |(mut tail, newest)| async move {
        // A comment every 25 s keeps proxies and clients from timing the stream out.
        match tokio::time::timeout(Duration::from_secs(25), tail.next()).await {
            Err(_) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (tail, newest))),
            Ok(None) => None,
            Ok(Some(TailEvent::Line(l))) => {
                if l.time.0 <= newest {
                    return Some((Ok(Bytes::new()), (tail, newest)));
                }
                Some((
                    Ok(Bytes::from(event(l.time.0, &l.render()))),
                    (tail, l.time.0),
                ))
            }
            Ok(Some(TailEvent::Dropped(n))) => {
                let line = kiln_model::LogLine::heroku(
                    "logplex",
                    format!(
                        "Error L11 (Tail buffer overflow) -> This tail session dropped {n} messages"
                    ),
                );
                Some((
                    Ok(Bytes::from(event(line.time.0, &line.render()))),
                    (tail, newest),
                ))
            }
        }
    });
    use futures_util::StreamExt;
    // A revoked key (or lost access) ends the tail at once.
    let rest = rest.take_until(ended);
    (
        sse_headers,
        axum::body::Body::from_stream(first.chain(rest)),
    )
        .into_response()
}
