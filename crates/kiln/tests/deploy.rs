//! The whole v0 path, end to end: `git push` → build → release → dynos → router → logs.
//! Each test runs its own `kiln server` on random ports in a temporary directory.

mod common;

use common::*;
use std::io::BufRead;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(60);

/// Acceptance 1, 3 and 6: a Python app with web and worker; router, ps, logs, tail, restart.
#[test]
fn python_app_deploys_serves_logs_and_recovers_from_a_killed_dyno() {
    let s = Server::start("python");
    let marker = uuid::Uuid::new_v4().simple().to_string();
    s.ok(&["apps:create", "pyapp"]);
    s.ok(&[
        "config:set",
        &format!("KILN_TEST_MARKER={marker}"),
        "-a",
        "pyapp",
    ]);
    let app = python_app(&[]);
    let (ok, out) = s.push(&app, "pyapp");
    assert!(ok, "push failed:\n{out}");
    assert!(out.contains("remote: -----> Python app detected"), "{out}");
    assert!(
        out.contains("Procfile declares types -> web, worker"),
        "{out}"
    );
    assert!(out.contains("Released v3"), "{out}");

    // The push waits for the web dyno, so the app answers at once.
    let r = s.get("pyapp", "/");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("DYNO=web.1"), "{}", r.body);
    assert!(
        r.body.contains("GREETING=hello-from-wheel"),
        "pip did not install the dependency into the slug: {}",
        r.body
    );

    // app.json's formation gives one worker as well.
    let ps = wait_for(BOOT, "web.1 and worker.1 up", || {
        let out = s.ok(&["ps", "-a", "pyapp"]);
        let states = ps_states(&out);
        (states.contains(&("web.1".into(), "up".into()))
            && states.contains(&("worker.1".into(), "up".into())))
        .then_some(out)
    });
    assert!(ps.contains("python3 app.py"), "{ps}");

    // Logs: output of both dynos, router lines, lifecycle lines, API lines.
    let logs = wait_for(Duration::from_secs(20), "worker output in logs", || {
        let l = s.logs("pyapp");
        l.contains("app[worker.1]: worker tick").then_some(l)
    });
    for needle in [
        "app[web.1]: web booting on port",
        "heroku[router]: at=info method=GET path=\"/\" host=pyapp.localhost",
        "dyno=web.1",
        "status=200",
        "heroku[web.1]: Starting process with command `python3 app.py`",
        "heroku[web.1]: State changed from starting to up",
        "heroku[worker.1]: State changed from starting to up",
        "app[api]: Deploy ",
        "app[api]: Build succeeded",
    ] {
        assert!(logs.contains(needle), "missing {needle:?} in logs:\n{logs}");
    }
    // Every line is in Heroku's format.
    for line in logs.lines().filter(|l| !l.is_empty()) {
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(
            ts.len() == 32 && ts.ends_with("+00:00"),
            "bad timestamp in {line:?}"
        );
        assert!(
            rest.starts_with("app[") || rest.starts_with("heroku["),
            "bad source in {line:?}"
        );
    }
    // Filters.
    let router_only = s.ok(&["logs", "-a", "pyapp", "-s", "heroku", "-d", "router"]);
    assert!(
        !router_only.is_empty() && router_only.lines().all(|l| l.contains(" heroku[router]: ")),
        "{router_only}"
    );

    // `logs --tail` streams a new line as it happens.
    let mut tail = std::process::Command::new(KILN)
        .args(["logs", "--tail", "-a", "pyapp", "-d", "router"])
        .env("KILN_API_URL", &s.api_url)
        .env("KILN_API_KEY", &s.key)
        .env("HOME", s.home())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let unique = format!("/tail-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(s.get("pyapp", &unique).status, 200);
    let seen = wait_for(
        Duration::from_secs(10),
        "the new router line in the tail",
        || {
            while let Ok(l) = rx.try_recv() {
                if l.contains(&unique) {
                    return Some(l);
                }
            }
            None
        },
    );
    assert!(seen.contains("heroku[router]: at=info"), "{seen}");
    let _ = tail.kill();
    let _ = tail.wait();

    // A web dyno killed from outside is restarted (the dyno manager sees it crash).
    let before = s.get("pyapp", "/");
    assert_eq!(before.status, 200);
    let victims: Vec<i32> = dyno_processes(&marker)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .contains("app.py")
        })
        .collect();
    assert!(!victims.is_empty(), "no web process found");
    for pid in &victims {
        signal(*pid, 9);
    }
    wait_for(BOOT, "web.1 restarted after being killed", || {
        let l = s.logs("pyapp");
        (l.contains("heroku[web.1]: Process exited with status 137")
            && l.contains("heroku[web.1]: State changed from crashed to starting"))
        .then_some(())
    });
    wait_for(BOOT, "the app to answer again", || {
        let r = s.get("pyapp", "/");
        (r.status == 200 && r.body.contains("DYNO=web.1")).then_some(())
    });
}

