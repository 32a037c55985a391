//! An app's pages (Overview, Resources, Deploy, Activity, Logs, Access, Settings; Metrics is
//! in `metrics.rs`), their partials and their actions.
//!
//! Every handler first reaches the app through the platform's `app_for` with the need the
//! API uses for the same thing (`View` to look, `Operate` to scale, `Deploy` for config and
//! rollback, `Manage` for domains, `Owner` to rename or delete), and the use case it calls
//! checks again. Actions post a form with the session's CSRF token and redirect back with a
//! notice; a refused or failed action re-renders the page with the reason and its status.

use super::{Notice, Tab, app_path, done, done_code, error_page, fragment, page, query, status_of};
use crate::DashState;
use crate::html::{Seg, esc, time};
use crate::session::{Form, Session};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_model::access::{Need, Permission, Permissions};
use kiln_model::records::App;
use kiln_platform::PlatformError;
use std::collections::BTreeMap;
use std::fmt::Write;

type Q = Query<Vec<(String, String)>>;

/// The app, if the session's user may do `need` to it; else the error page (404 when they
/// may not see it at all).
pub(crate) fn load(st: &DashState, s: &Session, name: &str, need: Need) -> Result<App, Response> {
    st.platform
        .app_for(s.user(), name, need)
        .map_err(|e| error_page(Some(s), e))
}

/// The form of an action on an app: the CSRF token checked, then the app loaded with `need`.
fn action(
    st: &DashState,
    s: &Session,
    name: &str,
    need: Need,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(App, Form), Response> {
    let form = s.form(headers, body)?;
    let app = load(st, s, name, need)?;
    Ok((app, form))
}

fn failed(e: &PlatformError) -> Option<Notice> {
    Some(Notice::Failed(e.to_string()))
}

fn dyno_state_class(state: &str) -> &'static str {
    match state {
        "up" => "up",
        "crashed" => "crashed",
        "starting" | "restarting" => "starting",
        _ => "",
    }
}

// ---- Overview ----

pub async fn overview(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Q,
) -> Response {
    let app = match load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let user = s.user();
    let dynos = dynos_html(&st, &s, &app).await;
    let mut activity = String::new();
    let range = kiln_model::records::ReleaseRange {
        first: None,
        last: None,
        max: 5,
        descending: true,
    };
    for r in st.platform.releases(user, &app, range).unwrap_or_default() {
        let _ = write!(
            activity,
            "<li><strong>v{}</strong> {} <span class=\"muted\">by {} {}</span></li>",
            r.version,
            esc(&r.description),
            esc(&r.user_email),
            time(r.created_at)
        );
    }
    if activity.is_empty() {
        activity = "<li class=\"muted\">Nothing yet: push to deploy.</li>".into();
    }
    let mut addons = String::new();
    for a in st.platform.app_addons(user, &app).unwrap_or_default() {
        let _ = write!(
            addons,
            "<li>{} <span class=\"muted\">{}:{}</span></li>",
            esc(&a.name),
            esc(&a.service),
            esc(&a.plan)
        );
    }
    if addons.is_empty() {
        addons = "<li class=\"muted\">None</li>".into();
    }
    let mut domains = format!(
        "<li><a href=\"{0}\">{0}</a></li>",
        esc(&st.platform.web_url(&app.name))
    );
    for d in st.platform.domains(user, &app).unwrap_or_default() {
        let _ = write!(domains, "<li>{}</li>", esc(&d.hostname));
    }
    let p = app_path(&app.name);
    let body = format!(
        r#"<div class="grid"><section class="card"><h2>Dynos</h2><div data-refresh="{p}/dynos" data-every="5000">{dynos}</div><p><a href="{p}/resources">Change the formation</a></p></section>
<section class="card"><h2>Latest activity</h2><ul>{activity}</ul><p><a href="{p}/activity">All activity</a></p></section>
<section class="card"><h2>Add-ons</h2><ul>{addons}</ul></section>
<section class="card"><h2>Domains</h2><ul>{domains}</ul></section></div>"#
    );
    page(
        &s,
        StatusCode::OK,
        &app.name.clone(),
        Some((&app.name, Tab::Overview)),
        Notice::from_code(done_code(&q)),
        &body,
    )
}

/// The formation and the dynos, as the Overview and Resources pages show and refresh them.
async fn dynos_html(st: &DashState, s: &Session, app: &App) -> String {
    let dynos = match st.platform.dynos(s.user(), app).await {
        Ok(d) => d,
        Err(e) => return format!("<p class=\"notice error\">{}</p>", esc(&e.to_string())),
    };
    if dynos.is_empty() {
        return "<p class=\"muted\" data-dyno-count=\"0\">No dynos are running.</p>".into();
    }
    let mut rows = String::new();
    for d in &dynos {
        let state = d.state.as_str();
        let detail = d.detail.as_deref().unwrap_or("");
        let _ = write!(
            rows,
            "<tr data-dyno=\"{name}\"><td class=\"mono\">{name}</td><td><span class=\"state {cls}\">{state}</span> <span class=\"muted\">{detail}</span></td><td class=\"hide-narrow\">{size}</td><td class=\"hide-narrow\">v{v}</td><td>{since}</td></tr>",
            name = esc(&d.name),
            cls = dyno_state_class(state),
            detail = esc(detail),
            size = d.size.name(),
            v = d.release_version,
            since = time(d.updated_at),
        );
    }
    format!(
        "<div class=\"scroll\"><table data-dyno-count=\"{}\"><thead><tr><th scope=\"col\">Dyno</th><th scope=\"col\">State</th><th scope=\"col\" class=\"hide-narrow\">Size</th><th scope=\"col\" class=\"hide-narrow\">Release</th><th scope=\"col\">Since</th></tr></thead><tbody>{rows}</tbody></table></div>",
        dynos.len()
    )
}

