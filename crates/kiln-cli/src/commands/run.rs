//! `run` and `run:detached`: one-off dynos. An attached run connects to the dyno's
//! `attach_url` (an HTTP upgrade to Kiln's framed attach protocol, [`kiln_model::attach`],
//! the codec the API's end uses too), relays stdin and output, and exits with the command's
//! exit status.

use super::{Ctx, app_label, resolve_app};
use crate::cli::AppFlags;
use crate::format::str_at;
use crate::transport::segment;
use anyhow::{Context, Result, anyhow, bail};
use kiln_model::attach::{self, ToClient, ToDyno};
use serde_json::{Map, Value, json};
use std::io::{Read, Write};

/// A command's own exit status, to be passed on as the CLI's.
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exited with status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

/// Joins arguments into one shell command, quoting those the shell would split or expand.
pub fn build_command(args: &[String]) -> String {
    if args.len() == 1 {
        return args[0].clone();
    }
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_env(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--env takes KEY=VALUE, not {p:?}"))?;
        kiln_model::config::validate_key(k).map_err(|e| anyhow!(e.message))?;
        m.insert(k.to_string(), json!(v));
    }
    Ok(m)
}

fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

pub async fn detached(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    args: &[String],
    env: &[String],
    size: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    if args.is_empty() {
        bail!("Usage: kiln run:detached -a APP COMMAND");
    }
    let command = build_command(args);
    let mut body = json!({ "command": command, "attach": false, "env": parse_env(env)? });
    if let Some(s) = size {
        body["size"] = json!(s);
    }
    ctx.action(&format!("Running `{command}` on {}", app_label(&app)))?;
    let dyno = match ctx
        .api()?
        .post(&format!("/apps/{}/dynos", segment(&app)), &body)
        .await
    {
        Ok(d) => d,
        Err(e) => return ctx.failed(e),
    };
    let name = str_at(&dyno, "/name").to_string();
    ctx.out(&format!(
        "done, {name}\nRun `kiln logs -a {app} -d {name}` to view the output.\n"
    ))
}

pub async fn attached(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    args: &[String],
    no_tty: bool,
    env: &[String],
    size: Option<&str>,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    if args.is_empty() {
        bail!("Usage: kiln run -a APP COMMAND (use `--` before a command with flags)");
    }
    let command = build_command(args);
    let tty = !no_tty && isatty(0) && isatty(1);
    let mut env = parse_env(env)?;
    if tty {
        env.insert(
            "TERM".into(),
            json!(std::env::var("TERM").unwrap_or_else(|_| "xterm".into())),
        );
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the struct we pass.
        if unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            env.insert("COLUMNS".into(), json!(ws.ws_col.to_string()));
            env.insert("LINES".into(), json!(ws.ws_row.to_string()));
        }
    }
    let mut body = json!({ "command": command, "attach": true, "force_no_tty": !tty, "env": env });
    if let Some(s) = size {
        body["size"] = json!(s);
    }
    let dyno = ctx
        .api()?
        .post(&format!("/apps/{}/dynos", segment(&app)), &body)
        .await?;
    let name = str_at(&dyno, "/name").to_string();
    let url = str_at(&dyno, "/attach_url").to_string();
    let _ = writeln!(
        ctx.io.stderr,
        "Running `{command}` on {}... up, {name}",
        app_label(&app)
    );
    let code = attach(ctx, &url, tty)?;
    if code == 0 {
        Ok(())
    } else {
        Err(ExitStatus(code.clamp(0, 255) as u8).into())
    }
}

/// Where `kiln run` attaches: the secret at the end of `attach_url` claims the dyno, through
/// Kiln's attach upgrade on the API this CLI talks to, whatever door `attach_url` names
/// (Heroku's `rendezvous://` when the server has its HTTPS listener, else the same upgrade).
fn kiln_attach_url(api: &str, attach_url: &str) -> Result<String> {
    let secret = attach_url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| anyhow!("the server answered an unusable attach URL {attach_url:?}"))?;
    Ok(format!("{}/attach/{secret}", api.trim_end_matches('/')))
}

