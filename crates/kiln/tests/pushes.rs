//! Issue 22: pushes are streamed and bounded. A push that unpacks to more than the source
//! limit is refused with a message naming the limit, whatever it compresses to; so is a
//! pack over the push limit and a slug over the slug limit; and the server's own memory
//! stays within a small constant of its size at rest during any push, refused or deployed.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);
/// The server's peak memory during a push, whatever the push (acceptance 3).
const PEAK_RSS_BOUND_KB: u64 = 300 * 1024;

const WEB_PY: &str = r#"
import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("serving %s\n" % os.environ.get("VERSION", "?")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The server's peak resident memory so far, in kB (`VmHWM`).
fn peak_rss_kb(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// `bytes` of data that no compressor shrinks (xorshift), written without holding it.
fn write_random(path: &Path, bytes: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = [0u8; 8192];
    let mut left = bytes;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

fn web_app(name: &str) -> std::path::PathBuf {
    fixture_repo(
        name,
        &[("app.py", WEB_PY), ("Procfile", "web: python3 app.py\n")],
    )
}

/// Acceptance 3: a 1.5 GiB file of zeros (a push of about 1.7 MB) is refused with a clear
/// message, the server's peak memory stays under 300 MB, and the app keeps serving.
#[test]
fn a_zero_bomb_is_refused_and_memory_stays_bounded() {
    let s = Server::start("push-bomb");
    s.ok(&["apps:create", "bombed"]);
    let repo = web_app("bombed");
    let (ok, out) = s.push(&repo, "bombed");
    assert!(ok, "{out}");
    wait_for(BOOT, "the app to answer", || {
        (s.get("bombed", "/").status == 200).then_some(())
    });

    // Sparse on the test's disk; 1.5 GiB of zeros to git, which compresses it to a trifle.
    let zeros = std::fs::File::create(repo.join("zeros.bin")).unwrap();
    zeros.set_len(1536 * 1024 * 1024).unwrap();
    drop(zeros);
    commit_all(&repo, "a zero bomb");
    let (ok, out) = s.push(&repo, "bombed");
    assert!(!ok, "the push was accepted:\n{out}");
    assert!(
        out.contains("larger than the 1024 MB limit once unpacked")
            && out.contains("--max-source-mb"),
        "the refusal names the limit:\n{out}"
    );
    let peak = peak_rss_kb(&s);
    assert!(
        peak < PEAK_RSS_BOUND_KB,
        "the server's peak memory was {} MB",
        peak / 1024
    );
    let r = s.get("bombed", "/");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "serving ?\n"),
        "the running release keeps serving"
    );
    let scratch: Vec<_> = std::fs::read_dir(s.dir.join("data/builds"))
        .unwrap()
        .collect();
    assert!(
        scratch.is_empty(),
        "nothing of the refused source is left on disk: {scratch:?}"
    );
}

/// Acceptance 3: a 200 MB push of data that does not compress deploys, within the same
/// memory bound.
#[test]
fn a_large_push_deploys_within_the_same_bound() {
    let s = Server::start("push-large");
    s.ok(&["apps:create", "large"]);
    let repo = web_app("large");
    write_random(&repo.join("data.bin"), 200 * 1024 * 1024);
    commit_all(&repo, "200 MB of data");
    let (ok, out) = s.push(&repo, "large");
    assert!(ok, "the push was refused:\n{out}");
    wait_for(BOOT, "the app to answer", || {
        (s.get("large", "/").status == 200).then_some(())
    });
    let peak = peak_rss_kb(&s);
    assert!(
        peak < PEAK_RSS_BOUND_KB,
        "the server's peak memory was {} MB",
        peak / 1024
    );
    let run = s.ok(&["run", "-a", "large", "--", "stat", "-c", "%s", "data.bin"]);
    assert_eq!(
        run.trim(),
        (200 * 1024 * 1024).to_string(),
        "the dyno has the whole file"
    );
}

/// Each limit refuses with a message saying which: the pack (git's own words), the source
/// once unpacked, and the compiled slug. The app keeps serving its last release throughout.
#[test]
fn each_limit_refuses_with_a_message_naming_it() {
    let s = Server::start_with(
        "push-limits",
        &[
            "--max-push-mb",
            "2",
            "--max-source-mb",
            "3",
            "--max-slug-mb",
            "1",
        ],
    );
    s.ok(&["apps:create", "limited"]);
    let repo = web_app("limited");
    let (ok, out) = s.push(&repo, "limited");
    assert!(ok, "{out}");
    wait_for(BOOT, "the app to answer", || {
        (s.get("limited", "/").status == 200).then_some(())
    });
    let releases = |s: &Server| {
        s.ok(&["releases", "-a", "limited"])
            .lines()
            .filter(|l| l.starts_with('v'))
            .count()
    };
    let before = releases(&s);

    // 3 MB that does not compress: a pack over 2 MB.
    write_random(&repo.join("big.bin"), 3 * 1024 * 1024);
    commit_all(&repo, "3 MB of data");
    let (ok, out) = s.push(&repo, "limited");
    assert!(!ok, "{out}");
    assert!(
        out.contains("pack exceeds maximum allowed size"),
        "git names the push limit:\n{out}"
    );

    // 4 MB of zeros: a tiny pack, over 3 MB once unpacked. (The refused commit is dropped
    // first: it would be in this push's pack too.)
    assert!(
        git(&repo)
            .args(["reset", "-q", "--hard", "HEAD~1"])
            .status()
            .unwrap()
            .success()
    );
    std::fs::File::create(repo.join("zeros.bin"))
        .unwrap()
        .set_len(4 * 1024 * 1024)
        .unwrap();
    commit_all(&repo, "4 MB of zeros");
    let (ok, out) = s.push(&repo, "limited");
    assert!(!ok, "{out}");
    assert!(
        out.contains("larger than the 3 MB limit once unpacked"),
        "{out}"
    );

    // 1.5 MB that does not compress, within both: the slug is over 1 MB.
    assert!(
        git(&repo)
            .args(["reset", "-q", "--hard", "HEAD~1"])
            .status()
            .unwrap()
            .success()
    );
    write_random(&repo.join("data.bin"), 1536 * 1024);
    commit_all(&repo, "1.5 MB of data");
    let (ok, out) = s.push(&repo, "limited");
    assert!(!ok, "{out}");
    assert!(
        out.contains("Compiled slug size is over the 1 MB limit") && out.contains("--max-slug-mb"),
        "{out}"
    );

    assert_eq!(releases(&s), before, "no release was made");
    assert_eq!(s.get("limited", "/").status, 200, "the app keeps serving");
}

/// Files the server reads itself (Procfile, app.json, .slugignore) are refused when they are
/// symbolic links: the server runs as root, and `Procfile -> /etc/shadow` must not be read.
#[test]
fn the_apps_files_are_never_followed_out_of_it() {
    let s = Server::start("push-links");
    s.ok(&["apps:create", "linked"]);
    for (name, target) in [
        ("Procfile", "/etc/shadow"),
        ("app.json", "/etc/passwd"),
        (".slugignore", "/etc/hostname"),
    ] {
        let repo = web_app(&format!("linked-{}", name.trim_start_matches('.')));
        std::fs::remove_file(repo.join(name)).ok();
        std::os::unix::fs::symlink(target, repo.join(name)).unwrap();
        commit_all(&repo, "a link out of the app");
        let (ok, out) = s.push(&repo, "linked");
        assert!(!ok, "{name} -> {target} was accepted:\n{out}");
        assert!(
            out.contains(&format!("{name} must be a regular file in the app")),
            "{name}:\n{out}"
        );
        assert!(
            !out.contains("root:"),
            "nothing of {target} is shown:\n{out}"
        );
    }
    // A link that stays inside the app is fine.
    let repo = web_app("linked-inside");
    std::fs::create_dir_all(repo.join("config")).unwrap();
    std::fs::rename(repo.join("Procfile"), repo.join("config/Procfile")).unwrap();
    std::os::unix::fs::symlink("config/Procfile", repo.join("Procfile")).unwrap();
    commit_all(&repo, "a link inside the app");
    let (ok, out) = s.push(&repo, "linked");
    assert!(ok, "{out}");
    assert!(out.contains("Procfile declares types -> web"), "{out}");
}
