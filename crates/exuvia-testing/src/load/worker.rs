//! State shared by the worker threads, and the three per-mode worker loops.
//!
//! Every loop asks [`Shared::begin`] before each request, which is where the duration, the
//! stop flags and the request budget end the run; an in-flight request is allowed to finish
//! (bounded by its own timeout) so that stopping never manufactures failures.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{Conn, ReqError, Target, echo_round_trip};
use super::http;
use super::report::{Failure, FailureKind, Histogram, MAX_STORED_FAILURES};
use super::{LoadConfig, Mode};

/// Pause after a failed request, so a refused-connection storm does not burn the CPU that
/// the server under test needs (it shares the machine in every test).
const FAILURE_BACKOFF: Duration = Duration::from_millis(10);
/// Longest uninterrupted sleep, so stop requests are noticed quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(20);
/// Epoch start times kept; later marks still advance the epoch.
pub(crate) const MAX_EPOCHS: usize = 10_000;

#[derive(Default)]
pub(crate) struct FailureLog {
    pub details: Vec<Failure>,
    pub by_kind: BTreeMap<FailureKind, u64>,
    pub by_epoch: BTreeMap<u32, u64>,
}

/// Per-worker results, merged into the report after join.
pub(crate) struct WorkerStats {
    pub hist: Histogram,
    pub requests: u64,
    pub connects: u64,
    pub lost: u64,
    pub http_retries: u64,
    pub ended: Instant,
}

pub(crate) struct Shared {
    pub start: Instant,
    deadline: Instant,
    pub stop: AtomicBool,
    external_stop: Option<Arc<AtomicBool>>,
    max_requests: Option<u64>,
    issued: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    epoch: AtomicU32,
    pub marks: Mutex<Vec<Duration>>,
    pub log: Mutex<FailureLog>,
    pub target: Target,
    pub mode: Mode,
    timeout: Duration,
    interval: Duration,
    http_path: String,
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
            external_stop: cfg.stop.clone(),
            max_requests: cfg.max_requests,
            issued: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            epoch: AtomicU32::new(0),
            marks: Mutex::new(Vec::new()),
            log: Mutex::new(FailureLog::default()),
            target: cfg.target.clone(),
            mode: cfg.mode,
            timeout: cfg.timeout,
            interval: cfg.interval,
            http_path: cfg.http_path.clone(),
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self
                .external_stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            || Instant::now() >= self.deadline
    }

    /// Admits one more request, returning its epoch and start time, or None when the run is over.
    fn begin(&self) -> Option<(u32, Instant)> {
        if self.should_stop() {
            return None;
        }
        if let Some(max) = self.max_requests {
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

    /// Sleeps until `until`, the run deadline, or a stop request, whichever comes first.
    fn pause_until(&self, until: Instant) {
        let until = until.min(self.deadline);
        loop {
            let now = Instant::now();
            if now >= until || self.should_stop() {
                return;
            }
            thread::sleep((until - now).min(SLEEP_SLICE));
        }
    }

    fn finish(
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

pub(crate) fn run(id: u32, sh: &Shared) -> WorkerStats {
    let mut stats = WorkerStats {
        hist: Histogram::new(),
        requests: 0,
        connects: 0,
        lost: 0,
        http_retries: 0,
        ended: Instant::now(),
    };
    match sh.mode {
        Mode::Echo => echo(id, sh, &mut stats),
        Mode::Long => long(id, sh, &mut stats),
        Mode::Http => http_loop(id, sh, &mut stats),
    }
    stats.ended = Instant::now();
    stats
}

fn echo(id: u32, sh: &Shared, stats: &mut WorkerStats) {
    let mut n: u64 = 0;
    while let Some((epoch, t0)) = sh.begin() {
        let line = format!("w{id}-r{n}\n");
        n += 1;
        let deadline = t0 + sh.timeout;
        let res = Conn::connect(&sh.target, deadline)
            .and_then(|mut c| echo_round_trip(&mut c, &line, deadline));
        if !sh.finish(id, epoch, t0, res, stats) {
            sh.pause_until(Instant::now() + FAILURE_BACKOFF);
        }
    }
}

/// Returns the open connection, connecting first if there is none.
fn ensure<'a>(
    conn: &'a mut Option<Conn>,
    target: &Target,
    deadline: Instant,
    connects: &mut u64,
) -> Result<&'a mut Conn, ReqError> {
    let c = match conn.take() {
        Some(c) => c,
        None => {
            let c = Conn::connect(target, deadline)?;
            *connects += 1;
            c
        }
    };
    Ok(conn.insert(c))
}

fn long(id: u32, sh: &Shared, stats: &mut WorkerStats) {
    let mut conn = None;
    let mut n: u64 = 0;
    let mut next = Instant::now();
    while let Some((epoch, t0)) = sh.begin() {
        let line = format!("w{id}-r{n}\n");
        n += 1;
        let deadline = t0 + sh.timeout;
        let res = ensure(&mut conn, &sh.target, deadline, &mut stats.connects)
            .and_then(|c| echo_round_trip(c, &line, deadline));
        if res.is_err() && conn.take().is_some() {
            // The stream may hold a late answer; it cannot be trusted for the next line.
            stats.lost += 1;
        }
        sh.finish(id, epoch, t0, res, stats);
        next = (next + sh.interval).max(Instant::now());
        sh.pause_until(next);
    }
}

fn http_loop(id: u32, sh: &Shared, stats: &mut WorkerStats) {
    let host = match &sh.target {
        Target::Tcp(addr) => addr.to_string(),
        Target::Unix(_) => "localhost".to_owned(),
    };
    let req = http::request(&host, &sh.http_path);
    let mut conn = None;
    while let Some((epoch, t0)) = sh.begin() {
        let res = http_once(&mut conn, sh, &req, t0 + sh.timeout, stats);
        if !sh.finish(id, epoch, t0, res, stats) {
            sh.pause_until(Instant::now() + FAILURE_BACKOFF);
        }
    }
}

fn http_once(
    conn: &mut Option<Conn>,
    sh: &Shared,
    req: &str,
    deadline: Instant,
    stats: &mut WorkerStats,
) -> Result<(), ReqError> {
    let mut retried = false;
    loop {
        let reused = conn.is_some();
        let c = ensure(conn, &sh.target, deadline, &mut stats.connects)?;
        let before = c.received();
        match http::exchange(c, req, deadline) {
            Ok(resp) => {
                if resp.close {
                    *conn = None;
                }
                if resp.status >= 500 {
                    return Err(ReqError::new(
                        FailureKind::Http5xx,
                        format!("HTTP status {}", resp.status),
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                let silent = c.received() == before;
                *conn = None;
                let stale = matches!(e.kind, FailureKind::Reset | FailureKind::EofMidRequest);
                if reused && silent && stale && !retried {
                    retried = true;
                    stats.http_retries += 1;
                    continue;
                }
                return Err(e);
            }
        }
    }
}
