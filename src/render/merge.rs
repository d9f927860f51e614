//! The overlay used twice when a Job is rendered: the Orchestrator's JobSpec over the
//! embedded template, then the local policy over the result. It is a small, fixed subset
//! of Kubernetes' strategic merge patch, so its behaviour can be stated in full:
//!
//! 1. object over object: merged key by key, recursively;
//! 2. `null` in the overlay deletes the key from the base;
//! 3. array over array, when the key is one of [`MERGE_BY_NAME`]: items are matched by
//!    their `name`; a matched item is merged recursively (rules 1–3) into every base item
//!    of that name (into the first only in the lists of [`UNIQUE_NAMES`]), an unmatched
//!    one is appended in overlay order; items without a string `name` are appended;
//! 4. anything else: the overlay's value replaces the base's (arrays included, so an
//!    overlay's `args` or `tolerations` replaces the whole list).
//!
//! Not supported, on purpose: `$patch` directives, `$retainKeys`, ordering directives,
//! and merge keys other than `name` (ports, for instance, are replaced whole).

use miniserde::json::{Array, Value};

/// Array keys whose items are merged by `name` (rule 3).
pub const MERGE_BY_NAME: [&str; 6] = ["containers", "initContainers", "ephemeralContainers", "env", "volumes", "volumeMounts"];
/// The lists of [`MERGE_BY_NAME`] whose names Kubernetes requires to be unique (it refuses
/// a pod naming two containers or two volumes alike), so an overlay item need only reach the
/// first: a repeated name cannot run, and a large policy item is not copied per repeat.
pub const UNIQUE_NAMES: [&str; 4] = ["containers", "initContainers", "ephemeralContainers", "volumes"];

/// Overlays `overlay` onto `base` in place. The overlay is consumed: its values are
/// moved into `base`, never copied, so a large JobSpec exists once.
pub fn overlay(base: &mut Value, overlay: Value) {
    merge_value(base, overlay, None);
}

fn merge_value(base: &mut Value, patch: Value, key: Option<&str>) {
    match (base, patch) {
        (Value::Object(b), Value::Object(mut p)) => {
            for (k, pv) in std::mem::take(&mut *p) {
                if matches!(pv, Value::Null) {
                    b.remove(&k);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(bv) => merge_value(bv, pv, Some(&k)),
                    None => {
                        let mut fresh = pv;
                        strip_nulls(&mut fresh);
                        b.insert(k, fresh);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(mut p)) if key.is_some_and(|k| MERGE_BY_NAME.contains(&k)) => {
            let every = !key.is_some_and(|k| UNIQUE_NAMES.contains(&k));
            merge_by_name(b, std::mem::take(&mut *p), every)
        }
        (b, p) => {
            *b = p;
            strip_nulls(b);
        }
    }
}

/// Rule 3. With `every`, an overlay item goes into every base item of its name, not the
/// first only: Kubernetes accepts an `env` list naming one variable twice (the last one
/// wins in the container) and one volume mounted twice, so a policy that set `HTTPS_PROXY`
/// on the first of two would be outvoted by the second. The item (a variable or a mount)
/// is copied once per extra repeat only; the JobSpec, overlaid on a template without
/// repeats, never is.
fn merge_by_name(base: &mut Array, patch: Vec<Value>, every: bool) {
    for item in patch {
        let mut matches: Vec<usize> = match name_of(&item) {
            Some(n) => base.iter().enumerate().filter(|(_, b)| name_of(b) == Some(n)).map(|(i, _)| i).collect(),
            None => Vec::new(),
        };
        if !every {
            matches.truncate(1);
        }
        match matches.split_last() {
            Some((&last, others)) => {
                for &at in others {
                    merge_value(&mut base[at], item.clone(), None);
                }
                merge_value(&mut base[last], item, None);
            }
            None => {
                let mut fresh = item;
                strip_nulls(&mut fresh);
                base.push(fresh);
            }
        }
    }
}

fn name_of(v: &Value) -> Option<&str> {
    match v {
        Value::Object(o) => match o.get("name") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Removes `null` members from objects, recursively, so a deletion marker in an overlay
/// never reaches the Job.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, v| !matches!(v, Value::Null));
            o.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniserde::json;

    fn merged(base: &str, patch: &str) -> String {
        let mut b: Value = json::from_str(base).unwrap();
        overlay(&mut b, json::from_str(patch).unwrap());
        json::to_string(&b)
    }

    #[test]
    fn objects_merge_and_scalars_replace() {
        assert_eq!(merged(r#"{"a":{"x":1,"y":2},"b":1}"#, r#"{"a":{"y":3,"z":4},"b":2}"#), r#"{"a":{"x":1,"y":3,"z":4},"b":2}"#);
    }

    #[test]
    fn null_deletes_a_key() {
        assert_eq!(merged(r#"{"a":1,"b":2}"#, r#"{"a":null,"c":{"d":null,"e":1}}"#), r#"{"b":2,"c":{"e":1}}"#);
    }

    #[test]
    fn containers_merge_by_name_and_unmatched_are_appended() {
        let base = r#"{"containers":[{"name":"main","image":"a","env":[{"name":"A","value":"1"}]}]}"#;
        let patch = r#"{"containers":[{"name":"main","env":[{"name":"B","value":"2"},{"name":"A","value":"9"}]},{"name":"side","image":"s"}]}"#;
        assert_eq!(
            merged(base, patch),
            r#"{"containers":[{"env":[{"name":"A","value":"9"},{"name":"B","value":"2"}],"image":"a","name":"main"},{"image":"s","name":"side"}]}"#
        );
    }

    #[test]
    fn an_overlay_item_is_merged_into_every_base_item_of_its_name() {
        let base = r#"{"volumeMounts":[{"name":"cfg","mountPath":"/a","subPath":"a"},{"name":"other","mountPath":"/o"},{"name":"cfg","mountPath":"/b","subPath":"b"}]}"#;
        assert_eq!(
            merged(base, r#"{"volumeMounts":[{"name":"cfg","readOnly":true}]}"#),
            r#"{"volumeMounts":[{"mountPath":"/a","name":"cfg","readOnly":true,"subPath":"a"},{"mountPath":"/o","name":"other"},{"mountPath":"/b","name":"cfg","readOnly":true,"subPath":"b"}]}"#
        );
    }

    #[test]
    fn a_repeated_container_name_gets_the_overlay_once_since_kubernetes_refuses_it_anyway() {
        let base = r#"{"containers":[{"name":"main","image":"a"},{"name":"main","image":"b"}]}"#;
        assert_eq!(
            merged(base, r#"{"containers":[{"name":"main","resources":{}}]}"#),
            r#"{"containers":[{"image":"a","name":"main","resources":{}},{"image":"b","name":"main"}]}"#
        );
    }

    #[test]
    fn other_arrays_are_replaced_whole() {
        assert_eq!(merged(r#"{"args":["a","b"]}"#, r#"{"args":["c"]}"#), r#"{"args":["c"]}"#);
        assert_eq!(merged(r#"{"tolerations":[{"key":"a"}]}"#, r#"{"tolerations":[{"key":"b"}]}"#), r#"{"tolerations":[{"key":"b"}]}"#);
    }
}
