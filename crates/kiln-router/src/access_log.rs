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

use crate::client::ClientConn;
use crate::hcode::HCode;
use crate::table::{AppEntry, LogTarget};
use http::Method;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use kiln_model::log::LogLine;
use std::sync::Arc;
use std::time::Duration;

/// What the log line says about the request, fixed once it is routed to an app.
pub(crate) struct RequestLog {
    pub(crate) logs: LogTarget,
    pub(crate) app: Arc<AppEntry>,
    pub(crate) method: Method,
    pub(crate) path: Option<PathAndQuery>,
    pub(crate) host: HeaderValue,
    /// Always passes `request_id::is_valid` (a client's id that does not is replaced), so
    /// the line prints it without escaping.
    pub(crate) request_id: HeaderValue,
    pub(crate) fwd: HeaderValue,
    pub(crate) proto: &'static str,
    /// Heroku's rolling idle window once the response has started (H15, WebSockets).
    pub(crate) idle: Duration,
    /// The client connection (or HTTP/2 stream) the request came on: it knows whether a failure on the client's side was malformed input (H26) or idleness (H28).
    pub(crate) client: Option<ClientConn>,
    /// Where the request is counted (the app's metrics), when the server counts.
    pub(crate) meter: Option<Arc<dyn kiln_model::meter::RequestMeter>>,
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
        Outcome {
            code: Some(code),
            status: Some(code.status().as_u16()),
            ..Outcome::default()
        }
    }
}

impl RequestLog {
    pub(crate) fn emit(&self, outcome: &Outcome<'_>) {
        self.emit_with_cause(outcome, None);
    }

    /// [`emit`](Self::emit) with H26's `cause=`; without one, an H26 takes the cause the
    /// client connection recorded (a malformed body).
    pub(crate) fn emit_with_cause(&self, outcome: &Outcome<'_>, cause: Option<&str>) {
        if let Some(meter) = &self.meter {
            let latency = outcome
                .service
                .map(|s| s + outcome.connect.unwrap_or_default());
            let code = outcome
                .code
                .and_then(|c| c.as_str()[1..].parse::<u8>().ok());
            // A request that ended without a status (the client went away) counts as the
            // router answered it: Heroku's 499-style outcomes are 4xx.
            meter.request(outcome.status.unwrap_or(499), latency, code);
        }
        let line = LogLine::router(self.format_with_cause(outcome, cause));
        match &self.logs {
            LogTarget::App(app) => app.emit(line),
            LogTarget::Shared(logs) => logs.emit(&self.app.app_id, line),
        }
    }

