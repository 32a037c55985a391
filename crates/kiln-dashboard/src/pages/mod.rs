//! The pages: the layout every page shares, notices, and errors turned into pages.

pub mod account;
pub mod app;
pub mod apps;
pub mod metrics;
pub mod teams;

use crate::html::{Seg, esc};
use crate::session::Session;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use kiln_platform::PlatformError;
use std::fmt::Write;

/// What happened, said at the top of the page after an action.
pub enum Notice {
    Done(String),
    Failed(String),
}

impl Notice {
    fn html(&self) -> String {
        match self {
            Notice::Done(m) => format!(r#"<p class="notice done" role="status">{}</p>"#, esc(m)),
            Notice::Failed(m) => format!(r#"<p class="notice error" role="alert">{}</p>"#, esc(m)),
        }
    }

    /// The notice for a `?done=` code set by a redirect after an action. Codes, not text: a
    /// link from elsewhere cannot make the page say anything it would not say itself.
    pub fn from_code(code: Option<&str>) -> Option<Notice> {
        let m = match code? {
            "created" => "App created.",
            "scaled" => "Formation updated.",
            "restarted" => "Dynos restarting.",
            "addon" => "Add-on created.",
            "addon-removed" => "Add-on removed.",
            "rolled-back" => "Rolled back: a new release was made from the old one.",
            "config" => "Config vars updated: a new release was made.",
            "collaborator" => "Collaborator added.",
            "collaborator-updated" => "Permissions updated.",
            "collaborator-removed" => "Collaborator removed.",
            "buildpacks" => "Buildpacks updated; they take effect on the next push.",
            "domain" => "Domain added.",
            "domain-removed" => "Domain removed.",
            "maintenance-on" => "Maintenance mode is on.",
            "maintenance-off" => "Maintenance mode is off.",
            "renamed" => "App renamed.",
            "transferred" => "Transfer done (or requested, until the recipient accepts).",
            "deleted" => "App deleted.",
            "key-revoked" => "API key revoked.",
            "member" => "Team member saved.",
            "member-removed" => "Team member removed.",
            _ => return None,
        };
        Some(Notice::Done(m.to_string()))
    }
}

/// The query's `done=` code.
pub fn done_code(q: &[(String, String)]) -> Option<&str> {
    q.iter().find(|(k, _)| k == "done").map(|(_, v)| v.as_str())
}

pub fn query<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Every page's headers: never cached, never framed, nothing but our own script and style.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn head(title: &str, csrf: Option<&str>) -> String {
    let csrf = csrf
        .map(|c| format!(r#"<meta name="csrf-token" content="{}">"#, esc(c)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · Kiln</title><link rel="icon" href="data:,">{csrf}<link rel="stylesheet" href="/dashboard/assets/{}"><script src="/dashboard/assets/{}" defer></script></head>"#,
        esc(title),
        crate::assets::css_name(),
        crate::assets::js_name(),
    )
}

/// A page without the signed-in chrome (sign-in, errors before a session).
pub fn bare_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"{}<body class="bare"><header class="top"><a class="brand" href="/dashboard">Kiln</a></header><main id="main"><h1>{}</h1>{body}</main></body></html>"#,
        head(title, None),
        esc(title)
    );
    harden(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
    )
}

/// The tabs of an app's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Resources,
    Deploy,
    Metrics,
    Activity,
    Logs,
    Access,
    Settings,
}

const TABS: [(Tab, &str, &str); 8] = [
    (Tab::Overview, "", "Overview"),
    (Tab::Resources, "/resources", "Resources"),
    (Tab::Deploy, "/deploy", "Deploy"),
    (Tab::Metrics, "/metrics", "Metrics"),
    (Tab::Activity, "/activity", "Activity"),
    (Tab::Logs, "/logs", "Logs"),
    (Tab::Access, "/access", "Access"),
    (Tab::Settings, "/settings", "Settings"),
];

/// A signed-in page: the top bar, the app's tabs when it is an app's page, the notice, the
/// body.
pub fn page(
    s: &Session,
    status: StatusCode,
    title: &str,
    app: Option<(&str, Tab)>,
    notice: Option<Notice>,
    body: &str,
) -> Response {
    let mut html = head(title, Some(&s.csrf));
    let _ = write!(
        html,
        r##"<body><a class="skip" href="#main">Skip to content</a><header class="top"><a class="brand" href="/dashboard">Kiln</a><nav aria-label="Account"><a href="/dashboard">Apps</a><a href="/dashboard/teams">Teams</a><a href="/dashboard/account">{}</a><form method="post" action="/dashboard/logout">{}<button type="submit" class="link">Sign out</button></form></nav></header>"##,
        esc(&s.user().email),
        s.csrf_field()
    );
    html.push_str(r#"<main id="main">"#);
    if let Some((name, active)) = app {
        let _ = write!(
            html,
            r#"<p class="crumbs"><a href="/dashboard">Apps</a> / </p><h1>{}</h1><nav class="tabs" aria-label="App">"#,
            esc(name)
        );
        for (tab, path, label) in TABS {
            let current = if tab == active {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(
                html,
                r#"<a href="/dashboard/apps/{}{path}"{current}>{label}</a>"#,
                Seg(name)
            );
        }
        html.push_str("</nav>");
    } else {
        let _ = write!(html, "<h1>{}</h1>", esc(title));
    }
    if let Some(n) = notice {
        html.push_str(&n.html());
    }
    html.push_str(body);
    html.push_str("</main></body></html>");
    harden(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
    )
}

/// A fragment for the page's script to put in place (a partial).
pub fn fragment(html: String) -> Response {
    harden(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

pub fn status_of(e: &PlatformError) -> StatusCode {
    match e {
        PlatformError::NotFound { .. } => StatusCode::NOT_FOUND,
        PlatformError::Conflict(_) => StatusCode::CONFLICT,
        PlatformError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PlatformError::Forbidden(_) => StatusCode::FORBIDDEN,
        PlatformError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        PlatformError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        PlatformError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        PlatformError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error as a page. A 404 reads the same whether the thing is missing or hidden.
pub fn error_page(s: Option<&Session>, e: PlatformError) -> Response {
    let status = status_of(&e);
    if let PlatformError::Internal(m) = &e {
        tracing::warn!(error = %m, "dashboard: internal error");
    }
    let (title, text) = match &e {
        PlatformError::NotFound { .. } => (
            "Not found",
            "There is nothing here, or you may not see it.".to_string(),
        ),
        PlatformError::Internal(_) => (
            "Something went wrong",
            "The server could not do this; its log says why.".to_string(),
        ),
        other => ("Not done", other.to_string()),
    };
    let body = format!(
        r#"<p>{}</p><p><a href="/dashboard">Back to your apps</a></p>"#,
        esc(&text)
    );
    match s {
        Some(s) => page(s, status, title, None, None, &body),
        None => bare_page(status, title, &body),
    }
}

pub async fn not_found() -> Response {
    error_page(
        None,
        PlatformError::NotFound {
            resource: "page",
            message: String::new(),
        },
    )
}

/// After an action: back to `to` with the notice's code (303, so a reload does not post
/// again).
pub fn done(to: &str, code: &str) -> Response {
    Redirect::to(&format!("{to}?done={code}")).into_response()
}

pub fn app_path(app: &str) -> String {
    format!("/dashboard/apps/{}", Seg(app))
}
