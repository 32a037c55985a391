//! The router's reading of a request head: Heroku's limits and the framing rules that keep
//! a request from meaning one thing to the router and another to the dyno (request
//! smuggling).
//!
//! The [engine](crate::engine) builds each request from the fields this scan found, and
//! forwards it with framing it writes itself, so the dyno can only ever see requests the
//! router saw as such. The rules are stricter than most servers on purpose: they refuse what
//! others quietly repair (`Content-Length` beside `Transfer-Encoding`; codings other than
//! exactly `chunked`; duplicate `Host`), they measure Heroku's limits on the raw bytes, and
//! every refusal gets the router's own page and log line.
//!
//! A usual line, complete and well formed, is recognised eight bytes at a time
//! ([`quick_request_line`], [`quick_field`]); every other line is found by its end and
//! checked byte by byte, which is also what decides every refusal and its cause. A fuzz
//! target checks that both decide alike.
//!
//! Limits (`shared/reference/heroku-runtime.md` §2.5): request line ≤ 8192 bytes (else
//! 414), header line ≤ 8192, field name ≤ 1000, at most 1000 fields (else 431). Heroku sets
//! no total; the router does ([`MAX_HEAD`]) so that one connection cannot pin megabytes.

use http::StatusCode;

pub(crate) const MAX_REQUEST_LINE: usize = 8192;
pub(crate) const MAX_HEADER_LINE: usize = 8192;
pub(crate) const MAX_HEADER_NAME: usize = 1000;
pub(crate) const MAX_HEADERS: usize = 1000;
/// The whole head, request line and fields together.
pub(crate) const MAX_HEAD: usize = 256 * 1024;
/// Empty lines tolerated before a request line (RFC 9112 §2.2: a client may send a stray
/// CRLF after a body).
const MAX_LEADING_EMPTY_LINES: usize = 8;
/// Heroku refuses methods longer than this.
const MAX_METHOD: usize = 127;
/// Values kept for the log line of a refused request.
const MAX_LOGGED: usize = 1024;

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A head that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes from the request line to the empty line, inclusive.
    pub(crate) len: usize,
    pub(crate) framing: Framing,
    /// The client asks to switch protocols (HTTP/1.1 with `Upgrade`): what follows the
    /// message may not be HTTP, depending on the dyno's answer.
    pub(crate) upgrade: bool,
    /// Where the request target lies, as offsets from the request line's first byte (after
    /// any empty lines skipped before it); the method is what precedes it, less a space.
    pub(crate) target: (u32, u32),
    pub(crate) http10: bool,
}

/// Why a request was refused, and what is known of it for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    /// `cause=` of the H26 line.
    pub(crate) cause: &'static str,
    pub(crate) method: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) forwarded_for: Option<String>,
}

/// What [`HeadScanner::scan_recording`] found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The head is not complete yet; nothing is wrong so far.
    More,
    /// This many empty lines' bytes precede the request line: drop them and scan again.
    Skip(usize),
    Done(Head),
    Reject(Rejection),
}

/// Reads one request head incrementally: each call checks only lines completed since the
/// last (the line still arriving is looked at again, for its end; at most
/// [`MAX_HEADER_LINE`] bytes).
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Bytes of complete lines already checked.
    pos: usize,
    /// Lines checked, request line included.
    lines: usize,
    fields: usize,
    http10: bool,
    upgrade: bool,
    method: Option<Span>,
    target: Option<Span>,
    /// The whole target's place (`target` is cut short for the log).
    target_at: (u32, u32),
    /// Where the quick checks last passed a line to the line-by-line ones: a line still
    /// arriving is not scanned by both on every call.
    quick_miss: Option<usize>,
    host: Option<Span>,
    hosts: usize,
    request_id: Option<Span>,
    forwarded_for: Option<Span>,
    content_length: Option<u64>,
    transfer_encodings: usize,
    /// The address of the bytes being scanned, to turn field slices into [`Span`]s; never
    /// dereferenced.
    base: usize,
}

/// Where a value kept for the log line lies in the head: an offset from the start of the
/// scanned bytes and a length. Kept as a position rather than copied, since the strings
/// are only needed when a head is refused, which is rare.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// Where one field of a scanned head lies: its name and its value (without the whitespace
/// around it), as offsets into the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    pub(crate) name: (u32, u32),
    pub(crate) value: (u32, u32),
}

impl HeadScanner {
    /// `scan_recording` without the fields, for tests.
    #[cfg(test)]
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Scan {
        self.scan_fields(buf, None)
    }

    /// Checks the lines of `buf` (the bytes received since the head began) completed since
    /// the last call, noting where each field lies in `fields` (which the caller empties
    /// for a new head), so that a caller can build the request from the checked head
    /// without parsing it again. After `Done` or `Reject` the scanner must be reset; after
    /// `Skip` it has reset itself, for the bytes that follow the skipped lines.
    pub(crate) fn scan_recording(&mut self, buf: &[u8], fields: &mut Vec<FieldSpan>) -> Scan {
        self.scan_fields(buf, Some(fields))
    }

