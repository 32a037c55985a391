//! One-off dynos: `POST /apps/{app}/dynos` starts `run.N`. A detached one logs its output; an
//! attached one waits (up to a minute) for its client, who claims it with the secret at the
//! end of `attach_url` through one of two doors:
//!
//! - **Heroku's rendezvous** (`rendezvous://HOST:PORT/SECRET`, what `heroku run` speaks): a
//!   TLS connection to the API's HTTPS listener whose first line is the secret; Kiln answers
//!   `rendezvous\r\n` in a write of its own (the CLI throws the first chunk away), then the
//!   connection carries the dyno's terminal as raw bytes both ways and closes when the command
//!   ends. Without a terminal, the CLI ends stdin with one `\x04`. The exit status travels as
//!   the CLI arranges it (`--exit-code` appends an `echo` of `$?` to the command).
//! - **Kiln's attach** (`GET /attach/SECRET` with `Upgrade: kiln-attach`, what `kiln run`
//!   speaks, on plain HTTP): frames of [`kiln_model::attach`], which keep stdout and stderr
//!   apart and end with the exit status.
//!
//! `attach_url` is a rendezvous URL when the API has its HTTPS listener, else a Kiln one.
//! When the client goes away before the command ends, the dyno gets SIGHUP, and SIGKILL ten
//! seconds later if it ignores it (Heroku's R16).

use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::{ApiState, Origin, json};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kiln_model::LogLine;
use kiln_model::attach::{self, ToClient, ToDyno};
use kiln_platform::{OneOff, Platform, RunOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An attached one-off waiting for its client.
struct Pending {
    app_id: String,
    handle: OneOff,
    tty: bool,
    /// Who asked for it: the session ends when they lose the right to run it.
    caller: kiln_platform::Caller,
}

/// Attached one-offs waiting for their client, by secret.
#[derive(Default)]
pub struct PendingAttaches(Mutex<HashMap<String, Pending>>);

impl PendingAttaches {
    fn take(&self, secret: &str) -> Option<Pending> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(secret)
    }
}

const ATTACH_WAIT: Duration = Duration::from_secs(60);

/// What `heroku run` connects to over TLS; see the module doc.
#[derive(Clone)]
pub struct Rendezvous {
    attaches: Arc<PendingAttaches>,
    platform: Arc<Platform>,
}

/// The longest first line a rendezvous client sends: a secret (64 hex digits) and a query.
pub const MAX_RENDEZVOUS_LINE: usize = 512;

impl Rendezvous {
    pub(crate) fn new(attaches: Arc<PendingAttaches>, platform: Arc<Platform>) -> Rendezvous {
        Rendezvous { attaches, platform }
    }

    /// Serves one rendezvous connection whose first line (the secret, and any query after
    /// `?`, which is ignored) has been read.
    pub async fn attach<IO>(&self, line: &str, mut io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let secret = line.split('?').next().unwrap_or("").trim();
        let pending = if secret.is_empty() {
            None
        } else {
            self.attaches.take(secret)
        };
        let Some(p) = pending else {
            // The CLI discards the first chunk, then prints what follows.
            let _ = write_flushed(&mut io, b"rendezvous\r\n").await;
            let _ = write_flushed(
                &mut io,
                b"Kiln: no one-off dyno is waiting for this attach URL (a dyno waits one minute for its client).\r\n",
            )
            .await;
            let _ = io.shutdown().await;
            return;
        };
        if write_flushed(&mut io, b"rendezvous\r\n").await.is_err() {
            p.handle.signaller.kill();
            return;
        }
        let wire = Wire::Raw {
            eot_ends_stdin: !p.tty,
        };
        bridge(io, wire, p, self.platform.clone()).await;
    }
}

async fn write_flushed<IO: AsyncWrite + Unpin>(io: &mut IO, data: &[u8]) -> std::io::Result<()> {
    io.write_all(data).await?;
    io.flush().await
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/attach/{secret}", get(attach))
}

/// The one-off's process type: `run` unless the client names another (`heroku run --type`).
fn process_type(body: &Value) -> ApiResult<String> {
    match body.get("type") {
        None | Some(Value::Null) => Ok("run".into()),
        Some(Value::String(t)) => {
            kiln_model::procfile::validate_process_type(t)
                .map_err(|e| ApiError::invalid(e.message))?;
            Ok(t.clone())
        }
        Some(_) => Err(ApiError::invalid("type must be a process type name")),
    }
}

