//! The main job, on a machine without a cluster: the real agent binary against the
//! Orchestrator and Kubernetes stand-ins, over TLS on 127.0.0.1. Five deployments are
//! pushed; the stand-in completes some, one is left stuck and the agent's status check
//! reports it with its Warning events, one is refused by local policy. Prints a summary,
//! checks it, and scans every line the agent wrote (at debug level) for secrets.
//! Run: cargo test --test demo

// This crate uses part of the test support (the integration tests use all of it).
#[allow(dead_code)]
#[path = "integration/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::agent::{check_message, create_job_message, eventually, World, RUNNER};

const NS: &str = "runner-jobs";

fn main() -> ExitCode {
    let started = Instant::now();
    let world = World::new(Duration::from_secs(2));
    println!(
        "kubernetes-agent demo: the real agent binary against local stand-ins of the Orchestrator ({}) and the Kubernetes API ({})\n",
        world.orch.url(),
        world.kube.url()
    );
    let mut agent = world.spawn(&[
        ("LOG_LEVEL", "debug"),
        ("JOB_NAMESPACES", NS),
        ("JOB_SERVICE_ACCOUNTS", "kubernetes-runner-job"),
        ("IMAGE_MIRRORS", "ghcr.io/humanitec=registry.internal/humanitec"),
    ]);
    if !world.orch.wait_for_polls(RUNNER, 1, Duration::from_secs(20)) {
        eprintln!("the agent never opened a poll:\n{}", agent.logs().join("\n"));
        return ExitCode::FAILURE;
    }

    let ids = ["d-1-completes", "d-2-fails-itself", "d-3-running", "d-4-stuck", "d-5-privileged"];
    let mut secrets = vec![world.key.private_pem().lines().nth(1).unwrap().to_string()];
    for id in ids {
        let token = format!("deploy-token-{id}");
        world.orch.expect_deployment(id, &token);
        let mut message = create_job_message(id, NS, &token);
        if id == "d-5-privileged" {
            message = message.replace(r#""allowPrivilegeEscalation":false"#, r#""privileged":true"#);
        }
        secrets.push(token);
        secrets.push(format!("job-secret-token-{id}"));
        let delivered = world.orch.push_retrying(RUNNER, &message, Duration::from_secs(10));
        println!("pushed create-job {id:<18} delivered to {delivered} open poll(s)");
    }
    let four_jobs = eventually(Duration::from_secs(20), || world.kube.job_names().len() == 4);

    // The cluster moves on: the stand-in plays the Job controller and the jobs themselves.
    world.kube.set_job_status(NS, "d-1-completes", "succeeded");
    world.orch.finalise("d-1-completes");
    world.kube.set_job_status(NS, "d-2-fails-itself", "failed");
    world.orch.finalise("d-2-fails-itself");
    world.kube.add_pod(NS, "d-3-running", "d-3-running-7xk2p", "Running");
    world.kube.add_pod(NS, "d-4-stuck", "d-4-stuck-q9z8w", "Pending");
    world.kube.add_event(
        NS,
        ("Pod", "d-4-stuck-q9z8w"),
        "Warning",
        "FailedScheduling",
        "0/3 nodes are available: 3 Insufficient memory",
        "2026-11-27T10:01:00Z",
    );
    world.kube.add_event(
        NS,
        ("Pod", "d-4-stuck-q9z8w"),
        "Warning",
        "FailedScheduling",
        "0/3 nodes are available: 3 Insufficient memory (retry)",
        "2026-11-27T10:03:00Z",
    );
    world.kube.add_event(NS, ("Pod", "d-4-stuck-q9z8w"), "Normal", "Scheduled", "not a warning, not reported", "2026-11-27T10:04:00Z");

    // The Orchestrator's periodic status checks, after every deployment's expiry.
    for id in &ids[..4] {
        world.orch.push_retrying(RUNNER, &check_message(id, NS, &format!("deploy-token-{id}"), "2026-01-01T00:00:00Z"), Duration::from_secs(10));
    }
    let reported = eventually(Duration::from_secs(20), || world.orch.results().iter().filter(|r| r.status == 204).count() >= 2);
    std::thread::sleep(Duration::from_millis(300));

    println!("\n{:<18} {:<10} {:<44} reported to the Orchestrator", "deployment", "Job", "state in the cluster");
    let results = world.orch.results();
    for id in ids {
        let job = world.kube.job(NS, id);
        let state = match id {
            "d-1-completes" => "succeeded (the job reported itself)",
            "d-2-fails-itself" => "failed (the job reported itself)",
            "d-3-running" => "running",
            "d-4-stuck" => "pod Pending, Warning events",
            _ => "-",
        };
        let report = results.iter().find(|r| r.deployment == id).map_or("nothing (not the agent's to report)".to_string(), |r| {
            let message = r.body.split(r#""message":""#).nth(1).unwrap_or("").trim_end_matches("\"}}");
            let answer = if r.status == 409 { " (409: already final, the job had reported)" } else { "" };
            format!("failure: {message}{answer}")
        });
        println!("{id:<18} {:<10} {state:<44} {report}", if job.is_some() { "created" } else { "none" });
    }

    let metrics = agent.get("/metrics").1;
    println!("\nfrom the agent's /metrics:");
    for name in [
        "polls_total{outcome=\"message\"}",
        "jobs_total{result=\"created\"}",
        "jobs_total{result=\"refused\"}",
        "failure_reports_total{result=\"accepted\"}",
        "stuck_jobs_total",
        "kubernetes_requests_total",
        "no_poll_open_seconds_total",
    ] {
        let line = metrics.lines().find(|l| l.starts_with(&format!("kubernetes_agent_{name}"))).unwrap_or("(missing)");
        println!("  {line}");
    }
    agent.signal(libc::SIGTERM);
    let exit = agent.wait_exit(Duration::from_secs(20));
    println!("\nSIGTERM: the agent exited with {exit:?}");

    let mut problems = Vec::new();
    let expect = |ok: bool, what: &str, problems: &mut Vec<String>| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    expect(four_jobs && world.kube.job_names().len() == 4, "four Jobs created, the privileged one not", &mut problems);
    expect(reported, "two failures reported", &mut problems);
    let body = |id: &str| results.iter().find(|r| r.deployment == id).map(|r| r.body.clone()).unwrap_or_default();
    expect(
        body("d-5-privileged").contains("pod security level 'baseline', check 'privileged'"),
        "the privileged deployment reported as refused by the pod security check 'privileged'",
        &mut problems,
    );
    let stuck = body("d-4-stuck");
    expect(
        stuck.contains("job seems to be stuck: 2026-11-27T10:03:00Z - FailedScheduling"),
        "the stuck deployment reported with its newest Warning first",
        &mut problems,
    );
    expect(!stuck.contains("not a warning"), "Normal events left out", &mut problems);
    expect(
        results.iter().all(|r| r.status == 409 || r.deployment == "d-4-stuck" || r.deployment == "d-5-privileged")
            && !results.iter().any(|r| r.deployment == "d-1-completes" || r.deployment == "d-3-running"),
        "nothing reported for the deployments that succeeded or run; the failed one's own report stands (409)",
        &mut problems,
    );
    expect(exit.is_some_and(|s| s.success()), "exit 0 after SIGTERM", &mut problems);
    let lines = agent.logs();
    secrets.extend(world.orch.tokens());
    let leaks: Vec<&String> = secrets.iter().filter(|s| lines.iter().any(|l| l.contains(s.as_str()))).collect();
    expect(leaks.is_empty(), &format!("no secret in the agent's {} debug log lines (leaked: {leaks:?})", lines.len()), &mut problems);
    println!(
        "secrets scan: {} log lines at debug level checked for {} secrets (private key, JWTs, deployment tokens, Job env): {} found",
        lines.len(),
        secrets.len(),
        leaks.len()
    );
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    if problems.is_empty() {
        println!("1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("demo expectations not met:\n  {}\n\nagent log:\n{}", problems.join("\n  "), agent.logs().join("\n"));
        println!("0 passed, 1 failed");
        ExitCode::FAILURE
    }
}
