//! The three operations: `bundle` (connected side), `verify`, `push` (air-gapped side),
//! and the credentials and endpoints they resolve. Output is progress and results on
//! standard error/out; errors name the object, the registry's answer and the fix.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use miniserde::json::{Array, Number, Object, Value};

use super::attachment::{self, Attachment};
use super::differential;
use super::digest::{shown, Digest, Hasher};
use super::document;
use super::graph::{self, Descriptor, Step, IMAGE_TYPES, INDEX_TYPES};
use super::parallel::{self, Meter, Metered, MeteredWrite};
use super::parts::{self, Source};
use super::registry::{self, Credentials, Endpoint, Manifest, Reference, Registry, Repository, Selector};
use super::signature::{self, PublicKey};
use super::tar;
use super::upload::{Transfer, Uploads};
use crate::error::{Error, Result};
use crate::http::Trust;
use crate::json::{get, text as json_text};

/// Format tag of `manifest.json`.
pub const FORMAT: &str = "kubernetes-agent-offline-bundle/1";
/// OCI annotation naming each artifact's role in `oci/index.json`.
pub const ROLE_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The roles of the artifacts a bundle carries.
pub const ROLES: [&str; 3] = ["agent-image", "runner-image", "chart"];
/// Size bound of `SHA256SUMS`.
const MAX_SUMS: u64 = 16 << 20;
/// The git bundle's header (signature, capabilities, refs) is read up to this size.
const MAX_GIT_HEADER: u64 = 64 << 10;
/// Entries a bundle holds besides its blobs.
const FIXED_NAMES: [&str; 6] = ["offline-install", "oci/oci-layout", "oci/index.json", "module/module.bundle", "manifest.json", "SHA256SUMS"];

/// How to reach registries on one side of the gap.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Plain HTTP, only when asked.
    pub plain_http: bool,
    /// Extra CA bundle (PEM) trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// Explicit credentials (options or environment).
    pub credentials: Option<Credentials>,
    /// A Docker-style auth file (`{"auths":{"host":{"auth":"base64(user:pass)"}}}`).
    pub auth_file: Option<PathBuf>,
}

impl Access {
    /// The endpoint for `host`: explicit credentials win, then the auth file's entry.
    pub fn endpoint(&self, host: &str) -> Result<Endpoint> {
        if !registry::host_ok(host) {
            return Err(Error::config("registry", format!("{} is not HOST[:PORT]", shown(host)), "give the registry as HOST[:PORT]"));
        }
        let trust = match &self.ca_file {
            Some(path) => {
                let certs = crate::http::read_certificates(path)
                    .map_err(|why| Error::config("--ca-file / --source-ca-file", why, "point it at the PEM bundle of the registry's CA"))?;
                Trust::WebPkiAnd(Arc::new(certs))
            }
            None => Trust::WebPki,
        };
        let credentials = match (&self.credentials, &self.auth_file) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(file)) => auth_file_entry(file, host)?,
            (None, None) => None,
        };
        Ok(Endpoint { host: host.to_string(), plain_http: self.plain_http, trust, credentials })
    }
}

/// The credentials for `host` in a Docker-style auth file, if it has them.
pub fn auth_file_entry(path: &Path, host: &str) -> Result<Option<Credentials>> {
    let doc = format!("auth file {}", path.display());
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading the {doc}"), e)),
    };
    let value = document::parse(&bytes, &doc, document::MAX_SMALL)?;
    let Some(Value::Object(auths)) = get(&value, &["auths"]) else { return Ok(None) };
    let entry = auths.iter().find(|(k, _)| k.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/') == host).map(|(_, v)| v);
    let Some(Value::String(auth)) = entry.and_then(|e| get(e, &["auth"])) else { return Ok(None) };
    let decoded = crate::base64::decode(auth)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::decode(&doc, format!("the entry for {host} is not base64 of user:password")))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| Error::decode(&doc, format!("the entry for {host} is not user:password")))?;
    Ok(Some(Credentials { username: username.into(), password: password.into() }))
}

/// `text` with the user info of `url` (a git URL that may carry a token) hidden wherever
/// it appears: the URL itself as [`crate::redact::url_without_userinfo`] shows it (everything
/// up to its last `@`, so a password holding `/`, spaces or `@` is hidden whole), then any
/// remaining copy of its user info or password, raw or percent-decoded, as git may echo it.
pub fn hide_userinfo(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &crate::redact::url_without_userinfo(url));
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some((info, _)) = rest.rsplit_once('@') {
        let password = info.split_once(':').map_or("", |(_, p)| p);
        for secret in [info, password] {
            for form in [secret.to_string(), percent_decoded(secret)] {
                // From 4 bytes, as the agent's scrubber: shorter ones would mangle every
                // message ("git" as a user name) and are not secrets worth the name.
                if form.len() >= 4 {
                    out = out.replace(&form, "***");
                }
            }
        }
    }
    out
}

fn percent_decoded(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `bundle` fetches.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The agent image.
    pub agent_image: String,
    /// The runner image the Jobs use.
    pub runner_image: String,
    /// The chart, as an OCI reference.
    pub chart: String,
    /// The TF module repository (any URL `git clone` takes).
    pub module_repo: String,
    /// Branch or tag of the module.
    pub module_ref: String,
    /// Platforms to keep (`linux/amd64`); empty keeps every one and every digest.
    pub platforms: Vec<String>,
    /// The static tool to put in the bundle.
    pub tool: PathBuf,
    /// Write parts of at most this many bytes (`FILE.001`, … and `FILE.parts`) instead of one file.
    pub max_part_size: Option<u64>,
    /// An earlier bundle: hold only what it does not (a differential bundle).
    pub since: Option<PathBuf>,
    /// Blobs fetched at once (`--jobs`); with more than one, blobs wait in the scratch
    /// directory, at most the largest blob's bytes at a time.
    pub jobs: usize,
}

struct Staged {
    tar: tar::Writer<BufWriter<parts::Output>>,
    sums: Vec<(Digest, String)>,
    blobs: HashSet<Digest>,
    /// Blobs the base of a differential bundle holds: referenced, not carried.
    base: Option<differential::Known>,
    /// Blobs fetched at once.
    jobs: usize,
    /// Where blobs fetched in parallel wait to be appended.
    scratch: PathBuf,
}

impl Staged {
    fn add(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        self.tar.append_bytes(name, mode, bytes).map_err(|e| Error::io(format!("writing {name} into the bundle"), e))?;
        self.sums.push((Digest::of(bytes), name.to_string()));
        Ok(())
    }