/// Acceptance 2: a Node.js app without a Procfile runs `npm start`.
#[test]
fn node_app_without_procfile_runs_npm_start() {
    let s = Server::start("node");
    s.ok(&["apps:create", "nodeapp"]);
    let app = fixture_repo("node-app", &[]);
    let (ok, out) = s.push(&app, "nodeapp");
    assert!(ok, "push failed:\n{out}");
    assert!(out.contains("Node.js app detected"), "{out}");
    assert!(out.contains("Default types for buildpack -> web"), "{out}");
    let r = s.get("nodeapp", "/");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("node DYNO=web.1 NODE_ENV=production"),
        "{}",
        r.body
    );
    let ps = s.ok(&["ps", "-a", "nodeapp"]);
    assert!(ps.contains("npm start"), "{ps}");
}

/// Acceptance 4: config:set appends exactly one release the app sees; rollback restores a
/// release's slug and config as a new release.
#[test]
fn config_changes_and_rollback_append_releases() {
    let s = Server::start("config");
    s.ok(&["apps:create", "cfgapp"]);
    let app = python_app(&[]);
    assert!(s.push(&app, "cfgapp").0);
    let before = s.release_versions("cfgapp");
    assert_eq!(before, vec![1, 2]);

    let out = s.ok(&["config:set", "FOO=first value", "-a", "cfgapp"]);
    assert!(out.contains("v3"), "{out}");
    assert_eq!(
        s.release_versions("cfgapp"),
        vec![1, 2, 3],
        "config:set must append exactly one release"
    );
    wait_for(BOOT, "the app to see FOO", || {
        s.get("cfgapp", "/")
            .body
            .contains("FOO=first value")
            .then_some(())
    });
    assert_eq!(
        s.ok(&["config:get", "FOO", "-a", "cfgapp"]).trim(),
        "first value"
    );

    // A second deploy, then another config change.
    std::fs::write(app.join("CHANGED"), "x").unwrap();
    commit_all(&app, "second deploy");
    assert!(s.push(&app, "cfgapp").0);
    s.ok(&["config:set", "FOO=second", "-a", "cfgapp"]);
    wait_for(BOOT, "the app to see FOO=second", || {
        s.get("cfgapp", "/")
            .body
            .contains("FOO=second")
            .then_some(())
    });
    assert_eq!(s.release_versions("cfgapp"), vec![1, 2, 3, 4, 5]);

    // Roll back to v3: v2's slug with FOO=first value.
    let out = s.ok(&["releases:rollback", "v3", "-a", "cfgapp"]);
    assert!(out.contains("v6"), "{out}");
    let v6 = s.api("GET", "/apps/cfgapp/releases/6", None).json();
    let v3 = s.api("GET", "/apps/cfgapp/releases/v3", None).json();
    assert_eq!(v6["description"], "Rollback to v3");
    assert_eq!(
        v6["slug"]["id"], v3["slug"]["id"],
        "rollback must reuse v3's slug"
    );
    // The rollback release goes live once its dynos are up, then it is the current one.
    wait_for(BOOT, "v6 to go live", || {
        (s.api("GET", "/apps/cfgapp/releases/6", None).json()["current"] == true).then_some(())
    });
    assert_eq!(
        s.api("GET", "/apps/cfgapp/releases/6", None).json()["status"],
        "succeeded"
    );
    assert_eq!(
        s.api("GET", "/apps/cfgapp/releases/6/config-vars", None)
            .json(),
        s.api("GET", "/apps/cfgapp/releases/3/config-vars", None)
            .json()
    );
    assert_eq!(
        s.ok(&["config:get", "FOO", "-a", "cfgapp"]).trim(),
        "first value"
    );
    wait_for(BOOT, "the app to run v3's config again", || {
        s.get("cfgapp", "/")
            .body
            .contains("FOO=first value")
            .then_some(())
    });
    // The CLI's listing agrees, newest first.
    let list = s.ok(&["releases", "-a", "cfgapp"]);
    let first_row = list.lines().find(|l| l.starts_with('v')).unwrap();
    assert!(
        first_row.starts_with("v6") && first_row.contains("Rollback to v3"),
        "{list}"
    );
    // Unset removes the var, with one more release.
    s.ok(&["config:unset", "FOO", "-a", "cfgapp"]);
    assert_eq!(s.release_versions("cfgapp").last(), Some(&7));
    assert!(!s.ok(&["config", "-a", "cfgapp"]).contains("FOO"));
}

