//! Add-ons end to end (issue 13): a real Python app, pushed with git, using psycopg and redis
//! from PyPI against the PostgreSQL database and Redis server Kiln provisions, through the
//! router; its worker reads the same data; the data survive a deploy, a restart and a
//! SIGKILL of the server; every add-on change is one release; nothing is left after the app
//! is destroyed.

mod common;

use common::*;
use kiln_testkit::pg::psql;
use std::time::Duration;

/// Polls `path` on the app until it answers 200, returning the body.
fn until_ok(s: &Server, app: &str, path: &str) -> String {
    // On a timeout the app's dynos, its log stream and the last answer say why.
    let mut last = String::new();
    s.wait_for_app(
        app,
        Duration::from_secs(90),
        &format!("{path} to answer 200"),
        || {
            let r = s.get(app, path);
            if r.status == 200 {
                return Some(r.body);
            }
            let answer = format!("{} {}", r.status, r.body);
            if answer != last {
                eprintln!("{path}: {answer}");
                last = answer;
            }
            None
        },
    )
}

fn descriptions(s: &Server, app: &str) -> Vec<String> {
    s.api("GET", &format!("/apps/{app}/releases"), None)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap().to_string())
        .collect()
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .count()
}

#[test]
fn an_app_keeps_its_data_in_postgres_and_redis_across_deploys_restarts_and_crashes() {
    let mut s = Server::start("addons");
    s.ok(&["apps:create", "notes"]);
    let repo = fixture_repo("addons-app", &[]);
    let (ok, out) = s.push(&repo, "notes");
    assert!(ok, "push failed:\n{out}");

    let out = s.ok(&["addons:create", "heroku-postgresql", "-a", "notes"]);
    assert!(out.contains("as DATABASE_URL"), "{out}");
    let out = s.ok(&[
        "addons:create",
        "heroku-redis:mini",
        "-a",
        "notes",
        "--",
        "--maxmemory_policy",
        "allkeys-lru",
    ]);
    assert!(out.contains("as REDIS_URL"), "{out}");
    assert!(out.contains("allkeys-lru"), "{out}");
    let list = s.ok(&["addons", "-a", "notes"]);
    assert!(
        list.contains("heroku-postgresql (postgresql-") && list.contains("└─ as DATABASE"),
        "{list}"
    );
    assert!(
        list.contains("heroku-redis (redis-")
            && list.contains("essential-0")
            && list.contains("mini"),
        "{list}"
    );

    // Exactly one release per add-on, in Heroku's words, with the vars.
    let d = descriptions(&s, "notes");
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(d[1].starts_with("Deploy"), "{d:?}");
    assert!(
        d[2].starts_with("Attach DATABASE (@ref:postgresql-"),
        "{d:?}"
    );
    assert!(d[3].starts_with("Attach REDIS (@ref:redis-"), "{d:?}");
    let config = s.api("GET", "/apps/notes/config-vars", None).json();
    assert!(
        config["DATABASE_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    assert!(
        config["REDIS_URL"]
            .as_str()
            .unwrap()
            .starts_with("redis://:")
    );
    let latest = &s.api("GET", "/apps/notes/releases", None).json()[3];
    assert_eq!(
        latest["addon_plan_names"],
        serde_json::json!(["heroku-postgresql:essential-0", "heroku-redis:mini"])
    );
    // The add-on's vars are the add-on's.
    let e = s.fails(&[
        "config:set",
        "DATABASE_URL=postgres://elsewhere/db",
        "-a",
        "notes",
    ]);
    assert!(e.contains("set by the add-on postgresql-"), "{e}");

    // The restarted dynos have the vars: write through the web dyno, read back.
    until_ok(&s, "notes", "/ready");
    assert_eq!(s.get("notes", "/write?v=alpha").body, "wrote alpha");
    assert_eq!(until_ok(&s, "notes", "/read"), "rows=alpha last=alpha");
    s.ok(&["ps:scale", "worker=1", "-a", "notes"]);
    wait_for(Duration::from_secs(60), "the worker to see the row", || {
        s.logs("notes")
            .contains("worker sees 1 rows, last=alpha")
            .then_some(())
    });

    // A deploy, a restart, a crash of the server: the data stay.
    std::fs::write(repo.join("CHANGED"), "1").unwrap();
    commit_all(&repo, "a second deploy");
    let (ok, out) = s.push(&repo, "notes");
    assert!(ok, "second push failed:\n{out}");
    until_ok(&s, "notes", "/ready");
    assert_eq!(s.get("notes", "/write?v=beta").body, "wrote beta");
    s.ok(&["ps:restart", "-a", "notes"]);
    assert_eq!(until_ok(&s, "notes", "/read"), "rows=alpha,beta last=beta");
    s.crash_and_restart(&[]);
    assert_eq!(until_ok(&s, "notes", "/read"), "rows=alpha,beta last=beta");
    let logs = s.logs("notes");
    assert!(
        logs.contains("app[heroku-redis]") || logs.contains("app[heroku-postgres]"),
        "service lines in the stream"
    );

    // Destroying the app deprovisions everything it owned.
    let redis_addon = s.api("GET", "/apps/notes/addons", None).json();
    let names: Vec<String> = redis_addon
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    let data = s.dir.join("data/addons");
    // redis-server names itself after its address.
    let redis_url = s.api("GET", "/apps/notes/config-vars", None).json()["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let title = format!("redis-server {}", redis_url.rsplit_once('@').unwrap().1);
    assert_eq!(processes_with(&title), 1, "one {title}");
    let database_url = s.api("GET", "/apps/notes/config-vars", None).json()["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&["apps:destroy", "notes", "--confirm", "notes"]);
    assert_eq!(processes_with(&title), 0, "no {title} left");
    // The database and its role are gone: its credentials connect to nothing.
    let psql = std::process::Command::new("psql")
        .args(["-X", "-d", &database_url, "-c", "SELECT 1"])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    assert!(!psql.status.success());
    let e = String::from_utf8_lossy(&psql.stderr);
    assert!(
        e.contains("authentication failed")
            || e.contains("does not exist")
            || e.contains("no pg_hba"),
        "{e}"
    );
    for n in &names {
        assert_eq!(
            s.api("GET", &format!("/addons/{n}"), None).status,
            404,
            "{n}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(data.join("redis"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left.iter()
            .filter(|n| n.to_string_lossy() != "state")
            .count(),
        0,
        "{left:?}"
    );
    assert_eq!(
        std::fs::read_dir(data.join("redis/state")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(data.join("postgres/state"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn bad_add_on_requests_are_refused_and_change_nothing() {
    let s = Server::start("addons-bad");
    s.ok(&["apps:create", "plain"]);
    s.ok(&["apps:create", "other"]);
    let e = s.fails(&["addons:create", "mongodb", "-a", "plain"]);
    assert!(
        e.contains("heroku-postgresql, heroku-redis, memcachier"),
        "{e}"
    );
    let e = s.fails(&[
        "addons:create",
        "heroku-postgresql:hobby-dev",
        "-a",
        "plain",
    ]);
    assert!(e.contains("heroku-postgresql:essential-0"), "{e}");
    let e = s.fails(&[
        "addons:create",
        "heroku-redis",
        "-a",
        "plain",
        "--",
        "--maxmemory_policy",
        "yolo",
    ]);
    assert!(e.contains("maxmemory_policy"), "{e}");
    let e = s.fails(&[
        "addons:create",
        "heroku-redis",
        "-a",
        "plain",
        "--as",
        "bad name",
    ]);
    assert!(e.contains("invalid"), "{e}");
    assert_eq!(
        descriptions(&s, "plain").len(),
        1,
        "no release for a refused add-on"
    );

    // A duplicate attachment name is refused; so is destroying what another app has attached.
    s.ok(&[
        "addons:create",
        "heroku-redis",
        "-a",
        "plain",
        "--name",
        "shared-cache",
    ]);
    let e = s.fails(&[
        "addons:create",
        "heroku-redis",
        "-a",
        "plain",
        "--as",
        "REDIS",
    ]);
    assert!(e.contains("already used"), "{e}");
    let e = s.fails(&[
        "addons:create",
        "heroku-redis",
        "-a",
        "plain",
        "--name",
        "shared-cache",
    ]);
    assert!(e.contains("already taken"), "{e}");
    s.ok(&[
        "addons:attach",
        "shared-cache",
        "-a",
        "other",
        "--as",
        "CACHE",
    ]);
    assert!(s.api("GET", "/apps/other/config-vars", None).json()["CACHE_URL"].is_string());
    let e = s.fails(&[
        "addons:destroy",
        "shared-cache",
        "-a",
        "plain",
        "--confirm",
        "plain",
    ]);
    assert!(e.contains("attached to other apps (other)"), "{e}");
    s.ok(&["addons:detach", "CACHE", "-a", "other"]);
    assert!(s.api("GET", "/apps/other/config-vars", None).json()["CACHE_URL"].is_null());
    s.ok(&[
        "addons:destroy",
        "shared-cache",
        "-a",
        "plain",
        "--confirm",
        "plain",
    ]);
    assert_eq!(
        s.api("GET", "/apps/plain/addons", None).json(),
        serde_json::json!([])
    );

    // Hostile bodies.
    for body in [
        r#"{"plan": 5}"#,
        r#"{"plan": {"name": "heroku-redis"}, "config": "x"}"#,
        r#"{"plan": {"name": "heroku-redis"}, "attachment": {"name": ["x"]}}"#,
        r#"{"plan": {"name": "heroku-redis"}, "name": "../../etc"}"#,
        r#"{}"#,
    ] {
        let r = s.api("POST", "/apps/plain/addons", Some(body));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
    }
    assert_eq!(s.api("GET", "/addons/nonexistent", None).status, 404);
}

#[test]
fn backups_capture_restore_download_reset_schedule_retain_and_fail_visibly() {
    let s = Server::start_with("addons-backups", &["--addons-check-interval", "1"]);
    s.ok(&["apps:create", "ledger"]);
    s.ok(&["addons:create", "heroku-postgresql", "-a", "ledger"]);
    let url = s.api("GET", "/apps/ledger/config-vars", None).json()["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    psql(&url, "CREATE TABLE accounts (id int, name text); INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(1, 100) g;").unwrap();

    let out = s.ok(&["pg:backups:capture", "-a", "ledger"]);
    assert!(out.contains("b001"), "{out}");
    let list = s.ok(&["pg:backups", "-a", "ledger"]);
    assert!(
        list.contains("b001") && list.contains("Completed"),
        "{list}"
    );

    // Restore into the same database after a DROP TABLE.
    psql(&url, "DROP TABLE accounts").unwrap();
    s.fails(&["pg:backups:restore", "b001", "-a", "ledger"]);
    s.ok(&[
        "pg:backups:restore",
        "b001",
        "-a",
        "ledger",
        "--confirm",
        "ledger",
    ]);
    assert_eq!(psql(&url, "SELECT count(*) FROM accounts").unwrap(), "100");

    // Download: a dump pg_restore can read.
    let dest = s.dir.join("latest.dump");
    s.ok(&[
        "pg:backups:download",
        "b001",
        "-a",
        "ledger",
        "-o",
        dest.to_str().unwrap(),
    ]);
    let list = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        list.status.success()
            && String::from_utf8_lossy(&list.stdout).contains("TABLE public accounts")
    );

    let info = s.ok(&["pg:info", "-a", "ledger"]);
    assert!(
        info.contains("Plan:")
            && info.contains("essential-0")
            && info.contains("Tables:")
            && info.contains("Data Size:"),
        "{info}"
    );
    assert!(
        info.contains("Connections:") && info.contains("/20"),
        "{info}"
    );

    // Retention: essential-0 keeps the 2 newest manual backups.
    s.ok(&["pg:backups:capture", "-a", "ledger"]);
    s.ok(&["pg:backups:capture", "-a", "ledger"]);
    let list = s
        .api("GET", "/client/v11/apps/ledger/transfers", None)
        .json();
    let manual: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with('b'))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(manual, ["b004", "b003"], "{list}");
    s.fails(&["pg:backups:delete", "b003", "-a", "ledger"]);
    s.ok(&[
        "pg:backups:delete",
        "b003",
        "-a",
        "ledger",
        "--confirm",
        "ledger",
    ]);
    assert_eq!(
        s.api("GET", "/client/v11/apps/ledger/transfers/b003", None)
            .status,
        404
    );

    // A backup that fails is shown failed, with pg_dump's reason: a table the role may not read
    // (made by the cluster's admin over its private socket).
    let (port, db) = {
        let rest = url.rsplit_once('@').unwrap().1;
        let (hostport, db) = rest.split_once('/').unwrap();
        (
            hostport.rsplit_once(':').unwrap().1.to_string(),
            db.to_string(),
        )
    };
    let run = s.dir.join("data/addons/postgres/shared/run");
    let admin = std::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            run.to_str().unwrap(),
            "-p",
            &port,
            "-U",
            "kiln",
            "-d",
            &db,
            "-c",
            "CREATE TABLE locked (x int)",
        ])
        .output()
        .unwrap();
    assert!(admin.status.success(), "{admin:?}");
    let e = s.fails(&["pg:backups:capture", "-a", "ledger"]);
    assert!(
        e.contains("failed") && e.contains("permission denied"),
        "{e}"
    );
    let list = s.ok(&["pg:backups", "-a", "ledger"]);
    assert!(list.contains("Failed"), "{list}");
    let info = s.ok(&["pg:backups:info", "b005", "-a", "ledger"]);
    assert!(
        info.contains("Error:") && info.contains("permission denied"),
        "{info}"
    );
    std::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            run.to_str().unwrap(),
            "-p",
            &port,
            "-U",
            "kiln",
            "-d",
            &db,
            "-c",
            "DROP TABLE locked",
        ])
        .output()
        .unwrap();

    // A schedule at this hour takes the day's backup within the check interval.
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    s.ok(&[
        "pg:backups:schedule",
        "-a",
        "ledger",
        "--at",
        &format!("{hour:02}:00 UTC"),
    ]);
    assert!(
        s.ok(&["pg:backups:schedules", "-a", "ledger"])
            .contains(&format!("DATABASE_URL: daily at {hour:02}:00 UTC"))
    );
    wait_for(Duration::from_secs(30), "a scheduled backup", || {
        let list = s
            .api("GET", "/client/v11/apps/ledger/transfers", None)
            .json();
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"].as_str().unwrap().starts_with('a') && t["status"] == "succeeded")
            .then_some(())
    });
    s.ok(&["pg:backups:unschedule", "-a", "ledger"]);

    // pg:reset empties the database.
    s.fails(&["pg:reset", "-a", "ledger"]);
    s.ok(&["pg:reset", "-a", "ledger", "--confirm", "ledger"]);
    assert!(
        psql(&url, "SELECT count(*) FROM accounts")
            .unwrap_err()
            .contains("does not exist")
    );

    // Destroying the database leaves a final backup, kept for a week.
    let addon = s.api("GET", "/apps/ledger/addons", None).json()[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&[
        "addons:destroy",
        &addon,
        "-a",
        "ledger",
        "--confirm",
        "ledger",
    ]);
    let list = s
        .api("GET", "/client/v11/apps/ledger/transfers", None)
        .json();
    let last = &list[0];
    assert!(
        last["name"].as_str().unwrap().starts_with('f') && last["status"] == "succeeded",
        "{list}"
    );
    assert!(last["expires_at"].is_string());
    // Another app's backups, or a backup that is not there, are not found.
    assert_eq!(
        s.api("GET", "/client/v11/apps/ledger/transfers/b999", None)
            .status,
        404
    );
    assert_eq!(
        s.api(
            "GET",
            "/client/v11/apps/ledger/transfers/..%2F..%2Fetc",
            None
        )
        .status,
        404
    );
}

#[test]
fn rotating_credentials_ends_the_old_ones_and_releases_the_new_ones_everywhere() {
    let s = Server::start("addons-rotate");
    s.ok(&["apps:create", "main-app"]);
    s.ok(&["apps:create", "reader"]);
    s.ok(&[
        "addons:create",
        "heroku-postgresql",
        "-a",
        "main-app",
        "--name",
        "shared-db",
    ]);
    s.ok(&[
        "addons:attach",
        "shared-db",
        "-a",
        "reader",
        "--as",
        "MAIN_DB",
    ]);
    s.ok(&["addons:create", "heroku-redis", "-a", "main-app"]);
    let vars = |app: &str| {
        s.api("GET", &format!("/apps/{app}/config-vars"), None)
            .json()
    };
    let old = vars("main-app")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(psql(&old, "SELECT 1").unwrap(), "1");
    s.fails(&["pg:credentials:rotate", "-a", "main-app"]);
    s.ok(&[
        "pg:credentials:rotate",
        "-a",
        "main-app",
        "--confirm",
        "main-app",
    ]);
    let new = vars("main-app")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(old, new);
    assert_eq!(
        vars("reader")["MAIN_DB_URL"].as_str().unwrap(),
        new,
        "every attachment gets them"
    );
    assert!(
        psql(&old, "SELECT 1")
            .unwrap_err()
            .contains("password authentication failed")
    );
    assert_eq!(psql(&new, "SELECT 1").unwrap(), "1");
    for app in ["main-app", "reader"] {
        let releases = s.api("GET", &format!("/apps/{app}/releases"), None).json();
        let last = releases.as_array().unwrap().last().unwrap()["description"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            last.starts_with("Update ") && last.ends_with(" by heroku-postgresql"),
            "{app}: {last}"
        );
    }
    // Rolling back to before the rotation keeps the new credentials (the old ones no longer work).
    let releases = s.api("GET", "/apps/main-app/releases", None).json();
    let before = releases.as_array().unwrap().len() - 1;
    s.ok(&["releases:rollback", &format!("v{before}"), "-a", "main-app"]);
    assert_eq!(vars("main-app")["DATABASE_URL"].as_str().unwrap(), new);
    // Redis: a new password; the old one is refused.
    let old = vars("main-app")["REDIS_URL"].as_str().unwrap().to_string();
    s.ok(&[
        "redis:credentials",
        "-a",
        "main-app",
        "--reset",
        "--confirm",
        "main-app",
    ]);
    let new = vars("main-app")["REDIS_URL"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    assert_eq!(
        new.rsplit_once('@').unwrap().1,
        old.rsplit_once('@').unwrap().1,
        "same server"
    );
}

#[test]
fn app_json_add_ons_are_provisioned_on_the_first_deploy_only() {
    let s = Server::start("addons-appjson");
    s.ok(&["apps:create", "declared"]);
    let repo = python_app(&[(
        "app.json",
        r#"{"addons": ["heroku-redis", {"plan": "memcachier:dev", "as": "CACHE"}]}"#,
    )]);
    let (ok, out) = s.push(&repo, "declared");
    assert!(ok, "push failed:\n{out}");
    assert!(out.contains("Provisioning heroku-redis"), "{out}");
    let config = s.api("GET", "/apps/declared/config-vars", None).json();
    assert!(
        config["REDIS_URL"].is_string() && config["CACHE_SERVERS"].is_string(),
        "{config}"
    );
    let d = descriptions(&s, "declared");
    assert!(
        d[1].starts_with("Attach REDIS")
            && d[2].starts_with("Attach CACHE")
            && d[3].starts_with("Deploy"),
        "{d:?}"
    );
    // The release that runs has the add-ons' vars.
    until_ok(&s, "declared", "/");
    let env = s.ok(&[
        "run",
        "-a",
        "declared",
        "--no-tty",
        "--",
        "sh",
        "-c",
        "echo redis=${REDIS_URL%%:*}",
    ]);
    assert!(env.contains("redis=redis"), "{env}");
    // A second deploy provisions nothing more.
    std::fs::write(repo.join("CHANGED"), "1").unwrap();
    commit_all(&repo, "again");
    let (ok, out) = s.push(&repo, "declared");
    assert!(ok && !out.contains("Provisioning"), "{out}");
    assert_eq!(
        s.api("GET", "/apps/declared/addons", None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // An app.json asking for what cannot be made fails the first deploy, clearly.
    s.ok(&["apps:create", "impossible"]);
    let repo = python_app(&[("app.json", r#"{"addons": ["heroku-postgresql:gigantic"]}"#)]);
    let (ok, out) = s.push(&repo, "impossible");
    assert!(
        !ok && out.contains("Could not provision heroku-postgresql:gigantic"),
        "{out}"
    );
}

/// Sends RESP commands to `addr` (`host:port`) and returns the replies (2 s at most).
fn redis_exchange(addr: &str, commands: &[&[&str]]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut req = String::new();
    for c in commands {
        req.push_str(&format!("*{}\r\n", c.len()));
        for a in *c {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// memcached's binary protocol: SASL PLAIN with `creds` (if any), then a GET of `key`;
/// returns the GET's status (0 found, 1 not found, 0x20 authentication required).
fn memcached_get(servers: &str, creds: Option<(&str, &str)>, key: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(servers).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = |op: u8, key: &[u8], value: &[u8]| {
        let mut r = vec![0x80, op];
        r.extend_from_slice(&(key.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
        r.extend_from_slice(&[0; 12]);
        r.extend_from_slice(key);
        r.extend_from_slice(value);
        r
    };
    let response = |s: &mut std::net::TcpStream| {
        let mut head = [0u8; 24];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let mut body = vec![0; len];
        s.read_exact(&mut body).unwrap();
        u16::from_be_bytes([head[6], head[7]])
    };
    if let Some((user, pw)) = creds {
        let v = format!("\0{user}\0{pw}");
        s.write_all(&request(0x21, b"PLAIN", v.as_bytes())).unwrap();
        if response(&mut s) != 0 {
            return 0x20;
        }
    }
    s.write_all(&request(0x00, key.as_bytes(), b"")).unwrap();
    response(&mut s)
}

#[test]
fn two_apps_services_answer_only_to_their_own_credentials() {
    let s = Server::start("addons-two");
    let mut vars = Vec::new();
    for app in ["alpha", "beta"] {
        s.ok(&["apps:create", app]);
        for svc in ["heroku-postgresql", "heroku-redis", "memcachier"] {
            s.ok(&["addons:create", svc, "-a", app]);
        }
        vars.push(
            s.api("GET", &format!("/apps/{app}/config-vars"), None)
                .json(),
        );
    }
    let (a, b) = (&vars[0], &vars[1]);
    let var = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().to_string();

    // PostgreSQL: alpha's role reaches neither beta's database nor the cluster's own.
    let a_db = var(a, "DATABASE_URL");
    let b_name = var(b, "DATABASE_URL")
        .rsplit_once('/')
        .unwrap()
        .1
        .to_string();
    psql(
        &a_db,
        "CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('alpha only')",
    )
    .unwrap();
    for other in [b_name.as_str(), "postgres", "template1"] {
        let url = format!("{}/{other}", a_db.rsplit_once('/').unwrap().0);
        let e = psql(&url, "SELECT 1").unwrap_err();
        assert!(
            e.contains("no pg_hba.conf entry") || e.contains("permission denied"),
            "{other}: {e}"
        );
    }
    // Beta's credentials cannot read alpha's table, even pointed at alpha's database.
    let b_on_a = format!(
        "{}/{}",
        var(b, "DATABASE_URL").rsplit_once('/').unwrap().0,
        a_db.rsplit_once('/').unwrap().1
    );
    assert!(psql(&b_on_a, "SELECT * FROM secrets").is_err());
    for attack in [
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "SELECT pg_read_file('/etc/shadow')",
        "COPY secrets FROM PROGRAM 'id'",
    ] {
        assert!(psql(&a_db, attack).is_err(), "{attack}");
    }

    // Redis: each server answers to its own password only.
    // Where the server listens: the URL's host (the dyno network's services address).
    let port = |url: &str| url.rsplit_once('@').unwrap().1.to_string();
    let pw = |url: &str| {
        url.strip_prefix("redis://:")
            .unwrap()
            .split_once('@')
            .unwrap()
            .0
            .to_string()
    };
    let (a_redis, b_redis) = (var(a, "REDIS_URL"), var(b, "REDIS_URL"));
    assert!(
        redis_exchange(
            &port(&a_redis),
            &[&["AUTH", &pw(&a_redis)], &["SET", "k", "alpha"]]
        )
        .contains("+OK\r\n+OK")
    );
    let out = redis_exchange(&port(&a_redis), &[&["AUTH", &pw(&b_redis)], &["GET", "k"]]);
    assert!(
        out.starts_with("-WRONGPASS") && !out.contains("alpha"),
        "{out}"
    );
    let out = redis_exchange(&port(&a_redis), &[&["GET", "k"], &["KEYS", "*"]]);
    assert!(
        out.starts_with("-NOAUTH") && !out.contains("alpha"),
        "{out}"
    );
    let out = redis_exchange(&port(&b_redis), &[&["AUTH", &pw(&b_redis)], &["GET", "k"]]);
    assert!(out.contains("$-1"), "beta's Redis is another server: {out}");

    // memcached: alpha's server refuses beta's credentials and none.
    let (a_mc, b_mc) = (var(a, "MEMCACHIER_SERVERS"), var(b, "MEMCACHIER_SERVERS"));
    assert_ne!(a_mc, b_mc);
    let b_creds = (var(b, "MEMCACHIER_USERNAME"), var(b, "MEMCACHIER_PASSWORD"));
    assert_eq!(
        memcached_get(&a_mc, Some((&b_creds.0, &b_creds.1)), "k"),
        0x20
    );
    assert_eq!(memcached_get(&a_mc, None, "k"), 0x20);
    let a_creds = (var(a, "MEMCACHIER_USERNAME"), var(a, "MEMCACHIER_PASSWORD"));
    assert_eq!(
        memcached_get(&a_mc, Some((&a_creds.0, &a_creds.1)), "k"),
        1,
        "authenticated: a miss"
    );
}

#[test]
fn pg_ps_and_kill_redis_info_and_maxmemory() {
    let s = Server::start("addons-ops");
    s.ok(&["apps:create", "ops"]);
    s.ok(&["addons:create", "heroku-postgresql", "-a", "ops"]);
    s.ok(&["addons:create", "heroku-redis", "-a", "ops"]);
    let url = s.api("GET", "/apps/ops/config-vars", None).json()["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let mut sleeper = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            &url,
            "-c",
            "SELECT pg_sleep(60) AS kiln_marker",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for(Duration::from_secs(20), "the session in pg:ps", || {
        let out = s.ok(&["pg:ps", "-a", "ops"]);
        out.lines()
            .find(|l| l.contains("kiln_marker"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
    });
    s.ok(&["pg:kill", &pid.to_string(), "--force", "-a", "ops"]);
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "the session was ended");
    let e = s.fails(&["pg:kill", "999999", "-a", "ops"]);
    assert!(e.contains("No session 999999"), "{e}");

    let info = s.ok(&["redis:info", "-a", "ops"]);
    assert!(
        info.contains("Maxmemory policy: noeviction")
            && info.contains("Plan:")
            && info.contains("Keys:"),
        "{info}"
    );
    s.ok(&["redis:maxmemory", "-a", "ops", "--policy", "allkeys-lru"]);
    assert!(
        s.ok(&["redis:info", "-a", "ops"])
            .contains("Maxmemory policy: allkeys-lru")
    );
    let e = s.fails(&["redis:maxmemory", "-a", "ops", "--policy", "random-ish"]);
    assert!(e.contains("not one of"), "{e}");
}

#[test]
fn a_buildpacks_release_add_ons_are_provisioned_on_the_first_deploy() {
    let s = Server::start("addons-bp");
    let bp = TempDir::new("addons-bp-pack");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    for (name, body) in [
        ("detect", "#!/bin/sh\necho Declaring\n"),
        ("compile", "#!/bin/sh\necho '-----> nothing to compile'\n"),
        (
            "release",
            "#!/bin/sh\ncat <<'YAML'\n---\naddons:\n  - heroku-redis:mini\ndefault_process_types:\n  web: python3 app.py\nYAML\n",
        ),
    ] {
        let p = bp.join("bin").join(name);
        std::fs::write(&p, body).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&p)
            .status()
            .unwrap();
    }
    s.ok(&["apps:create", "packed"]);
    s.ok(&["buildpacks:set", bp.to_str().unwrap(), "-a", "packed"]);
    let repo = fixture_repo("python-app", &[]);
    let (ok, out) = s.push(&repo, "packed");
    assert!(ok, "push failed:\n{out}");
    assert!(out.contains("Provisioning heroku-redis:mini"), "{out}");
    let config = s.api("GET", "/apps/packed/config-vars", None).json();
    assert!(
        config["REDIS_URL"]
            .as_str()
            .unwrap()
            .starts_with("redis://:"),
        "{config}"
    );
}

#[test]
fn an_add_on_provisioned_but_never_recorded_is_removed_at_the_next_start() {
    let mut s = Server::start("addons-orphan");
    s.ok(&["apps:create", "orphaned"]);
    s.ok(&["addons:create", "heroku-redis", "-a", "orphaned"]);
    let url = s.api("GET", "/apps/orphaned/config-vars", None).json()["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let title = format!("redis-server {}", url.rsplit_once('@').unwrap().1);
    let dir = s.dir.clone();
    s.stop();
    std::mem::forget(s);
    // As if the server had died between provisioning the add-on and recording it.
    let db = dir.join("data/kiln.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA foreign_keys=ON'); c.execute('DELETE FROM addons'); c.commit()",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let state_dir = dir.join("data/addons/redis/state");
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 1);
    let s = Server::start_in(dir.clone(), &[]);
    assert_eq!(
        std::fs::read_dir(&state_dir).unwrap().count(),
        0,
        "the unrecorded add-on is gone"
    );
    assert_eq!(processes_with(&title), 0, "and its server");
    assert!(
        s.server_log().contains("provisioned but never recorded"),
        "{}",
        s.server_log()
    );
}
