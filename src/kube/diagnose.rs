//! Why a deployment's Job is not doing its work, read from the Job, its Pods and their
//! Events as the API server returns them: pure functions, tested on objects shaped like a
//! real cluster's. Two questions:
//!
//! - [`failed_job`]: the Job failed (its `Failed` condition, or `status.failed`), so the
//!   runner may have died before posting its result: OOM-killed, evicted, past
//!   `activeDeadlineSeconds`, or an exit without a result. The answer names the cause and
//!   the fix.
//! - [`blocked_pod`] / [`mount_failure`]: a Pod that cannot start for a reason that does
//!   not heal by itself (an image that cannot be pulled, a missing Secret or ConfigMap, a
//!   volume that cannot be mounted, no node that fits). Transient states (a pull in
//!   progress, `ContainerCreating`) are never a cause.
//!
//! What it does not do: decide when to ask (the status check does, with the grace period),
//! or talk to anyone.

use miniserde::json::{Number, Value};

use crate::json::{get, text};

/// The pod-template annotation on which the renderer records what `IMAGE_MIRRORS`
/// rewrote: `container=original,...` (image references never hold `,` or `=`).
pub const ANNOTATION_MIRRORED: &str = "humanitec.dev/mirrored-images";

/// A cause found: the Kubernetes reason it comes from, and a sentence naming the cause
/// and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// e.g. `ImagePullBackOff`, `OOMKilled`, `Unschedulable`.
    pub reason: String,
    /// What happened and what to do.
    pub sentence: String,
}

/// True when the Job has failed: a `Failed` condition that is `True`, or failed pods
/// counted in its status.
pub fn job_failed(job: &Value) -> bool {
    conditions(job).any(|c| text(c, &["type"]) == Some("Failed") && text(c, &["status"]) == Some("True")) || count(job, &["status", "failed"]) > 0
}

/// True when the Job has succeeded (`status.succeeded`, or a `Complete` condition).
pub fn job_succeeded(job: &Value) -> bool {
    count(job, &["status", "succeeded"]) > 0 || conditions(job).any(|c| text(c, &["type"]) == Some("Complete") && text(c, &["status"]) == Some("True"))
}

/// Pods ready, when the API server counts them (`status.ready`, Kubernetes 1.23 and later).
pub fn job_ready(job: &Value) -> Option<u64> {
    match get(job, &["status", "ready"]) {
        Some(Value::Number(Number::U64(n))) => Some(*n),
        _ => None,
    }
}

/// Why a failed Job failed, as one sentence with the fix, from its condition and its Pods.
pub fn failed_job(job: &Value, pods: &[Value]) -> String {
    let condition = conditions(job).find(|c| text(c, &["type"]) == Some("Failed") && text(c, &["status"]) == Some("True"));
    let (reason, message) = condition.map_or(("", ""), |c| (text(c, &["reason"]).unwrap_or(""), text(c, &["message"]).unwrap_or("")));
    let mut causes: Vec<String> = pods.iter().filter_map(failed_pod).collect();
    causes.dedup();
    if reason == "DeadlineExceeded" {
        let deadline = match get(job, &["spec", "activeDeadlineSeconds"]) {
            Some(Value::Number(Number::U64(n))) => format!(" of {n} s"),
            _ => String::new(),
        };
        causes.insert(
            0,
            format!(
                "the Job ran past its activeDeadlineSeconds{deadline} and Kubernetes stopped it (DeadlineExceeded: {}); raise activeDeadlineSeconds in the JobSpec, or find out why the runner took so long",
                shown(message)
            ),
        );
    }
    if causes.is_empty() {
        let why = if reason.is_empty() { "no reason given".to_string() } else { format!("{reason}: {}", shown(message)) };
        causes.push(format!("the Job failed ({why}) and no pod said why; look at the Job and its pods in the cluster"));
    }
    causes.join("; ")
}

