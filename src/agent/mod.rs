//! The running agent (the runtime; one message's handling is [`handle`]): long polls kept a fraction of a hold apart that hand each message to
//! a worker and poll again at once, the workers that act on messages, and shutdown. The stages of one
//! message, in order: `dispatch` (dedupe, weigh, queue) → `handle` (decode) → `create_job` or
//! `check_job_status` → `report_failure` when the deployment must be told.
//!
//! Memory is bounded by [`Budget`]: every message received is weighed (an upper bound on
//! what its handling can hold, [`crate::json::Shape::weight`]) and counted until a worker
//! is done with it; while the messages held weigh [`HELD_BUDGET`] or more, no poll opens.
//! A message never received is retried by the Orchestrator; one dropped after receipt
//! would be lost, so nothing received is ever dropped.

pub mod handle;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::error::Result;
use crate::kube;
use crate::ops::metrics::{self, Metrics};
use crate::orchestrator::{PollOutcome, Remote};
use crate::render::JobPolicy;

/// Workers acting on messages in parallel (each create-job is one short API call, so a
/// few keep up with bursts; every thread costs resident memory).
pub const WORKERS: usize = 4;
/// The same message seen again within this window (on another poll) is a duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10);
/// Backoff cap after failed polls.
pub const MAX_POLL_BACKOFF: Duration = Duration::from_secs(30);
/// A poll answered 204 sooner than this was not held by the server (a misbehaving proxy
/// or server); the next poll of that thread waits out the rest, so it never spins.
pub const MIN_EMPTY_POLL: Duration = Duration::from_secs(1);
/// Not ready when no poll has succeeded for this long.
pub const READY_WITHIN: Duration = Duration::from_secs(90);
/// The weight of messages held (queued or being handled) at which polls pause. A poll
/// already open may still bring one more each, so the most ever held is this plus
/// `POLLS` times the weight of the largest message ([`crate::orchestrator::MESSAGE_CAP`] of
/// text within the parser's bounds).
pub const HELD_BUDGET: usize = 8 << 20;
/// Distinct message bodies remembered for de-duplication (more within the window are
/// handled twice, which is harmless: the Job name is the idempotency key).
pub const RECENT_CAP: usize = 4_096;

/// The weight of the messages the agent holds, and the polls' wait for room.
#[derive(Default)]
pub struct Budget {
    held: Mutex<usize>,
    freed: Condvar,
}

impl Budget {
    /// Adds a received message's weight.
    fn take(&self, weight: usize) -> usize {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *held += weight;
        *held
    }

    /// Removes a handled message's weight and wakes the polls waiting for room.
    fn give(&self, weight: usize) -> usize {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = held.saturating_sub(weight);
        self.freed.notify_all();
        *held
    }

    /// Blocks while the held weight is at or over `limit`; false when stopping. Returns
    /// at once when there is room, which is always the case but under a flood.
    fn wait_for_room(&self, limit: usize, stop: &Stop, metrics: &Metrics) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if *held >= limit {
            metrics.poll_paused();
            log::info!("holding {} KiB of messages (budget {} KiB): polls pause until the workers catch up", *held >> 10, limit >> 10);
        }
        while *held >= limit {
            if stop.is_stopped() {
                return false;
            }
            // Re-checked at least every 200 ms, so a stop is seen promptly.
            held = self.freed.wait_timeout(held, Duration::from_millis(200)).unwrap_or_else(|p| p.into_inner()).0;
        }
        !stop.is_stopped()
    }
}

/// One received message and its weight, on its way to a worker.
struct Held {
    body: String,
    weight: usize,
}

pub use crate::backoff::Stop;

/// What a message handler needs; shared by the workers.
pub struct Context {
    /// The Kubernetes API.
    pub kube: kube::Client,
    /// The Orchestrator.
    pub remote: Remote,
    /// Local Job policy.
    pub policy: JobPolicy,
    /// Metrics.
    pub metrics: Metrics,
    /// Shutdown flag.
    pub stop: Stop,
    /// The Orchestrator's hold, for spacing the polls.
    pub hold: Duration,
    /// The weight of messages held.
    pub budget: Budget,
    /// The weight at which polls pause ([`HELD_BUDGET`]; tests lower it).
    pub held_limit: usize,
    /// How long a Job's pod may be blocked before a status check reports it.
    pub startup_grace: Option<Duration>,
    recent: Mutex<HashMap<u64, Instant>>,
}

