//! The end-to-end harness: a real `kiln server` on random ports in a temporary directory,
//! the real `kiln` CLI, real `git` pushes, and raw HTTP through the router.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

pub struct Server {
    pub dir: PathBuf,
    pub api_url: String,
    /// The API's HTTPS listener, when started with `--api-tls-listen`.
    pub api_tls_url: Option<String>,
    pub router_port: u16,
    pub key: String,
    child: Option<Child>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// A fresh directory for a test; the server that uses it removes it when dropped.
pub fn temp_dir(tag: &str) -> PathBuf {
    kiln_testkit::temp::unique_dir(&format!("e2e-{tag}"))
}

impl Server {
    pub fn start(tag: &str) -> Server {
        Server::start_with(tag, &[])
    }

    /// Starts a server with extra flags; waits until it says it is running.
    pub fn start_with(tag: &str, extra: &[&str]) -> Server {
        let dir = temp_dir(tag);
        Server::start_in(dir, extra)
    }

    pub fn start_in(dir: PathBuf, extra: &[&str]) -> Server {
        Server::launch(dir, extra, Command::new(KILN))
    }

    /// A server started with an open-files limit of `nofile` (soft and hard), as a service
    /// manager might start it.
    pub fn start_with_nofile(tag: &str, nofile: u64, extra: &[&str]) -> Server {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg(KILN);
        Server::launch(temp_dir(tag), extra, cmd)
    }

