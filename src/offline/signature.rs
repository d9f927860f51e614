//! Cosign signatures, checked offline: the public key (`verify --key`), the signature
//! manifests cosign writes under `sha256-<hex>.sig`, and the check of one signature over
//! its simple-signing payload with ring's `ECDSA_P256_SHA256_ASN1`.
//!
//! Everything here is hostile until checked, in this order: the key file is one strict
//! `PUBLIC KEY` PEM holding a P-256 SubjectPublicKeyInfo and nothing else; a signature
//! layer's payload is at most [`MAX_PAYLOAD`] bytes and has the sha256 and size its
//! descriptor gives; the annotation is canonical standard base64 of at most
//! [`MAX_SIGNATURE`] bytes; the signature verifies over the payload's exact bytes; only
//! then is the payload parsed (bounded, strict UTF-8 JSON), and its type must be cosign's
//! and its `docker-manifest-digest` the image's. Not supported: keyless (Fulcio
//! certificates, Rekor bundles), other key types, and the payload's `docker-reference`
//! (cosign does not check it either: a mirror renames every image).

use std::path::Path;

use miniserde::json::Value;

use super::digest::Digest;
use super::document;
use super::graph::Descriptor;
use crate::error::{Error, Result};
use crate::json::{get, text};

/// The layer annotation holding the base64 signature.
pub const ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a signature layer (the payload).
pub const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The payload's `critical.type`.
pub const COSIGN_TYPE: &str = "cosign container image signature";
/// Size bound of a payload (cosign's are about 250 bytes; annotations may grow them).
pub const MAX_PAYLOAD: u64 = 64 << 10;
/// Size bound of a decoded signature (a DER ECDSA P-256 signature is at most 72 bytes).
pub const MAX_SIGNATURE: usize = 72;
/// Size bound of a key file.
const MAX_KEY_FILE: u64 = 4 << 10;
/// Signature layers one manifest may hold (cosign appends one per `cosign sign`).
const MAX_LAYERS: usize = 64;
/// DER of a SubjectPublicKeyInfo for id-ecPublicKey on prime256v1, up to the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The tag cosign (and skopeo) write an image's signatures under: `sha256-<hex>.sig`.
pub fn tag_of(image: &Digest) -> String {
    format!("sha256-{}.sig", image.hex())
}

/// An ECDSA P-256 public key, as cosign's `cosign.pub` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads `--key FILE`; errors name the file and the fix.
    pub fn read(path: &Path) -> Result<PublicKey> {
        let what = format!("--key {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("reading the public key {}", path.display()), e))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_KEY_FILE + 1), &mut bytes)
            .map_err(|e| Error::io(format!("reading the public key {}", path.display()), e))?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(Error::config(&what, format!("it is more than {MAX_KEY_FILE} bytes: not a public key file"), "give the cosign.pub of the signing key"));
        }
        PublicKey::from_pem(&bytes).map_err(|why| Error::config(&what, why, "give the cosign.pub of the signing key (a PEM 'PUBLIC KEY' of ECDSA P-256)"))
    }

    /// Parses one `-----BEGIN PUBLIC KEY-----` block (lines of canonical base64, nothing
    /// before or after but whitespace) holding a P-256 SubjectPublicKeyInfo.
    pub fn from_pem(bytes: &[u8]) -> std::result::Result<PublicKey, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "the key file is not UTF-8 text".to_string())?;
        let mut lines = text.trim().lines().map(|l| l.trim_end_matches('\r'));
        let begin = lines.next().unwrap_or("");
        if begin != "-----BEGIN PUBLIC KEY-----" {
            // Only a PEM label is shown: a file that is not a PEM may be a secret (a private
            // key's bytes, a token) given here by mistake, and is not echoed.
            return Err(match begin.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
                Some(label) if label.len() <= 40 && label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') => {
                    format!("the key file holds a '{label}' PEM block; give the public key, one '-----BEGIN PUBLIC KEY-----' block (cosign.pub)")
                }
                _ => "the key file is not a PEM '-----BEGIN PUBLIC KEY-----' block (its content is not shown)".to_string(),
            });
        }
        let mut body = String::new();
        let mut ended = false;
        for line in lines {
            if ended {
                return Err("the key file has more after its '-----END PUBLIC KEY-----' line".into());
            }
            if line == "-----END PUBLIC KEY-----" {
                ended = true;
            } else if line.len() <= 76 && line.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
                body.push_str(line);
            } else {
                return Err("the key file's PEM body is not base64 lines".into());
            }
        }
        if !ended {
            return Err("the key file has no '-----END PUBLIC KEY-----' line (truncated?)".into());
        }
        let der = strict_base64(&body, 512).ok_or("the key file's PEM body is not canonical base64")?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(PublicKey { point: point.to_vec() }),
            _ => Err(format!("the key is {}; only ECDSA P-256 keys (cosign generate-key-pair) are supported", key_kind(&der))),
        }
    }

    /// Checks `signature` (DER) over `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &self.point).verify(message, signature).is_ok()
    }
}

