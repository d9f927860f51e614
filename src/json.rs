//! Reading miniserde JSON trees by path: the two lookups every module that inspects a
//! Job, a Status, a manifest or a list needs. Not a query language.

use miniserde::json::Value;

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
}
