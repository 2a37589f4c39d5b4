//! What a load run found: classified failures, retries, counts, latency, epochs.
//!
//! Memory stays bounded however long or broken the run: failure details are capped at
//! [`MAX_STORED_FAILURES`] (counts stay exact), and latency goes into a fixed-size
//! histogram per worker (`histogram.rs`) instead of a list of samples.
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::Mode;
use super::kind::{FailureKind, RetryReason};

/// Failure details kept per run; further failures are only counted.
pub const MAX_STORED_FAILURES: usize = 10_000;

/// One failed request.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Time since the run started when the failure was observed.
    #[cfg_attr(feature = "serde", serde(serialize_with = "secs::one"))]
    pub at: Duration,
    /// The worker that saw it.
    pub worker: u32,
    /// Epoch current when the failed request *started* (see [`super::LoadHandle::mark`]).
    pub epoch: u32,
    /// The error text.
    pub error: String,
}

/// Latency of successful requests (connect included for fresh connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Latency {
    /// Median.
    #[cfg_attr(feature = "serde", serde(serialize_with = "secs::one"))]
    pub p50: Duration,
    /// 99th percentile.
    #[cfg_attr(feature = "serde", serde(serialize_with = "secs::one"))]
    pub p99: Duration,
    /// Maximum.
    #[cfg_attr(feature = "serde", serde(serialize_with = "secs::one"))]
    pub max: Duration,
}

/// Result of a load run. In JSON, durations are seconds as floating point numbers.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LoadReport {
    /// Where the load went.
    pub target: String,
    /// What the workers did.
    pub mode: Mode,
    /// Number of workers (HTTP/2: connections; WebSocket: held connections).
    pub connections: u32,
    /// HTTP/2: concurrent streams per connection; 1 in every other mode.
    pub streams: u32,
    /// Successful requests (Long mode: round trips; WebSocket: echoed messages), including
    /// those that succeeded only when retried.
    pub ok: u64,
    /// Failed requests, exact even when details were dropped. WebSocket mode also counts
    /// each connection that ended without a close frame while no message was outstanding.
    pub failed: u64,
    /// Details of the first [`MAX_STORED_FAILURES`] failures, in the order they were observed.
    pub failures: Vec<Failure>,
    /// Failure counts per kind.
    pub failures_by_kind: BTreeMap<FailureKind, u64>,
    /// Failure counts per epoch.
    pub failures_by_epoch: BTreeMap<u32, u64>,
    /// Length of the run.
    #[cfg_attr(feature = "serde", serde(serialize_with = "secs::one"))]
    pub elapsed: Duration,
    /// Latency of successful requests.
    pub latency: Latency,
    /// Long mode only: every worker kept its first connection for the whole run.
    pub long_lived_survived: Option<bool>,
    /// Long mode: established connections that failed and were replaced.
    pub connections_lost: u64,
    /// Requests sent more than once (each retry counts; see [`RetryReason`] for when the
    /// client retries). A retried request is also in `ok` or `failed`, by its last attempt.
    pub retried: u64,
    /// Retries per reason.
    pub retries_by_reason: BTreeMap<RetryReason, u64>,
    /// Retries per epoch of the request that was retried.
    pub retries_by_epoch: BTreeMap<u32, u64>,
    /// The run retried requests lost on a reused connection (HTTP/1.1, HTTP/2) once.
    pub retry_idempotent: bool,
    /// Retries do not make the run unclean (they are still counted and shown).
    pub accept_retries: bool,
    /// Connections the server ended the orderly way: an HTTP/1.1 answer with
    /// `Connection: close`, an HTTP/2 GOAWAY with NO_ERROR, a WebSocket close frame with a
    /// normal status. Not failures.
    pub orderly_closes: u64,
    /// Start of epoch `i + 1`, as time since the run started; epoch 0 begins at the start.
    #[cfg_attr(feature = "serde", serde(serialize_with = "secs::many"))]
    pub epochs: Vec<Duration>,
}

impl LoadReport {
    /// Failure counts per kind (exact, not limited by the detail cap).
    pub fn by_kind(&self) -> &BTreeMap<FailureKind, u64> {
        &self.failures_by_kind
    }

