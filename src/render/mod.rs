//! The Job renderer: a pure function from a `create-job` message and the local policy to
//! the `batch/v1` Job the agent will create. The stages run in this order, in
//! [`render`] and nowhere else:
//!
//! 1. `namespace_allowed`: the namespace on the allow-list when there is one (the Job
//!    name and the namespace are already valid [`Name`]s: `message::decode` made them);
//! 2. `place_jobspec`: the embedded template (`job-template.json`, the Orchestrator's
//!    defaults of PROTOCOL §5) with the message's JobSpec overlaid on `spec`;
//! 3. `overlay_policy`: the local policy template overlaid on the whole Job;
//! 4. `stamp_identity`: name, namespace, labels and annotations (set last, so neither the
//!    JobSpec nor the policy can change them);
//! 5. `apply_mirrors`: image references rewritten by registry prefix;
//! 6. `settle_service_account`: the account the pod will run as, with the deprecated
//!    `serviceAccount` field made to agree with `serviceAccountName` (or refused);
//! 7. `enforce`: no pod selector of the Job's own choosing, no priority class Kubernetes
//!    reserves, the Pod Security Standards at `JOB_POD_SECURITY`'s level
//!    ([`crate::render::pod_security`]) and the service-account allow-list, on the final Job.
//!
//! A refusal is an [`Error::Refused`] naming the rule. Kubernetes' own validation is not
//! repeated here: whatever the API server rejects comes back as its `Invalid` status.

pub(crate) mod merge;
pub(crate) mod mirror;
pub(crate) mod pod_security;

use miniserde::json::{self, Object, Value};

use crate::error::{Error, Result};
use crate::json::get;

use crate::name::Name;
use mirror::Mirror;

pub use crate::name::is_dns1123_label;

/// The embedded template every Job starts from.
pub const JOB_TEMPLATE: &str = include_str!("job-template.json");
/// Set on every Job and pod this agent makes.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The deployment behind a Job (the message's `job_id`).
pub const LABEL_DEPLOYMENT_ID: &str = "humanitec.dev/deployment-id";
/// The runner that created a Job.
pub const LABEL_RUNNER_ID: &str = "humanitec.dev/runner-id";
/// The organisation, as an annotation (org ids need not be valid label values).
pub const ANNOTATION_ORG_ID: &str = "humanitec.dev/org-id";
/// The runner id, as an annotation (always set, even when it is not a valid label value).
pub const ANNOTATION_RUNNER_ID: &str = "humanitec.dev/runner-id";
/// Our value of [`LABEL_MANAGED_BY`]; `kubectl get jobs -l app.kubernetes.io/managed-by=humanitec-kubernetes-agent`.
pub const MANAGED_BY: &str = "humanitec-kubernetes-agent";

/// The Pod Security Standards checks the local policy exempts (`JOB_ALLOW`).
pub use crate::render::pod_security::Exemptions as Allow;
pub use crate::render::pod_security::Level;

/// Everything local that shapes a Job. Empty allow-lists allow anything RBAC permits.
#[derive(Debug, Clone, Default)]
pub struct JobPolicy {
    /// Namespaces Jobs may be created in; empty = any.
    pub namespaces: Vec<String>,
    /// Service accounts Jobs may run as; empty = any.
    pub service_accounts: Vec<String>,
    /// Image mirror rules.
    pub mirrors: Vec<Mirror>,
    /// The local policy template, overlaid on every Job (see [`merge`]).
    pub overlay: Option<Value>,
    /// The Pod Security Standards level every pod must meet (`JOB_POD_SECURITY`).
    pub pod_security: Level,
    /// Checks of that level the operator exempts.
    pub allow: Allow,
    /// Stamped on the Job when known.
    pub runner_id: Option<String>,
    /// Stamped on the Job when known.
    pub org_id: Option<String>,
}

/// One image `IMAGE_MIRRORS` rewrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The container's name, as the JobSpec gave it.
    pub container: String,
    /// The image before.
    pub from: String,
    /// The image after.
    pub to: String,
}

