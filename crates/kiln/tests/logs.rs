//! Logplex, whole (issue 17): log drains. Each test starts its own receiver, which parses
//! what arrives with its own code (not Kiln's formatter): RFC 6587 octet counting, then the
//! RFC 5424 fields.

mod common;
#[path = "logs/rsyslog.rs"]
mod rsyslog;

use common::*;
use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One RFC 5424 message as a syslog drain receiver sees it.
#[derive(Debug, Clone)]
struct Syslog {
    pri: u32,
    hostname: String,
    app: String,
    procid: String,
    msg: String,
}

/// Parses `LEN SP MSG` frames from `buf`, leaving an incomplete one in place.
fn parse_frames(buf: &mut Vec<u8>, out: &mut Vec<Syslog>) {
    loop {
        let Some(sp) = buf.iter().position(|b| *b == b' ') else {
            return;
        };
        let len: usize = std::str::from_utf8(&buf[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "not an octet count: {:?}",
                    String::from_utf8_lossy(&buf[..sp.min(40)])
                )
            });
        if buf.len() < sp + 1 + len {
            return;
        }
        let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).expect("UTF-8");
        buf.drain(..sp + 1 + len);
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
        let (pri, rest) = msg
            .strip_prefix('<')
            .and_then(|m| m.split_once(">1 "))
            .unwrap_or_else(|| panic!("not RFC 5424: {msg}"));
        let f: Vec<&str> = rest.splitn(7, ' ').collect();
        assert_eq!(f.len(), 7, "{msg}");
        assert!(
            kiln_model::Timestamp::parse_rfc3339(f[0]).is_some(),
            "timestamp {:?} in {msg}",
            f[0]
        );
        assert_eq!((f[4], f[5]), ("-", "-"), "MSGID and SD are nil: {msg}");
        out.push(Syslog {
            pri: pri.parse().unwrap(),
            hostname: f[1].into(),
            app: f[2].into(),
            procid: f[3].into(),
            msg: f[6].into(),
        });
    }
}

/// A syslog receiver on `listener`: every message of every connection, in arrival order.
fn receive(listener: TcpListener) -> Arc<Mutex<Vec<Syslog>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let g = g.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            let mut parsed = Vec::new();
                            parse_frames(&mut buf, &mut parsed);
                            g.lock().unwrap().extend(parsed);
                        }
                    }
                }
            });
        }
    });
    got
}

fn printer_app(name: &str) -> std::path::PathBuf {
    fixture_repo(
        name,
        &[
            ("Procfile", "web: python3 -u server.py\n"),
            (
                "server.py",
                "import http.server, os\nfor i in range(1, 301):\n    print('boot line', i)\nhttp.server.HTTPServer(('', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
            ),
        ],
    )
}

fn token_of(s: &Server, app: &str) -> String {
    let drains = s
        .api("GET", &format!("/apps/{app}/log-drains"), None)
        .json();
    drains[0]["token"].as_str().unwrap().to_string()
}

