//! JSON at the boundary, and reading miniserde trees by path.
//!
//! Every document the agent receives from a peer or a file (a message, a Kubernetes
//! reply, the policy file) is parsed by [`parse`], which first measures the text's
//! [`Shape`] in one flat pass and refuses it, before any tree is built, when it nests
//! deeper than [`MAX_DEPTH`] or holds more than [`MAX_VALUES`] values or
//! [`MAX_CONTAINERS`] objects and arrays. Everything downstream (the renderer's merge,
//! `Value::clone`, the pretty printer) recurses over the tree, so the depth bound is what
//! keeps a hostile document from overflowing a thread's stack, and the counts are what
//! bound the memory a tree of a capped size can take (see [`Shape::weight`]).
//!
//! Not a query language, not a streaming parser: miniserde builds the tree; this module
//! only decides whether it may.

use miniserde::json::Value;

use crate::error::{Error, Result};

/// Deepest nesting of objects and arrays accepted. A Job, with its pod template,
/// affinity terms and managed fields, nests about 15 deep; the bound is what keeps the
/// recursive code downstream (merge, clone, pretty printing) within a small stack.
pub const MAX_DEPTH: usize = 64;
/// Most values (scalars, objects and arrays) in one document. A Job is a few hundred.
pub const MAX_VALUES: usize = 32_768;
/// Most objects and arrays in one document (each costs a map or vector node).
pub const MAX_CONTAINERS: usize = 4_096;

/// What a document's text holds, measured without building a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// The text's length in bytes.
    pub bytes: usize,
    /// The deepest nesting of objects and arrays (0 for a bare scalar).
    pub depth: usize,
    /// Values of every kind, containers included.
    pub values: usize,
    /// Objects and arrays.
    pub containers: usize,
}

