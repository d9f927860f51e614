//! The one retry policy of the agent: how long to wait before trying again, and whether
//! there is time to. Every loop that retries (the polls, the Kubernetes client, failure
//! reports) uses [`Backoff`] for its delays and [`Until`] for its bound, so a stop or a
//! deadline ends every one of them the same way.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A flag with an interruptible sleep, shared by every thread. Raised with a grace
/// ([`Stop::stop_within`]), it lets work already accepted finish: polls stop at once,
/// while a retrying call may go on until the grace ends ([`Until::wait`]).
#[derive(Default)]
pub struct Stop {
    /// `Some(end of the grace)` once stopped.
    stopped: Mutex<Option<Instant>>,
    wake: Condvar,
}

impl Stop {
    /// A flag not yet raised.
    pub const fn new() -> Stop {
        Stop { stopped: Mutex::new(None), wake: Condvar::new() }
    }

    /// Asks every thread to stop, letting accepted work retry for `grace` more.
    pub fn stop_within(&self, grace: Duration) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if stopped.is_none() {
            *stopped = Some(Instant::now() + grace);
        }
        self.wake.notify_all();
    }

    /// True once stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// When the grace ends, once stopped.
    fn grace_ends(&self) -> Option<Instant> {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps for `d` or until stopped; returns true when stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self.wake.wait_timeout_while(guard, d, |s| s.is_none()).unwrap_or_else(|p| p.into_inner());
        guard.is_some()
    }
}

/// Exponential delays with jitter: the n-th delay is drawn from `[b/2, b]` with
/// `b = first × 2ⁿ⁻¹`, capped at `cap`; a peer's `Retry-After` replaces it (capped too).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `first`, never longer than `cap`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff { first, cap, attempt: 0 }
    }

    /// The delay before the next attempt; `retry_after` is what the peer asked for.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        if let Some(asked) = retry_after {
            return asked.min(self.cap);
        }
        let base = self.first.saturating_mul(1 << (self.attempt - 1).min(16)).min(self.cap);
        let half = base / 2;
        half + Duration::from_millis(crate::random::below(half.as_millis() as u64 + 1))
    }

    /// Delays made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// How long a retrying call may go on: until `deadline`, and, once the agent is stopping,
/// never past the end of its grace.
#[derive(Clone, Copy)]
pub struct Until<'a> {
    /// No attempt starts after this.
    pub deadline: Instant,
    /// Cuts the deadline to the grace when raised.
    pub stop: &'a Stop,
}

impl<'a> Until<'a> {
    /// `within` from now, bounded by `stop`.
    pub fn within(within: Duration, stop: &'a Stop) -> Until<'a> {
        Until { deadline: Instant::now() + within, stop }
    }

    /// The deadline as it stands: cut to the grace's end once stopped.
    fn limit(&self) -> Instant {
        self.stop.grace_ends().map_or(self.deadline, |end| end.min(self.deadline))
    }

    /// Waits `delay` when another attempt after it is still within the limit; false (at
    /// once, or as soon as a stop cuts the limit) when it would not be.
    pub fn wait(&self, delay: Duration) -> bool {
        let end = Instant::now() + delay;
        loop {
            if end >= self.limit() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            if self.stop.is_stopped() {
                // The limit is fixed once stopped: nothing left to wake up for.
                std::thread::sleep(end - now);
                return true;
            }
            self.stop.sleep(end - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_are_capped_and_retry_after_wins() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next(None);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let third = {
            b.next(None);
            b.next(None)
        };
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
        for _ in 0..40 {
            assert!(b.next(None) <= Duration::from_secs(2));
        }
        assert_eq!(b.next(Some(Duration::from_secs(1))), Duration::from_secs(1));
        assert_eq!(b.next(Some(Duration::from_secs(60))), Duration::from_secs(2), "a peer's Retry-After is capped too");
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(100));
    }

    #[test]
    fn until_refuses_a_wait_past_its_deadline_or_past_the_grace_of_a_stop() {
        let stop = Stop::default();
        let until = Until::within(Duration::from_millis(200), &stop);
        assert!(until.wait(Duration::from_millis(10)));
        assert!(!until.wait(Duration::from_secs(1)), "the deadline would pass");
        let long = Until::within(Duration::from_secs(60), &stop);
        stop.stop_within(Duration::from_millis(300));
        assert!(long.wait(Duration::from_millis(50)), "accepted work may still retry within the grace");
        let asked = std::time::Instant::now();
        assert!(!long.wait(Duration::from_secs(5)), "not past the grace");
        assert!(asked.elapsed() < Duration::from_millis(100), "refused at once");
        let now = Stop::default();
        now.stop_within(Duration::ZERO);
        assert!(!Until::within(Duration::from_secs(60), &now).wait(Duration::from_millis(1)));
    }

    #[test]
    fn a_stop_cuts_a_wait_in_progress_to_the_grace() {
        let stop = Stop::default();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                stop.stop_within(Duration::ZERO);
            });
            let asked = std::time::Instant::now();
            assert!(!Until::within(Duration::from_secs(60), &stop).wait(Duration::from_secs(10)));
            assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
        });
    }
}
