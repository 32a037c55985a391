//! Dyno cgroups against the host's real hierarchies: limits written, processes accounted, an
//! allocation past the hard limit OOM-killed and counted, a process flood stopped at the pids
//! limit, and everything removed afterwards. One test per cgroup version; each runs only where
//! that version is what the host uses (hybrid counts as v1) and as root, and otherwise prints
//! `skipped: <reason>`.

use kiln_runtime::Limits;
use kiln_runtime::cgroup::{Cgroups, DynoCgroup, Layout};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The host's layout if it is of the wanted version, else why the test is skipped.
fn layout(v2: bool) -> Result<Layout, String> {
    if !is_root() {
        return Err("not root: cannot create cgroups".into());
    }
    match Layout::detect() {
        None => Err("no cgroup hierarchy mounted under /sys/fs/cgroup".into()),
        Some(l @ Layout::V2 { .. }) if v2 => Ok(l),
        Some(l @ Layout::V1 { .. }) if !v2 => match &l {
            Layout::V1 {
                memory: Some(_),
                pids: Some(_),
                ..
            } => Ok(l),
            _ => Err(format!(
                "{} lacks the memory or pids controller",
                l.describe()
            )),
        },
        Some(l) => Err(format!("this host uses {}", l.describe())),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The dyno's directory in the hierarchy whose path contains `name` (v1), or its only one (v2).
fn dir_of(cg: &DynoCgroup, name: &str) -> PathBuf {
    if cg.dirs().len() == 1 {
        return cg.dirs()[0].clone();
    }
    cg.dirs()
        .iter()
        .find(|d| d.to_string_lossy().contains(&format!("/{name}/")))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} hierarchy in {:?}", cg.dirs()))
}

/// A shell waiting for a line on stdin before running `script`, so it can be put into the
/// cgroup first (as the helper puts itself, by writing a pid into `cgroup.procs`).
fn parked(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn enter(cg: &DynoCgroup, child: &mut Child) {
    for procs in cg.procs_files() {
        std::fs::write(&procs, child.id().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
    }
    assert!(cg.processes().contains(&(child.id() as i32)));
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exercise(layout: Layout) {
    let v2 = matches!(layout, Layout::V2 { .. });
    let cgroups = Cgroups::new(layout, &format!("test-{}", uuid::Uuid::new_v4().simple()));
    let limits = Limits {
        memory_bytes: Some(32 * MIB),
        memory_hard_bytes: Some(64 * MIB),
        max_processes: Some(16),
        cpu_share: Some(512),
    };

    // Limits are written where the kernel reads them.
    let cg = cgroups
        .create(&uuid::Uuid::new_v4().to_string(), &limits)
        .unwrap();
    let mem = dir_of(&cg, "memory");
    let pids = dir_of(&cg, "pids");
    if v2 {
        assert_eq!(read(&mem.join("memory.max")), (64 * MIB).to_string());
        if mem.join("memory.swap.max").exists() {
            assert_eq!(read(&mem.join("memory.swap.max")), "0");
        }
        if mem.join("cpu.weight").exists() {
            assert_eq!(
                read(&mem.join("cpu.weight")),
                kiln_runtime::cgroup::shares_to_weight(512).to_string()
            );
        }
    } else {
        assert_eq!(
            read(&mem.join("memory.limit_in_bytes")),
            (64 * MIB).to_string()
        );
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(&mem.join("memory.memsw.limit_in_bytes")),
                (64 * MIB).to_string()
            );
        }
        if cg
            .dirs()
            .iter()
            .any(|d| d.to_string_lossy().contains("/cpu/"))
        {
            assert_eq!(read(&dir_of(&cg, "cpu").join("cpu.shares")), "512");
        }
    }
    assert_eq!(read(&pids.join("pids.max")), "16");
    let before = cg.memory().expect("memory stats");
    assert_eq!(before.oom_kills, 0);

    // Past the hard limit: the kernel kills the allocation and the group counts it.
    let mut hog = parked("exec python3 -c \"x = b'x' * (256 << 20)\"");
    enter(&cg, &mut hog);
    let status = wait_timeout(&mut hog, Duration::from_secs(30));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the allocation should have been OOM-killed: {status:?}"
    );
    let after = cg.memory().expect("memory stats");
    assert!(after.oom_kills >= 1, "{after:?}");

    // A flood of processes stops at pids.max.
    let mut flood = parked("for i in $(seq 1 64); do sleep 30 & done; sleep 30");
    enter(&cg, &mut flood);
    std::thread::sleep(Duration::from_millis(1500));
    let current: u64 = read(&pids.join("pids.current")).parse().unwrap();
    assert!(current <= 16, "pids.current {current} above pids.max 16");
    assert!(current >= 8, "the flood did not run: {current}");
    let events = read(&pids.join("pids.events"));
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("max ") && l != "max 0"),
        "no fork was refused: {events}"
    );
    let usage = cg.memory().unwrap().usage_bytes;
    assert!(usage > 0, "usage not accounted");

    // Removal kills what is left and removes every directory. (The shell itself may have
    // given up already: dash exits when fork fails.)
    let inside = cg.processes();
    assert!(inside.len() >= 8, "{inside:?}");
    let t = Instant::now();
    cg.remove().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    wait_timeout(&mut flood, Duration::from_secs(5));
    for pid in inside {
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "process {pid} survived the removal of its cgroup");
    }
    for d in cg.dirs() {
        assert!(!d.exists(), "{} remains", d.display());
    }

    // A leftover of an "earlier life" with a process in it is swept.
    let left = cgroups.create("leftover", &limits).unwrap();
    let mut stray = parked("sleep 60");
    enter(&left, &mut stray);
    assert!(cgroups.sweep().is_empty());
    assert_eq!(
        wait_timeout(&mut stray, Duration::from_secs(5)).signal(),
        Some(libc::SIGKILL)
    );
    assert!(left.dirs().iter().all(|d| !d.exists()));
    cgroups.remove_instance();
}

#[test]
fn real_cgroup_v1_limits_accounting_and_cleanup() {
    match layout(false) {
        Ok(l) => exercise(l),
        Err(why) => println!("skipped: {why}"),
    }
}

#[test]
fn real_cgroup_v2_limits_accounting_and_cleanup() {
    match layout(true) {
        Ok(l) => exercise(l),
        Err(why) => println!("skipped: {why}"),
    }
}
