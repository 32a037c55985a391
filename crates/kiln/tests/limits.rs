//! Resource limits, end to end (issue 3, acceptance 3 and 5): real pushes, real container
//! dynos in real cgroups (v1 or hybrid here, v2 elsewhere — the tests read whichever the host
//! uses). A fork bomb stops at the process limit while another app keeps answering; a dyno
//! past twice its quota is killed with R15 and restarted; one above its quota is logged with
//! R14 and keeps running; a build that allocates without bound, or never ends, fails with a
//! clear message while another app keeps serving.
//!
//! Every test runs its own server with `--runtime container` (limits are what is proved, so a
//! fallback to plain processes must fail, not pass vacuously), and every wait is bounded.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(90);

fn container_server(tag: &str, extra: &[&str]) -> Server {
    let mut flags = vec!["--runtime", "container", "--restart-backoff", "2"];
    flags.extend_from_slice(extra);
    let s = Server::start_with(tag, &flags);
    wait_for(
        Duration::from_secs(10),
        "the server to report its runtime",
        || {
            s.server_log()
                .contains("Dyno runtime: container")
                .then_some(())
        },
    );
    s
}

/// A web process that answers `ok DYNO` and, on `/bomb`, starts a bash fork bomb beside it.
const WEB_PY: &str = r#"
import os, subprocess, http.server

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/bomb":
            subprocess.Popen(["bash", "-c", ":(){ :|:& };:"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        body = ("ok %s\n" % os.environ.get("DYNO")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A worker that allocates (and touches) `HOG_MB` megabytes, 25 MB at a time, then holds it.
const HOG_PY: &str = r#"
import os, time
target = int(os.environ.get("HOG_MB", "0"))
chunks = []
print("hog allocating %d MB" % target, flush=True)
while len(chunks) * 25 < target:
    chunks.append(b"x" * (25 << 20))
    time.sleep(0.05)
print("hog holding %d MB" % (len(chunks) * 25), flush=True)
while True:
    time.sleep(1)
"#;

/// Deploys a Procfile app (no dependencies: the fastest build) with a test marker config var.
fn deploy(s: &Server, app: &str, marker: &str, files: &[(&str, &str)]) {
    s.ok(&["apps:create", app]);
    s.ok(&[
        "config:set",
        &format!("KILN_TEST_MARKER={marker}"),
        "-a",
        app,
    ]);
    let repo = fixture_repo(&format!("limits-{app}"), files);
    let (ok, out) = s.push(&repo, app);
    assert!(ok, "push of {app} failed:\n{out}");
}

fn web_app(s: &Server, app: &str, marker: &str) {
    deploy(
        s,
        app,
        marker,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", WEB_PY)],
    );
    let r = s.get(app, "/");
    assert_eq!(r.status, 200, "{app}: {r:?}");
}

/// The dyno's cgroup directory for `controller` (v1/hybrid), or its unified one (v2), found
/// from one of its processes as the host sees it.
fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        return Some(PathBuf::from(format!("/sys/fs/cgroup{rel}")));
    }
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, rel) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| PathBuf::from(format!("/sys/fs/cgroup/{controller}{rel}")))
    })
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `max N` of a `pids.events`: how many forks the limit refused.
fn pids_refused(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("pids.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("max ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// The log lines of one dyno's platform messages (`heroku[worker.1]: ...`), in order.
fn platform_lines(logs: &str, dyno: &str) -> Vec<String> {
    let tag = format!(" heroku[{dyno}]: ");
    logs.lines()
        .filter_map(|l| l.split_once(&tag).map(|(_, m)| m.to_string()))
        .collect()
}

/// Acceptance 3, first part: a fork bomb in a standard-1X web dyno stops at 256 processes;
/// another app keeps answering through the router meanwhile, and destroying the bombed app
/// leaves nothing behind.
#[test]
fn a_fork_bomb_stops_at_the_process_limit_and_other_apps_keep_answering() {
    let s = container_server("forkbomb", &[]);
    let (bomb_marker, calm_marker) = (
        uuid::Uuid::new_v4().simple().to_string(),
        uuid::Uuid::new_v4().simple().to_string(),
    );
    web_app(&s, "bomb", &bomb_marker);
    web_app(&s, "calm", &calm_marker);

    // Safety first: the bomb goes off only in a dyno whose limit is in place.
    let web = *dyno_processes(&bomb_marker)
        .first()
        .expect("bomb's web process");
    let pids_dir = cgroup_dir(web, "pids").expect("the dyno's pids cgroup");
    assert_eq!(
        std::fs::read_to_string(pids_dir.join("pids.max"))
            .unwrap()
            .trim(),
        "256",
        "standard-1X is 256 processes ({})",
        pids_dir.display()
    );

    assert_eq!(s.get("bomb", "/bomb").status, 200);
    wait_for(Duration::from_secs(30), "the bomb to hit the limit", || {
        (pids_refused(&pids_dir) > 0).then_some(())
    });

    // For 10 s, the bomb pushes against its limit and the other app answers every request.
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut peak = 0;
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let r = s.get("calm", "/");
        worst = worst.max(t.elapsed());
        assert_eq!(
            r.status, 200,
            "the calm app stopped answering during the fork bomb: {r:?}"
        );
        assert!(r.body.starts_with("ok web.1"), "{}", r.body);
        answered += 1;
        let current = read_u64(&pids_dir.join("pids.current"));
        assert!(current <= 256, "pids.current {current} above the limit");
        peak = peak.max(current);
        let by_marker = dyno_processes(&bomb_marker).len();
        assert!(
            by_marker <= 256,
            "{by_marker} processes carry the bomb's marker"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        peak >= 200,
        "the bomb never came near its limit: peak {peak}"
    );
    assert!(
        worst < Duration::from_secs(2),
        "the calm app took {worst:?} to answer"
    );
    println!(
        "fork bomb: peak {peak} processes (limit 256), {} forks refused; other app answered {answered} requests, slowest {worst:?}",
        pids_refused(&pids_dir)
    );
    // The host is fine too: this test can still start processes.
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );

    // Destroying the app kills the whole bomb and removes its cgroup.
    s.ok(&["apps:destroy", "bomb", "--confirm", "bomb"]);
    wait_for(
        Duration::from_secs(15),
        "the bomb's processes to be gone",
        || dyno_processes(&bomb_marker).is_empty().then_some(()),
    );
    assert!(!pids_dir.exists(), "{} remains", pids_dir.display());
    assert_eq!(s.get("calm", "/").status, 200);
}

/// A worker-only app whose worker runs `hog.py`, on `basic` (512 MB quota, 1 GB hard limit),
/// set with `ps:type`.
fn hog_app(s: &Server, app: &str, marker: &str, mb: u32) {
    deploy(
        s,
        app,
        marker,
        &[
            ("Procfile", "worker: python3 hog.py\n"),
            ("hog.py", HOG_PY),
            ("app.json", r#"{"formation": {"worker": {"quantity": 1}}}"#),
        ],
    );
    let out = s.ok(&["ps:type", "worker=basic", "-a", app]);
    assert!(
        out.contains("worker  Basic") && out.contains("512 MB"),
        "{out}"
    );
    s.ok(&["config:set", &format!("HOG_MB={mb}"), "-a", app]);
    let shown = s.ok(&["ps:type", "-a", app]);
    assert!(
        shown.contains("=== Process Types") && shown.contains("worker  Basic  1"),
        "{shown}"
    );
}

/// Acceptance 3, second part: past twice the quota the kernel stops the allocation at the
/// hard limit; the log says R15, the dyno is killed and restarted.
#[test]
fn a_dyno_past_twice_its_quota_is_killed_with_r15_and_restarted() {
    let s = container_server("r15", &[]);
    let marker = uuid::Uuid::new_v4().simple().to_string();
    hog_app(&s, "hog", &marker, 1200);
    let logs = wait_for(BOOT, "R15 and a restart", || {
        let logs = s.logs("hog");
        let lines = platform_lines(&logs, "worker.1");
        let r15 = lines
            .iter()
            .position(|l| l == "Error R15 (Memory quota vastly exceeded)")?;
        let restarted = lines[r15..]
            .iter()
            .any(|l| l == "State changed from crashed to starting");
        restarted.then_some(logs)
    });
    let lines = platform_lines(&logs, "worker.1");
    let r15 = lines
        .iter()
        .position(|l| l == "Error R15 (Memory quota vastly exceeded)")
        .unwrap();
    assert_eq!(
        lines[r15 + 1],
        "Stopping process with SIGKILL",
        "{lines:#?}"
    );
    let exit = lines[r15..]
        .iter()
        .position(|l| l.starts_with("Process exited with status"))
        .map(|i| &lines[r15 + i])
        .expect("an exit after R15");
    assert_eq!(exit, "Process exited with status 137", "{lines:#?}");
    assert!(
        lines[r15..]
            .iter()
            .any(|l| l == "State changed from up to crashed"),
        "{lines:#?}"
    );
    // The allocation never got past the hard limit.
    assert!(
        !logs.contains("hog holding 1200 MB"),
        "the hog got all its memory:\n{logs}"
    );
    // And the restarted dyno runs again (in a new cgroup).
    wait_for(BOOT, "worker.1 running again", || {
        dyno_processes(&marker)
            .iter()
            .any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .contains("hog.py")
            })
            .then_some(())
    });
    println!(
        "R15 sequence: {:?}",
        &lines[r15.saturating_sub(2)..(r15 + 5).min(lines.len())]
    );
}

