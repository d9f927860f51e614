//! Faults and endurance (issue 6): the real agent binary killed and restarted mid-burst,
//! the Kubernetes API unreachable for a while, Orchestrator replies slower than the client
//! timeout, and a soak whose resident memory must not grow. Every wait is bounded.

use crate::support;

use std::time::Duration;

use support::agent::{create_job_message, eventually, World, RUNNER};

const HOLD: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(30);

fn push(world: &World, message: &str) {
    assert!(world.orch.push_retrying(RUNNER, message, Duration::from_secs(10)) > 0, "no poll took the message");
}

#[test]
fn sigkill_mid_burst_then_restart_makes_each_job_once_and_reports_each_failure_once() {
    let world = World::new(HOLD);
    // Every tenth deployment asks for a privileged container and must be refused.
    let messages: Vec<String> = (0..60)
        .map(|i| {
            let m = world.create_job_message(&format!("k-{i}"), "jobs");
            if i % 10 == 0 {
                m.replace(r#""allowPrivilegeEscalation":false"#, r#""privileged":true"#)
            } else {
                m
            }
        })
        .collect();
    let first = world.spawn(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 1, WAIT));
    for m in &messages[..40] {
        push(&world, m);
    }
    first.signal(libc::SIGKILL);
    drop(first);
    // The Orchestrator (or another replica) delivers everything again to a new process.
    let second = world.spawn(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 1, WAIT));
    for m in &messages {
        push(&world, m);
    }
    assert!(eventually(WAIT, || world.kube.job_names().len() == 54), "{} Jobs: {:?}", world.kube.job_names().len(), second.logs());
    assert!(eventually(WAIT, || world.orch.results().iter().filter(|r| r.status == 204).count() == 6));
    std::thread::sleep(Duration::from_millis(300));
    let results = world.orch.results();
    for id in ["k-0", "k-10", "k-20", "k-30", "k-40", "k-50"] {
        let fresh = results.iter().filter(|r| r.deployment == id && r.status == 204).count();
        assert_eq!(fresh, 1, "{id} reported as a fresh failure {fresh} times: {results:?}");
        assert!(world.kube.job("jobs", id).is_none());
    }
    assert!(results.iter().all(|r| r.status == 204 || r.status == 409), "{results:?}");
}

#[test]
fn kubernetes_api_unreachable_for_a_while_then_back_creates_the_job_without_reporting() {
    let world = World::new(HOLD);
    let agent = world.spawn(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 1, WAIT));
    world.kube.go_down_for(Duration::from_secs(8));
    push(&world, &world.create_job_message("u-1", "jobs"));
    // The warning says what to look at: the API server's reachability (and the NetworkPolicy).
    let warned = agent.wait_for_log("retrying in", WAIT);
    assert!(
        warned.as_deref().is_some_and(|l| l.contains("is the API server up and reachable from this pod?") && l.contains("networkPolicy.apiServerCIDRs")),
        "{:?}",
        agent.logs()
    );
    assert!(world.kube.job("jobs", "u-1").is_none());
    assert!(eventually(WAIT, || world.kube.job("jobs", "u-1").is_some()), "{:?}", agent.logs());
    assert!(world.orch.results().is_empty(), "a transient outage is not the deployment's failure");
    // Polling went on during the outage: another message was taken and handled.
    push(&world, &world.create_job_message("u-2", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "u-2").is_some()));
}

#[test]
fn orchestrator_reply_slower_than_the_client_timeout_is_cut_and_polling_goes_on() {
    use support::orchestrator::PollFault;
    let world = World::new(HOLD);
    // POLL_HOLD 1s gives a 16 s client timeout; the stand-in answers one poll after 18 s.
    world.orch.fault_next_polls(&[PollFault::Slow(Duration::from_secs(18))]);
    let agent = world.spawn(&[("POLL_HOLD", "1s")]);
    assert!(eventually(Duration::from_secs(25), || agent.metric("kubernetes_agent_polls_total{outcome=\"transport_error\"}") >= 1.0), "{:?}", agent.logs());
    assert!(agent.logs().iter().any(|l| l.contains("timed out")), "{:?}", agent.logs());
    push(&world, &world.create_job_message("s-1", "jobs"));
    assert!(eventually(WAIT, || world.kube.job("jobs", "s-1").is_some()));
}

#[test]
fn soak_of_thousands_of_messages_does_not_grow_resident_memory() {
    let world = World::new(HOLD);
    let agent = world.spawn(&[]);
    assert!(world.orch.wait_for_polls(RUNNER, 1, WAIT));
    let mut samples = Vec::new();
    for i in 0..3000 {
        let message = if i % 3 == 2 {
            support::agent::check_message(&format!("soak-{}", i - 2), "jobs", "t", "2999-01-01T00:00:00Z")
        } else {
            create_job_message(&format!("soak-{i}"), "jobs", "t")
        };
        push(&world, &message);
        if i % 500 == 499 {
            assert!(eventually(WAIT, || agent.metric("kubernetes_agent_messages_in_flight") == 0.0));
            samples.push(agent.rss_kib());
        }
    }
    println!("resident memory every 500 messages (KiB): {samples:?}");
    let (warm, last) = (samples[1], *samples.last().unwrap());
    assert!(last <= warm + warm / 5 + 256, "memory grew from {warm} KiB to {last} KiB over 2,000 messages: {samples:?}");
    assert_eq!(world.kube.job_names().len(), 2000);
}

#[test]
fn hostile_jobspecs_are_refused_reported_with_their_rule_and_never_created() {
    let world = World::new(HOLD);
    let agent = world.spawn(&[("JOB_NAMESPACES", "jobs"), ("JOB_SERVICE_ACCOUNTS", "kubernetes-runner-job")]);
    assert!(world.orch.wait_for_polls(RUNNER, 1, WAIT));
    let base = |id: &str, ns: &str| world.create_job_message(id, ns);
    let cases = [
        (
            "h-privileged",
            base("h-privileged", "jobs").replace(r#""allowPrivilegeEscalation":false"#, r#""privileged":true"#),
            "pod security level 'baseline', check 'privileged'",
        ),
        (
            "h-hostnet",
            base("h-hostnet", "jobs").replace(r#""restartPolicy":"Never","#, r#""restartPolicy":"Never","hostNetwork":true,"#),
            "pod security level 'baseline', check 'host-namespaces'",
        ),
        (
            "h-hostpath",
            base("h-hostpath", "jobs").replace(r#""emptyDir":{}"#, r#""hostPath":{"path":"/"}"#),
            "pod security level 'baseline', check 'host-path'",
        ),
        ("h-namespace", base("h-namespace", "kube-system"), "local policy rule 'namespace-allow-list'"),
        ("h-account", base("h-account", "jobs").replace("kubernetes-runner-job", "cluster-admin-sa"), "local policy rule 'service-account-allow-list'"),
    ];
    for (_, message, _) in &cases {
        push(&world, message);
    }
    assert!(eventually(WAIT, || world.orch.results().len() == cases.len()), "{:?}", agent.logs());
    for (id, _, rule) in &cases {
        let result = world.orch.results().into_iter().find(|r| r.deployment == *id).unwrap();
        assert_eq!(result.status, 204);
        assert!(result.body.contains(&format!("refused by {rule}:")), "{id}: {}", result.body);
    }
    assert!(world.kube.job_names().is_empty(), "nothing may be created: {:?}", world.kube.job_names());
    assert!(world.kube.seen().is_empty(), "nothing may even be sent to the API server");
}
