//! Shared secrets (service keys, admin keys) held so that checking one leaks nothing by timing.

use thiserror::Error;

/// A secret the service refuses to start with.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A shared secret, kept as its HMAC tag under a per-process key: presented keys are checked with
/// `ring::hmac::verify`, which compares in constant time, so neither the key's length nor a matching
/// prefix shows in how long a refusal takes.
pub struct SecretKey {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl SecretKey {
    /// `what` names the secret in the refusal ("service key").
    pub fn new(secret: &str, what: &str) -> Result<Self, ConfigError> {
        if secret.len() < 16 {
            return Err(ConfigError(format!("the {what} must be at least 16 characters")));
        }
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| ConfigError("no randomness".into()))?;
        let tag = ring::hmac::sign(&key, secret.as_bytes());
        Ok(Self { key, tag })
    }

    pub fn matches(&self, presented: &str) -> bool {
        ring::hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_secret_matches_and_short_ones_are_refused() {
        let key = SecretKey::new("0123456789abcdef", "service key").expect("long enough");
        assert!(key.matches("0123456789abcdef"));
        assert!(!key.matches("0123456789abcdeF"));
        assert!(!key.matches("0123456789abcdef0"));
        assert!(!key.matches(""));
        assert!(SecretKey::new("short", "service key").is_err());
    }
}
