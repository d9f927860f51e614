//! The hand-built Kubernetes client against the API stand-in: credentials, Status
//! classification, retries and selectors.

use crate::support;

use std::time::{Duration, Instant};

use kubernetes_agent::kube::{request, Client, Reason, Target};
use kubernetes_agent::Error;
use support::agent::TempDir;
use support::kube::Kube;
use support::server::certs_dir;

fn n(s: &str) -> kubernetes_agent::name::Name {
    kubernetes_agent::name::Name::subdomain(s).unwrap()
}

fn settings() -> kubernetes_agent::kube::client::Settings {
    kubernetes_agent::kube::client::Settings { first_backoff: Duration::from_millis(20), retry_for: Duration::from_secs(3), ..Default::default() }
}

fn client(kube: &Kube, dir: &TempDir, token: &str) -> Client {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let target = Target { base_url: kube.url(), token_file: Some(token_file), ca_file: Some(certs_dir().join("ca.pem")) };
    Client::new(target, settings()).unwrap()
}

const JOB: &str = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"d-1","namespace":"jobs"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"main","image":"x"}]}}}}"#;

fn kube_error(e: Error) -> kubernetes_agent::kube::Status {
    match e {
        Error::Kube { status, .. } => status,
        other => panic!("expected a Kubernetes status, got {other}"),
    }
}

#[test]
fn create_then_duplicate_create_is_already_exists() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let c = client(&kube, &dir, "t");
    c.send(&request::create_job(&n("jobs"), &n("d-1"), JOB.into())).unwrap();
    let status = kube_error(c.send(&request::create_job(&n("jobs"), &n("d-1"), JOB.into())).unwrap_err());
    assert_eq!((status.code, status.reason()), (409, Reason::AlreadyExists));
    assert!(status.message.contains("already exists"));
    assert_eq!(kube.job_names(), vec!["d-1".to_string()]);
}

#[test]
fn invalid_job_is_422_naming_the_field() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let c = client(&kube, &dir, "t");
    let bad = JOB.replace(r#""restartPolicy":"Never","#, r#""restartPolicy":"Always","#);
    let status = kube_error(c.send(&request::create_job(&n("jobs"), &n("d-1"), bad)).unwrap_err());
    assert_eq!((status.code, status.reason()), (422, Reason::Invalid));
    assert!(status.message.contains("spec.template.spec.restartPolicy"), "{}", status.message);
    assert_eq!(kube.seen().len(), 1, "422 is permanent: no retry");
}

#[test]
fn forbidden_is_not_retried() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    kube.deny("create", "jobs");
    let c = client(&kube, &dir, "t");
    let status = kube_error(c.send(&request::create_job(&n("jobs"), &n("d-1"), JOB.into())).unwrap_err());
    assert_eq!(status.reason(), Reason::Forbidden);
    assert!(status.message.contains("cannot create resource \"jobs\""), "{}", status.message);
    assert_eq!(c.requests_sent(), 1);
}

#[test]
fn too_many_requests_is_retried_after_the_servers_retry_after() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    kube.fail_next("POST", "/jobs", 429, "TooManyRequests", Some(1), 1);
    let c = client(&kube, &dir, "t");
    let started = Instant::now();
    c.send(&request::create_job(&n("jobs"), &n("d-1"), JOB.into())).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After: 1 must be honoured, waited {:?}", started.elapsed());
    assert_eq!(c.requests_sent(), 2);
    assert!(kube.job("jobs", "d-1").is_some());
}

