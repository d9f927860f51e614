//! The three operations: `bundle` (connected side), `verify`, `push` (air-gapped side),
//! and the credentials and endpoints they resolve. Output is progress and results on
//! standard error/out; errors name the object, the registry's answer and the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use miniserde::json::{self, Array, Number, Object, Value};

use super::registry::{self, Credentials, Endpoint, Manifest, Reference, Registry};
use super::tar;
use crate::error::{Error, Result};
use crate::http::Trust;
use crate::json::{get, text as json_text};

/// Format tag of `manifest.json`.
pub const FORMAT: &str = "kubernetes-agent-offline-bundle/1";
/// OCI annotation naming each artifact's role in `oci/index.json`.
pub const ROLE_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const INDEX_TYPES: [&str; 2] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

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
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading the {doc}"), e)),
    };
    let value: Value = json::from_str(&text).map_err(|_| Error::decode(&doc, "not valid JSON"))?;
    let Some(Value::Object(auths)) = get(&value, &["auths"]) else { return Ok(None) };
    let entry = auths.iter().find(|(k, _)| k.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/') == host).map(|(_, v)| v);
    let Some(Value::String(auth)) = entry.and_then(|e| get(e, &["auth"])) else { return Ok(None) };
    let decoded = crate::base64::decode(auth)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::decode(&doc, format!("the entry for {host} is not base64 of user:password")))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| Error::decode(&doc, format!("the entry for {host} is not user:password")))?;
    Ok(Some(Credentials { username: username.into(), password: password.into() }))
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
    sums: Vec<(String, String)>,
    blobs: BTreeSet<String>,
    scratch: PathBuf,
}

impl Staged {
    fn add(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        self.tar.append_bytes(name, mode, bytes).map_err(|e| Error::io(format!("writing {name} into the bundle"), e))?;
        self.sums.push((registry::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()), name.to_string()));
        Ok(())
    }

    /// Adds a blob once (layers shared between images are stored once).
    fn add_blob(&mut self, source: &Registry, repository: &str, digest: &str, size: u64) -> Result<()> {
        if !self.blobs.insert(digest.to_string()) {
            return Ok(());
        }
        let hexd = digest.trim_start_matches("sha256:");
        let temp = self.scratch.join(hexd);
        {
            let mut out = BufWriter::new(File::create(&temp).map_err(|e| Error::io(format!("creating {}", temp.display()), e))?);
            source.blob(repository, digest, size, &mut out)?;
            out.flush().map_err(|e| Error::io(format!("writing {} (is the disk full?)", temp.display()), e))?;
        }
        let name = format!("oci/blobs/sha256/{hexd}");
        let mut file = File::open(&temp).map_err(|e| Error::io(format!("reading {}", temp.display()), e))?;
        self.tar.append(&name, 0o644, size, &mut file).map_err(|e| Error::io(format!("writing {name} into the bundle (is the disk full?)"), e))?;
        let _ = std::fs::remove_file(&temp);
        self.sums.push((hexd.to_string(), name));
        Ok(())
    }

    fn add_manifest(&mut self, manifest: &Manifest) -> Result<()> {
        if self.blobs.insert(manifest.digest.clone()) {
            self.add(&format!("oci/blobs/sha256/{}", manifest.digest.trim_start_matches("sha256:")), 0o644, &manifest.bytes)?;
        }
        Ok(())
    }
}

