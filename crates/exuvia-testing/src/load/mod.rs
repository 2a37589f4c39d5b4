//! Bounded load generator that checks the crate's central claim: while a service upgrades,
//! no client sees a refused, reset or dropped connection.
//!
//! That claim is only as good as the client checking it, so this one classifies every failed
//! request ([`FailureKind`]), attributes it to the reload in progress ([`LoadHandle::mark`]
//! starts a new *epoch*), and always ends: duration (capped at one hour), optional request
//! budget, stop flag, per-request timeout, capped failure details. It uses std threads and
//! blocking sockets only, so it needs no async runtime; the
//! integration tests, the `exuvia load` subcommand and the container harness all share it.
//!
//! Modes ([`Mode`]) speak a line echo protocol (one connection per request, or one
//! long-lived connection per worker) or HTTP/1.1 keep-alive GETs.
//!
//! ```no_run
//! use std::time::Duration;
//! use exuvia_testing::load::{self, LoadConfig, Mode};
//!
//! let mut cfg = LoadConfig::new("tcp:127.0.0.1:8080".parse()?);
//! cfg.mode = Mode::Echo;
//! cfg.duration = Duration::from_secs(5);
//! let handle = load::start(cfg)?;
//! // ... trigger an upgrade ...
//! let epoch = handle.mark();
//! let report = handle.wait();
//! assert!(report.is_clean(), "{report}");
//! # let _ = epoch;
//! # Ok::<(), exuvia_testing::load::LoadError>(())
//! ```
use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

mod conn;
mod http;
mod report;
mod worker;

#[cfg(test)]
mod tests;

#[cfg(feature = "fuzzing")]
pub(crate) use http::read_responses;

pub use conn::{Target, request_once};
pub use report::{Failure, FailureKind, Latency, LoadReport, MAX_STORED_FAILURES};

use report::Histogram;
use worker::{Shared, WorkerStats, lock};

/// Longest run accepted: a load run is a test, not a service.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most worker threads accepted.
pub const MAX_CONNECTIONS: u32 = 4096;

/// What each worker does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Mode {
    /// Loop: connect, send one unique line, read and compare the echo, close.
    #[default]
    Echo,
    /// Keep one connection open for the whole run and echo a line every `interval`; a failure
    /// on it counts, and the worker reconnects and records the connection as lost.
    Long,
    /// HTTP/1.1 keep-alive `GET`s; status >= 500 fails, `Connection: close` just reconnects.
    Http,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
            Mode::Long => "long",
            Mode::Http => "http",
        })
    }
}

impl FromStr for Mode {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Mode::Echo),
            "long" => Ok(Mode::Long),
            "http" => Ok(Mode::Http),
            _ => Err(LoadError::InvalidMode(s.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
/// Why a load run could not start.
pub enum LoadError {
    #[error(
        "invalid target {0:?}: use tcp:IP:PORT (e.g. tcp:127.0.0.1:8080, tcp:[::1]:8080) or unix:/PATH"
    )]
    /// The target does not parse.
    InvalidTarget(String),
    #[error("invalid mode {0:?}: use echo, long or http")]
    /// The mode is not echo, long or http.
    InvalidMode(String),
    #[error("invalid load configuration: {0}")]
    /// A parameter is out of range.
    InvalidConfig(String),
    #[error("cannot spawn a load worker thread: {0}")]
    /// A worker thread could not be started.
    Spawn(#[source] io::Error),
}

/// Load run parameters; build with [`LoadConfig::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Where the load goes.
    pub target: Target,
    /// What each worker does.
    pub mode: Mode,
    /// Worker threads, each with its own connection(s). Default 4.
    pub connections: u32,
    /// Hard cap on the run, at most [`MAX_DURATION`]. Default 10 s.
    pub duration: Duration,
    /// Stop after this many requests (ok or failed) across all workers.
    pub max_requests: Option<u64>,
    /// Bound on one whole request, connect included. Default 5 s.
    pub timeout: Duration,
    /// Long mode: pause between two lines on a connection. Default 20 ms.
    pub interval: Duration,
    /// HTTP mode: request target. Default `/`.
    pub http_path: String,
    /// Ends the run early once set to true (checked before every request).
    pub stop: Option<Arc<AtomicBool>>,
}

