//! A real Kubernetes control plane (kube-apiserver, controller-manager, scheduler, etcd)
//! started by `tests/real-cluster`, which writes its coordinates to a file and names it
//! in `REAL_CLUSTER`. Here: reading them, kubectl with the test's admin credentials (every
//! call bounded by `timeout`), the API server's audit log, stopping and starting the API
//! server, and the chart's agent environment as its Deployment would give it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use miniserde::json::{self, Value};

use super::kube::{get, text};

/// The namespaces and names the seed's install values give the chart's objects (PROTOCOL §7).
pub const AGENT_NAMESPACE: &str = "humanitec-kubernetes-agent-runner";
pub const AGENT_SERVICE_ACCOUNT: &str = "humanitec-kubernetes-agent-runner";
pub const JOB_NAMESPACE: &str = "humanitec-runner-jobs";
pub const JOB_SERVICE_ACCOUNT: &str = "humanitec-runner-job";
/// The chart's agent Role and RoleBinding (the release's fullname).
pub const AGENT_ROLE: &str = "humanitec-kubernetes-agent-runner";
/// The user the API server sees for the agent's service-account token.
pub const AGENT_USER: &str = "system:serviceaccount:humanitec-kubernetes-agent-runner:humanitec-kubernetes-agent-runner";

/// Upper bound on any one kubectl or control call.
const CALL_TIMEOUT: &str = "60";

pub struct Cluster {
    pub api_url: String,
    pub ca_file: PathBuf,
    pub admin_token_file: PathBuf,
    pub kubeconfig: PathBuf,
    pub apiserver_ctl: PathBuf,
    pub audit_log: PathBuf,
    pub chart_deployment: PathBuf,
    pub dir: PathBuf,
    pub kubernetes_version: String,
}

impl Cluster {
    /// The control plane `tests/real-cluster` started; panics with the fix when there is none.
    pub fn from_env() -> Cluster {
        let path = std::env::var_os("REAL_CLUSTER")
            .expect("REAL_CLUSTER is not set: these tests need a control plane; run `bash tests/real-cluster`, which starts one and runs them");
        Cluster::from_file(Path::new(&path))
    }

