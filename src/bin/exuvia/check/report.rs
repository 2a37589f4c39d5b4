//! The verdict of `exuvia check`: one record for the table on stdout and for `--json`.
//!
//! The JSON is read by CI jobs and by the real-systemd harness (which runs `check --unit` on
//! every systemd version it covers), so its shape is a contract: fields are only ever added,
//! and `schema` changes if one is removed or changes meaning. Durations are seconds as
//! floating point numbers, times are seconds since the load started.
//!
//! ```text
//! schema             2 (1 until HTTP/2 and WebSocket modes came: see "Schema 2" below)
//! mode               "simulator" (built-in stand-in for systemd) | "unit" (real systemd)
//! reload_method      "signal" (reload signal to the main pid, as systemctl reload does
//!                    for Type=notify-reload) | "restart" (stop + start; `exuvia demo`'s
//!                    naive side) | "systemctl-reload"
//! command            [argv…] in simulator mode, else null
//! unit               unit name in unit mode, else null
//! target             where the load went, e.g. "tcp:127.0.0.1:8080"
//! pass               the verdict; the exit status is 0 exactly when this is true
//! reasons            [text…] why it failed (empty when it passed)
//! reloads_requested  --reloads
//! reloads            [{index, epoch, at, ok, completed, main_pid_changed, failure, error,
//!                      duration, old_main_pid, new_main_pid, failed_requests,
//!                      retried_requests, status, systemctl}]
//!                    failure: null | "timeout" | "main-exited" | "no-main-pid-change" |
//!                      "unit-dead" | "restarted" | "reactivated" | "systemctl-failed" | "error"
//!                    failed_requests: failed requests that started during this reload's
//!                      epoch (from its start until the next reload began)
//!                    retried_requests: retries of requests that started in that epoch
//!                    systemctl (unit mode): {rc, stderr, before, after}, before/after being
//!                      {MainPID, InvocationID, ActiveState, SubState, NRestarts, StatusText}
//!                      as strings, exactly as `systemctl show` printed them
//! reload_duration    {p50, p99, max} over completed reloads, or null
//! main_pid_changes   reloads after which the main pid differed
//! violations         [{rule, description, detail, datagram, sender_pid, at}] (simulator
//!                    only; rule is kebab-case, e.g. "reloading-without-monotonic-usec";
//!                    `at` is CLOCK_MONOTONIC seconds)
//! peak_processes     most processes seen in the unit at once (simulator: unit members;
//!                    unit mode: the cgroup's cgroup.procs), or null if unknown
//! stop               {already_dead, signal, duration, sigkilled: [pid…]}, or null in unit
//!                    mode (the unit is left running)
//! load               the load client's report, also what `exuvia load --json` writes:
//!   target, mode ("echo" | "long" | "http" | "h2" | "ws"), connections, streams (h2:
//!   streams per connection, else 1), ok, failed, failures [{kind, at, worker, epoch,
//!   error}], failures_by_kind {kind: n}, failures_by_epoch {epoch: n}, elapsed,
//!   latency {p50, p99, max}, long_lived_survived, connections_lost,
//!   retried, retries_by_reason {reason: n}, retries_by_epoch {epoch: n},
//!   retry_idempotent, accept_retries, orderly_closes, epochs [start…]
//!   kind: "refused" | "reset" | "timeout" | "eof-mid-request" | "keep-alive-closed" |
//!     "stream-reset" | "no-close-frame" | "unanswered-at-close" | "wrong-answer" |
//!     "http-5xx" | "other"
//!   reason: "keep-alive-closed" (only with --retry-idempotent) | "refused-by-goaway" |
//!     "refused-stream" (HTTP/2, always retried: RFC 9113 §8.7 says never processed)
//! ```
//!
//! Schema 2 (from 1): `load.failed` now counts a request lost on a reused keep-alive
//! connection (kind `keep-alive-closed`), which schema 1 retried silently and reported only
//! as `load.http_retries`; that field is gone, replaced by `retried` and the fields after
//! it, and `pass` is false when `retried` > 0 unless `accept_retries`. New: modes h2 and ws,
//! the kinds after `eof-mid-request`, `streams`, `orderly_closes`, `retried_requests`.
use std::fmt::Write as _;
use std::time::Duration;

use exuvia_testing::load::{FailureKind, LoadReport};
use serde::Serialize;

mod table;

/// Bumped when a field is removed or changes meaning.
pub const SCHEMA: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema: u32,
    pub mode: &'static str,
    pub reload_method: &'static str,
    pub command: Option<Vec<String>>,
    pub unit: Option<String>,
    pub target: String,
    pub pass: bool,
    pub reasons: Vec<String>,
    pub reloads_requested: u32,
    pub reloads: Vec<ReloadEntry>,
    pub reload_duration: Option<Quantiles>,
    pub main_pid_changes: u32,
    pub violations: Vec<ViolationEntry>,
    pub peak_processes: Option<usize>,
    pub stop: Option<StopEntry>,
    pub load: LoadReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadEntry {
    pub index: u32,
    pub epoch: u32,
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    pub ok: bool,
    pub completed: bool,
    pub main_pid_changed: bool,
    pub failure: Option<&'static str>,
    pub error: Option<String>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub old_main_pid: Option<u32>,
    pub new_main_pid: Option<u32>,
    pub failed_requests: u64,
    pub retried_requests: u64,
    pub status: Option<String>,
    pub systemctl: Option<SystemctlEntry>,
}