#[test]
fn server_errors_are_retried_until_the_callers_deadline_and_a_stop_ends_the_wait_at_once() {
    use kubernetes_agent::backoff::{Stop, Until};
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    kube.fail_next("GET", "/jobs/d-1", 502, "BadGateway", None, 1_000);
    let c = client(&kube, &dir, "t");
    let stop = Stop::new();
    let started = Instant::now();
    let status = kube_error(c.send_until(&request::get_job(&n("jobs"), &n("d-1")), Until::within(Duration::from_millis(600), &stop)).unwrap_err());
    assert_eq!(status.code, 502, "502 is transient too");
    assert!(c.requests_sent() >= 3, "retried: {}", c.requests_sent());
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the deadline: {:?}", started.elapsed());
    let sent = c.requests_sent();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            stop.stop_within(Duration::ZERO);
        });
        let started = Instant::now();
        let _ = c.send_until(&request::get_job(&n("jobs"), &n("d-1")), Until::within(Duration::from_secs(60), &stop));
        assert!(started.elapsed() < Duration::from_secs(2), "a stop ends the retries: {:?}", started.elapsed());
    });
    assert!(c.requests_sent() > sent);
}

#[test]
fn rotated_token_is_picked_up_on_401_without_restart() {
    let (kube, dir) = (Kube::start("old"), TempDir::new("kc"));
    let c = client(&kube, &dir, "old");
    c.send(&request::get_job(&n("jobs"), &n("none"))).unwrap_err();
    kube.rotate_token("new");
    std::fs::write(dir.path().join("token"), "new\n").unwrap();
    let status = kube_error(c.send(&request::get_job(&n("jobs"), &n("none"))).unwrap_err());
    assert_eq!(status.reason(), Reason::NotFound, "after re-reading the token the request is authorised");
    let seen = kube.seen();
    assert!(!seen[seen.len() - 2].authorized && seen[seen.len() - 1].authorized);
}

#[test]
fn unreadable_token_keeps_the_last_good_one() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let c = client(&kube, &dir, "t");
    std::fs::remove_file(dir.path().join("token")).unwrap();
    kube.rotate_token("t");
    // A 401 would force a re-read; the file is gone, so the old token must still be used.
    let status = kube_error(c.send(&request::get_job(&n("jobs"), &n("none"))).unwrap_err());
    assert_eq!(status.reason(), Reason::NotFound);
}

#[test]
fn revoked_token_without_a_new_file_is_unauthorized() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let c = client(&kube, &dir, "t");
    kube.rotate_token("someone-else");
    let status = kube_error(c.send(&request::get_job(&n("jobs"), &n("none"))).unwrap_err());
    assert_eq!(status.reason(), Reason::Unauthorized);
    assert_eq!(c.requests_sent(), 2, "one retry after re-reading the token, then the error");
}

#[test]
fn wrong_ca_is_a_transport_error_naming_tls() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let target = Target { base_url: kube.url(), token_file: Some(token_file), ca_file: Some(certs_dir().join("other-ca.pem")) };
    let c = Client::new(target, kubernetes_agent::kube::client::Settings { retry_for: Duration::ZERO, ..settings() }).unwrap();
    let e = c.send(&request::get_job(&n("jobs"), &n("x"))).unwrap_err().to_string();
    assert!(e.contains("TLS"), "{e}");
}

#[test]
fn rotated_ca_file_is_picked_up() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::copy(certs_dir().join("other-ca.pem"), &ca_file).unwrap();
    let settings = kubernetes_agent::kube::client::Settings { retry_for: Duration::ZERO, reload_every: Duration::from_millis(50), ..settings() };
    let c = Client::new(Target { base_url: kube.url(), token_file: Some(token_file), ca_file: Some(ca_file.clone()) }, settings).unwrap();
    assert!(c.send(&request::get_job(&n("jobs"), &n("x"))).unwrap_err().to_string().contains("TLS"));
    std::fs::copy(certs_dir().join("ca.pem"), &ca_file).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(kube_error(c.send(&request::get_job(&n("jobs"), &n("x"))).unwrap_err()).reason(), Reason::NotFound);
}

