//! An OCI distribution client over ureq: manifests and blobs by digest, pull and push
//! (monolithic here; chunked and resumable in [`super::upload`]), blob existence checks, and the two authentication schemes registries
//! use (Basic, and Bearer tokens fetched from the realm a 401 challenge names).
//! Credentials never appear in errors or output. Referrers are read (the OCI 1.1 API);
//! blobs go up in resumable chunks ([`super::upload`]). Not supported: cross-repository
//! mounts, deletes.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniserde::json::Value;

use super::digest::{shown, Digest, Hasher};
use super::document;
use super::upload::{self, OpenAt, Outcome, Uploads};
use crate::base64;
use crate::error::{Error, Result};
use crate::http::{self, AgentSettings, Trust};

/// Media types a manifest request accepts, most specific first.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Redirects followed for one GET or HEAD (each one checked against [`Origin`]'s rule).
const MAX_REDIRECTS: usize = 5;
/// How long a registry may take to start answering a request once it is sent; also the
/// grace a body gets before [`MIN_RATE`] applies.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// The slowest average rate a body (sent or received) may move at: a request moving `n`
/// bytes must have moved them within the response bound + `n / MIN_RATE` seconds, so a
/// peer that drips a byte every few seconds is given up on, not waited for an hour.
pub const MIN_RATE: u64 = 64 << 10;

/// A repository path as the distribution spec allows it (`a/b-c/d.e`), checked once:
/// components of lowercase letters and digits joined by `.`, `_`, `__` or dashes, at
/// most 255 bytes. It is spliced into URLs, so nothing else gets in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Repository(String);

impl Repository {
    /// Parses a repository path.
    pub fn parse(text: &str) -> std::result::Result<Repository, String> {
        let ok = !text.is_empty() && text.len() <= 255 && text.split('/').all(component_ok);
        if ok {
            Ok(Repository(text.to_string()))
        } else {
            Err(format!("{} is not a repository path (lowercase letters, digits and . _ - between them, / between components)", shown(text)))
        }
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component (the mirrored name).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// `prefix/self.name()`, or the name alone.
    pub fn under(&self, prefix: Option<&Repository>) -> Repository {
        match prefix {
            Some(p) => Repository(format!("{}/{}", p.0, self.name())),
            None => Repository(self.name().to_string()),
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separator runs: ".", "_", "__" or any number of "-".
    let mut run = String::new();
    for &x in b {
        if alnum(x) {
            if !(run.is_empty() || run == "." || run == "_" || run == "__" || run.bytes().all(|y| y == b'-')) {
                return false;
            }
            run.clear();
        } else if matches!(x, b'.' | b'_' | b'-') {
            run.push(x as char);
        } else {
            return false;
        }
    }
    true
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

/// `host[:port]` of a registry: a DNS name or IPv4 address, or a bracketed IPv6 address,
/// and a port of digits. No user info, no path.
pub fn host_ok(h: &str) -> bool {
    match http::split_host_port(h) {
        Some((ip, true)) => !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
        Some((host, false)) => {
            !host.is_empty() && host.len() <= 253 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') && !host.starts_with(['.', '-'])
        }
        None => false,
    }
}

/// What to do about a request that got no answer: the TLS failures an operator meets
/// (a plain-HTTP registry, a private CA) each name the option that fixes them.
fn unreachable_hint(e: &ureq::Error, plain_http: bool) -> &'static str {
    let tls = match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    // A plain-HTTP server answers a TLS hello with an HTTP error (a corrupt TLS record) or
    // by closing the connection.
    let closed = matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
    match tls {
        None if closed && !plain_http => {
            "the registry closed the connection before answering: if it serves plain HTTP, give --plain-http (bundle: --source-plain-http)"
        }
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateHandshakeMessage { .. } | rustls::Error::InappropriateMessage { .. }) => {
            "the registry does not answer in TLS there: if it serves plain HTTP, give --plain-http (bundle: --source-plain-http)"
        }
        Some(rustls::Error::InvalidCertificate(_)) => {
            "the registry's certificate is not trusted or not for this host: give its CA with --ca-file (bundle: --source-ca-file), or fix the host name"
        }
        Some(_) => "the TLS handshake failed: check --ca-file (bundle: --source-ca-file) and the registry's TLS setup",
        None => "is the registry up and reachable at that host and port, through HTTPS_PROXY if one is set?",
    }
}

/// What to fetch or push a manifest under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A tag (checked when parsed).
    Tag(String),
    /// A digest: what is fetched is checked against it.
    Digest(Digest),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Tag(t) => f.write_str(t),
            Selector::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// `registry/repository[:tag][@digest]`, as `docker` and `helm` write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path.
    pub repository: Repository,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Digest, when given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; `oci://` (Helm's form) is accepted and dropped. A reference
    /// with user info (`user:password@host/...`) is refused, and errors never echo a
    /// reference holding an `@` other than a digest's.
    pub fn parse(text: &str) -> std::result::Result<Reference, String> {
        let s = text.trim().strip_prefix("oci://").unwrap_or(text.trim());
        let quoted = if s.contains('@') { "the reference".to_string() } else { shown(s) };
        let (rest, digest) = match s.rsplit_once('@') {
            None => (s, None),
            Some((r, d)) => match Digest::parse(d) {
                Ok(d) if !r.contains('@') => (r, Some(d)),
                _ => {
                    return Err(format!(
                        "{quoted} has an '@' that is not '@sha256:<digest>' (user info such as user:password@ does not belong in a \
reference and is not echoed; give credentials with the options, the environment or an auth file)"
                    ))
                }
            },
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        let (registry, repository) = crate::image::registry_and_path(name);
        let repository = Repository::parse(&repository).map_err(|why| format!("{quoted} is not an image reference (registry/repository:tag): {why}"))?;
        if !host_ok(&registry) {
            return Err(format!("{quoted} is not an image reference: {} is not a registry host[:port]", shown(&registry)));
        }
        if let Some(t) = &tag {
            if !tag_ok(t) {
                return Err(format!("{quoted} is not an image reference: {} is not a tag", shown(t)));
            }
        }
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The digest, else the tag, else `latest`.
    pub fn selector(&self) -> Selector {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Selector::Digest(d.clone()),
            (None, Some(t)) => Selector::Tag(t.clone()),
            (None, None) => Selector::Tag("latest".into()),
        }
    }

    /// The host the API is served on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        crate::image::api_host(&self.registry)
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

/// Scheme, host and port: what credentials are bound to. THE rule of this module, in
/// [`Registry::credentials_allowed`]: credentials (Basic, or a Bearer token) go only to
/// the registry's own origin; a Bearer realm on another origin gets the Basic credentials
/// only over https; a redirect or an upload `Location` on another origin is followed over
/// https without any credentials; plain http is used only for the registry `--plain-http`
/// was given for, never for anything it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https` (else `http`).
    pub https: bool,
    /// Lowercase host (an IPv6 address keeps its brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http(s)://` URL; URLs with user info are refused.
    pub fn of(url: &str) -> std::result::Result<Origin, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{} is not an http(s) URL", shown(url)));
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return Err("a URL with user info (user:password@) is refused".into());
        }
        if !host_ok(authority) {
            return Err(format!("{} has no usable host[:port]", shown(url)));
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], authority[i + 1..].parse::<u16>().map_err(|_| format!("{} has a bad port", shown(url)))?)
            }
            _ => (authority, if https { 443 } else { 80 }),
        };
        Ok(Origin { https, host: host.to_ascii_lowercase(), port })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", if self.https { "https" } else { "http" }, self.host, self.port)
    }
}