/// Renders the Job named `job_id` in `namespace` from the message's `jobspec` under
/// `policy`. Takes the JobSpec by value: it is moved into the Job, never copied.
pub fn render(job_id: &Name, namespace: &Name, jobspec: Value, policy: &JobPolicy) -> Result<Value> {
    render_with_rewrites(job_id, namespace, jobspec, policy).map(|(job, _)| job)
}

/// [`render`], also returning the images the mirrors rewrote (for the audit trail).
pub fn render_with_rewrites(job_id: &Name, namespace: &Name, jobspec: Value, policy: &JobPolicy) -> Result<(Value, Vec<Rewrite>)> {
    namespace_allowed(namespace, &policy.namespaces)?;
    let mut job = place_jobspec(jobspec)?;
    overlay_policy(&mut job, policy.overlay.as_ref());
    stamp_identity(&mut job, job_id, namespace, policy);
    let rewrites = apply_mirrors(&mut job, &policy.mirrors);
    settle_service_account(&mut job)?;
    enforce(&job, policy)?;
    Ok((job, rewrites))
}

/// Refuses a namespace that is not on the allow-list (`JOB_NAMESPACES`), when there is
/// one. Applied to both actions: a status check never reads outside it either.
pub fn namespace_allowed(namespace: &Name, allowed: &[String]) -> Result<()> {
    if !allowed.is_empty() && !allowed.iter().any(|a| namespace == a.as_str()) {
        return Err(Error::Refused {
            level: None,
            rule: "namespace-allow-list",
            detail: format!(
                "namespace '{namespace}' is not in JOB_NAMESPACES ({}); add it there (chart: jobsRbac.namespace) or change the runner's job namespace",
                allowed.join(", ")
            ),
        });
    }
    Ok(())
}

fn place_jobspec(jobspec: Value) -> Result<Value> {
    if !matches!(jobspec, Value::Object(_)) {
        return Err(Error::decode("create-job message", "field 'configuration' is not a JSON object (it must be a Kubernetes JobSpec)"));
    }
    let mut job: Value = json::from_str(JOB_TEMPLATE).expect("the embedded Job template is valid JSON (checked by a unit test)");
    let mut patch = Object::new();
    patch.insert("spec".into(), jobspec);
    merge::overlay(&mut job, Value::Object(patch));
    Ok(job)
}

fn overlay_policy(job: &mut Value, overlay: Option<&Value>) {
    if let Some(o) = overlay {
        merge::overlay(job, o.clone());
    }
}

fn stamp_identity(job: &mut Value, job_id: &Name, namespace: &Name, policy: &JobPolicy) {
    let runner_label = policy.runner_id.as_deref().filter(|r| is_label_value(r));
    let meta = object_at(job, &["metadata"]);
    meta.insert("name".into(), Value::String(job_id.to_string()));
    meta.insert("namespace".into(), Value::String(namespace.to_string()));
    let labels = object_in(meta, "labels");
    labels.insert(LABEL_MANAGED_BY.into(), Value::String(MANAGED_BY.into()));
    labels.insert(LABEL_DEPLOYMENT_ID.into(), Value::String(job_id.to_string()));
    if let Some(r) = runner_label {
        labels.insert(LABEL_RUNNER_ID.into(), Value::String(r.into()));
    }
    let annotations = object_in(meta, "annotations");
    if let Some(o) = &policy.org_id {
        annotations.insert(ANNOTATION_ORG_ID.into(), Value::String(o.clone()));
    }
    if let Some(r) = &policy.runner_id {
        annotations.insert(ANNOTATION_RUNNER_ID.into(), Value::String(r.clone()));
    }
    if annotations.is_empty() {
        object_at(job, &["metadata"]).remove("annotations");
    }
    let pod_labels = object_at(job, &["spec", "template", "metadata", "labels"]);
    pod_labels.insert(LABEL_MANAGED_BY.into(), Value::String(MANAGED_BY.into()));
    pod_labels.insert(LABEL_DEPLOYMENT_ID.into(), Value::String(job_id.to_string()));
    // What the job controller sets when the template has none: a status check lists a Job's
    // pods by it, so a JobSpec naming another deployment's Job here would have its pods
    // judged as that deployment's (reported stuck or failed in its name).
    pod_labels.insert(crate::kube::request::LABEL_JOB_NAME.into(), Value::String(job_id.to_string()));
    if let Some(r) = runner_label {
        pod_labels.insert(LABEL_RUNNER_ID.into(), Value::String(r.into()));
    }
}

