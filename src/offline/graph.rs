//! THE walk of a manifest graph (an image index, its manifests, their config and layers),
//! used by `bundle` (fetching from the source registry), `verify` (reading the bundle)
//! and `push` (uploading). Each digest is visited once (a visited set), manifests are
//! nested at most [`MAX_DEPTH`] deep, at most [`MAX_MANIFESTS`] manifests and
//! [`MAX_BLOBS`] blobs are visited, and the walk keeps its own stack (no recursion a
//! hostile graph could deepen). Visits come bottom-up, in the order a registry accepts
//! pushes: a manifest's blobs, then the manifest; an index's children, then the index.
//! Not followed: `subject` (attachments are found and walked apart, by [`super::attachment`]).

use std::collections::HashMap;

use miniserde::json::{Number, Value};

use super::digest::Digest;
use super::document;
use super::registry::Manifest;
use crate::error::{Error, Result};
use crate::json::get;

/// Manifests nested deeper than this (index → index → … → manifest) are refused; real
/// images use 2 levels.
pub const MAX_DEPTH: usize = 8;
/// Manifests one walk visits at most.
pub const MAX_MANIFESTS: usize = 1024;
/// Blobs (configs and layers) one walk visits at most.
pub const MAX_BLOBS: usize = 16384;

/// Declared sizes above this (64 GiB) are refused when a descriptor is parsed.
pub const MAX_BLOB_SIZE: u64 = 64 << 30;

/// Media types of an index.
pub const INDEX_TYPES: [&str; 2] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
/// The media types of an image manifest (one platform's).
pub const IMAGE_TYPES: [&str; 2] = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A content descriptor, parsed once: a digest, a size, a media type, a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type (empty when the descriptor has none).
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// `os/architecture`, when the descriptor names a platform.
    pub platform: Option<String>,
}

impl Descriptor {
    /// Parses a descriptor; errors name `what` (the manifest it is in).
    pub fn parse(v: &Value, what: &str) -> Result<Descriptor> {
        let digest = match get(v, &["digest"]) {
            Some(Value::String(s)) => Digest::parse(s).map_err(|why| Error::decode(what, format!("a descriptor's digest: {why}")))?,
            _ => return Err(Error::decode(what, "a descriptor without a digest")),
        };
        let size = match get(v, &["size"]) {
            Some(Value::Number(Number::U64(n))) if *n <= MAX_BLOB_SIZE => *n,
            Some(Value::Number(Number::U64(n))) => {
                return Err(Error::decode(what, format!("the descriptor of {digest} gives it {n} bytes, more than the {MAX_BLOB_SIZE} this tool accepts")))
            }
            _ => return Err(Error::decode(what, format!("the descriptor of {digest} has no size"))),
        };
        // Only ever sent as a Content-Type after `media_type_ok`; anything else is dropped.
        let media_type = match get(v, &["mediaType"]) {
            Some(Value::String(m)) if media_type_ok(m) => m.clone(),
            _ => String::new(),
        };
        let platform = match (get(v, &["platform", "os"]), get(v, &["platform", "architecture"])) {
            (Some(Value::String(os)), Some(Value::String(arch))) => Some(format!("{os}/{arch}")),
            _ => None,
        };
        Ok(Descriptor { media_type, digest, size, platform })
    }
}

/// A media type is sent as a `Content-Type`: `type/subtype` of token characters only.
pub fn media_type_ok(m: &str) -> bool {
    m.len() <= 255
        && m.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b))
}

/// What a manifest references.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Child manifests (an index's `manifests`).
    pub children: Vec<Descriptor>,
    /// Blobs (`config` and `layers`).
    pub blobs: Vec<Descriptor>,
    /// Its media type: the document's own `mediaType`, else guessed from its shape.
    pub media_type: String,
}

