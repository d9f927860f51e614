//! JSON documents from a registry or a bundle (manifests, indexes, `manifest.json`,
//! token answers, error bodies): bounded in size and in nesting depth BEFORE they are
//! parsed, and strictly UTF-8. miniserde parses without recursion, but dropping, cloning
//! or walking a `Value` recurses once per level, so a document nested 50,000 deep would
//! overflow the stack after a successful parse; no document this tool reads needs more
//! than a few levels. Kept here (not in the agent's `crate::json`) so that offline-install
//! owns its bounds.

use miniserde::json::{self, Value};

use crate::error::{Error, Result};

/// Nesting bound for every document (an OCI manifest needs 4 levels, an index 5).
pub const MAX_DEPTH: usize = 32;
/// Size bound of a manifest or index (what registries accept: 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Size bound of the small documents (`manifest.json`, `oci/index.json`, a token answer, an error body).
pub const MAX_SMALL: usize = 1 << 20;

/// Parses `bytes` as JSON after checking its size (at most `max_len`), encoding and depth;
/// errors name `what`.
pub fn parse(bytes: &[u8], what: &str, max_len: usize) -> Result<Value> {
    if bytes.len() > max_len {
        return Err(Error::decode(what, format!("it is {} bytes, more than the {max_len} this tool accepts", bytes.len())));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Error::decode(what, "not UTF-8"))?;
    if depth(text) > MAX_DEPTH {
        return Err(Error::decode(what, format!("it is nested deeper than {MAX_DEPTH} levels")));
    }
    json::from_str(text).map_err(|_| Error::decode(what, "not JSON"))
}

/// The deepest nesting of arrays and objects in `text`, brackets inside strings not
/// counted. Exact for valid JSON; for invalid JSON at least a bound the parser agrees with
/// (an unbalanced closer only lowers it).
pub fn depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_nested_50000_deep_is_refused_before_parsing() {
        let deep = "[".repeat(50_000) + &"]".repeat(50_000);
        let e = parse(deep.as_bytes(), "manifest.json", MAX_SMALL).unwrap_err().to_string();
        assert!(e.contains("manifest.json") && e.contains("deeper than 32"), "{e}");
    }

    #[test]
    fn depth_ignores_brackets_in_strings_and_counts_objects_and_arrays() {
        assert_eq!(depth(r#"{"a":["[[[{", {"b":"\"]"}]}"#), 3);
        assert_eq!(depth("1"), 0);
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes(), "x", MAX_SMALL).is_ok());
    }

    #[test]
    fn oversized_and_non_utf8_documents_are_refused() {
        assert!(parse(&[b' '; 11], "x", 10).unwrap_err().to_string().contains("more than the 10"));
        assert!(parse(&[b'"', 0xff, b'"'], "x", 10).unwrap_err().to_string().contains("UTF-8"));
    }
}
