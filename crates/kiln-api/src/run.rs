//! One-off dynos: `POST /apps/{app}/dynos` starts `run.N`. A detached one logs its output; an
//! attached one waits (up to a minute) for its client to connect to `attach_url`, an HTTP
//! upgrade (`Upgrade: kiln-attach`) on this API, after which the connection carries the frames
//! of [`kiln_model::attach`], the one codec this end and the CLI share.
//!
//! When the client goes away before the command ends, the dyno gets SIGHUP, and SIGKILL ten
//! seconds later if it ignores it (Heroku's R16).

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::{ApiState, json};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kiln_model::LogLine;
use kiln_model::attach::{self, ToClient, ToDyno};
use kiln_platform::OneOff;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Attached one-offs waiting for their client, by secret.
#[derive(Default)]
pub struct PendingAttaches(Mutex<HashMap<String, (String, OneOff)>>);

const ATTACH_WAIT: Duration = Duration::from_secs(60);

pub fn routes() -> Router<ApiState> {
    Router::new().route("/attach/{secret}", get(attach))
}

pub(crate) async fn create_dyno(
    State(st): State<ApiState>,
    User(user): User,
    Path(app): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let app = st.platform.app_for(&user, &app)?;
    let command = body
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("command is required"))?
        .to_string();
    let attach = match body.get("attach") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("attach must be true or false")),
    };
    let force_no_tty = body
        .get("force_no_tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut env = Vec::new();
    match body.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if m.len() > 100 {
                return Err(ApiError::invalid("too many env entries"));
            }
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(ApiError::invalid(format!("env {k} must be a string"))),
                };
                env.push((k.clone(), v));
            }
        }
        Some(_) => return Err(ApiError::invalid("env must be an object")),
    }
    let size = body.get("size").and_then(Value::as_str).map(str::to_string);
    // Made before the dyno starts, so a failure leaves nothing running.
    let secret = if attach {
        Some(kiln_model::secret::new_secret()?)
    } else {
        None
    };
    let handle = st
        .platform
        .run_one_off(
            &app,
            &user,
            &command,
            env,
            size.as_deref(),
            attach,
            attach && !force_no_tty,
        )
        .await?;
    let info = kiln_model::dyno::DynoInfo {
        id: handle.id.clone(),
        name: handle.name.clone(),
        process_type: "run".into(),
        state: kiln_model::DynoState::Starting,
        command: command.clone(),
        size: size
            .as_deref()
            .and_then(|s| kiln_model::DynoSize::parse(s).ok())
            .unwrap_or_default(),
        release_id: handle.release_id.clone(),
        release_version: handle.release_version,
        created_at: handle.created_at,
        updated_at: handle.created_at,
        detail: None,
    };
    let mut obj = json::dyno(&app, &info);
    if let Some(secret) = secret {
        let base = st.base_url(&headers);
        obj["attach_url"] = Value::String(format!("{base}/attach/{secret}"));
        let signaller = handle.signaller.clone();
        st.attaches
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(secret.clone(), (app.id.clone(), handle));
        // Nobody came: the dyno is not left running.
        let attaches = st.attaches.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ATTACH_WAIT).await;
            if attaches
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&secret)
                .is_some()
            {
                signaller.kill();
            }
        });
    } else {
        drop(handle);
    }
    Ok((StatusCode::CREATED, axum::Json(obj)).into_response())
}

async fn attach(
    State(st): State<ApiState>,
    Path(secret): Path<String>,
    mut req: Request,
) -> Response {
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("kiln-attach"));
    if !wants {
        return ApiError::bad_request(
            "Attach with `Connection: Upgrade` and `Upgrade: kiln-attach`",
        )
        .into_response();
    }
    let Some((app_id, handle)) = st
        .attaches
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&secret)
    else {
        return ApiError::not_found(
            "dyno",
            "No one-off dyno is waiting for this attach URL (it expires after a minute).",
        )
        .into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let platform = st.platform.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                bridge(
                    hyper_util::rt::TokioIo::new(upgraded),
                    handle,
                    platform,
                    app_id,
                )
                .await
            }
            Err(_) => handle.signaller.kill(),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("kiln-attach"));
    resp
}

async fn bridge<IO>(
    io: IO,
    mut handle: OneOff,
    platform: Arc<kiln_platform::Platform>,
    app_id: String,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let mut pumps = Vec::new();
    let stdout: fn(Vec<u8>) -> ToClient = ToClient::Stdout;
    let stderr: fn(Vec<u8>) -> ToClient = ToClient::Stderr;
    for (kind, out) in [
        (stdout, handle.stdout.take()),
        (stderr, handle.stderr.take()),
    ] {
        let Some(mut out) = out else { continue };
        let tx = tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(kind(buf[..n].to_vec()).encode()).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut stdin = handle.stdin.take();
    let signaller = handle.signaller;
    let name = handle.name.clone();
    // Client → dyno.
    let reader = tokio::spawn(async move {
        loop {
            let mut head = [0u8; attach::HEADER_LEN];
            if rd.read_exact(&mut head).await.is_err() {
                return false;
            }
            // A hostile length or kind ends the session like a closed connection.
            let Ok((kind, len)) = attach::parse_header(head) else {
                return false;
            };
            let mut data = vec![0u8; len];
            if rd.read_exact(&mut data).await.is_err() {
                return false;
            }
            match ToDyno::decode(kind, data) {
                Ok(ToDyno::Stdin(data)) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Ok(ToDyno::StdinClosed) => stdin = None,
                Err(_) => return false,
            }
        }
    });
    // Dyno → client, then the exit status.
    let writer = async {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                return false;
            }
        }
        true
    };
    let mut reader = reader;
    tokio::select! {
        ok = writer => {
            for p in pumps {
                let _ = p.await;
            }
            let code = (&mut handle.exit).await.unwrap_or(255);
            if ok {
                let _ = wr.write_all(&ToClient::Exit(code).encode()).await;
                let _ = wr.shutdown().await;
            }
            reader.abort();
        }
        _ = &mut reader => {
            // The client went away first.
            platform.log(&app_id, LogLine::heroku(&name, "Client connection closed. Sending SIGHUP to all processes"));
            signaller.signal(SIGHUP);
            if tokio::time::timeout(Duration::from_secs(10), &mut handle.exit).await.is_err() {
                platform.log(&app_id, LogLine::heroku(&name, "Error R16 (Detached) -> An attached process is not responding to SIGHUP after its external connection was closed."));
                signaller.kill();
            }
        }
    }
}

/// SIGHUP on Linux (the API crate does not link libc for one constant).
const SIGHUP: i32 = 1;