    /// Adds the file at `path`, streamed and hashed on the way (the module's git bundle can
    /// be large: it is never held in memory).
    fn add_file(&mut self, name: &str, mode: u32, path: &Path) -> Result<()> {
        let reading = |e| Error::io(format!("reading {}", path.display()), e);
        let mut file = std::fs::File::open(path).map_err(reading)?;
        let size = file.metadata().map_err(reading)?.len();
        let mut hasher = Hasher::new();
        self.tar
            .append_with(name, mode, size, &mut |out| {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                }
            })
            .map_err(|e| Error::io(format!("writing {name} into the bundle from {} (is the disk full?)", path.display()), e))?;
        self.sums.push((hasher.finish(), name.to_string()));
        Ok(())
    }

    /// Whether `blob` is still to be added: once per bundle (layers shared between images
    /// are stored once), and not where the base of a differential bundle put it (its target
    /// repository holds it then). Marks it added.
    fn wants(&mut self, repository: &Repository, blob: &Descriptor) -> bool {
        if self.blobs.contains(&blob.digest) || self.base.as_mut().is_some_and(|base| base.omit(repository, &blob.digest)) {
            return false;
        }
        self.blobs.insert(blob.digest.clone())
    }

    /// Adds a blob once (see [`Staged::wants`]).
    fn add_blob(&mut self, source: &Registry, repository: &Repository, blob: &Descriptor) -> Result<()> {
        if self.wants(repository, blob) {
            self.stream_blob(source, repository, blob)?;
        }
        Ok(())
    }

    /// Adds `blobs` (each wanted), [`Sources::jobs`] at once: one at a time streamed straight
    /// into the bundle; in parallel each through the scratch directory, where at most the
    /// largest one's bytes wait at any time (a blob waits for room before its fetch starts).
    /// The first failure stops the others.
    fn add_blobs(&mut self, source: &Registry, repository: &Repository, blobs: &[Descriptor], role: &str) -> Result<()> {
        if self.jobs <= 1 || blobs.len() <= 1 {
            return blobs.iter().try_for_each(|b| self.stream_blob(source, repository, b));
        }
        let room = blobs.iter().map(|b| b.size).max().unwrap_or(0);
        let meter = Meter::new(format!("fetching {role}"), blobs.iter().map(|b| b.size).sum());
        let stop = Arc::new(AtomicBool::new(false));
        let waiting = (Mutex::new(0u64), Condvar::new());
        let scratch = self.scratch.clone();
        let jobs = self.jobs;
        let out = Mutex::new((&mut self.tar, &mut self.sums));
        parallel::run(jobs, stop.clone(), |pool| {
            for blob in blobs {
                {
                    let (held, freed) = &waiting;
                    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                    while *held > 0 && *held + blob.size > room && !stop.load(Ordering::Relaxed) {
                        held = freed.wait_timeout(held, std::time::Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    *held += blob.size;
                }
                let (meter, stop, scratch, out, waiting) = (meter.clone(), stop.clone(), &scratch, &out, &waiting);
                pool.submit(move || {
                    let result = fetch_through(source, repository, blob, scratch, meter, stop, out);
                    let mut held = waiting.0.lock().unwrap_or_else(|p| p.into_inner());
                    *held -= blob.size;
                    waiting.1.notify_all();
                    result
                })?;
            }
            pool.drain()
        })?;
        meter.finish();
        Ok(())
    }

    /// Streams `blob` straight into the bundle.
    fn stream_blob(&mut self, source: &Registry, repository: &Repository, blob: &Descriptor) -> Result<()> {
        // Streamed straight into the bundle: a blob whose bytes are not its digest fails the
        // whole bundle (its partial output is removed), so nothing is staged on disk.
        let name = blob.digest.blob_name();
        let mut failed = None;
        let wrote = self.tar.append_with(&name, 0o644, blob.size, &mut |out| {
            source.blob(repository, &blob.digest, blob.size, out).map_err(|e| {
                failed = Some(e);
                std::io::Error::other("the download failed")
            })
        });
        match (wrote, failed) {
            (_, Some(e)) => return Err(e),
            (Err(e), None) => return Err(Error::io(format!("writing {name} into the bundle (is the disk full?)"), e)),
            (Ok(()), None) => {}
        }
        self.sums.push((blob.digest.clone(), name));
        Ok(())
    }

    fn add_manifest(&mut self, manifest: &Manifest) -> Result<()> {
        if self.blobs.insert(manifest.digest.clone()) {
            self.add(&manifest.digest.blob_name(), 0o644, &manifest.bytes)?;
        }
        Ok(())
    }
}

/// The bundle's writer and its checksums, shared by parallel fetches.
type Appending<'a> = (&'a mut tar::Writer<BufWriter<parts::Output>>, &'a mut Vec<(Digest, String)>);

/// One parallel fetch: `blob` into the scratch directory, then appended to the bundle.
fn fetch_through(
    source: &Registry,
    repository: &Repository,
    blob: &Descriptor,
    scratch: &Path,
    meter: Arc<Meter>,
    stop: Arc<AtomicBool>,
    out: &Mutex<Appending>,
) -> Result<()> {
    // A `Digest` is 64 hex digits: this path stays inside the scratch directory.
    let temp = Owned(scratch.join(blob.digest.hex()));
    {
        let file = std::fs::File::create(&temp.0).map_err(|e| Error::io(format!("creating {}", temp.0.display()), e))?;
        let mut written = MeteredWrite { inner: BufWriter::new(file), meter, stop };
        source.blob(repository, &blob.digest, blob.size, &mut written)?;
        std::io::Write::flush(&mut written.inner).map_err(|e| Error::io(format!("writing {} (is the disk full?)", temp.0.display()), e))?;
    }
    let name = blob.digest.blob_name();
    let mut file = std::fs::File::open(&temp.0).map_err(|e| Error::io(format!("reading {}", temp.0.display()), e))?;
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    out.0.append(&name, 0o644, blob.size, &mut file).map_err(|e| Error::io(format!("writing {name} into the bundle (is the disk full?)"), e))?;
    out.1.push((blob.digest.clone(), name));
    Ok(())
}

/// Copies one image or chart (with every manifest and blob it references, and its
/// attachments: see [`attachment`]) into the bundle and returns its top-level descriptor,
/// its `manifest.json` record and its attachments' descriptors.
fn stage_artifact(staged: &mut Staged, access: &Access, role: &str, reference: &str, platforms: &[String]) -> Result<(Value, Value, Vec<Value>)> {
    let r = Reference::parse(reference).map_err(|why| Error::config(role, why, "give a reference like registry.example/path/name:tag"))?;
    let source = Registry::new(access.endpoint(r.api_host())?)?.quiet();
    eprintln!("fetching {role} {r}");
    let mut top = source.manifest(&r.repository, &r.selector())?;
    let parsed = graph::parse(&top)?;
    if !graph::media_type_ok(&top.media_type) {
        top.media_type = parsed.media_type.clone();
    }
    let is_index = INDEX_TYPES.contains(&top.media_type.as_str()) || !parsed.children.is_empty();
    let mut kept_platforms = Vec::new();
    // The source's index, when --platform narrows it into a new one: kept in the bundle
    // (a blob, named in the record) with its signature, which covers the new index's
    // platforms because each is one the signed index lists.
    let mut narrowed: Option<Manifest> = None;
    if is_index {
        let wanted = |d: &Descriptor| platforms.is_empty() || d.platform.as_ref().is_some_and(|p| platforms.contains(p));
        kept_platforms = parsed.children.iter().filter(|d| wanted(d)).map(|d| d.platform.clone().unwrap_or_default()).collect();
        if parsed.children.is_empty() {
            return Err(Error::decode(format!("index of {r}"), "it lists no manifests"));
        }
        if kept_platforms.is_empty() {
            return Err(Error::config("--platform", format!("{r} has none of {}", platforms.join(", ")), "ask for platforms the image has, or none for all"));
        }
        if !platforms.is_empty() {
            let narrower = narrowed_index(&top, &format!("index of {r}"), &wanted)?;
            let original = std::mem::replace(&mut top, narrower);
            staged.add_manifest(&original)?;
            narrowed = Some(original);
        }
    }
    let repository = r.repository.clone();
    // Manifests are added as the walk fetches them; the blobs after it, `--jobs` at once.
    let mut blobs = Vec::new();
    graph::walk(top.clone(), &mut |child| source.manifest(&repository, &Selector::Digest(child.digest.clone())), &mut |step| match step {
        Step::Blob(blob) => {
            if staged.wants(&repository, blob) {
                blobs.push(blob.clone());
            }
            Ok(())
        }
        Step::Manifest(m, _) => staged.add_manifest(m),
    })?;
    staged.add_blobs(&source, &repository, &blobs, role)?;
    let narrowed_digest = narrowed.as_ref().map(|m| m.digest.clone());
    let attachments = attachment::find(&source, &repository, &top, narrowed_digest.as_ref(), role == ROLES[0], &mut |stage| match stage {
        attachment::Stage::Bytes(bytes) => staged.add_manifest(&Manifest::new(String::new(), bytes)),
        attachment::Stage::Graph(m) => {
            graph::walk(m, &mut |child| source.manifest(&repository, &Selector::Digest(child.digest.clone())), &mut |step| match step {
                Step::Blob(blob) => staged.add_blob(&source, &repository, blob),
                Step::Manifest(m, _) => staged.add_manifest(m),
            })
        }
    })?;
    let mut descriptor = Object::new();
    descriptor.insert("mediaType".into(), Value::String(top.media_type.clone()));
    descriptor.insert("digest".into(), Value::String(top.digest.to_string()));
    descriptor.insert("size".into(), Value::Number(Number::U64(top.bytes.len() as u64)));
    let mut annotations = Object::new();
    annotations.insert(ROLE_ANNOTATION.into(), Value::String(role.into()));
    descriptor.insert("annotations".into(), Value::Object(annotations));
    let mut record = Object::new();
    record.insert("role".into(), Value::String(role.into()));
    record.insert("source".into(), Value::String(r.to_string()));
    record.insert("digest".into(), Value::String(top.digest.to_string()));
    record.insert("mediaType".into(), Value::String(top.media_type.clone()));
    let mut plat = Array::new();
    plat.extend(kept_platforms.into_iter().map(Value::String));
    record.insert("platforms".into(), Value::Array(plat));
    if let Some(original) = &narrowed {
        let mut d = Object::new();
        d.insert("mediaType".into(), Value::String(original.media_type.clone()));
        d.insert("digest".into(), Value::String(original.digest.to_string()));
        d.insert("size".into(), Value::Number(Number::U64(original.bytes.len() as u64)));
        record.insert("narrowedFrom".into(), Value::Object(d));
    }
    let mut records = Array::new();
    records.extend(attachments.iter().map(Attachment::record));
    record.insert("attachments".into(), Value::Array(records));
    eprintln!("  {role}: {} ({})", top.digest, top.media_type);
    Ok((Value::Object(descriptor), Value::Object(record), attachments.iter().map(Attachment::descriptor).collect()))
}

/// `index` with only the platform manifests `wanted` keeps, every other field as it was:
/// what `bundle --platform` writes, and what `verify` rebuilds to check it.
fn narrowed_index(index: &Manifest, what: &str, wanted: &dyn Fn(&Descriptor) -> bool) -> Result<Manifest> {
    let mut value = document::parse(&index.bytes, what, document::MAX_MANIFEST)?;
    let mut kept = Array::new();
    if let Some(Value::Array(entries)) = get(&value, &["manifests"]) {
        for entry in entries.iter() {
            if wanted(&Descriptor::parse(entry, what)?) {
                kept.push(entry.clone());
            }
        }
    }
    if let Value::Object(o) = &mut value {
        o.insert("manifests".into(), Value::Array(kept));
    }
    Ok(Manifest::new(index.media_type.clone(), miniserde::json::to_string(&value).into_bytes()))
}

/// A path next to `output` that this run creates and owns; an existing one is refused
/// (another run may be using it, or it is someone's), never deleted.
fn claim(output: &Path, extension: &str, dir: bool) -> Result<PathBuf> {
    let path = output.with_extension(extension);
    if path == output {
        return Err(Error::config("--output", format!("{} would collide with its own .{extension} file", output.display()), "choose another --output name"));
    }
    let made = if dir { std::fs::create_dir(&path) } else { std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map(drop) };
    match made {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::config(
            "--output",
            format!("{} already exists: another run may be using it, or an earlier run was killed; it is left as it is", path.display()),
            "remove it if no other run is using it, or choose another --output",
        )),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// `bundle`: fetches everything into `output`. It is written to `<output>.partial`
/// (blobs streamed straight into it; only the module's clone and git bundle use
/// `<output>.scratch/`), verified as `verify` would, and only then renamed, so an
/// interrupted or failed run never leaves a file that looks complete. In parts
/// (`max_part_size`) it writes `FILE.001`, … and, once they pass verify, the index
/// `FILE.parts` (without it they are no bundle). The names must not exist before;
/// whatever this run created is removed on error. With `since`, only what that earlier
/// bundle does not hold (see [`differential`]).
pub fn bundle(sources: &Sources, access: &Access, output: &Path) -> Result<Written> {
    // Credentials from the options or the environment name no host: they are for one
    // registry, never offered to a second one (an auth file binds each to its host).
    let hosts: BTreeSet<String> = [&sources.agent_image, &sources.runner_image, &sources.chart]
        .iter()
        .filter_map(|r| Reference::parse(r).ok())
        .map(|r| r.api_host().to_string())
        .collect();
    if access.credentials.is_some() && hosts.len() > 1 {
        return Err(Error::config(
            "--source-username / OFFLINE_INSTALL_SOURCE_USERNAME",
            format!(
                "the sources are on {} registries ({}), and credentials given this way would be offered to each of them",
                hosts.len(),
                hosts.into_iter().collect::<Vec<_>>().join(", ")
            ),
            "put each registry's credentials in a Docker-style auth file (--auth-file), which binds them to their host",
        ));
    }
    if sources.max_part_size.is_some() {
        for taken in [output.to_path_buf(), parts::index_path(output), parts::index_partial_path(output), parts::part_path(output, 1)] {
            if std::fs::symlink_metadata(&taken).is_ok() {
                return Err(Error::config(
                    "--output",
                    format!(
                        "{} already exists: a bundle in parts needs FILE, FILE.parts, FILE.parts.partial and FILE.001 free; it is left as it is",
                        taken.display()
                    ),
                    "remove it or choose another --output",
                ));
            }
        }
    }
    let base = match &sources.since {
        Some(old) => {
            let opened = verify(old).map_err(|e| Error::config("--since", e.to_string(), "give the earlier bundle this one is to follow"))?;
            Some(differential::Known::of(&opened)?)
        }
        None => None,
    };
    // Owned: removed when dropped, on every path out of here (an error, a panic).
    let scratch = Owned(claim(output, "scratch", true)?);
    let partial = match sources.max_part_size {
        None => Some(Owned(claim(output, "partial", false)?)),
        Some(_) => None,
    };
    let single = partial.as_ref().map_or_else(|| output.to_path_buf(), |p| p.0.clone());
    let result = stage_bundle(sources, access, &scratch.0, parts::Output::new(&single, output, sources.max_part_size), base);
    let temp_peak = scratch_peak(&scratch.0);
    drop(scratch);
    let (text, written) = result?;
    // The parts are ours from here: removed unless the bundle is kept.
    let owned_parts: Vec<Owned> = if partial.is_none() { written.parts().iter().map(|p| Owned(p.path.clone())).collect() } else { Vec::new() };
    let opened = verify_source(&single, written.clone())
        .and_then(|opened| opened.check_sboms(None).map(|_| opened))
        .map_err(|e| Error::decode(format!("the bundle just written ({})", written.shown()), format!("it fails its own verify, so it is not kept: {e}")))?;
    let anchor = opened.sums_digest.clone();
    let kept = match partial {
        Some(partial) => {
            std::fs::rename(&partial.0, output).map_err(|e| Error::io(format!("renaming {} to {}", partial.0.display(), output.display()), e))?;
            std::mem::forget(partial);
            Source::single(output)?
        }
        None => {
            let kept = parts::write_index(output, &written, &anchor)?;
            owned_parts.into_iter().for_each(std::mem::forget);
            kept
        }
    };
    Ok(Written { manifest: text, anchor, source: kept, temp_peak })
}

/// What `bundle` wrote.
#[derive(Debug)]
pub struct Written {
    /// `manifest.json`.
    pub manifest: String,
    /// The sha256 of `SHA256SUMS` (the trust anchor).
    pub anchor: Digest,
    /// Where it is: one file, or its parts and their index (whose sha256 is the parted anchor).
    pub source: Source,
    /// The most bytes the scratch directory held at once (the module's clone and git bundle).
    pub temp_peak: u64,
}

/// Bytes under `dir` now (files only, not following symlinks): the scratch directory's
/// size, taken after staging, when the module's clone and bundle are still there.
fn scratch_peak(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn stage_bundle(sources: &Sources, access: &Access, scratch: &Path, output: parts::Output, base: Option<differential::Known>) -> Result<(String, Source)> {
    let mut staged = Staged {
        tar: tar::Writer::new(BufWriter::with_capacity(64 << 10, output)),
        sums: Vec::new(),
        blobs: HashSet::new(),
        base,
        jobs: sources.jobs,
        scratch: scratch.to_path_buf(),
    };
    staged.add_file("offline-install", 0o755, &sources.tool)?;
    let mut index_entries = Array::new();
    let mut records = Array::new();
    for (role, reference, platforms) in
        [(ROLES[0], &sources.agent_image, &sources.platforms), (ROLES[1], &sources.runner_image, &sources.platforms), (ROLES[2], &sources.chart, &Vec::new())]
    {
        let (descriptor, record, attached) = stage_artifact(&mut staged, access, role, reference, platforms)?;
        index_entries.push(descriptor);
        index_entries.extend(attached);
        records.push(record);
    }
    let since = staged.base.as_ref().map(|b| b.commit.clone());
    let (module_file, module, prerequisite) = module_bundle(&sources.module_repo, &sources.module_ref, scratch, since.as_deref())?;
    staged.add_file("module/module.bundle", 0o644, &module_file)?;
    let mut index = Object::new();
    index.insert("schemaVersion".into(), Value::Number(Number::U64(2)));
    index.insert("mediaType".into(), Value::String(INDEX_TYPES[0].into()));
    index.insert("manifests".into(), Value::Array(index_entries));
    staged.add("oci/oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    staged.add("oci/index.json", 0o644, miniserde::json::to_string(&index).as_bytes())?;
    let mut manifest = Object::new();
    manifest.insert("format".into(), Value::String(FORMAT.into()));
    manifest.insert("created".into(), Value::String(crate::time::format_rfc3339(crate::time::now())));
    manifest.insert("artifacts".into(), Value::Array(records));
    manifest.insert("module".into(), module);
    if let Some(base) = &staged.base {
        manifest.insert("base".into(), base.record(&staged.blobs, prerequisite.as_deref()));
    }
    let manifest_text = crate::json::pretty(&Value::Object(manifest));
    staged.add("manifest.json", 0o644, manifest_text.as_bytes())?;
    let sums: String = staged.sums.iter().map(|(d, n)| format!("{}  {n}\n", d.hex())).collect();
    staged.tar.append_bytes("SHA256SUMS", 0o644, sums.as_bytes()).map_err(|e| Error::io("writing SHA256SUMS into the bundle", e))?;
    let out = staged.tar.finish().map_err(|e| Error::io("finishing the bundle (is the disk full?)", e))?;
    let written = out
        .into_inner()
        .map_err(|e| Error::io("flushing the bundle (is the disk full?)", e.into_error()))?
        .finish()
        .map_err(|e| Error::io("syncing the bundle (is the disk full?)", e))?;
    Ok((manifest_text, written))
}

/// Clones the module repository and bundles `reference`; returns the git bundle's path (in
/// `scratch`) and its record (whose `source` has the URL's user info redacted: it travels
/// with the bundle).
/// With `since` (the base's commit, when it is an earlier commit of the same history), the git
/// bundle holds only the commits after it, and that commit is returned as its prerequisite.
fn module_bundle(repo: &str, reference: &str, scratch: &Path, since: Option<&str>) -> Result<(PathBuf, Value, Option<String>)> {
    if reference.is_empty() || reference.starts_with('-') || reference.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::config(
            "--module-ref",
            format!("{} is not a branch or tag name", shown(reference)),
            "give a branch or tag of the module repository",
        ));
    }
    let mirror = scratch.join("module.git");
    let shown_repo = crate::redact::url_without_userinfo(repo);
    eprintln!("fetching module {shown_repo} at {reference}");
    git(&["clone", "--quiet", "--mirror", "--", repo, &mirror.display().to_string()], None, "cloning the module repository", repo)?;
    let commit = git(
        &["rev-parse", "--verify", "--end-of-options", &format!("{reference}^{{commit}}")],
        Some(&mirror),
        &format!("finding {reference} in the module repository"),
        repo,
    )?;
    let commit = commit.trim().to_string();
    // A base commit that is an ancestor (and not the commit itself) makes a thin bundle;
    // otherwise (unchanged, rewritten history) the bundle is complete, as without --since.
    let prerequisite = since.filter(|old| {
        *old != commit
            && git(&["merge-base", "--is-ancestor", "--end-of-options", old, &commit], Some(&mirror), "comparing the module with the base", repo).is_ok()
    });
    let range = match prerequisite {
        Some(old) => format!("{old}..{reference}"),
        None => reference.to_string(),
    };
    let file = scratch.join("module.bundle");
    git(&["bundle", "create", "--quiet", &file.display().to_string(), &range], Some(&mirror), "creating the git bundle", repo)?;
    let mut o = Object::new();
    o.insert("source".into(), Value::String(shown_repo));
    o.insert("ref".into(), Value::String(reference.into()));
    o.insert("commit".into(), Value::String(commit));
    o.insert("file".into(), Value::String("module/module.bundle".into()));
    Ok((file, Value::Object(o), prerequisite.map(String::from)))
}

/// Wall-clock bound of one git command, unless `OFFLINE_INSTALL_GIT_TIMEOUT` (seconds) says otherwise.
pub(crate) const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Runs git without a terminal to prompt on (`GIT_TERMINAL_PROMPT=0`, no standard input),
/// giving up on a transfer slower than 1,000 bytes/s for 60 s, and killed after the
/// wall-clock bound; its messages are shown with `url`'s user info hidden.
pub(super) fn git(args: &[&str], dir: Option<&Path>, what: &str, url: &str) -> Result<String> {
    git_fed(args, dir, what, url, None)
}

/// [`git`] with `input` copied to its standard input by a thread of its own (so a git that
/// stops reading is still stopped at the wall-clock bound); a copy that fails or stops short
/// fails the call.
fn git_fed(args: &[&str], dir: Option<&Path>, what: &str, url: &str, input: Option<Box<dyn Read + Send>>) -> Result<String> {
    let what = hide_userinfo(what, url);
    let limit = std::env::var("OFFLINE_INSTALL_GIT_TIMEOUT").ok().and_then(|t| t.parse().ok()).map_or(GIT_TIMEOUT, std::time::Duration::from_secs);
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60"]).args(args);
    cmd.env("GIT_TERMINAL_PROMPT", "0").stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so that the helpers it starts (git-remote-https, ssh) are
    // stopped with it and release the pipes.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("{what}: running git (is git installed?)"), e))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(16 << 20).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let feeder = match (input, child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(std::thread::spawn(move || std::io::copy(&mut from, &mut to).map(drop))),
        _ => None,
    };
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| Error::io(format!("{what}: waiting for git"), e))? {
            Some(status) => break Some(status),
            None if started.elapsed() > limit => {
                if let Ok(group) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill(2) on the process group this call created; no memory is touched.
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    let (out, err) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    let said = hide_userinfo(String::from_utf8_lossy(&err).trim(), url);
    let fed = feeder.map(|f| f.join().unwrap_or_else(|_| Err(std::io::Error::other("the feeding thread panicked"))));
    match status {
        Some(s) if s.success() && matches!(fed, Some(Err(_))) => {
            Err(Error::transport(what, format!("feeding git failed: {}", fed.and_then(Result::err).map_or(String::new(), |e| e.to_string()))))
        }
        None => Err(Error::transport(what, format!("git did not finish within {} s and was stopped (a Git service that does not answer?)", limit.as_secs()))),
        Some(s) if !s.success() => {
            Err(Error::transport(what, format!("git said: {said} (check the URL, that the Git service is reachable from here, and git's credentials for it)")))
        }
        Some(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
    }
}

/// One artifact of `manifest.json`, checked.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// One of [`ROLES`].
    pub role: String,
    /// Where it came from (its repository name and tag are kept on the far side).
    pub source: Reference,
    /// Digest of its top manifest.
    pub digest: Digest,
    /// Media type of its top manifest.
    pub media_type: String,
    /// What is attached to it (signatures, SBOMs, referrers), checked by `verify`.
    pub attachments: Vec<Attachment>,
    /// The source's index that `bundle --platform` narrowed into this one (carried as a
    /// blob; every platform of this index must be one it lists, and its signature is the
    /// one `--key` checks).
    pub narrowed_from: Option<Descriptor>,
}

/// The module record of `manifest.json`, checked.
#[derive(Debug, Clone)]
pub struct Module {
    /// The ref bundled.
    pub reference: String,
    /// Its commit.
    pub commit: String,
    /// The one ref the git bundle carries (`refs/tags/<reference>` or `refs/heads/<reference>`),
    /// once `verify` has read the bundle's header.
    pub full_ref: String,
}

/// The one ref a git bundle's header (`# v2 git bundle` or v3 with `@object-format`)
/// may name: `refs/heads/<ref>` or `refs/tags/<ref>` of the module record, with no
/// prerequisites and no other ref, so `push` can push exactly what `manifest.json` says.
/// The commit of an annotated tag is its tag object's; `push` checks the commit itself.
/// A differential bundle's git bundle must name exactly `prerequisite` (its base's commit)
/// as its one prerequisite; any other bundle none.
fn module_ref_in(head: &[u8], module: &Module, prerequisite: Option<&str>) -> std::result::Result<String, String> {
    let end = head.windows(2).position(|w| w == b"\n\n").ok_or("no git bundle header (or one over 64 KiB)")?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| "a git bundle header that is not UTF-8")?;
    let mut lines = text.split('\n');
    let v3 = match lines.next() {
        Some("# v2 git bundle") => false,
        Some("# v3 git bundle") => true,
        _ => return Err("not a git bundle (v2 or v3)".into()),
    };
    let mut refs = Vec::new();
    let mut prerequisites = Vec::new();
    for line in lines {
        if v3 && refs.is_empty() && prerequisites.is_empty() && matches!(line, "@object-format=sha1" | "@object-format=sha256") {
            continue;
        }
        if let Some(rest) = line.strip_prefix('-').filter(|_| refs.is_empty()) {
            let oid = rest.split_once(' ').map_or(rest, |(o, _)| o);
            prerequisites.push(oid);
            continue;
        }
        let (oid, name) = line.split_once(' ').ok_or_else(|| format!("the header line {} is not '<commit> <ref>'", shown(line)))?;
        if !(oid.len() == 40 || oid.len() == 64) || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("the header line {} is a prerequisite or capability this tool never writes", shown(line)));
        }
        refs.push((oid, name));
    }
    match (prerequisites.as_slice(), prerequisite) {
        ([], None) => {}
        ([one], Some(expected)) if *one == expected => {}
        (found, _) => {
            return Err(format!(
                "it needs the commits {} before it, not {} as its base says: the bundle was altered; get a fresh copy",
                shown(&found.join(", ")),
                shown(prerequisite.unwrap_or("none"))
            ))
        }
    }
    // `git bundle create f <ref>` records the full name: a tag's, a branch's, or the ref itself.
    let wanted = [format!("refs/tags/{}", module.reference), format!("refs/heads/{}", module.reference), module.reference.clone()];
    match refs.as_slice() {
        [(_, name)] if name.starts_with("refs/") && wanted.iter().any(|w| w == name) => Ok(name.to_string()),
        _ => Err(format!(
            "it carries the refs {}, not exactly the module's {}: the bundle was altered; get a fresh copy",
            shown(&refs.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")),
            shown(&module.reference)
        )),
    }
}