    /// The line itself. It is written on every request, so it is built by appending bytes
    /// to one buffer (no `format!` machinery, numbers through `itoa`).
    pub(crate) fn format_with_cause(&self, o: &Outcome<'_>, cause: Option<&str>) -> String {
        let path = self.path.as_ref().map_or("/", PathAndQuery::as_str);
        let mut line = Vec::with_capacity(224 + path.len() + self.host.len() + self.fwd.len());
        if let Some(code) = o.code {
            if let Some(sock) = code.sock() {
                line.extend_from_slice(b"sock=");
                line.extend_from_slice(sock.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(b"at=");
            line.extend_from_slice(code.level().as_str().as_bytes());
            line.extend_from_slice(b" code=");
            line.extend_from_slice(code.as_str().as_bytes());
            line.extend_from_slice(b" desc=\"");
            line.extend_from_slice(code.desc().as_bytes());
            line.extend_from_slice(b"\" ");
            let cause = cause.or_else(|| {
                if code == HCode::H26 {
                    self.client.as_ref().and_then(ClientConn::fault)
                } else {
                    None
                }
            });
            if let Some(cause) = cause {
                line.extend_from_slice(b"cause=");
                quoted(&mut line, cause.as_bytes());
                line.push(b' ');
            }
        } else {
            line.extend_from_slice(b"at=info ");
        }
        line.extend_from_slice(b"method=");
        // A method is a token: nothing in it needs escaping.
        line.extend_from_slice(self.method.as_str().as_bytes());
        line.extend_from_slice(b" path=");
        quoted(&mut line, path.as_bytes());
        line.extend_from_slice(b" host=");
        bare(&mut line, self.host.as_bytes());
        line.extend_from_slice(b" request_id=");
        // The client's id only when it passed `request_id::is_valid` (letters, digits and
        // `+/=-`), else one of ours: nothing to escape.
        debug_assert!(
            crate::request_id::is_valid(self.request_id.as_bytes()),
            "unchecked request id in a log line"
        );
        line.extend_from_slice(self.request_id.as_bytes());
        line.extend_from_slice(b" fwd=");
        quoted(&mut line, self.fwd.as_bytes());
        line.extend_from_slice(b" dyno=");
        // The router's own names (`web.1`, `cache`).
        line.extend_from_slice(o.dyno.unwrap_or("").as_bytes());
        line.extend_from_slice(b" connect=");
        millis(&mut line, o.connect);
        line.extend_from_slice(b" service=");
        millis(&mut line, o.service);
        line.extend_from_slice(b" status=");
        if let Some(s) = o.status {
            number(&mut line, u64::from(s));
        }
        line.extend_from_slice(b" bytes=");
        if let Some(b) = o.bytes {
            line.extend_from_slice(itoa::Buffer::new().format(b).as_bytes());
        }
        line.extend_from_slice(b" protocol=");
        line.extend_from_slice(self.proto.as_bytes());
        // Every byte above is ASCII: client bytes outside it were escaped.
        String::from_utf8(line)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn millis(line: &mut Vec<u8>, d: Option<Duration>) {
    if let Some(d) = d {
        // In u64 arithmetic: `as_millis` is a u128, whose division and printing cost
        // several times as much, on every line.
        let ms = d
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()));
        number(line, ms);
        line.extend_from_slice(b"ms");
    }
}

/// A number in decimal. Most of a line's numbers are a status (three digits) or a time of a
/// few milliseconds, written without `itoa`'s general loop.
fn number(line: &mut Vec<u8>, n: u64) {
    let digit = |d: u64| b'0' + (d % 10) as u8;
    match n {
        0..=9 => line.push(digit(n)),
        10..=99 => line.extend_from_slice(&[digit(n / 10), digit(n)]),
        100..=999 => line.extend_from_slice(&[digit(n / 100), digit(n / 10), digit(n)]),
        _ => line.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    }
}

/// Bytes copied as they are: printable ASCII but `"` and `\`; the space only inside quotes.
const fn plain_table(space: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t[b' ' as usize] = space;
    t
}
static PLAIN_QUOTED: [bool; 256] = plain_table(true);
static PLAIN_BARE: [bool; 256] = plain_table(false);

/// A client-controlled value inside quotes: quotes, backslashes and control bytes are
/// escaped so a request cannot forge extra fields or lines.
fn quoted(line: &mut Vec<u8>, value: &[u8]) {
    line.push(b'"');
    escape(line, value, &PLAIN_QUOTED, true);
    line.push(b'"');
}

/// A value printed without quotes (host, request id); spaces are escaped too, since they
/// would split the field.
fn bare(line: &mut Vec<u8>, value: &[u8]) {
    escape(line, value, &PLAIN_BARE, false);
}

/// Appends `value`, copying runs of plain bytes as they are (the common case is one run)
/// and escaping the others as `\xNN`, or, inside quotes, `"` and `\` as `\"` and `\\`.
fn escape(line: &mut Vec<u8>, value: &[u8], plain: &[bool; 256], in_quotes: bool) {
    // The usual value (a path, a host, an address) needs no escaping: settled eight bytes
    // at a time and copied whole.
    if all_plain(value, in_quotes) {
        line.extend_from_slice(value);
        return;
    }
    let mut rest = value;
    loop {
        let run = rest
            .iter()
            .position(|&b| !plain[usize::from(b)])
            .unwrap_or(rest.len());
        line.extend_from_slice(&rest[..run]);
        let Some(&b) = rest.get(run) else { return };
        match b {
            b'"' | b'\\' if in_quotes => line.extend_from_slice(&[b'\\', b]),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                line.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
        }
        rest = &rest[run + 1..];
    }
}

/// Every byte of `value` is one `escape` copies as it is: visible ASCII but `"` and `\`,
/// and a space when `space` (inside quotes). Eight bytes at a time: a word is flagged where
/// a byte is below 0x21 (0x20 with `space`), 0x7f or above, `"` or `\`, and the table
/// settles the bytes after the last whole word.
fn all_plain(value: &[u8], space: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = if space { 0x20 } else { 0x21 };
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or([0; 8]));
        // Per byte, the high bit set where a test fails; no sum carries over a byte for
        // bytes below 0x80, and a byte of 0x80 or more is flagged itself.
        let below = !w.wrapping_add(ONES * (0x80 - low));
        let del = w.wrapping_add(ONES);
        let is = |b: u8| !(w ^ (ONES * u64::from(b))).wrapping_add(ONES * 0x7f);
        if (below | del | w | is(b'"') | is(b'\\')) & HIGH != 0 {
            return false;
        }
    }
    let table = if space { &PLAIN_QUOTED } else { &PLAIN_BARE };
    words.remainder().iter().all(|&b| table[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::log::NullSink;

    fn request(path: &'static str, host: &'static [u8]) -> RequestLog {
        RequestLog {
            logs: LogTarget::Shared(Arc::new(NullSink)),
            app: Arc::new(AppEntry::new("app-id")),
            method: Method::GET,
            path: Some(PathAndQuery::from_static(path)),
            host: HeaderValue::from_bytes(host).unwrap(),
            request_id: HeaderValue::from_static("0b7e1a4c-3f2d-4d6e-9c1a-2b3c4d5e6f70"),
            fwd: HeaderValue::from_static("10.0.0.1, 127.0.0.1"),
            proto: "http",
            idle: Duration::from_secs(55),
            client: None,
            meter: None,
        }
    }

    /// The word-at-a-time check agrees with the tables on every byte value, at every place
    /// in and after a word, quoted and bare.
    #[test]
    fn all_plain_matches_the_tables() {
        for (space, table) in [(true, &PLAIN_QUOTED), (false, &PLAIN_BARE)] {
            for len in 0..20 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut value = vec![b'a'; len];
                        value[at] = b;
                        assert_eq!(
                            all_plain(&value, space),
                            value.iter().all(|&b| table[usize::from(b)]),
                            "byte {b:#x} at {at} of {len}, space {space}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in (0..2000).chain([9_999, 10_000, 123_456_789, u64::MAX]) {
            let mut line = Vec::new();
            number(&mut line, n);
            assert_eq!(line, n.to_string().as_bytes());
        }
    }

    #[test]
    fn formats_heroku_lines() {
        let ok = Outcome {
            code: None,
            dyno: Some("web.1"),
            connect: Some(Duration::from_micros(1500)),
            service: Some(Duration::from_millis(12)),
            status: Some(200),
            bytes: Some(1382),
        };
        assert_eq!(
            request("/a?b=c", b"foo.example.com").format_with_cause(&ok, None),
            "at=info method=GET path=\"/a?b=c\" host=foo.example.com request_id=0b7e1a4c-3f2d-4d6e-9c1a-2b3c4d5e6f70 fwd=\"10.0.0.1, 127.0.0.1\" dyno=web.1 connect=1ms service=12ms status=200 bytes=1382 protocol=http"
        );
        assert_eq!(
            request("/", b"foo.example.com").format_with_cause(&Outcome::refused(HCode::H14), None),
            "at=error code=H14 desc=\"No web processes running\" method=GET path=\"/\" host=foo.example.com request_id=0b7e1a4c-3f2d-4d6e-9c1a-2b3c4d5e6f70 fwd=\"10.0.0.1, 127.0.0.1\" dyno= connect= service= status=503 bytes= protocol=http"
        );
        let h26 = request("/", b"foo.example.com")
            .format_with_cause(&Outcome::refused(HCode::H26), Some("bad \"chunk\""));
        assert!(
            h26.contains(" cause=\"bad \\\"chunk\\\"\" method=GET"),
            "{h26}"
        );
    }

    #[test]
    fn client_bytes_cannot_forge_fields() {
        // A path cannot close its quotes; a host cannot add a field with a space or a quote.
        let line = request("/x\"%20at=forged", b"a b\"c\\\t\xff")
            .format_with_cause(&Outcome::refused(HCode::H14), None);
        assert!(line.contains(r#" path="/x\"%20at=forged" "#), "{line}");
        assert!(line.contains(r" host=a\x20b\x22c\x5c\x09\xff "), "{line}");
        let mut quoted_line = Vec::new();
        quoted(&mut quoted_line, b"\\ \x7f\n\xc3\xa9");
        assert_eq!(quoted_line, br#""\\ \x7f\x0a\xc3\xa9""#);
    }
}
