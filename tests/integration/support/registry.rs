//! A small OCI registry stand-in for offline-install, hostile on request: it serves
//! whatever manifests and blobs a test puts in it (digests that are paths or tags, graphs
//! with shared children, any bytes for any blob), stores what is pushed, records every
//! request with its `Authorization`, and can demand Basic credentials, send a Bearer
//! challenge naming any realm, name an upload `Location` on another origin, or redirect
//! blob downloads elsewhere, or run a hook on each request (to change the bundle under
//! the tool between its verify and its push). `Recorder` is the "other origin": it records who came and
//! with which credentials, and answers 200/201 with a token.
//!
//! Uploads behave as Debian's docker-registry 2.8 does (seen against it): POST opens a
//! session whose `Location` seals the offset it was issued at (`?_state=N`); each PATCH
//! must start at the session's length (`Content-Range`, else 416) and answers 202 with
//! `Range: 0-<len-1>` and a fresh `Location`; GET on an upload URL answers 204 with the
//! same; a request whose sealed offset is not the session's length CANCELS the session
//! (404 BLOB_UPLOAD_INVALID), and a PATCH cut midway keeps the bytes that arrived. The PUT
//! `?digest=` appends its body and checks the digest (400 DIGEST_INVALID). Knobs: `cut_patch`
//! (that PATCH keeps half its bytes and the connection drops unanswered), `fail_patch`
//! (that PATCH is answered 500 and nothing of it kept), `lenient_state` (GET answers the
//! true length whatever offset the URL seals: what the OCI spec describes), `no_chunks`
//! (PATCH answers 405: a registry without chunked uploads), `fail_put` (the closing PUT
//! of a large session answers 500, the session stays).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::server::{Reply, Request, Server};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

/// How the stand-in wants to be authenticated.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Basic base64(user:password)`.
    Basic(String),
    /// A Bearer challenge naming this realm; `Bearer <token>` is accepted.
    Bearer { realm: String, token: String },
}

/// A hook run on each request.
pub type Hook = Box<dyn FnMut(&Seen) + Send>;

#[derive(Default)]
pub struct State {
    /// Manifests by tag or digest: (media type, body).
    pub manifests: BTreeMap<String, (String, String)>,
    /// Blobs by digest text.
    pub blobs: BTreeMap<String, String>,
    /// Served for any blob not in `blobs` (a hostile registry's bytes).
    pub any_blob: Option<String>,
    pub auth: Auth,
    /// An absolute upload location (else `/upload/<n>` on the stand-in itself).
    pub upload_location: Option<String>,
    /// Blob GETs are redirected to this base URL + the request path.
    pub blob_redirect: Option<String>,
    /// Run on every request before it is answered (a registry that also changes files
    /// the tool reads, between its verify and its push).
    pub on_request: Option<Hook>,
    pub seen: Vec<Seen>,
    /// Open upload sessions: id -> bytes so far.
    pub uploads: BTreeMap<String, String>,
    /// Every PATCH: (session id, Content-Range, body length, status answered).
    pub patches: Vec<(String, String, usize, u16)>,
    /// PATCHes answered so far (1-based numbering of the knobs below).
    pub patch_count: usize,
    /// The PATCH with this number keeps half its body, then the connection drops.
    pub cut_patch: Option<usize>,
    /// The PATCH with this number is answered 500 and nothing of it kept.
    pub fail_patch: Option<usize>,
    /// GET on an upload URL reports the session's true length whatever offset it seals.
    pub lenient_state: bool,
    /// PATCH answers 405 (no chunked uploads).
    pub no_chunks: bool,
    /// The PUT closing a session of at least this many bytes answers 500, and the session
    /// stays as it was.
    pub fail_put: Option<usize>,
}

pub struct Registry {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
}

