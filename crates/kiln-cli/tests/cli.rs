//! End-to-end behaviour of `kiln` commands against an in-process fake API: the exact
//! requests sent (paths, headers, bodies) and what is printed.

mod support;

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use support::{FakeApi, Reply, SharedBuf, TempDir, env_for, git, kiln};

fn not_found() -> Reply {
    Reply::Json(
        404,
        json!({"id": "not_found", "message": "Couldn't find that app."}),
    )
}

#[test]
fn config_set_patches_then_reads_the_new_release() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PATCH", "/apps/myapp/config-vars") => {
            Reply::Json(200, json!({"A": "1", "B": "two=2", "OTHER": "x"}))
        }
        ("GET", "/apps/myapp/releases") => Reply::Json(206, json!([{"version": 7, "id": "r7"}])),
        _ => not_found(),
    });
    let dir = TempDir::new("config-set");
    let out = kiln(
        &env_for(&api, dir.path()),
        &["config:set", "-a", "myapp", "A=1", "B=two=2"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Setting A, B and restarting ⬢ myapp... done, v7\nA: 1\nB: two=2\n"
    );

    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    let patch = &reqs[0];
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", "/apps/myapp/config-vars")
    );
    assert_eq!(patch.json(), json!({"A": "1", "B": "two=2"}));
    assert_eq!(
        patch.header("accept"),
        Some("application/vnd.heroku+json; version=3")
    );
    assert_eq!(patch.header("authorization"), Some("Bearer test-key"));
    assert_eq!(patch.header("content-type"), Some("application/json"));
    assert!(
        patch
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("kiln-cli/"))
    );
    let releases = &reqs[1];
    assert_eq!(
        (releases.method.as_str(), releases.path.as_str()),
        ("GET", "/apps/myapp/releases")
    );
    assert_eq!(
        releases.header("range"),
        Some("version ..; max=1, order=desc")
    );
}

#[test]
fn config_unset_sends_nulls() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PATCH", "/apps/myapp/config-vars") => Reply::Json(200, json!({})),
        ("GET", "/apps/myapp/releases") => Reply::Json(200, json!([{"version": 8}])),
        _ => not_found(),
    });
    let dir = TempDir::new("config-unset");
    let out = kiln(
        &env_for(&api, dir.path()),
        &["config:unset", "A", "B", "-a", "myapp"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Unsetting A, B and restarting ⬢ myapp... done, v8\n"
    );
    assert_eq!(api.requests()[0].json(), json!({"A": null, "B": null}));
}

#[test]
fn config_set_refuses_bad_arguments_before_sending_anything() {
    let api = FakeApi::start(|_| not_found());
    let dir = TempDir::new("config-bad");
    let env = env_for(&api, dir.path());
    for args in [
        &["config:set", "-a", "myapp", "GOOD=1", "NOEQUALS"][..],
        &["config:set", "-a", "myapp", "BAD-KEY=1"],
    ] {
        let out = kiln(&env, args, "");
        assert_eq!(out.code, 1);
        assert!(out.stderr.starts_with("Error: "), "{}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    assert!(api.requests().is_empty());
}

#[test]
fn config_lists_and_gets() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/apps/myapp/config-vars" => {
            Reply::Json(200, json!({"DATABASE_URL": "postgres://x", "FOO": "bar"}))
        }
        _ => not_found(),
    });
    let dir = TempDir::new("config");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["config", "-a", "myapp"], "");
    assert_eq!(
        out.stdout,
        "=== myapp Config Vars\n\nDATABASE_URL: postgres://x\nFOO:          bar\n"
    );
    let out = kiln(&env, &["config:get", "FOO", "-a", "myapp"], "");
    assert_eq!(out.stdout, "bar\n");
    let out = kiln(&env, &["config:get", "MISSING", "-a", "myapp"], "");
    assert_eq!((out.code, out.stdout.as_str()), (0, "\n"));
    let out = kiln(&env, &["config", "--json", "-a", "myapp"], "");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["FOO"],
        "bar"
    );
}

