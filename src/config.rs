//! Configuration: the table of every setting (env var, flag, default, meaning), the raw
//! values gathered from flags and the environment, and their resolution into the typed
//! configuration each subcommand needs. Resolution may read files (the key, the policy
//! template, the service-account directory); parsing never does.
//!
//! Precedence: a flag beats its env var, which beats the default. Every bad value is a
//! [`Error::Config`] naming the variable, the problem and the fix. The private key's text
//! never appears in an error.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use miniserde::json::Value;

use crate::error::{Error, Result};
use crate::http::{self, Trust};
use crate::json::get;
use crate::kube::client::DEFAULT_SERVICE_ACCOUNT_DIR;
use crate::kube::Target;
use crate::ops::logging::{LogConfig, LogFormat};
use crate::orchestrator::key::RunnerKey;
use crate::orchestrator::Connection;
use crate::render::mirror::Mirror;
use crate::render::pod_security::{Check, Level};
use crate::render::{Allow, JobPolicy};

/// One configuration setting.
#[derive(Debug)]
pub struct Setting {
    /// Environment variable.
    pub env: &'static str,
    /// Long flag without dashes; empty when there is none (the private key's text must
    /// not be on a command line, where `ps` shows it).
    pub flag: &'static str,
    /// Default, as shown in `--help` and the README; empty when there is none.
    pub default: &'static str,
    /// One line of meaning.
    pub help: &'static str,
}

/// The Orchestrator's default API base URL.
pub const DEFAULT_REMOTE_URL: &str = "https://api.humanitec.dev";

/// Every setting, in the order `--help` lists them. Upstream's come first.
pub const SETTINGS: &[Setting] = &[
    Setting { env: "ORG_ID", flag: "org-id", default: "", help: "Orchestrator organisation id (required for remote and check)" },
    Setting {
        env: "RUNNER_ID",
        flag: "runner-id",
        default: "",
        help: "runner id registered with the Orchestrator, ^[a-z][a-z0-9_-]+$ (required for remote and check)",
    },
    Setting { env: "PRIVATE_KEY", flag: "", default: "", help: "Ed25519 private key, PKCS#8 PEM text (or use PRIVATE_KEY_FILE)" },
    Setting { env: "REMOTE_URL", flag: "remote-connect", default: DEFAULT_REMOTE_URL, help: "base URL of the Orchestrator API" },
    Setting {
        env: "LOG_LEVEL",
        flag: "log-level",
        default: "info",
        help: "debug, info, warn or error; RUST_LOG, when set, overrides it with env_logger filter syntax",
    },
    Setting { env: "PRIVATE_KEY_FILE", flag: "private-key-file", default: "", help: "path of the PKCS#8 PEM private key, instead of PRIVATE_KEY" },
    Setting { env: "LOG_FORMAT", flag: "log-format", default: "json", help: "json (one object per line, with runnerId) or text" },
    Setting { env: "JOB_NAMESPACES", flag: "job-namespaces", default: "", help: "comma-separated namespaces Jobs may be created in; empty = any RBAC permits" },
    Setting { env: "JOB_SERVICE_ACCOUNTS", flag: "job-service-accounts", default: "", help: "comma-separated service accounts Jobs may run as; empty = any" },
    Setting {
        env: "IMAGE_MIRRORS",
        flag: "image-mirrors",
        default: "",
        help: "comma-separated FROM=TO image prefix rewrites, e.g. ghcr.io/humanitec=registry.internal/mirror",
    },
    Setting { env: "JOB_POLICY_FILE", flag: "job-policy-file", default: "", help: "JSON Job template overlaid on every Job (merge rules in the README)" },
    Setting {
        env: "JOB_ALLOW",
        flag: "job-allow",
        default: "",
        help: "comma-separated Pod Security Standards checks to exempt, by name (privileged, host-namespaces, host-path, capabilities, ...; see the README)",
    },
    Setting {
        env: "JOB_POD_SECURITY",
        flag: "job-pod-security",
        default: "baseline",
        help: "Pod Security Standards level every Job's pod must meet: privileged (no checks), baseline or restricted",
    },
    Setting { env: "KUBE_API_URL", flag: "kube-api-url", default: "", help: "Kubernetes API URL for out-of-cluster use; default: in-cluster discovery" },
    Setting { env: "KUBE_TOKEN_FILE", flag: "kube-token-file", default: "", help: "bearer token file with KUBE_API_URL (re-read like the in-cluster token)" },
    Setting { env: "KUBE_CA_FILE", flag: "kube-ca-file", default: "", help: "CA bundle (PEM) for KUBE_API_URL; default: the public roots" },
    Setting {
        env: "REMOTE_CA_FILE",
        flag: "remote-ca-file",
        default: "",
        help: "extra PEM CA bundle trusted for REMOTE_URL (a private CA or a TLS-inspecting proxy)",
    },
    Setting { env: "LISTEN_ADDRESS", flag: "listen", default: "0.0.0.0:8080", help: "address of /healthz, /readyz and /metrics; 'off' disables the listener" },
    Setting { env: "TOKEN_LIFETIME", flag: "token-lifetime", default: "0", help: "JWT lifetime (e.g. 15m, at least 2m); 0 = no iat/exp, exactly as upstream signs" },
    Setting { env: "POLLS", flag: "polls", default: "2", help: "long polls; their holds end 1/n of a hold apart (1-8)" },
    Setting {
        env: "POLL_HOLD",
        flag: "poll-hold",
        default: "30s",
        help: "the Orchestrator's hold, assumed until its 204s show the real one (the polls are spaced by that); polls time out 15s after it",
    },
    Setting {
        env: "SHUTDOWN_TIMEOUT",
        flag: "shutdown-timeout",
        default: "45s",
        help: "on SIGTERM, how long the open polls (up to a hold) and what they bring may take before exit",
    },
    Setting {
        env: "STARTUP_GRACE",
        flag: "startup-grace",
        default: "2m",
        help:
            "a Job's pod blocked longer than this (image pull, missing Secret, mount, scheduling) is reported at the next status check; off = only after expires_at, as upstream",
    },
];

