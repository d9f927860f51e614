//! An OCI distribution client over ureq: manifests and blobs by digest, pull and
//! monolithic push, blob existence checks, and the two authentication schemes registries
//! use (Basic, and Bearer tokens fetched from the realm a 401 challenge names).
//! Credentials never appear in errors or output. Not supported: chunked uploads,
//! cross-repository mounts, referrers, deletes.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use miniserde::json::{self, Value};

use crate::base64;
use crate::error::{Error, Result};
use crate::http::{self, AgentSettings, Trust};

/// Media types a manifest request accepts, most specific first.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `registry/repository[:tag][@digest]`, as `docker` and `helm` write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Digest, when given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference; `oci://` (Helm's form) is accepted and dropped.
    pub fn parse(text: &str) -> std::result::Result<Reference, String> {
        let s = text.trim().strip_prefix("oci://").unwrap_or(text.trim());
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) if d.starts_with("sha256:") && d.len() == 71 => (r, Some(d.to_string())),
            Some(_) => return Err(format!("'{text}': only sha256 digests are supported")),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        let first = name.split('/').next().unwrap_or("");
        let (registry, repository) = if name.contains('/') && (first.contains(['.', ':']) || first == "localhost") {
            (first.to_string(), name[first.len() + 1..].to_string())
        } else if name.contains('/') {
            ("docker.io".to_string(), name.to_string())
        } else {
            ("docker.io".to_string(), format!("library/{name}"))
        };
        if repository.is_empty() || repository.contains(|c: char| c.is_ascii_uppercase() || c.is_whitespace()) {
            return Err(format!("'{text}' is not an image reference (registry/repository:tag)"));
        }
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The tag or digest to fetch (`latest` when neither is given).
    pub fn target(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The host the API is served on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A user name and password; `Debug` shows the user only.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// How to reach one registry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host and port.
    pub host: String,
    /// Plain HTTP; only when asked for explicitly.
    pub plain_http: bool,
    /// Trust anchors for HTTPS.
    pub trust: Trust,
    /// Credentials, when the registry needs them.
    pub credentials: Option<Credentials>,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its media type.
    pub media_type: String,
    /// The exact bytes (their sha256 is the digest).
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

/// Transfer counters, for progress and for "nothing was sent twice".
#[derive(Debug, Default)]
pub struct Counters {
    /// Blobs uploaded.
    pub blobs_pushed: AtomicU64,
    /// Blobs the registry already had.
    pub blobs_skipped: AtomicU64,
    /// Bytes uploaded.
    pub bytes_pushed: AtomicU64,
}

/// A client for one registry.
pub struct Registry {
    endpoint: Endpoint,
    agent: ureq::Agent,
    tokens: Mutex<HashMap<String, String>>,
    basic: Mutex<bool>,
    /// Transfer counters.
    pub counters: Counters,
}

/// A request body that can be produced again for a retry after an auth challenge.
pub enum Body<'a> {
    /// Nothing.
    Empty,
    /// In memory.
    Bytes(&'a [u8], &'a str),
    /// `len` bytes from a reader factory.
    Stream(&'a dyn Fn() -> std::io::Result<Box<dyn Read>>, u64),
}

/// sha256 digest string of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Registry {
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Registry {
        let agent =
            http::agent(&AgentSettings { trust: endpoint.trust.clone(), proxy: ureq::Proxy::try_from_env(), timeout: Duration::from_secs(3600), redirects: 5 });
        Registry { endpoint, agent, tokens: Mutex::new(HashMap::new()), basic: Mutex::new(false), counters: Counters::default() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", if self.endpoint.plain_http { "http" } else { "https" }, self.endpoint.host)
    }

    fn basic_header(&self) -> Option<String> {
        self.endpoint.credentials.as_ref().map(|c| format!("Basic {}", base64::encode(format!("{}:{}", c.username, c.password).as_bytes())))
    }

    /// Sends one request, answering an auth challenge once. `scope` is the token scope
    /// (`repository:<name>:pull,push`).
    fn send(&self, method: &str, url: &str, scope: &str, headers: &[(&str, &str)], body: &Body) -> Result<ureq::http::Response<ureq::Body>> {
        let operation = format!("{method} {url}");
        let mut challenged = false;
        loop {
            let auth = match self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(scope) {
                Some(t) => Some(format!("Bearer {t}")),
                None if *self.basic.lock().unwrap_or_else(|p| p.into_inner()) => self.basic_header(),
                None => None,
            };
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(a) = &auth {
                req = req.header("Authorization", a.as_str());
            }
            let result = match body {
                Body::Empty => self.agent.run(req.body(()).map_err(|e| Error::transport(&operation, e))?),
                Body::Bytes(b, content_type) => {
                    let req = req.header("Content-Type", *content_type).header("Content-Length", b.len().to_string());
                    self.agent.run(req.body(b.to_vec()).map_err(|e| Error::transport(&operation, e))?)
                }
                Body::Stream(open, len) => {
                    let reader = open().map_err(|e| Error::io(format!("reading the blob for {operation}"), e))?;
                    let req = req.header("Content-Type", "application/octet-stream").header("Content-Length", len.to_string());
                    let req = req.body(ureq::SendBody::from_owned_reader(reader)).map_err(|e| Error::transport(&operation, e))?;
                    self.agent.run(req)
                }
            };
            let response = result.map_err(|e| Error::transport(&operation, format!("{e} (is the registry reachable, and the CA right?)")))?;
            if response.status().as_u16() != 401 || challenged {
                if response.status().as_u16() == 401 {
                    let who = self.endpoint.credentials.as_ref().map_or("no credentials were given".to_string(), |c| format!("user '{}'", c.username));
                    return Err(Error::transport(
                        operation,
                        format!(
                            "the registry {} refused the credentials (HTTP 401, {who}); fix the user name and password (options, environment or auth file)",
                            self.endpoint.host
                        ),
                    ));
                }
                return Ok(response);
            }
            challenged = true;
            let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            if challenge.to_ascii_lowercase().starts_with("bearer") {
                let token = self.fetch_token(&challenge, scope)?;
                self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(scope.to_string(), token);
            } else if self.endpoint.credentials.is_some() {
                *self.basic.lock().unwrap_or_else(|p| p.into_inner()) = true;
            } else {
                return Err(Error::transport(
                    operation,
                    format!(
                        "the registry {} requires credentials (HTTP 401); pass them with the options, the environment or a Docker auth file",
                        self.endpoint.host
                    ),
                ));
            }
        }
    }

    /// Fetches a bearer token from the realm named in a `WWW-Authenticate: Bearer` challenge.
    fn fetch_token(&self, challenge: &str, scope: &str) -> Result<String> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| Error::transport("registry authentication", "a Bearer challenge without a realm"))?;
        let mut url = format!("{realm}?scope={}", crate::kube::request::encode(scope));
        if let Some(service) = params.get("service") {
            url.push_str(&format!("&service={}", crate::kube::request::encode(service)));
        }
        let basic = self.basic_header();
        let mut headers = vec![("Accept", "application/json")];
        if let Some(b) = &basic {
            headers.push(("Authorization", b.as_str()));
        }
        let reply = http::call(&self.agent, "GET", &url, &headers, None, 1 << 20, Some(Duration::from_secs(30)))
            .map_err(|why| Error::transport(format!("getting a token from {realm}"), why))?;
        if reply.status == 401 || reply.status == 403 {
            return Err(Error::transport(
                format!("getting a token from {realm}"),
                format!("HTTP {}: the registry refused the credentials; fix the user name and password", reply.status),
            ));
        }
        let Ok(Value::Object(o)) = json::from_str::<Value>(&reply.body) else {
            return Err(Error::transport(format!("getting a token from {realm}"), format!("HTTP {}: the answer is not a token", reply.status)));
        };
        match o.get("token").or_else(|| o.get("access_token")) {
            Some(Value::String(t)) => Ok(t.clone()),
            _ => Err(Error::transport(format!("getting a token from {realm}"), "the answer holds no token")),
        }
    }

    /// Fetches a manifest (or index) by tag or digest, verifying a requested digest.
    pub fn manifest(&self, repository: &str, target: &str) -> Result<Manifest> {
        let url = self.url(&format!("/v2/{repository}/manifests/{target}"));
        let mut response = self.send("GET", &url, &format!("repository:{repository}:pull"), &[("Accept", MANIFEST_TYPES)], &Body::Empty)?;
        let status = response.status().as_u16();
        let media_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        let bytes = response.body_mut().with_config().limit(4 << 20).read_to_vec().map_err(|e| Error::transport(format!("reading {url}"), e))?;
        if status != 200 {
            return Err(Error::transport(format!("GET {url}"), registry_error(status, &bytes)));
        }
        let digest = digest_of(&bytes);
        if target.starts_with("sha256:") && target != digest {
            return Err(Error::transport(format!("GET {url}"), format!("the registry served a manifest whose digest is {digest}, not the {target} asked for")));
        }
        Ok(Manifest { media_type, bytes, digest })
    }

    /// Streams a blob into `out`, verifying its digest and size.
    pub fn blob(&self, repository: &str, digest: &str, size: u64, out: &mut dyn Write) -> Result<()> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let mut response = self.send("GET", &url, &format!("repository:{repository}:pull"), &[], &Body::Empty)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refused(&mut response, format!("GET {url}")));
        }
        let mut reader = response.body_mut().with_config().limit(size + 1).reader();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        let mut progress = Progress::new(format!("pulling {}", short(digest)), size);
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::transport(format!("reading {url}"), e))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(format!("writing {digest}"), e))?;
            total += n as u64;
            progress.at(total);
        }
        let got = format!("sha256:{}", hex(ctx.finish().as_ref()));
        if got != digest || total != size {
            return Err(Error::transport(format!("GET {url}"), format!("the blob's content is {got} ({total} bytes), not {digest} ({size} bytes)")));
        }
        Ok(())
    }

    /// True when the registry already holds the blob.
    pub fn has_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self.send("HEAD", &url, &format!("repository:{repository}:pull,push"), &[], &Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            code => Err(Error::transport(format!("HEAD {url}"), format!("HTTP {code}"))),
        }
    }

    /// Uploads a blob unless the registry has it (monolithic: POST, then PUT with the digest).
    pub fn push_blob(&self, repository: &str, digest: &str, size: u64, open: &dyn Fn() -> std::io::Result<Box<dyn Read>>) -> Result<bool> {
        if self.has_blob(repository, digest)? {
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let scope = format!("repository:{repository}:pull,push");
        let start = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let mut response = self.send("POST", &start, &scope, &[], &Body::Bytes(&[], "application/octet-stream"))?;
        let status = response.status().as_u16();
        if status != 202 {
            return Err(refused(&mut response, format!("POST {start}")));
        }
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if location.is_empty() {
            return Err(Error::transport(format!("POST {start}"), "the registry gave no upload location"));
        }
        let location = if location.starts_with("http://") || location.starts_with("https://") { location } else { self.url(&location) };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={}", crate::kube::request::encode(digest));
        let label = format!("pushing {}", short(digest));
        let counted =
            move || -> std::io::Result<Box<dyn Read>> { Ok(Box::new(Counting { inner: open()?, progress: Progress::new(label.clone(), size), done: 0 })) };
        let mut response = self.send("PUT", &put, &scope, &[], &Body::Stream(&counted, size))?;
        let status = response.status().as_u16();
        if status != 201 {
            return Err(refused(&mut response, format!("PUT {}", put.split('?').next().unwrap_or(&put))));
        }
        self.counters.blobs_pushed.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_pushed.fetch_add(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Uploads a manifest under a tag or its digest.
    pub fn push_manifest(&self, repository: &str, target: &str, manifest: &Manifest) -> Result<()> {
        let url = self.url(&format!("/v2/{repository}/manifests/{target}"));
        let mut response = self.send("PUT", &url, &format!("repository:{repository}:pull,push"), &[], &Body::Bytes(&manifest.bytes, &manifest.media_type))?;
        let status = response.status().as_u16();
        if status != 201 {
            return Err(refused(&mut response, format!("PUT {url}")));
        }
        Ok(())
    }
}

/// The error for a reply that is not the status `operation` needed, in the registry's words.
fn refused(response: &mut ureq::http::Response<ureq::Body>, operation: String) -> Error {
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
    Error::transport(operation, registry_error(status, &body))
}

/// The registry's own words from an OCI error body, with the status.
fn registry_error(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = match json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => match o.get("errors") {
            Some(Value::Array(errors)) => errors
                .iter()
                .filter_map(|e| match e {
                    Value::Object(e) => {
                        let field = |k: &str| match e.get(k) {
                            Some(Value::String(s)) => s.clone(),
                            _ => String::new(),
                        };
                        Some(format!("{}: {}", field("code"), field("message")))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        },
        _ => text.chars().filter(|c| !c.is_control()).take(200).collect(),
    };
    let hint = match status {
        401 => " (authentication failed: check the credentials)",
        403 => " (the credentials lack push/pull rights on this repository)",
        404 => " (no such repository, tag or blob)",
        _ => "",
    };
    format!("the registry answered HTTP {status}{hint}: {detail}")
}

/// Parses `Bearer realm="...",service="...",scope="..."`.
pub fn parse_challenge(header: &str) -> HashMap<String, String> {
    let rest = header.split_once(' ').map_or("", |(_, r)| r);
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().skip_while(|c| *c == ',' || c.is_whitespace()).take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            chars.by_ref().take_while(|c| *c != '"').collect()
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// Progress lines on standard error for transfers over 4 MiB, every 10 %.
struct Progress {
    label: String,
    total: u64,
    next: u64,
}

impl Progress {
    fn new(label: String, total: u64) -> Progress {
        Progress { label, total, next: if total > 4 << 20 { total / 10 } else { u64::MAX } }
    }

    fn at(&mut self, done: u64) {
        if done >= self.next {
            eprintln!("  {} {:>3}% of {:.1} MiB", self.label, done * 100 / self.total.max(1), self.total as f64 / 1048576.0);
            self.next += self.total / 10;
        }
    }
}

struct Counting {
    inner: Box<dyn Read>,
    progress: Progress,
    done: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.progress.at(self.done);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_docker_and_helm() {
        let r = Reference::parse("ghcr.io/humanitec/runner:1.2").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.target()), ("ghcr.io", "humanitec/runner", "1.2"));
        let r = Reference::parse("oci://127.0.0.1:5000/charts/agent:0.1.0").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.target()), ("127.0.0.1:5000", "charts/agent", "0.1.0"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.target(), r.api_host()), ("docker.io", "library/alpine", d.as_str(), "registry-1.docker.io"));
        assert_eq!(Reference::parse("localhost/x").unwrap().target(), "latest");
        assert!(Reference::parse("Bad/Name").is_err());
        assert!(Reference::parse("x@md5:abc").is_err());
    }

    #[test]
    fn bearer_challenges_parse() {
        let p = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#);
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
    }

    #[test]
    fn registry_errors_carry_code_message_and_hint() {
        let e = registry_error(403, br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#);
        assert!(e.contains("HTTP 403") && e.contains("DENIED: requested access") && e.contains("push/pull rights"), "{e}");
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
