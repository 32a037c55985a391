//! Logplex: every log line of an app (dyno output, router lines, dyno manager lines, API
//! events) merged into one stream, as Heroku's logplex does.
//!
//! Each app has a ring of its last 1500 lines (Heroku's history size), a broadcast channel
//! for live tails, and taps (the app's drains, in `kiln-drains`). When the server keeps
//! history on disk (`disk`), every line is also written there by a writer thread, so the history survives
//! restarts and can be searched (`--since`, `--until`, `--grep`). The log path never blocks
//! a writer: a tail that cannot keep up loses lines and is told how many (Heroku's L11), a
//! drain displaces its oldest lines and says so (L10), and lines the disk writer cannot take
//! stay in memory only, instead of slowing the dynos down.
//!
//! Log sessions are short-lived capabilities: `POST /apps/{app}/log-sessions` creates one and
//! returns a URL with a secret; whoever holds the URL may read that app's stream once.

mod disk;

use disk::AppHistory;
pub use disk::{Disk, Retention};
use kiln_model::Timestamp;
use kiln_model::log::{AppLogSink, LineTap, LogFilter, LogLine, LogSink};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Lines kept per app (Heroku's `log_history`).
pub const HISTORY: usize = 1500;
/// Lines a slow tail may fall behind before it starts losing them.
const TAIL_BUFFER: usize = 4096;
/// An unused session expires, as Heroku's do after 360 s.
const SESSION_TTL: Duration = Duration::from_secs(360);

/// Lines pushed together. The router pushes one line per request, which goes to the ring,
/// the taps and the history without a vector allocated to carry it.
pub(crate) enum Batch {
    One(Arc<LogLine>),
    Many(Vec<Arc<LogLine>>),
}

impl Batch {
    pub(crate) fn as_slice(&self) -> &[Arc<LogLine>] {
        match self {
            Batch::One(line) => std::slice::from_ref(line),
            Batch::Many(lines) => lines,
        }
    }
}

struct AppLog {
    ring: Mutex<VecDeque<Arc<LogLine>>>,
    /// Made when the first tail subscribes: a channel holds its whole buffer from the start
    /// (about 160 KB), which a thousand apps nobody tails should not pay for.
    live: std::sync::OnceLock<broadcast::Sender<Arc<LogLine>>>,
    /// Copies of the stream (the app's drains), by key.
    taps: RwLock<Vec<(String, Arc<dyn LineTap>)>>,
    /// Where the app's history is kept across restarts, when the server keeps it. Closed
    /// when the app is destroyed: a handle kept past that writes nothing to disk.
    history: Option<Arc<AppHistory>>,
    /// Lines the ring keeps: Heroku's 1,500, or fewer when the server keeps fewer.
    cap: usize,
}

impl AppLog {
    fn new(app_id: &str, disk: Option<&Disk>) -> AppLog {
        let cap = disk.map_or(HISTORY, |d| d.retention().lines.clamp(1, HISTORY));
        AppLog {
            cap,
            ring: Mutex::new(VecDeque::with_capacity(64)),
            live: std::sync::OnceLock::new(),
            taps: RwLock::new(Vec::new()),
            history: disk.and_then(|d| d.app(app_id)),
        }
    }
}

/// What a log session asks for beyond Heroku's filters (Kiln's `--since`, `--until` and
/// `--grep`), answered from the history on disk.
#[derive(Clone, Default)]
pub struct Search {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Whether a message matches (a compiled regular expression).
    pub grep: Option<Arc<dyn Fn(&str) -> bool + Send + Sync>>,
}

impl Search {
    fn is_empty(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.grep.is_none()
    }

    fn matches(&self, line: &LogLine) -> bool {
        self.since.is_none_or(|t| line.time >= t)
            && self.until.is_none_or(|t| line.time <= t)
            && self.grep.as_ref().is_none_or(|g| g(&line.message))
    }
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search")
            .field("since", &self.since)
            .field("until", &self.until)
            .field("grep", &self.grep.is_some())
            .finish()
    }
}

/// A log session: which app, which lines, and whether to follow.
#[derive(Debug, Clone)]
pub struct Session {
    pub app_id: String,
    pub filter: LogFilter,
    pub lines: usize,
    pub tail: bool,
    pub search: Search,
    /// Who opened it, as the platform knows them (opaque here): the platform ends a tail
    /// when that credential is revoked.
    pub opener: Option<Arc<dyn std::any::Any + Send + Sync>>,
    created: Instant,
}

#[derive(Default)]
pub struct Logplex {
    apps: RwLock<HashMap<String, Arc<AppLog>>>,
    sessions: Mutex<HashMap<String, Session>>,
    disk: Option<Arc<Disk>>,
}