#[test]
fn a_syslog_drain_receives_every_line_in_order_in_herokus_framing() {
    let s = Server::start("drain-syslog");
    s.ok(&["apps:create", "drained"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = receive(listener);
    let url = format!("syslog://127.0.0.1:{port}");
    let out = s.ok(&["drains:add", &url, "-a", "drained"]);
    assert_eq!(out, format!("Successfully added drain {url}\n"));
    let token = token_of(&s, "drained");
    assert!(token.starts_with("d."), "{token}");
    let out = s.ok(&["drains", "-a", "drained"]);
    assert_eq!(out, format!("=== Drains\n\n{url} ({token})\n"));

    let (ok, out) = s.push(&printer_app("drain-printer"), "drained");
    assert!(ok, "{out}");
    s.wait_for_app("drained", Duration::from_secs(60), "the web dyno", || {
        (s.get("drained", "/").status == 200).then_some(())
    });
    let lines = wait_for(
        Duration::from_secs(20),
        "300 boot lines at the drain",
        || {
            let g = got.lock().unwrap().clone();
            (g.iter().filter(|m| m.msg.starts_with("boot line ")).count() >= 300
                && g.iter().any(|m| m.procid == "router"))
            .then_some(g)
        },
    );
    // Every app line, once, in order, with Heroku's fields.
    let boot: Vec<&Syslog> = lines
        .iter()
        .filter(|m| m.msg.starts_with("boot line "))
        .collect();
    let numbers: Vec<u32> = boot
        .iter()
        .map(|m| m.msg["boot line ".len()..].parse().unwrap())
        .collect();
    assert_eq!(numbers, (1..=300).collect::<Vec<_>>());
    for m in &boot {
        assert_eq!(
            (
                m.pri,
                m.hostname.as_str(),
                m.app.as_str(),
                m.procid.as_str()
            ),
            (190, token.as_str(), "app", "web.1"),
            "{m:?}"
        );
    }
    let router = lines.iter().find(|m| m.procid == "router").unwrap();
    assert_eq!(
        (router.pri, router.app.as_str()),
        (158, "heroku"),
        "{router:?}"
    );
    assert!(
        router.msg.contains("path=\"/\"") && router.msg.contains("status=200"),
        "{router:?}"
    );
    // The platform's own lines about the app come too, and the stream's order is kept.
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|m| m.msg.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {lines:?}"))
    };
    assert!(pos("Deploy") < pos("Starting process with command"));
    assert!(pos("Starting process with command") < pos("boot line 1"));

    let out = s.ok(&["drains:remove", &token, "-a", "drained"]);
    assert_eq!(out, format!("Successfully removed drain {url}\n"));
    assert_eq!(
        s.ok(&["drains", "-a", "drained"]),
        "drained has no drains.\n"
    );
    // Removed means stopped: a new line no longer arrives.
    let before = got.lock().unwrap().len();
    assert_eq!(s.get("drained", "/after-removal").status, 404);
    wait_for(
        Duration::from_secs(10),
        "the router line in the app's log",
        || s.logs("drained").contains("/after-removal").then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        got.lock().unwrap()[before..]
            .iter()
            .all(|m| !m.msg.contains("/after-removal")),
        "a removed drain still received lines"
    );
}

#[test]
fn a_drain_that_is_down_drops_what_its_buffer_cannot_hold_and_says_exactly_how_many() {
    let s = Server::start("drain-down");
    s.ok(&["apps:create", "downdrain"]);
    let (ok, out) = s.push(&printer_app("drain-down-printer"), "downdrain");
    assert!(ok, "{out}");
    // A port nothing listens on yet.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    s.ok(&[
        "drains:add",
        &format!("syslog://127.0.0.1:{port}"),
        "-a",
        "downdrain",
    ]);
    let token = token_of(&s, "downdrain");
    // A second drain that is up, and a tail: neither may lose a line to the one that is down.
    let up_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up_listener.local_addr().unwrap().port();
    let up_got = receive(up_listener);
    s.ok(&[
        "drains:add",
        &format!("syslog://127.0.0.1:{up_port}"),
        "-a",
        "downdrain",
    ]);
    let tail = s.tail("downdrain", &["-n", "1"]);
    // Its first line (the history's last) says it is subscribed.
    tail.lines.recv_timeout(Duration::from_secs(10)).unwrap();
    // 1,400 lines while the drain is down: more than its buffer (1,024), fewer than the
    // app's history (1,500), so the history holds every line the drain was offered.
    // In groups of 100, 5 ms apart: a burst the drain that is up keeps up with (a burst past
    // a healthy drain's buffer in one go is dropped by it too, as Logplex's would be).
    let flood = "import time\n\
                 for g in range(14):\n    print('\\n'.join('flood %d' % (g * 100 + i) for i in range(1, 101)), flush=True)\n    time.sleep(0.005)\n";
    s.ok(&[
        "run:detached",
        "-a",
        "downdrain",
        "--",
        "python3",
        "-c",
        flood,
    ]);
    wait_for(Duration::from_secs(30), "the flood in the logs", || {
        s.logs("downdrain").contains("flood 1400").then_some(())
    });
    let flood_of = |msgs: Vec<String>| -> Vec<u32> {
        msgs.iter()
            .filter_map(|m| m.rsplit_once("flood ").and_then(|(_, n)| n.parse().ok()))
            .collect()
    };
    let every: Vec<u32> = (1..=1400).collect();
    let mut tailed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !tailed.iter().any(|l: &String| l.ends_with(": flood 1400")) {
        match tail.lines.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => tailed.push(l),
            Err(_) if std::time::Instant::now() > deadline => {
                panic!(
                    "flood 1400 not in the tail; it got {} lines: {:?}",
                    tailed.len(),
                    &tailed
                )
            }
            Err(_) => {}
        }
    }
    assert_eq!(flood_of(tailed), every, "the tail got every line, in order");
    drop(tail);
    let at_up = wait_for(
        Duration::from_secs(30),
        "flood 1400 at the drain that is up",
        || {
            let g = up_got.lock().unwrap().clone();
            g.iter().any(|m| m.msg == "flood 1400").then_some(g)
        },
    );
    assert_eq!(
        flood_of(at_up.into_iter().map(|m| m.msg).collect()),
        every,
        "the drain that is up got every line, in order"
    );

    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = receive(listener);
    let received = wait_for(Duration::from_secs(30), "the L10 line at the drain", || {
        let g = got.lock().unwrap().clone();
        g.iter().any(|m| m.msg.contains("Error L10")).then_some(g)
    });
    let l10 = received
        .iter()
        .find(|m| m.msg.contains("Error L10"))
        .unwrap();
    assert_eq!(
        (l10.app.as_str(), l10.procid.as_str(), l10.pri),
        ("heroku", "logplex", 172),
        "{l10:?}"
    );
    let dropped: usize = l10
        .msg
        .split_once(&format!("drain '{token}' dropped "))
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{l10:?}"));
    // What the drain was offered: every line of the stream from its own "Add drain" line on.
    let history = s.ok(&["logs", "-n", "1500", "-a", "downdrain"]);
    let hist: Vec<&str> = history.lines().collect();
    let from = hist
        .iter()
        .position(|l| l.contains("Add drain"))
        .expect(&history);
    let offered = hist[from..]
        .iter()
        .filter(|l| !l.contains("Error L10"))
        .count();
    let delivered: Vec<&Syslog> = received
        .iter()
        .take_while(|m| !m.msg.contains("Error L10"))
        .collect();
    assert_eq!(
        dropped + delivered.len(),
        offered,
        "dropped {dropped} + delivered {} != offered {offered}",
        delivered.len()
    );
    assert!(dropped > 0, "{dropped}");
    // What was delivered is in the stream's order, and the newest lines made it.
    let floods: Vec<u32> = delivered
        .iter()
        .filter_map(|m| m.msg.strip_prefix("flood ").and_then(|n| n.parse().ok()))
        .collect();
    assert!(floods.windows(2).all(|w| w[0] < w[1]), "{floods:?}");
    assert_eq!(floods.last(), Some(&1400));
    // The app's own stream says it too, as Heroku does.
    assert!(s.logs("downdrain").contains(&format!("heroku[logplex]: Error L10 (output buffer overflow): drain '{token}' dropped {dropped} messages since ")));

    // Another drain that is down, for what follows.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    s.ok(&[
        "drains:add",
        &format!("syslog://127.0.0.1:{dead}"),
        "-a",
        "downdrain",
    ]);
    // The app's requests through the router, while a drain is down and the app logs
    // 10,000 lines a second past its buffer: as fast as before, within a bound that
    // leaves room for a shared, noisy machine but not for requests waiting on the drain.
    let latencies = |n: usize| -> Duration {
        let mut v: Vec<Duration> = (0..n)
            .map(|_| {
                let t = std::time::Instant::now();
                assert_eq!(s.get("downdrain", "/").status, 200);
                t.elapsed()
            })
            .collect();
        v.sort();
        v[n / 2]
    };
    let before = latencies(100);
    let pace = "import time\n\
                for i in range(400):\n    print('\\n'.join('pace %d' % (i * 100 + j) for j in range(100)), flush=True)\n    time.sleep(0.01)\n";
    s.ok(&[
        "run:detached",
        "-a",
        "downdrain",
        "--",
        "python3",
        "-c",
        pace,
    ]);
    wait_for(Duration::from_secs(30), "the paced flood to start", || {
        s.logs("downdrain").contains(": pace ").then_some(())
    });
    let during = latencies(100);
    assert!(
        s.logs("downdrain").contains(": pace ") && !s.logs("downdrain").contains(": pace 39999"),
        "the flood went on while the requests were measured"
    );
    eprintln!("median request latency: {before:?} before, {during:?} during the flood");
    assert!(
        during <= before * 3 + Duration::from_millis(20),
        "median request latency {before:?} before, {during:?} while a drain was down"
    );
}

