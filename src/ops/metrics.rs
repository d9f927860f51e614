//! Counters and gauges the agent keeps, and their Prometheus text rendering. Plain
//! atomics plus one mutex for the open-poll clock; no registry, no labels beyond the
//! fixed ones listed here.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A metric label's values as a type, so no label can be misspelt or unknown: each
/// variant's position is its counter's index, and `ALL` is the order they are rendered.
pub trait Label: Copy + 'static {
    /// Every value, in rendering order (the variants' declaration order).
    const ALL: &'static [Self];
    /// The label value as rendered.
    fn label(self) -> &'static str;
}

/// Declares a [`Label`] enum: each variant with the label value it renders as, in
/// rendering order (so `ALL` and `label` cannot drift from the variants).
macro_rules! labels {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl Label for $name {
            const ALL: &'static [$name] = &[$($name::$variant,)*];
            fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }
    };
}

labels! {
    /// How a poll ended (`polls_total{outcome}`).
    Poll {
        /// 200 with a message.
        Message => "message",
        /// 204: the hold ended with nothing.
        Empty => "empty",
        /// 401.
        Unauthorized => "unauthorized",
        /// 404.
        NotFound => "not_found",
        /// Another 4xx: the request is wrong and will stay wrong.
        ClientError => "client_error",
        /// 5xx (and 408/429: the server is busy).
        ServerError => "server_error",
        /// No HTTP answer: connect, TLS, timeout, reset.
        TransportError => "transport_error",
    }
}

labels! {
    /// What a received message was (`messages_total{action}`).
    Kind {
        /// A decoded create-job.
        CreateJob => "create-job",
        /// A decoded check-job-status.
        CheckJobStatus => "check-job-status",
        /// Undecodable.
        Invalid => "invalid",
        /// The same body on another poll moments ago.
        Duplicate => "duplicate",
    }
}

labels! {
    /// What a create-job ended as (`jobs_total{result}`).
    JobResult {
        /// 201.
        Created => "created",
        /// 409 AlreadyExists: success.
        AlreadyExists => "already_exists",
        /// Refused by local policy; never sent.
        Refused => "refused",
        /// Kubernetes said no, or could not be reached in time.
        Failed => "failed",
    }
}

labels! {
    /// What a failure report ended as (`failure_reports_total{result}`).
    Report {
        /// 2xx.
        Accepted => "accepted",
        /// 409: already final.
        AlreadyFinal => "already_final",
        /// Not delivered.
        Failed => "failed",
    }
}

struct PollClock {
    open: u32,
    closed_since: Option<Instant>,
    closed_total: Duration,
}

/// All metrics of one agent.
pub struct Metrics {
    polls: [AtomicU64; 7],
    messages: [AtomicU64; 4],
    jobs: [AtomicU64; 4],
    reports: [AtomicU64; 3],
    stuck: AtomicU64,
    in_flight: AtomicI64,
    held_bytes: AtomicU64,
    poll_pauses: AtomicU64,
    last_success_unix: AtomicI64,
    last_success: Mutex<Option<Instant>>,
    clock: Mutex<PollClock>,
}

