//! Attachments: what a registry keeps beside an image under the image's digest, carried
//! across the gap with it and mirrored next to it. Four kinds: the tags cosign (and
//! skopeo) write, `sha256-<hex>.sig` (signatures), `.att` (attestations) and `.sbom`;
//! and OCI 1.1 referrers (the referrers API, else its `sha256-<hex>` tag schema). The
//! agent's SBOM is one more `sbom` attachment, which `bundle` makes itself: the file
//! `/opt/runner/kubernetes-agent.cdx.json` from the agent image's own layer (so it is
//! bound to the image digest through the layer digest, whoever published the image),
//! wrapped as an OCI 1.1 artifact (`artifactType: application/vnd.cyclonedx+json`) whose
//! `subject` is that platform's manifest.
//!
//! An attachment's tag is never read from a bundle or a registry as text: it is derived
//! from its kind and its subject's [`Digest`], so nothing hostile reaches a URL. Not
//! supported: attachments of attachments (a signature's signature), and referrers beyond
//! [`MAX_REFERRERS`] per subject (refused, not cut).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use miniserde::json::{Array, Number, Object, Value};

use super::digest::Digest;
use super::document;
use super::graph::{self, Descriptor, INDEX_TYPES};
use super::registry::{Manifest, Registry, Repository, Selector};
use crate::error::{Error, Result};
use crate::json::{get, text};

/// Referrers one subject may have in a bundle.
pub const MAX_REFERRERS: usize = 64;
/// Attachments one artifact may have in `manifest.json`.
pub const MAX_ATTACHMENTS: usize = 1024;
/// Where the agent image keeps its SBOM.
pub const SBOM_PATH: &str = "opt/runner/kubernetes-agent.cdx.json";
/// The artifact type (and layer media type) of a CycloneDX JSON SBOM.
pub const SBOM_TYPE: &str = "application/vnd.cyclonedx+json";
/// Size bound of the SBOM taken from the image.
pub(crate) const MAX_SBOM: u64 = 16 << 20;
/// Bytes of one decompressed layer read at most while looking for the SBOM (a layer
/// that inflates further, a gzip bomb, is given up on).
pub(crate) const MAX_LAYER_READ: u64 = 2 << 30;
/// The OCI empty descriptor's content (`application/vnd.oci.empty.v1+json`).
const EMPTY: &[u8] = b"{}";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A cosign signature manifest (`sha256-<hex>.sig`).
    Signature,
    /// A cosign attestation manifest (`sha256-<hex>.att`).
    Attestation,
    /// An SBOM (`sha256-<hex>.sbom`, or a referrer of artifact type CycloneDX).
    Sbom,
    /// Any other OCI 1.1 referrer (pushed by digest; no tag of its own).
    Referrer,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Signature, Kind::Attestation, Kind::Sbom, Kind::Referrer];

    /// The name in `manifest.json`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Attestation => "attestation",
            Kind::Sbom => "sbom",
            Kind::Referrer => "referrer",
        }
    }

    /// The tag of this kind for `subject` (`sha256-<hex>.sig`), none for a referrer.
    pub fn tag(self, subject: &Digest) -> Option<String> {
        let suffix = match self {
            Kind::Signature => "sig",
            Kind::Attestation => "att",
            Kind::Sbom => "sbom",
            Kind::Referrer => return None,
        };
        Some(format!("sha256-{}.{suffix}", subject.hex()))
    }
}

/// One attachment of an artifact, as `manifest.json` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// What it is.
    pub kind: Kind,
    /// The manifest it is attached to: the artifact's top or one of its child manifests.
    pub subject: Digest,
    /// Its own manifest.
    pub digest: Digest,
    /// Its manifest's media type.
    pub media_type: String,
    /// Its manifest's size.
    pub size: u64,
}

impl Attachment {
    fn of(kind: Kind, subject: &Digest, manifest: &Manifest) -> Attachment {
        Attachment {
            kind,
            subject: subject.clone(),
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            size: manifest.bytes.len() as u64,
        }
    }

    /// Its `manifest.json` record.
    pub fn record(&self) -> Value {
        let mut o = Object::new();
        o.insert("kind".into(), Value::String(self.kind.name().into()));
        o.insert("subject".into(), Value::String(self.subject.to_string()));
        o.insert("digest".into(), Value::String(self.digest.to_string()));
        o.insert("mediaType".into(), Value::String(self.media_type.clone()));
        o.insert("size".into(), Value::Number(Number::U64(self.size)));
        if let Some(tag) = self.kind.tag(&self.subject) {
            o.insert("tag".into(), Value::String(tag));
        }
        Value::Object(o)
    }

    /// Its descriptor in `oci/index.json`, named by its tag when it has one.
    pub fn descriptor(&self) -> Value {
        let mut o = Object::new();
        o.insert("mediaType".into(), Value::String(self.media_type.clone()));
        o.insert("digest".into(), Value::String(self.digest.to_string()));
        o.insert("size".into(), Value::Number(Number::U64(self.size)));
        if let Some(tag) = self.kind.tag(&self.subject) {
            let mut a = Object::new();
            a.insert(super::bundle::ROLE_ANNOTATION.into(), Value::String(tag));
            o.insert("annotations".into(), Value::Object(a));
        }
        Value::Object(o)
    }