#[test]
fn drains_to_kiln_itself_to_metadata_addresses_or_by_other_schemes_are_refused() {
    let s = Server::start("drain-refused");
    s.ok(&["apps:create", "refuser"]);
    let api = s.api_port();
    for (url, expect) in [
        (format!("syslog://127.0.0.1:{api}"), "Kiln's own listener"),
        (format!("https://localhost:{api}/"), "Kiln's own listener"),
        (
            "https://169.254.169.254/latest/meta-data/".to_string(),
            "link-local",
        ),
        ("syslog://[fe80::1]:514".to_string(), "link-local"),
        ("syslog://0.0.0.0:514".to_string(), "unspecified"),
        (
            "http://logs.example.com/".to_string(),
            "not a drain transport",
        ),
        (
            "gopher://127.0.0.1:6379/_FLUSHALL".to_string(),
            "not a drain transport",
        ),
        ("file:///etc/passwd".to_string(), "Invalid drain URL"),
        ("syslog://logs.example.com".to_string(), "needs a port"),
        (
            "https://logs.example.com/\u{1b}[31m".to_string(),
            "control characters",
        ),
        (
            format!("https://logs.example.com/{}", "a".repeat(3000)),
            "longer than 2048",
        ),
    ] {
        let err = s.fails(&["drains:add", &url, "-a", "refuser"]);
        assert!(err.contains(expect), "{url}: {err}");
    }
    let r = s.api("POST", "/apps/refuser/log-drains", Some("{\"url\": 5}"));
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s.api("POST", "/apps/refuser/log-drains", Some("[]"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        s.ok(&["drains", "-a", "refuser"]),
        "refuser has no drains.\n"
    );
    // At most six drains, each URL once.
    for i in 0..6 {
        s.ok(&[
            "drains:add",
            &format!("syslog://127.0.0.1:{}", 40000 + i),
            "-a",
            "refuser",
        ]);
    }
    let err = s.fails(&["drains:add", "syslog://127.0.0.1:40000", "-a", "refuser"]);
    assert!(err.contains("already has a drain"), "{err}");
    let err = s.fails(&["drains:add", "syslog://127.0.0.1:40010", "-a", "refuser"]);
    assert!(err.contains("at most 6"), "{err}");
    let err = s.fails(&[
        "drains:remove",
        "d.00000000-0000-0000-0000-000000000000",
        "-a",
        "refuser",
    ]);
    assert!(err.contains("Couldn't find that log drain"), "{err}");
    // A password in a drain URL is shown once, when it is added, and masked after.
    s.ok(&["drains:remove", "syslog://127.0.0.1:40005", "-a", "refuser"]);
    let r = s.api(
        "POST",
        "/apps/refuser/log-drains",
        Some("{\"url\": \"https://user:s3cret@127.0.0.1:40020/logs\"}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["url"], "https://user:s3cret@127.0.0.1:40020/logs");
    let listed = s.ok(&["drains", "-a", "refuser"]);
    assert!(
        listed.contains("https://user:****@127.0.0.1:40020/logs") && !listed.contains("s3cret"),
        "{listed}"
    );
}

/// Acceptance 3: the history is on disk, comes back after a SIGKILL of the server, keeps
/// within its limits, and can be searched (`--since`, `--until`, `--grep`).
#[test]
fn the_history_survives_a_sigkill_keeps_its_limits_and_can_be_searched() {
    let flags = ["--log-history-lines", "200"];
    let mut s = Server::start_with("log-history", &flags);
    s.ok(&["apps:create", "histapp"]);
    let (ok, out) = s.push(&printer_app("history-printer"), "histapp");
    assert!(ok, "{out}");
    wait_for(Duration::from_secs(60), "boot line 300 in the logs", || {
        s.logs("histapp").contains("boot line 300").then_some(())
    });
    // No dyno after the restart: one booting again would log its boot lines anew while the
    // searches below look at the history.
    s.ok(&["ps:scale", "web=0", "-a", "histapp"]);
    s.crash_and_restart(&flags);
    let out = s.ok(&["logs", "-n", "1500", "-a", "histapp"]);
    assert!(out.contains("app[web.1]: boot line 300\n"), "{out}");
    // The newest 200 lines and no more: the first boot lines are gone.
    let n = out.lines().count();
    assert!((150..=200).contains(&n), "{n} lines:\n{out}");
    assert!(!out.contains("boot line 1\n"), "{out}");

    // --grep: a regular expression over the messages.
    let out = s.ok(&[
        "logs",
        "-n",
        "1000",
        "--grep",
        "^boot line (29[0-9]|300)$",
        "-a",
        "histapp",
    ]);
    let got: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit_once(": ").unwrap().1)
        .collect();
    let want: Vec<String> = (290..=300).map(|i| format!("boot line {i}")).collect();
    assert_eq!(got, want, "{out}");
    // --until a time before anything was logged: nothing; --since a minute ago: everything
    // kept; --since now: nothing yet.
    let out = s.ok(&["logs", "--until", "2020-01-01T00:00:00Z", "-a", "histapp"]);
    assert_eq!(out, "");
    let out = s.ok(&[
        "logs",
        "-n",
        "1000",
        "--since",
        "1h",
        "--grep",
        "boot line",
        "-a",
        "histapp",
    ]);
    assert!(out.lines().count() > 100, "{out}");
    let out = s.ok(&[
        "logs",
        "--since",
        "0s",
        "--grep",
        "boot line",
        "-a",
        "histapp",
    ]);
    assert_eq!(out, "");
    // Hostile searches are refused with a message.
    for (args, expect) in [
        (vec!["--grep", "("], "grep is not a regular expression"),
        (vec!["--since", "yesterday"], "is not an age"),
        (
            vec!["--since", "1h", "--until", "2h"],
            "until is before since",
        ),
    ] {
        let mut a = vec!["logs", "-a", "histapp"];
        a.extend(args);
        let err = s.fails(&a);
        assert!(err.contains(expect), "{a:?}: {err}");
    }
    let huge = format!("{}", "a".repeat(2000));
    let r = s.api(
        "POST",
        "/apps/histapp/log-sessions",
        Some(&format!("{{\"grep\": \"{huge}\"}}")),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    // The app's history goes with the app.
    s.ok(&["apps:destroy", "histapp", "--confirm", "histapp"]);
    let logs_dir = s.dir.join("data/logs");
    let left: Vec<_> = std::fs::read_dir(&logs_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    wait_for(Duration::from_secs(5), "the history files removed", || {
        std::fs::read_dir(&logs_dir)
            .map(|d| d.count() == 0)
            .unwrap_or(true)
            .then_some(())
    });
    let _ = left;
}

/// Acceptance 1 with a real receiver: rsyslog parses what a `syslog+tls://` drain sends,
/// the certificate verified against the CA the server was told to trust; a receiver whose
/// certificate no trusted CA signed gets nothing, and the app's log says why (Heroku's L14).
#[test]
fn rsyslog_receives_every_line_over_tls_and_an_untrusted_certificate_gets_l14() {
    let dir = temp_dir("drain-tls-material");
    let (ca, crt, key) = test_ca(&dir, "trusted");
    let (_, bad_crt, bad_key) = test_ca(&dir, "untrusted");
    let good = rsyslog::Rsyslog::start(&dir.join("good"), Some((&crt, &key)));
    let bad = rsyslog::Rsyslog::start(&dir.join("bad"), Some((&bad_crt, &bad_key)));
    let plain = rsyslog::Rsyslog::start(&dir.join("plain"), None);
    let s = Server::start_with("drain-tls", &["--drain-ca-file", ca.to_str().unwrap()]);
    s.ok(&["apps:create", "tlsdrained"]);
    for rs in [&good, &bad, &plain] {
        assert!(rs.url().starts_with("syslog"), "{}", rs.url());
        s.ok(&["drains:add", &rs.url(), "-a", "tlsdrained"]);
    }
    let drains = s.api("GET", "/apps/tlsdrained/log-drains", None).json();
    let token_for = |url: &str| {
        drains
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["url"] == url)
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ok, out) = s.push(&printer_app("drain-tls-printer"), "tlsdrained");
    assert!(ok, "{out}");
    for (rs, what) in [(&good, "TLS"), (&plain, "plain TCP")] {
        let got = rs.wait_until(
            Duration::from_secs(30),
            &format!("300 boot lines over {what}"),
            |m| m.iter().filter(|m| m.msg.starts_with("boot line ")).count() >= 300,
        );
        let token = token_for(&rs.url());
        let boot: Vec<&rsyslog::Message> = got
            .iter()
            .filter(|m| m.msg.starts_with("boot line "))
            .collect();
        for (i, m) in boot.iter().enumerate() {
            assert_eq!(m.msg, format!("boot line {}", i + 1), "{what}: order");
            assert_eq!(
                (
                    m.version,
                    m.pri,
                    m.hostname.as_str(),
                    m.app_name.as_str(),
                    m.procid.as_str(),
                    m.msgid.as_str(),
                    m.structured_data.as_str()
                ),
                (1, 190, token.as_str(), "app", "web.1", "-", "-"),
                "{what}: {m:?}"
            );
        }
        assert!(
            got.iter().any(|m| m.app_name == "heroku"
                && m.procid == "web.1"
                && m.msg.contains("Starting process")),
            "{what}"
        );
    }
    // The untrusted receiver: nothing arrives, and the app's stream says why.
    let logs = wait_for(Duration::from_secs(20), "the L14 line", || {
        let l = s.logs("tlsdrained");
        l.contains("Error L14 (certificate validation)")
            .then_some(l)
    });
    assert!(
        logs.contains(&format!("uri=\"syslog+tls://127.0.0.1:{}\"", bad.port())),
        "{logs}"
    );
    assert!(logs.contains("heroku[logplex]: Error L14"), "{logs}");
    assert!(bad.messages().is_empty(), "{:?}", bad.messages());
}

/// One POST an HTTPS drain receiver got.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

impl Post {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTPS receiver on 127.0.0.1: records every request; answers with `answers` in turn
/// (then 200 for good).
fn https_receiver(
    cert: &std::path::Path,
    key: &std::path::Path,
    answers: Vec<u16>,
) -> (u16, Arc<Mutex<Vec<Post>>>) {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::<Post>::new()));
    let answers = Arc::new(Mutex::new(std::collections::VecDeque::from(answers)));
    let g = got.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (config, g, answers) = (config.clone(), g.clone(), answers.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    // One request: the head, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let request_line = lines.next().unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(": "))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + 4 + len {
                        match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end + 4..head_end + 4 + len].to_vec();
                    buf.drain(..head_end + 4 + len);
                    let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                    g.lock().unwrap().push(Post {
                        path: request_line
                            .split(' ')
                            .nth(1)
                            .unwrap_or_default()
                            .to_string(),
                        headers,
                        body,
                        status,
                    });
                    let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                    if tls.write_all(reply.as_bytes()).is_err() || tls.flush().is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

/// `application/logplex-1` body: octet-counted `<PRI>1 TS host APP PROCID - MSG` messages.
fn parse_logplex_body(body: &[u8]) -> Vec<(u32, String, String, String, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ').expect("octet count");
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        let msg = std::str::from_utf8(&rest[sp + 1..sp + 1 + len]).unwrap();
        rest = &rest[sp + 1 + len..];
        let (pri, fields) = msg.strip_prefix('<').unwrap().split_once(">1 ").unwrap();
        let f: Vec<&str> = fields.splitn(6, ' ').collect();
        assert_eq!(f.len(), 6, "{msg}");
        assert!(
            kiln_model::Timestamp::parse_rfc3339(f[0]).is_some(),
            "{msg}"
        );
        assert_eq!(f[4], "-", "MSGID nil, no STRUCTURED-DATA: {msg}");
        out.push((
            pri.parse().unwrap(),
            f[1].to_string(),
            f[2].to_string(),
            f[3].to_string(),
            f[5].to_string(),
        ));
    }
    out
}

/// Acceptance 1, HTTPS: batches POSTed as Logplex does (headers, framing, Basic auth from the
/// URL), a 503 retried with the same frame id, a 400 dropped without retry and counted.
#[test]
fn an_https_drain_posts_logplex_frames_and_retries_as_logplex_does() {
    let dir = temp_dir("drain-https-material");
    let (ca, crt, key) = test_ca(&dir, "https");
    // The first batch is refused once with 503 (retried), the second for good with 400.
    let (port, got) = https_receiver(&crt, &key, vec![503, 200, 400]);
    let s = Server::start_with("drain-https", &["--drain-ca-file", ca.to_str().unwrap()]);
    s.ok(&["apps:create", "httpsdrained"]);
    let (ok, out) = s.push(&printer_app("drain-https-printer"), "httpsdrained");
    assert!(ok, "{out}");
    s.wait_for_app(
        "httpsdrained",
        Duration::from_secs(60),
        "the web dyno",
        || (s.get("httpsdrained", "/").status == 200).then_some(()),
    );
    let url = format!("https://logs%40user:p%3Ass@127.0.0.1:{port}/drain?x=1");
    s.ok(&["drains:add", &url, "-a", "httpsdrained"]);
    let token = token_of(&s, "httpsdrained");
    // Three batches' worth of traffic, one request at a time so they come in separate frames.
    for i in 0..3 {
        assert_eq!(s.get("httpsdrained", &format!("/batch-{i}")).status, 404);
        // The "Add drain" line's batch (refused once, then taken), then one at least per request.
        wait_for(
            Duration::from_secs(20),
            "the request's batch posted",
            || (got.lock().unwrap().len() >= i + 3).then_some(()),
        );
    }
    let posts = got.lock().unwrap().clone();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "logs@user:p:ss")
    );
    for p in &posts {
        assert_eq!(p.path, "/drain?x=1");
        assert_eq!(p.header("content-type"), Some("application/logplex-1"));
        assert_eq!(p.header("logplex-drain-token"), Some(token.as_str()));
        assert_eq!(p.header("authorization"), Some(auth.as_str()));
        let frames = parse_logplex_body(&p.body);
        assert_eq!(
            p.header("logplex-msg-count"),
            Some(frames.len().to_string().as_str()),
            "{p:?}"
        );
        for (_, host, app, _, _) in &frames {
            assert_eq!(host, "host");
            assert!(app == "app" || app == "heroku", "{app}");
        }
    }
    // The 503 was retried: same frame id, same body; the 400 was not.
    assert_eq!(posts[0].status, 503);
    assert_eq!(posts[1].status, 200);
    assert_eq!(
        posts[0].header("logplex-frame-id"),
        posts[1].header("logplex-frame-id")
    );
    assert_eq!(posts[0].body, posts[1].body);
    assert_eq!(posts[2].status, 400);
    assert_ne!(
        posts[2].header("logplex-frame-id"),
        posts[3].header("logplex-frame-id")
    );
    // The dropped batch is reported in the app's stream (L10) once a later one goes through.
    let dropped = parse_logplex_body(&posts[2].body).len();
    let logs = wait_for(Duration::from_secs(20), "the L10 line", || {
        let l = s.logs("httpsdrained");
        l.contains("Error L10").then_some(l)
    });
    assert!(
        logs.contains(&format!("drain '{token}' dropped {dropped} messages since")),
        "{logs}"
    );
}

