//! Bounded load generator that checks the crate's central claim: while a service upgrades,
//! no client sees a refused, reset or dropped connection.
//!
//! That claim is only as good as the client checking it, so this one classifies every failed
//! request ([`FailureKind`]), attributes it to the reload in progress ([`LoadHandle::mark`]
//! starts a new *epoch*), and always ends: duration (capped at one hour), optional request
//! budget, stop flag, per-request timeout, capped failure details. Workers are std threads
//! with blocking sockets; only HTTP/2 runs a small single-threaded tokio runtime inside each
//! worker, because the `h2` crate is async. The integration tests, the `exuvia load` and
//! `exuvia check` subcommands and the container harness all share it.
//!
//! Modes ([`Mode`]) speak a line echo protocol (one connection per request, or one
//! long-lived connection per worker), HTTP/1.1 keep-alive GETs, HTTP/2 GETs (h2c with prior
//! knowledge, several streams per connection) or WebSocket echo.
//!
//! A retried request is never hidden: when the client retries, and why, is written down in
//! `kind.rs` ([`RetryReason`]); retries are counted, and make a run unclean unless the caller
//! accepts them ([`LoadConfig::accept_retries`]).
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
mod h2;
mod histogram;
mod http;
mod kind;
mod report;
mod shared;
mod worker;
mod ws;

#[cfg(test)]
mod tests;

#[cfg(feature = "fuzzing")]
pub(crate) use http::read_responses;

pub use conn::{Target, request_once};
pub use kind::{FailureKind, RetryReason};
pub use report::{Failure, Latency, LoadReport, MAX_STORED_FAILURES};

use histogram::Histogram;
use shared::{Shared, WorkerStats, lock};

/// Longest run accepted: a load run is a test, not a service.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most worker threads accepted.
pub const MAX_CONNECTIONS: u32 = 4096;
/// Most concurrent HTTP/2 streams per connection accepted.
pub const MAX_STREAMS: u32 = 256;

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
    /// HTTP/1.1 keep-alive `GET`s; status >= 500 fails, `Connection: close` just reconnects,
    /// a reused connection closed under a request is a failure (see `kind.rs`).
    Http,
    /// HTTP/2 `GET`s over cleartext with prior knowledge (h2c), [`LoadConfig::streams`]
    /// concurrent streams per connection; a GOAWAY moves new streams to a new connection.
    H2,
    /// WebSocket: each worker holds a connection and sends numbered text messages, each
    /// answered by its echo before the next; a close frame with a normal status and a
    /// successful reconnect is an orderly close, anything else that ends it is a failure.
    Ws,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
            Mode::Long => "long",
            Mode::Http => "http",
            Mode::H2 => "h2",
            Mode::Ws => "ws",
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
            "h2" => Ok(Mode::H2),
            "ws" => Ok(Mode::Ws),
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
    #[error("invalid mode {0:?}: use echo, long, http, h2 or ws")]
    /// The mode is not one of [`Mode`]'s names.
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
    /// Long and WebSocket modes: pause between two messages on a connection. Default 20 ms.
    pub interval: Duration,
    /// HTTP, HTTP/2 and WebSocket modes: request target. Default `/`.
    pub http_path: String,
    /// HTTP/2 mode: concurrent streams per connection. Default 4.
    pub streams: u32,
    /// HTTP/1.1 and HTTP/2: send a request lost on a reused connection (closed under it before
    /// any byte of the answer) once more on a fresh connection, and count it as a retry.
    /// Only sound for idempotent requests; off by default, so such a request is a failure.
    pub retry_idempotent: bool,
    /// Retries do not make the report unclean ([`LoadReport::is_clean`]); they are still
    /// counted and shown. Off by default.
    pub accept_retries: bool,
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
            streams: 4,
            retry_idempotent: false,
            accept_retries: false,
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
        if !(1..=MAX_STREAMS).contains(&self.streams) {
            return bad(format!(
                "streams must be 1..={MAX_STREAMS}, got {}",
                self.streams
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
    /// Retries so far.
    pub retried: u64,
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
            retried: self.shared.retried.load(Ordering::Relaxed),
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
        let (mut lost, mut ended) = (0, sh.start);
        let mut all_held = true;
        let mut any_ran = false;
        for (id, w) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            match w.join() {
                Ok(s) => {
                    hist.merge(&s.hist);
                    lost += s.lost;
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
            target: sh.cfg.target.to_string(),
            mode: sh.cfg.mode,
            connections: self.connections,
            streams: if sh.cfg.mode == Mode::H2 {
                sh.cfg.streams
            } else {
                1
            },
            ok: sh.ok.load(Ordering::Relaxed),
            failed: sh.failed.load(Ordering::Relaxed),
            failures: log.details.clone(),
            failures_by_kind: log.by_kind.clone(),
            failures_by_epoch: log.by_epoch.clone(),
            elapsed: ended - sh.start,
            latency: hist.latency(),
            long_lived_survived: (sh.cfg.mode == Mode::Long).then_some(any_ran && all_held),
            connections_lost: lost,
            retried: sh.retried.load(Ordering::Relaxed),
            retries_by_reason: log.retries_by_reason.clone(),
            retries_by_epoch: log.retries_by_epoch.clone(),
            retry_idempotent: sh.cfg.retry_idempotent,
            accept_retries: sh.cfg.accept_retries,
            orderly_closes: sh.orderly_closes.load(Ordering::Relaxed),
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
