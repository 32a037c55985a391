//! `kiln dyno-helper SPEC`: the small, single-threaded program that turns a [`DynoSpec`] into
//! an isolated dyno, in the style of Firecracker's jailer.
//!
//! The server execs it (never forking itself); the helper then:
//! 1. makes itself die with the server (PDEATHSIG) and enters new mount, PID, UTS and IPC
//!    namespaces, and, when the dyno has a network of its own, a network namespace with a
//!    veth pair to the host, its dyno end made in there as `eth0` (see `netlink`);
//! 2. forks the dyno's init, PID 1 of the new PID namespace, and stays behind as the server's
//!    handle on the dyno: it forwards signals to init and exits with the dyno's status;
//! 3. init builds the dyno's root (read-only system directories, the app at `/app` under a
//!    per-dyno overlay, private `/tmp`, `/proc`, `/dev`), pivots into it, sets the hostname,
//!    drops to the app's uid with `no_new_privs`, forks the command through `bash -c`, then
//!    reaps zombies and forwards signals to every process of the dyno until the command ends.
//!
//! Setup errors are written to fd 3 (the status pipe); the server sees EOF on it, with nothing
//! written, exactly when the user's command has been exec'd.

use crate::sys::{self, SysError, SysResult};
use crate::{AppDir, DynoSpec, PRELUDE};
use std::ffi::CString;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

const STATUS_FD: libc::c_int = 3;

/// Signals forwarded to the whole dyno.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Host directories that make up the stack, mounted read-only. Merged-/usr symlinks
/// (`/bin -> usr/bin`) are recreated as symlinks.
const STACK_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The parts of the host's `/etc` a program needs (name resolution, TLS roots, the dynamic
/// linker, alternatives); everything else, notably `shadow` and `ssh`, stays invisible.
const ETC_ENTRIES: [&str; 24] = [
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
    // The stack's languages read their configuration here: PHP its php.ini and the
    // extensions' ini files, nginx its mime.types, Maven its m2.conf and settings, and each
    // JDK (`java-17-openjdk`, matched by prefix below) its security policy.
    "php",
    "nginx",
    "maven",
];

/// `/etc` entries made visible by prefix: each installed Python's `sitecustomize` and each
/// JDK's configuration, whatever their versions.
const ETC_PREFIXES: [&str; 2] = ["python3", "java-"];

/// Entry point; never returns.
pub fn main(args: &[String]) -> ! {
    // fd 3 must not leak into the dyno's command.
    // SAFETY: fcntl on an fd we own.
    unsafe {
        libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let code = match run(args) {
        Ok(code) => code,
        Err(msg) => {
            sys::write_fd(STATUS_FD, &format!("{msg}\n"));
            127
        }
    };
    std::process::exit(code)
}

fn run(args: &[String]) -> SysResult<i32> {
    let spec_path = args.first().ok_or("usage: kiln dyno-helper SPEC")?;
    let text = std::fs::read_to_string(spec_path)
        .map_err(|e| SysError::io(format!("reading {spec_path}"), e))?;
    let spec: DynoSpec = serde_json::from_str(&text)
        .map_err(|e| SysError::from(format!("parsing {spec_path}: {e}")))?;
    let run_dir = Path::new(spec_path)
        .parent()
        .ok_or("spec has no directory")?
        .to_path_buf();

    // SAFETY: prctl/getppid are plain syscalls. If the server is already gone, stop here.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            return Err("the server exited".into());
        }
    }
    crate::cgroup::join(&spec)?;
    let mask = block_signals();
    // A handle on the host's namespace, for the veth pair, before this process leaves it.
    let host_side = match &spec.net {
        Some(net) => Some(host_link(net)?),
        None => None,
    };
    // The cgroup namespace is entered after joining the dyno's cgroups: inside, they are `/`.
    let net_flag = if spec.net.is_some() {
        libc::CLONE_NEWNET
    } else {
        0
    };
    if let Err(e) = sys::unshare(
        libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWCGROUP
            | net_flag,
    ) {
        return Err(e);
    }
    if let (Some(net), Some(host_side)) = (&spec.net, host_side) {
        dyno_link(net, host_side)?;
    }

    let pty = if spec.tty {
        Some(open_pty(&spec)?)
    } else {
        None
    };
    // SAFETY: this process is single-threaded, so the child may do anything after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::last_os_error("fork"));
    }
    if pid == 0 {
        if let Some((master, _)) = pty {
            // SAFETY: init never touches the master side.
            unsafe {
                libc::close(master);
            }
        }
        let code = match init(&spec, &run_dir, &mask, pty.map(|(_, slave)| slave)) {
            Ok(code) => code,
            Err(msg) => {
                sys::write_fd(STATUS_FD, &format!("{msg}\n"));
                127
            }
        };
        // SAFETY: leave without running destructors shared with the parent.
        unsafe { libc::_exit(code) }
    }
    // SAFETY: closing our copy; init and the command hold theirs.
    unsafe {
        libc::close(STATUS_FD);
    }
    match pty {
        Some((master, slave)) => {
            // SAFETY: only the command's side keeps the slave open.
            unsafe {
                libc::close(slave);
            }
            Ok(relay_pty(pid, &mask, master))
        }
        None => Ok(supervise(pid, &mask)),
    }
}

