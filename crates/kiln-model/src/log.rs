//! Log lines in Heroku's format, the filters `heroku logs` applies, and the sink every
//! component writes through.

use crate::time::Timestamp;
use std::borrow::Cow;
use std::sync::Arc;

/// Heroku splits lines longer than this into several lines.
pub const MAX_LINE_BYTES: usize = 10_000;

/// One line of an app's log stream: `TIMESTAMP SOURCE[PROCESS]: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: Timestamp,
    /// `app` (dyno output, API events) or `heroku` (router, dyno manager).
    pub source: Cow<'static, str>,
    /// `web.1`, `router`, `api`, ...
    pub process: Cow<'static, str>,
    pub message: String,
}

impl LogLine {
    pub fn new(
        source: &'static str,
        process: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> LogLine {
        LogLine {
            time: Timestamp::now(),
            source: Cow::Borrowed(source),
            process: process.into(),
            message: message.into(),
        }
    }

    /// Output of a dyno: `app[web.1]`.
    pub fn app(process: &str, message: impl Into<String>) -> LogLine {
        LogLine::new("app", process.to_string(), message)
    }

    /// The platform speaking about a dyno or the router: `heroku[web.1]`, `heroku[router]`.
    pub fn heroku(process: &str, message: impl Into<String>) -> LogLine {
        LogLine::new("heroku", process.to_string(), message)
    }

    /// A router line, `heroku[router]`: one per request, so it borrows its names.
    pub fn router(message: String) -> LogLine {
        LogLine::new("heroku", "router", message)
    }

    /// An API event (deploys, config changes, scaling): `app[api]`.
    pub fn api(message: impl Into<String>) -> LogLine {
        LogLine::new("app", "api", message)
    }

    /// Heroku's human rendering, as `heroku logs` prints it.
    pub fn render(&self) -> String {
        if self.process.is_empty() {
            format!(
                "{} {}: {}",
                self.time.log_format(),
                self.source,
                self.message
            )
        } else {
            format!(
                "{} {}[{}]: {}",
                self.time.log_format(),
                self.source,
                self.process,
                self.message
            )
        }
    }

    /// Splits a raw chunk of output into loggable messages: one per line, lines over
    /// 10 000 bytes cut into pieces (on character boundaries), invalid UTF-8 replaced.
    pub fn split_output(raw: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(raw);
        let mut out = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let mut rest = line;
            while rest.len() > MAX_LINE_BYTES {
                let mut cut = MAX_LINE_BYTES;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push(rest[..cut].to_string());
                rest = &rest[cut..];
            }
            out.push(rest.to_string());
        }
        out
    }
}

/// Which lines a log session wants: `--source` matches exactly; `--dyno web` matches `web`
/// itself and every `web.N` (logplex's prefix rule), `--dyno web.1` only `web.1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub source: Option<String>,
    pub dyno: Option<String>,
}

impl LogFilter {
    pub fn matches(&self, line: &LogLine) -> bool {
        if let Some(s) = &self.source {
            if !s.is_empty() && &line.source != s {
                return false;
            }
        }
        if let Some(d) = &self.dyno {
            if !d.is_empty()
                && line.process != *d
                && !(line.process.starts_with(d.as_str())
                    && line.process.as_bytes().get(d.len()) == Some(&b'.'))
            {
                return false;
            }
        }
        true
    }
}

/// Where platform components send log lines for an app. Implemented by logplex; the router,
/// dyno manager and API depend only on this.
pub trait LogSink: Send + Sync {
    fn emit(&self, app_id: &str, line: LogLine);

    /// Several lines of one app at once, in order: what one read of a dyno's output
    /// brought. The stream takes its locks and wakes its readers once for all of them.
    fn emit_all(&self, app_id: &str, lines: Vec<LogLine>) {
        for line in lines {
            self.emit(app_id, line);
        }
    }

    /// A handle on one app's stream, for a writer that emits many lines for the same app
    /// (the router, once per request): it skips finding the app again for every line.
    /// `None` where the sink has nothing cheaper than [`emit`](Self::emit).
    fn app_sink(&self, _app_id: &str) -> Option<Arc<dyn AppLogSink>> {
        None
    }
}

/// Receives a copy of every line of one app's stream, such as a log drain. `offer` runs on
/// the path of every log line, so it must neither block nor wait.
pub trait LineTap: Send + Sync {
    fn offer(&self, line: &Arc<LogLine>);

    /// Several lines at once, in order (see [`LogSink::emit_all`]).
    fn offer_all(&self, lines: &[Arc<LogLine>]) {
        for line in lines {
            self.offer(line);
        }
    }
}

/// One app's stream (see [`LogSink::app_sink`]).
pub trait AppLogSink: Send + Sync {
    fn emit(&self, line: LogLine);

    /// Several lines at once, in order (see [`LogSink::emit_all`]).
    fn emit_all(&self, lines: Vec<LogLine>) {
        for line in lines {
            self.emit(line);
        }
    }
}

/// A sink that drops everything, for tools and tests that do not care.
pub struct NullSink;

impl LogSink for NullSink {
    fn emit(&self, _app_id: &str, _line: LogLine) {}
}

pub type SharedSink = Arc<dyn LogSink>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_heroku_format() {
        let mut l = LogLine::app("web.1", "hello");
        l.time = Timestamp(1_427_041_338_251_123);
        assert_eq!(
            l.render(),
            "2015-03-22T16:22:18.251123+00:00 app[web.1]: hello"
        );
    }

    #[test]
    fn filters_like_logplex() {
        let l = LogLine::app("web.12", "x");
        let f = |s: Option<&str>, d: Option<&str>| LogFilter {
            source: s.map(Into::into),
            dyno: d.map(Into::into),
        };
        assert!(f(None, Some("web")).matches(&l));
        assert!(f(None, Some("web.12")).matches(&l));
        assert!(!f(None, Some("web.1")).matches(&l));
        assert!(!f(None, Some("we")).matches(&l));
        assert!(f(Some("app"), None).matches(&l));
        assert!(!f(Some("heroku"), None).matches(&l));
    }

    #[test]
    fn splits_long_and_multi_lines() {
        let long = "é".repeat(6000);
        let parts = LogLine::split_output(format!("a\r\n{long}").as_bytes());
        assert_eq!(parts[0], "a");
        assert!(parts[1..].iter().all(|p| p.len() <= MAX_LINE_BYTES));
        assert_eq!(parts[1..].concat(), long);
        assert_eq!(
            LogLine::split_output(b"\xff\xfe"),
            vec!["\u{fffd}\u{fffd}".to_string()]
        );
    }
}
