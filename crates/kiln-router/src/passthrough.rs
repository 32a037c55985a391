//! Response header fields the router passes through untouched, kept as the dyno's bytes
//! instead of being parsed into the response's `HeaderMap`.
//!
//! The pipeline reads and rewrites only a few fields of a dyno's response on every request:
//! framing and hop-by-hop fields, `Via`, and what the cache's first check and gzip's rules
//! look at. The rest (`Server`, `Date`, `ETag`, `Last-Modified`, `Set-Cookie`, an app's own
//! `X-*`…) only need copying to the client. Building a `HeaderMap` entry for each of them
//! cost more than anything else the router did per request (about 600 instructions a field,
//! bench/README.md), so the [engine](crate::engine)'s dyno client puts only the fields
//! [`MapField`] names into the map and leaves the others, already validated by
//! [`dyno_head`](crate::dyno_head), where they are: a [`Passthrough`] block is the head's
//! bytes and the runs of whole lines in it, and travels with the dyno's body
//! (`RouterBody::take_passthrough`). Only a line that must be rewritten (a bare LF,
//! whitespace after the value), or a head of more runs than the block holds, is copied. The
//! engine's writer appends the block after the map's fields.
//!
//! The router's own `Via` and `X-Cache: MISS` go with the block too ([`Added`]), when the
//! dyno sent no field of the name ([`MapFields`] says which map fields it sent): inserting
//! them into the map cost a hash and an insertion each on every request.
//!
//! The few places that need every field call [`materialize`](crate::body::materialize)
//! first, which moves the block into the map: the cache before it decides to store a
//! response (it stores whole heads and looks at `Date`, `Age` and `Set-Cookie`), gzip before
//! it rewrites `ETag`, and the HTTP/2 server (hyper writes only the map). A field the
//! pipeline reads on every response must be a [`MapField`]: a field missing from it would
//! be invisible to that check.
//!
//! A cache hit's head travels the same way: the stored object keeps its head as lines
//! written once ([`write_lines`]), and a plain hit hands them to the writer with its own
//! `Age` instead of copying the stored map ([`Passthrough::stored`]).
//!
//! Field order between the two groups changes (map fields first); the order of fields of
//! one name, which is what carries meaning (RFC 9110 §5.3), is kept because a name is always
//! in one group.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields of a dyno's response (or of a stored one, for a cache hit) that go to the client
/// as they are: `name: value` lines, each ended by CRLF, in runs of `source`.
#[derive(Debug)]
pub(crate) struct Passthrough {
    /// The bytes the lines are in: the dyno's head (whose bytes the response's map values
    /// share too, so the block costs no copy), or lines of their own (a stored head's, or a
    /// dyno head's when one of its lines had to be rewritten or it made more than `RUNS`
    /// runs).
    source: Bytes,
    /// The runs of whole lines in `source`, in order (small, since this travels inside
    /// every dyno body: offsets fit, a response head is at most `MAX_RESPONSE_HEAD` bytes).
    runs: [(u32, u32); RUNS],
    count: u8,
    /// One of the lines is `Date` (the writer adds one only when the response has none).
    has_date: bool,
    /// A cache hit's `Age` in seconds, the one field of its stored head that changes per
    /// hit (a number, not a `HeaderValue`).
    age: Option<u32>,
    /// Fields the router adds to the dyno's ([`Added`]), written after its lines: a field
    /// inserted into the map costs a hash and an insertion on every request.
    added: Added,
}

/// `Via: 1.1 kiln` as a line (`forward::VIA`, checked by a test).
const VIA_LINE: &[u8] = b"via: 1.1 kiln\r\n";

/// Fields the router adds to a dyno's response, written with its pass-through block. Only
/// when the dyno's map holds no field of the name: `Via` is then not a list to join, and
/// `X-Cache` replaces nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Added(u8);

impl Added {
    /// `Via: 1.1 kiln`.
    pub(crate) const VIA: Added = Added(1);
    /// `X-Cache: MISS`.
    pub(crate) const X_CACHE_MISS: Added = Added(2);

    fn has(self, field: Added) -> bool {
        self.0 & field.0 != 0
    }
}