/// What a tail receives: a line, or a note that lines were dropped because it fell behind.
pub enum TailEvent {
    Line(Arc<LogLine>),
    Dropped(u64),
}

/// A live subscription to one app's stream.
pub struct Tail {
    rx: broadcast::Receiver<Arc<LogLine>>,
    filter: LogFilter,
}

impl Tail {
    /// The next matching line; `None` when the app's stream is gone (app destroyed).
    pub async fn next(&mut self) -> Option<TailEvent> {
        loop {
            match self.rx.recv().await {
                Ok(line) if self.filter.matches(&line) => return Some(TailEvent::Line(line)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => return Some(TailEvent::Dropped(n)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Logplex {
    /// A log kept in memory only.
    pub fn new() -> Arc<Logplex> {
        Arc::new(Logplex::default())
    }

    /// A log whose history is also kept on disk under `dir`, within `retention`; what was
    /// there (from before a restart) is read back now.
    pub fn with_history(
        dir: &std::path::Path,
        retention: Retention,
    ) -> std::io::Result<Arc<Logplex>> {
        let disk = Disk::open(dir, retention)?;
        let lp = Logplex {
            disk: Some(disk.clone()),
            ..Logplex::default()
        };
        for app in disk.apps() {
            let lines = disk.read(&app, HISTORY, &|_| true);
            let log = lp.app_log(&app);
            log.ring
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(lines);
        }
        Ok(Arc::new(lp))
    }

    /// Waits until every line so far is in the history on disk, when it is kept there.
    /// Blocking: call it off the async runtime.
    pub fn flush(&self) {
        if let Some(disk) = &self.disk {
            disk.flush();
        }
    }

    /// How much history is kept, when it is kept on disk.
    pub fn retention(&self) -> Option<Retention> {
        self.disk.as_ref().map(|d| d.retention())
    }

    /// The most lines a session may ask for.
    pub fn max_lines(&self) -> usize {
        self.retention().map_or(HISTORY, |r| r.lines.max(HISTORY))
    }

    /// The last `n` lines matching `filter` and `search`, oldest first: from memory when it
    /// holds them, else from the history on disk (which blocks while it reads).
    pub fn search(
        &self,
        app_id: &str,
        n: usize,
        filter: &LogFilter,
        search: &Search,
    ) -> Vec<Arc<LogLine>> {
        match &self.disk {
            Some(disk) if !search.is_empty() || n > HISTORY => {
                // A destroyed app is gone from the map; its files may not be yet.
                let log = self
                    .apps
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(app_id)
                    .cloned();
                let Some(history) = log.as_ref().and_then(|l| l.history.as_ref()) else {
                    return Vec::new();
                };
                disk.flush();
                history.read(n, &|l| filter.matches(l) && search.matches(l))
            }
            _ => self.history(app_id, n, filter),
        }
    }

    fn app_log(&self, app_id: &str) -> Arc<AppLog> {
        if let Some(a) = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
        {
            return a.clone();
        }
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.entry(app_id.to_string())
            .or_insert_with(|| Arc::new(AppLog::new(app_id, self.disk.as_deref())))
            .clone()
    }

    /// The last `n` lines matching `filter`, oldest first.
    pub fn history(&self, app_id: &str, n: usize, filter: &LogFilter) -> Vec<Arc<LogLine>> {
        let log = self.app_log(app_id);
        let ring = log.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = ring
            .iter()
            .rev()
            .filter(|l| filter.matches(l))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Subscribes to new lines. Subscribe before reading history so nothing falls in between
    /// (a line may then appear in both; callers that care can compare timestamps).
    pub fn tail(&self, app_id: &str, filter: LogFilter) -> Tail {
        Tail {
            rx: self
                .app_log(app_id)
                .live
                .get_or_init(|| broadcast::channel(TAIL_BUFFER).0)
                .subscribe(),
            filter,
        }
    }

    /// Copies every later line of the app's stream to `tap` (a drain), under `key`; a tap
    /// already under that key is replaced.
    pub fn attach(&self, app_id: &str, key: &str, tap: Arc<dyn LineTap>) {
        let log = self.app_log(app_id);
        let mut taps = log.taps.write().unwrap_or_else(|e| e.into_inner());
        taps.retain(|(k, _)| k != key);
        taps.push((key.to_string(), tap));
    }

    /// Stops copying the stream to the tap under `key`.
    pub fn detach(&self, app_id: &str, key: &str) {
        let log = self.app_log(app_id);
        log.taps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(k, _)| k != key);
    }

    /// Forgets an app's history (on disk too) and ends its tails.
    pub fn remove_app(&self, app_id: &str) {
        let log = self
            .apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        if let Some(history) = log.as_ref().and_then(|l| l.history.as_ref()) {
            history.close();
        }
        if let Some(disk) = &self.disk {
            disk.remove(app_id);
        }
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.app_id != app_id);
    }

    /// Creates a session and returns its secret id.
    pub fn create_session(
        &self,
        app_id: &str,
        filter: LogFilter,
        lines: usize,
        tail: bool,
        search: Search,
        opener: Option<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Result<String, kiln_model::secret::SecretError> {
        let id = kiln_model::secret::new_secret()?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        sessions.insert(
            id.clone(),
            Session {
                app_id: app_id.to_string(),
                filter,
                lines: lines.min(self.max_lines()),
                tail,
                search,
                opener,
                created: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Looks a session up. A tail session may be reopened (EventSource clients reconnect);
    /// sessions expire after six minutes unused.
    pub fn session(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(id)?;
        if s.created.elapsed() >= SESSION_TTL {
            sessions.remove(id);
            return None;
        }
        s.created = Instant::now();
        Some(s.clone())
    }
}

impl LogSink for Logplex {
    fn emit(&self, app_id: &str, line: LogLine) {
        self.app_log(app_id).push_all(std::iter::once(line));
    }

    fn emit_all(&self, app_id: &str, lines: Vec<LogLine>) {
        self.app_log(app_id).push_all(lines);
    }

    /// The app's log itself. A handle kept past `remove_app` writes to a log nobody reads
    /// any more, where `emit` would bring the destroyed app's log back.
    fn app_sink(&self, app_id: &str) -> Option<Arc<dyn AppLogSink>> {
        Some(self.app_log(app_id))
    }
}

impl AppLogSink for AppLog {
    fn emit(&self, line: LogLine) {
        self.push_all(std::iter::once(line));
    }

    fn emit_all(&self, lines: Vec<LogLine>) {
        self.push_all(lines);
    }
}

impl AppLog {
    /// Adds lines to the stream, in order: to the ring, the taps, the tails and the disk.
    /// Each of those is locked once for the lot, which is what lets one dyno's flood (a read
    /// of its pipe brings hundreds of lines) go through at a few hundred nanoseconds a line.
    ///
    /// The stream is in one time order, strictly: a line stamped no later than the one
    /// before it (several lines made within one microsecond, or a router line stamped when
    /// its request began and pushed after a dyno's) is stamped a microsecond after it. A
    /// line's time is then its place in the stream, which is what a tail reconnecting with
    /// `Last-Event-ID` and the de-duplication of history and tail rely on. Everything is
    /// done under the ring's lock, so the tails and taps see the lines in that same order.
    fn push_all(&self, lines: impl IntoIterator<Item = LogLine>) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // The newest line is the ring's last: it always keeps at least one.
        let mut last = ring.back().map_or(i64::MIN, |l| l.time.0);
        let mut lines = lines.into_iter().map(|mut l| {
            if l.time.0 <= last {
                l.time.0 = last + 1;
            }
            last = l.time.0;
            Arc::new(l)
        });
        let batch = match (lines.next(), lines.next()) {
            (None, _) => return,
            (Some(one), None) => Batch::One(one),
            (Some(first), Some(second)) => {
                let mut all = Vec::with_capacity(2 + lines.size_hint().0);
                all.extend([first, second]);
                all.extend(lines);
                Batch::Many(all)
            }
        };
        let lines = batch.as_slice();
        let keep = &lines[lines.len().saturating_sub(self.cap)..];
        let over = (ring.len() + keep.len()).saturating_sub(self.cap);
        ring.drain(..over);
        ring.extend(keep.iter().cloned());
        for (_, tap) in self.taps.read().unwrap_or_else(|e| e.into_inner()).iter() {
            tap.offer_all(lines);
        }
        // No tails is the usual case: skip the channel's lock per line.
        if let Some(live) = self.live.get().filter(|l| l.receiver_count() > 0) {
            for line in lines {
                let _ = live.send(line.clone());
            }
        }
        // Under the ring's lock, so the history has the stream's order.
        if let Some(history) = &self.history {
            history.append(lines);
        }
        drop(ring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_handle_writes_to_the_same_stream() {
        let lp = Logplex::new();
        lp.emit("a", LogLine::app("web.1", "one"));
        let handle = lp.app_sink("a").unwrap();
        handle.emit(LogLine::app("web.1", "two"));
        let h = lp.history("a", 10, &LogFilter::default());
        assert_eq!(
            h.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        lp.remove_app("a");
        handle.emit(LogLine::app("web.1", "after"));
        assert!(
            lp.history("a", 10, &LogFilter::default()).is_empty(),
            "a destroyed app's log stays gone"
        );
    }

    #[test]
    fn history_is_bounded_and_ordered() {
        let lp = Logplex::new();
        for i in 0..2000 {
            lp.emit("a", LogLine::app("web.1", format!("line {i}")));
        }
        let h = lp.history("a", 5000, &LogFilter::default());
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h.last().unwrap().message, "line 1999");
        assert_eq!(h[0].message, "line 500");
        assert_eq!(
            lp.history("a", 2, &LogFilter::default())[0].message,
            "line 1998"
        );
    }

    #[tokio::test]
    async fn a_batch_reaches_the_ring_the_taps_and_the_tails_in_order() {
        struct Count(Mutex<Vec<String>>);
        impl LineTap for Count {
            fn offer(&self, line: &Arc<LogLine>) {
                self.0.lock().unwrap().push(line.message.clone());
            }
        }
        let lp = Logplex::new();
        let tap = Arc::new(Count(Mutex::new(Vec::new())));
        lp.attach("a", "t", tap.clone());
        let mut tail = lp.tail("a", LogFilter::default());
        lp.emit("a", LogLine::app("web.1", "first"));
        let batch: Vec<_> = (0..HISTORY + 5)
            .map(|i| LogLine::app("web.1", format!("b{i}")))
            .collect();
        lp.emit_all("a", batch);
        let h = lp.history("a", usize::MAX, &LogFilter::default());
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h[0].message, "b5");
        assert_eq!(h.last().unwrap().message, format!("b{}", HISTORY + 4));
        let seen = tap.0.lock().unwrap().clone();
        assert_eq!(seen.len(), HISTORY + 6);
        assert_eq!(seen[0], "first");
        assert_eq!(seen[1], "b0");
        match tail.next().await {
            Some(TailEvent::Line(l)) => assert_eq!(l.message, "first"),
            _ => panic!("expected the first line"),
        }
        match tail.next().await {
            Some(TailEvent::Line(l)) => assert_eq!(l.message, "b0"),
            _ => panic!("expected the batch's first line"),
        }
    }

    #[test]
    fn the_stream_is_in_strict_time_order() {
        let lp = Logplex::new();
        let late = LogLine::heroku("router", "stamped first, pushed last");
        let now = Timestamp::now();
        let batch: Vec<_> = (0..100)
            .map(|i| {
                let mut l = LogLine::app("web.1", format!("{i}"));
                l.time = now;
                l
            })
            .collect();
        lp.emit_all("a", batch);
        lp.emit("a", late);
        let h = lp.history("a", usize::MAX, &LogFilter::default());
        assert_eq!(h.len(), 101);
        assert!(
            h.windows(2).all(|w| w[0].time < w[1].time),
            "strictly increasing"
        );
        assert_eq!(
            h[0].time, now,
            "a line in its own microsecond keeps its time"
        );
        assert_eq!(h[100].message, "stamped first, pushed last");
    }

    #[test]
    fn history_filters() {
        let lp = Logplex::new();
        lp.emit("a", LogLine::app("web.1", "w"));
        lp.emit("a", LogLine::heroku("router", "r"));
        lp.emit("b", LogLine::app("web.1", "other app"));
        let f = LogFilter {
            source: Some("heroku".into()),
            dyno: None,
        };
        let h = lp.history("a", 10, &f);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].message, "r");
    }

    #[tokio::test]
    async fn tails_see_new_lines_and_drops() {
        let lp = Logplex::new();
        let mut t = lp.tail(
            "a",
            LogFilter {
                source: None,
                dyno: Some("web".into()),
            },
        );
        lp.emit("a", LogLine::app("worker.1", "skip"));
        lp.emit("a", LogLine::app("web.2", "hello"));
        match t.next().await {
            Some(TailEvent::Line(l)) => assert_eq!(l.message, "hello"),
            _ => panic!("expected a line"),
        }
        for i in 0..(TAIL_BUFFER + 10) {
            lp.emit("a", LogLine::app("web.1", format!("{i}")));
        }
        assert!(matches!(t.next().await, Some(TailEvent::Dropped(n)) if n >= 10));
    }

    #[test]
    fn sessions_are_secret_and_scoped() {
        let lp = Logplex::new();
        let id = lp
            .create_session(
                "a",
                LogFilter::default(),
                100_000,
                false,
                Search::default(),
                None,
            )
            .unwrap();
        assert!(id.len() >= 64);
        let s = lp.session(&id).unwrap();
        assert_eq!(s.lines, HISTORY);
        assert!(lp.session("nope").is_none());
        lp.remove_app("a");
        assert!(lp.session(&id).is_none());
    }
}
