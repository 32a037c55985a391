//! Measurement A: from "start this dyno" to the user's command running, Kiln against runc.
//!
//! Every contender runs the same command the same way — what Kiln's init execs for a dyno
//! whose command is `echo ready`: `bash -c PRELUDE kiln-dyno 'echo ready'` as uid 20000 with
//! `/app` the same slug — and the clock stops at the first byte read from its stdout pipe:
//! - kiln: `ContainerRuntime::start(spec)` (the `kiln` binary as the helper) → first byte;
//! - runc/crun: spawning `runc run --bundle B ID` (bundle prepared beforehand, see [`crate::oci`])
//!   → first byte;
//! - bash: the same command as a plain child process, no isolation (the floor).
//!
//! The contenders take turns within each round, in a rotating order, so they share the
//! machine's noise.

use crate::fixture;
use crate::oci::{self, Bundle, ContainerSpec, Rootfs};
use crate::stats::{Samples, ms};
use anyhow::{Context, Result, bail};
use kiln_runtime::container::ContainerRuntime;
use kiln_runtime::{AppDir, DynoSpec, Limits, PRELUDE, Runtime};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

#[derive(clap::Args)]
pub struct Options {
    /// The built `kiln` binary; Kiln's container runtime execs `kiln-dyno-helper` beside it
    /// (or `kiln dyno-helper SPEC` where that is missing).
    #[arg(long)]
    kiln: PathBuf,
    /// Measured starts per contender.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Unmeasured starts per contender first (page cache, dentries, cgroup parents).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// The dyno's uid (Kiln gives each app its own, from 20000 up).
    #[arg(long, default_value_t = 20000)]
    uid: u32,
    /// The command the dyno runs; it must print something (the clock stops at its first byte).
    #[arg(long, default_value = "echo ready")]
    command: String,
    #[arg(long, default_value = "runc")]
    runc: String,
    #[arg(long, default_value = "crun")]
    crun: String,
    /// Contenders to run, comma-separated, from kiln,runc,crun,bash.
    #[arg(long, default_value = "kiln,runc,crun,bash")]
    only: String,
    /// Where scratch directories go (default: the system temp dir; overlay needs a real fs).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write every sample here as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Idle this long before every start (untimed), so each start finds the machine as a
    /// sporadic start in production would, rather than warm from the previous one.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Also start this many dynos at once (Kiln, then runc), a few rounds: the runtime's
    /// throughput, without a dyno manager or an app's boot. 0 skips it.
    #[arg(long, default_value_t = 50)]
    burst: usize,
    #[arg(long, default_value_t = 3)]
    burst_rounds: usize,
    /// Keep the scratch directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Give each container a network namespace: runc's with a loopback, Kiln's dyno its own
    /// network as `kiln server` gives it (a veth pair to the host, addresses, a default
    /// route; a free range is claimed and its firewall set up for the run).
    #[arg(long)]
    network: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Kiln,
    Runc,
    Crun,
    Bash,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Kiln => "kiln",
            Kind::Runc => "runc",
            Kind::Crun => "crun",
            Kind::Bash => "bash (no container)",
        }
    }
}

struct Bench {
    opts: Options,
    dir: PathBuf,
    slug: PathBuf,
    rootfs: Rootfs,
    kiln: ContainerRuntime,
    counter: usize,
}

/// Kiln's own phases for one start, each from the `start` call.
#[derive(Clone, Copy)]
struct KilnPhases {
    /// `Runtime::start` returned: run dir written, helper spawned.
    spawned: Duration,
    /// `Dyno::started` resolved: the status pipe hit EOF, bash has been exec'd in the dyno.
    started: Duration,
}