/// What a failed Pod says about its end: eviction, OOM kill, or an exit code.
fn failed_pod(pod: &Value) -> Option<String> {
    if text(pod, &["status", "reason"]) == Some("Evicted") {
        return Some(format!(
            "the runner pod was evicted ({}); give the runner more resources in pod_template, or move it to nodes with room",
            shown(text(pod, &["status", "message"]).unwrap_or("no message"))
        ));
    }
    for (list, status) in [("containers", "containerStatuses"), ("initContainers", "initContainerStatuses")] {
        let Some(Value::Array(statuses)) = get(pod, &["status", status]) else { continue };
        for s in statuses.iter() {
            let terminated = get(s, &["state", "terminated"]).or_else(|| get(s, &["lastState", "terminated"]));
            let Some(t) = terminated else { continue };
            let exit = match get(t, &["exitCode"]) {
                Some(Value::Number(Number::U64(n))) => *n as i64,
                Some(Value::Number(Number::I64(n))) => *n,
                _ => continue,
            };
            let name = text(s, &["name"]).unwrap_or("?");
            let reason = text(t, &["reason"]).unwrap_or("");
            if reason == "OOMKilled" {
                let limit = container(pod, list, name).and_then(|c| text(c, &["resources", "limits", "memory"]));
                let limit = limit.map_or("no memory limit".to_string(), |l| format!("a {l} memory limit"));
                return Some(format!(
                    "the runner container '{}' was OOM-killed (exit {exit}) with {limit}; raise resources.limits.memory for container '{}' in pod_template",
                    shown(name),
                    shown(name)
                ));
            }
            if exit != 0 {
                let reason = if reason.is_empty() { String::new() } else { format!(", {}", shown(reason)) };
                return Some(format!(
                    "the runner container '{}' exited with code {exit}{reason} before reporting a result; its logs say why: kubectl logs -n {} {}",
                    shown(name),
                    shown(text(pod, &["metadata", "namespace"]).unwrap_or("?")),
                    shown(text(pod, &["metadata", "name"]).unwrap_or("?"))
                ));
            }
        }
    }
    None
}

/// Why a Pod cannot start, when the reason does not heal by itself.
pub fn blocked_pod(pod: &Value) -> Option<Cause> {
    let namespace = text(pod, &["metadata", "namespace"]).unwrap_or("?");
    for c in conditions_of(pod) {
        if text(c, &["type"]) == Some("PodScheduled") && text(c, &["status"]) == Some("False") && text(c, &["reason"]) == Some("Unschedulable") {
            return Some(Cause {
                reason: "Unschedulable".into(),
                sentence: format!(
                    "no node can run the runner pod ({}); fix the pod's nodeSelector, tolerations, affinity or resource requests in pod_template, or add capacity",
                    shown(text(c, &["message"]).unwrap_or("the scheduler gave no message"))
                ),
            });
        }
    }
    for (list, status) in [("initContainers", "initContainerStatuses"), ("containers", "containerStatuses")] {
        let Some(Value::Array(statuses)) = get(pod, &["status", status]) else { continue };
        for s in statuses.iter() {
            let Some(waiting) = get(s, &["state", "waiting"]) else { continue };
            let name = text(s, &["name"]).unwrap_or("?");
            let reason = text(waiting, &["reason"]).unwrap_or("");
            let message = text(waiting, &["message"]).unwrap_or("");
            match reason {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                    let image = container(pod, list, name).and_then(|c| text(c, &["image"])).or_else(|| text(s, &["image"])).unwrap_or("?");
                    let mirrored = mirrored_from(pod, name).map_or_else(
                        || "no IMAGE_MIRRORS rule rewrote it".to_string(),
                        |original| format!("IMAGE_MIRRORS rewrote it from '{}'", shown(original)),
                    );
                    return Some(Cause {
                        reason: reason.into(),
                        sentence: format!(
                            "the image '{}' of container '{}' cannot be pulled ({reason}{}); {mirrored}. Mirror the image into a registry the cluster can reach (offline-install), \
                             set IMAGE_MIRRORS, or fix imagePullSecrets in pod_template",
                            shown(image),
                            shown(name),
                            if message.is_empty() { String::new() } else { format!(": {}", shown(message)) }
                        ),
                    });
                }
                "CreateContainerConfigError" => {
                    return Some(Cause {
                        reason: reason.into(),
                        sentence: format!(
                            "container '{}' cannot be created: {}; create it in namespace {} or fix the reference in pod_template",
                            shown(name),
                            missing_reference(message),
                            shown(namespace)
                        ),
                    });
                }
                _ => {}
            }
        }
    }
    None
}

/// A `FailedMount` Warning among `events` (a Pod's), naming the volume.
pub fn mount_failure(events: &[Value]) -> Option<Cause> {
    let event = events.iter().find(|e| text(e, &["type"]) == Some("Warning") && text(e, &["reason"]) == Some("FailedMount"))?;
    let message = text(event, &["message"]).unwrap_or("");
    let volume = quoted_after(message, "volume ").map_or_else(String::new, |v| format!(" '{}'", shown(v)));
    Some(Cause {
        reason: "FailedMount".into(),
        sentence: format!(
            "volume{volume} of the runner pod cannot be mounted ({}); create what it refers to, or fix the volume in pod_template",
            shown(message)
        ),
    })
}

