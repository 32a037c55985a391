//! Reads the `wrk --latency` outputs that `run.sh` saved and prints requests/s, p50 and p99
//! for each setup, the ratios the issue sets targets for, and a Markdown table for
//! `bench/README.md`.
//!
//! Usage: `router-report DIR` where DIR holds `<setup>.<round>.txt` for the setups
//! `direct`, `nginx`, `kiln`, `varnish` and `kiln-cache`. Each setup is represented by its
//! median round by requests/s (its own p50 and p99), so one round disturbed by other work on
//! the machine does not decide the comparison. Then the realistic dynos (issue 21), from
//! `app-<type>-{kiln,nginx,direct}.<round>.txt`: each app server through Kiln's router,
//! through nginx and directly.

use std::path::Path;
use std::process::ExitCode;

struct Run {
    label: &'static str,
    /// Requests/s of every round, in round order.
    rounds: Vec<f64>,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

/// wrk prints latencies as `812.00us`, `1.23ms` or `1.02s`.
fn millis(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (t, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn parse(label: &'static str, text: &str) -> Option<Run> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("50%") {
            p50 = millis(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            p99 = millis(v);
        } else if l.starts_with("Socket errors") || l.starts_with("Non-2xx") {
            errors.push(l.to_string());
        }
    }
    Some(Run {
        label,
        rounds: Vec::new(),
        rps: rps?,
        p50_ms: p50?,
        p99_ms: p99?,
        errors: errors.join("; "),
    })
}

/// Kiln's requests/s over nginx's, round by round, and their median.
struct Paired {
    rounds: Vec<f64>,
    median: f64,
}

fn paired_ratios(kiln: &[f64], nginx: &[f64]) -> Option<Paired> {
    let rounds: Vec<f64> = kiln
        .iter()
        .zip(nginx)
        .filter(|(_, n)| **n > 0.0)
        .map(|(k, n)| k / n)
        .collect();
    let mut sorted = rounds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = *sorted.get(sorted.len() / 2)?;
    Some(Paired { rounds, median })
}

/// The median round (by requests/s) of setup `file` in `dir`, with every round's rate.
fn median_run(dir: &str, file: &str, label: &'static str) -> Option<Run> {
    let mut found: Vec<(u32, Run)> = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(round) = name
            .strip_prefix(file)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".txt"))
            .and_then(|r| r.parse::<u32>().ok())
        else {
            continue;
        };
        match std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| parse(label, &t))
        {
            Some(r) => found.push((round, r)),
            None => eprintln!(
                "router-report: no wrk result in {}",
                Path::new(dir).join(&name).display()
            ),
        }
    }
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|(round, _)| *round);
    let rounds: Vec<f64> = found.iter().map(|(_, r)| r.rps).collect();
    let mut by_rate: Vec<Run> = found.into_iter().map(|(_, r)| r).collect();
    by_rate.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mut median = by_rate.swap_remove(by_rate.len() / 2);
    median.rounds = rounds;
    Some(median)
}