#[test]
fn label_and_field_selectors_filter_lists() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    kube.add_pod("jobs", "d-1", "d-1-abc", "Pending");
    kube.add_pod("jobs", "d-2", "d-2-abc", "Running");
    kube.add_event("jobs", ("Pod", "d-1-abc"), "Warning", "FailedScheduling", "0/3 nodes are available", "2026-11-27T10:00:00Z");
    kube.add_event("jobs", ("Pod", "d-2-abc"), "Normal", "Started", "started", "2026-11-27T10:00:00Z");
    let c = client(&kube, &dir, "t");
    let pods = c.send(&request::list_job_pods(&n("jobs"), &n("d-1"))).unwrap();
    assert!(pods.contains("d-1-abc") && !pods.contains("d-2-abc"), "{pods}");
    assert!(pods.contains(r#""resourceVersion""#));
    let events = c.send(&request::list_events_about(&n("jobs"), &n("d-1-abc"))).unwrap();
    assert!(events.contains("FailedScheduling") && !events.contains("Started"), "{events}");
    assert!(c.send(&request::list_job_pods(&n("other"), &n("d-1"))).unwrap().contains(r#""items":[]"#));
}

#[test]
fn access_review_reports_denied_verbs() {
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    kube.deny("list", "events");
    let c = client(&kube, &dir, "t");
    assert!(c.send(&request::self_subject_access_review(&n("jobs"), "create", "batch", "jobs")).unwrap().contains(r#""allowed":true"#));
    assert!(c.send(&request::self_subject_access_review(&n("jobs"), "list", "", "events")).unwrap().contains(r#""allowed":false"#));
}

/// The agent reads response headers through 8 KiB buffers and caps them at 7 KiB:
/// a larger header block is an error that says so, after the client's retries, never a
/// crash; a header block of 6 KiB passes.
#[test]
fn response_headers_over_7_kib_are_a_clear_error_and_6_kib_pass() {
    use std::sync::Arc;
    use support::server::{Reply, Request, Server};
    let padded = |len: usize| -> Server {
        let handler: support::server::Handler = Arc::new(move |_: &Request| Reply::json(200, "{}").with_header("X-Padding", &"x".repeat(len)));
        Server::start(handler, true)
    };
    let dir = TempDir::new("kc");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let client = |server: &Server| {
        let target = Target { base_url: server.url(), token_file: Some(token_file.clone()), ca_file: Some(certs_dir().join("ca.pem")) };
        Client::new(target, settings()).unwrap()
    };
    let fits = padded(6 * 1024);
    assert_eq!(client(&fits).send(&request::get_job(&n("jobs"), &n("d-1"))).unwrap(), "{}");
    let too_big = padded(9 * 1024);
    let err = client(&too_big).send(&request::get_job(&n("jobs"), &n("d-1"))).unwrap_err().to_string();
    assert!(err.contains("response header is too big"), "{err}");
}

/// Seen on a real 1.20 control plane restarted mid-burst: the API server answers before
/// its RBAC authorizer has synced, and refuses everything with 403 for a moment.
#[test]
fn a_403_right_after_the_api_server_was_unreachable_is_retried_while_its_authorizer_warms_up() {
    use kubernetes_agent::backoff::{Stop, Until};
    let (kube, dir) = (Kube::start("t"), TempDir::new("kc"));
    let c = client(&kube, &dir, "t");
    // A 403 from a server that was reachable all along is final, at once.
    kube.fail_next("POST", "/jobs", 403, "Forbidden", None, 1);
    let status = kube_error(c.send(&request::create_job(&n("jobs"), &n("d-0"), JOB.into())).unwrap_err());
    assert_eq!((status.code, c.requests_sent()), (403, 1));
    kube.go_down_for(Duration::from_millis(600));
    kube.fail_next("POST", "/jobs", 403, "Forbidden", None, 2);
    let stop = Stop::new();
    c.send_until(&request::create_job(&n("jobs"), &n("d-1"), JOB.into()), Until::within(Duration::from_secs(20), &stop))
        .expect("created once the authorizer answers");
    assert!(kube.job("jobs", "d-1").is_some());
}