    /// Parses a record of `manifest.json` (`what` names the artifact). A `tag`, if
    /// given, must be the one kind and subject make: it is never used as given.
    pub fn parse(record: &Value, what: &str) -> std::result::Result<Attachment, String> {
        let kind_name = text(record, &["kind"]).unwrap_or("");
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind_name)
            .ok_or_else(|| format!("{what}: an attachment of unknown kind {}", super::digest::shown(kind_name)))?;
        let digest_at = |key: &str| Digest::parse(text(record, &[key]).unwrap_or("")).map_err(|why| format!("{what}: an attachment's {key}: {why}"));
        let (subject, digest) = (digest_at("subject")?, digest_at("digest")?);
        let media_type = text(record, &["mediaType"]).unwrap_or("").to_string();
        if !graph::media_type_ok(&media_type) {
            return Err(format!("{what}: the attachment {digest} has an unusable mediaType"));
        }
        let Some(Value::Number(Number::U64(size))) = get(record, &["size"]) else { return Err(format!("{what}: the attachment {digest} has no size")) };
        if *size > document::MAX_MANIFEST as u64 {
            return Err(format!("{what}: the attachment {digest} is larger than a manifest may be"));
        }
        match get(record, &["tag"]) {
            None => {}
            Some(Value::String(t)) if Some(t) == kind.tag(&subject).as_ref() => {}
            Some(_) => return Err(format!("{what}: the attachment {digest} names a tag that is not its kind's for its subject")),
        }
        Ok(Attachment { kind, subject, digest, media_type, size: *size })
    }
}

/// The `subject` a manifest names (OCI 1.1), if any.
pub fn subject_of(manifest: &Manifest) -> Result<Option<Digest>> {
    let what = format!("manifest {}", manifest.digest);
    let value = document::parse(&manifest.bytes, &what, document::MAX_MANIFEST)?;
    match get(&value, &["subject"]) {
        None => Ok(None),
        Some(s) => Ok(Some(Descriptor::parse(s, &what)?.digest)),
    }
}

/// The attachments `source` holds for `top` (an artifact's top manifest) and its child
/// manifests, each with its manifest: the agent image's SBOM first (made from its layer
/// when `sbom`), then the `.sig`, `.att` and `.sbom` tags,
/// then referrers; last, the signature of `narrowed` (the source's index that `--platform`
/// narrowed into `top`), when it has one. `stage` is called on what each attachment needs
/// in the bundle.
pub fn find(
    source: &Registry,
    repository: &Repository,
    top: &Manifest,
    narrowed: Option<&Digest>,
    sbom: bool,
    stage: &mut dyn FnMut(Stage) -> Result<()>,
) -> Result<Vec<Attachment>> {
    let parsed = graph::parse(top)?;
    // Each digest once: an index may list one child many times (the walk visits it once).
    let mut subjects = vec![(top.digest.clone(), top.media_type.clone(), top.bytes.len() as u64)];
    for c in &parsed.children {
        if !subjects.iter().any(|(d, _, _)| *d == c.digest) {
            subjects.push((c.digest.clone(), c.media_type.clone(), c.size));
        }
    }
    // What each layer held, so that platforms sharing a layer fetch it again once, not once each.
    let mut scanned = Scanned::default();
    let mut found: Vec<Attachment> = Vec::new();
    if sbom {
        // Each image manifest: the top when it is one, else the index's children (whatever
        // media type their descriptors claim: what a manifest is, its own bytes say).
        for (digest, _, size) in &subjects {
            if *digest == top.digest && !parsed.children.is_empty() {
                continue;
            }
            let mut manifest = if *digest == top.digest { top.clone() } else { source.manifest(repository, &Selector::Digest(digest.clone()))? };
            typed(&mut manifest)?;
            if INDEX_TYPES.contains(&manifest.media_type.as_str()) {
                continue;
            }
            let fetch = |layer: &Descriptor, out: &mut dyn Write| source.blob(repository, &layer.digest, layer.size, out);
            let Some(sbom) = sbom_of_image(&manifest, &mut scanned, &fetch, false)? else { continue };
            let subject = Descriptor { media_type: manifest.media_type.clone(), digest: digest.clone(), size: *size, platform: None };
            let artifact = sbom_artifact(&sbom.digest, sbom.size, &subject);
            stage(Stage::Bytes(EMPTY.to_vec()))?;
            if let Some(bytes) = sbom.bytes {
                stage(Stage::Bytes(bytes))?;
            }
            eprintln!("  SBOM of {}: {SBOM_PATH} from its layer ({} bytes), attached as {}", digest.short(), sbom.size, artifact.digest.short());
            found.push(Attachment::of(Kind::Sbom, digest, &artifact));
            stage(Stage::Bytes(artifact.bytes))?;
        }
    }
    if sbom && found.is_empty() {
        eprintln!("  no SBOM: no platform of {} holds {SBOM_PATH} in a tar or tar+gzip layer; the bundle carries none of its own", top.digest.short());
    }
    // The agent image carries its cosign signatures and the SBOM made here from its layers,
    // nothing else: whatever else the source attached to it (attestations, other SBOMs in
    // any wrapping, referrers) is left behind, said once; verify refuses anything else.
    let mut left_behind = 0;
    for (subject, _, _) in &subjects {
        for kind in [Kind::Signature, Kind::Attestation, Kind::Sbom] {
            if found.iter().any(|a| a.kind == kind && a.subject == *subject) {
                continue;
            }
            let Some(tag) = kind.tag(subject) else { continue };
            let Some(mut manifest) = source.manifest_if_any(repository, &Selector::Tag(tag.clone()))? else { continue };
            typed(&mut manifest)?;
            if sbom && !(kind == Kind::Signature && is_simple_signing(&manifest)) {
                left_behind += 1;
                continue;
            }
            eprintln!("  {} of {}: {tag} = {}", kind.name(), subject.short(), manifest.digest.short());
            found.push(Attachment::of(kind, subject, &manifest));
            stage(Stage::Graph(manifest))?;
        }
        let index = match source.referrers(repository, subject)? {
            Some(index) => Some(index),
            None => source.manifest_if_any(repository, &Selector::Tag(format!("sha256-{}", subject.hex())))?,
        };
        let Some(index) = index else { continue };
        let listed = graph::parse(&index)?.children;
        if listed.len() > MAX_REFERRERS {
            return Err(Error::decode(
                format!("the referrers of {subject}"),
                format!("they are {}, more than the {MAX_REFERRERS} this tool carries", listed.len()),
            ));
        }
        for d in listed {
            if found.iter().any(|a| a.digest == d.digest) {
                continue;
            }
            let mut manifest = source.manifest(repository, &Selector::Digest(d.digest.clone()))?;
            typed(&mut manifest)?;
            if subject_of(&manifest)?.as_ref() != Some(subject) {
                return Err(Error::decode(format!("the referrer {} of {subject}", d.digest), "its manifest names another subject (or none): refused"));
            }
            if sbom {
                left_behind += 1;
                continue;
            }
            let kind = if d.media_type == SBOM_TYPE || looks_like_sbom(&manifest) { Kind::Sbom } else { Kind::Referrer };
            // An SBOM referrer is pushed as a referrer too (by digest), never under a tag
            // that another SBOM of this subject already has.
            let kind = if kind == Kind::Sbom && found.iter().any(|a| a.kind == Kind::Sbom && a.subject == *subject) { Kind::Referrer } else { kind };
            eprintln!("  referrer of {}: {}", subject.short(), manifest.digest.short());
            found.push(Attachment::of(kind, subject, &manifest));
            stage(Stage::Graph(manifest))?;
        }
    }
    if left_behind > 0 {
        eprintln!("  {left_behind} attachment(s) of the agent image left behind: it carries its cosign signatures and the SBOM from its own layers only");
    }
    if let Some(index) = narrowed {
        let tag = super::signature::tag_of(index);
        if let Some(mut manifest) = source.manifest_if_any(repository, &Selector::Tag(tag.clone()))?.filter(|m| !sbom || is_simple_signing(m)) {
            typed(&mut manifest)?;
            eprintln!("  signature of the index it narrows, {}: {tag} = {}", index.short(), manifest.digest.short());
            found.push(Attachment::of(Kind::Signature, index, &manifest));
            stage(Stage::Graph(manifest))?;
        }
    }
    Ok(found)
}

