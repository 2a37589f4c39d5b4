//! Where an exuvia upgrade's milliseconds go: the library's own timeline fields (`t_*`,
//! CLOCK_MONOTONIC µs, written by the servers' `timeline_layer`) lined up against the
//! driver's trigger, one upgrade at a time.
use std::fmt::Write as _;
use std::path::Path;

use crate::contender::Sample;

/// One event: the process that logged it and its integer fields.
#[derive(Clone, Debug)]
pub struct Event {
    pub pid: i32,
    pub fields: Vec<(String, u64)>,
}

pub type Events = Vec<Event>;

impl Event {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

pub fn read(path: &Path) -> Events {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let fields = it
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect();
            Some(Event { pid, fields })
        })
        .collect()
}

/// The phases, in the order they happen, with what each marks.
pub const PHASES: [(&str, &str); 10] = [
    ("t_trigger", "control loop takes the signal"),
    ("t_fork", "fork of the intermediate process"),
    ("t_exec", "successor exec'd (intermediate gone)"),
    ("t_reaped", "intermediate reaped"),
    (
        "t_manifest",
        "successor has read the manifest and listeners",
    ),
    ("t_ready_sent", "successor says ready"),
    ("t_ready", "old generation hears ready"),
    ("t_handed", "live connections handed over"),
    ("t_closed", "old generation's listeners closed"),
    ("t_announced", "successor announced (MAINPID=)"),
];

/// The phases of one upgrade, ms after the driver's trigger (`None` where not logged).
pub fn phases(s: &Sample, events: &Events) -> [Option<f64>; PHASES.len()] {
    let mut out = [None; PHASES.len()];
    if !s.completed || s.t0_us == 0 {
        return out;
    }
    let from = |pid: i32, key: &str, also: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .filter(|e| e.pid == pid && also(e))
            .find_map(|e| e.get(key).filter(|t| *t + 1000 >= s.t0_us))
    };
    let new = |e: &Event| e.get("successor_pid") == Some(s.new_pid as u64);
    for (i, (key, _)) in PHASES.iter().enumerate() {
        // The successor logs its own two; the old generation names the successor in the rest.
        let t = match *key {
            "t_manifest" | "t_ready_sent" => from(s.new_pid, key, &|_| true),
            _ => from(s.old_pid, key, &new),
        };
        out[i] = t.map(|t| (t as f64 - s.t0_us as f64) / 1000.0);
    }
    out
}

/// The handover-complete event of this upgrade (its counts).
pub fn handover(s: &Sample, events: &Events) -> Option<Event> {
    events
        .iter()
        .find(|e| {
            e.pid == s.old_pid
                && e.get("successor_pid") == Some(s.new_pid as u64)
                && e.get("t_closed").is_some()
        })
        .cloned()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The per-phase table: p50 / p99 over every upgrade given, with the driver's own two
/// observations (successor serving, old listener closed) in place.
pub fn table(upgrades: &[(&Sample, &Events)]) -> String {
    let rows: Vec<[Option<f64>; PHASES.len()]> =
        upgrades.iter().map(|(s, e)| phases(s, e)).collect();
    let mut out = String::from(
        "| phase (ms after the driver's SIGHUP) | p50 | p99 | upgrades |\n|---|---:|---:|---:|\n",
    );
    let mut line = |name: &str, mut v: Vec<f64>| {
        let n = v.len();
        if n == 0 {
            let _ = writeln!(out, "| {name} | – | – | 0 |");
            return;
        }
        let (a, b) = (pct(&mut v, 50.0), pct(&mut v, 99.0));
        let _ = writeln!(out, "| {name} | {a:.2} | {b:.2} | {n} |");
    };
    let col = |i: usize| -> Vec<f64> { rows.iter().filter_map(|r| r[i]).collect() };
    let serving: Vec<f64> = upgrades
        .iter()
        .filter(|(s, _)| s.completed)
        .map(|(s, _)| s.serving_ms)
        .collect();
    let closed: Vec<f64> = upgrades
        .iter()
        .filter(|(s, _)| s.completed)
        .map(|(s, _)| s.closed_ms)
        .collect();
    for (i, (key, what)) in PHASES.iter().enumerate() {
        line(&format!("{what} (`{key}`)"), col(i));
        if *key == "t_ready_sent" {
            line(
                "*successor serving: its first accepted connection (driver)*",
                serving.clone(),
            );
        }
    }
    line("*old listener closed: seen in /proc (driver)*", closed);
    let diff = |a: usize, b: usize| -> Vec<f64> {
        rows.iter().filter_map(|r| Some(r[b]? - r[a]?)).collect()
    };
    let idx = |k: &str| PHASES.iter().position(|(p, _)| *p == k).unwrap_or(0);
    line(
        "intermediate process alive, at most (fork → exec)",
        diff(idx("t_fork"), idx("t_exec")),
    );
    line(
        "successor start-up (exec → manifest read)",
        diff(idx("t_exec"), idx("t_manifest")),
    );
    line(
        "service start-up (manifest read → ready)",
        diff(idx("t_manifest"), idx("t_ready_sent")),
    );
    line(
        "ready → MAINPID announced",
        diff(idx("t_ready"), idx("t_announced")),
    );
    out
}
