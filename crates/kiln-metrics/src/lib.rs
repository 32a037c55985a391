//! Metrics, a room of its own: per app and per step (a minute by default), what the router
//! saw (requests by status class, a response-time histogram, H-codes) and what the dyno
//! manager saw (each dyno's memory and load, restarts, R-codes).
//!
//! Recording is on the hot paths, so it is a few relaxed atomic adds into the app's live
//! step ([`AppMeters`], found once per app by the router and the dyno manager, never per
//! request). Once a step, a task takes every app's live step (swapping the counters to zero)
//! and appends it as one JSON line to the app's fine series on disk; every ten steps the
//! merged ten go to the coarse series. Each series keeps its newest points (24 h of minutes
//! and 7 days of ten minutes by default), so what was measured survives restarts; a crash
//! loses the step in progress.

pub mod histogram;

use kiln_model::app::id_names_a_file;
use kiln_model::meter::{DynoMeter, DynoSample, Meters, RequestMeter};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Steps merged into one coarse point.
pub const COARSE: u32 = 10;

/// How metrics are kept.
#[derive(Debug, Clone, Copy)]
pub struct MetricsConfig {
    /// One point per app per step (Heroku: a minute).
    pub step: Duration,
    /// Fine points kept (24 h of minutes).
    pub fine_points: usize,
    /// Coarse points kept (7 days of ten minutes).
    pub coarse_points: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            step: Duration::from_secs(60),
            fine_points: 24 * 60,
            coarse_points: 7 * 24 * 6,
        }
    }
}

/// One dyno over one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DynoPoint {
    /// The most it held in RAM and in swap during the step, and its quota.
    pub rss: u64,
    pub swap: u64,
    pub quota: u64,
    /// The mean of its load samples, and how many there were (to merge steps fairly).
    pub load: f64,
    pub n: u32,
}

/// One app over one step: what the API serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start, Unix seconds, and length in seconds.
    pub t: i64,
    pub step: u32,
    /// Requests by status class: 1xx .. 5xx.
    pub status: [u64; 5],
    /// Router errors by code (`H12`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub h: BTreeMap<String, u64>,
    /// Response times (microseconds) as sparse histogram buckets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lat: Vec<(u16, u64)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dynos: BTreeMap<String, DynoPoint>,
    #[serde(default)]
    pub restarts: u64,
    /// Runtime errors by code (`R14`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub r: BTreeMap<String, u64>,
}

impl Point {
    fn is_empty(&self) -> bool {
        self.status.iter().all(|n| *n == 0)
            && self.h.is_empty()
            && self.dynos.is_empty()
            && self.restarts == 0
            && self.r.is_empty()
    }

    /// Adds a later point of the same app into this one.
    pub fn merge(&mut self, o: &Point) {
        self.step += o.step;
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        for (k, v) in &o.h {
            *self.h.entry(k.clone()).or_default() += v;
        }
        histogram::merge(&mut self.lat, &o.lat);
        for (name, d) in &o.dynos {
            let e = self.dynos.entry(name.clone()).or_default();
            let n = e.n + d.n;
            if n > 0 {
                e.load = (e.load * e.n as f64 + d.load * d.n as f64) / n as f64;
            }
            e.n = n;
            e.rss = e.rss.max(d.rss);
            e.swap = e.swap.max(d.swap);
            e.quota = d.quota;
        }
        self.restarts += o.restarts;
        for (k, v) in &o.r {
            *self.r.entry(k.clone()).or_default() += v;
        }
    }

    /// All requests in the step.
    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }

    /// The `q` quantile of response times, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        histogram::quantile(&self.lat, q).map(|us| us / 1000.0)
    }
}

/// Counts by a two-digit code (H00..H99, R00..R99).
struct Codes([AtomicU64; 100]);

