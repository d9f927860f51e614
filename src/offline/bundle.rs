//! The three operations: `bundle` (connected side), `verify`, `push` (air-gapped side),
//! and the credentials and endpoints they resolve. Output is progress and results on
//! standard error/out; errors name the object, the registry's answer and the fix.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use miniserde::json::{Array, Number, Object, Value};

use super::digest::{shown, Digest, Hasher};
use super::document;
use super::graph::{self, Descriptor, Step, INDEX_TYPES};
use super::registry::{self, Credentials, Endpoint, Manifest, Reference, Registry, Repository, Selector};
use super::tar;
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

/// `text` with the user info of every URL in it (`scheme://user:password@`) replaced by
/// `***`: git URLs may carry a token, and git's own messages may repeat them.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let authority_end = rest.find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
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
}

struct Staged {
    tar: tar::Writer<BufWriter<File>>,
    sums: Vec<(Digest, String)>,
    blobs: HashSet<Digest>,
    scratch: PathBuf,
}

impl Staged {
    fn add(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        self.tar.append_bytes(name, mode, bytes).map_err(|e| Error::io(format!("writing {name} into the bundle"), e))?;
        self.sums.push((Digest::of(bytes), name.to_string()));
        Ok(())
    }

    /// Adds a blob once (layers shared between images are stored once).
    fn add_blob(&mut self, source: &Registry, repository: &Repository, blob: &Descriptor) -> Result<()> {
        if !self.blobs.insert(blob.digest.clone()) {
            return Ok(());
        }
        // A `Digest` is 64 hex digits: this path stays inside the scratch directory.
        let temp = self.scratch.join(blob.digest.hex());
        {
            let mut out = BufWriter::new(File::create(&temp).map_err(|e| Error::io(format!("creating {}", temp.display()), e))?);
            source.blob(repository, &blob.digest, blob.size, &mut out)?;
            out.flush().map_err(|e| Error::io(format!("writing {} (is the disk full?)", temp.display()), e))?;
        }
        let name = blob.digest.blob_name();
        let mut file = File::open(&temp).map_err(|e| Error::io(format!("reading {}", temp.display()), e))?;
        self.tar.append(&name, 0o644, blob.size, &mut file).map_err(|e| Error::io(format!("writing {name} into the bundle (is the disk full?)"), e))?;
        let _ = std::fs::remove_file(&temp);
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

/// Copies one image or chart (with every manifest and blob it references) into the
/// bundle and returns its top-level descriptor and its `manifest.json` record.
fn stage_artifact(staged: &mut Staged, access: &Access, role: &str, reference: &str, platforms: &[String]) -> Result<(Value, Value)> {
    let r = Reference::parse(reference).map_err(|why| Error::config(role, why, "give a reference like registry.example/path/name:tag"))?;
    let source = Registry::new(access.endpoint(r.api_host())?)?;
    eprintln!("fetching {role} {r}");
    let mut top = source.manifest(&r.repository, &r.selector())?;
    let parsed = graph::parse(&top)?;
    if !graph::media_type_ok(&top.media_type) {
        top.media_type = parsed.media_type.clone();
    }
    let is_index = INDEX_TYPES.contains(&top.media_type.as_str()) || !parsed.children.is_empty();
    let mut kept_platforms = Vec::new();
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
            let what = format!("index of {r}");
            let mut index = document::parse(&top.bytes, &what, document::MAX_MANIFEST)?;
            let mut kept = Array::new();
            if let Some(Value::Array(entries)) = get(&index, &["manifests"]) {
                for entry in entries.iter() {
                    if wanted(&Descriptor::parse(entry, &what)?) {
                        kept.push(entry.clone());
                    }
                }
            }
            if let Value::Object(o) = &mut index {
                o.insert("manifests".into(), Value::Array(kept));
            }
            top = Manifest::new(top.media_type.clone(), miniserde::json::to_string(&index).into_bytes());
        }
    }
    let repository = r.repository.clone();
    graph::walk(top.clone(), &mut |child| source.manifest(&repository, &Selector::Digest(child.digest.clone())), &mut |step| match step {
        Step::Blob(blob) => staged.add_blob(&source, &repository, blob),
        Step::Manifest(m, _) => staged.add_manifest(m),
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
    eprintln!("  {role}: {} ({})", top.digest, top.media_type);
    Ok((Value::Object(descriptor), Value::Object(record)))
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

/// `bundle`: fetches everything into `output`. It is written to `<output>.partial` (with
/// blobs passing through `<output>.scratch/`), verified as `verify` would, and only then
/// renamed, so an interrupted or failed run never leaves a file that looks complete.
/// Both names must not exist before; whatever this run created is removed on error.
pub fn bundle(sources: &Sources, access: &Access, output: &Path) -> Result<String> {
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
    let scratch = claim(output, "scratch", true)?;
    let partial = match claim(output, "partial", false) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    let result = stage_bundle(sources, access, &scratch, &partial);
    let _ = std::fs::remove_dir_all(&scratch);
    let checked = result.and_then(|text| match verify(&partial) {
        Ok(_) => Ok(text),
        Err(e) => Err(Error::decode(format!("the bundle just written ({})", partial.display()), format!("it fails its own verify, so it is not kept: {e}"))),
    });
    match checked {
        Ok(text) => {
            std::fs::rename(&partial, output).map_err(|e| Error::io(format!("renaming {} to {}", partial.display(), output.display()), e))?;
            Ok(text)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn stage_bundle(sources: &Sources, access: &Access, scratch: &Path, partial: &Path) -> Result<String> {
    let file = std::fs::OpenOptions::new().write(true).truncate(true).open(partial).map_err(|e| Error::io(format!("opening {}", partial.display()), e))?;
    let mut staged = Staged { tar: tar::Writer::new(BufWriter::new(file)), sums: Vec::new(), blobs: HashSet::new(), scratch: scratch.to_path_buf() };
    let tool = std::fs::read(&sources.tool).map_err(|e| Error::io(format!("reading the tool {}", sources.tool.display()), e))?;
    staged.add("offline-install", 0o755, &tool)?;
    let mut index_entries = Array::new();
    let mut records = Array::new();
    for (role, reference, platforms) in
        [(ROLES[0], &sources.agent_image, &sources.platforms), (ROLES[1], &sources.runner_image, &sources.platforms), (ROLES[2], &sources.chart, &Vec::new())]
    {
        let (descriptor, record) = stage_artifact(&mut staged, access, role, reference, platforms)?;
        index_entries.push(descriptor);
        records.push(record);
    }
    let (module_bytes, module) = module_bundle(&sources.module_repo, &sources.module_ref, scratch)?;
    staged.add("module/module.bundle", 0o644, &module_bytes)?;
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
    let manifest_text = crate::commands::pretty(&Value::Object(manifest));
    staged.add("manifest.json", 0o644, manifest_text.as_bytes())?;
    let sums: String = staged.sums.iter().map(|(d, n)| format!("{}  {n}\n", d.hex())).collect();
    staged.tar.append_bytes("SHA256SUMS", 0o644, sums.as_bytes()).map_err(|e| Error::io("writing SHA256SUMS into the bundle", e))?;
    let out = staged.tar.finish().map_err(|e| Error::io(format!("finishing {} (is the disk full?)", partial.display()), e))?;
    out.into_inner()
        .map_err(|e| Error::io(format!("flushing {}", partial.display()), e.into_error()))?
        .sync_all()
        .map_err(|e| Error::io(format!("syncing {}", partial.display()), e))?;
    Ok(manifest_text)
}

/// Clones the module repository and bundles `reference`; returns the bundle and its record
/// (whose `source` has the URL's user info redacted: it travels with the bundle).
fn module_bundle(repo: &str, reference: &str, scratch: &Path) -> Result<(Vec<u8>, Value)> {
    if reference.is_empty() || reference.starts_with('-') || reference.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::config(
            "--module-ref",
            format!("{} is not a branch or tag name", shown(reference)),
            "give a branch or tag of the module repository",
        ));
    }
    let mirror = scratch.join("module.git");
    let shown_repo = redact_userinfo(repo);
    eprintln!("fetching module {shown_repo} at {reference}");
    git(&["clone", "--quiet", "--mirror", "--", repo, &mirror.display().to_string()], None, "cloning the module repository")?;
    let commit = git(
        &["rev-parse", "--verify", "--end-of-options", &format!("{reference}^{{commit}}")],
        Some(&mirror),
        &format!("finding {reference} in the module repository"),
    )?;
    let file = scratch.join("module.bundle");
    git(&["bundle", "create", "--quiet", &file.display().to_string(), reference], Some(&mirror), "creating the git bundle")?;
    let bytes = std::fs::read(&file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let mut o = Object::new();
    o.insert("source".into(), Value::String(shown_repo));
    o.insert("ref".into(), Value::String(reference.into()));
    o.insert("commit".into(), Value::String(commit.trim().into()));
    o.insert("file".into(), Value::String("module/module.bundle".into()));
    Ok((bytes, Value::Object(o)))
}

/// Runs git; its messages are shown with URL user info redacted.
fn git(args: &[&str], dir: Option<&Path>, what: &str) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd.args(args).output().map_err(|e| Error::io(format!("{what}: running git (is git installed?)"), e))?;
    if !out.status.success() {
        let stderr = redact_userinfo(String::from_utf8_lossy(&out.stderr).trim());
        return Err(Error::transport(redact_userinfo(what), format!("git said: {stderr}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
}

/// The module record of `manifest.json`, checked.
#[derive(Debug, Clone)]
pub struct Module {
    /// The ref bundled.
    pub reference: String,
    /// Its commit.
    pub commit: String,
}

/// A bundle opened for reading, every entry checked.
pub struct Opened {
    path: PathBuf,
    entries: BTreeMap<String, tar::Entry>,
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
        tar::open(&self.path, entry)
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .map_err(|e| Error::io(format!("reading {name} from {}", self.path.display()), e))?;
        Ok(bytes)
    }

    fn blob_entry(&self, digest: &Digest) -> Result<tar::Entry> {
        self.entries.get(&digest.blob_name()).cloned().ok_or_else(|| Error::decode(self.doc(), format!("blob {digest} is missing")))
    }

    fn manifest_blob(&self, digest: &Digest, media_type: &str) -> Result<Manifest> {
        Ok(Manifest::new(media_type.to_string(), self.read(&digest.blob_name(), document::MAX_MANIFEST as u64)?))
    }

    /// Walks one artifact's graph from the bundle (see [`graph::walk`]); every blob is
    /// checked to be present with the size its descriptor gives.
    fn walk(&self, artifact: &Artifact, visit: &mut dyn FnMut(Step) -> Result<()>) -> Result<()> {
        let top = self.manifest_blob(&artifact.digest, &artifact.media_type)?;
        graph::walk(top, &mut |child| self.manifest_blob(&child.digest, &child.media_type), &mut |step| {
            if let Step::Blob(blob) = &step {
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
    let doc = format!("bundle {}", path.display());
    let list = tar::index(path).map_err(|e| Error::decode(&doc, e.to_string()))?;
    let entries: BTreeMap<String, tar::Entry> = list.into_iter().map(|e| (e.name.clone(), e)).collect();
    for name in entries.keys() {
        let blob = name.strip_prefix("oci/blobs/sha256/").is_some_and(|h| Digest::from_hex(h).is_ok());
        if !blob && !FIXED_NAMES.contains(&name.as_str()) {
            return Err(Error::decode(&doc, format!("it holds {}, which this tool never writes: the bundle was altered; get a fresh copy", shown(name))));
        }
    }
    let sums_entry = entries.get("SHA256SUMS").ok_or_else(|| Error::decode(&doc, "SHA256SUMS is missing"))?;
    if sums_entry.size > MAX_SUMS {
        return Err(Error::decode(&doc, "SHA256SUMS is too large"));
    }
    let mut sums = String::new();
    tar::open(path, sums_entry).and_then(|mut r| r.read_to_string(&mut sums)).map_err(|e| Error::io(format!("reading SHA256SUMS of {doc}"), e))?;
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
    for (name, expected) in &listed {
        let entry = entries.get(name).ok_or_else(|| Error::decode(&doc, format!("{} is listed in SHA256SUMS but missing", shown(name))))?;
        let mut reader = tar::open(path, entry).map_err(|e| Error::io(format!("reading {name}"), e))?;
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
    let mut opened = Opened {
        path: path.to_path_buf(),
        entries,
        manifest: Value::Null,
        artifacts: Vec::new(),
        module: Module { reference: String::new(), commit: String::new() },
    };
    opened.manifest = document::parse(&opened.read("manifest.json", document::MAX_SMALL as u64)?, "manifest.json", document::MAX_SMALL)?;
    let (artifacts, module) = contents(&opened.manifest)?;
    opened.artifacts = artifacts;
    opened.module = module;
    let index = document::parse(&opened.read("oci/index.json", document::MAX_SMALL as u64)?, "oci/index.json", document::MAX_SMALL)?;
    let indexed: BTreeSet<Digest> = match get(&index, &["manifests"]) {
        Some(Value::Array(a)) => a.iter().map(|d| Descriptor::parse(d, "oci/index.json").map(|d| d.digest)).collect::<Result<_>>()?,
        _ => return Err(Error::decode("oci/index.json", "no manifests")),
    };
    let recorded: BTreeSet<Digest> = opened.artifacts.iter().map(|a| a.digest.clone()).collect();
    if indexed != recorded {
        return Err(Error::decode(&doc, "oci/index.json and manifest.json name different artifacts: the bundle was altered; get a fresh copy"));
    }
    for artifact in &opened.artifacts {
        opened.walk(artifact, &mut |_| Ok(()))?;
    }
    opened.entry("module/module.bundle")?;
    Ok(opened)
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
        artifacts.push(Artifact { role, source, digest, media_type });
    }
    let reference = text(manifest, &["module", "ref"]);
    let commit = text(manifest, &["module", "commit"]);
    if reference.is_empty() || reference.chars().any(char::is_control) || reference.len() > 255 {
        return Err(Error::decode(doc, "the module record has no usable ref"));
    }
    if !(commit.len() == 40 || commit.len() == 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::decode(doc, "the module record has no usable commit"));
    }
    Ok((artifacts, Module { reference, commit }))
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
}

/// `push`: verify, then mirror every artifact and the module; returns the values to use next.
pub fn push(path: &Path, target: &Target) -> Result<String> {
    let opened = verify(path)?;
    eprintln!("verified {}: every checksum and digest matches", path.display());
    let host = &target.registry.host;
    let prefix = target.registry.prefix.as_ref();
    let dest = Registry::new(target.access.endpoint(host)?)?;
    let mut values = Vec::new();
    let mut mirrors = BTreeSet::new();
    for artifact in &opened.artifacts {
        let (role, source) = (&artifact.role, &artifact.source);
        let repository = source.repository.under(prefix);
        eprintln!("pushing {role} to {host}/{repository}");
        opened.walk(artifact, &mut |step| match step {
            Step::Blob(blob) => {
                let entry = opened.blob_entry(&blob.digest)?;
                let size = entry.size;
                let bundle_path = opened.path.clone();
                let open = move || -> std::io::Result<Box<dyn Read>> { Ok(Box::new(tar::open(&bundle_path, &entry)?)) };
                dest.push_blob(&repository, &blob.digest, size, &open).map(|_| ())
            }
            Step::Manifest(m, _) if m.digest == artifact.digest => Ok(()),
            Step::Manifest(m, parsed) => {
                let typed = Manifest { media_type: parsed.media_type.clone(), bytes: m.bytes.clone(), digest: m.digest.clone() };
                dest.push_manifest(&repository, &Selector::Digest(m.digest.clone()), &typed)
            }
        })?;
        let top = opened.manifest_blob(&artifact.digest, &artifact.media_type)?;
        let tag = source.tag.clone().unwrap_or_else(|| "latest".into());
        let selector = match &source.digest {
            Some(d) if *d == artifact.digest => Selector::Digest(d.clone()),
            _ => Selector::Tag(tag.clone()),
        };
        dest.push_manifest(&repository, &selector, &top)?;
        eprintln!("  {role}: {host}/{repository}:{tag} = {}", artifact.digest);
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
    let Module { reference, commit } = &opened.module;
    let git_shown = redact_userinfo(&target.git_url);
    eprintln!("pushing the module ({reference} = {commit}) to {git_shown}");
    let scratch = claim(path, "push-scratch", true)?;
    let result = (|| -> Result<()> {
        let file = scratch.join("module.bundle");
        let entry = opened.entry("module/module.bundle")?.clone();
        let mut out = File::create(&file).map_err(|e| Error::io(format!("creating {}", file.display()), e))?;
        tar::open(path, &entry)
            .and_then(|mut r| std::io::copy(&mut r, &mut out))
            .map_err(|e| Error::io(format!("writing {} (is the disk full?)", file.display()), e))?;
        let heads = git(&["bundle", "list-heads", &file.display().to_string()], None, "reading the module bundle")?;
        let refs: Vec<String> = heads
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|r| r.starts_with("refs/") && r.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
            .map(|r| format!("{r}:{r}"))
            .collect();
        let bare = scratch.join("module.git");
        git(&["clone", "--quiet", "--bare", "--", &file.display().to_string(), &bare.display().to_string()], None, "unpacking the module bundle")?;
        let mut args = vec!["push", "--quiet", "--", target.git_url.as_str()];
        args.extend(refs.iter().map(String::as_str));
        git(&args, Some(&bare), &format!("pushing the module to {git_shown}"))?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
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

/// The string at `path`, or empty.
fn text(v: &Value, path: &[&str]) -> String {
    json_text(v, path).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_in_urls_and_git_messages_is_redacted() {
        assert_eq!(redact_userinfo("https://u:hunter2@git.example/x.git"), "https://***@git.example/x.git");
        assert_eq!(
            redact_userinfo("fatal: unable to access 'http://tok@127.0.0.1:1/x/': failed; ssh://git@h/x and https://h/y"),
            "fatal: unable to access 'http://***@127.0.0.1:1/x/': failed; ssh://***@h/x and https://h/y"
        );
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
