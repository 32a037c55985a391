//! Per-dyno cgroups (v1, v2 and hybrid hierarchies): resource limits from the dyno size, and
//! memory accounting for Heroku's R14/R15.
//!
//! Every dyno gets `<hierarchy>/kiln/<instance>/<dyno id>` in each hierarchy it uses: on pure
//! cgroup v2 the one unified hierarchy; on v1 and hybrid hosts the `memory`, `pids` and `cpu`
//! hierarchies, each where it is mounted. `<instance>` is derived from the server's data
//! directory, so several servers on one host (test servers, notably) never sweep each other's
//! dynos, while a restarted server finds what its previous life left behind.
//!
//! The work is split so that nothing forks from the async server:
//! - the server ([`Cgroups::create`], plain file writes) creates the dyno's cgroups and writes
//!   its limits before it execs the helper, and records in the spec which `cgroup.procs`
//!   files the helper must join;
//! - the helper ([`join`]), still root and before it enters new namespaces (a cgroup
//!   namespace among them, so the dyno sees its own cgroup as `/`), writes `0` (itself) into
//!   each; everything it then starts is limited and accounted there;
//! - when the dyno has ended, [`DynoCgroup::remove`] kills anything still listed and removes
//!   the cgroups; [`Cgroups::sweep`] does the same for leftovers of a previous server life.
//!
//! | limit | v1 | v2 |
//! |---|---|---|
//! | hard memory | `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` when swap is accounted) | `memory.max`, `memory.swap.max = 0` |
//! | processes and threads | `pids.max` | `pids.max` |
//! | CPU share | `cpu.shares` | `cpu.weight`, converted from shares |
//!
//! The soft quota (R14) is not a kernel limit: the dyno manager samples [`DynoCgroup::memory`]
//! (v1 `memory.usage_in_bytes` and `memory.oom_control`'s `oom_kill`; v2 `memory.current`
//! and `memory.events`' `oom_kill`) and reports, as Heroku does.

use crate::sys::SysResult;
use crate::{DynoSpec, Limits};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the kernel's cgroup hierarchies are normally mounted.
pub const SYS_FS_CGROUP: &str = "/sys/fs/cgroup";
/// The group every Kiln server's dynos live under, in each hierarchy.
pub const PARENT: &str = "kiln";
/// How long removing a dyno's cgroup waits for its processes to go.
const REMOVE_PATIENCE: Duration = Duration::from_secs(2);
/// The v2 controllers a dyno needs, in the order they are enabled.
const V2_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Which cgroup hierarchies the host has, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2: one unified hierarchy (`cgroup.controllers` at its root).
    V2 { root: PathBuf },
    /// cgroup v1, or hybrid (controllers on v1, an empty v2 beside them): one hierarchy per
    /// controller, each `None` where it is not mounted.
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
}

impl Layout {
    /// The host's layout under `/sys/fs/cgroup`, or `None` when no usable hierarchy is mounted.
    pub fn detect() -> Option<Layout> {
        Layout::detect_at(Path::new(SYS_FS_CGROUP))
    }

    /// The layout under `base` (a fake tree in tests).
    pub fn detect_at(base: &Path) -> Option<Layout> {
        if base.join("cgroup.controllers").is_file() {
            return Some(Layout::V2 {
                root: base.to_path_buf(),
            });
        }
        let mounted = |name: &str| {
            let p = base.join(name);
            p.join("cgroup.procs").is_file().then_some(p)
        };
        let (memory, pids, cpu) = (mounted("memory"), mounted("pids"), mounted("cpu"));
        if memory.is_none() && pids.is_none() && cpu.is_none() {
            return None;
        }
        Some(Layout::V1 { memory, pids, cpu })
    }