/// Variables the agent reads besides [`SETTINGS`]: the proxy and trust conventions of Go
/// and OpenSSL, in-cluster discovery, and env_logger's filter. With `SETTINGS` these are
/// all the variables that are ours; [`Values::get`] reads no other.
pub const ALSO_READ: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "RUST_LOG",
];

/// True for the variables the agent reads: [`SETTINGS`] and [`ALSO_READ`].
pub fn is_ours(env: &str) -> bool {
    SETTINGS.iter().any(|s| s.env == env) || ALSO_READ.contains(&env)
}

/// Raw values: flags given on the command line and a snapshot of the environment.
/// Tests build one in-process instead of touching the process environment.
///
/// The environment is taken as the OS gives it (bytes): a variable that is not UTF-8 and
/// not ours (a `LANG` in Latin-1, say) is left out silently; one of ours that is not
/// UTF-8 is remembered by name only, never by value, and makes every resolution below
/// fail with a configuration error naming it (see [`Values::check_encoding`]).
#[derive(Debug, Clone, Default)]
pub struct Values {
    flags: BTreeMap<&'static str, String>,
    env: BTreeMap<String, String>,
    not_utf8: BTreeSet<String>,
}

impl Values {
    /// Values from this process's environment.
    pub fn from_process_env() -> Values {
        Values::from_os_env(std::env::vars_os())
    }

    /// Values from environment pairs as the OS holds them.
    pub fn from_os_env<I: IntoIterator<Item = (OsString, OsString)>>(pairs: I) -> Values {
        let mut values = Values::default();
        for (name, value) in pairs {
            // A name that is not UTF-8 cannot be one of ours.
            let Ok(name) = name.into_string() else { continue };
            match value.into_string() {
                Ok(value) => {
                    values.env.insert(name, value);
                }
                Err(_) if is_ours(&name) => {
                    values.not_utf8.insert(name);
                }
                Err(_) => {}
            }
        }
        values
    }

    /// Values from the given environment pairs.
    pub fn from_env<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(pairs: I) -> Values {
        Values { env: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), ..Values::default() }
    }

    /// Fails when one of our variables is not UTF-8, naming it (never showing its value,
    /// which may be the private key). Every resolution function calls this first.
    pub fn check_encoding(&self) -> Result<()> {
        match self.not_utf8.iter().next() {
            None => Ok(()),
            Some(name) => Err(Error::config(
                name,
                "the value is not valid UTF-8 text (it is not shown, as it may be secret)",
                format!("set {name} to UTF-8 text, or unset it; check the Secret, ConfigMap or shell that sets it"),
            )),
        }
    }

    /// Records a flag's value under its setting's env name.
    pub fn set_flag(&mut self, env: &'static str, value: String) {
        self.flags.insert(env, value);
    }

    /// The flag's value, else the env var's; empty strings count as unset.
    pub fn get(&self, env: &str) -> Option<&str> {
        debug_assert!(is_ours(env), "{env} is read but listed neither in SETTINGS nor in ALSO_READ");
        self.flags.get(env).or_else(|| self.env.get(env)).map(|s| s.as_str()).filter(|s| !s.trim().is_empty())
    }

    fn get_or_default(&self, env: &str) -> &str {
        self.get(env).unwrap_or_else(|| SETTINGS.iter().find(|s| s.env == env).map_or("", |s| s.default))
    }

    fn list(&self, env: &str) -> Vec<String> {
        self.get(env).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default()
    }
}

/// Resolves logging. `LOG_LEVEL` is lenient as upstream is: an unknown level warns and
/// falls back to info. `LOG_FORMAT` is ours and strict.
pub fn log_config(values: &Values) -> Result<LogConfig> {
    values.check_encoding()?;
    let raw = values.get_or_default("LOG_LEVEL");
    let (level, level_warning) = match raw.trim().to_ascii_lowercase().as_str() {
        "debug" => (log::LevelFilter::Debug, None),
        "info" => (log::LevelFilter::Info, None),
        "warn" | "warning" => (log::LevelFilter::Warn, None),
        "error" => (log::LevelFilter::Error, None),
        _ => (log::LevelFilter::Info, Some(format!("LOG_LEVEL '{}' is not debug, info, warn or error; using info", raw.chars().take(20).collect::<String>()))),
    };
    let format = match values.get_or_default("LOG_FORMAT") {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => return Err(Error::config("LOG_FORMAT", format!("'{other}' is not a log format"), "set LOG_FORMAT to json or text")),
    };
    Ok(LogConfig { level, rust_log: values.get("RUST_LOG").map(String::from), format, runner_id: values.get("RUNNER_ID").map(String::from), level_warning })
}