/// What a SubjectPublicKeyInfo that is not P-256 holds, for the error.
fn key_kind(der: &[u8]) -> &'static str {
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]) {
        "an RSA key"
    } else if has(&[0x2b, 0x81, 0x04, 0x00, 0x22]) {
        "an ECDSA P-384 key"
    } else if has(&[0x2b, 0x81, 0x04, 0x00, 0x23]) {
        "an ECDSA P-521 key"
    } else if has(&[0x2b, 0x65, 0x70]) {
        "an Ed25519 key"
    } else {
        "not an ECDSA P-256 SubjectPublicKeyInfo"
    }
}

/// `text` decoded when it is canonical standard base64 (the alphabet with `+` and `/`,
/// `=` padding to a multiple of 4, no whitespace, zero unused bits) of at most `max` bytes.
pub fn strict_base64(text: &str, max: usize) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 4 != 0 || text.len() / 4 * 3 > max + 2 || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
        return None;
    }
    let bytes = crate::base64::decode(text)?;
    (bytes.len() <= max && crate::base64::encode(&bytes) == text).then_some(bytes)
}

/// One signature of a signature manifest: its payload's descriptor and its annotation.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The payload blob.
    pub payload: Descriptor,
    /// The base64 signature, as the annotation gives it.
    pub signature: String,
}

/// The signature layers of the manifest `bytes` (`what` names it in errors): every layer
/// of the payload media type with a signature annotation.
pub fn layers(bytes: &[u8], what: &str) -> Result<Vec<Layer>> {
    let value = document::parse(bytes, what, document::MAX_MANIFEST)?;
    let Some(Value::Array(list)) = get(&value, &["layers"]) else {
        return Err(Error::decode(what, "it has no layers: not a cosign signature manifest"));
    };
    if list.len() > MAX_LAYERS {
        return Err(Error::decode(what, format!("it has {} layers, more than the {MAX_LAYERS} this tool reads", list.len())));
    }
    let mut out = Vec::new();
    for layer in list.iter() {
        if text(layer, &["mediaType"]) != Some(PAYLOAD_TYPE) {
            continue;
        }
        let payload = Descriptor::parse(layer, what)?;
        let Some(signature) = text(layer, &["annotations", ANNOTATION]) else { continue };
        out.push(Layer { payload, signature: signature.to_string() });
    }
    Ok(out)
}