impl Bench {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DYNO".into(), "web.1".into()),
            ("PORT".into(), "5000".into()),
        ]
    }

    /// The process Kiln's init execs, with the environment it builds (defaults first).
    fn oci_process(&self) -> (Vec<String>, Vec<String>) {
        let args = vec![
            "/bin/bash".into(),
            "-c".into(),
            PRELUDE.into(),
            "kiln-dyno".into(),
            self.opts.command.clone(),
        ];
        let mut env: Vec<String> = vec![
            "HOME=/app".into(),
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "LANG=C.UTF-8".into(),
        ];
        env.extend(self.env().into_iter().map(|(k, v)| format!("{k}={v}")));
        (args, env)
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!(
            "kb{}-{}",
            self.counter,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    fn kiln_spec(&self, command: &str) -> DynoSpec {
        let mb = oci::MEMORY_SOFT;
        DynoSpec {
            id: uuid::Uuid::new_v4().to_string(),
            app_id: "bench".into(),
            name: "web.1".into(),
            command: command.into(),
            env: self.env(),
            app_dir: AppDir::Slug(self.slug.clone()),
            binds: Vec::new(),
            uid: Some(self.opts.uid),
            limits: Limits {
                memory_bytes: Some(mb),
                memory_hard_bytes: Some(2 * mb),
                max_processes: Some(oci::PIDS),
                cpu_share: Some(oci::CPU_SHARES),
            },
            stdin: false,
            ..DynoSpec::default()
        }
    }

    /// One Kiln start: when its first byte arrived, and its phases.
    async fn kiln_once(&mut self, command: &str) -> Result<(Duration, KilnPhases)> {
        let spec = self.kiln_spec(command);
        let t0 = Instant::now();
        let mut dyno = self.kiln.start(spec).context("Runtime::start")?;
        let spawned = t0.elapsed();
        let mut out = dyno.stdout.take().context("no stdout pipe")?;
        let mut err = dyno.stderr.take().context("no stderr pipe")?;
        let mut first = [0u8; 1];
        let (started, first_byte) = tokio::join!(
            async { dyno.started().await.map(|()| t0.elapsed()) },
            async { out.read(&mut first).await.map(|n| (n, t0.elapsed())) }
        );
        let mut rest = Vec::new();
        let mut errors = Vec::new();
        let _ = tokio::join!(out.read_to_end(&mut rest), err.read_to_end(&mut errors));
        let code = dyno.wait().await;
        let started = started.context("the dyno did not start")?;
        let (n, first_at) = first_byte?;
        if n == 0 || code != 0 {
            bail!(
                "kiln dyno printed nothing or failed (exit {code}): {}",
                String::from_utf8_lossy(&errors)
            );
        }
        Ok((first_at, KilnPhases { spawned, started }))
    }

    /// One `runc run` / `crun run` start of an equivalent bundle; bundle prepared untimed.
    async fn oci_once(&mut self, exe: &str) -> Result<Duration> {
        let id = self.next_id();
        let (args, env) = self.oci_process();
        let bundle = Bundle::create(
            &self.dir.join("bundles").join(&id),
            &self.rootfs,
            &ContainerSpec {
                id: &id,
                slug: &self.slug,
                uid: self.opts.uid,
                args,
                env,
                network: self.opts.network,
            },
        )?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("run")
            .arg("--bundle")
            .arg(&bundle.dir)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("spawning {exe}"))?;
        let mut out = child.stdout.take().context("no stdout pipe")?;
        let mut err = child.stderr.take().context("no stderr pipe")?;
        let mut first = [0u8; 1];
        let n = out.read(&mut first).await?;
        let elapsed = t0.elapsed();
        let mut rest = Vec::new();
        let mut errors = Vec::new();
        let _ = tokio::join!(out.read_to_end(&mut rest), err.read_to_end(&mut errors));
        let status = child.wait().await?;
        bundle.remove();
        if n == 0 || !status.success() {
            bail!(
                "{exe} run failed ({status}): {}",
                String::from_utf8_lossy(&errors).trim()
            );
        }
        Ok(elapsed)
    }

    /// `n` Kiln starts issued back to back (as a dyno manager does on `ps:scale`), then every
    /// first byte awaited.
    async fn kiln_burst(&mut self, n: usize) -> Result<Burst> {
        let specs: Vec<DynoSpec> = (0..n).map(|_| self.kiln_spec(&self.opts.command)).collect();
        let mut set = tokio::task::JoinSet::new();
        let t0 = Instant::now();
        for spec in specs {
            let mut dyno = self.kiln.start(spec).context("Runtime::start")?;
            set.spawn(async move {
                let mut out = dyno.stdout.take().context("no stdout pipe")?;
                let mut first = [0u8; 1];
                let n = out.read(&mut first).await?;
                let at = Instant::now();
                let mut rest = Vec::new();
                let _ = out.read_to_end(&mut rest).await;
                let code = dyno.wait().await;
                if n == 0 || code != 0 {
                    bail!("a dyno of the burst failed (exit {code})");
                }
                Ok(at)
            });
        }
        let issued = t0.elapsed();
        let mut last = t0;
        while let Some(r) = set.join_next().await {
            last = last.max(r??);
        }
        Ok(Burst {
            issued,
            all: last - t0,
        })
    }

    /// `n` `runc run`s spawned back to back (bundles prepared beforehand), then every first
    /// byte awaited.
    async fn oci_burst(&mut self, exe: &str, n: usize) -> Result<Burst> {
        let mut bundles = Vec::new();
        for _ in 0..n {
            let id = self.next_id();
            let (args, env) = self.oci_process();
            let b = Bundle::create(
                &self.dir.join("bundles").join(&id),
                &self.rootfs,
                &ContainerSpec {
                    id: &id,
                    slug: &self.slug,
                    uid: self.opts.uid,
                    args,
                    env,
                    network: self.opts.network,
                },
            )?;
            bundles.push((id, b));
        }
        let mut set = tokio::task::JoinSet::new();
        let t0 = Instant::now();
        for (id, bundle) in &bundles {
            let mut child = tokio::process::Command::new(exe)
                .arg("run")
                .arg("--bundle")
                .arg(&bundle.dir)
                .arg(id)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("spawning {exe}"))?;
            set.spawn(async move {
                let mut out = child.stdout.take().context("no stdout pipe")?;
                let mut err = child.stderr.take().context("no stderr pipe")?;
                let mut first = [0u8; 1];
                let n = out.read(&mut first).await?;
                let at = Instant::now();
                let mut rest = Vec::new();
                let mut errors = Vec::new();
                let _ = tokio::join!(out.read_to_end(&mut rest), err.read_to_end(&mut errors));
                let status = child.wait().await?;
                if n == 0 || !status.success() {
                    bail!(
                        "a runc container of the burst failed ({status}): {}",
                        String::from_utf8_lossy(&errors).trim()
                    );
                }
                Ok(at)
            });
        }
        let issued = t0.elapsed();
        let mut last = t0;
        while let Some(r) = set.join_next().await {
            last = last.max(r??);
        }
        for (_, b) in bundles {
            b.remove();
        }
        Ok(Burst {
            issued,
            all: last - t0,
        })
    }

    /// The same command as a plain child process: what any runtime adds is on top of this.
    async fn bash_once(&mut self) -> Result<Duration> {
        let (args, _) = self.oci_process();
        let mut cmd = tokio::process::Command::new(&args[0]);
        cmd.args(&args[1..])
            .env_clear()
            .env("HOME", &self.slug)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8");
        cmd.current_dir(&self.slug)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = cmd.spawn()?;
        let mut out = child.stdout.take().context("no stdout pipe")?;
        let mut first = [0u8; 1];
        let n = out.read(&mut first).await?;
        let elapsed = t0.elapsed();
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).await?;
        child.wait().await?;
        if n == 0 {
            bail!("bash printed nothing");
        }
        Ok(elapsed)
    }
}

