//! The router's one chunked codec (RFC 9112 §7.1): [`ChunkDecoder`] checks a chunked body
//! and yields its data, for a client's request body (so malformed chunking is refused by
//! the router instead of being read one way by it and another by the dyno) and for a dyno's
//! response alike. One set of rules for both sides.
//!
//! Only the framing is looked at: chunk-size lines (hex digits, optional extensions, CRLF),
//! the CRLF after each chunk's data, and the trailer section. Chunk data passes by count
//! without being scanned, so a large upload costs almost nothing here.

use crate::wire::take;
use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line, extensions included (hyper allows a little more in total).
const MAX_SIZE_LINE: usize = 4096;
/// A chunk size has at most 16 hex digits (it must fit in a u64).
const MAX_SIZE_DIGITS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line.
    SizeStart,
    /// In the hex digits.
    Size,
    /// After the digits: extensions until CR.
    Ext,
    /// After the CR that ends a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// After the CR of a trailer field line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    Done,
}

/// Where a chunked body is, between calls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChunkedCheck {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
    trailers: usize,
}

/// How far [`ChunkedCheck::feed`] got.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes of the input that belong to this body (all of them unless it ended).
    pub(crate) used: usize,
    /// The body's last byte was among them.
    pub(crate) done: bool,
}

impl Default for ChunkedCheck {
    fn default() -> ChunkedCheck {
        ChunkedCheck::new()
    }
}