/// What `verify` says of each agent image's SBOM: true where it is bound to the image.
pub type SbomLines = Vec<(bool, String)>;

/// A bundle opened for reading, every entry checked.
pub struct Opened {
    path: PathBuf,
    /// Where its bytes are: the file, or its checked parts.
    pub source: Source,
    /// The base a differential bundle needs (none for a complete one).
    pub base: Option<differential::Base>,
    entries: BTreeMap<String, tar::Entry>,
    /// `SHA256SUMS`, checked.
    sums: BTreeMap<String, Digest>,
    /// The sha256 of `SHA256SUMS` itself: the trust anchor `bundle` prints, to be carried
    /// apart from the bundle and compared with what `verify` prints.
    pub sums_digest: Digest,
    /// `manifest.json` as written.
    pub manifest: Value,
    /// Its artifacts, checked.
    pub artifacts: Vec<Artifact>,
    /// Its module, checked.
    pub module: Module,
}

impl Opened {
    fn doc(&self) -> String {
        format!("bundle {}", self.path.display())
    }

    fn entry(&self, name: &str) -> Result<&tar::Entry> {
        self.entries.get(name).ok_or_else(|| Error::decode(self.doc(), format!("{name} is missing")))
    }

    /// An entry's bytes, when it is at most `max` bytes.
    fn read(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let entry = self.entry(name)?;
        if entry.size > max {
            return Err(Error::decode(self.doc(), format!("{name} is {} bytes, more than the {max} expected", entry.size)));
        }
        let mut bytes = Vec::new();
        self.source
            .open(entry)
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .map_err(|e| Error::io(format!("reading {name} from {}", self.path.display()), e))?;
        Ok(bytes)
    }

