//! `kiln login`: checks an API key against `GET /account` and stores it in `~/.netrc` (the
//! Heroku CLI's place for it) and the API URL in the config file.

use super::Ctx;
use crate::api::Api;
use crate::format::str_at;
use crate::{netrc, settings};
use anyhow::{Context, Result, bail};

/// `kiln login`: on a terminal, asks for an email and password and makes a 30-day API key
/// with them (as `heroku login -i`); with `--email` the password comes from stdin; with
/// `--key`, or a key piped in, saves that key.
pub async fn login(
    ctx: &mut Ctx<'_>,
    api_url: Option<&str>,
    email: Option<&str>,
    key_mode: bool,
) -> Result<()> {
    let url = settings::api_url(ctx.env, api_url)?;
    let tty = ctx.env.stdin_is_tty();
    let key = if key_mode || (!tty && email.is_none()) {
        read_secret(ctx, "API key")?
    } else {
        let email = match email {
            Some(e) => e.to_string(),
            None => read_line(ctx, "Email")?,
        };
        let password = read_secret(ctx, "Password")?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
        let auth = Api::with_password(url.clone(), &email, &password)
            .post(
                "/oauth/authorizations",
                &serde_json::json!({
                    "description": format!("Kiln CLI login from {host}"),
                    "expires_in": 30 * 24 * 3600,
                    "scope": ["global"],
                }),
            )
            .await?;
        let token = str_at(&auth, "/access_token/token");
        if token.is_empty() {
            bail!("The API made no key for this login.");
        }
        token.to_string()
    };
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

/// A visible line typed at a prompt.
fn read_line(ctx: &mut Ctx<'_>, prompt: &str) -> Result<String> {
    write!(ctx.io.stderr, "{prompt}: ")?;
    ctx.io.stderr.flush()?;
    let mut line = String::new();
    ctx.io
        .stdin
        .read_line(&mut line)
        .with_context(|| format!("could not read the {} from stdin", prompt.to_lowercase()))?;
    let v = line.trim();
    if v.is_empty() {
        bail!("No {} given.", prompt.to_lowercase());
    }
    Ok(v.to_string())
}

/// One secret line from stdin: typed at a hidden prompt on a terminal, or piped
/// (`echo $KEY | kiln login`).
pub(crate) fn read_secret(ctx: &mut Ctx<'_>, what: &str) -> Result<String> {
    let tty = ctx.env.stdin_is_tty();
    if tty {
        write!(ctx.io.stderr, "{what}: ")?;
        ctx.io.stderr.flush()?;
    }
    let mut line = String::new();
    {
        let _echo = if tty { EchoOff::on_stdin() } else { None };
        ctx.io
            .stdin
            .read_line(&mut line)
            .with_context(|| format!("could not read the {} from stdin", what.to_lowercase()))?;
    }
    if tty {
        writeln!(ctx.io.stderr)?; // the Enter the person typed was not echoed
    }
    let value = line.trim_end_matches(['\n', '\r']);
    if what == "API key" {
        let key = value.trim();
        if key.is_empty() {
            bail!(
                "No API key given. Type it at the prompt, or pipe it in: echo \"$KEY\" | kiln login"
            );
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("That does not look like an API key: it contains spaces or control characters.");
        }
        return Ok(key.to_string());
    }
    if value.is_empty() {
        bail!("No {} given.", what.to_lowercase());
    }
    Ok(value.to_string())
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