/// Acceptance 5: scaling spreads requests over three dynos; web=0 gives 503 H14.
#[test]
fn scaling_spreads_requests_and_zero_web_dynos_is_h14() {
    let s = Server::start("scale");
    s.ok(&["apps:create", "scaleapp"]);
    let app = python_app(&[]);
    assert!(s.push(&app, "scaleapp").0);
    let out = s.ok(&["ps:scale", "web=3", "-a", "scaleapp"]);
    assert!(out.contains("web at 3"), "{out}");
    wait_for(BOOT, "three web dynos up", || {
        let states = ps_states(&s.ok(&["ps", "-a", "scaleapp"]));
        (states
            .iter()
            .filter(|(n, st)| n.starts_with("web.") && st == "up")
            .count()
            == 3)
            .then_some(())
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let r = s.get("scaleapp", "/");
        assert_eq!(r.status, 200);
        let dyno = r.body.split_whitespace().next().unwrap().to_string();
        seen.insert(dyno);
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["DYNO=web.1", "DYNO=web.2", "DYNO=web.3"]
    );

    s.ok(&["ps:scale", "web=0", "-a", "scaleapp"]);
    let r = wait_for(Duration::from_secs(20), "503 after scaling to zero", || {
        let r = s.get("scaleapp", "/");
        (r.status == 503).then_some(r)
    });
    assert!(
        r.body.to_lowercase().contains("application error") || r.body.contains("No web"),
        "{}",
        r.body
    );
    let logs = s.logs("scaleapp");
    assert!(
        logs.contains("heroku[router]: at=error code=H14 desc=\"No web processes running\""),
        "{logs}"
    );
    wait_for(Duration::from_secs(20), "web dynos gone from ps", || {
        (!s.ok(&["ps", "-a", "scaleapp"]).contains("web.")).then_some(())
    });
}

/// Acceptance 7: a push no buildpack accepts is rejected and creates no release; a push with
/// a malformed Procfile too. The running version keeps serving.
#[test]
fn rejected_pushes_create_no_release_and_keep_the_app_serving() {
    let s = Server::start("reject");
    s.ok(&["apps:create", "rejapp"]);
    let nothing = fixture_repo("unknown", &[("README.md", "# no buildpack for this\n")]);
    let (ok, out) = s.push(&nothing, "rejapp");
    assert!(!ok, "push should fail:\n{out}");
    assert!(
        out.contains("No default language could be detected for this app"),
        "{out}"
    );
    assert!(
        out.contains("pre-receive hook declined") || out.contains("rejected"),
        "{out}"
    );
    assert_eq!(s.release_versions("rejapp"), vec![1]);
    let builds = s.api("GET", "/apps/rejapp/builds", None).json();
    assert_eq!(builds[0]["status"], "failed");

    // A good deploy, then a bad Procfile: rejected, and v2 keeps serving.
    let app = python_app(&[]);
    assert!(s.push(&app, "rejapp").0);
    std::fs::write(
        app.join("Procfile"),
        "web: python3 app.py\nthis line is not a process\n",
    )
    .unwrap();
    commit_all(&app, "broken procfile");
    let (ok, out) = s.push(&app, "rejapp");
    assert!(!ok, "{out}");
    assert!(out.contains("Procfile line 2"), "{out}");
    assert_eq!(s.release_versions("rejapp"), vec![1, 2]);
    assert_eq!(s.get("rejapp", "/").status, 200);

    // A failing compile (a custom buildpack that fails) is rejected the same way.
    let bp = TempDir::new("bp");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    std::fs::write(bp.join("bin/detect"), "#!/bin/sh\necho Failing\n").unwrap();
    std::fs::write(
        bp.join("bin/compile"),
        "#!/bin/sh\necho 'compiling... and failing on purpose'\nexit 3\n",
    )
    .unwrap();
    for f in ["detect", "compile"] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(bp.join("bin").join(f))
            .status()
            .unwrap();
    }
    s.ok(&["buildpacks:set", bp.to_str().unwrap(), "-a", "rejapp"]);
    assert!(
        s.ok(&["buildpacks", "-a", "rejapp"])
            .contains(bp.to_str().unwrap())
    );
    std::fs::write(app.join("Procfile"), "web: python3 app.py\n").unwrap();
    commit_all(&app, "fixed procfile");
    let (ok, out) = s.push(&app, "rejapp");
    assert!(!ok, "{out}");
    assert!(out.contains("compiling... and failing on purpose"), "{out}");
    assert_eq!(s.release_versions("rejapp"), vec![1, 2]);
    assert_eq!(s.get("rejapp", "/").status, 200);
}