fn index<L: Label + PartialEq>(value: L) -> usize {
    L::ALL.iter().position(|v| *v == value).unwrap_or(0)
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics; the no-poll-open clock starts now.
    pub fn new() -> Metrics {
        Metrics {
            polls: Default::default(),
            messages: Default::default(),
            jobs: Default::default(),
            reports: Default::default(),
            stuck: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            held_bytes: AtomicU64::new(0),
            poll_pauses: AtomicU64::new(0),
            last_success_unix: AtomicI64::new(0),
            last_success: Mutex::new(None),
            clock: Mutex::new(PollClock { open: 0, closed_since: Some(Instant::now()), closed_total: Duration::ZERO }),
        }
    }

    /// Counts a poll outcome; 200 and 204 also mark the last successful poll.
    pub fn poll(&self, outcome: Poll) {
        self.polls[index(outcome)].fetch_add(1, Ordering::Relaxed);
        if matches!(outcome, Poll::Message | Poll::Empty) {
            self.last_success_unix.store(crate::time::now(), Ordering::Relaxed);
            *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
    }

    /// Counts a message by kind.
    pub fn message(&self, kind: Kind) {
        self.messages[index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a create-job result.
    pub fn job(&self, result: JobResult) {
        self.jobs[index(result)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure-report result.
    pub fn report(&self, result: Report) {
        self.reports[index(result)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a Job found stuck by a status check.
    pub fn stuck(&self) {
        self.stuck.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages accepted and not yet handled.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::SeqCst);
    }

    /// The weight of the messages held now (see `agent::Budget`).
    pub(crate) fn set_held_bytes(&self, bytes: usize) {
        self.held_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// The polls paused because the messages held reached their budget.
    pub(crate) fn poll_paused(&self) {
        self.poll_pauses.fetch_add(1, Ordering::Relaxed);
    }

    /// A poll request is about to be sent.
    pub fn poll_opened(&self) {
        let mut c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        c.open += 1;
        if let Some(since) = c.closed_since.take() {
            c.closed_total += since.elapsed();
        }
    }

    /// A poll request returned.
    pub fn poll_closed(&self) {
        let mut c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        c.open = c.open.saturating_sub(1);
        if c.open == 0 {
            c.closed_since = Some(Instant::now());
        }
    }

    /// Polls open now.
    pub fn open_polls(&self) -> u32 {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).open
    }

    /// Total time with no poll open, start-up included.
    pub fn no_poll_open(&self) -> Duration {
        let c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        c.closed_total + c.closed_since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Time since the last 200/204 poll, if any.
    pub fn since_last_success(&self) -> Option<Duration> {
        self.last_success.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed())
    }

    /// The Prometheus text exposition. `kube_requests` comes from the Kubernetes client.
    pub fn render(&self, kube_requests: u64) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            out.push_str(&format!("# HELP kubernetes_agent_{name} {help}\n# TYPE kubernetes_agent_{name} {kind}\n"));
            for (labels, value) in rows {
                out.push_str(&format!("kubernetes_agent_{name}{labels} {value}\n"));
            }
        };
        fn labelled<L: Label>(label: &str, values: &[AtomicU64]) -> Vec<(String, String)> {
            L::ALL.iter().zip(values).map(|(n, v)| (format!("{{{label}=\"{}\"}}", n.label()), v.load(Ordering::Relaxed).to_string())).collect()
        }
        family("polls_total", "counter", "Long polls by outcome.", labelled::<Poll>("outcome", &self.polls));
        family(
            "messages_total",
            "counter",
            "Messages received, by action; invalid = undecodable, duplicate = the same message on another poll.",
            labelled::<Kind>("action", &self.messages),
        );
        family("jobs_total", "counter", "create-job results.", labelled::<JobResult>("result", &self.jobs));
        family("failure_reports_total", "counter", "Failure reports sent to the Orchestrator, by result.", labelled::<Report>("result", &self.reports));
        family("stuck_jobs_total", "counter", "Status checks that found a Job stuck.", vec![(String::new(), self.stuck.load(Ordering::Relaxed).to_string())]);
        family("open_polls", "gauge", "Long polls open now.", vec![(String::new(), self.open_polls().to_string())]);
        family(
            "no_poll_open_seconds_total",
            "counter",
            "Time with no long poll open (messages pushed then are lost to this replica).",
            vec![(String::new(), format!("{:.6}", self.no_poll_open().as_secs_f64()))],
        );
        family(
            "last_successful_poll_timestamp_seconds",
            "gauge",
            "Unix time of the last poll answered 200 or 204.",
            vec![(String::new(), self.last_success_unix.load(Ordering::Relaxed).to_string())],
        );
        family("messages_in_flight", "gauge", "Messages accepted and not yet handled.", vec![(String::new(), self.in_flight().to_string())]);
        family(
            "held_message_bytes",
            "gauge",
            "The weight of the messages held (queued or being handled); polls pause at the budget.",
            vec![(String::new(), self.held_bytes.load(Ordering::Relaxed).to_string())],
        );
        family(
            "poll_pauses_total",
            "counter",
            "Times the polls paused because the messages held reached their budget.",
            vec![(String::new(), self.poll_pauses.load(Ordering::Relaxed).to_string())],
        );
        family(
            "kubernetes_requests_total",
            "counter",
            "HTTP requests sent to the Kubernetes API, retries included.",
            vec![(String::new(), kube_requests.to_string())],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_poll_clock_stops_while_a_poll_is_open() {
        let m = Metrics::new();
        m.poll_opened();
        let before = m.no_poll_open();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(m.no_poll_open(), before, "the clock must not run while a poll is open");
        m.poll_closed();
        std::thread::sleep(Duration::from_millis(30));
        assert!(m.no_poll_open() >= before + Duration::from_millis(30));
    }

    #[test]
    fn exposition_has_help_type_and_every_label() {
        let m = Metrics::new();
        m.poll(Poll::Message);
        m.job(JobResult::Created);
        let text = m.render(7);
        assert!(text.contains("kubernetes_agent_polls_total{outcome=\"message\"} 1\n"), "{text}");
        assert!(text.contains("kubernetes_agent_jobs_total{result=\"refused\"} 0\n"), "{text}");
        assert!(text.contains("kubernetes_agent_kubernetes_requests_total 7\n"), "{text}");
        assert!(text.lines().filter(|l| l.starts_with("# TYPE")).count() == 12);
    }
}