#[test]
fn api_errors_print_message_and_id() {
    let api = FakeApi::start(|_| not_found());
    let dir = TempDir::new("errors");
    let out = kiln(&env_for(&api, dir.path()), &["config", "-a", "nope"], "");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: Couldn't find that app.\nError ID: not_found\n"
    );
}

#[test]
fn connection_refused_names_the_url_and_kiln_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("refused");
    let env = kiln_cli::Env::new(dir.path())
        .with_var("HOME", dir.path().to_string_lossy())
        .with_var("KILN_API_URL", format!("http://127.0.0.1:{port}"))
        .with_var("KILN_API_KEY", "k");
    let out = kiln(&env, &["apps"], "");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!("http://127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
    assert!(out.stderr.contains("kiln server"), "{}", out.stderr);
}

#[test]
fn logs_tail_prints_lines_as_they_arrive() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let rx = std::sync::Mutex::new(Some(rx));
    let api = FakeApi::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apps/myapp/log-sessions") => {
            let host = r.header("host").unwrap_or_default();
            Reply::Json(
                201,
                json!({"id": "s1", "logplex_url": format!("http://{host}/log-stream/s3cr3t?t=1")}),
            )
        }
        ("GET", "/log-stream/s3cr3t?t=1") => match rx.lock().unwrap().take() {
            Some(rx) => Reply::Stream(rx),
            None => not_found(),
        },
        _ => not_found(),
    });
    let dir = TempDir::new("logs-tail");
    let env = env_for(&api, dir.path());
    let stdout = SharedBuf::default();
    let mut out_writer = stdout.clone();
    let runner = std::thread::spawn(move || {
        let mut input: &[u8] = b"";
        let mut err = Vec::new();
        let args = ["kiln", "logs", "--tail", "-a", "myapp"]
            .iter()
            .map(Into::into)
            .collect();
        let code = kiln_cli::run(
            args,
            &env,
            kiln_cli::Io {
                stdin: &mut input,
                stdout: &mut out_writer,
                stderr: &mut err,
            },
        );
        (code, String::from_utf8_lossy(&err).into_owned())
    });

    tx.send(
        b": connected\n\ndata: 2026-11-21T12:00:00.000000+00:00 app[web.1]: first\n\n".to_vec(),
    )
    .unwrap();
    stdout.wait_for("first\n");
    // The stream is still open: the second line can only appear if we print while reading.
    tx.send(b"data: second\r\ndata: third\r\n\r\n".to_vec())
        .unwrap();
    stdout.wait_for("third\n");
    drop(tx);
    let (code, stderr) = runner.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.text(),
        "2026-11-21T12:00:00.000000+00:00 app[web.1]: first\nsecond\nthird\n"
    );

    let reqs = api.requests();
    assert_eq!(reqs[0].json(), json!({"lines": 100, "tail": true}));
    let stream = &reqs[1];
    assert_eq!(stream.header("accept"), Some("text/event-stream"));
    assert_eq!(
        stream.header("authorization"),
        None,
        "the stream URL carries its own secret"
    );
}

#[test]
fn logs_history_with_filters() {
    let api = FakeApi::start(|r| {
        match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apps/myapp/log-sessions") => {
            let host = r.header("host").unwrap_or_default();
            Reply::Json(201, json!({"logplex_url": format!("http://{host}/stream")}))
        }
        ("GET", "/stream") => Reply::Raw {
            status: 200,
            content_type: "text/event-stream; charset=utf-8",
            body: b"id: 1\ndata: one\n\nevent: heartbeat\ndata: not a log line\n\ndata: two\ndata: three\n\n".to_vec(),
        },
        _ => not_found(),
    }
    });
    let dir = TempDir::new("logs");
    let out = kiln(
        &env_for(&api, dir.path()),
        &["logs", "-a", "myapp", "-n", "5", "-d", "web.1", "-s", "app"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "one\ntwo\nthree\n");
    assert_eq!(
        api.requests()[0].json(),
        json!({"lines": 5, "tail": false, "dyno": "web.1", "source": "app"})
    );
}