    /// For the server log: `cgroup v2 (/sys/fs/cgroup)`, `cgroup v1 (memory, pids, cpu)`.
    pub fn describe(&self) -> String {
        match self {
            Layout::V2 { root } => format!("cgroup v2 ({})", root.display()),
            Layout::V1 { memory, pids, cpu } => {
                let have: Vec<&str> = [("memory", memory), ("pids", pids), ("cpu", cpu)]
                    .iter()
                    .filter(|(_, p)| p.is_some())
                    .map(|(n, _)| *n)
                    .collect();
                format!("cgroup v1 ({})", have.join(", "))
            }
        }
    }

    /// Controllers a dyno would go without (for a warning at startup).
    pub fn missing(&self) -> Vec<&'static str> {
        match self {
            Layout::V2 { root } => {
                let available =
                    std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                V2_CONTROLLERS
                    .iter()
                    .copied()
                    .filter(|c| !available.split_whitespace().any(|a| a == *c))
                    .collect()
            }
            Layout::V1 { memory, pids, cpu } => [("memory", memory), ("pids", pids), ("cpu", cpu)]
                .iter()
                .filter(|(_, p)| p.is_none())
                .map(|(n, _)| *n)
                .collect(),
        }
    }
}

/// An error from cgroup work, naming the file or directory involved.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct CgroupError {
    pub context: String,
    #[source]
    pub source: io::Error,
}

fn err(context: impl Into<String>) -> impl FnOnce(io::Error) -> CgroupError {
    let context = context.into();
    move |source| CgroupError { context, source }
}

/// This server's dyno cgroups: `kiln/<instance>/` in each hierarchy of a [`Layout`].
#[derive(Debug)]
pub struct Cgroups {
    layout: Layout,
    /// `kiln/<instance>`, relative to each hierarchy's root.
    group: PathBuf,
    /// v2: the controllers enabled down to the instance group, once that has been done.
    v2_enabled: Mutex<Option<Vec<&'static str>>>,
}

impl Cgroups {
    pub fn new(layout: Layout, instance: &str) -> Cgroups {
        Cgroups {
            layout,
            group: Path::new(PARENT).join(instance),
            v2_enabled: Mutex::new(None),
        }
    }

    /// The host's hierarchies, for the server whose run directory is `run_dir`.
    pub fn detect(run_dir: &Path) -> Option<Cgroups> {
        Layout::detect().map(|l| Cgroups::new(l, &instance_name(run_dir)))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The instance group in every hierarchy (where each dyno gets its directory).
    fn instance_dirs(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V2 { root } => vec![root.join(&self.group)],
            Layout::V1 { memory, pids, cpu } => [memory, pids, cpu]
                .iter()
                .filter_map(|p| p.as_ref())
                .map(|p| p.join(&self.group))
                .collect(),
        }
    }