impl ChunkedCheck {
    fn new() -> ChunkedCheck {
        ChunkedCheck {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Checks the next bytes of the body; `Err` names what is wrong. (The decoder's check
    /// without the data, which the tests compare it with.)
    #[cfg(test)]
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Fed, &'static str> {
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            if self.state == State::Data {
                // Data passes by count, never scanned.
                i += self.skip_data(bytes.len() - i);
                continue;
            }
            self.step(bytes[i])?;
            i += 1;
        }
        Ok(Fed {
            used: i,
            done: self.state == State::Done,
        })
    }

    /// Checks framing bytes up to the next chunk's data or the body's end; how many it used.
    fn framing(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
        let mut i = 0;
        while i < bytes.len() && !matches!(self.state, State::Data | State::Done) {
            self.step(bytes[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// Passes up to `available` bytes of chunk data; how many.
    fn skip_data(&mut self, available: usize) -> usize {
        let take = usize::try_from(self.size)
            .unwrap_or(usize::MAX)
            .min(available);
        self.size -= take as u64;
        if self.size == 0 {
            self.state = State::DataCr;
        }
        take
    }

    /// One framing byte.
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        self.state = match self.state {
            State::SizeStart => match hex(b) {
                Some(v) => {
                    self.size = u64::from(v);
                    self.digits = 1;
                    self.line = 1;
                    State::Size
                }
                None => return Err("chunk size is not a hex number"),
            },
            State::Size => {
                self.line += 1;
                match (hex(b), b) {
                    (Some(v), _) => {
                        self.digits += 1;
                        if self.digits > MAX_SIZE_DIGITS {
                            return Err("chunk size too large");
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        State::Size
                    }
                    (None, b'\r') => State::SizeLf,
                    (None, b'\n') => return Err("chunk size line not ended by CRLF"),
                    (None, b';' | b' ' | b'\t') => State::Ext,
                    _ => return Err("chunk size is not a hex number"),
                }
            }
            State::Ext => {
                self.line += 1;
                if self.line > MAX_SIZE_LINE {
                    return Err("chunk extension too long");
                }
                match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err("chunk size line not ended by CRLF"),
                    b'\t' => State::Ext,
                    b if b < 0x20 || b == 0x7f => {
                        return Err("control character in a chunk extension");
                    }
                    _ => State::Ext,
                }
            }
            State::SizeLf => match b {
                b'\n' if self.size == 0 => State::TrailerStart,
                b'\n' => State::Data,
                _ => return Err("chunk size line not ended by CRLF"),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err("chunk data longer than its size"),
            },
            State::DataLf => match b {
                b'\n' => State::SizeStart,
                _ => return Err("chunk data not followed by CRLF"),
            },
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b' ' | b'\t' => return Err("obsolete line folding in trailers"),
                b if b < 0x20 || b == 0x7f => return Err("control character in a trailer"),
                _ => {
                    self.trailers += 1;
                    if self.trailers > crate::head::MAX_HEADERS {
                        return Err("too many trailers");
                    }
                    self.line = 1;
                    State::Trailer
                }
            },
            State::Trailer => {
                self.line += 1;
                if self.line > crate::head::MAX_HEADER_LINE {
                    return Err("trailer line too long");
                }
                match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err("trailer line not ended by CRLF"),
                    b'\t' => State::Trailer,
                    b if b < 0x20 || b == 0x7f => return Err("control character in a trailer"),
                    _ => State::Trailer,
                }
            }
            State::TrailerLf => match b {
                b'\n' => State::TrailerStart,
                _ => return Err("trailer line not ended by CRLF"),
            },
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err("chunked body not ended by CRLF"),
            },
            State::Data | State::Done => unreachable!("data and the end take no framing byte"),
        };
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a chunked body as it arrives: a [`ChunkedCheck`] that also yields the data, so
/// a dyno's response body is held to exactly the rules a client's request body is.
/// Trailers are checked and dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ChunkDecoder {
    check: ChunkedCheck,
}

pub(crate) enum Piece {
    Data(Bytes),
    End,
}

impl ChunkDecoder {
    /// The next piece of the body from `buf`, consuming what it used; `None` when more
    /// bytes are needed.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, &'static str> {
        loop {
            match self.check.state {
                State::Done => return Ok(Some(Piece::End)),
                _ if buf.is_empty() => return Ok(None),
                State::Data => {
                    let n = self.check.skip_data(buf.len());
                    return Ok(Some(Piece::Data(take(buf, n))));
                }
                _ => {
                    let used = self.check.framing(buf)?;
                    buf.advance(used);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, bool), &'static str> {
        let mut buf = BytesMut::from(input);
        let mut d = ChunkDecoder::default();
        let mut out = Vec::new();
        loop {
            match d.next(&mut buf)? {
                Some(Piece::Data(b)) => out.extend_from_slice(&b),
                Some(Piece::End) => return Ok((out, true)),
                None => return Ok((out, false)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            decode_all(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n").unwrap(),
            (b"hello world".to_vec(), true)
        );
        assert_eq!(decode_all(b"5\r\nhel").unwrap(), (b"hel".to_vec(), false));
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            (b"0123456789".to_vec(), true)
        );
    }

    #[test]
    fn hostile_chunking_is_refused() {
        assert!(decode_all(b"zz\r\nhello\r\n").is_err());
        assert!(decode_all(b"5\nhello\r\n").is_err(), "bare LF");
        assert!(
            decode_all(b"5\r\nhelloXX0\r\n\r\n").is_err(),
            "data overrun"
        );
        assert!(
            decode_all(b"fffffffffffffffff\r\n").is_err(),
            "size overflow"
        );
        assert!(decode_all(&[b'1'; 5000]).is_err(), "endless size line");
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..20_000 {
            trailers.extend_from_slice(b"X-A: b\r\n");
        }
        assert!(decode_all(&trailers).is_err(), "unbounded trailers");
    }

    use super::*;

    fn whole(body: &[u8]) -> Result<Fed, &'static str> {
        ChunkedCheck::new().feed(body)
    }

    #[test]
    fn well_formed_bodies() {
        assert_eq!(
            whole(b"5\r\nhello\r\n0\r\n\r\n"),
            Ok(Fed {
                used: 15,
                done: true
            })
        );
        assert_eq!(
            whole(b"A;name=val\r\n0123456789\r\n00\r\nX-T: 1\r\n\r\nGET / HTTP/1.1"),
            Ok(Fed {
                used: 38,
                done: true
            })
        );
        assert_eq!(
            whole(b"5\r\nhel"),
            Ok(Fed {
                used: 6,
                done: false
            })
        );
        // Byte by byte gives the same result.
        let body = b"3\r\nabc\r\n1; ext=\"q\"\r\nd\r\n0\r\nTrailer: x\r\n\r\n";
        let mut c = ChunkedCheck::new();
        for (n, b) in body.iter().enumerate() {
            let fed = c.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!((fed.used, fed.done), (1, n == body.len() - 1), "at {n}");
        }
    }

    #[test]
    fn malformed_bodies() {
        for (body, why) in [
            (&b"zz\r\n"[..], "chunk size is not a hex number"),
            (b"-1\r\n", "chunk size is not a hex number"),
            (
                b"0x5\r\nhello\r\n0\r\n\r\n",
                "chunk size is not a hex number",
            ),
            (b"\r\n5\r\nhello", "chunk size is not a hex number"),
            (b"5\nhello\r\n", "chunk size line not ended by CRLF"),
            (b"5\r\nhelloX\r\n", "chunk data longer than its size"),
            (b"5\r\nhello\rX", "chunk data not followed by CRLF"),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data longer than its size"),
            (b"11111111111111111\r\n", "chunk size too large"),
            (
                b"5;a\x00\r\nhello",
                "control character in a chunk extension",
            ),
            (b"0\r\n\r\r", "chunked body not ended by CRLF"),
            (b"0\r\n folded\r\n\r\n", "obsolete line folding in trailers"),
            (b"0\r\nT: 1\n\r\n", "trailer line not ended by CRLF"),
        ] {
            assert_eq!(whole(body), Err(why), "{:?}", String::from_utf8_lossy(body));
        }
        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_SIZE_LINE));
        assert_eq!(whole(long_ext.as_bytes()), Err("chunk extension too long"));
    }

    /// A chunked body read line by line, straight from RFC 9112 §7.1 with the router's
    /// limits (a line's CR counts against its limit): `Ok(Some((data, used)))` once
    /// complete, `Ok(None)` while incomplete.
    fn reference(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
        let ctl = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
        // The line at `at` without its CRLF, and where the next begins.
        let line = |at: usize| -> Result<Option<(&[u8], usize)>, ()> {
            let Some(nl) = input[at..].iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            match input[at..at + nl].strip_suffix(b"\r") {
                Some(l) => Ok(Some((l, at + nl + 1))),
                None => Err(()),
            }
        };
        let (mut at, mut data) = (0, Vec::new());
        loop {
            let Some((size_line, next)) = line(at)? else {
                return Ok(None);
            };
            let digits = size_line
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            let ext = &size_line[digits..];
            if digits == 0
                || digits > MAX_SIZE_DIGITS
                || size_line.len() + 1 > MAX_SIZE_LINE
                || !(ext.is_empty() || b"; \t".contains(&ext[0]))
                || ext.iter().any(|&b| ctl(b))
            {
                return Err(());
            }
            let hex = std::str::from_utf8(&size_line[..digits]).map_err(|_| ())?;
            let size = u64::from_str_radix(hex, 16).map_err(|_| ())?;
            at = next;
            if size == 0 {
                break;
            }
            let Some(end) = usize::try_from(size)
                .ok()
                .and_then(|n| at.checked_add(n))
                .filter(|&end| end + 2 <= input.len())
            else {
                return Ok(None);
            };
            if &input[end..end + 2] != b"\r\n" {
                return Err(());
            }
            data.extend_from_slice(&input[at..end]);
            at = end + 2;
        }
        let mut trailers = 0;
        loop {
            let Some((trailer, next)) = line(at)? else {
                return Ok(None);
            };
            at = next;
            if trailer.is_empty() {
                return Ok(Some((data, at)));
            }
            trailers += 1;
            if trailers > crate::head::MAX_HEADERS
                || trailer.len() + 1 > crate::head::MAX_HEADER_LINE
                || b" \t".contains(&trailer[0])
                || trailer.iter().any(|&b| ctl(b))
            {
                return Err(());
            }
        }
    }

    /// A random well-formed chunked body, in mixed-case hex with extensions and trailers
    /// now and then, followed by the start of a next request.
    fn random_body(rng: &mut fastrand::Rng) -> Vec<u8> {
        let mut body = Vec::new();
        for _ in 0..rng.usize(0..4) {
            let size = rng.usize(1..40);
            let hex = format!("{:0width$x}", size, width = rng.usize(1..4));
            let hex = if rng.bool() {
                hex.to_ascii_uppercase()
            } else {
                hex
            };
            body.extend_from_slice(hex.as_bytes());
            if rng.u8(..4) == 0 {
                body.extend_from_slice(b";name=\"va lue\"");
            }
            body.extend_from_slice(b"\r\n");
            body.extend((0..size).map(|_| rng.u8(..)));
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        if rng.u8(..4) == 0 {
            body.extend_from_slice(b"X-Checksum: abc\r\n");
        }
        body.extend_from_slice(b"\r\nGET / HTTP/1.1\r\n");
        body
    }

    /// Fuzz target (see `crate::fuzz`): the chunked codec against the line-by-line
    /// reference, as a check and as a decoder, each fed in random pieces. Where the
    /// reference has a complete answer they give the same one: the same verdict, the same
    /// bytes used and the same data. Where the input is still incomplete for the reference,
    /// the codec may already have refused a byte, but if it accepted everything so far,
    /// the reference's verdict on the whole never differs from a refusal the codec makes.
    #[test]
    fn fuzz_chunked_codec() {
        crate::fuzz::run("fuzz_chunked_codec", |rng| {
            let mut input = random_body(rng);
            if rng.u8(..3) > 0 {
                crate::fuzz::mutate(rng, &mut input, b"\r\n;\t 0fF\x00\x7fx:");
            }
            let expected = reference(&input);
            let shown = String::from_utf8_lossy(&input).into_owned();
            let cuts = crate::fuzz::cuts(rng, input.len());

            // As a check.
            let mut check = ChunkedCheck::new();
            let (mut used, mut done, mut checked) = (0, false, Ok(()));
            let mut from = 0;
            for &cut in &cuts {
                if done || checked.is_err() || cut <= from {
                    continue;
                }
                match check.feed(&input[from..cut]) {
                    Ok(fed) => {
                        used += fed.used;
                        done = fed.done;
                        from = cut;
                    }
                    Err(e) => checked = Err(e),
                }
            }
            // As a decoder.
            let mut decoder = ChunkDecoder::default();
            let (mut buf, mut data, mut ended, mut decoded) =
                (BytesMut::new(), Vec::new(), false, Ok(()));
            let mut from = 0;
            'feed: for &cut in &cuts {
                buf.extend_from_slice(&input[from..cut]);
                from = cut;
                loop {
                    match decoder.next(&mut buf) {
                        Ok(Some(Piece::Data(d))) => data.extend_from_slice(&d),
                        Ok(Some(Piece::End)) => {
                            ended = true;
                            break 'feed;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            decoded = Err(e);
                            break 'feed;
                        }
                    }
                }
            }
            assert_eq!(
                checked.is_err(),
                decoded.is_err(),
                "{shown:?}: {checked:?} {decoded:?}"
            );
            match expected {
                Ok(Some((want, len))) => {
                    assert!(checked.is_ok() && done && ended, "{shown:?}: {checked:?}");
                    assert_eq!(used, len, "{shown:?}");
                    assert_eq!(from - buf.len(), len, "{shown:?}");
                    assert_eq!(data, want, "{shown:?}");
                }
                Err(()) => assert!(checked.is_err(), "{shown:?} passed"),
                Ok(None) => assert!(!done && !ended, "{shown:?} ended early"),
            }
        });
    }
}
