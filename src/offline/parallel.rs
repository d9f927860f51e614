//! Parallel blob transfers on std threads (no async runtime): a bounded pool of `--jobs`
//! workers that the first error stops, and a progress meter per artifact (bytes, rate,
//! ETA), redrawn in place when standard error is a terminal and printed as a plain line
//! every [`PLAIN_EVERY`] otherwise.
//!
//! The pool guarantees what `push` reports: [`Pool::drain`] returns only when everything
//! submitted has finished, and returns the first error if any job failed, so a manifest
//! is pushed only after all of its blobs are in, and nothing is reported done that is not.
//! Once a job fails, queued jobs are dropped unstarted and running ones see the stop flag
//! between chunks. Not done: fairness between artifacts (they are pushed one after another).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a plain (not terminal) progress line is printed.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// How often the terminal line is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

type Job<'env> = Box<dyn FnOnce() -> Result<()> + Send + 'env>;

struct Inner<'env> {
    queue: VecDeque<Job<'env>>,
    /// Submitted and not finished (queued or running).
    pending: usize,
    first_error: Option<Error>,
    closed: bool,
}

/// The handle the submitting code holds (see [`run`]).
pub struct Pool<'env> {
    inner: Mutex<Inner<'env>>,
    changed: Condvar,
    stop: Arc<AtomicBool>,
    bound: usize,
}

impl<'env> Pool<'env> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<'env>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`, waiting while the queue is full; after a failure nothing more is
    /// queued and the first error is returned.
    pub fn submit(&self, job: impl FnOnce() -> Result<()> + Send + 'env) -> Result<()> {
        let mut inner = self.lock();
        while inner.queue.len() >= self.bound && inner.first_error.is_none() {
            inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        if inner.first_error.is_some() {
            drop(inner);
            return self.drain();
        }
        inner.queue.push_back(Box::new(job));
        inner.pending += 1;
        self.changed.notify_all();
        Ok(())
    }

    /// Waits until every submitted job has finished; the first error, if any failed.
    pub fn drain(&self) -> Result<()> {
        let mut inner = self.lock();
        while inner.pending > 0 {
            inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        match inner.first_error.take() {
            Some(e) => {
                // Later submits and drains fail too, with a pointer to the first error.
                inner.first_error = Some(Error::transport("the transfers", "stopped after the first failure (reported above)"));
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn work(&self) {
        loop {
            let mut inner = self.lock();
            let job = loop {
                if let Some(job) = inner.queue.pop_front() {
                    break job;
                }
                if inner.closed {
                    return;
                }
                inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
            };
            let failed = inner.first_error.is_some();
            drop(inner);
            // After a failure, queued jobs are dropped unstarted.
            let result = if failed { Ok(()) } else { job() };
            let mut inner = self.lock();
            inner.pending -= 1;
            if let Err(e) = result {
                self.stop.store(true, Ordering::Relaxed);
                inner.first_error.get_or_insert(e);
            }
            self.changed.notify_all();
        }
    }
}

/// Runs `body` with a pool of `jobs` workers (1 runs everything on one worker, in order);
/// `stop` is set when a job fails (long jobs check it). Returns when every worker has
/// ended; a job still queued when `body` returns is finished first.
pub fn run<'env, R>(jobs: usize, stop: Arc<AtomicBool>, body: impl FnOnce(&Pool<'env>) -> Result<R>) -> Result<R> {
    let pool = Pool {
        inner: Mutex::new(Inner { queue: VecDeque::new(), pending: 0, first_error: None, closed: false }),
        changed: Condvar::new(),
        stop,
        bound: jobs.max(1) * 2,
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| pool.work());
        }
        let result = body(&pool).and_then(|r| pool.drain().map(|()| r));
        let mut inner = pool.lock();
        if result.is_err() {
            // Whatever failed, what is still queued is dropped unstarted.
            pool.stop.store(true, Ordering::Relaxed);
            inner.first_error.get_or_insert_with(|| Error::transport("the transfers", "stopped"));
        }
        inner.closed = true;
        drop(inner);
        pool.changed.notify_all();
        result
    })
}

/// One artifact's progress: bytes done of a total, printed as they move.
pub struct Meter {
    label: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    terminal: bool,
    last: Mutex<Instant>,
}

impl Meter {
    /// A meter for `total` bytes; redrawn in place when standard error is a terminal.
    pub fn new(label: String, total: u64) -> Arc<Meter> {
        // SAFETY: isatty only inspects the descriptor.
        let terminal = unsafe { libc::isatty(2) } == 1;
        let now = Instant::now();
        Arc::new(Meter { label, total, done: AtomicU64::new(0), started: now, terminal, last: Mutex::new(now) })
    }