/// How many runs of a dyno's head a block refers to before it copies them instead. Heads
/// interleave map fields with the rest: nginx's static files make three runs, the usual
/// frameworks' pages two or three.
const RUNS: usize = 4;

/// Gathers pass-through fields while a response head is parsed. Consecutive fields that
/// stand in the head exactly as they will be written (`name:` OWS `value` CRLF) make one
/// run; the block refers to up to [`RUNS`] runs and copies them beyond that.
#[derive(Default)]
pub(crate) struct Builder {
    runs: [(u32, u32); RUNS],
    count: usize,
    /// Set once the lines are copied (`runs` then no longer counts).
    copied: Option<BytesMut>,
    has_date: bool,
    /// The run of whole lines not recorded yet: its start and end in the head.
    run: Option<(usize, usize)>,
}

impl Builder {
    /// Adds the field at `name` and `value` (positions in `head`), whose name and value
    /// [`dyno_head`](crate::dyno_head) has already checked: a token, and visible characters, spaces or tabs
    /// (the same rule as `HeaderValue`'s).
    #[inline]
    pub(crate) fn push(&mut self, head: &[u8], name: (usize, usize), value: (usize, usize)) {
        self.has_date |= head[name.0..name.1].eq_ignore_ascii_case(b"date");
        // A line that ends right after its value with CRLF can be written as it stands (the
        // bytes between name and value are the colon and spaces, as `dyno_head` requires).
        let whole = value.0 > name.1 && head.get(value.1..value.1 + 2) == Some(b"\r\n");
        match self.run {
            Some((start, end)) if whole && end == name.0 => self.run = Some((start, value.1 + 2)),
            _ => {
                self.flush(head);
                if whole {
                    self.run = Some((name.0, value.1 + 2));
                } else {
                    let lines = self.copy(head);
                    crate::wire::put_field(lines, &head[name.0..name.1], &head[value.0..value.1]);
                }
            }
        }
    }

    /// The lines copied so far, copying the recorded runs first if that has not happened.
    fn copy(&mut self, head: &[u8]) -> &mut BytesMut {
        let (runs, count) = (&self.runs, self.count);
        self.copied.get_or_insert_with(|| {
            let mut lines = BytesMut::with_capacity(256);
            for &(start, end) in &runs[..count] {
                lines.extend_from_slice(&head[start as usize..end as usize]);
            }
            lines
        })
    }

    fn flush(&mut self, head: &[u8]) {
        let Some((start, end)) = self.run.take() else {
            return;
        };
        if self.copied.is_none() && self.count < RUNS {
            // Offsets fit: a response head is at most `MAX_RESPONSE_HEAD` bytes.
            self.runs[self.count] = (start as u32, end as u32);
            self.count += 1;
        } else {
            self.copy(head).extend_from_slice(&head[start..end]);
        }
    }

    /// The block, unless no field went into it. `head` is the head the positions are in.
    pub(crate) fn finish(mut self, head: &Bytes) -> Option<Passthrough> {
        self.flush(head);
        let (source, runs, count) = match self.copied {
            Some(lines) if lines.is_empty() => return None,
            Some(lines) => {
                let lines = lines.freeze();
                let whole = (0, lines.len() as u32);
                (lines, [whole; RUNS], 1)
            }
            None if self.count == 0 => return None,
            None => (head.clone(), self.runs, self.count),
        };
        Some(Passthrough {
            source,
            runs,
            count: count as u8,
            has_date: self.has_date,
            age: None,
            added: Added::default(),
        })
    }
}

impl Passthrough {
    /// A cache hit's fields: the stored head's lines ([`write_lines`]) and its `Age`.
    pub(crate) fn stored(lines: Bytes, has_date: bool, age: u64) -> Passthrough {
        // A stored head is far smaller than 4 GiB (`cache::policy` bounds objects).
        let whole = (0, u32::try_from(lines.len()).unwrap_or(u32::MAX));
        Passthrough {
            source: lines,
            runs: [whole; RUNS],
            count: 1,
            has_date,
            age: Some(u32::try_from(age).unwrap_or(u32::MAX)),
            added: Added::default(),
        }
    }

