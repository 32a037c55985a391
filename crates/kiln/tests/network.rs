//! Tenants apart on the network (issue 15): from inside a dyno of app A, app B's dynos and
//! add-on servers, Kiln's API, the host's own services and the cloud metadata address are out
//! of reach; A's own add-ons and an address outside the machine's dyno ranges (a server this
//! test starts in a network namespace of its own) are reachable. Every packet stays on this
//! machine.

mod common;

use common::*;
use std::process::Command;

/// A network namespace with a server on it, joined to the host by a veth pair; removed on drop.
struct OutsideServer {
    ns: String,
    host_link: String,
    server: std::process::Child,
    addr: String,
}

impl OutsideServer {
    fn start() -> OutsideServer {
        let id = std::process::id() % 200 + 20;
        let ns = format!("kiln-test-{}", std::process::id());
        let host_link = format!("kto{id}");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", "kto-peer", "netns", &ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("10.99.{id}.1/30"),
            "dev",
            &host_link,
        ]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.99.{id}.2/30"),
            "dev",
            "kto-peer",
        ]);
        ip(&["-n", &ns, "link", "set", "kto-peer", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "python3",
                "-m",
                "http.server",
                "8000",
                "--bind",
                &format!("10.99.{id}.2"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("10.99.{id}.2:8000");
        kiln_testkit::wait_for(
            std::time::Duration::from_secs(20),
            "the outside server",
            || std::net::TcpStream::connect(&addr).ok().map(|_| ()),
        );
        OutsideServer {
            ns,
            host_link,
            server,
            addr,
        }
    }
}

impl Drop for OutsideServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A script for a dyno: tries each `name=host:port`, prints `name open` or `name closed`.
const PROBE: &str = r#"
import socket, struct, sys
# GW: this dyno's default gateway, the host's end of its link.
gw = None
for line in open("/proc/net/route").read().splitlines()[1:]:
    f = line.split()
    if f[1] == "00000000":
        gw = socket.inet_ntoa(struct.pack("<L", int(f[2], 16)))
for spec in sys.argv[1:]:
    name, target = spec.split("=", 1)
    host, port = target.rsplit(":", 1)
    host = gw if host == "GW" else host
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(name, "open", flush=True)
    except Exception as e:
        print(name, "closed", type(e).__name__, flush=True)
"#;

/// The web process of app B says where it listens, from inside its dyno.
const WHERE: &str = "import socket, fcntl, struct, os\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', b'eth0'))[20:24])\n\
print('listening-at=%s:%s' % (ip, os.environ['PORT']), flush=True)\n";

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

#[test]
fn a_dyno_reaches_its_own_add_ons_and_the_outside_and_nothing_of_other_tenants() {
    if !kiln_runtime_is_container() {
        eprintln!("skipped: not root, dynos cannot be isolated here");
        return;
    }
    let outside = OutsideServer::start();
    let mut s = Server::start_with("network", &["--dyno-network", "auto"]);
    // The banner is written line by line: wait for the line that tells.
    let log = wait_for(
        std::time::Duration::from_secs(10),
        "the dyno network line",
        || {
            let log = s.server_log();
            log.contains("Dyno network:").then_some(log)
        },
    );
    assert!(
        log.contains("isolated"),
        "the server did not isolate dynos:\n{log}"
    );
    for app in ["net-a", "net-b"] {
        s.ok(&["apps:create", app]);
        s.ok(&["addons:create", "heroku-redis", "-a", app]);
    }
    let dir = fixture_repo(
        "net-app",
        &[
            (
                "Procfile",
                "web: python3 where.py && exec python3 -m http.server $PORT\n",
            ),
            ("where.py", WHERE),
            ("probe.py", PROBE),
            ("requirements.txt", ""),
        ],
    );
    for app in ["net-a", "net-b"] {
        let (ok, out) = s.push(&dir, app);
        assert!(ok, "{out}");
    }
    let b_dyno = s.wait_for_app(
        "net-b",
        std::time::Duration::from_secs(60),
        "net-b's dyno address",
        || {
            let logs = s.logs("net-b");
            logs.split("listening-at=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        },
    );
    let redis =
        |s: &Server, app: &str| host_of(s.ok(&["config:get", "REDIS_URL", "-a", app]).trim());
    let (a_redis, b_redis) = (redis(&s, "net-a"), redis(&s, "net-b"));
    let services = a_redis.rsplit_once(':').unwrap().0.to_string();
    // A service of the host's own, listening on every address: what a dyno must not reach.
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let hp = host_service.local_addr().unwrap().port();
    let targets = [
        ("own-redis", a_redis.clone()),
        ("outside", outside.addr.clone()),
        ("other-dyno", b_dyno.clone()),
        ("other-redis", b_redis.clone()),
        (
            "host-service-via-services-address",
            format!("{services}:{hp}"),
        ),
        ("host-service-via-gateway", format!("GW:{hp}")),
        ("host-loopback-api", format!("127.0.0.1:{}", s.api_port())),
        ("metadata", "169.254.169.254:80".into()),
    ];
    let args: Vec<String> = targets.iter().map(|(n, t)| format!("{n}={t}")).collect();
    let mut cmd = vec!["run", "-a", "net-a", "--", "python3", "probe.py"];
    cmd.extend(args.iter().map(String::as_str));
    let out = s.ok(&cmd);
    eprintln!("probe:\n{out}");
    let state = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no answer for {name}:\n{out}"))
    };
    assert_eq!(state("own-redis"), "open", "{out}");
    assert_eq!(state("outside"), "open", "{out}");
    for name in [
        "other-dyno",
        "other-redis",
        "host-service-via-services-address",
        "host-service-via-gateway",
        "host-loopback-api",
        "metadata",
    ] {
        assert_eq!(state(name), "closed", "{name} was reachable:\n{out}");
    }
    // The router still reaches both apps' dynos on their own networks.
    for app in ["net-a", "net-b"] {
        let r = s.get(app, "/where.py");
        assert_eq!(r.status, 200, "{app}: {r:?}");
    }

    // A crash, and a start where dynos cannot have networks (here: told so; in CI once, the
    // range was taken): the add-on URLs name the services address, so add-ons stay there
    // and the app keeps its Redis.
    s.crash_and_restart(&["--dyno-network", "off"]);
    let log = wait_for(
        std::time::Duration::from_secs(10),
        "the dyno network line",
        || {
            let log = s.server_log();
            log.contains("Dyno network:").then_some(log)
        },
    );
    assert!(
        log.contains(&format!("add-ons stay at {services}")),
        "{log}"
    );
    assert_eq!(redis(&s, "net-a"), a_redis, "the URL is unchanged");
    // The Redis of the crashed server's life may still be shutting down (and answering) while
    // the new one waits to bind its port: ask from a dyno until the new one answers.
    let probe = format!("own-redis={a_redis}");
    let mut last = String::new();
    wait_for(
        std::time::Duration::from_secs(60),
        "net-a's Redis to answer its dyno again",
        || {
            last = s.ok(&["run", "-a", "net-a", "--", "python3", "probe.py", &probe]);
            last.contains("own-redis open").then_some(())
        },
    );
    assert!(last.contains("own-redis open"), "{last}");
}

fn kiln_runtime_is_container() -> bool {
    // SAFETY: geteuid never fails.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
