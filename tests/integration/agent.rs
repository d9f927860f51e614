//! End to end: the real agent binary against both stand-ins over TLS on loopback.

use crate::support;

use std::time::{Duration, Instant};

use kubernetes_agent::render::LABEL_DEPLOYMENT_ID;
use support::agent::{check_message, create_job_message, eventually, World, RUNNER};
use support::kube::{get, text};

const HOLD: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn create_job_makes_one_labelled_job_with_mirrored_image() {
    let world = World::new(HOLD);
    let agent = world.started(&[("IMAGE_MIRRORS", "ghcr.io/humanitec=registry.internal/mirror")]);
    world.push(&world.create_job_message("d-100", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-100").is_some()), "{:?}", agent.logs());
    let job = world.kube.job("jobs", "d-100").unwrap();
    assert_eq!(get(&job, &["metadata", "labels", LABEL_DEPLOYMENT_ID]).and_then(text).as_deref(), Some("d-100"));
    let image = get(&job, &["spec", "template", "spec", "containers"]).map(miniserde::json::to_string).unwrap();
    assert!(image.contains("registry.internal/mirror/platform-orchestrator-runner:1.4.0"), "{image}");
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_jobs_total{result=\"created\"}") == 1.0));
    assert_eq!(agent.metric("kubernetes_agent_kubernetes_requests_total"), 1.0, "one API request per create-job");
    assert!(world.orch.results().is_empty(), "success is reported by the job, not the agent");
}

#[test]
fn duplicate_create_job_on_two_polls_makes_one_job() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT), "two staggered polls must be open");
    assert_eq!(world.orch.push(RUNNER, &world.create_job_message("d-101", "jobs")), 2);
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-101").is_some()));
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_messages_total{action=\"duplicate\"}") == 1.0));
    assert_eq!(world.kube.seen().iter().filter(|s| s.method == "POST").count(), 1);
}

#[test]
fn two_replicas_make_one_job_and_one_accepted_report() {
    let world = World::new(HOLD);
    let a = world.started(&[("JOB_NAMESPACES", "jobs")]);
    let b = world.spawn(&[("JOB_NAMESPACES", "jobs")]);
    assert!(world.orch.wait_for_polls(RUNNER, 4, WAIT), "both replicas keep two polls open");
    assert!(world.orch.push(RUNNER, &world.create_job_message("d-102", "jobs")) >= 2);
    assert!(world.orch.wait_for_polls(RUNNER, 4, WAIT), "both replicas poll again");
    assert!(world.orch.push(RUNNER, &world.create_job_message("d-103", "elsewhere")) >= 2);
    assert!(eventually(WAIT, || world.orch.results().len() >= 2), "{:?} {:?}", a.logs(), b.logs());
    assert_eq!(world.kube.job_names(), vec!["d-102".to_string()]);
    let created = a.metric("kubernetes_agent_jobs_total{result=\"created\"}") + b.metric("kubernetes_agent_jobs_total{result=\"created\"}");
    let existed = a.metric("kubernetes_agent_jobs_total{result=\"already_exists\"}") + b.metric("kubernetes_agent_jobs_total{result=\"already_exists\"}");
    assert_eq!((created, existed), (1.0, 1.0));
    let results = world.orch.results();
    assert!(results.iter().all(|r| r.deployment == "d-103"));
    assert_eq!(results.iter().filter(|r| r.status == 204).count(), 1, "{results:?}");
    assert!(results.iter().filter(|r| r.status != 204).all(|r| r.status == 409), "{results:?}");
    assert!(results[0].body.contains("namespace-allow-list"), "{}", results[0].body);
}