/// Copies one image or chart (with every manifest and blob it references) into the
/// bundle and returns its top-level descriptor.
fn stage_artifact(staged: &mut Staged, access: &Access, role: &str, reference: &str, platforms: &[String]) -> Result<(Value, Value)> {
    let r = Reference::parse(reference).map_err(|why| Error::config(role, why, "give a reference like registry.example/path/name:tag"))?;
    let source = Registry::new(access.endpoint(r.api_host())?);
    eprintln!("fetching {role} {r}");
    let mut top = source.manifest(&r.repository, r.target())?;
    let mut kept_platforms = Vec::new();
    if INDEX_TYPES.contains(&top.media_type.as_str()) {
        let mut index: Value = json::from_str(&String::from_utf8_lossy(&top.bytes)).map_err(|_| Error::decode(format!("index of {r}"), "not JSON"))?;
        let entries = match get(&index, &["manifests"]) {
            Some(Value::Array(a)) => a.to_vec(),
            _ => return Err(Error::decode(format!("index of {r}"), "no manifests")),
        };
        let mut kept = Array::new();
        for entry in entries {
            let platform = format!("{}/{}", text(&entry, &["platform", "os"]), text(&entry, &["platform", "architecture"]));
            if !platforms.is_empty() && !platforms.contains(&platform) {
                continue;
            }
            let child = source.manifest(&r.repository, &text(&entry, &["digest"]))?;
            stage_layers(staged, &source, &r, &child)?;
            staged.add_manifest(&child)?;
            kept_platforms.push(platform);
            kept.push(entry);
        }
        if kept.is_empty() {
            return Err(Error::config("--platform", format!("{r} has none of {}", platforms.join(", ")), "ask for platforms the image has, or none for all"));
        }
        if !platforms.is_empty() {
            if let Value::Object(o) = &mut index {
                o.insert("manifests".into(), Value::Array(kept));
            }
            let bytes = json::to_string(&index).into_bytes();
            top = Manifest { digest: registry::digest_of(&bytes), media_type: top.media_type.clone(), bytes };
        }
    } else {
        stage_layers(staged, &source, &r, &top)?;
    }
    staged.add_manifest(&top)?;
    let mut descriptor = Object::new();
    descriptor.insert("mediaType".into(), Value::String(top.media_type.clone()));
    descriptor.insert("digest".into(), Value::String(top.digest.clone()));
    descriptor.insert("size".into(), Value::Number(Number::U64(top.bytes.len() as u64)));
    let mut annotations = Object::new();
    annotations.insert(ROLE_ANNOTATION.into(), Value::String(role.into()));
    descriptor.insert("annotations".into(), Value::Object(annotations));
    let mut record = Object::new();
    record.insert("role".into(), Value::String(role.into()));
    record.insert("source".into(), Value::String(r.to_string()));
    record.insert("digest".into(), Value::String(top.digest.clone()));
    record.insert("mediaType".into(), Value::String(top.media_type.clone()));
    let mut plat = Array::new();
    plat.extend(kept_platforms.into_iter().map(Value::String));
    record.insert("platforms".into(), Value::Array(plat));
    eprintln!("  {role}: {} ({})", top.digest, top.media_type);
    Ok((Value::Object(descriptor), Value::Object(record)))
}

fn stage_layers(staged: &mut Staged, source: &Registry, r: &Reference, manifest: &Manifest) -> Result<()> {
    let value: Value =
        json::from_str(&String::from_utf8_lossy(&manifest.bytes)).map_err(|_| Error::decode(format!("manifest {} of {r}", manifest.digest), "not JSON"))?;
    let mut descriptors = Vec::new();
    if let Some(config) = get(&value, &["config"]) {
        descriptors.push(config.clone());
    }
    if let Some(Value::Array(layers)) = get(&value, &["layers"]) {
        descriptors.extend(layers.iter().cloned());
    }
    for d in descriptors {
        let digest = text(&d, &["digest"]);
        let size = match get(&d, &["size"]) {
            Some(Value::Number(Number::U64(n))) => *n,
            _ => return Err(Error::decode(format!("manifest {} of {r}", manifest.digest), "a descriptor without a size")),
        };
        staged.add_blob(source, &r.repository, &digest, size)?;
    }
    Ok(())
}