/// Resolves the local Job policy (used by `remote`, `check` and `render`).
pub fn job_policy(values: &Values) -> Result<JobPolicy> {
    values.check_encoding()?;
    let namespaces = values.list("JOB_NAMESPACES");
    for ns in &namespaces {
        if !crate::render::is_dns1123_label(ns) {
            return Err(Error::config("JOB_NAMESPACES", format!("'{ns}' is not a valid namespace name"), "list namespace names separated by commas"));
        }
    }
    let service_accounts = values.list("JOB_SERVICE_ACCOUNTS");
    for sa in &service_accounts {
        if sa.len() > 253 || !sa.split('.').all(crate::render::is_dns1123_label) {
            return Err(Error::config(
                "JOB_SERVICE_ACCOUNTS",
                format!("'{sa}' is not a valid service account name"),
                "list service account names separated by commas",
            ));
        }
    }
    let mirrors = values.list("IMAGE_MIRRORS").iter().map(|r| Mirror::parse(r, "IMAGE_MIRRORS")).collect::<Result<Vec<_>>>()?;
    let mut allow = Allow::default();
    for name in values.list("JOB_ALLOW") {
        match Check::parse(&name) {
            Some(check) => allow = allow.with(check),
            None => {
                let known: Vec<&str> = Check::ALL.iter().map(|c| c.name()).collect();
                return Err(Error::config(
                    "JOB_ALLOW",
                    format!("'{}' is not a pod security check we know", name.chars().take(40).collect::<String>()),
                    format!("use any of {}, separated by commas", known.join(", ")),
                ));
            }
        }
    }
    let raw = values.get_or_default("JOB_POD_SECURITY").trim();
    let pod_security = Level::parse(raw).ok_or_else(|| {
        Error::config(
            "JOB_POD_SECURITY",
            format!("'{}' is not a Pod Security Standards level", raw.chars().take(40).collect::<String>()),
            "use privileged, baseline (the default) or restricted",
        )
    })?;
    let overlay = values.get("JOB_POLICY_FILE").map(|p| load_policy_file(Path::new(p))).transpose()?;
    Ok(JobPolicy {
        namespaces,
        service_accounts,
        mirrors,
        overlay,
        pod_security,
        allow,
        runner_id: values.get("RUNNER_ID").map(String::from),
        org_id: values.get("ORG_ID").map(String::from),
    })
}

fn load_policy_file(path: &Path) -> Result<Value> {
    let name = "JOB_POLICY_FILE";
    let text = crate::file::read_capped_text(path, crate::file::POLICY_CAP, "a policy file")
        .map_err(|e| Error::config(name, format!("cannot read {}: {e}", path.display()), "point it at a readable JSON file (in the chart: jobPolicy)"))?;
    let value: Value = crate::json::parse(&text, "the policy").map_err(|e| {
        let why = match e {
            Error::Decode { why, .. } => why,
            other => other.to_string(),
        };
        Error::config(name, format!("{} is not usable JSON: {why}", path.display()), "write the policy as a JSON object shaped like a Job")
    })?;
    if !matches!(value, Value::Object(_)) {
        return Err(Error::config(name, format!("{} is not a JSON object", path.display()), "write the policy as a JSON object shaped like a Job"));
    }
    for field in ["name", "namespace", "generateName"] {
        if get(&value, &["metadata", field]).is_some() {
            return Err(Error::config(
                name,
                format!("{} sets metadata.{field}, which the agent owns", path.display()),
                format!("remove metadata.{field} from the policy"),
            ));
        }
    }
    Ok(value)
}

/// Resolves where the Kubernetes API is: `KUBE_API_URL` (out of cluster) or in-cluster
/// discovery from `KUBERNETES_SERVICE_HOST`/`_PORT`.
pub fn kube_target(values: &Values) -> Result<Target> {
    let Some(url) = values.get("KUBE_API_URL") else {
        if values.get("KUBE_TOKEN_FILE").is_some() || values.get("KUBE_CA_FILE").is_some() {
            return Err(Error::config(
                "KUBE_API_URL",
                "not set, but KUBE_TOKEN_FILE or KUBE_CA_FILE is",
                "set KUBE_API_URL too, or unset both to use in-cluster discovery",
            ));
        }
        return Target::in_cluster(values.get("KUBERNETES_SERVICE_HOST"), values.get("KUBERNETES_SERVICE_PORT"), Path::new(DEFAULT_SERVICE_ACCOUNT_DIR));
    };
    let base_url = checked_url(url, "KUBE_API_URL")?;
    let file = |name: &str| -> Result<Option<PathBuf>> {
        match values.get(name) {
            None => Ok(None),
            Some(p) if Path::new(p).is_file() => Ok(Some(PathBuf::from(p))),
            Some(p) => Err(Error::config(name, format!("{p} is not a readable file"), "point it at an existing file")),
        }
    };
    Ok(Target { base_url, token_file: file("KUBE_TOKEN_FILE")?, ca_file: file("KUBE_CA_FILE")? })
}

fn checked_url(url: &str, name: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    let shown = crate::redact::url_without_userinfo(url);
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) && !host.contains(['?', '#']) => {
            // An '@' past the authority means a user or password with an unencoded '/':
            // the URL would not reach the host it names, and the password could show.
            let authority = host.split('/').next().unwrap_or(host);
            if host.contains('@') && !authority.contains('@') || authority.matches('@').count() > 1 {
                return Err(Error::config(
                    name,
                    "holds an '@' that is not the end of a user:password@ part",
                    "percent-encode '/', '@', '?' and '#' in the user and password",
                ));
            }
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if crate::http::split_host_port(host_port).is_none_or(|(host, _)| host.is_empty()) {
                // Caught here, not at the first poll: ureq would refuse every request
                // ("invalid authority"), retried for ever with no hint of the setting.
                return Err(Error::config(
                    name,
                    format!("'{shown}' names no host (or its port is not a number from 1 to 65535)"),
                    "use a URL like https://host[:port][/path]",
                ));
            }
            if authority.contains('@') && name != "REMOTE_URL" {
                return Err(Error::config(
                    name,
                    "carries user:password@, which the agent never sends there",
                    "remove it: the agent authenticates with the service-account token (KUBE_TOKEN_FILE)",
                ));
            }
            Ok(trimmed.to_string())
        }
        _ => Err(Error::config(name, format!("'{shown}' is not an http(s) URL"), "use a URL like https://host[:port][/path]")),
    }
}