    /// The lines' bytes, in order: runs of whole lines of `source`.
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.runs[..usize::from(self.count)]
            .iter()
            .map(|&(start, end)| {
                self.source
                    .get(start as usize..end as usize)
                    .unwrap_or_default()
            })
    }

    /// The fields as they are written to the client (without a hit's `Age`).
    #[cfg(test)]
    pub(crate) fn lines(&self) -> Vec<u8> {
        self.pieces().flat_map(<[u8]>::to_vec).collect()
    }

    /// Adds a router field to the block (see [`Added`] for when that may be done).
    pub(crate) fn add(&mut self, field: Added) {
        self.added.0 |= field.0;
    }

    /// Writes the fields for the client.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        if let Some(age) = self.age {
            crate::wire::put_field(out, b"age", itoa::Buffer::new().format(age).as_bytes());
        }
        for piece in self.pieces() {
            out.extend_from_slice(piece);
        }
        // Whole lines, one copy each.
        if self.added.has(Added::VIA) {
            out.extend_from_slice(VIA_LINE);
        }
        if self.added.has(Added::X_CACHE_MISS) {
            out.extend_from_slice(b"x-cache: MISS\r\n");
        }
    }

    pub(crate) fn has_date(&self) -> bool {
        self.has_date
    }

    /// Appends every field to `headers`, sharing the block's bytes.
    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        if let Some(age) = self.age {
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        if self.added.has(Added::VIA) {
            headers.append(header::VIA, HeaderValue::from_static(crate::forward::VIA));
        }
        if self.added.has(Added::X_CACHE_MISS) {
            headers.insert(
                crate::forward::X_CACHE.clone(),
                HeaderValue::from_static("MISS"),
            );
        }
        for piece in self.pieces() {
            let mut rest = piece;
            // Every line is whole, ended by CRLF; a value cannot hold an LF.
            while let Some(end) = memchr::memchr(b'\n', rest) {
                let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
                rest = &rest[end + 1..];
                let Some(colon) = memchr::memchr(b':', line) else {
                    continue;
                };
                let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
                // Both were validated when the head was parsed; a field that somehow fails is
                // dropped rather than sent on unchecked.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name),
                    HeaderValue::from_maybe_shared(self.source.slice_ref(value)),
                ) {
                    headers.append(name, value);
                }
            }
        }
    }
}