impl Context {
    /// Builds the clients from `config`; fails on unreadable credentials.
    pub fn new(config: &AgentConfig) -> Result<Context> {
        let kube = kube::Client::new(config.kube.clone(), kube::client::Settings::default())?;
        let remote = Remote::new(config.connection.clone(), &config.org_id, &config.runner_id, config.key.clone(), config.token_lifetime, config.poll_hold)?;
        Ok(Context {
            kube,
            remote,
            policy: config.policy.clone(),
            metrics: Metrics::new(),
            stop: Stop::default(),
            hold: config.poll_hold,
            budget: Budget::default(),
            held_limit: HELD_BUDGET,
            startup_grace: config.startup_grace,
            recent: Mutex::new(HashMap::new()),
        })
    }

    /// Ready when a poll succeeded within [`READY_WITHIN`].
    pub fn ready(&self) -> bool {
        self.metrics.since_last_success().is_some_and(|d| d < READY_WITHIN)
    }
}

impl crate::ops::listener::Probe for Context {
    fn stopping(&self) -> bool {
        self.stop.is_stopped()
    }

    fn ready(&self) -> bool {
        Context::ready(self)
    }

    fn metrics(&self) -> String {
        self.metrics.render(self.kube.requests_sent())
    }
}

/// The agent's lifecycle: starts the listener (when `LISTEN_ADDRESS` is set), the polls
/// and the workers, and runs until SIGTERM or SIGINT, then shuts down within
/// `SHUTDOWN_TIMEOUT` (see [`Running::shutdown`]).
pub fn run(config: &AgentConfig) -> Result<()> {
    crate::sys::signals::block();
    let context = Arc::new(Context::new(config)?);
    if let Some(addr) = config.listen {
        let bound = crate::ops::listener::start(addr, context.clone())?;
        log::info!("serving /healthz, /readyz and /metrics on {bound}");
    }
    let running = start(context, config.polls);
    let signal = crate::sys::signals::wait();
    log::info!(
        "{signal} received: no new polls; waiting up to {} s for the {} open poll(s) to end and for {} in-flight message(s)",
        config.shutdown_timeout.as_secs(),
        running.context.metrics.open_polls(),
        running.context.metrics.in_flight()
    );
    let left = running.shutdown(config.shutdown_timeout);
    if left.polls > 0 {
        log::warn!(
            "exiting with {} poll(s) still held after SHUTDOWN_TIMEOUT: a message handed to them now is lost; set SHUTDOWN_TIMEOUT above the Orchestrator's hold",
            left.polls
        );
    }
    if left.messages > 0 {
        log::warn!("exiting with {} message(s) unhandled after SHUTDOWN_TIMEOUT; their deployments are re-checked by the Orchestrator", left.messages);
    }
    if left == Left::default() {
        log::info!("stopped cleanly");
    }
    Ok(())
}

/// A started agent.
pub struct Running {
    /// Shared state, for the listener and for shutdown.
    pub context: Arc<Context>,
    /// Poll threads not yet finished: one still in its poll may yet bring a message.
    polling: Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts `polls` long polls and the workers.
pub fn start(context: Arc<Context>, polls: usize) -> Running {
    let (tx, rx) = mpsc::channel::<Held>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..WORKERS {
        let (ctx, rx) = (context.clone(), rx.clone());
        std::thread::Builder::new().name(format!("worker-{i}")).spawn(move || work(&ctx, &rx)).expect("spawn a worker thread");
    }
    let spacing = Arc::new(Spacing::new(polls, context.hold));
    let polling = Arc::new(std::sync::atomic::AtomicUsize::new(polls));
    for i in 0..polls {
        let (ctx, tx, spacing, polling) = (context.clone(), tx.clone(), spacing.clone(), polling.clone());
        let run = move || {
            poll_loop(&ctx, &tx, &spacing, i);
            polling.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        };
        std::thread::Builder::new().name(format!("poll-{i}")).spawn(run).expect("spawn a poll thread");
    }
    log::info!(
        "polling {} with {polls} long polls kept apart as runner {} (kid {})",
        context.remote.shown_poll_url(),
        context.policy.runner_id.as_deref().unwrap_or("?"),
        context.remote.kid()
    );
    Running { context, polling }
}

/// What was left when [`Running::shutdown`] returned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Polls still held by the server at the deadline (cut by the exit).
    pub polls: usize,
    /// Messages received and not yet handled at the deadline.
    pub messages: i64,
}