/// Everything `remote` and `check` need.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Organisation id.
    pub org_id: String,
    /// Runner id.
    pub runner_id: String,
    /// Signing key.
    pub key: RunnerKey,
    /// The Orchestrator: base URL (no trailing slash), trust and proxy.
    pub connection: Connection,
    /// Local Job policy.
    pub policy: JobPolicy,
    /// The Kubernetes API.
    pub kube: Target,
    /// Listener address; `None` when disabled.
    pub listen: Option<SocketAddr>,
    /// JWT lifetime; `None` = upstream behaviour (no `iat`/`exp`).
    pub token_lifetime: Option<Duration>,
    /// Long polls kept open at once.
    pub polls: usize,
    /// The Orchestrator's hold time.
    pub poll_hold: Duration,
    /// Bound on in-flight work at shutdown.
    pub shutdown_timeout: Duration,
    /// How long a Job's pod may be blocked before it is reported; `None` = upstream
    /// behaviour (only after `expires_at`).
    pub startup_grace: Option<Duration>,
}

/// Resolves the agent's configuration; the first problem found is the error.
pub fn agent_config(values: &Values) -> Result<AgentConfig> {
    agent_config_all(values).map_err(|mut problems| problems.remove(0))
}

/// Resolves the agent's configuration and, when it is not usable, returns every problem
/// at once (never an empty list), so an operator fixes them in one pass.
pub fn agent_config_all(values: &Values) -> Result<AgentConfig, Vec<Error>> {
    values.check_encoding().map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let mut take = |r: Result<()>| {
        if let Err(e) = r {
            problems.push(e);
        }
    };
    let (mut org_id, mut runner_id, mut key, mut connection, mut listen) = (None, None, None, None, None);
    let (mut token_lifetime, mut polls, mut shutdown_timeout, mut poll_hold, mut startup_grace, mut policy, mut kube) =
        (None, None, None, None, None, None, None);
    take(resolve_org_id(values).map(|v| org_id = Some(v)));
    take(resolve_runner_id(values).map(|v| runner_id = Some(v)));
    take(resolve_key(values).map(|v| key = Some(v)));
    take(checked_url(values.get_or_default("REMOTE_URL"), "REMOTE_URL").and_then(|url| orchestrator_connection(&url, values)).map(|v| connection = Some(v)));
    take(resolve_listen(values).map(|v| listen = Some(v)));
    take(resolve_token_lifetime(values).map(|v| token_lifetime = Some(v)));
    take(resolve_polls(values).map(|v| polls = Some(v)));
    take(duration(values, "SHUTDOWN_TIMEOUT").map(|v| shutdown_timeout = Some(v)));
    take(resolve_poll_hold(values).map(|v| poll_hold = Some(v)));
    take(resolve_startup_grace(values).map(|v| startup_grace = Some(v)));
    take(job_policy(values).map(|v| policy = Some(v)));
    take(kube_target(values).map(|v| kube = Some(v)));
    match (org_id, runner_id, key, connection, listen, token_lifetime, polls, shutdown_timeout, poll_hold, startup_grace, policy, kube) {
        (
            Some(org_id),
            Some(runner_id),
            Some(key),
            Some(connection),
            Some(listen),
            Some(token_lifetime),
            Some(polls),
            Some(shutdown_timeout),
            Some(poll_hold),
            Some(startup_grace),
            Some(policy),
            Some(kube),
        ) if problems.is_empty() => {
            Ok(AgentConfig { org_id, runner_id, key, connection, policy, kube, listen, token_lifetime, polls, poll_hold, shutdown_timeout, startup_grace })
        }
        _ => Err(problems),
    }
}

fn resolve_org_id(values: &Values) -> Result<String> {
    let org_id = values
        .get("ORG_ID")
        .ok_or_else(|| Error::config("ORG_ID", "not set", "set ORG_ID to your Orchestrator organisation id (chart: humanitec.orgId)"))?
        .trim()
        .to_string();
    if org_id == "." || org_id == ".." || !org_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(Error::config(
            "ORG_ID",
            format!("'{org_id}' contains characters an organisation id cannot have"),
            "copy the organisation id from the Orchestrator",
        ));
    }
    Ok(org_id)
}

fn resolve_runner_id(values: &Values) -> Result<String> {
    let runner_id = values
        .get("RUNNER_ID")
        .ok_or_else(|| Error::config("RUNNER_ID", "not set", "set RUNNER_ID to the id given to 'hctl create runner' (chart: humanitec.runnerId)"))?
        .trim()
        .to_string();
    if !is_runner_id(&runner_id) {
        return Err(Error::config(
            "RUNNER_ID",
            format!("'{runner_id}' does not match ^[a-z][a-z0-9_-]+$"),
            "use the runner id exactly as registered with the Orchestrator",
        ));
    }
    Ok(runner_id)
}

