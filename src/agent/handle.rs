//! One message, top to bottom: [`handle`] decodes it and hands it to `create_job` (render
//! → Pod Security Standards → create, one bounded call) or `check_job_status` (get the
//! Job → diagnose → report a failure or a stuck start), and `report_failure` tells the
//! Orchestrator when a deployment must fail. Every decision of a create-job is one
//! [`audit`] line; while a message is handled its deployment token and Job env values are
//! known secrets ([`crate::redact`]).

use std::time::Duration;

use miniserde::json::{self, Value};

use crate::backoff::{Backoff, Until};
use crate::error::{Error, Result};
use crate::json::{get, text};
use crate::kube::diagnose;
use crate::kube::{request, Reason};
use crate::name::Name;
use crate::ops::audit::{self, Decision};
use crate::ops::metrics;
use crate::orchestrator::message::{self, CheckJobStatus, CreateJob, Message, Secret};
use crate::orchestrator::ReportOutcome;
use crate::render;

use super::Context;

/// How long a create-job keeps retrying while the Kubernetes API is unreachable or
/// overloaded, before the deployment is reported failed.
pub const CREATE_DEADLINE: Duration = Duration::from_secs(120);
/// How long one request of a status check keeps retrying a busy API server (the next
/// check comes 30 s later).
pub const CHECK_RETRY_FOR: Duration = Duration::from_secs(15);
/// How long a failure report keeps retrying a busy or unreachable Orchestrator.
pub const REPORT_RETRY_FOR: Duration = Duration::from_secs(60);
/// Most pods of one Job whose events a status check lists. A Job's pod count is the
/// JobSpec's to choose (`parallelism`), and a list per pod would make one check of a wide
/// Job that never starts cost hundreds of requests every 30 s; the Orchestrator's Job has
/// one pod, and a few more come only from retries (`backoffLimit`).
pub const MAX_PODS_EXAMINED: usize = 4;

/// Acts on one message body. Never panics on input; every outcome is logged. While it
/// runs, the message's deployment token and its Job's env values are known secrets
/// ([`crate::redact`]), so no echo of them reaches the log.
pub fn handle(ctx: &Context, body: String) {
    match message::decode(&body) {
        Ok(Message::CreateJob(m)) => {
            drop(body);
            ctx.metrics.message(metrics::Kind::CreateJob);
            create_job(ctx, m);
        }
        Ok(Message::CheckJobStatus(m)) => {
            ctx.metrics.message(metrics::Kind::CheckJobStatus);
            let _secrets = crate::redact::hold([m.deployment_token.expose()]);
            check_job_status(ctx, &m);
        }
        Err(e) => {
            ctx.metrics.message(metrics::Kind::Invalid);
            // A create-job we cannot read would otherwise leave its deployment waiting.
            let target = message::salvage_report_target(&body);
            let _secrets = crate::redact::hold(target.as_ref().map(|(_, token)| token.expose()));
            log::warn!("skipping a message: {e}");
            if let Some((job_id, token)) = target {
                let reported = report_failure(ctx, &job_id, &token, &format!("the runner agent could not read the create-job message: {e}"));
                audit::Entry::unchecked(Decision::Refused, &job_id, "").field("rule", "unreadable-message").field("reported", &reported.to_string()).log();
            }
        }
    }
}