    /// Counts `n` more bytes done; prints when a line is due.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        let every = if self.terminal { REDRAW_EVERY } else { PLAIN_EVERY };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= every {
            *last = Instant::now();
            self.print(false);
        }
    }

    /// The line: `label: done of total MiB, rate MiB/s, ETA s`.
    pub fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed).min(self.total);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 { format!("{:.0} s", (self.total - done) as f64 / rate) } else { "unknown".into() };
        let mib = |b: u64| b as f64 / 1048576.0;
        format!("{}: {:.1} of {:.1} MiB, {:.1} MiB/s, ETA {eta}", self.label, mib(done), mib(self.total), rate / 1048576.0)
    }

    fn print(&self, last: bool) {
        if self.terminal {
            eprint!("\r  {}\x1b[K{}", self.line(), if last { "\n" } else { "" });
        } else {
            eprintln!("  {}", self.line());
        }
    }

    /// The closing line (the bytes done, the time taken).
    pub fn finish(&self) {
        let done = self.done.load(Ordering::Relaxed).min(self.total);
        let secs = self.started.elapsed().as_secs_f64();
        let line = format!("{}: {:.1} MiB in {secs:.1} s", self.label, done as f64 / 1048576.0);
        if self.terminal {
            eprintln!("\r  {line}\x1b[K");
        } else {
            eprintln!("  {line}");
        }
    }
}

/// A reader that counts what passes through it on a [`Meter`].
pub struct Metered {
    /// The reader.
    pub inner: Box<dyn Read>,
    /// Where the bytes are counted.
    pub meter: Arc<Meter>,
}

impl Read for Metered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

/// A writer that counts what passes through it on a [`Meter`], and fails once `stop` is
/// set (another transfer failed: this one ends at its next write).
pub struct MeteredWrite<W: std::io::Write> {
    /// The writer.
    pub inner: W,
    /// Where the bytes are counted.
    pub meter: Arc<Meter>,
    /// Set when the transfers are to stop.
    pub stop: Arc<AtomicBool>,
}

impl<W: std::io::Write> std::io::Write for MeteredWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: write_all retries that for ever.
            return Err(std::io::Error::other("stopped after another transfer failed"));
        }
        let n = self.inner.write(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_stops_the_pool_and_drain_waits_for_every_running_job() {
        let stop = Arc::new(AtomicBool::new(false));
        let finished = AtomicU64::new(0);
        let started = AtomicU64::new(0);
        let result: Result<()> = run(4, stop.clone(), |pool| {
            for i in 0..50u64 {
                let (finished, started) = (&finished, &started);
                pool.submit(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    if i == 3 {
                        return Err(Error::transport("job 3", "failed on purpose"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    finished.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })?;
            }
            Ok(())
        });
        let e = result.unwrap_err().to_string();
        assert!(e.contains("job 3") && e.contains("failed on purpose"), "{e}");
        assert!(stop.load(Ordering::SeqCst));
        // The jobs running when job 3 failed finished; the rest never started.
        let (s, f) = (started.load(Ordering::SeqCst), finished.load(Ordering::SeqCst));
        assert!(s < 20 && f + 1 == s, "started {s}, finished {f}");
    }

    #[test]
    fn drain_returns_only_after_every_job_and_jobs_run_at_once() {
        let done = AtomicU64::new(0);
        let t = Instant::now();
        run(4, Arc::new(AtomicBool::new(false)), |pool| {
            for _ in 0..8 {
                let done = &done;
                pool.submit(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })?;
            }
            pool.drain()?;
            assert_eq!(done.load(Ordering::SeqCst), 8);
            Ok(())
        })
        .unwrap();
        // 8 jobs of 100 ms on 4 workers: about 200 ms, not 800.
        assert!(t.elapsed() < Duration::from_millis(700), "{:?}", t.elapsed());
    }

    #[test]
    fn a_meter_line_has_bytes_rate_and_eta() {
        let m = Meter::new("agent-image".into(), 10 << 20);
        m.done.store(5 << 20, Ordering::Relaxed);
        let line = m.line();
        assert!(line.starts_with("agent-image: 5.0 of 10.0 MiB, ") && line.contains("MiB/s, ETA "), "{line}");
    }

    #[test]
    fn a_stopped_metered_write_fails_write_all_instead_of_spinning() {
        let stop = Arc::new(AtomicBool::new(true));
        let mut w = MeteredWrite { inner: Vec::new(), meter: Meter::new("x".into(), 10), stop };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(std::io::Write::write_all(&mut w, b"bytes").is_err()).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true), "write_all spun on a stopped writer");
    }
}
