//! Checks a chunked request body as it streams past (RFC 9112 §7.1), so malformed chunking
//! is refused by the router instead of being read one way by it and another by the dyno.
//!
//! Only the framing is looked at: chunk-size lines (hex digits, optional extensions, CRLF),
//! the CRLF after each chunk's data, and the trailer section. Chunk data passes by count
//! without being scanned, so a large upload costs almost nothing here.

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
#[derive(Debug, Clone)]
pub(crate) struct ChunkedCheck {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
    trailers: usize,
}

/// How far [`ChunkedCheck::feed`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes of the input that belong to this body (all of them unless it ended).
    pub(crate) used: usize,
    /// The body's last byte was among them.
    pub(crate) done: bool,
}

impl ChunkedCheck {
    pub(crate) fn new() -> ChunkedCheck {
        ChunkedCheck {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Checks the next bytes of the body; `Err` names what is wrong.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Fed, &'static str> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                // Data passes by count, never scanned.
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - i);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
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
                State::Data | State::Done => unreachable!("handled above"),
            };
        }
        Ok(Fed {
            used: i,
            done: self.state == State::Done,
        })
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

#[cfg(test)]
mod tests {
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
}
