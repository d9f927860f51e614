//! The self-signed EdDSA JWT the Orchestrator accepts (PROTOCOL §2): header
//! `{"alg":"EdDSA","typ":"JWT"}`, claims `org_id`, `runner_id`, `kid`, and, only when a
//! lifetime is configured, `iat`/`exp`. Also the verifier the Orchestrator stand-in and
//! the `check` subcommand use. Does not implement any other algorithm, and does not
//! check `nbf` (we never send it).

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

/// Verifies `token` against raw Ed25519 public-key bytes and returns its claims.
/// `now` (seconds since the epoch) is checked against `exp` when the token has one.
pub fn verify(token: &str, public: &[u8; 32], now: u64) -> Result<Claims, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("a JWT has exactly three dot-separated parts".into());
    };
    let header_json = decode_segment(header, "header")?;
    let header_value: Value = json::from_str(&header_json).map_err(|_| "header is not JSON".to_string())?;
    let alg = match &header_value {
        Value::Object(o) => o.get("alg"),
        _ => None,
    };
    if !matches!(alg, Some(Value::String(a)) if a == "EdDSA") {
        return Err("header alg is not EdDSA".into());
    }
    let signature = base64::decode(signature).ok_or("signature is not base64url")?;
    if signature.len() != 64 {
        return Err("signature is not 64 bytes".into());
    }
    let signing_input = &token[..header.len() + 1 + body.len()];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "signature does not verify with the registered public key".to_string())?;
    let body_json = decode_segment(body, "claims")?;
    let Ok(Value::Object(claims)) = json::from_str::<Value>(&body_json) else {
        return Err("claims are not a JSON object".into());
    };
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("claim {name} is missing or not a string")),
    };
    let number = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(Number::U64(n))) => Ok(Some(*n)),
        Some(_) => Err(format!("claim {name} is not a non-negative integer")),
    };
    let parsed = Claims { org_id: text("org_id")?, runner_id: text("runner_id")?, kid: text("kid")?, iat: number("iat")?, exp: number("exp")? };
    if let Some(exp) = parsed.exp {
        if now >= exp {
            return Err(format!("token expired at {exp} (now {now})"));
        }
    }
    Ok(parsed)
}

fn decode_segment(segment: &str, what: &str) -> Result<String, String> {
    let bytes = base64::decode(segment).ok_or_else(|| format!("{what} is not base64url"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<u64>) -> Claims {
        Claims { org_id: "org-1".into(), runner_id: "runner-1".into(), kid: "k".into(), iat: exp.map(|e| e - 60), exp }
    }

    #[test]
    fn signed_token_verifies_and_keeps_claims() {
        let key = RunnerKey::from_seed([7; 32]);
        let token = sign(&key, &claims(None));
        assert!(token.starts_with("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9."), "{token}");
        assert_eq!(verify(&token, &key.public_bytes(), 0).unwrap(), claims(None));
    }

    #[test]
    fn other_key_and_tampering_are_rejected() {
        let key = RunnerKey::from_seed([7; 32]);
        let other = RunnerKey::from_seed([8; 32]);
        let token = sign(&key, &claims(None));
        assert!(verify(&token, &other.public_bytes(), 0).unwrap_err().contains("does not verify"));
        let forged = sign(&key, &Claims { runner_id: "runner-2".into(), ..claims(None) });
        let spliced = format!("{}.{}", &forged[..forged.rfind('.').unwrap()], token.rsplit('.').next().unwrap());
        assert!(verify(&spliced, &key.public_bytes(), 0).is_err());
    }

    #[test]
    fn expiry_is_enforced_when_present() {
        let key = RunnerKey::from_seed([7; 32]);
        let token = sign(&key, &claims(Some(1000)));
        assert!(verify(&token, &key.public_bytes(), 999).is_ok());
        assert!(verify(&token, &key.public_bytes(), 1000).unwrap_err().contains("expired"));
    }
}