impl Registry {
    pub fn start(tls: bool) -> Registry {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let server = Server::start(Arc::new(move |req: &Request| handle(&s, req)), tls);
        Registry { server, state }
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

/// Answers `req`; the answer to a HEAD carries no body (HTTP says so: the bytes of a
/// 401's JSON body after a HEAD were read by the client as the next response on the
/// kept-alive connection, "invalid HTTP version", the flaky failure of
/// `an_upload_location_on_another_host_gets_no_credentials`).
fn handle(state: &Mutex<State>, req: &Request) -> Reply {
    match answer(state, req) {
        Reply::Full { status, headers, .. } if req.method == "HEAD" => Reply::Full { status, headers, body: String::new() },
        reply => reply,
    }
}

fn answer(state: &Mutex<State>, req: &Request) -> Reply {
    let mut s = state.lock().unwrap();
    let authorization = req.header("authorization").map(String::from);
    let seen = Seen { method: req.method.clone(), path: req.path.clone(), authorization: authorization.clone() };
    if let Some(hook) = s.on_request.as_mut() {
        hook(&seen);
    }
    s.seen.push(seen);
    if req.path == "/v2/" || req.path.starts_with("/v2/") {
        let ok = match &s.auth {
            Auth::None => true,
            Auth::Basic(expected) => authorization.as_deref() == Some(expected.as_str()),
            Auth::Bearer { token, .. } => authorization.as_deref() == Some(format!("Bearer {token}").as_str()),
        };
        if !ok {
            let challenge = match &s.auth {
                Auth::Bearer { realm, .. } => format!("Bearer realm=\"{realm}\",service=\"stand-in\""),
                _ => "Basic realm=\"stand-in\"".to_string(),
            };
            return Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#).with_header("WWW-Authenticate", &challenge);
        }
    }
    let last = req.path.rsplit('/').next().unwrap_or("").to_string();
    let method = req.method.as_str();
    // The OCI 1.1 referrers API only where a test put an index under "referrers/<digest>";
    // else 404, as docker-registry 2.8 (which does not implement it) answers.
    if req.path.contains("/referrers/") && method == "GET" {
        return match s.manifests.get(&format!("referrers/{last}")) {
            Some((media, body)) => Reply::Full { status: 200, headers: vec![("Content-Type".into(), media.clone())], body: body.clone() },
            None => Reply::json(404, r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#),
        };
    }
    if req.path.contains("/manifests/") {
        return match method {
            "GET" | "HEAD" => match s.manifests.get(&last) {
                Some((media, body)) => Reply::Full { status: 200, headers: vec![("Content-Type".into(), media.clone())], body: body.clone() },
                None => Reply::json(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            },
            "PUT" => {
                let media = req.header("content-type").unwrap_or("").to_string();
                s.manifests.insert(last, (media, req.body.clone()));
                Reply::empty(201)
            }
            _ => Reply::empty(405),
        };
    }
    if req.path.ends_with("/blobs/uploads/") && method == "POST" {
        let n = s.seen.len();
        if let Some(location) = s.upload_location.clone() {
            return Reply::empty(202).with_header("Location", &location);
        }
        s.uploads.insert(n.to_string(), String::new());
        return Reply::empty(202).with_header("Location", &format!("{}{n}?_state=0", req.path)).with_header("Range", "0-0");
    }
    if let Some((_, id)) = req.path.split_once("/blobs/uploads/").filter(|(_, id)| !id.is_empty()) {
        return upload(&mut s, id.to_string(), req);
    }
    if req.path.contains("/blobs/") {
        if let (Some(base), "GET") = (&s.blob_redirect, method) {
            return Reply::empty(307).with_header("Location", &format!("{base}{}", req.path));
        }
        return match (s.blobs.get(&last), &s.any_blob, method) {
            (Some(_), _, "HEAD") => Reply::empty(200),
            (None, _, "HEAD") => Reply::empty(404),
            (Some(b), _, _) | (None, Some(b), _) => Reply::Full { status: 200, headers: Vec::new(), body: b.clone() },
            (None, None, _) => Reply::json(404, r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#),
        };
    }
    Reply::empty(404)
}

/// One request on an upload session, as docker-registry 2.8 answers it.
fn upload(s: &mut State, id: String, req: &Request) -> Reply {
    let unknown = || Reply::json(404, r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown"}]}"#);
    let Some(len) = s.uploads.get(&id).map(String::len) else { return unknown() };
    let sealed: Option<usize> = req.query.get("_state").and_then(|v| v.parse().ok());
    let lenient = s.lenient_state && req.method == "GET";
    if sealed != Some(len) && !lenient {
        s.uploads.remove(&id);
        return Reply::json(404, r#"{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"blob upload invalid"}]}"#);
    }
    let progress = |len: usize| {
        Reply::empty(if req.method == "GET" { 204 } else { 202 })
            .with_header("Location", &format!("{}?_state={len}", req.path))
            .with_header("Range", &format!("0-{}", len.saturating_sub(1)))
    };
    match req.method.as_str() {
        "GET" => progress(len),
        "PATCH" => {
            s.patch_count += 1;
            let number = s.patch_count;
            let range = req.header("content-range").unwrap_or("").to_string();
            let record = |s: &mut State, status: u16| s.patches.push((id.clone(), range.clone(), req.body.len(), status));
            if s.no_chunks {
                record(s, 405);
                return Reply::json(405, r#"{"errors":[{"code":"UNSUPPORTED","message":"chunked uploads are not supported"}]}"#);
            }
            if s.fail_patch == Some(number) {
                record(s, 500);
                return Reply::json(500, r#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#);
            }
            if !range.is_empty() && range.split('-').next() != Some(len.to_string().as_str()) {
                record(s, 416);
                return Reply::json(416, r#"{"errors":[{"code":"RANGE_INVALID","message":"invalid content range"}]}"#);
            }
            if s.cut_patch == Some(number) {
                record(s, 0);
                let half: String = req.body.chars().take(req.body.len() / 2).collect();
                s.uploads.get_mut(&id).unwrap().push_str(&half);
                return Reply::Drop;
            }
            record(s, 202);
            let bytes = s.uploads.get_mut(&id).unwrap();
            bytes.push_str(&req.body);
            let len = bytes.len();
            progress(len)
        }
        "PUT" if s.fail_put.is_some_and(|at_least| len >= at_least) => Reply::json(500, r#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#),
        "PUT" => {
            let mut bytes = s.uploads.remove(&id).unwrap_or_default();
            bytes.push_str(&req.body);
            let digest = req.query.get("digest").cloned().unwrap_or_default();
            if digest != format!("sha256:{}", kubernetes_agent::hex::sha256(bytes.as_bytes())) {
                return Reply::json(400, r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#);
            }
            s.blobs.insert(digest, bytes);
            Reply::empty(201)
        }
        _ => Reply::empty(405),
    }
}

/// The other origin: records every request; answers a token to GETs with `token` in the
/// path, the stored body to other GETs, 201 to PUTs.
pub struct Recorder {
    pub server: Server,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub body: Arc<Mutex<String>>,
}

impl Recorder {
    pub fn start(tls: bool) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body = Arc::new(Mutex::new(String::new()));
        let (s, b) = (seen.clone(), body.clone());
        let server = Server::start(
            Arc::new(move |req: &Request| {
                s.lock().unwrap().push(Seen {
                    method: req.method.clone(),
                    path: req.path.clone(),
                    authorization: req.header("authorization").map(String::from),
                });
                match req.method.as_str() {
                    "GET" if req.path.contains("token") => Reply::json(200, r#"{"token":"tok"}"#),
                    "GET" => Reply::Full { status: 200, headers: Vec::new(), body: b.lock().unwrap().clone() },
                    _ => Reply::empty(201),
                }
            }),
            tls,
        );
        Recorder { server, seen, body }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
