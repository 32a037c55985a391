//! The Platform API against Heroku's own schema, and against hostile input.
//!
//! * Every object Kiln serves is checked against the official hyper-schema
//!   (`fixtures/heroku-platform-api-schema.json`) by a small validator below: `$ref`,
//!   `anyOf`/`oneOf`, types, enums, formats, nested objects and arrays. Every property the
//!   schema defines must be present, except a short allow-list of what Kiln cannot know.
//! * `Range` pagination follows `Next-Range` the way Heroku's clients do.
//! * Bad input of every kind gets the right status and a `{id, message}` body, and each
//!   refusal is proven to change nothing (apps, releases, config, formation, builds).
//! * The CLI and `git push` fail on bad input with a clear message and a non-zero exit code.
//!
//! Each test runs its own `kiln server`.

mod common;
use common::*;

use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// A small JSON hyper-schema checker (just what Heroku's schema uses).
// ---------------------------------------------------------------------------------------------

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/heroku-platform-api-schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).expect("the schema is JSON")
    })
}

/// Properties of a resource that Kiln does not serve, as `(resource, dotted path from the
/// object's root)` (`[]` stands for "each item of an array"). Keep this list short and say why
/// for each. Today it is empty: every property the schema gives account, app, release,
/// formation, dyno, build, log-session, buildpack-installation and config-var is served.
const NOT_SERVED: &[(&str, &str)] = &[];

fn not_served(resource: &str) -> Vec<&'static str> {
    NOT_SERVED
        .iter()
        .filter(|(r, _)| *r == resource)
        .map(|(_, p)| *p)
        .collect()
}

/// Properties whose declared `format` Heroku itself does not serve, as `(resource, path)`:
/// the schema gives `domain.hostname` `format: uri`, but its example and every real domain
/// is a bare hostname (`subdomain.example.com`). The type is still checked.
const LOOSE_FORMAT: &[(&str, &str)] = &[("domain", "hostname")];

fn loose_format(resource: &str) -> Vec<&'static str> {
    LOOSE_FORMAT
        .iter()
        .filter(|(r, _)| *r == resource)
        .map(|(_, p)| *p)
        .collect()
}

/// Resolves a `$ref` (a JSON pointer into the schema file), following chains of refs.
fn resolve(mut s: &'static Value) -> &'static Value {
    for _ in 0..32 {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("only local $refs are supported: {r}"));
                s = schema()
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
            }
            None => return s,
        }
    }
    panic!("$ref loop at {s}")
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "any" => true,
        other => panic!("unknown schema type {other:?}"),
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// RFC 3339: `2012-01-01T12:00:00Z`, optional fraction, `Z` or `±hh:mm`.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !(digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && (b[10] == b'T' || b[10] == b't')
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest[1..3]
                .bytes()
                .chain(rest[4..].bytes())
                .all(|c| c.is_ascii_digit()))
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "uuid" => is_uuid(s),
        "date-time" => is_date_time(s),
        "email" => s
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty()),
        "uri" => s.starts_with("http://") || s.starts_with("https://"),
        // Formats we do not check (hostnames, ipv4, regexes...).
        _ => true,
    }
}

/// The only pattern of `patternProperties` the checked resources use.
fn pattern_matches(pattern: &str, key: &str) -> bool {
    match pattern {
        r"^\w+$" => !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        other => panic!("unsupported patternProperties pattern {other:?}"),
    }
}

struct Checker {
    allow: Vec<&'static str>,
    loose: Vec<&'static str>,
    errors: Vec<String>,
}

impl Checker {
    fn check(&mut self, path: &str, schema: &'static Value, v: &Value) {
        let s = resolve(schema);
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = s.get(key).and_then(Value::as_array) {
                let mut why = Vec::new();
                let matched = branches.iter().any(|b| {
                    let mut c = Checker {
                        allow: self.allow.clone(),
                        loose: self.loose.clone(),
                        errors: Vec::new(),
                    };
                    c.check(path, b, v);
                    why.extend(c.errors.iter().cloned());
                    c.errors.is_empty()
                });
                if !matched {
                    self.errors.push(format!(
                        "{path}: matches no branch of {key}: {}",
                        why.join("; ")
                    ));
                    return;
                }
            }
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts
                    .iter()
                    .map(|t| t.as_str().expect("type names are strings"))
                    .collect(),
                other => panic!("bad type in schema: {other}"),
            };
            if !types.iter().any(|t| type_matches(t, v)) {
                self.errors
                    .push(format!("{path}: expected {types:?}, got {v}"));
                return;
            }
        }
        if let (Some(allowed), Some(text)) = (s.get("enum").and_then(Value::as_array), v.as_str()) {
            if !allowed.iter().any(|a| a.as_str() == Some(text)) {
                self.errors
                    .push(format!("{path}: {text:?} is not one of {allowed:?}"));
            }
        }
        if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
            if !format_ok(f, text) && !self.loose.contains(&path) {
                self.errors
                    .push(format!("{path}: {text:?} is not a valid {f}"));
            }
        }
        if let Value::Object(obj) = v {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    match obj.get(name) {
                        Some(val) => self.check(&p, sub, val),
                        None if self.allow.contains(&p.as_str()) => {}
                        None => self.errors.push(format!("{p}: missing")),
                    }
                }
            }
            if let Some(patterns) = s.get("patternProperties").and_then(Value::as_object) {
                for (k, val) in obj {
                    let mut any = false;
                    for (pat, sub) in patterns {
                        if pattern_matches(pat, k) {
                            any = true;
                            self.check(&format!("{path}[{k:?}]"), sub, val);
                        }
                    }
                    if !any && s.get("additionalProperties") == Some(&Value::Bool(false)) {
                        self.errors.push(format!(
                            "{path}: key {k:?} matches no pattern of {:?}",
                            patterns.keys().collect::<Vec<_>>()
                        ));
                    }
                }
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (v, s.get("items")) {
            for it in items {
                self.check(&format!("{path}[]"), item_schema, it);
            }
        }
    }
}

/// Panics with every mismatch if `v` does not match `definitions.<resource>`.
fn assert_schema(resource: &str, v: &Value) {
    let def = schema()
        .pointer(&format!("/definitions/{resource}"))
        .unwrap_or_else(|| panic!("no resource {resource} in the schema"));
    let mut c = Checker {
        allow: not_served(resource),
        loose: loose_format(resource),
        errors: Vec::new(),
    };
    c.check("", def, v);
    assert!(
        c.errors.is_empty(),
        "{resource} does not match Heroku's schema:\n  {}\nin {}",
        c.errors.join("\n  "),
        serde_json::to_string_pretty(v).unwrap()
    );
}

/// Config vars: the resource (a map of `^\w+$` to strings) and the links' target schema
/// (`definitions.config_vars`, which also forbids any other key).
fn config_var_errors(v: &Value) -> Vec<String> {
    let mut c = Checker {
        allow: not_served("config-var"),
        loose: Vec::new(),
        errors: Vec::new(),
    };
    c.check(
        "",
        schema()
            .pointer("/definitions/config-var")
            .expect("config-var resource"),
        v,
    );
    c.check(
        "",
        schema()
            .pointer("/definitions/config-var/definitions/config_vars")
            .expect("config_vars definition"),
        v,
    );
    c.errors
}

fn assert_config_vars(v: &Value) {
    let errors = config_var_errors(v);
    assert!(
        errors.is_empty(),
        "config vars do not match Heroku's schema:\n  {}\nin {v}",
        errors.join("\n  ")
    );
}

