//! Issue 4: Heroku's dyno lifecycle, zero-downtime deploys, the release phase, and a server
//! that can be killed at any moment and converge again.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(60);

const WEB_APP: &str = r#"import os, http.server
VERSION = open("VERSION").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("version=%s dyno=%s foo=%s\n" % (VERSION, os.environ.get("DYNO"), os.environ.get("FOO"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#;

fn web_app(version: &str) -> std::path::PathBuf {
    fixture_repo(
        "lifecycle",
        &[
            ("app.py", WEB_APP),
            ("Procfile", "web: python3 app.py\n"),
            ("requirements.txt", ""),
            ("VERSION", version),
        ],
    )
}

fn redeploy(
    s: &Server,
    dir: &std::path::Path,
    app: &str,
    files: &[(&str, &str)],
) -> (bool, String) {
    for (p, c) in files {
        std::fs::write(dir.join(p), c).unwrap();
    }
    commit_all(dir, "change");
    s.push(dir, app)
}

fn releases(s: &Server, app: &str) -> Vec<serde_json::Value> {
    s.api("GET", &format!("/apps/{app}/releases"), None)
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn versions(s: &Server, app: &str) -> Vec<u64> {
    releases(s, app)
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect()
}

fn wait_release_settled(s: &Server, app: &str, version: u64) -> String {
    wait_for(BOOT, "the release to settle", || {
        let r = s
            .api("GET", &format!("/apps/{app}/releases/{version}"), None)
            .json();
        let st = r["status"].as_str().unwrap_or("").to_string();
        (st != "pending").then_some(st)
    })
}

/// One keep-alive client: GET / over and over on one connection, counting answers and
/// failures (an error, a non-200, or a request that got no answer).
fn client(
    port: u16,
    host: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    conn = Some(BufReader::new(s));
                }
                Err(e) => {
                    failed.lock().unwrap().push(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        if c.get_mut()
            .write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .is_err()
        {
            // The router may close an idle keep-alive connection; the request was not sent.
            conn = None;
            continue;
        }
        match read_response(c) {
            Ok((200, _)) => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => {
                failed.lock().unwrap().push(format!(
                    "status {status}: {}",
                    body.chars().take(200).collect::<String>()
                ));
                conn = None;
            }
            Err(e) => {
                failed.lock().unwrap().push(format!("no answer: {e}"));
                conn = None;
            }
        }
    }
}

use std::sync::Mutex;

fn read_response(c: &mut BufReader<TcpStream>) -> Result<(u16, String), String> {
    let mut line = String::new();
    c.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("connection closed".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("bad status line {line:?}"))?;
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        c.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            c.read_line(&mut size).map_err(|e| e.to_string())?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            let mut chunk = vec![0; n + 2];
            c.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len, 0);
        c.read_exact(&mut body).map_err(|e| e.to_string())?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Acceptance 1: under continuous load from 8 keep-alive clients, five deploys and two config
/// changes drop no request.
#[test]
fn deploys_and_config_changes_under_load_drop_nothing() {
    let s = Server::start("zerodowntime");
    s.ok(&["apps:create", "zdt"]);
    let dir = web_app("1");
    assert!(s.push(&dir, "zdt").0);
    s.ok(&["ps:scale", "web=2", "-a", "zdt"]);
    wait_for(BOOT, "two web dynos up", || {
        (ps_states(&s.ok(&["ps", "-a", "zdt"]))
            .iter()
            .filter(|(n, st)| n.starts_with("web.") && st == "up")
            .count()
            == 2)
            .then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, ok, failed, host, port) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                s.host("zdt"),
                s.router_port,
            );
            std::thread::spawn(move || client(port, host, stop, ok, failed))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for i in 2..=6 {
        let (pushed, out) = redeploy(&s, &dir, "zdt", &[("VERSION", &i.to_string())]);
        assert!(pushed, "deploy {i}: {out}");
        if i == 3 || i == 5 {
            s.ok(&["config:set", &format!("FOO=bar{i}"), "-a", "zdt"]);
            let v = *versions(&s, "zdt").last().unwrap();
            assert_eq!(wait_release_settled(&s, "zdt", v), "succeeded");
        }
    }
    // Every deploy is live, through the router.
    wait_for(Duration::from_secs(10), "the last version", || {
        s.get("zdt", "/").body.contains("version=6").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failed.lock().unwrap().clone();
    let served = ok.load(Ordering::Relaxed);
    assert!(
        served > 200,
        "the load was too light to mean anything: {served} requests"
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        releases(&s, "zdt")
            .iter()
            .all(|r| r["status"] == "succeeded"),
        "{:?}",
        releases(&s, "zdt")
    );
}

/// Acceptance 2: a release whose web process crashes at boot, or never binds $PORT (R10 with
/// a short boot timeout), fails; the previous release keeps serving throughout.
#[test]
fn broken_releases_fail_and_the_previous_one_keeps_serving() {
    let s = Server::start_with("brokenrel", &["--boot-timeout", "3"]);
    s.ok(&["apps:create", "brk"]);
    let dir = web_app("good");
    assert!(s.push(&dir, "brk").0);
    assert!(s.get("brk", "/").body.contains("version=good"));

    let stop = Arc::new(AtomicBool::new(false));
    let bad_answers = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, bad, port, host) = (
            stop.clone(),
            bad_answers.clone(),
            s.router_port,
            s.host("brk"),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = http(port, "GET", &host, "/", &[], None);
                if r.status != 200 || !r.body.contains("version=good") {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Crashes at boot.
    let (ok, out) = redeploy(
        &s,
        &dir,
        "brk",
        &[("Procfile", "web: python3 -c 'raise SystemExit(3)'\n")],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("failed"), "{out}");
    let v = *versions(&s, "brk").last().unwrap();
    let rel = s
        .api("GET", &format!("/apps/brk/releases/{v}"), None)
        .json();
    assert_eq!(rel["status"], "failed", "{rel}");
    assert!(
        rel["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("crashed"),
        "{rel}"
    );

    // Never binds $PORT: R10 after the (shortened) boot timeout.
    let (ok, out) = redeploy(&s, &dir, "brk", &[("Procfile", "web: sleep 600\n")]);
    assert!(!ok, "{out}");
    let v2 = *versions(&s, "brk").last().unwrap();
    assert_eq!(
        s.api("GET", &format!("/apps/brk/releases/{v2}"), None)
            .json()["status"],
        "failed"
    );
    let logs = s.logs("brk");
    assert!(logs.contains("Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 3 seconds of launch"), "{logs}");

    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!(
        bad_answers.load(Ordering::Relaxed),
        0,
        "the previous release stopped serving"
    );
    let list = s.ok(&["releases", "-a", "brk"]);
    assert!(
        list.contains("failed"),
        "`releases` should say which releases failed:\n{list}"
    );
    // The running release is still the good one, and it is current.
    let current: Vec<_> = releases(&s, "brk")
        .into_iter()
        .filter(|r| r["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert!(current[0]["version"].as_u64().unwrap() < v);
}

/// Acceptance 3: a crash-looping dyno backs off, says so in its logs and in `ps`, and costs
/// almost no CPU.
#[test]
fn crash_loops_back_off_and_cost_almost_nothing() {
    let s = Server::start_with("crashloop", &["--restart-backoff", "4"]);
    s.ok(&["apps:create", "loop"]);
    let dir = fixture_repo(
        "crashloop",
        &[
            ("Procfile", "worker: sh -c 'echo about to crash; exit 3'\n"),
            ("requirements.txt", ""),
            ("app.json", r#"{"formation": {"worker": {"quantity": 1}}}"#),
        ],
    );
    let (ok, out) = s.push(&dir, "loop");
    assert!(ok, "{out}");
    let ps = wait_for(Duration::from_secs(30), "ps to show the back-off", || {
        let p = s.ok(&["ps", "-a", "loop"]);
        (p.contains("worker.1: crashed") && p.contains("next start in")).then_some(p)
    });
    assert!(ps.contains("exited with status 3"), "{ps}");
    let before = s.children_cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let used = s.children_cpu_seconds() - before;
    let share = used / t0.elapsed().as_secs_f64();
    assert!(
        share < 0.01,
        "the crash loop used {:.2}% of a core",
        share * 100.0
    );
    let logs = s.logs("loop");
    assert!(
        logs.contains("heroku[worker.1]: Process exited with status 3"),
        "{logs}"
    );
    assert!(
        logs.contains("heroku[worker.1]: State changed from up to crashed"),
        "{logs}"
    );
    assert!(
        logs.contains("heroku[worker.1]: Crashed 3 times in a row; restarting in 8s"),
        "{logs}"
    );
    assert!(
        logs.contains("heroku[worker.1]: State changed from crashed to starting"),
        "{logs}"
    );
}

/// Acceptance 4: a failing `release:` command blocks the release; a succeeding one runs
/// before any new dyno.
#[test]
fn the_release_phase_gates_releases() {
    let s = Server::start("releasephase");
    s.ok(&["apps:create", "relph"]);
    let dir = fixture_repo(
        "relph",
        &[
            ("app.py", WEB_APP),
            ("VERSION", "1"),
            ("requirements.txt", ""),
            (
                "Procfile",
                "web: python3 app.py\nrelease: sh -c 'echo migrating the database; echo \"DYNO=$DYNO\"'\n",
            ),
        ],
    );
    let (ok, out) = s.push(&dir, "relph");
    assert!(ok, "{out}");
    assert!(out.contains("Running release command"), "{out}");
    assert!(
        out.contains("migrating the database"),
        "the release output goes to the push:\n{out}"
    );
    let logs = s.logs("relph");
    let release_exit = logs
        .lines()
        .position(|l| l.contains("heroku[release.") && l.contains("Process exited with status 0"))
        .expect("release dyno ran");
    let first_web = logs
        .lines()
        .position(|l| l.contains("heroku[web.1]: Starting process"))
        .expect("web started");
    assert!(
        release_exit < first_web,
        "the release command must finish before any new dyno starts:\n{logs}"
    );
    assert!(
        logs.contains("app[release.") && logs.contains("DYNO=release."),
        "{logs}"
    );

    // A failing release command: rejected, nothing changes.
    let (ok, out) = redeploy(
        &s,
        &dir,
        "relph",
        &[
            ("VERSION", "2"),
            (
                "Procfile",
                "web: python3 app.py\nrelease: sh -c 'echo migration failed; exit 4'\n",
            ),
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("migration failed") && out.contains("release command failed (exit status 4)"),
        "{out}"
    );
    assert!(s.get("relph", "/").body.contains("version=1"));
    let v = *versions(&s, "relph").last().unwrap();
    assert_eq!(
        s.api("GET", &format!("/apps/relph/releases/{v}"), None)
            .json()["status"],
        "failed"
    );

    // A config change runs the release phase too, and a failing one leaves the config as it was.
    let (ok, _) = redeploy(
        &s,
        &dir,
        "relph",
        &[
            ("VERSION", "3"),
            (
                "Procfile",
                "web: python3 app.py\nrelease: sh -c 'test \"$BREAK\" != yes'\n",
            ),
        ],
    );
    assert!(ok);
    s.ok(&["config:set", "BREAK=yes", "-a", "relph"]);
    let v = *versions(&s, "relph").last().unwrap();
    assert_eq!(wait_release_settled(&s, "relph", v), "failed");
    assert!(
        !s.ok(&["config", "-a", "relph"]).contains("BREAK"),
        "a failed config release must not keep its config"
    );
}

fn dyno_ages_ok(marker: &str, since: Instant, server_start: std::time::SystemTime) -> bool {
    let _ = since;
    // Every process of a dyno must have started after the new server did.
    let boot = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("btime ")
                .map(|v| v.trim().parse::<u64>().unwrap())
        })
        .unwrap();
    let start_secs = server_start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    dyno_processes(marker).iter().all(|pid| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let started = boot as f64 + f[19].parse::<f64>().unwrap() / 100.0;
        started + 1.0 >= start_secs
    })
}

/// Acceptance 5: SIGKILL of the server mid-push, mid-deploy and mid-scale, then a restart:
/// the app serves within 10 s, `ps` matches the formation, the ledger has no gap or
/// duplicate, and no dyno process of the old server life survives.
#[test]
fn the_server_survives_sigkill_at_any_moment() {
    let mut s = Server::start("sigkill");
    let marker = uuid::Uuid::new_v4().simple().to_string();
    s.ok(&["apps:create", "tough"]);
    s.ok(&[
        "config:set",
        &format!("KILN_TEST_MARKER={marker}"),
        "-a",
        "tough",
    ]);
    let dir = web_app("1");
    assert!(s.push(&dir, "tough").0);

    let check = |s: &Server, web: usize, what: &str, restarted: std::time::SystemTime| {
        let t0 = Instant::now();
        wait_for(
            Duration::from_secs(10),
            &format!("the app to serve after {what}"),
            || (s.get("tough", "/").status == 200).then_some(()),
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
        wait_for(
            BOOT,
            &format!("ps to match the formation after {what}"),
            || {
                let states = ps_states(&s.ok(&["ps", "-a", "tough"]));
                let up = states
                    .iter()
                    .filter(|(n, st)| n.starts_with("web.") && st == "up")
                    .count();
                (up == web && states.iter().filter(|(n, _)| n.starts_with("web.")).count() == web)
                    .then_some(())
            },
        );
        let v = versions(s, "tough");
        let expected: Vec<u64> = (1..=v.len() as u64).collect();
        assert_eq!(v, expected, "ledger after {what}");
        wait_for(
            Duration::from_secs(10),
            "old dyno processes to be gone",
            || dyno_ages_ok(&marker, Instant::now(), restarted).then_some(()),
        );
        // The web process itself (its `bash -c` parent also names app.py in its arguments).
        let web_procs = dyno_processes(&marker)
            .iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .starts_with("python3\0app.py")
            })
            .count();
        assert_eq!(
            web_procs, web,
            "dyno processes after {what} (ps lists {web})"
        );
    };

    // Mid-push: the build is running when the server dies.
    for f in ["big1", "big2"] {
        std::fs::write(dir.join(f), "x".repeat(1000)).unwrap();
    }
    std::fs::write(dir.join("Procfile"), "web: python3 app.py\n").unwrap();
    std::fs::write(dir.join("requirements.txt"), "").unwrap();
    commit_all(&dir, "v2");
    let push = {
        let (dir, url) = (dir.clone(), s.git_url("tough", &s.key));
        std::thread::spawn(move || {
            git(&dir)
                .args(["push", &url, "HEAD:main"])
                .output()
                .unwrap()
        })
    };
    wait_for(Duration::from_secs(30), "the build to start", || {
        s.api("GET", "/apps/tough/builds", None)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["status"] == "pending")
            .then_some(())
    });
    let restarted = std::time::SystemTime::now();
    s.crash_and_restart(&[]);
    let out = push.join().unwrap();
    assert!(!out.status.success(), "a push cut off by a crash must fail");
    check(&s, 1, "a crash mid-push", restarted);
    let builds = s.api("GET", "/apps/tough/builds", None).json();
    assert!(
        builds
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] != "pending"),
        "{builds}"
    );

    // Mid-deploy: the new web dyno takes 4 s to boot when the server dies.
    let slow = WEB_APP.replace(
        "import os, http.server",
        "import os, http.server, time\ntime.sleep(4)",
    );
    let (dir2, app_py) = (dir.clone(), slow);
    std::fs::write(dir2.join("app.py"), &app_py).unwrap();
    commit_all(&dir2, "slow boot");
    let push = {
        let (dir, url) = (dir2.clone(), s.git_url("tough", &s.key));
        std::thread::spawn(move || {
            git(&dir)
                .args(["push", &url, "HEAD:main"])
                .output()
                .unwrap()
        })
    };
    wait_for(BOOT, "the deploy to start", || {
        releases(&s, "tough")
            .iter()
            .any(|r| r["status"] == "pending")
            .then_some(())
    });
    let restarted = std::time::SystemTime::now();
    s.crash_and_restart(&[]);
    let _ = push.join().unwrap();
    check(&s, 1, "a crash mid-deploy", restarted);
    assert!(
        releases(&s, "tough")
            .iter()
            .all(|r| r["status"] != "pending")
    );

    // Mid-scale.
    s.ok(&["ps:scale", "web=10", "-a", "tough"]);
    std::thread::sleep(Duration::from_millis(300));
    let restarted = std::time::SystemTime::now();
    s.crash_and_restart(&[]);
    check(&s, 10, "a crash mid-scale", restarted);
}

/// Acceptance 6 (the rest is covered above and in limits.rs): cycling, R12, ps:stop and
/// ps:restart, in Heroku's words.
#[test]
fn lifecycle_lines_in_herokus_words() {
    let s = Server::start_with("lines", &["--cycle-interval", "4", "--stop-timeout", "2"]);
    s.ok(&["apps:create", "lines"]);
    let stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, lambda *a: print('ignoring SIGTERM', flush=True))\nwhile True:\n    time.sleep(1)\n";
    let dir = fixture_repo(
        "lines",
        &[
            ("app.py", WEB_APP),
            ("VERSION", "1"),
            ("stubborn.py", stubborn),
            ("requirements.txt", ""),
            (
                "Procfile",
                "web: python3 app.py\nworker: python3 stubborn.py\n",
            ),
            ("app.json", r#"{"formation": {"worker": {"quantity": 1}}}"#),
        ],
    );
    assert!(s.push(&dir, "lines").0);
    // Web cycling starts the replacement first and stops the old dyno only once the new one
    // is up, so its exit line can come seconds after the worker's R12: wait for both.
    let logs = wait_for(Duration::from_secs(40), "cycling and R12", || {
        let l = s.logs("lines");
        (l.contains("heroku[web.1]: Cycling")
            && l.contains("heroku[worker.1]: Error R12 (Exit timeout) -> Process failed to exit within 2 seconds of SIGTERM")
            && l.contains("heroku[worker.1]: Process exited with status 137")
            && l.contains("heroku[web.1]: Process exited with status 143"))
        .then_some(l)
    });
    for needle in [
        "heroku[worker.1]: Stopping all processes with SIGTERM",
        "app[worker.1]: ignoring SIGTERM",
        "heroku[worker.1]: Stopping process with SIGKILL",
        "heroku[worker.1]: Process exited with status 137",
        "heroku[web.1]: Process exited with status 143",
        "heroku[web.1]: State changed from starting to up",
    ] {
        assert!(logs.contains(needle), "missing {needle:?}:\n{logs}");
    }
    // The app keeps answering through cycling (replacement first).
    assert_eq!(s.get("lines", "/").status, 200);
    s.ok(&["ps:stop", "web.1", "-a", "lines"]);
    s.ok(&["ps:restart", "worker", "-a", "lines"]);
    wait_for(Duration::from_secs(30), "both back up", || {
        let st = ps_states(&s.ok(&["ps", "-a", "lines"]));
        (st.contains(&("web.1".into(), "up".into()))
            && st.contains(&("worker.1".into(), "up".into())))
        .then_some(())
    });
    let logs = s.logs("lines");
    assert!(
        logs.contains("app[api]: Stop web.1 by user admin@kiln.local"),
        "{logs}"
    );
    assert!(
        logs.contains("app[api]: Restart worker dynos by user admin@kiln.local"),
        "{logs}"
    );
}
