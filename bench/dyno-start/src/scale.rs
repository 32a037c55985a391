//! Measurement B: a real `kiln server` (container runtime, random ports, temp data dir), tiny
//! web apps pushed once, then, per round, `ps:scale web=0` → `web=N` and the time until all N
//! dynos are `up` in the API (Kiln marks a web dyno up once it listens on `$PORT`, and
//! publishes its route at that moment), confirmed through the router.
//!
//! Two apps: the one the issue names, `python3 -m http.server $PORT` (Python buildpack, empty
//! requirements.txt), whose boot is CPU-heavy (~70 ms of CPU each), and a Perl one-liner HTTP
//! server (Procfile buildpack) that listens within milliseconds, so that its time is Kiln's
//! own with app boot as good as excluded.
//!
//! Intermediate points, from the same clock: when the CLI returned; when all N dynos' bash
//! had been exec'd (Kiln's `Dyno::started`) and when all N app processes had been exec'd
//! (from `/proc`, polled every 20 ms); and from the app's log stream (µs timestamps), when the
//! dyno manager logged the first and last `Starting process` and the last `State changed ...
//! up`. A plain-process baseline (N copies started at once on the host, no Kiln) shows how
//! much of "routable" is the app booting on this machine.

use crate::http;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(clap::Args)]
pub struct Options {
    /// The built `kiln` binary (server, CLI and dyno helper).
    #[arg(long)]
    kiln: PathBuf,
    /// Web dynos to scale to.
    #[arg(long, default_value_t = 50)]
    dynos: usize,
    /// Rounds of web=0 → web=N.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests sent through the router after each round to confirm the dynos serve.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Where scratch directories go (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the scratch directory (server data, logs) afterwards.
    #[arg(long)]
    keep: bool,
}

/// A web app the benchmark deploys.
struct WebApp {
    name: &'static str,
    /// The Procfile's web command; `marker` is a word of it that finds its processes in /proc.
    command: &'static str,
    marker: &'static str,
    /// Extra files (the Python buildpack detects requirements.txt).
    files: &'static [(&'static str, &'static str)],
    describe: &'static str,
}

const PERL_SERVER: &str = r#"perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die "socket: $!"; setsockopt(S, SOL_SOCKET, SO_REUSEADDR, 1); bind(S, sockaddr_in($ENV{PORT}, INADDR_ANY)) or die "bind: $!"; listen(S, 128) or die "listen: $!"; $| = 1; print "listening on $ENV{PORT}\n"; while (accept(C, S)) { while (<C>) { last if /^\r?\n$/ } print C "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"; close C }'"#;

const APPS: [WebApp; 2] = [
    WebApp {
        name: "benchpy",
        command: "python3 -m http.server $PORT",
        marker: "http.server",
        files: &[("requirements.txt", "")],
        describe: "python3 -m http.server (Python buildpack)",
    },
    WebApp {
        name: "benchpl",
        command: PERL_SERVER,
        marker: "-MSocket",
        files: &[],
        describe: "Perl one-liner server, boots in ms (Procfile buildpack)",
    },
];

