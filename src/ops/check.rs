//! `check`: a preflight an operator can trust. Each item prints PASS or FAIL with the
//! fix. It never polls (a poll would take a message away from a running replica), so
//! authentication with the Orchestrator is shown by the kid to compare, not proven.

use std::time::Duration;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::kube;
use crate::kube::request;
use crate::name::Name;
use crate::orchestrator::key;
use crate::orchestrator::Remote;

/// The verbs the agent needs: (verb, API group, resource), exactly those of the requests it
/// sends (a test derives them from [`request`]'s builders), so `check` and the chart's Role
/// ask for nothing more.
pub const NEEDED: [(&str, &str, &str); 4] = [("create", "batch", "jobs"), ("get", "batch", "jobs"), ("list", "", "pods"), ("list", "", "events")];

/// Prints every configuration problem at once, as FAIL items with their fixes.
pub fn configuration_problems(problems: &[Error], out: &mut dyn std::io::Write) {
    for p in problems {
        let text = p.to_string();
        let (what, fix) = text.split_once("; fix: ").unwrap_or((&text, "see --help"));
        let _ = writeln!(out, "FAIL  {what}\n      fix: {fix}");
    }
    let _ = writeln!(out, "{} configuration problem(s); the remaining checks need a usable configuration", problems.len());
}

/// Runs every check, prints them, and returns true when all passed.
pub fn run(config: &AgentConfig, out: &mut dyn std::io::Write) -> bool {
    let mut ok = true;
    let mut item = |pass: bool, what: String, fix: &str| {
        ok &= pass;
        let _ = if pass { writeln!(out, "PASS  {what}") } else { writeln!(out, "FAIL  {what}\n      fix: {fix}") };
    };
    let orchestrator = crate::redact::url_without_userinfo(&config.connection.base_url);
    item(true, format!("configuration: org {}, runner {}, Orchestrator {orchestrator}", config.org_id, config.runner_id), "");
    let exempt: Vec<&str> = crate::render::pod_security::Check::ALL.iter().filter(|c| config.policy.allow.contains(**c)).map(|c| c.name()).collect();
    let exempt = if exempt.is_empty() { String::new() } else { format!(", exempting {} (JOB_ALLOW)", exempt.join(", ")) };
    item(true, format!("pod security: every Job's pod must meet level '{}' (JOB_POD_SECURITY){exempt}", config.policy.pod_security), "");
    item(
        true,
        format!(
            "key: kid {}; the runner must be registered with this public key (runner_configuration.key):\n      {}",
            config.key.kid(),
            key::one_line(&config.key.public_pem())
        ),
        "",
    );
    // The Orchestrator and Kubernetes are checked apart, so one failing never hides the other.
    let remote = Remote::new(config.connection.clone(), &config.org_id, &config.runner_id, config.key.clone(), config.token_lifetime, config.poll_hold);
    let kube = kube::Client::new(config.kube.clone(), kube::client::Settings { retry_for: Duration::from_secs(10), ..Default::default() });
    let proxy = config.connection.proxy.as_deref().map_or("direct".to_string(), |p| format!("via proxy {}", crate::redact::url_without_userinfo(p)));
    match remote.as_ref().map_err(|e| e.to_string()).and_then(|r| r.reach()) {
        Ok(code) => item(true, format!("Orchestrator reachable ({proxy}, TLS ok, HTTP {code} from {orchestrator}/)"), ""),
        Err(why) => item(
            false,
            format!("Orchestrator {orchestrator} not reachable ({proxy}): {}", crate::redact::scrub(&why)),
            "check REMOTE_URL, HTTPS_PROXY / NO_PROXY, and REMOTE_CA_FILE for a private CA",
        ),
    }
    let kube = match kube {
        Ok(k) => k,
        Err(e) => {
            item(false, format!("credentials: {e}"), "mount the service-account token and CA, or fix KUBE_TOKEN_FILE / KUBE_CA_FILE");
            return ok;
        }
    };
    let namespaces: Vec<Name> =
        if config.policy.namespaces.is_empty() { vec![own_namespace()] } else { config.policy.namespaces.iter().filter_map(|n| Name::label(n)).collect() };
    let mut authenticated = false;
    for ns in &namespaces {
        for (verb, group, resource) in NEEDED {
            let review = request::self_subject_access_review(ns, verb, group, resource);
            match kube.send(&review) {
                Ok(body) => {
                    if !authenticated {
                        item(true, format!("Kubernetes API {} authenticated the service account", kube.base_url()), "");
                        authenticated = true;
                    }
                    let review = crate::json::parse(&body, "the SelfSubjectAccessReview reply");
                    let allowed =
                        matches!(review.as_ref().ok().and_then(|r| crate::json::get(r, &["status", "allowed"])), Some(miniserde::json::Value::Bool(true)));
                    let full = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
                    item(
                        allowed,
                        format!("may {verb} {full} in namespace {ns}"),
                        "grant it in the agent's Role in that namespace (the chart's rbac.create does)",
                    );
                }
                Err(e) => {
                    item(
                        false,
                        format!("Kubernetes API: {}", crate::redact::scrub(&e.to_string())),
                        "check the API URL, the service-account token and the CA bundle",
                    );
                    return ok;
                }
            }
        }
    }
    ok
}

/// The pod's own namespace (the upstream chart puts the agent's Role there by default);
/// `default` when the file is missing or does not hold a namespace name.
fn own_namespace() -> Name {
    let path = std::path::Path::new(crate::kube::client::DEFAULT_SERVICE_ACCOUNT_DIR).join("namespace");
    let read = crate::file::read_capped_text(&path, crate::file::NAME_FILE_CAP, "the namespace file").ok();
    read.and_then(|s| Name::label(s.trim())).unwrap_or_else(|| Name::label("default").expect("a valid name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (verb, API group, resource) of a namespaced request, as RBAC sees it.
    fn rbac_verb(r: &request::ApiRequest) -> (&'static str, String, String) {
        let path = r.path_and_query.split('?').next().unwrap();
        let (group, rest) = match path.strip_prefix("/api/v1/") {
            Some(rest) => (String::new(), rest),
            None => {
                let mut parts = path.strip_prefix("/apis/").unwrap().splitn(3, '/');
                let group = parts.next().unwrap().to_string();
                let _version = parts.next();
                (group, parts.next().unwrap())
            }
        };
        let segments: Vec<&str> = rest.split('/').collect();
        assert_eq!(segments[0], "namespaces", "{path}");
        let verb = match (r.method, segments.len()) {
            ("POST", 3) => "create",
            ("GET", 4) => "get",
            ("GET", 3) => "list",
            other => panic!("no RBAC verb for {other:?} {path}"),
        };
        (verb, group, segments[2].to_string())
    }

    #[test]
    fn check_asks_for_exactly_the_verbs_of_the_requests_the_agent_sends() {
        let n = |s: &str| Name::label(s).unwrap();
        let sent = [
            request::create_job(&n("ns"), &n("j"), "{}".into()),
            request::get_job(&n("ns"), &n("j")),
            request::list_job_pods(&n("ns"), &n("j")),
            request::list_events_about(&n("ns"), &n("j")),
        ];
        let mut used: Vec<(&str, String, String)> = sent.iter().map(rbac_verb).collect();
        let mut needed: Vec<(&str, String, String)> = NEEDED.iter().map(|(v, g, r)| (*v, g.to_string(), r.to_string())).collect();
        used.sort();
        needed.sort();
        assert_eq!(needed, used, "check (and the chart's Role) must ask for what the agent uses, no more and no less");
    }
}
