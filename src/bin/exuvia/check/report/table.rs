//! The table `exuvia check` prints (and `--json -` sends to stderr): the verdict first,
//! then every count a reader needs to believe it — failures by kind with what each means,
//! retried requests whenever there are any, orderly closes, and one row per reload.
use std::fmt;

use exuvia_testing::load::{LoadReport, Mode, RetryReason};

use super::{CheckReport, ms};

/// Width of the row labels.
const LABEL: usize = 16;

fn row(f: &mut fmt::Formatter<'_>, k: &str, v: String) -> fmt::Result {
    writeln!(f, "  {k:<LABEL$}{v}")
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.load;
        writeln!(f, "exuvia check: {}", self.headline())?;
        let what = match (&self.command, &self.unit) {
            (Some(c), _) => format!("{} (simulated systemd)", c.join(" ")),
            (None, Some(u)) => format!("unit {u} (systemd on this host)"),
            _ => String::new(),
        };
        row(f, "service", what)?;
        let streams = if l.mode == Mode::H2 {
            format!(" x {} stream(s)", l.streams)
        } else {
            String::new()
        };
        row(
            f,
            "load",
            format!(
                "{} {}, {} connection(s){streams}, {:.2}s, {:.0} req/s",
                l.mode,
                l.target,
                l.connections,
                l.elapsed.as_secs_f64(),
                l.requests_per_sec()
            ),
        )?;
        row(f, "requests", format!("{} ok, {} failed", l.ok, l.failed))?;
        failure_rows(f, l)?;
        if l.retried > 0 || l.retry_idempotent {
            let verdict = match (l.retried, l.accept_retries) {
                (0, _) => "(--retry-idempotent was on)",
                (_, true) => "accepted (--accept-retries)",
                (_, false) => "counted as FAILED (--accept-retries accepts them)",
            };
            row(f, "RETRIED", format!("{}, {verdict}", l.retried))?;
            for reason in RetryReason::ALL {
                let n = l.retries(reason);
                if n > 0 {
                    row(f, "", format!("{}: {n}", reason.label()))?;
                }
            }
        }
        if l.orderly_closes > 0 || matches!(l.mode, Mode::Http | Mode::H2 | Mode::Ws) {
            row(
                f,
                "orderly closes",
                format!(
                    "{} (Connection: close, GOAWAY or close frame; not failures)",
                    l.orderly_closes
                ),
            )?;
        }
        if let Some(survived) = l.long_lived_survived {
            let v = if survived { "all survived" } else { "LOST" };
            row(
                f,
                "long-lived",
                format!("{v} ({} lost)", l.connections_lost),
            )?;
        }
        let completed = self.reloads.iter().filter(|r| r.completed).count();
        row(
            f,
            "reloads",
            format!(
                "{completed}/{} completed, MainPID changed {} time(s)",
                self.reloads_requested, self.main_pid_changes
            ),
        )?;
        if let Some(q) = self.reload_duration {
            row(
                f,
                "reload time",
                format!("p50 {}  p99 {}  max {}", ms(q.p50), ms(q.p99), ms(q.max)),
            )?;
        }
        row(
            f,
            "processes",
            self.peak_processes
                .map_or("unknown".into(), |n| format!("peak {n}")),
        )?;
        let v = if self.mode == "unit" {
            "not observable with --unit (systemd enforces them itself)".into()
        } else if self.violations.is_empty() {
            "none".into()
        } else {
            self.violations.len().to_string()
        };
        row(f, "violations", v)?;
        if let Some(s) = self.stop.as_ref().filter(|s| s.already_dead) {
            row(
                f,
                "stop",
                format!(
                    "not needed: the unit had already stopped ({} unused)",
                    s.signal
                ),
            )?;
        } else if let Some(s) = &self.stop {
            let killed = if s.sigkilled.is_empty() {
                String::new()
            } else {
                format!(", SIGKILLed {:?} after the stop timeout", s.sigkilled)
            };
            row(
                f,
                "stop",
                format!("{} → all exited in {}{killed}", s.signal, ms(s.duration)),
            )?;
        }
        if !self.reloads.is_empty() {
            // The retried column appears whenever a request was retried: never out of sight.
            let retries = self.reloads.iter().any(|r| r.retried_requests > 0);
            let retried_head = if retries { "  retried" } else { "" };
            writeln!(f)?;
            writeln!(
                f,
                "  {:>3}  {:>10}  {:<22}  {:>6}{retried_head}  result",
                "#", "duration", "MainPID", "failed"
            )?;
            for r in &self.reloads {
                let pids = match (r.old_main_pid, r.new_main_pid) {
                    (Some(a), Some(b)) if a != b => format!("{a} -> {b}"),
                    (Some(a), _) => format!("{a} (unchanged)"),
                    (None, Some(b)) => format!("? -> {b}"),
                    (None, None) => "?".into(),
                };
                let result = if r.ok {
                    "ok".to_owned()
                } else {
                    r.error.clone().unwrap_or_else(|| "failed".into())
                };
                let retried = if retries {
                    format!("  {:>7}", r.retried_requests)
                } else {
                    String::new()
                };
                writeln!(
                    f,
                    "  {:>3}  {:>10}  {:<22}  {:>6}{retried}  {result}",
                    r.index,
                    ms(r.duration),
                    pids,
                    r.failed_requests
                )?;
            }
        }
        if !self.violations.is_empty() {
            writeln!(f)?;
            writeln!(f, "  protocol violations:")?;
            for v in &self.violations {
                write!(f, "  - [{}] {}", v.rule, v.description)?;
                if !v.detail.is_empty() {
                    write!(f, ": {}", v.detail)?;
                }
                writeln!(f)?;
                match v.sender_pid {
                    Some(pid) => writeln!(f, "      datagram from pid {pid}: {:?}", v.datagram)?,
                    None => writeln!(f, "      (no datagram)")?,
                }
            }
        }
        let shown: Vec<_> = l.failures.iter().take(5).collect();
        if !shown.is_empty() {
            writeln!(f)?;
            writeln!(f, "  first failed requests:")?;
            for x in shown {
                let when = match x.epoch {
                    0 => "before reload 1".to_owned(),
                    n => format!("in reload {n}"),
                };
                writeln!(
                    f,
                    "  - +{:.3}s {when} {}: {}",
                    x.at.as_secs_f64(),
                    x.kind,
                    x.error
                )?;
            }
        }
        if !self.reasons.is_empty() {
            writeln!(f)?;
            writeln!(f, "  FAIL because:")?;
            for r in &self.reasons {
                writeln!(f, "  - {r}")?;
            }
        }
        Ok(())
    }
}

/// One line per failure kind that occurred, with what it means.
fn failure_rows(f: &mut fmt::Formatter<'_>, l: &LoadReport) -> fmt::Result {
    if l.failures_by_kind.is_empty() {
        return writeln!(f, "  {:<LABEL$}none", "failures");
    }
    for (i, (k, n)) in l.failures_by_kind.iter().enumerate() {
        let label = if i == 0 { "failures" } else { "" };
        writeln!(f, "  {label:<LABEL$}{k} {n}: {}", k.describe())?;
    }
    Ok(())
}
