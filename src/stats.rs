//! exuvia's own counters: what happened to upgrades and connections, kept in the process,
//! carried to the successor (the manifest's `?counters` line, and the old generation's
//! drain results in a `stats` message), so totals continue across generations — a scrape
//! after 100 upgrades says 100, whichever generation answers it.
//!
//! With feature `metrics` every change is mirrored into the [`metrics`](https://docs.rs/metrics)
//! facade, so any exporter works (docs/operations.md lists the names):
//! `exuvia_upgrades_started_total`, `exuvia_upgrades_handed_over_total`,
//! `exuvia_upgrades_failed_total{reason}`, `exuvia_connections_drained_total`,
//! `exuvia_connections_cut_total`, `exuvia_connections_handed_over_total` (counters);
//! `exuvia_upgrade_ready_seconds`, `exuvia_upgrade_handover_seconds`, `exuvia_drain_seconds`
//! (histograms); `exuvia_generation`, `exuvia_connections_at_handover` (gauges).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::sync::lock;

/// A counter's name as it travels (`upgrades_failed.timeout`) and as it is exported
/// (`exuvia_upgrades_failed_total{reason="timeout"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Counter {
    UpgradesStarted,
    UpgradesHandedOver,
    UpgradesFailed(&'static str),
    ConnectionsDrained,
    ConnectionsCut,
    ConnectionsHandedOver,
}

/// Why an upgrade failed, as a label.
pub(crate) const FAILURE_REASONS: &[&str] = &[
    "executable",
    "spawn",
    "exited",
    "died_after_ready",
    "timeout",
    "failed",
    "protocol",
    "vetoed",
    "shutting_down",
    "shut_down",
    "other",
];

impl Counter {
    fn key(self) -> String {
        match self {
            Counter::UpgradesStarted => "upgrades_started".into(),
            Counter::UpgradesHandedOver => "upgrades_handed_over".into(),
            Counter::UpgradesFailed(r) => format!("upgrades_failed.{r}"),
            Counter::ConnectionsDrained => "connections_drained".into(),
            Counter::ConnectionsCut => "connections_cut".into(),
            Counter::ConnectionsHandedOver => "connections_handed_over".into(),
        }
    }

    /// The counter a travelled key names; unknown keys (from a newer release) are `None`.
    fn from_key(key: &str) -> Option<Counter> {
        Some(match key {
            "upgrades_started" => Counter::UpgradesStarted,
            "upgrades_handed_over" => Counter::UpgradesHandedOver,
            "connections_drained" => Counter::ConnectionsDrained,
            "connections_cut" => Counter::ConnectionsCut,
            "connections_handed_over" => Counter::ConnectionsHandedOver,
            other => {
                let reason = other.strip_prefix("upgrades_failed.")?;
                Counter::UpgradesFailed(FAILURE_REASONS.iter().find(|r| **r == reason)?)
            }
        })
    }

    #[cfg(feature = "metrics")]
    fn handle(self) -> metrics::Counter {
        match self {
            Counter::UpgradesStarted => metrics::counter!("exuvia_upgrades_started_total"),
            Counter::UpgradesHandedOver => metrics::counter!("exuvia_upgrades_handed_over_total"),
            Counter::UpgradesFailed(r) => {
                metrics::counter!("exuvia_upgrades_failed_total", "reason" => r)
            }
            Counter::ConnectionsDrained => metrics::counter!("exuvia_connections_drained_total"),
            Counter::ConnectionsCut => metrics::counter!("exuvia_connections_cut_total"),
            Counter::ConnectionsHandedOver => {
                metrics::counter!("exuvia_connections_handed_over_total")
            }
        }
    }
}

/// The process's counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    values: Mutex<BTreeMap<Counter, u64>>,
}

/// The one set of counters of this process (exuvia runs once per process, and the metrics
/// facade is process-wide too).
pub(crate) fn stats() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(Stats::default)
}

impl Stats {
    pub(crate) fn add(&self, c: Counter, n: u64) {
        if n == 0 {
            return;
        }
        let mut v = lock(&self.values);
        let e = v.entry(c).or_insert(0);
        *e = e.saturating_add(n);
        #[cfg(feature = "metrics")]
        c.handle().absolute(*e);
    }

    /// Adds travelled `key=value` pairs (the predecessor's totals, or its drain results);
    /// keys this build does not know are skipped.
    pub(crate) fn add_travelled(&self, pairs: &[(String, u64)]) {
        for (k, n) in pairs {
            match Counter::from_key(k) {
                Some(c) => self.add(c, *n),
                None => tracing::debug!(key = %k, "counter from another release skipped"),
            }
        }
    }

    /// The totals as they travel.
    pub(crate) fn snapshot(&self) -> Vec<(String, u64)> {
        lock(&self.values)
            .iter()
            .map(|(c, n)| (c.key(), *n))
            .collect()
    }

    /// A counter's current total (for tests and logs).
    #[cfg(test)]
    pub(crate) fn get(&self, c: Counter) -> u64 {
        lock(&self.values).get(&c).copied().unwrap_or(0)
    }
}

/// Records a duration into a histogram (feature `metrics`; nothing otherwise).
pub(crate) fn observe(name: &'static str, d: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(name).record(d.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (name, d);
}

/// Sets a gauge (feature `metrics`; nothing otherwise).
pub(crate) fn gauge(name: &'static str, value: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(name).set(value);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, value);
}

/// Parses `k=v k=v …` (the manifest's `?counters` line, the `stats` message).
pub(crate) fn parse_pairs(text: &str) -> Result<Vec<(String, u64)>, String> {
    text.split_whitespace()
        .take(256)
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?} is not key=value"))?;
            let ok_key = !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b"_.".contains(&b));
            let v: u64 = v.parse().map_err(|_| format!("{kv:?}: not a count"))?;
            ok_key
                .then(|| (k.to_owned(), v))
                .ok_or_else(|| format!("{kv:?}: bad counter name"))
        })
        .collect()
}

/// The inverse of [`parse_pairs`].
pub(crate) fn format_pairs(pairs: &[(String, u64)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_travel_and_unknown_ones_are_skipped() {
        let s = Stats::default();
        s.add(Counter::UpgradesStarted, 2);
        s.add(Counter::UpgradesFailed("timeout"), 1);
        let travelled = s.snapshot();
        let text = format_pairs(&travelled);
        assert_eq!(text, "upgrades_started=2 upgrades_failed.timeout=1");
        let next = Stats::default();
        next.add_travelled(&parse_pairs(&text).unwrap());
        next.add_travelled(&parse_pairs("from_the_future=9 upgrades_failed.alien=3").unwrap());
        assert_eq!(next.snapshot(), travelled);
        assert_eq!(next.get(Counter::UpgradesStarted), 2);
        assert!(parse_pairs("a=b").is_err());
        assert!(parse_pairs("A=1").is_err());
        assert!(parse_pairs("a=18446744073709551616").is_err());
    }
}
