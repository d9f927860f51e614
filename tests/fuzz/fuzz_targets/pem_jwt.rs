//! PEM/DER key parsing, base64 and JWT verification: never panic, and a token that
//! verifies stops verifying when its signature is altered.
#![no_main]
use kubernetes_agent::{base64, orchestrator::jwt, orchestrator::key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = key::RunnerKey::from_pkcs8_pem(text, "fuzz");
    let _ = key::parse_public_pem(text);
    if let Some(bytes) = base64::decode(text) {
        assert_eq!(base64::decode(&base64::encode(&bytes)).as_deref(), Some(&bytes[..]));
    }
    let signer = key::RunnerKey::from_seed([7; 32]);
    if jwt::verify(text, &signer.public_bytes(), 0).is_ok() {
        let (head, sig) = text.rsplit_once('.').unwrap();
        let mut raw = base64::decode(sig).unwrap();
        raw[0] ^= 1;
        assert!(jwt::verify(&format!("{head}.{}", base64::encode_url(&raw)), &signer.public_bytes(), 0).is_err());
    }
});