/// Checks one signature layer against the image digest `image`, given its payload's bytes:
/// it must sign that digest, and its `docker-reference` must end in `/name`, the name of the
/// repository the image is bundled from and mirrored to (so a signature of another image,
/// even by the same key, cannot stand for this one under this name). The error says what
/// failed (never the payload itself, which is hostile).
pub fn check(key: &PublicKey, image: &Digest, name: &str, layer: &Layer, payload: &[u8]) -> std::result::Result<(), String> {
    if layer.payload.size > MAX_PAYLOAD || payload.len() as u64 > MAX_PAYLOAD {
        return Err(format!("its payload is more than the {MAX_PAYLOAD} bytes this tool accepts"));
    }
    if payload.len() as u64 != layer.payload.size || Digest::of(payload) != layer.payload.digest {
        return Err(format!("its payload is not the {} ({} bytes) its manifest names", layer.payload.digest, layer.payload.size));
    }
    let signature = strict_base64(&layer.signature, MAX_SIGNATURE).ok_or("its signature annotation is not canonical base64 of an ECDSA signature")?;
    if !key.verifies(payload, &signature) {
        return Err("its signature does not verify with the key (another key, or an altered payload or signature)".into());
    }
    let parsed = document::parse(payload, "the signed payload", MAX_PAYLOAD as usize).map_err(|e| e.to_string())?;
    if text(&parsed, &["critical", "type"]) != Some(COSIGN_TYPE) {
        return Err(format!("its payload's critical.type is not '{COSIGN_TYPE}'"));
    }
    match text(&parsed, &["critical", "image", "docker-manifest-digest"]).map(Digest::parse) {
        Some(Ok(d)) if d == *image => {}
        Some(Ok(d)) => return Err(format!("it signs {d}, not this image's {image}")),
        _ => return Err("its payload has no usable critical.image.docker-manifest-digest".into()),
    }
    match text(&parsed, &["critical", "identity", "docker-reference"]) {
        Some(r) if r.rsplit('/').next() == Some(name) => Ok(()),
        Some(r) => Err(format!("it signs the image as {}, not as .../{name}", crate::text::snippet(r, 120))),
        None => Err("its payload has no critical.identity.docker-reference".into()),
    }
}

