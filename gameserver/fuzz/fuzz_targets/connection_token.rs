//! Connection tokens come from players. `TokenVerifier::verify` never panics, and:
//!
//! - the input as a token: garbage is refused; a token that verifies (the seed corpus has
//!   one) is exactly the token the trusted key signs for its claims, so no second encoding of
//!   a signature or of the claims is accepted;
//! - the input as the claims of a token signed with the trusted key (reaching the claims
//!   decoding behind the signature check): such a token is never refused for its signature;
//!   it verifies exactly when the claims are the expected JSON, not expired, and the token
//!   fits `MAX_TOKEN_LEN`, and then gives the claims that were signed.
#![no_main]

use flotilla_api::Error;
use flotilla_api::connection_token::{ConnectionClaims, MAX_TOKEN_LEN};
use flotilla_fuzz::token::{self, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verifier = token::verifier();

    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(claims) = verifier.verify(text, NOW)
    {
        assert!(
            claims.expires_at > NOW,
            "accepted a token that expired at {}",
            claims.expires_at
        );
        let signed = token::claims_bytes(text).expect("an accepted token has claims");
        assert_eq!(
            token::sign(&signed),
            text,
            "accepted a token the key did not sign"
        );
    }

    let signed = token::sign(data);
    let expected: Result<ConnectionClaims, _> = serde_json::from_slice(data);
    match (verifier.verify(&signed, NOW), expected) {
        (Ok(claims), Ok(expected)) => {
            assert_eq!(claims, expected);
            assert!(claims.expires_at > NOW);
            assert!(signed.len() <= MAX_TOKEN_LEN);
        }
        (Err(Error::MalformedToken("too long")), _) => assert!(signed.len() > MAX_TOKEN_LEN),
        (Err(Error::Expired { expired_at, now }), Ok(expected)) => {
            assert_eq!((expired_at, now), (expected.expires_at, NOW));
            assert!(expired_at <= now);
        }
        (Err(Error::MalformedToken("claims are not the expected JSON")), Err(_)) => {}
        (result, expected) => panic!("signed claims {expected:?} verified as {result:?}"),
    }
});
