//! Hostile input to the agent, end to end: the real binary against the stand-ins, fed
//! what a compromised or buggy Orchestrator (or a peer echoing what it was sent) could
//! send. Each test is named after the defect it keeps out.

use crate::support;

use std::time::{Duration, Instant};

use miniserde::json::Value;
use support::agent::{check_message, create_job_message, eventually, World, RUNNER};

const HOLD: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn deep_nesting_in_a_create_job_is_reported_and_the_agent_keeps_serving() {
    let world = World::new(HOLD);
    let mut agent = world.started(&[]);
    // About 12 KB: 6,000 nested arrays aborted the agent (stack overflow) before.
    world.push(&world.create_job_message_with("d-deep", "jobs", &format!("{}{}", "[".repeat(6_000), "]".repeat(6_000))));
    assert!(eventually(WAIT, || world.orch.results().iter().any(|r| r.deployment == "d-deep")), "{:?}", agent.logs());
    let report = world.orch.results().into_iter().find(|r| r.deployment == "d-deep").unwrap();
    assert!(report.body.contains("nests deeper than 64 levels"), "{}", report.body);
    assert_eq!(report.token, "deploy-token-d-deep");
    // About 1 MB nested 500,000 deep: it survived before, but peaked at 100 MB.
    world.push(&world.create_job_message_with("d-abyss", "jobs", &format!("{}{}", "[".repeat(500_000), "]".repeat(500_000))));
    assert!(eventually(WAIT, || world.orch.results().iter().any(|r| r.deployment == "d-abyss")), "{:?}", agent.logs());
    assert!(agent.wait_exit(Duration::from_millis(100)).is_none(), "the agent died: {:?}", agent.logs());
    assert!(agent.peak_rss_kib() < 16 << 10, "peak RSS {} KiB", agent.peak_rss_kib());
    world.push(&world.create_job_message("d-after", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-after").is_some()), "the next message must still be served: {:?}", agent.logs());
    assert!(world.kube.job("jobs", "d-deep").is_none() && world.kube.job("jobs", "d-abyss").is_none());
}

#[test]
fn a_check_job_status_whose_names_carry_a_path_or_a_query_never_reaches_the_api_server() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    let past = "2020-01-01T00:00:00Z";
    for (id, ns) in [
        ("x/../../../../../api/v1/namespaces/kube-system/secrets/admin-token", "jobs"),
        ("x?watch=true&timeoutSeconds=3600", "jobs"),
        ("d-1", "kube-system/secrets"),
        ("d-1", ".."),
    ] {
        world.push(&check_message(id, ns, "deploy-token-x", past));
    }
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_messages_total{action=\"invalid\"}") == 4.0), "{:?}", agent.logs());
    assert!(world.kube.seen().is_empty(), "requests reached the API server: {:?}", world.kube.seen());
    assert!(agent.logs().iter().any(|l| l.contains("field 'job_id'") && l.contains("is not a DNS-1123 label")), "{:?}", agent.logs());
    // Still serving, and a valid check does reach it.
    world.push(&check_message("d-missing", "jobs", "deploy-token-x", past));
    assert!(eventually(WAIT, || !world.kube.seen().is_empty()));
    assert!(world.kube.seen().iter().all(|s| s.path == "/apis/batch/v1/namespaces/jobs/jobs/d-missing"), "{:?}", world.kube.seen());
}