    /// Unpacks the module's git bundle into the bare repository `bare` without a copy of it
    /// on disk: the pack after its header is streamed into `git index-pack --stdin
    /// --fix-thin` (thin: a differential bundle's base objects are in `bare` already), the
    /// whole entry hashed on the way; only when it still has the sha256 `SHA256SUMS` gave is
    /// the module's ref set, so a bundle changed after verify leaves nothing to push.
    fn unpack_module(&self, bare: &Path, url: &str) -> Result<()> {
        let name = "module/module.bundle";
        let what = "unpacking the module bundle";
        let expected = self.sums.get(name).ok_or_else(|| Error::decode(self.doc(), format!("{name} is not in SHA256SUMS")))?.clone();
        let head = self.read_prefix(name, MAX_GIT_HEADER)?;
        let end = head.windows(2).position(|w| w == b"\n\n").ok_or_else(|| Error::decode(self.doc(), format!("{name} has no git bundle header")))? + 2;
        let full_ref = &self.module.full_ref;
        let oid = std::str::from_utf8(&head[..end])
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_suffix(full_ref.as_str()).and_then(|o| o.strip_suffix(' ')).map(String::from)))
            .ok_or_else(|| Error::decode(self.doc(), format!("{name} does not name {full_ref}")))?;
        let digest = Arc::new(std::sync::Mutex::new(None));
        let reader = self.source.open(self.entry(name)?).map_err(|e| Error::io(format!("reading {name}"), e))?;
        let pack = Hashed { inner: reader, hasher: Some(Hasher::new()), skip: end as u64, done: digest.clone() };
        git_fed(&["index-pack", "--stdin", "--fix-thin"], Some(bare), what, url, Some(Box::new(pack)))?;
        let actual = digest.lock().map_err(|_| Error::decode(self.doc(), "a panicked reader"))?.take();
        if actual.as_ref() != Some(&expected) {
            return Err(Error::decode(self.doc(), format!("{name} changed after it was verified (or was not read to its end); nothing of it is pushed")));
        }
        git(&["update-ref", "--end-of-options", full_ref, &oid], Some(bare), what, url).map(drop)
    }

    /// At most the first `max` bytes of an entry.
    fn read_prefix(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let entry = self.entry(name)?;
        let mut bytes = Vec::new();
        self.source
            .open(entry)
            .and_then(|r| r.take(max).read_to_end(&mut bytes))
            .map_err(|e| Error::io(format!("reading {name} from {}", self.path.display()), e))?;
        Ok(bytes)
    }

    /// True when the bundle carries the blob (a differential one leaves its base's out).
    pub fn carries(&self, digest: &Digest) -> bool {
        self.entries.contains_key(&digest.blob_name())
    }

    fn blob_entry(&self, digest: &Digest) -> Result<tar::Entry> {
        self.entries.get(&digest.blob_name()).cloned().ok_or_else(|| Error::decode(self.doc(), format!("blob {digest} is missing")))
    }

    /// A manifest read again from the bundle, refused unless it is still the `digest` it
    /// was verified as (the file may have changed under us since `verify`).
    fn manifest_blob(&self, digest: &Digest, media_type: &str) -> Result<Manifest> {
        let m = Manifest::new(media_type.to_string(), self.read(&digest.blob_name(), document::MAX_MANIFEST as u64)?);
        if m.digest != *digest {
            return Err(Error::decode(
                self.doc(),
                format!("{} now holds {}: the file changed after it was verified; nothing more is pushed", digest.blob_name(), m.digest),
            ));
        }
        Ok(m)
    }

    /// Checks one attachment of `artifact` against the bundle: its subject is one of the
    /// artifact's `manifests`, its manifest has the size recorded and names no other
    /// subject, and no other attachment claims its tag in the repository it is pushed to
    /// (`tags`: the repository's name and the tag, across the bundle; tags are per
    /// repository, so one image under two names has its signature in each).
    fn check_attachment(&self, artifact: &Artifact, a: &Attachment, manifests: &BTreeSet<Digest>, tags: &mut BTreeSet<(String, String)>) -> Result<()> {
        let what = format!("{}: the {} {}", self.doc(), a.kind.name(), a.digest);
        if !manifests.contains(&a.subject) {
            return Err(Error::decode(
                what,
                format!("it is attached to {}, which is not in the {} graph: the bundle was altered; get a fresh copy", a.subject, artifact.role),
            ));
        }
        let m = self.manifest_blob(&a.digest, &a.media_type)?;
        if m.bytes.len() as u64 != a.size {
            return Err(Error::decode(what, format!("it is {} bytes, manifest.json says {}: the bundle was altered; get a fresh copy", m.bytes.len(), a.size)));
        }
        if attachment::subject_of(&m)?.is_some_and(|s| s != a.subject) {
            return Err(Error::decode(what, format!("its manifest names another subject than {}: the bundle was altered; get a fresh copy", a.subject)));
        }
        if let Some(tag) = a.kind.tag(&a.subject) {
            if !tags.insert((artifact.source.repository.name().to_string(), tag.clone())) {
                return Err(Error::decode(what, format!("two attachments claim the tag {tag} of one repository: the bundle was altered; get a fresh copy")));
            }
        }
        Ok(())
    }

    /// `verify --key`: every artifact (both images and the chart) must carry a cosign
    /// signature of its top digest that [`signature::verify`] accepts with `key`, offline;
    /// the first one that does not, or an artifact with none, is the error, naming it.
    /// Returns one line per artifact.
    /// Refuses the bundle unless its module is at `expected` (the full commit id, carried
    /// apart from the bundle: no image signature covers the module).
    pub fn check_module_commit(&self, expected: &str) -> Result<()> {
        if expected.eq_ignore_ascii_case(&self.module.commit) {
            return Ok(());
        }
        Err(Error::decode(
            self.doc(),
            format!(
                "its module ({}) is commit {}, not the {} given with --module-commit: refused, nothing was pushed",
                shown(&self.module.reference),
                self.module.commit,
                shown(expected)
            ),
        ))
    }

    pub fn check_signatures(&self, key: &PublicKey) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for artifact in &self.artifacts {
            // A --platform bundle's index is new: the source's index it narrowed is the one
            // signed, and verify checked that it lists every platform kept.
            let signed = artifact.narrowed_from.as_ref().map_or(&artifact.digest, |n| &n.digest);
            let name = match &artifact.narrowed_from {
                None => format!("the {} {} ({})", artifact.role, artifact.source, artifact.digest),
                Some(n) => format!("the {} {} (narrowed by --platform from {})", artifact.role, artifact.source, n.digest),
            };
            let Some(sig) = artifact.attachments.iter().find(|a| a.kind == attachment::Kind::Signature && a.subject == *signed) else {
                return Err(Error::decode(
                    self.doc(),
                    format!("{name} carries no signature ({}): refused; sign it at the source (cosign sign --key) and bundle again", signature::tag_of(signed)),
                ));
            };
            let manifest = self.manifest_blob(&sig.digest, &sig.media_type)?;
            let what = format!("the signature of {name} in {}", self.doc());
            let repository = artifact.source.repository.name();
            signature::verify(key, signed, repository, &manifest.bytes, &what, &mut |d| self.read(&d.digest.blob_name(), signature::MAX_PAYLOAD))?;
            lines.push(match &artifact.narrowed_from {
                None => format!("{}: {} is signed by the key ({})", artifact.role, artifact.digest, signature::tag_of(signed)),
                Some(n) => format!(
                    "{}: {} keeps platforms of {}, which is signed by the key ({})",
                    artifact.role,
                    artifact.digest,
                    n.digest,
                    signature::tag_of(signed)
                ),
            });
        }
        Ok(lines)
    }

    /// Checks the index `artifact` was narrowed from by `bundle --platform`: the bundle
    /// holds it with the size its record gives, and every platform manifest the
    /// artifact's index lists is one it lists too (so a signature of it covers them).
    fn check_narrowed(&self, artifact: &Artifact, original: &Descriptor) -> Result<()> {
        let what = format!("{}: the {} index it was narrowed from ({})", self.doc(), artifact.role, original.digest);
        let index = self.manifest_blob(&original.digest, &original.media_type)?;
        if index.bytes.len() as u64 != original.size {
            return Err(Error::decode(
                what,
                format!("it is {} bytes, its record says {}: the bundle was altered; get a fresh copy", index.bytes.len(), original.size),
            ));
        }
        let listed: BTreeSet<Digest> = graph::parse(&index)?.children.into_iter().map(|d| d.digest).collect();
        let top = graph::parse(&self.manifest_blob(&artifact.digest, &artifact.media_type)?)?;
        if top.children.is_empty() {
            return Err(Error::decode(what, "the artifact's own manifest is no index, so nothing was narrowed: the bundle was altered; get a fresh copy"));
        }
        if let Some(extra) = top.children.iter().find(|c| !listed.contains(&c.digest)) {
            return Err(Error::decode(
                what,
                format!("the {} index lists {}, which that index does not: the bundle was altered; get a fresh copy", artifact.role, extra.digest),
            ));
        }
        // And nothing else differs (annotations, a subject, the order): the index is the one
        // bundle makes of that index for these platforms.
        let kept: BTreeSet<Option<String>> = top.children.iter().map(|c| c.platform.clone()).collect();
        let rebuilt = narrowed_index(&index, &what, &|d| kept.contains(&d.platform))?;
        if rebuilt.digest != artifact.digest {
            return Err(Error::decode(
                what,
                format!(
                    "the {} index is not that index with only its platforms kept (that would be {}): the bundle was altered; get a fresh copy",
                    artifact.role, rebuilt.digest
                ),
            ));
        }
        Ok(())
    }

    /// Checks every SBOM attached to the agent image against the file its own layers hold.
    /// The agent's SBOM is the one `bundle` makes of [`attachment::SBOM_PATH`] in each
    /// platform's layers (it leaves any SBOM the source attached behind), so every SBOM in the
    /// agent's attachments (by kind, artifact type or layer type) must be exactly that
    /// artifact of an image manifest of the graph whose layers hold the file: an SBOM on an
    /// index or on the index `--platform` narrowed, a second one, a CycloneDX referrer, or one
    /// whose layer holds another file, is refused. The SBOM the mirror serves is thereby bound
    /// to the image digest (with `--key`, to its signature). Layers are read as the SBOM search
    /// reads them (bounded, [`attachment::MAX_INFLATED`] in all), from the bundle, or from
    /// `target` (the push target and the agent's repository there) for those a differential
    /// bundle leaves to its base; without `target` such a bundle's check is left to `push`
    /// (said). `verify` and `push` run it after the signatures, so an unsigned bundle is
    /// refused before any layer is inflated. One line each, true where the SBOM is bound.
    pub fn check_sboms(&self, target: Option<(&Registry, &Repository)>) -> Result<SbomLines> {
        let Some(agent) = self.artifacts.iter().find(|a| a.role == ROLES[0]) else { return Ok(Vec::new()) };
        // The agent's image manifests (not indexes), and whether the bundle carries their blobs;
        // and the first manifest of its graph that names a subject (push would make it a
        // referrer) or looks like an SBOM: its own graph holds images and indexes only.
        let (mut images, mut odd): (Vec<(Manifest, bool)>, Option<Digest>) = (Vec::new(), None);
        self.walk(agent, &mut |step| {
            if let Step::Manifest(m, parsed) = step {
                if odd.is_none() && (attachment::subject_of(m)?.is_some() || attachment::looks_like_sbom(m)) {
                    odd = Some(m.digest.clone());
                }
                if parsed.children.is_empty() {
                    images.push((m.clone(), parsed.blobs.iter().all(|b| self.carries(&b.digest))));
                }
            }
            Ok(())
        })?;
        if let Some(d) = odd {
            return Err(Error::decode(
                format!("{}: the manifest {d} of the {} graph", self.doc(), ROLES[0]),
                "it names a subject or is an SBOM, which the agent image's graph never holds: the bundle was altered; get a fresh copy",
            ));
        }
        // Its attachments are its cosign signatures and the SBOM bundle makes from each
        // platform's layers, nothing else (bundle leaves anything else behind).
        let mut checks: Vec<(Manifest, &(Manifest, bool))> = Vec::new();
        for a in &agent.attachments {
            let what = format!("{}: the {} {} of the {}", self.doc(), a.kind.name(), a.digest, ROLES[0]);
            let m = self.manifest_blob(&a.digest, &a.media_type)?;
            match a.kind {
                attachment::Kind::Signature if attachment::is_simple_signing(&m) => continue,
                attachment::Kind::Sbom if attachment::looks_like_sbom(&m) => {}
                _ => {
                    return Err(Error::decode(
                        what,
                        "the agent image carries only its cosign signatures and the SBOM bundle makes from its layers, and this is neither: the bundle was altered; get a fresh copy",
                    ))
                }
            }
            let subject = attachment::subject_of(&m)?;
            let Some(image) = images.iter().find(|(i, _)| Some(&i.digest) == subject.as_ref()) else {
                return Err(Error::decode(
                    what,
                    format!(
                        "it is an SBOM of {}, not of one of the agent's platform manifests (the only SBOM the agent has is the one bundle makes from each platform's layers): the bundle was altered; get a fresh copy",
                        subject.map_or("nothing".to_string(), |d| d.to_string())
                    ),
                ));
            };
            checks.push((m, image));
        }
        if target.is_none() && checks.iter().any(|(_, (_, carried))| !carried) {
            return Ok(vec![(false, format!("{}: its SBOM is checked by push, in the layers the target holds (the base bundle's)", ROLES[0]))]);
        }
        let mut scanned = attachment::Scanned::default();
        let mut lines = Vec::new();
        for (manifest, (image, _)) in checks {
            let fetch = |layer: &Descriptor, out: &mut dyn std::io::Write| match target {
                Some((dest, repository)) if !self.carries(&layer.digest) => dest.blob(repository, &layer.digest, layer.size, out),
                _ => self.write_blob(layer, out),
            };
            let what = format!("{}: the SBOM {} attached to {}", self.doc(), manifest.digest, image.digest);
            let Some(found) = attachment::sbom_of_image(image, &mut scanned, &fetch, true)? else {
                return Err(Error::decode(what, format!("no layer of that image holds /{}: the bundle was altered; get a fresh copy", attachment::SBOM_PATH)));
            };
            // The artifact bundle makes of that file for that image: the subject is the image's
            // own digest and size (its media type one of an image manifest's).
            let value = document::parse(&manifest.bytes, &what, document::MAX_MANIFEST)?;
            let subject = get(&value, &["subject"]).map(|s| Descriptor::parse(s, &what)).transpose()?;
            let expected = subject
                .filter(|s| s.digest == image.digest && s.size == image.bytes.len() as u64 && IMAGE_TYPES.contains(&s.media_type.as_str()))
                .map(|s| attachment::sbom_artifact(&found.digest, found.size, &s).digest);
            if expected.as_ref() != Some(&manifest.digest) {
                return Err(Error::decode(
                    what,
                    format!(
                        "it is not the image's own /{} (sha256 {}, in its layer): the bundle was altered; get a fresh copy",
                        attachment::SBOM_PATH,
                        found.digest.hex()
                    ),
                ));
            }
            lines.push((
                true,
                format!("{}: the SBOM attached to {} is /{} from its own layer (sha256 {})", ROLES[0], image.digest, attachment::SBOM_PATH, found.digest.hex()),
            ));
        }
        Ok(lines)
    }

    /// Writes the blob `layer` names from the bundle into `out`, hashed again on the way
    /// (the file may have changed since it was verified).
    fn write_blob(&self, layer: &Descriptor, out: &mut dyn std::io::Write) -> Result<()> {
        let name = layer.digest.blob_name();
        let entry = self.blob_entry(&layer.digest)?;
        let mut reader = self.source.open(&entry).map_err(|e| Error::io(format!("reading {name} from {}", self.path.display()), e))?;
        let (mut hasher, mut buf) = (Hasher::new(), vec![0u8; 64 << 10]);
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::io(format!("reading {name} from {}", self.path.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(format!("searching {name} for the SBOM"), e))?;
        }
        if hasher.finish() != layer.digest {
            return Err(Error::decode(self.doc(), format!("{name} changed while it was verified: get a fresh copy")));
        }
        Ok(())
    }

    /// Walks one artifact's graph from the bundle (see [`graph::walk`]); every blob is
    /// checked to be present with the size its descriptor gives.
    pub(super) fn walk(&self, artifact: &Artifact, visit: &mut dyn FnMut(Step) -> Result<()>) -> Result<()> {
        self.walk_from(&artifact.digest, &artifact.media_type, visit)
    }

    /// [`Opened::walk`] from any manifest of the bundle (an attachment's).
    fn walk_from(&self, digest: &Digest, media_type: &str, visit: &mut dyn FnMut(Step) -> Result<()>) -> Result<()> {
        let top = self.manifest_blob(digest, media_type)?;
        graph::walk(top, &mut |child| self.manifest_blob(&child.digest, &child.media_type), &mut |step| {
            if let Step::Blob(blob) = &step {
                if !self.carries(&blob.digest) && self.base.as_ref().is_some_and(|b| b.omits.contains(&blob.digest)) {
                    return visit(step);
                }
                let entry = self.blob_entry(&blob.digest)?;
                if entry.size != blob.size {
                    return Err(Error::decode(self.doc(), format!("blob {} is {} bytes, its manifest says {}", blob.digest, entry.size, blob.size)));
                }
            }
            visit(step)
        })
    }
}