struct Server {
    child: Option<Child>,
    kiln: PathBuf,
    dir: PathBuf,
    api_port: u16,
    api_url: String,
    router_port: u16,
    key: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(kiln: &Path, dir: &Path) -> Result<Server> {
        let mut child = Command::new(kiln)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--router-listen",
                "127.0.0.1:0",
                "--runtime",
                "container",
                "--stop-timeout",
                "5",
            ])
            .env_remove("KILN_API_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning kiln server")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let (mut api_url, mut router_port) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while api_url.is_none() || router_port.is_none() {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                bail!(
                    "kiln server did not start:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                );
            };
            if let Some(rest) = line.split("API and git:").nth(1) {
                api_url = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(rest) = line.split("Apps:").nth(1) {
                router_port = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim_end_matches('/').parse().ok());
            }
        }
        let api_url = api_url.unwrap_or_default();
        let api_port = api_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("API port")?;
        let key = std::fs::read_to_string(dir.join("data/admin-api-key"))
            .context("reading the admin key")?
            .trim()
            .to_string();
        Ok(Server {
            child: Some(child),
            kiln: kiln.to_path_buf(),
            dir: dir.to_path_buf(),
            api_port,
            api_url,
            router_port: router_port.unwrap_or(0),
            key,
            log,
        })
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        let home = self.dir.join("home");
        std::fs::create_dir_all(&home)?;
        let out = Command::new(&self.kiln)
            .args(args)
            .current_dir(&self.dir)
            .env("KILN_API_URL", &self.api_url)
            .env("KILN_API_KEY", &self.key)
            .env("HOME", home)
            .env_remove("KILN_APP")
            .output()?;
        if !out.status.success() {
            bail!(
                "kiln {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `(name, state)` of every dyno of the app, from the Platform API.
    fn dynos(&self, app: &str) -> Result<Vec<(String, String)>> {
        let auth = format!("Bearer {}", self.key);
        let r = http::request(
            self.api_port,
            "GET",
            "127.0.0.1",
            &format!("/apps/{app}/dynos"),
            &[
                ("Authorization", &auth),
                ("Accept", "application/vnd.heroku+json; version=3"),
            ],
            None,
        )?;
        if r.status != 200 {
            bail!("GET /apps/{app}/dynos: {} {}", r.status, r.body);
        }
        let v: serde_json::Value =
            serde_json::from_str(&r.body).context("parsing the dyno list")?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["name"].as_str().unwrap_or("").to_string(),
                            d["state"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn wait_for(
        &self,
        app: &str,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut(&[(String, String)]) -> bool,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.dynos(app)?;
            if ok(&d) {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; dynos: {d:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling the server we spawned.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Counts processes whose command line matches, polled from `/proc`.
fn count_procs(pred: &dyn Fn(&[&str]) -> bool) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&raw);
        let argv: Vec<&str> = text.split('\0').collect();
        if pred(&argv) {
            n += 1;
        }
    }
    n
}

/// A dyno's bash (exec'd by Kiln's init: `/bin/bash -c PRELUDE kiln-dyno CMD`).
fn is_dyno_bash(argv: &[&str], marker: &str) -> bool {
    argv.first() == Some(&"/bin/bash")
        && argv.get(3) == Some(&"kiln-dyno")
        && argv.get(4).is_some_and(|c| c.contains(marker))
}

/// The app's own process (what the dyno's bash runs).
fn is_app_process(argv: &[&str], marker: &str) -> bool {
    argv.first().is_some_and(|a| !a.ends_with("bash")) && argv.iter().any(|a| a.contains(marker))
}

/// Watches `/proc` until both counts reach `n` or it is told to stop; returns when each did.
struct ProcWatch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Option<Instant>, Option<Instant>)>,
}

impl ProcWatch {
    fn start(n: usize, marker: &'static str) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut bash, mut py) = (None, None);
            while !s.load(Ordering::Relaxed) && (bash.is_none() || py.is_none()) {
                if bash.is_none() && count_procs(&|a| is_dyno_bash(a, marker)) >= n {
                    bash = Some(Instant::now());
                }
                if py.is_none() && count_procs(&|a| is_app_process(a, marker)) >= n {
                    py = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (bash, py)
        });
        ProcWatch { stop, handle }
    }

    fn finish(self) -> (Option<Instant>, Option<Instant>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((None, None))
    }
}

/// Parses the µs timestamp that starts a Heroku-format log line, as seconds since the epoch.
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    // 2025-01-02T03:04:05.123456+00:00
    let (date, rest) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = rest.get(..15)?;
    let h: i64 = time.get(0..2)?.parse().ok()?;
    let mi: i64 = time.get(3..5)?.parse().ok()?;
    let s: f64 = time.get(6..)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60) as f64 + s)
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Round {
    cli: Duration,
    bash: Option<Duration>,
    python: Option<Duration>,
    up: Duration,
    first_starting: Option<f64>,
    last_starting: Option<f64>,
    last_up_log: Option<f64>,
    ok: usize,
    distinct: usize,
}