/// Checks the signature manifest `manifest` of the image `image` (`what` names both):
/// at least one of its layers must pass [`check`]; `payload` reads a layer's payload
/// (bounded by [`MAX_PAYLOAD`]). Layers that fail are other keys' or altered: when none
/// passes, the first one's reason is the error.
pub fn verify(key: &PublicKey, image: &Digest, name: &str, manifest: &[u8], what: &str, payload: &mut dyn FnMut(&Descriptor) -> Result<Vec<u8>>) -> Result<()> {
    let layers = layers(manifest, what)?;
    let mut first = None;
    for layer in &layers {
        if layer.payload.size > MAX_PAYLOAD {
            first.get_or_insert_with(|| format!("its payload is more than the {MAX_PAYLOAD} bytes this tool accepts"));
            continue;
        }
        match check(key, image, name, layer, &payload(&layer.payload)?) {
            Ok(()) => return Ok(()),
            Err(why) => {
                first.get_or_insert(why);
            }
        }
    }
    Err(Error::decode(what, first.unwrap_or_else(|| "it holds no cosign signature layer".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh key pair (ring signs; the verifier under test only sees the PEM).
    fn keypair() -> (ring::signature::EcdsaKeyPair, PublicKey) {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
        (pair, PublicKey::from_pem(pem(&der, "PUBLIC KEY").as_bytes()).unwrap())
    }

    /// A PEM block of `der`, in lines of 64 as openssl and cosign write them.
    fn pem(der: &[u8], label: &str) -> String {
        let body = crate::base64::encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    fn payload(digest: &Digest, kind: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/agent"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":null}}"#
        )
        .into_bytes()
    }

    fn signed(pair: &ring::signature::EcdsaKeyPair, payload: &[u8]) -> Layer {
        let sig = pair.sign(&ring::rand::SystemRandom::new(), payload).unwrap();
        Layer {
            payload: Descriptor { media_type: PAYLOAD_TYPE.into(), digest: Digest::of(payload), size: payload.len() as u64, platform: None },
            signature: crate::base64::encode(sig.as_ref()),
        }
    }

    fn image() -> Digest {
        Digest::of(b"the image manifest")
    }

    #[test]
    fn a_good_signature_over_the_image_digest_verifies() {
        let (pair, key) = keypair();
        let p = payload(&image(), COSIGN_TYPE);
        check(&key, &image(), "agent", &signed(&pair, &p), &p).unwrap();
    }

    #[test]
    fn a_tampered_signature_or_payload_or_another_key_is_refused() {
        let (pair, key) = keypair();
        let (_, other) = keypair();
        let p = payload(&image(), COSIGN_TYPE);
        let layer = signed(&pair, &p);
        let e = check(&other, &image(), "agent", &layer, &p).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        // A signature with one bit flipped (still canonical base64).
        let mut sig = strict_base64(&layer.signature, MAX_SIGNATURE).unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        let flipped = Layer { signature: crate::base64::encode(&sig), ..layer.clone() };
        assert!(check(&key, &image(), "agent", &flipped, &p).unwrap_err().contains("does not verify"));
        // An altered payload, its descriptor made to match (a consistent doctored bundle).
        let altered = payload(&Digest::of(b"another image"), COSIGN_TYPE);
        let doctored = Layer {
            payload: Descriptor { digest: Digest::of(&altered), size: altered.len() as u64, ..layer.payload.clone() },
            signature: layer.signature.clone(),
        };
        assert!(check(&key, &image(), "agent", &doctored, &altered).unwrap_err().contains("does not verify"));
        // An altered payload under the old descriptor.
        assert!(check(&key, &image(), "agent", &layer, &altered).unwrap_err().contains("is not the"));
    }

    #[test]
    fn a_signature_of_another_digest_is_refused_naming_both() {
        let (pair, key) = keypair();
        let other = Digest::of(b"another image");
        let p = payload(&other, COSIGN_TYPE);
        let e = check(&key, &image(), "agent", &signed(&pair, &p), &p).unwrap_err();
        assert!(e.contains(&other.to_string()) && e.contains(&image().to_string()), "{e}");
    }

    #[test]
    fn a_payload_of_another_type_is_refused() {
        let (pair, key) = keypair();
        let p = payload(&image(), "atomic container signature");
        assert!(check(&key, &image(), "agent", &signed(&pair, &p), &p).unwrap_err().contains("critical.type"));
        let p = br#"{"critical":{"type":"cosign container image signature"}}"#.to_vec();
        assert!(check(&key, &image(), "agent", &signed(&pair, &p), &p).unwrap_err().contains("docker-manifest-digest"));
    }

    #[test]
    fn an_oversized_payload_is_refused_before_it_is_hashed_or_parsed() {
        let (pair, key) = keypair();
        let big = vec![b' '; MAX_PAYLOAD as usize + 1];
        let e = check(&key, &image(), "agent", &signed(&pair, &big), &big).unwrap_err();
        assert!(e.contains("more than the 65536"), "{e}");
        // verify does not even read it.
        let mut layer = signed(&pair, &big);
        layer.payload.size = 1 << 20;
        let manifest = format!(
            r#"{{"layers":[{{"mediaType":"{PAYLOAD_TYPE}","digest":"{}","size":{},"annotations":{{"{ANNOTATION}":"{}"}}}}]}}"#,
            layer.payload.digest, layer.payload.size, layer.signature
        );
        let e = verify(&key, &image(), "agent", manifest.as_bytes(), "the signature of x", &mut |_| panic!("read")).unwrap_err().to_string();
        assert!(e.contains("the signature of x") && e.contains("more than the 65536"), "{e}");
    }

    #[test]
    fn a_signature_annotation_that_is_not_canonical_base64_is_refused() {
        let (pair, key) = keypair();
        let p = payload(&image(), COSIGN_TYPE);
        let good = signed(&pair, &p);
        for bad in [
            format!(" {}", good.signature),
            good.signature.replace('+', "-").replace('/', "_"),
            good.signature.trim_end_matches('=').to_string(),
            "A".repeat(400),
        ] {
            if bad == good.signature {
                continue;
            }
            let e = check(&key, &image(), "agent", &Layer { signature: bad.clone(), ..good.clone() }, &p).unwrap_err();
            assert!(e.contains("canonical base64"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_key_that_is_not_a_p256_public_key_pem_is_refused_clearly() {
        let (_, key) = keypair();
        assert_eq!(key.point.len(), 65);
        // P-384 (secp384r1) SubjectPublicKeyInfo: same layout, another curve OID.
        let mut p384 = vec![
            0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00, 0x04,
        ];
        p384.extend_from_slice(&[7u8; 96]);
        let e = PublicKey::from_pem(pem(&p384, "PUBLIC KEY").as_bytes()).unwrap_err();
        assert!(e.contains("P-384") && e.contains("only ECDSA P-256"), "{e}");
        let ed25519 = crate::orchestrator::key::RunnerKey::from_seed([1; 32]).public_pem();
        assert!(PublicKey::from_pem(ed25519.as_bytes()).unwrap_err().contains("Ed25519"));
        let e = PublicKey::from_pem(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n").unwrap_err();
        assert!(e.contains("'ENCRYPTED COSIGN PRIVATE KEY' PEM block") && e.contains("BEGIN PUBLIC KEY"), "{e}");
        let mut good = P256_SPKI_PREFIX.to_vec();
        good.push(4);
        good.extend_from_slice(&[9u8; 64]);
        let two = format!("{}{}", pem(&good, "PUBLIC KEY"), pem(&good, "PUBLIC KEY"));
        assert!(PublicKey::from_pem(two.as_bytes()).unwrap_err().contains("more after"));
        assert!(PublicKey::from_pem(pem(&good, "PUBLIC KEY").as_bytes()).is_ok());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(PublicKey::from_pem(pem(&trailing, "PUBLIC KEY").as_bytes()).unwrap_err().contains("only ECDSA P-256"));
        let truncated = pem(&good, "PUBLIC KEY").replace("-----END PUBLIC KEY-----\n", "");
        assert!(PublicKey::from_pem(truncated.as_bytes()).unwrap_err().contains("truncated"));
    }

    #[test]
    fn a_key_file_that_is_not_a_pem_is_refused_without_echoing_it() {
        for secret in ["c2VjcmV0LXRva2VuLWRvLW5vdC1wcmludA==\n", "-----BEGIN c2VjcmV0LXRva2Vu-----\n", "hunter2-password"] {
            let e = PublicKey::from_pem(secret.as_bytes()).unwrap_err();
            assert!(e.contains("content is not shown"), "{e}");
            assert!(!e.contains("c2VjcmV0") && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn a_signature_manifest_verifies_when_one_of_its_layers_does() {
        let (pair, key) = keypair();
        let (stranger, _) = keypair();
        let p = payload(&image(), COSIGN_TYPE);
        let (theirs, ours) = (signed(&stranger, &p), signed(&pair, &p));
        let layer = |l: &Layer| {
            format!(
                r#"{{"mediaType":"{PAYLOAD_TYPE}","digest":"{}","size":{},"annotations":{{"{ANNOTATION}":"{}"}}}}"#,
                l.payload.digest, l.payload.size, l.signature
            )
        };
        let both = format!(r#"{{"schemaVersion":2,"layers":[{},{}]}}"#, layer(&theirs), layer(&ours));
        verify(&key, &image(), "agent", both.as_bytes(), "sig", &mut |_| Ok(p.clone())).unwrap();
        let only_theirs = format!(r#"{{"schemaVersion":2,"layers":[{}]}}"#, layer(&theirs));
        let e = verify(&key, &image(), "agent", only_theirs.as_bytes(), "the signature of agent-image", &mut |_| Ok(p.clone())).unwrap_err().to_string();
        assert!(e.contains("the signature of agent-image") && e.contains("does not verify"), "{e}");
        let e = verify(&key, &image(), "agent", br#"{"layers":[]}"#, "sig", &mut |_| Ok(p.clone())).unwrap_err().to_string();
        assert!(e.contains("no cosign signature layer"), "{e}");
    }

    #[test]
    fn a_signature_of_the_digest_under_another_repository_name_is_refused() {
        // The same key signs the runner: its signature must not stand for the agent image
        // (found by the attack review: roles and tags are not signed, the name is).
        let (pair, key) = keypair();
        let p = payload(&image(), COSIGN_TYPE);
        check(&key, &image(), "agent", &signed(&pair, &p), &p).unwrap();
        let e = check(&key, &image(), "platform-orchestrator-runner", &signed(&pair, &p), &p).unwrap_err();
        assert!(e.contains("not as .../platform-orchestrator-runner"), "{e}");
        let bare = String::from_utf8(p).unwrap().replace(r#""identity":{"docker-reference":"registry.example/agent"},"#, "").into_bytes();
        assert!(check(&key, &image(), "agent", &signed(&pair, &bare), &bare).unwrap_err().contains("no critical.identity.docker-reference"));
    }
}
