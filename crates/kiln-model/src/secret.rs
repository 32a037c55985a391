//! The one way Kiln makes a secret: API keys, `attach_url`s, log session ids and push
//! tokens all come from here, so they are all equally strong and look alike.
//!
//! (The only thing in this crate that asks the kernel for something: the randomness.)

/// The kernel's random source failed, which on Linux only happens on a system broken
/// beyond running anything; a secret is then refused rather than made weak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random source failed: {0}")]
pub struct SecretError(getrandom::Error);

/// A new secret: 256 bits from the kernel's CSPRNG, as 64 lowercase hex digits (safe in a
/// URL path, a header and a file).
pub fn new_secret() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(SecretError)?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
        s
    }))
}

/// Fills `buf` from the kernel's CSPRNG (password salts).
pub fn fill_random(buf: &mut [u8]) -> Result<(), SecretError> {
    getrandom::fill(buf).map_err(SecretError)
}

/// An API key as Kiln hands it out: a recognisable prefix (so secret scanners can find a
/// leaked one, as they find Heroku's `HRKU-`) and 256 random bits.
pub fn new_api_token() -> Result<String, SecretError> {
    Ok(format!("KILN-{}", new_secret()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_hex_and_distinct() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        for s in [&a, &b] {
            assert!(
                s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{s}"
            );
        }
        assert_ne!(a, b);
        // Every hex digit appears across a few secrets: the encoding uses the whole alphabet.
        let many: String = (0..8).map(|_| new_secret().unwrap()).collect();
        assert!("0123456789abcdef".chars().all(|c| many.contains(c)));
    }
}
