//! The secrets the agent knows, and their removal from everything it writes out: every
//! log line (the logger calls [`scrub`]), every failure report sent to the Orchestrator,
//! `check`'s output and panic messages. Callers still never log a secret on purpose;
//! this is what keeps a peer's echo (an API server quoting a Job's env value in a 422, an
//! Orchestrator repeating a token in an error body, a proxy URL in a transport error)
//! from carrying one into the log.
//!
//! What is known: the JWT in use, the Kubernetes bearer token, the userinfo of
//! `REMOTE_URL` and of the proxy URL (long-lived [`Slot`]s, replaced when they change),
//! and, while a message is handled, its deployment token and every env value of its Job
//! (a [`Held`] guard that forgets them when the handling ends, so the set stays as small
//! as the work in flight). Each is removed as written and as it appears inside a JSON
//! string (escaped). Values shorter than [`MIN_LEN`] bytes are not scrubbed: they would
//! blank ordinary words (`MODE=deploy`), and no credential is that short.

use std::borrow::Cow;
use std::sync::Mutex;

/// Shortest value scrubbed.
pub const MIN_LEN: usize = 8;
/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// A long-lived secret, replaced whenever it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The Orchestrator JWT.
    Jwt,
    /// The Kubernetes service-account (or `KUBE_TOKEN_FILE`) token.
    KubeToken,
    /// The password (and user) in `REMOTE_URL`'s userinfo.
    RemoteUserinfo,
    /// The password (and user) in the proxy URL's userinfo.
    ProxyUserinfo,
}

enum Owner {
    Slot(Slot),
    Held(u64),
}

struct Known {
    entries: Vec<(Owner, String)>,
    next_id: u64,
}

static KNOWN: Mutex<Known> = Mutex::new(Known { entries: Vec::new(), next_id: 0 });

fn known() -> std::sync::MutexGuard<'static, Known> {
    KNOWN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The forms in which `value` may appear: as is, and escaped inside a JSON string.
fn forms(value: &str) -> Vec<String> {
    if value.len() < MIN_LEN {
        return Vec::new();
    }
    let escaped = crate::json::quote(value);
    let escaped = &escaped[1..escaped.len() - 1];
    let mut out = vec![value.to_string()];
    if escaped != value {
        out.push(escaped.to_string());
    }
    out
}

/// Sets the secrets of `slot` (several for a userinfo: `user:password` and the password),
/// replacing what it held.
pub fn set(slot: Slot, values: &[&str]) {
    let mut k = known();
    k.entries.retain(|(o, _)| !matches!(o, Owner::Slot(s) if *s == slot));
    for v in values {
        for f in forms(v) {
            k.entries.push((Owner::Slot(slot), f));
        }
    }
}

/// Secrets known while this guard lives.
#[must_use = "the secrets are forgotten when the guard drops"]
pub struct Held(u64);

/// Makes `values` known until the returned guard drops.
pub fn hold<'a>(values: impl IntoIterator<Item = &'a str>) -> Held {
    let mut k = known();
    let id = k.next_id;
    k.next_id += 1;
    for v in values {
        for f in forms(v) {
            k.entries.push((Owner::Held(id), f));
        }
    }
    Held(id)
}

impl Drop for Held {
    fn drop(&mut self) {
        known().entries.retain(|(o, _)| !matches!(o, Owner::Held(id) if *id == self.0));
    }
}

/// `text` with every known secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let k = known();
    if !k.entries.iter().any(|(_, s)| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    // Longest first, so a secret that contains another is removed whole.
    let mut secrets: Vec<&str> = k.entries.iter().map(|(_, s)| s.as_str()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s) {
            out = out.replace(s, REDACTED);
        }
    }
    Cow::Owned(out)
}

/// The userinfo of an `http(s)://user:password@host` URL as secrets (`user:password` and
/// the password), for [`set`]; empty when there is none.
pub fn userinfo(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((info, _)) => {
            let mut out = vec![info.to_string()];
            if let Some((_, password)) = info.split_once(':') {
                out.push(password.to_string());
            }
            out
        }
        None => Vec::new(),
    }
}

/// `url` with its userinfo shown as `***`, for logs, `check` and configuration errors
/// (which quote values that are not URLs yet, such as `user:password@host` without a
/// scheme: that userinfo is hidden too).
pub fn url_without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let separator = if url.contains("://") { "://" } else { "" };
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}{separator}***@{host}{}", &rest[end..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_secrets_are_scrubbed_raw_and_json_escaped_until_the_guard_drops() {
        let line = r#"422: env[0].value: Invalid value: "s3cr3t\"value-1": echoed s3cr3t"value-1"#;
        {
            let _held = hold(["s3cr3t\"value-1", "short"]);
            let scrubbed = scrub(line);
            assert!(!scrubbed.contains("s3cr3t"), "{scrubbed}");
            assert_eq!(scrubbed.matches(REDACTED).count(), 2, "{scrubbed}");
            assert_eq!(scrub("short words stay"), "short words stay");
        }
        assert_eq!(scrub(line), line, "forgotten once the message is handled");
    }

    #[test]
    fn slots_replace_their_previous_value() {
        set(Slot::Jwt, &["eyJhbGciOi.first-token"]);
        set(Slot::Jwt, &["eyJhbGciOi.second-token"]);
        assert_eq!(scrub("eyJhbGciOi.first-token"), "eyJhbGciOi.first-token");
        assert_eq!(scrub("a eyJhbGciOi.second-token b"), format!("a {REDACTED} b"));
        set(Slot::Jwt, &[]);
    }

    #[test]
    fn userinfo_is_found_and_hidden() {
        assert_eq!(userinfo("https://user:pa55word@orch.internal:8443/api"), vec!["user:pa55word".to_string(), "pa55word".to_string()]);
        assert!(userinfo("https://orch.internal/a@b").is_empty());
        assert_eq!(url_without_userinfo("https://user:pa55word@orch.internal:8443/api"), "https://***@orch.internal:8443/api");
        assert_eq!(url_without_userinfo("https://orch.internal/x@y"), "https://orch.internal/x@y");
        assert_eq!(url_without_userinfo("user:pa55word@orch.internal/api"), "***@orch.internal/api");
    }
}
