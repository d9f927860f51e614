//! Status checks that tell the Orchestrator the truth, end to end against the stand-ins:
//! Jobs that failed without their runner reporting, and pods that cannot start, reported
//! with their cause; transient states and `STARTUP_GRACE=off` left as upstream leaves them.

use crate::support;

use std::time::Duration;

use kubernetes_agent::time::{format_rfc3339, now};
use miniserde::json::Value;
use support::agent::{check_message, eventually, World};

const HOLD: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);
const FUTURE: &str = "2099-01-01T00:00:00Z";
const PAST: &str = "2020-01-01T00:00:00Z";

fn json(text: &str) -> Value {
    miniserde::json::from_str(text).unwrap_or_else(|_| panic!("test JSON: {text}"))
}

/// Puts a Job `id` in `jobs` with `status`, and its pods, into the stand-in.
fn cluster(world: &World, id: &str, status: &str, pods: &[String]) {
    let mut s = world.kube.state.lock().unwrap();
    let job = json(&format!(
        r#"{{"metadata":{{"name":"{id}","namespace":"jobs","creationTimestamp":"2026-11-27T00:00:00Z"}},"spec":{{"activeDeadlineSeconds":600}},"status":{status}}}"#
    ));
    s.jobs.insert(("jobs".into(), id.into()), job);
    s.pods.extend(pods.iter().map(|p| json(p)));
}

/// A pod of Job `id`, created `age` seconds ago, with `status`.
fn pod(id: &str, age: i64, spec: &str, status: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"{id}-abcde","namespace":"jobs","labels":{{"job-name":"{id}"}},"creationTimestamp":"{}"}},"spec":{spec},"status":{status}}}"#,
        format_rfc3339(now() - age)
    )
}

fn report(world: &World, id: &str) -> Option<String> {
    world.orch.results().into_iter().find(|r| r.deployment == id).map(|r| r.body)
}

fn check(world: &World, id: &str, expires_at: &str) {
    world.orch.expect_deployment(id, &format!("deploy-token-{id}"));
    world.push(&check_message(id, "jobs", &format!("deploy-token-{id}"), expires_at));
}

const MAIN_1GI: &str = r#"{"containers":[{"name":"main","image":"registry.internal/m/runner:1","resources":{"limits":{"memory":"1Gi"}}}]}"#;

