//! What a command may see of the outside world: environment variables, the working
//! directory, and the three standard streams. Commands get these injected instead of reading
//! process globals, so every command can be driven from a test.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The environment a command runs in.
#[derive(Debug, Clone)]
pub struct Env {
    vars: BTreeMap<String, String>,
    cwd: PathBuf,
    stdin_is_tty: bool,
    exe: Option<PathBuf>,
}

impl Env {
    /// The real process environment (non-UTF-8 variables are skipped: none of ours can be).
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Env {
            vars,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            stdin_is_tty: std::io::stdin().is_terminal(),
            exe: std::env::current_exe().ok(),
        }
    }

    /// An empty environment rooted at `cwd`, for tests and embedding.
    pub fn new(cwd: impl Into<PathBuf>) -> Env {
        Env {
            vars: BTreeMap::new(),
            cwd: cwd.into(),
            stdin_is_tty: false,
            exe: None,
        }
    }

    pub fn with_var(mut self, key: impl Into<String>, value: impl Into<String>) -> Env {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// The program that git should run as credential helper (normally this executable).
    pub fn with_exe(mut self, exe: impl Into<PathBuf>) -> Env {
        self.exe = Some(exe.into());
        self
    }

    pub fn with_stdin_tty(mut self, tty: bool) -> Env {
        self.stdin_is_tty = tty;
        self
    }

    /// A variable's value; an empty value counts as unset, as in most shells' `${X:-default}`.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    pub fn stdin_is_tty(&self) -> bool {
        self.stdin_is_tty
    }

    pub fn exe(&self) -> Option<&Path> {
        self.exe.as_deref()
    }

    pub fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// The standard streams. `stdout` gets command output, `stderr` errors, warnings and prompts.
pub struct Io<'a> {
    pub stdin: &'a mut dyn BufRead,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}
