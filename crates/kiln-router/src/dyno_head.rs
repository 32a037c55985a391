//! The syntax of a dyno's response head, for the [engine](crate::engine)'s dyno client.
//!
//! `httparse` parsed these heads before, into an array of fields that the engine then
//! walked a second time to sort them into the response's `HeaderMap` or the
//! [pass-through](crate::passthrough) block. On the proxy path that double walk was the
//! largest single cost per request (bench/README.md, "router"). Here the engine reads the
//! head one line at a time ([`status_line`], then [`line_at`] until the empty line) and
//! sorts each field as it comes. A line is a few dozen bytes, too short to pay for the
//! set-up of a SIMD search: names and values are checked eight bytes at a time in a plain
//! `u64` (the word scans are `head`'s, which reads requests the same way).
//!
//! The grammar is RFC 9112's and as strict as `httparse`'s default for responses, which
//! the tests check against `httparse` itself, on fixed and on randomly damaged heads:
//! `HTTP/1.0` or `HTTP/1.1`, a three-digit status and an optional reason; field names are
//! tokens with the colon right after them; values are visible characters, spaces, tabs and
//! obs-text, without the spaces and tabs around them; lines end in CRLF or a bare LF;
//! obsolete line folding, a bare CR, a control character or a field without a colon make
//! the head malformed. Empty lines before the status line are skipped, as RFC 9112 §2.2
//! allows.

use crate::head::{text_len, token_len};
use std::ops::Range;

/// More fields than this make a head malformed (the same bound as a client's request).
pub(crate) const MAX_FIELDS: usize = crate::head::MAX_HEADERS;

/// The head is not an HTTP/1.x response head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One field of a head: where its name and its value (without surrounding whitespace) lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: Range<usize>,
    pub(crate) value: Range<usize>,
}

/// Reads the status line at the front of `buf`: the status code, whether the version is
/// HTTP/1.1, and where the fields begin; `None` while the line is incomplete. Bytes that
/// cannot begin a response head are refused as soon as they arrive (a dyno that speaks
/// another protocol is H17 at once, not a timeout).
pub(crate) fn status_line(buf: &[u8]) -> Result<Option<(u16, bool, usize)>, Malformed> {
    let Some(start) = leading_empty_lines(buf) else {
        return Ok(None);
    };
    let line = &buf[start..];
    let seen = line.len().min(12);
    let http11 = match &line[..seen.min(9)] {
        v if *v == b"HTTP/1.1 "[..v.len()] => true,
        v if *v == b"HTTP/1.0 "[..v.len()] => false,
        _ => return Err(Malformed),
    };
    if !line[seen.min(9)..seen].iter().all(u8::is_ascii_digit) {
        return Err(Malformed);
    }
    if seen < 12 {
        return Ok(None);
    }
    let code = line[9..12]
        .iter()
        .fold(0, |n, &d| n * 10 + u16::from(d - b'0'));
    // No reason phrase, or a space and one.
    let reason = match line.get(12) {
        None => return Ok(None),
        Some(b' ') => 13,
        Some(b'\r' | b'\n') => 12,
        Some(_) => return Err(Malformed),
    };
    let Some(end) = line_end(line, text_len(&line[reason..]) + reason)? else {
        return Ok(None);
    };
    Ok(Some((code, http11, start + end)))
}

/// The bytes of empty lines before the status line; `None` while they might go on.
fn leading_empty_lines(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        match buf.get(at..)? {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            [b'\r'] | [] => return None,
            _ => return Some(at),
        }
    }
}