/// Acceptance 3, third part: above the quota but below the hard limit, the dyno keeps running
/// and the log says R14 with its memory use, at most every 20 s.
#[test]
fn a_dyno_above_its_quota_is_logged_with_r14_and_keeps_running() {
    let mut s = container_server("r14", &[]);
    let marker = uuid::Uuid::new_v4().simple().to_string();
    hog_app(&s, "hog", &marker, 700);
    let (logs, first) = wait_for(BOOT, "R14", || {
        let logs = s.logs("hog");
        logs.contains("heroku[worker.1]: Error R14 (Memory quota exceeded)")
            .then(|| (logs, Instant::now()))
    });
    let lines = platform_lines(&logs, "worker.1");
    let r14 = lines
        .iter()
        .position(|l| l == "Error R14 (Memory quota exceeded)")
        .unwrap();
    let mem = &lines[r14 - 1];
    let (mb, pct) = mem
        .strip_prefix("Process running mem=")
        .and_then(|r| r.strip_suffix("%)"))
        .and_then(|r| r.split_once("MB("))
        .unwrap_or_else(|| panic!("no memory line before R14: {lines:#?}"));
    let (mb, pct): (u64, f64) = (mb.parse().unwrap(), pct.parse().unwrap());
    assert!((512..1024).contains(&mb), "{mem}");
    assert!((pct - mb as f64 * 100.0 / 512.0).abs() < 0.2, "{mem}");
    println!("R14: {mem}");

    // It keeps running: still up, never exited (the exits before are the earlier releases'
    // workers being stopped), the whole 700 MB held, and R14 not repeated within 20 s.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(first.elapsed()));
    let logs = s.logs("hog");
    let lines = platform_lines(&logs, "worker.1");
    assert!(
        !lines[r14..]
            .iter()
            .any(|l| l.starts_with("Process exited") || l.contains("R15") || l.contains("crashed")),
        "{lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "Error R14 (Memory quota exceeded)")
            .count(),
        1,
        "{lines:#?}"
    );
    assert!(logs.contains("app[worker.1]: hog holding 700 MB"), "{logs}");
    let hog = dyno_processes(&marker)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .contains("hog.py")
        })
        .expect("the hog runs");
    let usage = read_u64(&cgroup_dir(hog, "memory").unwrap().join(
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        },
    ));
    assert!(
        usage > 700 << 20 && usage < 1024 << 20,
        "the dyno's cgroup accounts {usage} bytes"
    );
    let ps = ps_states(&s.ok(&["ps", "-a", "hog"]));
    assert!(ps.contains(&("worker.1".into(), "up".into())), "{ps:?}");

    // A server that stops leaves no cgroup behind: neither the dyno's nor its own group.
    let dyno_group = cgroup_dir(hog, "memory").unwrap();
    let server_group = dyno_group.parent().unwrap().to_path_buf();
    assert!(s.stop().success());
    assert!(
        !dyno_group.exists() && !server_group.exists(),
        "{} remains",
        server_group.display()
    );
}