fn apply_mirrors(job: &mut Value, mirrors: &[Mirror]) -> Vec<Rewrite> {
    if mirrors.is_empty() {
        return Vec::new();
    }
    let mut rewrites = Vec::new();
    for container in containers_mut(job) {
        if let Some(Value::String(image)) = container.get("image") {
            if let Some(mirrored) = mirror::rewrite(image, mirrors) {
                let name = match container.get("name") {
                    Some(Value::String(n)) => n.clone(),
                    _ => String::new(),
                };
                rewrites.push(Rewrite { container: name, from: image.clone(), to: mirrored.clone() });
                container.insert("image".into(), Value::String(mirrored));
            }
        }
    }
    // Recorded on the pods, so that a status check can say what an image was before.
    if !rewrites.is_empty() {
        let recorded: Vec<String> = rewrites.iter().map(|r| format!("{}={}", r.container, r.from)).collect();
        let annotations = object_at(job, &["spec", "template", "metadata", "annotations"]);
        annotations.insert(crate::kube::diagnose::ANNOTATION_MIRRORED.into(), Value::String(recorded.join(",")));
    }
    rewrites
}

fn enforce(job: &Value, policy: &JobPolicy) -> Result<()> {
    own_pods_only(job)?;
    let pod = get(job, &["spec", "template", "spec"]);
    no_system_priority(pod)?;
    scheduled(pod)?;
    let annotations = get(job, &["spec", "template", "metadata", "annotations"]);
    crate::render::pod_security::check(pod, annotations, policy.pod_security, policy.allow)?;
    if !policy.service_accounts.is_empty() {
        // settle_service_account made serviceAccountName the account the pod runs as.
        let account = match pod.and_then(|p| get(p, &["serviceAccountName"])) {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => "default",
        };
        if !policy.service_accounts.iter().any(|a| a == account) {
            return Err(Error::Refused {
                level: None,
                rule: "service-account-allow-list",
                detail: format!(
                    "service account '{account}' is not in JOB_SERVICE_ACCOUNTS ({}); set the runner's job service account to one of them (chart: jobsRbac.serviceAccountName)",
                    policy.service_accounts.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a Job that picks its own pod selector. With `manualSelector: true` the job
/// controller adopts every pod of the namespace that matches `selector` and has no owner,
/// and deletes those beyond `parallelism`: on a real 1.20 control plane a Job with
/// `parallelism: 0` deleted a pod made by `kubectl run` within seconds. Without it the API
/// server makes the selector itself (the Job's own uid), which is what the Orchestrator's
/// JobSpec relies on.
fn own_pods_only(job: &Value) -> Result<()> {
    let refused = |detail: String| Err(Error::Refused { level: None, rule: "job-selector", detail });
    match get(job, &["spec", "manualSelector"]) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(v) => {
            return refused(format!(
                "the JobSpec sets manualSelector: {}, which lets the Job adopt and delete other pods of the namespace; remove it (Kubernetes makes the Job's own selector)",
                json::to_string(v).chars().take(20).collect::<String>()
            ))
        }
    }
    match get(job, &["spec", "selector"]) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => refused("the JobSpec sets a selector of its own; remove it (Kubernetes makes the Job's own selector)".into()),
    }
}

/// Refuses a pod asking for one of the priority classes Kubernetes reserves for itself
/// (`system-node-critical`, `system-cluster-critical`: the `system-` prefix). On a real 1.20
/// control plane a Job in the runner's job namespace got its pod priority 2000001000, above
/// every workload of the cluster, which the scheduler then preempts to make room for it.
/// Other classes are the cluster's to define; the policy file pins one (policy wins).
fn no_system_priority(pod: Option<&Value>) -> Result<()> {
    let refused = |class: String| {
        Err(Error::Refused {
            level: None,
            rule: "priority-class",
            detail: format!(
                "the pod asks for priority class {class}, which would let it preempt the cluster's own workloads; remove priorityClassName from the JobSpec or pin the runner's class in JOB_POLICY_FILE"
            ),
        })
    };
    match pod.and_then(|p| get(p, &["priorityClassName"])) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(class)) if !class.starts_with("system-") => Ok(()),
        Some(Value::String(class)) => refused(format!("'{}'", crate::text::snippet(class, 63))),
        Some(_) => refused("that is not a string".into()),
    }
}

/// Refuses a pod that names its node. `nodeName` skips the scheduler, and with it every
/// node's `NoSchedule` taint: the kubelet of the node named (a control-plane node too)
/// admits the pod whatever the taints say. `nodeSelector` and affinity place a pod through
/// the scheduler, which keeps to the taints.
fn scheduled(pod: Option<&Value>) -> Result<()> {
    match pod.and_then(|p| get(p, &["nodeName"])) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(node)) if node.is_empty() => Ok(()),
        Some(v) => Err(Error::Refused {
            level: None,
            rule: "node-name",
            detail: format!(
                "the pod names its node ({}), which skips the scheduler and the nodes' taints; use nodeSelector or affinity instead",
                match v {
                    Value::String(node) => format!("'{}'", crate::text::snippet(node, 63)),
                    _ => "not as a string".into(),
                }
            ),
        }),
    }
}

