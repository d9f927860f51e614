//! The Orchestrator side (PROTOCOL §2–§4): the JWT on every request, the long poll, and
//! the failure report. Each call returns an outcome the caller acts on; nothing here
//! sleeps, retries or decides policy. Proxy and trust are resolved here from the
//! environment the way Go and OpenSSL resolve them, and never apply to Kubernetes.

pub mod jwt;
pub mod key;
pub mod message;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::{self, AgentSettings, Trust};
use jwt::Claims;
use key::RunnerKey;
use message::Secret;

/// Client timeout of a poll beyond the server's hold, so a held poll is never cut short.
pub const POLL_MARGIN: Duration = Duration::from_secs(15);
/// Timeout of a failure report.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest message body read; a JobSpec is a few kilobytes.
pub const MESSAGE_CAP: u64 = 1 << 20;

/// What one poll ended with.
#[derive(Debug)]
pub enum PollOutcome {
    /// 200: one message body.
    Message(String),
    /// 204: the hold expired with nothing to do.
    Empty,
    /// 401: the key does not match the runner's registered public key.
    Unauthorized,
    /// 404: no such organisation or runner.
    NotFound,
    /// Any other status, with its `Retry-After` in seconds when sent.
    Status {
        /// The HTTP status code.
        code: u16,
        /// `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// Connect, TLS, timeout, reset, oversized body.
    Transport(String),
}

/// What a failure report ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// 2xx: recorded.
    Accepted,
    /// 409: the deployment is already final (another replica or the job reported).
    AlreadyFinal,
}

/// Where the Orchestrator is and how to reach it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Base URL, no trailing slash.
    pub base_url: String,
    /// Trust anchors.
    pub trust: Trust,
    /// Proxy URL, when one applies to `base_url`.
    pub proxy: Option<String>,
}

/// A client for one runner's Orchestrator endpoints.
pub struct Remote {
    connection: Connection,
    org_id: String,
    runner_id: String,
    key: RunnerKey,
    token_lifetime: Option<Duration>,
    /// One agent (one TLS configuration, one pool) for polls and reports; reports set a
    /// shorter timeout per call.
    agent: ureq::Agent,
    token: Mutex<(String, Option<Instant>)>,
}

impl Remote {
    /// Builds the client and signs the first token.
    pub fn new(connection: Connection, org_id: &str, runner_id: &str, key: RunnerKey, token_lifetime: Option<Duration>, hold: Duration) -> Result<Remote> {
        crate::redact::set(crate::redact::Slot::RemoteUserinfo, &crate::redact::userinfo(&connection.base_url).iter().map(String::as_str).collect::<Vec<_>>());
        let proxy_userinfo = connection.proxy.as_deref().map(crate::redact::userinfo).unwrap_or_default();
        crate::redact::set(crate::redact::Slot::ProxyUserinfo, &proxy_userinfo.iter().map(String::as_str).collect::<Vec<_>>());
        let proxy = connection
            .proxy
            .as_deref()
            .map(ureq::Proxy::new)
            .transpose()
            .map_err(|_| Error::transport("configuring the proxy", "the proxy URL is not understood"))?;
        let agent = http::agent(&AgentSettings { trust: connection.trust.clone(), proxy, timeout: hold + POLL_MARGIN, redirects: 0 });
        let remote =
            Remote { connection, org_id: org_id.into(), runner_id: runner_id.into(), key, token_lifetime, agent, token: Mutex::new((String::new(), None)) };
        remote.sign();
        Ok(remote)
    }

    /// The key id in use (for error messages: it is what the Orchestrator compares).
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The poll URL.
    fn poll_url(&self) -> String {
        format!("{}/orgs/{}/remote-runners/{}/actions/poll-requests", self.connection.base_url, self.org_id, self.runner_id)
    }

    /// The poll URL as logs show it: userinfo replaced by `***`.
    pub fn shown_poll_url(&self) -> String {
        crate::redact::url_without_userinfo(&self.poll_url())
    }