/// Step 1b (in the host's namespace, before `unshare`): a netlink socket that stays bound to
/// the host's namespace after this process leaves it.
fn host_link(_net: &crate::DynoNet) -> SysResult<crate::netlink::Netlink> {
    crate::netlink::Netlink::open()
}

/// Step 1c (in the dyno's new namespace): the veth pair, made with its dyno end directly in
/// here as `eth0`; the host end addressed and up; `lo` and `eth0` up, `eth0` addressed, the
/// host's end the default route. When the dyno's last process ends, the namespace goes, and
/// the pair with it.
fn dyno_link(net: &crate::DynoNet, mut host_nl: crate::netlink::Netlink) -> SysResult<()> {
    use crate::netlink::{Netlink, index_of};
    let ns = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| SysError::io("opening the dyno's network namespace", e))?;
    let ns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns);
    if let Err(e) = host_nl.create_veth_into(&net.host_link, "eth0", ns_fd) {
        // A pair of the same name can outlive its dyno briefly (the kernel destroys a
        // namespace a little after its last process) or a crashed server: the name is this
        // server's (its range is claimed), so the old pair goes and the new one is made.
        let Ok(stale) = host_nl.index(&net.host_link) else {
            return Err(e);
        };
        let _ = host_nl.delete_link(stale);
        host_nl.create_veth_into(&net.host_link, "eth0", ns_fd)?;
    }
    let host = host_nl.index(&net.host_link)?;
    let configured = host_nl
        .add_address(host, net.host_addr, net.prefix)
        .and_then(|()| host_nl.link_up(host));
    if let Err(e) = configured {
        let _ = host_nl.delete_link(host);
        return Err(e);
    }
    drop(host_nl);
    let mut nl = Netlink::open()?;
    nl.link_up(index_of("lo")?)?;
    let eth0 = index_of("eth0")?;
    nl.add_address(eth0, net.dyno_addr, net.prefix)?;
    nl.link_up(eth0)?;
    nl.add_default_route(net.host_addr)?;
    Ok(())
}

/// Opens a pseudo-terminal sized from the spec's `COLUMNS`/`LINES`.
fn open_pty(spec: &DynoSpec) -> SysResult<(libc::c_int, libc::c_int)> {
    let env = |k: &str| {
        spec.env
            .iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.parse::<u16>().ok())
    };
    let ws = libc::winsize {
        ws_row: env("LINES").unwrap_or(24),
        ws_col: env("COLUMNS").unwrap_or(80),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two fds; the name buffer and termios are not requested.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    if r < 0 {
        return Err(SysError::last_os_error("openpty"));
    }
    // SAFETY: fcntl on fds we own; the master must not leak into the dyno.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Ok((master, slave))
}

