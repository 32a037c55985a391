//! Live build output, for `output_stream_url`: whoever follows a build sees every line so far
//! and then new lines as they come, until the build ends.

use std::sync::Mutex;
use tokio::sync::watch;

/// A build's output as it is produced, for its output stream and, at the end, the store.
/// What is kept is bounded: a build may print without end, the server's memory may not grow
/// with it.
pub struct BuildStream {
    lines: Mutex<Kept>,
    /// (lines so far, finished)
    progress: watch::Sender<(usize, bool)>,
}

#[derive(Default)]
struct Kept {
    lines: Vec<String>,
    bytes: usize,
    truncated: bool,
}

/// Build output kept per build (Heroku keeps a build's output; gigabytes of it help nobody).
pub const MAX_BUILD_OUTPUT: usize = 8 * 1024 * 1024;

impl Default for BuildStream {
    fn default() -> Self {
        BuildStream {
            lines: Mutex::new(Kept::default()),
            progress: watch::channel((0, false)).0,
        }
    }
}

impl BuildStream {
    pub fn push(&self, line: &str) {
        let n = {
            let mut kept = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            if kept.truncated {
                return;
            }
            if kept.bytes + line.len() > MAX_BUILD_OUTPUT {
                kept.truncated = true;
                kept.lines.push(format!(
                    " !     The build printed more than {} MB; the rest of its output is not kept.",
                    MAX_BUILD_OUTPUT / (1024 * 1024)
                ));
            } else {
                kept.bytes += line.len() + 1;
                kept.lines.push(line.to_string());
            }
            kept.lines.len()
        };
        self.progress.send_replace((n, false));
    }

    pub fn finish(&self) {
        let n = self
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .len();
        self.progress.send_replace((n, true));
    }

    pub fn text(&self) -> String {
        let mut s = self
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .join("\n");
        s.push('\n');
        s
    }

    /// Whether the output passed [`MAX_BUILD_OUTPUT`] (then later lines are not kept).
    pub fn truncated(&self) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncated
    }

    /// Lines from `from` on, and whether the build has finished; waits for news when there
    /// is none yet.
    pub async fn next(&self, from: usize) -> (Vec<String>, bool) {
        let mut rx = self.progress.subscribe();
        loop {
            let (n, done) = *rx.borrow_and_update();
            if n > from || done {
                let kept = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                return (
                    kept.lines
                        .get(from..)
                        .map(<[String]>::to_vec)
                        .unwrap_or_default(),
                    done,
                );
            }
            if rx.changed().await.is_err() {
                return (Vec::new(), true);
            }
        }
    }
}
