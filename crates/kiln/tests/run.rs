//! One-off dynos (`kiln run`, `kiln run:detached`) against a real server.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn deployed(tag: &str, app: &str) -> (Server, String) {
    let s = Server::start(tag);
    let marker = uuid::Uuid::new_v4().simple().to_string();
    s.ok(&["apps:create", app]);
    s.ok(&[
        "config:set",
        &format!("KILN_TEST_MARKER={marker}"),
        "-a",
        app,
    ]);
    let dir = fixture_repo(
        "run-app",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("requirements.txt", ""),
        ],
    );
    let (ok, out) = s.push(&dir, app);
    assert!(ok, "{out}");
    (s, marker)
}

fn cli(s: &Server) -> Command {
    let mut c = Command::new(KILN);
    c.env("KILN_API_URL", &s.api_url)
        .env("KILN_API_KEY", &s.key)
        .env("HOME", s.home())
        .current_dir(&s.dir);
    c
}

/// Acceptance (issue 3, point 6): the exit status comes back, piped stdin works, the dyno
/// sees its one-off name, and a detached run logs its output.
#[test]
fn run_passes_exit_codes_stdin_and_environment() {
    let (s, _) = deployed("run", "runapp");
    let out = cli(&s)
        .args(["run", "-a", "runapp", "--", "sh", "-c", "exit 7"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = cli(&s)
        .args([
            "run",
            "--no-tty",
            "-a",
            "runapp",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo \"DYNO=$DYNO\"; pwd",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello from stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("HELLO FROM STDIN"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("DYNO=run.") && l.len() == "DYNO=run.1234".len()),
        "{stdout}"
    );
    assert!(stdout.contains("/app"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Running `sh -c"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = s.ok(&[
        "run:detached",
        "-a",
        "runapp",
        "--",
        "echo",
        "detached-output-marker",
    ]);
    let name = out
        .split("done, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(name.starts_with("run."), "{out}");
    wait_for(Duration::from_secs(30), "detached output in logs", || {
        s.logs("runapp")
            .contains(&format!("app[{name}]: detached-output-marker"))
            .then_some(())
    });
    let logs = s.logs("runapp");
    assert!(
        logs.contains(&format!("heroku[{name}]: Process exited with status 0")),
        "{logs}"
    );

    // No release yet: a clear error.
    s.ok(&["apps:create", "emptyapp"]);
    let msg = s.fails(&["run", "-a", "emptyapp", "--", "true"]);
    assert!(msg.contains("push it first"), "{msg}");
}

/// A terminal is relayed when the client has one.
#[test]
fn run_gives_the_command_a_terminal_when_there_is_one() {
    let (s, _) = deployed("runtty", "ttyapp");
    // `script` runs the CLI on a pseudo-terminal, as a user's shell would.
    let inner = format!(
        "KILN_API_URL={} KILN_API_KEY={} HOME={} {KILN} run -a ttyapp -- python3 -c 'import sys; print(\"ISATTY\", sys.stdin.isatty(), sys.stdout.isatty())'",
        s.api_url,
        s.key,
        s.home().display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ISATTY True True"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Disconnecting kills the one-off dyno.
#[test]
fn disconnecting_kills_the_one_off_dyno() {
    let (s, marker) = deployed("rundisc", "discapp");
    let mut child = cli(&s)
        .args(["run", "--no-tty", "-a", "discapp", "--", "sleep", "300"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = wait_for(Duration::from_secs(30), "the one-off's process", || {
        dyno_processes(&marker).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .starts_with("sleep")
        })
    });
    assert!(
        s.ok(&["ps", "-a", "discapp"]).contains("run."),
        "ps lists the one-off"
    );
    child.kill().unwrap();
    let _ = child.wait();
    wait_for(Duration::from_secs(20), "the one-off to be killed", || {
        (!std::path::Path::new(&format!("/proc/{sleeper}")).exists()).then_some(())
    });
    let logs = s.logs("discapp");
    assert!(
        logs.contains("Client connection closed. Sending SIGHUP to all processes"),
        "{logs}"
    );
    wait_for(Duration::from_secs(10), "ps without the one-off", || {
        (!s.ok(&["ps", "-a", "discapp"]).contains("run.")).then_some(())
    });
}
