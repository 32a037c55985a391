//! The apps list (with search) and creating an app.

use super::{Notice, done_code, page, query};
use crate::DashState;
use crate::html::{Seg, esc, time};
use crate::session::Session;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt::Write;

/// `/`: the dashboard (the API has nothing at its root).
pub async fn root() -> Response {
    Redirect::to("/dashboard").into_response()
}

pub async fn list(
    State(st): State<DashState>,
    s: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    render(
        &st,
        &s,
        query(&q, "q").unwrap_or(""),
        Notice::from_code(done_code(&q)),
        StatusCode::OK,
    )
}

fn render(
    st: &DashState,
    s: &Session,
    search: &str,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let apps = match st.platform.apps(s.user()) {
        Ok(a) => a,
        Err(e) => return super::error_page(Some(s), e),
    };
    let needle = search.trim().to_ascii_lowercase();
    let mut rows = String::new();
    let mut shown = 0;
    for v in &apps {
        let app = &v.app;
        if !needle.is_empty() && !app.name.contains(&needle) {
            continue;
        }
        shown += 1;
        let (dynos, formation) = match st.platform.formation(s.user(), app) {
            Ok(f) => {
                let total: u32 = f.iter().map(|(e, _)| e.quantity).sum();
                let text = f
                    .iter()
                    .filter(|(e, _)| e.quantity > 0)
                    .map(|(e, _)| format!("{}={}", e.process_type, e.quantity))
                    .collect::<Vec<_>>()
                    .join(" ");
                (total, text)
            }
            Err(_) => (0, String::new()),
        };
        let status = if app.maintenance {
            r#"<span class="state">maintenance</span>"#.to_string()
        } else if v.slug.is_none() {
            r#"<span class="state">not deployed</span>"#.to_string()
        } else if dynos == 0 {
            r#"<span class="state">scaled to 0</span>"#.to_string()
        } else {
            r#"<span class="state up">running</span>"#.to_string()
        };
        let owner = app
            .team
            .as_ref()
            .map(|t| format!("team {}", t.name))
            .unwrap_or_else(|| app.owner_email.clone());
        let deployed = app.released_at.map(time).unwrap_or_else(|| "never".into());
        let _ = write!(
            rows,
            r#"<tr data-app="{name}"><td><a href="/dashboard/apps/{seg}">{name}</a></td><td>{status}</td><td class="mono">{formation}</td><td>{deployed}</td><td class="hide-narrow">{owner}</td></tr>"#,
            name = esc(&app.name),
            seg = Seg(&app.name),
            formation = esc(&formation),
            owner = esc(&owner),
        );
    }
    let table = if apps.is_empty() {
        r#"<p class="muted">No apps yet. Create one below, or with <code>kiln apps:create</code>.</p>"#.to_string()
    } else if shown == 0 {
        format!(r#"<p class="muted">No app matches “{}”.</p>"#, esc(search))
    } else {
        format!(
            r#"<div class="scroll"><table><caption class="sr">Your apps</caption><thead><tr><th scope="col">App</th><th scope="col">Status</th><th scope="col">Dynos</th><th scope="col">Last deploy</th><th scope="col" class="hide-narrow">Owner</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let teams = st.platform.teams(s.user()).unwrap_or_default();
    let mut team_opts = String::from(r#"<option value="">Personal</option>"#);
    for (t, _) in &teams {
        let _ = write!(
            team_opts,
            r#"<option value="{0}">{0}</option>"#,
            esc(&t.name)
        );
    }
    let body = format!(
        r#"<form method="get" action="/dashboard" class="inline" role="search"><div><label for="app-search">Search apps</label><input id="app-search" type="search" name="q" value="{q}" autocomplete="off"></div><button type="submit">Search</button></form>
<div class="card">{table}</div>
<h2>New app</h2>
<form method="post" action="/dashboard/apps" class="card inline">{csrf}<div><label for="new-name">Name (optional)</label><input id="new-name" type="text" name="name" pattern="[a-z][a-z0-9\-]{{2,29}}" title="3 to 30 lowercase letters, digits and dashes, starting with a letter"></div><div><label for="new-team">Owner</label><select id="new-team" name="team">{team_opts}</select></div><button type="submit" class="primary">Create app</button></form>"#,
        q = esc(search),
        csrf = s.csrf_field(),
    );
    page(s, status, "Apps", None, notice, &body)
}

pub async fn create(
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
        .create_app(s.user(), form.text("name"), form.text("team"))
        .await
    {
        Ok(app) => super::done(&super::app_path(&app.name), "created"),
        Err(e) => render(
            &st,
            &s,
            "",
            Some(Notice::Failed(e.to_string())),
            super::status_of(&e),
        ),
    }
}
