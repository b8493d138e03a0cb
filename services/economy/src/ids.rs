//! Ids derived from a transaction (an instance it mints, a listing it opens): a retried request
//! derives the same ones, and another request can never derive them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 128 bits of SHA-256 over `parts`, each preceded by its length (so no two lists of parts hash
/// alike), in base64url: 22 characters.
pub fn derived(parts: &[&str]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(&context.finish().as_ref()[..16])
}

/// Whether `id` may be a derived id.
pub fn valid(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_22_url_safe_characters_that_depend_on_every_part() {
        let id = derived(&["service:k", "h", "0"]);
        assert!(valid(&id), "{id}");
        assert_eq!(id, derived(&["service:k", "h", "0"]));
        assert_ne!(id, derived(&["service:k", "h", "1"]));
        assert_ne!(
            id,
            derived(&["service:k\nh", "0"]),
            "parts are not concatenated loosely"
        );
        assert!(!valid("not an id"));
    }
}
