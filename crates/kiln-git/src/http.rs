//! Git's smart HTTP protocol (receive-pack for pushes, upload-pack for clones), with Basic
//! auth where the password is an API key, as Heroku does.

use crate::{GitService, PushContext};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The git routes, to be merged into the API server's router.
pub fn router(svc: Arc<GitService>) -> Router {
    Router::new()
        .route("/{repo}/info/refs", get(info_refs))
        .route("/{repo}/git-receive-pack", post(receive_pack))
        .route("/{repo}/git-upload-pack", post(upload_pack))
        .with_state(svc)
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "Authentication required: use any user name and your Kiln API key as the password.",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Kiln\""),
    );
    r
}

/// Authenticates and resolves `<app>.git` to a push context, or answers with the error.
fn authorize(svc: &GitService, headers: &HeaderMap, repo: &str) -> Result<PushContext, Response> {
    let Some(name) = repo.strip_suffix(".git") else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "Repositories are named <app>.git",
        ));
    };
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()));
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(unauthorized());
    };
    let Some((user_id, user_email)) = svc.auth.authenticate(&key) else {
        return Err(unauthorized());
    };
    let (app_id, app_name) = match svc.auth.app(name, &user_id) {
        Ok(found) => found,
        Err(crate::GitRefusal::NoSuchApp) => {
            return Err(text(
                StatusCode::NOT_FOUND,
                &format!(" !     No such app as {name}."),
            ));
        }
        Err(crate::GitRefusal::Forbidden(why)) => {
            return Err(text(StatusCode::FORBIDDEN, &format!(" !     {why}")));
        }
    };
    Ok(PushContext {
        app_id,
        app_name,
        user_id,
        user_email,
    })
}

fn pkt_line(s: &str) -> String {
    format!("{:04x}{s}", s.len() + 4)
}

fn service_of(q: &HashMap<String, String>) -> Option<&'static str> {
    match q.get("service").map(String::as_str) {
        Some("git-receive-pack") => Some("receive-pack"),
        Some("git-upload-pack") => Some("upload-pack"),
        _ => None,
    }
}

async fn info_refs(
    State(svc): State<Arc<GitService>>,
    Path(repo): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(service) = service_of(&q) else {
        return text(
            StatusCode::FORBIDDEN,
            "Only git's smart HTTP protocol is supported (git 1.6.6 or newer).",
        );
    };
    let ctx = match authorize(&svc, &headers, &repo) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let path = match svc.ensure_repo(&ctx.app_id).await {
        Ok(p) => p,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Could not open the repository: {e}"),
            );
        }
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([service, "--stateless-rpc", "--advertise-refs"])
        .arg(&path);
    if let Some(p) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", p);
    }
    let out = match cmd.output().await {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &String::from_utf8_lossy(&o.stderr),
            );
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Could not run git: {e}"),
            );
        }
    };
    let mut body = pkt_line(&format!("# service=git-{service}\n")).into_bytes();
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&out);
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                format!("application/x-git-{service}-advertisement"),
            ),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        body,
    )
        .into_response()
}

async fn receive_pack(
    State(svc): State<Arc<GitService>>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    rpc(svc, "receive-pack", repo, headers, body).await
}

async fn upload_pack(
    State(svc): State<Arc<GitService>>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    rpc(svc, "upload-pack", repo, headers, body).await
}

/// Largest decompressed fetch negotiation (want/have lines; git gzips them when they are
/// long, never a push's pack, which is compressed already).
const MAX_NEGOTIATION: u64 = 64 * 1024 * 1024;

async fn rpc(
    svc: Arc<GitService>,
    service: &'static str,
    repo: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = match authorize(&svc, &headers, &repo) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let path = match svc.ensure_repo(&ctx.app_id).await {
        Ok(p) => p,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Could not open the repository: {e}"),
            );
        }
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let token = match (service == "receive-pack")
        .then(|| svc.register(ctx.clone()))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Could not start the push: {e}"),
            );
        }
    };

    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-c")
        .arg(format!("core.hooksPath={}", svc.hooks_dir.display()));
    // Heroku's repository limit: git's index-pack stops a larger pack with "fatal: pack
    // exceeds maximum allowed size", which the pusher sees.
    cmd.arg("-c").arg(format!(
        "receive.maxInputSize={}",
        svc.limits.max_pack_bytes
    ));
    cmd.args([service, "--stateless-rpc"]).arg(&path);
    cmd.env("KILN_HOOK_SOCKET", &svc.socket);
    if let Some(t) = &token {
        cmd.env("KILN_PUSH_TOKEN", t);
    }
    if let Some(p) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", p);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(t) = &token {
                svc.unregister(t);
            }
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Could not run git: {e}"),
            );
        }
    };
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "git's pipes are missing");
    };

    // Feed the request body to git as it arrives, decompressing it on the way if need be.
    let max_input = if service == "receive-pack" {
        svc.limits.max_pack_bytes
    } else {
        MAX_NEGOTIATION
    };
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut decoder = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
        let mut fed = 0u64;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return };
            let sent = match decoder.as_mut() {
                None => {
                    fed += chunk.len() as u64;
                    stdin.write_all(&chunk).await
                }
                // A small slice at a time: each may inflate a thousandfold (a gzip bomb), and
                // what it inflates to is handed on before the next.
                Some(decoder) => {
                    let mut result = Ok(());
                    for piece in chunk.chunks(4096) {
                        if std::io::Write::write_all(decoder, piece).is_err() {
                            return;
                        }
                        let out = std::mem::take(decoder.get_mut());
                        fed += out.len() as u64;
                        if fed > max_input.saturating_mul(2) {
                            return;
                        }
                        result = stdin.write_all(&out).await;
                        if result.is_err() {
                            break;
                        }
                    }
                    result
                }
            };
            if sent.is_err() || fed > max_input.saturating_mul(2) {
                // git stopped reading (a pack over the limit): it still answers, and the client
                // must get to read that, so the rest of the upload is read and dropped, up to
                // a bound, rather than reset under it.
                drop(stdin);
                let mut drained = 0u64;
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len() as u64;
                    if drained > max_input {
                        return;
                    }
                }
                return;
            }
        }
        if let Some(mut decoder) = decoder {
            if decoder.try_finish().is_ok() {
                let _ = stdin.write_all(decoder.get_ref()).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf).await;
        if !buf.is_empty() {
            tracing::debug!(stderr = %String::from_utf8_lossy(&buf), "git {service}");
        }
    });
    // Stream git's answer (including `remote:` build output in sideband) as it is produced.
    let svc2 = svc.clone();
    let stream =
        futures_util::stream::unfold(Some((stdout, child, token, svc2)), |state| async move {
            let (mut out, mut child, token, svc) = state?;
            let mut buf = vec![0u8; 32 * 1024];
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = child.wait().await;
                    if let Some(t) = &token {
                        svc.unregister(t);
                    }
                    None
                }
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                        Some((out, child, token, svc)),
                    ))
                }
            }
        });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                format!("application/x-git-{service}-result"),
            ),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