/// A map's fields as pass-through lines, but for those the writer makes itself (framing,
/// `Connection`) and `Age`: a stored head, written once, for the hits served from it.
pub(crate) fn write_lines(headers: &HeaderMap) -> Bytes {
    let mut out = BytesMut::new();
    for (name, value) in headers {
        if [
            header::AGE,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        crate::wire::put_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.freeze()
}

/// A response field that goes into the `HeaderMap` (the pipeline reads or rewrites it on
/// every response): framing and hop-by-hop fields (so they are dropped), `Via` (appended
/// to), and what the cache's freshness check and gzip's rules decide on. Every other field
/// passes through until [`materialize`](crate::body::materialize) is called. A field the
/// pipeline reads on every response must be here: one missing would be invisible to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapField {
    Te,
    Via,
    Vary,
    Expires,
    Trailer,
    Upgrade,
    XCache,
    Connection,
    KeepAlive,
    ContentType,
    CacheControl,
    ContentRange,
    ContentLength,
    ContentEncoding,
    TransferEncoding,
    /// A `Proxy-*` field (hop-by-hop, so dropped): its name is the head's own.
    Proxy,
}

impl MapField {
    /// Which map field `name` (a token, as `dyno_head` checked) is, `None` for one that
    /// passes through. `Err` for a `Proxy-*` name `HeaderName` refuses (one over its 64 KiB
    /// limit): a hop-by-hop field that cannot be dropped must not pass through either.
    #[inline]
    pub(crate) fn of(name: &[u8]) -> Result<Option<MapField>, InvalidName> {
        // Length and first letter first: most fields that pass through are settled without
        // comparing a name, and the rest on a word or two.
        let Some(&first) = name.first() else {
            return Ok(None);
        };
        let is = |known: &'static [u8]| folded_eq(name, known);
        Ok(Some(match (name.len(), first | 0x20) {
            (2, b't') if is(b"te") => MapField::Te,
            (3, b'v') if is(b"via") => MapField::Via,
            (4, b'v') if is(b"vary") => MapField::Vary,
            (7, b'e') if is(b"expires") => MapField::Expires,
            (7, b't') if is(b"trailer") => MapField::Trailer,
            (7, b'u') if is(b"upgrade") => MapField::Upgrade,
            (7, b'x') if is(b"x-cache") => MapField::XCache,
            (10, b'c') if is(b"connection") => MapField::Connection,
            (10, b'k') if is(b"keep-alive") => MapField::KeepAlive,
            (12, b'c') if is(b"content-type") => MapField::ContentType,
            (13, b'c') if is(b"cache-control") => MapField::CacheControl,
            (13, b'c') if is(b"content-range") => MapField::ContentRange,
            (14, b'c') if is(b"content-length") => MapField::ContentLength,
            (16, b'c') if is(b"content-encoding") => MapField::ContentEncoding,
            (17, b't') if is(b"transfer-encoding") => MapField::TransferEncoding,
            (6.., b'p') if folded_eq(&name[..6], b"proxy-") => {
                HeaderName::from_bytes(name).map_err(|_| InvalidName)?;
                MapField::Proxy
            }
            _ => return Ok(None),
        }))
    }

    /// The map's name for the field; `name` is the head's (only a `Proxy-*` field's is
    /// read: the others are constants, not parsed again).
    pub(crate) fn name(self, name: &[u8]) -> Result<HeaderName, InvalidName> {
        Ok(match self {
            MapField::Te => header::TE,
            MapField::Via => header::VIA,
            MapField::Vary => header::VARY,
            MapField::Expires => header::EXPIRES,
            MapField::Trailer => header::TRAILER,
            MapField::Upgrade => header::UPGRADE,
            MapField::XCache => crate::forward::X_CACHE.clone(),
            MapField::Connection => header::CONNECTION,
            MapField::KeepAlive => crate::forward::KEEP_ALIVE.clone(),
            MapField::ContentType => header::CONTENT_TYPE,
            MapField::CacheControl => header::CACHE_CONTROL,
            MapField::ContentRange => header::CONTENT_RANGE,
            MapField::ContentLength => header::CONTENT_LENGTH,
            MapField::ContentEncoding => header::CONTENT_ENCODING,
            MapField::TransferEncoding => header::TRANSFER_ENCODING,
            MapField::Proxy => HeaderName::from_bytes(name).map_err(|_| InvalidName)?,
        })
    }
}

/// Which [`MapField`]s a dyno's response head held, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MapFields(u32);

impl MapFields {
    pub(crate) fn with(self, field: MapField) -> MapFields {
        MapFields(self.0 | 1 << field as u32)
    }

    pub(crate) fn has(self, field: MapField) -> bool {
        self.0 & 1 << field as u32 != 0
    }

    /// One of them is a field the hop-by-hop rule drops.
    pub(crate) fn hop_by_hop(self) -> bool {
        [
            MapField::Connection,
            MapField::KeepAlive,
            MapField::Te,
            MapField::Trailer,
            MapField::Upgrade,
            MapField::TransferEncoding,
            MapField::Proxy,
        ]
        .into_iter()
        .any(|f| self.has(f))
    }
}

/// `name`, a token, is `lower` (lower case letters, digits and `-`) ignoring ASCII case.
/// Setting the 0x20 bit of every byte lowers letters and is exact here: the only other
/// bytes it would turn into a letter, a digit or `-` are control characters, which a
/// token cannot hold. Eight bytes at a time, the last word overlapping the one before.
#[inline(always)]
fn folded_eq(name: &[u8], lower: &'static [u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    if n < 8 {
        return name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(name, at) | FOLD != word(lower, at) {
            return false;
        }
        at += 8;
    }
    word(name, n - 8) | FOLD == word(lower, n - 8)
}