/// The helper's loop for a dyno with a terminal: relay stdin (from the server) to the pty,
/// the pty to stdout, forward signals, and exit with init's status. `\x04` (EOF at a
/// terminal) is sent when the server closes stdin.
fn relay_pty(init_pid: libc::pid_t, mask: &libc::sigset_t, master: libc::c_int) -> i32 {
    // SAFETY: signalfd on our blocked set; poll/read/write on fds we own.
    unsafe {
        let sfd = libc::signalfd(-1, mask, libc::SFD_CLOEXEC);
        if sfd < 0 {
            return supervise(init_pid, mask);
        }
        let mut stdin_open = true;
        let mut master_open = true;
        let mut status: Option<i32> = None;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: sfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if stdin_open { 0 } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if master_open { master } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Once init is gone, drain what the terminal still holds, briefly.
            let timeout = if status.is_some() { 50 } else { -1 };
            let n = libc::poll(fds.as_mut_ptr(), 3, timeout);
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if n == 0 && status.is_some() {
                break;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                let mut si: libc::signalfd_siginfo = std::mem::zeroed();
                libc::read(
                    sfd,
                    &mut si as *mut _ as *mut libc::c_void,
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                );
                let sig = si.ssi_signo as libc::c_int;
                if sig == libc::SIGCHLD {
                    let mut st = 0;
                    if libc::waitpid(init_pid, &mut st, libc::WNOHANG) == init_pid {
                        status = Some(exit_code(st));
                    }
                } else {
                    libc::kill(init_pid, sig);
                }
            }
            if fds[1].revents != 0 {
                let r = libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
                if r <= 0 {
                    stdin_open = false;
                    libc::write(master, b"\x04".as_ptr() as *const libc::c_void, 1);
                } else {
                    write_all(master, &buf[..r as usize]);
                }
            }
            if fds[2].revents != 0 {
                let r = libc::read(master, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
                if r <= 0 {
                    // EIO: every process holding the terminal is gone.
                    master_open = false;
                } else {
                    write_all(1, &buf[..r as usize]);
                }
            }
            if status.is_some() && !master_open {
                break;
            }
        }
        match status {
            Some(code) => code,
            None => {
                let mut st = 0;
                libc::waitpid(init_pid, &mut st, 0);
                exit_code(st)
            }
        }
    }
}

fn write_all(fd: libc::c_int, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing a valid buffer.
        let w = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
        if w <= 0 {
            if w < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[w as usize..];
    }
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local; sigaction with a no-op handler so that the
    // signals count as handled (a PID-namespace init only receives handled signals).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
            libc::sigaddset(&mut set, *s);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop as *const () as usize;
            libc::sigaction(*s, &sa, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

extern "C" fn noop(_: libc::c_int) {}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// The helper's loop on the host side: forward signals to init, exit with its status.
fn supervise(init_pid: libc::pid_t, mask: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: waiting on our blocked set; siginfo is a local.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(mask, &mut info)
        };
        if sig == libc::SIGCHLD || sig < 0 {
            let mut status = 0;
            // SAFETY: reaping our only child.
            let r = unsafe { libc::waitpid(init_pid, &mut status, libc::WNOHANG) };
            if r == init_pid {
                return exit_code(status);
            }
            if r < 0 {
                return 255;
            }
        } else {
            // SAFETY: signalling our child.
            unsafe {
                libc::kill(init_pid, sig);
            }
        }
    }
}