/// `bundle`: fetches everything into `output` (written to a temporary name first, so
/// an interrupted run never leaves a file that looks complete).
pub fn bundle(sources: &Sources, access: &Access, output: &Path) -> Result<String> {
    let partial = output.with_extension("partial");
    let scratch = output.with_extension("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    let file = File::create(&partial).map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
    let mut staged = Staged { tar: tar::Writer::new(BufWriter::new(file)), sums: Vec::new(), blobs: BTreeSet::new(), scratch: scratch.clone() };
    let result = (|| -> Result<String> {
        let tool = std::fs::read(&sources.tool).map_err(|e| Error::io(format!("reading the tool {}", sources.tool.display()), e))?;
        staged.add("offline-install", 0o755, &tool)?;
        let mut index_entries = Array::new();
        let mut records = Array::new();
        for (role, reference, platforms) in [
            ("agent-image", &sources.agent_image, &sources.platforms),
            ("runner-image", &sources.runner_image, &sources.platforms),
            ("chart", &sources.chart, &Vec::new()),
        ] {
            let (descriptor, record) = stage_artifact(&mut staged, access, role, reference, platforms)?;
            index_entries.push(descriptor);
            records.push(record);
        }
        let (module_bytes, module) = module_bundle(&sources.module_repo, &sources.module_ref, &scratch)?;
        staged.add("module/module.bundle", 0o644, &module_bytes)?;
        let mut index = Object::new();
        index.insert("schemaVersion".into(), Value::Number(Number::U64(2)));
        index.insert("mediaType".into(), Value::String(INDEX_TYPES[0].into()));
        index.insert("manifests".into(), Value::Array(index_entries));
        staged.add("oci/oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        staged.add("oci/index.json", 0o644, json::to_string(&index).as_bytes())?;
        let mut manifest = Object::new();
        manifest.insert("format".into(), Value::String(FORMAT.into()));
        manifest.insert("created".into(), Value::String(crate::time::format_rfc3339(crate::time::now())));
        manifest.insert("artifacts".into(), Value::Array(records));
        manifest.insert("module".into(), module);
        let manifest_text = crate::commands::pretty(&Value::Object(manifest));
        staged.add("manifest.json", 0o644, manifest_text.as_bytes())?;
        let sums: String = staged.sums.iter().map(|(h, n)| format!("{h}  {n}\n")).collect();
        staged.tar.append_bytes("SHA256SUMS", 0o644, sums.as_bytes()).map_err(|e| Error::io("writing SHA256SUMS into the bundle", e))?;
        Ok(manifest_text)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(text) => {
            let out = staged.tar.finish().map_err(|e| Error::io(format!("finishing {} (is the disk full?)", partial.display()), e))?;
            out.into_inner()
                .map_err(|e| Error::io(format!("flushing {}", partial.display()), e.into_error()))?
                .sync_all()
                .map_err(|e| Error::io(format!("syncing {}", partial.display()), e))?;
            std::fs::rename(&partial, output).map_err(|e| Error::io(format!("renaming {} to {}", partial.display(), output.display()), e))?;
            Ok(text)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Clones the module repository and bundles `reference`; returns the bundle and its record.
fn module_bundle(repo: &str, reference: &str, scratch: &Path) -> Result<(Vec<u8>, Value)> {
    let mirror = scratch.join("module.git");
    eprintln!("fetching module {repo} at {reference}");
    git(&["clone", "--quiet", "--mirror", repo, &mirror.display().to_string()], None, "cloning the module repository")?;
    let commit = git(&["rev-parse", "--verify", &format!("{reference}^{{commit}}")], Some(&mirror), &format!("finding {reference} in the module repository"))?;
    let file = scratch.join("module.bundle");
    git(&["bundle", "create", "--quiet", &file.display().to_string(), reference], Some(&mirror), "creating the git bundle")?;
    let bytes = std::fs::read(&file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let mut o = Object::new();
    o.insert("source".into(), Value::String(repo.into()));
    o.insert("ref".into(), Value::String(reference.into()));
    o.insert("commit".into(), Value::String(commit.trim().into()));
    o.insert("file".into(), Value::String("module/module.bundle".into()));
    Ok((bytes, Value::Object(o)))
}

fn git(args: &[&str], dir: Option<&Path>, what: &str) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd.args(args).output().map_err(|e| Error::io(format!("{what}: running git (is git installed?)"), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::transport(what.to_string(), format!("git said: {stderr}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A bundle opened for reading.
pub struct Opened {
    path: PathBuf,
    entries: BTreeMap<String, tar::Entry>,
    /// `manifest.json`.
    pub manifest: Value,
    index: Value,
}

impl Opened {
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let entry = self.entries.get(name).ok_or_else(|| Error::decode(format!("bundle {}", self.path.display()), format!("{name} is missing")))?;
        let mut bytes = Vec::new();
        tar::open(&self.path, entry)
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .map_err(|e| Error::io(format!("reading {name} from {}", self.path.display()), e))?;
        Ok(bytes)
    }

    fn blob_entry(&self, digest: &str) -> Result<tar::Entry> {
        let name = format!("oci/blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        self.entries.get(&name).cloned().ok_or_else(|| Error::decode(format!("bundle {}", self.path.display()), format!("blob {digest} is missing")))
    }
}

/// `verify`: every entry against `SHA256SUMS`, every blob against its name, every
/// manifest's references present. Returns the opened bundle.
pub fn verify(path: &Path) -> Result<Opened> {
    let doc = format!("bundle {}", path.display());
    let list = tar::index(path).map_err(|e| Error::decode(&doc, e.to_string()))?;
    let entries: BTreeMap<String, tar::Entry> = list.into_iter().map(|e| (e.name.clone(), e)).collect();
    let sums_entry = entries.get("SHA256SUMS").ok_or_else(|| Error::decode(&doc, "SHA256SUMS is missing"))?;
    let mut sums = String::new();
    tar::open(path, sums_entry).and_then(|mut r| r.read_to_string(&mut sums)).map_err(|e| Error::io(format!("reading SHA256SUMS of {doc}"), e))?;
    let mut listed = BTreeMap::new();
    for line in sums.lines() {
        let (hash, name) = line.split_once("  ").ok_or_else(|| Error::decode(&doc, format!("SHA256SUMS line '{line}' is malformed")))?;
        listed.insert(name.to_string(), hash.to_string());
    }
    for name in entries.keys().filter(|n| *n != "SHA256SUMS") {
        if !listed.contains_key(name) {
            return Err(Error::decode(&doc, format!("{name} is not listed in SHA256SUMS: the bundle was altered; get a fresh copy")));
        }
    }
    for (name, expected) in &listed {
        let entry = entries.get(name).ok_or_else(|| Error::decode(&doc, format!("{name} is listed in SHA256SUMS but missing")))?;
        let mut reader = tar::open(path, entry).map_err(|e| Error::io(format!("reading {name}"), e))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::io(format!("reading {name} from {doc}"), e))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        let actual = registry::hex(ctx.finish().as_ref());
        if &actual != expected {
            return Err(Error::decode(
                &doc,
                format!("{name} has sha256 {actual}, SHA256SUMS says {expected}: the bundle is corrupt; get a fresh copy (nothing was pushed)"),
            ));
        }
        if let Some(hexd) = name.strip_prefix("oci/blobs/sha256/") {
            if hexd != actual {
                return Err(Error::decode(&doc, format!("{name} does not hold the content its name says (sha256 {actual})")));
            }
        }
    }
    let mut opened = Opened { path: path.to_path_buf(), entries, manifest: Value::Null, index: Value::Null };
    opened.manifest = json::from_str(&String::from_utf8_lossy(&opened.read("manifest.json")?)).map_err(|_| Error::decode(&doc, "manifest.json is not JSON"))?;
    if text(&opened.manifest, &["format"]) != FORMAT {
        return Err(Error::decode(&doc, format!("manifest.json is not format {FORMAT}")));
    }
    opened.index = json::from_str(&String::from_utf8_lossy(&opened.read("oci/index.json")?)).map_err(|_| Error::decode(&doc, "oci/index.json is not JSON"))?;
    for descriptor in descriptors(&opened.index) {
        walk(&opened, &text(&descriptor, &["digest"]), &mut |_, _| Ok(()))?;
    }
    opened.read("module/module.bundle")?;
    Ok(opened)
}

fn descriptors(index: &Value) -> Vec<Value> {
    match get(index, &["manifests"]) {
        Some(Value::Array(a)) => a.to_vec(),
        _ => Vec::new(),
    }
}

/// Visits a manifest tree bottom-up: every blob first, then child manifests, then the
/// manifest itself (the order a registry accepts pushes in). `visit(digest, is_manifest)`.
fn walk(opened: &Opened, digest: &str, visit: &mut dyn FnMut(&str, Option<&Manifest>) -> Result<()>) -> Result<()> {
    let entry = opened.blob_entry(digest)?;
    let bytes = opened.read(&entry.name)?;
    let value: Value = json::from_str(&String::from_utf8_lossy(&bytes)).map_err(|_| Error::decode(format!("manifest {digest} in the bundle"), "not JSON"))?;
    let media_type = match get(&value, &["mediaType"]) {
        Some(Value::String(m)) => m.clone(),
        _ if get(&value, &["manifests"]).is_some() => INDEX_TYPES[0].to_string(),
        _ => "application/vnd.oci.image.manifest.v1+json".to_string(),
    };
    for child in descriptors(&value) {
        walk(opened, &text(&child, &["digest"]), visit)?;
    }
    let mut blobs: Vec<Value> = get(&value, &["config"]).cloned().into_iter().collect();
    if let Some(Value::Array(layers)) = get(&value, &["layers"]) {
        blobs.extend(layers.iter().cloned());
    }
    for b in blobs {
        let d = text(&b, &["digest"]);
        let e = opened.blob_entry(&d)?;
        if let Some(Value::Number(Number::U64(size))) = get(&b, &["size"]) {
            if *size != e.size {
                return Err(Error::decode("bundle", format!("blob {d} is {} bytes, its manifest says {size}", e.size)));
            }
        }
        visit(&d, None)?;
    }
    visit(digest, Some(&Manifest { media_type, bytes, digest: digest.to_string() }))
}

/// Where `push` sends things.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host[:port][/path]` of the internal registry.
    pub registry: String,
    /// Access to it.
    pub access: Access,
    /// URL of the internal Git repository for the module (any URL `git push` takes).
    pub git_url: String,
}

/// `push`: verify, then mirror every artifact and the module; returns the values to use next.
pub fn push(path: &Path, target: &Target) -> Result<String> {
    let opened = verify(path)?;
    eprintln!("verified {}: every checksum and digest matches", path.display());
    let (host, prefix) = match target.registry.split_once('/') {
        Some((h, p)) => (h.to_string(), p.trim_matches('/').to_string()),
        None => (target.registry.clone(), String::new()),
    };
    let dest = Registry::new(target.access.endpoint(&host)?);
    let records = match get(&opened.manifest, &["artifacts"]) {
        Some(Value::Array(a)) => a.to_vec(),
        _ => Vec::new(),
    };
    let mut values = Vec::new();
    let mut mirrors = BTreeSet::new();
    for record in records {
        let role = text(&record, &["role"]);
        let source = Reference::parse(&text(&record, &["source"])).map_err(|why| Error::decode("manifest.json", why))?;
        let name = source.repository.rsplit('/').next().unwrap_or(&source.repository).to_string();
        let repository = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let top = text(&record, &["digest"]);
        eprintln!("pushing {role} to {host}/{repository}");
        walk(&opened, &top, &mut |digest, manifest| match manifest {
            None => {
                let entry = opened.blob_entry(digest)?;
                let size = entry.size;
                let bundle_path = opened.path.clone();
                let open = move || -> std::io::Result<Box<dyn Read>> { Ok(Box::new(tar::open(&bundle_path, &entry)?)) };
                dest.push_blob(&repository, digest, size, &open).map(|_| ())
            }
            Some(m) if m.digest == top => Ok(()),
            Some(m) => dest.push_manifest(&repository, &m.digest, m),
        })?;
        let top_manifest = Manifest {
            bytes: opened.read(&format!("oci/blobs/sha256/{}", top.trim_start_matches("sha256:")))?,
            media_type: text(&record, &["mediaType"]),
            digest: top.clone(),
        };
        let tag = source.tag.clone().unwrap_or_else(|| "latest".into());
        dest.push_manifest(&repository, source.digest.as_deref().unwrap_or(&tag), &top_manifest)?;
        eprintln!("  {role}: {host}/{repository}:{tag} = {top}");
        match role.as_str() {
            "agent-image" => values.push(format!("image.repository={host}/{repository}\nimage.tag={tag}")),
            "chart" => values.push(format!("chart: oci://{host}/{repository} --version {tag}")),
            _ => {}
        }
        let from = source.repository.rsplit_once('/').map_or(source.registry.clone(), |(p, _)| format!("{}/{p}", source.registry));
        let to = if prefix.is_empty() { host.clone() } else { format!("{host}/{prefix}") };
        mirrors.insert(format!("{from}={to}"));
    }
    let module = &opened.manifest;
    let reference = text(module, &["module", "ref"]);
    let commit = text(module, &["module", "commit"]);
    eprintln!("pushing the module ({reference} = {commit}) to {}", target.git_url);
    let scratch = path.with_extension("push-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    let result = (|| -> Result<()> {
        let file = scratch.join("module.bundle");
        std::fs::write(&file, opened.read("module/module.bundle")?).map_err(|e| Error::io(format!("writing {} (is the disk full?)", file.display()), e))?;
        let heads = git(&["bundle", "list-heads", &file.display().to_string()], None, "reading the module bundle")?;
        let refs: Vec<String> =
            heads.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|r| r.starts_with("refs/")).map(|r| format!("{r}:{r}")).collect();
        let bare = scratch.join("module.git");
        git(&["clone", "--quiet", "--bare", &file.display().to_string(), &bare.display().to_string()], None, "unpacking the module bundle")?;
        let mut args = vec!["push", "--quiet", target.git_url.as_str()];
        args.extend(refs.iter().map(String::as_str));
        git(&args, Some(&bare), &format!("pushing the module to {}", target.git_url))?;
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
        "Use these values next:\n  {}\n  TF module source: git::{}?ref={reference}\n  agent image mirrors (IMAGE_MIRRORS, chart agent.imageMirrors): {}\nblobs uploaded: {}, already present: {}\n",
        values.join("\n  "),
        target.git_url,
        mirrors.into_iter().collect::<Vec<_>>().join(","),
        counters.blobs_pushed.load(Ordering::Relaxed),
        counters.blobs_skipped.load(Ordering::Relaxed)
    ))
}

/// The string at `path`, or empty (manifests and records this tool wrote always have them;
/// `verify` catches the rest as missing blobs).
fn text(v: &Value, path: &[&str]) -> String {
    json_text(v, path).unwrap_or_default().to_string()
}
