//! Connection tokens: what a player presents to a game server to be let in.
//!
//! The allocation service signs one per player with an Ed25519 key; game servers hold only the
//! public key, so a compromised game server cannot mint tokens for others (a shared HMAC
//! secret would allow that). A token is bound to one server, one session and one player, and
//! expires.
//!
//! Format: `v1.<claims>.<signature>`, both parts base64url without padding; the claims are
//! JSON; the signature covers `flotilla-connection-token.v1.<claims>` so a signature made for
//! anything else can never verify as a token.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const PREFIX: &str = "v1.";
const CONTEXT: &[u8] = b"flotilla-connection-token.v1.";
/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionClaims {
    /// The GameServer's namespace and name.
    #[serde(rename = "ns")]
    pub namespace: String,
    #[serde(rename = "srv")]
    pub server: String,
    #[serde(rename = "ses")]
    pub session: String,
    #[serde(rename = "ply")]
    pub player: String,
    /// Unix seconds.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    #[serde(rename = "exp")]
    pub expires_at: u64,
    /// Unique per token, so a server can refuse a token that was already used up.
    #[serde(rename = "jti")]
    pub id: String,
}

/// Signs tokens; lives in the allocation service.
pub struct TokenSigner {
    key: Ed25519KeyPair,
    rng: SystemRandom,
}

impl TokenSigner {
    /// A new random key as PKCS#8 DER, to store in a Secret.
    pub fn generate_pkcs8() -> Result<Vec<u8>> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::InvalidKey("could not generate a key".into()))?;
        Ok(doc.as_ref().to_vec())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| Error::InvalidKey(e.to_string()))?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The public key as standard base64, the form game servers are configured with.
    pub fn public_key(&self) -> String {
        STANDARD.encode(self.key.public_key().as_ref())
    }

    /// Signs claims; `id` is filled with a fresh random value when empty.
    pub fn sign(&self, mut claims: ConnectionClaims) -> Result<String> {
        if claims.id.is_empty() {
            let mut id = [0u8; 16];
            self.rng
                .fill(&mut id)
                .map_err(|_| Error::InvalidKey("no randomness".into()))?;
            claims.id = URL_SAFE_NO_PAD.encode(id);
        }
        let json = serde_json::to_vec(&claims).map_err(|e| Error::InvalidKey(e.to_string()))?;
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature = self.key.sign(&signed_bytes(&payload));
        Ok(format!(
            "{PREFIX}{payload}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// Verifies tokens against one or more trusted public keys (several during key rotation).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: Vec<Vec<u8>>,
}

impl TokenVerifier {
    /// Keys as standard base64, separated by commas.
    pub fn from_base64_list(list: &str) -> Result<Self> {
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| {
                let key = STANDARD
                    .decode(k)
                    .map_err(|_| Error::InvalidKey(format!("{k:?} is not base64")))?;
                if key.len() != 32 {
                    return Err(Error::InvalidKey(format!(
                        "an Ed25519 public key has 32 bytes, not {}",
                        key.len()
                    )));
                }
                Ok(key)
            })
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(Error::InvalidKey("no public keys given".into()));
        }
        Ok(Self { keys })
    }

    /// Checks format, signature and expiry. Binding to a server and session is the game
    /// server's check, since only it knows its current session.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<ConnectionClaims> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::MalformedToken("too long"));
        }
        let rest = token
            .strip_prefix(PREFIX)
            .ok_or(Error::MalformedToken("unknown version"))?;
        let (payload, signature) = rest
            .split_once('.')
            .ok_or(Error::MalformedToken("no signature"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Error::MalformedToken("signature is not base64url"))?;
        let message = signed_bytes(payload);
        let trusted = self.keys.iter().any(|key| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(&message, &signature)
                .is_ok()
        });
        if !trusted {
            return Err(Error::BadSignature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Error::MalformedToken("claims are not base64url"))?;
        let claims: ConnectionClaims = serde_json::from_slice(&json)
            .map_err(|_| Error::MalformedToken("claims are not the expected JSON"))?;
        if claims.expires_at <= now_unix {
            return Err(Error::Expired {
                expired_at: claims.expires_at,
                now: now_unix,
            });
        }
        Ok(claims)
    }
}

fn signed_bytes(payload: &str) -> Vec<u8> {
    [CONTEXT, payload.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> ConnectionClaims {
        ConnectionClaims {
            namespace: "games".into(),
            server: "arena-x7".into(),
            session: "match-1".into(),
            player: "alice".into(),
            issued_at: 100,
            expires_at: 700,
            id: String::new(),
        }
    }

    fn signer() -> TokenSigner {
        TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8().expect("key")).expect("signer")
    }

    #[test]
    fn a_signed_token_verifies_with_the_public_key_and_gets_a_unique_id() {
        let signer = signer();
        let verifier = TokenVerifier::from_base64_list(&signer.public_key()).expect("verifier");
        let a = signer.sign(claims()).expect("sign");
        let b = signer.sign(claims()).expect("sign");
        let (ca, cb) = (
            verifier.verify(&a, 200).expect("valid"),
            verifier.verify(&b, 200).expect("valid"),
        );
        assert_eq!(ca.player, "alice");
        assert_ne!(ca.id, cb.id);
    }

    #[test]
    fn forged_tampered_expired_and_foreign_tokens_are_refused() {
        let signer = signer();
        let verifier = TokenVerifier::from_base64_list(&signer.public_key()).expect("verifier");
        let token = signer.sign(claims()).expect("sign");
        assert_eq!(
            verifier.verify(&token, 700),
            Err(Error::Expired {
                expired_at: 700,
                now: 700
            })
        );

        // Claims edited to another player, old signature kept.
        let (_, sig) = token.rsplit_once('.').expect("has signature");
        let mut forged = claims();
        forged.player = "mallory".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            verifier.verify(&format!("v1.{payload}.{sig}"), 200),
            Err(Error::BadSignature)
        );

        let other = signer_token_from_other_key();
        assert_eq!(verifier.verify(&other, 200), Err(Error::BadSignature));
        for garbage in ["", "v1.", "v2.a.b", "v1.abc", "v1.!!.??", &"v1.a".repeat(1000)] {
            assert!(verifier.verify(garbage, 200).is_err(), "{garbage:?}");
        }
    }

    fn signer_token_from_other_key() -> String {
        signer().sign(claims()).expect("sign")
    }

    #[test]
    fn either_key_verifies_during_rotation_and_bad_keys_are_named() {
        let (old, new) = (signer(), signer());
        let both = format!("{}, {}", old.public_key(), new.public_key());
        let verifier = TokenVerifier::from_base64_list(&both).expect("verifier");
        assert!(verifier.verify(&old.sign(claims()).expect("sign"), 200).is_ok());
        assert!(verifier.verify(&new.sign(claims()).expect("sign"), 200).is_ok());
        assert!(
            matches!(TokenVerifier::from_base64_list("AAAA"), Err(Error::InvalidKey(m)) if m.contains("32 bytes"))
        );
        assert!(TokenVerifier::from_base64_list(" , ").is_err());
    }
}
