//! Differential bundles (`bundle --since OLD`): only the blobs OLD does not hold (OLD's
//! own blobs and those it left to its base), and a git bundle of the module's commits
//! since OLD's commit, whose one prerequisite is that commit. Every manifest is carried
//! (they are a few KB; carrying them keeps every graph walkable, so `verify` still checks
//! each one's digest and `push` can tag each artifact).
//!
//! `manifest.json` records the base under `base`: OLD's trust anchor, every blob omitted
//! (`omits`) and the module's prerequisite commit. What the record claims is never what
//! `push` trusts: `verify` refuses a bundle unless the blobs missing from it are exactly
//! the ones `omits` names, and `push` asks the target registry for every blob the bundle
//! does not carry (whatever the record says) and the git target for the prerequisite
//! commit, and refuses, naming each one missing, before it uploads anything. Not
//! supported: omitting manifests, or a base on a registry other than the push target.

use std::collections::{BTreeMap, BTreeSet};

use miniserde::json::{Array, Object, Value};

use super::digest::{shown, Digest};
use super::graph::Step;
use super::registry::Repository;
use crate::error::{Error, Result};
use crate::json::get;

/// Blobs omitted are listed at most this many times in a message.
const SHOWN_MISSING: usize = 10;
/// Blobs one base may omit.
pub const MAX_OMITS: usize = 100_000;

/// What the base (OLD) holds, while a differential bundle is written: per source
/// repository (which decides the target repository, and a registry keeps blobs per
/// repository), every blob OLD's artifacts reference, carried or left to OLD's own base.
#[derive(Debug, Clone)]
pub struct Known {
    have: BTreeMap<Repository, BTreeSet<Digest>>,
    /// The blobs referenced and left out so far.
    pub omitted: BTreeSet<Digest>,
    anchor: Digest,
    /// OLD's module commit.
    pub commit: String,
}

impl Known {
    /// The base `old` (already verified): the blobs each of its artifacts' repositories holds
    /// once it is pushed.
    pub fn of(old: &super::bundle::Opened) -> Result<Known> {
        let mut have: BTreeMap<Repository, BTreeSet<Digest>> = BTreeMap::new();
        for artifact in &old.artifacts {
            let blobs = have.entry(artifact.source.repository.clone()).or_default();
            old.walk(artifact, &mut |step| {
                if let Step::Blob(b) = step {
                    blobs.insert(b.digest.clone());
                }
                Ok(())
            })?;
        }
        Ok(Known { have, omitted: BTreeSet::new(), anchor: old.sums_digest.clone(), commit: old.module.commit.clone() })
    }

    /// True (and recorded) when the base holds `digest` in `repository`, so the bundle
    /// leaves it out there.
    pub fn omit(&mut self, repository: &Repository, digest: &Digest) -> bool {
        let known = self.have.get(repository).is_some_and(|blobs| blobs.contains(digest));
        if known {
            self.omitted.insert(digest.clone());
        }
        known
    }

    /// The `base` record of `manifest.json`: the blobs omitted, less those `carried` (left
    /// out for one repository, carried for another); `prerequisite` is the commit the git
    /// bundle builds on (none when it is complete: the module did not move forward from OLD's).
    pub fn record(&self, carried: &std::collections::HashSet<Digest>, prerequisite: Option<&str>) -> Value {
        let mut o = Object::new();
        o.insert("anchor".into(), Value::String(self.anchor.hex().to_string()));
        let mut omits = Array::new();
        omits.extend(self.omitted.iter().filter(|d| !carried.contains(*d)).map(|d| Value::String(d.to_string())));
        o.insert("omits".into(), Value::Array(omits));
        if let Some(commit) = prerequisite {
            o.insert("moduleCommit".into(), Value::String(commit.to_string()));
        }
        Value::Object(o)
    }
}

/// The base a differential bundle needs, as `manifest.json` records it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The base bundle's trust anchor (the sha256 of its `SHA256SUMS`).
    pub anchor: Digest,
    /// Blobs referenced but not carried: the target must already hold them.
    pub omits: BTreeSet<Digest>,
    /// The commit the module's git bundle builds on (its one prerequisite), if any.
    pub prerequisite: Option<String>,
}

