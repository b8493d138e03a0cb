//! Password hashing with Argon2id, at OWASP's recommended cost (19 MiB, 2 passes, 1 lane).
//! Hashing is deliberately slow, so it runs on the blocking pool, off the request threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::SecureRandom;

use crate::error::{Error, Result};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| Error::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) to store.
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0_u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::Hashing("no randomness".into()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Hashing(e.to_string()))?;
        let hash = hasher()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::Hashing(e.to_string()))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| Error::Hashing(e.to_string()))?
}

/// Whether `password` matches the stored PHC string. A malformed stored hash is an error, not a
/// mismatch, so it shows up in the logs.
pub async fn verify(password: String, stored: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| Error::Hashing(e.to_string()))?;
        Ok(hasher()?.verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| Error::Hashing(e.to_string()))?
}

/// A valid hash of a random password: verified against when the account does not exist, so a login
/// for an unknown email takes as long as one with a wrong password and does not reveal which it was.
pub async fn decoy() -> Result<String> {
    use std::sync::OnceLock;
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return Ok(hash.clone());
    }
    let hash = self::hash(crate::model::new_id()?).await?;
    Ok(DECOY.get_or_init(|| hash).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let stored = hash("correct horse".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify("correct horse".into(), stored.clone())
                .await
                .expect("verify")
        );
        assert!(!verify("wrong horse".into(), stored).await.expect("verify"));
        assert!(verify("x".into(), "not a hash".into()).await.is_err());
    }
}