/// Adds `referrer` to the index under `sha256-<subject hex>` in `repository` (the OCI 1.1
/// referrers tag schema, for registries without the referrers API), keeping what the
/// index already lists.
pub fn list_in_tag_schema(dest: &Registry, repository: &Repository, subject: &Digest, referrer: &Manifest) -> Result<()> {
    let tag = Selector::Tag(format!("sha256-{}", subject.hex()));
    let mut entries = Array::new();
    if let Some(existing) = dest.manifest_if_any(repository, &tag)? {
        let what = format!("the referrers index {tag}");
        let value = document::parse(&existing.bytes, &what, document::MAX_MANIFEST)?;
        if let Some(Value::Array(list)) = get(&value, &["manifests"]) {
            for entry in list.iter() {
                if Descriptor::parse(entry, &what)?.digest == referrer.digest {
                    return Ok(());
                }
                entries.push(entry.clone());
            }
        }
    }
    let mut d = Object::new();
    d.insert("mediaType".into(), Value::String(referrer.media_type.clone()));
    d.insert("digest".into(), Value::String(referrer.digest.to_string()));
    d.insert("size".into(), Value::Number(Number::U64(referrer.bytes.len() as u64)));
    if let Some(t) = artifact_type(referrer) {
        if graph::media_type_ok(&t) {
            d.insert("artifactType".into(), Value::String(t));
        }
    }
    entries.push(Value::Object(d));
    let mut index = Object::new();
    index.insert("schemaVersion".into(), Value::Number(Number::U64(2)));
    index.insert("mediaType".into(), Value::String(INDEX_TYPES[0].into()));
    index.insert("manifests".into(), Value::Array(entries));
    dest.push_manifest(repository, &tag, &Manifest::new(INDEX_TYPES[0].into(), miniserde::json::to_string(&Value::Object(index)).into_bytes()))
}

/// What `bundle` stores for an attachment.
pub enum Stage {
    /// A manifest in the source and everything it references, fetched from there.
    Graph(Manifest),
    /// Bytes made here (the SBOM artifact's manifest and blobs), stored under their digest.
    Bytes(Vec<u8>),
}

/// Gives a manifest served with an unusable Content-Type the media type its shape says.
fn typed(manifest: &mut Manifest) -> Result<()> {
    if !graph::media_type_ok(&manifest.media_type) {
        manifest.media_type = graph::parse(manifest)?.media_type;
    }
    Ok(())
}

/// True when `manifest` is a cosign signature manifest and nothing else: no `subject`, and
/// every layer a simple-signing payload (what `cosign sign` and skopeo write under `.sig`).
pub fn is_simple_signing(manifest: &Manifest) -> bool {
    let Ok(value) = document::parse(&manifest.bytes, "a signature", document::MAX_MANIFEST) else { return false };
    let layers = match get(&value, &["layers"]) {
        Some(Value::Array(layers)) if !layers.is_empty() => layers,
        _ => return false,
    };
    get(&value, &["subject"]).is_none() && !looks_like_sbom(manifest) && layers.iter().all(|l| text(l, &["mediaType"]) == Some(super::signature::PAYLOAD_TYPE))
}

