//! An OCI bundle equivalent to a Kiln dyno, for `runc run` (and `crun run`).
//!
//! It mirrors what `kiln dyno-helper` builds (crates/kiln-runtime/src/helper.rs): the host's
//! system directories bind-mounted read-only (merged-/usr symlinks recreated as symlinks), the
//! same `/etc` entries bound read-only plus generated `passwd`/`group`/`hosts`, the slug at
//! `/app` under a per-container overlay, a per-container `/tmp` bind, its own `/proc`, a
//! minimal tmpfs `/dev` with `pts` and `shm`, a read-only root, the same `/proc` entries
//! masked or read-only; mount, PID, UTS, IPC and cgroup namespaces, and with `--network` a
//! network namespace (Kiln's dyno then also gets its veth pair, addresses and firewall leave);
//! the dyno's uid, no capabilities, `no_new_privs`, a seccomp deny list of the same system
//! calls as Kiln's (crates/kiln-runtime/src/seccomp.rs; Kiln's argument checks on `clone` and
//! `personality` and its foreign-ABI kill are left out); and a standard-1X dyno's limits
//! (512 MB soft / 1 GB hard memory, 256 pids, 1024 CPU shares).
//! The process is exactly what Kiln's init execs: `bash -c PRELUDE kiln-dyno CMD`.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// Kept in step with `STACK_DIRS` in crates/kiln-runtime/src/helper.rs.
pub const STACK_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Kept in step with `ETC_ENTRIES` in crates/kiln-runtime/src/helper.rs.
pub const ETC_ENTRIES: [&str; 22] = [
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "alternatives",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "bash.bashrc",
    "inputrc",
    "terminfo",
    "python3.11",
];

/// Kept in step with `PROC_READ_ONLY`, `PROC_MASKED_FILES` and `PROC_MASKED_DIRS` in helper.rs.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];
const PROC_MASKED: [&str; 9] = [
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "acpi",
    "asound",
    "scsi",
];

/// Kept in step with `rules()` in crates/kiln-runtime/src/seccomp.rs: (names, errno).
const SECCOMP_DENY: [(&[&str], u32); 2] = [
    (
        &[
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "unshare",
            "setns",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "quotactl",
            "quotactl_fd",
            "syslog",
            "bpf",
            "keyctl",
            "add_key",
            "request_key",
            "perf_event_open",
            "userfaultfd",
            "lookup_dcookie",
            "open_by_handle_at",
            "name_to_handle_at",
            "iopl",
            "ioperm",
        ],
        1, // EPERM
    ),
    (&["clone3"], 38), // ENOSYS
];

/// The standard-1X limits Kiln's dyno manager puts in every `DynoSpec` (kiln-dyno supervisor).
pub const MEMORY_SOFT: u64 = 512 * 1024 * 1024;
pub const MEMORY_HARD: u64 = 2 * MEMORY_SOFT;
pub const PIDS: u64 = 256;
pub const CPU_SHARES: u64 = 1024;

/// The read-only root shared by every container: mount points and symlinks only, plus the
/// generated `/etc` files. Returns the mounts that fill it.
pub struct Rootfs {
    pub path: PathBuf,
    mounts: Vec<Value>,
}