/// The realistic dynos' table (issue 21): for each app server, Kiln's router, the nginx proxy
/// and the dyno directly. Targets: Kiln within 10 % of nginx's requests/s or faster, and a
/// median (p50) under 5 ms. Returns whether every app server met them.
fn realistic_dynos(dir: &str) -> bool {
    // App types in the order their files were first written (the order run.sh measured them).
    let mut types: Vec<(std::time::SystemTime, String)> = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(t) = name
            .strip_prefix("app-")
            .and_then(|r| r.strip_suffix("-kiln.1.txt"))
        else {
            continue;
        };
        let written = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        types.push((written, t.to_string()));
    }
    if types.is_empty() {
        return true;
    }
    types.sort();
    println!(
        "realistic dynos (median round each; Kiln's target: >= 0.90x nginx's requests/s, p50 < 5 ms):"
    );
    println!(
        "{:<16} {:>26} {:>26} {:>26} {:>8}",
        "app server",
        "Kiln router: req/s p50 p99",
        "nginx proxy: req/s p50 p99",
        "direct: req/s p50 p99",
        "K/nginx"
    );
    let mut all_met = true;
    let mut table = Vec::new();
    for (_, t) in &types {
        let get = |via: &str| median_run(dir, &format!("app-{t}-{via}"), "app");
        let (Some(k), Some(n), d) = (get("kiln"), get("nginx"), get("direct")) else {
            eprintln!("router-report: incomplete rounds for {t}");
            all_met = false;
            continue;
        };
        let ratio = k.rps / n.rps;
        let met = ratio >= 0.9 && k.p50_ms < 5.0;
        all_met &= met;
        let cell = |r: &Run| format!("{:.0} {:.2}ms {:.2}ms", r.rps, r.p50_ms, r.p99_ms);
        let direct = d.as_ref().map_or("-".to_string(), cell);
        println!(
            "{t:<16} {:>26} {:>26} {:>26} {:>7.2}x{}",
            cell(&k),
            cell(&n),
            direct,
            ratio,
            if met { "" } else { "  NOT met" }
        );
        for r in [&k, &n] {
            if !r.errors.is_empty() {
                println!(
                    "{:<16} ({}: {})",
                    "",
                    if std::ptr::eq(r, &k) { "Kiln" } else { "nginx" },
                    r.errors
                );
            }
        }
        let md = |r: &Run| format!("{:.0} | {:.2} / {:.2} ms", r.rps, r.p50_ms, r.p99_ms);
        table.push(format!(
            "| {t} | {} | {} | {} | {ratio:.2}x |",
            md(&k),
            md(&n),
            d.as_ref().map_or("- | -".to_string(), md)
        ));
    }
    println!(
        "realistic dynos: {}",
        if all_met { "met" } else { "NOT met" }
    );
    println!();
    println!(
        "| app server | Kiln req/s | p50 / p99 | nginx req/s | p50 / p99 | direct req/s | p50 / p99 | Kiln / nginx |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in table {
        println!("{row}");
    }
    println!();
    all_met
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: router-report DIR");
        return ExitCode::from(2);
    };
    let setups = [
        ("direct", "(c) nginx dyno, direct"),
        ("nginx", "(b) nginx proxy -> dyno"),
        ("kiln", "(a) Kiln router -> dyno"),
        ("varnish", "Varnish, cache hits"),
        ("kiln-cache", "Kiln, cache hits"),
        ("upload-direct", "16 KB POST, direct"),
        ("upload-nginx", "16 KB POST, nginx proxy"),
        ("kiln-upload", "16 KB POST, Kiln router"),
    ];
    let mut runs = Vec::new();
    for (file, label) in setups {
        match median_run(&dir, file, label) {
            Some(run) => runs.push((file, run)),
            None => eprintln!("router-report: no rounds for {file}"),
        }
    }
    let get = |name: &str| runs.iter().find(|(f, _)| *f == name).map(|(_, r)| r);

    println!(
        "{:<28} {:>12} {:>10} {:>10}   rounds (requests/s)",
        "setup", "requests/s", "p50", "p99"
    );
    for (_, r) in &runs {
        let rounds: Vec<String> = r.rounds.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "{:<28} {:>12.0} {:>8.2}ms {:>8.2}ms   {}{}",
            r.label,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            rounds.join(" "),
            if r.errors.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.errors)
            }
        );
    }
    println!();
    let mut all_met = true;
    if let (Some(k), Some(n)) = (get("kiln"), get("nginx")) {
        let (ratio, p99_ok) = (k.rps / n.rps, k.p99_ms <= n.p99_ms);
        all_met &= ratio >= 1.0 && p99_ok;
        println!(
            "Kiln / nginx proxy throughput: {ratio:.2}x (target >= 1.0x); p99 {:.2}ms vs {:.2}ms ({})",
            k.p99_ms,
            n.p99_ms,
            if p99_ok { "no worse" } else { "WORSE" }
        );
        // For reading the noise, not for the verdict: each round's nginx run comes right before
        // Kiln's, so their ratio is measured under the same conditions of the machine.
        if let Some(paired) = paired_ratios(&k.rounds, &n.rounds) {
            let shown: Vec<String> = paired.rounds.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "  per round (Kiln / the nginx run before it): {} (median {:.2}x)",
                shown.join(" "),
                paired.median
            );
        }
    }
    if let (Some(k), Some(d)) = (get("kiln"), get("direct")) {
        println!("Kiln / direct throughput:      {:.2}x", k.rps / d.rps);
    }
    if let (Some(k), Some(v)) = (get("kiln-cache"), get("varnish")) {
        let ratio = k.rps / v.rps;
        all_met &= ratio >= 1.0;
        println!(
            "Kiln cache / Varnish hits:     {ratio:.2}x (target >= 1.0x); p99 {:.2}ms vs {:.2}ms",
            k.p99_ms, v.p99_ms
        );
    }
    if let (Some(k), Some(n)) = (get("kiln-upload"), get("upload-nginx")) {
        let ratio = k.rps / n.rps;
        all_met &= ratio >= 1.0;
        println!(
            "Kiln / nginx uploads (16 KB):  {ratio:.2}x (target >= 1.0x); p99 {:.2}ms vs {:.2}ms",
            k.p99_ms, n.p99_ms
        );
    }
    println!("targets: {}", if all_met { "met" } else { "NOT met" });
    println!();
    realistic_dynos(&dir);
    println!("| setup | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (_, r) in &runs {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms |",
            r.label, r.rps, r.p50_ms, r.p99_ms
        );
    }
    ExitCode::SUCCESS
}