impl Running {
    /// Stops polling and waits up to `grace` for the polls still open to end and for every
    /// message received to be handled. No poll opens after the stop, but one already open
    /// is still a waiting poll to the Orchestrator, which may hand it a message up to the
    /// end of its hold: cutting it would lose a message the Orchestrator counts as
    /// delivered (it retries only a push that found no poll). So each open poll is left to
    /// end (within the hold learned, at most `POLL_HOLD` + 15 s), what it brings is handled
    /// like any message, and only then does the agent exit. Returns what was left at `grace`.
    pub fn shutdown(self, grace: Duration) -> Left {
        self.context.stop.stop_within(grace);
        let deadline = Instant::now() + grace;
        let left = || Left { polls: self.polling.load(std::sync::atomic::Ordering::SeqCst), messages: self.context.metrics.in_flight() };
        while left() != Left::default() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        left()
    }
}

/// When each of the agent's polls opens, so that their holds end apart. Every open poll
/// receives each message (PROTOCOL §3), so after one every poll re-opens at once: in a
/// burst, whichever is registered first catches the next message. But polls that re-opened
/// together expire together a hold later, and while they all re-poll none is open. So a
/// poll whose hold ended (204) re-opens at once only when none of the others is open;
/// otherwise it waits until `hold / n` after the latest of them opened (one more `hold / n`
/// per lower-numbered poll already waiting), or until the open one closes. After a burst
/// the first hold's end pulls the polls apart, and from then on their holds end apart.
///
/// The hold is the one the server really gives, learned from the 204s received
/// ([`Spacing::held`]): a server or proxy that ends holds sooner than `POLL_HOLD` would
/// otherwise keep a waiting poll waiting for ever (its turn moving later with every re-open
/// of the one open poll). Until the first full hold is seen the configured hold is assumed.
/// At start-up the polls open [`START_STEP`] apart, whatever the hold: the second one is
/// open before the first one's hold can end (a hold is at least [`MIN_EMPTY_POLL`]), so a
/// first poll cut short never leaves none open, and the first hold's end pulls them apart.
pub struct Spacing {
    slots: Mutex<Vec<Slot>>,
    changed: Condvar,
    /// The configured hold, assumed until a full hold was seen.
    configured: Duration,
    /// The latest full holds, oldest first (at most [`HOLD_SAMPLES`]), and the hold last
    /// announced in the log.
    holds: Mutex<(std::collections::VecDeque<Duration>, Duration)>,
    started: Instant,
}

/// The median of `holds`, the lower one of an even count; `None` when there is none.
fn median(holds: &std::collections::VecDeque<Duration>) -> Option<Duration> {
    let mut sorted: Vec<Duration> = holds.iter().copied().collect();
    sorted.sort();
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// Full holds the learned hold is the median of: one odd hold (a proxy cutting one poll
/// short, a slow round trip) does not move it, and a server whose hold changed is followed
/// after three.
pub const HOLD_SAMPLES: usize = 5;
/// How far apart the polls first open at start-up: under half of [`MIN_EMPTY_POLL`], the
/// shortest hold there is, and longer than a re-poll's round trip.
pub const START_STEP: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    /// Not opened yet: poll `i` first opens `i` [`START_STEP`]s after the start.
    New,
    Closed,
    Open(Instant),
    Waiting,
}

impl Spacing {
    /// Spacing for `n` polls, assuming the configured `hold` until one is seen.
    pub fn new(n: usize, hold: Duration) -> Spacing {
        Spacing {
            slots: Mutex::new(vec![Slot::New; n.max(1)]),
            changed: Condvar::new(),
            configured: hold,
            holds: Mutex::new((std::collections::VecDeque::with_capacity(HOLD_SAMPLES), hold)),
            started: Instant::now(),
        }
    }

    /// Records a full hold: the time from sending a poll to its 204 (one that came sooner
    /// than [`MIN_EMPTY_POLL`] was not held and must not be given here). Returns the hold
    /// the polls are now spaced by when it moved by more than a quarter from the one last
    /// returned (at first, the configured one), for the log.
    pub fn held(&self, hold: Duration) -> Option<Duration> {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if holds.0.len() == HOLD_SAMPLES {
            holds.0.pop_front();
        }
        holds.0.push_back(hold);
        let now = median(&holds.0).unwrap_or(self.configured);
        let moved = now.abs_diff(holds.1) > holds.1 / 4;
        moved.then(|| {
            holds.1 = now;
            now
        })
    }