/// True when `manifest` looks like an SBOM by its content, whatever it is recorded as: its
/// artifact type (its `artifactType`, else its config's media type, as the referrers API
/// reports it), or a layer's media type, names CycloneDX, SPDX or Syft, in any case and with
/// any parameters. One rule for what `bundle` leaves behind and what `verify` checks.
pub fn looks_like_sbom(manifest: &Manifest) -> bool {
    let Ok(value) = document::parse(&manifest.bytes, "an attachment", document::MAX_MANIFEST) else { return false };
    let mut types: Vec<&str> = [text(&value, &["artifactType"]), text(&value, &["config", "mediaType"])].into_iter().flatten().collect();
    if let Some(Value::Array(layers)) = get(&value, &["layers"]) {
        types.extend(layers.iter().filter_map(|l| text(l, &["mediaType"])));
    }
    types.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        ["cyclonedx", "spdx", "syft"].iter().any(|n| t.contains(n))
    })
}

fn artifact_type(manifest: &Manifest) -> Option<String> {
    let value = document::parse(&manifest.bytes, "a referrer", document::MAX_MANIFEST).ok()?;
    text(&value, &["artifactType"]).map(str::to_string)
}

/// An SBOM found in an image's layer.
pub struct Sbom {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its bytes, the first time it is found (they are staged once, and only one SBOM is in
    /// memory at a time, however many layers hold one).
    pub bytes: Option<Vec<u8>>,
}

/// The OCI 1.1 artifact holding the SBOM `sbom` (`size` bytes) with `subject`; its blobs
/// are the empty config ([`EMPTY`]) and the SBOM. Deterministic: the same SBOM and subject
/// make the same digest.
pub fn sbom_artifact(sbom: &Digest, size: u64, subject: &Descriptor) -> Manifest {
    let descriptor = |media_type: &str, digest: &Digest, size: u64| {
        let mut o = Object::new();
        o.insert("mediaType".into(), Value::String(media_type.into()));
        o.insert("digest".into(), Value::String(digest.to_string()));
        o.insert("size".into(), Value::Number(Number::U64(size)));
        o
    };
    let mut layer = descriptor(SBOM_TYPE, sbom, size);
    let mut title = Object::new();
    title.insert("org.opencontainers.image.title".into(), Value::String("kubernetes-agent.cdx.json".into()));
    layer.insert("annotations".into(), Value::Object(title));
    let mut layers = Array::new();
    layers.push(Value::Object(layer));
    let mut s = Object::new();
    s.insert("mediaType".into(), Value::String(if subject.media_type.is_empty() { IMAGE_MANIFEST.into() } else { subject.media_type.clone() }));
    s.insert("digest".into(), Value::String(subject.digest.to_string()));
    s.insert("size".into(), Value::Number(Number::U64(subject.size)));
    let mut m = Object::new();
    m.insert("schemaVersion".into(), Value::Number(Number::U64(2)));
    m.insert("mediaType".into(), Value::String(IMAGE_MANIFEST.into()));
    m.insert("artifactType".into(), Value::String(SBOM_TYPE.into()));
    m.insert("config".into(), Value::Object(descriptor(EMPTY_TYPE, &Digest::of(EMPTY), EMPTY.len() as u64)));
    m.insert("layers".into(), Value::Array(layers));
    m.insert("subject".into(), Value::Object(s));
    Manifest::new(IMAGE_MANIFEST.into(), miniserde::json::to_string(&Value::Object(m)).into_bytes())
}

/// Writes one layer's bytes, as they come, into the writer given: from the source registry
/// (`bundle`) or from the bundle itself (`verify`, which finds the SBOM again).
pub type FetchLayer<'a> = dyn Fn(&Descriptor, &mut dyn Write) -> Result<()> + Sync + 'a;

/// Decompressed bytes one search (an artifact's images, on one side) reads at most, all
/// layers together: the agent image's layers inflate to a few MiB.
pub const MAX_INFLATED: u64 = 1 << 30;
/// A layer is read at most this many times its compressed size, plus [`INFLATE_SLACK`]
/// (deflate reaches about 1,000: a gzip bomb; binaries and JSON stay under 10).
const INFLATE_RATIO: u64 = 64;
const INFLATE_SLACK: u64 = 16 << 20;

/// One search's memory of the layers it read (so that platforms sharing a layer read it
/// once) and what it may still inflate.
pub struct Scanned {
    /// Each layer read: the SBOM's digest and size, `Some(None)` when it hides the path,
    /// `None` when it says nothing of it.
    held: HashMap<Digest, Option<Option<(Digest, u64)>>>,
    /// Bytes it may still read out of layers.
    budget: u64,
}

impl Default for Scanned {
    fn default() -> Scanned {
        Scanned { held: HashMap::new(), budget: MAX_INFLATED }
    }
}

/// The SBOM file in an image manifest's layers (the last layer holding it wins, as in
/// the image's filesystem), checked to be CycloneDX JSON; `None` when no layer holds it.
/// Each layer is read as `fetch` writes it (through `gzip -dc` when compressed): nothing
/// is written to disk; each at most once (`scanned`), within `scanned`'s budget and
/// [`INFLATE_RATIO`] times its size. A layer of another media type is skipped. A layer
/// that is no readable tar (not gzip, truncated, past its bound) holds no SBOM when
/// `bundle` looks (`strict` false, said on stderr), and fails the search when `verify`
/// checks an SBOM attached to the image (`strict`): the check never passes for want of
/// reading.
pub fn sbom_of_image(manifest: &Manifest, scanned: &mut Scanned, fetch: &FetchLayer, strict: bool) -> Result<Option<Sbom>> {
    let what = format!("manifest {}", manifest.digest);
    let value = document::parse(&manifest.bytes, &what, document::MAX_MANIFEST)?;
    let Some(Value::Array(layers)) = get(&value, &["layers"]) else { return Ok(None) };
    for layer in layers.iter().rev() {
        let layer = Descriptor::parse(layer, &what)?;
        let gzip = match layer.media_type.as_str() {
            "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => true,
            "application/vnd.oci.image.layer.v1.tar" => false,
            _ => continue,
        };
        if let Some(held) = scanned.held.get(&layer.digest) {
            match held {
                Some(Some((digest, size))) => return Ok(Some(Sbom { digest: digest.clone(), size: *size, bytes: None })),
                Some(None) => return Ok(None),
                None => continue,
            }
        }
        let limit = scanned.budget.min(MAX_LAYER_READ).min(layer.size.saturating_mul(INFLATE_RATIO).saturating_add(INFLATE_SLACK));
        let (found, read) = sbom_in_layer(&layer, gzip, fetch, limit)?;
        scanned.budget = scanned.budget.saturating_sub(read);
        let found = match found {
            Ok(found) => found,
            Err(why) if strict => {
                return Err(Error::decode(format!("layer {} of manifest {}", layer.digest, manifest.digest), format!("searched for {SBOM_PATH}: {why}")))
            }
            // What lies below a layer that cannot be read may be overwritten or deleted by
            // it: no SBOM for this image (verify, strict, would refuse one).
            Err(why) => {
                eprintln!("  layer {}: {why}; no SBOM is taken from this image", layer.digest.short());
                scanned.held.insert(layer.digest.clone(), Some(None));
                return Ok(None);
            }
        };
        let found = match found {
            InLayer::Absent => {
                scanned.held.insert(layer.digest.clone(), None);
                continue;
            }
            // Deleted or replaced above every lower layer: the image has no such file.
            InLayer::Hidden => {
                scanned.held.insert(layer.digest.clone(), Some(None));
                return Ok(None);
            }
            InLayer::File(bytes) => bytes,
        };
        scanned.held.insert(layer.digest.clone(), Some(Some((Digest::of(&found), found.len() as u64))));
        let doc = format!("{SBOM_PATH} in layer {}", layer.digest);
        let sbom = document::parse(&found, &doc, MAX_SBOM as usize)?;
        if text(&sbom, &["bomFormat"]) != Some("CycloneDX") {
            return Err(Error::decode(doc, "it is not a CycloneDX SBOM (no bomFormat CycloneDX)"));
        }
        return Ok(Some(Sbom { digest: Digest::of(&found), size: found.len() as u64, bytes: Some(found) }));
    }
    Ok(None)
}

/// The writing end of a bounded in-process pipe (a few writes in flight).
struct Piping(std::sync::mpsc::SyncSender<Vec<u8>>);

impl std::io::Write for Piping {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading end: what was written, in order; the end once the writer is gone.
struct Piped {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    held: Vec<u8>,
    at: usize,
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.held.len() {
            match self.rx.recv() {
                Ok(next) => (self.held, self.at) = (next, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.held.len() - self.at);
        buf[..n].copy_from_slice(&self.held[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// [`SBOM_PATH`] in `layer`, read as `fetch` writes it (through `gzip -dc` when `gzip`):
/// a pipe carries the bytes to the reader, which reads the whole layer even once it has
/// what it looks for (or finds it is no tar), so the fetch completes and its digest is
/// checked; a failed fetch fails the search, a layer that is no tar only holds no SBOM.
fn sbom_in_layer(layer: &Descriptor, gzip: bool, fetch: &FetchLayer, limit: u64) -> Result<(Searched, u64)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let (mut reader, mut writer) = (Piped { rx, held: Vec::new(), at: 0 }, Piping(tx));
    std::thread::scope(|scope| {
        let fetch = scope.spawn(move || fetch(layer, &mut writer));
        let found = if gzip {
            let spawned = Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    drop(reader);
                    let _ = fetch.join();
                    return Err(Error::io(format!("running gzip -dc to read layer {} for the agent's SBOM (is gzip installed?)", layer.digest), e));
                }
            };
            let (mut stdin, mut stdout) = (child.stdin.take(), child.stdout.take());
            // Feeds gzip, and keeps draining the download when gzip stops (not gzip data).
            let feed = scope.spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stdin.as_mut().is_some_and(|s| std::io::Write::write_all(s, &buf[..n]).is_err()) {
                                stdin = None;
                            }
                        }
                    }
                }
            });
            let found = match stdout.as_mut() {
                Some(out) => in_tar(out, SBOM_PATH, limit),
                None => (Err("gzip gave no output".into()), 0),
            };
            // What gzip would still inflate is not read: a small layer can inflate a
            // thousandfold (a gzip bomb), and in_tar has read all it needs. The feed keeps
            // draining the layer itself, so its digest is still checked.
            drop(stdout);
            let _ = child.kill();
            let _ = feed.join();
            let _ = child.wait();
            found
        } else {
            let found = in_tar(&mut reader, SBOM_PATH, limit);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
            found
        };
        match fetch.join() {
            Ok(result) => result.map(|()| found),
            Err(_) => Err(Error::decode(format!("layer {}", layer.digest), "its download stopped unexpectedly")),
        }
    })
}

