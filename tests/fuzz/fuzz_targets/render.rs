//! The renderer and its policy checks: any JSON as the JobSpec and as the policy overlay,
//! rendered under the default (strict) policy. A rendered Job must never carry what the
//! policy refuses, and always carries the identity the agent stamps.
#![no_main]
use kubernetes_agent::json::{self, get};
use kubernetes_agent::name::Name;
use kubernetes_agent::render::{self, JobPolicy};
use libfuzzer_sys::fuzz_target;
use miniserde::json::Value;

fn list<'a>(v: Option<&'a Value>, key: &str) -> Vec<&'a Value> {
    match v.and_then(|v| get(v, &[key])) {
        Some(Value::Array(a)) => a.iter().collect(),
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (spec, overlay) = text.split_once('\u{1}').unwrap_or((text, ""));
    let Ok(configuration) = json::parse(spec, "fuzz JobSpec") else { return };
    let overlay = json::parse(overlay, "fuzz policy").ok().filter(|v| matches!(v, Value::Object(_)));
    let policy = JobPolicy { namespaces: vec!["jobs".into()], service_accounts: vec!["runner".into()], overlay, ..JobPolicy::default() };
    let (id, ns) = (Name::label("d-1").unwrap(), Name::label("jobs").unwrap());
    let Ok(job) = render::render(&id, &ns, configuration, &policy) else { return };
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
    // The account the pod runs as is serviceAccountName, or the deprecated serviceAccount
    // when the first is empty: both must say runner wherever they are set.
    let account = pod.and_then(|p| get(p, &["serviceAccountName"]));
    assert!(matches!(account, Some(Value::String(a)) if a == "runner"), "service account {account:?} slipped through");
    let deprecated = pod.and_then(|p| get(p, &["serviceAccount"]));
    assert!(matches!(deprecated, None | Some(Value::String(_))), "serviceAccount {deprecated:?}");
    assert!(!matches!(deprecated, Some(Value::String(a)) if !a.is_empty() && a != "runner"), "serviceAccount {deprecated:?} slipped through");
    assert!(matches!(get(&job, &["metadata", "name"]), Some(Value::String(n)) if n == "d-1"));
    assert!(matches!(get(&job, &["metadata", "namespace"]), Some(Value::String(n)) if n == "jobs"));
});