    /// The hold the polls are spaced by: the median of the latest full holds (the lower
    /// one of an even count, as a hold taken too short only brings the ends closer), or
    /// the configured hold before any was seen.
    pub fn hold(&self) -> Duration {
        median(&self.holds.lock().unwrap_or_else(|p| p.into_inner()).0).unwrap_or(self.configured)
    }

    /// When poll `i` should open, given the others: `None` = now.
    fn due(&self, slots: &[Slot], i: usize) -> Option<Instant> {
        if slots[i] == Slot::New {
            return Some(self.started + START_STEP * i as u32).filter(|_| i > 0);
        }
        let latest_open = slots.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, s)| if let Slot::Open(at) = s { Some(*at) } else { None }).max()?;
        let waiting_before = slots[..i].iter().filter(|s| **s == Slot::Waiting).count() as u32;
        let step = self.hold() / slots.len() as u32;
        Some(latest_open + step * (waiting_before + 1))
    }

    /// Blocks until poll `i` should open (at once when it just delivered a message), then
    /// marks it open; false when stopping.
    pub fn open(&self, i: usize, stop: &Stop, after_message: bool) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop.is_stopped() {
                slots[i] = Slot::Closed;
                self.changed.notify_all();
                return false;
            }
            let now = Instant::now();
            match if after_message { None } else { self.due(&slots, i) } {
                Some(at) if at > now => {
                    if slots[i] != Slot::New {
                        slots[i] = Slot::Waiting;
                    }
                    // Re-checked at least every second, so a stop is seen promptly.
                    let wait = (at - now).min(Duration::from_secs(1));
                    slots = self.changed.wait_timeout(slots, wait).unwrap_or_else(|p| p.into_inner()).0;
                }
                _ => {
                    // No wake-up: opening only moves the others' turns later, and a waiting
                    // poll re-checks its turn when its wait ends.
                    slots[i] = Slot::Open(now);
                    return true;
                }
            }
        }
    }

    /// Marks poll `i` closed before its thread sleeps (backing off, or after a 204 that
    /// came too soon); a waiting poll may now be the only one that can open, so it is woken.
    pub fn close(&self, i: usize) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots[i] = Slot::Closed;
        if slots.contains(&Slot::Waiting) {
            self.changed.notify_all();
        }
    }
}