/// When the Pod was created (seconds since the epoch).
pub fn created_at(object: &Value) -> Option<i64> {
    text(object, &["metadata", "creationTimestamp"]).and_then(crate::time::parse_rfc3339)
}

/// The original images of the containers `IMAGE_MIRRORS` rewrote, as recorded on the
/// pod template by the renderer.
fn mirrored_from<'a>(pod: &'a Value, container: &str) -> Option<&'a str> {
    let recorded = text(pod, &["metadata", "annotations", ANNOTATION_MIRRORED])?;
    recorded.split(',').filter_map(|pair| pair.split_once('=')).find(|(name, _)| *name == container).map(|(_, original)| original)
}

/// "secret \"x\" not found" / "couldn't find key K in Secret ns/x" / "configmap \"y\" not
/// found" in our words; the kubelet's message as is otherwise.
fn missing_reference(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    for kind in ["secret", "configmap"] {
        let label = if kind == "secret" { "Secret" } else { "ConfigMap" };
        if let Some(name) = quoted_after(&lower, &format!("{kind} ")).filter(|_| lower.contains("not found")) {
            return format!("the {label} '{}' it refers to does not exist", shown(name));
        }
        if let Some(rest) = lower.split("couldn't find key ").nth(1) {
            if rest.contains(&format!("in {kind} ")) {
                let key = message.split("couldn't find key ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("?");
                let object = message.split_whitespace().last().unwrap_or("?");
                return format!("the {label} {} has no key '{}'", shown(object), shown(key));
            }
        }
    }
    shown(message)
}

/// The text inside the first pair of double quotes after `marker` in `s`.
fn quoted_after<'a>(s: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &s[s.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('"')?;
    rest.split('"').next()
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    match get(pod, &["spec", list]) {
        Some(Value::Array(a)) => a.iter().find(|c| text(c, &["name"]) == Some(name)),
        _ => None,
    }
}

fn conditions(job: &Value) -> impl Iterator<Item = &Value> {
    conditions_of(job)
}

