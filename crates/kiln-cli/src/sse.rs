//! A Server-Sent Events parser (the WHATWG "event stream" format), fed with bytes as they
//! arrive. `kiln logs` reads the log session's `logplex_url` with it, exactly as the Heroku
//! CLI does through its EventSource client, so one server serves both.

use anyhow::{Result, bail};

/// A line longer than this is not a log line; refusing it bounds the memory a broken or
/// hostile server can make us hold.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// One dispatched event. `event` is empty for the default type, which EventSource calls
/// `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    /// Whether an EventSource `onmessage` handler (what the Heroku CLI uses) would see it.
    pub fn is_message(&self) -> bool {
        self.event.is_empty() || self.event == "message"
    }
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR, so an LF starting this one belongs to that line end.
    after_cr: bool,
    seen_first_line: bool,
    data: String,
    has_data: bool,
    event: String,
    last_id: Option<String>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds the next chunk and returns the events it completed. Lines may end in CRLF, LF or
    /// CR, and a chunk may end anywhere, even between CR and LF.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => {
                    if self.line.len() >= MAX_LINE_BYTES {
                        bail!("the log stream sent a line longer than {MAX_LINE_BYTES} bytes");
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    /// The stream ended. The standard drops an event that was not closed by a blank line;
    /// we deliver it, because for a log stream a lost last line is worse than a lenient parse.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.end_line(&mut out);
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut line = std::mem::take(&mut self.line);
        if !self.seen_first_line {
            self.seen_first_line = true;
            if line.starts_with("\u{feff}".as_bytes()) {
                line.drain(..3);
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // a comment, used as a keep-alive
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {} // `retry` and unknown fields do not matter to a one-shot reader
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.feed(c).unwrap());
        }
        out.extend(p.finish());
        out
    }

    fn datas(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn multi_line_data_and_comments() {
        let ev = parse_all(&[b": keep-alive\n\ndata: one\ndata: two\n\ndata:three\n\n"]);
        assert_eq!(datas(&ev), ["one\ntwo", "three"]);
        assert!(ev.iter().all(SseEvent::is_message));
    }

    #[test]
    fn crlf_cr_and_split_chunks() {
        let ev = parse_all(&[
            b"data: a\r",
            b"\n\r\ndata: b\rdata: c\r\r",
            b"data: d\r\n",
            b"\r\n",
        ]);
        assert_eq!(datas(&ev), ["a", "b\nc", "d"]);
    }

    #[test]
    fn events_ids_and_empty_data() {
        let ev = parse_all(&[b"\xef\xbb\xbfid: 7\nevent: heartbeat\ndata\n\nevent: message\ndata: x\n\nevent: ignored\n\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event, "heartbeat");
        assert_eq!(ev[0].data, "");
        assert!(!ev[0].is_message());
        assert_eq!(ev[1].id.as_deref(), Some("7"));
        assert!(ev[1].is_message());
    }

    #[test]
    fn unterminated_last_event_is_kept() {
        assert_eq!(
            datas(&parse_all(&[b"data: first\n\ndata: last"])),
            ["first", "last"]
        );
    }

    #[test]
    fn refuses_endless_lines() {
        let mut p = SseParser::new();
        let big = vec![b'x'; MAX_LINE_BYTES + 1];
        assert!(p.feed(&big).is_err());
    }

    #[test]
    fn invalid_utf8_does_not_abort() {
        let ev = parse_all(&[b"data: caf\xff\n\n"]);
        assert_eq!(ev[0].data, "caf\u{fffd}");
    }
}