/// `verify`: the tar is read strictly (see [`tar`]); every entry is one this tool writes
/// and is checked against `SHA256SUMS`, every blob against its name; `manifest.json` and
/// `oci/index.json` name the same artifacts, and each artifact's whole graph is present.
/// Returns the opened bundle.
pub fn verify(path: &Path) -> Result<Opened> {
    verify_source(path, Source::locate(path, true)?)
}

/// [`verify`] of the bundle whose bytes `source` holds (`path` names it in messages); a
/// parted bundle's `SHA256SUMS` must be the one its index records.
pub fn verify_source(path: &Path, source: Source) -> Result<Opened> {
    let mut opened = open_source(path, source)?;
    let doc = opened.doc();
    if let Some(recorded) = &opened.source.sums {
        if *recorded != opened.sums_digest {
            return Err(Error::decode(&doc, "its SHA256SUMS is not the one its part index records: the parts are not of one bundle; get a fresh copy"));
        }
    }
    for (name, expected) in &opened.sums {
        let entry = opened.entry(name)?;
        let mut reader = opened.source.open(entry).map_err(|e| Error::io(format!("reading {name}"), e))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::io(format!("reading {name} from {doc}"), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hasher.finish();
        if &actual != expected {
            return Err(Error::decode(
                &doc,
                format!("{name} has sha256 {}, SHA256SUMS says {}: the bundle is corrupt; get a fresh copy (nothing was pushed)", actual.hex(), expected.hex()),
            ));
        }
        if name.starts_with("oci/blobs/") && *name != actual.blob_name() {
            return Err(Error::decode(&doc, format!("{name} does not hold the content its name says ({actual})")));
        }
    }
    let index = document::parse(&opened.read("oci/index.json", document::MAX_SMALL as u64)?, "oci/index.json", document::MAX_SMALL)?;
    let indexed: BTreeSet<Digest> = match get(&index, &["manifests"]) {
        Some(Value::Array(a)) => a.iter().map(|d| Descriptor::parse(d, "oci/index.json").map(|d| d.digest)).collect::<Result<_>>()?,
        _ => return Err(Error::decode("oci/index.json", "no manifests")),
    };
    let attached = opened.artifacts.iter().flat_map(|a| a.attachments.iter().map(|t| t.digest.clone()));
    let recorded: BTreeSet<Digest> = opened.artifacts.iter().map(|a| a.digest.clone()).chain(attached).collect();
    if indexed != recorded {
        return Err(Error::decode(&doc, "oci/index.json and manifest.json name different artifacts: the bundle was altered; get a fresh copy"));
    }
    // Every blob the bundle holds is one some artifact's graph (or an attachment's)
    // references; a differential bundle's missing blobs are exactly those its base omits
    // (checked in `walk`).
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    let mut tags = BTreeSet::new();
    for artifact in &opened.artifacts {
        let mut manifests = BTreeSet::new();
        opened.walk(artifact, &mut |step| {
            referenced.insert(match step {
                Step::Blob(b) => b.digest.blob_name(),
                Step::Manifest(m, _) => {
                    manifests.insert(m.digest.clone());
                    m.digest.blob_name()
                }
            });
            Ok(())
        })?;
        if let Some(original) = &artifact.narrowed_from {
            opened.check_narrowed(artifact, original)?;
            referenced.insert(original.digest.blob_name());
            manifests.insert(original.digest.clone());
        }
        for a in &artifact.attachments {
            opened.check_attachment(artifact, a, &manifests, &mut tags)?;
            opened.walk_from(&a.digest, &a.media_type, &mut |step| {
                referenced.insert(match step {
                    Step::Blob(b) => b.digest.blob_name(),
                    Step::Manifest(m, _) => m.digest.blob_name(),
                });
                Ok(())
            })?;
        }
    }
    if let Some(extra) = opened.entries.keys().find(|n| n.starts_with("oci/blobs/") && !referenced.contains(*n)) {
        return Err(Error::decode(&doc, format!("{extra} is referenced by no artifact: the bundle was altered; get a fresh copy")));
    }
    if let Some(base) = &opened.base {
        if let Some(odd) = base.omits.iter().find(|d| opened.carries(d) || !referenced.contains(&d.blob_name())) {
            return Err(Error::decode(
                &doc,
                format!("its base omits {odd}, which it carries or no artifact references: the bundle was altered; get a fresh copy"),
            ));
        }
    }
    let head = opened.read_prefix("module/module.bundle", MAX_GIT_HEADER)?;
    let prerequisite = opened.base.as_ref().and_then(|b| b.prerequisite.clone());
    opened.module.full_ref =
        module_ref_in(&head, &opened.module, prerequisite.as_deref()).map_err(|why| Error::decode(&doc, format!("module/module.bundle: {why}")))?;
    Ok(opened)
}

/// Opens the bundle `source` holds without checking any checksum: the tar is read strictly
/// (see [`tar`]), every entry is one this tool writes with the mode and owner it writes,
/// `SHA256SUMS` lists exactly the other entries, and `manifest.json` is read and checked.
/// [`verify_source`] and `list` start here; only the former hashes anything.
pub fn open_source(path: &Path, source: Source) -> Result<Opened> {
    let doc = format!("bundle {}", path.display());
    // Only names this tool writes, and no directories: the first other entry ends the read.
    let ours = |name: &str, is_dir: bool| {
        !is_dir && (FIXED_NAMES.contains(&name) || name.strip_prefix("oci/blobs/sha256/").is_some_and(|h| Digest::from_hex(h).is_ok()))
    };
    let list = tar::index_of(&mut source.reader(), source.len(), &ours)
        .map_err(|e| Error::decode(&doc, format!("{} is not a bundle this tool wrote: {e}: the bundle was altered; get a fresh copy", source.shown())))?;
    for e in &list {
        // What this tool writes: no pax header, owner 0:0 without names, 0755 for the tool and
        // 0644 for the rest, so `tar -xf` as root makes no setuid file and no one else's.
        let mode = if e.name == "offline-install" { 0o755 } else { 0o644 };
        if e.pax || e.uid != 0 || e.gid != 0 || !e.uname.is_empty() || !e.gname.is_empty() || e.mode != mode {
            return Err(Error::decode(
                &doc,
                format!(
                    "{} has mode {:o}, owner {}:{} ({}:{}){}, not what this tool writes ({mode:o}, 0:0): the bundle was altered; get a fresh copy",
                    e.name,
                    e.mode,
                    e.uid,
                    e.gid,
                    shown(&e.uname),
                    shown(&e.gname),
                    if e.pax { " and a pax header" } else { "" }
                ),
            ));
        }
    }
    let entries: BTreeMap<String, tar::Entry> = list.into_iter().map(|e| (e.name.clone(), e)).collect();
    let sums_entry = entries.get("SHA256SUMS").ok_or_else(|| Error::decode(&doc, "SHA256SUMS is missing"))?;
    if sums_entry.size > MAX_SUMS {
        return Err(Error::decode(&doc, "SHA256SUMS is too large"));
    }
    let mut sums = String::new();
    source.open(sums_entry).and_then(|mut r| r.read_to_string(&mut sums)).map_err(|e| Error::io(format!("reading SHA256SUMS of {doc}"), e))?;
    let mut listed: BTreeMap<String, Digest> = BTreeMap::new();
    for line in sums.lines() {
        let malformed = || Error::decode(&doc, format!("the SHA256SUMS line {} is malformed", shown(line)));
        let (hash, name) = line.split_once("  ").ok_or_else(malformed)?;
        let hash = Digest::from_hex(hash).map_err(|_| malformed())?;
        if listed.insert(name.to_string(), hash).is_some() {
            return Err(Error::decode(&doc, format!("SHA256SUMS lists {} twice: the bundle was altered; get a fresh copy", shown(name))));
        }
    }
    for name in entries.keys().filter(|n| *n != "SHA256SUMS") {
        if !listed.contains_key(name) {
            return Err(Error::decode(&doc, format!("{name} is not listed in SHA256SUMS: the bundle was altered; get a fresh copy")));
        }
    }
    if let Some(name) = listed.keys().find(|n| !entries.contains_key(*n)) {
        return Err(Error::decode(&doc, format!("{} is listed in SHA256SUMS but missing", shown(name))));
    }
    let sums_digest = Digest::of(sums.as_bytes());
    let mut opened = Opened {
        path: path.to_path_buf(),
        source,
        base: None,
        entries,
        sums: listed,
        sums_digest,
        manifest: Value::Null,
        artifacts: Vec::new(),
        module: Module { reference: String::new(), commit: String::new(), full_ref: String::new() },
    };
    opened.manifest = document::parse(&opened.read("manifest.json", document::MAX_SMALL as u64)?, "manifest.json", document::MAX_SMALL)?;
    let (artifacts, module) = contents(&opened.manifest)?;
    opened.artifacts = artifacts;
    opened.module = module;
    opened.base = differential::Base::parse(&opened.manifest)?;
    Ok(opened)
}

/// `list`: what the bundle holds, read strictly and bounded as [`open_source`] reads it, but
/// no checksum is checked (run `verify` for that): each artifact with its platforms, digest,
/// and the count and bytes of the blobs it carries; the base a differential bundle needs.
pub fn list(path: &Path) -> Result<String> {
    // The parts' sizes are checked, not their checksums: list hashes nothing.
    let opened = open_source(path, Source::locate(path, false)?)?;
    let mut out = format!(
        "{}: {} bytes, not verified (run 'verify' to check every checksum)
",
        opened.source.shown(),
        opened.source.len()
    );
    if let Some((index, anchor)) = &opened.source.index {
        out.push_str(&format!(
            "  {} parts, index {} sha256: {}
",
            opened.source.parts().len(),
            index.display(),
            anchor.hex()
        ));
    }
    for artifact in &opened.artifacts {
        let (mut carried, mut bytes, mut omitted) = (0usize, 0u64, 0usize);
        opened.walk(artifact, &mut |step| {
            match step {
                Step::Blob(b) if opened.carries(&b.digest) => {
                    carried += 1;
                    bytes += b.size;
                }
                Step::Blob(_) => omitted += 1,
                Step::Manifest(..) => {}
            }
            Ok(())
        })?;
        let platforms = match get(&opened.manifest, &["artifacts"]) {
            Some(Value::Array(records)) => records
                .iter()
                .filter(|r| json_text(r, &["role"]) == Some(artifact.role.as_str()))
                .filter_map(|r| match get(r, &["platforms"]) {
                    Some(Value::Array(p)) => {
                        Some(p.iter().filter_map(|v| if let Value::String(t) = v { Some(shown(t)) } else { None }).collect::<Vec<_>>().join(", "))
                    }
                    _ => None,
                })
                .collect::<String>(),
            _ => String::new(),
        };
        let mut platforms = if platforms.is_empty() { "-".to_string() } else { platforms };
        if let Some(n) = &artifact.narrowed_from {
            platforms.push_str(&format!(" (narrowed by --platform from the index {})", n.digest));
        }
        out.push_str(&format!(
            "  {}: {} = {} ({})
    platforms: {platforms}
    blobs carried: {carried} ({bytes} bytes){}
",
            artifact.role,
            artifact.source,
            artifact.digest,
            shown(&artifact.media_type),
            if omitted > 0 { format!(", in the base: {omitted}") } else { String::new() }
        ));
    }
    out.push_str(&format!(
        "  module: {} at {}
",
        shown(&opened.module.reference),
        opened.module.commit
    ));
    match &opened.base {
        Some(base) => out.push_str(&format!(
            "  {}
",
            base.describe()
        )),
        None => out.push_str(
            "  complete: it needs nothing in the target
",
        ),
    }
    out.push_str(&format!(
        "SHA256SUMS sha256: {}
",
        opened.sums_digest.hex()
    ));
    Ok(out)
}

/// `sha256-<64 hex>` with or without `.sig`, `.att` or `.sbom`: the tags attachments use.
fn attachment_tag_form(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else { return false };
    let hex = rest.split_once('.').map_or(rest, |(h, kind)| if matches!(kind, "sig" | "att" | "sbom") { h } else { "" });
    Digest::from_hex(hex).is_ok()
}

/// The checked artifacts and module of `manifest.json`.
fn contents(manifest: &Value) -> Result<(Vec<Artifact>, Module)> {
    let doc = "manifest.json";
    if text(manifest, &["format"]) != FORMAT {
        return Err(Error::decode(doc, format!("it is not format {FORMAT}")));
    }
    let records = match get(manifest, &["artifacts"]) {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(Error::decode(doc, "it lists no artifacts")),
    };
    let mut artifacts: Vec<Artifact> = Vec::new();
    for record in records.iter() {
        let role = text(record, &["role"]);
        if !ROLES.contains(&role.as_str()) || artifacts.iter().any(|a| a.role == role) {
            return Err(Error::decode(doc, format!("the artifact role {} is unknown or given twice", shown(&role))));
        }
        let field = |name: &str| json_text(record, &[name]).ok_or_else(|| Error::decode(doc, format!("the {role} record has no {name}")));
        let source = Reference::parse(field("source")?).map_err(|why| Error::decode(doc, format!("the {role} record's source: {why}")))?;
        let digest = Digest::parse(field("digest")?).map_err(|why| Error::decode(doc, format!("the {role} record's digest: {why}")))?;
        let media_type = field("mediaType")?.to_string();
        if !graph::media_type_ok(&media_type) {
            return Err(Error::decode(doc, format!("the {role} record has an unusable mediaType")));
        }
        let attachments = match get(record, &["attachments"]) {
            None => Vec::new(),
            Some(Value::Array(list)) if list.len() <= attachment::MAX_ATTACHMENTS => {
                list.iter().map(|a| Attachment::parse(a, &role)).collect::<std::result::Result<_, _>>().map_err(|why| Error::decode(doc, why))?
            }
            Some(Value::Array(_)) => return Err(Error::decode(doc, format!("the {role} record has more than {} attachments", attachment::MAX_ATTACHMENTS))),
            Some(_) => return Err(Error::decode(doc, format!("the {role} record's attachments are not a list"))),
        };
        // Mirrored under HOST/PATH/<name>: two artifacts of one name would share a target
        // repository, and the second's tag overwrite the first's.
        if let Some(other) = artifacts.iter().find(|a| a.source.repository.name() == source.repository.name()) {
            return Err(Error::decode(
                doc,
                format!(
                    "the {role} and the {} both mirror to the repository name {}: the bundle was altered; get a fresh copy",
                    other.role,
                    shown(source.repository.name())
                ),
            ));
        }
        // Tags of that form are the attachments' (cosign's, the referrers tag schema's):
        // an artifact under one would replace another artifact's signature.
        if let Some(tag) = source.tag.as_deref().filter(|t| attachment_tag_form(t)) {
            return Err(Error::decode(doc, format!("the {role} record's tag {} is an attachment's (sha256-<hex>[.sig|.att|.sbom])", shown(tag))));
        }
        let narrowed_from = match get(record, &["narrowedFrom"]) {
            None => None,
            Some(d) => Some(Descriptor::parse(d, &format!("the {role} record's narrowedFrom"))?),
        };
        artifacts.push(Artifact { role, source, digest, media_type, attachments, narrowed_from });
    }
    let reference = text(manifest, &["module", "ref"]);
    let commit = text(manifest, &["module", "commit"]);
    if reference.is_empty() || reference.chars().any(char::is_control) || reference.len() > 255 {
        return Err(Error::decode(doc, "the module record has no usable ref"));
    }
    if !(commit.len() == 40 || commit.len() == 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::decode(doc, "the module record has no usable commit"));
    }
    Ok((artifacts, Module { reference, commit, full_ref: String::new() }))
}

