//! A real rsyslog receiver for the drain tests (issue 17): the parser that checks Kiln's
//! syslog drains is not Kiln's own nor the test's, but rsyslogd's (imtcp with RFC 6587 octet
//! counting, pmrfc5424), run privately in the foreground with its own config, work directory
//! and pid file under the test's directory. It never touches the system's log socket, the
//! kernel log or /var/log: the config loads imtcp and nothing else, and its one rule writes each
//! message, as a JSON object per line, to a file the test reads back.
//!
//! What rsyslog would change by default is turned off, so `msg` is what Kiln sent, byte for
//! byte: control characters are not escaped (rsyslog writes ESC as `#033`, TAB as `#011`
//! unless `parser.escapeControlCharactersOnReceive="off"`), a trailing LF is not dropped
//! (`parser.dropTrailingLFOnReception="off"`), and a message up to 64 KiB is not split
//! (the default `maxMessageSize` is 8 KiB: longer ones are cut, and the rest arrives as a
//! second, broken message). LF is not a frame delimiter (`disableLFDelimiter`): only
//! octet-counted frames (`LEN SP MSG`) make messages; lines sent with newline framing pile up
//! into one message at the connection's close, so a test that counts messages sees the mistake.
//! The main queue is direct: a message is in the file before rsyslogd reads the next frame.
//!
//! Needs the Debian packages rsyslog and, for TLS, rsyslog-openssl (test.sh installs them).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One RFC 5424 message as rsyslog parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The syslog protocol version rsyslog saw: 1 for RFC 5424. Anything else means rsyslog
    /// did not take it for RFC 5424 and fell back to its legacy parser.
    pub version: u32,
    pub pri: u32,
    /// TIMESTAMP as sent (rsyslog's RFC 3339 rendering keeps the fraction and the offset).
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    /// `-` when nil.
    pub msgid: String,
    /// `-` when nil.
    pub structured_data: String,
    pub msg: String,
    /// The whole syslog message as received (without the octet count).
    pub raw: String,
}

/// A private rsyslogd listening on 127.0.0.1, plain TCP or TLS; stopped when dropped.
pub struct Rsyslog {
    dir: PathBuf,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

const OUT: &str = "messages.jsonl";
const LOG: &str = "rsyslogd.log";

/// Where rsyslogd is: Debian puts it in /usr/sbin, which a non-root PATH may lack.
fn rsyslogd() -> PathBuf {
    let mut dirs = vec![PathBuf::from("/usr/sbin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "rsyslogd is not installed: test.sh installs it (apt-get install rsyslog rsyslog-openssl)"
            )
        })
}

/// Whether one of rsyslog's module directories (/usr/lib/<triplet>/rsyslog) has `file`.
fn has_rsyslog_module(file: &str) -> bool {
    let mut dirs = vec![PathBuf::from("/usr/lib/rsyslog")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("rsyslog")));
    }
    dirs.iter().any(|d| d.join(file).is_file())
}

