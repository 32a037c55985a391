//! Secrets at rest: config vars (apps' and every release's), add-on credentials and TLS
//! private keys are stored sealed with ChaCha20-Poly1305 under a master key that is kept
//! apart from the database (`<data-dir>/master.key` or `KILN_MASTER_KEY`), so a copy of the
//! database file alone reveals none of them.
//!
//! The sealed columns: `apps.config`, `releases.config`, `addons.config`,
//! `sni_endpoints.private_key`.
//!
//! The sealing happens inside SQLite: the connection gets two functions,
//! `kiln_seal(label, text)` and `kiln_open(label, text)`, holding this connection's key, and
//! the store's SQL calls them where it writes and reads those columns. That keeps the key in
//! one place (no global), and no query can forget to decrypt what another encrypted.
//!
//! A sealed value is `kiln:v1:` and the base64 of a fresh 96-bit nonce followed by the
//! ciphertext and its tag. The label (`apps.config:<app id>`, …) is authenticated data: a
//! sealed value moved to another row or column does not open.

use crate::{Result, StoreError};
use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use std::sync::Arc;

const PREFIX: &str = "kiln:v1:";

/// 256 bits that open the database's secrets.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<MasterKey> {
        let mut k = [0u8; 32];
        kiln_model::secret::fill_random(&mut k).map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(MasterKey(k))
    }

    /// 64 hexadecimal digits, as `master.key` and `KILN_MASTER_KEY` hold it.
    pub fn from_hex(text: &str) -> Result<MasterKey> {
        let t = text.trim();
        let bad = || {
            StoreError::Db("the master key must be 64 hexadecimal digits (256 bits)".to_string())
        };
        if t.len() != 64 || !t.is_ascii() {
            return Err(bad());
        }
        let mut k = [0u8; 32];
        for (i, byte) in k.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(MasterKey(k))
    }

    /// A key for another use of the master key (`purpose` names it), so one use's
    /// ciphertexts never meet another's key: SHA-256 over a label, the purpose and the key.
    pub fn subkey(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"kiln subkey\0");
        h.update(purpose.as_bytes());
        h.update(b"\0");
        h.update(self.0);
        h.finalize().into()
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn aead(&self) -> LessSafeKey {
        // 32 bytes is ChaCha20-Poly1305's key length, so this cannot fail.
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &self.0).unwrap_or_else(|_| unreachable!()),
        )
    }
}

#[derive(Debug, thiserror::Error)]
enum SealError {
    #[error("the system's random source failed")]
    Random,
    #[error("encryption failed")]
    Seal,
    #[error(
        "a sealed value ({0}) does not open with this master key: the key is not the one the database was sealed with, or the value was altered"
    )]
    Open(String),
    #[error("a value of {0} is not sealed")]
    NotSealed(String),
}

fn seal(key: &LessSafeKey, label: &str, plain: &str) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    kiln_model::secret::fill_random(&mut nonce).map_err(|_| SealError::Random)?;
    let mut buf = plain.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(label.as_bytes()),
        &mut buf,
    )
    .map_err(|_| SealError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
    ))
}

fn open(key: &LessSafeKey, label: &str, stored: &str) -> Result<String, SealError> {
    let what = || label.split(':').next().unwrap_or(label).to_string();
    let body = stored
        .strip_prefix(PREFIX)
        .ok_or_else(|| SealError::NotSealed(what()))?;
    let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(body)
        .map_err(|_| SealError::Open(what()))?;
    if bytes.len() < NONCE_LEN {
        return Err(SealError::Open(what()));
    }
    let nonce: [u8; NONCE_LEN] = bytes[..NONCE_LEN]
        .try_into()
        .map_err(|_| SealError::Open(what()))?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(label.as_bytes()),
            &mut bytes[NONCE_LEN..],
        )
        .map_err(|_| SealError::Open(what()))?;
    String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open(what()))
}

/// Gives the connection `kiln_seal` and `kiln_open` with this key.
pub(super) fn register(conn: &Connection, key: &MasterKey) -> Result<()> {
    let aead = Arc::new(key.aead());
    let k = aead.clone();
    conn.create_scalar_function("kiln_seal", 2, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let label: String = ctx.get(0)?;
        let plain: String = ctx.get(1)?;
        seal(&k, &label, &plain).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
    })
    .map_err(|e| StoreError::Db(format!("registering kiln_seal: {e}")))?;
    conn.create_scalar_function(
        "kiln_open",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| {
            let label: String = ctx.get(0)?;
            let stored: String = ctx.get(1)?;
            open(&aead, &label, &stored)
                .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
        },
    )
    .map_err(|e| StoreError::Db(format!("registering kiln_open: {e}")))?;
    Ok(())
}

/// Schema step 10: seals every secret an older Kiln stored in clear. The releases' trigger
/// that keeps them append-only is lifted for this one rewrite (the values do not change,
/// only their encoding) and put back as it was.
pub(super) const MIGRATION: &str = r#"
    DROP TRIGGER releases_append_only;
    UPDATE apps SET config = kiln_seal('apps.config:' || id, config);
    UPDATE releases SET config = kiln_seal('releases.config:' || id, config);
    UPDATE addons SET config = kiln_seal('addons.config:' || id, config);
    UPDATE sni_endpoints SET private_key = kiln_seal('sni_endpoints.private_key:' || id, private_key);
    CREATE TRIGGER releases_append_only
    BEFORE UPDATE OF id, app_id, version, description, slug_id, config, user_id, created_at ON releases
    BEGIN
        SELECT RAISE(ABORT, 'releases are append-only');
    END;
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_label() {
        let key = MasterKey::generate().unwrap();
        let aead = key.aead();
        let s = seal(&aead, "apps.config:a1", r#"{"SECRET":"hunter2"}"#).unwrap();
        assert!(s.starts_with(PREFIX) && !s.contains("hunter2"), "{s}");
        assert_ne!(
            s,
            seal(&aead, "apps.config:a1", r#"{"SECRET":"hunter2"}"#).unwrap()
        );
        assert_eq!(
            open(&aead, "apps.config:a1", &s).unwrap(),
            r#"{"SECRET":"hunter2"}"#
        );
        // Another row, another key, an altered byte, plain text: refused.
        assert!(open(&aead, "apps.config:a2", &s).is_err());
        let other = MasterKey::generate().unwrap().aead();
        assert!(open(&other, "apps.config:a1", &s).is_err());
        let mut flipped = s.clone().into_bytes();
        let i = flipped.len() - 3;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        assert!(
            open(
                &aead,
                "apps.config:a1",
                &String::from_utf8(flipped).unwrap()
            )
            .is_err()
        );
        assert!(open(&aead, "apps.config:a1", "{}").is_err());
        assert!(open(&aead, "apps.config:a1", "kiln:v1:").is_err());
        assert!(open(&aead, "apps.config:a1", "kiln:v1:!!!").is_err());
    }

    #[test]
    fn master_keys_round_trip_through_hex() {
        let k = MasterKey::generate().unwrap();
        assert_eq!(MasterKey::from_hex(&k.to_hex()).unwrap().0, k.0);
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(65), &"é".repeat(32)] {
            assert!(MasterKey::from_hex(bad).is_err(), "{bad}");
        }
    }
}