fn create_job(ctx: &Context, m: CreateJob) {
    let CreateJob { job_id, namespace, configuration, deployment_token } = m;
    let identifiers = identifiers(ctx, &job_id, &namespace);
    let mut secrets: Vec<String> = env_values(&configuration).into_iter().filter(|v| !identifiers.contains(&v.as_str())).collect();
    secrets.push(deployment_token.expose().to_string());
    let _secrets = crate::redact::hold(secrets.iter().map(String::as_str));
    let (job, rewrites) = match render::render_with_rewrites(&job_id, &namespace, configuration, &ctx.policy) {
        Ok(rendered) => rendered,
        Err(e) => {
            ctx.metrics.job(metrics::JobResult::Refused);
            log::warn!("not creating Job {namespace}/{job_id}: {e}");
            let reported = report_failure(ctx, job_id.as_str(), &deployment_token, &format!("the runner agent refused the Job: {e}"));
            audit::Entry::new(Decision::Refused, &job_id, &namespace).rule_of(&e).field("reported", &reported.to_string()).log();
            return;
        }
    };
    // The policy file may add env values of its own.
    let policy_secrets: Vec<String> = env_values(&job).into_iter().filter(|v| !secrets.contains(v) && !identifiers.contains(&v.as_str())).collect();
    let _policy_secrets = crate::redact::hold(policy_secrets.iter().map(String::as_str));
    let body = json::to_string(&job);
    drop(job);
    // The audit trail identifies the Job by the digest of exactly what is sent.
    let sha256 = crate::hex::sha256(body.as_bytes());
    let audited = |decision| audit::Entry::new(decision, &job_id, &namespace).field("sha256", &sha256);
    for r in &rewrites {
        audited(Decision::ImageRewritten).field("container", &r.container).field("from", &r.from).field("to", &r.to).log();
    }
    let req = request::create_job(&namespace, &job_id, body);
    // One bounded call: the client retries a busy or unreachable API server until the
    // deadline, and a stop ends its waiting at once.
    match ctx.kube.send_until(&req, Until::within(CREATE_DEADLINE, &ctx.stop)) {
        Ok(_) => {
            ctx.metrics.job(metrics::JobResult::Created);
            log::info!("created Job {namespace}/{job_id}");
            audited(Decision::Created).log();
        }
        Err(Error::Kube { ref status, .. }) if status.reason() == Reason::AlreadyExists => {
            ctx.metrics.job(metrics::JobResult::AlreadyExists);
            log::info!("Job {namespace}/{job_id} already exists (created by another replica or an earlier delivery)");
            audited(Decision::AlreadyExisted).log();
        }
        Err(e) if e.is_transient() && ctx.stop.is_stopped() => {
            // Not this replica's failure to report: another may have created it, and the
            // Orchestrator's status check reports a Job that never appeared.
            ctx.metrics.job(metrics::JobResult::Failed);
            log::error!("{e}; not retried further: the agent is stopping and SHUTDOWN_TIMEOUT has passed");
            audited(Decision::Failed).rule_of(&e).field("reported", "false").log();
        }
        Err(e) => {
            ctx.metrics.job(metrics::JobResult::Failed);
            log::error!("{e}");
            let reported = report_failure(ctx, job_id.as_str(), &deployment_token, &format!("the runner agent could not create the Kubernetes Job: {e}"));
            audited(Decision::Failed).rule_of(&e).field("reported", &reported.to_string()).log();
        }
    }
}

/// Values that identify rather than authorise: the deployment (which the Orchestrator also
/// passes to the Job as `DEPLOYMENT_ID`), its namespace, the organisation and the runner.
/// The logs name them, so an env value equal to one is not scrubbed.
fn identifiers<'a>(ctx: &'a Context, job_id: &'a Name, namespace: &'a Name) -> Vec<&'a str> {
    let mut out = vec![job_id.as_str(), namespace.as_str()];
    out.extend(ctx.policy.org_id.as_deref());
    out.extend(ctx.policy.runner_id.as_deref());
    out
}

/// Env variables the Orchestrator sets that carry no credential (PROTOCOL §5).
const NOT_SECRET_ENV: [&str; 4] = ["ORG_ID", "DEPLOYMENT_ID", "MODE", "LOG_LEVEL"];

/// Every `env[].value` of every container of a JobSpec or a Job (they carry credentials),
/// but for [`NOT_SECRET_ENV`].
fn env_values(v: &Value) -> Vec<String> {
    let pod = get(v, &["template", "spec"]).or_else(|| get(v, &["spec", "template", "spec"]));
    let mut out = Vec::new();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(Value::Array(containers)) = pod.and_then(|p| get(p, &[list])) else { continue };
        for c in containers.iter() {
            let Some(Value::Array(env)) = get(c, &["env"]) else { continue };
            let secret = |e: &&Value| !text(e, &["name"]).is_some_and(|n| NOT_SECRET_ENV.contains(&n));
            out.extend(env.iter().filter(secret).filter_map(|e| text(e, &["value"])).map(String::from));
        }
    }
    out
}