/// `host[:port][/path]` of the internal registry, checked: no user info (it would be
/// printed), a host and port, a repository path.
#[derive(Debug, Clone)]
pub struct RegistryAddress {
    /// `host[:port]`.
    pub host: String,
    /// The path every repository goes under.
    pub prefix: Option<Repository>,
}

impl RegistryAddress {
    /// Parses `--registry`; the error never echoes a value holding user info.
    pub fn parse(text: &str) -> std::result::Result<RegistryAddress, String> {
        if text.contains('@') {
            return Err("--registry holds user info (user:password@); it is not echoed and not used: give HOST[:PORT][/PATH], and the credentials with --username and --password-stdin, the environment or an auth file".into());
        }
        let (host, prefix) = match text.split_once('/') {
            Some((h, p)) => (h, p.trim_matches('/')),
            None => (text, ""),
        };
        if !registry::host_ok(host) {
            return Err(format!("--registry {}: {} is not HOST[:PORT] (no scheme)", shown(text), shown(host)));
        }
        let prefix = if prefix.is_empty() { None } else { Some(Repository::parse(prefix).map_err(|why| format!("--registry {}: {why}", shown(text)))?) };
        Ok(RegistryAddress { host: host.to_string(), prefix })
    }
}

/// Where `push` sends things.
#[derive(Debug, Clone)]
pub struct Target {
    /// The internal registry.
    pub registry: RegistryAddress,
    /// Access to it.
    pub access: Access,
    /// URL of the internal Git repository for the module (any URL `git push` takes; its
    /// user info, if any, is never printed).
    pub git_url: String,
    /// Chunk size, state directory and parallel jobs of the blob uploads.
    pub transfer: Transfer,
}