/// Connects to `url` (`http://host:port/attach/<secret>`), relays until the dyno ends, and
/// returns its exit status.
fn attach(ctx: &mut Ctx<'_>, url: &str, tty: bool) -> Result<i32> {
    let api = crate::settings::api_url(ctx.env, None)?;
    let url = kiln_attach_url(&api.base, url)?;
    let url = url.as_str();
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("unsupported attach URL {url:?}"))?;
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut sock = std::net::TcpStream::connect(authority)
        .with_context(|| format!("connecting to the dyno at {authority}"))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: kiln-attach\r\n\r\n"
    )?;
    // Read the response head byte by byte so no frame data is consumed with it.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut b)? == 0 || head.len() > 16 * 1024 {
            bail!("the dyno's attach endpoint closed the connection");
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        let status = head.lines().next().unwrap_or("");
        bail!("could not attach to the dyno ({status})");
    }
    let _raw = if tty { RawMode::enable(0) } else { None };
    let mut to_dyno = sock.try_clone()?;
    std::thread::spawn(move || {
        // fd 0 directly: the CLI's main thread holds std's stdin lock for its whole life.
        // SAFETY: fd 0 stays open for the process's life; ManuallyDrop never closes it.
        let mut stdin = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(0)
        });
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = to_dyno.write_all(&ToDyno::StdinClosed.encode());
                    return;
                }
                Ok(n) => {
                    if to_dyno
                        .write_all(&ToDyno::Stdin(buf[..n].to_vec()).encode())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    loop {
        let mut h = [0u8; attach::HEADER_LEN];
        if sock.read_exact(&mut h).is_err() {
            bail!("the connection to the dyno closed before it finished");
        }
        let (kind, len) = attach::parse_header(h)
            .map_err(|e| anyhow!("the dyno broke the attach protocol: {e}"))?;
        let mut data = vec![0u8; len];
        sock.read_exact(&mut data)?;
        match ToClient::decode(kind, data)
            .map_err(|e| anyhow!("the dyno broke the attach protocol: {e}"))?
        {
            ToClient::Stdout(data) => {
                ctx.io.stdout.write_all(&data)?;
                ctx.io.stdout.flush()?;
            }
            ToClient::Stderr(data) => {
                ctx.io.stderr.write_all(&data)?;
                ctx.io.stderr.flush()?;
            }
            ToClient::Exit(code) => return Ok(code),
        }
    }
}

/// The local terminal in raw mode for the life of an interactive run (keys, Ctrl-C included,
/// go to the dyno's terminal); restored on drop.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enable(fd: i32) -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on a terminal descriptor with structs we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes saved above.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_the_shell() {
        let s = |v: &[&str]| build_command(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["bash"]), "bash");
        assert_eq!(s(&["echo hi && exit 3"]), "echo hi && exit 3");
        assert_eq!(s(&["sh", "-c", "exit 7"]), "sh -c 'exit 7'");
        assert_eq!(s(&["echo", "it's"]), "echo 'it'\\''s'");
        assert_eq!(s(&["python3", "-c", ""]), "python3 -c ''");
    }

    #[test]
    fn env_pairs() {
        assert!(parse_env(&["A=1".into(), "B=x=y".into()]).is_ok());
        assert!(parse_env(&["NOEQUALS".into()]).is_err());
        assert!(parse_env(&["BAD-KEY=1".into()]).is_err());
    }
}

#[cfg(test)]
mod attach_url_tests {
    use super::kiln_attach_url;

    #[test]
    fn the_secret_is_taken_from_either_door() {
        let secret = "0123abcd".repeat(8);
        for url in [
            format!("rendezvous://127.0.0.1:5443/{secret}"),
            format!("http://127.0.0.1:5000/attach/{secret}"),
            format!("rendezvous://localhost:5443/{secret}?x=1"),
        ] {
            assert_eq!(
                kiln_attach_url("http://127.0.0.1:5000/", &url).unwrap(),
                format!("http://127.0.0.1:5000/attach/{secret}")
            );
        }
        for bad in [
            "",
            "rendezvous://host:1/",
            "http://h/attach/a.b",
            "rendezvous://h/a%2F",
        ] {
            assert!(
                kiln_attach_url("http://127.0.0.1:5000", bad).is_err(),
                "{bad}"
            );
        }
    }
}