/// The config: imtcp on 127.0.0.1:`port` (TLS through the OpenSSL driver, anonymous client
/// auth, when `tls` gives the certificate and key), every message to `OUT` as JSON.
fn config(dir: &Path, port: u16, tls: Option<(&Path, &Path)>) -> String {
    fn q(p: &Path) -> String {
        let s = p.to_str().expect("a UTF-8 path").to_string();
        assert!(
            !s.contains('"') && !s.contains('\\'),
            "a path rsyslog's config cannot quote: {s}"
        );
        s
    }
    let (driver, certs) = match tls {
        None => (String::new(), String::new()),
        Some((cert, key)) => (
            " streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\""
                .to_string(),
            format!(
                "\n      streamDriver.certFile=\"{}\" streamDriver.keyFile=\"{}\"",
                q(cert),
                q(key)
            ),
        ),
    };
    let work = q(&dir.join("work"));
    let out = q(&dir.join(OUT));
    format!(
        r#"# A private rsyslogd for Kiln's drain tests: no imuxsock, no imklog, one TCP input.
global(workDirectory="{work}" maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off"
       parser.dropTrailingLFOnReception="off")
main_queue(queue.type="Direct")
module(load="imtcp"{driver})
template(name="kiln_drain" type="list" option.jsonf="on") {{
  property(outname="version" name="protocol-version" format="jsonf" datatype="number")
  property(outname="pri" name="pri" format="jsonf" datatype="number")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}}
ruleset(name="drain") {{
  action(type="omfile" file="{out}" template="kiln_drain")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="drain"
      supportOctetCountedFraming="on" disableLFDelimiter="on"{certs})
"#
    )
}

/// Whether process `pid` holds a TCP socket listening on `port` (so the port is rsyslogd's,
/// not another process's that took it first: rsyslogd keeps running when it cannot bind).
fn listens(pid: u32, port: u16) -> bool {
    let Ok(tcp) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = f.get(9)?;
            (local_port == port && *f.get(3)? == "0A").then(|| format!("socket:[{inode}]"))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn rsyslog_libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGTERM: i32 = 15;

impl Rsyslog {
    /// Starts rsyslogd with its files under `dir` (created if missing; the caller removes
    /// it), on a free port of 127.0.0.1, plain TCP or, with `tls` = (certificate PEM, key
    /// PEM), TLS. Returns once rsyslogd itself listens on the port.
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Rsyslog {
        let bin = rsyslogd();
        if tls.is_some() {
            assert!(
                has_rsyslog_module("lmnsd_ossl.so"),
                "rsyslog's OpenSSL driver is not installed: test.sh installs it (apt-get install rsyslog-openssl)"
            );
        }
        if let Some((cert, key)) = tls {
            for p in [cert, key] {
                assert!(p.is_file(), "no such file: {}", p.display());
            }
        }
        std::fs::create_dir_all(dir.join("work")).unwrap();
        // A free port can be taken between our probe and rsyslogd's bind: try another then.
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = dir.join("rsyslog.conf");
            std::fs::write(&conf, config(dir, port, tls)).unwrap();
            let _ = std::fs::remove_file(dir.join(OUT));
            let log = std::fs::File::create(dir.join(LOG)).unwrap();
            let child = Command::new(&bin)
                .arg("-n")
                .arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("rsyslogd.pid"))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut r = Rsyslog {
                dir: dir.to_path_buf(),
                port,
                tls: tls.is_some(),
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let pid = r.child.as_ref().unwrap().id();
                if listens(pid, port) {
                    return r;
                }
                if let Ok(Some(status)) = r.child.as_mut().unwrap().try_wait() {
                    r.child = None;
                    panic!("rsyslogd exited at start ({status}):\n{}", r.log());
                }
                if r.log().contains("Address already in use") {
                    break; // Dropping r stops it; the next attempt picks another port.
                }
                if Instant::now() > deadline {
                    panic!(
                        "rsyslogd did not listen on 127.0.0.1:{port} within 10 s:\n{}",
                        r.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("rsyslogd could not bind a free port in 5 attempts")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The drain URL that sends to this receiver: `syslog://` or `syslog+tls://`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "syslog+tls" } else { "syslog" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// What rsyslogd said on stdout and stderr (its own errors: bad frames, TLS handshakes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(LOG)).unwrap_or_default()
    }

    /// Every message received so far, in arrival order (per connection: rsyslogd writes each
    /// before it reads the next frame). A line rsyslogd is still writing is left out. Bytes
    /// that are not UTF-8 (rsyslog passes them through unescaped) read as U+FFFD.
    pub fn messages(&self) -> Vec<Message> {
        let Ok(bytes) = std::fs::read(self.dir.join(OUT)) else {
            return Vec::new();
        };
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => &bytes[..=i],
            None => return Vec::new(),
        };
        complete
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = String::from_utf8_lossy(line);
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("rsyslog's output is not JSON ({e}): {line}"));
                let s = |k: &str| {
                    v[k].as_str()
                        .unwrap_or_else(|| panic!("no {k} in rsyslog's output: {line}"))
                        .to_string()
                };
                let n = |k: &str| {
                    v[k].as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or_else(|| panic!("no {k} in rsyslog's output: {line}"))
                };
                Message {
                    version: n("version"),
                    pri: n("pri"),
                    timestamp: s("timestamp"),
                    hostname: s("hostname"),
                    app_name: s("app_name"),
                    procid: s("procid"),
                    msgid: s("msgid"),
                    structured_data: s("structured_data"),
                    msg: s("msg"),
                    raw: s("raw"),
                }
            })
            .collect()
    }

    /// Polls `messages()` every 50 ms until `done` holds, and returns them; panics after
    /// `timeout` with what arrived and rsyslogd's log.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if done(got.as_slice()) {
                return got;
            }
            if Instant::now() > deadline {
                let last: Vec<&Message> = got.iter().rev().take(5).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what} at rsyslog: {} messages, the last {last:#?}\nrsyslogd's log:\n{}",
                    got.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    /// SIGTERM, then SIGKILL if rsyslogd has not exited within 5 s; reaps it either way.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe {
            rsyslog_libc_kill(child.id() as i32, SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
