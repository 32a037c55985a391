//! Live build output, for `output_stream_url`: whoever follows a build sees every line so far
//! and then new lines as they come, until the build ends.

use std::sync::Mutex;
use tokio::sync::watch;

pub struct BuildStream {
    lines: Mutex<Vec<String>>,
    /// (lines so far, finished)
    progress: watch::Sender<(usize, bool)>,
}

impl Default for BuildStream {
    fn default() -> Self {
        BuildStream { lines: Mutex::new(Vec::new()), progress: watch::channel((0, false)).0 }
    }
}

impl BuildStream {
    pub fn push(&self, line: &str) {
        let n = {
            let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            l.push(line.to_string());
            l.len()
        };
        self.progress.send_replace((n, false));
    }

    pub fn finish(&self) {
        let n = self.lines.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.progress.send_replace((n, true));
    }

    pub fn text(&self) -> String {
        let mut s = self.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
        s.push('\n');
        s
    }

    /// Lines from `from` on, and whether the build has finished; waits for news when there
    /// is none yet.
    pub async fn next(&self, from: usize) -> (Vec<String>, bool) {
        let mut rx = self.progress.subscribe();
        loop {
            let (n, done) = *rx.borrow_and_update();
            if n > from || done {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                return (lines.get(from..).map(<[String]>::to_vec).unwrap_or_default(), done);
            }
            if rx.changed().await.is_err() {
                return (Vec::new(), true);
            }
        }
    }
}