/// PID 1 of the dyno: build the root, drop privileges, run the command, reap and forward.
fn init(
    spec: &DynoSpec,
    run_dir: &Path,
    mask: &libc::sigset_t,
    tty: Option<libc::c_int>,
) -> SysResult<i32> {
    // SAFETY: die with the helper.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    build_root(spec, run_dir)?;
    sys::sethostname(&spec.id)?;
    if let Some(uid) = spec.uid {
        give_stdio_pipes(uid)?;
    }
    crate::seccomp::drop_capabilities()?;
    if let Some(uid) = spec.uid {
        sys::drop_privileges(uid, uid)?;
        // Changing credentials clears the parent-death signal: set it again, or the dyno
        // would outlive a killed server.
        // SAFETY: plain prctl.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
    }
    sys::no_new_privs()?;
    crate::seccomp::apply_filter()?;

    let mut env: Vec<CString> = Vec::with_capacity(spec.env.len() + 3);
    let has = |k: &str| spec.env.iter().any(|(key, _)| key == k);
    let defaults = [
        ("HOME", "/app"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
    ];
    for (k, v) in defaults {
        if !has(k) {
            env.push(sys::cstr(&format!("{k}={v}"))?);
        }
    }
    for (k, v) in &spec.env {
        env.push(sys::cstr(&format!("{k}={v}"))?);
    }
    let argv = [
        sys::cstr("/bin/bash")?,
        sys::cstr("-c")?,
        sys::cstr(PRELUDE)?,
        sys::cstr("kiln-dyno")?,
        sys::cstr(&spec.command)?,
    ];

    // SAFETY: single-threaded; the child only execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(SysError::last_os_error("fork"));
    }
    if child == 0 {
        // SAFETY: restore default signal handling for the command, start its own session
        // (its own process group), exec. On failure report through the status pipe.
        unsafe {
            for s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
                libc::signal(*s, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_UNBLOCK, mask, std::ptr::null_mut());
            libc::setsid();
            if let Some(slave) = tty {
                // The terminal becomes the command's stdio and controlling terminal.
                libc::dup2(slave, 0);
                libc::dup2(slave, 1);
                libc::dup2(slave, 2);
                if slave > 2 {
                    libc::close(slave);
                }
                libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
            let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
            argv_p.push(std::ptr::null());
            let mut env_p: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
            env_p.push(std::ptr::null());
            libc::execve(argv_p[0], argv_p.as_ptr(), env_p.as_ptr());
            sys::write_fd(
                STATUS_FD,
                &format!("exec /bin/bash: {}\n", std::io::Error::last_os_error()),
            );
            libc::_exit(127);
        }
    }
    // SAFETY: init no longer needs the status pipe (the command's copy closes at exec), nor
    // the terminal, which is the command's.
    unsafe {
        libc::close(STATUS_FD);
        if let Some(slave) = tty {
            libc::close(slave);
        }
    }
    Ok(reap_and_forward(child, mask))
}

fn reap_and_forward(main: libc::pid_t, mask: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: see supervise.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(mask, &mut info)
        };
        if sig == libc::SIGCHLD || sig < 0 {
            loop {
                let mut status = 0;
                // SAFETY: reaping any child: PID 1 inherits every orphan of the dyno.
                let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if r <= 0 {
                    break;
                }
                if r == main {
                    // The command is the dyno: when it ends, so does everything else in it.
                    // SAFETY: kill(-1) from PID 1 reaches every other process of the namespace.
                    unsafe {
                        libc::kill(-1, libc::SIGKILL);
                        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
                    }
                    return exit_code(status);
                }
            }
        } else {
            // SAFETY: every process of the dyno gets the signal, as Heroku does on stop.
            unsafe {
                libc::kill(-1, sig);
            }
        }
    }
}

/// Hands the dyno's stdin, stdout and stderr pipes to the app's user. The server made them,
/// so they belong to root with mode 0600, and reopening one through `/dev/stdout` or
/// `/dev/stderr` (a link to `/proc/self/fd/N`, which opens the pipe anew and checks its
/// owner) failed with EACCES: nginx's `error_log /dev/stderr`, PHP-FPM, Apache and many
/// loggers died at boot. On Heroku that works. Only pipes and sockets are touched: each is
/// this dyno's own, whereas a character device such as `/dev/null` is shared with the host.
fn give_stdio_pipes(uid: u32) -> SysResult<()> {
    for fd in 0..=2 {
        // SAFETY: fstat fills a plain struct for an fd we hold; fchown changes the owner of
        // an anonymous pipe or socket inode that only this dyno holds.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                continue;
            }
            let kind = st.st_mode & libc::S_IFMT;
            if (kind == libc::S_IFIFO || kind == libc::S_IFSOCK) && libc::fchown(fd, uid, uid) != 0
            {
                return Err(SysError::last_os_error("fchown of the dyno's stdio"));
            }
        }
    }
    Ok(())
}

