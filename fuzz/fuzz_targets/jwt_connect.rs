//! Connection-token verification with arbitrary strings: the JWT header and
//! claims are parsed before the signature is known good, so garbage must
//! fail with a `TokenError`, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard::config::AuthConfig;
use switchboard::hub::auth::TokenVerifier;

fn verifier() -> &'static TokenVerifier {
    static VERIFIER: OnceLock<TokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let cfg = AuthConfig { token_hmac_secret: "fuzz-secret".into(), ..AuthConfig::default() };
        TokenVerifier::from_config(&cfg).expect("hmac verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = verifier().verify_connect(token);
});