fn resolve_key(values: &Values) -> Result<RunnerKey> {
    match (values.get("PRIVATE_KEY"), values.get("PRIVATE_KEY_FILE")) {
        (Some(_), Some(_)) => Err(Error::config("PRIVATE_KEY_FILE", "set together with PRIVATE_KEY", "set only one of PRIVATE_KEY and PRIVATE_KEY_FILE")),
        (Some(pem), None) => RunnerKey::from_pkcs8_pem(pem, "PRIVATE_KEY").map_err(|e| {
            Error::config("PRIVATE_KEY", e.to_string(), "set it to the PEM that 'openssl genpkey -algorithm ed25519' or 'kubernetes-agent keygen' wrote")
        }),
        (None, Some(path)) => {
            let pem = crate::file::read_capped_text(Path::new(path), crate::file::PRIVATE_KEY_CAP, "a private key file")
                .map_err(|e| Error::config("PRIVATE_KEY_FILE", format!("cannot read {path}: {e}"), "point it at the private key PEM file"))?;
            RunnerKey::from_pkcs8_pem(&pem, path).map_err(|e| {
                Error::config(
                    "PRIVATE_KEY_FILE",
                    e.to_string(),
                    "point it at the PEM that 'openssl genpkey -algorithm ed25519' or 'kubernetes-agent keygen' wrote",
                )
            })
        }
        (None, None) => Err(Error::config(
            "PRIVATE_KEY",
            "not set",
            "set PRIVATE_KEY to the runner's private key PEM (chart: humanitec.existingSecret) or PRIVATE_KEY_FILE to its path",
        )),
    }
}

fn resolve_listen(values: &Values) -> Result<Option<SocketAddr>> {
    match values.get_or_default("LISTEN_ADDRESS") {
        "off" | "none" | "false" => Ok(None),
        addr => addr
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| Error::config("LISTEN_ADDRESS", format!("'{addr}' is not an address:port"), "use e.g. 0.0.0.0:8080, [::]:8080, or off")),
    }
}

fn resolve_token_lifetime(values: &Values) -> Result<Option<Duration>> {
    let token_lifetime = duration(values, "TOKEN_LIFETIME")?;
    let token_lifetime = (!token_lifetime.is_zero()).then_some(token_lifetime);
    if token_lifetime.is_some_and(|d| d < Duration::from_secs(120)) {
        return Err(Error::config("TOKEN_LIFETIME", "shorter than 2m", "use 0 (no expiry, as upstream) or a lifetime of at least 2m, e.g. 15m"));
    }
    Ok(token_lifetime)
}

fn resolve_polls(values: &Values) -> Result<usize> {
    let polls = values.get_or_default("POLLS");
    polls
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=8).contains(n))
        .ok_or_else(|| Error::config("POLLS", format!("'{polls}' is not a number from 1 to 8"), "use 2 (the default) unless you measured a reason"))
}

fn resolve_poll_hold(values: &Values) -> Result<Duration> {
    let poll_hold = duration(values, "POLL_HOLD")?;
    if poll_hold.is_zero() || poll_hold > Duration::from_secs(600) {
        return Err(Error::config("POLL_HOLD", "must be between 1s and 10m", "leave it at 30s unless your Orchestrator holds polls for another time"));
    }
    Ok(poll_hold)
}

fn resolve_startup_grace(values: &Values) -> Result<Option<Duration>> {
    match values.get_or_default("STARTUP_GRACE").trim() {
        "off" => Ok(None),
        _ => Ok(Some(duration(values, "STARTUP_GRACE")?).filter(|d| !d.is_zero())),
    }
}

fn is_runner_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_lowercase() && b[1..].iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Parses `90`, `90s`, `15m`, `1h` (and `0`).
fn duration(values: &Values, name: &str) -> Result<Duration> {
    let raw = values.get_or_default(name).trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if scale > 0 && n <= 7 * 86_400 => Ok(Duration::from_secs(n * scale)),
        _ => Err(Error::config(name, format!("'{raw}' is not a duration"), "write a whole number with s, m or h, e.g. 30s or 15m")),
    }
}

