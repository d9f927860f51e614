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

use kubernetes_agent::orchestrator::key::RunnerKey;

use super::agent::{check_message, eventually, AgentProcess, TempDir};
use super::kube::{get, text};
use super::orchestrator::Orchestrator;
use super::server::certs_dir;

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
        if let Err(e) = self.try_apiserver(args) {
            panic!("{e}");
        }
    }

    /// The same, for a `Drop` (which must not panic while a failed test unwinds).
    pub fn try_apiserver(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("timeout").arg("90").arg(&self.apiserver_ctl).args(args).output().map_err(|e| format!("apiserver-ctl: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(format!("apiserver-ctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr))),
        }
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

// The agent on the real control plane, driven through the Orchestrator stand-in: shared by
// tests/integration/real_cluster.rs and the benchmark's real-API-server rows.

pub const HOLD: Duration = Duration::from_secs(2);
pub const WAIT: Duration = Duration::from_secs(60);
/// The org and runner the seed's install values put in the chart's ConfigMap.
pub const ORG: &str = "my-org";
pub const RUNNER: &str = "my-runner";
pub const GOLDEN_ID: &str = "0b6b1b4e-2f4c-4a43-9d59-3f0f3cbb6a11";

/// A run-unique suffix for object names (DNS-1123).
pub fn nonce() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}", (nanos / 1000) % 0xff_ffff)
}

/// The Orchestrator stand-in, a registered key, and the agent's real service-account token.
pub struct Real {
    pub cluster: Cluster,
    pub orch: Orchestrator,
    pub key: RunnerKey,
    pub dir: TempDir,
    pub token_file: std::path::PathBuf,
}

impl Real {
    pub fn new() -> Real {
        Real::on(Cluster::from_env())
    }

    /// The same on a given control plane.
    pub fn on(cluster: Cluster) -> Real {
        let orch = Orchestrator::start(HOLD);
        let key = RunnerKey::generate().unwrap();
        orch.register(ORG, RUNNER, &key.public_pem());
        let dir = TempDir::new("real");
        let token_file = dir.path().join("token");
        let real = Real { cluster, orch, key, dir, token_file };
        real.write_token();
        real
    }

    /// Writes the agent service account's current token (its token Secret) to the token file.
    pub fn write_token(&self) -> String {
        let (secret, token) = within(WAIT, || self.cluster.service_account_token(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT))
            .expect("the token controller made no token Secret for the agent's service account");
        std::fs::write(&self.token_file, format!("{token}\n")).unwrap();
        secret
    }

