//! The `kiln` command line: Heroku's commands (`apps:create`, `config:set`, `ps:scale`,
//! `releases:rollback`, `logs --tail`, …) against a Kiln platform's Heroku Platform API v3.
//!
//! The `kiln` binary handles `kiln server` (and its internal subcommands) itself and hands
//! every other command line to [`main`]. All logic runs through [`run`], which takes the
//! environment and the standard streams as arguments so tests can drive any command
//! against an in-process fake API.
//!
//! Where things come from:
//! - API URL: `KILN_API_URL`, else the one saved by `kiln login`
//!   (`$XDG_CONFIG_HOME/kiln/config.json`), else `http://127.0.0.1:5000`.
//! - API key: `KILN_API_KEY`, else `~/.netrc` (`machine <host:port>`), as the Heroku CLI does.
//! - App: `-a/--app`, else `KILN_APP`, else the app of the `kiln` git remote.
//!
//! Modules, one concern each: `cli` (the grammar), `commands` (what each command does and
//! prints), `api` (requests and error bodies), `transport` (HTTP; the one place to add
//! https), `sse` (log streams), `netrc` and `settings` (credentials and config), `git`
//! (remotes and the credential helper), `format` (Heroku's output shapes), `args` (checking
//! free-form arguments before anything is sent).

mod api;
mod args;
mod cli;
mod commands;
mod context;
mod format;
mod git;
mod netrc;
mod settings;
mod sse;
mod transport;

pub use context::{Env, Io};

use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Runs one CLI command line in this process's real environment and streams. `args` is the
/// command line as `std::env::args_os()` gives it (program name first); a list that starts
/// directly with a command (`["apps:create", "x"]`) is accepted too.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let env = Env::from_process();
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let code = run(
        args,
        &env,
        Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    ExitCode::from(code)
}

/// Runs one command line with the given environment and streams, and returns the exit
/// status: 0 on success, 1 when the command failed (the reason is on stderr), 2 for a
/// command line that does not parse.
pub fn run<'a>(args: Vec<OsString>, env: &'a Env, io: Io<'a>) -> u8 {
    let cli = match cli::Cli::try_parse_from(with_program_name(args)) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that go to stdout with status 0.
            let stream: &mut dyn Write = if e.use_stderr() { io.stderr } else { io.stdout };
            let _ = write!(stream, "{}", e.render());
            let _ = stream.flush();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io.stderr, "Error: could not start the async runtime: {e}");
            return 1;
        }
    };
    let mut ctx = commands::Ctx::new(env, io);
    // On the heap: the future of every command's arm is large, and a caller's thread (a
    // test's has 2 MB) need not hold it on its stack.
    let result = runtime.block_on(Box::pin(commands::dispatch(&mut ctx, cli.command)));
    match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0, // `kiln logs | head`: the reader has all it wanted
        // `kiln run`: the dyno's exit status becomes ours.
        Err(e) if e.downcast_ref::<commands::run::ExitStatus>().is_some() => e
            .downcast_ref::<commands::run::ExitStatus>()
            .map_or(1, |s| s.0),
        Err(e) => {
            report(&e, ctx.io.stderr);
            1
        }
    }
}

/// Puts a program name in front unless there is one already.
fn with_program_name(mut args: Vec<OsString>) -> Vec<OsString> {
    let starts_with_command = args
        .first()
        .and_then(|a| a.to_str())
        .is_some_and(|a| a.starts_with('-') || cli::Cmd::is_command_word(a));
    if args.is_empty() || starts_with_command {
        args.insert(0, OsString::from("kiln"));
    }
    args
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints a failure the way the Heroku CLI does: `Error: <message>`, then the error id.
fn report(e: &anyhow::Error, stderr: &mut dyn Write) {
    let text = if let Some(api) = e.downcast_ref::<api::ApiError>() {
        let mut t = format!("Error: {}\n", api.message);
        if let Some(id) = &api.id {
            t.push_str(&format!("Error ID: {id}\n"));
        }
        if let Some(url) = &api.url {
            t.push_str(&format!("See {url} for more information.\n"));
        }
        if api.status == 401 {
            t.push_str("Check your API key: run `kiln login`, or set KILN_API_KEY.\n");
        }
        t
    } else if let Some(c) = e.downcast_ref::<transport::ConnectError>() {
        format!(
            "Error: Could not connect to the Kiln API at {} ({}).\nIs the platform running? Start it with `kiln server`, or set KILN_API_URL to where it listens.\n",
            c.url, c.reason
        )
    } else {
        format!("Error: {e:#}\n")
    };
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_name_is_optional() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(with_program_name(os(&["apps"])), os(&["kiln", "apps"]));
        assert_eq!(with_program_name(os(&["--help"])), os(&["kiln", "--help"]));
        assert_eq!(
            with_program_name(os(&["/usr/bin/kiln", "apps"])),
            os(&["/usr/bin/kiln", "apps"])
        );
        assert_eq!(with_program_name(os(&[])), os(&["kiln"]));
    }
}
