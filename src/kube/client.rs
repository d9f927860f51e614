//! Sending [`ApiRequest`]s: in-cluster discovery, the bearer token and CA re-read
//! periodically and on 401 (bound tokens rotate about hourly; the last good one is kept
//! when a read fails), and retries with backoff on 429/500/503/504 honouring Retry-After.
//! No proxy is ever used for the API server, whatever `HTTPS_PROXY` says.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Stop, Until};
use crate::error::{Error, Result};
use crate::http::{self, AgentSettings, Trust};
use crate::kube::{ApiRequest, Status};

/// Where the service-account files live in every pod.
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How often the token and CA files are re-read even without a 401.
pub const DEFAULT_RELOAD_EVERY: Duration = Duration::from_secs(60);
/// Upper bound on one API call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Client::send`] keeps retrying when the API says "try again" (429/500/502/
/// 503/504) or is unreachable; callers with their own bound use [`Client::send_until`].
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(20);
/// Largest reply body read; a Job, or a Pod or Event list of one Job, is far below this.
pub const BODY_CAP: u64 = 2 << 20;
/// Longest Retry-After we honour; longer ones are clamped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Longest delay between two attempts of one request.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long after the API server was last unreachable a 403 is retried: a kube-apiserver
/// that has just (re)started answers before its RBAC authorizer has synced and refuses
/// everything for a moment (seen on a real 1.20 control plane restarted mid-burst).
pub const AUTHORIZER_WARMUP: Duration = Duration::from_secs(30);

/// The API server and the credentials to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://host:port`, no trailing slash.
    pub base_url: String,
    /// Bearer token file; `None` sends no Authorization header.
    pub token_file: Option<PathBuf>,
    /// PEM bundle to trust; `None` trusts the public roots (development only).
    pub ca_file: Option<PathBuf>,
}

impl Target {
    /// The in-cluster target from `KUBERNETES_SERVICE_HOST`/`_PORT` and the
    /// service-account directory. IPv6 hosts are bracketed.
    pub fn in_cluster(host: Option<&str>, port: Option<&str>, service_account_dir: &Path) -> Result<Target> {
        let fix = "run the agent in a pod, or set KUBE_API_URL (with KUBE_TOKEN_FILE and KUBE_CA_FILE) for out-of-cluster use";
        let host = host.filter(|h| !h.is_empty()).ok_or_else(|| Error::config("KUBERNETES_SERVICE_HOST", "not set, so this is not a pod", fix))?;
        let port = port.filter(|p| !p.is_empty()).unwrap_or("443");
        if port.parse::<u16>().is_err() {
            return Err(Error::config("KUBERNETES_SERVICE_PORT", format!("'{port}' is not a port number"), fix));
        }
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        Ok(Target {
            base_url: format!("https://{host}:{port}"),
            token_file: Some(service_account_dir.join("token")),
            ca_file: Some(service_account_dir.join("ca.crt")),
        })
    }
}

/// Knobs with production defaults; tests shorten them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`DEFAULT_RELOAD_EVERY`].
    pub reload_every: Duration,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// See [`DEFAULT_RETRY_FOR`].
    pub retry_for: Duration,
    /// First backoff delay; doubled per attempt, capped at 8 s, with jitter.
    pub first_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { reload_every: DEFAULT_RELOAD_EVERY, timeout: DEFAULT_TIMEOUT, retry_for: DEFAULT_RETRY_FOR, first_backoff: Duration::from_millis(250) }
    }
}

struct Credentials {
    token: Option<String>,
    ca_pem: Option<Vec<u8>>,
    agent: ureq::Agent,
    read_at: Instant,
}

/// A Kubernetes API client; cheap to share between threads behind an `Arc`.
pub struct Client {
    target: Target,
    settings: Settings,
    credentials: Mutex<Credentials>,
    requests: AtomicU64,
    /// When a request last found the API server unreachable.
    unreachable_at: Mutex<Option<Instant>>,
}

impl Client {
    /// Reads the token and CA once; a failure here is a start-up error.
    pub fn new(target: Target, settings: Settings) -> Result<Client> {
        let token = match &target.token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let ca_pem = match &target.ca_file {
            Some(path) => Some(read_ca(path).map_err(|e| Error::io(format!("reading the Kubernetes CA file {}", path.display()), e))?),
            None => None,
        };
        let agent = build_agent(ca_pem.as_deref(), &settings, target.ca_file.as_deref())?;
        Ok(Client {
            target,
            settings,
            credentials: Mutex::new(Credentials { token, ca_pem, agent, read_at: Instant::now() }),
            requests: AtomicU64::new(0),
            unreachable_at: Mutex::new(None),
        })
    }

    /// The API server URL.
    pub fn base_url(&self) -> &str {
        &self.target.base_url
    }

