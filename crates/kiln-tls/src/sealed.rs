//! Private keys on disk (the local CA's, the ACME account's), sealed with a key derived from
//! the server's master key, so that a copy of the data directory without `master.key` reveals
//! neither. The server gives the key once at start ([`seal_files_with`]); without it (tests,
//! tools) files are read and written in clear as before.
//!
//! A sealed file is text: `kiln-sealed v1` on the first line, then the base64 of a 96-bit
//! nonce and the ChaCha20-Poly1305 ciphertext of the content, with the file's name as
//! authenticated data (a sealed CA key renamed to the account key's place does not open).
//! A file found in clear while a key is set is sealed in place (data directories from before).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::path::Path;
use std::sync::OnceLock;

const HEADER: &str = "kiln-sealed v1\n";

static KEY: OnceLock<LessSafeKey> = OnceLock::new();

/// Seals private key files from now on with this key (32 bytes). Set once per process.
pub fn seal_files_with(key: [u8; 32]) {
    if let Ok(k) = UnboundKey::new(&CHACHA20_POLY1305, &key) {
        let _ = KEY.set(LessSafeKey::new(k));
    }
}

fn label(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default()
}

fn invalid(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// Reads a private file: opened when sealed, sealed in place when found in clear (and a key
/// is set).
pub(crate) fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    use base64::Engine;
    let bytes = std::fs::read(path)?;
    let Some(body) = bytes.strip_prefix(HEADER.as_bytes()) else {
        if KEY.get().is_some() {
            write(path, &bytes, 0o600)?;
        }
        return Ok(bytes);
    };
    let key = KEY
        .get()
        .ok_or_else(|| invalid(path, "sealed, and no master key was given to open it"))?;
    let text = std::str::from_utf8(body).map_err(|_| invalid(path, "a damaged sealed file"))?;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| invalid(path, "a damaged sealed file"))?;
    if raw.len() < NONCE_LEN {
        return Err(invalid(path, "a damaged sealed file"));
    }
    let nonce: [u8; NONCE_LEN] = raw[..NONCE_LEN]
        .try_into()
        .map_err(|_| invalid(path, "a damaged sealed file"))?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(label(path)),
            &mut raw[NONCE_LEN..],
        )
        .map_err(|_| {
            invalid(
                path,
                "does not open with this server's master key (another key, or altered)",
            )
        })?;
    Ok(plain.to_vec())
}

/// Writes a private file (mode `mode`), sealed when a key is set; aside and renamed, so a
/// crash never leaves half a key.
pub(crate) fn write(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let content = match KEY.get() {
        None => data.to_vec(),
        Some(key) => {
            let mut nonce = [0u8; NONCE_LEN];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                .map_err(|_| std::io::Error::other("the system's random source failed"))?;
            let mut buf = data.to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label(path)),
                &mut buf,
            )
            .map_err(|_| std::io::Error::other("sealing failed"))?;
            let mut raw = nonce.to_vec();
            raw.extend_from_slice(&buf);
            format!(
                "{HEADER}{}\n",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
            .into_bytes()
        }
    };
    let tmp = path.with_extension("sealing");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(&content)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
