//! The dashboard: in a real browser (headless Chromium driven by Playwright, the script in
//! `tests/browser/dashboard.cjs`), and over plain HTTP for what a browser cannot be made to
//! do: the authorization matrix over every dashboard route (read from its route table),
//! forms without a CSRF token, sessions that must end, secrets that must not show, and
//! hostile input.

mod common;

use common::{JsonBody, KILN, Server, fixture_repo};
use kiln_testkit::http::{Response, exchange, parse_response};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

fn create_user(s: &Server, email: &str) {
    let body = format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#);
    let r = s.api("POST", "/kiln/users", Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
}

/// One request to the API's listener, with an optional form body.
fn send(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<(&str, &str)>,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((ctype, body)) = form {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], s.api_port()));
    parse_response(&exchange(addr, req.as_bytes(), Duration::from_secs(60)).0)
}

fn encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| -> String {
                s.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn cookie_of<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn attr_after<'a>(body: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &body[body.find(marker)? + marker.len()..];
    rest.split('"').next()
}

/// A signed-in browser, as far as HTTP is concerned: its session cookie and CSRF token.
#[derive(Clone)]
struct Browser {
    cookie: String,
    csrf: String,
}

fn sign_in(s: &Server, email: &str, password: &str) -> Result<Browser, Response> {
    let form = send(s, "GET", "/dashboard/login", &[], None);
    assert_eq!(form.status, 200, "{}", form.body);
    let pre = cookie_of(&form, "kiln_login")
        .expect("login cookie")
        .to_string();
    let token = attr_after(&form.body, r#"name="_csrf" value=""#)
        .unwrap()
        .to_string();
    let cookie = format!("kiln_login={pre}");
    let r = send(
        s,
        "POST",
        "/dashboard/login",
        &[("Cookie", &cookie)],
        Some((
            "application/x-www-form-urlencoded",
            &encode(&[
                ("_csrf", &token),
                ("email", email),
                ("password", password),
                ("next", "/dashboard"),
            ]),
        )),
    );
    if r.status != 303 {
        return Err(r);
    }
    let session = cookie_of(&r, "kiln_session").expect("session cookie");
    let set = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("kiln_session="))
        .unwrap();
    assert!(
        set.1.contains("HttpOnly") && set.1.contains("SameSite=Lax"),
        "{}",
        set.1
    );
    let cookie = format!("kiln_session={session}");
    let page = send(s, "GET", "/dashboard", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = attr_after(&page.body, r#"<meta name="csrf-token" content=""#)
        .unwrap()
        .to_string();
    Ok(Browser { cookie, csrf })
}

impl Browser {
    fn get(&self, s: &Server, path: &str) -> Response {
        send(s, "GET", path, &[("Cookie", &self.cookie)], None)
    }

    fn post(&self, s: &Server, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut all = vec![("_csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        send(
            s,
            "POST",
            path,
            &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)],
            Some(("application/x-www-form-urlencoded", &encode(&all))),
        )
    }

    fn post_without_csrf(&self, s: &Server, path: &str, fields: &[(&str, &str)]) -> Response {
        send(
            s,
            "POST",
            path,
            &[("Cookie", &self.cookie)],
            Some(("application/x-www-form-urlencoded", &encode(fields))),
        )
    }
}

fn signed_out(r: &Response) -> bool {
    r.status == 303
        && r.header("location")
            .is_some_and(|l| l.starts_with("/dashboard/login"))
}

/// A buildpack that builds nothing, slowly: ten steps half a second apart, so a watcher sees
/// the output while the build runs. The app runs as the Procfile says, on the stack's Python.
fn slow_buildpack(root: &Path) -> PathBuf {
    common::script_buildpack(
        root,
        "Slow",
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo \"-----> slow step $i\"; sleep 0.5; done\n",
    )
}

fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/browser/node_modules/playwright-core");
    let chromium = PathBuf::from("/usr/bin/chromium");
    (root.is_dir() && chromium.exists()).then_some((root, chromium))
}

