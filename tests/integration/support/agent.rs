//! Runs the real agent binary against the stand-ins: a `World` holds both stand-ins, a
//! registered runner key and a token file; `World::spawn` starts `kubernetes-agent
//! remote` with a clean environment, captures its log lines, and finds its listener.
//! Children are killed on drop; every wait here is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubernetes_agent::orchestrator::key::RunnerKey;

use super::kube::Kube;
use super::orchestrator::Orchestrator;
pub use super::scratch::TempDir;
use super::server::certs_dir;

pub const ORG: &str = "org-1";
pub const RUNNER: &str = "runner-1";
pub const KUBE_TOKEN: &str = "kube-token-initial";

/// Both stand-ins, a registered key and the files the agent reads.
pub struct World {
    pub kube: Kube,
    pub orch: Orchestrator,
    pub key: RunnerKey,
    /// Holds the world's files until it is dropped.
    _dir: TempDir,
    pub token_file: PathBuf,
}

impl World {
    pub fn new(hold: Duration) -> World {
        let kube = Kube::start(KUBE_TOKEN);
        let orch = Orchestrator::start(hold);
        let key = RunnerKey::generate().unwrap();
        orch.register(ORG, RUNNER, &key.public_pem());
        let dir = TempDir::new("world");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{KUBE_TOKEN}\n")).unwrap();
        World { kube, orch, key, _dir: dir, token_file }
    }

    /// The environment the agent runs with: upstream variables plus out-of-cluster access.
    pub fn env(&self) -> Vec<(String, String)> {
        let ca = certs_dir().join("ca.pem").display().to_string();
        [
            ("ORG_ID", ORG.to_string()),
            ("RUNNER_ID", RUNNER.to_string()),
            ("PRIVATE_KEY", self.key.private_pem()),
            ("REMOTE_URL", self.orch.url()),
            ("REMOTE_CA_FILE", ca.clone()),
            ("KUBE_API_URL", self.kube.url()),
            ("KUBE_TOKEN_FILE", self.token_file.display().to_string()),
            ("KUBE_CA_FILE", ca),
            ("LISTEN_ADDRESS", "127.0.0.1:0".to_string()),
            ("POLL_HOLD", format!("{}s", self.orch.hold.as_secs().max(1))),
            ("LOG_FORMAT", "text".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Starts the agent with `env()` overridden by `extra` ("" removes a variable).
    pub fn spawn(&self, extra: &[(&str, &str)]) -> AgentProcess {
        let mut env = self.env();
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        AgentProcess::spawn(&["remote"], &env)
    }

    /// Starts the agent like [`World::spawn`] and waits (bounded) for its first poll.
    pub fn started(&self, extra: &[(&str, &str)]) -> AgentProcess {
        polling(&self.orch, RUNNER, self.spawn(extra), Duration::from_secs(20))
    }

    /// Pushes `message` as the Orchestrator does (retrying for up to 10 s); one poll must take it.
    pub fn push(&self, message: &str) {
        push(&self.orch, RUNNER, message, Duration::from_secs(10));
    }

    /// Like [`World::create_job_message`], with `extra` (any JSON text) added to the
    /// JobSpec under the key `x-extra` (large or deep on purpose).
    pub fn create_job_message_with(&self, id: &str, namespace: &str, extra: &str) -> String {
        let token = format!("deploy-token-{id}");
        self.orch.expect_deployment(id, &token);
        let spec = default_jobspec(id);
        let spec = format!("{},\"x-extra\":{extra}}}", &spec[..spec.len() - 1]);
        format!(r#"{{"action":"create-job","job_id":"{id}","namespace":"{namespace}","configuration":{spec},"deployment_token":"{token}"}}"#)
    }

    /// Pushes a create-job for `id` with a JobSpec the Orchestrator would send.
    pub fn create_job_message(&self, id: &str, namespace: &str) -> String {
        let token = format!("deploy-token-{id}");
        self.orch.expect_deployment(id, &token);
        create_job_message(id, namespace, &token)
    }
}

/// The Orchestrator's default JobSpec (PROTOCOL §5) with one pod_template-style overlay.
pub fn default_jobspec(id: &str) -> String {
    format!(
        r#"{{"ttlSecondsAfterFinished":3600,"parallelism":1,"backoffLimit":0,"template":{{"metadata":{{"labels":{{"team":"platform"}}}},"spec":{{"restartPolicy":"Never","serviceAccountName":"kubernetes-runner-job","containers":[{{"name":"main","image":"ghcr.io/humanitec/platform-orchestrator-runner:1.4.0","imagePullPolicy":"IfNotPresent","args":["standard"],"resources":{{"requests":{{"memory":"1Gi"}}}},"securityContext":{{"allowPrivilegeEscalation":false,"capabilities":{{"drop":["ALL"]}},"seccompProfile":{{"type":"RuntimeDefault"}},"runAsNonRoot":true}},"env":[{{"name":"ORG_ID","value":"org-1"}},{{"name":"DEPLOYMENT_ID","value":"{id}"}},{{"name":"MODE","value":"deploy"}},{{"name":"TOKEN","value":"job-secret-token-{id}"}}],"volumeMounts":[{{"name":"tofu","mountPath":"/opt/runner/tofu"}}]}}],"nodeSelector":{{"pool":"runners"}},"volumes":[{{"name":"tofu","emptyDir":{{}}}}]}}}}}}"#
    )
}

pub fn create_job_message(id: &str, namespace: &str, token: &str) -> String {
    format!(r#"{{"action":"create-job","job_id":"{id}","namespace":"{namespace}","configuration":{},"deployment_token":"{token}"}}"#, default_jobspec(id))
}

pub fn check_message(id: &str, namespace: &str, token: &str, expires_at: &str) -> String {
    format!(r#"{{"action":"check-job-status","job_id":"{id}","namespace":"{namespace}","deployment_token":"{token}","expires_at":"{expires_at}"}}"#)
}

/// The binary under test: `AGENT_BIN` when set (the benchmark points it at the release
/// musl build), else the one cargo built for this test run.
pub fn agent_binary() -> PathBuf {
    std::env::var_os("AGENT_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kubernetes-agent")))
}

/// `agent` once it has opened a poll on `orch` as `runner` (waiting at most `within`).
pub fn polling(orch: &Orchestrator, runner: &str, agent: AgentProcess, within: Duration) -> AgentProcess {
    assert!(orch.wait_for_polls(runner, 1, within), "the agent never opened a poll: {:?}", agent.logs());
    agent
}

/// Pushes `message` to `runner`'s polls as the Orchestrator does, retrying for up to
/// `within`; one poll must take it.
pub fn push(orch: &Orchestrator, runner: &str, message: &str, within: Duration) {
    assert!(orch.push_retrying(runner, message, within) > 0, "no poll took the message");
}

/// A running agent process.
pub struct AgentProcess {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl AgentProcess {
    pub fn spawn(args: &[&str], env: &[(String, String)]) -> AgentProcess {
        let mut child = Command::new(agent_binary())
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the agent binary");
        // Both streams, so a secret scan of the lines sees anything the agent printed.
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stdout.take().unwrap())] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        AgentProcess { child, lines }
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The listener address the agent logged.
    pub fn listen_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("serving /healthz", Duration::from_secs(10)).unwrap_or_else(|| panic!("no listener line in {:?}", self.logs()));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// GET on the listener; returns (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect_timeout(&self.listen_addr(), Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
        (code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    /// One metric's value (the first line starting with `name`).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident set size in KiB over the process's life (`VmHWM`), from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// A `/proc/<pid>/status` field in KiB (0 when it cannot be read).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid we own.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `cond` holds.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
