//! The data API behind Heroku's `pg:*` and `redis:*` commands (`/client/v11`, `/postgres/v0`,
//! `/redis/v0`, which the CLI sends to `HEROKU_DATA_HOST`; Kiln serves them on the API's own
//! address): database info, backups and restores (Heroku's "transfers"), backup schedules,
//! reset, and credential rotation. Every route goes through the platform's access checks.

use crate::ApiState;
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use kiln_model::records::{Account, Addon, Transfer, TransferKind, TransferStatus};
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/client/v11/apps/{app}/transfers", get(list_transfers))
        .route(
            "/client/v11/apps/{app}/transfers/{num}",
            get(transfer_info).delete(delete_transfer),
        )
        .route("/client/v11/apps/{app}/transfers/{num}/dump", get(download))
        .route(
            "/client/v11/apps/{app}/transfers/{num}/actions/public-url",
            post(public_url),
        )
        .route("/client/v11/databases/{addon}", get(database_info))
        .route("/client/v11/databases/{addon}/backups", post(capture))
        .route("/client/v11/databases/{addon}/restores", post(restore))
        .route("/client/v11/databases/{addon}/reset", put(reset))
        .route("/client/v11/databases/{addon}/activity", get(activity))
        .route(
            "/client/v11/databases/{addon}/activity/{pid}/actions/kill",
            post(kill),
        )
        .route("/redis/v0/databases/{addon}", get(redis_info))
        .route(
            "/redis/v0/databases/{addon}/config",
            axum::routing::patch(redis_config),
        )
        .route(
            "/client/v11/databases/{addon}/transfer-schedules",
            get(list_schedules).post(schedule),
        )
        .route(
            "/client/v11/databases/{addon}/transfer-schedules/{id}",
            delete(unschedule),
        )
        .route(
            "/postgres/v0/databases/{addon}/credentials_rotation",
            post(rotate),
        )
        .route(
            "/redis/v0/databases/{addon}/credentials_rotation",
            post(rotate),
        )
}

fn transfer_json(t: &Transfer) -> Value {
    let backup = t.kind != TransferKind::Restore;
    let done = matches!(t.status, TransferStatus::Succeeded | TransferStatus::Failed);
    json!({
        "uuid": t.id,
        "num": t.num,
        "name": t.display_name(),
        "status": t.status.as_str(),
        "error": t.error,
        "from_name": if backup { "DATABASE" } else { "BACKUP" },
        "from_type": if backup { "pg_dump" } else { "gof3r" },
        "to_name": if backup { "BACKUP" } else { "DATABASE" },
        "to_type": if backup { "gof3r" } else { "pg_restore" },
        "addon": { "id": t.addon_id, "name": t.addon_name },
        "app": { "id": t.app_id, "name": t.app_name },
        "created_at": t.created_at.rfc3339(),
        "updated_at": t.finished_at.or(t.started_at).unwrap_or(t.created_at).rfc3339(),
        "started_at": t.started_at.map(|s| s.rfc3339()),
        "finished_at": t.finished_at.map(|s| s.rfc3339()),
        "expires_at": t.expires_at.map(|s| s.rfc3339()),
        "succeeded": if done { json!(t.status == TransferStatus::Succeeded) } else { Value::Null },
        "processed_bytes": t.bytes,
        "source_bytes": t.bytes,
        "warnings": 0,
        "schedule": if t.kind == TransferKind::Scheduled { json!({}) } else { Value::Null },
        "logs": [],
        "options": {},
    })
}

/// An add-on the user can see, once they are known to hold `need` on the app that owns it.
fn addon(
    st: &ApiState,
    user: &Account,
    addon: &str,
    need: kiln_platform::Need,
) -> ApiResult<Addon> {
    let a = st.platform.addon_for(user, addon)?;
    st.platform.app_for(user, &a.app_id, need)?;
    Ok(a)
}

async fn list_transfers(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::View)?;
    let list = st.platform.backups(&user, &app)?;
    Ok(Json(Value::Array(list.iter().map(transfer_json).collect())))
}

async fn transfer_info(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, num)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    Ok(Json(transfer_json(&st.platform.backup(
        &user,
        &app,
        Some(&num),
    )?)))
}

async fn delete_transfer(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, num)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    Ok(Json(transfer_json(
        &st.platform.delete_backup(&user, &app, &num)?,
    )))
}