/// PROTOCOL §4's status check, plus what upstream leaves to the deployment's one-hour
/// timeout: a Job that failed without its runner reporting (OOM-killed, evicted, past its
/// deadline) is reported with its cause, and, with `STARTUP_GRACE`, a pod blocked for
/// longer than the grace by a cause that does not heal by itself is reported before
/// `expires_at`. Stuck reports keep upstream's shape; a cause found comes first, as one
/// more `<time> - <reason> - <sentence>` entry before the Warning events.
fn check_job_status(ctx: &Context, m: &CheckJobStatus) {
    let (ns, id) = (&m.namespace, &m.job_id);
    if let Err(e) = render::namespace_allowed(ns, &ctx.policy.namespaces) {
        log::warn!("status check of Job {ns}/{id} skipped: {e}");
        return;
    }
    let now = crate::time::now();
    let expired = now > m.expires_at;
    let job = match ctx.kube.send_until(&request::get_job(ns, id), Until::within(CHECK_RETRY_FOR, &ctx.stop)) {
        Ok(body) => body,
        Err(Error::Kube { ref status, .. }) if status.reason() == Reason::NotFound => {
            if expired {
                ctx.metrics.stuck();
                report_failure(ctx, id.as_str(), &m.deployment_token, "job not found after the expiration time");
            } else {
                log::debug!("Job {ns}/{id} not found yet; it is not expired");
            }
            return;
        }
        Err(e) => {
            log::warn!("status check of Job {ns}/{id} skipped: {e}; the next check will try again");
            return;
        }
    };
    let job = match crate::json::parse(&job, &format!("the Kubernetes reply to get Job {ns}/{id}")) {
        Ok(v) => v,
        Err(e) => {
            log::warn!("status check of Job {ns}/{id} skipped: {e}");
            return;
        }
    };
    if diagnose::job_succeeded(&job) {
        return;
    }
    if diagnose::job_failed(&job) {
        // The runner may have died before posting its result; if it did post, the
        // Orchestrator answers 409 and nothing changes.
        let pods = list(ctx, &request::list_job_pods(ns, id)).unwrap_or_else(|e| {
            log::warn!("status check of Job {ns}/{id}: listing its pods failed: {e}; reporting the failure without their detail");
            Vec::new()
        });
        let message = format!("the runner Job failed before reporting a result: {}", diagnose::failed_job(&job, &pods));
        log::warn!("Job {ns}/{id}: {message}");
        report_failure(ctx, id.as_str(), &m.deployment_token, &message);
        return;
    }
    // Early causes are looked for only once a pod can be older than the grace, and not
    // while the API server counts a ready pod: a running Job costs one request a check.
    let grace = ctx.startup_grace.map(|g| g.as_secs() as i64);
    let may_be_blocked = grace.is_some_and(|g| diagnose::created_at(&job).is_some_and(|t| now - t > g)) && diagnose::job_ready(&job).unwrap_or(0) == 0;
    if !expired && !may_be_blocked {
        return;
    }
    let pods = match list(ctx, &request::list_job_pods(ns, id)) {
        Ok(items) => items,
        Err(e) => {
            log::warn!("status check of Job {ns}/{id} skipped: {e}");
            return;
        }
    };
    let started = pods.iter().any(|p| text(p, &["status", "phase"]).is_some_and(|s| s != "Pending" && s != "Unknown"));
    if started {
        return;
    }
    let cause = grace.and_then(|g| blocked_cause(ctx, ns, &pods, now, g));
    if !expired && cause.is_none() {
        return;
    }
    ctx.metrics.stuck();
    let mut names = vec![id.clone()];
    names.extend(pods.iter().filter_map(|p| text(p, &["metadata", "name"]).and_then(Name::subdomain)).take(MAX_PODS_EXAMINED));
    let mut entries = warning_events(ctx, ns, &names).unwrap_or_default();
    if let Some(c) = &cause {
        entries.insert(0, format!("{} - {} - {}", crate::time::format_rfc3339(now), c.reason, c.sentence));
    }
    let message = if entries.is_empty() {
        "job seems to be stuck: no pod of the Job started before the expiration time and no Warning events could be read \
         (check the Job's pods and events in the cluster: quota, image pull, scheduling)"
            .to_string()
    } else {
        format!("job seems to be stuck: {}", entries.join("; "))
    };
    log::warn!("Job {ns}/{id}: {message}");
    report_failure(ctx, id.as_str(), &m.deployment_token, &message);
}