/// Resolves trust and proxy for `base_url` from `values`:
/// - trust: `SSL_CERT_FILE` / `SSL_CERT_DIR` (colon-separated) replace the built-in
///   public roots, as they replace the system store for Go and OpenSSL; `REMOTE_CA_FILE`
///   adds to whichever is in force;
/// - proxy: `HTTPS_PROXY` (or `https_proxy`, then `ALL_PROXY`) for https URLs,
///   `HTTP_PROXY` for http, unless `NO_PROXY` matches the host.
pub fn orchestrator_connection(base_url: &str, values: &Values) -> Result<Connection> {
    let mut system: Option<Vec<Vec<u8>>> = None;
    if let Some(file) = values.get("SSL_CERT_FILE") {
        let pem = crate::file::read_capped(std::path::Path::new(file), crate::file::CA_BUNDLE_CAP, "a CA bundle").map_err(|e| {
            Error::config("SSL_CERT_FILE", format!("cannot read {file}: {e}"), "point it at a PEM bundle, or unset it to use the built-in public roots")
        })?;
        system.get_or_insert_with(Vec::new).extend(http::pem_certificates(&pem).unwrap_or_default());
    }
    if let Some(dirs) = values.get("SSL_CERT_DIR") {
        let files = crate::file::read_cert_dirs(dirs.split(':').filter(|d| !d.is_empty()).map(std::path::Path::new))
            .map_err(|e| Error::config("SSL_CERT_DIR", e.to_string(), "point it at a directory of PEM files, or unset it"))?;
        let certs = system.get_or_insert_with(Vec::new);
        for pem in files {
            certs.extend(http::pem_certificates(&pem).unwrap_or_default());
        }
    }
    if system.as_ref().is_some_and(Vec::is_empty) {
        return Err(Error::config(
            "SSL_CERT_FILE",
            "SSL_CERT_FILE / SSL_CERT_DIR hold no PEM certificate",
            "point them at PEM CA bundles, or unset both to use the built-in public roots",
        ));
    }
    let extra = match values.get("REMOTE_CA_FILE") {
        Some(p) => http::read_certificates(std::path::Path::new(p)).map_err(|why| Error::config("REMOTE_CA_FILE", why, "point it at a PEM CA bundle"))?,
        None => Vec::new(),
    };
    let trust = match system {
        Some(mut certs) => {
            certs.extend(extra);
            Trust::Specific(certs.into())
        }
        None if extra.is_empty() => Trust::WebPki,
        None => Trust::WebPkiAnd(extra.into()),
    };
    let https = base_url.starts_with("https://");
    let candidates: &[&str] =
        if https { &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] } else { &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] };
    let proxy = candidates.iter().find_map(|k| values.get(k)).map(String::from);
    let no_proxy = values.get("NO_PROXY").or_else(|| values.get("no_proxy")).unwrap_or("");
    let proxy = proxy.filter(|_| !no_proxy_matches(no_proxy, host_of(base_url)));
    if let Some(p) = &proxy {
        ureq::Proxy::new(p).map_err(|_| Error::config("HTTPS_PROXY", "the proxy URL is not understood", "use http://[user:password@]host:port"))?;
    }
    Ok(Connection { base_url: base_url.to_string(), trust, proxy })
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// `NO_PROXY` as curl and Go read it: `*`, exact hosts or IPs, and domain suffixes
/// (`example.com` and `.example.com` both cover `api.example.com`). CIDR ranges are not
/// supported (list the Orchestrator's host instead).
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    no_proxy.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).any(|entry| {
        let entry = entry.split(':').next().unwrap_or(&entry).to_string();
        let bare = entry.trim_start_matches("*.").trim_start_matches('.');
        entry == "*" || host == bare || host.ends_with(&format!(".{bare}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBhHYBkJutwtjhDHWf+i4YW2jFfOQ1oPEycYMLgal7hy\n-----END PRIVATE KEY-----\n";

    fn upstream_env() -> Vec<(&'static str, String)> {
        vec![
            ("ORG_ID", "my-org".into()),
            ("RUNNER_ID", "my-runner".into()),
            ("PRIVATE_KEY", KEY.into()),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1".into()),
            ("KUBERNETES_SERVICE_PORT", "443".into()),
        ]
    }

    fn error_with(extra: &[(&'static str, &str)]) -> String {
        let mut env: BTreeMap<&str, String> = upstream_env().into_iter().collect();
        for (k, v) in extra {
            env.insert(k, v.to_string());
        }
        let e = agent_config(&Values::from_env(env)).unwrap_err().to_string();
        assert!(!e.contains("MC4CAQAw"), "the key leaked: {e}");
        e
    }

    #[test]
    fn a_url_naming_no_host_or_a_bad_port_is_refused_at_start_up_without_its_password() {
        for url in [
            "https://user:s3cret-pw@",
            "https://user:s3cret-pw@/orgs",
            "https:///path",
            "https://:443",
            "https://host:https",
            "https://host:99999",
            "https://host:0",
            "https://[::1",
            "https://[]:443",
        ] {
            for name in ["REMOTE_URL", "KUBE_API_URL"] {
                let e = error_with(&[(name, url)]);
                assert!(e.contains(&format!("configuration {name}: ")) && e.contains("names no host"), "{url}: {e}");
                assert!(!e.contains("s3cret-pw"), "{e}");
            }
        }
        for url in ["https://orchestrator.internal:8443/api", "http://user:pw@[::1]:8080", "https://[fd00::1]", "https://10.0.0.1"] {
            let ok = Values::from_env(upstream_env().into_iter().chain([("REMOTE_URL", url.to_string())]));
            assert!(agent_config(&ok).is_ok(), "{url}");
        }
    }

    #[test]
    fn upstream_variables_alone_are_enough() {
        let c = agent_config(&Values::from_env(upstream_env())).unwrap();
        assert_eq!(c.connection.base_url, DEFAULT_REMOTE_URL);
        assert!(c.policy.namespaces.is_empty() && c.policy.service_accounts.is_empty());
        assert_eq!(c.kube.base_url, "https://10.0.0.1:443");
        assert_eq!((c.polls, c.token_lifetime), (2, None));
        assert_eq!(c.startup_grace, Some(Duration::from_secs(120)));
        let off = Values::from_env(upstream_env().into_iter().chain([("STARTUP_GRACE", "off".to_string())]));
        assert_eq!(agent_config(&off).unwrap().startup_grace, None);
    }

    #[test]
    fn flags_beat_env() {
        let mut v = Values::from_env(upstream_env().into_iter().chain([("REMOTE_URL", "https://env.example".to_string())]));
        v.set_flag("REMOTE_URL", "https://flag.example/".into());
        assert_eq!(agent_config(&v).unwrap().connection.base_url, "https://flag.example");
    }

    #[test]
    fn every_bad_value_names_its_variable_and_a_fix() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ORG_ID", "")], "configuration ORG_ID: not set"),
            (&[("ORG_ID", "a/b")], "configuration ORG_ID:"),
            (&[("RUNNER_ID", "")], "configuration RUNNER_ID: not set"),
            (&[("RUNNER_ID", "Runner")], "configuration RUNNER_ID: 'Runner' does not match"),
            (&[("PRIVATE_KEY", "")], "configuration PRIVATE_KEY: not set"),
            (&[("PRIVATE_KEY", "garbage")], "configuration PRIVATE_KEY: could not decode private key from PRIVATE_KEY"),
            (&[("PRIVATE_KEY_FILE", "/nonexistent")], "configuration PRIVATE_KEY_FILE: set together"),
            (&[("REMOTE_URL", "api.humanitec.dev")], "configuration REMOTE_URL:"),
            (&[("REMOTE_CA_FILE", "/nonexistent")], "configuration REMOTE_CA_FILE: cannot read"),
            (&[("LISTEN_ADDRESS", "8080")], "configuration LISTEN_ADDRESS:"),
            (&[("TOKEN_LIFETIME", "soon")], "configuration TOKEN_LIFETIME:"),
            (&[("TOKEN_LIFETIME", "30s")], "configuration TOKEN_LIFETIME: shorter"),
            (&[("POLLS", "0")], "configuration POLLS:"),
            (&[("SHUTDOWN_TIMEOUT", "1d")], "configuration SHUTDOWN_TIMEOUT:"),
            (&[("POLL_HOLD", "0")], "configuration POLL_HOLD:"),
            (&[("STARTUP_GRACE", "soon")], "configuration STARTUP_GRACE:"),
            (&[("JOB_NAMESPACES", "ok,Not_Ok")], "configuration JOB_NAMESPACES: 'Not_Ok'"),
            (&[("JOB_SERVICE_ACCOUNTS", "a b")], "configuration JOB_SERVICE_ACCOUNTS:"),
            (&[("IMAGE_MIRRORS", "ghcr.io")], "configuration IMAGE_MIRRORS:"),
            (&[("JOB_ALLOW", "root")], "configuration JOB_ALLOW: 'root'"),
            (&[("JOB_POD_SECURITY", "strict")], "configuration JOB_POD_SECURITY: 'strict'"),
            (&[("JOB_POLICY_FILE", "/nonexistent")], "configuration JOB_POLICY_FILE: cannot read"),
            (&[("KUBERNETES_SERVICE_HOST", "")], "configuration KUBERNETES_SERVICE_HOST:"),
            (&[("KUBE_TOKEN_FILE", "/etc/hostname")], "configuration KUBE_API_URL: not set"),
            (&[("KUBE_API_URL", "ftp://x")], "configuration KUBE_API_URL:"),
            (&[("KUBE_API_URL", "https://admin:kube-Passw0rd-xyz@127.0.0.1:9")], "configuration KUBE_API_URL: carries user:password@"),
            (&[("REMOTE_URL", "https://runner:pa/ss-w0rd-long@127.0.0.1:9")], "configuration REMOTE_URL: holds an '@'"),
            (&[("REMOTE_URL", "https://runner:Sup3r-s3cret-pw@orch.example/api?x=1")], "configuration REMOTE_URL: 'https://***@orch.example/api?x=1'"),
            (&[("ORG_ID", "..")], "configuration ORG_ID:"),
            (&[("KUBE_API_URL", "https://x"), ("KUBE_CA_FILE", "/nonexistent")], "configuration KUBE_CA_FILE:"),
        ];
        for (extra, expected) in cases {
            let e = error_with(extra);
            assert!(e.starts_with(expected), "{extra:?}: {e}");
            assert!(e.contains("; fix: "), "{extra:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let env = upstream_env().into_iter().filter(|(k, _)| *k != "ORG_ID").chain([
            ("POLLS", "99".to_string()),
            ("LISTEN_ADDRESS", "8080".to_string()),
            ("STARTUP_GRACE", "soon".to_string()),
            ("JOB_ALLOW", "root".to_string()),
        ]);
        let problems = agent_config_all(&Values::from_env(env)).expect_err("refused");
        let names: Vec<String> = problems.iter().map(|e| e.to_string().split(':').next().unwrap_or("").to_string()).collect();
        assert_eq!(
            names,
            ["configuration ORG_ID", "configuration LISTEN_ADDRESS", "configuration POLLS", "configuration STARTUP_GRACE", "configuration JOB_ALLOW"],
            "{problems:?}"
        );
    }

    #[test]
    fn key_file_is_read_and_key_text_never_echoed() {
        let dir = crate::scratch::TempDir::new("config");
        let path = dir.join("key.pem");
        std::fs::write(&path, KEY).unwrap();
        let env = upstream_env().into_iter().filter(|(k, _)| *k != "PRIVATE_KEY").chain([("PRIVATE_KEY_FILE", path.display().to_string())]);
        assert!(agent_config(&Values::from_env(env)).is_ok());
        std::fs::write(&path, KEY.replace("-----END PRIVATE KEY-----", "")).unwrap();
        let env = upstream_env().into_iter().filter(|(k, _)| *k != "PRIVATE_KEY").chain([("PRIVATE_KEY_FILE", path.display().to_string())]);
        let e = agent_config(&Values::from_env(env)).unwrap_err().to_string();
        assert!(e.contains("truncated") && !e.contains("MC4CAQAw"), "{e}");
    }

    #[test]
    fn policy_file_must_be_a_job_shaped_object_without_identity() {
        let dir = crate::scratch::TempDir::new("policy");
        let path = dir.join("policy.json");
        let check = |content: &str| {
            std::fs::write(&path, content).unwrap();
            job_policy(&Values::from_env([("JOB_POLICY_FILE", path.display().to_string())]))
        };
        assert!(check(r#"{"spec":{"template":{"spec":{"nodeSelector":{"pool":"jobs"}}}}}"#).unwrap().overlay.is_some());
        assert!(check("[1]").unwrap_err().to_string().contains("not a JSON object"));
        assert!(check("{").unwrap_err().to_string().contains("not usable JSON: not valid JSON"));
        let deep = format!("{{\"spec\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check(&deep).unwrap_err().to_string().contains("nests deeper than 64 levels"), "a deep policy file is refused, not a stack overflow");
        assert!(check(r#"{"metadata":{"namespace":"x"}}"#).unwrap_err().to_string().contains("metadata.namespace"));
    }

    #[test]
    fn log_level_is_lenient_like_upstream_and_format_is_strict() {
        let c = log_config(&Values::from_env([("LOG_LEVEL", "DEBUG")])).unwrap();
        assert_eq!((c.level, c.level_warning.is_none(), c.format), (log::LevelFilter::Debug, true, LogFormat::Json));
        let c = log_config(&Values::from_env([("LOG_LEVEL", "verbose")])).unwrap();
        assert_eq!(c.level, log::LevelFilter::Info);
        assert!(c.level_warning.unwrap().contains("verbose"));
        assert!(log_config(&Values::from_env([("LOG_FORMAT", "xml")])).unwrap_err().to_string().contains("LOG_FORMAT"));
    }

    #[test]
    fn a_non_utf8_value_of_ours_is_named_without_its_value_and_others_are_ignored() {
        use std::os::unix::ffi::OsStringExt;
        let os = |s: &[u8]| OsString::from_vec(s.to_vec());
        let env = || upstream_env().into_iter().map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let others = [(os(b"LANG"), os(b"de_DE.\xff")), (os(b"\xfe"), os(b"x"))];
        let c = agent_config(&Values::from_os_env(env().chain(others.clone()))).unwrap();
        assert_eq!(c.org_id, "my-org");
        for name in ["PRIVATE_KEY", "HTTPS_PROXY", "RUST_LOG"] {
            let bad = Values::from_os_env(env().chain(others.clone()).chain([(os(name.as_bytes()), os(b"MC4CAQAw\xff"))]));
            for e in [agent_config(&bad).err(), log_config(&bad).err(), job_policy(&bad).err()] {
                let e = e.expect("refused").to_string();
                assert!(e.starts_with(&format!("configuration {name}: the value is not valid UTF-8")), "{e}");
                assert!(!e.contains("MC4CAQAw"), "{e}");
            }
        }
    }

    #[test]
    fn job_pod_security_defaults_to_baseline_and_job_allow_takes_every_check_name() {
        let policy = job_policy(&Values::default()).unwrap();
        assert_eq!((policy.pod_security, policy.allow), (Level::Baseline, Allow::default()));
        let all: Vec<&str> = Check::ALL.iter().map(|c| c.name()).collect();
        let policy = job_policy(&Values::from_env([("JOB_POD_SECURITY", "restricted".to_string()), ("JOB_ALLOW", all.join(","))])).unwrap();
        assert_eq!(policy.pod_security, Level::Restricted);
        assert!(Check::ALL.iter().all(|c| policy.allow.contains(*c)));
        // Today's three names keep meaning what they meant.
        let policy = job_policy(&Values::from_env([("JOB_ALLOW", "privileged, host-namespaces,host-path")])).unwrap();
        assert!([Check::Privileged, Check::HostNamespaces, Check::HostPath].iter().all(|c| policy.allow.contains(*c)));
        assert!(!policy.allow.contains(Check::Capabilities));
    }

    #[test]
    fn every_setting_has_a_unique_env_and_flag() {
        let mut seen = std::collections::BTreeSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.env), "{}", s.env);
            assert!(s.flag.is_empty() || seen.insert(s.flag), "{}", s.flag);
        }
    }

    #[test]
    fn no_proxy_matches_hosts_suffixes_and_star() {
        assert!(no_proxy_matches("localhost,.internal", "api.internal"));
        assert!(no_proxy_matches("internal", "api.internal"));
        assert!(no_proxy_matches("*.internal", "api.internal"));
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches("10.0.0.1", "10.0.0.1"));
        assert!(!no_proxy_matches("internal", "notinternal"));
        assert!(!no_proxy_matches("", "api.humanitec.dev"));
    }

    #[test]
    fn proxy_is_chosen_by_scheme_and_skipped_by_no_proxy() {
        let v = Values::from_env([("HTTPS_PROXY", "http://proxy:3128"), ("HTTP_PROXY", "http://plain:3128"), ("NO_PROXY", ".internal")]);
        assert_eq!(orchestrator_connection("https://api.humanitec.dev", &v).unwrap().proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(orchestrator_connection("http://api.humanitec.dev", &v).unwrap().proxy.as_deref(), Some("http://plain:3128"));
        assert_eq!(orchestrator_connection("https://orch.internal:8443", &v).unwrap().proxy, None);
        assert_eq!(host_of("https://user@[::1]:8443/x"), "::1");
    }

    #[test]
    fn ssl_cert_file_replaces_and_remote_ca_file_adds() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/certs/ca.pem");
        let c = orchestrator_connection("https://x", &Values::from_env([("REMOTE_CA_FILE", ca)])).unwrap();
        assert!(matches!(c.trust, Trust::WebPkiAnd(ref v) if v.len() == 1));
        let c = orchestrator_connection("https://x", &Values::from_env([("SSL_CERT_FILE", ca)])).unwrap();
        assert!(matches!(c.trust, Trust::Specific(ref v) if v.len() == 1));
        assert!(matches!(orchestrator_connection("https://x", &Values::default()).unwrap().trust, Trust::WebPki));
        let e = orchestrator_connection("https://x", &Values::from_env([("SSL_CERT_FILE", "/nonexistent")])).unwrap_err().to_string();
        assert!(e.starts_with("configuration SSL_CERT_FILE: cannot read"), "{e}");
    }
}