fn poll_loop(ctx: &Context, tx: &Sender<Held>, spacing: &Spacing, i: usize) {
    // One policy for every failed poll (crate::backoff): a refusal of this runner (401,
    // 404) starts at 5 s, anything else at 500 ms; a server's Retry-After wins.
    let mut refused = Backoff::new(Duration::from_secs(5), MAX_POLL_BACKOFF);
    let mut failing = Backoff::new(Duration::from_millis(500), MAX_POLL_BACKOFF);
    let mut warned_cut_hold = false;
    let mut after_message = false;
    while ctx.budget.wait_for_room(ctx.held_limit, &ctx.stop, &ctx.metrics) && spacing.open(i, &ctx.stop, after_message) {
        ctx.metrics.poll_opened();
        let sent = Instant::now();
        let outcome = ctx.remote.poll();
        ctx.metrics.poll_closed();
        after_message = matches!(outcome, PollOutcome::Message(_));
        // The slot stays marked open while this thread hands a message over or re-polls
        // after a full hold (microseconds), so no waiting poll is woken for nothing; it is
        // closed only before this thread sleeps.
        let delay = match outcome {
            PollOutcome::Message(body) => {
                ctx.metrics.poll(metrics::Poll::Message);
                dispatch(ctx, tx, body);
                None
            }
            PollOutcome::Empty => {
                ctx.metrics.poll(metrics::Poll::Empty);
                // A quiet hold: give back the stack the last TLS handshake left resident.
                crate::sys::stack::trim();
                let held = sent.elapsed();
                if held >= MIN_EMPTY_POLL {
                    if let Some(hold) = spacing.held(held) {
                        log::info!(
                            "the Orchestrator holds polls about {:.1} s (POLL_HOLD is {} s): the polls are spaced by the hold it gives",
                            hold.as_secs_f64(),
                            ctx.hold.as_secs()
                        );
                    }
                } else {
                    spacing.close(i);
                    if ctx.stop.sleep(MIN_EMPTY_POLL - held) {
                        return;
                    }
                }
                None
            }
            PollOutcome::Unauthorized => {
                ctx.metrics.poll(metrics::Poll::Unauthorized);
                log::error!(
                    "the Orchestrator rejected this runner's token (401): the public key registered for runner '{}' does not match PRIVATE_KEY (kid {}). \
                     Register the public key that 'kubernetes-agent check' prints, or mount the matching private key. Retrying with backoff.",
                    ctx.policy.runner_id.as_deref().unwrap_or("?"),
                    ctx.remote.kid()
                );
                Some(refused.next(None))
            }
            PollOutcome::NotFound => {
                ctx.metrics.poll(metrics::Poll::NotFound);
                log::error!(
                    "the Orchestrator does not know organisation '{}' or runner '{}' (404 from {}): check that REMOTE_URL is the Orchestrator API's base URL, ORG_ID and RUNNER_ID, and that the runner was created \
                     ('hctl create runner') with the public key of kid {}. Retrying with backoff.",
                    ctx.policy.org_id.as_deref().unwrap_or("?"),
                    ctx.policy.runner_id.as_deref().unwrap_or("?"),
                    ctx.remote.shown_poll_url(),
                    ctx.remote.kid()
                );
                Some(refused.next(None))
            }
            PollOutcome::Status { code, retry_after } => {
                ctx.metrics.poll(if (400..500).contains(&code) && !crate::error::is_transient_code(code) {
                    metrics::Poll::ClientError
                } else {
                    metrics::Poll::ServerError
                });
                let wait = failing.next(retry_after.map(Duration::from_secs));
                log::warn!(
                    "poll answered HTTP {code} by {}; retrying in {} ms (if it persists, check that REMOTE_URL is the Orchestrator API and what a proxy in between answers)",
                    ctx.remote.shown_url(),
                    wait.as_millis()
                );
                Some(wait)
            }
            PollOutcome::Transport(why) if sent.elapsed() + Duration::from_secs(1) >= ctx.hold + crate::orchestrator::POLL_MARGIN => {
                // The server held the poll past the client's timeout: a hold longer than
                // POLL_HOLD + 15 s, not a failure. Poll again at once, and say what to set.
                ctx.metrics.poll(metrics::Poll::TransportError);
                if !warned_cut_hold {
                    warned_cut_hold = true;
                    log::warn!(
                        "a poll to {} was held past the client timeout ({} s, POLL_HOLD + 15 s): {why}; set POLL_HOLD to the Orchestrator's hold",
                        ctx.remote.shown_url(),
                        (ctx.hold + crate::orchestrator::POLL_MARGIN).as_secs()
                    );
                }
                None
            }
            PollOutcome::Transport(why) => {
                ctx.metrics.poll(metrics::Poll::TransportError);
                let wait = failing.next(None);
                log::warn!(
                    "poll to {} failed: {why}; retrying in {} ms (check REMOTE_URL, HTTPS_PROXY / NO_PROXY and REMOTE_CA_FILE; 'kubernetes-agent check' tests the connection)",
                    ctx.remote.shown_url(),
                    wait.as_millis()
                );
                Some(wait)
            }
        };
        match delay {
            None => {
                refused.reset();
                failing.reset();
            }
            Some(wait) => {
                spacing.close(i);
                if ctx.stop.sleep(wait) {
                    return;
                }
            }
        }
    }
}

/// Queues a message for a worker, weighed, unless the same body arrived moments ago on
/// another poll.
fn dispatch(ctx: &Context, tx: &Sender<Held>, body: String) {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let key = hasher.finish();
    {
        let mut recent = ctx.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        recent.retain(|_, seen| now.duration_since(*seen) < DUPLICATE_WINDOW);
        if recent.contains_key(&key) {
            ctx.metrics.message(metrics::Kind::Duplicate);
            return;
        }
        if recent.len() < RECENT_CAP {
            recent.insert(key, now);
        }
    }
    let weight = weight(&body);
    ctx.metrics.set_held_bytes(ctx.budget.take(weight));
    ctx.metrics.add_in_flight(1);
    if let Err(unsent) = tx.send(Held { body, weight }) {
        ctx.metrics.set_held_bytes(ctx.budget.give(unsent.0.weight));
        ctx.metrics.add_in_flight(-1);
    }
}

