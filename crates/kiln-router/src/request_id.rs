//! `X-Request-Id`: keep the client's id when Heroku would, otherwise mint a UUID v4.

use http::HeaderValue;

/// Heroku keeps a client-supplied id of 20–200 characters from `[A-Za-z0-9+/=-]`, so ids
/// can be traced across services; anything else could be used to forge or flood logs.
pub(crate) fn is_valid(id: &[u8]) -> bool {
    (20..=200).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
}

/// A fresh UUID v4 (RFC 9562), hyphenated in lower case. The random bits come from
/// fastrand's thread-local generator rather than the OS: request ids must be unique, not
/// secret, and this keeps a syscall off every request. Written out here, a byte at a time
/// through a table: the `uuid` crate's formatter cost about a hundred instructions more, on
/// every request.
pub(crate) fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = fastrand::u128(..).to_be_bytes();
    // Version 4 in the high nibble of byte 6; the RFC's variant (0b10) at the top of byte 8.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, b) in bytes.into_iter().enumerate() {
        // Hyphens after the 4th, 6th, 8th and 10th bytes: 8-4-4-4-12 digits.
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(b >> 4)];
        text[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    // Hex digits and hyphens are always a valid header value.
    HeaderValue::from_bytes(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_heroku() {
        assert!(is_valid(b"abcdefghij0123456789"));
        assert!(is_valid(b"a+b/c=d-e+f/g=h-i+j/k=l"));
        assert!(is_valid("x".repeat(200).as_bytes()));
        assert!(!is_valid(b"abcdefghij012345678"), "19 chars is too short");
        assert!(!is_valid("x".repeat(201).as_bytes()));
        assert!(!is_valid(b"abcdefghij0123456789 "), "space is not allowed");
        assert!(!is_valid(b"abcdefghij0123456789_"));
    }

    #[test]
    fn generates_uuid_v4() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        for _ in 0..1000 {
            let id = generate();
            let text = id.to_str().unwrap();
            // 8-4-4-4-12 lower-case hex digits, version 4, the RFC's variant.
            let groups: Vec<&str> = text.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{text}");
            assert!(
                text.bytes()
                    .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{text}"
            );
            assert!(groups[2].starts_with('4'), "version 4: {text}");
            assert!(
                matches!(&groups[3][..1], "8" | "9" | "a" | "b"),
                "variant: {text}"
            );
            assert!(is_valid(id.as_bytes()));
            let parsed = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