/// A custom buildpack (a directory on the server) whose compile runs `script`.
fn buildpack(script: &str) -> TempDir {
    let bp = TempDir::new("limits-bp");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    std::fs::write(bp.join("bin/detect"), "#!/bin/sh\necho Greedy\n").unwrap();
    std::fs::write(
        bp.join("bin/compile"),
        format!("#!/bin/sh\necho '-----> compiling greedily'\n{script}\n"),
    )
    .unwrap();
    std::fs::write(
        bp.join("bin/release"),
        "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: python3 app.py\\n'\n",
    )
    .unwrap();
    for f in ["detect", "compile", "release"] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(bp.join("bin").join(f))
            .status()
            .unwrap();
    }
    bp
}

/// Polls `app` through the router from a thread until stopped; returns (requests, failures).
fn keep_asking(
    s: &Server,
    app: &str,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<(u32, Vec<String>)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, host) = (s.router_port, s.host(app));
    let flag = stop.clone();
    let h = std::thread::spawn(move || {
        let (mut n, mut bad) = (0, Vec::new());
        while !flag.load(Ordering::SeqCst) {
            let r = http(port, "GET", &host, "/", &[], None);
            n += 1;
            if r.status != 200 {
                bad.push(format!("{} {}", r.status, r.body));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (n, bad)
    });
    (stop, h)
}

/// Acceptance 5, first part: a build that allocates without bound is stopped at the build
/// memory limit and fails saying so; no release, and another app serves throughout.
#[test]
fn a_build_that_allocates_without_bound_fails_with_a_clear_message() {
    let s = container_server(
        "buildoom",
        &["--build-memory", "256", "--build-timeout", "120"],
    );
    web_app(&s, "calm", &uuid::Uuid::new_v4().simple().to_string());
    s.ok(&["apps:create", "greedy"]);
    // "Without bound" as far as a 256 MB limit can tell; capped at 3 GB so that a missing
    // limit fails this test instead of hurting the machine.
    let bp = buildpack(
        "exec python3 -c \"\nx = []\nwhile len(x) < 120:\n    x.append(b'x' * (25 << 20))\nprint('allocated 3 GB')\n\"",
    );
    s.ok(&["buildpacks:set", bp.to_str().unwrap(), "-a", "greedy"]);
    let repo = fixture_repo("limits-greedy", &[("app.py", WEB_PY)]);
    let (stop, asker) = keep_asking(&s, "calm");
    let t = Instant::now();
    let (ok, out) = s.push(&repo, "greedy");
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (asked, failures) = asker.join().unwrap();
    assert!(!ok, "the push should fail:\n{out}");
    assert!(out.contains("compiling greedily"), "{out}");
    assert!(
        out.contains("Build exceeded its memory limit of 256 MB"),
        "{out}"
    );
    assert!(!out.contains("allocated 3 GB"), "{out}");
    assert!(
        failures.is_empty(),
        "the other app failed {} of {asked} requests during the build: {failures:?}",
        failures.len()
    );
    assert_eq!(
        s.api("GET", "/apps/greedy/releases", None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "no release for a failed build"
    );
    assert_eq!(
        s.api("GET", "/apps/greedy/builds", None).json()[0]["status"],
        "failed"
    );
    println!(
        "build OOM: push failed after {took:?}; the other app answered {asked} requests meanwhile"
    );
}

/// Acceptance 5, second part: a build that never ends is stopped at the build timeout and
/// fails saying so, leaving no process behind.
#[test]
fn a_build_that_never_ends_fails_after_the_timeout() {
    let s = container_server("buildtimeout", &["--build-timeout", "5"]);
    s.ok(&["apps:create", "forever"]);
    let nonce = 1_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u64;
    let bp = buildpack(&format!("sleep {nonce}"));
    s.ok(&["buildpacks:set", bp.to_str().unwrap(), "-a", "forever"]);
    let repo = fixture_repo("limits-forever", &[("app.py", WEB_PY)]);
    let t = Instant::now();
    let (ok, out) = s.push(&repo, "forever");
    let took = t.elapsed();
    assert!(!ok, "the push should fail:\n{out}");
    assert!(out.contains("Build timed out after 5 seconds"), "{out}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "the push took {took:?}"
    );
    let cmdline = format!("sleep\0{nonce}\0");
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline.as_bytes()))
    };
    wait_for(
        Duration::from_secs(5),
        "the build's sleep to be gone",
        || (!sleeping()).then_some(()),
    );
    assert_eq!(
        s.api("GET", "/apps/forever/builds", None).json()[0]["status"],
        "failed"
    );
    println!("build timeout: push failed after {took:?}");
}

