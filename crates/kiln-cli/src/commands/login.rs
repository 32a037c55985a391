//! `kiln login`: checks an API key against `GET /account` and stores it in `~/.netrc` (the
//! Heroku CLI's place for it) and the API URL in the config file.

use super::Ctx;
use crate::api::Api;
use crate::format::str_at;
use crate::{netrc, settings};
use anyhow::{Context, Result, bail};

pub async fn login(ctx: &mut Ctx<'_>, api_url: Option<&str>) -> Result<()> {
    let url = settings::api_url(ctx.env, api_url)?;
    let key = read_key(ctx)?;
    let api = Api::new(url.clone(), key.clone());
    let account = api.get("/account").await?;
    let email = str_at(&account, "/email");
    // netrc wants a login; the key alone identifies the account, so any name does.
    let login = if email.is_empty() { "kiln" } else { email };
    let Some(netrc_path) = settings::netrc_path(ctx.env) else {
        bail!("cannot save the key: HOME is not set")
    };
    netrc::write_entry(&netrc_path, &url.authority, login, &key)?;
    settings::store_api_url(ctx.env, &url)?;
    ctx.out(&format!("Logged in as {login}\n"))
}

/// One line from stdin: typed at a hidden prompt on a terminal, or piped
/// (`echo $KEY | kiln login`).
fn read_key(ctx: &mut Ctx<'_>) -> Result<String> {
    let tty = ctx.env.stdin_is_tty();
    if tty {
        write!(ctx.io.stderr, "API key: ")?;
        ctx.io.stderr.flush()?;
    }
    let mut line = String::new();
    {
        let _echo = if tty { EchoOff::on_stdin() } else { None };
        ctx.io
            .stdin
            .read_line(&mut line)
            .context("could not read the API key from stdin")?;
    }
    if tty {
        writeln!(ctx.io.stderr)?; // the Enter the person typed was not echoed
    }
    let key = line.trim();
    if key.is_empty() {
        bail!("No API key given. Type it at the prompt, or pipe it in: echo \"$KEY\" | kiln login");
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("That does not look like an API key: it contains spaces or control characters.");
    }
    Ok(key.to_string())
}

/// Turns terminal echo off while a secret is typed, and back on when dropped.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn on_stdin() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr only read and write the termios struct we pass, and fd 0
        // is either a terminal or the calls fail harmlessly.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(EchoOff { saved })
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `on_stdin`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}
