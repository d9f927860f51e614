//! The runner's Ed25519 key: PKCS#8 private-key PEM in (what `openssl genpkey -algorithm
//! ed25519` writes), SPKI public-key PEM out (what `runner_configuration.key` holds), and
//! the `kid` the Orchestrator derives from it. Parses only the Ed25519 shapes of those
//! structures; any other key type is refused with a message naming it. The key material
//! is never formatted: `Debug` on [`RunnerKey`] prints the `kid` only.

use std::fmt;
use std::sync::Arc;

use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::base64;
use crate::error::{Error, Result};

/// DER of the Ed25519 AlgorithmIdentifier: SEQUENCE { OID 1.3.101.112 }.
const ED25519_ALGORITHM: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// A loaded signing key and the identifiers derived from it.
#[derive(Clone)]
pub struct RunnerKey {
    seed: [u8; 32],
    pair: Arc<Ed25519KeyPair>,
    kid: String,
}

impl fmt::Debug for RunnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl RunnerKey {
    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). `source` names where the text
    /// came from (`PRIVATE_KEY`, a file path) for the error message; the text is never echoed.
    pub fn from_pkcs8_pem(pem: &str, source: &str) -> Result<RunnerKey> {
        let der = pem_body(pem, "PRIVATE KEY").map_err(|why| Error::decode(format!("private key from {source}"), why))?;
        let seed = pkcs8_seed(&der).map_err(|why| Error::decode(format!("private key from {source}"), why))?;
        Ok(RunnerKey::from_seed(seed))
    }

    /// Builds the key from 32 seed bytes (the private scalar's source, as PKCS#8 stores it).
    pub fn from_seed(seed: [u8; 32]) -> RunnerKey {
        // ring refuses a seed only when it is not 32 bytes, which the type rules out.
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("a 32-byte Ed25519 seed");
        let kid = kid_of(pair.public_key().as_ref());
        RunnerKey { seed, pair: Arc::new(pair), kid }
    }

    /// A fresh key from the kernel's random source.
    pub fn generate() -> Result<RunnerKey> {
        let mut seed = [0u8; 32];
        crate::random::fill(&mut seed).map_err(|e| Error::io("reading /dev/urandom for a new key", e))?;
        Ok(RunnerKey::from_seed(seed))
    }

    /// Lowercase hex SHA-256 of the 32 raw public-key bytes (PROTOCOL §2).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Raw public-key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let sig = self.pair.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        out
    }

    /// The private key as PKCS#8 v1 PEM, the same bytes `openssl genpkey` writes.
    pub fn private_pem(&self) -> String {
        let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00];
        der.extend_from_slice(&ED25519_ALGORITHM);
        der.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
        der.extend_from_slice(&self.seed);
        to_pem(&der, "PRIVATE KEY")
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_pem(&self) -> String {
        public_pem_of(&self.public_bytes())
    }
}

/// SPKI PEM for raw Ed25519 public-key bytes.
pub fn public_pem_of(public: &[u8; 32]) -> String {
    let mut der = vec![0x30, 0x2a];
    der.extend_from_slice(&ED25519_ALGORITHM);
    der.extend_from_slice(&[0x03, 0x21, 0x00]);
    der.extend_from_slice(public);
    to_pem(&der, "PUBLIC KEY")
}

/// The `kid` of raw public-key bytes.
pub fn kid_of(public: &[u8]) -> String {
    crate::hex::sha256(public)
}

/// The public PEM folded onto one line, the form `runner_configuration.key` takes in
/// JSON and Terraform strings (newlines as literal `\n`).
pub fn one_line(pem: &str) -> String {
    pem.trim_end().replace('\n', "\\n")
}

fn to_pem(der: &[u8], label: &str) -> String {
    let body = base64::encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Extracts the DER between the BEGIN/END lines of `label`. Accepts literal `\n`
/// sequences (a PEM pasted into one env-var line) as newlines.
fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let text = pem.replace("\\n", "\n");
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        return Err(match text.find("-----BEGIN ") {
            Some(at) => {
                let found: String = text[at..].chars().take(40).take_while(|c| *c != '\n').collect();
                format!("expected a '{begin}' block, found '{found}' (convert it with 'openssl pkey' to PKCS#8)")
            }
            None => format!("no '{begin}' line: the value is not a PEM"),
        });
    };
    let rest = &text[start + begin.len()..];
    let Some(stop) = rest.find(&end) else {
        return Err(format!("'{begin}' has no matching '{end}' line (truncated?)"));
    };
    base64::decode(&rest[..stop]).ok_or_else(|| "the PEM body is not valid base64".to_string())
}