/// A custom buildpack from a git URL, chosen with BUILDPACK_URL, runs through the same
/// mechanism, with .profile.d and a cache dir that persists between builds.
#[test]
fn custom_buildpack_from_git_with_cache_and_profile_d() {
    let s = Server::start("custombp");
    let bp = fixture_repo(
        "custom-bp",
        &[
            ("bin/detect", "#!/bin/sh\necho Custom\n"),
            (
                "bin/compile",
                "#!/bin/sh\nset -e\nBUILD=$1 CACHE=$2 ENV=$3\nn=$(cat \"$CACHE/count\" 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > \"$CACHE/count\"\necho \"-----> custom compile number $n, GREETING=$(cat \"$ENV/GREETING\")\"\nmkdir -p \"$BUILD/.profile.d\"\necho 'export FROM_PROFILE=profile-d-works' > \"$BUILD/.profile.d/custom.sh\"\n",
            ),
            (
                "bin/release",
                "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: python3 serve.py\\n'\n",
            ),
        ],
    );
    for f in ["detect", "compile", "release"] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(bp.join("bin").join(f))
            .status()
            .unwrap();
    }
    commit_all(&bp, "executable");
    // Served as a git repository: Kiln clones it at build time.
    let bare = bp.parent().unwrap().join("custom-bp.git");
    assert!(
        git(&bp)
            .args(["clone", "-q", "--bare", "."])
            .arg(&bare)
            .status()
            .unwrap()
            .success()
    );
    s.ok(&["apps:create", "cbapp"]);
    s.ok(&[
        "config:set",
        &format!("BUILDPACK_URL=file://{}", bare.display()),
        "GREETING=hi",
        "-a",
        "cbapp",
    ]);
    let app = fixture_repo(
        "cb-app",
        &[
            (
                "serve.py",
                "import os, http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = os.environ.get('FROM_PROFILE', 'missing').encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\nhttp.server.HTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n",
            ),
            (".slugignore", "*.psd\n/secret-dir\n"),
            ("big.psd", "photoshop"),
            ("secret-dir/x", "x"),
        ],
    );
    let (ok, out) = s.push(&app, "cbapp");
    assert!(ok, "{out}");
    assert!(out.contains("Fetching buildpack file://"), "{out}");
    assert!(
        out.contains("custom compile number 1, GREETING=hi"),
        "{out}"
    );
    assert!(
        out.contains("Removed 2 paths listed in .slugignore"),
        "{out}"
    );
    let r = s.get("cbapp", "/");
    assert_eq!(r.body, "profile-d-works");
    commit_all(&app, "again");
    let (ok, out) = s.push(&app, "cbapp");
    assert!(ok, "{out}");
    assert!(
        out.contains("custom compile number 2"),
        "the cache dir did not persist:\n{out}"
    );
}