/// Acceptance 5: a dyno writing a 100 MB line, binary garbage and ANSI escapes, then a
/// flood, while another app logs normally: the long line is cut into Logplex's 10,000-byte
/// pieces, garbage becomes U+FFFD, escapes pass as they are, the server's memory stays
/// bounded, and every line of the other app arrives, in its history and at its drain.
#[test]
fn hostile_output_is_cut_and_bounded_and_another_app_loses_nothing() {
    let s = Server::start("log-hostile");
    for app in ["loud", "quiet"] {
        s.ok(&["apps:create", app]);
        let (ok, out) = s.push(&printer_app(&format!("hostile-{app}")), app);
        assert!(ok, "{out}");
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = receive(listener);
    s.ok(&[
        "drains:add",
        &format!("syslog://127.0.0.1:{port}"),
        "-a",
        "quiet",
    ]);
    // The flood first: the history keeps the newest 1,500 lines, which must hold the rest.
    let loud = "import sys\n\
                w = sys.stdout.buffer.write\n\
                for i in range(200_000):\n    w(b'flood %d\\n' % i)\n\
                w(b'x' * 100_000_000 + b'\\n')\n\
                w(bytes(range(256)) * 50 + b'\\n')\n\
                w(b'\\x1b[31mred\\x1b[0m plain\\n')\n\
                w(b'loud done\\n')\n\
                sys.stdout.flush()\n";
    let quiet = "import time\nfor i in range(1, 501):\n    print('quiet', i, flush=True)\n    time.sleep(0.002)\n";
    s.ok(&["run:detached", "-a", "loud", "--", "python3", "-c", loud]);
    s.ok(&["run:detached", "-a", "quiet", "--", "python3", "-c", quiet]);

    let history = wait_for(
        Duration::from_secs(120),
        "quiet 500 in quiet's history",
        || {
            let h = s.ok(&["logs", "-n", "1500", "-a", "quiet"]);
            h.contains(": quiet 500\n").then_some(h)
        },
    );
    let quiet_lines: Vec<u32> = history
        .lines()
        .filter_map(|l| l.rsplit_once(": quiet ").and_then(|(_, n)| n.parse().ok()))
        .collect();
    assert_eq!(
        quiet_lines,
        (1..=500).collect::<Vec<_>>(),
        "every quiet line, in order"
    );
    let at_drain = wait_for(Duration::from_secs(30), "quiet 500 at the drain", || {
        let g = got.lock().unwrap().clone();
        g.iter().any(|m| m.msg == "quiet 500").then_some(g)
    });
    let drained: Vec<u32> = at_drain
        .iter()
        .filter_map(|m| m.msg.strip_prefix("quiet ").and_then(|n| n.parse().ok()))
        .collect();
    assert_eq!(drained, (1..=500).collect::<Vec<_>>());
    assert!(
        at_drain.iter().all(|m| !m.msg.contains("flood")),
        "loud's lines at quiet's drain"
    );

    wait_for(Duration::from_secs(180), "loud done", || {
        s.logs("loud").contains("loud done").then_some(())
    });
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", s.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kb < 400 * 1024,
        "the server holds {rss_kb} kB after a 100 MB line"
    );
    // The pieces of the long line, garbage and escapes, from the history on disk.
    let out = s.ok(&[
        "logs",
        "-n",
        "20000",
        "--grep",
        "^(x+|.*\u{fffd}.*|.*red.*)$",
        "-a",
        "loud",
    ]);
    let pieces: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once("]: ").map(|(_, m)| m))
        .collect();
    assert!(
        pieces
            .iter()
            .any(|m| m.contains("\u{1b}[31mred\u{1b}[0m plain")),
        "ANSI escapes kept"
    );
    // Garbage holds carriage returns, which the event stream carries as line breaks.
    assert!(
        out.contains('\u{fffd}'),
        "garbage replaced: {}",
        out.lines()
            .filter(|l| !l.contains("xxxx"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let xs: Vec<&&str> = pieces.iter().filter(|m| m.starts_with('x')).collect();
    assert!(
        !xs.is_empty() && xs.iter().all(|m| m.len() <= 10_000),
        "pieces of at most 10,000 bytes"
    );
}

/// `sample#NAME=VALUE` of a metrics line, as a number (units stripped).
fn sample(line: &str, name: &str) -> f64 {
    let v = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("sample#{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    v.trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
}

#[test]
fn log_runtime_metrics_log_each_dynos_load_and_memory_once_switched_on() {
    let s = Server::start_with("log-metrics", &["--runtime-metrics-interval", "1"]);
    s.ok(&["apps:create", "gauged"]);
    let (ok, out) = s.push(&printer_app("gauged"), "gauged");
    assert!(ok, "{out}");
    let labs = s.ok(&["labs", "-a", "gauged"]);
    assert!(labs.contains("[ ] log-runtime-metrics"), "{labs}");
    let e = s.fails(&["labs:enable", "no-such-feature", "-a", "gauged"]);
    assert!(e.contains("Couldn't find that feature"), "{e}");
    let e = s.fails(&["labs:disable", "preboot", "-a", "gauged"]);
    assert!(e.contains("cannot be turned off"), "{e}");

    let out = s.ok(&["labs:enable", "log-runtime-metrics", "-a", "gauged"]);
    assert!(
        out.contains("Enabling log-runtime-metrics for ⬢ gauged... done"),
        "{out}"
    );
    assert!(
        s.ok(&["labs", "-a", "gauged"])
            .contains("[+] log-runtime-metrics")
    );
    // As on Heroku, dynos started after the switch log their metrics.
    s.ok(&["ps:restart", "-a", "gauged"]);
    let (load, memory) = s.wait_for_app(
        "gauged",
        Duration::from_secs(60),
        "web.1's load and memory lines",
        || {
            let logs = s.logs("gauged");
            let pick = |what: &str| {
                logs.lines()
                    .rev()
                    .find(|l| {
                        l.contains("heroku[web.1]: source=web.1 dyno=heroku.") && l.contains(what)
                    })
                    .map(str::to_string)
            };
            Some((pick("sample#load_avg_1m=")?, pick("sample#memory_total=")?))
        },
    );
    for name in ["load_avg_1m", "load_avg_5m", "load_avg_15m"] {
        let v = sample(&load, name);
        assert!((0.0..64.0).contains(&v), "{name}={v}: {load}");
    }
    // A Python web server holds a few MB in RAM; its quota is its size's, 512 MB.
    let rss = sample(&memory, "memory_rss");
    assert!(rss > 1.0 && rss < 512.0, "{memory}");
    assert_eq!(sample(&memory, "memory_quota"), 512.0, "{memory}");
    assert!(sample(&memory, "memory_total") >= rss, "{memory}");
    for name in [
        "memory_cache",
        "memory_swap",
        "memory_pgpgin",
        "memory_pgpgout",
    ] {
        assert!(sample(&memory, name) >= 0.0, "{memory}");
    }
    assert!(
        memory.contains("MB sample#memory_pgpgin=")
            && memory.ends_with("sample#memory_quota=512.00MB"),
        "{memory}"
    );
    eprintln!("{load}\n{memory}");

    // Off again (who may switch is the tenancy matrix's: `manage`).
    s.ok(&["labs:disable", "log-runtime-metrics", "-a", "gauged"]);
    let r = s.api("GET", "/apps/gauged/features/log-runtime-metrics", None);
    assert_eq!(r.json()["enabled"], false, "{r:?}");
}
