//! A Kubernetes API stand-in, faithful where the agent can tell (checked against a real
//! kube-apiserver 1.20 by `tests/integration/real_cluster.rs`): bearer-token checks
//! (401 with a `Status`), `Status` bodies with `reason` and `code`, 201/409 AlreadyExists
//! on create, 404 NotFound, 422 Invalid naming the field, 403 Forbidden for verbs the
//! test denies, 429 with `Retry-After` and `details.retryAfterSeconds`, `labelSelector`
//! and `fieldSelector` (equality forms), `resourceVersion`, and SelfSubjectAccessReview.
//! Every request is recorded. Shared by the integration tests and the demo.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use miniserde::json::{self, Array, Number, Object, Value};

pub use kubernetes_agent::json::get;

use super::server::{Handler, Reply, Request, Server};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorized: bool,
}

/// An injected failure for the next matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Matches when the request path contains this.
    pub path_contains: String,
    pub method: String,
    pub code: u16,
    pub reason: String,
    pub retry_after: Option<u64>,
    /// How many requests it applies to.
    pub remaining: usize,
}

#[derive(Default)]
pub struct State {
    pub tokens: BTreeSet<String>,
    /// (namespace, name) → Job object.
    pub jobs: BTreeMap<(String, String), Value>,
    pub pods: Vec<Value>,
    pub events: Vec<Value>,
    pub resource_version: u64,
    pub seen: Vec<Seen>,
    pub faults: VecDeque<Fault>,
    /// (verb, resource) pairs RBAC denies.
    pub denied: BTreeSet<(String, String)>,
    /// Until then every connection is dropped without a reply (an unreachable API server).
    pub down_until: Option<std::time::Instant>,
    /// When each Job was created, by name.
    pub created_at: BTreeMap<String, std::time::Instant>,
    /// Added to every request before it is handled (a slow API server).
    pub latency: std::time::Duration,
    /// The next create is answered with this code and a `Status` whose message quotes
    /// the request body back (a server that echoes what it was sent).
    pub echo_next_create: Option<u16>,
    /// The body of every create request, as received.
    pub create_bodies: Vec<String>,
}

/// While closed, creates wait (a stalled API server); opening releases them all.
#[derive(Default)]
pub struct Gate {
    closed: Mutex<bool>,
    opened: std::sync::Condvar,
}

/// The running stand-in.
pub struct Kube {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
    pub gate: Arc<Gate>,
}

impl Kube {
    /// Starts over TLS with the committed test certificate, accepting `token`.
    pub fn start(token: &str) -> Kube {
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().tokens.insert(token.to_string());
        let gate = Arc::new(Gate::default());
        let (s, g) = (state.clone(), gate.clone());
        let handler: Handler = Arc::new(move |req: &Request| {
            if req.method == "POST" && req.path.ends_with("/jobs") {
                let closed = g.closed.lock().unwrap();
                // Bounded: a test that forgets to open the gate still ends.
                drop(g.opened.wait_timeout_while(closed, std::time::Duration::from_secs(60), |c| *c).unwrap());
            }
            let latency = s.lock().unwrap().latency;
            std::thread::sleep(latency);
            handle(&s, req)
        });
        Kube { server: Server::start(handler, true), state, gate }
    }

    /// Every request waits `d` before it is handled.
    #[allow(dead_code)] // only the benchmark (tests/bench.d) uses it
    pub fn set_latency(&self, d: std::time::Duration) {
        self.state.lock().unwrap().latency = d;
    }

    /// Creates wait until [`Kube::open_gate`].
    pub fn close_gate(&self) {
        *self.gate.closed.lock().unwrap() = true;
    }

    pub fn open_gate(&self) {
        *self.gate.closed.lock().unwrap() = false;
        self.gate.opened.notify_all();
    }