impl Codes {
    fn new() -> Codes {
        Codes(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn add(&self, code: u8) {
        if let Some(c) = self.0.get(code as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn take(&self, letter: char) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| c.load(Ordering::Relaxed) > 0)
            .map(|(i, c)| (format!("{letter}{i:02}"), c.swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// One app's live step.
pub struct AppMeters {
    status: [AtomicU64; 5],
    h: Codes,
    lat: histogram::Histogram,
    dynos: Mutex<BTreeMap<String, DynoPoint>>,
    restarts: AtomicU64,
    r: Codes,
}

impl AppMeters {
    fn new() -> AppMeters {
        AppMeters {
            status: std::array::from_fn(|_| AtomicU64::new(0)),
            h: Codes::new(),
            lat: histogram::Histogram::default(),
            dynos: Mutex::new(BTreeMap::new()),
            restarts: AtomicU64::new(0),
            r: Codes::new(),
        }
    }

    /// The step so far, and zero again.
    fn take(&self) -> Point {
        Point {
            status: std::array::from_fn(|i| self.status[i].swap(0, Ordering::Relaxed)),
            h: self.h.take('H'),
            lat: self.lat.take(),
            dynos: std::mem::take(&mut *self.dynos.lock().unwrap_or_else(|e| e.into_inner())),
            restarts: self.restarts.swap(0, Ordering::Relaxed),
            r: self.r.take('R'),
            ..Point::default()
        }
    }
}

impl RequestMeter for AppMeters {
    fn request(&self, status: u16, latency: Option<Duration>, h_code: Option<u8>) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.status[class].fetch_add(1, Ordering::Relaxed);
        if let Some(l) = latency {
            self.lat.record(l.as_micros().min(u64::MAX as u128) as u64);
        }
        if let Some(c) = h_code {
            self.h.add(c);
        }
    }
}

impl DynoMeter for AppMeters {
    fn sample(&self, dyno: &str, s: DynoSample) {
        let mut dynos = self.dynos.lock().unwrap_or_else(|e| e.into_inner());
        let e = dynos.entry(dyno.to_string()).or_default();
        e.rss = e.rss.max(s.rss_bytes);
        e.swap = e.swap.max(s.swap_bytes);
        e.quota = s.quota_bytes;
        e.load = (e.load * e.n as f64 + s.load) / (e.n + 1) as f64;
        e.n += 1;
    }

    fn restart(&self, _dyno: &str) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    fn r_code(&self, code: u8) {
        self.r.add(code);
    }
}

/// Which series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// One point per step.
    Fine,
    /// One point per ten steps.
    Coarse,
}

impl Resolution {
    fn suffix(self) -> &'static str {
        match self {
            Resolution::Fine => "fine",
            Resolution::Coarse => "coarse",
        }
    }
}

/// Every app's meters and series.
pub struct Metrics {
    dir: PathBuf,
    config: MetricsConfig,
    apps: RwLock<HashMap<String, Arc<AppMeters>>>,
    /// The coarse point being gathered, per app.
    coarse: Mutex<HashMap<String, Point>>,
    /// Lines in each series file, to know when to trim it.
    lines: Mutex<HashMap<PathBuf, usize>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Metrics {
    /// Keeps series under `dir` (created if missing).
    pub fn open(dir: &Path, config: MetricsConfig) -> std::io::Result<Arc<Metrics>> {
        std::fs::create_dir_all(dir)?;
        Ok(Arc::new(Metrics {
            dir: dir.to_path_buf(),
            config,
            apps: RwLock::new(HashMap::new()),
            coarse: Mutex::new(HashMap::new()),
            lines: Mutex::new(HashMap::new()),
        }))
    }

    pub fn config(&self) -> MetricsConfig {
        self.config
    }

    fn app(&self, app_id: &str) -> Arc<AppMeters> {
        if let Some(a) = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
        {
            return a.clone();
        }
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_insert_with(|| Arc::new(AppMeters::new()))
            .clone()
    }

    /// Takes a step's points every step, on the step's boundaries, until the runtime stops.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let step = me.config.step.as_secs().max(1) as i64;
            loop {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let next = (now.as_secs() as i64 / step + 1) * step;
                let wait = Duration::from_secs(next as u64).saturating_sub(now);
                tokio::time::sleep(wait).await;
                let me = me.clone();
                // The step that just ended began one step before the boundary.
                let _ = tokio::task::spawn_blocking(move || me.roll(next - step)).await;
            }
        });
    }

    /// Ends the step that began at `t` (Unix seconds): every app's point goes to its series.
    pub fn roll(&self, t: i64) {
        let step = self.config.step.as_secs().max(1) as i64;
        let apps: Vec<(String, Arc<AppMeters>)> = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (app, meters) in apps {
            let mut p = meters.take();
            if p.is_empty() || !id_names_a_file(&app) {
                continue;
            }
            p.t = t;
            p.step = step as u32;
            self.append(&app, Resolution::Fine, &p);
            // Coarse points start on multiples of ten steps.
            let window = step * COARSE as i64;
            let start = t - t.rem_euclid(window);
            let done = {
                let mut coarse = self.coarse.lock().unwrap_or_else(|e| e.into_inner());
                let acc = coarse.entry(app.clone()).or_insert_with(|| Point {
                    t: start,
                    ..Point::default()
                });
                let flushed = if acc.t != start {
                    let old = std::mem::replace(
                        acc,
                        Point {
                            t: start,
                            ..Point::default()
                        },
                    );
                    Some(old)
                } else {
                    None
                };
                acc.merge(&p);
                flushed
            };
            if let Some(mut old) = done.filter(|o| !o.is_empty()) {
                old.step = window as u32;
                self.append(&app, Resolution::Coarse, &old);
            }
        }
    }

    /// Writes the step in progress (and the coarse points being gathered) now: the server is
    /// stopping. The rest of the step, after a restart, is another point with the same start;
    /// [`query`](Self::query) merges the two.
    pub fn flush(&self) {
        let step = self.config.step.as_secs().max(1) as i64;
        let now = now_secs();
        self.roll(now - now.rem_euclid(step));
        let pending: Vec<(String, Point)> = self
            .coarse
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (app, mut p) in pending {
            if !p.is_empty() {
                p.step = (step * COARSE as i64) as u32;
                self.append(&app, Resolution::Coarse, &p);
            }
        }
    }

    fn path(&self, app: &str, r: Resolution) -> PathBuf {
        self.dir.join(format!("{app}.{}", r.suffix()))
    }

    fn append(&self, app: &str, r: Resolution, p: &Point) {
        let path = self.path(app, r);
        let Ok(mut line) = serde_json::to_vec(p) else {
            return;
        };
        line.push(b'\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&line));
        if let Err(e) = written {
            tracing::warn!(app, error = %e, "cannot write the app's metrics");
            return;
        }
        let keep = match r {
            Resolution::Fine => self.config.fine_points,
            Resolution::Coarse => self.config.coarse_points,
        }
        .max(1);
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let n = lines
            .entry(path.clone())
            .or_insert_with(|| count_lines(&path));
        *n += 1;
        // Trimmed now and then, not on every write: a quarter over, back to the limit.
        if *n > keep + keep / 4 {
            let points = read_points(&path);
            let start = points.len().saturating_sub(keep);
            let mut text = Vec::new();
            for p in &points[start..] {
                if let Ok(l) = serde_json::to_vec(p) {
                    text.extend_from_slice(&l);
                    text.push(b'\n');
                }
            }
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .is_ok()
            {
                *n = points.len() - start;
            }
        }
    }

    /// An app's points that overlap `[since, until)` (Unix seconds), oldest first. Blocking:
    /// it reads the series from disk.
    pub fn query(&self, app_id: &str, r: Resolution, since: i64, until: i64) -> Vec<Point> {
        if !id_names_a_file(app_id) {
            return Vec::new();
        }
        let mut out: Vec<Point> = Vec::new();
        for p in read_points(&self.path(app_id, r))
            .into_iter()
            .filter(|p| p.t + i64::from(p.step) > since && p.t < until)
        {
            // Two parts of one step (written at a stop, then after the restart) are one point.
            match out.last_mut() {
                Some(last) if last.t == p.t => {
                    let step = last.step.max(p.step);
                    last.merge(&p);
                    last.step = step;
                }
                _ => out.push(p),
            }
        }
        out
    }

    /// Forgets an app: its meters and its series.
    pub fn remove_app(&self, app_id: &str) {
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        self.coarse
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        if id_names_a_file(app_id) {
            for r in [Resolution::Fine, Resolution::Coarse] {
                let path = self.path(app_id, r);
                let _ = std::fs::remove_file(&path);
                self.lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&path);
            }
        }
    }
}

fn count_lines(path: &Path) -> usize {
    std::fs::File::open(path)
        .map(|f| std::io::BufReader::new(f).split(b'\n').count())
        .unwrap_or(0)
}

/// Every whole point of a series file; a line cut short by a crash, or junk, is skipped.
fn read_points(path: &Path) -> Vec<Point> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_slice(&l).ok())
        .collect()
}