    /// The Orchestrator base URL as logs show it: userinfo replaced by `***`.
    pub fn shown_url(&self) -> String {
        crate::redact::url_without_userinfo(&self.connection.base_url)
    }

    fn sign(&self) -> String {
        let now = crate::time::now().max(0) as u64;
        let lifetime = self.token_lifetime;
        let claims = Claims {
            org_id: self.org_id.clone(),
            runner_id: self.runner_id.clone(),
            kid: self.key.kid().to_string(),
            iat: lifetime.map(|_| now),
            exp: lifetime.map(|l| now + l.as_secs()),
        };
        let token = jwt::sign(&self.key, &claims);
        crate::redact::set(crate::redact::Slot::Jwt, &[&token]);
        // Re-sign when 80 % of the lifetime has passed.
        let renew_at = lifetime.map(|l| Instant::now() + l.mul_f32(0.8));
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = (token.clone(), renew_at);
        token
    }

    /// The current token, re-signed first when it is close to expiry.
    pub fn token(&self) -> String {
        let (token, renew_at) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match renew_at {
            Some(at) if Instant::now() >= at => self.sign(),
            _ => token,
        }
    }

    /// One long poll.
    pub fn poll(&self) -> PollOutcome {
        let auth = format!("JWT {}", self.token());
        match http::call(&self.agent, "POST", &self.poll_url(), &[("Authorization", &auth), ("Accept", "application/json")], None, MESSAGE_CAP, None) {
            Ok(r) if r.status == 200 => PollOutcome::Message(r.body),
            Ok(r) if r.status == 204 => PollOutcome::Empty,
            Ok(r) if r.status == 401 => PollOutcome::Unauthorized,
            Ok(r) if r.status == 404 => PollOutcome::NotFound,
            Ok(r) => PollOutcome::Status { code: r.status, retry_after: r.retry_after },
            Err(why) => PollOutcome::Transport(why),
        }
    }

    /// Reports a failed deployment (PROTOCOL §4). `message` must not hold secrets.
    pub fn report_failure(&self, deployment_id: &str, token: &Secret, message: &str) -> Result<ReportOutcome> {
        if !crate::orchestrator::message::is_deployment_id(deployment_id) {
            return Err(Error::decode("a deployment id", "it is not 1-253 letters, digits, '-' or '_'; nothing was sent"));
        }
        let url = format!("{}/orgs/{}/deployments/{}/results", self.connection.base_url, self.org_id, crate::http::percent_encode(deployment_id));
        let body = format!(r#"{{"status":"failure","error":{{"error":"REMOTE_RUNNER","message":{}}}}}"#, miniserde::json::to_string(&message.to_string()));
        let operation = format!("reporting the failure of deployment {} to {}", crate::http::percent_encode(deployment_id), self.shown_url());
        let reply = http::call(
            &self.agent,
            "POST",
            &url,
            &[("X-Deployment-Token", token.expose()), ("Accept", "application/json")],
            Some(&body),
            64 << 10,
            Some(REPORT_TIMEOUT),
        )
        .map_err(|why| Error::transport(&operation, why))?;
        match reply.status {
            200..=299 => Ok(ReportOutcome::Accepted),
            409 => Ok(ReportOutcome::AlreadyFinal),
            code => {
                let detail = crate::text::snippet(&crate::redact::scrub(&reply.body), 200);
                Err(Error::Orchestrator { operation, code, retry_after: reply.retry_after, detail })
            }
        }
    }

    /// A plain request to the base URL, to prove DNS, proxy and TLS without touching a
    /// poll (which would take a message from a running replica). Returns the status.
    pub fn reach(&self) -> std::result::Result<u16, String> {
        http::call(&self.agent, "GET", &format!("{}/", self.connection.base_url), &[], None, 64 << 10, Some(REPORT_TIMEOUT)).map(|r| r.status)
    }
}