/// Parses a manifest or index (bounded: [`document::MAX_MANIFEST`], [`document::MAX_DEPTH`]).
pub fn parse(m: &Manifest) -> Result<Parsed> {
    let what = format!("manifest {}", m.digest);
    let value = document::parse(&m.bytes, &what, document::MAX_MANIFEST)?;
    if !matches!(value, Value::Object(_)) {
        return Err(Error::decode(&what, "not a JSON object"));
    }
    let list = |key: &str| -> Result<Vec<Descriptor>> {
        match get(&value, &[key]) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(|d| Descriptor::parse(d, &what)).collect(),
            Some(_) => Err(Error::decode(&what, format!("'{key}' is not a list"))),
        }
    };
    let children = list("manifests")?;
    let mut blobs = Vec::new();
    if let Some(config) = get(&value, &["config"]) {
        blobs.push(Descriptor::parse(config, &what)?);
    }
    blobs.extend(list("layers")?);
    let media_type = match get(&value, &["mediaType"]) {
        Some(Value::String(t)) if media_type_ok(t) => t.clone(),
        Some(Value::String(_)) => return Err(Error::decode(&what, "an unusable mediaType")),
        _ if get(&value, &["manifests"]).is_some() => INDEX_TYPES[0].to_string(),
        _ => IMAGE_MANIFEST.to_string(),
    };
    Ok(Parsed { children, blobs, media_type })
}

/// One visit of [`walk`].
pub enum Step<'a> {
    /// A blob (config or layer), with the descriptor that named it first.
    Blob(&'a Descriptor),
    /// A manifest, after everything it references; the top one comes last.
    Manifest(&'a Manifest, &'a Parsed),
}