/// Each item of a JSON array response; the array must not be empty (or the check proves nothing).
fn assert_schema_items(resource: &str, r: &Response) -> Vec<Value> {
    assert_eq!(r.status, 200, "{r:?}");
    let items = r
        .json()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{resource} list is not an array: {}", r.body));
    assert!(
        !items.is_empty(),
        "{resource} list is empty, nothing to check"
    );
    for it in &items {
        assert_schema(resource, it);
    }
    items
}

/// The checker itself must catch what it claims to catch.
#[test]
fn the_schema_checker_rejects_what_it_should() {
    let good = json!({
        "id": "01234567-89ab-cdef-0123-456789abcdef", "type": "web", "quantity": 1, "size": "standard-1X",
        "dyno_size": { "id": "01234567-89ab-cdef-0123-456789abcdef", "name": "standard-1X" }, "command": "x",
        "app": { "id": "01234567-89ab-cdef-0123-456789abcdef", "name": "a" },
        "created_at": "2012-01-01T12:00:00Z", "updated_at": "2012-01-01T12:00:00.123+02:00",
    });
    assert_schema("formation", &good);
    let fails = |v: Value| {
        let def = schema().pointer("/definitions/formation").unwrap();
        let mut c = Checker {
            allow: Vec::new(),
            loose: Vec::new(),
            errors: Vec::new(),
        };
        c.check("", def, &v);
        assert!(!c.errors.is_empty(), "should not match: {v}");
    };
    let with = |k: &str, val: Value| {
        let mut v = good.clone();
        v[k] = val;
        v
    };
    fails(with("quantity", json!(1.5)));
    fails(with("quantity", json!("1")));
    fails(with("command", Value::Null));
    fails(with("id", json!("not-a-uuid")));
    fails(with("created_at", json!("yesterday")));
    fails(with(
        "app",
        json!({ "id": "01234567-89ab-cdef-0123-456789abcdef" }),
    ));
    fails(with("dyno_size", json!({ "id": null, "name": "x" })));
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("updated_at");
    fails(missing);
    // enum, and nullable objects.
    let def = schema()
        .pointer("/definitions/release/definitions/status")
        .unwrap();
    let mut c = Checker {
        allow: Vec::new(),
        loose: Vec::new(),
        errors: Vec::new(),
    };
    c.check("status", def, &json!("bogus"));
    assert!(!c.errors.is_empty());
    // patternProperties (config vars): non-string values and odd keys.
    assert_config_vars(&json!({ "A": "1", "_B2": "" }));
    for bad in [
        json!({ "A": 1 }),
        json!({ "A": { "b": "c" } }),
        json!({ "A": null }),
        json!({ "BAD-KEY": "x" }),
        json!(["A"]),
    ] {
        assert!(
            !config_var_errors(&bad).is_empty(),
            "should not match: {bad}"
        );
    }
    assert!(
        is_date_time("2024-02-29T23:59:59Z")
            && !is_date_time("2024-02-29 23:59:59")
            && !is_date_time("2024-02-29T23:59:59")
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers for raw API calls, errors and "nothing changed".
// ---------------------------------------------------------------------------------------------

/// A call with exactly these headers (no default auth or Accept).
fn raw(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    http(s.api_port(), method, "127.0.0.1", path, headers, body)
}

fn bearer(s: &Server) -> String {
    format!("Bearer {}", s.key)
}

/// Sends raw request bytes and reads the answer, tolerating a server that answers and closes
/// before the whole request is written (as it may for an oversized body).
fn send_raw(s: &Server, request: &[u8]) -> Response {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.api_port()));
    parse_response(&kiln_testkit::http::exchange(addr, request, Duration::from_secs(30)).0)
}

fn ranged(s: &Server, path: &str, range: &str) -> Response {
    let auth = bearer(s);
    raw(
        s,
        "GET",
        path,
        &[
            ("Authorization", &auth),
            ("Accept", "application/vnd.heroku+json; version=3"),
            ("Range", range),
        ],
        None,
    )
}

/// Heroku's error shape: one of `statuses`, JSON, `{"id": <non-empty>, "message": <non-empty>}`.
fn assert_error_shape(r: &Response, statuses: &[u16], what: &str) -> Value {
    assert!(
        statuses.contains(&r.status),
        "{what}: expected status {statuses:?}, got {r:?}"
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: error content type {ct:?}: {r:?}"
    );
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {r:?}"));
    assert!(
        v["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{what}: no id: {v}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
        "{what}: no message: {v}"
    );
    v
}

/// As [`assert_error_shape`], with this exact error id.
fn assert_error(r: &Response, statuses: &[u16], id: &str, what: &str) -> Value {
    let v = assert_error_shape(r, statuses, what);
    assert_eq!(v["id"].as_str(), Some(id), "{what}: {v}");
    v
}

/// Everything a refused request must leave alone: apps, and for each app its releases,
/// config, formation and builds.
fn snapshot(s: &Server) -> Value {
    let get = |path: &str| {
        let r = s.api("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {r:?}");
        r.json()
    };
    let mut names: Vec<String> = get("/apps")
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut apps = serde_json::Map::new();
    for n in &names {
        let app = get(&format!("/apps/{n}"));
        let releases: Vec<Value> = get(&format!("/apps/{n}/releases"))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["version"], r["status"], r["description"]]))
            .collect();
        let formation: Vec<Value> = get(&format!("/apps/{n}/formation"))
            .as_array()
            .unwrap()
            .iter()
            .map(|f| json!([f["type"], f["quantity"], f["size"]]))
            .collect();
        let builds = get(&format!("/apps/{n}/builds")).as_array().unwrap().len();
        apps.insert(
            n.clone(),
            json!({ "id": app["id"], "maintenance": app["maintenance"], "releases": releases, "config": get(&format!("/apps/{n}/config-vars")), "formation": formation, "builds": builds, "buildpacks": get(&format!("/apps/{n}/buildpack-installations")) }),
        );
    }
    Value::Object(apps)
}

fn versions(r: &Response) -> Vec<i64> {
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {}", r.body))
        .iter()
        .map(|x| x["version"].as_i64().unwrap())
        .collect()
}

fn deploy_python(s: &Server, app: &str) {
    s.ok(&["apps:create", app]);
    s.ok(&["config:set", "GREETING_STYLE=warm", "-a", app]);
    let (ok, out) = s.push(&python_app(&[]), app);
    assert!(ok, "push failed:\n{out}\nserver log:\n{}", s.server_log());
}

// ---------------------------------------------------------------------------------------------
// 1. Schema conformance.
// ---------------------------------------------------------------------------------------------