/// Acceptance 8: destroying an app leaves no process, repo or route; stopping the server
/// leaves no dyno.
#[test]
fn destroy_and_shutdown_leave_nothing_behind() {
    let mut s = Server::start("destroy");
    let marker = uuid::Uuid::new_v4().simple().to_string();
    s.ok(&["apps:create", "doomed"]);
    s.ok(&[
        "config:set",
        &format!("KILN_TEST_MARKER={marker}"),
        "-a",
        "doomed",
    ]);
    let app = python_app(&[]);
    assert!(s.push(&app, "doomed").0);
    s.ok(&["ps:scale", "web=2", "-a", "doomed"]);
    wait_for(BOOT, "dyno processes", || {
        (dyno_processes(&marker).len() >= 3).then_some(())
    });
    let app_id = s.api("GET", "/apps/doomed", None).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s.dir.join(format!("data/repos/{app_id}.git")).is_dir());

    // The confirmation must match.
    let out = s.fails(&["apps:destroy", "doomed", "--confirm", "wrong"]);
    assert!(out.to_lowercase().contains("confirm"), "{out}");
    assert_eq!(s.get("doomed", "/").status, 200);

    s.ok(&["apps:destroy", "doomed", "--confirm", "doomed"]);
    assert!(
        dyno_processes(&marker).is_empty(),
        "processes of a destroyed app remain"
    );
    assert!(
        !s.dir.join(format!("data/repos/{app_id}.git")).exists(),
        "repo remains"
    );
    assert_eq!(s.get("doomed", "/").status, 404, "route remains");
    assert_eq!(s.api("GET", "/apps/doomed", None).status, 404);
    let runs = std::fs::read_dir(s.dir.join("data/run/dynos"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(runs, 0, "dyno run directories remain");

    // Another app, then stop the server: no dyno survives it.
    let marker2 = uuid::Uuid::new_v4().simple().to_string();
    s.ok(&["apps:create", "survivor"]);
    s.ok(&[
        "config:set",
        &format!("KILN_TEST_MARKER={marker2}"),
        "-a",
        "survivor",
    ]);
    assert!(s.push(&app, "survivor").0);
    wait_for(BOOT, "dyno processes", || {
        (!dyno_processes(&marker2).is_empty()).then_some(())
    });
    let status = s.stop();
    assert!(status.success(), "server exit: {status:?}");
    assert!(
        dyno_processes(&marker2).is_empty(),
        "dynos outlived the server: {:?}",
        dyno_processes(&marker2)
    );
}