#[test]
fn the_dashboard_works_end_to_end_in_a_real_browser() {
    let (playwright, chromium) = browser_tools()
        .expect("the browser tests need Debian's chromium and playwright-core in target/browser (test.sh installs both)");
    let s = Server::start_with("dash-browser", &["--metrics-step", "2"]);
    create_user(&s, "ada@example.com");
    create_user(&s, "bob@example.com");
    let app = fixture_repo("python-app", &[]);
    let bp = slow_buildpack(app.parent().unwrap());
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .env("PLAYWRIGHT", &playwright)
        .env("CHROMIUM", &chromium)
        .env("KILN_URL", &s.api_url)
        .env("ROUTER_PORT", s.router_port.to_string())
        .env("EMAIL", "ada@example.com")
        .env("PASSWORD", PASSWORD)
        .env("COLLAB_EMAIL", "bob@example.com")
        .env("APP_DIR", &app)
        .env("SLOW_BUILDPACK", &bp)
        .env("SHOTS", &shots)
        .env("KILN_BIN_DIR", Path::new(KILN).parent().unwrap())
        .output()
        .expect("node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{text}\nserver: {}",
        s.server_log()
    );
    // What the browser did, seen from the API: the app is gone, and its screenshots are there.
    assert_eq!(s.api("GET", "/apps/dash-app", None).status, 404);
    for page in [
        "login",
        "deploy-building",
        "resources",
        "metrics",
        "activity-rolled-back",
        "logs-live",
        "phone-apps",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}

/// Who may do what on the dashboard; the same needs as the API's matrix for the same things.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Public,
    Signed,
    App(Need),
    Team { admin: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Need {
    View,
    Operate,
    Deploy,
    Manage,
    Owner,
}

use Need::*;
use Rule::*;

const ROUTES: &[(&str, &str, Rule)] = &[
    ("GET", "/", Public),
    ("GET", "/dashboard/assets/{file}", Public),
    ("GET", "/dashboard/login", Public),
    ("POST", "/dashboard/login", Public),
    ("GET", "/dashboard/{*rest}", Public),
    ("POST", "/dashboard/{*rest}", Public),
    ("POST", "/dashboard/logout", Signed),
    ("GET", "/dashboard", Signed),
    ("POST", "/dashboard/apps", Signed),
    ("GET", "/dashboard/apps/{app}", App(View)),
    ("GET", "/dashboard/apps/{app}/dynos", App(View)),
    ("GET", "/dashboard/apps/{app}/resources", App(View)),
    ("POST", "/dashboard/apps/{app}/scale", App(Operate)),
    ("POST", "/dashboard/apps/{app}/restart", App(Operate)),
    ("POST", "/dashboard/apps/{app}/addons", App(Deploy)),
    ("POST", "/dashboard/apps/{app}/addons/remove", App(Deploy)),
    ("GET", "/dashboard/apps/{app}/deploy", App(View)),
    ("GET", "/dashboard/apps/{app}/builds", App(View)),
    ("GET", "/dashboard/apps/{app}/builds/{build}", App(View)),
    ("GET", "/dashboard/apps/{app}/metrics", App(View)),
    ("GET", "/dashboard/apps/{app}/metrics/charts", App(View)),
    ("GET", "/dashboard/apps/{app}/activity", App(View)),
    ("POST", "/dashboard/apps/{app}/rollback", App(Deploy)),
    ("GET", "/dashboard/apps/{app}/logs", App(View)),
    ("POST", "/dashboard/apps/{app}/logs/session", App(View)),
    ("GET", "/dashboard/apps/{app}/access", App(View)),
    ("POST", "/dashboard/apps/{app}/access", App(Manage)),
    ("POST", "/dashboard/apps/{app}/access/update", App(Manage)),
    ("POST", "/dashboard/apps/{app}/access/remove", App(Manage)),
    ("GET", "/dashboard/apps/{app}/settings", App(View)),
    ("GET", "/dashboard/apps/{app}/config-vars", App(Deploy)),
    ("POST", "/dashboard/apps/{app}/config-vars", App(Deploy)),
    ("POST", "/dashboard/apps/{app}/buildpacks", App(Deploy)),
    ("POST", "/dashboard/apps/{app}/domains", App(Manage)),
    ("POST", "/dashboard/apps/{app}/domains/remove", App(Manage)),
    ("POST", "/dashboard/apps/{app}/maintenance", App(Operate)),
    ("POST", "/dashboard/apps/{app}/rename", App(Owner)),
    ("POST", "/dashboard/apps/{app}/transfer", App(Owner)),
    ("POST", "/dashboard/apps/{app}/delete", App(Owner)),
    ("GET", "/dashboard/account", Signed),
    ("POST", "/dashboard/account/keys", Signed),
    ("POST", "/dashboard/account/keys/revoke", Signed),
    ("POST", "/dashboard/account/password", Signed),
    ("GET", "/dashboard/teams", Signed),
    ("GET", "/dashboard/teams/{team}", Team { admin: false }),
    ("POST", "/dashboard/teams/{team}", Team { admin: true }),
    (
        "POST",
        "/dashboard/teams/{team}/members/remove",
        Team { admin: true },
    ),
];

/// The dashboard's routes as its source declares them: `.route("PATH", get(..).post(..))`.
fn declared_routes() -> BTreeSet<(String, String)> {
    common::declared_routes(&[
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-dashboard/src/lib.rs")
    ])
}

#[test]
fn every_dashboard_route_is_in_the_matrix() {
    let declared = declared_routes();
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = declared.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&declared).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "without a rule: {missing:?}\nrules for no route: {stale:?}"
    );
    assert!(declared.len() > 40, "{}", declared.len());
}

