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

// ---- issue 14: the CLI over Kiln's HTTPS listener, set up as the README says ----

/// Heroku's CLI pointed at the server's HTTPS listener exactly as the README's recipe sets
/// it up: `HEROKU_HOST` the https URL, Node and git told to trust Kiln's CA (git through its
/// per-URL `http.<url>.sslCAInfo`, with this machine's own `GIT_SSL_CAINFO` and friends
/// removed so they cannot stand in for it), `heroku` on the PATH for its git credential
/// helper, and no netrc and no key in any git URL.
struct Https<'a> {
    s: &'a Server,
    url: String,
    ca: PathBuf,
    home: PathBuf,
}

impl<'a> Https<'a> {
    fn new(s: &'a Server) -> Https<'a> {
        let url = s
            .api_tls_url
            .clone()
            .expect("the server was started with --api-tls-listen");
        let ca = s.dir.join("data/tls/ca.crt");
        let home = s.home();
        let git_config = format!(
            "[user]\n\tname = Kiln Test\n\temail = test@kiln.local\n[init]\n\tdefaultBranch = main\n[http \"{url}/\"]\n\tsslCAInfo = {}\n",
            ca.display()
        );
        std::fs::write(home.join(".gitconfig"), git_config).unwrap();
        Https { s, url, ca, home }
    }

    fn command(&self, program: &std::ffi::OsStr, cwd: &std::path::Path) -> Command {
        let bin_dir = heroku_bin().parent().unwrap().to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(program);
        c.current_dir(cwd)
            .env("HOME", &self.home)
            .env("PATH", path)
            .env("HEROKU_HOST", &self.url)
            .env("HEROKU_API_KEY", &self.s.key)
            .env("HEROKU_PARTICLEBOARD_URL", &self.url)
            .env("HEROKU_BUILDPACK_REGISTRY_URL", &self.url)
            .env("NODE_EXTRA_CA_CERTS", &self.ca)
            .env("DISABLE_TELEMETRY", "true")
            .env("HEROKU_SKIP_NEW_VERSION_CHECK", "true")
            .env("NO_COLOR", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("HEROKU_APP")
            .env_remove("GIT_SSL_CAINFO")
            .env_remove("GIT_SSL_CAPATH")
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        c
    }

    fn heroku_in(&self, cwd: &std::path::Path, args: &[&str]) -> (bool, String) {
        let out = self
            .command(heroku_bin().as_os_str(), cwd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run heroku");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok_in(&self, cwd: &std::path::Path, args: &[&str]) -> String {
        let (ok, out) = self.heroku_in(cwd, args);
        assert!(
            ok,
            "heroku {args:?} failed:\n{out}\n{}",
            self.s.server_log()
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(&self.s.dir, args)
    }

    fn git(&self, cwd: &std::path::Path, args: &[&str]) -> (bool, String) {
        let out = self
            .command("git".as_ref(), cwd)
            .args(args)
            .output()
            .expect("run git");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// A small app that builds in a moment: Python's own web server, and a release phase.
fn quick_app(tag: &str) -> PathBuf {
    fixture_repo(
        tag,
        &[
            ("requirements.txt", ""),
            (
                "Procfile",
                "web: python3 -m http.server $PORT\nrelease: echo migrating the database; echo migrated-$((40+2))\n",
            ),
        ],
    )
}

fn start_https(tag: &str) -> Server {
    Server::start_with(tag, &["--api-tls-listen", "127.0.0.1:0"])
}

/// Creates the app from inside its repository (the CLI adds its https remote) and pushes
/// through that remote with the CLI's credential helper.
fn create_and_push(h: &Https<'_>, dir: &std::path::Path, app: &str) -> String {
    let out = h.ok_in(dir, &["apps:create", app]);
    assert!(out.contains(&format!("{}/{app}.git", h.url)), "{out}");
    let (ok, remotes) = h.git(dir, &["remote", "-v"]);
    assert!(ok, "{remotes}");
    assert!(
        remotes.contains(&format!("heroku\t{}/{app}.git (push)", h.url)),
        "the CLI's own https remote, with no key in it: {remotes}"
    );
    let (ok, out) = h.git(dir, &["push", "heroku", "main"]);
    assert!(
        ok,
        "git push heroku main failed:\n{out}\n{}",
        h.s.server_log()
    );
    assert!(out.contains("Verifying deploy... done"), "{out}");
    out
}

#[test]
fn herokus_cli_pushes_clones_and_finds_its_app_over_https() {
    let s = start_https("heroku-cli-https-git");
    let h = Https::new(&s);
    let dir = quick_app("hk-https");
    let out = create_and_push(&h, &dir, "hk-git");
    assert!(out.contains("Running release command"), "{out}");
    // No credentials were written anywhere git or the CLI would read them from: the push
    // authenticated through `heroku git:credentials`, which the CLI installed itself.
    assert!(!h.home.join(".netrc").exists());
    let gitconfig = std::fs::read_to_string(h.home.join(".gitconfig")).unwrap();
    assert!(
        gitconfig.contains("helper = !heroku git:credentials"),
        "{gitconfig}"
    );
    assert!(!gitconfig.contains(&s.key));
    assert_eq!(s.get("hk-git", "/").status, 200);

    // Without -a, the CLI finds the app from the remote in the repository.
    let out = h.ok_in(&dir, &["apps:info"]);
    assert!(out.contains("=== hk-git"), "{out}");

    // git:clone through the same door, then the clone knows its app too.
    let clones = s.dir.join("clones");
    std::fs::create_dir_all(&clones).unwrap();
    let out = h.ok_in(&clones, &["git:clone", "-a", "hk-git"]);
    assert!(out.contains("Cloning into 'hk-git'"), "{out}");
    let clone = clones.join("hk-git");
    assert!(clone.join("Procfile").exists(), "{out}");
    let out = h.ok_in(&clone, &["ps"]);
    assert!(out.contains("web.1: up"), "{out}");

    // A second push from the clone, through its own remote.
    std::fs::write(clone.join("index.html"), "second push\n").unwrap();
    let (ok, out) = h.git(&clone, &["add", "index.html"]);
    assert!(ok, "{out}");
    let (ok, out) = h.git(&clone, &["commit", "-qm", "second"]);
    assert!(ok, "{out}");
    let (ok, out) = h.git(&clone, &["push", "heroku", "main"]);
    assert!(ok && out.contains("Released v3"), "{out}");
    assert_eq!(s.get("hk-git", "/index.html").body, "second push\n");

    // The release phase's output is kept and served where the release says.
    let out = h.ok_in(&clone, &["releases:output"]);
    assert!(
        out.contains("migrating the database") && out.contains("migrated-42"),
        "{out}"
    );

    // A wrong key is refused: git asks the helper, the server says no.
    let (ok, out) = h
        .command("git".as_ref(), &clone)
        .env("HEROKU_API_KEY", "not-a-key")
        .args(["push", "heroku", "main"])
        .output()
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(!ok, "{out}");
}

/// Output read from a child in the background, to wait on without blocking.
fn collect(mut r: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

fn run_dynos(s: &Server, app: &str) -> Vec<String> {
    s.api("GET", &format!("/apps/{app}/dynos"), None)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "run")
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn heroku_run_attaches_through_rendezvous_with_and_without_a_terminal() {
    use std::io::Write;
    let s = start_https("heroku-cli-run");
    let h = Https::new(&s);
    let dir = quick_app("hk-run");
    create_and_push(&h, &dir, "hk-run");

    // The README's example, and Heroku's quoting.
    let out = h.ok_in(&dir, &["run", "python3 -c \"print(6*7)\""]);
    assert!(out.contains("42"), "{out}");

    // Piped stdin without a terminal: the CLI ends it with \x04, which closes the dyno's stdin.
    let mut child = h
        .command(heroku_bin().as_os_str(), &dir)
        .args(["run", "--no-tty", "python3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"import sys\nprint('from stdin', sys.stdin.isatty())\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("from stdin False"), "{text}");

    // --exit-code passes the command's status on.
    let (ok, out) = h.heroku_in(&dir, &["run", "--exit-code", "--", "false"]);
    assert!(!ok && out.contains("Process exited with code 1"), "{out}");
    let out = h
        .command(heroku_bin().as_os_str(), &dir)
        .args([
            "run",
            "-x",
            "--env",
            "GREETING=hej;OTHER=1",
            "echo $GREETING-$OTHER; (exit 7)",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(text.contains("hej-1"), "{text}");

    // A terminal: the CLI under `script` puts its stdin in raw mode; the dyno's bash has a
    // pty, reads lines typed into it, and its exit status comes back with --exit-code.
    let mut child = h
        .command("script".as_ref(), &dir)
        .args(["-qec", "heroku run --exit-code bash", "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let mut input = child.stdin.take().unwrap();
    let seen = |needle: &str| {
        let out = out.clone();
        let needle = needle.to_string();
        kiln_testkit::wait_for(
            std::time::Duration::from_secs(60),
            &format!("{needle:?} from heroku run bash"),
            move || out.lock().unwrap().contains(&needle).then_some(()),
        )
    };
    seen("up, run.");
    input
        .write_all(b"test -t 0 && test -t 1 && echo is-a-$((6*7))-tty\r")
        .unwrap();
    seen("is-a-42-tty");
    input.write_all(b"exit 3\r").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{}", out.lock().unwrap());

    // A client that goes away takes its dyno with it (SIGHUP, as on Heroku).
    assert!(run_dynos(&s, "hk-run").is_empty());
    let mut child = h
        .command(heroku_bin().as_os_str(), &dir)
        .args(["run", "--no-tty", "--", "sleep", "600"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = collect(child.stderr.take().unwrap());
    {
        let err = err.clone();
        kiln_testkit::wait_for(
            std::time::Duration::from_secs(60),
            "the sleeping one-off to be attached",
            move || err.lock().unwrap().contains("up, run.").then_some(()),
        );
    }
    let name = run_dynos(&s, "hk-run")
        .pop()
        .expect("the attached one-off runs");
    child.kill().unwrap();
    let _ = child.wait();
    s.wait_for_app(
        "hk-run",
        std::time::Duration::from_secs(30),
        "the detached one-off to stop",
        || run_dynos(&s, "hk-run").is_empty().then_some(()),
    );
    let logs = s.logs("hk-run");
    assert!(
        logs.contains(&format!(
            "heroku[{name}]: Client connection closed. Sending SIGHUP to all processes"
        )),
        "{logs}"
    );
}

#[test]
fn herokus_everyday_commands_work_against_kiln() {
    let s = start_https("heroku-cli-daily");
    let h = Https::new(&s);
    let dir = quick_app("hk-daily");
    let app = "hk-daily";
    fn with<'x>(args: &[&'x str]) -> Vec<&'x str> {
        let mut v = args.to_vec();
        v.extend(["-a", "hk-daily"]);
        v
    }

    h.ok_in(&dir, &["apps:create", app]);
    // The registry lookup (HEROKU_BUILDPACK_REGISTRY_URL is Kiln) and the canonical URL
    // it answers, which the build maps to the built-in instead of fetching it.
    let out = h.ok(&with(&["buildpacks:set", "heroku/python"]));
    assert!(
        out.contains("Next release on hk-daily will use heroku/python"),
        "{out}"
    );
    let out = h.ok(&with(&["buildpacks"]));
    assert!(out.contains("heroku/python"), "{out}");
    let (ok, out) = h.git(&dir, &["push", "heroku", "main"]);
    assert!(ok && out.contains("Verifying deploy... done"), "{out}");
    let out = h.ok(&["buildpacks:search", "python"]);
    assert!(out.contains("heroku/python"), "{out}");
    // Every built-in under its Heroku name, and a second buildpack added before the first
    // and removed again, as Heroku's CLI does it (reading the list, writing it whole).
    let out = h.ok(&["buildpacks:search"]);
    for name in ["heroku/ruby", "heroku/java", "heroku/php", "heroku/static"] {
        assert!(out.contains(name), "{name}: {out}");
    }
    let out = h.ok(&with(&["buildpacks:add", "heroku/nodejs", "-i", "1"]));
    assert!(
        out.contains("1. heroku/nodejs") && out.contains("2. heroku/python"),
        "{out}"
    );
    let out = h.ok(&with(&["buildpacks"]));
    assert!(
        out.contains("1. heroku/nodejs") && out.contains("2. heroku/python"),
        "{out}"
    );
    let out = h.ok(&with(&["buildpacks:remove", "-i", "1"]));
    assert!(out.contains("will use heroku/python"), "{out}");

    // Log drains (issue 17): add, list, remove, as Heroku's CLI sends them.
    let drain_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let drain = format!("syslog://127.0.0.1:{drain_port}");
    let out = h.ok(&with(&["drains:add", &drain]));
    assert!(
        out.contains(&format!("Successfully added drain {drain}")),
        "{out}"
    );
    let out = h.ok(&with(&["drains"]));
    assert!(out.contains(&drain) && out.contains("(d."), "{out}");
    let out = h.ok(&with(&["drains", "--json"]));
    assert!(out.contains("\"token\"") && out.contains(&drain), "{out}");
    let out = h.ok(&with(&["drains:remove", &drain]));
    assert!(
        out.contains(&format!("Successfully removed drain {drain}")),
        "{out}"
    );
    let (ok, out) = h.heroku_in(&s.dir, &with(&["drains:add", "http://169.254.169.254/"]));
    assert!(!ok && out.contains("not a drain transport"), "{out}");
    let (ok, out) = h.heroku_in(&s.dir, &with(&["buildpacks:set", "heroku/cobol"]));
    assert!(!ok, "{out}");

    let out = h.ok(&["apps"]);
    assert!(out.contains(app), "{out}");
    let out = h.ok(&with(&["apps:info"]));
    assert!(
        out.contains("=== hk-daily") && out.contains("Stack:"),
        "{out}"
    );
    let out = h.ok(&["auth:whoami"]);
    assert!(out.contains("admin@kiln.local"), "{out}");
    let out = h.ok(&["regions"]);
    assert!(
        out.contains("local") && out.contains("Common Runtime"),
        "{out}"
    );
    let out = h.ok(&with(&["stack"]));
    assert!(out.contains("* heroku-24"), "{out}");
    h.ok(&with(&["stack:set", "heroku-24"]));
    let (ok, out) = h.heroku_in(&s.dir, &with(&["stack:set", "heroku-22"]));
    assert!(!ok && out.contains("is not available"), "{out}");
    let out = h.ok(&with(&["features"]));
    assert!(out.contains("[+] preboot"), "{out}");
    let out = h.ok(&with(&["labs"]));
    assert!(out.contains("User Features"), "{out}");
    // A switchable app feature: the CLI asks the account first, hears 404, then the app.
    let out = h.ok(&with(&["labs:enable", "log-runtime-metrics"]));
    assert!(out.contains("Enabling log-runtime-metrics for"), "{out}");
    let out = h.ok(&with(&["labs"]));
    assert!(out.contains("[+] log-runtime-metrics"), "{out}");
    h.ok(&with(&["labs:disable", "log-runtime-metrics"]));
    // `features` lists what is generally available, `labs` the beta features.
    let out = h.ok(&with(&["labs"]));
    assert!(out.contains("[ ] log-runtime-metrics"), "{out}");
    assert!(!h.ok(&with(&["features"])).contains("log-runtime-metrics"));
    let (ok, out) = h.heroku_in(&s.dir, &with(&["labs:enable", "no-such-feature"]));
    assert!(!ok && out.contains("Couldn't find that feature"), "{out}");

    // Config and releases.
    let out = h.ok(&with(&["config:set", "GREETING=hello world", "B=2"]));
    assert!(
        out.contains("Setting GREETING, B and restarting hk-daily... done, v"),
        "{out}"
    );
    assert_eq!(
        h.ok(&with(&["config:get", "GREETING"])).trim(),
        "hello world"
    );
    let out = h.ok(&with(&["config"]));
    assert!(
        out.contains("GREETING") && out.contains("hello world"),
        "{out}"
    );
    let out = h.ok(&with(&["config:unset", "B"]));
    assert!(out.contains("Unsetting B and restarting"), "{out}");
    let out = h.ok(&with(&["releases"]));
    assert!(out.contains("Set B, GREETING config vars"), "{out}");
    let out = h.ok(&with(&["releases:info", "v2"]));
    assert!(out.contains("=== Release v2"), "{out}");
    let out = h.ok(&with(&["releases:output", "v2"]));
    assert!(out.contains("migrated-42"), "{out}");
    let out = h.ok(&with(&["rollback", "v3"]));
    assert!(out.contains("Rolling back hk-daily to v3... done"), "{out}");

    // Dynos.
    let out = h.ok(&with(&["ps:scale", "web=2"]));
    assert!(out.contains("now running web at 2:"), "{out}");
    s.wait_for_app(
        app,
        std::time::Duration::from_secs(60),
        "two web dynos up",
        || {
            let out = h.ok(&with(&["ps"]));
            (out.contains("web.1: up") && out.contains("web.2: up")).then_some(())
        },
    );
    let out = h.ok(&with(&["ps:type"]));
    assert!(out.contains("web"), "{out}");
    let out = h.ok(&with(&["ps:restart", "web"]));
    assert!(
        out.contains("Restarting dyno web on hk-daily... done"),
        "{out}"
    );
    let out = h.ok(&with(&["ps:restart", "--dyno-name", "web.2"]));
    assert!(out.contains("done"), "{out}");
    let out = h.ok(&with(&["ps:stop", "web"]));
    assert!(
        out.contains("Stopping dyno web on hk-daily... done"),
        "{out}"
    );
    let out = h.ok(&with(&["ps:scale", "web=1"]));
    assert!(out.contains("now running web at 1:"), "{out}");

    // One-offs and logs.
    let out = h.ok(&with(&["run:detached", "echo hello-from-$DYNO"]));
    let name = out
        .split("done, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    s.wait_for_app(
        app,
        std::time::Duration::from_secs(30),
        "the detached run's output",
        || {
            let out = h.ok(&with(&["logs", "--dyno", &name]));
            out.contains(&format!("app[{name}]: hello-from-{name}"))
                .then_some(())
        },
    );
    let out = h.ok(&with(&["logs", "--source", "heroku", "-n", "30"]));
    assert!(
        out.contains("heroku[web.1]") && !out.contains(" app["),
        "{out}"
    );
    let out = h.ok(&with(&["logs", "--ps", "web", "--num", "30"]));
    assert!(out.contains("[web.") && !out.contains(&name), "{out}");
    let out = h.ok(&with(&["logs", "-n", "3"]));
    assert_eq!(
        out.lines().filter(|l| !l.trim().is_empty()).count(),
        3,
        "{out}"
    );
    let mut tail = h
        .command(heroku_bin().as_os_str(), &s.dir)
        .args(with(&["logs", "--tail", "--source", "heroku"]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tailed = collect(tail.stdout.take().unwrap());
    s.wait_for_app(
        app,
        std::time::Duration::from_secs(30),
        "the tail to show a new request",
        || {
            s.get(app, "/tailed-path");
            tailed
                .lock()
                .unwrap()
                .contains("path=\"/tailed-path\"")
                .then_some(())
        },
    );
    let _ = tail.kill();
    let _ = tail.wait();

    // Domains, maintenance, certificates.
    let out = h.ok(&with(&["domains:add", "www.hk-daily.test"]));
    assert!(out.contains("www.hk-daily.test"), "{out}");
    let out = h.ok(&with(&["domains"]));
    assert!(
        out.contains("www.hk-daily.test") && out.contains("hk-daily.localhost"),
        "{out}"
    );
    h.ok(&with(&["domains:remove", "www.hk-daily.test"]));
    h.ok(&with(&["maintenance:on"]));
    assert_eq!(h.ok(&with(&["maintenance"])).trim(), "on");
    assert_eq!(s.get(app, "/").status, 503);
    h.ok(&with(&["maintenance:off"]));
    assert_eq!(s.get(app, "/").status, 200);
    let out = h.ok(&with(&["certs"]));
    assert!(out.contains("has no SSL certificates"), "{out}");
    let out = h.ok(&with(&["open"]));
    assert!(out.contains("http://hk-daily.localhost:"), "{out}");

    // Renaming: the new name answers, the old one stops, history follows.
    let out = h.ok(&with(&["apps:rename", "hk-renamed"]));
    assert!(
        out.contains("Renaming hk-daily to hk-renamed... done"),
        "{out}"
    );
    assert_eq!(s.get("hk-renamed", "/").status, 200);
    assert_eq!(s.get(app, "/").status, 404);
    let out = h.ok(&["logs", "-a", "hk-renamed", "-n", "200"]);
    assert!(
        out.contains("Rename hk-daily to hk-renamed") && out.contains("path=\"/tailed-path\""),
        "{out}"
    );
    let out = h.ok(&["releases", "-a", "hk-renamed"]);
    assert!(out.contains("Rollback to v3"), "{out}");
    let (ok, out) = h.heroku_in(&s.dir, &["apps:rename", "Not A Name", "-a", "hk-renamed"]);
    assert!(!ok, "{out}");

    let out = h.ok(&[
        "apps:destroy",
        "-a",
        "hk-renamed",
        "--confirm",
        "hk-renamed",
    ]);
    assert!(out.contains("Destroying hk-renamed"), "{out}");
    assert_eq!(s.get("hk-renamed", "/").status, 404);
}

/// `program` run as a user of Heroku's CLI with their own home (and `~/.netrc`), no key in
/// the environment.
fn as_user(program: impl AsRef<std::ffi::OsStr>, s: &Server, home: &std::path::Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(home)
        .env("HOME", home)
        .env("HEROKU_HOST", &s.api_url)
        .env("HEROKU_NETRC_WRITE", "true")
        .env("HEROKU_PARTICLEBOARD_URL", &s.api_url)
        .env("DISABLE_TELEMETRY", "true")
        .env("HEROKU_SKIP_NEW_VERSION_CHECK", "true")
        .env("NO_COLOR", "1")
        .env_remove("HEROKU_API_KEY")
        .env_remove("HEROKU_APP");
    c
}

/// Heroku's CLI as a given user: logged in through `~/.netrc` in their own home.
fn heroku_as(s: &Server, home: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = as_user(heroku_bin(), s, home)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run heroku");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ok_as(s: &Server, home: &std::path::Path, args: &[&str]) -> String {
    let (ok, out) = heroku_as(s, home, args);
    assert!(ok, "heroku {args:?} failed:\n{out}");
    out
}

/// `heroku login -i` in a terminal (`script`), answering its prompts as they come.
fn login_interactively(s: &Server, home: &std::path::Path, email: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = as_user("script", s, home)
        .args([
            "-qec",
            &format!("{} login -i", heroku_bin().display()),
            "/dev/null",
        ])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let mut input = child.stdin.take().unwrap();
    for (prompt, answer) in [("Email", email), ("Password", password)] {
        let o = out.clone();
        kiln_testkit::wait_for(
            std::time::Duration::from_secs(60),
            &format!("the {prompt} prompt of heroku login -i"),
            move || o.lock().unwrap().contains(prompt).then_some(()),
        );
        input.write_all(format!("{answer}\r").as_bytes()).unwrap();
    }
    child.wait().unwrap();
    let text = out.lock().unwrap().clone();
    text
}

fn netrc_password(home: &std::path::Path) -> String {
    let text = std::fs::read_to_string(home.join(".netrc")).unwrap_or_default();
    text.split_whitespace()
        .skip_while(|w| *w != "password")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn herokus_cli_logs_in_shares_apps_with_collaborators_and_teams_and_logs_out() {
    let s = Server::start("heroku-cli-tenancy");
    let password = "correct horse battery staple";
    for who in ["alice", "bob", "carol"] {
        let r = s.api(
            "POST",
            "/kiln/users",
            Some(&format!(
                r#"{{"email":"{who}@example.com","password":"{password}"}}"#
            )),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let home = |who: &str| {
        let h = s.dir.join(format!("home-{who}"));
        std::fs::create_dir_all(&h).unwrap();
        h
    };
    let (alice, bob) = (home("alice"), home("bob"));

    // A wrong password, then the right one.
    let out = login_interactively(&s, &alice, "alice@example.com", "not the password");
    assert!(out.contains("Invalid credentials provided"), "{out}");
    let out = login_interactively(&s, &alice, "alice@example.com", password);
    assert!(out.contains("Logged in as alice@example.com"), "{out}");
    let login_token = netrc_password(&alice);
    assert!(login_token.starts_with("KILN-"), "{login_token}");
    login_interactively(&s, &bob, "bob@example.com", password);
    assert_eq!(
        ok_as(&s, &alice, &["auth:whoami"]).trim(),
        "alice@example.com"
    );
    assert_eq!(ok_as(&s, &alice, &["auth:token"]).trim(), login_token);

    let out = ok_as(&s, &alice, &["authorizations:create", "-d", "ci key", "-S"]);
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("KILN-"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        token.starts_with("KILN-") && token != login_token,
        "{token}"
    );
    let out = ok_as(&s, &alice, &["authorizations"]);
    assert!(out.contains("ci key") && out.contains("global"), "{out}");

    // Collaborators.
    ok_as(&s, &alice, &["apps:create", "hk-shared"]);
    let out = ok_as(
        &s,
        &alice,
        &["access:add", "bob@example.com", "-a", "hk-shared"],
    );
    assert!(out.contains("done"), "{out}");
    let out = ok_as(&s, &alice, &["access", "-a", "hk-shared"]);
    assert!(
        out.contains("alice@example.com") && out.contains("owner"),
        "{out}"
    );
    assert!(
        out.contains("bob@example.com") && out.contains("collaborator"),
        "{out}"
    );
    let out = ok_as(&s, &bob, &["apps"]);
    assert!(
        out.contains("Collaborated Apps") && out.contains("hk-shared"),
        "{out}"
    );
    let (ok, out) = heroku_as(
        &s,
        &bob,
        &["apps:destroy", "-a", "hk-shared", "--confirm", "hk-shared"],
    );
    assert!(!ok && out.contains("Only the owner"), "{out}");

    // Teams (Heroku's CLI has no teams:create; Kiln's does).
    let out = kiln_with_key(&s, token, &["teams:create", "hk-team"]);
    assert!(out.contains("done"), "{out}");
    let out = ok_as(&s, &alice, &["teams"]);
    assert!(out.contains("hk-team") && out.contains("admin"), "{out}");
    ok_as(
        &s,
        &alice,
        &[
            "members:add",
            "carol@example.com",
            "--role",
            "member",
            "-t",
            "hk-team",
        ],
    );
    let out = ok_as(&s, &alice, &["members", "-t", "hk-team"]);
    assert!(
        out.contains("carol@example.com") && out.contains("member"),
        "{out}"
    );
    ok_as(
        &s,
        &alice,
        &["apps:create", "hk-teamapp", "--team", "hk-team"],
    );
    let out = ok_as(&s, &alice, &["apps", "-t", "hk-team"]);
    assert!(out.contains("hk-teamapp"), "{out}");
    let out = ok_as(&s, &alice, &["apps:info", "-a", "hk-teamapp"]);
    assert!(out.contains("hk-team@herokumanager.com"), "{out}");
    let out = ok_as(
        &s,
        &alice,
        &[
            "access:add",
            "bob@example.com",
            "-a",
            "hk-teamapp",
            "--permissions",
            "deploy",
        ],
    );
    assert!(out.contains("done"), "{out}");
    let out = ok_as(&s, &alice, &["access", "-a", "hk-teamapp"]);
    assert!(
        out.contains("bob@example.com") && out.contains("deploy, view"),
        "{out}"
    );

    // Transfers: to a person, pending until they accept; into a team, at once.
    let out = ok_as(
        &s,
        &alice,
        &["apps:transfer", "bob@example.com", "-a", "hk-shared"],
    );
    assert!(out.contains("email sent"), "{out}");
    let bob_token = netrc_password(&bob);
    let transfers = kiln_with_key(&s, &bob_token, &["transfers"]);
    let id = transfers
        .lines()
        .find(|l| l.contains("hk-shared"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{transfers}"))
        .to_string();
    kiln_with_key(&s, &bob_token, &["transfers:accept", &id]);
    let out = ok_as(&s, &bob, &["apps:info", "-a", "hk-shared"]);
    assert!(
        out.contains("Owner:") && out.contains("bob@example.com"),
        "{out}"
    );
    ok_as(&s, &alice, &["apps:create", "hk-moving"]);
    let out = ok_as(&s, &alice, &["apps:transfer", "hk-team", "-a", "hk-moving"]);
    assert!(out.contains("done"), "{out}");
    let out = ok_as(&s, &alice, &["apps:info", "-a", "hk-moving"]);
    assert!(out.contains("hk-team@herokumanager.com"), "{out}");

    // logout revokes the login token; the key made with it stays.
    ok_as(&s, &alice, &["logout"]);
    let status = |key: &str| {
        kiln_testkit::http::request(
            s.api_port(),
            "GET",
            "127.0.0.1",
            "/account",
            &[("Authorization", &format!("Bearer {key}"))],
            None,
        )
        .status
    };
    assert_eq!(status(&login_token), 401);
    assert_eq!(status(token), 200);
}

/// The kiln CLI with a given key.
fn kiln_with_key(s: &Server, key: &str, args: &[&str]) -> String {
    let out = Command::new(KILN)
        .args(args)
        .current_dir(&s.dir)
        .env("KILN_API_URL", &s.api_url)
        .env("KILN_API_KEY", key)
        .env("HOME", s.home())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kiln {args:?}: {text}");
    text
}
