//! Where the CLI finds its API and its key.
//!
//! - API URL: `KILN_API_URL`, else the one `kiln login` stored in
//!   `$XDG_CONFIG_HOME/kiln/config.json` (default `~/.config/kiln/config.json`), else
//!   `http://127.0.0.1:5000`.
//! - API key: `KILN_API_KEY`, else the password of `machine <host:port>` in `~/.netrc`, which
//!   is where the Heroku CLI keeps its key, so one login serves both tools.

use crate::context::Env;
use crate::netrc;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use std::fs;
use std::path::PathBuf;

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:5000";

/// A checked API base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// Without a trailing slash, so paths (`/apps`) can be appended.
    pub base: String,
    /// `host:port` as written, which is also the netrc machine name (as in the Heroku CLI).
    pub authority: String,
}

impl ApiUrl {
    pub fn parse(raw: &str) -> Result<ApiUrl> {
        let trimmed = raw.trim().trim_end_matches('/');
        let uri: http::Uri = trimmed.parse().with_context(|| {
            format!("Invalid API URL {raw:?}: expected something like {DEFAULT_API_URL}")
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "Invalid API URL {raw:?}: https is not supported by this kiln CLI yet; use http:// (for a remote server, through a tunnel or forwarder on 127.0.0.1)"
            ),
            _ => bail!("Invalid API URL {raw:?}: it must start with http://"),
        }
        let Some(authority) = uri.authority() else {
            bail!("Invalid API URL {raw:?}: it has no host")
        };
        if authority.as_str().contains('@') || uri.query().is_some() {
            bail!("Invalid API URL {raw:?}: credentials and query strings do not belong in it");
        }
        Ok(ApiUrl {
            base: trimmed.to_string(),
            authority: authority.as_str().to_string(),
        })
    }

    /// The URL of an API path such as `/apps/foo`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// `$XDG_CONFIG_HOME/kiln/config.json`, or `~/.config/kiln/config.json`.
pub fn config_path(env: &Env) -> Option<PathBuf> {
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    let base = match env.var("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => env.home()?.join(".config"),
    };
    Some(base.join("kiln").join("config.json"))
}

pub fn netrc_path(env: &Env) -> Option<PathBuf> {
    env.home().map(|h| h.join(".netrc"))
}

fn read_config(env: &Env) -> Result<Map<String, Value>> {
    let Some(path) = config_path(env) else {
        return Ok(Map::new());
    };
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => bail!(
            "{} is not a JSON object; fix or delete it (then run `kiln login` again)",
            path.display()
        ),
    }
}

/// The API URL `kiln login` stored, if any.
pub fn stored_api_url(env: &Env) -> Result<Option<String>> {
    Ok(read_config(env)?
        .get("api_url")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Saves the API URL in the config file, keeping any other settings in it.
pub fn store_api_url(env: &Env, url: &ApiUrl) -> Result<PathBuf> {
    let Some(path) = config_path(env) else {
        bail!("cannot tell where to save settings: HOME is not set")
    };
    let mut config = read_config(env)?;
    config.insert("api_url".into(), Value::String(url.base.clone()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(config))? + "\n";
    fs::write(&path, text).with_context(|| format!("could not write {}", path.display()))?;
    Ok(path)
}

/// The API URL to use: an explicit one (`--api-url`), else the environment, else stored, else
/// the default.
pub fn api_url(env: &Env, explicit: Option<&str>) -> Result<ApiUrl> {
    if let Some(url) = explicit {
        return ApiUrl::parse(url);
    }
    if let Some(url) = env.var("KILN_API_URL") {
        return ApiUrl::parse(url).context("in KILN_API_URL");
    }
    match stored_api_url(env)? {
        Some(url) => ApiUrl::parse(&url)
            .with_context(|| format!("in {}", config_path(env).unwrap_or_default().display())),
        None => ApiUrl::parse(DEFAULT_API_URL),
    }
}

/// The API key for `url`, if there is one.
pub fn api_key(env: &Env, url: &ApiUrl) -> Result<Option<String>> {
    if let Some(key) = env.var("KILN_API_KEY") {
        return Ok(Some(key.trim().to_string()));
    }
    match netrc_path(env) {
        Some(path) => netrc::read_password(&path, &url.authority),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_urls() {
        let u = ApiUrl::parse("http://127.0.0.1:5000/").unwrap();
        assert_eq!(u.base, "http://127.0.0.1:5000");
        assert_eq!(u.authority, "127.0.0.1:5000");
        assert_eq!(u.join("/apps"), "http://127.0.0.1:5000/apps");
        assert_eq!(
            ApiUrl::parse("http://paas.local/api")
                .unwrap()
                .join("/apps"),
            "http://paas.local/api/apps"
        );
        for bad in [
            "",
            "127.0.0.1:5000",
            "ftp://x",
            "https://x",
            "http://u:p@x",
            "http://x/?a=1",
            "not a url",
        ] {
            assert!(ApiUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_path_follows_xdg() {
        let env = Env::new("/").with_var("HOME", "/home/u");
        assert_eq!(
            config_path(&env).unwrap(),
            PathBuf::from("/home/u/.config/kiln/config.json")
        );
        let env = env.with_var("XDG_CONFIG_HOME", "/cfg");
        assert_eq!(
            config_path(&env).unwrap(),
            PathBuf::from("/cfg/kiln/config.json")
        );
        let env = Env::new("/")
            .with_var("HOME", "/h")
            .with_var("XDG_CONFIG_HOME", "relative");
        assert_eq!(
            config_path(&env).unwrap(),
            PathBuf::from("/h/.config/kiln/config.json")
        );
    }

    #[test]
    fn url_precedence() {
        let env = Env::new("/").with_var("HOME", "/nonexistent-home-for-test");
        assert_eq!(api_url(&env, None).unwrap().base, DEFAULT_API_URL);
        let env = env.with_var("KILN_API_URL", "http://10.0.0.1:80");
        assert_eq!(api_url(&env, None).unwrap().base, "http://10.0.0.1:80");
        assert_eq!(
            api_url(&env, Some("http://h:1")).unwrap().base,
            "http://h:1"
        );
    }
}
