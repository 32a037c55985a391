//! Kiln's web console: the dashboard, served by `kiln server` at `/` of the API's address
//! (and its HTTPS listener), with everything it needs compiled into the binary.
//!
//! **Server-rendered pages with small progressive enhancement**, not a single-page app. The
//! argument: every page is one request that the server answers from memory and the store in
//! well under a millisecond of work, so a page is as fast as an SPA's first API call, without
//! shipping a framework (the whole first load is a page, one stylesheet and one script of a
//! few kilobytes each), without a JavaScript build step in a Rust project, and without a
//! second copy of the authorization rules in a client. Every form works without JavaScript
//! (post, then redirect back: the page you were on, with what happened said at the top); the
//! script only adds the live parts: the log tail and a build's output as they stream, the
//! dyno list and the metrics charts refreshed in place, and the search of the apps list.
//! Charts are SVG drawn here on the server (`chart.rs`), so no chart library is loaded.
//!
//! **One judge.** Every handler reaches the app through the platform's `app_for` with the
//! same need the API uses for the same action, and every use case checks again, so the
//! dashboard cannot allow what the API refuses: a user who may not see an app gets the same
//! 404 page as for an app that does not exist, on every page and every partial. Sessions and
//! CSRF tokens are in [`session`]. Pages carry a strict Content-Security-Policy (no inline
//! script or style), are never cached, and may not be framed.
//!
//! The live streams reuse the API's own capability URLs (a log session's `logplex_url`, a
//! build's `output_stream_url`): the page asks for one with its session, and the browser
//! reads it like the CLI does.

mod assets;
mod chart;
pub mod html;
mod pages;
pub mod session;

use axum::Router;
use axum::routing::{get, post};
use kiln_platform::Platform;
use std::sync::Arc;

#[derive(Clone)]
pub struct DashState {
    pub platform: Arc<Platform>,
}

/// The dashboard's routes, to merge into the API's listener (they never collide with the
/// API's: all but `/` are under `/dashboard`).
pub fn router(platform: Arc<Platform>) -> Router {
    use pages::{account, app, apps, metrics, teams};
    Router::new()
        .route("/", get(apps::root))
        .route("/dashboard/assets/{file}", get(assets::serve))
        .route(
            "/dashboard/login",
            get(session::sign_in_form).post(session::sign_in),
        )
        .route("/dashboard/logout", post(session::sign_out))
        .route("/dashboard", get(apps::list))
        .route("/dashboard/apps", post(apps::create))
        .route("/dashboard/apps/{app}", get(app::overview))
        .route("/dashboard/apps/{app}/dynos", get(app::dynos_partial))
        .route("/dashboard/apps/{app}/resources", get(app::resources))
        .route("/dashboard/apps/{app}/scale", post(app::scale))
        .route("/dashboard/apps/{app}/restart", post(app::restart))
        .route("/dashboard/apps/{app}/addons", post(app::add_addon))
        .route(
            "/dashboard/apps/{app}/addons/remove",
            post(app::remove_addon),
        )
        .route("/dashboard/apps/{app}/deploy", get(app::deploy))
        .route("/dashboard/apps/{app}/builds", get(app::builds_partial))
        .route("/dashboard/apps/{app}/builds/{build}", get(app::build))
        .route("/dashboard/apps/{app}/metrics", get(metrics::show))
        .route(
            "/dashboard/apps/{app}/metrics/charts",
            get(metrics::charts_partial),
        )
        .route("/dashboard/apps/{app}/activity", get(app::activity))
        .route("/dashboard/apps/{app}/rollback", post(app::rollback))
        .route("/dashboard/apps/{app}/logs", get(app::logs))
        .route("/dashboard/apps/{app}/logs/session", post(app::log_session))
        .route(
            "/dashboard/apps/{app}/access",
            get(app::access).post(app::add_collaborator),
        )
        .route(
            "/dashboard/apps/{app}/access/update",
            post(app::update_collaborator),
        )
        .route(
            "/dashboard/apps/{app}/access/remove",
            post(app::remove_collaborator),
        )
        .route("/dashboard/apps/{app}/settings", get(app::settings))
        .route(
            "/dashboard/apps/{app}/config-vars",
            get(app::config_partial).post(app::set_config),
        )
        .route(
            "/dashboard/apps/{app}/buildpacks",
            post(app::set_buildpacks),
        )
        .route("/dashboard/apps/{app}/domains", post(app::add_domain))
        .route(
            "/dashboard/apps/{app}/domains/remove",
            post(app::remove_domain),
        )
        .route("/dashboard/apps/{app}/maintenance", post(app::maintenance))
        .route("/dashboard/apps/{app}/rename", post(app::rename))
        .route("/dashboard/apps/{app}/transfer", post(app::transfer))
        .route("/dashboard/apps/{app}/delete", post(app::delete))
        .route("/dashboard/account", get(account::show))
        .route("/dashboard/account/keys", post(account::create_key))
        .route("/dashboard/account/keys/revoke", post(account::revoke_key))
        .route(
            "/dashboard/account/password",
            post(account::change_password),
        )
        .route("/dashboard/teams", get(teams::list))
        .route(
            "/dashboard/teams/{team}",
            get(teams::team).post(teams::set_member),
        )
        .route(
            "/dashboard/teams/{team}/members/remove",
            post(teams::remove_member),
        )
        // Not a fallback: the API's router, which this one is merged into, has its own.
        .route(
            "/dashboard/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .with_state(DashState { platform })
}
