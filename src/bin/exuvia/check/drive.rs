//! The part of a check that does not care who supervises the service: run the load, reload
//! on schedule with an epoch mark before each reload, and attribute failures to reloads.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use exuvia_testing::load::{self, LoadConfig, LoadReport, Mode, Target};

use super::progress::Ui;
use super::report::ReloadEntry;
use crate::load::HttpOptions;

/// A service under check: something that can be reloaded and observed.
pub trait Service: Sync {
    /// Performs reload `entry.index` and completes `entry` with what happened.
    fn reload(&self, entry: ReloadEntry) -> ReloadEntry;
    /// `Err(why)` once the service is gone (checked before every reload).
    fn alive(&self) -> Result<(), String>;
    /// Processes in the unit right now, if knowable.
    fn processes(&self) -> Option<usize>;
}

/// When to reload and how to load.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub mode: Mode,
    pub connections: u32,
    pub request_timeout: Duration,
    pub http_path: String,
    /// HTTP/2 streams and the retry policy (see the load client's `kind.rs`).
    pub http: HttpOptions,
    pub reloads: u32,
    /// Load alone before the first reload, between reloads, and after the last.
    pub interval: Duration,
    /// The load runs at least this long.
    pub min_duration: Duration,
}

pub struct Driven {
    pub reloads: Vec<ReloadEntry>,
    pub load: LoadReport,
    pub interrupted: bool,
    /// Why reloading stopped early because the service was gone.
    pub gone: Option<String>,
}

impl Driven {
    /// Durations of the reloads that completed.
    pub fn completed_durations(&self) -> Vec<Duration> {
        self.reloads
            .iter()
            .filter(|r| r.completed)
            .map(|r| r.duration)
            .collect()
    }
}

impl Schedule {
    pub fn expected(&self) -> Duration {
        (self.interval * (self.reloads + 1)).max(self.min_duration)
    }
}

pub fn drive(
    s: &Schedule,
    target: Target,
    service: &dyn Service,
    ui: &Ui,
) -> Result<Driven, String> {
    let mut cfg = LoadConfig::new(target);
    cfg.mode = s.mode;
    cfg.connections = s.connections;
    cfg.timeout = s.request_timeout;
    cfg.http_path = s.http_path.clone();
    s.http.apply(&mut cfg);
    // The schedule, not the load client, decides when the run ends.
    cfg.duration = load::MAX_DURATION;
    let handle = load::start(cfg).map_err(|e| e.to_string())?;
    let started = Instant::now();
    ui.begin(s.reloads, s.expected());
    let done = AtomicBool::new(false);
    let processes = || service.processes();
    let mut reloads = Vec::new();
    let mut gone = None;
    std::thread::scope(|scope| {
        scope.spawn(|| ui.tick_loop(&handle, &processes, &done));
        if ui.sleep(s.interval) {
            for index in 1..=s.reloads {
                if let Err(why) = service.alive() {
                    ui.event(&format!("stopping early: {why}"));
                    gone = Some(why);
                    break;
                }
                let entry = ReloadEntry::pending(index, handle.mark(), started.elapsed());
                let r = service.reload(entry);
                // The old generation is typically still draining right now; the ticker's
                // period alone would miss a handover that takes milliseconds.
                if let Some(n) = service.processes() {
                    ui.sample_processes(n);
                }
                ui.reload_done();
                ui.event(&describe(&r));
                let completed = r.completed;
                reloads.push(r);
                // A reload that never completed leaves nothing sound to reload again, and
                // each further attempt would only wait out another timeout.
                if !completed || !ui.sleep(s.interval) {
                    break;
                }
            }
            let left = s.min_duration.saturating_sub(started.elapsed());
            if !left.is_zero() && !ui.aborted() {
                ui.sleep(left);
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    let load = handle.stop();
    for r in &mut reloads {
        r.failed_requests = load.failures_by_epoch.get(&r.epoch).copied().unwrap_or(0);
        r.retried_requests = load.retries_by_epoch.get(&r.epoch).copied().unwrap_or(0);
    }
    Ok(Driven {
        reloads,
        load,
        interrupted: ui.aborted(),
        gone,
    })
}

fn describe(r: &ReloadEntry) -> String {
    let pids = match (r.old_main_pid, r.new_main_pid) {
        (Some(a), Some(b)) => format!("MainPID {a} -> {b}"),
        (Some(a), None) => format!("MainPID was {a}"),
        _ => String::new(),
    };
    match &r.error {
        None => format!(
            "reload {} done in {}, {pids}",
            r.index,
            super::report::ms(r.duration)
        ),
        Some(e) => format!(
            "reload {} FAILED after {}: {e}",
            r.index,
            super::report::ms(r.duration)
        ),
    }
}