    /// Failures of one kind.
    pub fn count(&self, kind: FailureKind) -> u64 {
        self.failures_by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// Retries for one reason.
    pub fn retries(&self, reason: RetryReason) -> u64 {
        self.retries_by_reason.get(&reason).copied().unwrap_or(0)
    }

    /// Completed requests (ok or failed) per second of run time.
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.ok + self.failed) as f64 / secs
        } else {
            0.0
        }
    }

    /// Retries that count against the run: all of them unless `accept_retries`.
    pub fn unaccepted_retries(&self) -> u64 {
        if self.accept_retries { 0 } else { self.retried }
    }

    /// True when requests were made, none failed, and none was retried (unless retries were
    /// accepted): the property the load client exists to show.
    pub fn is_clean(&self) -> bool {
        self.failed == 0
            && self.ok > 0
            && self.long_lived_survived != Some(false)
            && self.unaccepted_retries() == 0
    }

    /// `keep-alive-closed 3, refused-by-goaway 1`, or `none`.
    pub fn retry_summary(&self) -> String {
        summary(&self.retries_by_reason)
    }

    /// `refused 3, reset 1`, or `none`.
    pub fn failure_summary(&self) -> String {
        summary(&self.failures_by_kind)
    }
}

fn summary<K: fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

/// Failure lines printed by `Display`; the JSON report has all stored ones.
const SHOWN_FAILURES: usize = 10;

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let streams = if self.mode == Mode::H2 {
            format!(" x {} stream(s)", self.streams)
        } else {
            String::new()
        };
        writeln!(
            f,
            "load {} {} with {} connection(s){streams} for {:.3}s",
            self.mode,
            self.target,
            self.connections,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  requests: {} ok, {} failed, {:.1}/s",
            self.ok,
            self.failed,
            self.requests_per_sec()
        )?;
        if self.retried > 0 || self.retry_idempotent {
            let verdict = match (self.retried, self.accept_retries) {
                (0, _) => "",
                (_, true) => " (accepted)",
                (_, false) => " (NOT accepted: a retried request counts against the run)",
            };
            writeln!(
                f,
                "  RETRIED: {} ({}){verdict}",
                self.retried,
                self.retry_summary()
            )?;
        }
        if self.orderly_closes > 0 {
            writeln!(f, "  orderly closes by the server: {}", self.orderly_closes)?;
        }
        let l = &self.latency;
        writeln!(
            f,
            "  latency: p50 {}  p99 {}  max {}",
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        )?;
        if !self.failures_by_kind.is_empty() {
            writeln!(f, "  failures by kind: {}", self.failure_summary())?;
        }
        if !self.epochs.is_empty() {
            let marks: Vec<String> = self
                .epochs
                .iter()
                .map(|d| format!("{:.3}s", d.as_secs_f64()))
                .collect();
            writeln!(f, "  epochs marked at: {}", marks.join(", "))?;
            for (what, m) in [
                ("failures", &self.failures_by_epoch),
                ("retries", &self.retries_by_epoch),
            ] {
                if !m.is_empty() {
                    let per: Vec<String> =
                        m.iter().map(|(e, n)| format!("epoch {e}: {n}")).collect();
                    writeln!(f, "  {what} by epoch: {}", per.join(", "))?;
                }
            }
        }
        if let Some(survived) = self.long_lived_survived {
            let verdict = if survived { "survived" } else { "LOST" };
            writeln!(
                f,
                "  long-lived connections: {verdict} ({} lost)",
                self.connections_lost
            )?;
        }
        for x in self.failures.iter().take(SHOWN_FAILURES) {
            writeln!(
                f,
                "  +{:.3}s worker {} epoch {} {}: {}",
                x.at.as_secs_f64(),
                x.worker,
                x.epoch,
                x.kind,
                x.error
            )?;
        }
        if self.failed > SHOWN_FAILURES as u64 {
            writeln!(
                f,
                "  ... {} more failure(s)",
                self.failed - SHOWN_FAILURES as u64
            )?;
        }
        Ok(())
    }
}

/// Serializes durations as fractional seconds, which JSON consumers read without a schema.
#[cfg(feature = "serde")]
mod secs {
    use std::time::Duration;

    pub fn one<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn many<S: serde::Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(Duration::as_secs_f64))
    }
}
