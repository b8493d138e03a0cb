//! A fixed signing key and the verifier that trusts it.
//!
//! Random bytes almost never carry a valid Ed25519 signature, so fuzzing `verify` with raw
//! input only exercises the checks before the signature. The token target therefore also signs
//! its input as the claims of a token, the way the allocation service would, which reaches the
//! claims decoding and the expiry check behind the signature.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use flotilla_api::connection_token::TokenVerifier;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The clock the target verifies at.
pub const NOW: u64 = 1_000_000;
/// What a token's signature covers before its claims (module docs of `connection_token`).
const CONTEXT: &[u8] = b"flotilla-connection-token.v1.";
const SEED: [u8; 32] = *b"flotilla fuzzing key, not secret";

static KEY: LazyLock<Ed25519KeyPair> =
    LazyLock::new(|| Ed25519KeyPair::from_seed_unchecked(&SEED).expect("a 32-byte seed is a key"));
static VERIFIER: LazyLock<TokenVerifier> = LazyLock::new(|| {
    TokenVerifier::from_base64_list(&STANDARD.encode(KEY.public_key().as_ref()))
        .expect("the public key of the fixed key is a valid key")
});

/// A verifier whose only trusted key is the fixed one.
pub fn verifier() -> &'static TokenVerifier {
    &VERIFIER
}

/// A `v1` token whose claims part is `claims` (any bytes, normally JSON), signed with the
/// fixed key exactly as `TokenSigner::sign` signs.
pub fn sign(claims: &[u8]) -> String {
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let signature = KEY.sign(&[CONTEXT, payload.as_bytes()].concat());
    format!("v1.{payload}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// The claims part of a `v1` token, decoded; `None` when it has no such part.
pub fn claims_bytes(token: &str) -> Option<Vec<u8>> {
    let (payload, _signature) = token.strip_prefix("v1.")?.split_once('.')?;
    URL_SAFE_NO_PAD.decode(payload).ok()
}