fn api_as(s: &Server, key: &str, method: &str, path: &str, body: Option<&str>) -> Response {
    let auth = format!("Bearer {key}");
    kiln_testkit::http::request(
        s.api_port(),
        method,
        "127.0.0.1",
        path,
        &[
            ("Authorization", &auth),
            ("Accept", "application/vnd.heroku+json; version=3"),
        ],
        body,
    )
}

/// An API key for a user, made with their password (as `kiln login` does).
fn key_for(s: &Server, email: &str) -> String {
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{PASSWORD}"))
    );
    let r = kiln_testkit::http::request(
        s.api_port(),
        "POST",
        "127.0.0.1",
        "/oauth/authorizations",
        &[
            ("Authorization", &basic),
            ("Accept", "application/vnd.heroku+json; version=3"),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["access_token"]["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Pushes a trivial app (a do-nothing buildpack, set on the dashboard) so that the app has a
/// build and releases.
fn push_trivial(s: &Server, b: &Browser, key: &str, app: &str) -> String {
    let dir = fixture_repo("python-app", &[("Procfile", "web: python3 app.py\n")]);
    let bp = common::script_buildpack(dir.parent().unwrap(), "Noop", "echo built\n");
    let r = b.post(
        s,
        &format!("/dashboard/apps/{app}/buildpacks"),
        &[("buildpacks", bp.to_str().unwrap())],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let (ok, out) = s.push_with_key(&dir, app, key);
    assert!(ok, "{out}");
    let builds = api_as(s, key, "GET", &format!("/apps/{app}/builds"), None);
    builds.json()[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn the_dashboard_refuses_whoever_may_not_and_every_form_without_its_token() {
    let s = Server::start("dash-authz");
    for who in ["ada@example.com", "carl@example.com", "eve@example.com"] {
        create_user(&s, who);
    }
    let ada = sign_in(&s, "ada@example.com", PASSWORD).unwrap();
    let carl = sign_in(&s, "carl@example.com", PASSWORD).unwrap();
    let eve = sign_in(&s, "eve@example.com", PASSWORD).unwrap();

    // Ada's personal app, where Carl may only view, and her team's app, where he is nobody.
    assert_eq!(
        ada.post(&s, "/dashboard/apps", &[("name", "dm-p")]).status,
        303
    );
    let ada_key = key_for(&s, "ada@example.com");
    let build = push_trivial(&s, &ada, &ada_key, "dm-p");
    // Resources shows whether the app sleeps and its scheduled jobs, escaped.
    let r = api_as(
        &s,
        &ada_key,
        "POST",
        "/apps/dm-p/addons",
        Some(r#"{"plan":"scheduler"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let job = r#"{"schedule":"daily at 02:00","command":"echo <b>nightly</b>"}"#;
    let r = api_as(&s, &ada_key, "POST", "/apps/dm-p/schedules", Some(job));
    assert_eq!(r.status, 201, "{}", r.body);
    let page = ada.get(&s, "/dashboard/apps/dm-p/resources");
    assert!(
        page.body.contains("echo &lt;b&gt;nightly&lt;/b&gt;")
            && page.body.contains("daily at 02:00")
            && page.body.contains("do not sleep (default)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>nightly"));
    let r = ada.post(
        &s,
        "/dashboard/apps/dm-p/access",
        &[("email", "carl@example.com"), ("permissions", "view")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = ada.post(
        &s,
        "/dashboard/apps/dm-p/config-vars",
        &[
            ("key", "SECRET_THING"),
            ("value", "s3cr3t-<script>alert(1)</script>"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = api_as(
        &s,
        &ada_key,
        "POST",
        "/teams",
        Some(r#"{"name":"dm-team"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = ada.post(
        &s,
        "/dashboard/apps",
        &[("name", "dm-t"), ("team", "dm-team")],
    );
    assert_eq!(r.status, 303, "{}", r.body);

    let fill = |p: &str, app: &str| {
        p.replace("{app}", app)
            .replace("{build}", &build)
            .replace("{team}", "dm-team")
            .replace("{file}", "nope.css")
            .replace("{*rest}", "nope")
    };
    let mut failures = Vec::new();
    let mut note = |what: String, ok: bool, r: &Response| {
        if !ok {
            failures.push(format!(
                "{what}: {} {}",
                r.status,
                r.body.chars().take(200).collect::<String>()
            ));
        }
    };
    let call = |b: Option<&Browser>, method: &str, path: &str| -> Response {
        match (b, method) {
            (Some(b), "GET") => b.get(&s, path),
            (Some(b), _) => b.post(&s, path, &[]),
            (None, "GET") => send(&s, "GET", path, &[], None),
            (None, _) => send(
                &s,
                "POST",
                path,
                &[],
                Some(("application/x-www-form-urlencoded", "a=b")),
            ),
        }
    };
    let hidden = |r: &Response| {
        r.status == 404
            && r.body.contains("Not found")
            && !r.body.contains("dm-p")
            && !r.body.contains("dm-t")
    };
    for &(method, path, rule) in ROUTES {
        // Without a session: sent to sign in, unless the route is public.
        if rule != Public {
            let r = call(None, method, &fill(path, "dm-p"));
            note(format!("{method} {path} signed out"), signed_out(&r), &r);
        }
        match rule {
            App(need) => {
                for app in ["dm-p", "dm-t"] {
                    // A stranger: the same 404 as for an app that does not exist.
                    let r = call(Some(&eve), method, &fill(path, app));
                    note(
                        format!("{method} {path} on {app} as a stranger"),
                        hidden(&r),
                        &r,
                    );
                }
                let r = call(Some(&eve), method, &fill(path, "no-such-app"));
                note(format!("{method} {path} on a missing app"), hidden(&r), &r);
                // Carl, who may only view dm-p, and is nobody on the team's app.
                let r = call(Some(&carl), method, &fill(path, "dm-t"));
                note(
                    format!("{method} {path} on the team app as an outsider"),
                    hidden(&r),
                    &r,
                );
                if need != Owner {
                    let r = call(Some(&carl), method, &fill(path, "dm-p"));
                    let ok = if need == View {
                        r.status < 400
                    } else {
                        r.status == 403
                    };
                    note(format!("{method} {path} as a viewer"), ok, &r);
                    if need != View {
                        assert!(!r.body.contains("s3cr3t"), "{path}");
                    }
                }
            }
            Team { .. } => {
                let r = call(Some(&eve), method, &fill(path, ""));
                note(format!("{method} {path} as a stranger"), hidden(&r), &r);
            }
            Public | Signed => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} refusals wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The owner's refusals to rename or delete a collaborator's way are the platform's: Carl
    // cannot delete dm-p.
    let r = carl.post(&s, "/dashboard/apps/dm-p/delete", &[("confirm", "dm-p")]);
    assert_eq!(r.status, 403, "{}", r.body);

    // Secrets: hidden until revealed, and only to whoever may read them; escaped when shown.
    let settings = carl.get(&s, "/dashboard/apps/dm-p/settings");
    assert_eq!(settings.status, 200);
    assert!(
        // Not even the names: the API shows config only to who may deploy.
        settings.body.contains("1 config var")
            && !settings.body.contains("SECRET_THING")
            && !settings.body.contains("s3cr3t"),
        "{}",
        settings.body
    );
    assert_eq!(
        carl.get(&s, "/dashboard/apps/dm-p/settings?reveal=1")
            .status,
        403
    );
    assert_eq!(carl.get(&s, "/dashboard/apps/dm-p/config-vars").status, 403);
    let own = ada.get(&s, "/dashboard/apps/dm-p/settings");
    assert!(
        own.body.contains("SECRET_THING") && !own.body.contains("s3cr3t"),
        "shown before being revealed"
    );
    let revealed = ada.get(&s, "/dashboard/apps/dm-p/settings?reveal=1");
    assert!(
        revealed
            .body
            .contains("s3cr3t-&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        revealed.body
    );
    assert!(!revealed.body.contains("<script>alert(1)"));
    let csp = revealed.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // CSRF: no token, another session's token, a token in the wrong place: refused, and
    // nothing changed.
    let before = s.api("GET", "/apps/dm-p/config-vars", None).json();
    let r = ada.post_without_csrf(
        &s,
        "/dashboard/apps/dm-p/config-vars",
        &[("key", "X"), ("value", "1")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = ada.post_without_csrf(
        &s,
        "/dashboard/apps/dm-p/config-vars",
        &[("_csrf", &carl.csrf), ("key", "X"), ("value", "1")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(
        &s,
        "POST",
        "/dashboard/apps/dm-p/logs/session",
        &[("Cookie", &ada.cookie)],
        Some(("application/x-www-form-urlencoded", "")),
    );
    assert_eq!(r.status, 403, "a script's post without its header");
    let r = ada.post_without_csrf(&s, "/dashboard/apps/dm-p/delete", &[("confirm", "dm-p")]);
    assert_eq!(r.status, 403);
    assert_eq!(s.api("GET", "/apps/dm-p/config-vars", None).json(), before);
    // A sign-in posted from another site is refused even with a planted token.
    let form = send(&s, "GET", "/dashboard/login", &[], None);
    let pre = cookie_of(&form, "kiln_login").unwrap().to_string();
    let token = attr_after(&form.body, r#"name="_csrf" value=""#)
        .unwrap()
        .to_string();
    let fields = encode(&[
        ("_csrf", &token),
        ("email", "ada@example.com"),
        ("password", PASSWORD),
    ]);
    let r = send(
        &s,
        "POST",
        "/dashboard/login",
        &[
            ("Cookie", &format!("kiln_login={pre}")),
            ("Origin", "http://evil.example"),
        ],
        Some(("application/x-www-form-urlencoded", &fields)),
    );
    assert_eq!(r.status, 403);
    // Sign-in itself wants its token.
    let r = send(
        &s,
        "POST",
        "/dashboard/login",
        &[],
        Some((
            "application/x-www-form-urlencoded",
            &encode(&[("email", "ada@example.com"), ("password", PASSWORD)]),
        )),
    );
    assert_eq!(r.status, 403);

    // Hostile input: a JSON body, an oversized form, a name with markup, a redirect elsewhere.
    let r = send(
        &s,
        "POST",
        "/dashboard/apps/dm-p/config-vars",
        &[("Cookie", &ada.cookie)],
        Some(("application/json", r#"{"key":"X"}"#)),
    );
    assert_eq!(r.status, 415, "{}", r.body);
    let big = format!("_csrf={}&key=X&value={}", ada.csrf, "a".repeat(300 * 1024));
    let r = send(
        &s,
        "POST",
        "/dashboard/apps/dm-p/config-vars",
        &[("Cookie", &ada.cookie)],
        Some(("application/x-www-form-urlencoded", &big)),
    );
    assert_eq!(r.status, 413, "{}", r.status);
    let r = ada.get(&s, "/dashboard/apps/%3Cscript%3Ex/settings");
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("<script>x"), "{}", r.body);
    let r = ada.post(&s, "/dashboard/apps", &[("name", "<b>bad</b>")]);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("&lt;b&gt;bad") || !r.body.contains("<b>bad"),
        "{}",
        r.body
    );
    let login = send(
        &s,
        "GET",
        "/dashboard/login?next=%2F%2Fevil.example%2F",
        &[],
        None,
    );
    assert!(!login.body.contains("evil.example"), "{}", login.body);
    assert_eq!(
        send(
            &s,
            "GET",
            "/dashboard/assets/..%2F..%2Fetc%2Fpasswd",
            &[],
            None
        )
        .status,
        404
    );
    // A wrong password: refused, and the page says so without saying whether the email exists.
    let wrong = sign_in(&s, "ada@example.com", "wrong wrong wrong")
        .err()
        .unwrap();
    let nobody = sign_in(&s, "nobody@example.com", "wrong wrong wrong")
        .err()
        .unwrap();
    assert_eq!((wrong.status, nobody.status), (401, 401));
    assert!(
        wrong.body.contains("Invalid credentials") && nobody.body.contains("Invalid credentials")
    );

    // Sessions end: on sign-out, and all of them on a password change.
    let r = eve.post(&s, "/dashboard/logout", &[]);
    assert!(signed_out(&r), "{}", r.status);
    assert!(
        signed_out(&eve.get(&s, "/dashboard")),
        "a signed-out session still works"
    );
    let other = sign_in(&s, "ada@example.com", PASSWORD).unwrap();
    let r = ada.post(
        &s,
        "/dashboard/account/password",
        &[("current", PASSWORD), ("new", "a much better passphrase")],
    );
    assert!(signed_out(&r), "{} {}", r.status, r.body);
    assert!(
        signed_out(&ada.get(&s, "/dashboard")),
        "the session that changed the password"
    );
    assert!(
        signed_out(&other.get(&s, "/dashboard/apps/dm-p")),
        "another session of the account"
    );
    assert!(sign_in(&s, "ada@example.com", "a much better passphrase").is_ok());
    // A session is a key: revoking it on the Account page (or with the CLI) signs it out.
    let one = sign_in(&s, "carl@example.com", PASSWORD).unwrap();
    let account = one.get(&s, "/dashboard/account");
    let id = attr_after(&account.body, r#"<tr data-key=""#)
        .unwrap()
        .to_string();
    let r = carl.post(&s, "/dashboard/account/keys/revoke", &[("id", &id)]);
    assert_eq!(r.status, 303);
    let gone = [&carl, &one]
        .iter()
        .filter(|b| signed_out(&b.get(&s, "/dashboard")))
        .count();
    assert_eq!(gone, 1, "exactly the revoked session ends");
}