#[test]
fn failed_jobs_are_reported_with_their_cause_before_expiry() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    let failed = r#"{"failed":1,"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}"#;
    cluster(
        &world,
        "d-oom",
        failed,
        &[pod(
            "d-oom",
            300,
            MAIN_1GI,
            r#"{"phase":"Failed","containerStatuses":[{"name":"main","state":{"terminated":{"exitCode":137,"reason":"OOMKilled"}}}]}"#,
        )],
    );
    cluster(
        &world,
        "d-evicted",
        failed,
        &[pod("d-evicted", 300, MAIN_1GI, r#"{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: memory."}"#)],
    );
    cluster(
        &world,
        "d-late",
        r#"{"conditions":[{"type":"Failed","status":"True","reason":"DeadlineExceeded","message":"Job was active longer than specified deadline"}]}"#,
        &[],
    );
    for id in ["d-oom", "d-evicted", "d-late"] {
        check(&world, id, FUTURE);
    }
    assert!(eventually(WAIT, || world.orch.results().len() == 3), "{:?}", agent.logs());
    assert!(report(&world, "d-oom")
        .unwrap()
        .contains("the runner container 'main' was OOM-killed (exit 137) with a 1Gi memory limit; raise resources.limits.memory"));
    assert!(report(&world, "d-evicted").unwrap().contains("the runner pod was evicted (The node was low on resource: memory.)"));
    assert!(report(&world, "d-late").unwrap().contains("activeDeadlineSeconds of 600 s"));
    // A Job that succeeded is still not the agent's to report.
    cluster(&world, "d-ok", r#"{"succeeded":1}"#, &[]);
    check(&world, "d-ok", PAST);
    assert!(eventually(WAIT, || world.kube.seen().iter().any(|s| s.path.ends_with("/jobs/d-ok"))));
    std::thread::sleep(Duration::from_millis(300));
    assert!(report(&world, "d-ok").is_none(), "a succeeded Job is reported");
}

#[test]
fn a_pod_that_cannot_pull_its_image_is_reported_after_the_grace_and_not_before() {
    let world = World::new(HOLD);
    let agent = world.started(&[("STARTUP_GRACE", "60s")]);
    let pulling = r#"{"phase":"Pending","containerStatuses":[{"name":"main","state":{"waiting":{"reason":"ImagePullBackOff","message":"Back-off pulling image \"registry.internal/m/runner:1\""}}}]}"#;
    cluster(&world, "d-young", r#"{"active":1}"#, &[pod("d-young", 10, MAIN_1GI, pulling)]);
    cluster(&world, "d-old", r#"{"active":1}"#, &[pod("d-old", 120, MAIN_1GI, pulling)]);
    check(&world, "d-young", FUTURE);
    check(&world, "d-old", FUTURE);
    assert!(eventually(WAIT, || report(&world, "d-old").is_some()), "{:?}", agent.logs());
    let body = report(&world, "d-old").unwrap();
    assert!(body.contains("job seems to be stuck: 20"), "upstream's shape: {body}");
    assert!(body.contains("- ImagePullBackOff - the image 'registry.internal/m/runner:1' of container 'main' cannot be pulled"), "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(report(&world, "d-young").is_none(), "a pod younger than the grace is not reported");
}

#[test]
fn a_missing_secret_a_failed_mount_and_no_fitting_node_are_each_reported_early() {
    let world = World::new(HOLD);
    let agent = world.started(&[("STARTUP_GRACE", "30s")]);
    let config_error = r#"{"phase":"Pending","containerStatuses":[{"name":"main","state":{"waiting":{"reason":"CreateContainerConfigError","message":"secret \"db-creds\" not found"}}}]}"#;
    cluster(&world, "d-secret", r#"{"active":1}"#, &[pod("d-secret", 120, MAIN_1GI, config_error)]);
    let creating = r#"{"phase":"Pending","containerStatuses":[{"name":"main","state":{"waiting":{"reason":"ContainerCreating"}}}]}"#;
    cluster(&world, "d-mount", r#"{"active":1}"#, &[pod("d-mount", 120, MAIN_1GI, creating)]);
    world.kube.add_event(
        "jobs",
        ("Pod", "d-mount-abcde"),
        "Warning",
        "FailedMount",
        r#"MountVolume.SetUp failed for volume "creds" : secret "creds" not found"#,
        "2026-12-01T00:00:00Z",
    );
    let unschedulable = r#"{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/3 nodes are available: 3 Insufficient memory."}]}"#;
    cluster(&world, "d-nodes", r#"{"active":1}"#, &[pod("d-nodes", 120, MAIN_1GI, unschedulable)]);
    for id in ["d-secret", "d-mount", "d-nodes"] {
        check(&world, id, FUTURE);
    }
    assert!(eventually(WAIT, || world.orch.results().len() == 3), "{:?}", agent.logs());
    assert!(report(&world, "d-secret").unwrap().contains("the Secret 'db-creds' it refers to does not exist"));
    assert!(report(&world, "d-mount").unwrap().contains("volume 'creds' of the runner pod cannot be mounted"));
    assert!(report(&world, "d-nodes").unwrap().contains("0/3 nodes are available: 3 Insufficient memory."));
}

#[test]
fn a_pod_still_creating_its_containers_is_never_reported_early() {
    let world = World::new(HOLD);
    let agent = world.started(&[("STARTUP_GRACE", "30s")]);
    let creating = r#"{"phase":"Pending","containerStatuses":[{"name":"main","state":{"waiting":{"reason":"ContainerCreating"}}}]}"#;
    cluster(&world, "d-slow", r#"{"active":1}"#, &[pod("d-slow", 600, MAIN_1GI, creating)]);
    check(&world, "d-slow", FUTURE);
    assert!(eventually(WAIT, || world.kube.seen().iter().any(|s| s.path.ends_with("/events"))), "the agent looks for mount failures: {:?}", agent.logs());
    std::thread::sleep(Duration::from_millis(500));
    assert!(world.orch.results().is_empty(), "{:?}", world.orch.results());
}

#[test]
fn with_startup_grace_off_a_blocked_pod_waits_for_expiry_and_is_reported_as_upstream_does() {
    let world = World::new(HOLD);
    let agent = world.started(&[("STARTUP_GRACE", "off")]);
    let pulling = r#"{"phase":"Pending","containerStatuses":[{"name":"main","state":{"waiting":{"reason":"ImagePullBackOff","message":"Back-off"}}}]}"#;
    cluster(&world, "d-up", r#"{"active":1}"#, &[pod("d-up", 3_600, MAIN_1GI, pulling)]);
    world.kube.add_event("jobs", ("Pod", "d-up-abcde"), "Warning", "Failed", "Error: ImagePullBackOff", "2026-12-01T00:00:00Z");
    check(&world, "d-up", FUTURE);
    assert!(eventually(WAIT, || world.kube.seen().iter().any(|s| s.path.ends_with("/jobs/d-up"))));
    std::thread::sleep(Duration::from_millis(500));
    assert!(world.orch.results().is_empty(), "not before expires_at with the grace off");
    assert_eq!(world.kube.seen().len(), 1, "one request for a check before expiry, as upstream: {:?}", world.kube.seen());
    check(&world, "d-up", PAST);
    assert!(eventually(WAIT, || report(&world, "d-up").is_some()), "{:?}", agent.logs());
    let body = report(&world, "d-up").unwrap();
    assert!(body.contains("job seems to be stuck: 2026-12-01T00:00:00Z - Failed - Error: ImagePullBackOff"), "exactly upstream's message: {body}");
    assert!(!body.contains("cannot be pulled"), "{body}");
}

#[test]
fn a_report_refused_with_a_4xx_is_not_retried_and_a_busy_orchestrator_is_retried_after_its_retry_after() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    world.orch.fail_next_results(403, None, 1);
    check(&world, "d-gone", PAST);
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_failure_reports_total{result=\"failed\"}") == 1.0), "{:?}", agent.logs());
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(world.orch.results().len(), 1, "a 403 is final: {:?}", world.orch.results());
    assert!(agent.logs().iter().any(|l| l.contains("HTTP 403") && l.contains("not retried")), "{:?}", agent.logs());
    world.orch.fail_next_results(503, Some(1), 1);
    let asked = std::time::Instant::now();
    check(&world, "d-busy", PAST);
    assert!(eventually(WAIT, || report(&world, "d-busy").is_some() && world.orch.results().iter().filter(|r| r.deployment == "d-busy").count() == 2));
    assert!(asked.elapsed() >= Duration::from_millis(900), "Retry-After: 1 is honoured");
    assert_eq!(world.orch.results().last().unwrap().status, 204);
}

#[test]
fn a_poll_that_cannot_reach_the_orchestrator_warns_naming_the_settings_to_check() {
    let world = World::new(HOLD);
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("https://{closed}");
    let agent = world.spawn(&[("REMOTE_URL", &url)]);
    let line = agent.wait_for_log("failed: connection failed", WAIT);
    let line = line.unwrap_or_else(|| panic!("no warning about the unreachable Orchestrator: {:?}", agent.logs()));
    assert!(line.contains(&format!("poll to {url} failed")), "{line}");
    assert!(line.contains("check REMOTE_URL, HTTPS_PROXY / NO_PROXY and REMOTE_CA_FILE; 'kubernetes-agent check' tests the connection"), "{line}");
}

#[test]
fn a_poll_answered_with_retry_after_waits_that_long_and_a_4xx_poll_counts_as_a_client_error() {
    use support::orchestrator::PollFault;
    let world = World::new(HOLD);
    world.orch.fault_next_polls(&[PollFault::StatusRetryAfter(503, 3), PollFault::Status(403)]);
    let agent = world.spawn(&[]);
    assert!(
        agent
            .wait_for_log("poll answered HTTP 503", WAIT)
            .is_some_and(|l| l.contains("retrying in 3000 ms") && l.contains("check that REMOTE_URL is the Orchestrator API")),
        "{:?}",
        agent.logs()
    );
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_polls_total{outcome=\"client_error\"}") == 1.0), "{:?}", agent.logs());
    assert_eq!(agent.metric("kubernetes_agent_polls_total{outcome=\"server_error\"}"), 1.0);
    world.push(&check_message("d-after", "jobs", "deploy-token-d-after", FUTURE));
}

#[test]
fn a_stuck_job_with_hundreds_of_pods_costs_a_bounded_number_of_requests_a_check() {
    // A JobSpec with `parallelism: 300` whose pods never start, from an API server that
    // ignores the pod list's `limit` (as the stand-in does): the check must not list events
    // once per pod (600 requests every 30 s, each retried while the server is busy).
    let world = World::new(HOLD);
    let agent = world.started(&[("STARTUP_GRACE", "30s")]);
    let creating = r#"{"phase":"Pending","containerStatuses":[{"name":"main","state":{"waiting":{"reason":"ContainerCreating"}}}]}"#;
    let pods: Vec<String> = (0..300).map(|i| pod("d-wide", 600, MAIN_1GI, creating).replace("d-wide-abcde", &format!("d-wide-{i:05}"))).collect();
    cluster(&world, "d-wide", r#"{"active":300}"#, &pods);
    world.kube.add_event("jobs", ("Pod", "d-wide-00000"), "Warning", "FailedScheduling", "0/3 nodes are available", "2026-12-01T00:00:00Z");
    check(&world, "d-wide", PAST);
    assert!(eventually(WAIT, || report(&world, "d-wide").is_some()), "{:?}", agent.logs());
    assert!(report(&world, "d-wide").unwrap().contains("2026-12-01T00:00:00Z - FailedScheduling - 0/3 nodes are available"));
    let lists = world.kube.seen().iter().filter(|s| s.path.contains("/events")).count();
    assert!(lists <= 2 * kubernetes_agent::agent::handle::MAX_PODS_EXAMINED + 1, "{lists} event lists for one status check");
}