    /// The chart Deployment's environment, with the test's key, the stand-in's URL and the
    /// out-of-cluster API coordinates.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.cluster.chart_agent_env();
        let ours = [
            ("PRIVATE_KEY", self.key.private_pem()),
            ("REMOTE_URL", self.orch.url()),
            ("REMOTE_CA_FILE", certs_dir().join("ca.pem").display().to_string()),
            ("KUBE_API_URL", self.cluster.api_url.clone()),
            ("KUBE_TOKEN_FILE", self.token_file.display().to_string()),
            ("KUBE_CA_FILE", self.cluster.ca_file.display().to_string()),
            ("LISTEN_ADDRESS", "127.0.0.1:0".to_string()),
            ("POLL_HOLD", format!("{}s", HOLD.as_secs())),
            ("LOG_FORMAT", "text".to_string()),
        ];
        for (k, v) in ours {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v));
        }
        env
    }

    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env();
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    pub fn spawn(&self, extra: &[(&str, &str)]) -> AgentProcess {
        AgentProcess::spawn(&["remote"], &self.env_with(extra))
    }

    pub fn started(&self, extra: &[(&str, &str)]) -> AgentProcess {
        super::agent::polling(&self.orch, RUNNER, self.spawn(extra), WAIT)
    }

    pub fn push(&self, message: &str) {
        super::agent::push(&self.orch, RUNNER, message, Duration::from_secs(20));
    }

    /// A create-job as the Orchestrator sends it for a runner whose job service account is
    /// the chart's: the committed golden message (`tests/golden/<golden>`) with its id,
    /// namespace and token replaced. The deployment's token is registered with the stand-in.
    pub fn create_job(&self, golden: &str, id: &str, namespace: &str) -> String {
        let token = format!("deploy-token-{id}");
        self.orch.expect_deployment(id, &token);
        golden_message(golden, id, namespace, &token)
    }

    /// Runs the agent binary with `args` and this environment; (success, stdout + stderr).
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new("timeout")
            .arg("60")
            .arg(super::agent::agent_binary())
            .args(args)
            .env_clear()
            .envs(self.env_with(extra))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// The failure reports the stand-in accepted (204) for `id`.
    pub fn reports(&self, id: &str) -> Vec<String> {
        self.orch.results().into_iter().filter(|r| r.deployment == id && r.status == 204).map(|r| r.body).collect()
    }

    /// Pushes a check-job-status for `id` (expiring at `expires_at`), waits (bounded) until
    /// the agent has handled it, and asserts nothing was reported for `id`.
    pub fn check_is_silent(&self, agent: &AgentProcess, id: &str, expires_at: &str, why: &str) {
        let checks = "kubernetes_agent_messages_total{action=\"check-job-status\"}";
        let before = metric(agent, checks);
        self.push(&check_message(id, JOB_NAMESPACE, &format!("deploy-token-{id}"), expires_at));
        let handled = eventually(WAIT, || metric(agent, checks) > before && metric(agent, "kubernetes_agent_messages_in_flight") == 0.0);
        assert!(handled, "the agent never handled the check of {id}: {:?}", agent.logs());
        std::thread::sleep(Duration::from_millis(500));
        assert!(self.reports(id).is_empty(), "{why}: {:?}", self.orch.results());
    }

    /// Waits (bounded) for the Job to exist on the API server.
    pub fn wait_job(&self, namespace: &str, id: &str, agent: &AgentProcess) -> Value {
        within(WAIT, || self.cluster.job(namespace, id)).unwrap_or_else(|| panic!("no Job {namespace}/{id} on the API server: {:?}", agent.logs()))
    }
}

pub fn golden_message(golden: &str, id: &str, namespace: &str, token: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(golden);
    std::fs::read_to_string(path)
        .unwrap()
        .replace(GOLDEN_ID, id)
        .replace(r#""namespace": "humanitec-runner-jobs""#, &format!(r#""namespace": "{namespace}""#))
        .replace("fixture-deployment-token", token)
        .replace("kubernetes-runner-job", JOB_SERVICE_ACCOUNT)
}

pub fn metric(agent: &AgentProcess, name: &str) -> f64 {
    agent.metric(name)
}

/// Audit events for the agent's service account: (verb, resource, name, namespace, code).
pub fn agent_requests(cluster: &Cluster) -> Vec<(String, String, String, String, u16)> {
    cluster
        .audit()
        .into_iter()
        .filter(|e| get(e, &["user", "username"]).and_then(text).as_deref() == Some(AGENT_USER))
        .filter(|e| get(e, &["stage"]).and_then(text).as_deref() == Some("ResponseComplete"))
        .map(|e| {
            let field = |path: &[&str]| get(&e, path).and_then(text).unwrap_or_default();
            let code = match get(&e, &["responseStatus", "code"]) {
                Some(Value::Number(n)) => n.to_string().parse().unwrap_or(0),
                _ => 0,
            };
            (field(&["verb"]), field(&["objectRef", "resource"]), field(&["objectRef", "name"]), field(&["objectRef", "namespace"]), code)
        })
        .collect()
}

/// The response codes the API server gave the agent's creates of Job `name`, in order.
pub fn create_codes(cluster: &Cluster, name: &str) -> Vec<u16> {
    agent_requests(cluster).into_iter().filter(|(verb, resource, n, _, _)| verb == "create" && resource == "jobs" && n == name).map(|r| r.4).collect()
}
