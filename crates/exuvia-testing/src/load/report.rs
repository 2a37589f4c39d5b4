//! What a load run found: classified failures, counts, latency, epochs.
//!
//! Memory stays bounded however long or broken the run: failure details are capped at
//! [`MAX_STORED_FAILURES`] (counts stay exact), and latency goes into a fixed-size
//! log-linear histogram per worker instead of a list of samples.
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::Mode;

/// Failure details kept per run; further failures are only counted.
pub const MAX_STORED_FAILURES: usize = 10_000;

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum FailureKind {
    /// ECONNREFUSED, or ENOENT for a Unix path: nobody was listening.
    Refused,
    /// ECONNRESET / EPIPE / ECONNABORTED: the connection was torn down.
    Reset,
    /// The request did not complete within the per-request timeout.
    Timeout,
    /// The peer closed the connection before the full answer arrived.
    EofMidRequest,
    /// The answer arrived but differs from what was expected (or is malformed).
    WrongAnswer,
    /// An HTTP status of 500 or more.
    Http5xx,
    /// Anything else; [`Failure::error`] has the text.
    Other,
}

impl FailureKind {
    /// Short name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::EofMidRequest => "eof-mid-request",
            FailureKind::WrongAnswer => "wrong-answer",
            FailureKind::Http5xx => "http-5xx",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
    /// Number of workers.
    pub connections: u32,
    /// Successful requests (Long mode: successful round trips).
    pub ok: u64,
    /// Failed requests, exact even when details were dropped.
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
    /// HTTP mode: requests retried once on a fresh connection because a reused keep-alive
    /// connection was closed before any byte of the answer (RFC 9112 §9.3.1 allows this
    /// for idempotent requests, and no server can avoid that race). Not failures.
    pub http_retries: u64,
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

    /// Completed requests (ok or failed) per second of run time.
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.ok + self.failed) as f64 / secs
        } else {
            0.0
        }
    }

    /// True when requests were made and none failed: the property the load client exists to show.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.ok > 0 && self.long_lived_survived != Some(false)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

/// Failure lines printed by `Display`; the JSON report has all stored ones.
const SHOWN_FAILURES: usize = 10;

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load {} {} with {} connection(s) for {:.3}s",
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
        let l = &self.latency;
        writeln!(
            f,
            "  latency: p50 {}  p99 {}  max {}",
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        )?;
        if !self.failures_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .failures_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(f, "  failures by kind: {}", kinds.join(", "))?;
        }
        if !self.epochs.is_empty() {
            let marks: Vec<String> = self
                .epochs
                .iter()
                .map(|d| format!("{:.3}s", d.as_secs_f64()))
                .collect();
            writeln!(f, "  epochs marked at: {}", marks.join(", "))?;
            if !self.failures_by_epoch.is_empty() {
                let per: Vec<String> = self
                    .failures_by_epoch
                    .iter()
                    .map(|(e, n)| format!("epoch {e}: {n}"))
                    .collect();
                writeln!(f, "  failures by epoch: {}", per.join(", "))?;
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
        if self.http_retries > 0 {
            writeln!(
                f,
                "  keep-alive retries (not failures): {}",
                self.http_retries
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

/// Sub-buckets per power of two: values are kept to within ~3%.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any u64 microsecond count.
const BUCKETS: usize = (65 - SUB_BITS as usize) * SUB;

/// Fixed-size log-linear histogram of microsecond latencies.
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: Duration,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: Duration::ZERO,
        }
    }

    fn index(us: u64) -> usize {
        if us < 2 * SUB as u64 {
            return us as usize;
        }
        let log2 = 63 - us.leading_zeros();
        let shift = log2 - SUB_BITS;
        let mantissa = (us >> shift) as usize - SUB;
        (shift as usize + 1) * SUB + mantissa
    }

    /// Midpoint of the bucket, in microseconds.
    fn value(index: usize) -> u64 {
        if index < 2 * SUB {
            return index as u64;
        }
        let shift = (index / SUB - 1) as u32;
        let low = ((index % SUB + SUB) as u64) << shift;
        low + (1u64 << shift) / 2
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[Self::index(us)] += 1;
        self.total += 1;
        self.max = self.max.max(d);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Value at quantile `q` (0..=1), never above the exact maximum.
    fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(Self::value(i)).min(self.max);
            }
        }
        self.max
    }

    pub fn latency(&self) -> Latency {
        Latency {
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut prev = 0;
        for us in [0u64, 1, 63, 64, 65, 127, 128, 1000, 123_456, u64::MAX] {
            let i = Histogram::index(us);
            assert!(i >= prev, "index must not decrease at {us}");
            assert!(i < BUCKETS);
            prev = i;
            let v = Histogram::value(i);
            let err = v.abs_diff(us) as f64 / (us.max(1) as f64);
            assert!(err <= 0.04, "{us} -> bucket value {v}");
        }
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let l = h.latency();
        assert!((480..=520).contains(&l.p50.as_micros()), "{l:?}");
        assert!((960..=1000).contains(&l.p99.as_micros()), "{l:?}");
        assert_eq!(l.max, Duration::from_micros(1000));
    }
}