/// The dump itself, streamed from disk.
async fn download(
    State(st): State<ApiState>,
    User(user): User,
    Path((app, num)): Path<(String, String)>,
) -> ApiResult<Response> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let t = st.platform.backup(&user, &app, Some(&num))?;
    if t.kind == TransferKind::Restore || t.status != TransferStatus::Succeeded {
        return Err(ApiError::invalid(format!(
            "{} has no dump to download",
            t.display_name()
        )));
    }
    let file = tokio::fs::File::open(&t.path).await.map_err(|e| {
        ApiError::not_found(
            "backup",
            format!("The dump of {} is gone: {e}", t.display_name()),
        )
    })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("a valid header"),
    );
    headers.insert(header::CONTENT_LENGTH, len.into());
    if let Ok(v) = format!("attachment; filename=\"{}.dump\"", t.display_name()).parse() {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, axum::body::Body::from_stream(stream)).into_response())
}

async fn public_url(
    State(st): State<ApiState>,
    User(user): User,
    origin: crate::Origin,
    Path((app, num)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
    let t = st.platform.backup(&user, &app, Some(&num))?;
    Ok(Json(json!({
        "url": format!("{}/client/v11/apps/{}/transfers/{}/dump", origin.base, app.name, t.num),
    })))
}

async fn capture(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Response> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    st.platform
        .app_for(&user, &a.app_id, kiln_platform::Need::Deploy)?;
    let t = st.platform.capture_backup(&a, TransferKind::Manual)?;
    Ok((StatusCode::CREATED, Json(transfer_json(&t))).into_response())
}

/// `{"backup": "b001"}` or Heroku's `{"backup_url": …}` naming one of the app's backups
/// (`b001`, `app::b001`, or the dump URL Kiln gave).
async fn restore(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let target = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    let spec = body
        .get("backup")
        .or_else(|| body.get("backup_url"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("Name the backup to restore: {\"backup\": \"b001\"}"))?;
    // `app::b001` reads another app's backup; a URL ends in the backup's number.
    let (app_name, name) = match spec.split_once("::") {
        Some((app, name)) => (app.to_string(), name.to_string()),
        None => (
            target.app_name.clone(),
            spec.trim_end_matches("/dump")
                .rsplit('/')
                .next()
                .unwrap_or(spec)
                .to_string(),
        ),
    };
    let source_app = st
        .platform
        .app_for(&user, &app_name, kiln_platform::Need::Deploy)?;
    let backup = st.platform.backup(&user, &source_app, Some(&name))?;
    let app = st
        .platform
        .app_for(&user, &target.app_id, kiln_platform::Need::Deploy)?;
    let t = st.platform.restore_backup(&user, &app, &backup, &target)?;
    Ok((StatusCode::CREATED, Json(transfer_json(&t))).into_response())
}

async fn reset(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    st.platform.reset_database(&user, &a).await?;
    Ok(Json(json!({ "message": format!("{} reset", a.name) })))
}

fn human(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} kB", b as f64 / 1024.0)
    }
}

/// `pg:info`'s rows, in Heroku's shape (`info: [{name, values}]`).
async fn database_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::View)?;
    let i = st.platform.database_info(&user, &a).await?;
    let status = if i.restricted {
        "Writes refused: over the plan's storage limit"
    } else {
        "Available"
    };
    Ok(Json(json!({
        "plan": i.plan,
        "num_bytes": i.bytes,
        "num_tables": i.tables,
        "waiting?": false,
        "resource_url": a.name,
        "info": [
            { "name": "Plan", "values": [format!("{}", i.plan)] },
            { "name": "Status", "values": [status] },
            { "name": "Connections", "values": [format!("{}/{}", i.connections, i.connections_limit)] },
            { "name": "PG Version", "values": [i.version] },
            { "name": "Created", "values": [a.created_at.rfc3339()] },
            { "name": "Data Size", "values": [format!("{} / {}", human(i.bytes), human(i.bytes_limit))] },
            { "name": "Tables", "values": [i.tables.to_string()] },
            { "name": "Fork/Follow", "values": ["Unsupported"] },
            { "name": "Rollback", "values": ["Unsupported"] },
        ],
    })))
}

fn schedule_json(s: &kiln_model::records::BackupSchedule) -> Value {
    json!({ "uuid": s.id, "name": s.name, "hour": s.hour, "timezone": "UTC", "days": [], "retain_weeks": null, "retain_months": null })
}

