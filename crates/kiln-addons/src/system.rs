//! What the built-in services need from the machine: their programs, a port each, and an
//! unprivileged user to run as.

use crate::{AddonError, Result};
use std::path::{Path, PathBuf};

/// The first program in `dirs` then `$PATH` called `name`.
pub fn find_program(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    dirs.iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A program a service needs, or the error that says which package brings it.
pub fn require(
    service: &'static str,
    name: &'static str,
    package: &'static str,
    dirs: &[PathBuf],
) -> Result<PathBuf> {
    find_program(name, dirs).ok_or(AddonError::MissingProgram {
        service,
        what: name,
        package,
    })
}

/// A port nobody listens on at `host` now (the kernel's pick), for a new service.
pub fn free_port(host: &str) -> Result<u16> {
    let listener = std::net::TcpListener::bind((host, 0))
        .map_err(AddonError::io(format!("finding a free port on {host}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(AddonError::io("finding a free port"))
}

/// Whether Kiln runs as root (and so must run services as someone else).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Add-on processes run as uids from here up, one per add-on, so that no add-on's process
/// can signal, trace or read another's (apps' dynos use uids from 20 000).
pub const FIRST_ADDON_UID: u32 = 1_800_000_000;

/// The uid and gid of a system account, created (`useradd --system`) if missing: for
/// programs that need a name for their user (PostgreSQL looks itself up).
pub fn system_user(name: &str) -> Result<(u32, u32)> {
    if let Some(ids) = lookup_user(name) {
        return Ok(ids);
    }
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ])
        .output()
        .map_err(AddonError::io(format!("creating the system user {name}")))?;
    if !out.status.success() && lookup_user(name).is_none() {
        return Err(AddonError::Service {
            context: format!("creating the system user {name}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    lookup_user(name).ok_or_else(|| AddonError::Service {
        context: format!("creating the system user {name}"),
        message: "useradd succeeded but the user is not there".into(),
    })
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Gives `path` (recursively) to `uid:gid`.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::{chown, lchown};
    // A file that vanishes during the walk (a server of an earlier life still shutting
    // down removes its `postmaster.pid`) needs no owner.
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AddonError::io(format!("reading {}", path.display()))(e)),
    };
    if meta.file_type().is_symlink() {
        return lchown(path, Some(uid), Some(gid))
            .map_err(AddonError::io(format!("chown {}", path.display())));
    }
    match chown(path, Some(uid), Some(gid)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AddonError::io(format!("chown {}", path.display()))(e)),
    }
    if meta.is_dir() {
        for e in std::fs::read_dir(path)
            .map_err(AddonError::io(format!("reading {}", path.display())))?
        {
            let e = e.map_err(AddonError::io(format!("reading {}", path.display())))?;
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Runs a short admin command to its end; its stderr (or stdout) is the error.
pub async fn run_admin(
    context: &str,
    cmd: &mut tokio::process::Command,
    stdin: Option<&[u8]>,
) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(AddonError::io(context.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .map_err(AddonError::io(context.to_string()))?;
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| AddonError::Service {
        context: context.to_string(),
        message: "timed out after 120 s".into(),
    })?
    .map_err(AddonError::io(context.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = if stderr.trim().is_empty() {
            stdout.trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        Err(AddonError::Service {
            context: context.to_string(),
            message: msg,
        })
    }
}

/// A uid no other add-on has: the next from a counter kept in `<dir>/next-uid`.
pub fn allocate_uid(dir: &Path) -> Result<u32> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    crate::state::create_private_dir(dir)?;
    let file = dir.join("next-uid");
    let next = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(FIRST_ADDON_UID)
        .max(FIRST_ADDON_UID);
    let tmp = dir.join("next-uid.tmp");
    crate::state::write_private(&tmp, format!("{}\n", next + 1).as_bytes())?;
    std::fs::rename(&tmp, &file).map_err(AddonError::io("saving the add-on uid counter"))?;
    Ok(next)
}