pub(crate) async fn create_dyno(
    State(st): State<ApiState>,
    crate::auth::Authenticated(caller): crate::auth::Authenticated,
    Path(app): Path<String>,
    origin: Origin,
    Body(body): Body,
) -> ApiResult<Response> {
    let user = caller.account.clone();
    let app = st
        .platform
        .app_for(&user, &app, kiln_platform::Need::Deploy)?;
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
    let force_no_tty = match body.get("force_no_tty") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("force_no_tty must be true or false")),
    };
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
                    // The CLI sends `TERM` as it finds it, which is absent under some shells.
                    Value::Null => continue,
                    _ => return Err(ApiError::invalid(format!("env {k} must be a string"))),
                };
                env.push((k.clone(), v));
            }
        }
        Some(_) => return Err(ApiError::invalid("env must be an object")),
    }
    let size = match body.get("size") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid("size must be a dyno size name")),
    };
    let process_type = process_type(&body)?;
    // Made before the dyno starts, so a failure leaves nothing running.
    let secret = if attach {
        Some(kiln_model::secret::new_secret()?)
    } else {
        None
    };
    let tty = attach && !force_no_tty;
    let handle = st
        .platform
        .run_one_off(
            &app,
            &user,
            RunOptions {
                command: &command,
                env,
                size: size.as_deref(),
                process_type: &process_type,
                attach,
                tty,
            },
        )
        .await?;
    let info = kiln_model::dyno::DynoInfo {
        id: handle.id.clone(),
        name: handle.name.clone(),
        process_type: process_type.clone(),
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
    let mut warning = None;
    if let Some(secret) = secret {
        obj["attach_url"] = Value::String(attach_url(&st, &origin, &secret));
        if st.tls_port.is_none() {
            warning = Some(
                "Heroku's CLI attaches over TLS: start Kiln with --api-tls-listen for `heroku run` (`kiln run` works without it).",
            );
        }
        let signaller = handle.signaller.clone();
        st.attaches
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                secret.clone(),
                Pending {
                    app_id: app.id.clone(),
                    handle,
                    tty,
                    caller: caller.clone(),
                },
            );
        // Nobody came: the dyno is not left running.
        let attaches = st.attaches.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ATTACH_WAIT).await;
            if attaches.take(&secret).is_some() {
                signaller.kill();
            }
        });
    } else {
        drop(handle);
    }
    let mut resp = (StatusCode::CREATED, axum::Json(obj)).into_response();
    if let Some(w) = warning {
        resp.headers_mut()
            .insert("x-heroku-warning", HeaderValue::from_static(w));
    }
    Ok(resp)
}

/// `rendezvous://HOST:TLS_PORT/SECRET` when the API has an HTTPS listener (the host the
/// client used, which its certificate must name), else Kiln's own `…/attach/SECRET`.
fn attach_url(st: &ApiState, origin: &Origin, secret: &str) -> String {
    match st.tls_port {
        Some(_) if origin.tls => {
            let authority = origin.base.trim_start_matches("https://");
            format!("rendezvous://{authority}/{secret}")
        }
        Some(port) => {
            let host = origin.host.clone().unwrap_or_else(|| "127.0.0.1".into());
            format!("rendezvous://{host}:{port}/{secret}")
        }
        None => format!("{}/attach/{secret}", origin.base),
    }
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
    let Some(p) = st.attaches.take(&secret) else {
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
                    Wire::Kiln,
                    p,
                    platform,
                )
                .await
            }
            Err(_) => p.handle.signaller.kill(),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("kiln-attach"));
    resp
}

/// How a session's bytes travel.
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// Kiln's frames: stdout and stderr apart, the exit status last.
    Kiln,
    /// Heroku's rendezvous: raw bytes. Without a terminal the client ends stdin with `\x04`.
    Raw { eot_ends_stdin: bool },
}

impl Wire {
    fn stdout(self, data: Vec<u8>) -> Vec<u8> {
        match self {
            Wire::Kiln => ToClient::Stdout(data).encode(),
            Wire::Raw { .. } => data,
        }
    }

    fn stderr(self, data: Vec<u8>) -> Vec<u8> {
        match self {
            Wire::Kiln => ToClient::Stderr(data).encode(),
            Wire::Raw { .. } => data,
        }
    }
}