pub async fn dynos_partial(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
) -> Response {
    match load(&st, &s, &name, Need::View) {
        Ok(app) => fragment(dynos_html(&st, &s, &app).await),
        Err(r) => r,
    }
}

// ---- Resources ----

pub async fn resources(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Q,
) -> Response {
    render_resources(
        &st,
        &s,
        &name,
        Notice::from_code(done_code(&q)),
        StatusCode::OK,
    )
    .await
}

async fn render_resources(
    st: &DashState,
    s: &Session,
    name: &str,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let app = match load(st, s, name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let user = s.user();
    let p = app_path(&app.name);
    let csrf = s.csrf_field();
    let mut formation = String::new();
    let entries = st.platform.formation(user, &app).unwrap_or_default();
    for (e, command) in &entries {
        let mut sizes = String::new();
        for size in kiln_model::dyno::DynoSize::ALL {
            let sel = if size.name().eq_ignore_ascii_case(&e.size) {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                sizes,
                "<option value=\"{0}\"{sel}>{0}</option>",
                size.name()
            );
        }
        let t = esc(&e.process_type);
        let _ = write!(
            formation,
            r#"<form method="post" action="{p}/scale" class="card inline" aria-label="Scale {t}">{csrf}<input type="hidden" name="type" value="{t}"><div><strong class="mono">{t}</strong><div class="muted mono">{cmd}</div></div><div><label for="q-{t}">Dynos</label><input id="q-{t}" type="number" name="quantity" min="0" max="100" value="{q}"></div><div><label for="s-{t}">Size</label><select id="s-{t}" name="size">{sizes}</select></div><button type="submit" class="primary">Save {t}</button></form>"#,
            cmd = esc(command),
            q = e.quantity,
        );
    }
    if formation.is_empty() {
        formation = "<p class=\"muted\">No process types yet: they come from the Procfile of the first push.</p>".into();
    }
    let dynos = dynos_html(st, s, &app).await;
    let mut addons = String::new();
    for a in st.platform.app_addons(user, &app).unwrap_or_default() {
        let _ = write!(
            addons,
            r#"<tr><td>{n}</td><td>{svc}</td><td>{plan}</td><td>{state}</td><td><form method="post" action="{p}/addons/remove">{csrf}<input type="hidden" name="addon" value="{n}"><button type="submit" class="danger">Remove <span class="sr">{n}</span></button></form></td></tr>"#,
            n = esc(&a.name),
            svc = esc(&a.service),
            plan = esc(&a.plan),
            state = esc(a.state.as_str()),
        );
    }
    let addons = if addons.is_empty() {
        "<p class=\"muted\">No add-ons.</p>".to_string()
    } else {
        format!(
            "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Add-on</th><th scope=\"col\">Service</th><th scope=\"col\">Plan</th><th scope=\"col\">State</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>{addons}</tbody></table></div>"
        )
    };
    let mut plans = String::new();
    for svc in kiln_model::addon::SERVICES {
        let _ = write!(plans, "<optgroup label=\"{}\">", esc(svc.human_name));
        for plan in svc.plans {
            let _ = write!(
                plans,
                "<option value=\"{0}:{1}\">{0}:{1}</option>",
                svc.name, plan.name
            );
        }
        plans.push_str("</optgroup>");
    }
    let sleeping = match st.platform.app_sleep(user, &app) {
        Ok(v) if v.sleeps => format!(
            "<p id=\"sleeping\">Its dynos sleep after {} s without a request ({}), and wake on the next one. Change it with <code>kiln ps:autosleep</code>.</p>",
            v.after.as_secs(),
            v.setting.mode.as_str()
        ),
        Ok(v) => format!(
            "<p id=\"sleeping\" class=\"muted\">Its dynos do not sleep ({}).</p>",
            v.setting.mode.as_str()
        ),
        Err(_) => String::new(),
    };
    let jobs = scheduled_jobs_html(st, s, &app);
    let body = format!(
        r#"<h2>Formation</h2>{formation}{sleeping}
<h2>Dynos</h2><div class="card"><div data-refresh="{p}/dynos" data-every="5000">{dynos}</div><form method="post" action="{p}/restart">{csrf}<button type="submit">Restart all dynos</button></form></div>
<h2>Add-ons</h2><div class="card">{addons}<form method="post" action="{p}/addons" class="inline">{csrf}<div><label for="plan">Add an add-on</label><select id="plan" name="plan">{plans}</select></div><button type="submit" class="primary">Add</button></form></div>{jobs}"#
    );
    page(
        s,
        status,
        &app.name.clone(),
        Some((&app.name, Tab::Resources)),
        notice,
        &body,
    )
}

/// The app's scheduled jobs, when it has any (they are added with the CLI or the API).
fn scheduled_jobs_html(st: &DashState, s: &Session, app: &App) -> String {
    let jobs = st.platform.schedules(s.user(), app).unwrap_or_default();
    if jobs.is_empty() {
        return String::new();
    }
    let at = |secs: i64| kiln_model::Timestamp(secs.saturating_mul(1_000_000));
    let mut rows = String::new();
    for j in &jobs {
        let next = if j.next_run_at < i64::MAX / 2_000_000 {
            at(j.next_run_at).rfc3339()
        } else {
            "never".into()
        };
        let last = j
            .last_run_at
            .map(|t| time(at(t)))
            .unwrap_or_else(|| "never".into());
        let running = if st.platform.schedule_running(&j.id) {
            " <span class=\"state starting\">running</span>"
        } else {
            ""
        };
        let _ = write!(
            rows,
            "<tr data-job=\"{id}\"><td>{expr}</td><td class=\"mono\">{cmd}</td><td class=\"hide-narrow\">{next}</td><td>{last}{running}</td></tr>",
            id = esc(&j.id),
            expr = esc(&j.expression),
            cmd = esc(&j.command),
            next = esc(&next),
        );
    }
    format!(
        "<h2>Scheduled jobs</h2><div class=\"card scroll\"><table><thead><tr><th scope=\"col\">Schedule</th><th scope=\"col\">Command</th><th scope=\"col\" class=\"hide-narrow\">Next run</th><th scope=\"col\">Last run</th></tr></thead><tbody>{rows}</tbody></table><p class=\"muted\">Add, run and remove jobs with <code>kiln schedules</code>.</p></div>"
    )
}

pub async fn scale(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Operate, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(ptype) = form.text("type") else {
        return render_resources(
            &st,
            &s,
            &name,
            Some(Notice::Failed("Which process type?".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let quantity = match form
        .text("quantity")
        .map(kiln_model::formation::QuantityChange::parse)
    {
        None => None,
        Some(Ok(q)) => Some(q),
        Some(Err(e)) => {
            return render_resources(
                &st,
                &s,
                &name,
                Some(Notice::Failed(e.to_string())),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let size = form.text("size").map(str::to_string);
    match st
        .platform
        .scale(&app, &[(ptype.to_string(), quantity, size)], s.user())
        .await
    {
        Ok(_) => done(&format!("{}/resources", app_path(&app.name)), "scaled"),
        Err(e) => render_resources(&st, &s, &name, failed(&e), status_of(&e)).await,
    }
}

pub async fn restart(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, _) = match action(&st, &s, &name, Need::Operate, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match st
        .platform
        .restart(&app, kiln_model::dyno::RestartTarget::All, s.user())
        .await
    {
        Ok(_) => done(&format!("{}/resources", app_path(&app.name)), "restarted"),
        Err(e) => render_resources(&st, &s, &name, failed(&e), status_of(&e)).await,
    }
}

pub async fn add_addon(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Deploy, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req = kiln_platform::CreateAddon {
        plan: form.text("plan").unwrap_or("").to_string(),
        name: None,
        attachment_name: None,
        options: BTreeMap::new(),
    };
    match st.platform.create_addon(s.user(), &app, req).await {
        Ok(_) => done(&format!("{}/resources", app_path(&app.name)), "addon"),
        Err(e) => render_resources(&st, &s, &name, failed(&e), status_of(&e)).await,
    }
}

pub async fn remove_addon(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Deploy, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let wanted = form.text("addon").unwrap_or("");
    let addon = st
        .platform
        .app_addons(s.user(), &app)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.name == wanted);
    let Some(addon) = addon else {
        return render_resources(
            &st,
            &s,
            &name,
            Some(Notice::Failed("This app has no such add-on.".into())),
            StatusCode::NOT_FOUND,
        )
        .await;
    };
    match st.platform.destroy_addon(s.user(), &addon, false).await {
        Ok(_) => done(
            &format!("{}/resources", app_path(&app.name)),
            "addon-removed",
        ),
        Err(e) => render_resources(&st, &s, &name, failed(&e), status_of(&e)).await,
    }
}

// ---- Deploy ----

pub async fn deploy(State(st): State<DashState>, s: Session, Path(name): Path<String>) -> Response {
    let app = match load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let git_url = st.platform.git_url(&app.name);
    let api_url = st.platform.api_url().trim_end_matches('/').to_string();
    let p = app_path(&app.name);
    let builds = builds_html(&st, &s, &app);
    let body = format!(
        r#"<section class="card"><h2>Deploy with git</h2><p>Sign in once, add the app's git remote, and push:</p>
<pre class="commands" id="deploy-commands"><code>kiln login --api-url {api}
kiln git:remote -a {name}
git push kiln main</code></pre>
<p>The remote is <code id="git-url">{git}</code>; git signs in with the API key <code>kiln login</code> saved in <code>~/.netrc</code>. With Heroku's CLI: <code>heroku git:remote -a {name}</code>, then <code>git push heroku main</code>.</p></section>
<section class="card"><h2>Builds</h2><div data-refresh="{p}/builds" data-every="2000">{builds}</div></section>"#,
        api = esc(&api_url),
        name = esc(&app.name),
        git = esc(&git_url),
    );
    page(
        &s,
        StatusCode::OK,
        &app.name.clone(),
        Some((&app.name, Tab::Deploy)),
        None,
        &body,
    )
}

/// The app's builds, newest first; the newest one's output streams while it runs.
fn builds_html(st: &DashState, s: &Session, app: &App) -> String {
    let builds = st
        .platform
        .recent_builds(s.user(), app, 20)
        .unwrap_or_default();
    if builds.is_empty() {
        return "<p class=\"muted\" data-builds=\"0\">No builds yet.</p>".into();
    }
    let p = app_path(&app.name);
    let mut rows = String::new();
    for b in builds.iter().take(20) {
        let status = b.status.as_str();
        let cls = match status {
            "succeeded" => "up",
            "failed" => "failed",
            _ => "pending",
        };
        let _ = write!(
            rows,
            "<tr><td><a href=\"{p}/builds/{id}\">{short}</a></td><td><span class=\"state {cls}\">{status}</span></td><td class=\"mono hide-narrow\">{commit}</td><td class=\"hide-narrow\">{who}</td><td>{when}</td></tr>",
            id = Seg(&b.id),
            short = esc(b.id.get(..8).unwrap_or(&b.id)),
            commit = esc(b
                .source_version
                .as_deref()
                .map(|v| v.get(..10).unwrap_or(v))
                .unwrap_or("")),
            who = esc(&b.user_email),
            when = time(b.created_at),
        );
    }
    let newest = &builds[0];
    let live = if newest.status.as_str() == "pending" {
        format!(
            // Empty here: the page's script streams the output from its start.
            "<h3>Building now</h3><pre class=\"build-output\" data-stream=\"/build-output/{}\" aria-live=\"polite\">Waiting for the build's output…</pre>",
            Seg(&newest.id),
        )
    } else {
        String::new()
    };
    format!(
        "{live}<div class=\"scroll\"><table data-builds=\"{}\"><thead><tr><th scope=\"col\">Build</th><th scope=\"col\">Status</th><th scope=\"col\" class=\"hide-narrow\">Commit</th><th scope=\"col\" class=\"hide-narrow\">By</th><th scope=\"col\">When</th></tr></thead><tbody>{rows}</tbody></table></div>",
        builds.len()
    )
}

pub async fn builds_partial(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
) -> Response {
    match load(&st, &s, &name, Need::View) {
        Ok(app) => fragment(builds_html(&st, &s, &app)),
        Err(r) => r,
    }
}

pub async fn build(
    State(st): State<DashState>,
    s: Session,
    Path((name, build)): Path<(String, String)>,
) -> Response {
    let app = match load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Only this app's builds are found (the store looks within the app).
    let b = match st.platform.build(s.user(), &app, &build) {
        Ok(b) => b,
        Err(e) => return error_page(Some(&s), e),
    };
    let output = st.platform.build_output(&b.id).unwrap_or_default();
    let stream = if b.status.as_str() == "pending" {
        format!(" data-stream=\"/build-output/{}\"", Seg(&b.id))
    } else {
        String::new()
    };
    let body = format!(
        "<p>Build <code>{id}</code>: <span class=\"state\">{status}</span>, by {who} {when}.</p><pre class=\"build-output\"{stream} aria-live=\"polite\">{out}</pre>",
        id = esc(&b.id),
        status = b.status.as_str(),
        who = esc(&b.user_email),
        when = time(b.created_at),
        out = esc(&output),
    );
    page(
        &s,
        StatusCode::OK,
        &app.name.clone(),
        Some((&app.name, Tab::Deploy)),
        None,
        &body,
    )
}

// ---- Activity ----

pub async fn activity(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Q,
) -> Response {
    render_activity(
        &st,
        &s,
        &name,
        Notice::from_code(done_code(&q)),
        StatusCode::OK,
    )
}

fn render_activity(
    st: &DashState,
    s: &Session,
    name: &str,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let app = match load(st, s, name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let p = app_path(&app.name);
    let csrf = s.csrf_field();
    let range = kiln_model::records::ReleaseRange {
        first: None,
        last: None,
        max: 100,
        descending: true,
    };
    let releases = st
        .platform
        .releases(s.user(), &app, range)
        .unwrap_or_default();
    let current = releases
        .iter()
        .find(|r| r.status.as_str() == "succeeded")
        .map(|r| r.version);
    let mut rows = String::new();
    for r in &releases {
        let rollback = if Some(r.version) != current
            && r.status.as_str() == "succeeded"
            && r.slug_id.is_some()
        {
            format!(
                r#"<form method="post" action="{p}/rollback">{csrf}<input type="hidden" name="version" value="{v}"><button type="submit">Roll back to v{v}</button></form>"#,
                v = r.version
            )
        } else if Some(r.version) == current {
            "<span class=\"state up\">current</span>".into()
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr data-release=\"{v}\"><td>v{v}</td><td>{desc}</td><td class=\"hide-narrow\">{who}</td><td>{when}</td><td><span class=\"state {cls}\">{st}</span></td><td>{rollback}</td></tr>",
            v = r.version,
            desc = esc(&r.description),
            who = esc(&r.user_email),
            when = time(r.created_at),
            st = r.status.as_str(),
            cls = match r.status.as_str() {
                "failed" => "failed",
                "pending" => "pending",
                _ => "",
            },
        );
    }
    let body = if rows.is_empty() {
        "<p class=\"muted\">No releases yet.</p>".to_string()
    } else {
        format!(
            "<div class=\"card scroll\"><table><caption class=\"sr\">Releases</caption><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Description</th><th scope=\"col\" class=\"hide-narrow\">By</th><th scope=\"col\">When</th><th scope=\"col\">Status</th><th scope=\"col\"><span class=\"sr\">Rollback</span></th></tr></thead><tbody>{rows}</tbody></table></div><p><a href=\"{p}/deploy\">Builds</a></p>"
        )
    };
    page(
        s,
        status,
        &app.name.clone(),
        Some((&app.name, Tab::Activity)),
        notice,
        &body,
    )
}

pub async fn rollback(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Deploy, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let version = form.text("version").unwrap_or("");
    let result = match st.platform.release(s.user(), &app, version) {
        Ok(target) => st.platform.rollback(&app, &target, s.user()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => done(&format!("{}/activity", app_path(&app.name)), "rolled-back"),
        Err(e) => render_activity(&st, &s, &name, failed(&e), status_of(&e)),
    }
}

// ---- Logs ----

pub async fn logs(State(st): State<DashState>, s: Session, Path(name): Path<String>) -> Response {
    let app = match load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    // The recent history, so the page shows something without its script.
    let history = match recent_lines(&st, &s, &app).await {
        Ok(h) => h,
        Err(e) => return error_page(Some(&s), e),
    };
    let mut dyno_opts =
        String::from("<option value=\"\">All</option><option value=\"router\">router</option>");
    for (e, _) in st.platform.formation(s.user(), &app).unwrap_or_default() {
        let _ = write!(
            dyno_opts,
            "<option value=\"{0}\">{0}</option>",
            esc(&e.process_type)
        );
    }
    let body = format!(
        r#"<form id="log-filter" class="inline" aria-label="Filter the logs"><div><label for="log-dyno">Dyno</label><select id="log-dyno" name="dyno">{dyno_opts}</select></div><div><label for="log-source">Source</label><select id="log-source" name="source"><option value="">All</option><option value="app">app</option><option value="heroku">heroku</option></select></div><button type="submit">Apply</button><span id="log-status" class="muted" role="status"></span></form>
<pre id="log" data-session="{p}/logs/session" aria-live="off" tabindex="0">{history}</pre>"#,
        p = app_path(&app.name),
        history = esc(&history),
    );
    page(
        &s,
        StatusCode::OK,
        &app.name.clone(),
        Some((&app.name, Tab::Logs)),
        None,
        &body,
    )
}

async fn recent_lines(st: &DashState, s: &Session, app: &App) -> Result<String, PlatformError> {
    let search = st.platform.log_search(None, None, None)?;
    let id =
        st.platform
            .create_log_session(&s.caller, app, Default::default(), 200, false, search)?;
    let platform = st.platform.clone();
    let opened = tokio::task::spawn_blocking(move || platform.open_log_session(&id))
        .await
        .ok()
        .flatten();
    let mut out = String::new();
    if let Some(session) = opened {
        for l in session.history {
            out.push_str(&l.render());
            out.push('\n');
        }
    }
    Ok(out)
}

/// A tailing log session for the page's script: `{"url": "/log-sessions/…"}`.
pub async fn log_session(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(r) = s.check_header(&headers) {
        return r;
    }
    let app = match load(&st, &s, &name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let form = match Form::parse(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let short = |k: &str| form.text(k).filter(|v| v.len() <= 100).map(str::to_string);
    let filter = kiln_model::log::LogFilter {
        source: short("source"),
        dyno: short("dyno"),
    };
    let made = st.platform.log_search(None, None, None).and_then(|search| {
        st.platform
            .create_log_session(&s.caller, &app, filter, 200, true, search)
    });
    match made {
        Ok(id) => {
            let body = serde_json::json!({ "url": format!("/log-sessions/{id}") }).to_string();
            let mut r = (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => (status_of(&e), e.to_string()).into_response(),
    }
}

// ---- Access ----

pub async fn access(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Q,
) -> Response {
    render_access(
        &st,
        &s,
        &name,
        Notice::from_code(done_code(&q)),
        StatusCode::OK,
    )
}

fn permission_boxes(id: &str, held: Permissions) -> String {
    let mut out = String::from("<fieldset class=\"inline\"><legend>Permissions</legend>");
    for p in Permission::ALL {
        let checked = if held.has(p) { " checked" } else { "" };
        let _ = write!(
            out,
            "<div><input type=\"checkbox\" id=\"{id}-{n}\" name=\"permissions\" value=\"{n}\"{checked}> <label for=\"{id}-{n}\" class=\"muted\">{n}</label></div>",
            n = p.name()
        );
    }
    out.push_str("</fieldset>");
    out
}

fn render_access(
    st: &DashState,
    s: &Session,
    name: &str,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let list = match st.platform.access_list(s.user(), name) {
        Ok(l) => l,
        Err(e) => return error_page(Some(s), e),
    };
    let p = app_path(name);
    let csrf = s.csrf_field();
    let mut rows = String::new();
    for (i, e) in list.iter().enumerate() {
        let perms: Vec<&str> = e.permissions.iter().map(|p| p.name()).collect();
        let actions = if e.role == "collaborator" || e.role == "member" {
            format!(
                r#"<details><summary>Change</summary><form method="post" action="{p}/access/update">{csrf}<input type="hidden" name="email" value="{email}">{boxes}<button type="submit">Save</button></form><form method="post" action="{p}/access/remove">{csrf}<input type="hidden" name="email" value="{email}"><button type="submit" class="danger">Remove <span class="sr">{email}</span></button></form></details>"#,
                email = esc(&e.email),
                boxes = permission_boxes(&format!("p{i}"), e.permissions),
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr data-email=\"{email}\"><td>{email}</td><td>{role}</td><td>{perms}</td><td>{actions}</td></tr>",
            email = esc(&e.email),
            role = esc(e.role),
            perms = esc(&perms.join(", ")),
        );
    }
    let body = format!(
        r#"<div class="card scroll"><table><caption class="sr">Who has access</caption><thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Permissions</th><th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody>{rows}</tbody></table></div>
<h2>Add a collaborator</h2><form method="post" action="{p}/access" class="card">{csrf}<label for="collab-email">Email</label><input id="collab-email" type="email" name="email" required>{boxes}<button type="submit" class="primary">Add collaborator</button></form>"#,
        boxes = permission_boxes("new", Permissions::ALL),
    );
    page(s, status, name, Some((name, Tab::Access)), notice, &body)
}

fn permissions_of(form: &Form) -> Result<Option<Permissions>, PlatformError> {
    let names: Vec<&str> = form.all("permissions").collect();
    if names.is_empty() {
        return Ok(None);
    }
    Ok(Some(Permissions::parse(names)?))
}

pub async fn add_collaborator(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Manage, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = permissions_of(&form).and_then(|perms| {
        st.platform
            .add_collaborator(s.user(), &app.name, form.text("email").unwrap_or(""), perms)
    });
    match result {
        Ok(_) => done(&format!("{}/access", app_path(&app.name)), "collaborator"),
        Err(e) => render_access(&st, &s, &name, failed(&e), status_of(&e)),
    }
}

pub async fn update_collaborator(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Manage, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = permissions_of(&form).and_then(|perms| {
        st.platform.update_collaborator(
            s.user(),
            &app.name,
            form.text("email").unwrap_or(""),
            perms.unwrap_or(Permissions::VIEW),
        )
    });
    match result {
        Ok(_) => done(
            &format!("{}/access", app_path(&app.name)),
            "collaborator-updated",
        ),
        Err(e) => render_access(&st, &s, &name, failed(&e), status_of(&e)),
    }
}

pub async fn remove_collaborator(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    // Leaving an app needs only to see it; removing someone else needs Manage.
    let form = match s.form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let own = form
        .text("email")
        .is_some_and(|e| e.eq_ignore_ascii_case(&s.user().email));
    let app = match load(&st, &s, &name, if own { Need::View } else { Need::Manage }) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match st
        .platform
        .remove_collaborator(s.user(), &app.name, form.text("email").unwrap_or(""))
    {
        // Who left the app can no longer see its Access page.
        Ok(_) if own => done("/dashboard", "collaborator-removed"),
        Ok(_) => done(
            &format!("{}/access", app_path(&app.name)),
            "collaborator-removed",
        ),
        Err(e) => render_access(&st, &s, &name, failed(&e), status_of(&e)),
    }
}

// ---- Settings ----

pub async fn settings(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Q,
) -> Response {
    let reveal = query(&q, "reveal") == Some("1");
    render_settings(
        &st,
        &s,
        &name,
        reveal,
        Notice::from_code(done_code(&q)),
        StatusCode::OK,
    )
}

/// The config vars with their values, for a user who may read them (`Deploy`).
fn config_html(s: &Session, app: &App) -> String {
    let p = app_path(&app.name);
    let csrf = s.csrf_field();
    let mut rows = String::new();
    for (k, v) in app.config.iter() {
        let _ = write!(
            rows,
            r#"<tr data-var="{k}"><td class="mono">{k}</td><td><form method="post" action="{p}/config-vars" class="inline">{csrf}<input type="hidden" name="key" value="{k}"><input type="text" name="value" value="{v}" aria-label="Value of {k}" class="mono"><button type="submit">Save</button></form></td><td><form method="post" action="{p}/config-vars">{csrf}<input type="hidden" name="unset" value="{k}"><button type="submit" class="danger">Remove <span class="sr">{k}</span></button></form></td></tr>"#,
            k = esc(k),
            v = esc(v),
        );
    }
    if rows.is_empty() {
        return "<p class=\"muted\">No config vars.</p>".into();
    }
    format!(
        "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Value</th><th scope=\"col\"><span class=\"sr\">Remove</span></th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

fn render_settings(
    st: &DashState,
    s: &Session,
    name: &str,
    reveal: bool,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let app = match load(st, s, name, Need::View) {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Values only for whoever may read them, and only when asked.
    if reveal && let Err(r) = load(st, s, name, Need::Deploy) {
        return r;
    }
    let user = s.user();
    let p = app_path(&app.name);
    let csrf = s.csrf_field();
    let n = esc(&app.name);
    let config = if reveal {
        config_html(s, &app)
    } else {
        // The names too are for whoever may read config (the API's rule): others see the count.
        let may_read = st.platform.app_for(user, &app.id, Need::Deploy).is_ok();
        let keys: Vec<String> = if may_read {
            app.config
                .iter()
                .map(|(k, _)| format!("<code>{}</code>", esc(k)))
                .collect()
        } else {
            Vec::new()
        };
        format!(
            "<p>{} config var{}{}{}</p><p><a href=\"{p}/settings?reveal=1\" data-reveal=\"config\" class=\"button\">Reveal config vars</a></p>",
            app.config.iter().count(),
            if app.config.iter().count() == 1 {
                ""
            } else {
                "s"
            },
            if keys.is_empty() { "" } else { ": " },
            keys.join(" ")
        )
    };
    let buildpacks = st
        .platform
        .buildpacks(user, &app)
        .unwrap_or_default()
        .join("\n");
    let mut domains = String::new();
    for d in st.platform.domains(user, &app).unwrap_or_default() {
        let _ = write!(
            domains,
            r#"<li>{h} <form method="post" action="{p}/domains/remove" class="inline">{csrf}<input type="hidden" name="hostname" value="{h}"><button type="submit" class="danger">Remove <span class="sr">{h}</span></button></form></li>"#,
            h = esc(&d.hostname)
        );
    }
    let mut certs = String::new();
    for c in st.platform.sni_endpoints(user, &app).unwrap_or_default() {
        let _ = write!(
            certs,
            "<li>{} <span class=\"muted\">{}</span></li>",
            esc(&c.endpoint.name),
            esc(&c.info.hostnames.join(", "))
        );
    }
    if certs.is_empty() {
        certs = "<li class=\"muted\">None (add one with <code>kiln certs:add</code>, or turn on ACM with <code>kiln certs:auto:enable</code>).</li>".into();
    }
    let (maint_label, maint_value) = if app.maintenance {
        ("Turn maintenance mode off", "off")
    } else {
        ("Turn maintenance mode on", "on")
    };
    let body = format!(
        r#"<section class="card"><h2>App</h2><p>Name <strong>{n}</strong> · stack {stack} · owner {owner}</p><p>Git URL <code>{git}</code></p><p>Web URL <a href="{web}">{web}</a></p></section>
<section class="card"><h2>Config vars</h2><div id="config">{config}</div><form method="post" action="{p}/config-vars" class="inline">{csrf}<div><label for="cv-key">Key</label><input id="cv-key" type="text" name="key" required class="mono"></div><div><label for="cv-value">Value</label><input id="cv-value" type="text" name="value" class="mono"></div><button type="submit" class="primary">Set</button></form></section>
<section class="card"><h2>Buildpacks</h2><form method="post" action="{p}/buildpacks">{csrf}<label for="bp">One per line, in order (empty: detect)</label><textarea id="bp" name="buildpacks" rows="3" class="mono">{bps}</textarea><button type="submit">Save buildpacks</button></form></section>
<section class="card"><h2>Domains</h2><ul>{domains}</ul><form method="post" action="{p}/domains" class="inline">{csrf}<div><label for="dom">Add a domain</label><input id="dom" type="text" name="hostname" required></div><button type="submit">Add domain</button></form><h3>Certificates</h3><ul>{certs}</ul></section>
<section class="card"><h2>Maintenance mode</h2><form method="post" action="{p}/maintenance">{csrf}<input type="hidden" name="maintenance" value="{maint_value}"><button type="submit">{maint_label}</button></form></section>
<section class="card danger-zone"><h2>Rename</h2><form method="post" action="{p}/rename" class="inline">{csrf}<div><label for="newname">New name</label><input id="newname" type="text" name="name" required></div><button type="submit">Rename</button></form>
<h2>Transfer</h2><form method="post" action="{p}/transfer" class="inline">{csrf}<div><label for="recipient">To (email or team)</label><input id="recipient" type="text" name="recipient" required></div><button type="submit">Transfer</button></form>
<h2>Delete</h2><form method="post" action="{p}/delete">{csrf}<label for="confirm">Type <strong>{n}</strong> to confirm; this cannot be undone</label><input id="confirm" type="text" name="confirm" required autocomplete="off"><button type="submit" class="danger">Delete app</button></form></section>"#,
        stack = esc(&app.stack),
        owner = esc(&app
            .team
            .as_ref()
            .map(|t| format!("team {}", t.name))
            .unwrap_or_else(|| app.owner_email.clone())),
        git = esc(&st.platform.git_url(&app.name)),
        web = esc(&st.platform.web_url(&app.name)),
        bps = esc(&buildpacks),
    );
    page(
        s,
        status,
        &app.name.clone(),
        Some((&app.name, Tab::Settings)),
        notice,
        &body,
    )
}

pub async fn config_partial(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
) -> Response {
    match load(&st, &s, &name, Need::Deploy) {
        Ok(app) => fragment(config_html(&s, &app)),
        Err(r) => r,
    }
}

/// A settings action: the app with `need`, then `run`; back to Settings with `code`, or the
/// page again with the reason.
macro_rules! settings_action {
    ($st:expr, $s:expr, $name:expr, $need:expr, $headers:expr, $body:expr, $code:expr, |$app:ident, $form:ident| $run:expr) => {{
        let ($app, $form) = match action(&$st, &$s, &$name, $need, &$headers, &$body) {
            Ok(v) => v,
            Err(r) => return r,
        };
        match $run {
            Ok(to) => done(&format!("{}/settings", app_path(&to)), $code),
            Err(e) => render_settings(&$st, &$s, &$name, false, failed(&e), status_of(&e)),
        }
    }};
}

pub async fn set_config(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    settings_action!(
        st,
        s,
        name,
        Need::Deploy,
        headers,
        body,
        "config",
        |app, form| {
            let mut patch = BTreeMap::new();
            if let Some(k) = form.text("unset") {
                patch.insert(k.to_string(), None);
            } else if let Some(k) = form.text("key") {
                patch.insert(
                    k.to_string(),
                    Some(form.get("value").unwrap_or("").to_string()),
                );
            }
            if patch.is_empty() {
                Err(PlatformError::Invalid(kiln_model::Invalid::new(
                    "key",
                    "Give a key",
                )))
            } else {
                st.platform
                    .update_config(&app, &patch, s.user())
                    .await
                    .map(|_| app.name.clone())
            }
        }
    )
}

pub async fn set_buildpacks(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    settings_action!(
        st,
        s,
        name,
        Need::Deploy,
        headers,
        body,
        "buildpacks",
        |app, form| {
            let urls: Vec<String> = form
                .get("buildpacks")
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            st.platform
                .set_buildpacks(s.user(), &app, &urls)
                .map(|_| app.name.clone())
        }
    )
}

pub async fn add_domain(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    settings_action!(
        st,
        s,
        name,
        Need::Manage,
        headers,
        body,
        "domain",
        |app, form| {
            st.platform
                .add_domain(&app, form.text("hostname").unwrap_or(""), s.user())
                .map(|_| app.name.clone())
        }
    )
}

pub async fn remove_domain(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    settings_action!(
        st,
        s,
        name,
        Need::Manage,
        headers,
        body,
        "domain-removed",
        |app, form| {
            st.platform
                .remove_domain(&app, form.text("hostname").unwrap_or(""), s.user())
                .map(|_| app.name.clone())
        }
    )
}

pub async fn maintenance(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let on = {
        let form = Form::parse(&headers, &body);
        matches!(form.as_ref().map(|f| f.get("maintenance")), Ok(Some("on")))
    };
    let code = if on {
        "maintenance-on"
    } else {
        "maintenance-off"
    };
    settings_action!(
        st,
        s,
        name,
        Need::Operate,
        headers,
        body,
        code,
        |app, _form| {
            st.platform
                .set_maintenance(&app, on, s.user())
                .await
                .map(|a| a.name)
        }
    )
}

pub async fn rename(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    settings_action!(
        st,
        s,
        name,
        Need::Owner,
        headers,
        body,
        "renamed",
        |app, form| {
            st.platform
                .rename_app(&app, form.text("name").unwrap_or(""), s.user())
                .await
                .map(|a| a.name)
        }
    )
}

pub async fn transfer(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    settings_action!(
        st,
        s,
        name,
        Need::Owner,
        headers,
        body,
        "transferred",
        |app, form| {
            st.platform
                .transfer_app(s.user(), &app.name, form.text("recipient").unwrap_or(""))
                .map(|_| app.name.clone())
        }
    )
}

pub async fn delete(
    State(st): State<DashState>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (app, form) = match action(&st, &s, &name, Need::Owner, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if form.text("confirm") != Some(app.name.as_str()) {
        return render_settings(
            &st,
            &s,
            &name,
            false,
            Some(Notice::Failed(format!(
                "Type the app's name, {}, to delete it.",
                app.name
            ))),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match st.platform.destroy_app(s.user(), &app).await {
        Ok(()) => done("/dashboard", "deleted"),
        Err(e) => render_settings(&st, &s, &name, false, failed(&e), status_of(&e)),
    }
}
