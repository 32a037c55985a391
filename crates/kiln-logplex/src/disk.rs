//! Each app's recent log history on disk, so that `kiln logs` after a restart (or a SIGKILL)
//! shows what led to it, and so that `--since`, `--until` and `--grep` can search more than
//! the in-memory ring holds.
//!
//! Per app, two append-only segment files: `<app>.log` (current) and `<app>.log.1` (the one
//! before). When the current one reaches the line or byte limit, it becomes the previous one
//! and a new one starts, so between one and two limits' worth is on disk and a read returns
//! the newest lines within the limits. Lines older than the age limit are skipped when read
//! and go when their segment is replaced.
//!
//! One line per record: `MICROS SOURCE PROCESS MESSAGE\n` (MICROS since the Unix epoch, `-`
//! for an empty process). A record cut short by a crash has no newline and is ignored.
//!
//! Writing never blocks the log path: lines go through a bounded channel to one writer
//! thread, which appends them in batches (one `write` per app per batch); if the writer
//! falls behind, lines are dropped from disk (still in memory, tails and drains) and counted.
//! The writer is not woken for each line: it wakes every [`WAKE_EVERY`] (or when a reader
//! asks it to flush) and takes what has gathered. Woken per line, it cost the router a fifth
//! of its throughput (a futex wake and two context switches per request's log line on a
//! 2-core machine, `bench/router`). What reached `write` survives a SIGKILL of the server:
//! it is in the kernel's page cache; a crash loses at most the last [`WAKE_EVERY`] of lines.

use crate::Batch;
use kiln_model::Timestamp;
use kiln_model::app::id_names_a_file;
use kiln_model::log::LogLine;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::time::Duration;

/// How much history each app keeps on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Lines kept (Heroku: 1,500).
    pub lines: usize,
    /// Bytes kept, about.
    pub bytes: u64,
    /// Lines older than this are not shown (Heroku's Redis lists expire after a week).
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            lines: crate::HISTORY,
            bytes: 16 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Lines waiting for the writer before new ones are dropped from disk.
const QUEUE: usize = 65_536;
/// Lines taken from the queue (at least) before they are written out.
const BATCH: usize = 4096;
/// How often the writer takes what has gathered.
const WAKE_EVERY: Duration = Duration::from_millis(20);
/// Segment files kept open at once; others are reopened when written to.
const OPEN_FILES: usize = 256;

enum Op {
    /// Lines of one app, in order (one read of a dyno's output, or one line).
    Lines(Arc<str>, Batch),
    Remove(Arc<str>),
    Flush(SyncSender<()>),
}

/// The disk side of the log: a handle on the writer thread and the directory.
pub struct Disk {
    dir: PathBuf,
    retention: Retention,
    /// Unbounded as a channel, bounded by `queued`: lines travel in batches of any size.
    tx: Sender<Op>,
    /// The writer's thread, unparked when a reader needs what is queued written now.
    writer: std::thread::Thread,
    /// Lines sent to the writer and not yet taken by it.
    queued: Arc<AtomicUsize>,
    dropped: AtomicU64,
}

impl Disk {
    /// Opens (creating) the history directory and starts the writer.
    pub fn open(dir: &Path, retention: Retention) -> std::io::Result<Arc<Disk>> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            dir: dir.to_path_buf(),
            retention,
            files: HashMap::default(),
            queued: queued.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("kiln-log-history".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(Disk {
            dir: dir.to_path_buf(),
            retention,
            tx,
            writer: thread.thread().clone(),
            queued,
            dropped: AtomicU64::new(0),
        }))
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Queues lines for the app's history; never blocks. When the writer is a whole queue
    /// behind, the lines stay in memory only, and that is counted.
    pub(crate) fn append_all(&self, app_id: &Arc<str>, lines: Batch) {
        let n = lines.as_slice().len();
        if self.queued.load(Ordering::Relaxed) + n > QUEUE {
            // Said once, then once per 10,000 lines more.
            let before = self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            if before == 0 || before / 10_000 != (before + n as u64) / 10_000 {
                tracing::warn!("the log history writer is behind; lines are kept in memory only");
            }
            return;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(Op::Lines(app_id.clone(), lines)).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    fn append(&self, app_id: &Arc<str>, line: &Arc<LogLine>) {
        self.append_all(app_id, Batch::One(line.clone()));
    }

    /// Deletes an app's history (after the lines queued before this call).
    pub(crate) fn remove(&self, app_id: &str) {
        let _ = self.tx.send(Op::Remove(Arc::from(app_id)));
    }

    /// Waits until every line queued so far is written.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Op::Flush(tx)).is_ok() {
            self.writer.unpark();
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// The apps that have a history on disk.
    pub(crate) fn apps(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut apps: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let app = name
                    .strip_suffix(".log.1")
                    .or_else(|| name.strip_suffix(".log"))?;
                id_names_a_file(app).then(|| app.to_string())
            })
            .collect();
        apps.sort();
        apps.dedup();
        apps
    }