    fn launch(dir: PathBuf, extra: &[&str], mut cmd: Command) -> Server {
        cmd.arg("server")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--router-listen",
                "127.0.0.1:0",
            ])
            // Tests stop dynos faster than Heroku's 30 s unless they say otherwise.
            .args(if extra.contains(&"--stop-timeout") {
                &[][..]
            } else {
                &["--stop-timeout", "5"][..]
            })
            .args(extra)
            .env_remove("KILN_API_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kiln server");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Kiln is running")
                        || line.contains("API and git:")
                        || line.contains("API (HTTPS):")
                        || line.contains("Apps:")
                    {
                        let _ = tx.send(line.clone());
                    }
                    lines.lock().unwrap().push(line);
                }
                let _ = tx.send("EOF".into());
            });
        }
        let (mut api_url, mut router_port, mut api_tls_url) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while api_url.is_none() || router_port.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("server did not start: {:?}", lines.lock().unwrap()));
            if line == "EOF" {
                panic!("server exited at start: {:?}", lines.lock().unwrap());
            }
            if let Some(rest) = line.split("API and git:").nth(1) {
                api_url = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(rest) = line.split("API (HTTPS):").nth(1) {
                api_tls_url = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(rest) = line.split("Apps:").nth(1) {
                let url = rest.trim();
                router_port = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim_end_matches('/').parse().ok());
            }
        }
        let key = std::fs::read_to_string(dir.join("data/admin-api-key"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            dir,
            api_url: api_url.unwrap(),
            api_tls_url,
            router_port: router_port.unwrap(),
            key,
            child: Some(child),
            stderr: lines,
        }
    }

    pub fn home(&self) -> PathBuf {
        let h = self.dir.join("home");
        std::fs::create_dir_all(&h).unwrap();
        h
    }

    /// Runs the CLI against this server.
    pub fn kiln(&self, args: &[&str]) -> Output {
        self.kiln_in(&self.dir, args)
    }

    pub fn kiln_in(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(KILN)
            .args(args)
            .current_dir(cwd)
            .env("KILN_API_URL", &self.api_url)
            .env("KILN_API_KEY", &self.key)
            .env("HOME", self.home())
            .env_remove("KILN_APP")
            .output()
            .expect("run kiln")
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI and insists it fails; returns stdout + stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            !out.status.success(),
            "kiln {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub fn git_url(&self, app: &str, key: &str) -> String {
        self.api_url
            .replacen("http://", &format!("http://kiln:{key}@"), 1)
            + &format!("/{app}.git")
    }

    /// `git push` of `dir`'s main branch to `app`; returns (success, combined output).
    pub fn push(&self, dir: &Path, app: &str) -> (bool, String) {
        self.push_with_key(dir, app, &self.key.clone())
    }

    pub fn push_with_key(&self, dir: &Path, app: &str, key: &str) -> (bool, String) {
        let out = git(dir)
            .args(["push", &self.git_url(app, key), "HEAD:main"])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub fn host(&self, app: &str) -> String {
        format!("{app}.localhost")
    }

    /// A GET through the router.
    pub fn get(&self, app: &str, path: &str) -> Response {
        http(self.router_port, "GET", &self.host(app), path, &[], None)
    }

    /// A call to the API with the admin key.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let port: u16 = self.api_url.rsplit(':').next().unwrap().parse().unwrap();
        let auth = format!("Bearer {}", self.key);
        http(
            port,
            method,
            "127.0.0.1",
            path,
            &[
                ("Authorization", &auth),
                ("Accept", "application/vnd.heroku+json; version=3"),
            ],
            body,
        )
    }

    /// The app's release versions, in the API's order (oldest first).
    pub fn release_versions(&self, app: &str) -> Vec<u64> {
        let v = self
            .api("GET", &format!("/apps/{app}/releases"), None)
            .json();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_u64().unwrap())
            .collect()
    }

    pub fn api_port(&self) -> u16 {
        self.api_url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn logs(&self, app: &str) -> String {
        self.ok(&["logs", "-a", app, "-n", "1500"])
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        unsafe { libc_kill(child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash).
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("server running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the server with SIGTERM and starts a new one on the same data dir with `extra`.
    #[allow(dead_code)]
    pub fn stop_and_restart(&mut self, extra: &[&str]) {
        let status = self.stop();
        assert!(status.success(), "the server stopped with {status}");
        self.restart(extra);
    }

    /// Kills the server with SIGKILL (a crash) and starts a new one on the same data dir and
    /// flags; the new one answers on new ports.
    pub fn crash_and_restart(&mut self, extra: &[&str]) {
        self.crash();
        self.restart(extra);
    }

    /// Starts a new server on the same data dir (after `crash` or `stop`); it answers on new ports.
    pub fn restart(&mut self, extra: &[&str]) {
        let mut fresh = Server::start_in(self.dir.clone(), extra);
        self.child = fresh.child.take();
        self.api_url = fresh.api_url.clone();
        self.router_port = fresh.router_port;
        self.key = fresh.key.clone();
        self.stderr = fresh.stderr.clone();
        // `fresh` must not delete the shared directory on drop.
        std::mem::forget(fresh);
    }

    /// `(cutime + cstime)` of the server in seconds: the CPU used by every dyno it has
    /// reaped (helpers reap init, init reaps the command, so usage flows up the tree).
    pub fn children_cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_comm = stat.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        // After the command name: state is field 3; cutime and cstime are fields 16 and 17.
        let ticks: f64 = f[13].parse::<f64>().unwrap() + f[14].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// `wait_for`, but a timeout also shows the app's dynos and its log stream, which say
    /// why (a build that never went live, a dyno that crashed or never bound its port).
    pub fn wait_for_app<T>(
        &self,
        app: &str,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let text = |args: &[&str]| {
                    let out = self.kiln(args);
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    )
                };
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- kiln ps -a {app} ---\n{}\n--- kiln releases -a {app} ---\n{}\n--- kiln logs -a {app} ---\n{}",
                    text(&["ps", "-a", app]),
                    text(&["releases", "-a", app]),
                    text(&["logs", "-a", app, "-n", "200"])
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kiln logs --tail -a APP` (and `extra`) running beside the test; its lines arrive on
    /// the returned tail's channel. Stopped when the tail is dropped.
    #[allow(dead_code)]
    pub fn tail(&self, app: &str, extra: &[&str]) -> LogTail {
        let mut child = Command::new(KILN)
            .args(["logs", "--tail", "-a", app])
            .args(extra)
            .env("KILN_API_URL", &self.api_url)
            .env("KILN_API_KEY", &self.key)
            .env("HOME", self.home())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LogTail { child, lines }
    }

    pub fn server_log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

/// A `kiln logs --tail` process (see [`Server::tail`]).
#[allow(dead_code)]
pub struct LogTail {
    child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for LogTail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The server's own account of what happened, next to the test's failure.
            let log = self.server_log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- server log (last 60 lines) of {} ---\n{}",
                self.dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return;
        }
        if self.child.is_some() {
            let _ = self.stop();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub fn signal(pid: i32, sig: i32) {
    unsafe {
        libc_kill(pid, sig);
    }
}

pub fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Kiln Test")
        .env("GIT_AUTHOR_EMAIL", "test@kiln.local")
        .env("GIT_COMMITTER_NAME", "Kiln Test")
        .env("GIT_COMMITTER_EMAIL", "test@kiln.local")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir.parent().unwrap_or(dir));
    c
}

/// Copies a fixture app into a fresh git repository with one commit; returns its path.
pub fn fixture_repo(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir(&format!("app-{name}")).join("src");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if fixture.is_dir() {
        let out = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", fixture.display()))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    } else {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    assert!(
        git(&dir)
            .args(["init", "-q", "-b", "main"])
            .status()
            .unwrap()
            .success()
    );
    commit_all(&dir, "initial");
    dir
}

pub fn commit_all(dir: &Path, msg: &str) {
    assert!(git(dir).args(["add", "-A"]).status().unwrap().success());
    assert!(
        git(dir)
            .args(["commit", "-q", "--allow-empty", "-m", msg])
            .status()
            .unwrap()
            .success()
    );
}

#[allow(unused_imports)]
pub use kiln_testkit::http::{Response, parse_response, statuses};
#[allow(unused_imports)]
pub use kiln_testkit::{TempDir, wait_for};

/// A response body read as JSON.
pub trait JsonBody {
    fn json(&self) -> serde_json::Value;
}

impl JsonBody for Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client over a raw socket (no redirects, `Connection: close`).
pub use kiln_testkit::http::request as http;

/// Raw bytes to 127.0.0.1:`port`; everything sent back until the server closes (or 10 s
/// pass without a byte), and whether it closed.
pub fn raw_exchange(port: u16, bytes: &[u8]) -> (String, bool) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (out, closed) = kiln_testkit::http::exchange(addr, bytes, Duration::from_secs(10));
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Host pids of processes whose environment contains `needle` (e.g. a marker config var).
pub fn pids_with_env(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

/// Every process that belongs to a dyno of app `app_marker` (by its `KILN_TEST_MARKER`).
pub fn dyno_processes(marker: &str) -> Vec<i32> {
    pids_with_env(&format!("KILN_TEST_MARKER={marker}"))
}

/// `ps` output lines, e.g. `web.1: up ...`.
pub fn ps_states(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(": ")?;
            if name.contains('.') && !name.starts_with("===") {
                Some((
                    name.trim().to_string(),
                    rest.split_whitespace().next()?.to_string(),
                ))
            } else {
                None
            }
        })
        .collect()
}

/// Builds a tiny pure-Python wheel (`greeting`) into `dir/vendor`, so the Python fixture has a
/// real dependency for pip to install without reaching any index.
pub fn make_wheel(dir: &Path) {
    let script = r#"
import os, sys, zipfile, hashlib, base64
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
files = {
    "greeting/__init__.py": "def hello():\n    return 'hello-from-wheel'\n",
    "greeting-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: greeting\nVersion: 1.0\n",
    "greeting-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
record.append("greeting-1.0.dist-info/RECORD,,")
with zipfile.ZipFile(os.path.join(out, "greeting-1.0-py3-none-any.whl"), "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
    z.writestr("greeting-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let st = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("vendor"))
        .status()
        .expect("python3");
    assert!(st.success());
}

/// The Python fixture (web + worker, a pip dependency, app.json formation), ready to push.
pub fn python_app(extra: &[(&str, &str)]) -> PathBuf {
    let dir = fixture_repo("python-app", extra);
    make_wheel(&dir);
    commit_all(&dir, "vendor the greeting wheel");
    dir
}

/// A test CA and a certificate for 127.0.0.1 and localhost it signed, written under `dir` as
/// `<tag>-ca.pem`, `<tag>.crt` and `<tag>.key`: (CA, certificate, key).
pub fn test_ca(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("Kiln test CA {tag}"));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca, crt, k) = (
        dir.join(format!("{tag}-ca.pem")),
        dir.join(format!("{tag}.crt")),
        dir.join(format!("{tag}.key")),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca, crt, k)
}

/// The routes a router's source declares, `.route("PATH", get(..).post(..))`, as (METHOD,
/// PATH), for the authorization matrices that must cover every one.
pub fn declared_routes(files: &[PathBuf]) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for path in files {
        let src = std::fs::read_to_string(path).unwrap();
        for (i, _) in src.match_indices(".route(") {
            let rest = src[i + 7..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let end = rest.find('"').unwrap();
            let route = &rest[..end];
            // The handlers: up to the route's closing parenthesis.
            let mut depth = 1;
            let mut close = rest.len();
            for (j, c) in rest[end + 1..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = end + 1 + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let handlers = &rest[end + 1..close];
            for m in ["get", "post", "put", "patch", "delete"] {
                let called = handlers.match_indices(&format!("{m}(")).any(|(k, _)| {
                    k == 0
                        || !handlers.as_bytes()[k - 1].is_ascii_alphanumeric()
                            && handlers.as_bytes()[k - 1] != b'_'
                });
                if called {
                    out.insert((m.to_uppercase(), route.to_string()));
                }
            }
        }
    }
    out
}

/// A buildpack in `dir/name` that detects every app as `name` and runs `compile` (a shell
/// script body) as its compile step.
pub fn script_buildpack(dir: &Path, name: &str, compile: &str) -> PathBuf {
    let bp = dir.join(name);
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    std::fs::write(bp.join("bin/detect"), format!("#!/bin/sh\necho {name}\n")).unwrap();
    std::fs::write(bp.join("bin/compile"), format!("#!/bin/sh\n{compile}")).unwrap();
    for f in ["detect", "compile"] {
        make_executable(&bp.join("bin").join(f));
    }
    bp
}

/// Gives a [`script_buildpack`] a `bin/release` declaring `types` (`default_process_types`
/// YAML lines, each `  name: command`).
pub fn script_release(bp: &Path, types: &str) {
    let release = bp.join("bin/release");
    std::fs::write(
        &release,
        format!("#!/bin/sh\necho '---'\necho 'default_process_types:'\nprintf '{types}'\n"),
    )
    .unwrap();
    make_executable(&release);
}

fn make_executable(path: &Path) {
    let st = Command::new("chmod").arg("+x").arg(path).status().unwrap();
    assert!(st.success(), "chmod +x {}", path.display());
}