/// What the client sent, decoded.
enum Input {
    Stdin(Vec<u8>),
    StdinClosed,
}

/// Reads the client's input until it goes away or breaks the protocol.
async fn read_client<R: AsyncRead + Unpin>(
    rd: &mut R,
    wire: Wire,
    tx: tokio::sync::mpsc::Sender<Input>,
) {
    match wire {
        Wire::Kiln => loop {
            let mut head = [0u8; attach::HEADER_LEN];
            if rd.read_exact(&mut head).await.is_err() {
                return;
            }
            // A hostile length or kind ends the session like a closed connection.
            let Ok((kind, len)) = attach::parse_header(head) else {
                return;
            };
            let mut data = vec![0u8; len];
            if rd.read_exact(&mut data).await.is_err() {
                return;
            }
            let input = match ToDyno::decode(kind, data) {
                Ok(ToDyno::Stdin(data)) => Input::Stdin(data),
                Ok(ToDyno::StdinClosed) => Input::StdinClosed,
                Err(_) => return,
            };
            if tx.send(input).await.is_err() {
                return;
            }
        },
        Wire::Raw { eot_ends_stdin } => {
            let mut buf = vec![0u8; 16 * 1024];
            let mut closed = false;
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if closed {
                    // After the end of stdin the CLI sends nothing more; anything is dropped.
                    continue;
                }
                let data = &buf[..n];
                let (data, end) = match data.iter().position(|&b| b == 0x04) {
                    Some(i) if eot_ends_stdin => (&data[..i], true),
                    _ => (data, false),
                };
                if !data.is_empty() && tx.send(Input::Stdin(data.to_vec())).await.is_err() {
                    return;
                }
                if end {
                    closed = true;
                    if tx.send(Input::StdinClosed).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn bridge<IO>(io: IO, wire: Wire, pending: Pending, platform: Arc<Platform>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Pending {
        app_id,
        mut handle,
        caller,
        ..
    } = pending;
    let access = platform.clone();
    let ended_app = app_id.clone();
    let ended = async move {
        access
            .access_ended(&caller, Some(&ended_app), kiln_platform::Need::Deploy)
            .await
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let mut pumps = Vec::new();
    let stdout: fn(Wire, Vec<u8>) -> Vec<u8> = Wire::stdout;
    let stderr: fn(Wire, Vec<u8>) -> Vec<u8> = Wire::stderr;
    for (encode, out) in [
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
                        if tx.send(encode(wire, buf[..n].to_vec())).await.is_err() {
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
    // Client → dyno: decoding apart from writing, so a dyno that does not read its stdin
    // never keeps the session from noticing that its client left.
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Input>(16);
    let mut reader = tokio::spawn(async move { read_client(&mut rd, wire, in_tx).await });
    let feeder = tokio::spawn(async move {
        while let Some(input) = in_rx.recv().await {
            match input {
                Input::Stdin(data) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Input::StdinClosed => stdin = None,
            }
        }
    });
    // Dyno → client, then (Kiln's wire) the exit status.
    let writer = async {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() || wr.flush().await.is_err() {
                return false;
            }
        }
        true
    };
    tokio::select! {
        ok = writer => {
            for p in pumps {
                let _ = p.await;
            }
            let code = (&mut handle.exit).await.unwrap_or(255);
            if ok {
                if let Wire::Kiln = wire {
                    let _ = wr.write_all(&ToClient::Exit(code).encode()).await;
                }
                let _ = wr.shutdown().await;
                // Keep reading until the client closes its side too, briefly. A socket
                // closed with input unread (the CLI's end-of-stdin, say) is reset by the
                // kernel, and a reset can throw away the end of the output the client has
                // not read yet: with `heroku run --exit-code`, the line that carries the
                // status, which the CLI then reports as exit code 1.
                let _ = tokio::time::timeout(LINGER, &mut reader).await;
            }
            reader.abort();
            feeder.abort();
        }
        _ = ended => {
            // The key that started it was revoked, or its user lost access to the app.
            reader.abort();
            feeder.abort();
            platform.log(&app_id, LogLine::heroku(&name, "The credentials that attached this session were revoked; stopping the process"));
            signaller.kill();
        }
        _ = &mut reader => {
            // The client went away first.
            feeder.abort();
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

/// How long a finished session waits for its client to close the connection.
const LINGER: Duration = Duration::from_secs(2);
