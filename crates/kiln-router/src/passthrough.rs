//! Response header fields the router passes through untouched, kept as the dyno's bytes
//! instead of being parsed into the response's `HeaderMap`.
//!
//! The pipeline reads and rewrites only a few fields of a dyno's response on every request:
//! framing and hop-by-hop fields, `Via`, and what the cache's first check and gzip's rules
//! look at. The rest (`Server`, `Date`, `ETag`, `Last-Modified`, `Set-Cookie`, an app's own
//! `X-*`…) only need copying to the client. Building a `HeaderMap` entry for each of them
//! cost more than anything else the router did per request (about 600 instructions a field,
//! bench/README.md), so the [engine](crate::engine)'s dyno client puts only the fields
//! [`map_name`] names into the map and gathers the others, already validated by [`dyno_head`](crate::dyno_head),
//! into one [`Passthrough`] block that travels with the dyno's body (`RouterBody::take_passthrough`).
//! The engine's writer appends the block after the map's fields.
//!
//! The few places that need every field call [`materialize`] first, which moves the block
//! into the map: the cache before it decides to store a response (it stores whole heads and
//! looks at `Date`, `Age` and `Set-Cookie`), gzip before it rewrites `ETag`, and the
//! HTTP/2 server (hyper writes only the map). A field the pipeline reads on every response
//! must be in [`map_name`]: a field missing from it would be invisible to that check.
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
/// as they are: `name: value` lines, each ended by CRLF.
#[derive(Debug)]
pub(crate) struct Passthrough {
    lines: Bytes,
    /// One of the lines is `Date` (the writer adds one only when the response has none).
    has_date: bool,
    /// A cache hit's `Age` in seconds, the one field of its stored head that changes per
    /// hit (a number, not a `HeaderValue`: this travels inside every dyno body too).
    age: Option<u64>,
}

/// Gathers pass-through fields while a response head is parsed. Consecutive fields that
/// stand in the head exactly as they will be written (`name:` OWS `value` CRLF) are copied
/// as one run.
#[derive(Default)]
pub(crate) struct Builder {
    lines: BytesMut,
    has_date: bool,
    /// The run of whole lines not copied yet: its start and end in the head.
    run: Option<(usize, usize)>,
}

impl Builder {
    /// Adds the field at `name` and `value` (positions in `head`), whose name and value
    /// [`dyno_head`](crate::dyno_head) has already checked: a token, and visible characters, spaces or tabs
    /// (the same rule as `HeaderValue`'s).
    pub(crate) fn push(&mut self, head: &[u8], name: (usize, usize), value: (usize, usize)) {
        self.has_date |= head[name.0..name.1].eq_ignore_ascii_case(b"date");
        // A line that ends right after its value with CRLF can be copied as it stands (the
        // bytes between name and value are the colon and spaces, as `dyno_head` requires).
        let whole = value.0 > name.1 && head.get(value.1..value.1 + 2) == Some(b"\r\n");
        match self.run {
            Some((start, end)) if whole && end == name.0 => self.run = Some((start, value.1 + 2)),
            _ => {
                self.flush(head);
                if whole {
                    self.run = Some((name.0, value.1 + 2));
                } else {
                    self.reserve();
                    crate::wire::put_field(
                        &mut self.lines,
                        &head[name.0..name.1],
                        &head[value.0..value.1],
                    );
                }
            }
        }
    }

    fn reserve(&mut self) {
        if self.lines.capacity() == 0 {
            self.lines.reserve(256);
        }
    }

    fn flush(&mut self, head: &[u8]) {
        if let Some((start, end)) = self.run.take() {
            self.reserve();
            self.lines.extend_from_slice(&head[start..end]);
        }
    }

    /// The block, unless no field went into it.
    pub(crate) fn finish(mut self, head: &[u8]) -> Option<Passthrough> {
        self.flush(head);
        (!self.lines.is_empty()).then(|| Passthrough {
            lines: self.lines.freeze(),
            has_date: self.has_date,
            age: None,
        })
    }
}

impl Passthrough {
    /// A cache hit's fields: the stored head's lines ([`write_lines`]) and its `Age`.
    pub(crate) fn stored(lines: Bytes, has_date: bool, age: u64) -> Passthrough {
        Passthrough {
            lines,
            has_date,
            age: Some(age),
        }
    }

