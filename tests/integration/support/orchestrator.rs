//! A Platform Orchestrator stand-in (PROTOCOL §2–§4): runners registered by public key,
//! the EdDSA JWT verified on every poll, polls held up to a configurable time, a pushed
//! message delivered only to the polls open at that instant (none open = the push fails,
//! as the real one answers 503), failure results accepted once (409 after), everything
//! recorded, and fault knobs: 5xx, slow replies, dropped connections, truncated bodies, 401.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kubernetes_agent::{orchestrator::jwt, orchestrator::key};

use super::server::{Handler, Reply, Request, Server};

/// One recorded poll.
#[derive(Debug, Clone)]
pub struct PollRecord {
    pub status: u16,
    pub claims: Option<jwt::Claims>,
}

/// One recorded result.
#[derive(Debug, Clone)]
pub struct ResultRecord {
    pub deployment: String,
    pub token: String,
    pub body: String,
    pub status: u16,
}

/// One recorded push.
#[derive(Debug, Clone)]
pub struct PushRecord {
    pub delivered_to: usize,
    pub at: Instant,
}

/// A fault applied to the next polls.
#[derive(Debug, Clone, PartialEq)]
pub enum PollFault {
    Status(u16),
    /// A status with `Retry-After` seconds.
    StatusRetryAfter(u16, u64),
    Drop,
    Truncate,
    Slow(Duration),
    Oversized(usize),
}

struct Waiter {
    slot: Mutex<Option<String>>,
    ready: Condvar,
    /// When the poll was registered as open.
    since: Instant,
    /// True once the poll's client closed its connection: it is no longer a waiting poll.
    gone: Box<dyn Fn() -> bool + Send + Sync>,
}

#[derive(Default)]
pub struct State {
    /// (org, runner) → raw public key.
    pub runners: BTreeMap<(String, String), [u8; 32]>,
    /// deployment id → expected X-Deployment-Token.
    pub deployment_tokens: BTreeMap<String, String>,
    /// deployment ids already final.
    pub finals: BTreeMap<String, String>,
    pub polls: Vec<PollRecord>,
    pub results: Vec<ResultRecord>,
    pub pushes: Vec<PushRecord>,
    pub poll_faults: Vec<PollFault>,
    /// When each poll was registered as open.
    pub registered: Vec<Instant>,
    /// Every JWT that verified, in arrival order.
    pub tokens: Vec<String>,
    /// Runner → since when none of its polls has been open (absent while one is).
    none_open_since: BTreeMap<String, Instant>,
    /// Each stretch with no poll of a runner open: (runner, when it ended, how long).
    pub gaps: Vec<(String, Instant, Duration)>,
    /// While true, every poll fails with this status (a down Orchestrator that answers).
    pub down: Option<u16>,
    /// The next results are answered with these codes (and `Retry-After` seconds), in order.
    pub result_faults: std::collections::VecDeque<(u16, Option<u64>)>,
    /// How long a poll is held before its 204 (the knob: a server or proxy ending holds
    /// sooner or later than the agent assumes).
    pub hold: Duration,
    /// How long a poll handed a message takes to answer with it (the knob for a message on
    /// its way: counted as delivered by the push, not yet received by the agent).
    pub delivery_delay: Duration,
    /// Every poll that was open and no longer is: (runner, registered, ended).
    pub spans: Vec<(String, Instant, Instant)>,
    open: Vec<(String, Arc<Waiter>)>,
}

pub struct Orchestrator {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
    /// The hold it started with (the agent is configured with it unless a test says otherwise).
    pub hold: Duration,
}

impl Orchestrator {
    pub fn start(hold: Duration) -> Orchestrator {
        let state = Arc::new(Mutex::new(State { hold, ..State::default() }));
        let s = state.clone();
        let handler: Handler = Arc::new(move |req: &Request| handle(&s, req));
        Orchestrator { server: Server::start(handler, true), state, hold }
    }

