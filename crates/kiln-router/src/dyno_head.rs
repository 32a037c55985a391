//! The syntax of a dyno's response head, for the [engine](crate::engine)'s dyno client.
//!
//! `httparse` parsed these heads before, into an array of fields that the engine then
//! walked a second time to sort them into the response's `HeaderMap` or the
//! [pass-through](crate::passthrough) block. On the proxy path that double walk was the
//! largest single cost per request (bench/README.md, "router"). Here the engine reads the
//! head one line at a time ([`status_line`], then [`line_at`] until the empty line) and
//! sorts each field as it comes. A line is a few dozen bytes, too short to pay for the
//! set-up of a SIMD search: names are checked a byte at a time against a table, values
//! eight bytes at a time in a plain `u64`.
//!
//! The grammar is RFC 9112's and as strict as `httparse`'s default for responses, which
//! the tests check against `httparse` itself, on fixed and on randomly damaged heads:
//! `HTTP/1.0` or `HTTP/1.1`, a three-digit status and an optional reason; field names are
//! tokens with the colon right after them; values are visible characters, spaces, tabs and
//! obs-text, without the spaces and tabs around them; lines end in CRLF or a bare LF;
//! obsolete line folding, a bare CR, a control character or a field without a colon make
//! the head malformed. Empty lines before the status line are skipped, as RFC 9112 §2.2
//! allows.

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

/// How many bytes at the front of `text` are token characters (RFC 9110). Field names are
/// mostly letters, digits and `-`: those are recognised eight bytes at a time, and the
/// table decides from the first other byte on (the colon, usually).
#[inline]
fn token_len(text: &[u8]) -> usize {
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
        .position(|&b| !crate::head::is_tchar(b))
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

/// How many bytes at the front of `text` a field value or reason phrase may hold: visible
/// characters, spaces, tabs and obs-text (the same rule as `HeaderValue`'s).
#[inline]
fn text_len(text: &[u8]) -> usize {
    // Eight bytes at a time (values are most of a head's bytes): a byte below 0x20 or DEL
    // is marked, so the end of a value, its CR or LF, is found without a byte loop; a tab,
    // allowed but rare, goes on byte by byte.
    let at = match first_marked(text, |w| {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let del = (w ^ (ONES * 0x7f)).wrapping_sub(ONES) & !(w ^ (ONES * 0x7f));
        below_space | del
    }) {
        Ok(at) if text[at] != b'\t' => return at,
        Ok(at) | Err(at) => at,
    };
    at + text[at..]
        .iter()
        .position(|&b| !FIELD_TEXT[usize::from(b)])
        .unwrap_or(text.len() - at)
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