impl Bench {
    async fn kiln_limits(&mut self) -> Result<String> {
        let spec = self.kiln_spec("echo ready; exec sleep 60");
        let mut dyno = self.kiln.start(spec)?;
        let mut out = dyno.stdout.take().context("no stdout pipe")?;
        let mut first = [0u8; 1];
        out.read(&mut first).await?;
        let pid = dyno.pid().context("no helper pid")?;
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        dyno.signaller().kill();
        let mine = own_cgroups();
        let mut found = Vec::new();
        // (controller, mount, limit files) for cgroup v1, then the v2 unified group.
        let v1 = [
            (
                "memory",
                "memory",
                &["memory.limit_in_bytes", "memory.soft_limit_in_bytes"][..],
            ),
            ("pids", "pids", &["pids.max"][..]),
            ("cpu", "cpu", &["cpu.shares"][..]),
        ];
        for (ctrl, mount, files) in v1 {
            if let Some(path) =
                cgroup_of(&theirs, ctrl).filter(|p| Some(p) != cgroup_of(&mine, ctrl).as_ref())
            {
                let dir = Path::new("/sys/fs/cgroup")
                    .join(mount)
                    .join(path.trim_start_matches('/'));
                let vals: Vec<String> = files
                    .iter()
                    .map(|f| {
                        format!(
                            "{f}={}",
                            std::fs::read_to_string(dir.join(f))
                                .unwrap_or_else(|_| "?".into())
                                .trim()
                        )
                    })
                    .collect();
                found.push(format!("v1 {ctrl} {} [{}]", path, vals.join(" ")));
            }
        }
        let v2 = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        };
        if let Some(path) = v2(&theirs).filter(|p| Some(p) != v2(&mine).as_ref() && p != "/") {
            let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "/sys/fs/cgroup"
            } else {
                "/sys/fs/cgroup/unified"
            };
            let dir = Path::new(base).join(path.trim_start_matches('/'));
            let vals: Vec<String> = ["memory.high", "memory.max", "pids.max", "cpu.weight"]
                .iter()
                .filter_map(|f| {
                    std::fs::read_to_string(dir.join(f))
                        .ok()
                        .map(|v| format!("{f}={}", v.trim()))
                })
                .collect();
            found.push(format!("v2 {} [{}]", path, vals.join(" ")));
        }
        let mut rest = Vec::new();
        let _ = out.read_to_end(&mut rest).await;
        dyno.wait().await;
        Ok(if found.is_empty() {
            "the dyno stays in the benchmark's own cgroups: the current code applies no memory/pids/cpu limits".to_string()
        } else {
            format!("dyno cgroups: {}", found.join("; "))
        })
    }
}

