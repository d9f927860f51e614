//! The self-signed EdDSA JWT the Orchestrator accepts (PROTOCOL §2): header
//! `{"alg":"EdDSA","typ":"JWT"}`, claims `org_id`, `runner_id`, `kid`, and, only when a
//! lifetime is configured, `iat`/`exp`. Signing only: the Orchestrator verifies (its
//! stand-in in the tests does it with its own code, PyJWT in tests/interop.py).

use miniserde::json::{self, Number, Object, Value};

use crate::base64;
use crate::orchestrator::key::RunnerKey;

const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

/// The claims we sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Organisation id.
    pub org_id: String,
    /// Runner id.
    pub runner_id: String,
    /// Key id: hex SHA-256 of the raw public key.
    pub kid: String,
    /// Issued-at, seconds since the epoch; absent upstream.
    pub iat: Option<u64>,
    /// Expiry, seconds since the epoch; absent upstream.
    pub exp: Option<u64>,
}

/// Signs `claims` with `key` and returns the compact serialisation.
pub fn sign(key: &RunnerKey, claims: &Claims) -> String {
    let mut body = Object::new();
    body.insert("org_id".into(), Value::String(claims.org_id.clone()));
    body.insert("runner_id".into(), Value::String(claims.runner_id.clone()));
    body.insert("kid".into(), Value::String(claims.kid.clone()));
    if let Some(iat) = claims.iat {
        body.insert("iat".into(), Value::Number(Number::U64(iat)));
    }
    if let Some(exp) = claims.exp {
        body.insert("exp".into(), Value::Number(Number::U64(exp)));
    }
    let signing_input = format!("{}.{}", base64::encode_url(HEADER.as_bytes()), base64::encode_url(json::to_string(&body).as_bytes()));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", base64::encode_url(&signature))
}
