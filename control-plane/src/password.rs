//! Console passwords: argon2id hashes in PHC string form (salt and parameters included), made
//! and checked on blocking threads (each takes tens of milliseconds of CPU by design). A
//! password is never logged and never stored in any other form.
use std::sync::OnceLock;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};

/// Shortest password accepted, in bytes.
pub const MIN_LEN: usize = 8;
/// Longest password accepted, in bytes (hashing cost does not depend on it, but memory does).
pub const MAX_LEN: usize = 1024;

/// Refuses a password too short or too long to set.
pub fn check_strength(password: &str) -> Result<(), String> {
    if password.len() < MIN_LEN {
        return Err(format!("the password must be at least {MIN_LEN} bytes long"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("the password must be at most {MAX_LEN} bytes long"));
    }
    Ok(())
}

fn hash_now(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| format!("cannot make a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// The argon2id hash of `password`, in PHC form.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| format!("the hashing task failed: {e}"))?
}

/// A hash no password matches in practice, checked when there is no account (or no password)
/// so that a wrong email costs as long as a wrong password.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        hash_now(&format!("{random:?}")).unwrap_or_default()
    })
}

fn verify_now(password: &str, hash: Option<&str>) -> bool {
    let (hash, real) = match hash {
        Some(hash) => (hash, true),
        None => (decoy(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
}

/// Whether `password` matches `hash` (`None`: checks a decoy and answers false).
pub async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_now(&password, hash.as_deref())).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let first = hash_now("correct horse").expect("hashes");
        let second = hash_now("correct horse").expect("hashes");
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "salted");
        assert!(!first.contains("correct horse"));
        assert!(verify_now("correct horse", Some(&first)));
        assert!(!verify_now("correct horsf", Some(&first)));
        assert!(!verify_now("correct horse", None));
        assert!(!verify_now("correct horse", Some("not a hash")));
    }

    #[test]
    fn strength_is_checked() {
        assert!(check_strength("1234567").is_err());
        assert!(check_strength("12345678").is_ok());
        assert!(check_strength(&"x".repeat(MAX_LEN + 1)).is_err());
    }
}