#[test]
fn logs_stream_that_is_not_sse_fails_clearly() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/apps/myapp/log-sessions" => Reply::Json(
            201,
            json!({"logplex_url": format!("http://{}/gone", r.header("host").unwrap_or_default())}),
        ),
        _ => Reply::Raw {
            status: 404,
            content_type: "text/plain",
            body: b"no".to_vec(),
        },
    });
    let dir = TempDir::new("logs-404");
    let out = kiln(&env_for(&api, dir.path()), &["logs", "-a", "myapp"], "");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: Logs eventsource failed with: 404 Not Found\n"
    );
}

#[test]
fn app_comes_from_the_kiln_git_remote() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/apps/fromgit/config-vars" => Reply::Json(200, json!({"X": "1"})),
        "/apps/fromenv/config-vars" => Reply::Json(200, json!({"Y": "2"})),
        _ => not_found(),
    });
    let dir = TempDir::new("remote");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["config"], "");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: No app specified. Use -a APP, set KILN_APP, or run inside a git repo with a `kiln` remote.\n"
    );

    git(dir.path(), &["init", "-q"]);
    git(
        dir.path(),
        &["remote", "add", "kiln", "http://127.0.0.1:5000/fromgit.git"],
    );
    let out = kiln(&env, &["config"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("=== fromgit Config Vars"),
        "{}",
        out.stdout
    );
    let out = kiln(
        &env.clone().with_var("KILN_APP", "fromenv"),
        &["config"],
        "",
    );
    assert!(
        out.stdout.starts_with("=== fromenv Config Vars"),
        "{}",
        out.stdout
    );
}

#[test]
fn login_checks_the_key_and_saves_it_in_netrc() {
    let api = FakeApi::start(|r| match (r.path.as_str(), r.header("authorization")) {
        ("/account", Some("Bearer typed-key")) => {
            Reply::Json(200, json!({"email": "admin@kiln.local", "id": "u1"}))
        }
        ("/apps/myapp/config-vars", Some("Bearer typed-key")) => Reply::Json(200, json!({})),
        _ => Reply::Json(
            401,
            json!({"id": "unauthorized", "message": "Invalid credentials provided."}),
        ),
    });
    let home = TempDir::new("login");
    std::fs::write(
        home.path().join(".netrc"),
        "machine api.heroku.com\n  login me@example.com\n  password herokukey\n",
    )
    .unwrap();
    let env = kiln_cli::Env::new(home.path()).with_var("HOME", home.path().to_string_lossy());

    let out = kiln(&env, &["login", "--api-url", &api.url()], "wrong-key\n");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Invalid credentials provided."),
        "{}",
        out.stderr
    );

    let out = kiln(&env, &["login", "--api-url", &api.url()], "typed-key\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Logged in as admin@kiln.local\n");
    let netrc_path = home.path().join(".netrc");
    let netrc = std::fs::read_to_string(&netrc_path).unwrap();
    assert_eq!(
        netrc,
        format!(
            "machine api.heroku.com\n  login me@example.com\n  password herokukey\nmachine {}\n  login admin@kiln.local\n  password typed-key\n",
            api.addr
        )
    );
    assert_eq!(
        std::fs::metadata(&netrc_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config = std::fs::read_to_string(home.path().join(".config/kiln/config.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&config).unwrap()["api_url"],
        api.url()
    );

    // Later commands find both the URL and the key without any environment.
    let out = kiln(&env, &["config", "-a", "myapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = kiln(
        &env,
        &["git:credentials", "get"],
        "protocol=http\nhost=127.0.0.1\n\n",
    );
    assert_eq!(out.stdout, "username=kiln\npassword=typed-key\n");
}

#[test]
fn git_credentials_answers_only_get() {
    let dir = TempDir::new("creds");
    let env = kiln_cli::Env::new(dir.path()).with_var("KILN_API_KEY", "abc");
    let out = kiln(
        &env,
        &["git:credentials", "get"],
        "protocol=http\nhost=127.0.0.1:5000\npath=myapp.git\n\n",
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "username=kiln\npassword=abc\n")
    );
    for op in ["store", "erase"] {
        let out = kiln(
            &env,
            &["git:credentials", op],
            "protocol=http\nhost=x\nusername=kiln\npassword=abc\n\n",
        );
        assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    }
}

#[test]
fn apps_destroy_requires_a_matching_confirm() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("DELETE", "/apps/doomed") => Reply::Json(200, json!({"name": "doomed"})),
        _ => not_found(),
    });
    let dir = TempDir::new("destroy");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["apps:destroy", "doomed"], "");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--confirm doomed"), "{}", out.stderr);
    let out = kiln(&env, &["apps:destroy", "doomed", "--confirm", "other"], "");
    assert_eq!(out.code, 1);
    assert!(
        api.requests().is_empty(),
        "nothing may be deleted without confirmation"
    );

    git(dir.path(), &["init", "-q"]);
    git(
        dir.path(),
        &["remote", "add", "kiln", "http://127.0.0.1:5000/doomed.git"],
    );
    let out = kiln(&env, &["apps:destroy", "--confirm", "doomed"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Destroying ⬢ doomed (including all add-ons)... done\nGit remote kiln removed\n"
    );
    assert_eq!(api.requests().len(), 1);
    assert_eq!(git(dir.path(), &["remote"]), "");
}

