//! The real-control-plane tier (issue 12): the release agent binary, run out of cluster
//! with the chart's real service-account token and the cluster CA, against Kubernetes'
//! own kube-apiserver, controller-manager and scheduler (Debian's 1.20 source package)
//! and etcd, all on loopback, driven through the Orchestrator stand-in. Every call the
//! agent makes is authorised by the chart's real Role, applied with kubectl.
//!
//! `cargo test` lists these as ignored; `bash tests/real-cluster` starts the control plane,
//! names its coordinates in `REAL_CLUSTER`, and runs them with `--ignored --test-threads=1`.
//! Every wait is bounded; every object a test makes is named after the test and a nonce,
//! so a second run against a kept cluster (`tests/real-cluster --shell`) does not collide.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};
use support::agent::{check_message, eventually, AgentProcess};
use support::cluster::{
    agent_requests, create_codes, items, metric, nonce, within, Cluster, Real, AGENT_NAMESPACE, AGENT_ROLE, AGENT_SERVICE_ACCOUNT, AGENT_USER, HOLD,
    JOB_NAMESPACE, JOB_SERVICE_ACCOUNT, RUNNER, WAIT,
};
use support::kube::{get, text};
use support::server::certs_dir;

/// Every leaf of `expected` is in `actual` at the same path (the API server only adds
/// defaults); differences are collected as "path: expected vs actual".
fn contained(expected: &Value, actual: &Value, path: &str, diffs: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e.iter() {
                match a.get(k) {
                    Some(av) => contained(v, av, &format!("{path}.{k}"), diffs),
                    None => diffs.push(format!("{path}.{k}: rendered {} but the API server has none", json::to_string(v))),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a.iter()).enumerate() {
                contained(ev, av, &format!("{path}[{i}]"), diffs);
            }
        }
        _ => {
            if json::to_string(expected) != json::to_string(actual) {
                diffs.push(format!("{path}: rendered {} but the API server has {}", json::to_string(expected), json::to_string(actual)));
            }
        }
    }
}

/// Puts the chart's own objects (its Role among them) back however the test ends.
struct RestoreChart<'a>(&'a Cluster);

