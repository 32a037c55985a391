//! `kiln run`'s attach protocol, both ends of it (the API's rendezvous and the CLI) reading
//! and writing through this one module. After `Upgrade: kiln-attach`, each side sends frames:
//! a kind byte, the data's length as a big-endian `u32`, the data.
//!
//! | kind | client → dyno | dyno → client |
//! |---|---|---|
//! | 0 | stdin bytes | stdout bytes |
//! | 1 | stdin closed (no data) | stderr bytes |
//! | 2 | — | the exit status (4 bytes, big-endian `i32`), last |

/// The most one frame may carry: more is a broken or hostile peer.
pub const MAX_FRAME: usize = 1024 * 1024;

/// A frame's header: kind and length.
pub const HEADER_LEN: usize = 5;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToDyno {
    Stdin(Vec<u8>),
    StdinClosed,
}

/// What the dyno's side sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

/// A frame that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("a malformed frame of kind {kind} ({len} bytes)")]
    Malformed { kind: u8, len: usize },
}

/// The kind and data length a header announces, checked against the limit before anything
/// is allocated for the data.
pub fn parse_header(header: [u8; HEADER_LEN]) -> Result<(u8, usize), FrameError> {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok((header[0], len))
}

fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + data.len());
    f.push(kind);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

impl ToDyno {
    /// The frame's bytes. Data over [`MAX_FRAME`] must be sent in several frames.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToDyno::Stdin(data) => frame(0, data),
            ToDyno::StdinClosed => frame(1, &[]),
        }
    }

    pub fn decode(kind: u8, data: Vec<u8>) -> Result<ToDyno, FrameError> {
        match kind {
            0 => Ok(ToDyno::Stdin(data)),
            1 if data.is_empty() => Ok(ToDyno::StdinClosed),
            1 => Err(FrameError::Malformed {
                kind,
                len: data.len(),
            }),
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

impl ToClient {
    /// The frame's bytes. Data over [`MAX_FRAME`] must be sent in several frames.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToClient::Stdout(data) => frame(0, data),
            ToClient::Stderr(data) => frame(1, data),
            ToClient::Exit(code) => frame(2, &code.to_be_bytes()),
        }
    }

    pub fn decode(kind: u8, data: Vec<u8>) -> Result<ToClient, FrameError> {
        match kind {
            0 => Ok(ToClient::Stdout(data)),
            1 => Ok(ToClient::Stderr(data)),
            2 => match <[u8; 4]>::try_from(data.as_slice()) {
                Ok(code) => Ok(ToClient::Exit(i32::from_be_bytes(code))),
                Err(_) => Err(FrameError::Malformed {
                    kind,
                    len: data.len(),
                }),
            },
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits encoded bytes back into frames the way both ends read them.
    fn read_all(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (kind, len) = parse_header(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
            out.push((kind, bytes[HEADER_LEN..HEADER_LEN + len].to_vec()));
            bytes = &bytes[HEADER_LEN + len..];
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let to_dyno = [
            ToDyno::Stdin(b"ls -la\n".to_vec()),
            ToDyno::Stdin(Vec::new()),
            ToDyno::Stdin(vec![0xff; 70_000]),
            ToDyno::StdinClosed,
        ];
        let bytes: Vec<u8> = to_dyno.iter().flat_map(ToDyno::encode).collect();
        let back: Vec<ToDyno> = read_all(&bytes)
            .into_iter()
            .map(|(k, d)| ToDyno::decode(k, d).unwrap())
            .collect();
        assert_eq!(back, to_dyno);
        let to_client = [
            ToClient::Stdout(b"out".to_vec()),
            ToClient::Stderr(b"err".to_vec()),
            ToClient::Exit(-1),
            ToClient::Exit(130),
        ];
        let bytes: Vec<u8> = to_client.iter().flat_map(ToClient::encode).collect();
        let back: Vec<ToClient> = read_all(&bytes)
            .into_iter()
            .map(|(k, d)| ToClient::decode(k, d).unwrap())
            .collect();
        assert_eq!(back, to_client);
    }

    #[test]
    fn hostile_frames_are_refused() {
        // A length over the limit is refused from the header, before any allocation.
        assert_eq!(
            parse_header([0, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(
            parse_header([0, 0, 0x10, 0, 1]),
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
        assert_eq!(parse_header([0, 0, 0x10, 0, 0]), Ok((0, MAX_FRAME)));
        assert_eq!(
            ToDyno::decode(7, Vec::new()),
            Err(FrameError::UnknownKind(7))
        );
        assert_eq!(
            ToDyno::decode(2, vec![0, 0, 0, 0]),
            Err(FrameError::UnknownKind(2)),
            "a client cannot send an exit status"
        );
        assert_eq!(
            ToDyno::decode(1, b"x".to_vec()),
            Err(FrameError::Malformed { kind: 1, len: 1 })
        );
        assert_eq!(
            ToClient::decode(2, vec![0, 0, 1]),
            Err(FrameError::Malformed { kind: 2, len: 3 })
        );
        assert_eq!(
            ToClient::decode(2, vec![0; 5]),
            Err(FrameError::Malformed { kind: 2, len: 5 })
        );
        assert_eq!(
            ToClient::decode(255, Vec::new()),
            Err(FrameError::UnknownKind(255))
        );
    }
}
