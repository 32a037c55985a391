//! The router log line, one per request, in Heroku's exact format
//! (`shared/reference/heroku-runtime.md` §2.6), written to the app's log stream:
//!
//! ```text
//! at=info method=GET path="/" host=foo.localhost request_id=… fwd="127.0.0.1" dyno=web.1 connect=0ms service=12ms status=200 bytes=1382 protocol=http
//! at=error code=H14 desc="No web processes running" method=GET path="/" host=… request_id=… fwd="…" dyno= connect= service= status=503 bytes= protocol=http
//! ```
//!
//! `bytes` counts the response body as delivered to the client. H26 lines carry Heroku's
//! `cause="..."` after `desc`.

use crate::guard::ClientConn;
use crate::hcode::HCode;
use crate::table::AppEntry;
use http::Method;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use kiln_model::log::{LogLine, LogSink};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// What the log line says about the request, fixed once it is routed to an app.
pub(crate) struct RequestLog {
    pub(crate) logs: Arc<dyn LogSink>,
    pub(crate) app: Arc<AppEntry>,
    pub(crate) method: Method,
    pub(crate) path: Option<PathAndQuery>,
    pub(crate) host: HeaderValue,
    pub(crate) request_id: HeaderValue,
    pub(crate) fwd: HeaderValue,
    pub(crate) proto: &'static str,
    /// Heroku's rolling idle window once the response has started (H15, WebSockets).
    pub(crate) idle: Duration,
    /// The client connection, when it came through the [guard](crate::guard): it knows
    /// whether a failure on the client's side was malformed input (H26) or idleness (H28).
    pub(crate) client: Option<ClientConn>,
}

/// How the request ended. `None` fields print empty, as Heroku prints them when no dyno
/// was involved.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome<'a> {
    pub(crate) code: Option<HCode>,
    pub(crate) dyno: Option<&'a str>,
    pub(crate) connect: Option<Duration>,
    pub(crate) service: Option<Duration>,
    pub(crate) status: Option<u16>,
    pub(crate) bytes: Option<u64>,
}

impl Outcome<'_> {
    /// The router answered by itself, before any dyno was involved.
    pub(crate) fn refused(code: HCode) -> Outcome<'static> {
        Outcome { code: Some(code), status: Some(code.status().as_u16()), ..Outcome::default() }
    }
}

impl RequestLog {
    pub(crate) fn emit(&self, outcome: &Outcome<'_>) {
        self.emit_with_cause(outcome, None);
    }

    /// [`emit`](Self::emit) with H26's `cause=`; without one, an H26 takes the cause the
    /// client connection recorded (a malformed body).
    pub(crate) fn emit_with_cause(&self, outcome: &Outcome<'_>, cause: Option<&str>) {
        self.logs.emit(&self.app.app_id, LogLine::heroku("router", self.format_with_cause(outcome, cause)));
    }

    pub(crate) fn format_with_cause(&self, o: &Outcome<'_>, cause: Option<&str>) -> String {
        let mut line = String::with_capacity(320);
        // Writing to a String cannot fail.
        if let Some(code) = o.code {
            if let Some(sock) = code.sock() {
                let _ = write!(line, "sock={sock} ");
            }
            let _ = write!(line, "at={} code={code} desc=\"{}\" ", code.level().as_str(), code.desc());
            let cause = cause.or_else(|| if code == HCode::H26 { self.client.as_ref().and_then(ClientConn::fault) } else { None });
            if let Some(cause) = cause {
                line.push_str("cause=");
                quoted(&mut line, cause.as_bytes());
                line.push(' ');
            }
        } else {
            line.push_str("at=info ");
        }
        let _ = write!(line, "method={} path=", self.method);
        quoted(&mut line, self.path.as_ref().map_or("/", PathAndQuery::as_str).as_bytes());
        line.push_str(" host=");
        bare(&mut line, self.host.as_bytes());
        line.push_str(" request_id=");
        bare(&mut line, self.request_id.as_bytes());
        line.push_str(" fwd=");
        quoted(&mut line, self.fwd.as_bytes());
        let _ = write!(line, " dyno={}", o.dyno.unwrap_or(""));
        line.push_str(" connect=");
        millis(&mut line, o.connect);
        line.push_str(" service=");
        millis(&mut line, o.service);
        line.push_str(" status=");
        if let Some(s) = o.status {
            let _ = write!(line, "{s}");
        }
        line.push_str(" bytes=");
        if let Some(b) = o.bytes {
            let _ = write!(line, "{b}");
        }
        let _ = write!(line, " protocol={}", self.proto);
        line
    }
}

fn millis(line: &mut String, d: Option<Duration>) {
    if let Some(d) = d {
        let _ = write!(line, "{}ms", d.as_millis());
    }
}

/// A client-controlled value inside quotes: quotes, backslashes and control bytes are
/// escaped so a request cannot forge extra fields or lines.
fn quoted(line: &mut String, value: &[u8]) {
    line.push('"');
    for &b in value {
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            0x20..=0x7e => line.push(b as char),
            _ => {
                let _ = write!(line, "\\x{b:02x}");
            }
        }
    }
    line.push('"');
}

/// A value printed without quotes (host, request id); spaces are escaped too, since they
/// would split the field.
fn bare(line: &mut String, value: &[u8]) {
    for &b in value {
        match b {
            0x21..=0x7e if b != b'"' && b != b'\\' => line.push(b as char),
            _ => {
                let _ = write!(line, "\\x{b:02x}");
            }
        }
    }
}
