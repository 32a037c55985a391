//! Dyno isolation, end to end (issue 3, acceptance 1, 2 and 4): real pushes, real container
//! dynos, and a small Python "probe" app whose endpoints report, as JSON, what a process can
//! see and do from inside its dyno. The test then checks those facts against the host's view
//! (host pids, uids, the server's data directory, the runtime's dyno specs).
//!
//! These run against the container runtime only (`--runtime container`, which needs root):
//! isolation is what is being proved, so a server that fell back to plain processes must fail
//! the test, not pass it vacuously. Each test runs its own server.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

/// The probe: every endpoint answers JSON that includes `dyno` (which dyno answered) and
/// reports outcomes as `"ok"` or the errno's name (`"EPERM"`, `"ENOENT"`, ...).
const PROBE_PY: &str = r#"
import ctypes, errno, json, os, platform, socket, subprocess, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
NR = {
    "x86_64": dict(init_module=175, finit_module=313, unshare=272, setns=308, clone3=435,
                   userfaultfd=323, keyctl=250, bpf=321, perf_event_open=298, process_vm_readv=310),
    "aarch64": dict(init_module=105, finit_module=273, unshare=97, setns=268, clone3=435,
                    userfaultfd=282, keyctl=219, bpf=280, perf_event_open=241, process_vm_readv=270),
}[platform.machine()]
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

def name(e):
    return errno.errorcode.get(e, str(e))

def attempt(f):
    """Runs f: "ok" if it worked, else the errno's name. Ints below 0 are libc failures."""
    try:
        r = f()
    except OSError as e:
        return name(e.errno)
    if isinstance(r, int) and r < 0:
        return name(ctypes.get_errno())
    return "ok"

def sys(nr, *args):
    return libc.syscall(ctypes.c_long(nr), *args)

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")

def status():
    out = {}
    for line in read("/proc/self/status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out

def facts():
    procs = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs.append([int(d), read("/proc/%s/cmdline" % d).replace("\0", " ").strip()])
            except OSError:
                pass
    mounts = [l.split()[1:4] for l in read("/proc/self/mounts").splitlines()]
    ps = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True)
    hn = subprocess.run(["hostname"], capture_output=True, text=True)
    return dict(uid=os.getuid(), euid=os.geteuid(), gid=os.getgid(), groups=os.getgroups(),
                pid=os.getpid(), hostname=socket.gethostname(), hostname_cmd=hn.stdout.strip(),
                cwd=os.getcwd(), status=status(), mounts=mounts, procs=procs,
                ps=ps.stdout, ps_status=ps.returncode,
                etc=sorted(os.listdir("/etc")), root=sorted(os.listdir("/")))

def thread_works():
    box = []
    t = threading.Thread(target=lambda: box.append(1))
    t.start(); t.join()
    return 0 if box else -1

def fork_works():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, st = os.waitpid(pid, 0)
    return 0 if os.WEXITSTATUS(st) == 7 else -1

def finit_module():
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return sys(NR["finit_module"], fd, b"", 0)
    finally:
        os.close(fd)

def setns():
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        return sys(NR["setns"], fd, 0)
    finally:
        os.close(fd)

def raw(family, proto):
    s = socket.socket(family, socket.SOCK_RAW, proto)
    s.close()

def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return 0 if r.returncode == 0 else -1