/// Makes `serviceAccountName` name the account the pod will run as, and refuses a pod
/// whose two service-account fields disagree. Kubernetes runs a pod whose
/// `serviceAccountName` is empty as the deprecated `serviceAccount` when that is set, so
/// checking `serviceAccountName` alone would let `{"serviceAccountName": "",
/// "serviceAccount": "admin"}` past an allow-list of `default`. After this stage both
/// fields, when present, hold the same name, and that is the one `enforce` checks.
fn settle_service_account(job: &mut Value) -> Result<()> {
    let Some(Value::Object(pod)) = get_mut(job, &["spec", "template", "spec"]) else { return Ok(()) };
    let field = |pod: &Object, key: &str| -> Result<String> {
        match pod.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::Refused { level: None, rule: "service-account-fields", detail: format!("the pod's {key} is not a string") }),
        }
    };
    let (current, deprecated) = (field(pod, "serviceAccountName")?, field(pod, "serviceAccount")?);
    match (current.is_empty(), deprecated.is_empty()) {
        (_, true) => {}
        (true, false) => {
            pod.insert("serviceAccountName".into(), Value::String(deprecated));
        }
        (false, false) if current == deprecated => {}
        (false, false) => {
            let show = |s: &str| crate::text::snippet(s, 63);
            return Err(Error::Refused {
                level: None,
                rule: "service-account-fields",
                detail: format!(
                    "the pod sets serviceAccountName '{}' and the deprecated serviceAccount '{}'; they must agree (set serviceAccountName only)",
                    show(&current),
                    show(&deprecated)
                ),
            });
        }
    }
    Ok(())
}

use crate::render::pod_security::CONTAINER_LISTS;

fn containers_mut(job: &mut Value) -> Vec<&mut Object> {
    let mut out = Vec::new();
    if let Some(Value::Object(pod)) = get_mut(job, &["spec", "template", "spec"]) {
        for (key, list) in pod.iter_mut() {
            if let (true, Value::Array(items)) = (CONTAINER_LISTS.iter().any(|(l, _)| l == key), list) {
                out.extend(items.iter_mut().filter_map(|c| match c {
                    Value::Object(o) => Some(o),
                    _ => None,
                }));
            }
        }
    }
    out
}

fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    b.is_empty() || (b.len() <= 63 && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || matches!(c, b'-' | b'_' | b'.')))
}

fn get_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(o) => o.get_mut(*k),
        _ => None,
    })
}