impl Meters for Metrics {
    fn requests(&self, app_id: &str) -> Arc<dyn RequestMeter> {
        self.app(app_id)
    }

    fn dynos(&self, app_id: &str) -> Arc<dyn DynoMeter> {
        self.app(app_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "0b5c3c3e-1111-4222-8333-444455556666";

    #[test]
    fn steps_go_to_disk_merge_into_coarse_points_and_are_trimmed() {
        let dir = kiln_testkit::TempDir::new("kiln-metrics");
        let config = MetricsConfig {
            step: Duration::from_secs(60),
            fine_points: 8,
            coarse_points: 2,
        };
        let m = Metrics::open(dir.path(), config).unwrap();
        let req = m.requests(APP);
        let dyn_ = m.dynos(APP);
        // Twelve steps from 00:00: a 200, a 503 (H12) and a sample in each.
        for i in 0..12 {
            req.request(200, Some(Duration::from_millis(10)), None);
            req.request(503, Some(Duration::from_secs(30)), Some(12));
            req.request(404, None, None);
            dyn_.sample(
                "web.1",
                DynoSample {
                    rss_bytes: 100 + i,
                    swap_bytes: 0,
                    quota_bytes: 512,
                    load: 1.0,
                },
            );
            if i == 3 {
                dyn_.restart("web.1");
                dyn_.r_code(14);
            }
            m.roll(i as i64 * 60);
        }
        let fine = m.query(APP, Resolution::Fine, 0, i64::MAX);
        assert!(fine.len() <= 10 && fine.len() >= 8, "{}", fine.len());
        let last = fine.last().unwrap();
        assert_eq!(last.t, 11 * 60);
        assert_eq!(last.status, [0, 1, 0, 1, 1]);
        assert_eq!(last.h.get("H12"), Some(&1));
        assert_eq!(last.dynos["web.1"].rss, 111);
        let p50 = last.latency_ms(0.5).unwrap();
        assert!((p50 - 10.0).abs() < 0.33, "{p50}");
        // The first ten steps made one coarse point (the second is still being gathered).
        let coarse = m.query(APP, Resolution::Coarse, 0, i64::MAX);
        assert_eq!(coarse.len(), 1);
        assert_eq!(coarse[0].t, 0);
        assert_eq!(coarse[0].step, 600);
        assert_eq!(coarse[0].requests(), 30);
        assert_eq!(coarse[0].restarts, 1);
        assert_eq!(coarse[0].r.get("R14"), Some(&1));
        assert_eq!(coarse[0].dynos["web.1"].rss, 109);
        assert_eq!(coarse[0].dynos["web.1"].n, 10);
        // A window.
        assert_eq!(m.query(APP, Resolution::Fine, 600, 660).len(), 1);
        // Survives reopening; junk and a torn line are skipped.
        let path = dir.path().join(format!("{APP}.fine"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"not json\n{\"t\":1").unwrap();
        let again = Metrics::open(dir.path(), config).unwrap();
        assert_eq!(again.query(APP, Resolution::Fine, 0, i64::MAX), fine);
        assert!(
            again
                .query("../etc", Resolution::Fine, 0, i64::MAX)
                .is_empty()
        );
        again.remove_app(APP);
        assert!(!path.exists());
    }

    #[test]
    fn a_step_cut_by_a_restart_is_one_point() {
        let dir = kiln_testkit::TempDir::new("kiln-metrics-flush");
        let config = MetricsConfig {
            step: Duration::from_secs(3600),
            ..MetricsConfig::default()
        };
        let m = Metrics::open(dir.path(), config).unwrap();
        m.requests(APP)
            .request(200, Some(Duration::from_millis(5)), None);
        m.flush();
        let again = Metrics::open(dir.path(), config).unwrap();
        again.requests(APP).request(500, None, Some(13));
        again.flush();
        let got = again.query(APP, Resolution::Fine, 0, i64::MAX);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].status, [0, 1, 0, 0, 1]);
        assert_eq!(got[0].step, 3600);
        assert_eq!(got[0].h.get("H13"), Some(&1));
        let coarse = again.query(APP, Resolution::Coarse, 0, i64::MAX);
        assert_eq!(coarse.len(), 1);
        assert_eq!(coarse[0].requests(), 2);
    }

    #[test]
    fn an_idle_app_writes_nothing() {
        let dir = kiln_testkit::TempDir::new("kiln-metrics-idle");
        let m = Metrics::open(dir.path(), MetricsConfig::default()).unwrap();
        let _ = m.requests(APP);
        m.roll(0);
        assert!(m.query(APP, Resolution::Fine, 0, i64::MAX).is_empty());
    }
}