/// The first cause that keeps a pod older than `grace` seconds from starting: a pod's own
/// status (read from the list, at no cost), else a `FailedMount` event of one of the first
/// [`MAX_PODS_EXAMINED`] of them (still creating its containers).
fn blocked_cause(ctx: &Context, ns: &Name, pods: &[Value], now: i64, grace: i64) -> Option<diagnose::Cause> {
    let old: Vec<&Value> = pods.iter().filter(|p| diagnose::created_at(p).is_some_and(|t| now - t > grace)).collect();
    if let Some(cause) = old.iter().find_map(|pod| diagnose::blocked_pod(pod)) {
        return Some(cause);
    }
    for pod in old.into_iter().take(MAX_PODS_EXAMINED) {
        let Some(name) = text(pod, &["metadata", "name"]).and_then(Name::subdomain) else { continue };
        match list(ctx, &request::list_events_about(ns, &name)) {
            Ok(events) => {
                if let Some(cause) = diagnose::mount_failure(&events) {
                    return Some(cause);
                }
            }
            Err(e) => log::warn!("listing events of {ns}/{name}: {e}"),
        }
    }
    None
}

/// Warning events about `names`, newest first, as `<UTC time> - <reason> - <message>`.
/// `None` when events cannot be listed (forbidden, unreachable).
fn warning_events(ctx: &Context, namespace: &Name, names: &[Name]) -> Option<Vec<String>> {
    let mut events: Vec<(i64, String)> = Vec::new();
    for name in names {
        let items = match list(ctx, &request::list_events_about(namespace, name)) {
            Ok(items) => items,
            Err(e) => {
                log::warn!("listing events of {namespace}/{name}: {e}");
                return None;
            }
        };
        for ev in items {
            if text(&ev, &["type"]) != Some("Warning") {
                continue;
            }
            let when = [&["lastTimestamp"][..], &["eventTime"], &["firstTimestamp"], &["metadata", "creationTimestamp"]]
                .iter()
                .find_map(|p| text(&ev, p).and_then(crate::time::parse_rfc3339))
                .unwrap_or(0);
            let (reason, message) = (text(&ev, &["reason"]).unwrap_or_default(), text(&ev, &["message"]).unwrap_or_default());
            events.push((when, format!("{} - {reason} - {message}", crate::time::format_rfc3339(when))));
        }
    }
    events.sort_by_key(|e| std::cmp::Reverse(e.0));
    Some(events.into_iter().map(|(_, line)| line).collect())
}

/// Reports the deployment failed; true when the Orchestrator took the report (or the
/// deployment was final already).
fn report_failure(ctx: &Context, deployment_id: &str, token: &Secret, message: &str) -> bool {
    // What the deployment is told goes through the same scrubbing as the log: an API
    // server's 422 may quote a Job's env value back.
    let message = crate::redact::scrub_to(message, crate::ops::logging::MAX_LINE);
    let until = Until::within(REPORT_RETRY_FOR, &ctx.stop);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
    loop {
        let error = match ctx.remote.report_failure(deployment_id, token, &message) {
            Ok(ReportOutcome::Accepted) => {
                ctx.metrics.report(metrics::Report::Accepted);
                log::info!("reported the failure of deployment {deployment_id} to the Orchestrator");
                return true;
            }
            Ok(ReportOutcome::AlreadyFinal) => {
                ctx.metrics.report(metrics::Report::AlreadyFinal);
                log::info!("deployment {deployment_id} is already final (409); nothing more to report");
                return true;
            }
            Err(e) => e,
        };
        let retry_after = match &error {
            Error::Orchestrator { retry_after, .. } => retry_after.map(Duration::from_secs),
            _ => None,
        };
        if error.is_transient() && until.wait(backoff.next(retry_after)) {
            log::warn!("{error}; retrying");
            continue;
        }
        ctx.metrics.report(metrics::Report::Failed);
        let why = if error.is_transient() { "giving up" } else { "not retried: the answer will not change by itself" };
        log::error!("{error}; {why}: the deployment will fail when the Orchestrator's own timeout expires");
        return false;
    }
}

/// The items of a list reply, retried like every request of a status check.
fn list(ctx: &Context, req: &request::ApiRequest) -> Result<Vec<Value>> {
    ctx.kube.list_until(req, Until::within(CHECK_RETRY_FOR, &ctx.stop))
}