impl Base {
    /// The `base` record of `manifest.json`, if there is one; refused when malformed.
    pub fn parse(manifest: &Value) -> Result<Option<Base>> {
        let doc = "manifest.json";
        let Some(record) = get(manifest, &["base"]) else { return Ok(None) };
        let bad = |why: &str| Error::decode(doc, format!("its base record {why}"));
        let Value::Object(fields) = record else { return Err(bad("is not an object")) };
        if let Some(k) = fields.keys().find(|k| !["anchor", "omits", "moduleCommit"].contains(&k.as_str())) {
            return Err(bad(&format!("has the unknown field {}", shown(k))));
        }
        let anchor = match fields.get("anchor") {
            Some(Value::String(t)) => Digest::from_hex(t).map_err(|_| bad("has no usable anchor"))?,
            _ => return Err(bad("has no anchor")),
        };
        let Some(Value::Array(list)) = fields.get("omits") else { return Err(bad("has no omits list")) };
        if list.len() > MAX_OMITS {
            return Err(bad(&format!("omits more than {MAX_OMITS} blobs")));
        }
        let mut omits = BTreeSet::new();
        for v in list.iter() {
            let Value::String(t) = v else { return Err(bad("omits something that is not a digest")) };
            let d = Digest::parse(t).map_err(|why| bad(&format!("omits {why}")))?;
            if !omits.insert(d) {
                return Err(bad(&format!("omits {} twice", shown(t))));
            }
        }
        let prerequisite = match fields.get("moduleCommit") {
            None => None,
            Some(Value::String(c)) if (c.len() == 40 || c.len() == 64) && c.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
                Some(c.clone())
            }
            Some(_) => return Err(bad("has no usable moduleCommit")),
        };
        Ok(Some(Base { anchor, omits, prerequisite }))
    }

    /// What `verify` and `list` say about it.
    pub fn describe(&self) -> String {
        let module = match &self.prerequisite {
            Some(c) => format!("; the module's git target must already hold commit {c}"),
            None => String::new(),
        };
        format!(
            "differential: it needs the base bundle with SHA256SUMS sha256: {} already pushed to the target: {} blobs it references are not in it and must be in the target registry{module}",
            self.anchor.hex(),
            self.omits.len()
        )
    }
}

/// The refusal of a push whose target lacks part of the base: each missing thing named
/// (the first [`SHOWN_MISSING`]), and what to do.
pub fn missing_error(base: &Base, missing: &[String]) -> Error {
    let mut list = missing.iter().take(SHOWN_MISSING).cloned().collect::<Vec<_>>().join("; ");
    if missing.len() > SHOWN_MISSING {
        list.push_str(&format!("; and {} more", missing.len() - SHOWN_MISSING));
    }
    Error::config(
        "push of a differential bundle",
        format!("the target lacks what its base holds ({} missing): {list}; nothing was pushed", missing.len()),
        format!("push the base bundle (SHA256SUMS sha256: {}) to this target first, or push a complete bundle", base.anchor.hex()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Base>> {
        Base::parse(&miniserde::json::from_str::<Value>(text).unwrap())
    }

    #[test]
    fn a_hostile_base_record_is_refused_not_trusted() {
        let a = "a".repeat(64);
        let d = format!("sha256:{}", "b".repeat(64));
        assert_eq!(parse("{}").unwrap(), None);
        let good = parse(&format!(r#"{{"base":{{"anchor":"{a}","omits":["{d}"],"moduleCommit":"{}"}}}}"#, "c".repeat(40))).unwrap().unwrap();
        assert_eq!((good.omits.len(), good.prerequisite.as_deref().map(str::len)), (1, Some(40)));
        for bad in [
            r#"{"base":[]}"#.to_string(),
            r#"{"base":{"omits":[]}}"#.to_string(),
            format!(r#"{{"base":{{"anchor":"{a}"}}}}"#),
            format!(r#"{{"base":{{"anchor":"{a}","omits":["sha256:../x"]}}}}"#),
            format!(r#"{{"base":{{"anchor":"{a}","omits":["{d}","{d}"]}}}}"#),
            format!(r#"{{"base":{{"anchor":"{a}","omits":[],"moduleCommit":"--upload-pack=evil"}}}}"#),
            format!(r#"{{"base":{{"anchor":"{a}","omits":[],"skipChecks":true}}}}"#),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