pub fn run(opts: Options) -> Result<()> {
    let dir = crate::scratch_dir(opts.work_dir.as_ref(), "scale")?;
    let kiln = std::fs::canonicalize(&opts.kiln)
        .with_context(|| format!("the kiln binary {}", opts.kiln.display()))?;
    let n = opts.dynos;
    println!(
        "Measurement B: ps:scale web=0 → web={n} until all {n} are up and routable ({} rounds)",
        opts.rounds
    );
    println!("  scratch: {}", dir.display());
    let result = measure(&opts, &kiln, &dir);
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn measure(opts: &Options, kiln: &Path, dir: &Path) -> Result<()> {
    let n = opts.dynos;
    let mut server = Server::start(kiln, dir)?;
    let mut summaries = Vec::new();
    for app in &APPS {
        let result = measure_app(opts, &server, dir, app)?;
        summaries.push((app, result));
    }
    let server_warnings: Vec<String> = server
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
        .cloned()
        .collect();
    server.stop();

    println!();
    println!(
        "  {:<52} {:>12} {:>12} {:>12} {:>14} {:>14}",
        format!("app (web=0 → web={n}, {} rounds)", opts.rounds),
        "all up",
        "best",
        "worst",
        "all exec'd",
        "plain, no Kiln"
    );
    for (app, r) in &summaries {
        let mut ups: Vec<f64> = r.rounds.iter().map(|x| x.up.as_secs_f64()).collect();
        ups.sort_by(f64::total_cmp);
        let mut execs: Vec<f64> = r
            .rounds
            .iter()
            .filter_map(|x| x.python.map(|d| d.as_secs_f64()))
            .collect();
        execs.sort_by(f64::total_cmp);
        println!(
            "  {:<52} {:>10.3} s {:>10.3} s {:>10.3} s {:>12} {:>12.3} s",
            app.describe,
            median(&ups),
            ups.first().copied().unwrap_or(0.0),
            ups.last().copied().unwrap_or(0.0),
            if execs.is_empty() {
                "n/a".to_string()
            } else {
                format!("{:.3} s", median(&execs))
            },
            r.baseline_all,
        );
    }
    println!();
    for (app, r) in &summaries {
        let mut ups: Vec<f64> = r.rounds.iter().map(|x| x.up.as_secs_f64()).collect();
        ups.sort_by(f64::total_cmp);
        println!(
            "  {}: all {n} routable in {:.3} s median (target < 2 s: {}); one copy alone boots in {:.3} s as a plain process",
            app.name,
            median(&ups),
            if median(&ups) < 2.0 {
                "meets"
            } else {
                "misses"
            },
            r.baseline_one
        );
    }
    println!(
        "  (\"all up\": every dyno `up` in GET /apps/<app>/dynos; \"all exec'd\": every app process running, from /proc;"
    );
    println!(
        "   \"plain, no Kiln\": {n} copies started at once on the host, until all listen. Kiln polls each web dyno's port every"
    );
    println!("   25 ms; the benchmark polls the API every 10 ms and /proc every 20 ms.)");
    for w in server_warnings {
        println!("  server: {w}");
    }
    Ok(())
}

struct AppResult {
    rounds: Vec<Round>,
    baseline_all: f64,
    baseline_one: f64,
}

fn measure_app(opts: &Options, server: &Server, dir: &Path, app: &WebApp) -> Result<AppResult> {
    let n = opts.dynos;
    let name = app.name;
    server.cli(&["apps:create", name])?;
    let src = dir.join(name);
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("Procfile"), format!("web: {}\n", app.command))?;
    for (file, content) in app.files {
        std::fs::write(src.join(file), content)?;
    }
    git(&src, &["init", "-q", "-b", "main"])?;
    git(&src, &["add", "."])?;
    git(
        &src,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@kiln.local",
            "commit",
            "-q",
            "-m",
            "tiny web app",
        ],
    )?;
    let url = server
        .api_url
        .replacen("http://", &format!("http://kiln:{}@", server.key), 1)
        + &format!("/{name}.git");
    let t = Instant::now();
    git(&src, &["push", "-q", &url, "HEAD:main"]).with_context(|| format!("pushing {name}"))?;
    println!(
        "  {name}: {}: pushed and released in {:.1} s",
        app.describe,
        t.elapsed().as_secs_f64()
    );

    let marker = app.marker;
    let mut rounds = Vec::new();
    let mut baselines = Vec::new();
    for r in 0..opts.rounds {
        // The plain-process baseline right before each round, so both see the same load.
        baselines.push(plain_servers(app.command, n)?);
        server.cli(&["ps:scale", "web=0", "-a", name])?;
        server.wait_for(name, "web=0", Duration::from_secs(60), |d| d.is_empty())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while count_procs(&|a| is_app_process(a, marker)) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));

        let watch = ProcWatch::start(n, marker);
        let wall0 = epoch(SystemTime::now());
        let t0 = Instant::now();
        server.cli(&["ps:scale", &format!("web={n}"), "-a", name])?;
        let cli = t0.elapsed();
        let up_at = server.wait_for(
            name,
            &format!("{n} web dynos up"),
            Duration::from_secs(120),
            |d| d.len() == n && d.iter().all(|(_, s)| s == "up"),
        )?;
        let up = up_at - t0;
        let (bash_at, py_at) = watch.finish();

        // Through the router: every request must be served, and by how many distinct dynos.
        let host = format!("{name}.localhost");
        let mut ok = 0;
        for _ in 0..opts.requests {
            if http::request(server.router_port, "GET", &host, "/", &[], None)
                .is_ok_and(|r| r.status == 200)
            {
                ok += 1;
            }
        }
        let logs = server.cli(&["logs", "-a", name, "-n", "1500"])?;
        let recent: Vec<&str> = logs
            .lines()
            .filter(|l| log_time(l).is_some_and(|t| t >= wall0 - 0.001))
            .collect();
        let starting: Vec<f64> = recent
            .iter()
            .filter(|l| l.contains("]: Starting process"))
            .filter_map(|l| log_time(l))
            .collect();
        let ups: Vec<f64> = recent
            .iter()
            .filter(|l| l.contains("State changed from starting to up"))
            .filter_map(|l| log_time(l))
            .collect();
        let distinct: BTreeSet<&str> = recent
            .iter()
            .filter(|l| l.contains("heroku[router]") && l.contains("status=200"))
            .filter_map(|l| l.split(" dyno=").nth(1)?.split_whitespace().next())
            .collect();
        let round = Round {
            cli,
            bash: bash_at.map(|t| t - t0),
            python: py_at.map(|t| t - t0),
            up,
            first_starting: starting.iter().copied().reduce(f64::min).map(|t| t - wall0),
            last_starting: (starting.len() >= n)
                .then(|| starting.iter().copied().fold(f64::MIN, f64::max) - wall0),
            last_up_log: (ups.len() >= n)
                .then(|| ups.iter().copied().fold(f64::MIN, f64::max) - wall0),
            ok,
            distinct: distinct.len(),
        };
        println!(
            "    round {}: all {n} up in the API {:.3} s (plain, no Kiln: {:.3} s) | CLI returned {:.3} s | manager logged first/last 'Starting process' {}/{} | all bash exec'd {} | all app processes exec'd {} | last 'up' logged {} | router: {}/{} OK from {} dynos",
            r + 1,
            round.up.as_secs_f64(),
            baselines[r],
            round.cli.as_secs_f64(),
            secs(round.first_starting),
            secs(round.last_starting),
            secs(round.bash.map(|d| d.as_secs_f64())),
            secs(round.python.map(|d| d.as_secs_f64())),
            secs(round.last_up_log),
            round.ok,
            opts.requests,
            round.distinct,
        );
        rounds.push(round);
    }
    server.cli(&["ps:scale", "web=0", "-a", name])?;
    let _ = server.wait_for(name, "web=0", Duration::from_secs(60), |d| d.is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_procs(&|a| is_app_process(a, marker)) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    baselines.sort_by(f64::total_cmp);
    let baseline_all = median(&baselines);
    let baseline_one = plain_single(app.command, 10)?;
    Ok(AppResult {
        rounds,
        baseline_all,
        baseline_one,
    })
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.3} s"))
        .unwrap_or_else(|| "n/a".into())
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn listening(ports: &[u16]) -> usize {
    let mut text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.push_str(&std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default());
    let listening: BTreeSet<u16> = text
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(3) == Some(&"0A")).then(|| {
                cols.get(1)?
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            })?
        })
        .collect();
    ports.iter().filter(|p| listening.contains(p)).count()
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<_>>()?;
    ls.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Seconds until `n` copies of the app's command, started at once on the host as plain
/// processes (through `bash -c`, as a dyno runs it), all listen.
fn plain_servers(command: &str, n: usize) -> Result<f64> {
    let ports = free_ports(n)?;
    let t0 = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    for p in &ports {
        children.push(
            Command::new("/bin/bash")
                .args(["-c", &format!("exec {command}")])
                .env("PORT", p.to_string())
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .current_dir("/tmp")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    while listening(&ports) < n && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let t = t0.elapsed().as_secs_f64();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(t)
}

fn plain_single(command: &str, times: usize) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..times {
        v.push(plain_servers(command, 1)?);
    }
    v.sort_by(f64::total_cmp);
    Ok(median(&v))
}