impl Drop for RestoreChart<'_> {
    fn drop(&mut self) {
        let objects = self.0.dir.join("chart-objects.yaml");
        let _ = self.0.kubectl(&["apply", "-f", objects.to_str().unwrap()]);
    }
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn check_passes_with_the_charts_rbac_and_names_a_verb_removed_from_the_role() {
    let real = Real::new();
    let (ok, out) = real.run(&["check"], &[]);
    assert!(ok, "check must pass with the chart's Role:\n{out}");
    for line in [
        "PASS  may create jobs.batch in namespace humanitec-runner-jobs",
        "PASS  may get jobs.batch in namespace humanitec-runner-jobs",
        "PASS  may list pods in namespace humanitec-runner-jobs",
        "PASS  may list events in namespace humanitec-runner-jobs",
        "authenticated the service account",
    ] {
        assert!(out.contains(line), "no '{line}' in:\n{out}");
    }
    let _restore = RestoreChart(&real.cluster);
    let without_get = r#"[{"op":"replace","path":"/rules/0/verbs","value":["create"]}]"#;
    real.cluster.must(&["-n", JOB_NAMESPACE, "patch", "role", AGENT_ROLE, "--type=json", "-p", without_get]);
    // RBAC reaches the authorizer through its informer: bounded wait for the change.
    let failed = within(Duration::from_secs(20), || {
        let (ok, out) = real.run(&["check"], &[]);
        (!ok).then_some(out)
    })
    .expect("check still passed 20 s after 'get' was removed from the agent's Role");
    assert!(failed.contains("FAIL  may get jobs.batch in namespace humanitec-runner-jobs"), "{failed}");
    assert!(failed.contains("PASS  may create jobs.batch in namespace humanitec-runner-jobs"), "only the removed verb fails: {failed}");
    assert!(failed.contains("fix: grant it in the agent's Role"), "{failed}");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn the_default_jobspec_with_a_pod_template_overlay_becomes_a_real_job_equal_to_render() {
    let real = Real::new();
    let id = format!("rc-render-{}", nonce());
    let message = real.create_job("pod-template-overlay.message.json", &id, JOB_NAMESPACE);
    let file = real.dir.path().join("message.json");
    std::fs::write(&file, &message).unwrap();
    let (ok, rendered) = real.run(&["render", file.to_str().unwrap()], &[]);
    assert!(ok, "{rendered}");
    let rendered: Value = json::from_str(&rendered).unwrap_or_else(|_| panic!("render printed no JSON: {rendered}"));
    let agent = real.started(&[]);
    real.push(&message);
    let job = real.wait_job(JOB_NAMESPACE, &id, &agent);
    let mut diffs = Vec::new();
    contained(&rendered, &job, "", &mut diffs);
    assert!(diffs.is_empty(), "the real Job differs from render's output beyond defaulting:\n{}", diffs.join("\n"));
    assert!(real.orch.results().is_empty(), "{:?}", real.orch.results());
    // The job controller made its Pod from it, with the identity labels on the pod.
    let pods = within(WAIT, || {
        let list = real.cluster.get_json(&["-n", JOB_NAMESPACE, "pods", "-l", &format!("humanitec.dev/deployment-id={id}")]).ok()?;
        let pods = items(&list);
        (!pods.is_empty()).then_some(pods)
    })
    .expect("the job controller made no Pod for the Job");
    assert_eq!(get(&pods[0], &["spec", "serviceAccountName"]).and_then(text).as_deref(), Some(JOB_SERVICE_ACCOUNT));
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn the_same_create_job_twice_gets_the_real_409_and_nothing_is_reported() {
    let real = Real::new();
    let id = format!("rc-twice-{}", nonce());
    let message = real.create_job("default-jobspec.message.json", &id, JOB_NAMESPACE);
    let first = real.started(&[]);
    real.push(&message);
    real.wait_job(JOB_NAMESPACE, &id, &first);
    drop(first);
    // The stand-in still holds the dead process's polls until their hold ends.
    assert!(eventually(HOLD * 3, || real.orch.open_polls(RUNNER) == 0));
    // A replica that did not see the first delivery (one replica handles a message it saw
    // on two of its polls once, so the same process would not send it again).
    let second = real.started(&[]);
    real.push(&message);
    assert!(eventually(WAIT, || metric(&second, "kubernetes_agent_jobs_total{result=\"already_exists\"}") == 1.0), "{:?}", second.logs());
    assert!(eventually(Duration::from_secs(10), || create_codes(&real.cluster, &id).len() == 2));
    assert_eq!(create_codes(&real.cluster, &id), vec![201, 409], "the API server's audit log");
    std::thread::sleep(Duration::from_millis(500));
    assert!(real.orch.results().is_empty(), "AlreadyExists is success: {:?}", real.orch.results());
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_jobspec_the_api_server_rejects_is_reported_with_the_real_422() {
    let real = Real::new();
    let id = format!("rc-invalid-{}", nonce());
    let message =
        real.create_job("default-jobspec.message.json", &id, JOB_NAMESPACE).replace(r#""image": "ghcr.io/humanitec/platform-orchestrator-runner:1.4.0","#, "");
    assert!(!message.contains("\"image\""), "the fixture changed: the test needs a container without an image");
    let agent = real.started(&[]);
    real.push(&message);
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("422"), "{body}");
    assert!(body.contains("spec.template.spec.containers[0].image: Required value"), "{body}");
    assert!(real.cluster.job(JOB_NAMESPACE, &id).is_none());
    assert_eq!(create_codes(&real.cluster, &id), vec![422], "the API server's audit log");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_namespace_the_agents_role_does_not_cover_gets_the_real_403_reported() {
    let real = Real::new();
    let _ = real.cluster.kubectl(&["create", "namespace", "rc-uncovered"]);
    let id = format!("rc-forbidden-{}", nonce());
    // An operator allowed a namespace (agent.jobNamespaces) but gave the agent no Role there.
    let agent = real.started(&[("JOB_NAMESPACES", "humanitec-runner-jobs,rc-uncovered")]);
    real.push(&real.create_job("default-jobspec.message.json", &id, "rc-uncovered"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("403"), "{body}");
    let denial = format!(r#"User \"{AGENT_USER}\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"rc-uncovered\""#);
    assert!(body.contains(&denial), "the real RBAC denial, as JSON text:\n{body}\nwanted: {denial}");
    assert!(real.cluster.job("rc-uncovered", &id).is_none());
}

/// The Warning events of an object, as the API server lists them.
/// (reason, message, eventTime) of each.
fn warnings(cluster: &Cluster, namespace: &str, involved: &str) -> Vec<(String, String, String)> {
    let list = cluster
        .get_json(&["-n", namespace, "events", "--field-selector", &format!("involvedObject.name={involved},type=Warning")])
        .unwrap_or_else(|e| panic!("{e}"));
    let field = |e: &Value, k: &str| get(e, &[k]).and_then(text).unwrap_or_default();
    items(&list).iter().map(|e| (field(e, "reason"), field(e, "message"), field(e, "eventTime"))).collect()
}

/// The name of the first Pod the job controller made for Job `id`.
fn pod_of(cluster: &Cluster, namespace: &str, id: &str) -> Option<String> {
    let list = cluster.get_json(&["-n", namespace, "pods", "-l", &format!("job-name={id}")]).ok()?;
    items(&list).first().and_then(|p| get(p, &["metadata", "name"]).and_then(text))
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_job_stuck_pending_is_reported_after_expiry_with_the_schedulers_failed_scheduling_event() {
    let real = Real::new();
    let id = format!("rc-stuck-{}", nonce());
    // A node selector no node matches, so the Pod stays Pending whatever nodes exist.
    let message = real
        .create_job("default-jobspec.message.json", &id, JOB_NAMESPACE)
        .replace(r#""restartPolicy": "Never","#, r#""restartPolicy": "Never", "nodeSelector": {"pool": "rc-nowhere"},"#);
    let agent = real.started(&[]);
    real.push(&message);
    real.wait_job(JOB_NAMESPACE, &id, &agent);
    let pod = within(WAIT, || pod_of(&real.cluster, JOB_NAMESPACE, &id)).expect("the job controller made no Pod");
    let event = within(WAIT, || warnings(&real.cluster, JOB_NAMESPACE, &pod).into_iter().find(|(reason, _, _)| reason == "FailedScheduling"))
        .expect("the scheduler wrote no FailedScheduling event");
    real.check_is_silent(&agent, &id, "2999-01-01T00:00:00Z", "before expires_at nothing is reported");
    real.push(&check_message(&id, JOB_NAMESPACE, &format!("deploy-token-{id}"), "2020-01-01T00:00:00Z"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("job seems to be stuck: "), "{body}");
    // 1.20's scheduler writes through events.k8s.io: only eventTime (microseconds) is set.
    let seconds = event.2.split('.').next().unwrap_or_default();
    assert!(seconds.len() == 19, "the real FailedScheduling event has no eventTime: {event:?}");
    let wanted = format!("{seconds}Z - FailedScheduling - {}", event.1);
    assert!(body.contains(&wanted), "the scheduler's real event ({wanted}) is not in: {body}");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_missing_job_is_reported_past_expiry_and_not_before() {
    let real = Real::new();
    let id = format!("rc-missing-{}", nonce());
    let token = format!("deploy-token-{id}");
    real.orch.expect_deployment(&id, &token);
    let agent = real.started(&[]);
    real.check_is_silent(&agent, &id, "2999-01-01T00:00:00Z", "a missing Job before expires_at is not reported");
    real.push(&check_message(&id, JOB_NAMESPACE, &token, "2020-01-01T00:00:00Z"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("job not found after the expiration time"), "{body}");
    let gets: Vec<u16> = agent_requests(&real.cluster).into_iter().filter(|r| r.0 == "get" && r.2 == id).map(|r| r.4).collect();
    assert_eq!(gets, vec![404, 404], "the API server's own NotFound, twice");
}

/// Deletes a Node however the test ends.
struct DeleteNode<'a>(&'a Cluster, String);

impl Drop for DeleteNode<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&["delete", "node", &self.1, "--wait=false"]);
    }
}

/// A Job of the default JobSpec whose one Pod the real scheduler bound to a Node made for
/// it (Ready, as a kubelet would report it, and tainted so only this Job goes there):
/// the agent, the Job's id and its Pod's name, and the Node, deleted on drop.
fn job_on_its_own_node<'a>(real: &'a Real, what: &str) -> (AgentProcess, String, String, DeleteNode<'a>) {
    let n = nonce();
    let (id, node) = (format!("rc-{what}-{n}"), format!("rc-node-{n}"));
    let node_json = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{node}","labels":{{"pool":"rc-{n}"}}}},"spec":{{"taints":[{{"key":"rc-only","value":"{n}","effect":"NoSchedule"}}]}}}}"#
    );
    real.cluster.kubectl_with_input(&["create", "-f", "-"], Some(&node_json)).unwrap_or_else(|e| panic!("{e}"));
    let guard = DeleteNode(&real.cluster, node.clone());
    let now = kubernetes_agent::time::format_rfc3339(kubernetes_agent::time::now());
    let status = format!(
        r#"{{"status":{{"capacity":{{"cpu":"4","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"4","memory":"8Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#
    );
    real.cluster.must(&["patch", "node", &node, "--subresource=status", "--type=merge", "-p", &status]);
    // The node lifecycle controller's automatic not-ready taint, if it came first.
    let _ = real.cluster.kubectl(&["taint", "node", &node, "node.kubernetes.io/not-ready:NoSchedule-"]);
    let message = real.create_job("default-jobspec.message.json", &id, JOB_NAMESPACE).replace(
        r#""restartPolicy": "Never","#,
        &format!(r#""restartPolicy": "Never", "nodeSelector": {{"pool": "rc-{n}"}}, "tolerations": [{{"key": "rc-only", "operator": "Equal", "value": "{n}", "effect": "NoSchedule"}}],"#),
    );
    let agent = real.started(&[]);
    real.push(&message);
    real.wait_job(JOB_NAMESPACE, &id, &agent);
    let pod = within(WAIT, || pod_of(&real.cluster, JOB_NAMESPACE, &id)).expect("the job controller made no Pod");
    let bound = within(WAIT, || {
        let _ = real.cluster.kubectl(&["taint", "node", &node, "node.kubernetes.io/not-ready:NoSchedule-"]);
        let p = real.cluster.get_json(&["-n", JOB_NAMESPACE, "pod", &pod]).ok()?;
        get(&p, &["spec", "nodeName"]).and_then(text)
    });
    assert_eq!(bound.as_deref(), Some(node.as_str()), "the scheduler never bound the Pod to the test's Node");
    (agent, id, pod, guard)
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_job_whose_pod_a_kubelet_reports_succeeded_is_not_reported() {
    let real = Real::new();
    let (agent, id, pod, _node) = job_on_its_own_node(&real, "succeeded");
    // What a kubelet writes when the container exited 0 (a merge patch replaces the conditions list).
    let now = kubernetes_agent::time::format_rfc3339(kubernetes_agent::time::now());
    let pod_status = format!(
        r#"{{"status":{{"phase":"Succeeded","startTime":"{now}","conditions":[{{"type":"Initialized","status":"True","lastTransitionTime":"{now}","reason":"PodCompleted"}},{{"type":"Ready","status":"False","lastTransitionTime":"{now}","reason":"PodCompleted"}},{{"type":"ContainersReady","status":"False","lastTransitionTime":"{now}","reason":"PodCompleted"}},{{"type":"PodScheduled","status":"True","lastTransitionTime":"{now}"}}],"containerStatuses":[{{"name":"main","ready":false,"restartCount":0,"image":"ghcr.io/humanitec/platform-orchestrator-runner:1.4.0","imageID":"","state":{{"terminated":{{"exitCode":0,"reason":"Completed","startedAt":"{now}","finishedAt":"{now}"}}}}}}]}}}}"#
    );
    real.cluster.must(&["-n", JOB_NAMESPACE, "patch", "pod", &pod, "--subresource=status", "--type=merge", "-p", &pod_status]);
    let succeeded = within(WAIT, || {
        let job = real.cluster.job(JOB_NAMESPACE, &id)?;
        matches!(get(&job, &["status", "succeeded"]), Some(Value::Number(_))).then_some(())
    });
    assert!(succeeded.is_some(), "the job controller never counted the Pod as succeeded");
    real.check_is_silent(&agent, &id, "2020-01-01T00:00:00Z", "a succeeded Job reported itself");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_revoked_token_costs_one_401_and_the_next_create_succeeds_with_the_new_one() {
    let real = Real::new();
    // After another test restarted the API server, the token controller may not be back yet.
    real.cluster.wait_token_controller();
    let n = nonce();
    let agent = real.started(&[]);
    let first = format!("rc-revoke-a-{n}");
    real.push(&real.create_job("default-jobspec.message.json", &first, JOB_NAMESPACE));
    real.wait_job(JOB_NAMESPACE, &first, &agent);
    let (old_secret, old_token) = real.cluster.service_account_token(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT).unwrap();
    real.cluster.must(&["-n", AGENT_NAMESPACE, "delete", "secret", &old_secret]);
    let (new_secret, new_token) = within(WAIT, || real.cluster.service_account_token(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT).filter(|(s, _)| *s != old_secret))
        .expect("the token controller minted no new token Secret");
    assert_ne!(new_token, old_token);
    // The token authenticator looks the Secret up through the API server's cache: bounded wait.
    assert!(eventually(WAIT, || http_code(&real.cluster, &old_token) == 401), "the API server still accepts the revoked token");
    let refused_before = unauthenticated_agent_requests(&real.cluster);
    std::fs::write(&real.token_file, format!("{new_token}\n")).unwrap();
    let second = format!("rc-revoke-b-{n}");
    real.push(&real.create_job("default-jobspec.message.json", &second, JOB_NAMESPACE));
    real.wait_job(JOB_NAMESPACE, &second, &agent);
    let _ = new_secret;
    std::thread::sleep(Duration::from_millis(500));
    assert!(real.orch.results().is_empty(), "nothing lost, nothing reported: {:?}", real.orch.results());
    let refused = unauthenticated_agent_requests(&real.cluster) - refused_before;
    assert_eq!(refused, 1, "exactly one request with the revoked token (the API server's 401), then the new token: {:?}", agent.logs());
    assert_eq!(create_codes(&real.cluster, &second), vec![201], "the create itself went through once");
}

/// Requests from the agent binary (its User-Agent) the API server answered 401: the audit
/// log has no user for them.
fn unauthenticated_agent_requests(cluster: &Cluster) -> usize {
    cluster
        .audit()
        .iter()
        .filter(|e| get(e, &["userAgent"]).and_then(text).is_some_and(|ua| ua.starts_with("kubernetes-agent/")))
        .filter(|e| matches!(get(e, &["responseStatus", "code"]), Some(Value::Number(n)) if n.to_string() == "401"))
        .count()
}

/// The HTTP status the API server gives a request with `token` (curl; bounded).
fn http_code(cluster: &Cluster, token: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert"])
        .arg(&cluster.ca_file)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{}/apis/batch/v1/namespaces/{JOB_NAMESPACE}/jobs", cluster.api_url))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Restarts the API server with its normal flags however the test ends.
struct NormalApiServer<'a>(&'a Cluster);

impl Drop for NormalApiServer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.try_apiserver(&["stop"]).and_then(|()| self.0.try_apiserver(&["start"])) {
            eprintln!("restoring the API server's normal flags failed, later tests will fail: {e}");
        }
    }
}

/// Pushes `count` create-jobs named `<prefix>-<i>`, each retried as the Orchestrator
/// retries a push; returns when each was delivered.
fn burst(real: &Real, prefix: &str, count: usize, mut between: impl FnMut(usize)) -> Vec<(String, Instant)> {
    let mut delivered = Vec::new();
    for i in 0..count {
        between(i);
        let id = format!("{prefix}-{i}");
        let message = real.create_job("default-jobspec.message.json", &id, JOB_NAMESPACE);
        real.push(&message);
        delivered.push((id, Instant::now()));
    }
    delivered
}

fn jobs_with_prefix(cluster: &Cluster, prefix: &str) -> Vec<String> {
    cluster.job_names(JOB_NAMESPACE, "app.kubernetes.io/managed-by=humanitec-kubernetes-agent").into_iter().filter(|n| n.starts_with(prefix)).collect()
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_burst_of_200_against_an_api_server_allowing_one_request_in_flight_makes_every_job_once_and_reports_none() {
    let real = Real::new();
    let _normal = NormalApiServer(&real.cluster);
    real.cluster.apiserver(&["stop"]);
    // API Priority and Fairness (beta, on by default in 1.20) queues instead of refusing;
    // off, the two limits are the classic in-flight caps that answer 429 at once.
    real.cluster.apiserver(&["start", "--max-requests-inflight=1", "--max-mutating-requests-inflight=1", "--enable-priority-and-fairness=false"]);
    let agent = real.started(&[]);
    let prefix = format!("rc-429-{}", nonce());
    let delivered = burst(&real, &prefix, 200, |_| {});
    let all = within(Duration::from_secs(240), || {
        let names = jobs_with_prefix(&real.cluster, &prefix);
        (names.len() >= 200).then_some(names)
    });
    let names = all.unwrap_or_else(|| panic!("{} of 200 Jobs after 4 min: {:?}", jobs_with_prefix(&real.cluster, &prefix).len(), agent.logs()));
    assert_eq!(names.len(), 200);
    assert!(real.orch.results().is_empty(), "none reported as failed: {:?}", real.orch.results());
    let requests = agent_requests(&real.cluster);
    let ours: Vec<_> = requests.iter().filter(|r| r.0 == "create" && r.1 == "jobs").collect();
    let created = ours.iter().filter(|r| r.2.starts_with(&prefix) && r.4 == 201).count();
    let throttled = requests.iter().filter(|r| r.4 == 429).count();
    println!("burst of 200 at max-requests-inflight=1: {created} created, {throttled} answered 429 by the real API server");
    assert_eq!(created, 200, "every Job created exactly once");
    assert!(throttled > 0, "the API server never answered the agent 429: this test tested nothing");
    let _ = delivered;
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn the_api_server_killed_mid_burst_and_back_5_s_later_leaves_every_delivered_create_job_with_one_job() {
    let real = Real::new();
    let _normal = NormalApiServer(&real.cluster);
    let agent = real.started(&[]);
    let prefix = format!("rc-kill-{}", nonce());
    let mut restarter = None;
    burst(&real, &prefix, 60, |i| {
        if i == 20 {
            real.cluster.apiserver(&["kill"]);
            let ctl = real.cluster.apiserver_ctl.clone();
            restarter = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(5));
                Command::new("timeout").arg("90").arg(ctl).arg("start").status().map(|s| s.success()).unwrap_or(false)
            }));
        }
    });
    assert!(restarter.take().unwrap().join().unwrap(), "the API server did not come back");
    let all = within(Duration::from_secs(180), || {
        let names = jobs_with_prefix(&real.cluster, &prefix);
        (names.len() >= 60).then_some(names)
    });
    assert!(all.is_some(), "{} of 60 Jobs: {:?}", jobs_with_prefix(&real.cluster, &prefix).len(), agent.logs());
    assert!(real.orch.results().is_empty(), "an outage is not a deployment's failure: {:?}", real.orch.results());
    for i in 0..60 {
        let codes = create_codes(&real.cluster, &format!("{prefix}-{i}"));
        assert!(codes.iter().filter(|c| **c == 201).count() <= 1, "{prefix}-{i}: {codes:?}");
    }
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn two_replicas_on_the_same_messages_make_one_job_each_and_no_double_report() {
    let real = Real::new();
    let n = nonce();
    let a = real.started(&[]);
    let b = real.spawn(&[]);
    assert!(real.orch.wait_for_polls(RUNNER, 4, WAIT), "both replicas keep two polls open");
    let good = format!("rc-pair-ok-{n}");
    let bad = format!("rc-pair-bad-{n}");
    assert!(real.orch.push_retrying(RUNNER, &real.create_job("default-jobspec.message.json", &good, JOB_NAMESPACE), WAIT) >= 2);
    assert!(real.orch.wait_for_polls(RUNNER, 4, WAIT), "both replicas poll again");
    let invalid = real.create_job("default-jobspec.message.json", &bad, JOB_NAMESPACE).replace(r#""restartPolicy": "Never""#, r#""restartPolicy": "Always""#);
    assert!(real.orch.push_retrying(RUNNER, &invalid, WAIT) >= 2);
    real.wait_job(JOB_NAMESPACE, &good, &a);
    assert!(eventually(WAIT, || real.orch.results().iter().filter(|r| r.deployment == bad).count() >= 2), "{:?} {:?}", a.logs(), b.logs());
    let results = real.orch.results();
    assert_eq!(results.iter().filter(|r| r.status == 204).count(), 1, "one accepted report: {results:?}");
    assert!(results.iter().all(|r| r.deployment == bad && (r.status == 204 || r.status == 409)), "{results:?}");
    assert!(results[0].body.contains("422"), "{}", results[0].body);
    let mut codes = create_codes(&real.cluster, &good);
    codes.sort();
    assert_eq!(codes, vec![201, 409], "one Job, the other replica's create AlreadyExists");
    assert!(real.cluster.job(JOB_NAMESPACE, &bad).is_none());
}

/// One HTTP request with curl (bounded): (status code, body as JSON or null).
fn call(base: &str, ca: &Path, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "20", "-w", "\n%{http_code}", "-X", method, "--cacert"])
        .arg(ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .args(["-H", "Content-Type: application/json", "-H", "Accept: application/json"]);
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    let out = cmd.arg(format!("{base}{path}")).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), json::from_str(body).unwrap_or(Value::Null))
}

/// What of a reply the agent can tell apart: a Status whole (the denied user's name made
/// neutral); of a created Job, what the API server defaulted; of a list, its kind.
fn shape(code: u16, reply: &Value) -> String {
    let kind = get(reply, &["kind"]).and_then(text).unwrap_or_default();
    let described = match kind.as_str() {
        "Status" => json::to_string(reply),
        "Job" => {
            let keys = |path: &[&str]| match get(reply, path) {
                Some(Value::Object(o)) => o.keys().cloned().collect::<Vec<_>>().join(","),
                _ => "-".into(),
            };
            let number = |path: &[&str]| get(reply, path).map(json::to_string).unwrap_or_else(|| "-".into());
            format!(
                "Job labels[{}] selector[{}] template-labels[{}] completions={} parallelism={} backoffLimit={} status={}",
                keys(&["metadata", "labels"]),
                keys(&["spec", "selector", "matchLabels"]),
                keys(&["spec", "template", "metadata", "labels"]),
                number(&["spec", "completions"]),
                number(&["spec", "parallelism"]),
                number(&["spec", "backoffLimit"]),
                number(&["status"]),
            )
        }
        "SelfSubjectAccessReview" => {
            format!("SelfSubjectAccessReview allowed={}", get(reply, &["status", "allowed"]).map(json::to_string).unwrap_or_else(|| "-".into()))
        }
        other => format!("{other} {}", get(reply, &["apiVersion"]).and_then(text).unwrap_or_default()),
    };
    format!("{code} {}", described.replace(AGENT_USER, "USER").replace("system:serviceaccount:agent:agent", "USER"))
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn the_stand_in_answers_the_agents_requests_as_the_real_api_server_does() {
    let real = Real::new();
    let token = std::fs::read_to_string(&real.token_file).unwrap().trim().to_string();
    let stand_in = support::kube::Kube::start("stand-in-token");
    let name = format!("rc-same-{}", nonce());
    let job = |extra: &str| {
        format!(
            r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"name":"{name}"{extra}}},"spec":{{"parallelism":1,"template":{{"metadata":{{"labels":{{"team":"platform"}}}},"spec":{{"restartPolicy":"Never","serviceAccountName":"{JOB_SERVICE_ACCOUNT}","containers":[{{"name":"main","image":"busybox"}}]}}}}}}}}"#
        )
    };
    let jobs = format!("/apis/batch/v1/namespaces/{JOB_NAMESPACE}/jobs");
    let valid = job("");
    let no_image = valid.replace(r#","image":"busybox""#, "").replace(&name, &format!("{name}-x"));
    let always = valid.replace("Never", "Always").replace(&name, &format!("{name}-y"));
    let elsewhere = job(r#","namespace":"other""#).replace(&name, &format!("{name}-z"));
    let reviews = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let review = |verb: &str| {
        format!(
            r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{{"resourceAttributes":{{"namespace":"{JOB_NAMESPACE}","verb":"{verb}","group":"batch","resource":"jobs"}}}}}}"#
        )
    };
    let (may_create, may_delete) = (review("create"), review("delete"));
    stand_in.deny("delete", "jobs");
    let cases: Vec<(&str, &str, String, Option<&str>, bool)> = vec![
        ("create", "POST", jobs.clone(), Some(valid.as_str()), true),
        ("create again", "POST", jobs.clone(), Some(valid.as_str()), true),
        ("no image", "POST", jobs.clone(), Some(no_image.as_str()), true),
        ("restartPolicy Always", "POST", jobs.clone(), Some(always.as_str()), true),
        ("namespace mismatch", "POST", jobs.clone(), Some(elsewhere.as_str()), true),
        ("get missing", "GET", format!("{jobs}/{name}-missing"), None, true),
        ("list pods", "GET", format!("/api/v1/namespaces/{JOB_NAMESPACE}/pods?labelSelector=job-name%3D{name}"), None, true),
        ("list events", "GET", format!("/api/v1/namespaces/{JOB_NAMESPACE}/events?fieldSelector=involvedObject.name%3D{name}%2Ctype%3DWarning"), None, true),
        ("review: may create jobs", "POST", reviews.to_string(), Some(may_create.as_str()), true),
        ("review: may delete jobs (the Role says no; the stand-in is told so)", "POST", reviews.to_string(), Some(may_delete.as_str()), true),
        ("bad token", "GET", format!("{jobs}/{name}"), None, false),
        ("forbidden", "POST", "/apis/batch/v1/namespaces/default/jobs".to_string(), Some(valid.as_str()), true),
    ];
    let mut differences = Vec::new();
    // A body that is not JSON: the reason and the wording up to the decoder's own detail.
    let (real_code, real_reply) = call(&real.cluster.api_url, &real.cluster.ca_file, &token, "POST", &jobs, Some("{"));
    let (ours_code, ours_reply) = call(&stand_in.url(), &certs_dir().join("ca.pem"), "stand-in-token", "POST", &jobs, Some("{"));
    let prefix = |v: &Value| get(v, &["message"]).and_then(text).unwrap_or_default().split("json parse error").next().unwrap_or_default().to_string();
    let reason = |v: &Value| get(v, &["reason"]).and_then(text).unwrap_or_default();
    if (real_code, reason(&real_reply), prefix(&real_reply)) != (ours_code, reason(&ours_reply), prefix(&ours_reply)) {
        differences.push(format!(
            "not JSON:\n  real:     {real_code} {}\n  stand-in: {ours_code} {}",
            json::to_string(&real_reply),
            json::to_string(&ours_reply)
        ));
    }
    for (what, method, path, body, authorised) in &cases {
        if *what == "forbidden" {
            // The stand-in's denials are per verb, not per namespace: this case comes last.
            stand_in.deny("create", "jobs");
        }
        let real_token = if *authorised { token.as_str() } else { "not-a-token" };
        let stand_in_token = if *authorised { "stand-in-token" } else { "not-a-token" };
        let (real_code, real_reply) = call(&real.cluster.api_url, &real.cluster.ca_file, real_token, method, path, *body);
        let (ours_code, ours_reply) = call(&stand_in.url(), &certs_dir().join("ca.pem"), stand_in_token, method, path, *body);
        let (real_shape, ours_shape) = (shape(real_code, &real_reply), shape(ours_code, &ours_reply));
        if real_shape != ours_shape {
            differences.push(format!("{what}:\n  real:     {real_shape}\n  stand-in: {ours_shape}"));
        }
    }
    assert!(differences.is_empty(), "the stand-in disagrees with kube-apiserver {}:\n{}", real.cluster.kubernetes_version, differences.join("\n"));
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_runner_the_kubelet_reports_oom_killed_fails_the_real_job_and_is_reported_with_its_cause() {
    let real = Real::new();
    let (agent, id, pod, _node) = job_on_its_own_node(&real, "oom");
    let now = kubernetes_agent::time::format_rfc3339(kubernetes_agent::time::now());
    let pod_status = format!(
        r#"{{"status":{{"phase":"Failed","startTime":"{now}","conditions":[{{"type":"Ready","status":"False","lastTransitionTime":"{now}","reason":"PodFailed"}},{{"type":"PodScheduled","status":"True","lastTransitionTime":"{now}"}}],"containerStatuses":[{{"name":"main","ready":false,"restartCount":0,"image":"ghcr.io/humanitec/platform-orchestrator-runner:1.4.0","imageID":"","state":{{"terminated":{{"exitCode":137,"reason":"OOMKilled","startedAt":"{now}","finishedAt":"{now}"}}}}}}]}}}}"#
    );
    real.cluster.must(&["-n", JOB_NAMESPACE, "patch", "pod", &pod, "--subresource=status", "--type=merge", "-p", &pod_status]);
    // The real job controller, not the test, decides the Job failed (backoffLimit 0).
    let failed = within(WAIT, || {
        let job = real.cluster.job(JOB_NAMESPACE, &id)?;
        matches!(get(&job, &["status", "failed"]), Some(Value::Number(_))).then_some(())
    });
    assert!(failed.is_some(), "the job controller never counted the Pod as failed");
    real.push(&check_message(&id, JOB_NAMESPACE, &format!("deploy-token-{id}"), "2999-01-01T00:00:00Z"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("the runner Job failed before reporting a result: the runner container 'main' was OOM-killed (exit 137)"), "{body}");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_pod_the_real_scheduler_cannot_place_is_reported_after_the_startup_grace_before_expiry() {
    let real = Real::new();
    let id = format!("rc-unschedulable-{}", nonce());
    let message = real
        .create_job("default-jobspec.message.json", &id, JOB_NAMESPACE)
        .replace(r#""restartPolicy": "Never","#, r#""restartPolicy": "Never", "nodeSelector": {"pool": "rc-nowhere"},"#);
    let agent = real.started(&[("STARTUP_GRACE", "2s")]);
    real.push(&message);
    real.wait_job(JOB_NAMESPACE, &id, &agent);
    let pod = within(WAIT, || pod_of(&real.cluster, JOB_NAMESPACE, &id)).expect("the job controller made no Pod");
    let unschedulable = within(WAIT, || {
        let p = real.cluster.get_json(&["-n", JOB_NAMESPACE, "pod", &pod]).ok()?;
        json::to_string(&p).contains(r#""reason":"Unschedulable""#).then_some(())
    });
    assert!(unschedulable.is_some(), "the scheduler never marked the Pod Unschedulable");
    std::thread::sleep(Duration::from_secs(3));
    real.push(&check_message(&id, JOB_NAMESPACE, &format!("deploy-token-{id}"), "2999-01-01T00:00:00Z"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("job seems to be stuck: ") && body.contains(" - Unschedulable - no node can run the runner pod ("), "{body}");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_job_past_its_active_deadline_is_failed_by_the_real_job_controller_and_reported_with_its_cause() {
    let real = Real::new();
    let id = format!("rc-deadline-{}", nonce());
    let message = real
        .create_job("default-jobspec.message.json", &id, JOB_NAMESPACE)
        .replace(r#""backoffLimit": 0,"#, r#""backoffLimit": 0, "activeDeadlineSeconds": 3,"#)
        .replace(r#""restartPolicy": "Never","#, r#""restartPolicy": "Never", "nodeSelector": {"pool": "rc-nowhere"},"#);
    assert!(message.contains(r#""activeDeadlineSeconds": 3"#), "the golden JobSpec changed shape: {message}");
    let agent = real.started(&[]);
    real.push(&message);
    real.wait_job(JOB_NAMESPACE, &id, &agent);
    let failed = within(Duration::from_secs(60), || {
        let job = real.cluster.job(JOB_NAMESPACE, &id)?;
        json::to_string(&job).contains(r#""reason":"DeadlineExceeded""#).then_some(())
    });
    assert!(failed.is_some(), "the job controller never failed the Job at its deadline");
    real.push(&check_message(&id, JOB_NAMESPACE, &format!("deploy-token-{id}"), "2999-01-01T00:00:00Z"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("the Job ran past its activeDeadlineSeconds of 3 s and Kubernetes stopped it (DeadlineExceeded"), "{body}");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_runner_pod_the_kubelet_reports_evicted_fails_the_real_job_and_is_reported_with_the_eviction() {
    let real = Real::new();
    let (agent, id, pod, _node) = job_on_its_own_node(&real, "evicted");
    let now = kubernetes_agent::time::format_rfc3339(kubernetes_agent::time::now());
    // What a kubelet writes when it evicts a pod under node pressure.
    let pod_status = format!(
        r#"{{"status":{{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: memory. Container main was using 3Gi, which exceeds its request of 1Gi.","startTime":"{now}"}}}}"#
    );
    real.cluster.must(&["-n", JOB_NAMESPACE, "patch", "pod", &pod, "--subresource=status", "--type=merge", "-p", &pod_status]);
    let failed = within(WAIT, || {
        let job = real.cluster.job(JOB_NAMESPACE, &id)?;
        matches!(get(&job, &["status", "failed"]), Some(Value::Number(_))).then_some(())
    });
    assert!(failed.is_some(), "the job controller never counted the evicted Pod as failed");
    real.push(&check_message(&id, JOB_NAMESPACE, &format!("deploy-token-{id}"), "2999-01-01T00:00:00Z"));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("the runner pod was evicted (The node was low on resource: memory."), "{body}");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_seccomp_annotation_the_real_api_server_turns_into_an_unconfined_container_is_refused_at_restricted() {
    let real = Real::new();
    // Every field passes restricted: the pod says RuntimeDefault and `main` inherits it. The
    // deprecated annotation says `main` is unconfined, and 1.20 copies it into the field.
    let hostile = |id: &str| {
        let message = real.create_job("default-jobspec.message.json", id, JOB_NAMESPACE);
        let edited = message.replace("\"seccompProfile\": {\n                \"type\": \"RuntimeDefault\"\n              },", "").replace(
            "\"template\": {\n      \"spec\": {",
            r#""template": {"metadata": {"annotations": {"container.seccomp.security.alpha.kubernetes.io/main": "unconfined"}},
                  "spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},"#,
        );
        assert_eq!(edited.matches("seccompProfile").count(), 1, "the fixture changed: {edited}");
        edited
    };
    // The premise, with the agent's checks off: the pod the job controller makes runs `main` unconfined.
    let premise = format!("rc-seccomp-premise-{}", nonce());
    let open = real.started(&[("JOB_POD_SECURITY", "privileged")]);
    real.push(&hostile(&premise));
    real.wait_job(JOB_NAMESPACE, &premise, &open);
    drop(open);
    let pod = within(WAIT, || {
        let list = real.cluster.get_json(&["-n", JOB_NAMESPACE, "pods", "-l", &format!("job-name={premise}")]).ok()?;
        items(&list).into_iter().next()
    })
    .expect("the job controller made no Pod");
    let containers = match get(&pod, &["spec", "containers"]) {
        Some(Value::Array(c)) => c.clone(),
        other => panic!("a Pod without containers: {other:?}"),
    };
    assert_eq!(get(&containers[0], &["securityContext", "seccompProfile", "type"]).and_then(text).as_deref(), Some("Unconfined"));
    assert!(eventually(HOLD * 3, || real.orch.open_polls(RUNNER) == 0));
    // At restricted, the agent refuses it, says why, and sends nothing.
    let id = format!("rc-seccomp-{}", nonce());
    let agent = real.started(&[("JOB_POD_SECURITY", "restricted")]);
    real.push(&hostile(&id));
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("check 'seccomp'") && body.contains("container.seccomp.security.alpha.kubernetes.io/main is 'unconfined'"), "{body}");
    assert!(real.cluster.job(JOB_NAMESPACE, &id).is_none());
    assert!(create_codes(&real.cluster, &id).is_empty(), "the API server's audit log");
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_jobspec_with_its_own_selector_is_refused_and_the_ownerless_pod_it_matches_survives() {
    let real = Real::new();
    let orphan = format!("rc-orphan-{}", nonce());
    // A pod nobody owns (kubectl run, a debugging session) in the runner's job namespace.
    real.cluster.must(&["-n", JOB_NAMESPACE, "run", &orphan, "--image=x", "--restart=Never", &format!("--labels=app={orphan}")]);
    let id = format!("rc-selector-{}", nonce());
    let message = real.create_job("default-jobspec.message.json", &id, JOB_NAMESPACE);
    let hostile = message
        .replace(r#""parallelism": 1,"#, &format!(r#""parallelism": 0, "manualSelector": true, "selector": {{"matchLabels": {{"app": "{orphan}"}}}},"#))
        .replace("\"template\": {\n      \"spec\": {", &format!(r#""template": {{"metadata": {{"labels": {{"app": "{orphan}"}}}}, "spec": {{"#));
    assert_eq!(hostile.matches(&orphan).count(), 2, "the fixture changed: {hostile}");
    let agent = real.started(&[]);
    real.push(&hostile);
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("'job-selector'") && body.contains("manualSelector"), "{body}");
    assert!(real.cluster.job(JOB_NAMESPACE, &id).is_none());
    // The job controller acts within a second or two of a Job's creation; give it five.
    std::thread::sleep(Duration::from_secs(5));
    assert!(real.cluster.get_json(&["-n", JOB_NAMESPACE, "pod", &orphan]).is_ok(), "the ownerless pod was deleted");
    let _ = real.cluster.kubectl(&["-n", JOB_NAMESPACE, "delete", "pod", &orphan, "--wait=false"]);
}

/// Creates the Job `body` in the job namespace straight, with the agent's token (no agent
/// in between), and returns the API server's reply; it must be 201.
fn post_job_as_agent(real: &Real, body: &str) -> Value {
    let token = std::fs::read_to_string(&real.token_file).unwrap().trim().to_string();
    let (code, reply) =
        call(&real.cluster.api_url, &real.cluster.ca_file, &token, "POST", &format!("/apis/batch/v1/namespaces/{JOB_NAMESPACE}/jobs"), Some(body));
    assert_eq!(code, 201, "{}", json::to_string(&reply));
    reply
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn the_real_api_server_matches_keys_exactly_and_takes_the_last_of_a_repeated_key() {
    // Settles what the Pod Security checks assume of the reader on the other side. The agent
    // sends the tree it checked (one value per key), so the repeated key only shows the
    // API server's own reading; the miscased ones are refused by the checks all the same.
    let real = Real::new();
    let name = format!("rc-keys-{}", nonce());
    let body = format!(
        r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"name":"{name}"}},"Spec":{{"parallelism":3}},"spec":{{"template":{{"spec":{{"restartPolicy":"Never","HostPID":true,"hostIPC":true,"hostIPC":false,"serviceAccountName":"{JOB_SERVICE_ACCOUNT}","containers":[{{"name":"main","image":"busybox","securityContext":{{"Privileged":true}}}}]}}}}}}}}"#
    );
    let job = post_job_as_agent(&real, &body);
    let pod = get(&job, &["spec", "template", "spec"]).cloned().unwrap_or(Value::Null);
    assert!(get(&pod, &["hostPID"]).is_none(), "HostPID was read as hostPID: {}", json::to_string(&pod));
    assert!(get(&pod, &["hostIPC"]).is_none(), "the first of two hostIPC keys was kept: {}", json::to_string(&pod));
    assert_eq!(get(&job, &["spec", "parallelism"]).map(json::to_string).as_deref(), Some("1"), "Spec was read as spec");
    let Some(Value::Array(containers)) = get(&pod, &["containers"]) else { panic!("no containers: {}", json::to_string(&pod)) };
    assert!(get(&containers[0], &["securityContext", "privileged"]).is_none(), "Privileged was read as privileged");
    let _ = real.cluster.kubectl(&["-n", JOB_NAMESPACE, "delete", "job", &name, "--wait=false"]);
}

#[test]
#[ignore = "needs a control plane: run tests/real-cluster"]
fn a_jobspec_asking_for_system_node_critical_priority_is_refused() {
    let real = Real::new();
    // The premise: posted straight, such a Job's pod outranks every workload of the cluster.
    let direct = format!("rc-priority-premise-{}", nonce());
    let body = format!(
        r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"name":"{direct}"}},"spec":{{"template":{{"spec":{{"priorityClassName":"system-node-critical","restartPolicy":"Never","serviceAccountName":"{JOB_SERVICE_ACCOUNT}","containers":[{{"name":"main","image":"busybox"}}]}}}}}}}}"#
    );
    post_job_as_agent(&real, &body);
    let priority = within(WAIT, || {
        let list = real.cluster.get_json(&["-n", JOB_NAMESPACE, "pods", "-l", &format!("job-name={direct}")]).ok()?;
        items(&list).first().and_then(|p| get(p, &["spec", "priority"]).map(json::to_string))
    });
    assert_eq!(priority.as_deref(), Some("2000001000"), "the job controller's pod");
    let _ = real.cluster.kubectl(&["-n", JOB_NAMESPACE, "delete", "job", &direct, "--wait=false"]);
    // Through the agent: refused, reported, nothing sent.
    let id = format!("rc-priority-{}", nonce());
    let message = real
        .create_job("default-jobspec.message.json", &id, JOB_NAMESPACE)
        .replace(r#""restartPolicy": "Never","#, r#""restartPolicy": "Never", "priorityClassName": "system-node-critical","#);
    assert!(message.contains("system-node-critical"), "the fixture changed");
    let agent = real.started(&[]);
    real.push(&message);
    let body = within(WAIT, || real.reports(&id).pop()).unwrap_or_else(|| panic!("nothing reported: {:?}", agent.logs()));
    assert!(body.contains("'priority-class'") && body.contains("system-node-critical"), "{body}");
    assert!(real.cluster.job(JOB_NAMESPACE, &id).is_none());
    assert!(create_codes(&real.cluster, &id).is_empty(), "the API server's audit log");
}