    /// The next create is refused with `code`, its body quoted back in the message.
    pub fn echo_next_create(&self, code: u16) {
        self.state.lock().unwrap().echo_next_create = Some(code);
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Accepts `new` and stops accepting every other token (a rotation).
    pub fn rotate_token(&self, new: &str) {
        let mut s = self.state.lock().unwrap();
        s.tokens.clear();
        s.tokens.insert(new.to_string());
    }

    pub fn fail_next(&self, method: &str, path_contains: &str, code: u16, reason: &str, retry_after: Option<u64>, times: usize) {
        self.state.lock().unwrap().faults.push_back(Fault {
            path_contains: path_contains.into(),
            method: method.into(),
            code,
            reason: reason.into(),
            retry_after,
            remaining: times,
        });
    }

    /// Drops every connection for `d` (the API server unreachable), then serves again.
    pub fn go_down_for(&self, d: std::time::Duration) {
        self.state.lock().unwrap().down_until = Some(std::time::Instant::now() + d);
    }

    pub fn deny(&self, verb: &str, resource: &str) {
        self.state.lock().unwrap().denied.insert((verb.into(), resource.into()));
    }

    pub fn job(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().jobs.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    pub fn job_names(&self) -> Vec<String> {
        self.state.lock().unwrap().jobs.keys().map(|(_, n)| n.clone()).collect()
    }

    #[allow(dead_code)] // only the benchmark (tests/bench.d) uses it
    pub fn created_at(&self, name: &str) -> Option<std::time::Instant> {
        self.state.lock().unwrap().created_at.get(name).copied()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The body of every create request, as received.
    pub fn create_bodies(&self) -> Vec<String> {
        self.state.lock().unwrap().create_bodies.clone()
    }

    /// Sets `status.<field> = 1` on a Job (`succeeded`, `failed`, `active`, `ready`).
    pub fn set_job_status(&self, namespace: &str, name: &str, field: &str) {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        let rv = s.resource_version.to_string();
        if let Some(Value::Object(job)) = s.jobs.get_mut(&(namespace.to_string(), name.to_string())) {
            if let Some(Value::Object(status)) = job.get_mut("status") {
                status.insert(field.into(), Value::Number(Number::U64(1)));
            }
            if let Some(Value::Object(meta)) = job.get_mut("metadata") {
                meta.insert("resourceVersion".into(), Value::String(rv));
            }
        }
    }

    /// Adds a pod of a Job in `phase` (the Job controller's `job-name` label).
    pub fn add_pod(&self, namespace: &str, job: &str, pod: &str, phase: &str) {
        let text = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{pod}","namespace":"{namespace}","labels":{{"job-name":"{job}","batch.kubernetes.io/job-name":"{job}"}}}},"status":{{"phase":"{phase}"}}}}"#
        );
        self.state.lock().unwrap().pods.push(json::from_str(&text).unwrap());
    }

    /// Adds an Event about `involved` (a Job or Pod name).
    pub fn add_event(&self, namespace: &str, (kind, involved): (&str, &str), type_: &str, reason: &str, message: &str, time: &str) {
        let mut o = Object::new();
        let meta = format!(r#"{{"name":"{involved}.{}","namespace":"{namespace}"}}"#, reason.to_lowercase());
        o.insert("apiVersion".into(), Value::String("v1".into()));
        o.insert("kind".into(), Value::String("Event".into()));
        o.insert("metadata".into(), json::from_str(&meta).unwrap());
        o.insert("involvedObject".into(), json::from_str(&format!(r#"{{"kind":"{kind}","name":"{involved}","namespace":"{namespace}"}}"#)).unwrap());
        o.insert("type".into(), Value::String(type_.into()));
        o.insert("reason".into(), Value::String(reason.into()));
        o.insert("message".into(), Value::String(message.into()));
        o.insert("lastTimestamp".into(), Value::String(time.into()));
        self.state.lock().unwrap().events.push(Value::Object(o));
    }
    /// Adds the Warning a kube-scheduler 1.20 writes about a Pod it cannot place, shaped as
    /// the real one reads through core/v1 (it writes through events.k8s.io/v1): `eventTime`
    /// with microseconds, no `firstTimestamp` / `lastTimestamp` / `count`, an empty `source`,
    /// `reportingComponent: default-scheduler`, `action: Scheduling`.
    pub fn add_scheduler_event(&self, namespace: &str, pod: &str, message: &str, event_time: &str) {
        let text = format!(
            r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"{pod}.scheduler","namespace":"{namespace}"}},"involvedObject":{{"kind":"Pod","name":"{pod}","namespace":"{namespace}","apiVersion":"v1"}},"type":"Warning","reason":"FailedScheduling","message":{},"source":{{}},"firstTimestamp":null,"lastTimestamp":null,"eventTime":"{event_time}","action":"Scheduling","reportingComponent":"default-scheduler","reportingInstance":"default-scheduler-stand-in"}}"#,
            quote(message)
        );
        self.state.lock().unwrap().events.push(json::from_str(&text).unwrap());
    }
}

pub fn status_body(code: u16, reason: &str, message: &str, details: Option<&str>) -> String {
    let mut o = Object::new();
    o.insert("kind".into(), Value::String("Status".into()));
    o.insert("apiVersion".into(), Value::String("v1".into()));
    o.insert("metadata".into(), Value::Object(Object::new()));
    o.insert("status".into(), Value::String("Failure".into()));
    o.insert("message".into(), Value::String(message.into()));
    o.insert("reason".into(), Value::String(reason.into()));
    if let Some(d) = details {
        o.insert("details".into(), json::from_str(d).unwrap());
    }
    o.insert("code".into(), Value::Number(Number::U64(code.into())));
    json::to_string(&o)
}

fn status(code: u16, reason: &str, message: &str, details: Option<&str>) -> Reply {
    Reply::json(code, status_body(code, reason, message, details))
}

fn handle(state: &Mutex<State>, req: &Request) -> Reply {
    let mut s = state.lock().unwrap();
    if s.down_until.is_some_and(|t| std::time::Instant::now() < t) {
        return Reply::Drop;
    }
    let token = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string);
    let authorized = token.as_ref().is_some_and(|t| s.tokens.contains(t));
    s.seen.push(Seen { method: req.method.clone(), path: req.path.clone(), authorized });
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized", None);
    }
    if let Some(i) = s.faults.iter().position(|f| f.method == req.method && req.path.contains(&f.path_contains)) {
        let f = s.faults[i].clone();
        s.faults[i].remaining -= 1;
        if s.faults[i].remaining == 0 {
            s.faults.remove(i);
        }
        let details = f.retry_after.map(|r| format!(r#"{{"retryAfterSeconds":{r}}}"#));
        let reply = status(f.code, &f.reason, &format!("injected {} for {}", f.reason, req.path), details.as_deref());
        return match f.retry_after {
            Some(r) => reply.with_header("Retry-After", &r.to_string()),
            None => reply,
        };
    }
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => create_job(&mut s, ns, &req.body),
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            if s.denied.contains(&("get".into(), "jobs".into())) {
                return forbidden("get", "jobs", "batch", ns);
            }
            match s.jobs.get(&(ns.to_string(), name.to_string())) {
                Some(job) => Reply::json(200, json::to_string(job)),
                None => {
                    status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"), Some(&format!(r#"{{"name":"{name}","group":"batch","kind":"jobs"}}"#)))
                }
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            if s.denied.contains(&("list".into(), "pods".into())) {
                return forbidden("list", "pods", "", ns);
            }
            let selector = req.query.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = s.pods.iter().filter(|p| in_namespace(p, ns) && label_match(p, &selector)).cloned().collect();
            list("PodList", items, s.resource_version)
        }
        ("GET", ["api", "v1", "namespaces", ns, "events"]) => {
            if s.denied.contains(&("list".into(), "events".into())) {
                return forbidden("list", "events", "", ns);
            }
            let selector = req.query.get("fieldSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = s.events.iter().filter(|e| in_namespace(e, ns) && field_match(e, &selector)).cloned().collect();
            list("EventList", items, s.resource_version)
        }
        ("POST", ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]) => {
            let Ok(Value::Object(mut review)) = json::from_str::<Value>(&req.body) else {
                return status(400, "BadRequest", "the body is not a SelfSubjectAccessReview", None);
            };
            let attrs = get(&Value::Object(review.clone()), &["spec", "resourceAttributes"]).cloned();
            let verb = attrs.as_ref().and_then(|a| get(a, &["verb"])).and_then(text).unwrap_or_default();
            let resource = attrs.as_ref().and_then(|a| get(a, &["resource"])).and_then(text).unwrap_or_default();
            let allowed = !s.denied.contains(&(verb, resource));
            review.insert("status".into(), json::from_str(&format!(r#"{{"allowed":{allowed}}}"#)).unwrap());
            Reply::json(201, json::to_string(&review))
        }
        _ => status(404, "NotFound", "the server could not find the requested resource", None),
    }
}

fn forbidden(verb: &str, resource: &str, group: &str, ns: &str) -> Reply {
    let full = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
    status(
        403,
        "Forbidden",
        &format!("{full} is forbidden: User \"system:serviceaccount:agent:agent\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""),
        Some(&format!(r#"{{"group":"{group}","kind":"{resource}"}}"#)),
    )
}

fn create_job(s: &mut State, ns: &str, body: &str) -> Reply {
    s.create_bodies.push(body.to_string());
    if s.denied.contains(&("create".into(), "jobs".into())) {
        return forbidden("create", "jobs", "batch", ns);
    }
    if let Some(code) = s.echo_next_create.take() {
        return status(code, "Invalid", &format!("Job.batch is invalid: the request was {body}"), None);
    }
    let Ok(Value::Object(mut job)) = json::from_str::<Value>(body) else {
        // As kube-apiserver 1.20 words it (the detail after the colon is the JSON decoder's).
        return status(
            400,
            "BadRequest",
            "the object provided is unrecognized (must be of type Job): couldn't get version/kind; json parse error: unexpected end of JSON input",
            None,
        );
    };
    let name = get(&Value::Object(job.clone()), &["metadata", "name"]).and_then(text).unwrap_or_default();
    if let Some(body_ns) = get(&Value::Object(job.clone()), &["metadata", "namespace"]).and_then(text) {
        if body_ns != ns {
            return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request", None);
        }
    }
    if let Some((field, why)) = invalid_field(&Value::Object(job.clone())) {
        let details = format!(
            r#"{{"name":{},"group":"batch","kind":"Job","causes":[{{"reason":"FieldValueRequired","message":{},"field":{}}}]}}"#,
            quote(&name),
            quote(why),
            quote(field)
        );
        return status(422, "Invalid", &format!("Job.batch \"{name}\" is invalid: {field}: {why}"), Some(&details));
    }
    if s.jobs.contains_key(&(ns.to_string(), name.clone())) {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
            Some(&format!(r#"{{"name":{},"group":"batch","kind":"jobs"}}"#, quote(&name))),
        );
    }
    s.resource_version += 1;
    let uid = format!("uid-{}", s.resource_version);
    default_job(&mut job, &name, &uid);
    if let Some(Value::Object(meta)) = job.get_mut("metadata") {
        meta.insert("uid".into(), Value::String(uid));
        meta.insert("resourceVersion".into(), Value::String(s.resource_version.to_string()));
        meta.insert("creationTimestamp".into(), Value::String("2026-11-27T00:00:00Z".into()));
    }
    job.insert("status".into(), Value::Object(Object::new()));
    let job = Value::Object(job);
    let text = json::to_string(&job);
    s.created_at.insert(name.clone(), std::time::Instant::now());
    s.jobs.insert((ns.to_string(), name), job);
    Reply::json(201, text)
}

/// What kube-apiserver 1.20 adds to a Job it creates (checked against the real one by
/// `tests/integration/real_cluster.rs`): `parallelism` 1 (and `completions` 1 when neither was set),
/// `backoffLimit` 6, the generated selector `controller-uid=<uid>`, the labels
/// `controller-uid` and `job-name` on the pod template, and the template's labels (those
/// two included) on the Job when it has none.
fn default_job(job: &mut Object, name: &str, uid: &str) {
    let Some(Value::Object(spec)) = job.get_mut("spec") else { return };
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), Value::Number(Number::U64(1)));
    }
    spec.entry("parallelism".into()).or_insert(Value::Number(Number::U64(1)));
    spec.entry("backoffLimit".into()).or_insert(Value::Number(Number::U64(6)));
    spec.insert("selector".into(), json::from_str(&format!(r#"{{"matchLabels":{{"controller-uid":{}}}}}"#, quote(uid))).unwrap());
    let template = spec.entry("template".into()).or_insert_with(|| Value::Object(Object::new()));
    let mut template_labels = Object::new();
    if let Value::Object(template) = template {
        let meta = template.entry("metadata".into()).or_insert_with(|| Value::Object(Object::new()));
        if let Value::Object(meta) = meta {
            let labels = meta.entry("labels".into()).or_insert_with(|| Value::Object(Object::new()));
            if let Value::Object(labels) = labels {
                labels.insert("controller-uid".into(), Value::String(uid.into()));
                labels.insert("job-name".into(), Value::String(name.into()));
                template_labels = labels.clone();
            }
        }
    }
    if let Some(Value::Object(meta)) = job.get_mut("metadata") {
        let empty = !matches!(meta.get("labels"), Some(Value::Object(l)) if !l.is_empty());
        if empty && !template_labels.is_empty() {
            meta.insert("labels".into(), Value::Object(template_labels));
        }
    }
}

/// The first field real validation would reject, for the shapes tests use.
fn invalid_field(job: &Value) -> Option<(&'static str, &'static str)> {
    let name = get(job, &["metadata", "name"]).and_then(text).unwrap_or_default();
    if name.is_empty() {
        return Some(("metadata.name", "Required value: name or generateName is required"));
    }
    let containers = match get(job, &["spec", "template", "spec", "containers"]) {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Some(("spec.template.spec.containers", "Required value")),
    };
    for c in containers.iter() {
        if get(c, &["image"]).and_then(text).unwrap_or_default().is_empty() {
            return Some(("spec.template.spec.containers[0].image", "Required value"));
        }
    }
    match get(job, &["spec", "template", "spec", "restartPolicy"]).and_then(text).as_deref() {
        Some("Never") | Some("OnFailure") => None,
        // A pod's restartPolicy defaults to Always, which a Job refuses with this wording.
        _ => Some(("spec.template.spec.restartPolicy", "Required value: valid values: \"OnFailure\", \"Never\"")),
    }
}

fn list(kind: &str, items: Vec<Value>, rv: u64) -> Reply {
    let mut o = Object::new();
    o.insert("kind".into(), Value::String(kind.into()));
    o.insert("apiVersion".into(), Value::String("v1".into()));
    o.insert("metadata".into(), json::from_str(&format!(r#"{{"resourceVersion":"{rv}"}}"#)).unwrap());
    let mut a = Array::new();
    a.extend(items);
    o.insert("items".into(), Value::Array(a));
    Reply::json(200, json::to_string(&o))
}

fn in_namespace(v: &Value, ns: &str) -> bool {
    get(v, &["metadata", "namespace"]).and_then(text).as_deref() == Some(ns)
}

/// Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma = and.
pub fn label_match(obj: &Value, selector: &str) -> bool {
    let labels = get(obj, &["metadata", "labels"]);
    let label = |k: &str| labels.and_then(|l| get(l, &[k])).and_then(text);
    selector.split(',').map(str::trim).filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            label(k.trim()).as_deref() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            label(k.trim()).as_deref() == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(k.trim()).is_none()
        } else {
            label(term).is_some()
        }
    })
}

/// Field selectors with `=`, `==`, `!=` on dotted paths, comma = and.
pub fn field_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').map(str::trim).filter(|t| !t.is_empty()).all(|term| {
        let (path, want, negate) = match term.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((k, v)) => (k, v, false),
                None => return false,
            },
        };
        let parts: Vec<&str> = path.trim().split('.').collect();
        let found = get(obj, &parts).and_then(text);
        (found.as_deref() == Some(want.trim())) != negate
    })
}

pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn quote(s: &str) -> String {
    json::to_string(&s.to_string())
}