impl ReloadEntry {
    /// A reload that has not run yet: everything unknown until it is judged.
    pub fn pending(index: u32, epoch: u32, at: Duration) -> Self {
        ReloadEntry {
            index,
            epoch,
            at,
            ok: false,
            completed: false,
            main_pid_changed: false,
            failure: None,
            error: None,
            duration: Duration::ZERO,
            old_main_pid: None,
            new_main_pid: None,
            failed_requests: 0,
            retried_requests: 0,
            status: None,
            systemctl: None,
        }
    }

    /// A reload that ended with `failure`; `ok` stays false.
    pub fn failed(mut self, failure: &'static str, error: impl Into<String>) -> Self {
        self.ok = false;
        if self.failure.is_none() {
            self.failure = Some(failure);
            self.error = Some(error.into());
        }
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemctlEntry {
    pub rc: Option<i32>,
    pub stderr: String,
    pub before: std::collections::BTreeMap<String, String>,
    pub after: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantiles {
    #[serde(serialize_with = "secs")]
    pub p50: Duration,
    #[serde(serialize_with = "secs")]
    pub p99: Duration,
    #[serde(serialize_with = "secs")]
    pub max: Duration,
}

impl Quantiles {
    /// Nearest-rank quantiles; `None` for no samples.
    pub fn of(mut v: Vec<Duration>) -> Option<Quantiles> {
        v.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        let max = *v.last()?;
        Some(Quantiles {
            p50: at(0.50),
            p99: at(0.99),
            max,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationEntry {
    pub rule: String,
    pub description: String,
    pub detail: String,
    pub datagram: String,
    pub sender_pid: Option<u32>,
    #[serde(serialize_with = "secs")]
    pub at: Duration,
}

impl From<&exuvia_testing::sim::Violation> for ViolationEntry {
    fn from(v: &exuvia_testing::sim::Violation) -> Self {
        ViolationEntry {
            rule: kebab(&format!("{:?}", v.rule)),
            description: v.rule.to_string(),
            detail: v.detail.clone(),
            datagram: v.datagram.clone(),
            sender_pid: v.sender_pid,
            at: v.at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StopEntry {
    /// The unit had already stopped by itself (e.g. its main process exited).
    pub already_dead: bool,
    pub signal: String,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub sigkilled: Vec<u32>,
}

/// `ReloadingWithoutMonotonicUsec` → `reloading-without-monotonic-usec`.
fn kebab(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 10_000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// `refused 3, reset 1`, or `none`.
pub fn kinds(load: &LoadReport) -> String {
    load.failure_summary()
}

impl CheckReport {
    /// Fills `pass` and `reasons` from the facts collected; every rule of the verdict is here.
    pub fn judge(&mut self) {
        let mut why = Vec::new();
        let l = &self.load;
        if l.failed > 0 {
            why.push(format!(
                "{} of {} requests failed ({})",
                l.failed,
                l.ok + l.failed,
                kinds(l)
            ));
        }
        if l.unaccepted_retries() > 0 {
            why.push(format!(
                "{} request(s) had to be retried ({}): a client that does not retry saw them \
                 fail; pass --accept-retries to accept retried requests",
                l.retried,
                l.retry_summary()
            ));
        }
        if l.ok == 0 {
            why.push(format!(
                "no request to {} succeeded, so nothing was verified (is --target right?)",
                l.target
            ));
        }
        if l.long_lived_survived == Some(false) {
            why.push(format!(
                "{} long-lived connection(s) were lost",
                l.connections_lost
            ));
        }
        if !self.violations.is_empty() {
            why.push(format!(
                "{} systemd protocol violation(s)",
                self.violations.len()
            ));
        }
        for r in &self.reloads {
            if !r.ok {
                why.push(format!(
                    "reload {}: {}",
                    r.index,
                    r.error.as_deref().unwrap_or("failed")
                ));
            }
        }
        let done = self.reloads.len() as u32;
        if done < self.reloads_requested {
            why.push(format!(
                "only {done} of {} reloads were attempted",
                self.reloads_requested
            ));
        }
        self.pass = why.is_empty();
        self.reasons = why;
    }

    /// The headline: `PASS: 0 failed of N requests over R reloads`.
    pub fn headline(&self) -> String {
        let l = &self.load;
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        let retried = if l.retried > 0 {
            format!(", {} RETRIED", l.retried)
        } else {
            String::new()
        };
        let mut s = format!(
            "{verdict}: {} failed{retried} of {} requests over {} reload(s)",
            l.failed,
            l.ok + l.failed,
            self.reloads.len()
        );
        if !self.violations.is_empty() {
            let _ = write!(s, ", {} protocol violation(s)", self.violations.len());
        }
        s
    }
}

/// Failure kinds in a fixed order, for side-by-side tables.
pub const KINDS: [FailureKind; FailureKind::ALL.len()] = FailureKind::ALL;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_rules() {
        assert_eq!(
            kebab("ReloadingWithoutMonotonicUsec"),
            "reloading-without-monotonic-usec"
        );
        assert_eq!(kebab("Unauthorized"), "unauthorized");
    }

    #[test]
    fn quantiles_nearest_rank() {
        assert!(Quantiles::of(Vec::new()).is_none());
        let v = (1..=100).map(Duration::from_millis).collect();
        let q = Quantiles::of(v).unwrap();
        assert_eq!(q.p50, Duration::from_millis(50));
        assert_eq!(q.p99, Duration::from_millis(99));
        assert_eq!(q.max, Duration::from_millis(100));
    }
}