/// What one layer says of a path, as the image's filesystem is built layer on layer.
#[derive(Debug, PartialEq, Eq)]
pub enum InLayer {
    /// It holds the path as a regular file (its bytes, the last entry winning).
    File(Vec<u8>),
    /// It deletes or replaces the path for the layers below: a whiteout of it or of a
    /// parent, an opaque parent directory, or another kind of entry at it or at a parent.
    Hidden,
    /// It says nothing of the path.
    Absent,
}

/// What a layer search found, or why the stream could not be read to its end-of-archive marker.
pub type Searched = std::result::Result<InLayer, String>;

/// The content of the regular file `path` in the tar stream `r`, named as GNU tar names
/// it when extracting (a pax `path`, else a GNU long name, else the ustar prefix and name;
/// a leading `./` or `/` ignored), at most [`MAX_SBOM`] bytes, reading at most `limit`
/// bytes; and the bytes read.
pub fn in_tar(r: &mut dyn Read, path: &str, limit: u64) -> (Searched, u64) {
    let mut r = r.take(limit);
    let found = read_tar(&mut r, path);
    let read = limit - r.limit();
    let found = match found {
        Err(_) if r.limit() == 0 => Err(format!("it inflates past the {read} bytes this tool reads of it (a gzip bomb?)")),
        Err(why) => Err(why.to_string()),
        Ok(found) => Ok(found),
    };
    (found, read)
}

