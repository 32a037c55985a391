//! `dyno-start`: Kiln's dyno start benchmark (issue 3). Not a test: `cargo test` only compiles
//! it; run it through `bench/dyno-start/run.sh`, which installs runc, builds in release mode
//! and runs both measurements.
//!
//! - `starts`: time from `Runtime::start` to the first byte the user's command (`echo ready`)
//!   writes, for Kiln's container runtime and for `runc run` of an equivalent OCI bundle (and
//!   `crun` where it runs), interleaved so they share the machine's noise.
//! - `scale`: a real `kiln server`, a tiny Python web app pushed once, then the time from
//!   `ps:scale web=0` → `web=50` until all 50 dynos are up and routable.
//!
//! See `bench/README.md` for what is measured, how, and the recorded results.

mod fixture;
mod http;
mod oci;
mod scale;
mod starts;
mod stats;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "dyno-start",
    about = "Kiln's dyno start benchmark (see bench/README.md)"
)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Measurement A: start latency, Kiln's container runtime against runc (and crun).
    Starts(starts::Options),
    /// Measurement B: `ps:scale web=0` → `web=50` on a real server until all are routable.
    Scale(scale::Options),
}

fn main() -> Result<()> {
    // SAFETY: geteuid never fails.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "the benchmark creates namespaces, mounts and cgroups: run it as root (bench/dyno-start/run.sh)"
        );
    }
    match Cli::parse().what {
        What::Starts(o) => starts::run(o),
        What::Scale(o) => scale::run(o),
    }
}

/// A fresh scratch directory under `base` (default: the system's temp dir).
pub fn scratch_dir(base: Option<&PathBuf>, tag: &str) -> Result<PathBuf> {
    let base = base.cloned().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "kiln-bench-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
