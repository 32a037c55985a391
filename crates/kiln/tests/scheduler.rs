//! Scheduled jobs (issue 19): the scheduler add-on, jobs on a short schedule with their output
//! in the logs, no run started while the previous one is going, a missed run after a crash of
//! the server run once, and bad input refused with a reason.

mod common;

use common::{JsonBody, Server, python_app, wait_for};
use std::time::Duration;

/// When each log line naming `needle` was written (microseconds), in order.
fn times_of(logs: &str, needle: &str) -> Vec<i64> {
    logs.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| kiln_model::Timestamp::parse_rfc3339(l.split_whitespace().next()?))
        .map(|t| t.0)
        .collect()
}

#[test]
fn scheduled_jobs_run_on_time_never_twice_at_once_and_once_after_a_crash() {
    let mut s = Server::start("scheduler");
    s.ok(&["apps:create", "cron"]);

    // Without the scheduler add-on, or without a release, there is nothing to schedule.
    let out = s.fails(&[
        "schedules:add",
        "every 2 seconds",
        "-a",
        "cron",
        "--",
        "echo hi",
    ]);
    assert!(
        out.contains("has no scheduler") && out.contains("addons:create scheduler"),
        "{out}"
    );
    s.ok(&["addons:create", "scheduler", "-a", "cron"]);
    let out = s.fails(&[
        "schedules:add",
        "every 2 seconds",
        "-a",
        "cron",
        "--",
        "echo hi",
    ]);
    assert!(out.contains("no release"), "{out}");
    let app = python_app(&[]);
    let (ok, out) = s.push(&app, "cron");
    assert!(ok, "{out}");
    // Schedules that are not schedules.
    for (bad, says) in [
        ("every 10 fortnights", "not a unit"),
        ("61 * * * *", "minute"),
        ("daily at 02:00 CET", "Only UTC"),
        ("0 0 31 2 *", "never runs"),
        ("", "required"),
    ] {
        let out = s.fails(&["schedules:add", bad, "-a", "cron", "--", "echo hi"]);
        assert!(out.contains(says), "{bad}: {out}");
    }
    let r = s.api(
        "POST",
        "/apps/cron/schedules",
        Some(r#"{"schedule":"every minute","command":""}"#),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s.api(
        "POST",
        "/apps/cron/schedules",
        Some(r#"{"schedule":["every minute"],"command":"x"}"#),
    );
    assert_eq!(r.status, 422, "{}", r.body);

    // A job every 2 seconds that takes 5: its runs never overlap, and say so when skipped.
    let out = s.ok(&[
        "schedules:add",
        "every 2 seconds",
        "-a",
        "cron",
        "--",
        "echo tick-start; sleep 5; echo tick-end",
    ]);
    assert!(
        out.contains("Scheduled `echo tick-start; sleep 5; echo tick-end` every 2 seconds"),
        "{out}"
    );
    wait_for(Duration::from_secs(60), "two runs to finish", || {
        let logs = s.logs("cron");
        // The runs' own output, not the lines that quote the command.
        (logs.lines().filter(|l| l.ends_with(": tick-end")).count() >= 2).then_some(())
    });
    let logs = s.logs("cron");
    assert!(logs.contains("Skipping scheduled job"), "{logs}");
    let marks: Vec<&str> = logs
        .lines()
        .filter_map(|l| {
            if l.ends_with(": tick-start") {
                Some("start")
            } else if l.ends_with(": tick-end") {
                Some("end")
            } else {
                None
            }
        })
        .collect();
    for pair in marks.windows(2) {
        assert_ne!(pair[0], pair[1], "two runs overlapped: {marks:?}\n{logs}");
    }
    assert!(
        logs.contains("app[scheduler."),
        "each run is a scheduler.N dyno: {logs}"
    );
    let jobs = s.api("GET", "/apps/cron/schedules", None).json();
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    assert!(jobs[0]["last_run_at"].is_string(), "{jobs}");
    let listed = s.ok(&["schedules", "-a", "cron"]);
    assert!(
        listed.contains(&id) && listed.contains("every 2 seconds"),
        "{listed}"
    );
    s.ok(&["schedules:remove", &id, "-a", "cron"]);

    // A quick job every 5 seconds; the server is killed and stays down past two of its runs.
    s.ok(&[
        "schedules:add",
        "every 5 seconds",
        "-a",
        "cron",
        "--",
        "echo quick-run",
    ]);
    wait_for(Duration::from_secs(30), "a first quick run", || {
        s.logs("cron")
            .lines()
            .any(|l| l.ends_with(": quick-run"))
            .then_some(())
    });
    s.crash();
    std::thread::sleep(Duration::from_secs(12));
    s.restart(&[]);
    let restarted = kiln_model::Timestamp::now().0;
    wait_for(Duration::from_secs(30), "the missed run", || {
        times_of(&s.logs("cron"), "by scheduler for user")
            .iter()
            .any(|t| *t > restarted)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    // Once, not once per missed slot: every run since the restart is in a tick of its own.
    let after: Vec<i64> = times_of(&s.logs("cron"), "by scheduler for user")
        .into_iter()
        .filter(|t| *t > restarted)
        .collect();
    for pair in after.windows(2) {
        assert!(
            pair[1] - pair[0] > 500_000,
            "runs started together after the restart: {after:?}"
        );
    }
    // Run now, whatever the schedule; removing the scheduler removes its jobs.
    let jobs = s.api("GET", "/apps/cron/schedules", None).json();
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    let out = s.ok(&["schedules:run", &id, "-a", "cron"]);
    assert!(out.contains("scheduler."), "{out}");
    let addons = s.api("GET", "/apps/cron/addons", None).json();
    let scheduler = addons
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["addon_service"]["name"] == "scheduler")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&[
        "addons:destroy",
        &scheduler,
        "-a",
        "cron",
        "--confirm",
        "cron",
    ]);
    assert_eq!(
        s.api("GET", "/apps/cron/schedules", None).json(),
        serde_json::json!([])
    );
}
