//! Sleeping apps (issue 19): an idle app's dynos stop, a request wakes them and is answered,
//! a burst during the wake starts one dyno, and a release that no longer boots answers H20
//! and goes back to sleep. Real server, real containers, real requests through the router.

mod common;

use common::{JsonBody, Server, dyno_processes, ps_states, python_app, wait_for};
use std::time::{Duration, Instant};

/// The Python fixture whose web process hangs without binding when `HANG` is set.
const PROCFILE: &str = "web: if [ -n \"$HANG\" ]; then exec sleep 1000; else exec python3 app.py; fi\nworker: python3 worker.py\n";

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Waits until no release of the app is pending: a config change to a sleeping app goes live
/// without booting anything, but from a background task.
fn releases_settled(s: &Server) {
    wait_for(Duration::from_secs(30), "the release to go live", || {
        let r = s.api("GET", "/apps/sleepy/releases", None).json();
        let all = r.as_array()?;
        all.iter()
            .all(|r| {
                r["status"].as_str() == Some("succeeded") || r["status"].as_str() == Some("failed")
            })
            .then_some(())
    });
}

#[test]
fn an_idle_app_sleeps_and_the_next_request_wakes_it() {
    let mut s = Server::start_with(
        "sleeping",
        &[
            "--boot-timeout",
            "5",
            "--router-boot-hold",
            "10",
            "--sleep-after",
            "3",
        ],
    );
    let app = python_app(&[("Procfile", PROCFILE)]);
    s.ok(&["apps:create", "sleepy"]);
    s.ok(&["config:set", "KILN_TEST_MARKER=sleepy", "-a", "sleepy"]);
    let (ok, out) = s.push(&app, "sleepy");
    assert!(ok, "{out}");
    assert_eq!(s.get("sleepy", "/").status, 200);

    // Bad settings are refused with a reason.
    let out = s.fails(&["ps:autosleep", "on", "--after", "0s", "-a", "sleepy"]);
    assert!(out.contains("between 1 second and 7 days"), "{out}");
    let out = s.fails(&["ps:autosleep", "on", "--after", "5x", "-a", "sleepy"]);
    assert!(out.contains("not a duration"), "{out}");
    let r = s.api("PATCH", "/apps/sleepy/sleep", Some(r#"{"after":"soon"}"#));
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s.api("PATCH", "/apps/sleepy/sleep", Some(r#"{"sleepy":true}"#));
    assert_eq!(r.status, 422, "{}", r.body);
    // The app is not eco: by default it never sleeps.
    let out = s.ok(&["ps:autosleep", "-a", "sleepy"]);
    assert!(out.contains("does not sleep (default)"), "{out}");

    // Eco web dynos sleep, as on Heroku, after the server's idle time (3 s here).
    s.ok(&["ps:type", "web=eco", "-a", "sleepy"]);
    let out = s.ok(&["ps:autosleep", "-a", "sleepy"]);
    assert!(
        out.contains("sleeps after 3s without a request (default)"),
        "{out}"
    );
    wait_for(Duration::from_secs(30), "the app to sleep", || {
        s.logs("sleepy")
            .contains("heroku[web.1]: Idling")
            .then_some(())
    });
    let logs = s.logs("sleepy");
    assert!(
        logs.contains("heroku[web.1]: State changed from up to idle"),
        "{logs}"
    );
    assert!(logs.contains("heroku[worker.1]: Idling"), "{logs}");
    // Its processes are gone, and ps says it sleeps.
    wait_for(
        Duration::from_secs(20),
        "the dynos' processes to end",
        || dyno_processes("sleepy").is_empty().then_some(()),
    );
    let ps = s.ok(&["ps", "-a", "sleepy"]);
    let states = ps_states(&ps);
    assert!(
        states.iter().any(|(n, st)| n == "web.1" && st == "idle"),
        "{ps}"
    );
    let starts_before = count(&s.logs("sleepy"), "heroku[web.1]: Starting process");

    // A burst of fifty requests wakes it: every one is answered, and one web dyno starts.
    let started = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let port = s.router_port;
            std::thread::spawn(move || {
                kiln_testkit::http::request(
                    port,
                    "GET",
                    "sleepy.localhost",
                    &format!("/wake{i}"),
                    &[],
                    None,
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let woke_in = started.elapsed();
    // Awake now (it sleeps again 3 s after this burst).
    assert!(!dyno_processes("sleepy").is_empty());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let logs = s.logs("sleepy");
    assert_eq!(
        count(&logs, "heroku[web.1]: Starting process") - starts_before,
        1,
        "one dyno for the burst: {logs}"
    );
    assert!(logs.contains("heroku[web.1]: Unidling"), "{logs}");
    eprintln!("woke and answered 50 requests in {woke_in:?}");

    // It sleeps again; then a release that hangs at boot is deployed while it sleeps.
    wait_for(Duration::from_secs(30), "the app to sleep again", || {
        (count(&s.logs("sleepy"), "heroku[web.1]: Idling") >= 2).then_some(())
    });
    s.ok(&["config:set", "HANG=1", "-a", "sleepy"]);
    releases_settled(&s);
    // The next request is held while the dyno tries to boot, then answered H20; the app goes
    // back to sleep rather than crash-looping.
    let r = s.get("sleepy", "/after-hang");
    assert_eq!(r.status, 503, "{}", r.body);
    wait_for(Duration::from_secs(30), "the H20 line", || {
        s.logs("sleepy").contains("code=H20").then_some(())
    });
    wait_for(
        Duration::from_secs(30),
        "the app to sleep after the failed wake",
        || (count(&s.logs("sleepy"), "heroku[web.1]: Idling") >= 3).then_some(()),
    );

    // Fixed while it sleeps, then the server is killed: the new server does not boot the
    // sleeping app, and its next request wakes it.
    s.ok(&["config:unset", "HANG", "-a", "sleepy"]);
    // The API answers before the release goes live (as Heroku's does); a server killed in
    // between fails it by design, so the crash waits for it.
    releases_settled(&s);
    s.crash_and_restart(&[
        "--boot-timeout",
        "5",
        "--router-boot-hold",
        "10",
        "--sleep-after",
        "3",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        dyno_processes("sleepy").is_empty(),
        "a sleeping app booted at the start"
    );
    let ps = s.ok(&["ps", "-a", "sleepy"]);
    assert!(
        ps_states(&ps)
            .iter()
            .any(|(n, st)| n == "web.1" && st == "idle"),
        "{ps}"
    );
    assert_eq!(s.get("sleepy", "/").status, 200);
}