    /// HTTP requests sent so far (retries included), for metrics and the benchmark.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sends `request` and returns the body of a 2xx reply. Retries transient failures;
    /// on 401 re-reads the token once and tries again. Retries for [`Settings::retry_for`].
    pub fn send(&self, request: &ApiRequest) -> Result<String> {
        static NEVER: Stop = Stop::new();
        self.send_until(request, Until::within(self.settings.retry_for, &NEVER))
    }

    /// The `items` of a list reply, sent as [`Client::send_until`]. A reply that is not a
    /// JSON list is an error, never an empty list (which would read as "no pod started").
    pub fn list_until(&self, request: &ApiRequest, until: Until<'_>) -> Result<Vec<miniserde::json::Value>> {
        use miniserde::json::Value;
        let body = self.send_until(request, until)?;
        let document = format!("the Kubernetes reply to {}", request.operation);
        match crate::json::parse(&body, &document)? {
            Value::Object(mut o) => match o.remove("items") {
                Some(Value::Array(mut a)) => Ok(std::mem::take(&mut *a)),
                Some(Value::Null) => Ok(Vec::new()),
                _ => Err(Error::decode(document, "it has no 'items' list")),
            },
            _ => Err(Error::decode(document, "it is not a JSON object")),
        }
    }

    /// [`Client::send`], retrying transient failures only while `until` allows: no
    /// attempt starts after its deadline, and a stop ends the waiting at once.
    pub fn send_until(&self, request: &ApiRequest, until: Until<'_>) -> Result<String> {
        let url = format!("{}{}", self.target.base_url, request.path_and_query);
        let mut reloaded_after_401 = false;
        let mut backoff = Backoff::new(self.settings.first_backoff, MAX_BACKOFF);
        loop {
            self.refresh(false);
            let (agent, token) = {
                let c = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
                (c.agent.clone(), c.token.clone())
            };
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("Accept", "application/json")];
            if let Some(a) = &auth {
                headers.push(("Authorization", a.as_str()));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = http::call(&agent, request.method, &url, &headers, request.body.as_deref(), BODY_CAP, None);
            let (error, retry_after) = match outcome {
                Ok(reply) if (200..300).contains(&reply.status) => return Ok(reply.body),
                Ok(reply) => {
                    let status = Status::parse(reply.status, &reply.body);
                    if status.code == 401 && !reloaded_after_401 {
                        reloaded_after_401 = true;
                        log::info!("{}: 401 Unauthorized; re-reading the service-account token and retrying", request.operation);
                        self.refresh(true);
                        continue;
                    }
                    let retry_after = reply.retry_after.or(status.retry_after_seconds).map(Duration::from_secs);
                    (Error::Kube { operation: request.operation.clone(), status }, retry_after)
                }
                Err(why) => {
                    *self.unreachable_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    (Error::transport(format!("{} at {}", request.operation, self.target.base_url), why), None)
                }
            };
            let warming_up = matches!(&error, Error::Kube { status, .. } if status.code == 403)
                && self.unreachable_at.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() < AUTHORIZER_WARMUP);
            if warming_up {
                log::warn!("{error}: the API server was unreachable moments ago and its authorizer may still be starting; retrying");
            } else if !error.is_transient() {
                return Err(error);
            }
            let delay = backoff.next(retry_after.map(|d| d.min(MAX_RETRY_AFTER)));
            let hint = if matches!(error, Error::Transport { .. }) {
                " (if it persists: is the API server up and reachable from this pod? with the chart's networkPolicy, list its endpoints in networkPolicy.apiServerCIDRs)"
            } else {
                ""
            };
            log::warn!("{error}; retrying in {} ms (attempt {}) unless the caller's deadline comes first{hint}", delay.as_millis(), backoff.attempts() + 1);
            if !until.wait(delay) {
                return Err(error);
            }
        }
    }

    /// Re-reads the token and CA when `force` or when they are older than the reload
    /// period. A failed read keeps the last good value and logs why.
    fn refresh(&self, force: bool) {
        let mut c = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        if !force && c.read_at.elapsed() < self.settings.reload_every {
            return;
        }
        c.read_at = Instant::now();
        if let Some(path) = &self.target.token_file {
            match read_token(path) {
                Ok(token) => c.token = Some(token),
                Err(e) => log::warn!("{e}; keeping the last good token"),
            }
        }
        if let Some(path) = &self.target.ca_file {
            match read_ca(path) {
                Ok(pem) if Some(&pem) != c.ca_pem.as_ref() => match build_agent(Some(&pem), &self.settings, Some(path)) {
                    Ok(agent) => {
                        log::info!("Kubernetes CA file {} changed; using the new bundle", path.display());
                        c.agent = agent;
                        c.ca_pem = Some(pem);
                    }
                    Err(e) => log::warn!("{e}; keeping the last good CA bundle"),
                },
                Ok(_) => {}
                Err(e) => log::warn!("reading the Kubernetes CA file {}: {e}; keeping the last good CA bundle", path.display()),
            }
        }
    }
}