    fn scan_fields(&mut self, buf: &[u8], mut fields: Option<&mut Vec<FieldSpan>>) -> Scan {
        // The bytes may have moved since the last call (the caller's buffer grew); spans
        // are offsets from wherever they are now.
        self.base = buf.as_ptr() as usize;
        loop {
            let rest = &buf[self.pos..];
            // The usual line, complete and well formed, is recognised a word at a time; any
            // other (incomplete, refused, or only unusual) goes through the checks below,
            // which find its end first and then look at it byte by byte.
            if !quick_lines() || self.quick_miss == Some(self.pos) {
            } else if self.lines > 0 {
                if rest.starts_with(b"\r\n") {
                    return self.finish(buf, self.pos + 2);
                }
                if let Some((colon, end)) = quick_field(rest) {
                    let (name, value) = (&rest[..colon], rest[colon + 1..end].trim_ascii());
                    // A quick line holds no CR: its refusal is for the field itself.
                    if let Err((status, cause)) =
                        self.count_field().and_then(|()| self.field(name, value))
                    {
                        return self.reject(buf, status, cause);
                    }
                    if let Some(fields) = fields.as_deref_mut() {
                        fields.push(self.field_span(name, value));
                    }
                    self.lines += 1;
                    self.pos += end + 2;
                    if self.pos > MAX_HEAD {
                        return self.reject(
                            buf,
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "request head too large",
                        );
                    }
                    continue;
                }
                self.quick_miss = Some(self.pos);
            } else if self.pos == 0 {
                if let Some((method, target_end, http10)) = quick_request_line(rest) {
                    self.method = Some(self.span(&rest[..method]));
                    self.note_target(&rest[method + 1..target_end]);
                    self.http10 = http10;
                    self.lines = 1;
                    // The target, then ` HTTP/1.x` and CRLF.
                    self.pos = target_end + 11;
                    continue;
                }
                self.quick_miss = Some(self.pos);
            }
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                return self.incomplete(buf, rest.len());
            };
            let line = &rest[..nl];
            let Some(line) = line.strip_suffix(b"\r") else {
                return self.reject(buf, StatusCode::BAD_REQUEST, "line ended by a bare LF");
            };
            let end = self.pos + nl + 1;
            // A bare CR fails every check below (it is not a token character, not in a
            // target and not in a value); the refusal then names it as the cause.
            let bare_cr = |scanner: &mut HeadScanner, status, cause| match line.contains(&b'\r') {
                true => scanner.reject(buf, StatusCode::BAD_REQUEST, "bare CR in the request head"),
                false => scanner.reject(buf, status, cause),
            };
            if self.lines == 0 {
                if line.is_empty() {
                    // Only before anything else: a stray CRLF after the previous body.
                    let empty_lines = buf[..end].iter().filter(|&&b| b == b'\n').count();
                    if empty_lines > MAX_LEADING_EMPTY_LINES {
                        return self.reject(
                            buf,
                            StatusCode::BAD_REQUEST,
                            "too many empty lines before the request line",
                        );
                    }
                    self.pos = end;
                    continue;
                }
                if self.pos > 0 {
                    let skip = self.pos;
                    *self = HeadScanner::default();
                    return Scan::Skip(skip);
                }
                if let Err((status, cause)) = self.request_line(line) {
                    return bare_cr(self, status, cause);
                }
            } else if line.is_empty() {
                return self.finish(buf, end);
            } else {
                match self.field_line(line) {
                    Err((status, cause)) => return bare_cr(self, status, cause),
                    Ok((name, value)) => {
                        if let Some(fields) = fields.as_deref_mut() {
                            fields.push(self.field_span(name, value));
                        }
                    }
                }
            }
            self.lines += 1;
            self.pos = end;
            if self.pos > MAX_HEAD {
                return self.reject(
                    buf,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                );
            }
        }
    }

    /// The request target, for the log (cut short) and whole, for the request.
    fn note_target(&mut self, target: &[u8]) {
        self.target = Some(self.span(target));
        // Offsets fit: the line is at most `MAX_REQUEST_LINE` bytes.
        let start = target.as_ptr() as usize - self.base;
        self.target_at = (start as u32, (start + target.len()) as u32);
    }

    /// The line being received has no end yet: refuse it as soon as it is too long.
    fn incomplete(&mut self, buf: &[u8], partial: usize) -> Scan {
        if self.lines == 0 && partial > MAX_REQUEST_LINE + 1 {
            return self.reject(buf, StatusCode::URI_TOO_LONG, "request line too long");
        }
        if self.lines > 0 && partial > MAX_HEADER_LINE + 1 {
            return self.reject(
                buf,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header line too long",
            );
        }
        if self.pos + partial > MAX_HEAD {
            return self.reject(
                buf,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            );
        }
        Scan::More
    }

    /// Where a field's name and value lie. Offsets fit: a head is at most `MAX_HEAD` bytes.
    fn field_span(&self, name: &[u8], value: &[u8]) -> FieldSpan {
        let at = |part: &[u8]| (part.as_ptr() as usize - self.base) as u32;
        FieldSpan {
            name: (at(name), at(name) + name.len() as u32),
            value: (at(value), at(value) + value.len() as u32),
        }
    }

    fn span(&self, part: &[u8]) -> Span {
        Span {
            start: (part.as_ptr() as usize).saturating_sub(self.base),
            len: part.len().min(MAX_LOGGED),
        }
    }

    fn request_line(&mut self, line: &[u8]) -> Result<(), (StatusCode, &'static str)> {
        if line.len() > MAX_REQUEST_LINE {
            return Err((StatusCode::URI_TOO_LONG, "request line too long"));
        }
        let bad = (StatusCode::BAD_REQUEST, "malformed request line");
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad);
        };
        if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|&b| is_tchar(b)) {
            return Err((StatusCode::BAD_REQUEST, "malformed method"));
        }
        self.method = Some(self.span(method));
        // Visible ASCII, and (as hyper's parser allows) raw non-ASCII text some clients
        // send, but only as valid UTF-8, as httparse requires (found by the fuzz target,
        // `tests::fuzz_request_head_scanner`).
        let mut non_ascii = false;
        let visible = target.iter().fold(true, |ok, &b| {
            non_ascii |= b >= 0x80;
            ok & ((0x21..=0x7e).contains(&b) || b >= 0x80)
        });
        if target.is_empty() || !visible || (non_ascii && std::str::from_utf8(target).is_err()) {
            return Err((StatusCode::BAD_REQUEST, "malformed request target"));
        }
        self.note_target(target);
        match version {
            b"HTTP/1.1" => {}
            b"HTTP/1.0" => self.http10 = true,
            v if v.starts_with(b"HTTP/") => {
                return Err((
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "unsupported HTTP version",
                ));
            }
            _ => return Err(bad),
        }
        if method == b"CONNECT" {
            // Heroku routes every method but CONNECT: a router is not a tunnel.
            return Err((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported"));
        }
        Ok(())
    }

    /// Checks a field line; gives back its name and its value without surrounding whitespace.
    fn field_line<'l>(
        &mut self,
        line: &'l [u8],
    ) -> Result<(&'l [u8], &'l [u8]), (StatusCode, &'static str)> {
        let too_large = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        let bad = StatusCode::BAD_REQUEST;
        if line.len() > MAX_HEADER_LINE {
            return Err((too_large, "header line too long"));
        }
        self.count_field()?;
        if matches!(line[0], b' ' | b'\t') {
            return Err((bad, "obsolete line folding"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err((bad, "header line without a colon"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.len() > MAX_HEADER_NAME {
            return Err((too_large, "header name too long"));
        }
        if name.last().is_some_and(|&b| b == b' ' || b == b'\t') {
            // `Transfer-Encoding : chunked`: some parsers ignore the field, some honour it.
            return Err((bad, "whitespace before a header colon"));
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err((bad, "malformed header name"));
        }
        // Before the value's check, so that this cause wins as it did; `field` checks it
        // again for the quick path.
        if underscored_framing(name) {
            return Err((bad, UNDERSCORED_FRAMING));
        }
        // Without an early exit, so the compiler can check many bytes at a time.
        if !value
            .iter()
            .fold(true, |ok, &b| ok & (b == b'\t' || (b >= 0x20 && b != 0x7f)))
        {
            return Err((bad, "control character in a header value"));
        }
        let value = value.trim_ascii();
        self.field(name, value)?;
        Ok((name, value))
    }

    /// One more field line: refused past [`MAX_HEADERS`].
    fn count_field(&mut self) -> Result<(), (StatusCode, &'static str)> {
        self.fields += 1;
        if self.fields > MAX_HEADERS {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers",
            ));
        }
        Ok(())
    }

    /// What a well-formed field means to the router: the framing, the host, the fields its
    /// log line keeps. `value` is without the whitespace around it.
    fn field(&mut self, name: &[u8], value: &[u8]) -> Result<(), (StatusCode, &'static str)> {
        let bad = StatusCode::BAD_REQUEST;
        if underscored_framing(name) {
            return Err((bad, UNDERSCORED_FRAMING));
        }
        if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
            if self.hosts > 1 {
                return Err((bad, "several Host headers"));
            }
            self.host = Some(self.span(value));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Repeated equal lines are one length (hyper forwards one of them); a list in
            // one line (`1, 2`, even `5, 5`) is refused, as hyper would.
            let mut items = value
                .split(|&b| b == b',')
                .map(|item| parse_length(item.trim_ascii()));
            let len = items
                .next()
                .flatten()
                .ok_or((bad, "invalid Content-Length"))?;
            if let Some(other) = items.next() {
                let other = other.ok_or((bad, "invalid Content-Length"))?;
                return Err((
                    bad,
                    if other == len {
                        "Content-Length given as a list"
                    } else {
                        "conflicting Content-Length values"
                    },
                ));
            }
            if self.content_length.is_some_and(|seen| seen != len) {
                return Err((bad, "conflicting Content-Length values"));
            }
            self.content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings += 1;
            if self.transfer_encodings > 1 {
                return Err((bad, "several Transfer-Encoding headers"));
            }
            // Exactly `chunked`: `xchunked`, `chunked, identity`, `gzip, chunked` and the
            // like are where two parsers disagree on where the body ends.
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err((bad, "Transfer-Encoding other than chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err((
                    StatusCode::EXPECTATION_FAILED,
                    "unexpected expect header value",
                ));
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"x-request-id") {
            self.request_id = Some(self.span(value));
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            self.forwarded_for = Some(self.span(value));
        }
        Ok(())
    }

    fn finish(&mut self, buf: &[u8], len: usize) -> Scan {
        let chunked = self.transfer_encodings > 0;
        if chunked && self.content_length.is_some() {
            return self.reject(
                buf,
                StatusCode::BAD_REQUEST,
                "Content-Length with Transfer-Encoding",
            );
        }
        if chunked && self.http10 {
            return self.reject(
                buf,
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding in an HTTP/1.0 request",
            );
        }
        let framing = match (chunked, self.content_length) {
            (true, _) => Framing::Chunked,
            (false, Some(n)) if n > 0 => Framing::Length(n),
            _ => Framing::None,
        };
        if self.upgrade && !self.http10 && framing != Framing::None {
            // After a 101 the connection carries the new protocol: a body still owed to the
            // old one would be read as either, depending on when the dyno answered.
            return self.reject(buf, StatusCode::BAD_REQUEST, "Upgrade with a request body");
        }
        Scan::Done(Head {
            len,
            framing,
            upgrade: self.upgrade && !self.http10,
            target: self.target_at,
            http10: self.http10,
        })
    }

    fn reject(&mut self, buf: &[u8], status: StatusCode, cause: &'static str) -> Scan {
        Scan::Reject(self.refusal(buf, status, cause))
    }

    /// A refusal of the head just scanned from `buf` (which must still start where it did),
    /// for a fault found after the scan: what is known of the request goes to its log line.
    pub(crate) fn refusal(
        &mut self,
        buf: &[u8],
        status: StatusCode,
        cause: &'static str,
    ) -> Rejection {
        Rejection {
            status,
            cause,
            method: self.method.take().map(|s| logged(buf, s)),
            target: self.target.take().map(|s| logged(buf, s)),
            // Only a single Host names an app; with several, none may be trusted.
            host: if self.hosts == 1 {
                self.host.take().map(|s| logged(buf, s))
            } else {
                None
            },
            request_id: self.request_id.take().map(|s| logged(buf, s)),
            forwarded_for: self.forwarded_for.take().map(|s| logged(buf, s)),
        }
    }
}

/// `Content-Length` or `Transfer-Encoding` with `_` for `-`.
fn is_framing_name(name: &[u8]) -> bool {
    let folded: Vec<u8> = name
        .iter()
        .map(|&b| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    folded == b"content-length" || folded == b"transfer-encoding"
}

#[cfg(test)]
thread_local! {
    /// Set by tests that compare the quick line checks with the line-by-line ones.
    static SLOW_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether [`quick_field`] and [`quick_request_line`] may take a line (always, outside tests).
#[inline(always)]
fn quick_lines() -> bool {
    #[cfg(test)]
    return !SLOW_ONLY.with(std::cell::Cell::get);
    #[cfg(not(test))]
    true
}

/// `Transfer_Encoding` is not a framing field to the router, but CGI-style environments
/// fold `_` and `-` together: refused rather than guessed at.
fn underscored_framing(name: &[u8]) -> bool {
    // Only names as long as the framing ones are looked into.
    matches!(name.len(), 14 | 17) && name.contains(&b'_') && is_framing_name(name)
}

const UNDERSCORED_FRAMING: &str = "framing header spelled with an underscore";

/// A complete, well-formed field line at the front of `rest`, within the limits: where its
/// colon is and where its value ends (its CRLF follows). The name is tokens up to the
/// colon, the value text up to CRLF. `None` for any other line, which the line-by-line
/// checks then take (and refuse, or accept as they would have anyway).
fn quick_field(rest: &[u8]) -> Option<(usize, usize)> {
    let colon = token_len(rest);
    if colon == 0 || colon > MAX_HEADER_NAME || rest.get(colon) != Some(&b':') {
        return None;
    }
    let end = colon + 1 + text_len(&rest[colon + 1..]);
    (end <= MAX_HEADER_LINE && rest.get(end..end + 2) == Some(b"\r\n")).then_some((colon, end))
}

/// A complete, well-formed request line at the front of `rest`, as nearly all are: a token
/// method other than `CONNECT`, an ASCII target, `HTTP/1.1` or `HTTP/1.0`, CRLF, within
/// the limits. Where the method and the target end, and whether the version is 1.0.
/// `None` for any other line, which the line-by-line checks take.
fn quick_request_line(rest: &[u8]) -> Option<(usize, usize, bool)> {
    let method = token_len(rest);
    if method == 0 || method > MAX_METHOD || rest.get(method) != Some(&b' ') {
        return None;
    }
    let target = &rest[method + 1..];
    // Visible ASCII; a space (the target's end), a control character, DEL or any byte of
    // 0x80 or more is marked (non-ASCII targets are left to the line-by-line checks, which
    // require UTF-8).
    let len = match first_marked(target, |w| below_or_del(w, 0x21) | w) {
        Ok(at) => at,
        Err(at) => {
            at + target[at..]
                .iter()
                .position(|b| !(0x21..=0x7e).contains(b))
                .unwrap_or(target.len() - at)
        }
    };
    let target_end = method + 1 + len;
    if len == 0 || rest.get(target_end) != Some(&b' ') || target_end + 9 > MAX_REQUEST_LINE {
        return None;
    }
    let http10 = match rest.get(target_end + 1..target_end + 11)? {
        b"HTTP/1.1\r\n" => false,
        b"HTTP/1.0\r\n" => true,
        _ => return None,
    };
    (&rest[..method] != b"CONNECT").then_some((method, target_end, http10))
}

/// RFC 9110 token characters.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

// Word-at-a-time scans of header text, for request heads here and the dyno's response
// heads (`dyno_head`).

/// How many bytes at the front of `text` are token characters (RFC 9110). Field names are
/// mostly letters, digits and `-`: those are recognised eight bytes at a time, and the
/// table decides from the first other byte on (the colon, usually).
#[inline]
pub(crate) fn token_len(text: &[u8]) -> usize {
    let (Ok(at) | Err(at)) = first_marked(text, |w| {
        // Per byte, with the high bit as the answer. A byte of 0x80 or more is none of
        // them; below that, no sum carries into the next byte, so each test is exact.
        let lower = w | (ONES * 0x20);
        let letter =
            lower.wrapping_add(ONES * (0x80 - 0x61)) & !lower.wrapping_add(ONES * (0x7f - 0x7a));
        let digit = w.wrapping_add(ONES * (0x80 - 0x30)) & !w.wrapping_add(ONES * (0x7f - 0x39));
        let dash = !(w ^ (ONES * 0x2d)).wrapping_add(ONES * 0x7f);
        !((letter | digit | dash) & !w)
    });
    at + text[at..]
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(text.len() - at)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Scans `text` eight bytes at a time: the first byte `marks` flags (it sets a byte's high
/// bit) in the whole words at its front (`Ok`), or where those words end (`Err`). Only the
/// lowest mark in a word need be exact: the tricks `marks` uses may flag bytes above a true
/// mark, never below one.
#[inline(always)]
fn first_marked(text: &[u8], marks: impl Fn(u64) -> u64) -> Result<usize, usize> {
    let mut at = 0;
    while let Some(word) = text
        .get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let marked = marks(u64::from_le_bytes(word)) & HIGH;
        if marked != 0 {
            return Ok(at + (marked.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    Err(at)
}

/// How many bytes at the front of `text` a field value or reason phrase may hold: visible
/// characters, spaces, tabs and obs-text (the same rule as `HeaderValue`'s).
#[inline]
pub(crate) fn text_len(text: &[u8]) -> usize {
    // Eight bytes at a time (values are most of a head's bytes): a byte below 0x20 or DEL
    // is marked, so the end of a value, its CR or LF, is found without a byte loop; a tab,
    // allowed but rare, goes on byte by byte.
    let at = match first_marked(text, |w| below_or_del(w, 0x20)) {
        Ok(at) if text[at] != b'\t' => return at,
        Ok(at) | Err(at) => at,
    };
    at + text[at..]
        .iter()
        .position(|&b| !FIELD_TEXT[usize::from(b)])
        .unwrap_or(text.len() - at)
}

/// Marks (in its high bit) each byte of `w` below `low` or equal to DEL, exactly for the
/// lowest such byte of those under 0x80 (see [`first_marked`]); `low` is at most 0x80.
#[inline(always)]
fn below_or_del(w: u64, low: u8) -> u64 {
    let below = w.wrapping_sub(ONES * u64::from(low)) & !w;
    let del = (w ^ (ONES * 0x7f)).wrapping_sub(ONES) & !(w ^ (ONES * 0x7f));
    below | del
}

static FIELD_TEXT: [bool; 256] = {
    let mut t = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b == b'\t' as usize;
        b += 1;
    }
    t[0x7f] = false;
    t
};

/// A decimal length, digits only (no sign, no spaces inside), that fits hyper's limit.
fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Heroku's limits on a request head (the request line, each field line, names, the count
/// of fields), applied to an HTTP/2 request, whose fields arrive compressed and never as
/// lines: each is measured as the line the HTTP/1.1 dyno will receive (`name: value`; the
/// `:authority` as `Host`, cookies already joined into one line). So a client gets the same
/// answer and the app's log the same H26 line whichever protocol it speaks.
pub(crate) fn check_h2<B>(req: &http::Request<B>) -> Result<(), Rejection> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host_field = usize::from(
        req.uri().authority().is_some() && !req.headers().contains_key(http::header::HOST),
    );
    let refusal = |status, cause| {
        let field = |name: &str| {
            req.headers().get(name).map(|v| {
                String::from_utf8_lossy(&v.as_bytes()[..v.len().min(MAX_LOGGED)]).into_owned()
            })
        };
        Err(Rejection {
            status,
            cause,
            method: Some(req.method().as_str().chars().take(MAX_LOGGED).collect()),
            target: Some(target.chars().take(MAX_LOGGED).collect()),
            host: req
                .uri()
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| field("host")),
            request_id: field("x-request-id"),
            forwarded_for: field("x-forwarded-for"),
        })
    };
    // `METHOD SP target SP HTTP/1.1`
    if req.method().as_str().len() + target.len() + 10 > MAX_REQUEST_LINE {
        return refusal(StatusCode::URI_TOO_LONG, "request line too long");
    }
    if req.headers().len() + host_field > MAX_HEADERS {
        return refusal(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many headers",
        );
    }
    for (name, value) in req.headers() {
        if name.as_str().len() > MAX_HEADER_NAME {
            return refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header name too long",
            );
        }
        if name.as_str().len() + 2 + value.len() > MAX_HEADER_LINE {
            return refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header line too long",
            );
        }
    }
    Ok(())
}

fn logged(buf: &[u8], span: Span) -> String {
    let bytes = buf
        .get(span.start..span.start + span.len)
        .unwrap_or_default();
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a check: a loop for counting the scanner's instructions under callgrind
    /// (`--toggle-collect='kiln_router::head::HeadScanner::scan_recording'`), on the head
    /// the router bench's `wrk` sends.
    #[test]
    #[ignore]
    fn request_head_cost() {
        let head: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: benchapp.localhost\r\n\r\n";
        let mut fields = Vec::new();
        for _ in 0..10_000 {
            fields.clear();
            let mut scanner = HeadScanner::default();
            let scanned = std::hint::black_box(scanner.scan_recording(head, &mut fields));
            assert!(matches!(scanned, Scan::Done(_)));
        }
    }

    fn scan(head: &[u8]) -> Scan {
        HeadScanner::default().scan(head)
    }

    fn done(head: &str) -> Head {
        match scan(head.as_bytes()) {
            Scan::Done(h) => h,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    fn refused(head: &[u8]) -> (u16, &'static str) {
        match scan(head) {
            Scan::Reject(r) => (r.status.as_u16(), r.cause),
            other => panic!(
                "{:?} was not refused: {other:?}",
                String::from_utf8_lossy(head)
            ),
        }
    }

    #[test]
    fn plain_heads_pass() {
        let h = done("GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n");
        assert_eq!(
            h,
            Head {
                len: 37,
                framing: Framing::None,
                upgrade: false,
                target: (4, 5),
                http10: false,
            }
        );
        assert_eq!(
            done("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").framing,
            Framing::Length(5)
        );
        assert_eq!(
            done("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length:5\r\n\r\n")
                .framing,
            Framing::Length(5)
        );
        assert_eq!(
            done("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            done("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked \r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            done("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::None
        );
        assert!(
            done(
                "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            .upgrade
        );
        assert!(!done("GET /ws HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);
        assert_eq!(
            done("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nX-Empty:\r\n\r\n").framing,
            Framing::None
        );
        assert!(
            matches!(
                scan("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes()),
                Scan::Done(_)
            ),
            "raw UTF-8 in a path, as hyper allows"
        );
    }

    #[test]
    fn incomplete_heads_wait() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: a\r\n"), Scan::More);
        assert_eq!(scan(b"GET / HT"), Scan::More);
        // Incremental: a head fed in pieces gives the same answer.
        let full = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        let mut s = HeadScanner::default();
        for end in 1..full.len() {
            assert_eq!(s.scan(&full[..end]), Scan::More, "at {end}");
        }
        assert!(matches!(s.scan(full), Scan::Done(Head { len: 33, .. })));
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        assert_eq!(scan(b"\r\n\r\nGET / HTTP/1.1\r\n"), Scan::Skip(4));
        assert_eq!(scan(b"\r\n"), Scan::More);
        assert_eq!(refused(&b"\r\n".repeat(9)).0, 400);
        assert_eq!(
            refused(b"\nGET / HTTP/1.1\r\n\r\n"),
            (400, "line ended by a bare LF")
        );
    }

    #[test]
    fn targets_that_are_not_utf8_are_refused() {
        assert_eq!(
            refused(b"GET /caf\xc3 HTTP/1.1\r\nHost: a\r\n\r\n"),
            (400, "malformed request target")
        );
        assert_eq!(
            refused(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
            (400, "malformed request target")
        );
        done("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn smuggling_framings_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", "Content-Length with Transfer-Encoding"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", "Content-Length with Transfer-Encoding"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", "conflicting Content-Length values"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length values"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", "Content-Length given as a list"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", "invalid Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "Transfer-Encoding other than chunked"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "Transfer-Encoding other than chunked"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding other than chunked"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "several Transfer-Encoding headers"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", "whitespace before a header colon"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", "whitespace before a header colon"),
            (b"POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n", "obsolete line folding"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n\tTransfer-Encoding: chunked\r\n\r\n", "obsolete line folding"),
            (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in an HTTP/1.0 request"),
            (b"POST / HTTP/1.1\r\nHost: a\nTransfer-Encoding: chunked\r\n\r\n", "line ended by a bare LF"),
            (b"POST / HTTP/1.1\r\nHost: a\rTransfer-Encoding: chunked\r\n\r\n", "bare CR in the request head"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "control character in a header value"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "several Host headers"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-please\r\n\r\n", "unexpected expect header value"),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "malformed request line"),
            (b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", "malformed method"),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "malformed request line"),
            (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "malformed request line"),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "unsupported HTTP version"),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", "CONNECT is not supported"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", "header line without a colon"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", "malformed header name"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", "malformed header name"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", "framing header spelled with an underscore"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent_length: 5\r\n\r\n", "framing header spelled with an underscore"),
        ];
        for (head, cause) in cases {
            assert_eq!(
                refused(head).1,
                *cause,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n").0, 505);
        assert_eq!(refused(b"CONNECT a:1 HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(refused(b"GET / HTTP/1.1\r\nExpect: x\r\n\r\n").0, 417);
    }

    #[test]
    fn herokus_limits() {
        let at_limit = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "x".repeat(MAX_REQUEST_LINE - 14)
        );
        assert!(matches!(scan(at_limit.as_bytes()), Scan::Done(_)));
        let over = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "x".repeat(MAX_REQUEST_LINE - 13)
        );
        assert_eq!(refused(over.as_bytes()), (414, "request line too long"));
        // Refused before the line even ends, so it is never buffered whole.
        let partial = format!("GET /{}", "x".repeat(MAX_REQUEST_LINE));
        assert_eq!(refused(partial.as_bytes()).0, 414);

        let value = |n: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "v".repeat(n)
            )
        };
        assert!(matches!(
            scan(value(MAX_HEADER_LINE - 7).as_bytes()),
            Scan::Done(_)
        ));
        assert_eq!(
            refused(value(MAX_HEADER_LINE - 6).as_bytes()),
            (431, "header line too long")
        );
        let name = |n: usize| format!("GET / HTTP/1.1\r\nHost: a\r\n{}: v\r\n\r\n", "n".repeat(n));
        assert!(matches!(
            scan(name(MAX_HEADER_NAME).as_bytes()),
            Scan::Done(_)
        ));
        assert_eq!(
            refused(name(MAX_HEADER_NAME + 1).as_bytes()),
            (431, "header name too long")
        );

        let many = |n: usize| {
            format!(
                "GET / HTTP/1.1\r\n{}\r\n",
                (0..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            )
        };
        assert!(matches!(scan(many(MAX_HEADERS).as_bytes()), Scan::Done(_)));
        assert_eq!(
            refused(many(MAX_HEADERS + 1).as_bytes()),
            (431, "too many headers")
        );

        let huge = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..100)
                .map(|i| format!("X-{i}: {}\r\n", "v".repeat(8000)))
                .collect::<String>()
        );
        assert_eq!(refused(huge.as_bytes()), (431, "request head too large"));
    }

    #[test]
    fn refusals_carry_what_the_log_needs() {
        let Scan::Reject(r) = scan(b"POST /p?q=1 HTTP/1.1\r\nHost: foo.localhost\r\nX-Request-Id: abc\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 1, 2\r\n\r\n") else { panic!() };
        assert_eq!(r.method.as_deref(), Some("POST"));
        assert_eq!(r.target.as_deref(), Some("/p?q=1"));
        assert_eq!(r.host.as_deref(), Some("foo.localhost"));
        assert_eq!(r.request_id.as_deref(), Some("abc"));
        assert_eq!(r.forwarded_for.as_deref(), Some("1.2.3.4"));
        let Scan::Reject(r) = scan(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") else {
            panic!()
        };
        assert_eq!(r.host, None, "an ambiguous Host names no app");
    }

    /// Scans `buf` received in the pieces `cuts` says, as the engine does: skipped empty
    /// lines are dropped and the scan goes on. What it found, after how many skipped bytes,
    /// and the fields it recorded.
    fn scan_in_pieces(buf: &[u8], cuts: &[usize]) -> (String, usize, Vec<FieldSpan>) {
        let mut scanner = HeadScanner::default();
        let (mut start, mut fields) = (0, Vec::new());
        for &cut in cuts {
            while cut > start {
                match scanner.scan_recording(&buf[start..cut], &mut fields) {
                    Scan::More => break,
                    Scan::Skip(n) => {
                        start += n;
                        fields.clear();
                    }
                    other => return (format!("{other:?}"), start, fields),
                }
            }
        }
        ("More".to_string(), start, fields)
    }

    /// Fuzz target (see `crate::fuzz`): the request head scanner against httparse, and
    /// against itself fed in random pieces. A head it passes, httparse reads the same (same
    /// length, method, target and fields), with the framing its fields say; it never passes
    /// what httparse calls malformed or incomplete.
    #[test]
    fn fuzz_request_head_scanner() {
        const HEADS: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"POST /upload?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: abcdefghijklmnopqrstuvwxyz\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\nCookie: a=1; b=2\r\n\r\n",
        ];
        crate::fuzz::run("fuzz_request_head_scanner", |rng| {
            let mut buf = HEADS[rng.usize(..HEADS.len())].to_vec();
            if rng.u8(..8) > 0 {
                crate::fuzz::mutate(
                    rng,
                    &mut buf,
                    b"\r\n :\t,;\x00\x7f\x80\xffHTTP/1.0chunked Content-Length: Transfer-Encoding: Host: ",
                );
            }
            let whole = scan_in_pieces(&buf, &[buf.len()]);
            // The quick checks of usual lines decide as the line-by-line ones do, refusals
            // and their causes included.
            let slow = slow_only(|| scan_in_pieces(&buf, &[buf.len()]));
            assert_eq!(
                slow,
                whole,
                "{:?}, line by line",
                String::from_utf8_lossy(&buf)
            );
            let cuts = crate::fuzz::cuts(rng, buf.len());
            assert_eq!(
                scan_in_pieces(&buf, &cuts),
                whole,
                "{:?} in pieces {cuts:?}",
                String::from_utf8_lossy(&buf)
            );
            let (found, start, spans) = whole;
            let head = &buf[start..];
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS + 1];
            let mut req = httparse::Request::new(&mut fields);
            let theirs = req.parse(head);
            let Some(ours) = found.strip_prefix("Done(") else {
                return;
            };
            let shown = String::from_utf8_lossy(head);
            let Ok(httparse::Status::Complete(len)) = theirs else {
                panic!("{shown:?}: scanner passed it ({ours}), httparse says {theirs:?}");
            };
            assert!(
                ours.contains(&format!("len: {len},")),
                "{shown:?}: {ours} vs {len}"
            );
            let theirs: Vec<(Vec<u8>, Vec<u8>)> = req
                .headers
                .iter()
                .map(|f| (f.name.as_bytes().to_vec(), f.value.to_vec()))
                .collect();
            let span = |(a, b): (u32, u32)| head[a as usize..b as usize].to_vec();
            let recorded: Vec<(Vec<u8>, Vec<u8>)> = spans
                .iter()
                .map(|f| (span(f.name), span(f.value)))
                .collect();
            assert_eq!(recorded, theirs, "{shown:?}");
            // The framing the fields say (the scanner refused every ambiguous one).
            let named = |n: &str| {
                theirs
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(n.as_bytes()))
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .collect::<Vec<_>>()
            };
            let (te, cl) = (named("transfer-encoding"), named("content-length"));
            let framing = match (te.as_slice(), cl.first()) {
                ([te], None) if te.eq_ignore_ascii_case("chunked") => "Chunked".to_string(),
                ([], Some(n)) => {
                    let parse = |v: &String| v.parse::<u64>().ok();
                    let n = parse(n).unwrap_or_else(|| panic!("{shown:?}: passed length {n:?}"));
                    assert!(cl.iter().all(|v| parse(v) == Some(n)), "{shown:?}: {cl:?}");
                    // An empty body is no body.
                    if n == 0 {
                        "None".to_string()
                    } else {
                        format!("Length({n})")
                    }
                }
                ([], None) => "None".to_string(),
                _ => {
                    panic!("{shown:?}: passed with transfer-encoding {te:?}, content-length {cl:?}")
                }
            };
            assert!(
                ours.contains(&format!("framing: {framing},")),
                "{shown:?}: {ours}, expected {framing}"
            );
        });
    }

    /// Runs `f` with the quick line checks off (on again after, even if `f` panics).
    fn slow_only<T>(f: impl FnOnce() -> T) -> T {
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                SLOW_ONLY.with(|s| s.set(false));
            }
        }
        SLOW_ONLY.with(|s| s.set(true));
        let _restore = Restore;
        f()
    }

    fn quick_and_slow_agree(head: &[u8]) {
        let quick = scan_in_pieces(head, &[head.len()]);
        let slow = slow_only(|| scan_in_pieces(head, &[head.len()]));
        assert_eq!(quick, slow, "{:?}", String::from_utf8_lossy(head));
    }

    /// At each limit and one past it, and on the request lines the quick check leaves
    /// alone, the two decide alike (and the limits still refuse, with their causes).
    #[test]
    fn quick_lines_agree_with_the_byte_checks_at_the_limits() {
        let line = |method: &str, target_len: usize, version: &str| {
            let target = format!("/{}", "a".repeat(target_len - 1));
            format!("{method} {target} {version}\r\nHost: a\r\n\r\n").into_bytes()
        };
        // The request line is `GET ` + target + ` HTTP/1.1`: 13 bytes besides the target.
        for len in [MAX_REQUEST_LINE - 13, MAX_REQUEST_LINE - 12] {
            quick_and_slow_agree(&line("GET", len, "HTTP/1.1"));
        }
        assert!(matches!(
            scan(&line("GET", MAX_REQUEST_LINE - 13, "HTTP/1.1")),
            Scan::Done(_)
        ));
        assert_eq!(
            refused(&line("GET", MAX_REQUEST_LINE - 12, "HTTP/1.1")).0,
            414
        );
        for method in [MAX_METHOD, MAX_METHOD + 1] {
            quick_and_slow_agree(&line(&"M".repeat(method), 1, "HTTP/1.1"));
        }
        for head in [
            line("CONNECT", 1, "HTTP/1.1"),
            line("GET", 1, "HTTP/2.0"),
            line("GET", 1, "HTTP/1.0"),
            line("GET", 1, "http/1.1"),
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n".to_vec(),
        ] {
            quick_and_slow_agree(&head);
        }
        let field = |name_len: usize, value_len: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\n{}: {}\r\n\r\n",
                "n".repeat(name_len),
                "v".repeat(value_len)
            )
            .into_bytes()
        };
        for name in [MAX_HEADER_NAME, MAX_HEADER_NAME + 1] {
            quick_and_slow_agree(&field(name, 1));
        }
        assert_eq!(refused(&field(MAX_HEADER_NAME + 1, 1)).0, 431);
        // The field line is name + `: ` + value.
        for value in [MAX_HEADER_LINE - 3, MAX_HEADER_LINE - 2] {
            quick_and_slow_agree(&field(1, value));
        }
        assert!(matches!(
            scan(&field(1, MAX_HEADER_LINE - 3)),
            Scan::Done(_)
        ));
        assert_eq!(refused(&field(1, MAX_HEADER_LINE - 2)).0, 431);
        let fields = |n: usize| {
            let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 1..n {
                head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            head
        };
        for n in [MAX_HEADERS, MAX_HEADERS + 1] {
            quick_and_slow_agree(&fields(n));
        }
        assert_eq!(refused(&fields(MAX_HEADERS + 1)).1, "too many headers");
        // The whole head's bound, reached by fields each within theirs.
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(format!("X-A: {}\r\n", "v".repeat(8000)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        quick_and_slow_agree(&big);
        assert_eq!(refused(&big).1, "request head too large");
    }

    /// A line arriving a few bytes at a time is passed to the line-by-line checks once the
    /// quick check has turned it down, and the head still passes whole.
    #[test]
    fn a_trickling_head_is_read_as_a_whole_one() {
        let head = b"GET /a HTTP/1.1\r\nHost: a\r\nX-Tab:\tv\r\nAccept: */*\r\n\r\n";
        let cuts: Vec<usize> = (1..=head.len()).collect();
        let whole = scan_in_pieces(head, &[head.len()]);
        assert!(whole.0.starts_with("Done("), "{whole:?}");
        assert_eq!(scan_in_pieces(head, &cuts), whole);
    }

    /// The quick checks decide as the line-by-line ones on every byte value at every place
    /// of a target, a field name and a field value, in and after a word.
    #[test]
    fn quick_lines_agree_with_the_byte_checks_on_every_byte() {
        let both = quick_and_slow_agree;
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut raw = vec![b'a'; len];
                    raw[at] = b;
                    for (before, after) in [
                        (&b"GET /"[..], &b" HTTP/1.1\r\nHost: a\r\n\r\n"[..]),
                        (b"GET / HTTP/1.1\r\nHost: a\r\nX-", b": v\r\n\r\n"),
                        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ", b"\r\n\r\n"),
                    ] {
                        both(&[before, &raw[..], after].concat());
                    }
                }
                // Obs-text as valid UTF-8 (a target may hold it), at every place.
                let mut text = vec![b'a'; len];
                text.splice(at..=at, "é".bytes());
                both(&[&b"GET /"[..], &text, b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat());
            }
        }
    }

    /// The word-at-a-time scan stops exactly where a byte-by-byte one does, wherever in a
    /// word the stopping byte (or an allowed tab or obs-text byte) lies.
    #[test]
    fn text_len_matches_the_byte_rule() {
        let naive = |t: &[u8]| {
            t.iter()
                .position(|&b| !FIELD_TEXT[usize::from(b)])
                .unwrap_or(t.len())
        };
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    text[at] = b;
                    assert_eq!(
                        text_len(&text),
                        naive(&text),
                        "byte {b:#x} at {at} of {len}"
                    );
                    if at + 3 < len {
                        text[at + 3] = b'\r';
                        assert_eq!(
                            text_len(&text),
                            naive(&text),
                            "byte {b:#x} at {at} then CR, of {len}"
                        );
                    }
                }
            }
        }
    }

    /// The same for names: every byte value, at every place in and around a word, and
    /// after a run of each kind of byte the words recognise (letters of both cases,
    /// digits, `-`), stops the word-at-a-time scan where the table does.
    #[test]
    fn token_len_matches_the_table() {
        let naive = |t: &[u8]| {
            t.iter()
                .position(|&b| !crate::head::is_tchar(b))
                .unwrap_or(t.len())
        };
        for fill in [b'a', b'Z', b'7', b'-', b'_'] {
            for len in 0..20 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut text = vec![fill; len];
                        text[at] = b;
                        assert_eq!(
                            token_len(&text),
                            naive(&text),
                            "byte {b:#x} at {at} of {len} {:?}s",
                            fill as char
                        );
                        if at + 2 < len {
                            text[at + 2] = b':';
                            assert_eq!(token_len(&text), naive(&text), "{b:#x} then a colon");
                        }
                    }
                }
            }
        }
    }
}