    /// Creates dyno `id`'s cgroups with `limits` written in. Server side: plain file writes.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<DynoCgroup, CgroupError> {
        if id.is_empty() || id == "." || id == ".." || id.contains('/') {
            return Err(CgroupError {
                context: format!("dyno id {id:?}"),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a plain name"),
            });
        }
        let mut cg = DynoCgroup {
            dirs: Vec::new(),
            memory: None,
        };
        match self.fill(&mut cg, id, limits) {
            Ok(()) => Ok(cg),
            Err(e) => {
                // Nothing runs in it yet: removal is immediate.
                let _ = cg.remove();
                Err(e)
            }
        }
    }

    fn fill(&self, cg: &mut DynoCgroup, id: &str, limits: &Limits) -> Result<(), CgroupError> {
        let hard = limits.memory_hard_bytes.or(limits.memory_bytes);
        match &self.layout {
            Layout::V1 { memory, pids, cpu } => {
                if let Some(base) = memory {
                    let dir = cg.mkdir(base.join(&self.group).join(id))?;
                    if let Some(bytes) = hard {
                        // The plain limit first: memsw may never be below it.
                        write_control(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                        let memsw = dir.join("memory.memsw.limit_in_bytes");
                        if memsw.exists() {
                            // No swapping past the limit either (Heroku's hard limit is RAM + swap).
                            write_control(&memsw, &bytes.to_string())?;
                        }
                    }
                    cg.memory = Some(MemorySource::V1(dir));
                }
                if let Some(base) = pids {
                    let dir = cg.mkdir(base.join(&self.group).join(id))?;
                    if let Some(n) = limits.max_processes {
                        write_control(&dir.join("pids.max"), &n.to_string())?;
                    }
                }
                if let Some(base) = cpu {
                    let dir = cg.mkdir(base.join(&self.group).join(id))?;
                    if let Some(shares) = limits.cpu_share {
                        write_control(
                            &dir.join("cpu.shares"),
                            &shares.clamp(2, 262_144).to_string(),
                        )?;
                    }
                }
            }
            Layout::V2 { root } => {
                let enabled = self.enable_v2(root)?;
                let dir = cg.mkdir(root.join(&self.group).join(id))?;
                if enabled.contains(&"memory") {
                    if let Some(bytes) = hard {
                        write_control(&dir.join("memory.max"), &bytes.to_string())?;
                        let swap = dir.join("memory.swap.max");
                        if swap.exists() {
                            write_control(&swap, "0")?;
                        }
                    }
                    cg.memory = Some(MemorySource::V2(dir.clone()));
                }
                if enabled.contains(&"pids")
                    && let Some(n) = limits.max_processes
                {
                    write_control(&dir.join("pids.max"), &n.to_string())?;
                }
                if enabled.contains(&"cpu")
                    && let Some(shares) = limits.cpu_share
                {
                    write_control(
                        &dir.join("cpu.weight"),
                        &shares_to_weight(shares).to_string(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// v2: creates `kiln/<instance>` and enables the controllers in each `cgroup.subtree_control`
    /// from the root down (the root is exempt from v2's no-internal-processes rule; the groups
    /// below it hold no process, only dyno groups). Done once per server.
    fn enable_v2(&self, root: &Path) -> Result<Vec<&'static str>, CgroupError> {
        let mut done = self.v2_enabled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(enabled) = done.as_ref() {
            return Ok(enabled.clone());
        }
        let available = std::fs::read_to_string(root.join("cgroup.controllers")).map_err(err(
            format!("reading {}", root.join("cgroup.controllers").display()),
        ))?;
        let mut want: Vec<&'static str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .collect();
        // The root first, then each group down to this server's.
        let mut dir = root.to_path_buf();
        want = enable_controllers(&dir.join("cgroup.subtree_control"), &want)?;
        for part in self.group.components() {
            dir.push(part);
            create_dir(&dir)?;
            want = enable_controllers(&dir.join("cgroup.subtree_control"), &want)?;
        }
        *done = Some(want.clone());
        Ok(want)
    }

    /// Removes the dyno groups an earlier life of this server left behind, killing whatever
    /// still runs in them. Groups that cannot be removed are reported, not fatal.
    pub fn sweep(&self) -> Vec<CgroupError> {
        let mut errors = Vec::new();
        for inst in self.instance_dirs() {
            let Ok(entries) = std::fs::read_dir(&inst) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && let Err(e) = remove_tree(&e.path(), Instant::now() + REMOVE_PATIENCE)
                {
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Removes this server's (empty) instance groups, at shutdown. The shared `kiln` parent
    /// stays: another server may be creating its group under it at this very moment.
    pub fn remove_instance(&self) {
        for inst in self.instance_dirs() {
            let _ = std::fs::remove_dir(inst);
        }
    }
}

/// A stable name for the server whose run directory is `run_dir` (FNV-1a of its path).
pub fn instance_name(run_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:016x}", h)
}

/// cgroup v1 `cpu.shares` (2..262144, default 1024) to v2 `cpu.weight` (1..10000, default
/// 100), with the linear mapping runc and Kubernetes use, so a dyno gets the same relative
/// share under either version.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// Enables `want` in a v2 `cgroup.subtree_control`; if the kernel refuses the set, retries
/// without `cpu` (it cannot be enabled while real-time tasks are about). Returns what is on.
fn enable_controllers(
    file: &Path,
    want: &[&'static str],
) -> Result<Vec<&'static str>, CgroupError> {
    let current = std::fs::read_to_string(file).unwrap_or_default();
    let on = |c: &str| {
        current
            .split_whitespace()
            .any(|x| x == c || x.strip_prefix('+') == Some(c))
    };
    if want.iter().all(|c| on(c)) {
        return Ok(want.to_vec());
    }
    let line = |set: &[&str]| {
        set.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match write_control(file, &line(want)) {
        Ok(()) => Ok(want.to_vec()),
        Err(e) if want.contains(&"cpu") => {
            let without: Vec<&'static str> = want.iter().copied().filter(|c| *c != "cpu").collect();
            tracing::warn!(error = %e, "cgroup v2: could not enable the cpu controller; dynos run without CPU shares");
            write_control(file, &line(&without))?;
            Ok(without)
        }
        Err(e) => Err(e),
    }
}

fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError {
            context: format!("creating cgroup {}", dir.display()),
            source: e,
        }),
    }
}

/// Writes a control file, which the kernel has created with the cgroup (never created here).
fn write_control(file: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(err(format!("writing {value:?} to {}", file.display())))
}

fn read_u64(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// `key N` from a flat-keyed file (`memory.events`, `memory.oom_control`).
fn read_key(file: &Path, key: &str) -> Option<u64> {
    stat_key(&std::fs::read_to_string(file).ok()?, key)
}

/// `key N` from `memory.stat`'s text.
fn stat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Host pids listed in a `cgroup.procs`.
fn read_procs(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills what runs in `dir` (and in any group below it), then removes it, retrying while the
/// kernel still calls it busy (processes exiting) until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), deadline)?;
            }
        }
    }
    let kill_file = dir.join("cgroup.kill");
    let procs = dir.join("cgroup.procs");
    loop {
        if kill_file.is_file() {
            // v2 (Linux 5.14+): the kernel kills the whole group at once, forks in flight too.
            let _ = write_control(&kill_file, "1");
        }
        for pid in read_procs(&procs) {
            // Never 0 or 1: kill(0) would hit our own process group, kill(1) init.
            if pid > 1 {
                // SAFETY: plain kill of a process listed in a group only dynos run in.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Only an ordinary directory (a test's fake tree) says "not empty"; cgroupfs says
            // busy and holds no real files.
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                return std::fs::remove_dir_all(dir)
                    .map_err(err(format!("removing {}", dir.display())));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let left = read_procs(&procs);
                return Err(CgroupError {
                    context: format!(
                        "removing cgroup {} (processes left: {left:?})",
                        dir.display()
                    ),
                    source: e,
                });
            }
        }
    }
}

/// Memory use of a dyno, from its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// What the dyno uses now, page cache included (Heroku's R14 counts it too).
    pub usage_bytes: u64,
    /// How many of its processes the kernel's OOM killer has killed (at the hard limit).
    pub oom_kills: u64,
}

/// What Heroku's `log-runtime-metrics` reports of a dyno's memory, from its cgroup's
/// `memory.stat` (v1: the hierarchical `total_*` counters; v2: `anon`, `file` and
/// `memory.swap.current`, which has no page-in and page-out counts: they read 0 there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryDetail {
    pub rss_bytes: u64,
    pub cache_bytes: u64,
    pub swap_bytes: u64,
    pub pgpgin: u64,
    pub pgpgout: u64,
}

#[derive(Debug, Clone)]
enum MemorySource {
    V1(PathBuf),
    V2(PathBuf),
}

/// One dyno's cgroups.
#[derive(Debug)]
pub struct DynoCgroup {
    /// The dyno's directory in each hierarchy.
    dirs: Vec<PathBuf>,
    memory: Option<MemorySource>,
}

impl DynoCgroup {
    /// Creates `dir` and records it (so a failure later removes it).
    fn mkdir(&mut self, dir: PathBuf) -> Result<PathBuf, CgroupError> {
        create_dir(&dir)?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// The dyno's directory in each hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files the helper joins.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Host pids of every process in the dyno's groups.
    pub fn processes(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self
            .dirs
            .iter()
            .flat_map(|d| read_procs(&d.join("cgroup.procs")))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Current memory use and OOM kills; `None` without a memory controller or once removed.
    pub fn memory(&self) -> Option<MemoryStats> {
        match self.memory.as_ref()? {
            MemorySource::V1(dir) => Some(MemoryStats {
                usage_bytes: read_u64(&dir.join("memory.usage_in_bytes"))?,
                oom_kills: read_key(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0),
            }),
            MemorySource::V2(dir) => Some(MemoryStats {
                usage_bytes: read_u64(&dir.join("memory.current"))?,
                oom_kills: read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
            }),
        }
    }

    /// The breakdown `log-runtime-metrics` reports; `None` without a memory controller.
    pub fn memory_detail(&self) -> Option<MemoryDetail> {
        match self.memory.as_ref()? {
            MemorySource::V1(dir) => {
                let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
                let key = |k: &str| stat_key(&stat, k).unwrap_or(0);
                Some(MemoryDetail {
                    rss_bytes: key("total_rss"),
                    cache_bytes: key("total_cache"),
                    swap_bytes: key("total_swap"),
                    pgpgin: key("total_pgpgin"),
                    pgpgout: key("total_pgpgout"),
                })
            }
            MemorySource::V2(dir) => {
                let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
                let key = |k: &str| stat_key(&stat, k).unwrap_or(0);
                Some(MemoryDetail {
                    rss_bytes: key("anon"),
                    cache_bytes: key("file"),
                    swap_bytes: read_u64(&dir.join("memory.swap.current")).unwrap_or(0),
                    pgpgin: 0,
                    pgpgout: 0,
                })
            }
        }
    }

    /// How many of the dyno's threads are running or waiting to run (or in uninterruptible
    /// sleep, as the kernel's load average counts them): one sample of its load.
    pub fn runnable_threads(&self) -> usize {
        // Every hierarchy lists the same threads: the first that answers is enough.
        let threads = self.dirs.iter().find_map(|d| {
            std::fs::read_to_string(d.join("tasks"))
                .or_else(|_| std::fs::read_to_string(d.join("cgroup.threads")))
                .ok()
        });
        let Some(threads) = threads else { return 0 };
        threads
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|tid| {
                std::fs::read_to_string(format!("/proc/{tid}/stat")).is_ok_and(|stat| {
                    // The state follows the command name, which may itself hold `)`.
                    matches!(
                        stat.rsplit_once(')')
                            .and_then(|(_, rest)| rest.trim_start().chars().next()),
                        Some('R' | 'D')
                    )
                })
            })
            .count()
    }

    /// Kills anything still in the dyno's groups and removes them, waiting up to ~2 s for the
    /// processes to be gone. Blocking.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_PATIENCE;
        let mut first = None;
        for dir in &self.dirs {
            if let Err(e) = remove_tree(dir, deadline) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Called by the helper (still root, before it enters new namespaces): moves the helper into
/// the dyno's cgroups, so everything it starts is limited and accounted there.
pub fn join(spec: &DynoSpec) -> SysResult<()> {
    for procs in &spec.cgroup_procs {
        std::fs::OpenOptions::new()
            .write(true)
            .open(procs)
            .and_then(|mut f| f.write_all(b"0"))
            .map_err(|e| {
                format!(
                    "joining cgroup {}: {e}",
                    procs.parent().unwrap_or(procs).display()
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> kiln_testkit::TempDir {
        kiln_testkit::TempDir::new(&format!("cgroup-{tag}"))
    }

    /// What the kernel creates in a new group: its control files, empty.
    fn fake_group(dir: &Path, files: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "").unwrap();
        }
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    const V2_FILES: [&str; 9] = [
        "cgroup.procs",
        "cgroup.subtree_control",
        "memory.max",
        "memory.swap.max",
        "memory.current",
        "memory.events",
        "pids.max",
        "cpu.weight",
        "cgroup.controllers",
    ];

    fn fake_v2(controllers: &str, id: &str, files: &[&str]) -> (kiln_testkit::TempDir, Cgroups) {
        let root = tmp("v2");
        std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        let layout = Layout::detect_at(&root).unwrap();
        assert_eq!(
            layout,
            Layout::V2 {
                root: root.to_path_buf()
            }
        );
        let cg = Cgroups::new(layout, "inst");
        fake_group(
            &root.join("kiln"),
            &["cgroup.procs", "cgroup.subtree_control"],
        );
        fake_group(
            &root.join("kiln/inst"),
            &["cgroup.procs", "cgroup.subtree_control"],
        );
        fake_group(&root.join("kiln/inst").join(id), files);
        (root, cg)
    }

    fn dyno_limits() -> Limits {
        Limits {
            memory_bytes: Some(512 << 20),
            memory_hard_bytes: Some(1024 << 20),
            max_processes: Some(256),
            cpu_share: Some(1024),
        }
    }

    #[test]
    fn v2_enables_controllers_and_writes_limits() {
        let (root, cgroups) = fake_v2("cpuset cpu io memory hugetlb pids rdma", "d1", &V2_FILES);
        let cg = cgroups.create("d1", &dyno_limits()).unwrap();
        for level in ["", "kiln", "kiln/inst"] {
            assert_eq!(
                read(&root.join(level).join("cgroup.subtree_control")),
                "+memory +pids +cpu",
                "level {level:?}"
            );
        }
        let dir = root.join("kiln/inst/d1");
        assert_eq!(read(&dir.join("memory.max")), (1024u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("pids.max")), "256");
        assert_eq!(
            read(&dir.join("cpu.weight")),
            shares_to_weight(1024).to_string()
        );
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);

        // Accounting: memory.current and memory.events' oom_kill.
        std::fs::write(dir.join("memory.current"), "641728512\n").unwrap();
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(
            cg.memory(),
            Some(MemoryStats {
                usage_bytes: 641_728_512,
                oom_kills: 2
            })
        );
        std::fs::write(
            dir.join("memory.stat"),
            "anon 1048576\nfile 2097152\nkernel 4096\npgfault 77\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.swap.current"), "4096\n").unwrap();
        assert_eq!(
            cg.memory_detail(),
            Some(MemoryDetail {
                rss_bytes: 1_048_576,
                cache_bytes: 2_097_152,
                swap_bytes: 4096,
                pgpgin: 0,
                pgpgout: 0
            })
        );
        // This test's own thread is running, and is listed as the group's one thread.
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::syscall(libc::SYS_gettid) };
        std::fs::write(dir.join("cgroup.threads"), format!("{me}\n999999999\n")).unwrap();
        assert_eq!(cg.runnable_threads(), 1, "running: counted; gone: not");

        // A second dyno with build-like limits.
        fake_group(&root.join("kiln/inst/d2"), &V2_FILES);
        let cg2 = cgroups
            .create(
                "d2",
                &Limits {
                    memory_bytes: Some(2048 << 20),
                    memory_hard_bytes: None,
                    max_processes: Some(4096),
                    cpu_share: None,
                },
            )
            .unwrap();
        assert_eq!(
            read(&root.join("kiln/inst/d2/memory.max")),
            (2048u64 << 20).to_string(),
            "without a hard limit the quota is the limit"
        );
        assert_eq!(
            read(&root.join("kiln/inst/d2/cpu.weight")),
            "",
            "no share, no weight"
        );

        cg.remove().unwrap();
        cg2.remove().unwrap();
        assert!(!dir.exists() && root.join("kiln/inst").is_dir());
        assert_eq!(cg.memory(), None, "no stats once removed");
        cgroups.remove_instance();
    }

    #[test]
    fn v2_without_cpu_or_swap_accounting_skips_them() {
        let files: Vec<&str> = V2_FILES
            .iter()
            .copied()
            .filter(|f| !f.starts_with("memory.swap") && !f.starts_with("cpu."))
            .collect();
        let (root, cgroups) = fake_v2("memory pids io", "d1", &files);
        cgroups.create("d1", &dyno_limits()).unwrap();
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+memory +pids");
        assert!(!root.join("kiln/inst/d1/memory.swap.max").exists());
        assert!(!root.join("kiln/inst/d1/cpu.weight").exists());
    }

    #[test]
    fn v2_missing_control_file_fails_and_leaves_nothing() {
        // A kernel that would not have created memory.max: the error names the file, and the
        // half-made group is removed.
        let (root, cgroups) = fake_v2("memory pids cpu", "d1", &["cgroup.procs"]);
        let e = cgroups.create("d1", &dyno_limits()).unwrap_err();
        assert!(e.to_string().contains("memory.max"), "{e}");
        assert!(!root.join("kiln/inst/d1").exists());
    }

    #[test]
    fn v1_hybrid_writes_each_hierarchy() {
        let base = tmp("v1");
        for (name, files) in [
            ("memory", &["cgroup.procs", "memory.limit_in_bytes"][..]),
            ("pids", &["cgroup.procs"][..]),
            ("cpu", &["cgroup.procs", "cpu.shares"][..]),
        ] {
            fake_group(&base.join(name), files);
        }
        // Hybrid: an empty v2 beside the v1 controllers does not make it v2.
        fake_group(
            &base.join("unified"),
            &["cgroup.controllers", "cgroup.procs"],
        );
        let layout = Layout::detect_at(&base).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                memory: Some(base.join("memory")),
                pids: Some(base.join("pids")),
                cpu: Some(base.join("cpu"))
            }
        );
        assert_eq!(layout.describe(), "cgroup v1 (memory, pids, cpu)");
        let cgroups = Cgroups::new(layout, "inst");
        fake_group(
            &base.join("memory/kiln/inst/d1"),
            &[
                "cgroup.procs",
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.usage_in_bytes",
                "memory.oom_control",
            ],
        );
        fake_group(
            &base.join("pids/kiln/inst/d1"),
            &["cgroup.procs", "pids.max"],
        );
        fake_group(
            &base.join("cpu/kiln/inst/d1"),
            &["cgroup.procs", "cpu.shares"],
        );
        let cg = cgroups.create("d1", &dyno_limits()).unwrap();
        assert_eq!(
            read(&base.join("memory/kiln/inst/d1/memory.limit_in_bytes")),
            (1024u64 << 20).to_string()
        );
        assert_eq!(
            read(&base.join("memory/kiln/inst/d1/memory.memsw.limit_in_bytes")),
            (1024u64 << 20).to_string()
        );
        assert_eq!(read(&base.join("pids/kiln/inst/d1/pids.max")), "256");
        assert_eq!(read(&base.join("cpu/kiln/inst/d1/cpu.shares")), "1024");
        assert_eq!(cg.procs_files().len(), 3);
        std::fs::write(
            base.join("memory/kiln/inst/d1/memory.usage_in_bytes"),
            "734003200\n",
        )
        .unwrap();
        std::fs::write(
            base.join("memory/kiln/inst/d1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(
            cg.memory(),
            Some(MemoryStats {
                usage_bytes: 734_003_200,
                oom_kills: 1
            })
        );
        // The hierarchical totals, not the group's own counters.
        std::fs::write(
            base.join("memory/kiln/inst/d1/memory.stat"),
            "cache 1\nrss 2\npgpgin 3\ntotal_cache 8192\ntotal_rss 16384\ntotal_swap 0\n\
             total_pgpgin 348836\ntotal_pgpgout 343403\n",
        )
        .unwrap();
        assert_eq!(
            cg.memory_detail(),
            Some(MemoryDetail {
                rss_bytes: 16384,
                cache_bytes: 8192,
                swap_bytes: 0,
                pgpgin: 348_836,
                pgpgout: 343_403
            })
        );

        // Without memsw (no swap accounting) only the plain limit is written.
        fake_group(
            &base.join("memory/kiln/inst/d2"),
            &["cgroup.procs", "memory.limit_in_bytes"],
        );
        fake_group(
            &base.join("pids/kiln/inst/d2"),
            &["cgroup.procs", "pids.max"],
        );
        fake_group(
            &base.join("cpu/kiln/inst/d2"),
            &["cgroup.procs", "cpu.shares"],
        );
        cgroups.create("d2", &dyno_limits()).unwrap();
        assert!(
            !base
                .join("memory/kiln/inst/d2/memory.memsw.limit_in_bytes")
                .exists()
        );
    }

    #[test]
    fn removal_and_sweep_kill_what_is_listed() {
        let base = tmp("sweep");
        fake_group(&base.join("pids"), &["cgroup.procs"]);
        let cgroups = Cgroups::new(Layout::detect_at(&base).unwrap(), "inst");
        let mut victims = Vec::new();
        for id in ["left1", "left2"] {
            fake_group(
                &base.join("pids/kiln/inst").join(id),
                &["cgroup.procs", "pids.max"],
            );
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap();
            std::fs::write(
                base.join("pids/kiln/inst").join(id).join("cgroup.procs"),
                format!("{}\n", child.id()),
            )
            .unwrap();
            victims.push(child);
        }
        // Another server's group is not ours to sweep.
        fake_group(&base.join("pids/kiln/other/d9"), &["cgroup.procs"]);
        assert!(cgroups.sweep().is_empty());
        for mut v in victims {
            let status = v.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        assert_eq!(
            std::fs::read_dir(base.join("pids/kiln/inst"))
                .unwrap()
                .count(),
            0
        );
        assert!(base.join("pids/kiln/other/d9").is_dir());
    }

    #[test]
    fn detection_and_helpers() {
        let empty = tmp("none");
        assert_eq!(Layout::detect_at(&empty), None);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert!(shares_to_weight(2048) > shares_to_weight(1024));
        assert_eq!(
            instance_name(Path::new("/var/lib/kiln/run")),
            instance_name(Path::new("/var/lib/kiln/run"))
        );
        assert_ne!(
            instance_name(Path::new("/a/run")),
            instance_name(Path::new("/b/run"))
        );
        let (_root, cgroups) = fake_v2("memory pids", "x", &V2_FILES);
        for bad in ["", ".", "..", "a/b"] {
            assert!(cgroups.create(bad, &Limits::default()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn join_writes_self_into_each_procs_file() {
        let dir = tmp("join");
        let files = vec![dir.join("a.procs"), dir.join("b.procs")];
        for f in &files {
            std::fs::write(f, "").unwrap();
        }
        let spec = DynoSpec {
            id: "x".into(),
            cgroup_procs: files.clone(),
            ..DynoSpec::default()
        };
        join(&spec).unwrap();
        for f in &files {
            assert_eq!(read(f), "0");
        }
        let missing = DynoSpec {
            cgroup_procs: vec![dir.join("nope/cgroup.procs")],
            ..spec
        };
        assert!(
            join(&missing)
                .unwrap_err()
                .to_string()
                .contains("joining cgroup")
        );
        // A spec written before this field existed still parses.
        let old = r#"{"id":"x","app_id":"a","name":"web.1","command":"true","env":[],"app_dir":{"Writable":"/tmp"},"binds":[],"uid":null,"limits":{"memory_bytes":null,"memory_hard_bytes":null,"max_processes":null,"cpu_share":null},"stdin":false}"#;
        let parsed: DynoSpec = serde_json::from_str(old).unwrap();
        assert!(parsed.cgroup_procs.is_empty());
    }
}