impl Shape {
    /// Measures `text` in one pass. Exact for valid JSON; for invalid JSON the figures are
    /// an approximation, and miniserde refuses the text afterwards anyway.
    pub fn of(text: &str) -> Shape {
        let mut shape = Shape { bytes: text.len(), ..Shape::default() };
        let (mut depth, mut in_string, mut escaped, mut in_scalar) = (0usize, false, false, false);
        for &b in text.as_bytes() {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            let scalar_byte = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.');
            if scalar_byte && !in_scalar {
                shape.values += 1;
            }
            in_scalar = scalar_byte;
            match b {
                b'"' => {
                    in_string = true;
                    shape.values += 1;
                }
                b'[' | b'{' => {
                    depth += 1;
                    shape.depth = shape.depth.max(depth);
                    shape.values += 1;
                    shape.containers += 1;
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        shape
    }

    /// Why a document of this shape is refused, if it is.
    pub fn refusal(&self) -> Option<String> {
        if self.depth > MAX_DEPTH {
            Some(format!("it nests deeper than {MAX_DEPTH} levels"))
        } else if self.values > MAX_VALUES {
            Some(format!("it holds more than {MAX_VALUES} values"))
        } else if self.containers > MAX_CONTAINERS {
            Some(format!("it holds more than {MAX_CONTAINERS} objects and arrays"))
        } else {
            None
        }
    }

    /// An upper bound, in bytes, on the memory that handling a document of this shape can
    /// hold at once: its text, the tree miniserde builds (a map node or a vector per
    /// container, a slot and a key per value, the strings' bytes), and the JSON written
    /// back out from it (each growing buffer briefly holds its old and new copies).
    /// `tests/weight.rs` holds it against a counting allocator for the costliest shapes.
    pub fn weight(&self) -> usize {
        const PER_CONTAINER: usize = 1_024;
        const PER_VALUE: usize = 128;
        self.bytes * 6 + self.containers * PER_CONTAINER + self.values * PER_VALUE
    }
}

/// Parses `text`, refusing it first when its [`Shape`] is out of bounds. `document`
/// names it in the error ("create-job message", "Kubernetes reply to get Job ns/name").
pub fn parse(text: &str, document: &str) -> Result<Value> {
    if let Some(why) = Shape::of(text).refusal() {
        return Err(Error::decode(document, why));
    }
    miniserde::json::from_str(text).map_err(|_| Error::decode(document, "not valid JSON"))
}

/// The string members named by `keys` at the top level of the JSON object `text` (the
/// last one wins for a repeated key, as in miniserde; `None` where a key is absent or not
/// a string), read in one flat pass without building a tree, so that a document refused
/// for its nesting can still be attributed. `None` when `text` is not one object.
pub fn top_level_strings(text: &str, keys: &[&str]) -> Option<Vec<Option<String>>> {
    let b = text.as_bytes();
    let mut found = vec![None; keys.len()];
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_space(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_space(b, i + 1) == b.len()).then_some(found);
    }
    loop {
        let key_end = string_end(b, i)?;
        let key: String = miniserde::json::from_str(&text[i..key_end]).ok()?;
        i = skip_space(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_space(b, i + 1);
        let value_end = value_end(b, i)?;
        if let Some(slot) = keys.iter().position(|k| *k == key) {
            found[slot] = if b[i] == b'"' { miniserde::json::from_str(&text[i..value_end]).ok() } else { None };
        }
        i = skip_space(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_space(b, i + 1),
            Some(b'}') => return (skip_space(b, i + 1) == b.len()).then_some(found),
            _ => return None,
        }
    }
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string literal that starts at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The index just past the value that starts at `i`, containers skipped flat.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'[' | b'{' => {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let len = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')).unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

/// The value at `path` through nested objects.
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(o) => o.get(*k),
        _ => None,
    })
}

/// The string at `path`, if there is one.
pub fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    match get(v, path) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// `s` as a JSON string literal, quotes and escapes included.
pub fn quote(s: &str) -> String {
    miniserde::json::to_string(s)
}

/// Pretty-prints a JSON value with two-space indentation (miniserde only writes compact).
pub fn pretty(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(value, 0, &mut out);
    out.push('\n');
    out
}

fn write_pretty(value: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| "  ".repeat(d);
    match value {
        Value::Object(o) if !o.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in o.iter().enumerate() {
                out.push_str(&format!("{}{}: ", pad(depth + 1), miniserde::json::to_string(k)));
                write_pretty(v, depth + 1, out);
                out.push_str(if i + 1 < o.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{}}}", pad(depth)));
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, v) in a.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_pretty(v, depth + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{}]", pad(depth)));
        }
        other => out.push_str(&miniserde::json::to_string(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_nested_strings_and_stop_at_non_objects() {
        let v: Value = miniserde::json::from_str(r#"{"a":{"b":"c","n":1},"l":[1]}"#).unwrap();
        assert_eq!(text(&v, &["a", "b"]), Some("c"));
        assert_eq!(text(&v, &["a", "n"]), None);
        assert!(get(&v, &["l", "0"]).is_none());
        assert!(get(&v, &[]).is_some());
    }

    #[test]
    fn shape_counts_depth_values_and_containers_and_ignores_brackets_in_strings() {
        let s = Shape::of(r#"{"a":[1,-2.5e3,true,null,"[[{{\"]"],"b":{}}"#);
        assert_eq!((s.depth, s.containers), (2, 3));
        // The object, "a", the array, five scalars, "b" and the inner object.
        assert_eq!(s.values, 10);
        assert_eq!(Shape::of("7").depth, 0);
    }

    #[test]
    fn deep_nesting_is_refused_before_a_tree_is_built() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&at_limit, "doc").is_ok());
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = parse(&over, "test document").unwrap_err().to_string();
        assert_eq!(e, format!("could not decode test document: it nests deeper than {MAX_DEPTH} levels"));
        // Far deeper than any stack would survive, and unbalanced: refused just the same.
        let abyss = "[".repeat(1 << 20);
        assert!(parse(&abyss, "doc").unwrap_err().to_string().contains("nests deeper"));
    }

    #[test]
    fn too_many_values_or_containers_are_refused() {
        let many = format!("[{}0]", "0,".repeat(MAX_VALUES));
        assert!(parse(&many, "doc").unwrap_err().to_string().contains("more than 32768 values"));
        let boxes = format!("[{}{{}}]", "{},".repeat(MAX_CONTAINERS));
        assert!(parse(&boxes, "doc").unwrap_err().to_string().contains("objects and arrays"));
    }

    #[test]
    fn top_level_strings_are_read_flat_whatever_the_depth_below() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#" {{"job_id":"d-\u0031","x":{deep},"n":-1.5,"job_id":"d-2","t":{{"a":"}}"}},"k":7}} "#);
        let got = top_level_strings(&text, &["job_id", "k", "missing"]).unwrap();
        assert_eq!(got, vec![Some("d-2".to_string()), None, None]);
        assert_eq!(top_level_strings(r#"{"a":"\"}"}"#, &["a"]).unwrap(), vec![Some("\"}".to_string())]);
        for bad in ["", "[]", r#"{"a":"b""#, r#"{"a":"b"} x"#, r#"{"a" "b"}"#, r#"{"a":[}"#, r#"{"a":}"#] {
            assert!(top_level_strings(bad, &["a"]).is_none(), "{bad}");
        }
        assert_eq!(top_level_strings(" {} ", &["a"]).unwrap(), vec![None]);
    }

    #[test]
    fn quote_escapes_like_json() {
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
    }

    #[test]
    fn pretty_output_parses_back_to_the_same_value() {
        let text = r#"{"a":[1,{"b":"c\n"},[]],"d":{},"e":null,"f":-1.5}"#;
        let v: Value = miniserde::json::from_str(text).unwrap();
        let again: Value = miniserde::json::from_str(&pretty(&v)).unwrap();
        assert_eq!(miniserde::json::to_string(&again), miniserde::json::to_string(&v));
        assert!(pretty(&v).contains("\n  \"a\": [\n    1,"));
    }
}