#[test]
fn apps_create_adds_the_git_remote_and_credential_helper() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apps") => {
            let name = r.json()["name"]
                .as_str()
                .unwrap_or("quiet-river-1234")
                .to_string();
            Reply::Json(
                201,
                json!({"name": name, "web_url": format!("http://{name}.kiln.local/"), "git_url": format!("http://127.0.0.1:5000/{name}.git")}),
            )
        }
        _ => not_found(),
    });
    let dir = TempDir::new("create");
    git(dir.path(), &["init", "-q"]);
    let env = env_for(&api, dir.path()).with_exe("/opt/kiln/bin/kiln");
    let out = kiln(&env, &["apps:create", "newapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Creating ⬢ newapp... done\nhttp://newapp.kiln.local/ | http://127.0.0.1:5000/newapp.git\nGit remote kiln added\n"
    );
    assert_eq!(api.requests()[0].json(), json!({"name": "newapp"}));
    assert_eq!(
        git(dir.path(), &["remote", "get-url", "kiln"]),
        "http://127.0.0.1:5000/newapp.git"
    );
    assert_eq!(
        git(
            dir.path(),
            &[
                "config",
                "--get",
                "credential.http://127.0.0.1:5000/newapp.git.helper"
            ]
        ),
        "!'/opt/kiln/bin/kiln' git:credentials"
    );

    let out = kiln(&env, &["apps:create"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("Creating app... done, ⬢ quiet-river-1234\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Git remote kiln updated"),
        "{}",
        out.stdout
    );
    assert_eq!(api.requests()[1].json(), json!({}));
}

#[test]
fn git_remote_points_kiln_at_the_app() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/apps/myapp" => Reply::Json(
            200,
            json!({"name": "myapp", "git_url": "http://127.0.0.1:5000/myapp.git"}),
        ),
        _ => not_found(),
    });
    let dir = TempDir::new("git-remote");
    let env = env_for(&api, dir.path()).with_exe("/usr/bin/kiln");
    let out = kiln(&env, &["git:remote", "-a", "myapp"], "");
    assert_eq!(out.code, 1, "outside a repo");
    git(dir.path(), &["init", "-q"]);
    git(
        dir.path(),
        &["remote", "add", "kiln", "http://old/other.git"],
    );
    let out = kiln(&env, &["git:remote", "-a", "myapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "set git remote kiln to http://127.0.0.1:5000/myapp.git\n"
    );
    assert_eq!(
        git(dir.path(), &["remote", "get-url", "kiln"]),
        "http://127.0.0.1:5000/myapp.git"
    );
    let helpers = git(
        dir.path(),
        &[
            "config",
            "--get-all",
            "-z",
            "credential.http://127.0.0.1:5000/myapp.git.helper",
        ],
    );
    assert_eq!(
        helpers, "\0!'/usr/bin/kiln' git:credentials\0",
        "an empty helper first resets inherited helpers"
    );
    // Running it again leaves the same two values, not four.
    assert_eq!(kiln(&env, &["git:remote", "-a", "myapp"], "").code, 0);
    let again = git(
        dir.path(),
        &[
            "config",
            "--get-all",
            "-z",
            "credential.http://127.0.0.1:5000/myapp.git.helper",
        ],
    );
    assert_eq!(again, helpers);
}