/// Walks the graph under `top`. `fetch` produces a child manifest for its descriptor (the
/// walk checks its digest and size against the descriptor); `visit` sees each blob and
/// each manifest once, bottom-up.
pub fn walk(top: Manifest, fetch: &mut dyn FnMut(&Descriptor) -> Result<Manifest>, visit: &mut dyn FnMut(Step) -> Result<()>) -> Result<()> {
    struct Frame {
        manifest: Manifest,
        parsed: Parsed,
        next: usize,
    }
    let top_parsed = parse(&top)?;
    // Every digest seen, with the size first given for it: manifests and blobs apart, so a
    // layer whose digest is also an index child's (or the other way round) is still
    // fetched, visited and pushed as both.
    let mut seen: HashMap<Digest, u64> = HashMap::new();
    let mut seen_blobs: HashMap<Digest, u64> = HashMap::new();
    seen.insert(top.digest.clone(), top.bytes.len() as u64);
    let (mut manifests, mut blobs) = (1usize, 0usize);
    let mut stack = vec![Frame { manifest: top, parsed: top_parsed, next: 0 }];
    while let Some(frame) = stack.last_mut() {
        if let Some(child) = frame.parsed.children.get(frame.next).cloned() {
            frame.next += 1;
            let within = format!("manifest {}", frame.manifest.digest);
            if let Some(&size) = seen.get(&child.digest) {
                if size != child.size {
                    return Err(Error::decode(within, format!("{} is given as {} bytes here and {size} bytes elsewhere", child.digest, child.size)));
                }
                continue;
            }
            if stack.len() >= MAX_DEPTH {
                return Err(Error::decode(within, format!("manifests are nested deeper than {MAX_DEPTH} levels; refused")));
            }
            manifests += 1;
            if manifests > MAX_MANIFESTS {
                return Err(Error::decode(within, format!("the graph holds more than {MAX_MANIFESTS} manifests; refused")));
            }
            let manifest = fetch(&child)?;
            if manifest.digest != child.digest || manifest.bytes.len() as u64 != child.size {
                return Err(Error::decode(
                    within,
                    format!("the manifest fetched for {} ({} bytes) is {} ({} bytes)", child.digest, child.size, manifest.digest, manifest.bytes.len()),
                ));
            }
            let parsed = parse(&manifest)?;
            seen.insert(child.digest.clone(), child.size);
            stack.push(Frame { manifest, parsed, next: 0 });
            continue;
        }
        let Some(frame) = stack.pop() else { break };
        for blob in &frame.parsed.blobs {
            if let Some(&size) = seen_blobs.get(&blob.digest) {
                if size != blob.size {
                    return Err(Error::decode(
                        format!("manifest {}", frame.manifest.digest),
                        format!("{} is given as {} bytes here and {size} bytes elsewhere", blob.digest, blob.size),
                    ));
                }
                continue;
            }
            blobs += 1;
            if blobs > MAX_BLOBS {
                return Err(Error::decode(format!("manifest {}", frame.manifest.digest), format!("the graph holds more than {MAX_BLOBS} blobs; refused")));
            }
            seen_blobs.insert(blob.digest.clone(), blob.size);
            visit(Step::Blob(blob))?;
        }
        visit(Step::Manifest(&frame.manifest, &frame.parsed))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(children: &[&Manifest]) -> Manifest {
        let list: Vec<String> =
            children.iter().map(|c| format!(r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#, INDEX_TYPES[0], c.digest, c.bytes.len())).collect();
        Manifest::new(INDEX_TYPES[0].into(), format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, list.join(",")).into_bytes())
    }

    fn image(layer: &str) -> Manifest {
        let d = Digest::of(layer.as_bytes());
        Manifest::new(
            IMAGE_MANIFEST.into(),
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{d}","size":{}}},"layers":[{{"digest":"{d}","size":{}}}]}}"#, layer.len(), layer.len())
                .into_bytes(),
        )
    }

    fn run(top: &Manifest, all: &[Manifest]) -> (Result<()>, usize, Vec<String>) {
        let mut fetches = 0;
        let mut order = Vec::new();
        let store: HashMap<Digest, Manifest> = all.iter().map(|m| (m.digest.clone(), m.clone())).collect();
        let result = walk(
            top.clone(),
            &mut |d| {
                fetches += 1;
                store.get(&d.digest).cloned().ok_or_else(|| Error::decode("test", "missing"))
            },
            &mut |step| {
                order.push(match step {
                    Step::Blob(d) => format!("blob {}", d.digest.short()),
                    Step::Manifest(m, _) => format!("manifest {}", m.digest.short()),
                });
                Ok(())
            },
        );
        (result, fetches, order)
    }

    #[test]
    fn a_dag_with_shared_children_visits_each_digest_once() {
        let mut all = vec![image("layer")];
        for _ in 0..6 {
            let below = all.last().unwrap().clone();
            all.push(index(&[&below, &below, &below]));
        }
        let top = all.pop().unwrap();
        let (result, fetches, order) = run(&top, &all);
        result.unwrap();
        assert_eq!(fetches, 6, "each child fetched once");
        assert_eq!(order.len(), 8, "{order:?}");
        assert!(order[0].starts_with("blob") && order[7] == format!("manifest {}", top.digest.short()), "{order:?}");
    }

    #[test]
    fn manifests_nested_deeper_than_the_bound_are_refused() {
        let mut all = vec![image("layer")];
        for _ in 0..MAX_DEPTH {
            let below = all.last().unwrap().clone();
            all.push(index(&[&below]));
        }
        let top = all.pop().unwrap();
        let e = run(&top, &all).0.unwrap_err().to_string();
        assert!(e.contains("nested deeper than 8"), "{e}");
        let top = all.pop().unwrap();
        run(&top, &all).0.unwrap();
    }

    #[test]
    fn a_child_whose_digest_is_a_tag_or_a_path_is_refused() {
        for digest in ["latest", "sha256:../../x"] {
            let top = Manifest::new(INDEX_TYPES[0].into(), format!(r#"{{"manifests":[{{"digest":"{digest}","size":1}}]}}"#).into_bytes());
            let e = run(&top, &[]).0.unwrap_err().to_string();
            assert!(e.contains("not a digest"), "{e}");
        }
    }

    #[test]
    fn a_fetched_child_must_match_its_descriptor() {
        let child = image("a");
        let other = image("b");
        let top = index(&[&child]);
        let result = walk(top, &mut |_| Ok(other.clone()), &mut |_| Ok(()));
        assert!(result.unwrap_err().to_string().contains("the manifest fetched for"));
    }

    #[test]
    fn a_layer_whose_digest_is_also_an_index_child_is_visited_as_both() {
        // The child manifest's bytes are also served as a layer of the first image.
        let child = image("child-layer");
        let d = &child.digest;
        let first = Manifest::new(
            IMAGE_MANIFEST.into(),
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{d}","size":{}}},"layers":[]}}"#, child.bytes.len()).into_bytes(),
        );
        let top = index(&[&first, &child]);
        let (result, fetches, order) = run(&top, &[first.clone(), child.clone()]);
        result.unwrap();
        assert_eq!(fetches, 2, "{order:?}");
        assert!(order.contains(&format!("blob {}", d.short())) && order.contains(&format!("manifest {}", d.short())), "{order:?}");
        // And the other way round: a manifest first, then a layer with its digest.
        let top = index(&[&child, &first]);
        let (result, _, order) = run(&top, &[first, child.clone()]);
        result.unwrap();
        assert!(order.contains(&format!("blob {}", d.short())) && order.contains(&format!("manifest {}", d.short())), "{order:?}");
    }
}