fn read_token(path: &Path) -> Result<String> {
    let raw = crate::file::read_capped_text(path, crate::file::TOKEN_CAP, "a token file")
        .map_err(|e| Error::io(format!("reading the Kubernetes token file {}", path.display()), e))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(Error::decode(format!("Kubernetes token file {}", path.display()), "it is empty"));
    }
    crate::redact::set(crate::redact::Slot::KubeToken, &[token]);
    Ok(token.to_string())
}

fn read_ca(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::file::read_capped(path, crate::file::CA_BUNDLE_CAP, "a CA bundle")
}

fn build_agent(ca_pem: Option<&[u8]>, settings: &Settings, ca_path: Option<&Path>) -> Result<ureq::Agent> {
    let trust = match ca_pem {
        Some(pem) => {
            let name = ca_path.map_or_else(|| "the Kubernetes CA".to_string(), |p| format!("Kubernetes CA file {}", p.display()));
            let certs = http::pem_certificates(pem).ok_or_else(|| Error::decode(name, "no PEM certificate in it"))?;
            Trust::Specific(Arc::new(certs))
        }
        None => Trust::WebPki,
    };
    Ok(http::agent(&AgentSettings { trust, proxy: None, timeout: settings.timeout, redirects: 0 }))
}

/// Reading a Kubernetes error body (the data and its classification are in
/// [`super::status`]).
impl Status {
    /// Parses `body` as a `Status`; falls back to one built from `code` when it is not.
    pub fn parse(code: u16, body: &str) -> Status {
        let parsed = match crate::json::parse(body, "a Kubernetes Status") {
            Ok(miniserde::json::Value::Object(o)) if matches!(o.get("kind"), Some(miniserde::json::Value::String(k)) if k == "Status") => Some(o),
            _ => None,
        };
        let Some(o) = parsed else {
            // Scrubbed before it is cut, so no secret is left half-shown at the cut.
            let snippet = crate::text::snippet(&crate::redact::scrub(body), 200);
            let message = if snippet.trim().is_empty() { format!("HTTP {code} with no Status body") } else { format!("HTTP {code}: {snippet}") };
            return Status { code, reason: String::new(), message, retry_after_seconds: None };
        };
        let text = |k: &str| match o.get(k) {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let retry_after_seconds = match o.get("details") {
            Some(miniserde::json::Value::Object(d)) => match d.get("retryAfterSeconds") {
                Some(miniserde::json::Value::Number(miniserde::json::Number::U64(n))) => Some(*n),
                _ => None,
            },
            _ => None,
        };
        let body_code = match o.get("code") {
            Some(miniserde::json::Value::Number(miniserde::json::Number::U64(n))) => u16::try_from(*n).ok(),
            _ => None,
        };
        Status { code: body_code.unwrap_or(code), reason: text("reason"), message: text("message"), retry_after_seconds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_cluster_brackets_ipv6_and_defaults_port() {
        let t = Target::in_cluster(Some("fd00::1"), Some("6443"), Path::new("/sa")).unwrap();
        assert_eq!(t.base_url, "https://[fd00::1]:6443");
        assert_eq!(t.token_file.as_deref(), Some(Path::new("/sa/token")));
        let t = Target::in_cluster(Some("10.0.0.1"), None, Path::new("/sa")).unwrap();
        assert_eq!(t.base_url, "https://10.0.0.1:443");
    }

    #[test]
    fn outside_a_pod_the_error_names_the_variable_and_the_fix() {
        let e = Target::in_cluster(None, None, Path::new("/sa")).unwrap_err().to_string();
        assert!(e.contains("KUBERNETES_SERVICE_HOST") && e.contains("KUBE_API_URL"), "{e}");
        let e = Target::in_cluster(Some("h"), Some("https"), Path::new("/sa")).unwrap_err().to_string();
        assert!(e.contains("KUBERNETES_SERVICE_PORT"), "{e}");
    }

    #[test]
    fn a_token_or_ca_file_that_never_ends_is_refused_at_its_cap() {
        let e = read_token(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(e, "reading the Kubernetes token file /dev/zero: larger than 64 KiB, the most the agent reads from a token file; refusing it");
        let target = Target { base_url: "https://127.0.0.1:1".into(), token_file: None, ca_file: Some(PathBuf::from("/dev/zero")) };
        let e = Client::new(target, Settings::default()).err().expect("refused").to_string();
        assert!(e.starts_with("reading the Kubernetes CA file /dev/zero: larger than 4 MiB"), "{e}");
    }
}