#[test]
fn ps_scale_sends_string_quantities_and_sizes() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PATCH", "/apps/myapp/formation") => Reply::Json(
            200,
            json!([{"type": "web", "quantity": 2, "size": "Standard-1X"}, {"type": "worker", "quantity": 1, "size": "Standard-2X"}, {"type": "clock", "quantity": 0, "size": "Standard-1X"}]),
        ),
        ("GET", "/apps/myapp/formation") => Reply::Json(
            200,
            json!([{"type": "worker", "quantity": 0, "size": "Standard-1X"}, {"type": "web", "quantity": 1, "size": "Standard-1X"}]),
        ),
        _ => not_found(),
    });
    let dir = TempDir::new("scale");
    let env = env_for(&api, dir.path());
    let out = kiln(
        &env,
        &["ps:scale", "web=2", "worker+1:standard-2x", "-a", "myapp"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Scaling dynos... done, now running web at 2:Standard-1X, worker at 1:Standard-2X\n"
    );
    assert_eq!(
        api.requests()[0].json(),
        json!({"updates": [{"type": "web", "quantity": "2"}, {"type": "worker", "quantity": "+1", "size": "standard-2x"}]})
    );

    let out = kiln(&env, &["ps:scale", "-a", "myapp"], "");
    assert_eq!(out.stdout, "web=1:Standard-1X worker=0:Standard-1X\n");

    let out = kiln(&env, &["ps:scale", "web*2", "-a", "myapp"], "");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Invalid scale argument \"web*2\""),
        "{}",
        out.stderr
    );
    assert_eq!(api.requests().len(), 2);
}

#[test]
fn ps_restart_targets() {
    let api = FakeApi::start(|r| match r.method.as_str() {
        "DELETE" => Reply::Json(202, json!({})),
        _ => not_found(),
    });
    let dir = TempDir::new("restart");
    let env = env_for(&api, dir.path());
    assert_eq!(
        kiln(&env, &["ps:restart", "-a", "a1"], "").stdout,
        "Restarting dynos on ⬢ a1... done\n"
    );
    assert_eq!(
        kiln(&env, &["ps:restart", "web", "-a", "a1"], "").stdout,
        "Restarting web dynos on ⬢ a1... done\n"
    );
    assert_eq!(
        kiln(&env, &["ps:restart", "web.1", "-a", "a1"], "").stdout,
        "Restarting web.1 dyno on ⬢ a1... done\n"
    );
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/apps/a1/dynos",
            "/apps/a1/formations/web",
            "/apps/a1/dynos/web.1"
        ]
    );
}

#[test]
fn releases_rollback_posts_the_previous_eligible_release() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apps/myapp/releases") => Reply::Json(
            206,
            json!([
                {"id": "id-9", "version": 9, "eligible_for_rollback": true, "current": true},
                {"id": "id-8", "version": 8, "eligible_for_rollback": false},
                {"id": "id-7", "version": 7, "eligible_for_rollback": true}
            ]),
        ),
        ("GET", "/apps/myapp/releases/3") => Reply::Json(200, json!({"id": "id-3", "version": 3})),
        ("POST", "/apps/myapp/releases") => Reply::Json(201, json!({"id": "id-10", "version": 10})),
        _ => not_found(),
    });
    let dir = TempDir::new("rollback");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["releases:rollback", "-a", "myapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Rolling back ⬢ myapp to v7... done, v10\n");
    let reqs = api.requests();
    assert_eq!(
        reqs[0].header("range"),
        Some("version ..; max=10, order=desc")
    );
    assert_eq!(reqs[1].json(), json!({"release": "id-7"}));

    let out = kiln(&env, &["rollback", "v3", "-a", "myapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(api.requests()[3].json(), json!({"release": "id-3"}));
}

#[test]
fn releases_list_uses_the_heroku_range() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/apps/myapp/releases" => Reply::Json(
            206,
            json!([{"version": 2, "description": "Deploy 1a2b", "status": "succeeded", "current": true, "user": {"email": "admin@kiln.local"}, "created_at": "2026-01-01T00:00:00Z"}]),
        ),
        _ => not_found(),
    });
    let dir = TempDir::new("releases");
    let out = kiln(&env_for(&api, dir.path()), &["releases", "-a", "myapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "=== myapp Releases - Current: v2\n\nv2  Deploy 1a2b  admin@kiln.local  2026/01/01 00:00:00 +0000\n"
    );
    assert_eq!(
        api.requests()[0].header("range"),
        Some("version ..; max=15, order=desc")
    );
}