impl Rootfs {
    pub fn create(path: &Path, uid: u32) -> Result<Rootfs> {
        let mut mounts = Vec::new();
        std::fs::create_dir_all(path)?;
        for name in STACK_DIRS {
            let host = Path::new("/").join(name);
            let target = path.join(name);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    symlink(std::fs::read_link(&host)?, &target)
                        .with_context(|| format!("symlink {}", target.display()))?;
                }
                Ok(m) if m.is_dir() => {
                    std::fs::create_dir_all(&target)?;
                    mounts.push(bind(&host, &format!("/{name}"), false));
                }
                _ => {}
            }
        }
        let etc = path.join("etc");
        std::fs::create_dir_all(&etc)?;
        for name in ETC_ENTRIES {
            let host = Path::new("/etc").join(name);
            let Ok(meta) = std::fs::metadata(&host) else {
                continue;
            };
            let target = etc.join(name);
            if meta.is_dir() {
                std::fs::create_dir_all(&target)?;
            } else {
                std::fs::write(&target, b"")?;
            }
            mounts.push(bind(&host, &format!("/etc/{name}"), false));
        }
        std::fs::write(
            etc.join("passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/bash\ndyno:x:{uid}:{uid}:dyno:/app:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        )?;
        std::fs::write(
            etc.join("group"),
            format!("root:x:0:\ndyno:x:{uid}:\nnogroup:x:65534:\n"),
        )?;
        std::fs::write(etc.join("hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost\n")?;
        for d in ["app", "tmp", "proc", "dev"] {
            std::fs::create_dir_all(path.join(d))?;
        }
        Ok(Rootfs {
            path: path.to_path_buf(),
            mounts,
        })
    }
}

fn bind(host: &Path, dest: &str, writable: bool) -> Value {
    json!({
        "destination": dest,
        "type": "bind",
        "source": host,
        "options": ["rbind", if writable { "rw" } else { "ro" }, "nosuid", "nodev"],
    })
}

/// One container's bundle: `config.json` and its private overlay and `/tmp` directories.
pub struct Bundle {
    pub dir: PathBuf,
}

pub struct ContainerSpec<'a> {
    pub id: &'a str,
    pub slug: &'a Path,
    pub uid: u32,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// A network namespace of its own (as Kiln's isolated dynos have).
    pub network: bool,
}

impl Bundle {
    pub fn create(dir: &Path, rootfs: &Rootfs, spec: &ContainerSpec) -> Result<Bundle> {
        for sub in ["upper", "work", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        use std::os::unix::fs::{PermissionsExt, chown};
        std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        chown(dir.join("upper"), Some(spec.uid), Some(spec.uid))?;
        chown(dir.join("tmp"), Some(spec.uid), Some(spec.uid))?;

        let mut mounts = rootfs.mounts.clone();
        mounts.push(json!({
            "destination": "/app",
            "type": "overlay",
            "source": "overlay",
            "options": [
                "nosuid", "nodev",
                format!("lowerdir={}", spec.slug.display()),
                format!("upperdir={}", dir.join("upper").display()),
                format!("workdir={}", dir.join("work").display()),
            ],
        }));
        mounts.push(bind(&dir.join("tmp"), "/tmp", true));
        mounts.push(json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]}));
        mounts.push(json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "mode=755", "size=64k"]}));
        mounts.push(json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=620"]}));
        mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "nodev", "mode=1777", "size=64m"]}));

        let seccomp: Vec<Value> = SECCOMP_DENY.iter().map(|(names, errno)| json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno})).collect();
        let masked: Vec<String> = PROC_MASKED.iter().map(|p| format!("/proc/{p}")).collect();
        let read_only: Vec<String> = PROC_READ_ONLY
            .iter()
            .map(|p| format!("/proc/{p}"))
            .collect();
        let mut namespaces = vec![
            json!({"type": "pid"}),
            json!({"type": "mount"}),
            json!({"type": "uts"}),
            json!({"type": "ipc"}),
            json!({"type": "cgroup"}),
        ];
        if spec.network {
            namespaces.push(json!({"type": "network"}));
        }
        let linux = json!({
            "namespaces": namespaces,
            "cgroupsPath": format!("/kiln-bench/{}", spec.id),
            "resources": {
                "memory": {"limit": MEMORY_HARD, "reservation": MEMORY_SOFT},
                "pids": {"limit": PIDS},
                "cpu": {"shares": CPU_SHARES},
            },
            "maskedPaths": masked,
            "readonlyPaths": read_only,
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": seccomp},
        });
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": spec.uid, "gid": spec.uid},
                "args": spec.args,
                "env": spec.env,
                "cwd": "/app",
                "capabilities": {"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []},
                "noNewPrivileges": true,
            },
            "root": {"path": rootfs.path, "readonly": true},
            "hostname": spec.id,
            "mounts": mounts,
            "linux": linux,
        });
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
        })
    }

    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
