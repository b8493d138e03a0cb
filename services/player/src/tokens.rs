//! Access tokens: JWTs (RFC 7519) signed with Ed25519 (`alg: EdDSA`, RFC 8037).
//!
//! Short-lived (minutes), so a stolen one is worth little; sign-out and bans also revoke the token's
//! session (`sid`) in Redis, which every request checks ([`crate::session`]). Ed25519 rather than a
//! shared HMAC secret: game servers and other services can verify player tokens with the public key
//! and cannot mint them. Verification accepts a list of keys (`kid`), so keys rotate without
//! signing everyone out.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const ISSUER: &str = "flotilla-player";
pub const AUDIENCE: &str = "flotilla";
/// Longer tokens are refused before any decoding.
const MAX_TOKEN_LEN: usize = 2048;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The player.
    pub sub: String,
    /// The session (refresh-token family) the token belongs to.
    pub sid: String,
    /// Unix seconds.
    pub iat: i64,
    pub exp: i64,
    /// When the account was created (Unix seconds): other services' rules on account age (the
    /// economy's fraud checks) read it from the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

pub struct TokenKeys {
    signing: Ed25519KeyPair,
    kid: String,
    verifier: Verifier,
}

/// Public keys only: how other services (the economy) check player tokens without being able to
/// mint them.
pub struct Verifier {
    /// `(kid, public key)`.
    keys: Vec<(String, Vec<u8>)>,
}

impl TokenKeys {
    /// `pkcs8` signs; its public key and `extra_public` (base64, for rotation) verify.
    pub fn new(pkcs8: &[u8], extra_public: &[String]) -> Result<Self> {
        // PKCS#8 v1 too (no embedded public key): Go's x509, and so Helm's genPrivateKey, writes v1.
        let signing = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| Error::Config(format!("token signing key is not an Ed25519 PKCS#8 key: {e}")))?;
        let public = signing.public_key().as_ref().to_vec();
        let kid = key_id(&public);
        let mut verifier = Verifier::from_public_keys(extra_public)?;
        verifier.keys.insert(0, (kid.clone(), public));
        Ok(Self {
            kid,
            signing,
            verifier,
        })
    }

    /// A new random signing key as PKCS#8 DER.
    pub fn generate_pkcs8() -> Result<Vec<u8>> {
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| Error::Config("could not generate a token key".into()))?;
        Ok(document.as_ref().to_vec())
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: self.kid.clone(),
        };
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(internal)?);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(internal)?);
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.signing.sign(signing_input.as_bytes()).as_ref());
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Checks signature, issuer, audience and expiry; `now` is Unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims> {
        self.verifier.verify(token, now)
    }

    /// The public keys, base64: what another service needs to verify player tokens.
    pub fn public_keys(&self) -> Vec<String> {
        self.verifier.public_keys()
    }
}

impl Verifier {
    /// Keys as base64 raw Ed25519 public keys ([`TokenKeys::public_keys`]).
    pub fn from_public_keys(keys: &[String]) -> Result<Self> {
        let mut verifier = Self { keys: Vec::new() };
        for key in keys {
            let public = STANDARD
                .decode(key.trim())
                .map_err(|_| Error::Config("a token verification key is not base64".into()))?;
            if public.len() != 32 {
                return Err(Error::Config(
                    "a token verification key is not 32 bytes of Ed25519".into(),
                ));
            }
            verifier.keys.push((key_id(&public), public));
        }
        Ok(verifier)
    }

    /// Checks signature, issuer, audience and expiry; `now` is Unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims> {
        const MALFORMED: Error = Error::Unauthenticated("access token is malformed");
        if token.len() > MAX_TOKEN_LEN {
            return Err(MALFORMED);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MALFORMED);
        };
        let decoded: Header = decode_json(header).ok_or(MALFORMED)?;
        // Only EdDSA: a token that names another algorithm ("none", HS256 with the public key as the
        // secret) is refused before its signature is looked at.
        if decoded.alg != "EdDSA" {
            return Err(Error::Unauthenticated("access token algorithm is not EdDSA"));
        }
        let (_, public) =
            self.keys
                .iter()
                .find(|(kid, _)| *kid == decoded.kid)
                .ok_or(Error::Unauthenticated(
                    "access token was signed by an unknown key",
                ))?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| MALFORMED)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        UnparsedPublicKey::new(&ED25519, public)
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| Error::Unauthenticated("access token signature is invalid"))?;
        let claims: Claims = decode_json(payload).ok_or(MALFORMED)?;
        if claims.iss != ISSUER || claims.aud != AUDIENCE {
            return Err(Error::Unauthenticated(
                "access token is for another issuer or audience",
            ));
        }
        if claims.exp <= now {
            return Err(Error::Unauthenticated("access token expired"));
        }
        Ok(claims)
    }

    pub fn public_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|(_, public)| STANDARD.encode(public))
            .collect()
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// A short, stable id for a public key: the first 8 bytes of its SHA-256, base64url.
fn key_id(public: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..8])
}

fn internal(error: serde_json::Error) -> Error {
    Error::Config(format!("token encoding: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&TokenKeys::generate_pkcs8().expect("key"), &[]).expect("keys")
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "p1".into(),
            sid: "s1".into(),
            iat: 0,
            exp,
            created: None,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let keys = keys();
        let token = keys.sign(&claims(100)).expect("sign");
        assert_eq!(keys.verify(&token, 99).expect("valid"), claims(100));
        assert!(matches!(
            keys.verify(&token, 100),
            Err(Error::Unauthenticated("access token expired"))
        ));
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_are_refused() {
        let keys = keys();
        let token = keys.sign(&claims(100)).expect("sign");
        let mut tampered = claims(100);
        tampered.sub = "someone-else".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).expect("json"));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert!(keys.verify(&forged, 0).is_err());
        let foreign = self::keys().sign(&claims(100)).expect("sign");
        assert!(keys.verify(&foreign, 0).is_err());
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"x"}"#),
            parts[1]
        );
        for garbage in ["", "a.b", "a.b.c.d", &none, &"x".repeat(5000), "....", "ey.ey.ey"] {
            assert!(keys.verify(garbage, 0).is_err(), "{garbage}");
        }
    }

    #[test]
    fn a_rotated_out_key_still_verifies_when_listed() {
        let old = keys();
        let token = old.sign(&claims(100)).expect("sign");
        let new =
            TokenKeys::new(&TokenKeys::generate_pkcs8().expect("key"), &old.public_keys()).expect("keys");
        assert!(new.verify(&token, 0).is_ok());
    }
}