def syscalls():
    buf = ctypes.create_string_buffer(64)
    return dict(
        mount=attempt(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        mount_cmd=attempt(lambda: run(["mount", "-t", "tmpfs", "none", "/tmp"])),
        umount=attempt(lambda: libc.umount2(b"/app", 2)),
        chroot=attempt(lambda: os.chroot("/tmp")),
        setuid0=attempt(lambda: os.setuid(0)),
        setgid0=attempt(lambda: os.setgid(0)),
        su=attempt(lambda: run(["su", "-c", "true"])),
        init_module=attempt(lambda: sys(NR["init_module"], buf, ctypes.c_ulong(64), b"")),
        finit_module=attempt(finit_module),
        raw_packet=attempt(lambda: raw(socket.AF_PACKET, socket.htons(3))),
        raw_inet=attempt(lambda: raw(socket.AF_INET, socket.IPPROTO_ICMP)),
        raw_inet_raw=attempt(lambda: raw(socket.AF_INET, socket.IPPROTO_RAW)),
        unshare_user=attempt(lambda: sys(NR["unshare"], CLONE_NEWUSER)),
        unshare_net=attempt(lambda: sys(NR["unshare"], CLONE_NEWNET)),
        setns=attempt(setns),
        clone3=attempt(lambda: sys(NR["clone3"], None, 0)),
        userfaultfd=attempt(lambda: sys(NR["userfaultfd"], 1)),
        keyctl=attempt(lambda: sys(NR["keyctl"], 0, -3, 0)),
        bpf=attempt(lambda: sys(NR["bpf"], 0, None, 0)),
        fork=attempt(fork_works),
        thread=attempt(thread_works),
        tcp_socket=attempt(lambda: socket.socket().close()),
    )

def peer(pid):
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    buf = ctypes.create_string_buffer(8)
    local = iovec(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = iovec(0x400000, 8)
    return dict(
        kill=attempt(lambda: os.kill(pid, 0)),
        ptrace_attach=attempt(lambda: libc.ptrace(16, pid, None, None)),
        ptrace_seize=attempt(lambda: libc.ptrace(0x4206, pid, None, None)),
        mem=attempt(lambda: os.close(os.open("/proc/%d/mem" % pid, os.O_RDONLY))),
        environ=attempt(lambda: read("/proc/%d/environ" % pid)),
        process_vm_readv=attempt(lambda: sys(NR["process_vm_readv"], pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)),
        pidfd_open=attempt(lambda: os.close(os.pidfd_open(pid))),
    )

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        dyno = os.environ.get("DYNO")
        out = {"dyno": dyno}
        try:
            if u.path == "/facts":
                out.update(facts())
            elif u.path == "/syscalls":
                out.update(syscalls())
            elif u.path == "/stat":
                out["paths"] = {p: attempt(lambda p=p: os.stat(p)) for p in q.get("path", [])}
            elif u.path == "/write":
                # Only the named dyno writes: the router may hand the request to another.
                if q["dyno"][0] == dyno:
                    out["paths"] = {p: attempt(lambda p=p: write(p, dyno)) for p in q["path"]}
            elif u.path == "/read":
                out["paths"] = {p: attempt(lambda p=p: read(p)) for p in q["path"]}
            elif u.path == "/peer":
                out["pids"] = {p: peer(int(p)) for p in q["pid"]}
            else:
                out["hello"] = True
            code = 200
        except Exception as e:
            out["error"] = repr(e)
            code = 500
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass

print("probe listening on %s" % os.environ["PORT"], flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A server on the container runtime; fails (rather than skips) where that is impossible.
fn container_server(tag: &str) -> Server {
    let s = Server::start_with(tag, &["--runtime", "container"]);
    wait_for(
        Duration::from_secs(10),
        "the server to say it runs dynos in containers",
        || {
            s.server_log()
                .contains("Dyno runtime: container")
                .then_some(())
        },
    );
    s
}

/// Creates `app`, marks its processes with `marker`, sets `config` (`K=V`), pushes the probe
/// (plus `extra` files) and waits until it answers.
fn deploy_probe(s: &Server, app: &str, marker: &str, config: &[String], extra: &[(&str, &str)]) {
    s.ok(&["apps:create", app]);
    let mut set = vec![
        "config:set".to_string(),
        format!("KILN_TEST_MARKER={marker}"),
    ];
    set.extend(config.iter().cloned());
    set.extend(["-a".to_string(), app.to_string()]);
    s.ok(&set.iter().map(String::as_str).collect::<Vec<_>>());
    let mut files = vec![
        ("Procfile", "web: python3 probe.py\n"),
        ("requirements.txt", ""),
        ("probe.py", PROBE_PY),
    ];
    files.extend_from_slice(extra);
    let src = fixture_repo(&format!("probe-{app}"), &files);
    let (ok, out) = s.push(&src, app);
    assert!(ok, "push of {app} failed:\n{out}");
    s.wait_for_app(app, BOOT, &format!("{app} to answer"), || {
        (s.get(app, "/").status == 200).then_some(())
    });
}

/// GETs `path` until the answer comes from `dyno` (the router balances between dynos).
fn ask(s: &Server, app: &str, dyno: &str, path: &str) -> Value {
    s.wait_for_app(
        app,
        BOOT,
        &format!("{dyno} of {app} to answer {path}"),
        || {
            let r = s.get(app, path);
            if r.status != 200 {
                assert!(r.status != 500, "the probe failed on {path}: {}", r.body);
                return None;
            }
            let v = r.json();
            (v["dyno"] == dyno).then_some(v)
        },
    )
}

fn q(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_./".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/stat?path=a&path=b`, `/write?dyno=web.1&path=a` ...
fn query(endpoint: &str, key: &str, values: &[&str]) -> String {
    let qs: Vec<String> = values.iter().map(|v| format!("{key}={}", q(v))).collect();
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{}", qs.join("&"))
}

fn outcome<'a>(v: &'a Value, path: &str) -> &'a str {
    v["paths"][path]
        .as_str()
        .unwrap_or_else(|| panic!("no outcome for {path} in {v}"))
}

/// What the host knows about a process: its uid and, from its environment, its dyno.
fn host_uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no uid for pid {pid}"))
}

fn host_env(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        kv.strip_prefix(format!("{key}=").as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// The runtime's specs of the running dynos of `app_id`: (dyno name, container id). The
/// container id is the dyno's hostname.
fn dyno_specs(s: &Server, app_id: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(s.dir.join("data/run/dynos")) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("spec.json")) else {
            continue;
        };
        let Ok(spec) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if spec["app_id"] == app_id {
            out.push((
                spec["name"].as_str().unwrap_or("").to_string(),
                spec["id"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

fn app_id(s: &Server, app: &str) -> String {
    let r = s.api("GET", &format!("/apps/{app}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["id"].as_str().unwrap().to_string()
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Acceptance 1: identity, process view, hostname, working directory, read-only stack,
/// invisible host paths, and the privileged operations that must fail.
#[test]
fn inside_a_dyno_the_process_is_unprivileged_alone_and_on_a_read_only_stack() {
    let s = container_server("iso-inside");
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let data_dir = s.dir.join("data");
    deploy_probe(
        &s,
        "probe",
        &marker,
        &[format!("PROBE_DATA_DIR={}", data_dir.display())],
        &[],
    );
    let facts = ask(&s, "probe", "web.1", "/facts");
    let id = app_id(&s, "probe");
    let host_pids = dyno_processes(&marker);
    assert!(!host_pids.is_empty(), "no dyno processes on the host");

    // Not root: the app's own uid, no supplementary groups, no capabilities at all, no way
    // to gain any (no_new_privs), and under the seccomp filter.
    let uid = facts["uid"].as_u64().unwrap();
    assert_ne!(uid, 0, "{facts}");
    assert_eq!(facts["euid"], uid);
    assert_ne!(facts["gid"], 0);
    assert_eq!(facts["groups"], serde_json::json!([]), "{facts}");
    let st = &facts["status"];
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(st[cap], "0000000000000000", "{cap} not empty: {st}");
    }
    assert_eq!(st["NoNewPrivs"], "1", "{st}");
    assert_eq!(st["Seccomp"], "2", "no seccomp filter: {st}");
    // The host agrees about the uid.
    for pid in &host_pids {
        assert_eq!(host_uid(*pid) as u64, uid, "host pid {pid}");
    }

    // Only this dyno's processes: its init (PID 1), the command's shell and python, and
    // the `ps` that looked. Host pids (the server's, this test's) are not there.
    let procs = facts["procs"].as_array().unwrap();
    let pids: BTreeSet<u64> = procs.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert!(pids.contains(&1), "no PID 1: {procs:?}");
    assert!(
        procs.len() <= 6,
        "more processes than the dyno's own: {procs:?}"
    );
    assert!(
        facts["pid"].as_u64().unwrap() < 50,
        "not in its own PID namespace: {facts}"
    );
    for foreign in [s.pid() as u64, std::process::id() as u64] {
        assert!(
            !pids.contains(&foreign),
            "host pid {foreign} visible: {procs:?}"
        );
    }
    for p in procs {
        let cmd = p[1].as_str().unwrap();
        assert!(
            cmd.is_empty()
                || cmd.contains("dyno-helper")
                || cmd.contains("bash")
                || cmd.contains("probe.py")
                || cmd.starts_with("ps "),
            "unexpected process in the dyno: {p}"
        );
    }
    assert_eq!(facts["ps_status"], 0, "ps failed: {facts}");
    let ps_lines: Vec<&str> = facts["ps"].as_str().unwrap().lines().collect();
    assert!(
        ps_lines.len() <= 6 && ps_lines.iter().any(|l| l.contains("probe.py")),
        "ps: {ps_lines:?}"
    );
    assert!(
        ps_lines.iter().all(|l| !l.contains("kiln server")),
        "ps shows the server: {ps_lines:?}"
    );

    // The hostname is the dyno's container id, not the host's.
    let specs = dyno_specs(&s, &id);
    let web1: Vec<&String> = specs
        .iter()
        .filter(|(n, _)| n == "web.1")
        .map(|(_, i)| i)
        .collect();
    assert_eq!(web1.len(), 1, "{specs:?}");
    assert_eq!(facts["hostname"], *web1[0], "{facts}");
    assert_eq!(
        facts["hostname_cmd"], *web1[0],
        "`hostname` says otherwise: {facts}"
    );
    assert_ne!(facts["hostname"], host_hostname());

    // pwd is /app.
    assert_eq!(facts["cwd"], "/app");

    // The stack is read-only: mounted so (whatever the uid), and writes fail; the dyno's own
    // /app and /tmp are writable.
    let mounts = facts["mounts"].as_array().unwrap();
    let opts = |target: &str| -> String {
        mounts
            .iter()
            .rev()
            .find(|m| m[0] == target)
            .map(|m| m[2].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{target} not mounted: {mounts:?}"))
    };
    for ro in ["/", "/usr", "/etc/resolv.conf", "/proc/sys"] {
        assert!(
            opts(ro).split(',').any(|o| o == "ro"),
            "{ro} is not read-only: {}",
            opts(ro)
        );
    }
    for rw in ["/app", "/tmp"] {
        assert!(
            opts(rw).split(',').any(|o| o == "rw"),
            "{rw} is not writable: {}",
            opts(rw)
        );
    }
    let tag = format!("kiln-probe-{marker}");
    let targets: Vec<String> = [
        "/usr", "/usr/bin", "/etc", "", "/bin", "/lib", "/var", "/root",
    ]
    .iter()
    .map(|d| format!("{d}/{tag}"))
    .collect();
    let mut all: Vec<&str> = targets.iter().map(String::as_str).collect();
    let (app_file, tmp_file) = (format!("/app/{tag}"), format!("/tmp/{tag}"));
    all.push(&app_file);
    all.push(&tmp_file);
    let w = ask(
        &s,
        "probe",
        "web.1",
        &query("/write?dyno=web.1", "path", &all),
    );
    for t in &targets {
        assert_ne!(outcome(&w, t), "ok", "wrote {t}: {w}");
        assert!(!Path::new(t).exists(), "{t} appeared on the host");
    }
    assert_eq!(outcome(&w, &app_file), "ok", "{w}");
    assert_eq!(outcome(&w, &tmp_file), "ok", "{w}");
    assert!(
        !Path::new(&tmp_file).exists(),
        "the dyno's /tmp is the host's"
    );

    // Invisible: the Kiln data dir (the dyno learns its path from a config var), the host's
    // /root, shadow passwords, ssh keys, the host's /tmp and /home, this very test's files.
    assert_eq!(
        host_env(host_pids[0], "PROBE_DATA_DIR").as_deref(),
        Some(data_dir.to_str().unwrap())
    );
    let db = data_dir.join("kiln.db");
    let key = data_dir.join("admin-api-key");
    let hidden = [
        data_dir.to_str().unwrap(),
        db.to_str().unwrap(),
        key.to_str().unwrap(),
        s.dir.to_str().unwrap(),
        "/root",
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/ssh",
        "/etc/sudoers",
        "/home",
        "/var",
        "/run",
        "/sys",
        "/boot",
    ];
    let v = ask(&s, "probe", "web.1", &query("/stat", "path", &hidden));
    for p in hidden {
        assert_eq!(outcome(&v, p), "ENOENT", "{p} is visible in the dyno: {v}");
    }
    assert!(
        db.exists() && Path::new("/etc/shadow").exists(),
        "the hidden paths must exist on the host for this to mean anything"
    );
    let root: Vec<&str> = facts["root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !root.contains(&"root") && !root.contains(&"home"),
        "/: {root:?}"
    );
    let etc: Vec<&str> = facts["etc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !etc.contains(&"shadow") && etc.contains(&"passwd") && etc.contains(&"resolv.conf"),
        "/etc: {etc:?}"
    );

    // Privileged operations fail. Where the uid alone would not stop a call (user
    // namespaces, keyrings, userfaultfd, clone3), the seccomp filter does.
    let sc = ask(&s, "probe", "web.1", "/syscalls");
    for (call, allowed) in [
        ("mount", &["EPERM"][..]),
        ("umount", &["EPERM"]),
        ("chroot", &["EPERM"]),
        ("setuid0", &["EPERM"]),
        ("setgid0", &["EPERM"]),
        ("init_module", &["EPERM"]),
        ("finit_module", &["EPERM"]),
        ("raw_packet", &["EPERM"]),
        ("raw_inet", &["EPERM"]),
        ("raw_inet_raw", &["EPERM"]),
        ("unshare_user", &["EPERM"]),
        ("unshare_net", &["EPERM"]),
        ("setns", &["EPERM"]),
        ("keyctl", &["EPERM"]),
        ("userfaultfd", &["EPERM"]),
        ("bpf", &["EPERM"]),
        ("clone3", &["ENOSYS"]),
    ] {
        let got = sc[call]
            .as_str()
            .unwrap_or_else(|| panic!("{call} missing: {sc}"));
        assert!(
            allowed.contains(&got),
            "{call}: expected {allowed:?}, got {got} ({sc})"
        );
    }
    // The setuid-root `mount` and `su` binaries gain nothing (nosuid stack, no_new_privs).
    assert_ne!(sc["mount_cmd"], "ok", "{sc}");
    assert_ne!(sc["su"], "ok", "{sc}");
    // ... while ordinary process work still does.
    for call in ["fork", "thread", "tcp_socket"] {
        assert_eq!(sc[call], "ok", "{call} broke: {sc}");
    }
}

/// Acceptance 2: a file written in one dyno is invisible to every other dyno, and gone after
/// a restart. Also: dynos of the same app (same uid) cannot reach each other's processes.
#[test]
fn files_written_in_one_dyno_are_invisible_to_others_and_gone_after_restart() {
    let s = container_server("iso-ephemeral");
    let marker = uuid::Uuid::new_v4().simple().to_string();
    deploy_probe(&s, "eph", &marker, &[], &[]);
    s.ok(&["ps:scale", "web=2", "-a", "eph"]);
    wait_for(BOOT, "web.1 and web.2 up", || {
        let st = ps_states(&s.ok(&["ps", "-a", "eph"]));
        (st.contains(&("web.1".into(), "up".into())) && st.contains(&("web.2".into(), "up".into())))
            .then_some(())
    });
    let h1 = ask(&s, "eph", "web.1", "/facts")["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    let h2 = ask(&s, "eph", "web.2", "/facts")["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(h1, h2, "two dynos share a hostname");

    let tag = format!("ephemeral-{marker}");
    let files = [format!("/app/{tag}"), format!("/tmp/{tag}")];
    let paths: Vec<&str> = files.iter().map(String::as_str).collect();
    let w = ask(
        &s,
        "eph",
        "web.1",
        &query("/write?dyno=web.1", "path", &paths),
    );
    for p in &paths {
        assert_eq!(outcome(&w, p), "ok", "{w}");
    }
    // Web.1 sees its files ...
    let r1 = ask(&s, "eph", "web.1", &query("/read", "path", &paths));
    for p in &paths {
        assert_eq!(outcome(&r1, p), "ok", "{r1}");
    }
    // ... web.2 does not, and neither does the slug every dyno shares, nor the host's /tmp.
    let r2 = ask(&s, "eph", "web.2", &query("/read", "path", &paths));
    for p in &paths {
        assert_eq!(outcome(&r2, p), "ENOENT", "web.2 sees web.1's {p}: {r2}");
    }
    let slug_cache = s.dir.join("data/slug-cache");
    for e in std::fs::read_dir(&slug_cache).unwrap().flatten() {
        assert!(
            !e.path().join(&tag).exists(),
            "a dyno's write reached the shared slug {}",
            e.path().display()
        );
    }
    assert!(!Path::new(&paths[1]).exists());

    // Same app, same uid, separate dynos: web.1 cannot reach web.2's processes either.
    let web2_pids: Vec<i32> = dyno_processes(&marker)
        .into_iter()
        .filter(|p| host_env(*p, "DYNO").as_deref() == Some("web.2"))
        .collect();
    assert!(
        !web2_pids.is_empty(),
        "web.2's processes not found on the host"
    );
    let pid_strs: Vec<String> = web2_pids.iter().map(|p| p.to_string()).collect();
    let pid_refs: Vec<&str> = pid_strs.iter().map(String::as_str).collect();
    let peer = ask(&s, "eph", "web.1", &query("/peer", "pid", &pid_refs));
    assert_peer_unreachable(&peer, &pid_refs);

    // Restart web.1: its replacement starts from the slug again.
    s.ok(&["ps:restart", "web.1", "-a", "eph"]);
    let new_h1 = wait_for(BOOT, "a new web.1", || {
        let v = ask(&s, "eph", "web.1", "/facts");
        let h = v["hostname"].as_str().unwrap().to_string();
        (h != h1).then_some(h)
    });
    assert_ne!(new_h1, h2);
    let after = ask(&s, "eph", "web.1", &query("/read", "path", &paths));
    for p in &paths {
        assert_eq!(
            outcome(&after, p),
            "ENOENT",
            "{p} survived the restart: {after}"
        );
    }
    // The old dyno's writable layer is gone from the host too.
    wait_for(
        Duration::from_secs(20),
        "the old web.1's run directory to be removed",
        || (!s.dir.join("data/run/dynos").join(&h1).exists()).then_some(()),
    );
}

fn assert_peer_unreachable(peer: &Value, pids: &[&str]) {
    for pid in pids {
        let r = &peer["pids"][*pid];
        assert!(r.is_object(), "no result for {pid}: {peer}");
        for (what, got) in r.as_object().unwrap() {
            let got = got.as_str().unwrap();
            assert!(
                ["ESRCH", "EPERM", "ENOENT", "EACCES"].contains(&got),
                "{what} on pid {pid} gave {got}: {peer}"
            );
        }
        assert_eq!(r["kill"], "ESRCH", "{peer}");
        assert_eq!(r["mem"], "ENOENT", "{peer}");
    }
}

/// The unpacked slug directories of the app whose dynos run as `uid`.
fn slug_dirs_of_uid(s: &Server, uid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(s.dir.join("data/slug-cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(&format!("-{uid}"))
        })
        .collect()
}

/// Acceptance 4 (and the "other apps' files" part of 1): two apps run as different uids in
/// different PID namespaces; neither can signal, trace or read the other's processes or
/// memory, nor see its files.
#[test]
fn two_apps_cannot_signal_trace_or_read_each_other() {
    let s = container_server("iso-apps");
    let (ma, mb) = (
        uuid::Uuid::new_v4().simple().to_string(),
        uuid::Uuid::new_v4().simple().to_string(),
    );
    deploy_probe(&s, "alpha", &ma, &[], &[("alpha.txt", "alpha's file\n")]);
    deploy_probe(&s, "beta", &mb, &[], &[("beta.txt", "beta's secret\n")]);
    let (pa, pb) = (dyno_processes(&ma), dyno_processes(&mb));
    assert!(
        !pa.is_empty() && !pb.is_empty(),
        "dyno processes not found: {pa:?} {pb:?}"
    );
    let (ua, ub) = (host_uid(pa[0]), host_uid(pb[0]));
    assert!(
        ua != 0 && ub != 0 && ua != ub,
        "apps must run as distinct unprivileged uids: {ua} {ub}"
    );

    for (from, victims, victim_uid) in [("alpha", &pb, ub), ("beta", &pa, ua)] {
        let pid_strs: Vec<String> = victims.iter().map(|p| p.to_string()).collect();
        let pid_refs: Vec<&str> = pid_strs.iter().map(String::as_str).collect();
        // Kill(0), ptrace attach and seize, /proc/<pid>/mem and environ, process_vm_readv,
        // pidfd_open, all on the other app's host pids.
        let peer = ask(&s, from, "web.1", &query("/peer", "pid", &pid_refs));
        assert_peer_unreachable(&peer, &pid_refs);
        // Still alive, and unaffected.
        for pid in victims.iter() {
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} died"
            );
        }

        // The other app's files: its unpacked slug (and a file in it), the whole slug cache.
        let dirs = slug_dirs_of_uid(&s, victim_uid);
        assert!(!dirs.is_empty(), "no slug directory for uid {victim_uid}");
        let other = if from == "alpha" {
            "beta.txt"
        } else {
            "alpha.txt"
        };
        let mut paths: Vec<String> = vec![s.dir.join("data/slug-cache").display().to_string()];
        for d in &dirs {
            assert!(d.join(other).exists(), "{} lacks {other}", d.display());
            paths.push(d.display().to_string());
            paths.push(d.join(other).display().to_string());
            paths.push(d.join("probe.py").display().to_string());
        }
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let v = ask(&s, from, "web.1", &query("/stat", "path", &refs));
        for p in &refs {
            assert_eq!(outcome(&v, p), "ENOENT", "{from} sees {p}: {v}");
        }
        let own = ask(
            &s,
            from,
            "web.1",
            &query("/read", "path", &[&format!("/app/{other}")]),
        );
        assert_eq!(
            outcome(&own, &format!("/app/{other}")),
            "ENOENT",
            "{from}'s /app holds the other app's file: {own}"
        );
    }
    // Both still serve.
    assert_eq!(s.get("alpha", "/").status, 200);
    assert_eq!(s.get("beta", "/").status, 200);
}
