//! Kubernetes object names, validated once. A [`Name`] can only be made from a string
//! that is a valid DNS-1123 name, so every name that reaches a request path
//! (`kube::request`), a label or field selector, or a log line is one: no `/`, no `..`,
//! no `?`, no control characters, at most 253 bytes. Messages are decoded into `Name`s at
//! the boundary (`message::decode`); nothing downstream re-checks a string.

use std::fmt;

/// A valid DNS-1123 label (namespaces, Job names) or subdomain (Pod names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// A DNS-1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric. Namespaces
    /// and Job names (a Job's name is also its Pods' `job-name` label value, so 63 at most).
    pub fn label(s: &str) -> Option<Name> {
        is_dns1123_label(s).then(|| Name(s.to_string()))
    }

    /// A DNS-1123 subdomain: labels joined by `.`, at most 253 bytes (Pod names).
    pub fn subdomain(s: &str) -> Option<Name> {
        (s.len() <= 253 && s.split('.').all(is_dns1123_label)).then(|| Name(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// True for a DNS-1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 63 && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || c == b'-')
}

/// Why `s` is not a label, in words for an error, with the value shown safely (control
/// characters dropped, at most 80 characters).
pub fn label_problem(s: &str) -> String {
    let shown = crate::text::snippet(s, 80);
    if s.len() > 63 {
        format!("'{shown}…' is {} bytes long; Kubernetes names here are at most 63", s.len())
    } else {
        format!("'{shown}' is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refuse_everything_a_path_or_query_could_be_steered_by() {
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", "..", "a/b", "x/../../secrets", "x?watch=true", "a b", "a\nb", "a%2Fb", &"a".repeat(64)] {
            assert!(Name::label(bad).is_none(), "{bad:?}");
        }
        for good in ["a", "d-1", "0", &"a".repeat(63)] {
            assert_eq!(Name::label(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn subdomains_allow_dots_between_labels_only() {
        assert!(Name::subdomain("job-abc12.x").is_some());
        for bad in [".", "..", "a..b", ".a", "a.", "a/b", &format!("{}.a", "a".repeat(253))] {
            assert!(Name::subdomain(bad).is_none(), "{bad:?}");
        }
    }
}
