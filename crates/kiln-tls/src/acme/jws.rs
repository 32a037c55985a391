//! The ACME account key and the JSON Web Signatures made with it (RFC 8555 §6.2, RFC 7515):
//! ES256 (ECDSA P-256 with SHA-256), signatures as the fixed 64-byte `r || s`, the public
//! key as a JWK until the account has a URL (`kid`) and the JWK thumbprint (RFC 7638) that
//! makes up key authorizations.

use super::AcmeError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::path::Path;

/// Base64url without padding, as every JWS and ACME field uses.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The account's key pair.
pub(crate) struct AccountKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    jwk: Value,
    thumbprint: String,
}

impl AccountKey {
    /// Reads the key kept at `path` (PKCS#8 DER), or makes one and keeps it there (0600),
    /// so that every start of the server speaks for the same ACME account.
    pub(crate) fn load_or_create(path: &Path) -> Result<AccountKey, AcmeError> {
        let io = |context: String| move |source| AcmeError::Io { context, source };
        match crate::sealed::read(path) {
            Ok(bytes) => AccountKey::from_pkcs8(&bytes).map_err(|e| {
                AcmeError::Config(format!(
                    "the ACME account key {} is unusable ({e}); move it away to make a new account",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| {
                        AcmeError::Config("generating the ACME account key failed".into())
                    })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                }
                write_private(path, pkcs8.as_ref()).map_err(io(format!(
                    "writing the ACME account key {}",
                    path.display()
                )))?;
                AccountKey::from_pkcs8(pkcs8.as_ref())
            }
            Err(e) => Err(AcmeError::Io {
                context: format!("reading the ACME account key {}", path.display()),
                source: e,
            }),
        }
    }

    pub(crate) fn from_pkcs8(pkcs8: &[u8]) -> Result<AccountKey, AcmeError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| AcmeError::Config(format!("not a P-256 PKCS#8 key: {e}")))?;
        // An uncompressed point: 0x04, then x and y of 32 bytes each.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(AcmeError::Config("unexpected public key encoding".into()));
        }
        let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
        // RFC 7638: the required members only, in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint =
            b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref());
        Ok(AccountKey {
            pair,
            rng,
            jwk: json!({ "crv": "P-256", "kty": "EC", "x": x, "y": y }),
            thumbprint,
        })
    }

    /// `token.thumbprint`: what the CA expects at `/.well-known/acme-challenge/<token>`.
    pub(crate) fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// A flattened JWS for a POST to `url`. `kid` is the account URL once there is one (the
    /// JWK goes in its place for newAccount); `payload` `None` is a POST-as-GET (empty).
    pub(crate) fn sign(
        &self,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: Option<&Value>,
    ) -> Result<Vec<u8>, AcmeError> {
        let mut protected = json!({ "alg": "ES256", "nonce": nonce, "url": url });
        match kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected = b64(protected.to_string().as_bytes());
        let payload = payload
            .map(|p| b64(p.to_string().as_bytes()))
            .unwrap_or_default();
        let signature = self
            .pair
            .sign(&self.rng, format!("{protected}.{payload}").as_bytes())
            .map_err(|_| AcmeError::Config("signing an ACME request failed".into()))?;
        Ok(json!({ "protected": protected, "payload": payload, "signature": b64(signature.as_ref()) }).to_string().into_bytes())
    }
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// Sealed with the master key when the server gave one (see `sealed`), aside and renamed,
/// so a crash never leaves half a key that would lose the account.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::sealed::write(path, bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn signs_verifiable_jws_and_keeps_the_key() {
        let dir = kiln_testkit::TempDir::new("acme-jws");
        let path = dir.join("account.key");
        let key = AccountKey::load_or_create(&path).unwrap();
        let again = AccountKey::load_or_create(&path).unwrap();
        assert_eq!(
            key.thumbprint, again.thumbprint,
            "the same account key across starts"
        );
        assert_eq!(
            key.key_authorization("tok"),
            format!("tok.{}", key.thumbprint)
        );

        let body: Value = serde_json::from_slice(
            &key.sign("https://ca/new-acct", "n1", None, Some(&json!({"a": 1})))
                .unwrap(),
        )
        .unwrap();
        let (p, pl, sig) = (
            body["protected"].as_str().unwrap(),
            body["payload"].as_str().unwrap(),
            body["signature"].as_str().unwrap(),
        );
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        assert_eq!(
            (
                header["alg"].as_str(),
                header["nonce"].as_str(),
                header["url"].as_str()
            ),
            (Some("ES256"), Some("n1"), Some("https://ca/new-acct"))
        );
        assert_eq!(header["jwk"]["crv"], "P-256");
        assert!(header.get("kid").is_none());
        let public = key.pair.public_key().as_ref().to_vec();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(sig.len(), 64, "r || s, not DER");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{p}.{pl}").as_bytes(), &sig)
            .unwrap();

        let get: Value = serde_json::from_slice(
            &key.sign("https://ca/order/1", "n2", Some("https://ca/acct/1"), None)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(get["payload"], "", "POST-as-GET has an empty payload");
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(get["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], "https://ca/acct/1");
        assert!(header.get("jwk").is_none());

        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            AccountKey::load_or_create(&path)
                .unwrap_err()
                .to_string()
                .contains("unusable")
        );
    }

    #[test]
    fn thumbprint_matches_rfc_7638_shape() {
        let key = AccountKey::from_pkcs8(
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        assert_eq!(
            key.thumbprint.len(),
            43,
            "a base64url SHA-256 without padding"
        );
        assert!(
            key.thumbprint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