    /// Makes every poll handed a message from now on answer `delay` after the push.
    pub fn set_delivery_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delivery_delay = delay;
    }

    /// Holds every poll registered from now on for `hold` before its 204.
    pub fn set_hold(&self, hold: Duration) {
        self.state.lock().unwrap().hold = hold;
    }

    /// The share of `[from, to]` during which at least `n` polls of `runner` were open, from
    /// the stand-in's own records (registration to answer).
    pub fn open_share(&self, runner: &str, n: usize, from: Instant, to: Instant) -> f64 {
        let s = self.state.lock().unwrap();
        let now = Instant::now();
        let spans = s.spans.iter().filter(|(r, _, _)| r == runner).map(|(_, a, b)| (*a, *b));
        let open = s.open.iter().filter(|(r, _)| r == runner).map(|(_, w)| (w.since, now));
        let mut edges: Vec<(Instant, i32)> = Vec::new();
        for (a, b) in spans.chain(open) {
            let (a, b) = (a.max(from), b.min(to));
            if a < b {
                edges.push((a, 1));
                edges.push((b, -1));
            }
        }
        // Ends before starts at the same instant: a re-poll registered the instant another
        // ended does not count as overlapping it.
        edges.sort_by_key(|e| (e.0, e.1));
        let (mut count, mut covered, mut last) = (0, Duration::ZERO, from);
        for (at, delta) in edges {
            if count >= n as i32 {
                covered += at - last;
            }
            count += delta;
            last = at;
        }
        covered.as_secs_f64() / (to - from).as_secs_f64()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn register(&self, org: &str, runner: &str, public_pem: &str) {
        let public = public_key_from_pem(public_pem).expect("a valid SPKI PEM");
        self.state.lock().unwrap().runners.insert((org.into(), runner.into()), public);
    }

    /// Records the deployment token a deployment's results must carry.
    pub fn expect_deployment(&self, id: &str, token: &str) {
        self.state.lock().unwrap().deployment_tokens.insert(id.into(), token.into());
    }

    /// Marks a deployment final (the job reported itself): later results get 409.
    #[allow(dead_code)] // only the demo (tests/demo.rs) uses it
    pub fn finalise(&self, id: &str) {
        self.state.lock().unwrap().finals.insert(id.into(), "success".into());
    }

    /// Polls of `runner` open now.
    pub fn open_polls(&self, runner: &str) -> usize {
        self.state.lock().unwrap().open.iter().filter(|(r, _)| r == runner).count()
    }

    /// Delivers `message` to every poll of `runner` open now; returns how many got it
    /// (0 = the push failed, as the real Orchestrator's 503).
    pub fn push(&self, runner: &str, message: &str) -> usize {
        let mut s = self.state.lock().unwrap();
        let mut delivered = 0;
        let open = std::mem::take(&mut s.open);
        for (r, waiter) in open {
            if r == runner && (waiter.gone)() {
                // A poll whose connection closed is not a waiting poll: it gets nothing.
                s.spans.push((r, waiter.since, Instant::now()));
            } else if r == runner {
                *waiter.slot.lock().unwrap() = Some(message.to_string());
                waiter.ready.notify_all();
                s.spans.push((r, waiter.since, Instant::now()));
                delivered += 1;
            } else {
                s.open.push((r, waiter));
            }
        }
        let now = Instant::now();
        if delivered > 0 {
            s.none_open_since.insert(runner.to_string(), now);
        }
        s.pushes.push(PushRecord { delivered_to: delivered, at: now });
        delivered
    }

    /// Pushes like the real Orchestrator: retries a failed push until `within` runs out.
    pub fn push_retrying(&self, runner: &str, message: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let n = self.push(runner, message);
            if n > 0 || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A poll from inside this process: no connection, no TLS, no JWT, registered the
    /// instant it is called. The benchmark's lower bound for how soon any poller can be
    /// open again after a push.
    #[allow(dead_code)] // only the benchmark (tests/bench.d) uses it
    pub fn hold_poll(&self, runner: &str, hold: Duration) -> Option<String> {
        wait_for_message(&self.state, runner, hold, Box::new(|| false)).ok().flatten()
    }

    /// The stretches with no poll of `runner` open that ended after `after`, longest first.
    pub fn gaps_after(&self, runner: &str, after: Instant) -> Vec<Duration> {
        let mut gaps: Vec<Duration> = self.state.lock().unwrap().gaps.iter().filter(|(r, end, _)| r == runner && *end > after).map(|(_, _, d)| *d).collect();
        gaps.sort_by(|a, b| b.cmp(a));
        gaps
    }

    /// Waits (bounded) until `runner` has at least `n` polls open.
    pub fn wait_for_polls(&self, runner: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.open_polls(runner) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    pub fn fault_next_polls(&self, faults: &[PollFault]) {
        self.state.lock().unwrap().poll_faults.extend_from_slice(faults);
    }

    pub fn set_down(&self, status: Option<u16>) {
        self.state.lock().unwrap().down = status;
    }

    /// Answers the next failure results with `code` (and `Retry-After`), `times` times.
    pub fn fail_next_results(&self, code: u16, retry_after: Option<u64>, times: usize) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..times {
            s.result_faults.push_back((code, retry_after));
        }
    }

    pub fn results(&self) -> Vec<ResultRecord> {
        self.state.lock().unwrap().results.clone()
    }

    pub fn polls(&self) -> Vec<PollRecord> {
        self.state.lock().unwrap().polls.clone()
    }

    /// For each push, how long until the next poll was registered (the server-side gap).
    #[allow(dead_code)] // only the benchmark (tests/bench.d) uses it
    pub fn reopen_delays(&self) -> Vec<Duration> {
        let s = self.state.lock().unwrap();
        s.pushes.iter().filter(|p| p.delivered_to > 0).filter_map(|p| s.registered.iter().find(|r| **r >= p.at).map(|r| r.duration_since(p.at))).collect()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.clone()
    }
}

fn handle(state: &Mutex<State>, req: &Request) -> Reply {
    let segments: Vec<String> = req.path.trim_matches('/').split('/').map(String::from).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("POST", ["orgs", org, "remote-runners", runner, "actions", "poll-requests"]) => poll(state, req, org, runner),
        ("POST", ["orgs", _org, "deployments", id, "results"]) => result(state, req, id),
        ("GET", [""]) => Reply::json(200, r#"{"service":"orchestrator stand-in"}"#),
        _ => Reply::json(404, r#"{"error":"not found"}"#),
    }
}

fn poll(state: &Mutex<State>, req: &Request, org: &str, runner: &str) -> Reply {
    let mut s = state.lock().unwrap();
    let record = |s: &mut State, status: u16, claims: Option<jwt::Claims>| s.polls.push(PollRecord { status, claims });
    if let Some(code) = s.down {
        record(&mut s, code, None);
        return Reply::json(code, r#"{"error":"down"}"#);
    }
    if !s.poll_faults.is_empty() {
        let fault = s.poll_faults.remove(0);
        match fault {
            PollFault::Status(code) => {
                record(&mut s, code, None);
                return Reply::json(code, r#"{"error":"injected"}"#);
            }
            PollFault::StatusRetryAfter(code, seconds) => {
                record(&mut s, code, None);
                return Reply::json(code, r#"{"error":"injected"}"#).with_header("Retry-After", &seconds.to_string());
            }
            PollFault::Drop => {
                record(&mut s, 0, None);
                return Reply::Drop;
            }
            PollFault::Truncate => {
                record(&mut s, 200, None);
                return Reply::Truncate { status: 200, body: r#"{"action":"create-job","job_id":"truncated-1","namespace":"x"}"#.into() };
            }
            PollFault::Oversized(n) => {
                record(&mut s, 200, None);
                return Reply::json(200, format!(r#"{{"action":"create-job","pad":"{}"}}"#, "x".repeat(n)));
            }
            PollFault::Slow(d) => {
                drop(s);
                std::thread::sleep(d);
                s = state.lock().unwrap();
            }
        }
    }
    let Some(public) = s.runners.get(&(org.to_string(), runner.to_string())).copied() else {
        record(&mut s, 404, None);
        return Reply::json(404, r#"{"error":"runner not found"}"#);
    };
    let token = req.header("authorization").and_then(|a| a.strip_prefix("JWT ").or_else(|| a.strip_prefix("Bearer ")));
    let now = kubernetes_agent::time::now() as u64;
    let claims = match token.map(|t| verify_jwt(t, &public, now)) {
        Some(Ok(c)) if c.org_id == org && c.runner_id == runner && c.kid == key::kid_of(&public) => {
            s.tokens.push(token.unwrap_or_default().to_string());
            c
        }
        _ => {
            record(&mut s, 401, None);
            return Reply::json(401, r#"{"error":"unauthorized"}"#);
        }
    };
    let hold = s.hold;
    drop(s);
    let request = req.clone();
    let Ok(message) = wait_for_message(state, runner, hold, Box::new(move || request.client_gone())) else {
        record(&mut state.lock().unwrap(), 0, Some(claims));
        return Reply::Drop;
    };
    let mut s = state.lock().unwrap();
    match message {
        Some(m) => {
            record(&mut s, 200, Some(claims));
            Reply::json(200, m)
        }
        None => {
            record(&mut s, 204, Some(claims));
            Reply::empty(204)
        }
    }
}

/// Registers a poll of `runner` as open and waits up to `hold` for a push: the part of a
/// poll after authentication, shared by the HTTP endpoint and [`Orchestrator::hold_poll`].
/// `Err` when the client closed the connection first (checked every 10 ms, and by a push
/// before it hands over a message).
fn wait_for_message(state: &Mutex<State>, runner: &str, hold: Duration, gone: Box<dyn Fn() -> bool + Send + Sync>) -> Result<Option<String>, ()> {
    let mut s = state.lock().unwrap();
    let now = Instant::now();
    let waiter = Arc::new(Waiter { slot: Mutex::new(None), ready: Condvar::new(), since: now, gone });
    {
        if let Some(since) = s.none_open_since.remove(runner) {
            s.gaps.push((runner.to_string(), now, now.duration_since(since)));
        }
        s.open.push((runner.to_string(), waiter.clone()));
        s.registered.push(now);
    }
    drop(s);
    let deadline = now + hold;
    let mut slot = waiter.slot.lock().unwrap();
    let mut closed = false;
    while slot.is_none() && !closed {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
        slot = waiter.ready.wait_timeout(slot, left.min(Duration::from_millis(10))).unwrap().0;
        closed = slot.is_none() && (waiter.gone)();
    }
    let message = slot.take();
    drop(slot);
    if message.is_some() {
        let delay = state.lock().unwrap().delivery_delay;
        std::thread::sleep(delay);
    }
    let mut s = state.lock().unwrap();
    let before = s.open.len();
    s.open.retain(|(_, w)| !Arc::ptr_eq(w, &waiter));
    if s.open.len() < before {
        // Not taken by a push (which records the span's end itself).
        s.spans.push((runner.to_string(), waiter.since, Instant::now()));
    }
    if s.open.len() < before && !s.open.iter().any(|(r, _)| r == runner) {
        s.none_open_since.insert(runner.to_string(), Instant::now());
    }
    if closed {
        Err(())
    } else {
        Ok(message)
    }
}

fn result(state: &Mutex<State>, req: &Request, id: &str) -> Reply {
    let mut s = state.lock().unwrap();
    let token = req.header("x-deployment-token").unwrap_or("").to_string();
    if let Some((code, retry_after)) = s.result_faults.pop_front() {
        s.results.push(ResultRecord { deployment: id.into(), token, body: req.body.clone(), status: code });
        let reply = Reply::json(code, r#"{"error":"injected"}"#);
        return match retry_after {
            Some(r) => reply.with_header("Retry-After", &r.to_string()),
            None => reply,
        };
    }
    let status = match s.deployment_tokens.get(id) {
        Some(expected) if *expected != token => 401,
        _ if s.finals.contains_key(id) => 409,
        _ => {
            s.finals.insert(id.to_string(), "failure".into());
            204
        }
    };
    s.results.push(ResultRecord { deployment: id.into(), token, body: req.body.clone(), status });
    match status {
        204 => Reply::empty(204),
        409 => Reply::json(409, r#"{"error":"deployment already final"}"#),
        _ => Reply::json(401, r#"{"error":"bad deployment token"}"#),
    }
}

/// The raw key of an Ed25519 SPKI PEM as the Orchestrator stores it (`runner_configuration.key`,
/// possibly folded onto one line with literal `\n`): the fixed 12-byte DER prefix, then the key.
pub fn public_key_from_pem(pem: &str) -> Result<[u8; 32], String> {
    const PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    let pem = pem.replace("\\n", "\n");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    if !pem.trim_start().starts_with("-----BEGIN PUBLIC KEY-----") {
        return Err("not a PUBLIC KEY PEM".into());
    }
    let der = kubernetes_agent::base64::decode(body.trim()).ok_or("the PEM body is not base64")?;
    match der.strip_prefix(&PREFIX[..]) {
        Some(key) if key.len() == 32 => Ok(key.try_into().expect("length checked")),
        _ => Err("not an Ed25519 SubjectPublicKeyInfo".into()),
    }
}

/// The Orchestrator's check of a runner's JWT, written here apart from the agent's signer:
/// verifies `token` against raw Ed25519 public-key bytes and returns its claims.
/// `now` (seconds since the epoch) is checked against `exp` when the token has one.
pub fn verify_jwt(token: &str, public: &[u8; 32], now: u64) -> Result<jwt::Claims, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("a JWT has exactly three dot-separated parts".into());
    };
    let header_json = decode_segment(header, "header")?;
    let header_value: miniserde::json::Value = miniserde::json::from_str(&header_json).map_err(|_| "header is not JSON".to_string())?;
    let alg = match &header_value {
        miniserde::json::Value::Object(o) => o.get("alg"),
        _ => None,
    };
    if !matches!(alg, Some(miniserde::json::Value::String(a)) if a == "EdDSA") {
        return Err("header alg is not EdDSA".into());
    }
    let signature = kubernetes_agent::base64::decode(signature).ok_or("signature is not base64url")?;
    if signature.len() != 64 {
        return Err("signature is not 64 bytes".into());
    }
    let signing_input = &token[..header.len() + 1 + body.len()];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "signature does not verify with the registered public key".to_string())?;
    let body_json = decode_segment(body, "claims")?;
    let Ok(miniserde::json::Value::Object(claims)) = miniserde::json::from_str::<miniserde::json::Value>(&body_json) else {
        return Err("claims are not a JSON object".into());
    };
    let text = |name: &str| match claims.get(name) {
        Some(miniserde::json::Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("claim {name} is missing or not a string")),
    };
    let number = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(miniserde::json::Value::Number(miniserde::json::Number::U64(n))) => Ok(Some(*n)),
        Some(_) => Err(format!("claim {name} is not a non-negative integer")),
    };
    let parsed = jwt::Claims { org_id: text("org_id")?, runner_id: text("runner_id")?, kid: text("kid")?, iat: number("iat")?, exp: number("exp")? };
    if let Some(exp) = parsed.exp {
        if now >= exp {
            return Err(format!("token expired at {exp} (now {now})"));
        }
    }
    Ok(parsed)
}

fn decode_segment(segment: &str, what: &str) -> Result<String, String> {
    let bytes = kubernetes_agent::base64::decode(segment).ok_or_else(|| format!("{what} is not base64url"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}