/// What handling `body` can hold at once: the weight of its shape, or just its text when
/// the parser will refuse it before building anything.
fn weight(body: &str) -> usize {
    let shape = crate::json::Shape::of(body);
    if shape.refusal().is_some() {
        body.len()
    } else {
        shape.weight()
    }
}

fn work(ctx: &Context, rx: &Mutex<Receiver<Held>>) {
    crate::sys::batch_scheduling();
    loop {
        let next = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.try_recv().or_else(|e| match e {
                // Going idle: give back the stack the last message's handling (a TLS
                // handshake to the API server) left resident. Not between messages of a
                // burst, where the next one would only fault the pages back in.
                TryRecvError::Empty => {
                    crate::sys::stack::trim();
                    rx.recv().map_err(|_| TryRecvError::Disconnected)
                }
                e => Err(e),
            })
        };
        let Ok(Held { body, weight }) = next else { return };
        handle::handle(ctx, body);
        ctx.metrics.set_held_bytes(ctx.budget.give(weight));
        ctx.metrics.add_in_flight(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_opens_at_once_unless_another_is_open_then_a_step_after_it() {
        let spacing = Spacing::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(spacing.due(&[Slot::Closed, Slot::Closed, Slot::Closed], 0), None);
        assert_eq!(spacing.due(&[Slot::Closed, Slot::Waiting, Slot::Closed], 2), None, "a waiting poll is not an open one");
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::Closed, Slot::Closed], 1), Some(t0 + Duration::from_secs(10)));
        let later = t0 + Duration::from_secs(4);
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::Waiting, Slot::Open(later)], 1), Some(later + Duration::from_secs(10)), "the latest open one counts");
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::Waiting, Slot::Closed], 2), Some(t0 + Duration::from_secs(20)), "one step more per lower poll waiting");
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::Closed, Slot::Closed], 0), None, "its own open slot does not count");
    }

    #[test]
    fn the_polls_first_open_a_start_step_apart_whatever_the_hold() {
        let spacing = Spacing::new(3, Duration::from_secs(30));
        let t0 = spacing.started;
        assert_eq!(spacing.due(&[Slot::New, Slot::New, Slot::New], 0), None);
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::New, Slot::New], 1), Some(t0 + START_STEP), "not a third of the 30 s assumed");
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::Open(t0), Slot::New], 2), Some(t0 + START_STEP * 2));
    }

    #[test]
    fn the_polls_are_spaced_by_the_median_of_the_latest_full_holds() {
        let spacing = Spacing::new(2, Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(spacing.hold(), Duration::from_secs(30), "the configured hold until one is seen");
        assert_eq!(spacing.held(Duration::from_secs(5)), Some(Duration::from_secs(5)), "a move worth a log line");
        assert_eq!(spacing.hold(), Duration::from_secs(5), "the first full hold replaces the assumption");
        assert_eq!(spacing.due(&[Slot::Open(t0), Slot::Closed], 1), Some(t0 + Duration::from_millis(2500)));
        assert_eq!(spacing.held(Duration::from_secs(30)), None, "no move, no log line");
        assert_eq!(spacing.hold(), Duration::from_secs(5), "of two, the lower");
        for _ in 0..2 {
            spacing.held(Duration::from_secs(5));
        }
        spacing.held(Duration::from_secs(2));
        assert_eq!(spacing.hold(), Duration::from_secs(5), "one odd hold does not move it");
        for _ in 0..3 {
            spacing.held(Duration::from_secs(60));
        }
        assert_eq!(spacing.hold(), Duration::from_secs(60), "a longer hold is followed after three of the latest five");
    }

    #[test]
    fn a_stop_releases_a_waiting_poll_promptly() {
        let spacing = Arc::new(Spacing::new(2, Duration::from_secs(60)));
        let stop = Arc::new(Stop::default());
        assert!(spacing.open(0, &stop, false));
        assert!(spacing.open(1, &stop, false));
        spacing.close(1);
        let waiter = {
            let (spacing, stop) = (spacing.clone(), stop.clone());
            std::thread::spawn(move || spacing.open(1, &stop, false))
        };
        std::thread::sleep(Duration::from_millis(50));
        let asked = Instant::now();
        stop.stop_within(Duration::ZERO);
        assert!(!waiter.join().unwrap(), "a stopped poll does not open");
        assert!(asked.elapsed() < Duration::from_secs(3), "released in {:?}", asked.elapsed());
    }
}