/// The object at `path`, creating (or replacing non-objects with) empty objects on the way.
fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Object {
    if !matches!(v, Value::Object(_)) {
        *v = Value::Object(Object::new());
    }
    let Value::Object(o) = v else { unreachable!("made an object above") };
    let mut o = o;
    for k in path {
        o = object_in(o, k);
    }
    o
}

fn object_in<'a>(o: &'a mut Object, key: &str) -> &'a mut Object {
    let slot = o.entry(key.to_string()).or_insert_with(|| Value::Object(Object::new()));
    if !matches!(slot, Value::Object(_)) {
        *slot = Value::Object(Object::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders `jobspec` as Job `d-1` in namespace `jobs`.
    fn render_spec(jobspec: &str, policy: &JobPolicy) -> Result<Value> {
        render(&Name::label("d-1").unwrap(), &Name::label("jobs").unwrap(), json::from_str(jobspec).unwrap(), policy)
    }

    const POD: &str = r#"{"template":{"spec":{"serviceAccountName":"runner","containers":[{"name":"main","image":"ghcr.io/humanitec/runner:1"}]}}}"#;

    #[test]
    fn embedded_template_is_valid_json() {
        assert!(matches!(json::from_str::<Value>(JOB_TEMPLATE), Ok(Value::Object(_))));
    }

    #[test]
    fn template_defaults_fill_what_the_jobspec_omits_and_jobspec_wins() {
        let job = render_spec(r#"{"backoffLimit":2,"template":{"spec":{"containers":[{"name":"main","image":"x"}]}}}"#, &JobPolicy::default()).unwrap();
        assert!(matches!(get(&job, &["spec", "backoffLimit"]), Some(Value::Number(json::Number::U64(2)))));
        assert!(matches!(get(&job, &["spec", "ttlSecondsAfterFinished"]), Some(Value::Number(json::Number::U64(3600)))));
        assert!(matches!(get(&job, &["spec", "template", "spec", "restartPolicy"]), Some(Value::String(s)) if s == "Never"));
    }

    #[test]
    fn identity_cannot_be_overridden_by_jobspec_or_policy() {
        let policy = JobPolicy {
            overlay: Some(json::from_str(r#"{"metadata":{"name":"evil","labels":{"humanitec.dev/deployment-id":"x"}}}"#).unwrap()),
            ..JobPolicy::default()
        };
        let job = render_spec(POD, &policy).unwrap();
        assert!(matches!(get(&job, &["metadata", "name"]), Some(Value::String(s)) if s == "d-1"));
        assert!(matches!(get(&job, &["metadata", "labels", LABEL_DEPLOYMENT_ID]), Some(Value::String(s)) if s == "d-1"));
        assert!(matches!(get(&job, &["spec", "template", "metadata", "labels", LABEL_MANAGED_BY]), Some(Value::String(s)) if s == MANAGED_BY));
    }

    #[test]
    fn namespace_outside_the_allow_list_is_refused() {
        let policy = JobPolicy { namespaces: vec!["other".into()], ..JobPolicy::default() };
        let e = render_spec(POD, &policy).unwrap_err().to_string();
        assert!(e.contains("'namespace-allow-list'") && e.contains("JOB_NAMESPACES"), "{e}");
    }

    #[test]
    fn service_account_outside_the_allow_list_is_refused_and_default_counts() {
        let policy = JobPolicy { service_accounts: vec!["runner".into()], ..JobPolicy::default() };
        assert!(render_spec(POD, &policy).is_ok());
        let e = render_spec(r#"{"template":{"spec":{"containers":[]}}}"#, &policy).unwrap_err().to_string();
        assert!(e.contains("'service-account-allow-list'") && e.contains("'default'"), "{e}");
    }

    #[test]
    fn an_empty_service_account_name_with_the_deprecated_field_set_is_checked_as_the_account_the_pod_runs_as() {
        let policy = JobPolicy { service_accounts: vec!["default".into()], ..JobPolicy::default() };
        let e = render_spec(r#"{"template":{"spec":{"serviceAccountName":"","serviceAccount":"admin","containers":[]}}}"#, &policy).unwrap_err().to_string();
        assert!(e.contains("'service-account-allow-list'") && e.contains("'admin'"), "{e}");
        let e = render_spec(r#"{"template":{"spec":{"serviceAccount":"admin","containers":[]}}}"#, &policy).unwrap_err().to_string();
        assert!(e.contains("'admin'"), "{e}");
        // Allowed, the deprecated field alone is copied into serviceAccountName, so the two agree.
        let admin = JobPolicy { service_accounts: vec!["admin".into()], ..JobPolicy::default() };
        let job = render_spec(r#"{"template":{"spec":{"serviceAccount":"admin","containers":[]}}}"#, &admin).unwrap();
        assert!(matches!(get(&job, &["spec", "template", "spec", "serviceAccountName"]), Some(Value::String(s)) if s == "admin"));
    }

    #[test]
    fn a_pod_whose_two_service_account_fields_disagree_is_never_sent() {
        for policy in [JobPolicy::default(), JobPolicy { service_accounts: vec!["runner".into(), "admin".into()], ..JobPolicy::default() }] {
            let e = render_spec(r#"{"template":{"spec":{"serviceAccountName":"runner","serviceAccount":"admin","containers":[]}}}"#, &policy).unwrap_err();
            assert!(matches!(e, Error::Refused { rule: "service-account-fields", .. }), "{e}");
            let e = render_spec(r#"{"template":{"spec":{"serviceAccountName":"runner","serviceAccount":7,"containers":[]}}}"#, &policy).unwrap_err();
            assert!(matches!(e, Error::Refused { rule: "service-account-fields", .. }), "{e}");
        }
        assert!(
            render_spec(r#"{"template":{"spec":{"serviceAccountName":"runner","serviceAccount":"runner","containers":[]}}}"#, &JobPolicy::default()).is_ok()
        );
    }

    #[test]
    fn the_policy_overlay_cannot_switch_the_service_account_through_the_deprecated_field() {
        let policy = JobPolicy {
            service_accounts: vec!["runner".into()],
            overlay: Some(json::from_str(r#"{"spec":{"template":{"spec":{"serviceAccount":"admin"}}}}"#).unwrap()),
            ..JobPolicy::default()
        };
        assert!(matches!(render_spec(POD, &policy), Err(Error::Refused { level: None, rule: "service-account-fields", .. })));
    }

    #[test]
    fn privileged_host_namespaces_and_host_path_are_refused_unless_allowed() {
        use crate::render::pod_security::Check;
        let cases = [
            (r#"{"template":{"spec":{"initContainers":[{"name":"i","securityContext":{"privileged":true}}]}}}"#, Check::Privileged),
            (r#"{"template":{"spec":{"hostPID":true}}}"#, Check::HostNamespaces),
            (r#"{"template":{"spec":{"volumes":[{"name":"root","hostPath":{"path":"/"}}]}}}"#, Check::HostPath),
        ];
        for (spec, check) in cases {
            let e = render_spec(spec, &JobPolicy::default()).unwrap_err();
            assert!(matches!(e, Error::Refused { level: Some(Level::Baseline), rule: r, .. } if r == check.name()), "{spec}: {e}");
        }
        let all = JobPolicy { allow: Allow::default().with(Check::Privileged).with(Check::HostNamespaces).with(Check::HostPath), ..JobPolicy::default() };
        for (spec, _) in cases {
            assert!(render_spec(spec, &all).is_ok(), "{spec}");
        }
    }

    #[test]
    fn a_jobspec_cannot_outvote_a_policy_env_value_by_listing_the_variable_twice() {
        let policy = JobPolicy {
            overlay: Some(
                json::from_str(
                    r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"HTTPS_PROXY","value":"http://proxy.internal:3128"}]}]}}}}"#,
                )
                .unwrap(),
            ),
            ..JobPolicy::default()
        };
        let twice = r#"{"template":{"spec":{"containers":[{"name":"main","image":"x","env":[{"name":"HTTPS_PROXY","value":"http://evil:1"},{"name":"A","value":"1"},{"name":"HTTPS_PROXY","value":"http://evil:2"}]}]}}}"#;
        let job = render_spec(twice, &policy).unwrap();
        let Some(Value::Array(env)) = get(&job, &["spec", "template", "spec", "containers"]).and_then(|c| match c {
            Value::Array(c) => get(&c[0], &["env"]),
            _ => None,
        }) else {
            panic!("no env: {}", json::to_string(&job))
        };
        // Kubernetes keeps both entries and the container gets the last: each must be the policy's.
        let proxies: Vec<&str> =
            env.iter().filter(|e| crate::json::text(e, &["name"]) == Some("HTTPS_PROXY")).filter_map(|e| crate::json::text(e, &["value"])).collect();
        assert_eq!(proxies, ["http://proxy.internal:3128", "http://proxy.internal:3128"], "{}", json::to_string(&job));
    }

    #[test]
    fn a_jobspec_choosing_its_own_pod_selector_is_never_sent() {
        for spec in [
            r#"{"manualSelector":true,"selector":{"matchLabels":{"app":"victim"}},"parallelism":0,"template":{"metadata":{"labels":{"app":"victim"}},"spec":{"containers":[]}}}"#,
            r#"{"manualSelector":"yes","template":{"spec":{"containers":[]}}}"#,
            r#"{"selector":{"matchLabels":{"app":"victim"}},"template":{"spec":{"containers":[]}}}"#,
        ] {
            let e = render_spec(spec, &JobPolicy::default()).unwrap_err();
            assert!(matches!(e, Error::Refused { level: None, rule: "job-selector", .. }), "{spec}: {e}");
        }
        assert!(render_spec(r#"{"manualSelector":false,"selector":null,"template":{"spec":{"containers":[]}}}"#, &JobPolicy::default()).is_ok());
    }

    #[test]
    fn a_jobspec_cannot_label_its_pods_as_another_deployments_job() {
        let spec = r#"{"template":{"metadata":{"labels":{"job-name":"other-deployment","app":"x"}},"spec":{"containers":[]}}}"#;
        let job = render_spec(spec, &JobPolicy::default()).unwrap();
        let labels = get(&job, &["spec", "template", "metadata", "labels"]).unwrap();
        assert_eq!(crate::json::text(labels, &["job-name"]), crate::json::text(&job, &["metadata", "name"]), "{}", json::to_string(&job));
        assert_eq!(crate::json::text(labels, &["app"]), Some("x"));
    }

    #[test]
    fn a_pod_naming_its_node_is_never_sent_since_that_skips_the_scheduler_and_the_taints() {
        for node in [r#""control-plane-1""#, "1", r#"{"name":"x"}"#] {
            let spec = format!(r#"{{"template":{{"spec":{{"nodeName":{node},"containers":[]}}}}}}"#);
            let e = render_spec(&spec, &JobPolicy::default()).unwrap_err();
            assert!(matches!(e, Error::Refused { level: None, rule: "node-name", .. }), "{spec}: {e}");
        }
        // Placed through the scheduler, or not at all: sent.
        for spec in [
            r#"{"template":{"spec":{"nodeName":"","containers":[]}}}"#,
            r#"{"template":{"spec":{"nodeName":null,"nodeSelector":{"pool":"runners"},"containers":[]}}}"#,
        ] {
            assert!(render_spec(spec, &JobPolicy::default()).is_ok(), "{spec}");
        }
    }

    #[test]
    fn a_pod_asking_for_a_system_priority_class_is_never_sent() {
        for class in [r#""system-node-critical""#, r#""system-cluster-critical""#, "7"] {
            let spec = format!(r#"{{"template":{{"spec":{{"priorityClassName":{class},"containers":[]}}}}}}"#);
            let e = render_spec(&spec, &JobPolicy::default()).unwrap_err();
            assert!(matches!(e, Error::Refused { level: None, rule: "priority-class", .. }), "{spec}: {e}");
        }
        assert!(render_spec(r#"{"template":{"spec":{"priorityClassName":"runner-jobs","containers":[]}}}"#, &JobPolicy::default()).is_ok());
        // The policy file's class wins over the JobSpec's, so pinning one is the operator's remedy.
        let pinned = JobPolicy {
            overlay: Some(json::from_str(r#"{"spec":{"template":{"spec":{"priorityClassName":"runner-jobs"}}}}"#).unwrap()),
            ..JobPolicy::default()
        };
        assert!(render_spec(r#"{"template":{"spec":{"priorityClassName":"system-node-critical","containers":[]}}}"#, &pinned).is_ok());
    }

    #[test]
    fn policy_overlay_cannot_sneak_in_privilege() {
        let policy = JobPolicy { overlay: Some(json::from_str(r#"{"spec":{"template":{"spec":{"hostNetwork":true}}}}"#).unwrap()), ..JobPolicy::default() };
        assert!(matches!(render_spec(POD, &policy), Err(Error::Refused { rule: "host-namespaces", .. })));
    }

    #[test]
    fn a_refusal_names_the_level_the_check_and_the_container() {
        let spec = r#"{"template":{"spec":{"containers":[{"name":"main","image":"x","securityContext":{"capabilities":{"add":["SYS_ADMIN"]}}}]}}}"#;
        let e = render_spec(spec, &JobPolicy::default()).unwrap_err().to_string();
        assert_eq!(e, "refused by pod security level 'baseline', check 'capabilities': container 'main' adds SYS_ADMIN");
    }

    #[test]
    fn the_policy_overlay_is_checked_too_and_can_harden_a_jobspec_to_pass_restricted() {
        let restricted = JobPolicy { pod_security: Level::Restricted, ..JobPolicy::default() };
        assert!(matches!(render_spec(POD, &restricted), Err(Error::Refused { rule: "privilege-escalation", .. })));
        let hardening = r#"{"spec":{"template":{"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}}}}}}"#;
        let policy = JobPolicy { overlay: Some(json::from_str(hardening).unwrap()), ..restricted.clone() };
        let spec = r#"{"template":{"spec":{"containers":[{"name":"main","image":"x","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}}"#;
        assert!(render_spec(spec, &policy).is_ok());
        assert!(matches!(render_spec(spec, &restricted), Err(Error::Refused { rule: "running-as-non-root", .. })));
    }

    #[test]
    fn the_orchestrators_default_jobspec_passes_restricted_and_the_pod_template_example_passes_baseline() {
        let golden = |name: &str| {
            let text = std::fs::read_to_string(format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let Value::Object(mut m) = json::from_str::<Value>(&text).unwrap() else { panic!("{name} is an object") };
            m.remove("configuration").unwrap()
        };
        let restricted = JobPolicy { pod_security: Level::Restricted, ..JobPolicy::default() };
        render_spec(&json::to_string(&golden("default-jobspec.message.json")), &restricted).expect("the default JobSpec passes restricted");
        render_spec(&json::to_string(&golden("pod-template-overlay.message.json")), &JobPolicy::default()).expect("the pod_template example passes baseline");
    }

    #[test]
    fn mirrors_rewrite_every_container_kind() {
        let policy = JobPolicy { mirrors: vec![Mirror::parse("ghcr.io/humanitec=registry.internal/m", "IMAGE_MIRRORS").unwrap()], ..JobPolicy::default() };
        let spec = r#"{"template":{"spec":{"initContainers":[{"name":"i","image":"ghcr.io/humanitec/init:2"}],"containers":[{"name":"main","image":"ghcr.io/humanitec/runner:1"},{"name":"s","image":"quay.io/x:1"}]}}}"#;
        let job = json::to_string(&render_spec(spec, &policy).unwrap());
        assert!(job.contains(r#""image":"registry.internal/m/runner:1""#), "{job}");
        assert!(job.contains(r#""image":"registry.internal/m/init:2""#), "{job}");
        assert!(job.contains(r#""image":"quay.io/x:1""#), "{job}");
        assert!(
            job.contains(r#""humanitec.dev/mirrored-images":"main=ghcr.io/humanitec/runner:1,i=ghcr.io/humanitec/init:2""#)
                || job.contains(r#""humanitec.dev/mirrored-images":"i=ghcr.io/humanitec/init:2,main=ghcr.io/humanitec/runner:1""#),
            "{job}"
        );
    }
}