    pub fn from_file(path: &Path) -> Cluster {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("REAL_CLUSTER {}: {e}", path.display()));
        let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let field = |k: &str| map.get(k).map(|v| v.to_string()).unwrap_or_else(|| panic!("{} has no {k}=", path.display()));
        Cluster {
            api_url: field("api_url"),
            ca_file: field("ca_file").into(),
            admin_token_file: field("admin_token_file").into(),
            kubeconfig: field("kubeconfig").into(),
            apiserver_ctl: field("apiserver_ctl").into(),
            audit_log: field("audit_log").into(),
            chart_deployment: field("chart_deployment").into(),
            dir: field("dir").into(),
            kubernetes_version: field("kubernetes_version"),
        }
    }

    /// Runs kubectl as the test's admin; Ok(stdout) or Err(stderr).
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_with_input(args, None)
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut child = Command::new("timeout")
            .arg(CALL_TIMEOUT)
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(input) = input {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("kubectl {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stderr), stdout))
        }
    }

    /// kubectl that must succeed.
    pub fn must(&self, args: &[&str]) -> String {
        self.kubectl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An object (or list) as JSON: `kubectl get ARGS -o json`.
    pub fn get_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&all)?;
        json::from_str(&out).map_err(|_| format!("kubectl get {}: not JSON", args.join(" ")))
    }

    pub fn job(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get_json(&["-n", namespace, "job", name]).ok()
    }

    /// The names of the Jobs in `namespace` carrying label `selector`.
    pub fn job_names(&self, namespace: &str, selector: &str) -> Vec<String> {
        let list = self.get_json(&["-n", namespace, "jobs", "-l", selector]).unwrap_or_else(|e| panic!("{e}"));
        items(&list).iter().filter_map(|j| get(j, &["metadata", "name"]).and_then(text)).collect()
    }

    /// The current token of a service account, from the Secret the token controller made.
    pub fn service_account_token(&self, namespace: &str, account: &str) -> Option<(String, String)> {
        let secret = self.kubectl(&["-n", namespace, "get", "serviceaccount", account, "-o", "jsonpath={.secrets[0].name}"]).ok()?;
        let secret = secret.trim();
        if secret.is_empty() {
            return None;
        }
        let encoded = self.kubectl(&["-n", namespace, "get", "secret", secret, "-o", "jsonpath={.data.token}"]).ok()?;
        let token = kubernetes_agent::base64::decode(encoded.trim())?;
        Some((secret.to_string(), String::from_utf8(token).ok()?))
    }

    /// `apiserver-ctl stop` or `apiserver-ctl start [FLAGS]` (bounded inside: 20 s / 60 s).
    pub fn apiserver(&self, args: &[&str]) {
        let out = Command::new("timeout").arg("90").arg(&self.apiserver_ctl).args(args).output().expect("run apiserver-ctl");
        assert!(out.status.success(), "apiserver-ctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    /// Waits (bounded: 90 s) until the controller-manager's token controller handles a
    /// token Secret's deletion again after an API server restart: a fresh probe service
    /// account gets a token Secret, the Secret is deleted, and a new one must follow within
    /// 10 s; else a new probe tries again. (Kubernetes 1.20's token controller drops a
    /// deletion its Secret informer only learns of by re-listing, as a
    /// `DeletedFinalStateUnknown` it does not handle, so until its watch is back a
    /// revoked token is never replaced.)
    pub fn wait_token_controller(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        for attempt in 0.. {
            assert!(std::time::Instant::now() < deadline, "the token controller did not replace a deleted token Secret within 90 s of the restart");
            let account = format!("probe-{}-{attempt}", std::process::id());
            let _ = self.kubectl(&["-n", "default", "create", "serviceaccount", &account]);
            let Some((secret, _)) = within(Duration::from_secs(20), || self.service_account_token("default", &account)) else { continue };
            self.must(&["-n", "default", "delete", "secret", &secret]);
            let replaced = within(Duration::from_secs(10), || self.service_account_token("default", &account).filter(|(s, _)| *s != secret)).is_some();
            let _ = self.kubectl(&["-n", "default", "delete", "serviceaccount", &account, "--wait=false"]);
            if replaced {
                return;
            }
        }
    }

    /// Every audit event so far (one JSON object a line).
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines().filter_map(|l| json::from_str(l).ok()).collect()
    }

    /// The agent's container environment as the chart's Deployment gives it: the ConfigMap it
    /// names in `envFrom` (read back from the API server) and its literal `env` values.
    /// `valueFrom` entries (the private key's Secret) are left to the test.
    pub fn chart_agent_env(&self) -> Vec<(String, String)> {
        let manifest = std::fs::read_to_string(&self.chart_deployment).unwrap();
        let deployment: Value = json::from_str(&manifest).unwrap();
        let container = match get(&deployment, &["spec", "template", "spec", "containers"]) {
            Some(Value::Array(a)) => a[0].clone(),
            _ => panic!("the chart's Deployment has no containers"),
        };
        let mut env = Vec::new();
        if let Some(Value::Array(sources)) = get(&container, &["envFrom"]) {
            for source in sources.iter() {
                let name = get(source, &["configMapRef", "name"]).and_then(text).expect("envFrom is a configMapRef");
                let cm = self.get_json(&["-n", AGENT_NAMESPACE, "configmap", &name]).unwrap_or_else(|e| panic!("{e}"));
                if let Some(Value::Object(data)) = get(&cm, &["data"]) {
                    for (k, v) in data.iter() {
                        env.push((k.clone(), text(v).unwrap_or_default()));
                    }
                }
            }
        }
        if let Some(Value::Array(vars)) = get(&container, &["env"]) {
            for var in vars.iter() {
                if let (Some(k), Some(v)) = (get(var, &["name"]).and_then(text), get(var, &["value"]).and_then(text)) {
                    env.retain(|(ek, _)| *ek != k);
                    env.push((k, v));
                }
            }
        }
        env
    }
}

/// The `items` of a list.
pub fn items(list: &Value) -> Vec<Value> {
    match get(list, &["items"]) {
        Some(Value::Array(a)) => a.iter().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Waits (bounded) for `f` to give something.
pub fn within<T>(d: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + d;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
