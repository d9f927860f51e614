//! The private key PEM/DER parser and base64: never panic; base64 round-trips; a key
//! that parses signs a JWT whose claims hold the input, always three base64url parts.
#![no_main]
use kubernetes_agent::orchestrator::jwt::{self, Claims};
use kubernetes_agent::{base64, orchestrator::key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = key::RunnerKey::from_pkcs8_pem(text, "fuzz");
    if let Some(bytes) = base64::decode(text) {
        assert_eq!(base64::decode(&base64::encode(&bytes)).as_deref(), Some(&bytes[..]));
    }
    let signer = parsed.unwrap_or_else(|_| key::RunnerKey::from_seed([7; 32]));
    let claims = Claims { org_id: text.into(), runner_id: text.into(), kid: signer.kid().to_string(), iat: None, exp: None };
    let token = jwt::sign(&signer, &claims);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| base64::decode(p).is_some()), "{token}");
});
