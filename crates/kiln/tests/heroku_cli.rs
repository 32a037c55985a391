//! Heroku's own CLI (npm `heroku`, installed by `test.sh` under `target/heroku-cli`) against
//! Kiln, unmodified, with the environment the README gives: the add-on commands of issue 13.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

fn heroku_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_HEROKU_CLI") {
        return p.into();
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/heroku-cli/node_modules/.bin/heroku");
    assert!(
        p.exists(),
        "Heroku's CLI is not installed at {}: run ./test.sh, which installs it (npm install --prefix target/heroku-cli heroku@11.10.0)",
        p.display()
    );
    p
}

/// Runs `heroku args…` against the server; (success, stdout + stderr).
fn heroku(s: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new(heroku_bin())
        .args(args)
        .current_dir(&s.dir)
        .env("HOME", s.home())
        .env("HEROKU_HOST", &s.api_url)
        .env("HEROKU_API_KEY", &s.key)
        .env("HEROKU_PARTICLEBOARD_URL", &s.api_url)
        .env("HEROKU_DATA_HOST", "127.0.0.1")
        .env("DISABLE_TELEMETRY", "true")
        .env("HEROKU_SKIP_NEW_VERSION_CHECK", "true")
        .env("NO_COLOR", "1")
        .env_remove("HEROKU_APP")
        .output()
        .expect("run heroku");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(s: &Server, args: &[&str]) -> String {
    let (ok, out) = heroku(s, args);
    assert!(ok, "heroku {args:?} failed:\n{out}");
    out
}

#[test]
fn herokus_cli_creates_lists_attaches_detaches_and_destroys_add_ons() {
    let s = Server::start("heroku-cli-addons");
    ok(&s, &["apps:create", "hk-main"]);
    ok(&s, &["apps:create", "hk-other"]);

    let out = ok(
        &s,
        &[
            "addons:create",
            "heroku-postgresql",
            "--wait",
            "-a",
            "hk-main",
        ],
    );
    assert!(
        out.contains("Created postgresql-") && out.contains("as DATABASE_URL"),
        "{out}"
    );
    let name = s.api("GET", "/apps/hk-main/addons", None).json()[0]["name"]
        .as_str()
        .unwrap()
        .to_string();

    let out = ok(&s, &["addons", "-a", "hk-main"]);
    assert!(
        out.contains(&format!("heroku-postgresql ({name})")) && out.contains("essential-0"),
        "{out}"
    );
    assert!(out.contains("└─ as DATABASE"), "{out}");
    let out = ok(&s, &["addons:info", &name]);
    assert!(
        out.contains("heroku-postgresql:essential-0") && out.contains("hk-main::DATABASE"),
        "{out}"
    );

    let out = ok(
        &s,
        &[
            "addons:attach",
            &name,
            "--as",
            "SHARED_DB",
            "-a",
            "hk-other",
        ],
    );
    assert!(
        out.contains("Setting SHARED_DB config vars and restarting"),
        "{out}"
    );
    assert!(
        s.api("GET", "/apps/hk-other/config-vars", None).json()["SHARED_DB_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    let out = ok(&s, &["addons:detach", "SHARED_DB", "-a", "hk-other"]);
    assert!(
        out.contains("Unsetting SHARED_DB config vars and restarting"),
        "{out}"
    );
    assert!(s.api("GET", "/apps/hk-other/config-vars", None).json()["SHARED_DB_URL"].is_null());

    let out = ok(&s, &["pg:info", "-a", "hk-main"]);
    assert!(
        out.contains("=== DATABASE_URL") && out.contains("Connections: 0/20"),
        "{out}"
    );
    let out = ok(&s, &["pg:backups:capture", "-a", "hk-main"]);
    assert!(out.contains("Backing up DATABASE to b001... done"), "{out}");
    let out = ok(&s, &["pg:backups", "-a", "hk-main"]);
    assert!(out.contains("b001") && out.contains("Completed"), "{out}");

    let out = ok(
        &s,
        &[
            "addons:destroy",
            &name,
            "-a",
            "hk-main",
            "--confirm",
            "hk-main",
        ],
    );
    assert!(out.contains(&format!("Destroying {name} on")), "{out}");
    assert_eq!(
        s.api("GET", "/apps/hk-main/addons", None).json(),
        serde_json::json!([])
    );

    let (failed_ok, out) = heroku(
        &s,
        &[
            "addons:create",
            "heroku-postgresql:hobby-dev",
            "-a",
            "hk-main",
        ],
    );
    assert!(!failed_ok && out.contains("essential-0"), "{out}");
}
