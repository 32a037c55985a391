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
/// secret, and this keeps a syscall off every request. Written out here, sixteen digits at
/// a time in plain integer arithmetic: the `uuid` crate's formatter, and a byte-at-a-time
/// table after it, cost a few hundred instructions on every request.
///
/// Ids are made [`BATCH`] at a time into one shared buffer, and each is a slice of it: the
/// id is cloned into the request's log line, so it must be shared anyway, and a buffer of
/// its own per request was an allocation and a free on every request (bench/README.md,
/// "router", session 19).
pub(crate) fn generate() -> HeaderValue {
    let id = MADE
        .try_with(|made| {
            let mut made = made.try_borrow_mut().ok()?;
            let (ids, next) = &mut *made;
            if *next == BATCH || ids.is_empty() {
                let mut fresh = Vec::with_capacity(BATCH * UUID_LEN);
                for _ in 0..BATCH {
                    fresh.extend_from_slice(&uuid_v4());
                }
                *ids = bytes::Bytes::from(fresh);
                *next = 0;
            }
            let at = *next * UUID_LEN;
            *next += 1;
            Some(ids.slice(at..at + UUID_LEN))
        })
        .ok()
        .flatten()
        // Only while the thread's storage is torn down.
        .unwrap_or_else(|| bytes::Bytes::copy_from_slice(&uuid_v4()));
    // Hex digits and hyphens are always a valid header value.
    HeaderValue::from_maybe_shared(id)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

/// Ids made at once per thread.
const BATCH: usize = 32;
const UUID_LEN: usize = 36;

thread_local! {
    /// This thread's batch of ids, and the index of the next one to hand out.
    static MADE: std::cell::RefCell<(bytes::Bytes, usize)> =
        const { std::cell::RefCell::new((bytes::Bytes::new(), 0)) };
}

/// A random UUID v4, hyphenated.
fn uuid_v4() -> [u8; UUID_LEN] {
    // Version 4 in the high nibble of byte 6; the RFC's variant (0b10) at the top of byte 8.
    let bits = (fastrand::u128(..) & !((0xf000_u128 << 64) | (0xc000_u128 << 48)))
        | (0x4000_u128 << 64)
        | (0x8000_u128 << 48);
    let hex = hex32(bits);
    let mut text = [b'-'; UUID_LEN];
    // 8-4-4-4-12 digits.
    text[..8].copy_from_slice(&hex[..8]);
    text[9..13].copy_from_slice(&hex[8..12]);
    text[14..18].copy_from_slice(&hex[12..16]);
    text[19..23].copy_from_slice(&hex[16..20]);
    text[24..].copy_from_slice(&hex[20..]);
    text
}

/// The 32 lower-case hex digits of `v`, most significant first.
fn hex32(v: u128) -> [u8; 32] {
    let mut out = [0; 32];
    out[..16].copy_from_slice(&hex16((v >> 64) as u64));
    out[16..].copy_from_slice(&hex16(v as u64));
    out
}

/// The 16 lower-case hex digits of `v`, most significant first: each nibble is spread into
/// a byte of its own (halving the distance between them at each step), then all sixteen
/// become ASCII at once, `'a' - '0' - 10` added to those above 9.
fn hex16(v: u64) -> [u8; 16] {
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let mut x = u128::from(v);
    x = (x | x << 32) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    x = (x | x << 16) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    x = (x | x << 4) & (ONES * 0x0f);
    // A nibble above 9 plus 6 carries into bit 4 of its own byte (never further).
    let letters = ((x + ONES * 6) >> 4) & ONES;
    (x + ONES * u128::from(b'0') + letters * u128::from(b'a' - b'0' - 10)).to_be_bytes()
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
    fn hex_digits_are_the_formatters() {
        for v in [
            0,
            1,
            9,
            10,
            15,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            0xa5a5_5a5a_f0f0_0f0f,
        ] {
            assert_eq!(hex16(v), *format!("{v:016x}").as_bytes());
        }
        for _ in 0..10_000 {
            let v = fastrand::u128(..);
            assert_eq!(hex32(v), *format!("{v:032x}").as_bytes());
        }
    }

    #[test]
    fn generates_uuid_v4() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        // Across several batches, every id is distinct and whole.
        let many: std::collections::HashSet<HeaderValue> =
            (0..10 * BATCH + 3).map(|_| generate()).collect();
        assert_eq!(many.len(), 10 * BATCH + 3);
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