/// Where a request goes, for the credential rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The registry's API, a redirect it sends, or an upload location it names.
    Registry,
    /// The token service a Bearer challenge names.
    Realm,
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
    /// Host and port (checked with [`host_ok`]).
    pub host: String,
    /// Plain HTTP; only when asked for explicitly.
    pub plain_http: bool,
    /// Trust anchors for HTTPS.
    pub trust: Trust,
    /// Credentials, when the registry needs them.
    pub credentials: Option<Credentials>,
}

/// A manifest (or index) and its digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its media type.
    pub media_type: String,
    /// The exact bytes (their sha256 is the digest).
    pub bytes: Vec<u8>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Manifest {
    /// `bytes` with their digest.
    pub fn new(media_type: String, bytes: Vec<u8>) -> Manifest {
        Manifest { digest: Digest::of(&bytes), media_type, bytes }
    }
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
    home: Origin,
    agent: ureq::Agent,
    tokens: Mutex<HashMap<String, String>>,
    basic: Mutex<bool>,
    response_timeout: Duration,
    uploads: Option<Uploads>,
    quiet: bool,
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

impl Registry {
    /// A client for `endpoint` (whose host must pass [`host_ok`]).
    pub fn new(endpoint: Endpoint) -> Result<Registry> {
        let scheme = if endpoint.plain_http { "http" } else { "https" };
        let home = Origin::of(&format!("{scheme}://{}/", endpoint.host))
            .map_err(|why| Error::config("registry", why, "give the registry as HOST[:PORT] (no user info, no scheme)"))?;
        // Redirects are followed here, not by ureq, so that each hop passes the origin rule.
        let agent =
            http::agent(&AgentSettings { trust: endpoint.trust.clone(), proxy: ureq::Proxy::try_from_env(), timeout: Duration::from_secs(3600), redirects: 0 });
        Ok(Registry {
            endpoint,
            home,
            agent,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            uploads: None,
            quiet: false,
            counters: Counters::default(),
        })
    }

    /// The same client uploading blobs in chunks, resumably (default: monolithic uploads).
    pub fn with_uploads(mut self, uploads: Uploads) -> Registry {
        self.uploads = Some(uploads);
        self
    }

    /// The same client printing no per-blob progress lines when pulling (the caller meters
    /// the transfers; default: a line every 10 % of a blob over 4 MiB).
    pub fn quiet(mut self) -> Registry {
        self.quiet = true;
        self
    }

    /// The chunked-upload settings and state, when uploads are chunked.
    pub fn uploads(&self) -> Option<&Uploads> {
        self.uploads.as_ref()
    }

    /// The registry's own origin (what credentials are bound to).
    pub fn origin(&self) -> &Origin {
        &self.home
    }

    /// True when `url` is an upload URL of `repository` on the registry's own origin:
    /// `/v2/<repository>/blobs/uploads/<one path segment>[?query]`. Only such a URL is
    /// kept in the state file or resumed from it.
    pub fn upload_url_ok(&self, url: &str, repository: &Repository) -> bool {
        if Origin::of(url).ok().as_ref() != Some(&self.home) {
            return false;
        }
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        let prefix = format!("/v2/{repository}/blobs/uploads/");
        path.strip_prefix(&prefix).is_some_and(|id| !id.is_empty() && !id.contains('/') && id != "." && id != ".." && !id.contains('%'))
    }

    /// The same client with another bound on the wait for an answer (default:
    /// [`DEFAULT_RESPONSE_TIMEOUT`]).
    #[cfg(test)]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Registry {
        self.response_timeout = timeout;
        self
    }

    /// Runs one request that moves about `bytes` bytes (sent or received) under the
    /// response bound and the [`MIN_RATE`] bound on its bodies: a registry that accepts a
    /// connection and never answers, or answers a byte at a time, holds us for
    /// `response_timeout` + `bytes / MIN_RATE`, not for an hour.
    fn run<S: ureq::AsSendBody>(&self, req: ureq::http::Request<S>, bytes: u64) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let body = self.response_timeout + Duration::from_secs(bytes / MIN_RATE);
        let config = self.agent.configure_request(req).timeout_recv_response(Some(self.response_timeout));
        self.agent.run(config.timeout_recv_body(Some(body)).timeout_send_body(Some(body)).build())
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", if self.endpoint.plain_http { "http" } else { "https" }, self.endpoint.host)
    }

    fn basic_header(&self) -> Option<String> {
        self.endpoint.credentials.as_ref().map(|c| format!("Basic {}", base64::encode(format!("{}:{}", c.username, c.password).as_bytes())))
    }

    /// THE credential rule (see [`Origin`]): `Ok(true)` when a request to `url` may
    /// carry credentials, `Ok(false)` when it must go without, `Err` when it must not go.
    pub fn credentials_allowed(&self, url: &str, to: Destination) -> std::result::Result<bool, String> {
        let origin = Origin::of(url)?;
        if origin == self.home {
            return Ok(true);
        }
        if !origin.https {
            return Err(format!(
                "the registry {} points at {origin}, another origin over plain HTTP; refused (plain HTTP is used only for the registry --plain-http was given for, and credentials only go to its own origin or over https)",
                self.home
            ));
        }
        Ok(to == Destination::Realm)
    }

    /// An absolute URL for a `Location` header relative to `base`.
    fn resolve(base: &str, location: &str) -> std::result::Result<String, String> {
        if location.starts_with("https://") || location.starts_with("http://") {
            return Ok(location.to_string());
        }
        let origin = Origin::of(base)?;
        let scheme = if origin.https { "https" } else { "http" };
        if let Some(rest) = location.strip_prefix("//") {
            return Ok(format!("{scheme}://{rest}"));
        }
        if location.starts_with('/') {
            let authority = base.split_once("://").map_or("", |(_, r)| &r[..r.find(['/', '?', '#']).unwrap_or(r.len())]);
            return Ok(format!("{scheme}://{authority}{location}"));
        }
        Err(format!("the registry sent a location {} that is neither absolute nor a path", shown(location)))
    }

    /// Sends one request (answering an auth challenge once, following redirects of a GET
    /// or HEAD), each hop under the credential rule. `scope` is the token scope.
    /// `receive` is the size of the answer's body expected at most (for the rate bound).
    fn send(&self, method: &str, url: &str, scope: &str, headers: &[(&str, &str)], body: &Body, receive: u64) -> Result<ureq::http::Response<ureq::Body>> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let operation = format!("{method} {}", url.split('?').next().unwrap_or(&url));
            let credentials = self.credentials_allowed(&url, Destination::Registry).map_err(|why| Error::transport(&operation, why))?;
            let response = self.send_once(&operation, method, &url, scope, headers, body, credentials, receive)?;
            let status = response.status().as_u16();
            if !(matches!(status, 301 | 302 | 303 | 307 | 308) && matches!(method, "GET" | "HEAD")) {
                return Ok(response);
            }
            let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
            url = Registry::resolve(&url, location).map_err(|why| Error::transport(&operation, why))?;
        }
        Err(Error::transport(format!("{method} {url}"), format!("more than {MAX_REDIRECTS} redirects")))
    }

    #[allow(clippy::too_many_arguments)]
    fn send_once(
        &self,
        operation: &str,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: &Body,
        credentials: bool,
        receive: u64,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut challenged = false;
        loop {
            let auth = match self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(scope) {
                _ if !credentials => None,
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
                Body::Empty => self.run(req.body(()).map_err(|e| Error::transport(operation, e))?, receive),
                Body::Bytes(b, content_type) => {
                    let req = req.header("Content-Type", *content_type).header("Content-Length", b.len().to_string());
                    self.run(req.body(b.to_vec()).map_err(|e| Error::transport(operation, e))?, receive.max(b.len() as u64))
                }
                Body::Stream(open, len) => {
                    let reader = open().map_err(|e| Error::io(format!("reading the blob for {operation}"), e))?;
                    let req = req.header("Content-Type", "application/octet-stream").header("Content-Length", len.to_string());
                    let req = req.body(ureq::SendBody::from_owned_reader(reader)).map_err(|e| Error::transport(operation, e))?;
                    self.run(req, receive.max(*len))
                }
            };
            let response = result.map_err(|e| Error::transport(operation, format!("{e} ({})", unreachable_hint(&e, self.endpoint.plain_http))))?;
            // Another origin's 401 is its own business: no credentials are offered to it.
            if response.status().as_u16() != 401 || !credentials || challenged {
                if response.status().as_u16() == 401 && credentials {
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
        let operation = format!("getting a token from {}", realm.split('?').next().unwrap_or(realm));
        self.credentials_allowed(realm, Destination::Realm).map_err(|why| Error::transport(&operation, why))?;
        let separator = if realm.contains('?') { '&' } else { '?' };
        let mut url = format!("{realm}{separator}scope={}", crate::http::percent_encode(scope));
        if let Some(service) = params.get("service") {
            url.push_str(&format!("&service={}", crate::http::percent_encode(service)));
        }
        let basic = self.basic_header();
        let mut headers = vec![("Accept", "application/json")];
        if let Some(b) = &basic {
            headers.push(("Authorization", b.as_str()));
        }
        let reply = http::call(&self.agent, "GET", &url, &headers, None, document::MAX_SMALL as u64, Some(Duration::from_secs(30)))
            .map_err(|why| Error::transport(&operation, why))?;
        if reply.status == 401 || reply.status == 403 {
            return Err(Error::transport(&operation, format!("HTTP {}: the registry refused the credentials; fix the user name and password", reply.status)));
        }
        let Ok(Value::Object(o)) = document::parse(reply.body.as_bytes(), "the token answer", document::MAX_SMALL) else {
            return Err(Error::transport(&operation, format!("HTTP {}: the answer is not a token", reply.status)));
        };
        match o.get("token").or_else(|| o.get("access_token")) {
            Some(Value::String(t)) => Ok(t.clone()),
            _ => Err(Error::transport(&operation, "the answer holds no token")),
        }
    }

    /// Fetches a manifest (or index) by tag or digest; one fetched by digest is checked against it.
    pub fn manifest(&self, repository: &Repository, selector: &Selector) -> Result<Manifest> {
        match self.manifest_or_404(repository, selector)? {
            Ok(manifest) => Ok(manifest),
            Err(body) => Err(Error::transport(format!("GET {}", self.url(&format!("/v2/{repository}/manifests/{selector}"))), registry_error(404, &body))),
        }
    }

    /// [`Registry::manifest`], or `None` when the registry has no such manifest (HTTP 404):
    /// how an optional attachment (a `sha256-<hex>.sig` tag) is looked up.
    pub fn manifest_if_any(&self, repository: &Repository, selector: &Selector) -> Result<Option<Manifest>> {
        Ok(self.manifest_or_404(repository, selector)?.ok())
    }

    /// The manifest, or the body of the registry's 404.
    fn manifest_or_404(&self, repository: &Repository, selector: &Selector) -> Result<std::result::Result<Manifest, Vec<u8>>> {
        let manifest = match self.document(repository, &format!("manifests/{selector}"), MANIFEST_TYPES)? {
            Ok(m) => m,
            Err((404, body)) => return Ok(Err(body)),
            Err((status, body)) => {
                return Err(Error::transport(format!("GET {}", self.url(&format!("/v2/{repository}/manifests/{selector}"))), registry_error(status, &body)))
            }
        };
        if let Selector::Digest(d) = selector {
            if *d != manifest.digest {
                return Err(Error::transport(
                    format!("GET {}", self.url(&format!("/v2/{repository}/manifests/{selector}"))),
                    format!("the registry served a manifest whose digest is {}, not the {d} asked for", manifest.digest),
                ));
            }
        }
        Ok(Ok(manifest))
    }

    /// The OCI 1.1 referrers index of `subject` (`GET /v2/<name>/referrers/<digest>`), or
    /// `None` when the registry does not implement the referrers API (HTTP 404, as
    /// docker-registry 2.8 answers, or 400, 405 or 501 for a path it does not route).
    /// Not content-addressed: the caller checks every descriptor in it by fetching it by digest.
    pub fn referrers(&self, repository: &Repository, subject: &Digest) -> Result<Option<Manifest>> {
        match self.document(repository, &format!("referrers/{subject}"), "application/vnd.oci.image.index.v1+json")? {
            Ok(index) => Ok(Some(index)),
            Err((400 | 404 | 405 | 501, _)) => Ok(None),
            Err((status, body)) => {
                Err(Error::transport(format!("GET {}", self.url(&format!("/v2/{repository}/referrers/{subject}"))), registry_error(status, &body)))
            }
        }
    }

    /// GETs `/v2/<repository>/<path>` (a manifest or a referrers index) bounded by
    /// [`document::MAX_MANIFEST`]; on any status but 200, the status and the registry's body.
    fn document(&self, repository: &Repository, path: &str, accept: &str) -> Result<std::result::Result<Manifest, (u16, Vec<u8>)>> {
        let url = self.url(&format!("/v2/{repository}/{path}"));
        let mut response =
            self.send("GET", &url, &format!("repository:{repository}:pull"), &[("Accept", accept)], &Body::Empty, document::MAX_MANIFEST as u64)?;
        let status = response.status().as_u16();
        let media_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        let bytes =
            response.body_mut().with_config().limit(document::MAX_MANIFEST as u64).read_to_vec().map_err(|e| Error::transport(format!("reading {url}"), e))?;
        match status {
            200 => Ok(Ok(Manifest::new(media_type, bytes))),
            _ => Ok(Err((status, bytes))),
        }
    }

    /// Streams a blob into `out`, verifying its digest and size.
    pub fn blob(&self, repository: &Repository, digest: &Digest, size: u64, out: &mut dyn Write) -> Result<()> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let mut response = self.send("GET", &url, &format!("repository:{repository}:pull"), &[], &Body::Empty, size)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refused(&mut response, format!("GET {url}")));
        }
        let mut reader = response.body_mut().with_config().limit(size.saturating_add(1)).reader();
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        let mut progress = if self.quiet { Progress::silent() } else { Progress::new(format!("pulling {}", digest.short()), size) };
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::transport(format!("reading {url}"), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(format!("writing {digest}"), e))?;
            total += n as u64;
            progress.at(total);
        }
        let got = hasher.finish();
        if got != *digest || total != size {
            return Err(Error::transport(format!("GET {url}"), format!("the blob's content is {got} ({total} bytes), not {digest} ({size} bytes)")));
        }
        Ok(())
    }

    /// True when the registry already holds the blob.
    pub fn has_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self.send("HEAD", &url, &format!("repository:{repository}:pull,push"), &[], &Body::Empty, 0)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            code => Err(Error::transport(format!("HEAD {url}"), format!("HTTP {code}"))),
        }
    }

    /// Uploads a blob unless the registry has it: in chunks when [`Registry::with_uploads`]
    /// asked for them and the registry takes them, else whole (POST, then PUT with the
    /// digest). `open` reads the blob from a byte offset.
    pub fn push_blob(&self, repository: &Repository, digest: &Digest, size: u64, open: &OpenAt) -> Result<bool> {
        if self.has_blob(repository, digest)? {
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let mut location = None;
        if let Some(uploads) = self.uploads.as_ref().filter(|u| u.chunked(size)) {
            match upload::push(self, uploads, repository, digest, size, open)? {
                Outcome::Done(sent) => {
                    self.counters.blobs_pushed.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_pushed.fetch_add(sent, Ordering::Relaxed);
                    return Ok(true);
                }
                Outcome::Whole(at) => location = at,
            }
        }
        let scope = format!("repository:{repository}:pull,push");
        let location = match location {
            Some(l) => l,
            None => self.start_upload(repository, &scope)?,
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={}", crate::http::percent_encode(&digest.to_string()));
        let label = format!("pushing {}", digest.short());
        let expected = digest.clone();
        // With chunked uploads set up, the caller meters the transfer.
        let quiet = self.uploads.is_some();
        let counted = move || -> std::io::Result<Box<dyn Read>> {
            let progress = if quiet { Progress::silent() } else { Progress::from(label.clone(), size, 0) };
            Ok(Box::new(Counting::whole(open(0)?, progress, size, expected.clone())))
        };
        let mut response = self.send("PUT", &put, &scope, &[], &Body::Stream(&counted, size), 0)?;
        let status = response.status().as_u16();
        if status != 201 {
            return Err(refused(&mut response, format!("PUT {}", put.split('?').next().unwrap_or(&put))));
        }
        self.counters.blobs_pushed.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_pushed.fetch_add(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Opens an upload session (POST) and returns its absolute upload URL.
    pub fn start_upload(&self, repository: &Repository, scope: &str) -> Result<String> {
        let start = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let mut response = self.send("POST", &start, scope, &[], &Body::Bytes(&[], "application/octet-stream"), 0)?;
        let status = response.status().as_u16();
        if status != 202 {
            return Err(refused(&mut response, format!("POST {start}")));
        }
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if location.is_empty() {
            return Err(Error::transport(format!("POST {start}"), "the registry gave no upload location"));
        }
        Registry::resolve(&start, &location).map_err(|why| Error::transport(format!("POST {start}"), why))
    }

    /// GET on an upload URL: the bytes the registry holds for the session (its `Range`)
    /// and the URL to go on with (its fresh `Location`, else the same).
    pub fn upload_status(&self, location: &str, scope: &str) -> std::result::Result<(u64, String), String> {
        let mut response = self.send("GET", location, scope, &[], &Body::Empty, 0).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        if status != 204 && status != 200 {
            return Err(registry_error(status, &response.body_mut().with_config().limit(1 << 16).read_to_vec().unwrap_or_default()));
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let held = header("range").as_deref().and_then(upload::held).ok_or("the registry's answer has no Range 0-N")?;
        let fresh = match header("location") {
            Some(l) => Registry::resolve(location, &l)?,
            None => location.to_string(),
        };
        Ok((held, fresh))
    }

    /// One PATCH of `len` bytes at `range` (`start-end`): the status, the URL to go on
    /// with, the bytes the registry says it holds afterwards, and the response.
    pub fn patch_upload(
        &self,
        location: &str,
        scope: &str,
        range: &str,
        body: &dyn Fn() -> std::io::Result<Box<dyn Read>>,
        len: u64,
    ) -> Result<(u16, String, Option<u64>, ureq::http::Response<ureq::Body>)> {
        let response = self.send("PATCH", location, scope, &[("Content-Range", range)], &Body::Stream(body, len), 0)?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let held = header("range").as_deref().and_then(upload::held);
        let next = match header("location") {
            Some(l) => {
                Registry::resolve(location, &l).map_err(|why| Error::transport(format!("PATCH {}", location.split('?').next().unwrap_or(location)), why))?
            }
            None => location.to_string(),
        };
        Ok((status, next, held, response))
    }

    /// Closes an upload session: PUT `?digest=` with no body.
    pub fn finish_upload(&self, location: &str, scope: &str, digest: &Digest) -> Result<()> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={}", crate::http::percent_encode(&digest.to_string()));
        let mut response = self.send("PUT", &put, scope, &[], &Body::Bytes(&[], "application/octet-stream"), 0)?;
        if response.status().as_u16() != 201 {
            return Err(refused(&mut response, format!("PUT {}", location.split('?').next().unwrap_or(location))));
        }
        Ok(())
    }

    /// Uploads a manifest under a tag or its digest.
    pub fn push_manifest(&self, repository: &Repository, selector: &Selector, manifest: &Manifest) -> Result<()> {
        let url = self.url(&format!("/v2/{repository}/manifests/{selector}"));
        let mut response =
            self.send("PUT", &url, &format!("repository:{repository}:pull,push"), &[], &Body::Bytes(&manifest.bytes, &manifest.media_type), 0)?;
        let status = response.status().as_u16();
        if status != 201 {
            return Err(refused(&mut response, format!("PUT {url}")));
        }
        Ok(())
    }
}

/// The error for a reply that is not the status `operation` needed, in the registry's words.
pub fn refused(response: &mut ureq::http::Response<ureq::Body>, operation: String) -> Error {
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
    Error::transport(operation, registry_error(status, &body))
}

/// The registry's own words from an OCI error body, with the status.
fn registry_error(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = match document::parse(body, "the error body", document::MAX_SMALL) {
        Ok(Value::Object(o)) => match o.get("errors") {
            Some(Value::Array(errors)) => errors
                .iter()
                .filter_map(|e| match e {
                    Value::Object(e) => {
                        let field = |k: &str| match e.get(k) {
                            Some(Value::String(s)) => s.clone(),
                            _ => String::new(),
                        };
                        // A hostile registry's words reach the terminal: no control characters.
                        Some(crate::text::snippet(&format!("{}: {}", field("code"), field("message")), 300))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        },
        _ => crate::text::snippet(&text, 200),
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

/// Progress lines on standard error for transfers over 4 MiB, every 10 %.
pub struct Progress {
    label: String,
    total: u64,
    next: u64,
}

impl Progress {
    fn new(label: String, total: u64) -> Progress {
        Progress::from(label, total, 0)
    }

    /// No lines (the caller shows progress its own way).
    pub fn silent() -> Progress {
        Progress { label: String::new(), total: 0, next: u64::MAX }
    }

    /// Progress of `total` bytes of which `done` are already through: the next line is at
    /// the next tenth above `done`.
    pub fn from(label: String, total: u64, done: u64) -> Progress {
        let step = total / 10;
        Progress { label, total, next: if total > 4 << 20 { (done / step + 1) * step } else { u64::MAX } }
    }

    fn at(&mut self, done: u64) {
        if done >= self.next {
            eprintln!("  {} {:>3}% of {:.1} MiB", self.label, done * 100 / self.total.max(1), self.total as f64 / 1048576.0);
            self.next += self.total / 10;
        }
    }
}

/// An upload body (a whole blob, or one chunk of it): counted for progress, and hashed as
/// it goes, so that bytes which are not the digest being pushed (the bundle changed after
/// `verify`) fail the upload before their last byte is sent. A chunk starts from the
/// hasher of the bytes before it and hands its own to `slot` when its last byte is read.
pub struct Counting {
    inner: Box<dyn Read>,
    progress: Progress,
    /// Bytes of the blob read so far (a chunk starts at its offset).
    done: u64,
    /// Where this body ends in the blob.
    end: u64,
    size: u64,
    hasher: Option<Hasher>,
    expected: Digest,
    slot: Option<Arc<Mutex<Option<Hasher>>>>,
}

impl Counting {
    /// The whole blob (`size` bytes, which must be `expected`) from `inner`.
    pub fn whole(inner: Box<dyn Read>, progress: Progress, size: u64, expected: Digest) -> Counting {
        Counting { inner, progress, done: 0, end: size, size, hasher: Some(Hasher::new()), expected, slot: None }
    }

    /// Bytes `offset..offset + len` of the blob from `inner` (which reads from `offset`),
    /// going on from `hasher` (the bytes before `offset`); the hasher lands in `slot` at
    /// the chunk's end, or is checked against `expected` when that is the blob's end.
    #[allow(clippy::too_many_arguments)]
    pub fn chunk(
        inner: Box<dyn Read>,
        progress: Progress,
        offset: u64,
        len: u64,
        size: u64,
        hasher: Hasher,
        expected: Digest,
        slot: Arc<Mutex<Option<Hasher>>>,
    ) -> Counting {
        Counting { inner, progress, done: offset, end: offset + len, size, hasher: Some(hasher), expected, slot: Some(slot) }
    }
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A chunk reads no further than its end; a whole blob reads on, to see it is longer.
        let room = if self.slot.is_some() { buf.len().min((self.end - self.done) as usize) } else { buf.len() };
        let n = if room == 0 { 0 } else { self.inner.read(&mut buf[..room])? };
        let changed = |why: String| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the blob {} {why}; the bundle changed after it was verified", self.expected))
        };
        if self.done + n as u64 > self.size {
            return Err(changed(format!("is longer than its {} bytes", self.size)));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.done += n as u64;
        if n == 0 && self.done < self.end {
            return Err(changed(format!("ended after {} of its {} bytes", self.done, self.size)));
        }
        if self.done == self.end {
            if let Some(h) = self.hasher.take() {
                if self.end < self.size {
                    if let Some(slot) = &self.slot {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
                    }
                } else {
                    let got = h.finish();
                    if got != self.expected {
                        return Err(changed(format!("now reads as {got}")));
                    }
                    if let Some(slot) = &self.slot {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Hasher::new());
                    }
                }
            }
        }
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
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.selector().to_string()), ("ghcr.io", "humanitec/runner", "1.2".into()));
        let r = Reference::parse("oci://127.0.0.1:5000/charts/agent:0.1.0").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.selector().to_string()), ("127.0.0.1:5000", "charts/agent", "0.1.0".into()));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.selector().to_string(), r.api_host()),
            ("docker.io", "library/alpine", d.clone(), "registry-1.docker.io")
        );
        assert_eq!(Reference::parse("localhost/x").unwrap().selector(), Selector::Tag("latest".into()));
        assert_eq!(Reference::parse("[::1]:5000/a/b-c__d.e:v1").unwrap().registry, "[::1]:5000");
        for bad in ["Bad/Name", "x@md5:abc", "host.example/a/../b:1", "host.example/a//b", "host.example/a:../x", "host.example/a_/b", "host.example/a:-x"] {
            assert!(Reference::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_reference_with_user_info_is_refused_without_echoing_the_password() {
        for text in ["mirror:hunter2@registry.example/a/b:1", "mirror:hunter2@registry.example/a/b@sha256:", "oci://u:hunter2@host:5000/x"] {
            let e = Reference::parse(text).unwrap_err();
            assert!(!e.contains("hunter2") && e.contains("user info"), "{e}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        let e = Reference::parse(&format!("mirror:hunter2@registry.example/a/b@{d}")).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    fn registry(host: &str, plain_http: bool) -> Registry {
        Registry::new(Endpoint { host: host.into(), plain_http, trust: Trust::WebPki, credentials: None }).unwrap()
    }

    #[test]
    fn credentials_go_only_to_the_registry_origin_and_to_an_https_realm() {
        let r = registry("registry.example:5000", false);
        assert_eq!(r.credentials_allowed("https://registry.example:5000/v2/x", Destination::Registry), Ok(true));
        assert_eq!(r.credentials_allowed("https://REGISTRY.example:5000/token", Destination::Realm), Ok(true));
        assert_eq!(r.credentials_allowed("https://auth.example/token", Destination::Realm), Ok(true));
        assert_eq!(r.credentials_allowed("https://cdn.example/blob", Destination::Registry), Ok(false));
        assert_eq!(r.credentials_allowed("https://registry.example:5001/upload", Destination::Registry), Ok(false));
        assert!(r.credentials_allowed("http://auth.example/token", Destination::Realm).is_err());
        assert!(r.credentials_allowed("http://registry.example:5000/v2/x", Destination::Registry).is_err());
        assert!(r.credentials_allowed("https://u:p@registry.example:5000/v2/x", Destination::Registry).is_err());
        let plain = registry("127.0.0.1:5000", true);
        assert_eq!(plain.credentials_allowed("http://127.0.0.1:5000/token", Destination::Realm), Ok(true));
        assert!(plain.credentials_allowed("http://127.0.0.1:5001/token", Destination::Realm).is_err());
        assert_eq!(plain.credentials_allowed("https://127.0.0.1:5000/v2/x", Destination::Registry), Ok(false));
    }

    #[test]
    fn a_registry_that_accepts_and_never_answers_is_given_up_on() {
        // The kernel completes the handshake into the backlog; nobody ever reads or answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = registry(&silent.local_addr().unwrap().to_string(), true).with_response_timeout(Duration::from_millis(500));
        let started = std::time::Instant::now();
        let e = r.manifest(&Repository::parse("a/b").unwrap(), &Selector::Tag("1".into())).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
        assert!(e.contains("timed out") || e.contains("timeout"), "{e}");
    }

    #[test]
    fn locations_resolve_against_the_request_origin() {
        assert_eq!(
            Registry::resolve("https://r.example:5000/v2/x/blobs/uploads/", "/v2/x/blobs/uploads/1?s=2").unwrap(),
            "https://r.example:5000/v2/x/blobs/uploads/1?s=2"
        );
        assert_eq!(Registry::resolve("http://r.example/v2/", "//cdn.example/b").unwrap(), "http://cdn.example/b");
        assert_eq!(Registry::resolve("http://r.example/v2/", "https://cdn.example/b").unwrap(), "https://cdn.example/b");
        assert!(Registry::resolve("http://r.example/v2/", "uploads/1").is_err());
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
        let e = registry_error(500, "{\"errors\":[{\"code\":\"X\",\"message\":\"\\u001b[2Jgone\"}]}".as_bytes());
        assert!(!e.contains('\u{1b}') && e.contains("X: [2Jgone"), "{e}");
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_registry_that_drips_a_body_is_given_up_on_at_the_minimum_rate() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            // At most 40 bytes, one per 250 ms (10 s): the client must hang up long before.
            for _ in 0..40 {
                if conn.write_all(b"x").and_then(|()| conn.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let r = registry(&addr.to_string(), true).with_response_timeout(Duration::from_millis(500));
        let started = std::time::Instant::now();
        let e = r.blob(&Repository::parse("a/b").unwrap(), &Digest::of(b"x"), 1000, &mut Vec::new()).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}: {e}", started.elapsed());
        assert!(e.contains("timeout") || e.contains("timed out"), "{e}");
        server.join().unwrap();
    }

    #[test]
    fn an_upload_body_that_is_not_its_digest_fails_before_its_last_byte_is_sent() {
        let good = vec![7u8; 100_000];
        let mut changed = good.clone();
        changed[99_999] = 8;
        let body = |bytes: Vec<u8>| Counting::whole(Box::new(std::io::Cursor::new(bytes)), Progress::new(String::new(), 100_000), 100_000, Digest::of(&good));
        let mut sent = Vec::new();
        assert_eq!(std::io::copy(&mut body(good.clone()), &mut sent).unwrap(), 100_000);
        let mut sent = Vec::new();
        let e = std::io::copy(&mut body(changed), &mut sent).unwrap_err().to_string();
        assert!(e.contains("changed after it was verified") && sent.len() < 100_000, "{e} after {} bytes", sent.len());
        let e = std::io::copy(&mut body(vec![7u8; 100_001]), &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("longer"), "{e}");
    }
}