#[test]
fn a_check_job_status_outside_job_namespaces_reads_and_forwards_nothing_from_there() {
    let world = World::new(HOLD);
    let agent = world.started(&[("JOB_NAMESPACES", "jobs")]);
    {
        let mut s = world.kube.state.lock().unwrap();
        let job: Value = miniserde::json::from_str(r#"{"metadata":{"name":"d-7","namespace":"kube-system"},"status":{}}"#).unwrap();
        s.jobs.insert(("kube-system".into(), "d-7".into()), job);
    }
    world.kube.add_pod("kube-system", "d-7", "d-7-abcde", "Pending");
    world.kube.add_event("kube-system", ("Pod", "d-7-abcde"), "Warning", "Leak", "kube-system internals: admin-token mounted", "2026-11-27T00:00:00Z");
    world.orch.expect_deployment("d-7", "deploy-token-d-7");
    world.push(&check_message("d-7", "kube-system", "deploy-token-d-7", "2020-01-01T00:00:00Z"));
    assert!(agent.wait_for_log("status check of Job kube-system/d-7 skipped", WAIT).is_some(), "{:?}", agent.logs());
    assert!(world.kube.seen().is_empty(), "{:?}", world.kube.seen());
    assert!(world.orch.results().is_empty(), "events of another namespace were forwarded: {:?}", world.orch.results());
}

#[test]
fn an_empty_service_account_name_beside_the_deprecated_field_cannot_slip_past_the_allow_list() {
    let world = World::new(HOLD);
    let agent = world.started(&[("JOB_SERVICE_ACCOUNTS", "default")]);
    world.orch.expect_deployment("d-sa", "deploy-token-d-sa");
    let spec = r#"{"template":{"spec":{"serviceAccountName":"","serviceAccount":"admin","restartPolicy":"Never","containers":[{"name":"main","image":"ghcr.io/humanitec/runner:1"}]}}}"#;
    world.push(&format!(r#"{{"action":"create-job","job_id":"d-sa","namespace":"jobs","configuration":{spec},"deployment_token":"deploy-token-d-sa"}}"#));
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let body = &world.orch.results()[0].body;
    assert!(body.contains("service-account-allow-list") && body.contains("'admin'"), "{body}");
    assert!(world.kube.job("jobs", "d-sa").is_none());
    assert!(world.kube.seen().iter().all(|s| s.method != "POST"), "nothing is sent to Kubernetes");
}

#[test]
fn a_flood_of_large_messages_against_a_stalled_api_server_stays_bounded_and_every_one_becomes_its_job_once() {
    const N: usize = 400;
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    let baseline = agent.rss_kib();
    world.kube.close_gate();
    // Distinct 60 KB create-jobs: before, every one was queued in memory (196 MB for 3,000).
    let messages: Vec<String> =
        (0..N).map(|i| world.create_job_message_with(&format!("d-flood-{i}"), "jobs", &format!("\"{}\"", "p".repeat(60 << 10)))).collect();
    let (paused, held, rss, jobs_while_stalled, delivered) = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let mut delivered = 0;
            let started = Instant::now();
            for m in &messages {
                // The Orchestrator retries a push for up to 120 s; here 60 s is plenty.
                if world.orch.push_retrying(RUNNER, m, Duration::from_secs(60)) > 0 {
                    delivered += 1;
                }
                if started.elapsed() > Duration::from_secs(90) {
                    break;
                }
            }
            delivered
        });
        // The polls pause once the held messages reach their budget.
        let paused = eventually(Duration::from_secs(30), || agent.metric("kubernetes_agent_poll_pauses_total") >= 1.0);
        let held = agent.metric("kubernetes_agent_held_message_bytes");
        let rss = agent.rss_kib();
        let jobs_while_stalled = world.kube.job_names().len();
        world.kube.open_gate();
        let delivered = handle.join().unwrap();
        (paused, held, rss, jobs_while_stalled, delivered)
    });
    assert!(paused, "the polls never paused: {:?}", agent.logs().iter().rev().take(5).collect::<Vec<_>>());
    assert!(held < (12 << 20) as f64, "held {held} bytes");
    assert!(rss < baseline + (24 << 10), "RSS {rss} KiB while stalled (baseline {baseline} KiB)");
    assert_eq!(jobs_while_stalled, 0);
    assert_eq!(delivered, N, "every push must get through once the API server answers");
    assert!(eventually(Duration::from_secs(60), || world.kube.job_names().len() == N), "{} of {N} Jobs", world.kube.job_names().len());
    let creates = world.kube.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(creates, N, "each message became exactly one create");
    assert!(world.orch.results().is_empty(), "{:?}", world.orch.results().first());
}

#[test]
fn secrets_a_peer_echoes_never_reach_the_log_or_the_report_and_remote_url_userinfo_is_hidden() {
    let world = World::new(HOLD);
    let url = world.orch.url().replacen("https://", "https://runner:pa55w0rd-in-url@", 1);
    let agent = world.started(&[("REMOTE_URL", &url), ("LOG_LEVEL", "debug")]);
    world.kube.echo_next_create(422);
    world.push(&world.create_job_message("d-echo", "jobs"));
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let report = world.orch.results()[0].body.clone();
    assert!(report.contains("<redacted>"), "the echo is reported, scrubbed: {report}");
    world.orch.set_down(Some(503));
    assert!(agent.wait_for_log("poll answered HTTP 503", WAIT).is_some(), "{:?}", agent.logs());
    world.orch.set_down(None);
    let logs = agent.logs().join("\n");
    assert!(logs.contains("Job.batch is invalid"), "the 422 itself is logged: {logs}");
    for secret in ["job-secret-token-d-echo", "deploy-token-d-echo", "pa55w0rd-in-url"] {
        assert!(!logs.contains(secret), "{secret} leaked into the log:\n{logs}");
        assert!(!report.contains(secret), "{secret} leaked into the report: {report}");
    }
    assert!(logs.contains("https://***@127.0.0.1"), "{logs}");
    // The deployment id is also an env value of the Job (DEPLOYMENT_ID): an identifier, not a secret.
    assert!(logs.contains("Job jobs/d-echo"), "the deployment id must stay readable: {logs}");
}

#[test]
fn a_create_job_refused_by_decode_names_the_field_and_is_reported() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    world.orch.expect_deployment("d-X", "deploy-token-x");
    world.push(&create_job_message("d-X", "jobs", "deploy-token-x"));
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let body = &world.orch.results()[0].body;
    assert!(body.contains("field 'job_id'") && body.contains("DNS-1123"), "{body}");
    assert!(world.kube.seen().is_empty());
}

#[test]
fn an_unreadable_create_job_whose_id_could_steer_the_results_url_or_forge_a_log_line_is_not_reported() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    for id in ["..", "x\nERROR forged: the agent was compromised", "a/../../results"] {
        let body = format!(
            r#"{{"action":"create-job","job_id":{},"namespace":"jobs","deployment_token":"deploy-token-x","configuration":7}}"#,
            kubernetes_agent::json::quote(id)
        );
        world.push(&body);
    }
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_messages_total{action=\"invalid\"}") == 3.0), "{:?}", agent.logs());
    std::thread::sleep(Duration::from_millis(300));
    assert!(world.orch.results().is_empty(), "{:?}", world.orch.results());
    assert!(!agent.logs().iter().any(|l| l.starts_with("ERROR forged")), "{:?}", agent.logs());
}