#[test]
fn policy_refusal_is_reported_with_the_rule_and_never_created() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    let token = "deploy-token-d-104";
    world.orch.expect_deployment("d-104", token);
    let privileged = create_job_message("d-104", "jobs", token).replace(r#""allowPrivilegeEscalation":false"#, r#""privileged":true"#);
    world.push(&privileged);
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let r = &world.orch.results()[0];
    assert_eq!((r.deployment.as_str(), r.token.as_str(), r.status), ("d-104", token, 204));
    assert!(r.body.contains(r#""status":"failure""#) && r.body.contains(r#""error":"REMOTE_RUNNER""#), "{}", r.body);
    assert!(
        r.body.contains("refused by pod security level 'baseline', check 'privileged': container 'main' sets securityContext.privileged to true"),
        "{}",
        r.body
    );
    assert!(world.kube.job_names().is_empty());
    assert_eq!(agent.metric("kubernetes_agent_jobs_total{result=\"refused\"}"), 1.0);
}

#[test]
fn a_pod_security_refusal_is_reported_with_level_check_and_container_and_nothing_reaches_kubernetes() {
    let world = World::new(HOLD);
    let agent = world.started(&[("JOB_POD_SECURITY", "restricted")]);
    let token = "deploy-token-d-140";
    world.orch.expect_deployment("d-140", token);
    // Runs as root: the default JobSpec's runAsNonRoot turned off.
    let root = create_job_message("d-140", "jobs", token).replace(r#""runAsNonRoot":true"#, r#""runAsNonRoot":false"#);
    assert!(root.contains(r#""runAsNonRoot":false"#), "the fixture changed shape");
    world.push(&root);
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let r = &world.orch.results()[0];
    assert_eq!((r.deployment.as_str(), r.status), ("d-140", 204));
    assert!(
        r.body.contains("refused by pod security level 'restricted', check 'running-as-non-root': container 'main' sets securityContext.runAsNonRoot to false"),
        "{}",
        r.body
    );
    assert!(world.kube.seen().is_empty(), "nothing may be sent to the API server: {:?}", world.kube.seen());
    assert_eq!(agent.metric("kubernetes_agent_jobs_total{result=\"refused\"}"), 1.0);
    // The same JobSpec unchanged passes restricted and is created.
    world.push(&create_job_message("d-141", "jobs", "deploy-token-d-141"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-141").is_some()), "{:?}", agent.logs());
}

/// The audit lines among `logs` (JSON format), parsed.
fn audit_lines(logs: &[String]) -> Vec<(String, miniserde::json::Value)> {
    logs.iter()
        .filter(|l| l.contains(r#""audit":true"#))
        .map(|l| (l.clone(), miniserde::json::from_str(l).unwrap_or_else(|_| panic!("an audit line is one JSON object: {l}"))))
        .collect()
}

#[test]
fn every_create_job_decision_is_one_audit_line_with_the_digest_of_what_was_sent_and_no_secret() {
    use kubernetes_agent::hex::sha256 as sha256_hex;
    let world = World::new(HOLD);
    // At LOG_LEVEL=warn the info lines go, the audit lines stay.
    let agent = world.started(&[("LOG_FORMAT", "json"), ("LOG_LEVEL", "warn"), ("IMAGE_MIRRORS", "ghcr.io/humanitec=registry.internal/mirror")]);
    world.push(&world.create_job_message("d-150", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-150").is_some()), "{:?}", agent.logs());
    world.push(&world.create_job_message_with("d-150", "jobs", "1"));
    assert!(eventually(WAIT, || world.kube.create_bodies().len() == 2), "{:?}", agent.logs());
    let privileged = world.create_job_message("d-151", "jobs").replace(r#""allowPrivilegeEscalation":false"#, r#""privileged":true"#);
    world.push(&privileged);
    world.kube.fail_next("POST", "/jobs", 403, "Forbidden", None, 1);
    world.push(&world.create_job_message("d-152", "jobs"));
    // A create-job that does not decode (a namespace that is no name) is reported and audited too.
    world.push(&world.create_job_message("d-153", "Not_A_Namespace"));
    assert!(eventually(WAIT, || audit_lines(&agent.logs()).len() >= 8), "{:?}", agent.logs());
    std::thread::sleep(Duration::from_millis(300));
    let lines = audit_lines(&agent.logs());
    let msgs: Vec<String> = lines.iter().map(|(_, v)| support::kube::get(v, &["msg"]).and_then(text).unwrap_or_default()).collect();
    let bodies = world.kube.create_bodies();
    let rewritten = "from=ghcr.io/humanitec/platform-orchestrator-runner:1.4.0 to=registry.internal/mirror/platform-orchestrator-runner:1.4.0";
    let expected = [
        format!("audit: decision=image-rewritten deployment=d-150 namespace=jobs sha256={} container=main {rewritten}", sha256_hex(bodies[0].as_bytes())),
        format!("audit: decision=created deployment=d-150 namespace=jobs sha256={}", sha256_hex(bodies[0].as_bytes())),
        format!("audit: decision=image-rewritten deployment=d-150 namespace=jobs sha256={} container=main {rewritten}", sha256_hex(bodies[1].as_bytes())),
        format!("audit: decision=already-existed deployment=d-150 namespace=jobs sha256={}", sha256_hex(bodies[1].as_bytes())),
        "audit: decision=refused deployment=d-151 namespace=jobs rule=privileged level=baseline reported=true".to_string(),
        r#"audit: decision=refused deployment=d-153 namespace="" rule=unreadable-message reported=true"#.to_string(),
    ];
    for e in &expected {
        assert_eq!(msgs.iter().filter(|m| *m == e).count(), 1, "{e} once in {msgs:#?}");
    }
    let failed: Vec<&String> = msgs.iter().filter(|m| m.starts_with("audit: decision=failed deployment=d-152 namespace=jobs sha256=")).collect();
    assert_eq!(failed.len(), 1, "{msgs:#?}");
    assert!(failed[0].ends_with(" rule=kubernetes-403 reported=true"), "{}", failed[0]);
    assert_eq!(msgs.iter().filter(|m| m.contains("deployment=d-152")).count(), 2, "one rewrite and one failure: {msgs:#?}");
    assert_eq!(lines.len(), 8, "{msgs:#?}");
    for (raw, v) in &lines {
        assert_eq!(support::kube::get(v, &["target"]).and_then(text).as_deref(), Some(kubernetes_agent::ops::audit::TARGET), "{raw}");
        for secret in ["job-secret-token-", "deploy-token-", "<redacted>"] {
            assert!(!raw.contains(secret), "a Job env value or a token in an audit line: {raw}");
        }
    }
    assert!(!agent.logs().iter().any(|l| l.contains("\"created Job")), "LOG_LEVEL=warn keeps info lines out");
}

#[test]
fn jobspec_kubernetes_rejects_is_reported_and_the_agent_keeps_serving() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    world.orch.expect_deployment("d-105", "t5");
    let no_image = create_job_message("d-105", "jobs", "t5").replace(r#""image":"ghcr.io/humanitec/platform-orchestrator-runner:1.4.0","#, "");
    world.push(&no_image);
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let body = &world.orch.results()[0].body;
    assert!(body.contains("422 Invalid") && body.contains("spec.template.spec.containers[0].image"), "{body}");
    world.push(&world.create_job_message("d-106", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-106").is_some()));
}

#[test]
fn undecodable_and_unknown_messages_are_skipped_and_polling_continues() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    world.push("this is not json");
    world.push(r#"{"action":"delete-everything","job_id":"x"}"#);
    world.orch.expect_deployment("d-107", "t7");
    world.push(r#"{"action":"create-job","job_id":"d-107","namespace":"jobs","configuration":"not a jobspec","deployment_token":"t7"}"#);
    world.push(&world.create_job_message("d-108", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-108").is_some()), "{:?}", agent.logs());
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_messages_total{action=\"invalid\"}") == 3.0));
    assert!(eventually(WAIT, || world.orch.results().iter().any(|r| r.deployment == "d-107" && r.body.contains("configuration"))));
    assert!(agent.logs().iter().any(|l| l.contains("unknown action 'delete-everything'")));
}

#[test]
fn check_job_status_reports_a_stuck_job_with_its_warning_events_newest_first() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    world.push(&world.create_job_message("d-109", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-109").is_some()));
    world.kube.add_pod("jobs", "d-109", "d-109-x1", "Pending");
    // As kube-scheduler 1.20 writes it: eventTime with microseconds, no lastTimestamp.
    world.kube.add_scheduler_event("jobs", "d-109-x1", "0/3 nodes are available: insufficient memory", "2026-11-27T10:00:00.731442Z");
    world.kube.add_event("jobs", ("Job", "d-109"), "Warning", "FailedCreate", "exceeded quota", "2026-11-27T10:05:00Z");
    world.kube.add_event("jobs", ("Pod", "d-109-x1"), "Normal", "Scheduled", "ignored", "2026-11-27T10:06:00Z");
    world.push(&check_message("d-109", "jobs", "deploy-token-d-109", "2020-01-01T00:00:00Z"));
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    let body = &world.orch.results()[0].body;
    let quota = body.find("2026-11-27T10:05:00Z - FailedCreate - exceeded quota").expect(body);
    let sched = body.find("2026-11-27T10:00:00Z - FailedScheduling - 0/3 nodes are available").expect(body);
    assert!(body.contains("job seems to be stuck: ") && quota < sched && !body.contains("Scheduled"), "{body}");
}

#[test]
fn check_job_status_is_silent_before_expiry_and_for_finished_or_running_jobs() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    for (id, phase) in [("d-110", "Running"), ("d-111", "")] {
        world.push(&world.create_job_message(id, "jobs"));
        assert!(eventually(WAIT, || world.kube.job("jobs", id).is_some()));
        if !phase.is_empty() {
            world.kube.add_pod("jobs", id, &format!("{id}-p"), phase);
        }
    }
    world.kube.set_job_status("jobs", "d-111", "succeeded");
    world.push(&check_message("d-110", "jobs", "deploy-token-d-110", "2020-01-01T00:00:00Z"));
    world.push(&check_message("d-111", "jobs", "deploy-token-d-111", "2020-01-01T00:00:00Z"));
    world.push(&check_message("d-112", "jobs", "t", "2999-01-01T00:00:00Z"));
    world.orch.expect_deployment("d-113", "t13");
    world.push(&check_message("d-113", "jobs", "t13", "2020-01-01T00:00:00Z"));
    assert!(eventually(WAIT, || !world.orch.results().is_empty()), "{:?}", agent.logs());
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_messages_total{action=\"check-job-status\"}") == 4.0));
    std::thread::sleep(Duration::from_millis(300));
    let results = world.orch.results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].deployment, "d-113");
    assert!(results[0].body.contains("job not found after the expiration time"));
}

#[test]
fn orchestrator_down_then_back_loses_no_delivered_message_and_shows_backoff() {
    let world = World::new(HOLD);
    world.orch.set_down(Some(503));
    let agent = world.spawn(&[]);
    assert!(eventually(WAIT, || agent.metric("kubernetes_agent_polls_total{outcome=\"server_error\"}") >= 3.0));
    assert_eq!(agent.get("/readyz").0, 503);
    assert_eq!(agent.get("/healthz").0, 200);
    std::thread::sleep(Duration::from_millis(1500));
    let during = agent.metric("kubernetes_agent_polls_total{outcome=\"server_error\"}");
    assert!(during < 40.0, "backoff must slow the retries down, saw {during} failed polls in ~2 s");
    world.orch.set_down(None);
    assert!(world.orch.wait_for_polls(RUNNER, 1, Duration::from_secs(40)), "{:?}", agent.logs());
    world.push(&world.create_job_message("d-114", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-114").is_some()));
    assert!(eventually(WAIT, || agent.get("/readyz").0 == 200));
}

#[test]
fn key_mismatch_is_a_loud_401_naming_the_kid_and_the_agent_stays_up() {
    let world = World::new(HOLD);
    let other = kubernetes_agent::orchestrator::key::RunnerKey::generate().unwrap();
    let pem = other.private_pem();
    let mut agent = world.spawn(&[("PRIVATE_KEY", &pem)]);
    let line = agent.wait_for_log("token (401)", WAIT).expect("a 401 error line");
    assert!(line.contains(other.kid()) && line.contains("runner-1"), "{line}");
    assert_eq!(agent.get("/readyz").0, 503);
    assert!(agent.wait_exit(Duration::from_millis(500)).is_none(), "the agent must not exit on 401");
    assert!(!agent.logs().iter().any(|l| l.contains("BEGIN PRIVATE KEY") || l.contains(&pem[28..60])));
}

#[test]
fn unknown_runner_is_a_loud_404_and_the_agent_stays_up() {
    let world = World::new(HOLD);
    let mut agent = world.spawn(&[("RUNNER_ID", "runner-unknown")]);
    // Not "404" alone: the listener's port in an earlier line may hold those digits.
    let line = agent.wait_for_log("(404 from", WAIT).expect("a 404 error line");
    assert!(line.contains("runner-unknown") && line.contains(world.key.kid()), "{line}");
    assert!(agent.wait_exit(Duration::from_millis(500)).is_none());
}

#[test]
fn a_remote_url_that_is_not_the_orchestrator_api_is_a_404_naming_remote_url() {
    let world = World::new(HOLD);
    // The right host, a wrong base path: every poll meets the server's 404.
    let url = format!("{}/not-the-api", world.orch.url());
    let agent = world.spawn(&[("REMOTE_URL", &url)]);
    let line = agent.wait_for_log("(404 from", WAIT).expect("a 404 error line");
    assert!(line.contains(&format!("404 from {url}/orgs/")) && line.contains("check that REMOTE_URL is the Orchestrator API's base URL"), "{line}");
}

#[test]
fn sigterm_during_a_create_finishes_it_and_exits_zero() {
    let world = World::new(HOLD);
    let mut agent = world.started(&[]);
    world.kube.fail_next("POST", "/jobs", 429, "TooManyRequests", Some(1), 1);
    world.push(&world.create_job_message("d-115", "jobs"));
    world.kube.fail_next("POST", "/jobs", 429, "TooManyRequests", Some(1), 1);
    agent.wait_for_log("retrying in", WAIT).expect("the create is being retried");
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(WAIT).expect("the agent exits after SIGTERM");
    assert!(status.success(), "{status:?} {:?}", agent.logs());
    assert!(world.kube.job("jobs", "d-115").is_some(), "the in-flight create finished before exit");
    assert!(agent.logs().iter().any(|l| l.contains("SIGTERM received")));
}

#[test]
fn sigint_stops_an_idle_agent_promptly() {
    let world = World::new(HOLD);
    let mut agent = world.started(&[]);
    agent.signal(libc::SIGINT);
    let status = agent.wait_exit(Duration::from_secs(5)).expect("exit within 5 s");
    assert!(status.success());
}

#[test]
fn kubernetes_token_rotated_mid_run_is_picked_up() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    world.push(&world.create_job_message("d-116", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-116").is_some()));
    world.kube.rotate_token("kube-token-rotated");
    std::fs::write(&world.token_file, "kube-token-rotated\n").unwrap();
    world.push(&world.create_job_message("d-117", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-117").is_some()), "{:?}", agent.logs());
    assert!(world.orch.results().is_empty());
}

#[test]
fn jwt_lifetime_option_adds_iat_and_exp_and_default_has_neither() {
    let world = World::new(HOLD);
    let plain = world.started(&[]);
    assert!(eventually(WAIT, || world.orch.polls().iter().any(|p| p.claims.is_some())), "{:?}", plain.logs());
    drop(plain);
    let claims = world.orch.polls().into_iter().find_map(|p| p.claims).unwrap();
    assert_eq!((claims.iat, claims.exp), (None, None));
    assert_eq!(claims.kid, world.key.kid());
    let _timed = world.spawn(&[("TOKEN_LIFETIME", "15m")]);
    // The killed agent's held polls may still complete; pick the timed agent's by exp.
    assert!(eventually(WAIT, || world.orch.polls().iter().any(|p| p.claims.as_ref().is_some_and(|c| c.exp.is_some()))));
    let claims = world.orch.polls().into_iter().find_map(|p| p.claims.filter(|c| c.exp.is_some())).unwrap();
    assert_eq!(claims.exp.unwrap() - claims.iat.unwrap(), 900);
}

#[test]
fn burst_of_200_create_jobs_creates_every_job_once() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT));
    let before = agent.metric("kubernetes_agent_no_poll_open_seconds_total");
    let mut first_try_misses = 0;
    for i in 0..200 {
        let message = world.create_job_message(&format!("burst-{i}"), "jobs");
        if world.orch.push(RUNNER, &message) == 0 {
            first_try_misses += 1;
            assert!(world.orch.push_retrying(RUNNER, &message, Duration::from_secs(10)) > 0, "push {i} found no poll for 10 s");
        }
    }
    assert!(eventually(Duration::from_secs(60), || world.kube.job_names().len() == 200), "{} jobs", world.kube.job_names().len());
    let posts = world.kube.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 200, "every Job created exactly once");
    let gap = agent.metric("kubernetes_agent_no_poll_open_seconds_total") - before;
    println!(
        "burst of 200: {first_try_misses} pushes found no poll open on the first try (retried, none lost); no poll open for {:.3} ms in total",
        gap * 1000.0
    );
}

#[test]
fn https_proxy_carries_the_orchestrator_traffic_and_never_the_kubernetes_api() {
    let world = World::new(HOLD);
    let proxy = support::proxy::Proxy::start();
    let agent = world.started(&[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "example.internal")]);
    world.push(&world.create_job_message("d-118", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-118").is_some()), "{:?}", agent.logs());
    let tunnels = proxy.tunnels();
    let orch = world.orch.server.addr.to_string();
    let kube = world.kube.server.addr.to_string();
    assert!(tunnels.contains(&orch), "polls go through the proxy: {tunnels:?}");
    assert!(!tunnels.contains(&kube), "the API server is never proxied: {tunnels:?}");
}

#[test]
fn no_proxy_matching_the_orchestrator_bypasses_the_proxy() {
    let world = World::new(HOLD);
    let proxy = support::proxy::Proxy::start();
    let _agent = world.started(&[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "localhost,127.0.0.1")]);
    world.push(&world.create_job_message("d-119", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-119").is_some()));
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());
}

#[test]
fn dropped_truncated_oversized_and_failed_polls_are_survived() {
    use support::orchestrator::PollFault;
    let world = World::new(HOLD);
    world.orch.fault_next_polls(&[
        PollFault::Status(500),
        PollFault::Drop,
        PollFault::Truncate,
        PollFault::Oversized(2 << 20),
        PollFault::Slow(Duration::from_millis(300)),
    ]);
    let agent = world.started(&[("POLLS", "1")]);
    world.push(&world.create_job_message("d-120", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-120").is_some()), "{:?}", agent.logs());
    assert!(agent.metric("kubernetes_agent_polls_total{outcome=\"transport_error\"}") >= 3.0);
    assert!(agent.metric("kubernetes_agent_polls_total{outcome=\"server_error\"}") >= 1.0);
    assert!(agent.logs().iter().any(|l| l.contains("larger than 1048576 bytes")), "{:?}", agent.logs());
    assert_eq!(agent.metric("kubernetes_agent_messages_total{action=\"invalid\"}"), 0.0, "a cut-off body is never acted on");
}

#[test]
fn logs_are_json_lines_with_runner_id_by_default() {
    let world = World::new(HOLD);
    let agent = world.started(&[("LOG_FORMAT", "")]);
    let line = agent.wait_for_log("polling", WAIT).expect("a start-up line");
    let value: miniserde::json::Value = miniserde::json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert_eq!(get(&value, &["runnerId"]).and_then(text).as_deref(), Some(RUNNER));
    assert_eq!(get(&value, &["level"]).and_then(text).as_deref(), Some("INFO"));
}

#[test]
fn rust_log_overrides_log_level() {
    let world = World::new(HOLD);
    let agent = world.started(&[("LOG_LEVEL", "debug"), ("RUST_LOG", "error")]);
    world.push(&world.create_job_message("d-121", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-121").is_some()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!agent.logs().iter().any(|l| l.contains("created Job")), "info lines must be filtered out: {:?}", agent.logs());
}

#[test]
fn polls_reuse_kept_alive_connections() {
    let world = World::new(HOLD);
    let _agent = world.started(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT));
    for i in 0..20 {
        world.push(&world.create_job_message(&format!("d-ka-{i}"), "jobs"));
    }
    assert!(eventually(WAIT, || world.kube.job_names().len() == 20));
    let polls = world.orch.polls().len();
    let connections = world.orch.server.connections.load(std::sync::atomic::Ordering::SeqCst);
    println!("{polls} polls over {connections} connections");
    assert!(connections <= 4, "{polls} polls needed {connections} connections: keep-alive is not working");
}

/// Every open poll receives each message, so after one both polls re-open together and,
/// left alone, would expire together at every hold's end, with none open for a moment each
/// time. The agent pulls them apart at the first end after the message: from then on their
/// holds end apart and a poll is open throughout.
#[test]
fn after_a_message_the_polls_are_pulled_apart_so_later_holds_never_end_with_none_open() {
    let world = World::new(HOLD);
    let agent = world.started(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT), "the second poll never opened: {:?}", agent.logs());
    let pushed = Instant::now();
    assert_eq!(world.orch.push(RUNNER, &check_message("d-apart", "jobs", "t", "2999-01-01T00:00:00Z")), 2, "both polls were open");
    let empty_before = world.orch.polls().iter().filter(|p| p.status == 204).count();
    // The first hold's end after the message (one hold in) may leave one re-poll's moment
    // with none open; the two ends after it (two and two and a half holds in) must not.
    std::thread::sleep(HOLD * 11 / 4);
    let later = world.orch.gaps_after(RUNNER, pushed + HOLD * 5 / 4);
    assert!(later.is_empty(), "no poll open for {later:?} at a later hold's end");
    let all = world.orch.gaps_after(RUNNER, pushed);
    assert!(all.len() <= 2, "the re-poll after the message and at most the first hold's end: {all:?}");
    let ended = world.orch.polls().iter().filter(|p| p.status == 204).count() - empty_before;
    assert!(ended >= 3, "{ended} holds ended after the message; the test needs three");
}

#[test]
fn polls_answered_empty_at_once_never_spin() {
    let world = World::new(Duration::from_millis(20));
    let _agent = world.spawn(&[("POLL_HOLD", "1s")]);
    assert!(eventually(WAIT, || !world.orch.polls().is_empty()));
    let before = world.orch.polls().len();
    std::thread::sleep(Duration::from_secs(2));
    let polls = world.orch.polls().len() - before;
    assert!(polls <= 6, "{polls} polls in 2 s against a server that does not hold: the agent must not spin");
}

#[test]
fn ssl_cert_file_is_honoured_like_go_and_openssl_and_a_wrong_ca_fails_loudly() {
    let world = World::new(HOLD);
    let ca = support::server::certs_dir().join("ca.pem").display().to_string();
    let other = support::server::certs_dir().join("other-ca.pem").display().to_string();
    let _agent = world.started(&[("REMOTE_CA_FILE", ""), ("SSL_CERT_FILE", &ca)]);
    world.push(&world.create_job_message("d-122", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "d-122").is_some()));
    let wrong = world.spawn(&[("REMOTE_CA_FILE", ""), ("SSL_CERT_FILE", &other)]);
    let line = wrong.wait_for_log("TLS failed", WAIT).unwrap_or_else(|| panic!("{:?}", wrong.logs()));
    assert!(line.contains("UnknownIssuer") || line.contains("certificate"), "{line}");
}

/// Times one GET /healthz with a client that gives up after 1 s (the kubelet's default
/// probe timeout); `None` when it got no 200 in that time.
fn healthz_within_one_second(addr: std::net::SocketAddr) -> Option<Duration> {
    use std::io::{Read, Write};
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    (text.starts_with("HTTP/1.1 200") && start.elapsed() < Duration::from_secs(1)).then(|| start.elapsed())
}

fn connections(addr: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect()
}

#[test]
fn idle_and_trickling_clients_do_not_keep_healthz_from_answering() {
    use std::io::Write;
    let world = World::new(HOLD);
    let agent = world.spawn(&[]);
    let addr = agent.listen_addr();
    let idle = connections(addr, 8);
    let mut tricklers = connections(addr, 2);
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
    let start = Instant::now();
    // Six rounds over 9 s: each trickler sends a byte every 1.5 s, and /healthz is asked each time.
    for round in 0..6 {
        for t in &mut tricklers {
            let _ = t.write_all(&request[round..=round]);
        }
        let took = healthz_within_one_second(addr);
        assert!(took.is_some(), "round {round} ({:?} in): /healthz did not answer within 1 s", start.elapsed());
        std::thread::sleep(Duration::from_millis(1500));
    }
    drop((idle, tricklers));
}

#[test]
fn more_idle_connections_than_the_listener_serves_do_not_keep_healthz_from_answering() {
    let world = World::new(HOLD);
    let agent = world.spawn(&[]);
    let addr = agent.listen_addr();
    let idle = connections(addr, 40);
    std::thread::sleep(Duration::from_millis(200));
    for round in 0..3 {
        assert!(healthz_within_one_second(addr).is_some(), "round {round}: /healthz did not answer within 1 s behind 40 idle connections");
    }
    assert!(agent.metric("kubernetes_agent_open_polls") >= 0.0, "the listener still serves /metrics");
    drop(idle);
}

#[test]
fn a_client_trickling_its_request_is_closed_at_the_deadline_however_often_it_sends() {
    use std::io::{Read, Write};
    let world = World::new(HOLD);
    let agent = world.spawn(&[]);
    let mut s = std::net::TcpStream::connect(agent.listen_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let start = Instant::now();
    let mut closed = None;
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaa".iter() {
        let _ = s.write_all(&[*byte]);
        match s.read(&mut [0u8; 64]) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            _ => {
                closed = Some(start.elapsed());
                break;
            }
        }
    }
    let closed = closed.expect("still open after a byte every 500 ms for the whole request");
    assert!(closed < Duration::from_secs(4), "closed only after {closed:?}");
}

/// How the polls covered `[from, from + window]`, as the stand-in recorded them: the share
/// of the time with at least one poll open and with all `polls` open.
fn coverage(world: &World, polls: usize, from: Instant, window: Duration) -> (f64, f64) {
    let to = from + window;
    if let Some(left) = to.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    (world.orch.open_share(RUNNER, 1, from, to), world.orch.open_share(RUNNER, polls, from, to))
}

/// Runs an agent configured with `poll_hold` against a server holding polls `hold`, and
/// asserts that after two holds of warm-up a poll was open throughout the next three and
/// both were open nearly throughout. Returns the world, the agent and when it started.
fn both_polls_kept_open(hold: Duration, poll_hold: &str) -> (World, support::agent::AgentProcess, Instant) {
    let world = World::new(hold);
    let started = Instant::now();
    let agent = world.started(&[("POLL_HOLD", poll_hold)]);
    let (one, all) = coverage(&world, 2, started + hold * 2, hold * 3);
    println!("{} s holds, POLL_HOLD={poll_hold}: at least one poll open {one:.4} of the time, both {all:.4}", hold.as_secs());
    assert!(all > 0.98, "both polls open only {all:.4} of three holds after warm-up: {:?}", agent.logs());
    assert_eq!(one, 1.0, "a poll open throughout");
    (world, agent, started)
}

/// A server or proxy ending holds after 5 s while the agent assumes the Orchestrator's 30 s:
/// spaced by the assumed hold, the second poll waited for a turn that moved later with every
/// re-open of the first, and one poll was open for the whole run. Spaced by the hold
/// learned from the 204s, both are open after warm-up, and none is ever missing.
#[test]
fn a_server_ending_holds_after_5_s_keeps_both_polls_open_though_poll_hold_is_30_s() {
    let (world, agent, started) = both_polls_kept_open(Duration::from_secs(5), "30s");
    let gaps = world.orch.gaps_after(RUNNER, started);
    assert!(gaps.is_empty(), "none open for {gaps:?}, the first poll's cut included");
    let said = agent.logs().into_iter().filter(|l| l.contains("the Orchestrator holds polls about")).collect::<Vec<_>>();
    assert!(said.len() == 1 && said[0].contains("about 5.0 s (POLL_HOLD is 30 s)"), "the hold learned is logged once: {said:?}");
}

/// The Orchestrator's own hold, shortened: the agent configured with it keeps both polls open.
#[test]
fn holds_as_long_as_configured_keep_both_polls_open() {
    both_polls_kept_open(Duration::from_secs(4), "4s");
}

/// A server holding longer than POLL_HOLD (still within the client timeout, POLL_HOLD + 15 s):
/// the holds learned are the longer ones, and both polls stay open.
#[test]
fn holds_longer_than_configured_keep_both_polls_open() {
    let (_world, agent, _) = both_polls_kept_open(Duration::from_secs(5), "2s");
    assert_eq!(agent.metric("kubernetes_agent_polls_total{outcome=\"transport_error\"}"), 0.0, "no poll timed out");
}

/// The hold shrinking mid-run (a proxy put in front of the Orchestrator): the agent follows.
#[test]
fn a_hold_that_shrinks_mid_run_is_followed() {
    let world = World::new(Duration::from_secs(4));
    let agent = world.started(&[]);
    std::thread::sleep(Duration::from_secs(6));
    world.orch.set_hold(Duration::from_secs(2));
    let changed = Instant::now();
    let (one, all) = coverage(&world, 2, changed + Duration::from_secs(12), Duration::from_secs(6));
    println!("4 s then 2 s holds: at least one poll open {one:.4} of the time, both {all:.4}");
    assert!(all > 0.97 && one == 1.0, "one {one:.4}, both {all:.4}: {:?}", agent.logs());
}

/// A poll still open at SIGTERM is a waiting poll to the Orchestrator: a message it was
/// handed (the push counted it delivered, so it is never retried) used to arrive after the
/// in-flight count had been read as zero, and the agent exited without handling it.
#[test]
fn sigterm_while_a_message_is_on_its_way_to_an_open_poll_still_creates_its_job() {
    let world = World::new(HOLD);
    let mut agent = world.started(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT));
    world.orch.set_delivery_delay(Duration::from_millis(700));
    assert!(world.orch.push(RUNNER, &world.create_job_message("d-term-1", "jobs")) > 0, "the push found a poll");
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(WAIT).expect("the agent exits after SIGTERM");
    assert!(status.success(), "{status:?} {:?}", agent.logs());
    assert!(world.kube.job("jobs", "d-term-1").is_some(), "a message delivered to an open poll was dropped at shutdown: {:?}", agent.logs());
    assert!(agent.logs().iter().any(|l| l.contains("stopped cleanly")), "{:?}", agent.logs());
}

/// Pushes back to back while SIGTERM arrives, at a different moment of the holds each try:
/// every push the stand-in counted as delivered became its Job (none received and dropped);
/// every other push found no poll, and the Orchestrator would retry it with another replica.
#[test]
fn messages_pushed_around_sigterm_are_handled_or_never_received() {
    let (mut delivered_after, mut refused_after) = (0, 0);
    for attempt in 0..4u32 {
        let world = World::new(HOLD);
        let mut agent = world.started(&[]);
        assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT));
        std::thread::sleep(HOLD * attempt / 4);
        let exited = std::sync::atomic::AtomicBool::new(false);
        let (pushes, status, signalled) = std::thread::scope(|scope| {
            let pusher = scope.spawn(|| {
                let (mut pushes, deadline) = (Vec::new(), Instant::now() + WAIT);
                for i in 0.. {
                    if exited.load(std::sync::atomic::Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let id = format!("d-term-{attempt}-{i}");
                    let delivered = world.orch.push(RUNNER, &world.create_job_message(&id, "jobs"));
                    pushes.push((id, Instant::now(), delivered));
                    std::thread::sleep(Duration::from_millis(2));
                }
                pushes
            });
            std::thread::sleep(Duration::from_millis(50));
            let signalled = Instant::now();
            agent.signal(libc::SIGTERM);
            let status = agent.wait_exit(WAIT);
            exited.store(true, std::sync::atomic::Ordering::SeqCst);
            (pusher.join().unwrap(), status, signalled)
        });
        assert!(status.is_some_and(|s| s.success()), "{status:?} {:?}", agent.logs());
        for (id, at, delivered) in &pushes {
            if *delivered > 0 {
                assert!(world.kube.job("jobs", id).is_some(), "try {attempt}: {id} was delivered and dropped: {:?}", agent.logs());
                delivered_after += usize::from(*at > signalled);
            } else {
                refused_after += usize::from(*at > signalled);
            }
        }
    }
    println!("pushes after SIGTERM: {delivered_after} delivered (each became its Job), {refused_after} found no poll");
    assert!(delivered_after > 0, "no push reached a poll after SIGTERM: the test did not test the shutdown");
}

/// A SHUTDOWN_TIMEOUT shorter than the hold cuts the open polls: the agent says so, naming
/// how many, and the stand-in (like the Orchestrator, to which a poll whose connection
/// closed is no longer a waiting poll) hands them nothing after the exit.
#[test]
fn a_shutdown_timeout_shorter_than_the_hold_names_the_polls_it_cut() {
    let world = World::new(Duration::from_secs(20));
    let mut agent = world.started(&[("SHUTDOWN_TIMEOUT", "1s")]);
    assert!(world.orch.wait_for_polls(RUNNER, 2, WAIT));
    let signalled = Instant::now();
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(WAIT).is_some_and(|s| s.success()), "{:?}", agent.logs());
    assert!(signalled.elapsed() < Duration::from_secs(5), "the timeout bounds the wait for the holds");
    let line = agent.logs().into_iter().find(|l| l.contains("still held")).unwrap_or_else(|| panic!("{:?}", agent.logs()));
    assert!(line.contains("2 poll(s)") && line.contains("SHUTDOWN_TIMEOUT"), "{line}");
    assert_eq!(world.orch.push(RUNNER, &check_message("d-cut", "jobs", "t", "2999-01-01T00:00:00Z")), 0, "a poll of the exited agent took a message");
}
