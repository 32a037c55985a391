//! The account: API keys (made, shown once, revoked; the dashboard's own sessions are among
//! them) and the password.

use super::{Notice, done, done_code, page, status_of};
use crate::DashState;
use crate::html::{esc, time};
use crate::session::Session;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::fmt::Write;

pub async fn page_handler(
    st: &DashState,
    s: &Session,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let keys = match st.platform.authorizations(s.user()) {
        Ok(k) => k,
        Err(e) => return super::error_page(Some(s), e),
    };
    let csrf = s.csrf_field();
    let mut rows = String::new();
    for k in &keys {
        let this = if k.id == s.caller.authorization.id {
            " <span class=\"state up\">this session</span>"
        } else {
            ""
        };
        let expires = k
            .expires_at
            .map(time)
            .map(|t| format!("expires {t}"))
            .unwrap_or_else(|| "never expires".into());
        let _ = write!(
            rows,
            r#"<tr data-key="{id}"><td>{desc}{this}</td><td class="mono">…{hint}</td><td class="hide-narrow">{made} · {expires}</td><td><form method="post" action="/dashboard/account/keys/revoke">{csrf}<input type="hidden" name="id" value="{id}"><button type="submit" class="danger">Revoke <span class="sr">{desc}</span></button></form></td></tr>"#,
            id = esc(&k.id),
            desc = esc(if k.description.is_empty() {
                "(no description)"
            } else {
                &k.description
            }),
            hint = esc(&k.token_hint),
            made = time(k.created_at),
        );
    }
    let user = s.user();
    let body = format!(
        r#"<p>Signed in as <strong>{email}</strong>{admin}.</p>
<h2>API keys</h2><div class="card scroll"><table><thead><tr><th scope="col">Description</th><th scope="col">Key</th><th scope="col" class="hide-narrow">Made</th><th scope="col"><span class="sr">Revoke</span></th></tr></thead><tbody>{rows}</tbody></table>
<form method="post" action="/dashboard/account/keys" class="inline">{csrf}<div><label for="key-desc">Description</label><input id="key-desc" type="text" name="description" maxlength="200"></div><div><label for="key-days">Expires after (days, empty: never)</label><input id="key-days" type="number" name="days" min="1" max="3650"></div><button type="submit" class="primary">Make a key</button></form></div>
<h2>Password</h2><form method="post" action="/dashboard/account/password" class="card narrow">{csrf}<label for="pw-current">Current password</label><input id="pw-current" type="password" name="current" autocomplete="current-password"><label for="pw-new">New password</label><input id="pw-new" type="password" name="new" autocomplete="new-password" required minlength="8"><p class="muted">Changing it ends every key and session of this account, this one included.</p><button type="submit" class="primary">Change password</button></form>"#,
        email = esc(&user.email),
        admin = if user.admin { " (administrator)" } else { "" },
    );
    page(s, status, "Account", None, notice, &body)
}

pub async fn show(
    State(st): State<DashState>,
    s: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    page_handler(&st, &s, Notice::from_code(done_code(&q)), StatusCode::OK).await
}

pub async fn create_key(
    State(st): State<DashState>,
    s: Session,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = match s.form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let days = match form.text("days").map(str::parse::<u64>) {
        None => None,
        Some(Ok(d)) if (1..=3650).contains(&d) => Some(d * 86_400),
        Some(_) => {
            return page_handler(
                &st,
                &s,
                Some(Notice::Failed("Expiry must be 1 to 3650 days.".into())),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let description = form.get("description").unwrap_or("").trim();
    if description.len() > 200 {
        return page_handler(
            &st,
            &s,
            Some(Notice::Failed("The description is too long.".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match st
        .platform
        .create_authorization(s.user(), description, Vec::new(), days)
    {
        // Shown once, on this answer only (never in a redirect's URL).
        Ok((_, token)) => {
            page_handler(
                &st,
                &s,
                Some(Notice::Done(format!(
                    "Your new API key (copy it now; it is not shown again): {token}"
                ))),
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) => page_handler(&st, &s, Some(Notice::Failed(e.to_string())), status_of(&e)).await,
    }
}

pub async fn revoke_key(
    State(st): State<DashState>,
    s: Session,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = match s.form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st
        .platform
        .revoke_authorization(s.user(), form.text("id").unwrap_or(""))
    {
        Ok(_) => done("/dashboard/account", "key-revoked"),
        Err(e) => page_handler(&st, &s, Some(Notice::Failed(e.to_string())), status_of(&e)).await,
    }
}

pub async fn change_password(
    State(st): State<DashState>,
    s: Session,
    parts: Parts,
    body: bytes::Bytes,
) -> Response {
    let form = match s.form(&parts.headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let addr = parts
        .extensions
        .get::<kiln_net::ClientAddr>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
            a.0.ip()
        });
    match st
        .platform
        .change_password(
            s.user(),
            form.get("current").unwrap_or(""),
            form.get("new").unwrap_or(""),
            addr,
        )
        .await
    {
        // Every key ended, this session's too: sign in again with the new password.
        Ok(()) => axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            "/dashboard/login",
        )),
        Err(e) => page_handler(&st, &s, Some(Notice::Failed(e.to_string())), status_of(&e)).await,
    }
}
