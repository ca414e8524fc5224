//! Channel keys at rest: sealed with the operator's key (`--secret-key` /
//! `ROUTER_SECRET_KEY`, 32 bytes) by XChaCha20-Poly1305 before they are written, opened when
//! they are read. A sealed value is `enc:v1:{key id}:{base64(nonce ‖ ciphertext ‖ tag)}`: the
//! key id (8 hex digits of a hash of the key, never the key) says which key sealed it, so a
//! rotation can open what an older key sealed (`--old-secret-key`) while everything is sealed
//! anew under the current one. A value without the prefix is a key stored in clear (before a
//! secret key was configured): it is read as is and sealed at the next start that has a key.
//!
//! The control plane holds one [`Sealer`] for the process ([`install`], at start); the
//! channel's `api_key` column type ([`crate::store::channels::ChannelKey`]) seals and opens
//! through it, so no path that reads or writes channels can forget to.
use std::sync::OnceLock;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng},
};
use sha2::{Digest, Sha256};

/// What starts a sealed value.
pub const SEALED_PREFIX: &str = "enc:v1:";
/// Bytes in a secret key.
const KEY_BYTES: usize = 32;
/// Bytes in an XChaCha20 nonce.
const NONCE_BYTES: usize = 24;

/// Why a stored value cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Sealed, but the control plane has no secret key.
    #[error(
        "a channel key in the database is encrypted (key {0}), but no secret key is configured \
         (set --secret-key, ROUTER_SECRET_KEY or --secret-key-file)"
    )]
    NoKey(String),
    /// Sealed with a key that is neither the current nor an old one.
    #[error(
        "a channel key in the database is encrypted with key {0}, which is neither --secret-key \
         nor an --old-secret-key"
    )]
    UnknownKey(String),
    /// Not a sealed value this key opens (damaged, or altered).
    #[error("a channel key in the database cannot be decrypted with key {0}: it was altered or damaged")]
    Damaged(String),
}

/// One operator key.
pub struct SecretKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A key written as 64 hex digits or as base64 of 32 bytes (`openssl rand -hex 32`);
    /// `flag` names where it came from in the error.
    pub fn parse(text: &str, flag: &str) -> anyhow::Result<SecretKey> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_BYTES)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| anyhow::anyhow!("{flag}: not hex"))?
        } else {
            BASE64.decode(text).map_err(|_| {
                anyhow::anyhow!(
                    "{flag}: a secret key is 64 hex digits or base64 of 32 bytes (openssl rand -hex 32)"
                )
            })?
        };
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!("{flag}: a secret key is 32 bytes, this one is {}", bytes.len())
        })?;
        Ok(SecretKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; KEY_BYTES]) -> SecretKey {
        let digest =
            Sha256::new().chain_update(b"code-router secret key id\0").chain_update(bytes).finalize();
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        SecretKey { id, cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    /// Its id, as sealed values name it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key, and older ones that may still open what they sealed.
#[derive(Debug)]
pub struct Sealer {
    current: SecretKey,
    old: Vec<SecretKey>,
}

impl Sealer {
    /// Seals with `current`; opens with it or any of `old`.
    pub fn new(current: SecretKey, old: Vec<SecretKey>) -> Sealer {
        Sealer { current, old }
    }

    /// The current key's id.
    pub fn key_id(&self) -> &str {
        self.current.id()
    }

    /// `plain` sealed under the current key (a fresh random nonce each time).
    pub fn seal(&self, plain: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("XChaCha20-Poly1305 fails only beyond 256 GiB of plaintext");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", self.current.id, BASE64.encode(bytes))
    }

    /// The key `stored` holds (as is when it is not sealed).
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some((id, payload)) = sealed_parts(stored) else { return Ok(stored.to_owned()) };
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|key| key.id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let damaged = || SecretError::Damaged(id.to_owned());
        let bytes = BASE64.decode(payload).map_err(|_| damaged())?;
        if bytes.len() < NONCE_BYTES {
            return Err(damaged());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = key.cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| damaged())?;
        String::from_utf8(plain).map_err(|_| damaged())
    }

    /// Whether `stored` should be sealed anew: in clear, or sealed under an older key.
    pub fn needs_sealing(&self, stored: &str) -> bool {
        sealed_parts(stored).is_none_or(|(id, _)| id != self.current.id)
    }
}

/// `(key id, payload)` of a sealed value; `None` for one in clear.
fn sealed_parts(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(SEALED_PREFIX)?.split_once(':')
}

/// The key id of a sealed value; `None` for one in clear.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    sealed_parts(stored).map(|(id, _)| id)
}

