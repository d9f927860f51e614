//! Text from a peer (an API server's reply, a registry's error, a message's field, a
//! bundle's entry name) as our errors, logs and reports show it. One rule for all:
//! nothing it holds can start a line, move the cursor or hide what follows, and it is
//! short. Secrets are removed before, by [`crate::redact`].

/// `s` without its control characters, at most `max` characters of it, `…` when cut.
pub fn snippet(s: &str, max: usize) -> String {
    let mut kept = s.chars().filter(|c| !c.is_control());
    let mut out: String = kept.by_ref().take(max).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

/// `s` quoted and escaped as Rust writes a string's `Debug` (every control character and
/// quote visible as an escape), at most `max` characters of it, `…` after the quote when
/// cut: for text that may be anything, such as a name read from a bundle.
pub fn quoted(s: &str, max: usize) -> String {
    let cut: String = s.chars().take(max).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snippet_drops_control_characters_and_marks_a_cut() {
        assert_eq!(snippet("a\nb\u{1b}[2Jc", 10), "ab[2Jc");
        assert_eq!(snippet("abcdef", 3), "abc…");
        assert_eq!(snippet("abc", 3), "abc");
        assert_eq!(snippet("ab\n\n\n", 2), "ab", "control characters past the end are not a cut");
    }

    #[test]
    fn quoted_text_shows_every_control_character_as_an_escape() {
        assert_eq!(quoted("a\"b\n", 80), r#""a\"b\n""#);
        assert_eq!(quoted("abcdef", 3), r#""abc"…"#);
    }
}
