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

/// A fresh UUID v4. The random bits come from fastrand's thread-local generator rather than
/// the OS: request ids must be unique, not secret, and this keeps a syscall off every request.
pub(crate) fn generate() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text)
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
        let parsed = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert!(is_valid(a.as_bytes()));
    }
}