fn read_tar(r: &mut dyn Read, path: &str) -> std::result::Result<InLayer, &'static str> {
    const SHORT: &str = "it is not a tar stream, or ends before its end-of-archive marker";
    let mut header = [0u8; 512];
    let mut found = None;
    // The path deleted for the layers below (whiteouts, an opaque or replaced parent), or
    // replaced in this one by an entry of another kind.
    let (mut hidden, mut replaced) = (false, false);
    // The name a pax extended header or a GNU long-name entry gives the next entry.
    let mut next_name: Option<String> = None;
    loop {
        r.read_exact(&mut header).map_err(|_| SHORT)?;
        if header.iter().all(|&b| b == 0) {
            return Ok(match found {
                Some(bytes) => InLayer::File(bytes),
                None if hidden || replaced => InLayer::Hidden,
                None => InLayer::Absent,
            });
        }
        let field = |a: usize, b: usize| {
            let f = &header[a..b];
            &f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())]
        };
        let bad = "a tar header it holds is not one this tool reads (its size or name)";
        let octal = std::str::from_utf8(field(124, 136)).map_err(|_| bad)?.trim_matches([' ', '\0']);
        let size = u64::from_str_radix(if octal.is_empty() { "0" } else { octal }, 8).map_err(|_| bad)?;
        let (name, prefix) = (std::str::from_utf8(field(0, 100)).map_err(|_| bad)?, std::str::from_utf8(field(345, 500)).unwrap_or(""));
        let ustar = if &header[257..262] == b"ustar" && !prefix.is_empty() { format!("{prefix}/{name}") } else { name.to_string() };
        let padded = size.div_ceil(512) * 512;
        if header[156] == b'S' {
            return Err("it holds a GNU sparse entry, which this tool does not read");
        }
        if matches!(header[156], b'x' | b'L') {
            if size > 64 << 10 {
                return Err("a pax or long-name header it holds is larger than 64 KiB");
            }
            let mut data = vec![0u8; padded as usize];
            r.read_exact(&mut data).map_err(|_| SHORT)?;
            let data = &data[..size as usize];
            // A sparse file's real name and map are in GNU.sparse.* records: not read, refused.
            if header[156] == b'x' && data.windows(11).any(|w| w == b"GNU.sparse.") {
                return Err("it holds a GNU sparse entry, which this tool does not read");
            }
            next_name = if header[156] == b'L' { Some(String::from_utf8_lossy(data).trim_end_matches('\0').to_string()) } else { pax_path(data).or(next_name) };
            continue;
        }
        let full = next_name.take().unwrap_or(ustar);
        let regular = matches!(header[156], b'0' | 0);
        // The name as extractors take it: cleaned lexically (`//`, `.` and `..` resolved),
        // as containerd and moby do before they look for whiteouts.
        let cleaned = clean(&full);
        let entry = cleaned.as_str();
        let under = |dir: &str| path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'));
        let (dir, base) = entry.rsplit_once('/').unwrap_or(("", entry));
        if base == ".wh..wh..opq" {
            hidden |= under(dir);
        } else if let Some(deleted) = base.strip_prefix(".wh.") {
            let deleted = if dir.is_empty() { deleted.to_string() } else { format!("{dir}/{deleted}") };
            hidden |= deleted == path || under(&deleted);
        } else if under(entry) && header[156] != b'5' {
            // A parent replaced by a file or link: what this layer put under it is gone too.
            (hidden, found) = (true, None);
        }
        if entry == path && !regular {
            (found, replaced) = (None, true);
        }
        if regular && entry == path {
            if size > MAX_SBOM {
                return Err("the SBOM file in it is larger than 16 MiB");
            }
            let mut bytes = vec![0u8; size as usize];
            r.read_exact(&mut bytes).map_err(|_| SHORT)?;
            if std::io::copy(&mut r.take(padded - size), &mut std::io::sink()).map_err(|_| SHORT)? != padded - size {
                return Err(SHORT);
            }
            // A later entry of the same name replaces it, as extraction would.
            (found, replaced) = (Some(bytes), false);
        } else if std::io::copy(&mut r.take(padded), &mut std::io::sink()).map_err(|_| SHORT)? != padded {
            return Err(SHORT);
        }
    }
}

