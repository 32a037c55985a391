//! The `kiln` binary: thin wiring. `kiln server` runs the platform (see [`server`]);
//! `kiln dyno-helper` and `kiln git-hook` are internal entry points the server execs; every
//! other subcommand is the CLI.

mod acme;
mod drains;
mod server;

use std::process::ExitCode;

/// See the `mimalloc` entry in Cargo.toml: measured on the router's hot path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        // The helper must stay single-threaded: it is dispatched before anything else runs.
        Some("dyno-helper") => {
            let rest: Vec<String> = args[2..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            kiln_runtime::helper::main(&rest)
        }
        Some("git-hook") => {
            let rest: Vec<String> = args[2..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            ExitCode::from(kiln_git::hook::main(&rest).clamp(0, 255) as u8)
        }
        Some("server") => server::main(&args[1..]),
        _ => kiln_cli::main(args),
    }
}
