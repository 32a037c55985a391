//! `kiln-dyno-helper`: the privileged helper that turns a dyno spec into an isolated dyno
//! (see `kiln_runtime::helper`), as a program of its own, in the spirit of Firecracker's
//! jailer. Each running dyno keeps two processes of it (the helper, the server's handle on
//! the dyno, and the dyno's init, forked from it); as the whole `kiln` binary they cost about
//! 5 MB per dyno, mostly the private pages a large position-independent executable dirties
//! when it is loaded. This one links only the helper: no async runtime, no TLS, no database,
//! no allocator of its own, one thread.
//!
//! The server runs it from beside its own executable, and falls back to `kiln dyno-helper`
//! when it is not there (`cargo run` builds only the binary it runs).

fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Called as the `kiln` binary would be: `dyno-helper SPEC`.
    let rest = match args.first().map(String::as_str) {
        Some("dyno-helper") => &args[1..],
        _ => &args[..],
    };
    kiln_runtime::helper::main(rest)
}