static SEALER: OnceLock<Option<Sealer>> = OnceLock::new();

/// Sets the process's sealer (`None`: keys are stored in clear), once, at start; a later call
/// changes nothing and returns false.
pub fn install(sealer: Option<Sealer>) -> bool {
    SEALER.set(sealer).is_ok()
}

/// The process's sealer, if one is installed.
pub fn sealer() -> Option<&'static Sealer> {
    SEALER.get().and_then(Option::as_ref)
}

/// `plain` as it is to be stored: sealed when a secret key is configured.
pub fn seal(plain: &str) -> String {
    match sealer() {
        Some(sealer) => sealer.seal(plain),
        None => plain.to_owned(),
    }
}

/// A stored value opened: as is when in clear; an error when sealed and no key opens it.
pub fn open(stored: &str) -> Result<String, SecretError> {
    match (sealer(), sealed_key_id(stored)) {
        (Some(sealer), _) => sealer.open(stored),
        (None, None) => Ok(stored.to_owned()),
        (None, Some(id)) => Err(SecretError::NoKey(id.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; KEY_BYTES])
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_nothing_else() {
        let hex = SecretKey::parse(HEX, "--secret-key").unwrap();
        let bytes: Vec<u8> = (0..32).collect();
        let base64 = SecretKey::parse(&BASE64.encode(&bytes), "--secret-key").unwrap();
        assert_eq!(hex.id(), base64.id(), "the same key either way");
        assert_eq!(hex.id().len(), 8);
        assert!(!HEX.contains(hex.id()), "the id is not a piece of the key");
        for bad in ["", "short", &HEX[..62], &format!("{HEX}00"), &BASE64.encode([1u8; 16])] {
            let error = SecretKey::parse(bad, "--secret-key").unwrap_err().to_string();
            assert!(error.starts_with("--secret-key: "), "{bad:?}: {error}");
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_never_repeat() {
        let sealer = Sealer::new(key(1), Vec::new());
        let first = sealer.seal("sk-upstream-secret");
        let second = sealer.seal("sk-upstream-secret");
        assert!(first.starts_with(&format!("{SEALED_PREFIX}{}:", sealer.key_id())), "{first}");
        assert!(!first.contains("sk-upstream"), "{first}");
        assert_ne!(first, second, "a fresh nonce each time");
        assert_eq!(sealer.open(&first).unwrap(), "sk-upstream-secret");
        assert_eq!(sealer.open("in clear").unwrap(), "in clear");
        assert!(!sealer.needs_sealing(&first));
        assert!(sealer.needs_sealing("in clear"));

        let other = Sealer::new(key(2), Vec::new());
        assert_eq!(other.open(&first), Err(SecretError::UnknownKey(sealer.key_id().to_owned())));
        // One bit changed anywhere in the payload: refused, never a wrong key.
        let mut altered = first.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(sealer.open(&altered), Err(SecretError::Damaged(sealer.key_id().to_owned())));
        let truncated = format!("{SEALED_PREFIX}{}:AAAA", sealer.key_id());
        assert!(matches!(sealer.open(&truncated), Err(SecretError::Damaged(_))));
    }

    #[test]
    fn a_rotation_opens_the_old_and_seals_under_the_new() {
        let old = Sealer::new(key(1), Vec::new());
        let sealed = old.seal("sk-old");
        let rotated = Sealer::new(key(2), vec![key(1)]);
        assert_eq!(rotated.open(&sealed).unwrap(), "sk-old");
        assert!(rotated.needs_sealing(&sealed), "sealed under the old key");
        let resealed = rotated.seal(&rotated.open(&sealed).unwrap());
        assert_eq!(sealed_key_id(&resealed), Some(rotated.key_id()));
        assert!(!rotated.needs_sealing(&resealed));
        assert_eq!(Sealer::new(key(2), Vec::new()).open(&resealed).unwrap(), "sk-old");
    }
}