/// Reads the line at `at`: a field, or (`Some((None, _))`) the empty line that ends the
/// head; with where the next line starts, or the head's length. `None` while the line is
/// incomplete. A line is checked as it is read, so a malformed one is refused without
/// waiting for its end.
#[inline]
pub(crate) fn line_at(buf: &[u8], at: usize) -> Result<Option<(Option<Field>, usize)>, Malformed> {
    let line = buf.get(at..).unwrap_or_default();
    match line {
        [b'\n', ..] => return Ok(Some((None, at + 1))),
        [b'\r', b'\n', ..] => return Ok(Some((None, at + 2))),
        [b'\r'] | [] => return Ok(None),
        _ => {}
    }
    // A name of token characters, right up to the colon: a leading space is obsolete line
    // folding, one before the colon is refused as in requests.
    let colon = token_len(line);
    match line.get(colon) {
        None => return Ok(None),
        Some(b':') if colon > 0 => {}
        Some(_) => return Err(Malformed),
    }
    let mut start = colon + 1;
    while let Some(b' ' | b'\t') = line.get(start) {
        start += 1;
    }
    let mut end = start + text_len(&line[start..]);
    let Some(next) = line_end(line, end)? else {
        return Ok(None);
    };
    while end > start && matches!(line[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    Ok(Some((
        Some(Field {
            name: at..at + colon,
            value: at + start..at + end,
        }),
        at + next,
    )))
}

/// After text ending at `end`, the line must end (CRLF or a bare LF): where the next line
/// starts, `None` while that is not known yet.
#[inline]
fn line_end(line: &[u8], end: usize) -> Result<Option<usize>, Malformed> {
    match &line[end..] {
        [b'\n', ..] => Ok(Some(end + 1)),
        [b'\r', b'\n', ..] => Ok(Some(end + 2)),
        [b'\r'] | [] => Ok(None),
        _ => Err(Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, version and fields (name, value) as this parser reads a complete head.
    type Parsed = (u16, bool, Vec<(Vec<u8>, Vec<u8>)>);

    fn ours(buf: &[u8]) -> Option<Result<(usize, Parsed), Malformed>> {
        let parse = || -> Result<Option<(usize, Parsed)>, Malformed> {
            let Some((code, http11, mut at)) = status_line(buf)? else {
                return Ok(None);
            };
            let mut fields = Vec::new();
            loop {
                match line_at(buf, at)? {
                    None => return Ok(None),
                    Some((None, len)) => return Ok(Some((len, (code, http11, fields)))),
                    Some((Some(f), next)) => {
                        fields.push((buf[f.name].to_vec(), buf[f.value].to_vec()));
                        if fields.len() > MAX_FIELDS {
                            return Err(Malformed);
                        }
                        at = next;
                    }
                }
            }
        };
        parse().transpose()
    }

    fn httparse(buf: &[u8]) -> Option<Result<(usize, Parsed), ()>> {
        let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut r = httparse::Response::new(&mut fields);
        match r.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let fields = r
                    .headers
                    .iter()
                    .map(|f| (f.name.as_bytes().to_vec(), f.value.to_vec()))
                    .collect();
                Some(Ok((
                    len,
                    (r.code.unwrap_or(0), r.version == Some(1), fields),
                )))
            }
            Ok(httparse::Status::Partial) => None,
            Err(_) => Some(Err(())),
        }
    }

    /// Both parsers agree on whether `buf` holds a complete head, whether it is well formed
    /// (as far as it goes), and what it says.
    fn agree(buf: &[u8]) {
        match (ours(buf), httparse(buf)) {
            (Some(Ok(a)), Some(Ok(b))) => assert_eq!(a, b, "{:?}", String::from_utf8_lossy(buf)),
            (Some(Err(_)), Some(Err(()))) | (None, None) => {}
            (a, b) => panic!(
                "disagree on {:?}: ours {:?}, httparse {:?}",
                String::from_utf8_lossy(buf),
                a.map(|r| r.is_ok()),
                b.map(|r| r.is_ok())
            ),
        }
    }

    const HEADS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\nX-A: 1\r\n\r\n",
        b"HTTP/1.1 200\r\nX-A: 1\r\n\r\n",
        b"HTTP/1.1 200 \r\n\r\n",
        b"HTTP/1.1 204 No\tContent here\r\n\r\n",
        b"HTTP/1.1 200 OK\nServer: a\nETag: \"x\"\n\n",
        b"HTTP/1.1 200 OK\r\nServer: a\n\r\n",
        b"HTTP/1.1 200 OK\nServer: a\r\n\n",
        b"\r\n\r\nHTTP/1.1 200 OK\r\nA: b\r\n\r\n",
        b"\nHTTP/1.1 200 OK\r\nA: b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Spaces:   \t \r\nX-Trail: v \t\r\nX-Lead:\t\t v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Bin: caf\xc3\xa9 \xff\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Inner: a  b\tc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: tokens\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\n\r\n",
        b"HTTP/1.1 999 Weird\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        // Malformed.
        b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n X-Lead: a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Space : a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX Space: a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Del: a\x7fb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Cr: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Nul: \x00\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\r\n\r\n",
        // Incomplete.
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n\r",
        b"\r\n",
        b"",
    ];

    #[test]
    fn reads_heads_as_httparse_does() {
        for head in HEADS {
            agree(head);
        }
        let parsed = ours(HEADS[0]).unwrap().unwrap();
        assert_eq!(
            parsed,
            (
                53,
                (
                    200,
                    true,
                    vec![
                        (b"Server".to_vec(), b"nginx".to_vec()),
                        (b"Content-Length".to_vec(), b"5".to_vec())
                    ]
                )
            )
        );
        assert_eq!(
            ours(HEADS[11]).unwrap().unwrap().1.2[1..3],
            [
                (b"X-Spaces".to_vec(), b"".to_vec()),
                (b"X-Trail".to_vec(), b"v".to_vec())
            ]
        );
    }

    /// Fuzz target (see `crate::fuzz`): real heads damaged at random (bytes changed,
    /// dropped, doubled, inserted from those that matter to the grammar), and cut short
    /// anywhere; httparse and this reader must agree on every one.
    #[test]
    fn fuzz_dyno_head_reader() {
        let special = b"\r\n :\t\x00\x7f\x80HTTP/1.0 200";
        crate::fuzz::run("fuzz_dyno_head_reader", |rng| {
            let mut head = HEADS[rng.usize(..18)].to_vec();
            crate::fuzz::mutate(rng, &mut head, special);
            agree(&head);
            agree(&head[..rng.usize(..=head.len())]);
        });
    }

    #[test]
    fn other_protocols_are_refused_before_their_end() {
        assert_eq!(status_line(b"SSH-2.0-OpenSSH_9.2"), Err(Malformed));
        assert_eq!(status_line(b"\r\nHTTP/2"), Err(Malformed));
        assert_eq!(status_line(b"HTTP/1.1 2x"), Err(Malformed));
        assert_eq!(
            status_line(b"HTTP/1."),
            Ok(None),
            "a prefix of a status line waits"
        );
        assert_eq!(status_line(b"HTTP/1.1 200 OK"), Ok(None));
        assert_eq!(status_line(b"\r\n"), Ok(None));
        assert_eq!(
            line_at(b"X-A b", 0),
            Err(Malformed),
            "a field without a colon, before its end"
        );
    }

    #[test]
    fn too_many_fields_are_malformed() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..MAX_FIELDS {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(ours(&head).unwrap().is_ok(), "{MAX_FIELDS} fields are fine");
        head.truncate(head.len() - 2);
        head.extend_from_slice(b"X-Last: v\r\n\r\n");
        assert_eq!(ours(&head).unwrap().err(), Some(Malformed));
    }
}