/// The map's name for a response field that goes into the `HeaderMap`, `None` for one
/// that passes through ([`MapField`]).
#[cfg(test)]
pub(crate) fn map_name(name: &[u8]) -> Result<Option<HeaderName>, InvalidName> {
    MapField::of(name)?.map(|f| f.name(name)).transpose()
}

/// A response field name the map cannot hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidName;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_fields_stay_in_the_map() {
        for name in [
            "Content-Length",
            "content-type",
            "CACHE-CONTROL",
            "Expires",
            "Vary",
            "Via",
            "Connection",
            "Keep-Alive",
            "Transfer-Encoding",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Authenticate",
            "proxy-connection",
            "Proxy-",
            "Content-Encoding",
            "Content-Range",
            "X-Cache",
        ] {
            assert!(map_name(name.as_bytes()).unwrap().is_some(), "{name}");
        }
        for name in [
            "Server",
            "Date",
            "ETag",
            "Last-Modified",
            "Set-Cookie",
            "Age",
            "X-Custom",
            "Accept-Ranges",
            "proxy",
            "Content-Language",
            "Vary2",
        ] {
            assert_eq!(map_name(name.as_bytes()), Ok(None), "{name}");
        }
        let long = format!("Proxy-{}", "a".repeat(70_000));
        assert_eq!(
            map_name(long.as_bytes()),
            Err(InvalidName),
            "a Proxy-* field the map cannot hold is not passed through"
        );
        for name in [
            "Content-Length",
            "Via",
            "X-Cache",
            "Keep-Alive",
            "Proxy-Connection",
        ] {
            assert_eq!(
                map_name(name.as_bytes()).unwrap().unwrap().as_str(),
                name.to_ascii_lowercase(),
                "the constant is the field's name"
            );
        }
    }

    /// Folding with the 0x20 bit agrees with `eq_ignore_ascii_case` on every token: each
    /// known name, and each with any one byte replaced by any token character, in both
    /// cases.
    #[test]
    fn folded_names_compare_as_ignoring_case() {
        let known: [&'static [u8]; 16] = [
            b"te",
            b"via",
            b"vary",
            b"expires",
            b"trailer",
            b"upgrade",
            b"x-cache",
            b"connection",
            b"keep-alive",
            b"content-type",
            b"cache-control",
            b"content-range",
            b"content-length",
            b"content-encoding",
            b"transfer-encoding",
            b"proxy-",
        ];
        for lower in known {
            for name in [lower.to_vec(), lower.to_ascii_uppercase()] {
                assert!(folded_eq(&name, lower));
                for at in 0..name.len() {
                    for b in (0..=255u8).filter(|&b| crate::head::is_tchar(b)) {
                        let mut other = name.clone();
                        other[at] = b;
                        assert_eq!(
                            folded_eq(&other, lower),
                            other.eq_ignore_ascii_case(lower),
                            "{:?} against {:?}",
                            String::from_utf8_lossy(&other),
                            String::from_utf8_lossy(lower)
                        );
                    }
                }
            }
            assert!(!folded_eq(&lower[1..], lower), "a shorter name");
        }
    }

    /// A head of more runs than a block refers to, and one with a line to rewrite, are
    /// copied, in order.
    #[test]
    fn many_runs_and_rewritten_lines_are_copied_in_order() {
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        let mut expected = String::new();
        for i in 0..RUNS + 3 {
            head.push_str(&format!("X-A{i}: {i}\r\nVary: b\r\n"));
            expected.push_str(&format!("X-A{i}: {i}\r\n"));
        }
        head.push_str("X-Last: z \r\n\r\n");
        expected.push_str("X-Last: z\r\n");
        let long = block(head.as_bytes()).unwrap();
        assert_eq!(long.count, 1, "copied");
        assert_eq!(String::from_utf8_lossy(&long.lines()), expected);
        let short = block(b"HTTP/1.1 200 OK\r\nA: 1\r\nVary: x\r\nB: 2\r\nC: 3\r\n\r\n").unwrap();
        assert_eq!(short.count, 2, "two runs of the head");
        assert_eq!(short.lines(), b"A: 1\r\nB: 2\r\nC: 3\r\n");
        let mut out = Vec::new();
        short.put(&mut out);
        assert_eq!(out, b"A: 1\r\nB: 2\r\nC: 3\r\n");
        let mut map = HeaderMap::new();
        short.append_to(&mut map);
        assert_eq!(map.len(), 3);
        assert_eq!(map["b"], "2");
        assert_eq!(map["c"], "3");
    }

    /// Builds a block from a head the way the engine does: every field not in the map.
    fn block(head: &[u8]) -> Option<Passthrough> {
        let (_, _, mut at) = crate::dyno_head::status_line(head).unwrap().unwrap();
        let mut b = Builder::default();
        while let (Some(f), next) = crate::dyno_head::line_at(head, at).unwrap().unwrap() {
            if map_name(&head[f.name.clone()]).unwrap().is_none() {
                b.push(
                    head,
                    (f.name.start, f.name.end),
                    (f.value.start, f.value.end),
                );
            }
            at = next;
        }
        b.finish(&Bytes::copy_from_slice(head))
    }

    #[test]
    fn a_block_materializes_into_the_same_fields() {
        let head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nSet-Cookie: a=1\r\nContent-Length: 5\r\nSet-Cookie:b=2; Path=/\r\nX-Empty:\r\nX-Trailing: v \t\r\nX-Bin: caf\u{e9}\r\nDate: Sun, 22 Nov 2026 04:00:00 GMT\r\n\r\n";
        let block = block(head.as_bytes()).unwrap();
        assert!(block.has_date());
        assert_eq!(
            String::from_utf8_lossy(&block.lines()),
            "Server: nginx\r\nSet-Cookie: a=1\r\nSet-Cookie:b=2; Path=/\r\nX-Empty:\r\nX-Trailing: v\r\nX-Bin: caf\u{e9}\r\nDate: Sun, 22 Nov 2026 04:00:00 GMT\r\n",
            "runs copied as they stand, the rest rewritten"
        );
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("5"));
        block.append_to(&mut h);
        assert_eq!(h.len(), 8);
        assert_eq!(h["server"], "nginx");
        assert_eq!(
            h.get_all("set-cookie").iter().collect::<Vec<_>>(),
            ["a=1", "b=2; Path=/"]
        );
        assert_eq!(h["x-empty"], "");
        assert_eq!(h["x-trailing"], "v");
        assert_eq!(h["x-bin"].as_bytes(), "caf\u{e9}".as_bytes());
    }

    /// The router's own fields go out after the dyno's lines, and into the map when the
    /// block is materialized.
    #[test]
    fn added_fields_are_written_and_materialized() {
        let mut b = block(b"HTTP/1.1 200 OK\r\nServer: a\r\n\r\n").unwrap();
        b.add(Added::VIA);
        b.add(Added::X_CACHE_MISS);
        let mut out = Vec::new();
        b.put(&mut out);
        assert_eq!(out, b"Server: a\r\nvia: 1.1 kiln\r\nx-cache: MISS\r\n");
        assert_eq!(
            VIA_LINE,
            format!("via: {}\r\n", crate::forward::VIA).as_bytes()
        );
        let mut map = HeaderMap::new();
        b.append_to(&mut map);
        assert_eq!(map.len(), 3);
        assert_eq!(map["via"], "1.1 kiln");
        assert_eq!(map["x-cache"], "MISS");
        let fields = MapFields::default().with(MapField::Via);
        assert!(fields.has(MapField::Via) && !fields.has(MapField::XCache));
        assert!(!fields.hop_by_hop());
        assert!(fields.with(MapField::Proxy).hop_by_hop());
    }

    #[test]
    fn bare_lf_lines_are_written_with_crlf() {
        let block = block(b"HTTP/1.1 200 OK\nServer: a\nETag: \"x\"\n\n").unwrap();
        assert_eq!(block.lines(), b"Server: a\r\nETag: \"x\"\r\n");
        assert!(!block.has_date());
    }

    #[test]
    fn no_fields_make_no_block() {
        assert!(Builder::default().finish(&Bytes::new()).is_none());
    }
}