impl LoadConfig {
    /// Defaults: echo mode, 4 connections, 10 s, 5 s per request.
    pub fn new(target: Target) -> Self {
        LoadConfig {
            target,
            mode: Mode::Echo,
            connections: 4,
            duration: Duration::from_secs(10),
            max_requests: None,
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(20),
            http_path: "/".to_owned(),
            stop: None,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::InvalidConfig(m));
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return bad(format!(
                "connections must be 1..={MAX_CONNECTIONS}, got {}",
                self.connections
            ));
        }
        for (name, d) in [
            ("duration", self.duration),
            ("timeout", self.timeout),
            ("interval", self.interval),
        ] {
            if d.is_zero() || d > MAX_DURATION {
                return bad(format!("{name} must be > 0 and <= 1h, got {d:?}"));
            }
        }
        if !self.http_path.starts_with('/') || self.http_path.contains(char::is_whitespace) {
            return bad(format!(
                "http path must start with '/' and contain no whitespace, got {:?}",
                self.http_path
            ));
        }
        Ok(())
    }
}

/// Counters readable while the run goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Requests that succeeded so far.
    pub ok: u64,
    /// Requests that failed so far.
    pub failed: u64,
}

/// A running load; dropping it stops the workers and waits for them.
pub struct LoadHandle {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<WorkerStats>>,
    connections: u32,
}

/// Validates `cfg` and spawns one thread per connection; the run starts at once.
pub fn start(cfg: LoadConfig) -> Result<LoadHandle, LoadError> {
    cfg.validate()?;
    let shared = Arc::new(Shared::new(&cfg));
    let mut handle = LoadHandle {
        shared: Arc::clone(&shared),
        workers: Vec::with_capacity(cfg.connections as usize),
        connections: cfg.connections,
    };
    for id in 0..cfg.connections {
        let sh = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("exuvia-load-{id}"))
            .spawn(move || worker::run(id, &sh));
        match spawned {
            Ok(j) => handle.workers.push(j),
            // Dropping the handle stops and joins the workers already running.
            Err(e) => return Err(LoadError::Spawn(e)),
        }
    }
    Ok(handle)
}

impl LoadHandle {
    /// Starts a new epoch and returns its number (the first mark returns 1). Call it right
    /// before triggering a reload: failures are attributed to the epoch current when the
    /// failed request started. Cheap, and callable from any thread while the load runs.
    pub fn mark(&self) -> u32 {
        self.shared.mark()
    }

    /// Counters so far.
    pub fn progress(&self) -> Progress {
        Progress {
            ok: self.shared.ok.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// True once every worker ended (duration, request budget, or stop flag).
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Lets the run end by itself (duration, request budget or external stop flag).
    pub fn wait(mut self) -> LoadReport {
        self.collect()
    }

    /// Stops now; requests in flight finish (bounded by the timeout) and count.
    pub fn stop(mut self) -> LoadReport {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.collect()
    }

    fn collect(&mut self) -> LoadReport {
        let sh = &self.shared;
        let mut hist = Histogram::new();
        let (mut lost, mut retries, mut ended) = (0, 0, sh.start);
        let mut all_held = true;
        let mut any_ran = false;
        for (id, w) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            match w.join() {
                Ok(s) => {
                    hist.merge(&s.hist);
                    lost += s.lost;
                    retries += s.http_retries;
                    ended = ended.max(s.ended);
                    any_ran |= s.requests > 0;
                    all_held &= s.requests == 0 || (s.connects == 1 && s.lost == 0);
                }
                Err(_) => {
                    all_held = false;
                    let e = conn::ReqError::new(FailureKind::Other, "load worker panicked");
                    sh.fail(id as u32, 0, e);
                }
            }
        }
        let log = lock(&sh.log);
        LoadReport {
            target: sh.target.to_string(),
            mode: sh.mode,
            connections: self.connections,
            ok: sh.ok.load(Ordering::Relaxed),
            failed: sh.failed.load(Ordering::Relaxed),
            failures: log.details.clone(),
            failures_by_kind: log.by_kind.clone(),
            failures_by_epoch: log.by_epoch.clone(),
            elapsed: ended - sh.start,
            latency: hist.latency(),
            long_lived_survived: (sh.mode == Mode::Long).then_some(any_ran && all_held),
            connections_lost: lost,
            http_retries: retries,
            epochs: lock(&sh.marks).clone(),
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            // A panicked worker has nothing left to clean up.
            let _ = w.join();
        }
    }
}
