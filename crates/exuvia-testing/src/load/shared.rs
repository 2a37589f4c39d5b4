//! State shared by the worker threads: the run's counters, failure log and epochs, and the
//! one place where a run ends.
//!
//! Every loop asks [`Shared::begin`] before each request, which is where the duration, the
//! stop flags and the request budget end the run; an in-flight request is allowed to finish
//! (bounded by its own timeout) so that stopping never manufactures failures.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::LoadConfig;
use super::conn::ReqError;
use super::histogram::Histogram;
use super::kind::{FailureKind, RetryReason};
use super::report::{Failure, MAX_STORED_FAILURES};

/// Pause after a failed request, so a refused-connection storm does not burn the CPU that
/// the server under test needs (it shares the machine in every test).
pub(crate) const FAILURE_BACKOFF: Duration = Duration::from_millis(10);
/// Longest uninterrupted sleep, so stop requests are noticed quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(20);
/// Epoch start times kept; later marks still advance the epoch.
pub(crate) const MAX_EPOCHS: usize = 10_000;

#[derive(Default)]
pub(crate) struct FailureLog {
    pub details: Vec<Failure>,
    pub by_kind: BTreeMap<FailureKind, u64>,
    pub by_epoch: BTreeMap<u32, u64>,
    pub retries_by_reason: BTreeMap<RetryReason, u64>,
    pub retries_by_epoch: BTreeMap<u32, u64>,
}

/// Per-worker results, merged into the report after join.
pub(crate) struct WorkerStats {
    pub hist: Histogram,
    pub requests: u64,
    pub connects: u64,
    pub lost: u64,
    pub ended: Instant,
}

impl WorkerStats {
    pub fn new() -> Self {
        WorkerStats {
            hist: Histogram::new(),
            requests: 0,
            connects: 0,
            lost: 0,
            ended: Instant::now(),
        }
    }

    /// Folds the stats of one of a worker's concurrent tasks (HTTP/2 streams) into these.
    pub fn merge(&mut self, other: &WorkerStats) {
        self.hist.merge(&other.hist);
        self.requests += other.requests;
        self.connects += other.connects;
        self.lost += other.lost;
        self.ended = self.ended.max(other.ended);
    }
}

pub(crate) struct Shared {
    pub start: Instant,
    deadline: Instant,
    pub stop: AtomicBool,
    issued: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub orderly_closes: AtomicU64,
    epoch: AtomicU32,
    pub marks: Mutex<Vec<Duration>>,
    pub log: Mutex<FailureLog>,
    /// The run's parameters, as given.
    pub cfg: LoadConfig,
}

/// A poisoned lock only means another worker panicked; the counters in it are still valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(cfg: &LoadConfig) -> Shared {
        let start = Instant::now();
        Shared {
            start,
            deadline: start + cfg.duration,
            stop: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            orderly_closes: AtomicU64::new(0),
            epoch: AtomicU32::new(0),
            marks: Mutex::new(Vec::new()),
            log: Mutex::new(FailureLog::default()),
            cfg: cfg.clone(),
        }
    }

    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self
                .cfg
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            || Instant::now() >= self.deadline
    }

    /// Admits one more request, returning its epoch and start time, or None when the run is over.
    pub fn begin(&self) -> Option<(u32, Instant)> {
        if self.should_stop() {
            return None;
        }
        if let Some(max) = self.cfg.max_requests {
            if self.issued.fetch_add(1, Ordering::Relaxed) >= max {
                return None;
            }
        }
        Some((self.epoch.load(Ordering::SeqCst), Instant::now()))
    }

    pub fn mark(&self) -> u32 {
        // Timestamp and increment under one lock so epochs[i] always belongs to epoch i + 1.
        let mut marks = lock(&self.marks);
        if marks.len() < MAX_EPOCHS {
            marks.push(self.start.elapsed());
        }
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn fail(&self, worker: u32, epoch: u32, e: ReqError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let at = self.start.elapsed();
        let mut log = lock(&self.log);
        *log.by_kind.entry(e.kind).or_default() += 1;
        *log.by_epoch.entry(epoch).or_default() += 1;
        if log.details.len() < MAX_STORED_FAILURES {
            log.details.push(Failure {
                kind: e.kind,
                at,
                worker,
                epoch,
                error: e.msg,
            });
        }
    }

    /// Records that a request (started in `epoch`) is sent again, and why.
    pub fn retry(&self, epoch: u32, reason: RetryReason) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        let mut log = lock(&self.log);
        *log.retries_by_reason.entry(reason).or_default() += 1;
        *log.retries_by_epoch.entry(epoch).or_default() += 1;
    }

    /// The server ended a connection the orderly way (see `LoadReport::orderly_closes`).
    pub fn orderly_close(&self) {
        self.orderly_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// The epoch current now (for failures that belong to no request, such as a WebSocket
    /// that ends abruptly while idle).
    pub fn current_epoch(&self) -> u32 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Sleeps until `until`, the run deadline, or a stop request, whichever comes first.
    pub fn pause_until(&self, until: Instant) {
        let until = until.min(self.deadline);
        loop {
            let now = Instant::now();
            if now >= until || self.should_stop() {
                return;
            }
            thread::sleep((until - now).min(SLEEP_SLICE));
        }
    }

    pub fn finish(
        &self,
        worker: u32,
        epoch: u32,
        t0: Instant,
        res: Result<(), ReqError>,
        stats: &mut WorkerStats,
    ) -> bool {
        stats.requests += 1;
        match res {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                stats.hist.record(t0.elapsed());
                true
            }
            Err(e) => {
                self.fail(worker, epoch, e);
                false
            }
        }
    }
}
