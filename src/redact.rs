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
//! as the work in flight). Each is removed as written, as it appears inside a JSON string
//! and as Go's `%q` quotes it (Kubernetes field errors). Values shorter than [`MIN_LEN`]
//! bytes are not scrubbed (they would blank parts of ordinary words); the caller leaves
//! out what is known not to be secret (identifiers, `MODE`).
//!
//! Cost: [`scrub`] scans a snapshot of the set (taken without holding the lock during the
//! scan) over at most [`SCAN_LIMIT`] bytes of text, and every match range is found
//! against the original text, so overlapping secrets are hidden whole.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

/// Shortest value scrubbed.
pub const MIN_LEN: usize = 4;
/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";
/// Longest text [`scrub`] looks at; what follows is cut (log lines and reports are
/// shorter still: see [`crate::ops::logging`]).
pub const SCAN_LIMIT: usize = 16 << 10;

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
    /// What [`scrub`] scans: the entries' texts, rebuilt on every change.
    snapshot: Option<Arc<Vec<String>>>,
}

static KNOWN: Mutex<Known> = Mutex::new(Known { entries: Vec::new(), next_id: 0, snapshot: None });

fn known() -> std::sync::MutexGuard<'static, Known> {
    KNOWN.lock().unwrap_or_else(|p| p.into_inner())
}

impl Known {
    fn changed(&mut self) {
        self.snapshot = Some(Arc::new(self.entries.iter().map(|(_, s)| s.clone()).collect()));
    }
}

/// The forms in which `value` may appear: as is, escaped inside a JSON string, and as
/// Go's `%q` writes it.
fn forms(value: &str) -> Vec<String> {
    if value.len() < MIN_LEN {
        return Vec::new();
    }
    let json = crate::json::quote(value);
    let mut out = vec![value.to_string()];
    for form in [json[1..json.len() - 1].to_string(), go_quoted(value)] {
        if !out.contains(&form) {
            out.push(form);
        }
    }
    out
}

/// The inside of Go's `strconv.Quote`: `\"` and `\\`, the short escapes, `\xNN` for
/// other control bytes; printable text as is.
fn go_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
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
    k.changed();
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
    k.changed();
    Held(id)
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut k = known();
        k.entries.retain(|(o, _)| !matches!(o, Owner::Held(id) if *id == self.0));
        k.changed();
    }
}

/// `text` (at most its first [`SCAN_LIMIT`] bytes) with every known secret replaced by
/// [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(secrets) = known().snapshot.clone() else { return Cow::Borrowed(text) };
    let mut cut = text.len().min(SCAN_LIMIT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = &text[..cut];
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for s in secrets.iter() {
        let mut from = 0;
        while let Some(at) = text[from..].find(s.as_str()) {
            ranges.push((from + at, from + at + s.len()));
            from += at + 1;
            while !text.is_char_boundary(from) {
                from += 1;
            }
        }
    }
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut shown = 0;
    for (start, end) in merged {
        out.push_str(&text[shown..start]);
        out.push_str(REDACTED);
        shown = end;
    }
    out.push_str(&text[shown..]);
    Cow::Owned(out)
}

/// [`scrub`], then cut to at most `max` bytes (at a character boundary, marked `…`): what
/// log lines and reports are made of, so no peer's reply can make one of them huge.
pub fn scrub_to(text: &str, max: usize) -> String {
    let scrubbed = scrub(text);
    if scrubbed.len() <= max {
        return scrubbed.into_owned();
    }
    let mut cut = max;
    while !scrubbed.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &scrubbed[..cut])
}

/// The userinfo of an `http(s)://user:password@host` URL as secrets (`user:password` and
/// the password), for [`set`]; empty when there is none. Everything before the last `@`
/// counts, so a password holding an unencoded `/` is still found.
pub fn userinfo(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.rsplit_once('@') {
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

/// `url` with everything between the scheme and its last `@` shown as `***`, for logs
/// and `check`. It hides more than the userinfo when a path holds an `@`: it only shows.
pub fn url_without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let separator = if url.contains("://") { "://" } else { "" };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}{separator}***@{host}"),
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
            let _held = hold(["s3cr3t\"value-1", "abc"]);
            let scrubbed = scrub(line);
            assert!(!scrubbed.contains("s3cr3t"), "{scrubbed}");
            assert_eq!(scrubbed.matches(REDACTED).count(), 2, "{scrubbed}");
            assert_eq!(scrub("abc words stay"), "abc words stay", "shorter than MIN_LEN");
        }
        assert_eq!(scrub(line), line, "forgotten once the message is handled");
    }

    #[test]
    fn overlapping_secrets_are_hidden_whole_and_go_quoted_forms_too() {
        let _held = hold(["AAAAAAAAAAzzzz", "zzzzBBBBBBBBBB", "ctl\u{1}value"]);
        assert_eq!(scrub("x AAAAAAAAAAzzzzBBBBBBBBBB y"), format!("x {REDACTED} y"));
        assert_eq!(scrub(r#"Invalid value: "ctl\x01value""#), format!("Invalid value: \"{REDACTED}\""));
        let long = format!("{}AAAAAAAAAAzzzz", "x".repeat(SCAN_LIMIT));
        assert_eq!(scrub(&long).len(), SCAN_LIMIT, "text past the scan limit is cut, not scanned");
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
        assert!(userinfo("https://orch.internal/api").is_empty());
        assert_eq!(userinfo("https://runner:pa/ss-w0rd-long@127.0.0.1:9"), vec!["runner:pa/ss-w0rd-long".to_string(), "pa/ss-w0rd-long".to_string()]);
        assert_eq!(url_without_userinfo("https://user:pa55word@orch.internal:8443/api"), "https://***@orch.internal:8443/api");
        assert_eq!(url_without_userinfo("https://runner:pa/ss-w0rd-long@127.0.0.1:9"), "https://***@127.0.0.1:9");
        assert_eq!(url_without_userinfo("https://orch.internal/api"), "https://orch.internal/api");
        assert_eq!(url_without_userinfo("user:pa55word@orch.internal/api"), "***@orch.internal/api");
    }
}