async fn list_schedules(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::View)?;
    let app = st
        .platform
        .app_for(&user, &a.app_id, kiln_platform::Need::View)?;
    let list = st.platform.backup_schedules(&user, &app)?;
    Ok(Json(Value::Array(
        list.iter()
            .filter(|s| s.addon_id == a.id)
            .map(schedule_json)
            .collect(),
    )))
}

/// `{hour, timezone, schedule_name}`: Kiln runs schedules in UTC; another timezone is refused
/// rather than silently shifted.
async fn schedule(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    let hour = match body.get("hour") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|h| *h < 24)
    .ok_or_else(|| ApiError::invalid("hour must be 0 to 23"))? as u8;
    match body.get("timezone").and_then(Value::as_str) {
        None | Some("UTC") | Some("utc") | Some("Etc/UTC") => {}
        Some(tz) => {
            return Err(ApiError::invalid(format!(
                "Kiln schedules backups in UTC; {tz} is not supported"
            )));
        }
    }
    let name = body
        .get("schedule_name")
        .and_then(Value::as_str)
        .unwrap_or("DATABASE_URL");
    let s = st.platform.set_backup_schedule(&user, &a, name, hour)?;
    Ok((StatusCode::CREATED, Json(schedule_json(&s))).into_response())
}

async fn unschedule(
    State(st): State<ApiState>,
    User(user): User,
    Path((a, _id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    st.platform.remove_backup_schedule(&user, &a)?;
    Ok(Json(json!({ "message": "unscheduled" })))
}

async fn rotate(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    let releases = st.platform.rotate_credentials(&user, &a).await?;
    Ok(Json(json!({
        "message": format!("Rotated the credentials of {}", a.name),
        "releases": releases.iter().map(|r| json!({"app": r.app_id, "version": r.version})).collect::<Vec<_>>(),
    })))
}

async fn activity(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    let sessions = st.platform.database_sessions(&user, &a).await?;
    Ok(Json(Value::Array(
        sessions
            .iter()
            .map(|s| {
                json!({
                    "pid": s.pid, "state": s.state, "source": s.source,
                    "running_for": s.running_secs, "waiting": s.waiting, "query": s.query,
                })
            })
            .collect(),
    )))
}

async fn kill(
    State(st): State<ApiState>,
    User(user): User,
    Path((a, pid)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    let pid: u32 = pid
        .parse()
        .map_err(|_| ApiError::invalid("The session is named by its process id, a number"))?;
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    if !st.platform.kill_session(&user, &a, pid, force).await? {
        return Err(ApiError::not_found(
            "session",
            format!("No session {pid} on {}", a.name),
        ));
    }
    Ok(Json(
        json!({ "pid": pid, "terminated": force, "cancelled": !force }),
    ))
}

/// `redis:info`, in Heroku's shape (`info: [{name, values}]`).
async fn redis_info(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::View)?;
    let i = st.platform.redis_info(&user, &a).await?;
    Ok(Json(json!({
        "resource_url": a.name,
        "plan": i.plan,
        "version": i.version,
        "prefer_native_tls": false,
        "info": [
            { "name": "Plan", "values": [i.plan] },
            { "name": "Version", "values": [i.version] },
            { "name": "Memory", "values": [format!("{} / {}", human(i.used_memory), human(i.max_memory))] },
            { "name": "Maxmemory policy", "values": [i.policy] },
            { "name": "Clients", "values": [format!("{}/{}", i.clients, i.max_clients)] },
            { "name": "Keys", "values": [i.keys.to_string()] },
            { "name": "Persistence", "values": [i.persistence] },
            { "name": "Created", "values": [a.created_at.rfc3339()] },
        ],
    })))
}

/// `{"maxmemory_policy": "allkeys-lru"}`, as Heroku's `redis:maxmemory` sends it.
async fn redis_config(
    State(st): State<ApiState>,
    User(user): User,
    Path(a): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let a = addon(&st, &user, &a, kiln_platform::Need::Deploy)?;
    let policy = body
        .get("maxmemory_policy")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("Send {\"maxmemory_policy\": \"allkeys-lru\"}"))?;
    st.platform.set_redis_policy(&user, &a, policy).await?;
    Ok(Json(json!({ "maxmemory_policy": { "value": policy } })))
}
