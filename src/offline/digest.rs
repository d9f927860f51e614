//! The one digest type. A `Digest` is `sha256:` and 64 lowercase hex digits, checked once
//! when it is parsed (from a manifest, a reference, a blob name or `SHA256SUMS`), and
//! every path, URL and comparison is built from a `Digest`, never from the text it came
//! from: a hostile `sha256:../../x` never reaches a file name or a URL. Not supported:
//! other algorithms (sha512), which this tool refuses rather than half-handles.

use std::fmt;

/// The algorithm every digest uses.
pub const ALGORITHM: &str = "sha256";
const HEX_LEN: usize = 64;

/// `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; the error shows at most 80 characters of `text`, escaped.
    pub fn parse(text: &str) -> Result<Digest, String> {
        match text.split_once(':') {
            Some((ALGORITHM, hex)) => Digest::from_hex(hex).map_err(|_| format!("{} is not a digest (sha256: and 64 lowercase hex digits)", shown(text))),
            Some((other, _)) if other.chars().all(|c| c.is_ascii_alphanumeric()) && !other.is_empty() && other.len() < 16 => {
                Err(format!("{} uses the digest algorithm '{other}'; only sha256 is supported", shown(text)))
            }
            _ => Err(format!("{} is not a digest (sha256: and 64 lowercase hex digits)", shown(text))),
        }
    }

    /// The digest whose hex is `hex` (64 lowercase hex digits, as in `SHA256SUMS` and blob names).
    pub fn from_hex(hex: &str) -> Result<Digest, String> {
        if hex.len() == HEX_LEN && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest { hex: hex.to_string() })
        } else {
            Err(format!("{} is not 64 lowercase hex digits", shown(hex)))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The name of this blob in the bundle's OCI layout.
    pub fn blob_name(&self) -> String {
        format!("oci/blobs/{ALGORITHM}/{}", self.hex)
    }

    /// `sha256:` and the first 12 digits, for progress lines.
    pub fn short(&self) -> String {
        format!("{ALGORITHM}:{}", &self.hex[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM}:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Incremental sha256, finishing in a `Digest`; a clone goes on from the same state.
#[derive(Clone)]
pub struct Hasher(ring::digest::Context);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest { hex: crate::hex::encode(self.0.finish().as_ref()) }
    }
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

/// Hostile text in an error: quoted, escaped, at most 80 characters.
pub fn shown(text: &str) -> String {
    crate::text::quoted(text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_with_a_path_or_the_wrong_length_or_case_is_refused() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        assert_eq!(Digest::parse(&good).unwrap().blob_name(), format!("oci/blobs/sha256/{}", "ab".repeat(32)));
        for bad in [
            "sha256:../../x".to_string(),
            "sha256:/tmp/x/PWNED".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}/", "a".repeat(64)),
            format!("sha256:{}", "g".repeat(64)),
            format!("sha512:{}", "a".repeat(128)),
            "latest".to_string(),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad} parsed");
        }
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).unwrap_err().contains("only sha256"));
    }

    #[test]
    fn digests_of_bytes_match_sha256sum() {
        assert_eq!(Digest::of(b"").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