#[test]
fn apps_and_apps_info() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/apps" => Reply::Json(200, json!([{"name": "zeta"}, {"name": "alpha"}])),
        "/account" => Reply::Json(200, json!({"email": "admin@kiln.local"})),
        "/apps/alpha" => Reply::Json(
            200,
            json!({"name": "alpha", "git_url": "http://127.0.0.1:5000/alpha.git", "web_url": "http://alpha.kiln.local/",
                "owner": {"email": "admin@kiln.local"}, "region": {"name": "local"}, "stack": {"name": "heroku-24"}, "slug_size": null}),
        ),
        "/apps/alpha/formation" => Reply::Json(
            200,
            json!([{"type": "web", "quantity": 2, "size": "Standard-1X"}]),
        ),
        _ => not_found(),
    });
    let dir = TempDir::new("apps");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["apps"], "");
    assert_eq!(out.stdout, "=== admin@kiln.local Apps\n\nalpha\nzeta\n");
    let out = kiln(&env, &["apps:info", "-a", "alpha"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(
            "=== alpha\n\nDynos:     web: 2\nGit URL:   http://127.0.0.1:5000/alpha.git\n"
        ),
        "{}",
        out.stdout
    );
    let out = kiln(&env, &["apps:info", "alpha", "--json"], "");
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(parsed["app"]["name"], "alpha");
}

#[test]
fn usage_errors_and_help() {
    let dir = TempDir::new("usage");
    let env = kiln_cli::Env::new(dir.path());
    let out = kiln(&env, &["--help"], "");
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("apps:create") && out.stdout.contains("kiln server"),
        "{}",
        out.stdout
    );
    let out = kiln(&env, &["no-such-command"], "");
    assert_eq!(out.code, 2);
    assert!(!out.stderr.is_empty());
}

#[test]
fn domains_add_list_and_remove() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/apps/myapp/domains") => Reply::Json(
            201,
            json!({"hostname": "www.example.com", "kind": "custom", "cname": "myapp.localhost"}),
        ),
        ("GET", "/apps/myapp/domains") => Reply::Json(
            200,
            json!([{"hostname": "myapp.localhost", "kind": "heroku", "cname": null}, {"hostname": "www.example.com", "kind": "custom", "cname": "myapp.localhost"}]),
        ),
        ("DELETE", "/apps/myapp/domains/%2A.example.com") => {
            Reply::Json(200, json!({"hostname": "*.example.com"}))
        }
        ("POST", "/apps/other/domains") => Reply::Json(
            422,
            json!({"id": "invalid_params", "message": "www.example.com is already in use"}),
        ),
        _ => not_found(),
    });
    let dir = TempDir::new("domains");
    let env = env_for(&api, dir.path());
    let out = kiln(&env, &["domains:add", "www.example.com", "-a", "myapp"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Adding www.example.com to ⬢ myapp... done\nConfigure your app's DNS provider to point www.example.com at the DNS target myapp.localhost.\n"
    );
    assert_eq!(
        api.requests()[0].json(),
        json!({"hostname": "www.example.com", "sni_endpoint": null})
    );

    let out = kiln(&env, &["domains", "-a", "myapp"], "");
    assert_eq!(
        out.stdout,
        "=== myapp Heroku Domain\n\nmyapp.localhost\n\n=== myapp Custom Domains\n\nDomain Name      DNS Record Type  DNS Target\nwww.example.com  CNAME            myapp.localhost\n"
    );
    let out = kiln(
        &env,
        &["domains:remove", "*.example.com", "-a", "myapp"],
        "",
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Removing *.example.com from ⬢ myapp... done\n"),
        "{}",
        out.stderr
    );

    let out = kiln(&env, &["domains:add", "www.example.com", "-a", "other"], "");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: www.example.com is already in use\nError ID: invalid_params\n"
    );
    let before = api.requests().len();
    assert_eq!(
        kiln(&env, &["domains:add", "has space.com", "-a", "myapp"], "").code,
        1
    );
    assert_eq!(
        api.requests().len(),
        before,
        "a hostname that cannot be sent is refused locally"
    );
}