/// A file or directory this run created, removed (whichever it is) when dropped.
struct Owned(PathBuf);

impl Owned {
    /// A directory of our own under the temporary directory (created exclusively, so never
    /// someone else's): `push` works from read-only media.
    fn temp_dir(what: &str) -> Result<Owned> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let mut last = None;
        for attempt in 0..16u32 {
            let path = base.join(format!("offline-install-{what}-{}-{nanos}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Owned(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::io(format!("creating a scratch directory in {} (set TMPDIR to a writable directory)", base.display()), e)),
            }
        }
        Err(Error::io(format!("creating a scratch directory in {}", base.display()), last.unwrap_or_else(|| std::io::Error::other("exists"))))
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if std::fs::remove_file(&self.0).is_err() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `push`: verify, then mirror every artifact and the module; returns the values to use next.
/// Blobs are read in place from the bundle or its parts. The module's pack is streamed
/// from the bundle into a bare repository in a scratch directory under the temporary
/// directory (made before anything is uploaded, so a bundle on read-only media works), and
/// checked against `SHA256SUMS` again on the way; git needs a repository to push from, so
/// that repository (the pack and its index) is the only temporary disk push uses.
pub fn push(path: &Path, target: &Target, key: Option<&PublicKey>, module_commit: Option<&str>) -> Result<String> {
    let opened = verify(path)?;
    if let Some(key) = key {
        for line in opened.check_signatures(key)? {
            eprintln!("{line}");
        }
    }
    match module_commit {
        Some(expected) => opened.check_module_commit(expected)?,
        // No image signature covers the module, which is code the runner Jobs execute.
        None if key.is_some() => {
            return Err(Error::config(
                "--module-commit",
                format!(
                    "push --key pushes the TF module only when its commit is given: no signature covers it (the bundle's is {} at {})",
                    shown(&opened.module.reference),
                    opened.module.commit
                ),
                "give --module-commit with the commit you expect, carried apart like the SHA256SUMS value; nothing was pushed",
            ))
        }
        None => {}
    }
    eprintln!(
        "verified {}: every checksum and digest matches (SHA256SUMS sha256: {}: compare it with the value bundle printed)",
        path.display(),
        opened.sums_digest.hex()
    );
    if let Some(base) = &opened.base {
        eprintln!("{}", base.describe());
    }
    let scratch = Owned::temp_dir("push")?;
    let host = &target.registry.host;
    let prefix = target.registry.prefix.as_ref();
    let dest = Registry::new(target.access.endpoint(host)?)?.with_uploads(Uploads::new(&target.transfer));
    let bare = scratch.0.join("module.git");
    if let Some(base) = &opened.base {
        base_in_target(&opened, base, &dest, target, &bare)?;
    }
    // After the signatures and the base's blobs, before anything is uploaded.
    if let Some(agent) = opened.artifacts.iter().find(|a| a.role == ROLES[0]) {
        for (_, line) in opened.check_sboms(Some((&dest, &agent.source.repository.under(prefix))))? {
            eprintln!("{line}");
        }
    }
    let mut values = Vec::new();
    let mut mirrors = BTreeSet::new();
    let stop = dest.uploads().map(|u| u.stop.clone()).unwrap_or_default();
    for artifact in &opened.artifacts {
        let (role, source) = (&artifact.role, &artifact.source);
        let repository = source.repository.under(prefix);
        eprintln!("pushing {role} to {host}/{repository}");
        push_graph(&opened, &dest, &repository, &artifact.digest, &artifact.media_type, target.transfer.jobs, &stop, Some(role))?;
        let top = opened.manifest_blob(&artifact.digest, &artifact.media_type)?;
        let tag = source.tag.clone().unwrap_or_else(|| "latest".into());
        let selector = match &source.digest {
            Some(d) if *d == artifact.digest => Selector::Digest(d.clone()),
            _ => Selector::Tag(tag.clone()),
        };
        dest.push_manifest(&repository, &selector, &top)?;
        eprintln!("  {role}: {host}/{repository}:{tag} = {}", artifact.digest);
        push_attachments(&opened, &dest, &repository, artifact, target.transfer.jobs, &stop)?;
        match role.as_str() {
            "agent-image" => values.push(format!("image.repository={host}/{repository}\nimage.tag={tag}")),
            "chart" => values.push(format!("chart: oci://{host}/{repository} --version {tag}")),
            _ => {}
        }
        let from = source.repository.as_str().rsplit_once('/').map_or(source.registry.clone(), |(p, _)| format!("{}/{p}", source.registry));
        let to = match prefix {
            Some(p) => format!("{host}/{p}"),
            None => host.clone(),
        };
        mirrors.insert(format!("{from}={to}"));
    }
    let Module { reference, commit, full_ref } = &opened.module;
    let git_shown = crate::redact::url_without_userinfo(&target.git_url);
    eprintln!("pushing the module ({full_ref} = {commit}) to {git_shown}");
    let url = target.git_url.as_str();
    if !bare.exists() {
        git(&["init", "--quiet", "--bare", &bare.display().to_string()], None, "preparing the module", url)?;
    }
    // With a prerequisite, the base's history is in `bare` already (fetched from the target and checked).
    opened.unpack_module(&bare, url)?;
    // Only the ref manifest.json names, and only at its commit.
    let found = git(&["rev-parse", "--verify", "--end-of-options", &format!("{full_ref}^{{commit}}")], Some(&bare), "reading the module bundle", url)?;
    if found.trim() != commit {
        return Err(Error::decode(
            format!("bundle {}", path.display()),
            format!("the module's {full_ref} is commit {}, manifest.json says {commit}: the bundle was altered; get a fresh copy", shown(found.trim())),
        ));
    }
    let refspec = format!("{full_ref}:{full_ref}");
    git(&["push", "--quiet", "--", url, &refspec], Some(&bare), &format!("pushing the module to {git_shown}"), url)?;
    drop(scratch);
    let counters = &dest.counters;
    eprintln!(
        "done: {} blobs uploaded ({:.1} MiB), {} already present",
        counters.blobs_pushed.load(Ordering::Relaxed),
        counters.bytes_pushed.load(Ordering::Relaxed) as f64 / 1048576.0,
        counters.blobs_skipped.load(Ordering::Relaxed)
    );
    Ok(format!(
        "Use these values next:\n  {}\n  TF module source: git::{git_shown}?ref={reference}\n  agent image mirrors (IMAGE_MIRRORS, chart agent.imageMirrors): {}\nblobs uploaded: {}, already present: {}\n",
        values.join("\n  "),
        mirrors.into_iter().collect::<Vec<_>>().join(","),
        counters.blobs_pushed.load(Ordering::Relaxed),
        counters.blobs_skipped.load(Ordering::Relaxed)
    ))
}

/// Pushes the graph under `digest` from the bundle, all but its top manifest (which the
/// caller pushes, under its tag): the walk's order planned first (children before the
/// manifests naming them), so that blobs go up `jobs` at once and each manifest only after
/// all of them. Blobs not carried (a differential bundle's base) are skipped:
/// `base_in_target` found them in the target. With `progress`, one meter line for the graph.
#[allow(clippy::too_many_arguments)]
fn push_graph(
    opened: &Opened,
    dest: &Registry,
    repository: &Repository,
    digest: &Digest,
    media_type: &str,
    jobs: usize,
    stop: &Arc<AtomicBool>,
    progress: Option<&str>,
) -> Result<()> {
    let mut plan: Vec<std::result::Result<Descriptor, Manifest>> = Vec::new();
    opened.walk_from(digest, media_type, &mut |step| {
        match step {
            Step::Blob(blob) if !opened.carries(&blob.digest) => {}
            Step::Blob(blob) => plan.push(Ok(blob.clone())),
            Step::Manifest(m, _) if m.digest == *digest => {}
            Step::Manifest(m, parsed) => plan.push(Err(Manifest { media_type: parsed.media_type.clone(), bytes: m.bytes.clone(), digest: m.digest.clone() })),
        }
        Ok(())
    })?;
    let meter = progress.map(|label| Meter::new(label.to_string(), plan.iter().filter_map(|p| p.as_ref().ok()).map(|b| b.size).sum()));
    parallel::run(jobs, stop.clone(), |pool| {
        for step in &plan {
            match step {
                Ok(blob) => {
                    let entry = opened.blob_entry(&blob.digest)?;
                    let (source, meter) = (opened.source.clone(), meter.clone());
                    pool.submit(move || {
                        let size = entry.size;
                        let counted = meter.clone();
                        let open = move |from: u64| -> std::io::Result<Box<dyn Read>> {
                            let inner: Box<dyn Read> = Box::new(source.open_from(&entry, from)?);
                            Ok(match &counted {
                                Some(m) => Box::new(Metered { inner, meter: m.clone() }),
                                None => inner,
                            })
                        };
                        if !dest.push_blob(repository, &blob.digest, size, &open)? {
                            if let Some(m) = &meter {
                                m.add(size);
                            }
                        }
                        Ok(())
                    })?;
                }
                Err(m) => {
                    pool.drain()?;
                    dest.push_manifest(repository, &Selector::Digest(m.digest.clone()), m)?;
                }
            }
        }
        Ok(())
    })?;
    if let Some(m) = meter {
        m.finish();
    }
    Ok(())
}

/// Before a differential bundle pushes anything: every blob it references and does not carry
/// must be in the target registry (asked for each one, whatever `manifest.json` claims), and
/// the commit its git bundle builds on must be in the git target's history of the module's
/// ref (fetched into `bare`, where the bundle is unpacked later). Refuses naming what is missing.
fn base_in_target(opened: &Opened, base: &differential::Base, dest: &Registry, target: &Target, bare: &Path) -> Result<()> {
    let prefix = target.registry.prefix.as_ref();
    let mut missing = Vec::new();
    for artifact in &opened.artifacts {
        let repository = artifact.source.repository.under(prefix);
        let mut check = |step: Step| {
            if let Step::Blob(blob) = step {
                if !opened.carries(&blob.digest) && !dest.has_blob(&repository, &blob.digest)? {
                    missing.push(format!("blob {} of the {} in {}/{repository}", blob.digest, artifact.role, target.registry.host));
                }
            }
            Ok(())
        };
        opened.walk(artifact, &mut check)?;
        // Its attachments (signatures, the SBOM) go into the same repository.
        for a in &artifact.attachments {
            opened.walk_from(&a.digest, &a.media_type, &mut check)?;
        }
    }
    if let Some(commit) = &base.prerequisite {
        let url = target.git_url.as_str();
        let full_ref = &opened.module.full_ref;
        git(&["init", "--quiet", "--bare", &bare.display().to_string()], None, "preparing the module", url)?;
        let shown_url = crate::redact::url_without_userinfo(url);
        let fetched = git(
            &["fetch", "--quiet", "--no-tags", "--", url, "+refs/heads/*:refs/base/heads/*", "+refs/tags/*:refs/base/tags/*"],
            Some(bare),
            &format!("fetching the module from {shown_url}"),
            url,
        );
        let found = fetched.is_ok() && git(&["cat-file", "-e", &format!("{commit}^{{commit}}")], Some(bare), "reading the module", url).is_ok();
        if !found {
            missing.push(format!("commit {commit} of the module (which {full_ref} builds on) in {shown_url}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(differential::missing_error(base, &missing))
    }
}

/// A reader that hashes everything it reads and hands on what follows the first `skip`
/// bytes; the digest is left in `done` at the end of the input.
struct Hashed<R: Read> {
    inner: R,
    hasher: Option<Hasher>,
    skip: u64,
    done: Arc<std::sync::Mutex<Option<Digest>>>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                if let (Some(h), Ok(mut done)) = (self.hasher.take(), self.done.lock()) {
                    *done = Some(h.finish());
                }
                return Ok(0);
            }
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
            let dropped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(n);
            self.skip -= dropped as u64;
            if dropped < n {
                buf.copy_within(dropped..n, 0);
                return Ok(n - dropped);
            }
        }
    }
}

/// Mirrors the attachments of `artifact` next to it: each one's graph, then its manifest
/// under its tag (`sha256-<hex>.sig`, `.att`, `.sbom`); a manifest with a `subject` goes
/// by digest instead where the registry implements the referrers API (it indexes it
/// itself), and a plain referrer on a registry without that API is also listed in the
/// `sha256-<hex>` index the referrers tag schema names.
fn push_attachments(opened: &Opened, dest: &Registry, repository: &Repository, artifact: &Artifact, jobs: usize, stop: &Arc<AtomicBool>) -> Result<()> {
    if artifact.attachments.is_empty() {
        return Ok(());
    }
    let referrers_api = dest.referrers(repository, &artifact.digest)?.is_some();
    for a in &artifact.attachments {
        push_graph(opened, dest, repository, &a.digest, &a.media_type, jobs, stop, None)?;
        let manifest = opened.manifest_blob(&a.digest, &a.media_type)?;
        let referrer = attachment::subject_of(&manifest)?.is_some();
        let (selector, shown) = match a.kind.tag(&a.subject) {
            _ if referrer && referrers_api => (Selector::Digest(a.digest.clone()), format!("a referrer of {}", a.subject.short())),
            Some(tag) => (Selector::Tag(tag.clone()), tag),
            None => (Selector::Digest(a.digest.clone()), format!("listed in sha256-{}", &a.subject.hex()[..12])),
        };
        dest.push_manifest(repository, &selector, &manifest)?;
        if a.kind.tag(&a.subject).is_none() && !referrers_api {
            attachment::list_in_tag_schema(dest, repository, &a.subject, &manifest)?;
        }
        eprintln!("  {} of {}: {shown} = {}", a.kind.name(), artifact.role, a.digest.short());
    }
    Ok(())
}

/// The string at `path`, or empty.
fn text(v: &Value, path: &[&str]) -> String {
    json_text(v, path).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_git_password_holding_a_slash_or_a_space_is_hidden_whole() {
        for url in ["https://u:pa/ss@git.internal/x.git", "https://u:pa ss@git.internal/x", "https://u:p@ss@git.internal/x", "https://u:pa%2Fss@git.internal/x"]
        {
            let said = format!("fetching module {url}; fatal: unable to access '{url}/': failed; remote: u:pa/ss pa/ss pa ss");
            let hidden = hide_userinfo(&said, url);
            for secret in ["pa/ss", "pa ss", "p@ss", "pa%2Fss"] {
                if url.contains(secret) || (secret == "pa/ss" && url.contains("%2F")) {
                    assert!(!hidden.contains(secret), "{url}: {hidden}");
                }
            }
            assert!(hidden.contains("https://***@git.internal/x"), "{hidden}");
        }
        assert_eq!(hide_userinfo("cloning https://git.internal/x", "https://git.internal/x"), "cloning https://git.internal/x");
        assert_eq!(hide_userinfo("git said: fatal: ssh://git@h/x", "ssh://git@h/x"), "git said: fatal: ssh://***@h/x");
    }

    fn module(reference: &str) -> Module {
        Module { reference: reference.into(), commit: "a".repeat(40), full_ref: String::new() }
    }

    #[test]
    fn a_git_bundle_must_carry_exactly_the_module_ref() {
        let oid = "a".repeat(40);
        let one = format!("# v2 git bundle\n{oid} refs/tags/v1.0.0\n\nPACK");
        assert_eq!(module_ref_in(one.as_bytes(), &module("v1.0.0"), None).unwrap(), "refs/tags/v1.0.0");
        let v3 = format!("# v3 git bundle\n@object-format=sha1\n{oid} refs/heads/main\n\nPACK");
        assert_eq!(module_ref_in(v3.as_bytes(), &module("main"), None).unwrap(), "refs/heads/main");
        let full = format!("# v2 git bundle\n{oid} refs/heads/release\n\n");
        assert_eq!(module_ref_in(full.as_bytes(), &module("refs/heads/release"), None).unwrap(), "refs/heads/release");
        let head = format!("# v2 git bundle\n{oid} HEAD\n\n");
        assert!(module_ref_in(head.as_bytes(), &module("HEAD"), None).is_err());
        for bad in [
            format!("# v2 git bundle\n{oid} refs/tags/v1.0.0\n{oid} refs/heads/evil\n\n"),
            format!("# v2 git bundle\n{oid} refs/heads/master\n\n"),
            format!("# v2 git bundle\n-{oid} prerequisite\n{oid} refs/tags/v1.0.0\n\n"),
            format!("# v2 git bundle\n{oid} refs/tags/v1.0.0\n"),
            format!("# v9 git bundle\n{oid} refs/tags/v1.0.0\n\n"),
            "not a git bundle".to_string(),
        ] {
            assert!(module_ref_in(bad.as_bytes(), &module("v1.0.0"), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_registry_address_with_a_password_is_refused_without_echoing_it() {
        let e = RegistryAddress::parse("mirror:hunter2@registry.internal/x").unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("user info"), "{e}");
        let a = RegistryAddress::parse("registry.internal:5000/a/b/").unwrap();
        assert_eq!((a.host.as_str(), a.prefix.unwrap().as_str()), ("registry.internal:5000", "a/b"));
        assert!(RegistryAddress::parse("https://registry.internal").is_err());
        assert!(RegistryAddress::parse("registry.internal/../x").is_err());
    }
}