fn mkdir(p: &Path, mode: u32) -> SysResult<()> {
    std::fs::create_dir_all(p).map_err(|e| SysError::io(format!("mkdir {}", p.display()), e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SysError::io(format!("chmod {}", p.display()), e))
}

fn touch(p: &Path) -> SysResult<()> {
    std::fs::write(p, b"").map_err(|e| SysError::io(format!("creating {}", p.display()), e))
}

fn write(p: &Path, content: &str) -> SysResult<()> {
    std::fs::write(p, content).map_err(|e| SysError::io(format!("writing {}", p.display()), e))
}

/// Mounts `host` at `target` (relative to `root`) if it exists: directories and files alike.
fn bind_entry(host: &Path, target: &Path, writable: bool) -> SysResult<bool> {
    let Ok(meta) = std::fs::metadata(host) else {
        return Ok(false);
    };
    if meta.is_dir() {
        mkdir(target, 0o755)?;
    } else {
        if let Some(parent) = target.parent() {
            mkdir(parent, 0o755)?;
        }
        touch(target)?;
    }
    sys::bind(host, target, writable)?;
    Ok(true)
}

fn build_root(spec: &DynoSpec, run_dir: &Path) -> SysResult<()> {
    // Nothing mounted from here on may propagate back to the host.
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    let root = run_dir.join("root");
    mkdir(&root, 0o755)?;
    sys::mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=755,size=4m"),
    )?;

    for name in STACK_DIRS {
        let host = Path::new("/").join(name);
        let target = root.join(name);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&host)
                    .map_err(|e| SysError::io(format!("readlink {}", host.display()), e))?;
                symlink(&link, &target)
                    .map_err(|e| SysError::io(format!("symlink {}", target.display()), e))?;
            }
            Ok(m) if m.is_dir() => {
                mkdir(&target, 0o755)?;
                sys::bind(&host, &target, false)?;
            }
            _ => {}
        }
    }

    let etc = root.join("etc");
    mkdir(&etc, 0o755)?;
    let own_resolv = spec.net.as_ref().and_then(|n| n.resolv_conf.as_deref());
    for name in ETC_ENTRIES {
        if name == "resolv.conf" {
            if let Some(text) = own_resolv {
                write(&etc.join(name), text)?;
                continue;
            }
        }
        bind_entry(&Path::new("/etc").join(name), &etc.join(name), false)?;
    }
    if let Ok(entries) = std::fs::read_dir("/etc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if ETC_PREFIXES.iter().any(|p| name.starts_with(p)) {
                bind_entry(&entry.path(), &etc.join(name), false)?;
            }
        }
    }
    let (uid, user) = match spec.uid {
        Some(uid) => (uid, "dyno"),
        None => (0, "root"),
    };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/bash\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!("{user}:x:{uid}:{uid}:{user}:/app:/bin/bash\n"));
        group.push_str(&format!("{user}:x:{uid}:\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    write(&etc.join("passwd"), &passwd)?;
    write(&etc.join("group"), &group)?;
    write(&etc.join("hostname"), &format!("{}\n", spec.id))?;
    write(
        &etc.join("hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{}\n",
            spec.id
        ),
    )?;

    // /app: the slug under a private overlay, or a writable build directory.
    let app = root.join("app");
    mkdir(&app, 0o755)?;
    match &spec.app_dir {
        AppDir::Slug(slug) => {
            let upper = run_dir.join("upper");
            let work = run_dir.join("work");
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                slug.display(),
                upper.display(),
                work.display()
            );
            if opts.contains(',')
                && [slug, &upper, &work]
                    .iter()
                    .any(|p| p.to_string_lossy().contains(','))
            {
                return Err("overlay paths must not contain ','".into());
            }
            // `volatile` spares every dyno exit a sync of the host's filesystem; the upper
            // layer is thrown away with the dyno anyway (and never reused after a crash).
            // Kernels before 5.10 do not know the option: mount without it there.
            let volatile = format!("{opts},volatile");
            if sys::mount(
                Some("overlay"),
                &app,
                Some("overlay"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&volatile),
            )
            .is_err()
            {
                sys::mount(
                    Some("overlay"),
                    &app,
                    Some("overlay"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(&opts),
                )?;
            }
        }
        AppDir::Writable(dir) => sys::bind(dir, &app, true)?,
    }
    for b in &spec.binds {
        let rel = b.target.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
            return Err(format!("invalid bind target {:?}", b.target).into());
        }
        if !bind_entry(&b.host, &root.join(rel), b.writable)? {
            return Err(format!("bind source {} does not exist", b.host.display()).into());
        }
    }

    let tmp = root.join("tmp");
    mkdir(&tmp, 0o1777)?;
    sys::bind(&run_dir.join("tmp"), &tmp, true)?;

    let proc_dir = root.join("proc");
    mkdir(&proc_dir, 0o555)?;
    sys::mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    mask_proc(&proc_dir)?;

    build_dev(&root.join("dev"))?;

    sys::pivot_to(&root)?;
    // The skeleton itself is read-only; /app, /tmp and /dev are their own mounts.
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )?;
    std::env::set_current_dir("/app").map_err(|e| SysError::io(format!("chdir /app"), e))?;
    Ok(())
}