/// `name` cleaned as a path inside the image: empty and `.` components dropped, `..` taking
/// one back (never above the root), no leading or trailing `/`.
fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The `path` record of a pax extended header (`<len> path=<value>\n` records).
fn pax_path(mut data: &[u8]) -> Option<String> {
    let mut path = None;
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space || len > data.len() {
            return None;
        }
        let record = &data[space + 1..len];
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(value.strip_suffix(b"\n").unwrap_or(value)).into_owned());
        }
        data = &data[len..];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn the_sbom_is_found_in_a_layer_tar_and_a_later_entry_wins() {
        let mut tar = entry("opt/runner/runner", b"ELF");
        tar.extend(entry("./opt/runner/kubernetes-agent.cdx.json", b"old"));
        tar.extend(entry("opt/runner/kubernetes-agent.cdx.json", br#"{"bomFormat":"CycloneDX"}"#));
        tar.extend([0u8; 1024]);
        assert_eq!(search(&tar), Ok(InLayer::File(br#"{"bomFormat":"CycloneDX"}"#.to_vec())));
        let mut other = entry("etc/passwd", b"x");
        other.extend([0u8; 1024]);
        assert_eq!(search(&other), Ok(InLayer::Absent));
    }

    /// [`in_tar`] of `tar` for the SBOM, with room to spare.
    fn search(tar: &[u8]) -> Searched {
        in_tar(&mut &tar[..], SBOM_PATH, 1 << 30).0
    }

    #[test]
    fn a_layer_that_deletes_or_replaces_the_sbom_path_hides_the_layers_below() {
        // Reproduced by review: a later layer's whiteout of the file still let the search
        // take it from a layer below, so the SBOM published could be one the image no longer has.
        let end = [0u8; 1024];
        let layer = |entries: &[Vec<u8>]| [entries.concat().as_slice(), &end].concat();
        for hiding in [
            entry("opt/runner/.wh.kubernetes-agent.cdx.json", b""),
            entry("opt/runner/.wh..wh..opq", b""),
            entry("opt/.wh.runner", b""),
            entry(".wh.opt", b""),
            entry("opt/runner", b"a file where the directory was"),
        ] {
            assert_eq!(search(&layer(std::slice::from_ref(&hiding))), Ok(InLayer::Hidden), "{:?}", String::from_utf8_lossy(&hiding[..40]));
            // The same layer may delete the lower one's and hold its own: its own wins.
            let own = layer(&[hiding.clone(), entry(SBOM_PATH, b"own")]);
            assert_eq!(search(&own), Ok(InLayer::File(b"own".to_vec())));
        }
        // A symlink (or any other kind) at the path after the file replaces it.
        let mut link = entry(SBOM_PATH, b"");
        link[156] = b'2';
        assert_eq!(search(&layer(&[entry(SBOM_PATH, b"old"), link])), Ok(InLayer::Hidden));
        // Whiteouts of neighbours change nothing.
        assert_eq!(search(&layer(&[entry("opt/runner/.wh.runner", b""), entry("opt/.wh.other", b"")])), Ok(InLayer::Absent));
        // Reproduced by the third review: names are compared as extractors clean them, so
        // `opt//runner/…`, `opt/./runner/…` and `opt/x/../runner/.wh.…` are the path or its
        // whiteout; a parent replaced later in the same layer removes the file found before.
        for name in ["opt//runner/kubernetes-agent.cdx.json", "./opt/./runner/kubernetes-agent.cdx.json", "opt/x/../runner/kubernetes-agent.cdx.json"] {
            assert_eq!(search(&layer(&[entry(name, b"upper")])), Ok(InLayer::File(b"upper".to_vec())), "{name}");
        }
        assert_eq!(search(&layer(&[entry("opt//runner/.wh.kubernetes-agent.cdx.json", b"")])), Ok(InLayer::Hidden));
        assert_eq!(search(&layer(&[entry("opt/x/../runner/.wh.kubernetes-agent.cdx.json", b"")])), Ok(InLayer::Hidden));
        let mut relink = entry("opt/runner", b"");
        relink[156] = b'2';
        assert_eq!(search(&layer(&[entry(SBOM_PATH, b"old"), relink])), Ok(InLayer::Hidden));
        // GNU sparse records (a real name and map in pax records) are refused, not misread.
        let record = "27 GNU.sparse.name=x/y/zz\n";
        let mut sparse = entry("PaxHeaders/s", record.as_bytes());
        sparse[156] = b'x';
        assert!(search(&layer(&[sparse, entry("GNUSparseFile.0/x", b"forged")])).unwrap_err().contains("GNU sparse"));
    }

    /// `entry` with its size field replaced (the data stays as given).
    fn claiming(name: &str, data: &[u8], size: &[u8; 12]) -> Vec<u8> {
        let mut e = entry(name, data);
        e[124..136].copy_from_slice(size);
        e
    }

    #[test]
    fn hostile_layer_headers_end_the_sbom_search_with_why_without_allocating_what_they_claim() {
        // verify reads these from a bundle that may be doctored: a header may claim any size.
        // Each ends the search with a reason (verify then refuses; it never passes for want
        // of reading).
        let end = [0u8; 1024];
        let short = "it is not a tar stream, or ends before its end-of-archive marker";
        // 64 GiB claimed by the SBOM path itself, more than MAX_SBOM: not read into memory.
        let huge = claiming(SBOM_PATH, b"x", b"777777777777");
        assert_eq!(search(&[huge.as_slice(), &end].concat()), Err("the SBOM file in it is larger than 16 MiB".into()));
        // The same claim by another entry before a real SBOM: skipping it runs out of bytes.
        let mut tar = claiming("opt/big", b"x", b"777777777777");
        tar.extend(entry(SBOM_PATH, b"{}"));
        assert_eq!(search(&[tar.as_slice(), &end].concat()), Err(short.into()));
        // A base-256 size (GNU's binary form) and a pax header claiming 1 GiB.
        let mut binary = *b"\x80\0\0\0\0\0\0\0\0\0\0\x02";
        assert!(search(&claiming(SBOM_PATH, b"{}", &binary)).unwrap_err().contains("a tar header it holds is not one this tool reads"));
        binary = *b"10000000000\0";
        let mut pax = claiming("PaxHeaders/x", b"", &binary);
        pax[156] = b'x';
        assert!(search(&[pax.as_slice(), &entry(SBOM_PATH, b"{}"), &end].concat()).unwrap_err().contains("larger than 64 KiB"));
        // A pax record whose length runs past its header's data names nothing.
        let mut bad_record = entry("PaxHeaders/x", b"99 path=opt/runner/kubernetes-agent.cdx.json\n");
        bad_record[156] = b'x';
        assert_eq!(search(&[bad_record.as_slice(), &entry("other", b"{}"), &end].concat()), Ok(InLayer::Absent));
        // Past the bound it is given (a gzip bomb inflates far past its size): said so.
        let mut big = entry("opt/zeros", &vec![0u8; 64 << 10]);
        big.extend(entry(SBOM_PATH, b"{}"));
        big.extend(end);
        let (found, read) = in_tar(&mut big.as_slice(), SBOM_PATH, 32 << 10);
        assert_eq!((found.unwrap_err().contains("inflates past the 32768 bytes"), read), (true, 32 << 10));
        assert_eq!(search(b"not a tar"), Err(short.into()));
    }

    #[test]
    fn the_sbom_is_found_under_the_name_tar_extracts_it_as_a_pax_path_or_a_gnu_long_name() {
        // A pax header renames the next entry: the one whose ustar name is the SBOM's path is
        // extracted elsewhere, and the one the pax header names is the SBOM.
        let record = format!("path={SBOM_PATH}\n");
        let pax = format!("{} {record}", record.len() + 3);
        let mut x = entry("PaxHeaders/x", pax.as_bytes());
        x[156] = b'x';
        let mut decoy_pax = entry("PaxHeaders/y", b"20 path=elsewhere/a\n");
        decoy_pax[156] = b'x';
        let mut tar = decoy_pax;
        tar.extend(entry(SBOM_PATH, b"decoy"));
        tar.extend(x);
        tar.extend(entry("opt/runner/short", b"real"));
        tar.extend([0u8; 1024]);
        assert_eq!(search(&tar), Ok(InLayer::File(b"real".to_vec())));
        let mut long = entry("././@LongLink", format!("{SBOM_PATH}\0").as_bytes());
        long[156] = b'L';
        long.extend(entry("opt/runner/trunc", b"long"));
        long.extend([0u8; 1024]);
        assert_eq!(search(&long), Ok(InLayer::File(b"long".to_vec())));
    }

    #[test]
    fn a_tag_in_a_record_that_is_not_its_kinds_for_its_subject_is_refused() {
        let subject = Digest::of(b"image");
        let a = Attachment { kind: Kind::Signature, subject: subject.clone(), digest: Digest::of(b"sig"), media_type: IMAGE_MANIFEST.into(), size: 3 };
        assert_eq!(Attachment::parse(&a.record(), "agent-image").unwrap(), a);
        let mut record = a.record();
        if let Value::Object(o) = &mut record {
            o.insert("tag".into(), Value::String("latest".into()));
        }
        assert!(Attachment::parse(&record, "agent-image").unwrap_err().contains("not its kind's"));
        if let Value::Object(o) = &mut record {
            o.insert("tag".into(), Value::String(format!("sha256-{}.sig", subject.hex())));
            o.insert("kind".into(), Value::String("../../x".into()));
        }
        assert!(Attachment::parse(&record, "agent-image").unwrap_err().contains("unknown kind"));
    }

    #[test]
    fn the_sbom_artifact_names_its_subject_and_type_and_is_deterministic() {
        let subject = Descriptor { media_type: IMAGE_MANIFEST.into(), digest: Digest::of(b"m"), size: 1, platform: None };
        let sbom = br#"{"bomFormat":"CycloneDX"}"#;
        let m = sbom_artifact(&Digest::of(sbom), sbom.len() as u64, &subject);
        assert_eq!(subject_of(&m).unwrap(), Some(subject.digest.clone()));
        assert_eq!(artifact_type(&m).as_deref(), Some(SBOM_TYPE));
        assert_eq!(Digest::of(EMPTY).to_string(), "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        assert_eq!(sbom_artifact(&Digest::of(sbom), sbom.len() as u64, &subject).digest, m.digest);
        let parsed = graph::parse(&m).unwrap();
        assert_eq!(
            parsed.blobs.iter().map(|d| (d.digest.clone(), d.size)).collect::<Vec<_>>(),
            [(Digest::of(EMPTY), 2), (Digest::of(sbom), sbom.len() as u64)]
        );
    }
}