fn conditions_of(object: &Value) -> impl Iterator<Item = &Value> {
    let list = match get(object, &["status", "conditions"]) {
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    list.into_iter()
}

fn count(v: &Value, path: &[&str]) -> u64 {
    match get(v, path) {
        Some(Value::Number(Number::U64(n))) => *n,
        _ => 0,
    }
}

/// A peer's text as it may appear in a report: control characters dropped, at most 300
/// characters.
fn shown(s: &str) -> String {
    crate::text::snippet(s, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        crate::json::parse(text, "test object").unwrap()
    }

    const FAILED_JOB: &str = r#"{"spec":{"activeDeadlineSeconds":600},"status":{"failed":1,"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#;

    #[test]
    fn an_oom_killed_runner_is_named_with_its_limit_and_the_fix() {
        let pod = v(r#"{"metadata":{"name":"d-1-abcde","namespace":"jobs"},"spec":{"containers":[{"name":"main","resources":{"limits":{"memory":"1Gi"}}}]},
            "status":{"phase":"Failed","containerStatuses":[{"name":"main","state":{"terminated":{"exitCode":137,"reason":"OOMKilled"}}}]}}"#);
        let job = v(FAILED_JOB);
        assert!(job_failed(&job) && !job_succeeded(&job));
        assert_eq!(
            failed_job(&job, &[pod]),
            "the runner container 'main' was OOM-killed (exit 137) with a 1Gi memory limit; raise resources.limits.memory for container 'main' in pod_template"
        );
    }

    #[test]
    fn an_evicted_pod_a_deadline_and_an_exit_code_are_each_named() {
        let evicted = v(r#"{"status":{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: ephemeral-storage."}}"#);
        assert!(failed_job(&v(FAILED_JOB), &[evicted]).starts_with("the runner pod was evicted (The node was low on resource: ephemeral-storage.)"));
        let deadline = v(
            r#"{"spec":{"activeDeadlineSeconds":600},"status":{"conditions":[{"type":"Failed","status":"True","reason":"DeadlineExceeded","message":"Job was active longer than specified deadline"}]}}"#,
        );
        assert!(job_failed(&deadline));
        assert!(failed_job(&deadline, &[]).starts_with("the Job ran past its activeDeadlineSeconds of 600 s and Kubernetes stopped it (DeadlineExceeded"));
        let exited = v(
            r#"{"metadata":{"name":"d-1-x","namespace":"jobs"},"status":{"containerStatuses":[{"name":"main","state":{"terminated":{"exitCode":3,"reason":"Error"}}}]}}"#,
        );
        assert_eq!(
            failed_job(&v(FAILED_JOB), &[exited]),
            "the runner container 'main' exited with code 3, Error before reporting a result; its logs say why: kubectl logs -n jobs d-1-x"
        );
        assert!(failed_job(&v(FAILED_JOB), &[]).contains("BackoffLimitExceeded"));
    }

    #[test]
    fn image_pulls_say_whether_a_mirror_rewrote_the_image() {
        let pod = |annotations: &str| {
            v(&format!(
                r#"{{"metadata":{{"namespace":"jobs","annotations":{{{annotations}}}}},"spec":{{"containers":[{{"name":"main","image":"registry.internal/m/runner:1"}}]}},
                "status":{{"phase":"Pending","containerStatuses":[{{"name":"main","state":{{"waiting":{{"reason":"ImagePullBackOff","message":"Back-off pulling image"}}}}}}]}}}}"#
            ))
        };
        let cause = blocked_pod(&pod(r#""humanitec.dev/mirrored-images":"main=ghcr.io/humanitec/runner:1""#)).unwrap();
        assert_eq!(cause.reason, "ImagePullBackOff");
        assert!(
            cause.sentence.contains("'registry.internal/m/runner:1'") && cause.sentence.contains("IMAGE_MIRRORS rewrote it from 'ghcr.io/humanitec/runner:1'"),
            "{}",
            cause.sentence
        );
        assert!(blocked_pod(&pod("")).unwrap().sentence.contains("no IMAGE_MIRRORS rule rewrote it"));
    }

    #[test]
    fn a_missing_secret_or_key_and_an_unschedulable_pod_are_named() {
        let waiting = |message: &str| {
            v(&format!(
                r#"{{"metadata":{{"namespace":"jobs"}},"status":{{"containerStatuses":[{{"name":"main","state":{{"waiting":{{"reason":"CreateContainerConfigError","message":{}}}}}}}]}}}}"#,
                crate::json::quote(message)
            ))
        };
        assert!(blocked_pod(&waiting(r#"secret "db-creds" not found"#)).unwrap().sentence.contains("the Secret 'db-creds' it refers to does not exist"));
        assert!(blocked_pod(&waiting("couldn't find key TOKEN in Secret jobs/db-creds"))
            .unwrap()
            .sentence
            .contains("the Secret jobs/db-creds has no key 'TOKEN'"));
        assert!(blocked_pod(&waiting(r#"configmap "cfg" not found"#)).unwrap().sentence.contains("the ConfigMap 'cfg'"));
        let unschedulable = v(
            r#"{"status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/3 nodes are available: 3 Insufficient memory."}]}}"#,
        );
        let cause = blocked_pod(&unschedulable).unwrap();
        assert_eq!(cause.reason, "Unschedulable");
        assert!(cause.sentence.contains("0/3 nodes are available: 3 Insufficient memory."));
    }

    #[test]
    fn transient_states_are_never_a_cause() {
        for waiting in ["ContainerCreating", "PodInitializing"] {
            let pod =
                v(&format!(r#"{{"status":{{"phase":"Pending","containerStatuses":[{{"name":"main","state":{{"waiting":{{"reason":"{waiting}"}}}}}}]}}}}"#));
            assert_eq!(blocked_pod(&pod), None, "{waiting}");
        }
        let scheduling = v(r#"{"status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"True"}]}}"#);
        assert_eq!(blocked_pod(&scheduling), None);
    }

    #[test]
    fn a_failed_mount_names_its_volume() {
        let events = [
            v(r#"{"type":"Normal","reason":"Scheduled","message":"ok"}"#),
            v(r#"{"type":"Warning","reason":"FailedMount","message":"MountVolume.SetUp failed for volume \"creds\" : secret \"creds\" not found"}"#),
        ];
        let cause = mount_failure(&events).unwrap();
        assert!(cause.sentence.starts_with("volume 'creds' of the runner pod cannot be mounted"), "{}", cause.sentence);
        assert_eq!(mount_failure(&events[..1]), None);
    }
}
