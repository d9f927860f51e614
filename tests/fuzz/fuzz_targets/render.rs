//! The renderer and its policy checks: any JSON as the JobSpec and as the policy overlay,
//! rendered under the default (strict) policy. A rendered Job must never carry what the
//! policy refuses, and always carries the identity the agent stamps.
#![no_main]
use kubernetes_agent::message::{CreateJob, Secret};
use kubernetes_agent::json::get;
use kubernetes_agent::render::{self, JobPolicy};
use libfuzzer_sys::fuzz_target;
use miniserde::json::{self, Value};

fn list<'a>(v: Option<&'a Value>, key: &str) -> Vec<&'a Value> {
    match v.and_then(|v| get(v, &[key])) {
        Some(Value::Array(a)) => a.iter().collect(),
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (spec, overlay) = text.split_once('\u{1}').unwrap_or((text, ""));
    let Ok(configuration) = json::from_str::<Value>(spec) else { return };
    let overlay = json::from_str::<Value>(overlay).ok().filter(|v| matches!(v, Value::Object(_)));
    let message = CreateJob { job_id: "d-1".into(), namespace: "jobs".into(), configuration, deployment_token: Secret::new("t".into()) };
    let policy = JobPolicy { namespaces: vec!["jobs".into()], service_accounts: vec!["runner".into()], overlay, ..JobPolicy::default() };
    let Ok(job) = render::render(&message, &policy) else { return };
    let pod = get(&job, &["spec", "template", "spec"]);
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(!matches!(pod.and_then(|p| get(p, &[field])), Some(Value::Bool(true))), "{field} slipped through");
    }
    for volume in list(pod, "volumes") {
        assert!(get(volume, &["hostPath"]).is_none(), "a hostPath volume slipped through");
    }
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for c in list(pod, kind) {
            assert!(!matches!(get(c, &["securityContext", "privileged"]), Some(Value::Bool(true))), "a privileged container slipped through");
        }
    }
    let account = pod.and_then(|p| get(p, &["serviceAccountName"]).or_else(|| get(p, &["serviceAccount"])));
    assert!(matches!(account, Some(Value::String(a)) if a == "runner"), "service account {account:?} slipped through");
    assert!(matches!(get(&job, &["metadata", "name"]), Some(Value::String(n)) if n == "d-1"));
    assert!(matches!(get(&job, &["metadata", "namespace"]), Some(Value::String(n)) if n == "jobs"));
});