/// `/proc` entries that belong to the whole kernel, not to the dyno's PID namespace: made
/// read-only (sysctls, the SysRq trigger, IRQ and bus settings), or hidden behind `/dev/null`
/// and an empty read-only tmpfs (kernel memory, keyrings, timers and scheduler state of
/// every task on the host). The app's uid could write few of them anyway; this keeps them
/// shut for a dyno running as uid 0 too, and stops the information leaks. Docker's list.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];
const PROC_MASKED_FILES: [&str; 6] = [
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];
const PROC_MASKED_DIRS: [&str; 3] = ["acpi", "asound", "scsi"];

fn mask_proc(proc_dir: &Path) -> SysResult<()> {
    let locked = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for name in PROC_READ_ONLY {
        let p = proc_dir.join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            let s = p.to_str().ok_or("non-UTF-8 /proc path")?;
            sys::mount(Some(s), &p, None, libc::MS_BIND | libc::MS_REC, None)?;
            sys::mount(
                None,
                &p,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                None,
            )?;
        }
    }
    for name in PROC_MASKED_FILES {
        let p = proc_dir.join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            sys::mount(Some("/dev/null"), &p, None, libc::MS_BIND, None)?;
        }
    }
    for name in PROC_MASKED_DIRS {
        let p = proc_dir.join(name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            sys::mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                libc::MS_RDONLY | locked,
                Some("size=4k,mode=555"),
            )?;
        }
    }
    Ok(())
}

fn build_dev(dev: &Path) -> SysResult<()> {
    mkdir(dev, 0o755)?;
    sys::mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=755,size=64k"),
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        touch(&target)?;
        let host = PathBuf::from("/dev").join(name);
        let host_s = host.to_str().unwrap_or("/dev/null");
        sys::mount(Some(host_s), &target, None, libc::MS_BIND, None)?;
    }
    let pts = dev.join("pts");
    mkdir(&pts, 0o755)?;
    sys::mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    symlink("pts/ptmx", dev.join("ptmx")).map_err(|e| SysError::io(format!("symlink ptmx"), e))?;
    let shm = dev.join("shm");
    mkdir(&shm, 0o1777)?;
    sys::mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777,size=64m"),
    )?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name))
            .map_err(|e| SysError::io(format!("symlink /dev/{name}"), e))?;
    }
    Ok(())
}
