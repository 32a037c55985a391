//! Teams: the user's teams, and a team's members and apps (members managed by its admins;
//! the platform refuses anyone else).

use super::{Notice, done, done_code, error_page, page, status_of};
use crate::DashState;
use crate::html::{Seg, esc};
use crate::session::Session;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kiln_model::access::TeamRole;
use std::fmt::Write;

pub async fn list(State(st): State<DashState>, s: Session) -> Response {
    let teams = match st.platform.teams(s.user()) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&s), e),
    };
    let mut rows = String::new();
    for (t, role) in &teams {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/dashboard/teams/{}\">{}</a></td><td>{}</td></tr>",
            Seg(&t.name),
            esc(&t.name),
            role.name()
        );
    }
    let body = if rows.is_empty() {
        "<p class=\"muted\">You are in no team. Make one with <code>kiln teams:create NAME</code>.</p>".to_string()
    } else {
        format!(
            "<div class=\"card scroll\"><table><thead><tr><th scope=\"col\">Team</th><th scope=\"col\">Your role</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    };
    page(&s, StatusCode::OK, "Teams", None, None, &body)
}

pub async fn team(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    render(
        &st,
        &s,
        &name,
        Notice::from_code(done_code(&q)),
        StatusCode::OK,
    )
}

fn render(
    st: &DashState,
    s: &Session,
    name: &str,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let members = match st.platform.team_members(s.user(), name) {
        Ok(m) => m,
        Err(e) => return error_page(Some(s), e),
    };
    let apps = st.platform.team_apps(s.user(), name).unwrap_or_default();
    let admin = members
        .iter()
        .any(|m| m.account_id == s.user().id && m.role == TeamRole::Admin);
    let csrf = s.csrf_field();
    let path = format!("/dashboard/teams/{}", Seg(name));
    let mut rows = String::new();
    for m in &members {
        let remove = if admin {
            format!(
                r#"<form method="post" action="{path}/members/remove">{csrf}<input type="hidden" name="email" value="{e}"><button type="submit" class="danger">Remove <span class="sr">{e}</span></button></form>"#,
                e = esc(&m.email)
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{remove}</td></tr>",
            esc(&m.email),
            m.role.name()
        );
    }
    let mut app_list = String::new();
    for (a, _) in &apps {
        let _ = write!(
            app_list,
            "<li><a href=\"/dashboard/apps/{}\">{}</a></li>",
            Seg(&a.name),
            esc(&a.name)
        );
    }
    let add = if admin {
        format!(
            r#"<h2>Add or change a member</h2><form method="post" action="{path}" class="card inline">{csrf}<div><label for="m-email">Email</label><input id="m-email" type="email" name="email" required></div><div><label for="m-role">Role</label><select id="m-role" name="role"><option>member</option><option>admin</option><option>viewer</option></select></div><button type="submit" class="primary">Save member</button></form>"#
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<h2>Members</h2><div class="card scroll"><table><thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody>{rows}</tbody></table></div>{add}<h2>Apps</h2><ul class="card">{app_list}</ul>"#
    );
    page(s, status, &format!("Team {name}"), None, notice, &body)
}

pub async fn set_member(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = match s.form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let result = TeamRole::parse(form.text("role").unwrap_or("member"))
        .map_err(kiln_platform::PlatformError::from)
        .and_then(|role| {
            st.platform
                .set_team_member(s.user(), &name, form.text("email").unwrap_or(""), role)
        });
    match result {
        Ok(_) => done(&format!("/dashboard/teams/{}", Seg(&name)), "member"),
        Err(e) => render(
            &st,
            &s,
            &name,
            Some(Notice::Failed(e.to_string())),
            status_of(&e),
        ),
    }
}

pub async fn remove_member(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = match s.form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st
        .platform
        .remove_team_member(s.user(), &name, form.text("email").unwrap_or(""))
    {
        Ok(_) => done(
            &format!("/dashboard/teams/{}", Seg(&name)),
            "member-removed",
        ),
        Err(e) => render(
            &st,
            &s,
            &name,
            Some(Notice::Failed(e.to_string())),
            status_of(&e),
        ),
    }
}
