//! The agent's JWT (PROTOCOL §2) as the Orchestrator stand-in verifies it: signed claims
//! kept, another key or a spliced signature refused, `exp` enforced when present.

use kubernetes_agent::orchestrator::jwt::{sign, Claims};
use kubernetes_agent::orchestrator::key::RunnerKey;

use crate::support::orchestrator::verify_jwt;

fn claims(exp: Option<u64>) -> Claims {
    Claims { org_id: "org-1".into(), runner_id: "runner-1".into(), kid: "k".into(), iat: exp.map(|e| e - 60), exp }
}

#[test]
fn signed_token_verifies_and_keeps_claims() {
    let key = RunnerKey::from_seed([7; 32]);
    let token = sign(&key, &claims(None));
    assert!(token.starts_with("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9."), "{token}");
    assert_eq!(verify_jwt(&token, &key.public_bytes(), 0).unwrap(), claims(None));
}

#[test]
fn other_key_and_tampering_are_rejected() {
    let key = RunnerKey::from_seed([7; 32]);
    let other = RunnerKey::from_seed([8; 32]);
    let token = sign(&key, &claims(None));
    assert!(verify_jwt(&token, &other.public_bytes(), 0).unwrap_err().contains("does not verify"));
    let forged = sign(&key, &Claims { runner_id: "runner-2".into(), ..claims(None) });
    let spliced = format!("{}.{}", &forged[..forged.rfind('.').unwrap()], token.rsplit('.').next().unwrap());
    assert!(verify_jwt(&spliced, &key.public_bytes(), 0).is_err());
}

#[test]
fn expiry_is_enforced_when_present() {
    let key = RunnerKey::from_seed([7; 32]);
    let token = sign(&key, &claims(Some(1000)));
    assert!(verify_jwt(&token, &key.public_bytes(), 999).is_ok());
    assert!(verify_jwt(&token, &key.public_bytes(), 1000).unwrap_err().contains("expired"));
}
