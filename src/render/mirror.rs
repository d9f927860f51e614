//! Image mirrors: rewrite image references by registry prefix, so an air-gapped cluster
//! pulls the Orchestrator's runner image from an internal registry. A rule `FROM=TO`
//! matches an image whose reference equals `FROM` or starts with `FROM/`, `FROM:` or
//! `FROM@`; the longest matching `FROM` wins; the matched prefix is replaced by `TO` and
//! the rest (path, tag, digest) is kept. Docker Hub short names are expanded before
//! matching (`alpine` → `docker.io/library/alpine`), so a `docker.io=...` rule covers them.
//! Digests are kept byte for byte: the mirror must hold the same manifest.

use crate::error::{Error, Result};

/// One `FROM=TO` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Registry prefix matched, e.g. `ghcr.io/humanitec`.
    pub from: String,
    /// Replacement, e.g. `registry.internal/mirror`.
    pub to: String,
}

impl Mirror {
    /// Parses `FROM=TO`; `name` is the variable or flag, for the error.
    pub fn parse(rule: &str, name: &str) -> Result<Mirror> {
        let fix = "write each rule as FROM=TO, e.g. ghcr.io/humanitec=registry.internal/mirror, rules separated by commas";
        let Some((from, to)) = rule.split_once('=') else {
            return Err(Error::config(name, format!("rule '{rule}' has no '='"), fix));
        };
        let (from, to) = (from.trim().trim_end_matches('/'), to.trim().trim_end_matches('/'));
        let valid = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains(['=', ',', '@']) && !s.contains("://");
        if !valid(from) || !valid(to) {
            return Err(Error::config(name, format!("rule '{rule}' needs a registry prefix on both sides (no scheme, spaces, '@' or ',')"), fix));
        }
        Ok(Mirror { from: from.to_string(), to: to.to_string() })
    }
}

/// The full reference, Docker Hub short names expanded (see [`crate::image`]).
fn normalise(image: &str) -> String {
    let (registry, path) = crate::image::registry_and_path(image);
    format!("{registry}/{path}")
}

/// The rewritten reference, or `None` when no rule matches.
pub fn rewrite(image: &str, mirrors: &[Mirror]) -> Option<String> {
    let full = normalise(image);
    let matches = |from: &str| full == from || full.strip_prefix(from).is_some_and(|rest| rest.starts_with(['/', ':', '@']));
    let best = mirrors.iter().filter(|m| matches(&m.from)).max_by_key(|m| m.from.len())?;
    Some(format!("{}{}", best.to, &full[best.from.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Mirror> {
        list.iter().map(|r| Mirror::parse(r, "IMAGE_MIRRORS").unwrap()).collect()
    }

    #[test]
    fn prefix_is_replaced_and_tag_and_digest_kept() {
        let m = rules(&["ghcr.io/humanitec=registry.internal/mirror"]);
        assert_eq!(rewrite("ghcr.io/humanitec/runner:1.2", &m).as_deref(), Some("registry.internal/mirror/runner:1.2"));
        assert_eq!(rewrite("ghcr.io/humanitec/runner@sha256:abc", &m).as_deref(), Some("registry.internal/mirror/runner@sha256:abc"));
        assert_eq!(rewrite("ghcr.io/humanitec-other/runner", &m), None);
        assert_eq!(rewrite("quay.io/x/y", &m), None);
    }

    #[test]
    fn longest_rule_wins() {
        let m = rules(&["ghcr.io=mirror/all", "ghcr.io/humanitec/runner=mirror/runner"]);
        assert_eq!(rewrite("ghcr.io/humanitec/runner:1", &m).as_deref(), Some("mirror/runner:1"));
        assert_eq!(rewrite("ghcr.io/other/x", &m).as_deref(), Some("mirror/all/other/x"));
    }

    #[test]
    fn docker_hub_short_names_are_expanded() {
        let m = rules(&["docker.io=registry.internal/hub"]);
        assert_eq!(rewrite("alpine:3", &m).as_deref(), Some("registry.internal/hub/library/alpine:3"));
        assert_eq!(rewrite("bitnami/kubectl", &m).as_deref(), Some("registry.internal/hub/bitnami/kubectl"));
        assert_eq!(rewrite("localhost/x", &m), None);
    }

    #[test]
    fn malformed_rules_name_the_variable() {
        for bad in ["ghcr.io", "=x", "x=", "https://a=b", "a b=c"] {
            let e = Mirror::parse(bad, "IMAGE_MIRRORS").unwrap_err().to_string();
            assert!(e.starts_with("configuration IMAGE_MIRRORS:"), "{e}");
        }
    }
}