/// A server killed outright leaves its dynos' cgroups behind; the next start on the same data
/// directory kills whatever still runs in them (a dyno that outlived the crash, or anything
/// else that got in) and removes them, before it starts the apps again in fresh groups.
#[test]
fn a_restarted_server_sweeps_the_cgroups_of_its_previous_life() {
    let mut first = container_server("sweep", &[]);
    let marker = uuid::Uuid::new_v4().simple().to_string();
    web_app(&first, "phoenix", &marker);
    let old_pids = dyno_processes(&marker);
    let old_group = cgroup_dir(*old_pids.first().expect("web process"), "pids")
        .expect("the dyno's pids cgroup");
    first.crash();
    assert!(
        old_group.is_dir(),
        "expected the crashed server's cgroup {} to remain",
        old_group.display()
    );

    // Something still running in the leftover group.
    let mut stray = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    std::fs::write(old_group.join("cgroup.procs"), stray.id().to_string()).unwrap();

    let second = Server::start_in(first.dir.clone(), &["--runtime", "container"]);
    let status = wait_for(
        Duration::from_secs(10),
        "the stray process to be killed",
        || stray.try_wait().unwrap(),
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(!old_group.exists(), "{} was not swept", old_group.display());
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    wait_for(
        Duration::from_secs(5),
        "the old dyno's processes to be gone",
        || old_pids.iter().all(|p| !alive(*p)).then_some(()),
    );
    wait_for(BOOT, "the app to answer again", || {
        (second.get("phoenix", "/").status == 200).then_some(())
    });
    let web = *dyno_processes(&marker).first().expect("web process");
    let new_group = cgroup_dir(web, "pids").unwrap();
    assert_ne!(new_group, old_group);
    assert_eq!(
        new_group.parent(),
        old_group.parent(),
        "same server, same group"
    );
}