    /// The app's lines on disk that `keep` accepts, oldest first, at most the newest
    /// `max` of them, none older than the age limit. Blocking: call it off the async runtime.
    pub fn read(
        &self,
        app_id: &str,
        max: usize,
        keep: &dyn Fn(&LogLine) -> bool,
    ) -> Vec<Arc<LogLine>> {
        if !id_names_a_file(app_id) {
            return Vec::new();
        }
        // What is kept is the newest `lines`, whatever a second segment still holds.
        let max = max.min(self.retention.lines);
        let oldest = Timestamp::now().0
            - i64::try_from(self.retention.max_age.as_micros()).unwrap_or(i64::MAX / 2);
        let mut out: std::collections::VecDeque<Arc<LogLine>> = std::collections::VecDeque::new();
        let base = self.dir.join(format!("{app_id}.log"));
        for path in [with_suffix(&base, ".1"), base.clone()] {
            let Ok(f) = File::open(&path) else { continue };
            let mut reader = BufReader::new(f);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if buf.last() != Some(&b'\n') {
                    break; // cut short by a crash
                }
                let Some(line) = parse(&buf[..buf.len() - 1]) else {
                    continue;
                };
                if line.time.0 < oldest || !keep(&line) {
                    continue;
                }
                if out.len() == max {
                    out.pop_front();
                }
                out.push_back(Arc::new(line));
            }
        }
        out.into()
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn record(out: &mut Vec<u8>, line: &LogLine) {
    let process: &str = if line.process.is_empty() {
        "-"
    } else {
        &line.process
    };
    // Numbers through `itoa`, not `write!`: this runs for every line kept.
    out.extend_from_slice(itoa::Buffer::new().format(line.time.0).as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.source.as_bytes());
    out.push(b' ');
    out.extend_from_slice(process.as_bytes());
    out.push(b' ');
    // Messages never hold a newline (output is split on them); keep it so whatever comes.
    let at = out.len();
    out.extend_from_slice(line.message.as_bytes());
    if memchr::memchr(b'\n', line.message.as_bytes()).is_some() {
        for b in &mut out[at..] {
            if *b == b'\n' {
                *b = b' ';
            }
        }
    }
    out.push(b'\n');
}

fn parse(rec: &[u8]) -> Option<LogLine> {
    let text = std::str::from_utf8(rec).ok()?;
    let mut parts = text.splitn(4, ' ');
    let micros: i64 = parts.next()?.parse().ok()?;
    let source = match parts.next()? {
        "app" => Cow::Borrowed("app"),
        "heroku" => Cow::Borrowed("heroku"),
        other => Cow::Owned(other.to_string()),
    };
    let process = match parts.next()? {
        "-" => Cow::Borrowed(""),
        p => Cow::Owned(p.to_string()),
    };
    let message = parts.next().unwrap_or("").to_string();
    Some(LogLine {
        time: Timestamp(micros),
        source,
        process,
        message,
    })
}

struct Segment {
    file: File,
    lines: usize,
    bytes: u64,
    buf: Vec<u8>,
    /// Records in `buf`.
    pending: usize,
}

impl Segment {
    fn append(&mut self, lines: &[Arc<LogLine>]) {
        for line in lines {
            record(&mut self.buf, line);
        }
        self.pending += lines.len();
    }
}

struct Writer {
    dir: PathBuf,
    retention: Retention,
    /// Keyed by app id, looked up once per batch of lines: foldhash rather than SipHash,
    /// which cost more than the lookup's other work (ids are the platform's, not a
    /// client's, and the seed is random anyway).
    files: HashMap<Arc<str>, Segment, foldhash::fast::RandomState>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        loop {
            // Not blocked in `recv`: a sender finds no one to wake, and pays no syscall.
            std::thread::park_timeout(WAKE_EVERY);
            loop {
                let mut flushes = Vec::new();
                let mut taken = 0;
                // Each app's lines go out in one write; but no more than a batch at a time, or
                // a flood that never lets the queue empty would grow the buffers without bound
                // instead of being written.
                let mut gone = false;
                while taken < BATCH {
                    match rx.try_recv() {
                        Ok(op) => taken += self.apply(op, &mut flushes).max(1),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            gone = true;
                            break;
                        }
                    }
                }
                self.write_out();
                for f in flushes {
                    let _ = f.send(());
                }
                if gone {
                    return;
                }
                if taken < BATCH {
                    break;
                }
            }
        }
    }

    /// Applies one operation; how many lines it carried.
    fn apply(&mut self, op: Op, flushes: &mut Vec<SyncSender<()>>) -> usize {
        match op {
            Op::Lines(app, lines) => {
                let lines = lines.as_slice();
                self.queued.fetch_sub(lines.len(), Ordering::Relaxed);
                // The usual batch is for a file already open: one lookup, and no check of
                // its name, which was checked when it was opened (both cost the router a few
                // per cent per request when done for every batch).
                if let Some(seg) = self.files.get_mut(&app) {
                    seg.append(lines);
                    return lines.len();
                }
                if !id_names_a_file(&app) {
                    return lines.len();
                }
                self.write_out();
                if self.files.len() >= OPEN_FILES {
                    self.files.clear();
                }
                match self.open(&app) {
                    Ok(mut seg) => {
                        seg.append(lines);
                        self.files.insert(app, seg);
                    }
                    Err(e) => {
                        tracing::warn!(app = %app, error = %e, "cannot open the app's log history");
                    }
                }
                lines.len()
            }
            Op::Remove(app) => {
                self.write_out();
                self.files.remove(&app);
                if id_names_a_file(&app) {
                    let base = self.dir.join(format!("{app}.log"));
                    let _ = std::fs::remove_file(with_suffix(&base, ".1"));
                    let _ = std::fs::remove_file(&base);
                }
                0
            }
            Op::Flush(done) => {
                flushes.push(done);
                0
            }
        }
    }

    /// Opens the app's current segment, counting what it already holds.
    fn open(&self, app: &str) -> std::io::Result<Segment> {
        let path = self.dir.join(format!("{app}.log"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        let lines = if bytes == 0 {
            0
        } else {
            BufReader::new(File::open(&path)?).split(b'\n').count()
        };
        Ok(Segment {
            file,
            lines,
            bytes,
            buf: Vec::new(),
            pending: 0,
        })
    }

    fn write_out(&mut self) {
        let limit_lines = self.retention.lines.max(1);
        let limit_bytes = self.retention.bytes.max(1);
        let mut rotate = Vec::new();
        for (app, seg) in self.files.iter_mut() {
            if seg.buf.is_empty() {
                continue;
            }
            let n = std::mem::take(&mut seg.pending);
            if let Err(e) = seg.file.write_all(&seg.buf) {
                tracing::warn!(app = %app, error = %e, "cannot write the app's log history");
            }
            seg.lines += n;
            seg.bytes += seg.buf.len() as u64;
            seg.buf.clear();
            if seg.lines >= limit_lines || seg.bytes >= limit_bytes {
                rotate.push(app.clone());
            }
        }
        for app in rotate {
            self.files.remove(&app);
            let base = self.dir.join(format!("{app}.log"));
            if let Err(e) = std::fs::rename(&base, with_suffix(&base, ".1")) {
                tracing::warn!(app = %app, error = %e, "cannot rotate the app's log history");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-logdisk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const APP: &str = "0b5c3c3e-1111-4222-8333-444455556666";

    #[test]
    fn lines_survive_reopening_and_are_bounded() {
        let d = dir("bounded");
        let r = Retention {
            lines: 10,
            ..Retention::default()
        };
        let disk = Disk::open(&d, r).unwrap();
        let app: Arc<str> = Arc::from(APP);
        for i in 0..35 {
            disk.append(
                &app,
                &Arc::new(LogLine::app("web.1", format!("line {i} é \u{1b}[31m"))),
            );
        }
        disk.append(&app, &Arc::new(LogLine::heroku("", "no process")));
        disk.flush();
        let again = Disk::open(&d, r).unwrap();
        let all = again.read(APP, usize::MAX, &|_| true);
        assert!(all.len() >= 10 && all.len() <= 20, "{}", all.len());
        assert_eq!(all.last().unwrap().message, "no process");
        assert_eq!(all.last().unwrap().process, "");
        assert_eq!(all[all.len() - 2].message, "line 34 é \u{1b}[31m");
        assert_eq!(all[all.len() - 2].process, "web.1");
        let some = again.read(APP, 3, &|l| l.message.contains("line 3"));
        assert_eq!(
            some.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            [
                "line 32 é \u{1b}[31m",
                "line 33 é \u{1b}[31m",
                "line 34 é \u{1b}[31m"
            ]
        );
        assert_eq!(again.apps(), vec![APP.to_string()]);
        again.remove(APP);
        again.flush();
        assert!(again.read(APP, 100, &|_| true).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_record_and_junk_are_ignored_and_old_lines_expire() {
        let d = dir("torn");
        std::fs::create_dir_all(&d).unwrap();
        let now = Timestamp::now().0;
        let old = now - 8 * 24 * 3600 * 1_000_000;
        std::fs::write(
            d.join(format!("{APP}.log")),
            format!(
                "{old} app web.1 too old\nnot a record\n{now} app web.1 kept\n{now} app web.1 torn"
            ),
        )
        .unwrap();
        let disk = Disk::open(&d, Retention::default()).unwrap();
        let got = disk.read(APP, 100, &|_| true);
        assert_eq!(
            got.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["kept"]
        );
        assert!(disk.read("../../etc/passwd", 100, &|_| true).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