#[test]
fn objects_match_herokus_schema() {
    let s = Server::start("schema");
    deploy_python(&s, "schemaapp");

    // Scale up, through the schema's batch-update shape; the answer is formation objects.
    let r = s.api("PATCH", "/apps/schemaapp/formation", Some(r#"{"updates":[{"type":"web","quantity":2,"size":"standard-1X"},{"type":"worker","quantity":1}]}"#));
    let scaled = assert_schema_items("formation", &r);
    assert_eq!(scaled.len(), 2, "{scaled:?}");
    let dynos = wait_for(BOOT, "web.1, web.2 and worker.1 up", || {
        let r = s.api("GET", "/apps/schemaapp/dynos", None);
        let items = r.json();
        let mut up: Vec<String> = items
            .as_array()?
            .iter()
            .filter(|d| d["state"] == "up")
            .map(|d| d["name"].as_str().unwrap_or_default().to_string())
            .collect();
        up.sort();
        (up == ["web.1", "web.2", "worker.1"]).then_some(r)
    });

    // account
    let r = s.api("GET", "/account", None);
    assert_eq!(r.status, 200, "{r:?}");
    let account = r.json();
    assert_schema("account", &account);

    // app: info, list, and create
    let r = s.api("GET", "/apps/schemaapp", None);
    assert_eq!(r.status, 200, "{r:?}");
    let app = r.json();
    assert_schema("app", &app);
    assert_eq!(app["name"], "schemaapp");
    assert_eq!(app["owner"]["email"], account["email"]);
    assert!(
        app["released_at"].is_string() && app["slug_size"].as_u64().is_some_and(|n| n > 0),
        "a deployed app has a release and a slug: {app}"
    );
    let r = s.api("POST", "/apps", Some(r#"{"name":"schemaapp-two"}"#));
    assert_eq!(r.status, 201, "{r:?}");
    assert_schema("app", &r.json());
    let apps = assert_schema_items("app", &s.api("GET", "/apps", None));
    let mut names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["schemaapp", "schemaapp-two"]);
    // Fetching by id gives the same app.
    let r = s.api(
        "GET",
        &format!("/apps/{}", app["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(
        (r.status, r.json()["name"].clone()),
        (200, json!("schemaapp")),
        "{r:?}"
    );

    // releases: list and info; exactly one is current, and it is the newest.
    let releases = assert_schema_items("release", &s.api("GET", "/apps/schemaapp/releases", None));
    let vs: Vec<i64> = releases
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        vs,
        (1..=vs.len() as i64).collect::<Vec<_>>(),
        "releases are listed oldest first"
    );
    assert_eq!(
        releases.iter().filter(|r| r["current"] == true).count(),
        1,
        "{releases:?}"
    );
    assert_eq!(releases.last().unwrap()["current"], true);
    assert_eq!(releases.last().unwrap()["status"], "succeeded");
    for path in [
        format!("/apps/schemaapp/releases/v{}", vs.len()),
        format!(
            "/apps/schemaapp/releases/{}",
            releases[0]["id"].as_str().unwrap()
        ),
    ] {
        let r = s.api("GET", &path, None);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_schema("release", &r.json());
    }

    // formation: list and info
    let formation = assert_schema_items(
        "formation",
        &s.api("GET", "/apps/schemaapp/formation", None),
    );
    let web = formation
        .iter()
        .find(|f| f["type"] == "web")
        .expect("a web formation");
    assert_eq!(
        (web["quantity"].as_i64(), web["command"].as_str()),
        (Some(2), Some("python3 app.py"))
    );
    let r = s.api("GET", "/apps/schemaapp/formation/worker", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_schema("formation", &r.json());

    // dynos: list and info; states are among those the schema names.
    let dyno_items = assert_schema_items("dyno", &dynos);
    for d in &dyno_items {
        assert!(
            ["crashed", "down", "idle", "starting", "up"].contains(&d["state"].as_str().unwrap()),
            "{d}"
        );
        assert_eq!(
            d["release"]["version"].as_i64(),
            Some(*vs.last().unwrap()),
            "{d}"
        );
    }
    let r = s.api("GET", "/apps/schemaapp/dynos/web.2", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_schema("dyno", &r.json());

    // builds: list and info
    let builds = assert_schema_items("build", &s.api("GET", "/apps/schemaapp/builds", None));
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0]["status"], "succeeded");
    let r = s.api(
        "GET",
        &format!(
            "/apps/schemaapp/builds/{}",
            builds[0]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_schema("build", &r.json());

    // log-session
    let r = s.api(
        "POST",
        "/apps/schemaapp/log-sessions",
        Some(r#"{"lines":10,"tail":false}"#),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_schema("log-session", &r.json());

    // buildpack-installations: set one so the list has an item to check.
    let r = s.api(
        "PUT",
        "/apps/schemaapp/buildpack-installations",
        Some(r#"{"updates":[{"buildpack":"heroku/python"}]}"#),
    );
    assert_schema_items("buildpack-installation", &r);
    let bps = assert_schema_items(
        "buildpack-installation",
        &s.api("GET", "/apps/schemaapp/buildpack-installations", None),
    );
    assert_eq!(
        (bps.len(), bps[0]["ordinal"].as_i64()),
        (1, Some(0)),
        "{bps:?}"
    );

    // config-vars: an object of strings, for the app and for a release.
    for path in [
        "/apps/schemaapp/config-vars".to_string(),
        format!("/apps/schemaapp/releases/v{}/config-vars", vs.len()),
    ] {
        let r = s.api("GET", &path, None);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let config = r.json();
        assert_config_vars(&config);
        assert_eq!(config["GREETING_STYLE"], "warm", "{path}: {config}");
    }
    let r = s.api(
        "PATCH",
        "/apps/schemaapp/config-vars",
        Some(r#"{"EXTRA":"1"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_config_vars(&r.json());
}

/// Domains: the default one (kind `heroku`) and custom ones, in Heroku's shape; hostnames
/// in use, invalid or under the platform's domain are refused with 422 and change nothing.
#[test]
fn domain_objects_match_herokus_schema() {
    let s = Server::start("domains");
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"domainapp"}"#))
            .status,
        201
    );
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"otherapp"}"#))
            .status,
        201
    );

    let r = s.api(
        "POST",
        "/apps/domainapp/domains",
        Some(r#"{"hostname":"WWW.Example.com.","sni_endpoint":null}"#),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let www = r.json();
    assert_schema("domain", &www);
    assert_eq!(
        (
            www["hostname"].as_str(),
            www["kind"].as_str(),
            www["cname"].as_str()
        ),
        (
            Some("www.example.com"),
            Some("custom"),
            Some("domainapp.localhost")
        )
    );
    assert_eq!(www["app"]["name"], "domainapp");
    let r = s.api(
        "POST",
        "/apps/domainapp/domains",
        Some(r#"{"hostname":"*.example.org"}"#),
    );
    assert_eq!(r.status, 201, "{r:?}");

    let items = assert_schema_items("domain", &s.api("GET", "/apps/domainapp/domains", None));
    let listed: Vec<(&str, &str)> = items
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["hostname"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("heroku", "domainapp.localhost"),
            ("custom", "www.example.com"),
            ("custom", "*.example.org")
        ]
    );
    assert!(items[0]["cname"].is_null());
    for path in [
        "/apps/domainapp/domains/www.example.com".to_string(),
        format!("/apps/domainapp/domains/{}", www["id"].as_str().unwrap()),
        "/apps/domainapp/domains/domainapp.localhost".to_string(),
        format!(
            "/apps/domainapp/domains/{}",
            items[0]["id"].as_str().unwrap()
        ),
    ] {
        let r = s.api("GET", &path, None);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_schema("domain", &r.json());
    }

    // Refusals: 422 with Heroku's error shape, and nothing changes.
    let before = s.api("GET", "/apps/domainapp/domains", None).json();
    for (app, body, needle) in [
        (
            "otherapp",
            r#"{"hostname":"www.example.com"}"#,
            "www.example.com is already in use",
        ),
        (
            "domainapp",
            r#"{"hostname":"www.example.com"}"#,
            "www.example.com is already in use",
        ),
        (
            "otherapp",
            r#"{"hostname":"domainapp.localhost"}"#,
            "where Kiln serves apps by name",
        ),
        (
            "domainapp",
            r#"{"hostname":"domainapp.localhost"}"#,
            "is already in use",
        ),
        (
            "otherapp",
            r#"{"hostname":"bad_name.example.com"}"#,
            "is not a valid hostname",
        ),
        (
            "otherapp",
            r#"{"hostname":"www.*.example.com"}"#,
            "wildcard",
        ),
        ("otherapp", r#"{"hostname":"10.0.0.1"}"#, "IP addresses"),
        ("otherapp", r#"{"hostname":""}"#, "A hostname is required"),
        ("otherapp", r#"{}"#, "Missing hostname"),
        ("otherapp", r#"{"hostname":7}"#, "hostname must be a string"),
    ] {
        let v = assert_error(
            &s.api("POST", &format!("/apps/{app}/domains"), Some(body)),
            &[422],
            "invalid_params",
            body,
        );
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    assert_error(
        &s.api(
            "DELETE",
            "/apps/domainapp/domains/domainapp.localhost",
            None,
        ),
        &[422],
        "invalid_params",
        "the default domain",
    );
    assert_error(
        &s.api("GET", "/apps/otherapp/domains/www.example.com", None),
        &[404],
        "not_found",
        "another app's domain",
    );
    assert_error(
        &s.api("DELETE", "/apps/otherapp/domains/www.example.com", None),
        &[404],
        "not_found",
        "another app's domain",
    );
    assert_eq!(s.api("GET", "/apps/domainapp/domains", None).json(), before);

    // ACM (Heroku's /apps/{app}/acm) answers with the app; without an ACME server
    // (--acme-directory) enabling and refreshing are refused with how to configure it.
    let v = assert_error(
        &s.api("POST", "/apps/domainapp/acm", None),
        &[422],
        "invalid_params",
        "ACM without an ACME server",
    );
    assert!(
        v["message"].as_str().unwrap().contains("--acme-directory"),
        "{v}"
    );
    assert_error(
        &s.api("PATCH", "/apps/domainapp/acm", None),
        &[422],
        "invalid_params",
        "ACM refresh without an ACME server",
    );
    assert_error(
        &s.api("POST", "/apps/nosuchapp/acm", None),
        &[404],
        "not_found",
        "ACM of an unknown app",
    );
    let r = s.api("DELETE", "/apps/domainapp/acm", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_schema("app", &r.json());
    assert_eq!(r.json()["acm"], false);
    assert_eq!(s.api("GET", "/apps/domainapp/domains", None).json(), before);

    let r = s.api("DELETE", "/apps/domainapp/domains/www.example.com", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_schema("domain", &r.json());
    assert_eq!(
        s.api("GET", "/apps/domainapp/domains", None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.api(
            "POST",
            "/apps/otherapp/domains",
            Some(r#"{"hostname":"www.example.com"}"#)
        )
        .status,
        201,
        "a removed hostname is free"
    );
}

#[test]
fn sni_endpoint_objects_match_herokus_schema() {
    let s = Server::start("sni");
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"sniapp"}"#)).status,
        201
    );
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"othersni"}"#))
            .status,
        201
    );
    let upload = |names: &[&str]| {
        let (chain, key) = kiln_tls::self_signed(names).unwrap();
        (
            chain.clone(),
            key.clone(),
            serde_json::json!({ "certificate_chain": chain, "private_key": key }).to_string(),
        )
    };

    let (chain, key, body) = upload(&["www.example.com", "*.example.org"]);
    let r = s.api("POST", "/apps/sniapp/sni-endpoints", Some(&body));
    assert_eq!(r.status, 201, "{r:?}");
    let e = r.json();
    assert_schema("sni-endpoint", &e);
    assert_eq!(
        e["ssl_cert"]["cert_domains"],
        serde_json::json!(["www.example.com", "*.example.org"])
    );
    assert_eq!(
        (
            e["ssl_cert"]["self_signed?"].as_bool(),
            e["ssl_cert"]["ca_signed?"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(e["certificate_chain"].as_str(), Some(chain.as_str()));
    assert_eq!(e["app"]["name"], "sniapp");
    assert!(
        !r.body.contains("PRIVATE KEY"),
        "the private key is never served back"
    );
    let (id, name) = (
        e["id"].as_str().unwrap().to_string(),
        e["name"].as_str().unwrap().to_string(),
    );

    let items = assert_schema_items(
        "sni-endpoint",
        &s.api("GET", "/apps/sniapp/sni-endpoints", None),
    );
    assert_eq!(items.len(), 1);
    for path in [
        format!("/apps/sniapp/sni-endpoints/{id}"),
        format!("/apps/sniapp/sni-endpoints/{name}"),
    ] {
        let r = s.api("GET", &path, None);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_schema("sni-endpoint", &r.json());
    }

    // Refusals: 422 with Heroku's error shape, and nothing changes.
    let before = s.api("GET", "/apps/sniapp/sni-endpoints", None).json();
    let (_, other_key, _) = upload(&["www.example.com"]);
    let mismatched =
        serde_json::json!({ "certificate_chain": chain, "private_key": other_key }).to_string();
    let garbage =
        serde_json::json!({ "certificate_chain": "hello", "private_key": key }).to_string();
    let no_key = serde_json::json!({ "certificate_chain": chain }).to_string();
    let not_text = serde_json::json!({ "certificate_chain": 7, "private_key": key }).to_string();
    for (body, needle) in [
        (&mismatched, "does not match"),
        (&garbage, "No certificate found"),
        (&no_key, "private_key is required"),
        (&not_text, "must be a string"),
    ] {
        let v = assert_error(
            &s.api("POST", "/apps/sniapp/sni-endpoints", Some(body)),
            &[422],
            "invalid_params",
            needle,
        );
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
        assert_error(
            &s.api(
                "PATCH",
                &format!("/apps/sniapp/sni-endpoints/{id}"),
                Some(body),
            ),
            &[422],
            "invalid_params",
            needle,
        );
    }
    assert_error(
        &s.api("GET", &format!("/apps/othersni/sni-endpoints/{id}"), None),
        &[404],
        "not_found",
        "another app's certificate",
    );
    assert_error(
        &s.api(
            "DELETE",
            &format!("/apps/othersni/sni-endpoints/{name}"),
            None,
        ),
        &[404],
        "not_found",
        "another app's certificate",
    );
    assert_error(
        &s.api("GET", "/apps/sniapp/sni-endpoints/no-such-cert", None),
        &[404],
        "not_found",
        "a missing certificate",
    );
    assert_eq!(
        s.api("GET", "/apps/sniapp/sni-endpoints", None).json(),
        before
    );

    // A renewal keeps the endpoint, with the new certificate.
    let (_, _, renewal) = upload(&["www.example.com"]);
    let r = s.api(
        "PATCH",
        &format!("/apps/sniapp/sni-endpoints/{name}"),
        Some(&renewal),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let renewed = r.json();
    assert_schema("sni-endpoint", &renewed);
    assert_eq!(
        (renewed["id"].as_str(), renewed["name"].as_str()),
        (Some(id.as_str()), Some(name.as_str()))
    );
    assert_eq!(
        renewed["ssl_cert"]["cert_domains"],
        serde_json::json!(["www.example.com"])
    );

    let r = s.api("DELETE", &format!("/apps/sniapp/sni-endpoints/{id}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_schema("sni-endpoint", &r.json());
    assert_eq!(
        s.api("GET", "/apps/sniapp/sni-endpoints", None).json(),
        serde_json::json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Range pagination.
// ---------------------------------------------------------------------------------------------

#[test]
fn releases_paginate_with_range_and_next_range() {
    let s = Server::start("range");
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"rangeapp"}"#))
            .status,
        201
    );
    for i in 2..=5 {
        let r = s.api(
            "PATCH",
            "/apps/rangeapp/config-vars",
            Some(&format!(r#"{{"N":"{i}"}}"#)),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Without Range: everything, oldest first, 200.
    let all = s.api("GET", "/apps/rangeapp/releases", None);
    assert_eq!(
        (all.status, versions(&all)),
        (200, vec![1, 2, 3, 4, 5]),
        "{all:?}"
    );

    // The CLI's `releases` and `rollback`: the newest release only.
    let path = "/apps/rangeapp/releases";
    let first = ranged(&s, path, "version ..; max=1, order=desc");
    assert_eq!(
        (first.status, versions(&first)),
        (206, vec![5]),
        "{first:?}"
    );
    let next = first
        .header("next-range")
        .unwrap_or_else(|| panic!("no Next-Range: {first:?}"))
        .to_string();
    let second = ranged(&s, path, &next);
    assert_eq!(
        (second.status, versions(&second)),
        (206, vec![4]),
        "Next-Range {next:?}: {second:?}"
    );

    // Following Next-Range to the end visits every release once, then stops with a 200.
    let mut seen = versions(&first);
    let mut r = first;
    for _ in 0..10 {
        let Some(next) = r.header("next-range").map(str::to_string) else {
            break;
        };
        assert_eq!(r.status, 206, "a page with Next-Range is partial: {r:?}");
        r = ranged(&s, path, &next);
        seen.extend(versions(&r));
    }
    assert_eq!(seen, vec![5, 4, 3, 2, 1]);
    assert_eq!(r.status, 200, "the last page is complete: {r:?}");
    assert!(r.header("next-range").is_none());

    // Ascending is the default order, and the CLI's other spelling works.
    let r = ranged(&s, path, "version ..; max=2");
    assert_eq!((r.status, versions(&r)), (206, vec![1, 2]), "{r:?}");
    let r = ranged(&s, path, r.header("next-range").expect("Next-Range"));
    assert_eq!((r.status, versions(&r)), (206, vec![3, 4]), "{r:?}");
    let r = ranged(&s, path, "version ..; order=desc,max=1");
    assert_eq!((r.status, versions(&r)), (206, vec![5]), "{r:?}");
    let r = ranged(&s, path, "version 2..3");
    assert_eq!(versions(&r), vec![2, 3], "{r:?}");
    let r = ranged(&s, path, "id ..; max=1000");
    assert_eq!(
        (r.status, versions(&r)),
        (200, vec![1, 2, 3, 4, 5]),
        "{r:?}"
    );

    // A Range that is not even ASCII is not silently ignored.
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {}\r\nRange: version \u{e9}..; max=1\r\n\r\n",
        s.key
    );
    assert_error(
        &send_raw(&s, req.as_bytes()),
        &[400],
        "bad_request",
        "non-ASCII Range",
    );

    // Malformed ranges are a 400 with Heroku's error body.
    let long = format!("version ..; max={}", "9".repeat(5000));
    for bad in [
        "version ..; max=abc",
        "garbage",
        "version ..; order=sideways",
        "version ..; evil=1",
        "version x..y",
        long.as_str(),
        &"a".repeat(5000),
    ] {
        let r = ranged(&s, path, bad);
        assert_error(
            &r,
            &[400],
            "bad_request",
            &format!("Range {:?}", &bad[..bad.len().min(40)]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Hostile and bad input: the right error, and nothing changes.
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_credentials_and_versions_are_refused_and_change_nothing() {
    let s = Server::start("auth");
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"authapp"}"#)).status,
        201
    );
    let before = snapshot(&s);
    let v3 = ("Accept", "application/vnd.heroku+json; version=3");
    let wrong_basic = format!("Basic {}", b64(b"kiln:not-the-key"));
    let empty_basic = format!("Basic {}", b64(b"kiln:"));
    let user_is_key = format!("Basic {}", b64(format!("{}:", s.key).as_bytes()));
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no Authorization", vec![v3]),
        (
            "wrong bearer key",
            vec![v3, ("Authorization", "Bearer wrong")],
        ),
        ("empty bearer", vec![v3, ("Authorization", "Bearer ")]),
        (
            "Basic with a wrong password",
            vec![v3, ("Authorization", &wrong_basic)],
        ),
        (
            "Basic with an empty password",
            vec![v3, ("Authorization", &empty_basic)],
        ),
        (
            "the key as Basic user name, not password",
            vec![v3, ("Authorization", &user_is_key)],
        ),
        (
            "Basic that is not base64",
            vec![v3, ("Authorization", "Basic %%%not-base64")],
        ),
        ("unknown scheme", vec![v3, ("Authorization", "Token abc")]),
    ];
    for (what, headers) in &cases {
        for (method, path, body) in [
            ("GET", "/account", None),
            ("GET", "/apps/authapp", None),
            ("POST", "/apps", Some(r#"{"name":"stolen"}"#)),
            (
                "PATCH",
                "/apps/authapp/config-vars",
                Some(r#"{"EVIL":"1"}"#),
            ),
            ("DELETE", "/apps/authapp", None),
            ("POST", "/apps/authapp/log-sessions", Some("{}")),
        ] {
            let r = raw(&s, method, path, headers, body);
            assert_error(
                &r,
                &[401],
                "unauthorized",
                &format!("{what}: {method} {path}"),
            );
        }
    }

    // API version 2 is not served: 406, before anything happens.
    let auth = bearer(&s);
    for accept in [
        "application/vnd.heroku+json; version=2",
        "application/vnd.heroku+json; version=4",
    ] {
        let h = [("Authorization", auth.as_str()), ("Accept", accept)];
        assert_error(
            &raw(&s, "GET", "/apps", &h, None),
            &[406],
            "not_acceptable",
            accept,
        );
        assert_error(
            &raw(&s, "POST", "/apps", &h, Some(r#"{"name":"v2app"}"#)),
            &[406],
            "not_acceptable",
            accept,
        );
        assert_error(
            &raw(&s, "DELETE", "/apps/authapp", &h, None),
            &[406],
            "not_acceptable",
            accept,
        );
    }
    // The variants Heroku accepts are fine.
    for accept in [
        "application/vnd.heroku+json; version=3.sdk",
        "application/json",
        "*/*",
    ] {
        let r = raw(
            &s,
            "GET",
            "/apps",
            &[("Authorization", &auth), ("Accept", accept)],
            None,
        );
        assert_eq!(r.status, 200, "{accept}: {r:?}");
    }

    // Request-Id is echoed; RateLimit-Remaining is always there, on errors too.
    let r = raw(
        &s,
        "GET",
        "/account",
        &[
            ("Authorization", &auth),
            v3,
            ("Request-Id", "kiln-test-4711"),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("request-id"), Some("kiln-test-4711"), "{r:?}");
    assert!(
        r.header("ratelimit-remaining")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{r:?}"
    );
    let r = raw(
        &s,
        "GET",
        "/account",
        &[v3, ("Request-Id", "kiln-test-4712")],
        None,
    );
    assert_eq!(
        (r.status, r.header("request-id")),
        (401, Some("kiln-test-4712")),
        "{r:?}"
    );
    // No user, no budget to report.
    assert!(r.header("ratelimit-remaining").is_none(), "{r:?}");
    // Without one, the server makes one up.
    let r = s.api("GET", "/account", None);
    assert!(
        r.header("request-id").is_some_and(|v| !v.is_empty()),
        "{r:?}"
    );

    assert_eq!(snapshot(&s), before, "a refused request changed something");
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let s = Server::start("hostile");
    deploy_python(&s, "hostileapp");
    // Let the deploy settle (dynos up) so later comparisons are about our requests only.
    wait_for(BOOT, "web.1 up", || {
        s.api("GET", "/apps/hostileapp/dynos", None)
            .json()
            .as_array()?
            .iter()
            .any(|d| d["name"] == "web.1" && d["state"] == "up")
            .then_some(())
    });
    let before = snapshot(&s);
    let changed = |what: &str| {
        let after = snapshot(&s);
        assert_eq!(after, before, "{what} changed something");
    };

    // --- app names ---
    let long = "a".repeat(31);
    for name in [
        "Bad_Name",
        "ab",
        long.as_str(),
        "../x",
        "ünïcode",
        "my app",
        "-abc",
        "abc-",
        "",
        "a/b",
        "hostileapp\n",
    ] {
        let body = json!({ "name": name }).to_string();
        let r = s.api("POST", "/apps", Some(&body));
        assert_error(
            &r,
            &[422],
            "invalid_params",
            &format!("create app {name:?}"),
        );
    }
    let r = s.api("POST", "/apps", Some(r#"{"name":42}"#));
    assert_error(&r, &[422], "invalid_params", "numeric name");
    let r = s.api("POST", "/apps", Some(r#"{"name":"hostileapp"}"#));
    let v = assert_error(&r, &[422], "invalid_params", "duplicate name");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("taken")
            || v["message"].as_str().unwrap().contains("exists"),
        "{v}"
    );
    changed("invalid app names");

    // --- bodies that are not what the API takes ---
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2_000_000));
    for (what, body) in [
        ("not JSON", "{not json"),
        ("truncated JSON", r#"{"name":"#),
        ("a JSON array", "[1,2,3]"),
        ("a JSON string", r#""name""#),
        ("JSON null", "null"),
    ] {
        for (method, path) in [
            ("POST", "/apps"),
            ("PATCH", "/apps/hostileapp/config-vars"),
            ("PATCH", "/apps/hostileapp/formation"),
            ("POST", "/apps/hostileapp/releases"),
        ] {
            let r = s.api(method, path, Some(body));
            assert_error(
                &r,
                &[400],
                "bad_request",
                &format!("{what} to {method} {path}"),
            );
        }
    }
    for (method, path) in [("POST", "/apps"), ("PATCH", "/apps/hostileapp/config-vars")] {
        let r = s.api(method, path, Some(&big));
        assert_error_shape(&r, &[413], &format!("2 MB body to {method} {path}"));
        // Past the transport's own limit too (axum stops reading at 2 MiB).
        let body = format!(r#"{{"A":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            s.key,
            body.len()
        );
        let r = send_raw(&s, req.as_bytes());
        assert_error_shape(&r, &[413], &format!("3 MB body to {method} {path}"));
    }
    // A JSON body sent as something else is refused, whatever it says (`curl -d` sends a form).
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        Some("text/json"),
    ] {
        let body = r#"{"name":"formapp"}"#;
        let header = content_type
            .map(|t| format!("Content-Type: {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /apps HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {}\r\n{header}Content-Length: {}\r\n\r\n{body}",
            s.key,
            body.len()
        );
        let r = send_raw(&s, req.as_bytes());
        let v = assert_error(
            &r,
            &[400],
            "bad_request",
            &format!("Content-Type {content_type:?}"),
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Content-Type: application/json"),
            "{v}"
        );
    }
    // JSON types with parameters, and Heroku's own, are read as JSON (this name is then refused).
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.heroku+json; version=3",
    ] {
        let body = r#"{"name":"ab"}"#;
        let req = format!(
            "POST /apps HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            s.key,
            body.len()
        );
        assert_error(
            &send_raw(&s, req.as_bytes()),
            &[422],
            "invalid_params",
            &format!("Content-Type {content_type}"),
        );
    }
    assert_eq!(
        s.api("GET", "/apps/formapp", None).status,
        404,
        "no app was created from a form"
    );
    changed("malformed bodies");

    // --- config vars ---
    let release_count =
        |s: &Server| versions(&s.api("GET", "/apps/hostileapp/releases", None)).len();
    let releases_before = release_count(&s);
    for body in [
        r#"{"BAD-KEY":"x"}"#,
        r#"{"1ABC":"x"}"#,
        r#"{"":"x"}"#,
        r#"{"__X":"x"}"#,
        r#"{"A B":"x"}"#,
        r#"{"GOOD":"1","BAD-KEY":"2"}"#,
        r#"{"OBJ":{"a":"b"}}"#,
        r#"{"ARR":["a"]}"#,
        r#"{"GOOD":"1","ARR":[]}"#,
        r#"{"NUL":"a\u0000b"}"#,
    ] {
        let r = s.api("PATCH", "/apps/hostileapp/config-vars", Some(body));
        assert_error(&r, &[422], "invalid_params", &format!("config {body}"));
    }
    let long_key = json!({ "K".repeat(300): "x" }).to_string();
    assert_error(
        &s.api("PATCH", "/apps/hostileapp/config-vars", Some(&long_key)),
        &[422],
        "invalid_params",
        "300-character config key",
    );
    let huge = json!({ "BIG": "x".repeat(33 * 1024) }).to_string();
    let v = assert_error(
        &s.api("PATCH", "/apps/hostileapp/config-vars", Some(&huge)),
        &[422],
        "invalid_params",
        "config over 32 kB",
    );
    assert!(
        v["message"].as_str().unwrap().contains("32768")
            || v["message"].as_str().unwrap().contains("32 kB"),
        "{v}"
    );
    // Many vars that together pass the limit.
    let many: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("VAR_{i}"), json!("y".repeat(1000))))
        .collect();
    assert_error(
        &s.api(
            "PATCH",
            "/apps/hostileapp/config-vars",
            Some(&Value::Object(many).to_string()),
        ),
        &[422],
        "invalid_params",
        "config summing over 32 kB",
    );
    assert_eq!(
        release_count(&s),
        releases_before,
        "a refused config change made a release"
    );
    changed("invalid config vars");

    // --- formation ---
    let r = s.api(
        "PATCH",
        "/apps/hostileapp/formation/nosuch",
        Some(r#"{"quantity":1}"#),
    );
    let v = assert_error(&r, &[404], "not_found", "unknown process type");
    assert_eq!(v["resource"], "formation", "{v}");
    // A batch with one unknown type changes none of the others.
    let r = s.api(
        "PATCH",
        "/apps/hostileapp/formation",
        Some(r#"{"updates":[{"type":"web","quantity":3},{"type":"nosuch","quantity":1}]}"#),
    );
    assert_error(&r, &[404], "not_found", "batch with an unknown type");
    for q in [
        r#""abc""#,
        "-1",
        "1.5",
        r#""999999999999""#,
        "101",
        r#""101""#,
        r#""+200""#,
        "true",
        "[1]",
        r#""1e3""#,
        r#""""#,
    ] {
        let body = format!(r#"{{"quantity":{q}}}"#);
        assert_error(
            &s.api("PATCH", "/apps/hostileapp/formation/web", Some(&body)),
            &[422],
            "invalid_params",
            &format!("quantity {q}"),
        );
        let batch = format!(
            r#"{{"updates":[{{"type":"worker","quantity":0}},{{"type":"web","quantity":{q}}}]}}"#
        );
        assert_error(
            &s.api("PATCH", "/apps/hostileapp/formation", Some(&batch)),
            &[422],
            "invalid_params",
            &format!("batch quantity {q}"),
        );
    }
    for size in [r#""huge""#, r#""""#, "7", r#"{"name":"huge"}"#] {
        let body = format!(r#"{{"quantity":1,"size":{size}}}"#);
        assert_error(
            &s.api("PATCH", "/apps/hostileapp/formation/web", Some(&body)),
            &[422],
            "invalid_params",
            &format!("size {size}"),
        );
    }
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({ "type": "web", "quantity": 1 }))
        .collect();
    assert_error(
        &s.api(
            "PATCH",
            "/apps/hostileapp/formation",
            Some(&json!({ "updates": too_many }).to_string()),
        ),
        &[422],
        "invalid_params",
        "101 updates",
    );
    assert_error(
        &s.api(
            "PATCH",
            "/apps/hostileapp/formation",
            Some(r#"{"updates":{"type":"web"}}"#),
        ),
        &[422],
        "invalid_params",
        "updates not an array",
    );
    assert_error(
        &s.api(
            "PATCH",
            "/apps/hostileapp/formation",
            Some(r#"{"updates":[{"quantity":1}]}"#),
        ),
        &[422],
        "invalid_params",
        "update without a type",
    );
    changed("invalid formation changes");

    // --- app updates: all or nothing ---
    for body in [
        r#"{"maintenance":"yes"}"#,
        r#"{"maintenance":true,"name":"Not Valid"}"#,
        r#"{"maintenance":true,"name":"renamed","build_stack":"heroku-22"}"#,
        r#"{"maintenance":true,"bogus":1}"#,
        r#"{"name":"Bad_Name"}"#,
    ] {
        assert_error(
            &s.api("PATCH", "/apps/hostileapp", Some(body)),
            &[422],
            "invalid_params",
            &format!("app update {body}"),
        );
    }
    changed("invalid app updates");

    // --- buildpacks ---
    let seventeen: Vec<Value> = (0..17)
        .map(|_| json!({ "buildpack": "heroku/python" }))
        .collect();
    for body in [
        r#"{"updates":[{"buildpack":""}]}"#.to_string(),
        r#"{"updates":[{"buildpack":"not a buildpack"}]}"#.to_string(),
        r#"{"updates":[{"buildpack":"-oProxyCommand=touch /tmp/kiln-pwned"}]}"#.to_string(),
        r#"{"updates":[{"buildpack":"https://example.com/bp.git#-u"}]}"#.to_string(),
        r#"{"updates":[{"buildpack":"heroku/python"},{"buildpack":42}]}"#.to_string(),
        r#"{"updates":"heroku/python"}"#.to_string(),
        json!({ "updates": seventeen }).to_string(),
    ] {
        assert_error(
            &s.api(
                "PUT",
                "/apps/hostileapp/buildpack-installations",
                Some(&body),
            ),
            &[422],
            "invalid_params",
            &format!("buildpacks {body}"),
        );
    }
    changed("invalid buildpacks");

    // --- log sessions ---
    let long_dyno = json!({ "dyno": "w".repeat(200) }).to_string();
    for body in [
        r#"{"lines":"abc"}"#,
        r#"{"lines":-5}"#,
        r#"{"tail":"yes"}"#,
        r#"{"source":5}"#,
        long_dyno.as_str(),
    ] {
        assert_error(
            &s.api("POST", "/apps/hostileapp/log-sessions", Some(body)),
            &[422],
            "invalid_params",
            &format!("log session {body}"),
        );
    }

    // --- releases and rollback ---
    for path in [
        "/apps/hostileapp/releases/v99999",
        "/apps/hostileapp/releases/99999999999999",
        "/apps/hostileapp/releases/notanid",
        "/apps/hostileapp/releases/00000000-0000-4000-8000-000000000000",
        "/apps/hostileapp/releases/v99999/config-vars",
    ] {
        let v = assert_error(&s.api("GET", path, None), &[404], "not_found", path);
        assert_eq!(v["resource"], "release", "{path}: {v}");
    }
    for target in [
        "v99999",
        "99999",
        "notanid",
        "00000000-0000-4000-8000-000000000000",
    ] {
        let body = json!({ "release": target }).to_string();
        assert_error(
            &s.api("POST", "/apps/hostileapp/releases", Some(&body)),
            &[404],
            "not_found",
            &format!("rollback to {target}"),
        );
    }
    for body in [r#"{}"#, r#"{"release":5}"#, r#"{"release":null}"#] {
        assert_error(
            &s.api("POST", "/apps/hostileapp/releases", Some(body)),
            &[422],
            "invalid_params",
            &format!("rollback {body}"),
        );
    }
    changed("bad release lookups and rollbacks");

    // --- unknown apps, endpoints and dynos ---
    for (method, path, body) in [
        ("GET", "/apps/nosuchapp", None),
        ("GET", "/apps/00000000-0000-4000-8000-000000000000", None),
        ("PATCH", "/apps/nosuchapp", Some(r#"{"maintenance":true}"#)),
        ("DELETE", "/apps/nosuchapp", None),
        ("GET", "/apps/nosuchapp/releases", None),
        ("PATCH", "/apps/nosuchapp/config-vars", Some(r#"{"A":"1"}"#)),
        (
            "PATCH",
            "/apps/nosuchapp/formation/web",
            Some(r#"{"quantity":1}"#),
        ),
        ("POST", "/apps/nosuchapp/log-sessions", Some("{}")),
        ("DELETE", "/apps/nosuchapp/dynos", None),
    ] {
        let v = assert_error(
            &s.api(method, path, body),
            &[404],
            "not_found",
            &format!("{method} {path}"),
        );
        assert_eq!(v["resource"], "app", "{method} {path}: {v}");
    }
    // Unknown endpoints, and known ones with the wrong verb, are Heroku's JSON 404.
    for (method, path) in [
        ("GET", "/no-such-endpoint"),
        ("GET", "/apps/hostileapp/nonsense"),
        ("PUT", "/apps/hostileapp"),
        ("POST", "/account"),
        ("DELETE", "/apps"),
        ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
    ] {
        assert_error(
            &s.api(method, path, None),
            &[404],
            "not_found",
            &format!("{method} {path}"),
        );
    }
    for dyno in ["not-a-dyno", "web.0", "web.-1", "..", "web.99"] {
        let r = s.api("DELETE", &format!("/apps/hostileapp/dynos/{dyno}"), None);
        let v = assert_error_shape(&r, &[404, 422], &format!("DELETE dyno {dyno}"));
        assert_eq!(
            v["id"],
            if r.status == 422 {
                "invalid_params"
            } else {
                "not_found"
            },
            "DELETE dyno {dyno}: {v}"
        );
    }
    changed("unknown apps, endpoints and dynos");
}

/// Base64 for Basic auth (no new dependency for five lines).
fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4. The CLI and git on bad input.
// ---------------------------------------------------------------------------------------------

fn assert_clear(out: &str, needles: &[&str], what: &str) {
    assert!(
        !out.contains("panicked"),
        "{what}: the CLI panicked:\n{out}"
    );
    assert!(
        needles
            .iter()
            .any(|n| out.to_lowercase().contains(&n.to_lowercase())),
        "{what}: expected one of {needles:?} in:\n{out}"
    );
}

#[test]
fn cli_and_git_refuse_bad_input_clearly() {
    let s = Server::start("clibad");
    s.ok(&["apps:create", "cliapp"]);
    let before = snapshot(&s);

    let out = s.fails(&["apps:create", "Bad_Name"]);
    assert_clear(&out, &["lowercase letters"], "apps:create Bad_Name");
    let out = s.fails(&["apps:create", "cliapp"]);
    assert_clear(&out, &["taken", "exists"], "apps:create of a taken name");
    let out = s.fails(&["config:set", "NOEQUALS", "-a", "cliapp"]);
    assert_clear(
        &out,
        &["NOEQUALS is invalid", "FOO=bar"],
        "config:set NOEQUALS",
    );
    let out = s.fails(&["config:set", "BAD-KEY=1", "-a", "cliapp"]);
    assert_clear(&out, &["BAD-KEY"], "config:set BAD-KEY=1");
    let out = s.fails(&["ps:scale", "web=lots", "-a", "cliapp"]);
    assert_clear(&out, &["lots"], "ps:scale web=lots");
    let out = s.fails(&["releases:info", "v99999", "-a", "cliapp"]);
    assert_clear(
        &out,
        &["couldn't find", "not found"],
        "releases:info v99999",
    );
    let out = s.fails(&["info", "-a", "nosuchapp"]);
    assert_clear(
        &out,
        &["couldn't find that app", "not found"],
        "info of a missing app",
    );

    // A wrong API key, from the environment.
    for args in [
        &["apps"][..],
        &["config:set", "EVIL=1", "-a", "cliapp"],
        &["apps:create", "sneaky"],
    ] {
        let out = std::process::Command::new(KILN)
            .args(args)
            .current_dir(&s.dir)
            .env("KILN_API_URL", &s.api_url)
            .env("KILN_API_KEY", "wrong")
            .env("HOME", s.home())
            .env_remove("KILN_APP")
            .output()
            .expect("run kiln");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "kiln {args:?} with a wrong key succeeded:\n{text}"
        );
        assert_ne!(out.status.code(), Some(0));
        assert_clear(
            &text,
            &["invalid credentials", "unauthorized", "log in", "login"],
            &format!("kiln {args:?} with a wrong key"),
        );
    }

    // git push with a wrong key, and to an app that does not exist.
    let repo = fixture_repo(
        "no-such-fixture",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("requirements.txt", ""),
        ],
    );
    let (ok, out) = s.push_with_key(&repo, "cliapp", "wrong");
    assert!(!ok, "push with a wrong key succeeded:\n{out}");
    assert_clear(&out, &["authentication"], "git push with a wrong key");
    let (ok, out) = s.push(&repo, "ghostapp");
    assert!(!ok, "push to a missing app succeeded:\n{out}");
    assert_clear(
        &out,
        &["No such app as ghostapp"],
        "git push to a missing app",
    );

    assert_eq!(
        snapshot(&s),
        before,
        "a refused CLI command or push changed something"
    );
}

/// Issue 12: the server says what it does. Every API request is logged (method, path,
/// status, time, request id), unknown endpoints as warnings; never a key, a config value or
/// the secret in a rendezvous path. `--log-level` (or `RUST_LOG`) sets what is logged.
#[test]
fn api_requests_are_logged_without_secrets() {
    let s = Server::start("api-log");
    assert_eq!(
        s.api("POST", "/apps", Some(r#"{"name":"logged"}"#)).status,
        201
    );
    let r = s.api(
        "PATCH",
        "/apps/logged/config-vars",
        Some(r#"{"SECRET_TOKEN":"hunter2-do-not-log"}"#),
    );
    assert_eq!(r.status, 200);
    let request_id = r.header("request-id").unwrap().to_string();
    assert_eq!(s.api("GET", "/no/such/endpoint", None).status, 404);
    assert!(
        (400..500).contains(&raw(&s, "GET", "/attach/s3cr3t-rendezvous-token", &[], None).status)
    );
    // The last request's line, which the server may write after answering.
    let log = wait_for(Duration::from_secs(10), "the request lines", || {
        let log = s.server_log();
        (log.contains("unknown API endpoint") && log.contains("path=\"/attach/")).then_some(log)
    });
    let line = log
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no line with the request id {request_id}:\n{log}"));
    assert!(
        line.contains("INFO")
            && line.contains("method=PATCH")
            && line.contains("path=\"/apps/logged/config-vars\"")
            && line.contains("status=200")
            && line.contains("ms="),
        "{line}"
    );
    let unknown = log
        .lines()
        .find(|l| l.contains("unknown API endpoint"))
        .unwrap();
    assert!(
        unknown.contains("WARN")
            && unknown.contains("path=\"/no/such/endpoint\"")
            && unknown.contains("status=404"),
        "{unknown}"
    );
    assert!(
        log.contains("path=\"/attach/…\""),
        "the rendezvous path is cut at its secret:\n{log}"
    );
    for secret in [
        s.key.as_str(),
        "hunter2-do-not-log",
        "s3cr3t-rendezvous-token",
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }

    // Less: warnings only.
    let quiet = Server::start_with("api-log-quiet", &["--log-level", "warn"]);
    assert_eq!(quiet.api("GET", "/apps", None).status, 200);
    assert_eq!(quiet.api("GET", "/nope", None).status, 404);
    let log = wait_for(Duration::from_secs(10), "the warning", || {
        let log = quiet.server_log();
        log.contains("unknown API endpoint").then_some(log)
    });
    assert!(
        !log.contains("API request"),
        "info lines at --log-level warn:\n{log}"
    );

    // A level that does not parse is refused at start, with the reason.
    for bad in ["loud", "info,kiln_router=chatty"] {
        let dir = TempDir::new("api-log-bad");
        let mut child = std::process::Command::new(KILN)
            .args([
                "server",
                "--log-level",
                bad,
                "--api-listen",
                "127.0.0.1:0",
                "--router-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_for(
            Duration::from_secs(10),
            "the server to refuse the level",
            || child.try_wait().unwrap(),
        );
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("--log-level (or RUST_LOG) {bad:?}")),
            "{stderr}"
        );
    }
}

/// Issue 13: the add-on resources in Heroku's shapes.
#[test]
fn addon_objects_match_herokus_schema() {
    let s = Server::start("schema-addons");
    s.ok(&["apps:create", "shapes"]);
    s.ok(&["apps:create", "other-shapes"]);
    let r = s.api(
        "POST",
        "/apps/shapes/addons",
        Some(r#"{"plan":{"name":"heroku-redis:mini"},"attachment":{"name":"CACHE"}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_schema("add-on", &r.json());
    let name = r.json()["name"].as_str().unwrap().to_string();
    let r = s.api(
        "POST",
        "/addon-attachments",
        Some(&format!(
            r#"{{"addon":"{name}","app":"other-shapes","name":"SHARED"}}"#
        )),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_schema("add-on-attachment", &r.json());
    assert_schema_items("add-on", &s.api("GET", "/apps/shapes/addons", None));
    assert_schema_items("add-on", &s.api("GET", "/addons", None));
    assert_schema(
        "add-on",
        &s.api("GET", &format!("/addons/{name}"), None).json(),
    );
    assert_schema_items(
        "add-on-attachment",
        &s.api("GET", "/addon-attachments", None),
    );
    assert_schema_items(
        "add-on-attachment",
        &s.api("GET", "/apps/other-shapes/addon-attachments", None),
    );
    assert_schema_items(
        "add-on-attachment",
        &s.api("GET", &format!("/addons/{name}/addon-attachments"), None),
    );
    assert_schema_items("add-on-service", &s.api("GET", "/addon-services", None));
    assert_schema_items(
        "plan",
        &s.api("GET", "/addon-services/heroku-postgresql/plans", None),
    );
    assert_schema(
        "plan",
        &s.api("GET", "/addon-services/heroku-redis/plans/mini", None)
            .json(),
    );
    let r = s.api(
        "POST",
        "/actions/addon-attachments/resolve",
        Some(r#"{"addon_attachment":"CACHE","app":"shapes"}"#),
    );
    assert_schema_items("add-on-attachment", &r);
    let r = s.api(
        "POST",
        "/actions/addons/resolve",
        Some(&format!(r#"{{"addon":"{name}"}}"#)),
    );
    assert_schema_items("add-on", &r);
    // The release that attached it lists the plan.
    let releases = s.api("GET", "/apps/shapes/releases", None).json();
    let last = releases.as_array().unwrap().last().unwrap().clone();
    assert_schema("release", &last);
    assert_eq!(
        last["addon_plan_names"],
        serde_json::json!(["heroku-redis:mini"])
    );
}