fn check_algorithm(algorithm: &[u8]) -> Result<(), String> {
    if algorithm == &ED25519_ALGORITHM[2..] {
        return Ok(());
    }
    let known = [
        (&[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01][..], "RSA"),
        (&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01][..], "EC"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x71][..], "Ed448"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6e][..], "X25519"),
    ];
    let name = known.iter().find(|(oid, _)| algorithm.starts_with(oid)).map_or("a non-Ed25519", |(_, n)| *n);
    Err(format!("this is {name} key; the runner needs Ed25519 (openssl genpkey -algorithm ed25519)"))
}

/// The 32-byte seed from a PKCS#8 v1 or v2 (OneAsymmetricKey) Ed25519 structure.
fn pkcs8_seed(der: &[u8]) -> Result<[u8; 32], String> {
    let mut outer = Der::new(der);
    let mut info = Der::new(outer.expect(0x30, "PrivateKeyInfo")?);
    let version = info.expect(0x02, "version")?;
    if version != [0] && version != [1] {
        return Err("unsupported PKCS#8 version".to_string());
    }
    check_algorithm(info.expect(0x30, "AlgorithmIdentifier")?)?;
    let octets = info.expect(0x04, "privateKey")?;
    match octets {
        [0x04, 0x20, seed @ ..] if seed.len() == 32 => Ok(seed.try_into().expect("length checked")),
        _ => Err("the Ed25519 private key is not a 32-byte OCTET STRING".to_string()),
    }
}

/// Just enough DER to walk the fixed shapes above.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let bad = || format!("malformed DER at {what}");
        let (&found, after) = self.rest.split_first().ok_or_else(bad)?;
        if found != tag {
            return Err(format!("malformed DER: expected {what} (tag {tag:#04x}), found tag {found:#04x}"));
        }
        let (&first, mut after) = after.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 2 || after.len() < count {
                return Err(bad());
            }
            let mut len = 0usize;
            for &b in &after[..count] {
                len = (len << 8) | usize::from(b);
            }
            after = &after[count..];
            len
        };
        if after.len() < len {
            return Err(bad());
        }
        let (value, rest) = after.split_at(len);
        self.rest = rest;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `openssl genpkey -algorithm ed25519` (a test key, used nowhere else).
    const OPENSSL_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBhHYBkJutwtjhDHWf+i4YW2jFfOQ1oPEycYMLgal7hy\n-----END PRIVATE KEY-----\n";

    #[test]
    fn openssl_pem_round_trips_byte_for_byte() {
        let key = RunnerKey::from_pkcs8_pem(OPENSSL_PEM, "test").unwrap();
        assert_eq!(key.private_pem(), OPENSSL_PEM);
        assert_eq!(key.kid().len(), 64);
        let spki = [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], &key.public_bytes()].concat();
        assert_eq!(key.public_pem(), format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", base64::encode(&spki)));
    }

    #[test]
    fn pem_with_literal_backslash_n_is_accepted() {
        let folded = one_line(OPENSSL_PEM);
        assert!(!folded.contains('\n'));
        let key = RunnerKey::from_pkcs8_pem(&folded, "test").unwrap();
        assert_eq!(key.private_pem(), OPENSSL_PEM);
    }

    #[test]
    fn rsa_key_is_refused_by_name() {
        // PKCS#8 header of an RSA key, truncated after the algorithm identifier.
        let der = [0x30, 0x14, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x04, 0x00];
        let pem = to_pem(&der, "PRIVATE KEY");
        let err = RunnerKey::from_pkcs8_pem(&pem, "PRIVATE_KEY").unwrap_err().to_string();
        assert!(err.contains("RSA key"), "{err}");
        assert!(err.contains("PRIVATE_KEY"), "{err}");
    }

    #[test]
    fn errors_never_echo_the_key_text() {
        let broken = OPENSSL_PEM.replace("-----END PRIVATE KEY-----", "");
        let err = RunnerKey::from_pkcs8_pem(&broken, "PRIVATE_KEY").unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(!err.contains("MC4CAQAw"), "{err}");
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let err = RunnerKey::from_pkcs8_pem(openssh, "PRIVATE_KEY").unwrap_err().to_string();
        assert!(err.contains("OPENSSH"), "{err}");
        assert!(!err.contains("b3BlbnNz"), "{err}");
    }

    #[test]
    fn kid_is_sha256_of_raw_public_bytes() {
        // SHA-256 of 32 zero bytes.
        assert_eq!(kid_of(&[0u8; 32]), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
    }
}
