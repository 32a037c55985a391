//! Many users on one Kiln: accounts and keys, the authorization matrix over every endpoint
//! of the API (generated from its route table), git, log sessions and attach, and the attacks
//! the self-hosted peers suffered, each as a test.

mod common;

use common::Server;
use kiln_testkit::http::{Response, request};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";

fn call(s: &Server, key: Option<&str>, method: &str, path: &str, body: Option<&str>) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Accept", "application/vnd.heroku+json; version=3")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    request(s.api_port(), method, "127.0.0.1", path, &headers, body)
}

fn json_of(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn ok_json(s: &Server, key: &str, method: &str, path: &str, body: Value) -> Value {
    let r = call(s, Some(key), method, path, Some(&body.to_string()));
    assert!(
        (200..300).contains(&r.status),
        "{method} {path} {body}: {} {}",
        r.status,
        r.body
    );
    json_of(&r)
}

fn basic(email: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{password}"))
    )
}

/// `heroku login -i`'s request: a key for an email and password.
fn login(s: &Server, email: &str, password: &str) -> Response {
    let auth = basic(email, password);
    request(
        s.api_port(),
        "POST",
        "127.0.0.1",
        "/oauth/authorizations",
        &[
            ("Authorization", &auth),
            ("Accept", "application/vnd.heroku+json; version=3"),
        ],
        Some(
            r#"{"description":"Heroku CLI login from test","expires_in":2592000,"scope":["global"]}"#,
        ),
    )
}