    /// The fields as they are written to the client (without a hit's `Age`).
    #[cfg(test)]
    pub(crate) fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Writes the fields for the client.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        if let Some(age) = self.age {
            crate::wire::put_field(out, b"age", itoa::Buffer::new().format(age).as_bytes());
        }
        out.extend_from_slice(&self.lines);
    }

    pub(crate) fn has_date(&self) -> bool {
        self.has_date
    }

    /// Appends every field to `headers`, sharing the block's bytes.
    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        if let Some(age) = self.age {
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        let mut rest = &self.lines[..];
        // Every line is ours, ended by CRLF; a value cannot hold an LF.
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
                HeaderValue::from_maybe_shared(self.lines.slice_ref(value)),
            ) {
                headers.append(name, value);
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

/// The map's name for a response field that goes into the `HeaderMap` (the pipeline reads
/// or rewrites it on every response), `None` for one that passes through. In the map are
/// framing and hop-by-hop fields (so they are dropped), `Via` (appended to), and what the
/// cache's freshness check and gzip's rules decide on; every other field passes through
/// until [`materialize`] is called. Known names come from constants, so the caller does
/// not parse the name again. `Err` for a `Proxy-*` name `HeaderName` refuses (one over its
/// 64 KiB limit): a hop-by-hop field that cannot be dropped must not pass through either.
pub(crate) fn map_name(name: &[u8]) -> Result<Option<HeaderName>, InvalidName> {
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    // Length and first letter first: most fields that pass through are settled without
    // comparing a name.
    let Some(first) = name.first().map(u8::to_ascii_lowercase) else {
        return Ok(None);
    };
    Ok(Some(match (name.len(), first) {
        (2, b't') if is(b"te") => header::TE,
        (3, b'v') if is(b"via") => header::VIA,
        (4, b'v') if is(b"vary") => header::VARY,
        (7, b'e') if is(b"expires") => header::EXPIRES,
        (7, b't') if is(b"trailer") => header::TRAILER,
        (7, b'u') if is(b"upgrade") => header::UPGRADE,
        (7, b'x') if is(b"x-cache") => crate::forward::X_CACHE.clone(),
        (10, b'c') if is(b"connection") => header::CONNECTION,
        (10, b'k') if is(b"keep-alive") => crate::forward::KEEP_ALIVE.clone(),
        (12, b'c') if is(b"content-type") => header::CONTENT_TYPE,
        (13, b'c') if is(b"cache-control") => header::CACHE_CONTROL,
        (13, b'c') if is(b"content-range") => header::CONTENT_RANGE,
        (14, b'c') if is(b"content-length") => header::CONTENT_LENGTH,
        (16, b'c') if is(b"content-encoding") => header::CONTENT_ENCODING,
        (17, b't') if is(b"transfer-encoding") => header::TRANSFER_ENCODING,
        (6.., b'p') if name[..6].eq_ignore_ascii_case(b"proxy-") => {
            return HeaderName::from_bytes(name)
                .map(Some)
                .map_err(|_| InvalidName);
        }
        _ => return Ok(None),
    }))
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
        b.finish(head)
    }

    #[test]
    fn a_block_materializes_into_the_same_fields() {
        let head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nSet-Cookie: a=1\r\nContent-Length: 5\r\nSet-Cookie:b=2; Path=/\r\nX-Empty:\r\nX-Trailing: v \t\r\nX-Bin: caf\u{e9}\r\nDate: Sun, 22 Nov 2026 04:00:00 GMT\r\n\r\n";
        let block = block(head.as_bytes()).unwrap();
        assert!(block.has_date());
        assert_eq!(
            String::from_utf8_lossy(block.lines()),
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

    #[test]
    fn bare_lf_lines_are_written_with_crlf() {
        let block = block(b"HTTP/1.1 200 OK\nServer: a\nETag: \"x\"\n\n").unwrap();
        assert_eq!(block.lines(), b"Server: a\r\nETag: \"x\"\r\n");
        assert!(!block.has_date());
    }

    #[test]
    fn no_fields_make_no_block() {
        assert!(Builder::default().finish(b"").is_none());
    }
}
