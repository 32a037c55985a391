//! The harness for the parsers' fuzz targets (issue 20): each parser that reads bytes from
//! outside (the request head scanner, the dyno head reader, the chunked codec, the `Host`
//! parser) has a target in its own tests that the test command runs on random input,
//! checked against a reference (httparse, the `http` crate, a plain decoder written from the
//! RFC) and against itself fed in random pieces.
//!
//! The seed is new on every run, so that runs over time cover more than one fixed set of
//! inputs; a failure names the seed of the case that failed, and
//! `KILN_FUZZ_SEED=<seed> KILN_FUZZ_CASES=1 cargo test -p kiln-router <target>` replays
//! exactly that case. `KILN_FUZZ_CASES` also makes a long run:
//! `KILN_FUZZ_CASES=5000000 cargo test --release -p kiln-router fuzz_`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Cases per target when `KILN_FUZZ_CASES` does not say: enough to find a shallow
/// disagreement on every run, in well under a second each in a debug build.
const DEFAULT_CASES: u64 = 20_000;

/// Runs `case` on `KILN_FUZZ_CASES` random generators, each seeded on its own; a panic is
/// reported with the seed that replays it.
pub(crate) fn run(target: &str, mut case: impl FnMut(&mut fastrand::Rng)) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("KILN_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let first = env("KILN_FUZZ_SEED").unwrap_or_else(|| fastrand::u64(..));
    for i in 0..cases {
        let seed = first.wrapping_add(i);
        let mut rng = fastrand::Rng::with_seed(seed);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            eprintln!(
                "fuzz target {target} failed on case {i}: replay it with \
                 KILN_FUZZ_SEED={seed} KILN_FUZZ_CASES=1"
            );
            resume_unwind(panic);
        }
    }
}

/// Damages `input` a few times: a byte changed, dropped, doubled or inserted, or a run of
/// bytes dropped or repeated. Inserted bytes come from `special` (what matters to the
/// grammar) half of the time.
pub(crate) fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, special: &[u8]) {
    for _ in 0..rng.usize(1..4) {
        let byte = if rng.bool() && !special.is_empty() {
            special[rng.usize(..special.len())]
        } else {
            rng.u8(..)
        };
        if input.is_empty() {
            input.push(byte);
            continue;
        }
        let at = rng.usize(..input.len());
        match rng.u8(..6) {
            0 => input[at] = byte,
            1 => drop(input.remove(at)),
            2 => input.insert(at, input[at]),
            3 => input.insert(at, byte),
            4 => {
                let end = (at + rng.usize(1..16)).min(input.len());
                input.drain(at..end);
            }
            _ => {
                let end = (at + rng.usize(1..16)).min(input.len());
                let run = input[at..end].to_vec();
                input.splice(at..at, run);
            }
        }
    }
}

/// Random cut points in `0..=len`, sorted, ending at `len`: how a reader receives the
/// bytes in pieces.
pub(crate) fn cuts(rng: &mut fastrand::Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.usize(0..6)).map(|_| rng.usize(0..=len)).collect();
    cuts.push(len);
    cuts.sort_unstable();
    cuts
}