/// Makes an account (as the server's admin) and logs it in; returns its key.
fn user(s: &Server, email: &str) -> String {
    ok_json(
        s,
        &s.key,
        "POST",
        "/kiln/users",
        json!({ "email": email, "password": PASSWORD }),
    );
    let r = login(s, email, PASSWORD);
    assert_eq!(r.status, 201, "{}", r.body);
    json_of(&r)["access_token"]["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn accounts_log_in_with_passwords_and_keys_are_shown_once_and_revocable() {
    let s = Server::start("tenancy-accounts");
    let key = user(&s, "ada@example.com");
    assert!(key.starts_with("KILN-"), "{key}");
    let me = ok_json(&s, &key, "GET", "/account", Value::Null);
    assert_eq!(me["email"], "ada@example.com");

    // A wrong password, an unknown address and a malformed header all read the same.
    for (email, password) in [
        ("ada@example.com", "wrong password!!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let r = login(&s, email, password);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(json_of(&r)["message"], "Invalid credentials provided.");
    }

    // The listing is redacted; the token was shown once, at creation.
    let list = ok_json(&s, &key, "GET", "/oauth/authorizations", Value::Null);
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    let shown = listed[0]["access_token"]["token"].as_str().unwrap();
    assert!(
        shown.starts_with("KILN-**********") && key.ends_with(&shown[15..]),
        "{shown}"
    );
    assert!(!list.to_string().contains(&key));
    // The key in use is `~` only when it is a long-lived one (a login token expires).
    assert_eq!(
        call(&s, Some(&key), "GET", "/oauth/authorizations/~", None).status,
        404
    );

    // A second key, made with the first; expiring; regenerated; revoked.
    let made = ok_json(
        &s,
        &key,
        "POST",
        "/oauth/authorizations",
        json!({ "description": "ci", "expires_in": "3600" }),
    );
    let id = made["id"].as_str().unwrap().to_string();
    let second = made["access_token"]["token"].as_str().unwrap().to_string();
    assert!(made["access_token"]["expires_in"].as_i64().unwrap() > 3500);
    assert_eq!(made["scope"], json!(["global"]));
    let rotated = ok_json(
        &s,
        &key,
        "POST",
        &format!("/oauth/authorizations/{id}/actions/regenerate-tokens"),
        Value::Null,
    );
    let third = rotated["access_token"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(call(&s, Some(&second), "GET", "/account", None).status, 401);
    assert_eq!(call(&s, Some(&third), "GET", "/account", None).status, 200);
    let revoked = ok_json(
        &s,
        &key,
        "DELETE",
        &format!("/oauth/authorizations/{id}"),
        Value::Null,
    );
    assert_eq!(revoked["description"], "ci");
    assert_eq!(call(&s, Some(&third), "GET", "/account", None).status, 401);

    // Hostile input to the key endpoints: clear errors, nothing made.
    for body in [
        r#"{"expires_in": 0}"#,
        r#"{"expires_in": "soon"}"#,
        r#"{"expires_in": 99999999999}"#,
        r#"{"scope": ["root"]}"#,
        r#"{"scope": "global"}"#,
        r#"{"description": "a\u0000b"}"#,
    ] {
        let r = call(&s, Some(&key), "POST", "/oauth/authorizations", Some(body));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
    }
    assert_eq!(
        ok_json(&s, &key, "GET", "/oauth/authorizations", Value::Null)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A password change ends every key, and answers with a new one.
    let changed = ok_json(
        &s,
        &key,
        "PUT",
        "/account/password",
        json!({ "current_password": PASSWORD, "password": "a much better passphrase" }),
    );
    assert_eq!(call(&s, Some(&key), "GET", "/account", None).status, 401);
    let fresh = changed["access_token"]["token"].as_str().unwrap();
    assert_eq!(call(&s, Some(fresh), "GET", "/account", None).status, 200);
    assert_eq!(login(&s, "ada@example.com", PASSWORD).status, 401);
    assert_eq!(
        login(&s, "ada@example.com", "a much better passphrase").status,
        201
    );

    // Only administrators manage users.
    let r = call(
        &s,
        Some(fresh),
        "POST",
        "/kiln/users",
        Some(r#"{"email":"x@example.com","password":"long enough pass"}"#),
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn failed_logins_are_throttled_and_the_rate_limit_answers_429() {
    let s = Server::start_with("tenancy-limits", &["--api-rate-limit", "40"]);
    let key = user(&s, "bob@example.com");
    // Five wrong passwords lock the account: even the right one is refused for a while,
    // without being checked.
    for _ in 0..5 {
        assert_eq!(
            login(&s, "bob@example.com", "guess guess guess").status,
            401
        );
    }
    let r = login(&s, "bob@example.com", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        json_of(&r)["message"]
            .as_str()
            .unwrap()
            .contains("Too many failed logins")
    );

    // The hourly budget counts down and then refuses.
    let mut last = u32::MAX;
    let mut refused = None;
    for i in 0..60 {
        let r = call(&s, Some(&key), "GET", "/account", None);
        let left: u32 = r.header("ratelimit-remaining").unwrap().parse().unwrap();
        if r.status == 429 {
            assert_eq!(json_of(&r)["id"], "rate_limit");
            refused = Some(i);
            break;
        }
        assert!(left < last || left == 0, "{left} after {last}");
        last = left;
    }
    let refused = refused.expect("the 41st request within the hour is refused");
    assert!((38..=41).contains(&refused), "refused at request {refused}");
    // Another user has a budget of their own.
    assert_eq!(call(&s, Some(&s.key), "GET", "/account", None).status, 200);
}

#[test]
fn invitations_are_for_the_address_they_were_sent_to() {
    let s = Server::start("tenancy-invite");
    let inv = ok_json(
        &s,
        &s.key,
        "POST",
        "/kiln/invitations",
        json!({ "email": "carol@example.com" }),
    );
    let token = inv["token"].as_str().unwrap();
    assert!(inv["command"].as_str().unwrap().contains(token));
    // A member holding the link cannot use it for their own address (CVE-2025-64423).
    let signup = |email: &str, invitation: Option<&str>| {
        call(
            &s,
            None,
            "POST",
            "/kiln/signup",
            Some(
                &json!({ "email": email, "password": PASSWORD, "invitation": invitation })
                    .to_string(),
            ),
        )
    };
    let r = signup("mallory@example.com", Some(token));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(login(&s, "mallory@example.com", PASSWORD).status, 401);
    // Without an invitation, sign-up is closed by default.
    assert_eq!(signup("mallory@example.com", None).status, 403);
    assert_eq!(
        signup("carol@example.com", Some("0".repeat(64).as_str())).status,
        403
    );
    let r = signup("Carol@Example.com", Some(token));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(json_of(&r)["admin"], false);
    assert_eq!(login(&s, "carol@example.com", PASSWORD).status, 201);
    // Once.
    assert_eq!(signup("carol@example.com", Some(token)).status, 403);
    // Only administrators invite.
    let carol = json_of(&login(&s, "carol@example.com", PASSWORD))["access_token"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        &s,
        Some(&carol),
        "POST",
        "/kiln/invitations",
        Some(r#"{"email":"dave@example.com"}"#),
    );
    assert_eq!(r.status, 403);
}

/// Who may do what. The matrix below is the spec; the roles are set up to match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    View,
    Deploy,
    Operate,
    Manage,
    Owner,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// An app's endpoint, needing this on the app.
    App(Need),
    /// An add-on's (data) endpoint, needing this on the add-on's app.
    Addon(Need),
    /// Any signed-in user, about themselves.
    Account,
    /// A team's endpoint: members (or admins only).
    Team { admin: bool },
    /// Server administrators only.
    Admin,
    /// No key needed (sign-up, catalogue-free capability URLs carry their own secret).
    Public,
    /// Destroys the app: checked for refusals, and last for the one allowed.
    Destroy,
}

use Need::*;
use Rule::*;

/// Every endpoint of the API with the rule it must follow. A route missing here fails
/// `every_route_is_in_the_matrix`.
const ROUTES: &[(&str, &str, Rule)] = &[
    ("GET", "/account", Account),
    ("GET", "/users/{user}", Account),
    ("GET", "/apps", Account),
    ("POST", "/apps", Account),
    ("GET", "/users/{user}/apps", Account),
    ("GET", "/apps/{app}", App(View)),
    ("PATCH", "/apps/{app}", App(View)),
    ("DELETE", "/apps/{app}", Destroy),
    ("GET", "/apps/{app}/config-vars", App(Deploy)),
    ("PATCH", "/apps/{app}/config-vars", App(Deploy)),
    ("GET", "/apps/{app}/releases", App(View)),
    ("POST", "/apps/{app}/releases", App(Deploy)),
    ("GET", "/apps/{app}/releases/{release}", App(View)),
    (
        "GET",
        "/apps/{app}/releases/{release}/config-vars",
        App(Deploy),
    ),
    ("GET", "/apps/{app}/formation", App(View)),
    ("PATCH", "/apps/{app}/formation", App(Operate)),
    ("GET", "/apps/{app}/formation/{ptype}", App(View)),
    ("PATCH", "/apps/{app}/formation/{ptype}", App(Operate)),
    ("GET", "/apps/{app}/dynos", App(View)),
    ("DELETE", "/apps/{app}/dynos", App(Operate)),
    ("POST", "/apps/{app}/dynos", App(Deploy)),
    ("GET", "/apps/{app}/dynos/{dyno}", App(View)),
    ("DELETE", "/apps/{app}/dynos/{dyno}", App(Operate)),
    ("DELETE", "/apps/{app}/formations/{ptype}", App(Operate)),
    ("GET", "/apps/{app}/builds", App(View)),
    ("GET", "/apps/{app}/builds/{build}", App(View)),
    ("GET", "/build-output/{build}", Public),
    ("GET", "/release-output/{release}", Public),
    ("GET", "/apps/{app}/buildpack-installations", App(View)),
    ("PUT", "/apps/{app}/buildpack-installations", App(Deploy)),
    (
        "POST",
        "/apps/{app}/dynos/{dyno}/actions/stop",
        App(Operate),
    ),
    (
        "POST",
        "/apps/{app}/formations/{ptype}/actions/stop",
        App(Operate),
    ),
    ("POST", "/apps/{app}/log-sessions", App(View)),
    ("GET", "/log-sessions/{id}", Public),
    ("GET", "/attach/{secret}", Public),
    ("GET", "/apps/{app}/sni-endpoints", App(View)),
    ("POST", "/apps/{app}/sni-endpoints", App(Manage)),
    ("GET", "/apps/{app}/sni-endpoints/{endpoint}", App(View)),
    ("PATCH", "/apps/{app}/sni-endpoints/{endpoint}", App(Manage)),
    (
        "DELETE",
        "/apps/{app}/sni-endpoints/{endpoint}",
        App(Manage),
    ),
    ("GET", "/apps/{app}/domains", App(View)),
    ("POST", "/apps/{app}/domains", App(Manage)),
    ("GET", "/apps/{app}/domains/{domain}", App(View)),
    ("DELETE", "/apps/{app}/domains/{domain}", App(Manage)),
    ("GET", "/apps/{app}/log-drains", App(View)),
    ("POST", "/apps/{app}/log-drains", App(Manage)),
    ("GET", "/apps/{app}/log-drains/{drain}", App(View)),
    ("DELETE", "/apps/{app}/log-drains/{drain}", App(Manage)),
    ("POST", "/apps/{app}/acm", App(Manage)),
    ("PATCH", "/apps/{app}/acm", App(Manage)),
    ("DELETE", "/apps/{app}/acm", App(Manage)),
    ("GET", "/addon-services", Account),
    ("GET", "/addon-services/{service}", Account),
    ("GET", "/addon-services/{service}/plans", Account),
    ("GET", "/addon-services/{service}/plans/{plan}", Account),
    ("GET", "/plans/{plan}", Account),
    ("GET", "/addons", Account),
    ("GET", "/users/{user}/addons", Account),
    ("GET", "/addons/{addon}", Addon(View)),
    ("GET", "/addons/{addon}/addon-attachments", Addon(View)),
    ("GET", "/apps/{app}/addons", App(View)),
    ("POST", "/apps/{app}/addons", App(Deploy)),
    ("GET", "/apps/{app}/addons/{addon}", App(View)),
    ("PATCH", "/apps/{app}/addons/{addon}", App(Deploy)),
    ("DELETE", "/apps/{app}/addons/{addon}", App(Deploy)),
    ("GET", "/addon-attachments", Account),
    ("POST", "/addon-attachments", Account),
    ("GET", "/addon-attachments/{id}", Account),
    ("DELETE", "/addon-attachments/{id}", Account),
    ("GET", "/apps/{app}/addon-attachments", App(View)),
    ("GET", "/apps/{app}/addon-attachments/{name}", App(View)),
    ("POST", "/actions/addons/resolve", Account),
    ("POST", "/actions/addon-attachments/resolve", Account),
    ("GET", "/stacks", Account),
    ("GET", "/stacks/{stack}", Account),
    ("GET", "/regions", Account),
    ("GET", "/regions/{region}", Account),
    ("GET", "/apps/{app}/features", App(View)),
    ("GET", "/apps/{app}/features/{feature}", App(View)),
    ("PATCH", "/apps/{app}/features/{feature}", App(Manage)),
    ("GET", "/account/features", Account),
    ("GET", "/account/features/{feature}", Account),
    ("GET", "/apps/{app}/metrics/router", App(View)),
    ("GET", "/apps/{app}/metrics/dynos", App(View)),
    ("GET", "/apps/{app}/sleep", App(View)),
    ("PATCH", "/apps/{app}/sleep", App(Operate)),
    ("GET", "/apps/{app}/schedules", App(View)),
    ("POST", "/apps/{app}/schedules", App(Deploy)),
    ("DELETE", "/apps/{app}/schedules/{id}", App(Deploy)),
    (
        "POST",
        "/apps/{app}/schedules/{id}/actions/run",
        App(Deploy),
    ),
    // Heroku's buildpack registry is public.
    ("GET", "/buildpacks", Public),
    ("GET", "/buildpacks/{buildpack}", Public),
    ("GET", "/buildpacks/{buildpack}/revisions", Public),
    ("GET", "/buildpacks/{buildpack}/readme", Public),
    ("GET", "/client/v11/apps/{app}/transfers", App(View)),
    ("GET", "/client/v11/apps/{app}/transfers/{num}", App(Deploy)),
    (
        "DELETE",
        "/client/v11/apps/{app}/transfers/{num}",
        App(Deploy),
    ),
    (
        "GET",
        "/client/v11/apps/{app}/transfers/{num}/dump",
        App(Deploy),
    ),
    (
        "POST",
        "/client/v11/apps/{app}/transfers/{num}/actions/public-url",
        App(Deploy),
    ),
    ("GET", "/client/v11/databases/{addon}", Addon(View)),
    (
        "POST",
        "/client/v11/databases/{addon}/backups",
        Addon(Deploy),
    ),
    (
        "POST",
        "/client/v11/databases/{addon}/restores",
        Addon(Deploy),
    ),
    ("PUT", "/client/v11/databases/{addon}/reset", Addon(Deploy)),
    (
        "GET",
        "/client/v11/databases/{addon}/activity",
        Addon(Deploy),
    ),
    (
        "POST",
        "/client/v11/databases/{addon}/activity/{pid}/actions/kill",
        Addon(Deploy),
    ),
    ("GET", "/redis/v0/databases/{addon}", Addon(View)),
    ("PATCH", "/redis/v0/databases/{addon}/config", Addon(Deploy)),
    (
        "GET",
        "/client/v11/databases/{addon}/transfer-schedules",
        Addon(View),
    ),
    (
        "POST",
        "/client/v11/databases/{addon}/transfer-schedules",
        Addon(Deploy),
    ),
    (
        "DELETE",
        "/client/v11/databases/{addon}/transfer-schedules/{id}",
        Addon(Deploy),
    ),
    (
        "POST",
        "/postgres/v0/databases/{addon}/credentials_rotation",
        Addon(Deploy),
    ),
    (
        "POST",
        "/redis/v0/databases/{addon}/credentials_rotation",
        Addon(Deploy),
    ),
    ("GET", "/apps/{app}/collaborators", App(View)),
    ("POST", "/apps/{app}/collaborators", App(Manage)),
    ("GET", "/apps/{app}/collaborators/{who}", App(View)),
    ("PATCH", "/apps/{app}/collaborators/{who}", App(Manage)),
    ("DELETE", "/apps/{app}/collaborators/{who}", App(Manage)),
    ("GET", "/teams/apps/{app}/collaborators", App(View)),
    ("POST", "/teams/apps/{app}/collaborators", App(Manage)),
    ("GET", "/teams/apps/{app}/collaborators/{who}", App(View)),
    (
        "PATCH",
        "/teams/apps/{app}/collaborators/{who}",
        App(Manage),
    ),
    (
        "DELETE",
        "/teams/apps/{app}/collaborators/{who}",
        App(Manage),
    ),
    ("GET", "/teams/permissions", Account),
    ("GET", "/teams", Account),
    ("POST", "/teams", Account),
    ("POST", "/teams/apps", Account),
    ("GET", "/teams/apps/{app}", App(View)),
    ("PATCH", "/teams/apps/{app}", App(Owner)),
    ("GET", "/teams/{team}", Team { admin: false }),
    ("GET", "/teams/{team}/features", Team { admin: false }),
    ("GET", "/teams/{team}/apps", Team { admin: false }),
    ("GET", "/teams/{team}/members", Team { admin: false }),
    ("PUT", "/teams/{team}/members", Team { admin: true }),
    ("PATCH", "/teams/{team}/members", Team { admin: true }),
    ("POST", "/teams/{team}/members", Team { admin: true }),
    (
        "DELETE",
        "/teams/{team}/members/{who}",
        Team { admin: true },
    ),
    ("GET", "/teams/{team}/invitations", Team { admin: false }),
    ("GET", "/account/app-transfers", Account),
    ("POST", "/account/app-transfers", Account),
    ("GET", "/account/app-transfers/{id}", Account),
    ("PATCH", "/account/app-transfers/{id}", Account),
    ("DELETE", "/account/app-transfers/{id}", Account),
    ("GET", "/apps/{app}/audit", App(View)),
    ("GET", "/oauth/authorizations", Account),
    ("POST", "/oauth/authorizations", Account),
    ("GET", "/oauth/authorizations/{id}", Account),
    ("PATCH", "/oauth/authorizations/{id}", Account),
    ("DELETE", "/oauth/authorizations/{id}", Account),
    (
        "POST",
        "/oauth/authorizations/{id}/actions/regenerate-tokens",
        Account,
    ),
    ("DELETE", "/oauth/sessions/{id}", Account),
    ("PUT", "/account/password", Account),
    ("GET", "/kiln/users", Admin),
    ("POST", "/kiln/users", Admin),
    ("POST", "/kiln/invitations", Admin),
    ("POST", "/kiln/signup", Public),
];

/// The API's routes as its source declares them: `.route("PATH", get(..).post(..))`.
fn declared_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-api/src");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    common::declared_routes(&files)
}

#[test]
fn every_route_is_in_the_matrix() {
    let declared = declared_routes();
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = declared.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&declared).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a rule in the authorization matrix: {missing:?}\nrules for routes that do not exist: {stale:?}"
    );
    assert!(declared.len() > 100, "{}", declared.len());
}

fn check(failures: &mut Vec<String>, what: String, got: Seen, want: Seen, r: &Response) {
    if got != want {
        failures.push(format!(
            "{what}: want {want:?}, got {got:?} ({} {})",
            r.status,
            r.body.chars().take(160).collect::<String>()
        ));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Allowed,
    Forbidden,
    Hidden,
    Unauthenticated,
}

/// What an answer amounts to. `hidden_as` is the resource a refusal-as-absent names: the app
/// for an app's endpoint, the add-on (or its app) for a data endpoint, the team for a team's.
fn seen_as(r: &Response, hidden_as: &[&str]) -> Seen {
    let v = json_of(r);
    match r.status {
        401 => Seen::Unauthenticated,
        403 => Seen::Forbidden,
        404 if v["resource"]
            .as_str()
            .is_some_and(|res| hidden_as.contains(&res)) =>
        {
            Seen::Hidden
        }
        _ => Seen::Allowed,
    }
}

fn seen(r: &Response) -> Seen {
    seen_as(r, &["app"])
}

struct Role {
    name: &'static str,
    key: String,
    /// The app it is tested on (personal or team) and what it holds there.
    app: &'static str,
    holds: &'static [Need],
    team: Option<bool>,
}

fn fill(path: &str, app: &str, addon: &str, team: &str) -> String {
    path.replace("{app}", app)
        .replace("{addon}", addon)
        .replace("{team}", team)
        .replace("{release}", "1")
        .replace("{ptype}", "web")
        .replace("{dyno}", "web.1")
        .replace("{build}", "00000000-0000-4000-8000-000000000001")
        .replace("{endpoint}", "00000000-0000-4000-8000-000000000002")
        .replace("{domain}", "nope.example.com")
        .replace("{drain}", "d.00000000-0000-4000-8000-000000000004")
        .replace("{feature}", "preboot")
        .replace("{name}", "NOPE")
        .replace("{num}", "999")
        .replace("{pid}", "1")
        .replace("{who}", "nobody@example.com")
        .replace("{id}", "00000000-0000-4000-8000-000000000003")
        .replace("{secret}", &"0".repeat(64))
        .replace("{user}", "~")
        .replace("{service}", "heroku-redis")
        .replace("{plan}", "heroku-redis:mini")
        .replace("{stack}", "heroku-24")
        .replace("{region}", "local")
        .replace("{buildpack}", "heroku%2Fpython")
}

#[test]
fn the_authorization_matrix_holds_for_every_endpoint_and_role() {
    let s = Server::start("tenancy-matrix");
    let owner = user(&s, "owner@example.com");
    ok_json(&s, &owner, "POST", "/apps", json!({ "name": "matrix-p" }));
    let mut roles = vec![Role {
        name: "owner",
        key: owner.clone(),
        app: "matrix-p",
        holds: &[View, Deploy, Operate, Manage, Owner],
        team: None,
    }];
    let collabs: [(&str, Option<&[&str]>, &[Need]); 5] = [
        ("collab", None, &[View, Deploy, Operate, Manage]),
        ("collab-view", Some(&["view"]), &[View]),
        ("collab-deploy", Some(&["deploy"]), &[View, Deploy]),
        ("collab-operate", Some(&["operate"]), &[View, Operate]),
        ("collab-manage", Some(&["manage"]), &[View, Manage]),
    ];
    for (name, perms, holds) in collabs {
        let email = format!("{name}@example.com");
        let key = user(&s, &email);
        let mut body = json!({ "user": email });
        if let Some(p) = perms {
            body["permissions"] = json!(p);
        }
        ok_json(&s, &owner, "POST", "/apps/matrix-p/collaborators", body);
        roles.push(Role {
            name,
            key,
            app: "matrix-p",
            holds,
            team: None,
        });
    }
    let admin = user(&s, "team-admin@example.com");
    ok_json(
        &s,
        &admin,
        "POST",
        "/teams",
        json!({ "name": "matrix-team" }),
    );
    ok_json(
        &s,
        &admin,
        "POST",
        "/teams/apps",
        json!({ "name": "matrix-t", "team": "matrix-team" }),
    );
    roles.push(Role {
        name: "team-admin",
        key: admin.clone(),
        app: "matrix-t",
        holds: &[View, Deploy, Operate, Manage, Owner],
        team: Some(true),
    });
    for (name, role, grant, holds) in [
        ("team-member", "member", None, &[View][..]),
        ("team-viewer", "viewer", None, &[View][..]),
        (
            "team-deployer",
            "member",
            Some("deploy"),
            &[View, Deploy][..],
        ),
    ] {
        let email = format!("{name}@example.com");
        let key = user(&s, &email);
        ok_json(
            &s,
            &admin,
            "PUT",
            "/teams/matrix-team/members",
            json!({ "email": email, "role": role }),
        );
        if let Some(g) = grant {
            ok_json(
                &s,
                &admin,
                "POST",
                "/teams/apps/matrix-t/collaborators",
                json!({ "user": email, "permissions": [g] }),
            );
        }
        roles.push(Role {
            name,
            key,
            app: "matrix-t",
            holds,
            team: Some(false),
        });
    }
    let stranger = user(&s, "stranger@example.com");
    // A real add-on for the data endpoints (Redis starts in a blink).
    let redis = ok_json(
        &s,
        &owner,
        "POST",
        "/apps/matrix-p/addons",
        json!({ "plan": "heroku-redis:mini" }),
    );
    let redis = redis["name"].as_str().unwrap().to_string();
    // A revoked key: made and revoked by the owner.
    let made = ok_json(&s, &owner, "POST", "/oauth/authorizations", json!({}));
    let revoked = made["access_token"]["token"].as_str().unwrap().to_string();
    ok_json(
        &s,
        &owner,
        "DELETE",
        &format!("/oauth/authorizations/{}", made["id"].as_str().unwrap()),
        Value::Null,
    );

    let mut failures = Vec::new();
    for &(method, path, rule) in ROUTES {
        let body = matches!(method, "POST" | "PATCH" | "PUT").then_some("{}");
        // No key and a revoked key: refused alike, except where no key is needed.
        for (who, key) in [("no key", None), ("revoked key", Some(revoked.as_str()))] {
            let p = fill(path, "matrix-p", &redis, "matrix-team");
            let r = call(&s, key, method, &p, body);
            let want = if matches!(rule, Public) {
                seen(&r)
            } else {
                Seen::Unauthenticated
            };
            check(
                &mut failures,
                format!("{method} {path} as {who}"),
                seen(&r),
                want,
                &r,
            );
            if matches!(rule, Public) && key.is_none() {
                check(
                    &mut failures,
                    format!("{method} {path} as {who} (not 401)"),
                    Seen::Allowed,
                    if r.status == 401 {
                        Seen::Unauthenticated
                    } else {
                        Seen::Allowed
                    },
                    &r,
                );
            }
        }
        match rule {
            App(need) | Addon(need) => {
                let addon_rule = matches!(rule, Addon(_));
                let hidden_as: &[&str] = if addon_rule {
                    &["add-on", "app"]
                } else {
                    &["app"]
                };
                // An app's endpoint names no real add-on (an allowed DELETE would destroy it);
                // a data endpoint names the real one, whose operations are harmless here.
                let addon = if addon_rule {
                    redis.as_str()
                } else {
                    "no-such-addon"
                };
                for role in &roles {
                    if addon_rule && role.app != "matrix-p" {
                        continue;
                    }
                    let p = fill(path, role.app, addon, "matrix-team");
                    let r = call(&s, Some(&role.key), method, &p, body);
                    let want = if role.holds.contains(&need) {
                        Seen::Allowed
                    } else {
                        Seen::Forbidden
                    };
                    check(
                        &mut failures,
                        format!("{method} {path} as {}", role.name),
                        seen_as(&r, hidden_as),
                        want,
                        &r,
                    );
                }
                // A stranger is told the app does not exist, exactly as for a missing app.
                for app in ["matrix-p", "matrix-t"] {
                    let p = fill(path, app, addon, "matrix-team");
                    let r = call(&s, Some(&stranger), method, &p, body);
                    check(
                        &mut failures,
                        format!("{method} {path} on {app} as stranger"),
                        seen_as(&r, hidden_as),
                        Seen::Hidden,
                        &r,
                    );
                    let missing = call(
                        &s,
                        Some(&stranger),
                        method,
                        &fill(path, "no-such-app", "no-such-addon", "matrix-team"),
                        body,
                    );
                    if (r.status, json_of(&r)["message"].clone())
                        != (missing.status, json_of(&missing)["message"].clone())
                    {
                        failures.push(format!("{method} {path}: a stranger tells {app} from a missing app: {} {} vs {} {}", r.status, r.body, missing.status, missing.body));
                    }
                }
            }
            Team { admin: admin_only } => {
                for role in roles.iter().filter(|r| r.team.is_some()) {
                    let p = fill(path, "matrix-t", &redis, "matrix-team");
                    let r = call(&s, Some(&role.key), method, &p, body);
                    let want = if admin_only && role.team != Some(true) {
                        Seen::Forbidden
                    } else {
                        Seen::Allowed
                    };
                    check(
                        &mut failures,
                        format!("{method} {path} as {}", role.name),
                        seen_as(&r, &["team"]),
                        want,
                        &r,
                    );
                }
                let r = call(
                    &s,
                    Some(&stranger),
                    method,
                    &fill(path, "matrix-t", "x", "matrix-team"),
                    body,
                );
                check(
                    &mut failures,
                    format!("{method} {path} as stranger"),
                    seen_as(&r, &["team"]),
                    Seen::Hidden,
                    &r,
                );
            }
            Admin => {
                let r = call(&s, Some(&stranger), method, path, body);
                check(
                    &mut failures,
                    format!("{method} {path} as a user"),
                    seen(&r),
                    Seen::Forbidden,
                    &r,
                );
                let r = call(&s, Some(&s.key), method, path, body);
                check(
                    &mut failures,
                    format!("{method} {path} as the admin"),
                    seen(&r),
                    Seen::Allowed,
                    &r,
                );
            }
            Account => {
                let p = fill(path, "matrix-p", &redis, "matrix-team");
                let r = call(&s, Some(&stranger), method, &p, body);
                if r.status == 401 || r.status >= 500 {
                    failures.push(format!(
                        "{method} {path} as a user: {} {}",
                        r.status, r.body
                    ));
                }
            }
            Public => {}
            Destroy => {
                for role in roles.iter().filter(|r| !r.holds.contains(&Owner)) {
                    let r = call(
                        &s,
                        Some(&role.key),
                        method,
                        &fill(path, role.app, "", ""),
                        body,
                    );
                    check(
                        &mut failures,
                        format!("{method} {path} as {}", role.name),
                        seen(&r),
                        Seen::Forbidden,
                        &r,
                    );
                }
                for app in ["matrix-p", "matrix-t"] {
                    let r = call(&s, Some(&stranger), method, &fill(path, app, "", ""), body);
                    check(
                        &mut failures,
                        format!("{method} {path} on {app} as stranger"),
                        seen(&r),
                        Seen::Hidden,
                        &r,
                    );
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} authorization failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Last, the ones allowed to destroy.
    assert_eq!(
        call(&s, Some(&admin), "DELETE", "/apps/matrix-t", None).status,
        200
    );
    assert_eq!(
        call(&s, Some(&owner), "DELETE", "/apps/matrix-p", None).status,
        200
    );
}

#[test]
fn tenants_cannot_reach_each_others_objects_by_id() {
    let s = Server::start("tenancy-idor");
    let alice = user(&s, "alice@example.com");
    let bob = user(&s, "bob@example.com");
    ok_json(&s, &alice, "POST", "/apps", json!({ "name": "alice-app" }));
    ok_json(&s, &bob, "POST", "/apps", json!({ "name": "bob-app" }));
    ok_json(
        &s,
        &alice,
        "POST",
        "/apps/alice-app/domains",
        json!({ "hostname": "www.alice.example.com" }),
    );
    let release = ok_json(&s, &alice, "GET", "/apps/alice-app/releases/1", Value::Null);
    let release_id = release["id"].as_str().unwrap();
    let app_id = ok_json(&s, &alice, "GET", "/apps/alice-app", Value::Null)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let team = ok_json(
        &s,
        &alice,
        "POST",
        "/teams",
        json!({ "name": "alice-team" }),
    );
    // Bob, through his own app's paths or by id, reaches none of Alice's objects.
    for path in [
        format!("/apps/{app_id}"),
        format!("/apps/bob-app/releases/{release_id}"),
        "/apps/bob-app/domains/www.alice.example.com".into(),
        format!("/apps/{app_id}/domains/www.alice.example.com"),
        format!("/teams/{}", team["id"].as_str().unwrap()),
        "/teams/alice-team/members".into(),
        "/teams/alice-team/apps".into(),
    ] {
        let r = call(&s, Some(&bob), "GET", &path, None);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    // Alice's keys are not Bob's to see, change or revoke.
    let alices = ok_json(&s, &alice, "GET", "/oauth/authorizations", Value::Null);
    let id = alices[0]["id"].as_str().unwrap();
    for (m, p) in [
        ("GET", format!("/oauth/authorizations/{id}")),
        ("PATCH", format!("/oauth/authorizations/{id}")),
        ("DELETE", format!("/oauth/authorizations/{id}")),
        (
            "POST",
            format!("/oauth/authorizations/{id}/actions/regenerate-tokens"),
        ),
    ] {
        let r = call(&s, Some(&bob), m, &p, Some("{}"));
        assert_eq!(r.status, 404, "{m} {p}: {}", r.body);
    }
    assert_eq!(call(&s, Some(&alice), "GET", "/account", None).status, 200);
    // A member cannot make themselves an admin.
    let carol = user(&s, "carol@example.com");
    ok_json(
        &s,
        &alice,
        "PUT",
        "/teams/alice-team/members",
        json!({ "email": "carol@example.com", "role": "member" }),
    );
    let r = call(
        &s,
        Some(&carol),
        "PATCH",
        "/teams/alice-team/members",
        Some(r#"{"email":"carol@example.com","role":"admin"}"#),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let members = ok_json(&s, &carol, "GET", "/teams/alice-team/members", Value::Null);
    assert!(
        members.to_string().contains(r#""role":"member""#),
        "{members}"
    );
    // A transfer offered to Carol is not Bob's to accept.
    let t = ok_json(
        &s,
        &alice,
        "POST",
        "/account/app-transfers",
        json!({ "app": "alice-app", "recipient": "carol@example.com" }),
    );
    assert_eq!(t["state"], "pending");
    let tid = t["id"].as_str().unwrap();
    let r = call(
        &s,
        Some(&bob),
        "PATCH",
        &format!("/account/app-transfers/{tid}"),
        Some(r#"{"state":"accepted"}"#),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // Alice cannot accept on Carol's behalf either.
    let r = call(
        &s,
        Some(&alice),
        "PATCH",
        &format!("/account/app-transfers/{tid}"),
        Some(r#"{"state":"accepted"}"#),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    ok_json(
        &s,
        &carol,
        "PATCH",
        &format!("/account/app-transfers/{tid}"),
        json!({ "state": "accepted" }),
    );
    let app = ok_json(&s, &carol, "GET", "/apps/alice-app", Value::Null);
    assert_eq!(app["owner"]["email"], "carol@example.com");
    assert_eq!(
        call(&s, Some(&alice), "GET", "/apps/alice-app", None).status,
        404
    );
    // The audit log says who did what.
    let audit = ok_json(&s, &carol, "GET", "/apps/alice-app/audit", Value::Null);
    let text = audit.to_string();
    assert!(
        text.contains("Transfer to carol@example.com requested")
            && text.contains("alice@example.com"),
        "{text}"
    );
    assert!(
        text.contains("Transfer to carol@example.com accepted"),
        "{text}"
    );
}

#[test]
fn no_such_app_and_not_yours_cannot_be_told_apart() {
    let s = Server::start("tenancy-timing");
    let alice = user(&s, "alice@example.com");
    let mallory = user(&s, "mallory@example.com");
    ok_json(&s, &alice, "POST", "/apps", json!({ "name": "secret-app" }));
    let a = call(&s, Some(&mallory), "GET", "/apps/secret-app", None);
    let b = call(&s, Some(&mallory), "GET", "/apps/nothing-here", None);
    assert_eq!((a.status, &a.body), (b.status, &b.body));
    // Timing: interleaved samples, medians compared. The two paths run the same query and
    // nothing else, so only noise separates them; a lookup that did more work for existing
    // apps would show as a steady gap.
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for _ in 0..150 {
        for app in ["secret-app", "nothing-here"] {
            let t = Instant::now();
            call(
                &s,
                Some(&mallory),
                "GET",
                &format!("/apps/{app}/config-vars"),
                None,
            );
            times.entry(app).or_default().push(t.elapsed());
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (x, y) = (
        median(times.get_mut("secret-app").unwrap()),
        median(times.get_mut("nothing-here").unwrap()),
    );
    let ratio = x.as_secs_f64() / y.as_secs_f64();
    assert!(
        (0.67..1.5).contains(&ratio),
        "median {x:?} for a hidden app against {y:?} for a missing one"
    );
}

/// `git ls-remote` (upload-pack, which `git push` starts with too) as a user.
fn ls_remote(s: &Server, app: &str, key: &str) -> (bool, String) {
    let out = common::git(&s.dir)
        .args(["ls-remote", &s.git_url(app, key)])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn git_log_tails_and_attach_follow_the_same_rules() {
    let s = Server::start("tenancy-doors");
    let alice = user(&s, "alice@example.com");
    let viewer = user(&s, "viewer@example.com");
    let deployer = user(&s, "deployer@example.com");
    let stranger = user(&s, "stranger@example.com");
    ok_json(&s, &alice, "POST", "/apps", json!({ "name": "doors" }));
    for (email, p) in [
        ("viewer@example.com", "view"),
        ("deployer@example.com", "deploy"),
    ] {
        ok_json(
            &s,
            &alice,
            "POST",
            "/apps/doors/collaborators",
            json!({ "user": email, "permissions": [p] }),
        );
    }
    // git: the deploy permission fetches and pushes; a viewer is refused; a stranger is
    // told there is no such app, as for one that does not exist.
    assert!(ls_remote(&s, "doors", &alice).0);
    assert!(ls_remote(&s, "doors", &deployer).0);
    let (ok, err) = ls_remote(&s, "doors", &viewer);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, hidden) = ls_remote(&s, "doors", &stranger);
    let (_, missing) = ls_remote(&s, "no-such-app", &stranger);
    assert!(!ok && hidden.contains("not found"), "{hidden}");
    assert_eq!(
        hidden.replace("doors", "X"),
        missing.replace("no-such-app", "X")
    );

    // A push by the viewer is refused before anything is received.
    let repo = common::fixture_repo(
        "tenancy-push",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("requirements.txt", ""),
        ],
    );
    let (ok, out) = s.push_with_key(&repo, "doors", &viewer);
    assert!(!ok && out.contains("deploy permission"), "{out}");
    let (ok, out) = s.push_with_key(&repo, "doors", &stranger);
    assert!(!ok && out.contains("not found"), "{out}");

    // run: a viewer may not start a one-off; a stranger does not see the app.
    let body = r#"{"command":"true","attach":true}"#;
    assert_eq!(
        call(&s, Some(&viewer), "POST", "/apps/doors/dynos", Some(body)).status,
        403
    );
    assert_eq!(
        call(&s, Some(&stranger), "POST", "/apps/doors/dynos", Some(body)).status,
        404
    );

    // A tail ends as soon as its key is revoked, and as soon as its user loses access.
    let tail = |key: &str| -> String {
        let r = call(
            &s,
            Some(key),
            "POST",
            "/apps/doors/log-sessions",
            Some(r#"{"tail":true,"lines":1}"#),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let url = json_of(&r)["logplex_url"].as_str().unwrap().to_string();
        url.split_once("/log-sessions/").unwrap().1.to_string()
    };
    let follow = |id: String| {
        let port = s.api_port();
        std::thread::spawn(move || {
            let started = Instant::now();
            let req = format!(
                "GET /log-sessions/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            let (_, closed) = kiln_testkit::http::exchange(
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                req.as_bytes(),
                Duration::from_secs(20),
            );
            (closed, started.elapsed())
        })
    };
    let made = ok_json(
        &s,
        &deployer,
        "POST",
        "/oauth/authorizations",
        json!({ "description": "tail" }),
    );
    let tail_key = made["access_token"]["token"].as_str().unwrap().to_string();
    let (key_session, access_session) = (tail(&tail_key), tail(&viewer));
    let by_key = follow(key_session.clone());
    let by_access = follow(access_session.clone());
    std::thread::sleep(Duration::from_millis(500)); // both streams are open (no event to wait on from here)
    ok_json(
        &s,
        &deployer,
        "DELETE",
        &format!("/oauth/authorizations/{}", made["id"].as_str().unwrap()),
        Value::Null,
    );
    ok_json(
        &s,
        &alice,
        "DELETE",
        "/apps/doors/collaborators/viewer@example.com",
        Value::Null,
    );
    for (what, h) in [("revoked key", by_key), ("removed collaborator", by_access)] {
        let (closed, took) = h.join().unwrap();
        // It was open until the revocation (half a second in), and not for long after.
        assert!(
            closed && took >= Duration::from_millis(400) && took < Duration::from_secs(10),
            "{what}: the tail ended after {took:?}"
        );
    }
    // A one-off dyno attached with a key ends when the key is revoked.
    let (ok, out) = s.push_with_key(&repo, "doors", &alice);
    assert!(ok, "{out}");
    let made = ok_json(
        &s,
        &deployer,
        "POST",
        "/oauth/authorizations",
        json!({ "description": "run" }),
    );
    let run_key = made["access_token"]["token"].as_str().unwrap().to_string();
    let mut run = std::process::Command::new(common::KILN)
        .args(["run", "-a", "doors", "--no-tty", "--", "sleep", "300"])
        .env("KILN_API_URL", &s.api_url)
        .env("KILN_API_KEY", &run_key)
        .env("HOME", s.home())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kiln_testkit::wait_for(Duration::from_secs(60), "the one-off dyno to run", || {
        let dynos = ok_json(&s, &alice, "GET", "/apps/doors/dynos", Value::Null);
        dynos
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["type"] == "run" && d["state"] == "up")
            .then_some(())
    });
    let revoked_at = Instant::now();
    ok_json(
        &s,
        &deployer,
        "DELETE",
        &format!("/oauth/authorizations/{}", made["id"].as_str().unwrap()),
        Value::Null,
    );
    let status = kiln_testkit::wait_for(Duration::from_secs(20), "kiln run to end", || {
        run.try_wait().unwrap()
    });
    assert!(
        !status.success() && revoked_at.elapsed() < Duration::from_secs(15),
        "{status:?}"
    );
    kiln_testkit::wait_for(Duration::from_secs(20), "the one-off dyno to go", || {
        let dynos = ok_json(&s, &alice, "GET", "/apps/doors/dynos", Value::Null);
        (!dynos.as_array().unwrap().iter().any(|d| d["type"] == "run")).then_some(())
    });

    // Nor can either be reopened by its URL.
    for id in [key_session, access_session] {
        let r = call(&s, None, "GET", &format!("/log-sessions/{id}"), None);
        assert_eq!(r.status, 404, "{}", r.body);
    }
}

#[test]
fn a_copy_of_the_database_holds_no_secret_in_clear() {
    // With the HTTPS listener, whose certificate comes from the local CA (made at start).
    let mut s = Server::start_with("tenancy-sealed", &["--api-tls-listen", "127.0.0.1:0"]);
    ok_json(&s, &s.key, "POST", "/apps", json!({ "name": "sealed" }));
    ok_json(
        &s,
        &s.key,
        "PATCH",
        "/apps/sealed/config-vars",
        json!({ "STRIPE_KEY": "sk_live_config_value_4711" }),
    );
    let addon = ok_json(
        &s,
        &s.key,
        "POST",
        "/apps/sealed/addons",
        json!({ "plan": "heroku-redis:mini" }),
    );
    let config = ok_json(&s, &s.key, "GET", "/apps/sealed/config-vars", Value::Null);
    let redis_url = config["REDIS_URL"].as_str().unwrap().to_string();
    let password = redis_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo.trim_start_matches(':').to_string())
        .unwrap();
    assert!(password.len() >= 16, "{redis_url} ({addon})");
    let (chain, key) = kiln_tls::self_signed(&["www.sealed.example.com"]).unwrap();
    ok_json(
        &s,
        &s.key,
        "POST",
        "/apps/sealed/sni-endpoints",
        json!({ "certificate_chain": chain, "private_key": key }),
    );
    // A copy taken while it runs: every commit is in the file or its WAL.
    let mut bytes = Vec::new();
    for f in ["kiln.db", "kiln.db-wal"] {
        if let Ok(b) = std::fs::read(s.dir.join("data").join(f)) {
            bytes.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    // The key's base64 body, line by line (a page could split the PEM, not a line).
    let key_lines: Vec<&str> = key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .collect();
    assert!(!key_lines.is_empty());
    for secret in ["sk_live_config_value_4711", password.as_str()]
        .into_iter()
        .chain(key_lines)
    {
        assert!(
            !text.contains(secret),
            "{secret:?} is in the database file in clear"
        );
    }
    // Private keys on disk are sealed too (the local CA's is made at start).
    let ca_key = std::fs::read_to_string(s.dir.join("data/tls/ca.key")).unwrap();
    assert!(
        ca_key.starts_with("kiln-sealed v1\n") && !ca_key.contains("PRIVATE KEY"),
        "{ca_key}"
    );
    // The server comes back with the key file and opens them.
    s.crash_and_restart(&[]);
    let config = ok_json(&s, &s.key, "GET", "/apps/sealed/config-vars", Value::Null);
    assert_eq!(config["STRIPE_KEY"], "sk_live_config_value_4711");
}

/// The kiln CLI as someone with their own home (and `~/.netrc`), stdin given.
fn kiln_as(s: &Server, home: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(common::KILN)
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("KILN_API_URL", &s.api_url)
        .env_remove("KILN_API_KEY")
        .env_remove("KILN_APP")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_kiln_cli_manages_users_keys_collaborators_and_teams() {
    let s = Server::start("tenancy-cli");
    let home = |who: &str| {
        let h = s.dir.join(format!("home-{who}"));
        std::fs::create_dir_all(&h).unwrap();
        h
    };
    let (root, ada, bob) = (home("root"), home("ada"), home("bob"));
    let run = |h: &std::path::Path, args: &[&str], stdin: &str| {
        let (ok, out) = kiln_as(&s, h, args, stdin);
        assert!(ok, "kiln {args:?}: {out}");
        out
    };
    run(&root, &["login", "--key"], &format!("{}\n", s.key));
    run(
        &root,
        &["users:create", "ada@example.com"],
        &format!("{PASSWORD}\n"),
    );
    run(
        &root,
        &["users:create", "bob@example.com"],
        &format!("{PASSWORD}\n"),
    );
    let out = run(&root, &["users"], "");
    assert!(
        out.contains("ada@example.com") && out.contains("admin@kiln.local"),
        "{out}"
    );
    let invite = run(&root, &["users:invite", "carol@example.com"], "");
    let command = invite
        .lines()
        .find(|l| l.contains("kiln signup"))
        .unwrap()
        .trim();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let carol = home("carol");
    run(&carol, &args, &format!("{PASSWORD}\n"));

    // A wrong password is refused; the right one logs in.
    let (ok, out) = kiln_as(
        &s,
        &ada,
        &["login", "--email", "ada@example.com"],
        "nope nope nope\n",
    );
    assert!(!ok && out.contains("Invalid credentials"), "{out}");
    let out = run(
        &ada,
        &["login", "--email", "ada@example.com"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.contains("Logged in as ada@example.com"), "{out}");
    run(
        &bob,
        &["login", "--email", "bob@example.com"],
        &format!("{PASSWORD}\n"),
    );
    run(
        &carol,
        &["login", "--email", "carol@example.com"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(run(&ada, &["auth:whoami"], "").trim(), "ada@example.com");

    run(&ada, &["apps:create", "ada-app", "--no-remote"], "");
    let (ok, out) = kiln_as(&s, &bob, &["config", "-a", "ada-app"], "");
    assert!(!ok && out.contains("Couldn't find that app"), "{out}");
    run(
        &ada,
        &[
            "access:add",
            "bob@example.com",
            "-a",
            "ada-app",
            "-p",
            "operate",
        ],
        "",
    );
    let out = run(&ada, &["access", "-a", "ada-app"], "");
    assert!(
        out.contains("bob@example.com") && out.contains("collaborator"),
        "{out}"
    );
    // Bob may scale (operate) but not read config vars (deploy).
    let (ok, out) = kiln_as(&s, &bob, &["config", "-a", "ada-app"], "");
    assert!(!ok && out.contains("deploy permission"), "{out}");
    run(
        &ada,
        &[
            "access:update",
            "bob@example.com",
            "-a",
            "ada-app",
            "-p",
            "deploy",
        ],
        "",
    );
    run(&bob, &["config:set", "FROM_BOB=1", "-a", "ada-app"], "");
    let audit = run(&ada, &["audit", "-a", "ada-app"], "");
    assert!(
        audit.contains("Add bob@example.com (view, operate)"),
        "{audit}"
    );

    run(&ada, &["teams:create", "ada-team"], "");
    run(
        &ada,
        &[
            "members:add",
            "carol@example.com",
            "-t",
            "ada-team",
            "--role",
            "viewer",
        ],
        "",
    );
    let out = run(&carol, &["teams"], "");
    assert!(out.contains("ada-team") && out.contains("viewer"), "{out}");
    run(
        &ada,
        &["apps:create", "team-app", "-t", "ada-team", "--no-remote"],
        "",
    );
    let out = run(&carol, &["apps"], "");
    assert!(
        out.contains("team-app") && out.contains("ada-team@herokumanager.com"),
        "{out}"
    );
    let (ok, out) = kiln_as(&s, &carol, &["ps:scale", "web=0", "-a", "team-app"], "");
    assert!(!ok && out.contains("operate permission"), "{out}");

    let made = run(&ada, &["authorizations:create", "-d", "ci", "-S"], "");
    let id = {
        let list = run(&ada, &["authorizations", "--json"], "");
        let v: Value = serde_json::from_str(&list).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|a| a["description"] == "ci")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        call(&s, Some(made.trim()), "GET", "/account", None).status,
        200
    );
    run(&ada, &["authorizations:revoke", &id], "");
    assert_eq!(
        call(&s, Some(made.trim()), "GET", "/account", None).status,
        401
    );
    run(&ada, &["logout"], "");
    let (ok, _) = kiln_as(&s, &ada, &["apps"], "");
    assert!(!ok, "logged out");
}

#[test]
fn hostile_input_to_the_sharing_endpoints_is_refused_and_changes_nothing() {
    let s = Server::start("tenancy-hostile");
    let ada = user(&s, "ada@example.com");
    user(&s, "bob@example.com");
    ok_json(&s, &ada, "POST", "/apps", json!({ "name": "ada-app" }));
    ok_json(&s, &ada, "POST", "/teams", json!({ "name": "ada-team" }));
    let long = "a".repeat(300);
    let refused = |method: &str, path: &str, body: &str| {
        let r = call(&s, Some(&ada), method, path, Some(body));
        assert!(
            matches!(r.status, 400 | 404 | 409 | 413 | 422),
            "{method} {path} {body}: {} {}",
            r.status,
            r.body
        );
        assert!(
            json_of(&r)["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            r.body
        );
    };
    for body in [
        r#"{}"#.to_string(),
        r#"{"name":""}"#.into(),
        r#"{"name":"Admin"}"#.into(),
        r#"{"name":"apps"}"#.into(),
        r#"{"name":"../etc"}"#.into(),
        r#"{"name":"équipe"}"#.into(),
        r#"{"name":123}"#.into(),
        format!(r#"{{"name":"{long}"}}"#),
        r#"{"name":"ada-team"}"#.into(),
        "not json".into(),
    ] {
        refused("POST", "/teams", &body);
    }
    for body in [
        r#"{}"#.to_string(),
        r#"{"user":""}"#.into(),
        format!(r#"{{"user":"{long}@example.com"}}"#),
        r#"{"user":{"email":5}}"#.into(),
        r#"{"user":[]}"#.into(),
        r#"{"user":"bob@example.com","permissions":["root"]}"#.into(),
        r#"{"user":"bob@example.com","permissions":"deploy"}"#.into(),
        r#"{"user":"bob@example.com","permissions":["view\u0000"]}"#.into(),
        r#"{"user":"bob@example.com","silent":"yes"}"#.into(),
        r#"{"user":"nobody@example.com"}"#.into(),
        r#"{"user":"ada@example.com"}"#.into(),
    ] {
        refused("POST", "/apps/ada-app/collaborators", &body);
    }
    for body in [
        r#"{"email":"bob@example.com","role":"owner"}"#,
        r#"{"email":"bob@example.com"}"#,
        r#"{"role":"member"}"#,
        r#"{"email":"nobody@example.com","role":"member"}"#,
    ] {
        refused("PUT", "/teams/ada-team/members", body);
    }
    for body in [
        r#"{"app":"ada-app"}"#,
        r#"{"app":"ada-app","recipient":"not-an-email"}"#,
    ] {
        refused("POST", "/account/app-transfers", body);
    }
    refused(
        "PATCH",
        "/account/app-transfers/nope",
        r#"{"state":"maybe"}"#,
    );
    for body in [
        r#"{"email":"x@example.com","password":"short"}"#.to_string(),
        format!(
            r#"{{"email":"x@example.com","password":"{}"}}"#,
            "p".repeat(2000)
        ),
        r#"{"email":"not an email","password":"long enough password"}"#.into(),
    ] {
        let r = call(&s, None, "POST", "/kiln/signup", Some(&body));
        assert!(
            matches!(r.status, 403 | 422),
            "{body}: {} {}",
            r.status,
            r.body
        );
    }
    // Nothing was made or changed.
    let collabs = ok_json(&s, &ada, "GET", "/apps/ada-app/collaborators", Value::Null);
    assert_eq!(collabs.as_array().unwrap().len(), 1, "{collabs}");
    let teams = ok_json(&s, &ada, "GET", "/teams", Value::Null);
    assert_eq!(teams.as_array().unwrap().len(), 1, "{teams}");
    let members = ok_json(&s, &ada, "GET", "/teams/ada-team/members", Value::Null);
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");
    assert!(
        ok_json(&s, &ada, "GET", "/account/app-transfers", Value::Null)
            .as_array()
            .unwrap()
            .is_empty()
    );
}