/// When a burst of starts was issued and when the last first byte arrived, from the first call.
struct Burst {
    issued: Duration,
    all: Duration,
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// The cgroup lines of the benchmark process itself (what a dyno without its own cgroups sees).
fn own_cgroups() -> String {
    std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
}

fn cgroup_of(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

fn tool_version(exe: &str) -> Option<String> {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| first_line(&String::from_utf8_lossy(&out.stdout)).to_string())
}

pub fn run(opts: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(opts))
}

async fn run_async(opts: Options) -> Result<()> {
    let dir = crate::scratch_dir(opts.work_dir.as_ref(), "starts")?;
    let slug = dir.join("slug");
    let files = fixture::write_slug(&slug, opts.uid)?;
    let rootfs = Rootfs::create(&dir.join("rootfs"), opts.uid)?;
    std::fs::create_dir_all(dir.join("bundles"))?;
    let kiln_exe = std::fs::canonicalize(&opts.kiln)
        .with_context(|| format!("the kiln binary {}", opts.kiln.display()))?;
    // The helper the server uses: `kiln-dyno-helper` beside `kiln`, else `kiln dyno-helper`.
    let small = kiln_exe.with_file_name("kiln-dyno-helper");
    let helper = if small.is_file() {
        small
    } else {
        kiln_exe.clone()
    };
    println!("helper: {}", helper.display());
    let mut kiln = ContainerRuntime::new(dir.join("kiln-run"), helper);
    let network = if opts.network {
        let n = std::sync::Arc::new(
            kiln_runtime::network::DynoNetwork::setup(&kiln_runtime::network::NetworkConfig {
                range: None,
                router_ports: Vec::new(),
                remember: None,
            })
            .map_err(anyhow::Error::msg)?,
        );
        kiln = kiln.with_network(n.clone());
        Some(n)
    } else {
        None
    };
    let only = opts.only.clone();
    let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
    let mut b = Bench {
        opts,
        dir: dir.clone(),
        slug,
        rootfs,
        kiln,
        counter: 0,
    };

    println!(
        "Measurement A: start → first stdout byte of `{}` (as Kiln runs it: bash -c PRELUDE)",
        b.opts.command
    );
    println!(
        "  app dir: slug-like, {files} files, /app = overlay over it; uid {}; standard-1X limits",
        b.opts.uid
    );
    if b.opts.pause_ms > 0 {
        println!("  {} ms idle before every start", b.opts.pause_ms);
    }
    println!("  scratch: {}", dir.display());

    // Which contenders can run here.
    let mut kinds = Vec::new();
    if wanted.contains(&"kiln") {
        // One untimed start that shows, from the host, which cgroups the dyno's processes are
        // in and what limits those carry: does the current code apply them?
        println!(
            "  kiln: {}",
            b.kiln_limits().await.context("a first Kiln dyno")?
        );
        kinds.push(Kind::Kiln);
    }
    for (kind, exe) in [
        (Kind::Runc, b.opts.runc.clone()),
        (Kind::Crun, b.opts.crun.clone()),
    ] {
        if !wanted.contains(&kind.name()) {
            continue;
        }
        let Some(version) = tool_version(&exe) else {
            println!(
                "  {}: skipped: `{exe} --version` failed (not installed?)",
                kind.name()
            );
            continue;
        };
        match b.oci_once(&exe).await {
            Ok(_) => {
                println!("  {}: {version}", kind.name());
                kinds.push(kind);
            }
            Err(e) => println!(
                "  {}: skipped: {version} does not run the bundle here: {}",
                kind.name(),
                first_line(&format!("{e:#}"))
            ),
        }
    }
    if wanted.contains(&"bash") {
        kinds.push(Kind::Bash);
    }
    if kinds.is_empty() {
        bail!("nothing to measure");
    }

    let mut samples: Vec<Samples> = vec![Samples::default(); kinds.len()];
    let mut phases: Vec<KilnPhases> = Vec::new();
    let mut csv =
        String::from("runtime,round,first_byte_us,kiln_start_returned_us,kiln_started_us\n");
    let total = b.opts.warmup + b.opts.runs;
    let command = b.opts.command.clone();
    for round in 0..total {
        for k in 0..kinds.len() {
            let idx = (k + round) % kinds.len();
            let kind = kinds[idx];
            if b.opts.pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(b.opts.pause_ms)).await;
            }
            let (t, ph) = match kind {
                Kind::Kiln => {
                    let (t, ph) = b.kiln_once(&command).await?;
                    (t, Some(ph))
                }
                Kind::Runc => (b.oci_once(&b.opts.runc.clone()).await?, None),
                Kind::Crun => (b.oci_once(&b.opts.crun.clone()).await?, None),
                Kind::Bash => (b.bash_once().await?, None),
            };
            if round < b.opts.warmup {
                continue;
            }
            samples[idx].push(t);
            let (s, st) = ph
                .map(|p| {
                    (
                        p.spawned.as_micros().to_string(),
                        p.started.as_micros().to_string(),
                    )
                })
                .unwrap_or_default();
            csv.push_str(&format!(
                "{},{},{},{s},{st}\n",
                kind.name(),
                round - b.opts.warmup,
                t.as_micros()
            ));
            if let Some(p) = ph {
                phases.push(p);
            }
        }
        if (round + 1) % 50 == 0 {
            eprint!(".");
            let _ = std::io::stderr().flush();
        }
    }
    eprintln!();

    println!();
    println!(
        "  {:<22} {:>6} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "runtime", "starts", "median", "p99", "min", "mean", "max"
    );
    for (kind, s) in kinds.iter().zip(&samples) {
        println!(
            "  {:<22} {:>6} {:>11} {:>11} {:>11} {:>11} {:>11}",
            kind.name(),
            s.len(),
            ms(s.median()),
            ms(s.percentile(99.0)),
            ms(s.min()),
            ms(s.mean()),
            ms(s.max())
        );
    }
    let get = |k: Kind| kinds.iter().position(|x| *x == k).map(|i| &samples[i]);
    if let Some(kiln) = get(Kind::Kiln) {
        if !phases.is_empty() {
            let spawned = Samples(phases.iter().map(|p| p.spawned).collect());
            let started = Samples(phases.iter().map(|p| p.started).collect());
            println!();
            println!(
                "  kiln phases (median, from the start call): start() returned {}, bash exec'd (Dyno::started) {}, first byte {}",
                ms(spawned.median()),
                ms(started.median()),
                ms(kiln.median())
            );
        }
        println!();
        for other in [Kind::Runc, Kind::Crun] {
            if let Some(o) = get(other) {
                let med = kiln.median().as_secs_f64() / o.median().as_secs_f64();
                let p99 = kiln.percentile(99.0).as_secs_f64() / o.percentile(99.0).as_secs_f64();
                let verdict = if med <= 0.5 { "meets" } else { "misses" };
                println!(
                    "  ratio kiln/{}: median {med:.2}, p99 {p99:.2}  (target ≤ 0.5: {verdict})",
                    other.name()
                );
            }
        }
    }
    if b.opts.burst > 0 && b.opts.burst_rounds > 0 {
        let n = b.opts.burst;
        println!();
        println!(
            "  burst: {n} starts issued back to back, until every first byte ({} rounds, median)",
            b.opts.burst_rounds
        );
        let runc = b.opts.runc.clone();
        let mut rows: Vec<(&str, Vec<Burst>)> = Vec::new();
        if kinds.contains(&Kind::Kiln) {
            rows.push(("kiln", Vec::new()));
        }
        if kinds.contains(&Kind::Runc) {
            rows.push(("runc", Vec::new()));
        }
        for _ in 0..b.opts.burst_rounds {
            for (name, results) in rows.iter_mut() {
                let r = if *name == "kiln" {
                    b.kiln_burst(n).await?
                } else {
                    b.oci_burst(&runc, n).await?
                };
                results.push(r);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let mut alls = Vec::new();
        for (name, results) in &rows {
            let issued = Samples(results.iter().map(|r| r.issued).collect());
            let all = Samples(results.iter().map(|r| r.all).collect());
            println!(
                "  {:<22} issued in {:>11}, all {n} running in {:>11} (best {}, worst {})",
                name,
                ms(issued.median()),
                ms(all.median()),
                ms(all.min()),
                ms(all.max())
            );
            alls.push(all.median());
        }
        if alls.len() == 2 {
            println!(
                "  ratio kiln/runc, burst of {n}: {:.2}",
                alls[0].as_secs_f64() / alls[1].as_secs_f64()
            );
        }
    }
    if let Some(path) = &b.opts.csv {
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
        println!("  samples: {}", path.display());
    }
    // Every dyno has ended: Kiln's instance cgroups and runc's parent groups go too.
    b.kiln.shutdown();
    if let Some(n) = &network {
        n.teardown();
    }
    remove_runc_parents();
    if !b.opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// runc removes each container's cgroups but not the `kiln-bench` parents the bundles name.
fn remove_runc_parents() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let _ = std::fs::remove_dir(h.path().join("kiln-bench"));
    }
    let _ = std::fs::remove_dir("/sys/fs/cgroup/kiln-bench");
}