#[test]
fn maintenance_on_off_and_status() {
    let state = std::sync::Arc::new(std::sync::Mutex::new(false));
    let s = state.clone();
    let api = FakeApi::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PATCH", "/apps/myapp") => {
            *s.lock().unwrap() = r.json()["maintenance"].as_bool().unwrap();
            Reply::Json(
                200,
                json!({"name": "myapp", "maintenance": *s.lock().unwrap()}),
            )
        }
        ("GET", "/apps/myapp") => Reply::Json(
            200,
            json!({"name": "myapp", "maintenance": *s.lock().unwrap()}),
        ),
        _ => not_found(),
    });
    let dir = TempDir::new("maintenance");
    let env = env_for(&api, dir.path());
    assert_eq!(
        kiln(&env, &["maintenance", "-a", "myapp"], "").stdout,
        "off\n"
    );
    assert_eq!(
        kiln(&env, &["maintenance:on", "-a", "myapp"], "").stdout,
        "Enabling maintenance mode for ⬢ myapp... done\n"
    );
    assert!(*state.lock().unwrap());
    assert_eq!(
        kiln(&env, &["maintenance", "-a", "myapp"], "").stdout,
        "on\n"
    );
    assert_eq!(
        kiln(&env, &["maintenance:off", "-a", "myapp"], "").stdout,
        "Disabling maintenance mode for ⬢ myapp... done\n"
    );
    assert_eq!(
        api.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| r.json())
            .collect::<Vec<_>>(),
        [json!({"maintenance": true}), json!({"maintenance": false})]
    );
}

/// Issue 12: the help is written for users. Every command has a one-sentence summary of its
/// own (no command borrows another's, as `run` once carried `git:remote`'s), and no help line
/// names the code (an internal function such as `resolve_app`, a Rust type, a module path).
#[test]
fn every_help_line_reads_as_a_sentence_for_users() {
    let dir = TempDir::new("help");
    let env = kiln_cli::Env::new(dir.path()).with_var("HOME", dir.path().to_string_lossy());
    let top = kiln(&env, &["--help"], "");
    assert_eq!(top.code, 0, "{}", top.stderr);
    let commands: Vec<(String, String)> = top
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, about) = l.split_once(char::is_whitespace)?;
            Some((name.to_string(), about.trim().to_string()))
        })
        .filter(|(name, _)| name != "help")
        .collect();
    assert!(commands.len() > 30, "{}", top.stdout);
    let names: Vec<&str> = commands.iter().map(|(n, _)| n.as_str()).collect();
    for (name, about) in &commands {
        assert!(
            about.chars().next().is_some_and(char::is_uppercase),
            "{name}: {about:?}"
        );
        // One summary: a second sentence glued on without a stop is another command's.
        let glued = about
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| {
                w[0].chars().last().is_some_and(char::is_lowercase)
                    && ["Run", "Show", "List", "Set", "Point", "Which"].contains(&w[1])
            });
        assert!(!glued, "{name}: two summaries in one: {about:?}");
        let help = kiln(&env, &[name, "--help"], "");
        assert_eq!(help.code, 0, "{name}: {}", help.stderr);
        for line in help.stdout.lines().chain(std::iter::once(about.as_str())) {
            let internal = line.contains("::")
                || line.split('`').skip(1).step_by(2).any(|code| {
                    code.contains('_') && code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
            assert!(!internal, "{name}: a help line names the code: {line:?}");
        }
    }
    let about = |n: &str| {
        commands
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("no {n} in {names:?}"))
    };
    assert!(
        about("run").starts_with("Run a one-off command in a dyno, attached to this terminal"),
        "{}",
        about("run")
    );
    assert!(
        about("git:remote").starts_with("Point the `kiln` git remote"),
        "{}",
        about("git:remote")
    );
}
