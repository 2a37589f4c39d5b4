//! The control loop's side of an upgrade: **spawn** → **await ready** → **hand over** →
//! **drain**, failures and verdicts, and control requests that join a signal's upgrade.

use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Driver, InFlight};
use crate::error::UpgradeError;
use crate::generations;
use crate::join::Joined;
use crate::lifecycle::{DrainReason, Phase};
use crate::manifest::Ancestor;
use crate::request::{UpgradeResult, Upgraded, Verdict, Waiter};
use crate::stats::{Counter, stats};
use crate::successor::{self, Answer, Successor};
use crate::sync::lock;
use crate::sys;

impl Driver {
    /// **spawn**: start an upgrade unless one is running or this process may not upgrade.
    pub(super) fn trigger(&mut self, waiter: Waiter) {
        if self.inflight.is_some() || self.deferred.is_some() {
            tracing::info!("upgrade already in progress; trigger coalesced");
            waiter.reply(Err(UpgradeError::InProgress));
            return;
        }
        let refusal = if self.draining_now() {
            Some(UpgradeError::ShuttingDown)
        } else if !self.main && self.ready {
            // systemd signals the new main as soon as MAINPID= names it, which can be a few
            // hundred µs before the old process has let go of the listeners: start right
            // after, or the reload would hang until its timeout.
            tracing::info!(
                "upgrade requested while taking over; it starts once the handover completes"
            );
            self.deferred = Some(waiter);
            return;
        } else if !self.main {
            Some(UpgradeError::HandoverPending)
        } else {
            None
        };
        if let Some(e) = refusal {
            tracing::info!(reason = %e, "upgrade refused");
            waiter.reply(Err(e));
            return;
        }
        let triggered = Instant::now();
        stats().add(Counter::UpgradesStarted, 1);
        if matches!(waiter, Waiter::Signal) {
            self.join.signal_started(triggered, sys::monotonic_usec());
        }
        self.notifier.reloading();
        self.life().set_phase(Phase::Upgrading);
        // After RELOADING=1, so that a veto still completes the reload (READY=1 + STATUS=).
        if let Err(e) = self.cfg.hooks.before_upgrade() {
            return self.fail(None, waiter, Vec::new(), e);
        }
        match self.spawn() {
            Ok(successor) => {
                tracing::info!(
                    phase = "await ready",
                    successor_pid = successor.pid,
                    "successor started"
                );
                self.notifier
                    .extend_timeout(self.cfg.ready_timeout + Duration::from_secs(5));
                self.inflight = Some(InFlight {
                    successor,
                    caps: Vec::new(),
                    triggered,
                    deadline: triggered + self.cfg.ready_timeout,
                    asked_by: waiter,
                    joined: Vec::new(),
                });
            }
            Err(e) => self.fail(None, waiter, Vec::new(), e),
        }
    }

    pub(super) fn spawn(&mut self) -> Result<Successor, UpgradeError> {
        let exe = crate::env::resolve_executable(
            self.cfg.executable.as_deref(),
            self.cfg.start.argv0.as_deref(),
        )
        .map_err(|source| UpgradeError::Executable {
            path: self
                .cfg
                .executable
                .clone()
                .or(self.cfg.start.argv0.clone())
                .unwrap_or_default(),
            source,
        })?;
        let args = self
            .cfg
            .args
            .clone()
            .unwrap_or_else(|| self.cfg.start.args.clone());
        let mut draining: Vec<Ancestor> = generations::alive(&self.draining);
        let me = std::process::id() as i32;
        draining.push(Ancestor {
            pid: me,
            start_time: sys::process_start_time(me).map_err(|source| UpgradeError::Spawn {
                step: "reading this process's start time for the manifest",
                source,
            })?,
        });
        let state = lock(&self.shared.next_state).clone();
        let reg = self.shared.registry();
        tracing::info!(phase = "spawn", exe = %exe.display(), fds = reg.registered().count(), "starting successor");
        successor::spawn(successor::Plan {
            exe,
            args,
            fds: reg.registered().collect(),
            generation: self.generation + 1,
            draining,
            state,
            signal_trigger_us: self.join.running_trigger_us(),
        })
    }

    /// **await ready**: the successor's channel or pidfd became readable.
    pub(super) fn on_successor_event(&mut self) {
        let Some(f) = &self.inflight else { return };
        let pid = f.successor.pid;
        let exited = f.successor.exited();
        let outcome = match f.successor.answer() {
            Answer::Ready(caps) if !exited => Ok(caps),
            // Handing over to a dead process would leave nobody serving.
            Answer::Ready(_) => Err(UpgradeError::DiedAfterReady { pid }),
            Answer::Failed(reason) => Err(UpgradeError::Failed { pid, reason }),
            Answer::Malformed(message) if !exited => Err(UpgradeError::Protocol { pid, message }),
            Answer::Gone | Answer::Malformed(_) => Err(UpgradeError::Exited { pid }),
        };
        let Some(mut f) = self.inflight.take() else {
            return;
        };
        match outcome {
            Ok(caps) => {
                f.caps = caps;
                self.hand_over(f)
            }
            Err(e) => self.fail(Some(f.successor), f.asked_by, f.joined, e),
        }
    }

    pub(super) fn on_timer(&mut self) {
        let now = Instant::now();
        if self.stop_at.is_some_and(|at| now >= at) {
            tracing::warn!(
                phase = "hand over",
                "the previous generation did not settle its offer in time; draining without it"
            );
            self.begin_drain();
        }
        if let Some(f) = self.inflight.take_if(|f| now >= f.deadline) {
            let e = UpgradeError::Timeout {
                pid: f.successor.pid,
                timeout: self.cfg.ready_timeout,
            };
            self.fail(Some(f.successor), f.asked_by, f.joined, e);
        }
        if let Some(at) = self.next_watchdog {
            if now >= at {
                if self.main && !self.draining_now() {
                    self.notifier.watchdog();
                    self.next_watchdog = self.notifier.watchdog_interval().map(|i| now + i);
                } else {
                    self.next_watchdog = None;
                }
            }
        }
    }

    /// The upgrade failed: kill the successor, stay main, keep serving.
    pub(super) fn fail(
        &mut self,
        successor: Option<Successor>,
        asked_by: Waiter,
        joined: Vec<mpsc::Sender<Verdict>>,
        e: UpgradeError,
    ) {
        if let Some(s) = &successor {
            s.kill();
        }
        tracing::warn!(error = %e, "upgrade failed; this generation keeps serving");
        stats().add(Counter::UpgradesFailed(e.reason()), 1);
        self.cfg.hooks.failed(&e);
        self.notifier.upgrade_failed(&e.short());
        if !self.draining_now() {
            self.life().set_phase(Phase::Serving);
        }
        self.answer(asked_by, joined, Err(e));
    }

    /// Gives the outcome to whoever asked (the typed error to an API caller) and to the
    /// control requests that joined, and keeps it for one that joins a signal's upgrade late.
    pub(super) fn answer(
        &mut self,
        asked_by: Waiter,
        joined: Vec<mpsc::Sender<Verdict>>,
        r: UpgradeResult,
    ) {
        let verdict = Verdict::of(&r);
        self.join.finished(&verdict, Instant::now());
        for j in joined {
            let _ = j.send(verdict.clone());
        }
        asked_by.reply(r);
    }

    /// A control-socket request: joins the upgrade the reload signal started moments ago
    /// (see [`crate::join`]), else upgrades.
    pub(super) fn join(&mut self, reply: mpsc::Sender<Verdict>) {
        match self.join.claim(Instant::now()) {
            Joined::Finished(v) => {
                tracing::info!(
                    "control request joined the upgrade the reload signal started (finished)"
                );
                let _ = reply.send(v);
            }
            Joined::Running if self.inflight.is_some() => {
                tracing::info!(
                    "control request joined the upgrade the reload signal started (in progress)"
                );
                if let Some(f) = &mut self.inflight {
                    f.joined.push(reply);
                }
            }
            Joined::Running | Joined::Nothing => self.trigger(Waiter::Control(reply)),
        }
    }

    /// **hand over**: make the successor main, stop accepting, let go of every listener.
    pub(super) fn hand_over(&mut self, f: InFlight) {
        let ready_at = Instant::now();
        // Timeline of this upgrade in CLOCK_MONOTONIC µs (the "handover complete" event).
        let t_ready = sys::monotonic_usec();
        let t_trigger = t_ready.saturating_sub((ready_at - f.triggered).as_micros() as u64);
        // Live connections first, while this generation still accepts: if the successor dies
        // during the transfer, this generation has given up nothing else and serves on.
        let handed = if f
            .caps
            .iter()
            .any(|c| c == crate::predecessor::CAP_CONNECTIONS)
        {
            let deadline = Instant::now() + self.cfg.handoff_timeout;
            crate::handoff::give(&self.shared.board, &f.successor.channel, deadline)
        } else {
            // The successor adopts nothing: connections stay here and drain.
            crate::handoff::GiveReport::default()
        };
        let t_handed = sys::monotonic_usec();
        if handed.offered > 0 {
            tracing::info!(
                phase = "hand over",
                offered = handed.offered,
                handed_over = handed.handed_over,
                kept = handed.kept,
                "live connections handed over"
            );
        }
        // A successor told to stop after `ready` says so (during the hand-off, or just now):
        // making it main would hand the service to a process on its way out. It drains what
        // it accepted meanwhile and exits by itself, so it is not killed.
        if let Some(reason) = handed
            .successor_failed
            .or_else(|| f.successor.said_failed())
        {
            let pid = f.successor.pid;
            return self.fail(
                None,
                f.asked_by,
                f.joined,
                UpgradeError::Failed { pid, reason },
            );
        }
        if f.successor.exited() {
            let pid = f.successor.pid;
            return self.fail(
                Some(f.successor),
                f.asked_by,
                f.joined,
                UpgradeError::DiedAfterReady { pid },
            );
        }
        let s = &f.successor;
        self.main = false;
        self.next_watchdog = None;
        self.control = None;
        let all_closed = self.life().stop_accepting(Duration::from_secs(1));
        let closed = self.shared.registry().close_registered();
        let closed_after = ready_at.elapsed();
        let t_closed = sys::monotonic_usec();
        if !all_closed {
            tracing::warn!("a listener was still held by the service 1 s after the handover");
        }
        let status = format!(
            "generation {} (pid {}) serving; generation {} (pid {}) draining",
            self.generation + 1,
            s.pid,
            self.generation,
            std::process::id()
        );
        self.notifier.handed_over(s.pid, s.pidfd.as_fd(), &status);
        let t_announced = sys::monotonic_usec();
        if let Err(e) = s.send_complete() {
            tracing::debug!(error = %e, "successor did not take the completion message");
        }
        let report = Upgraded {
            pid: s.pid,
            generation: self.generation + 1,
            ready_after: ready_at - f.triggered,
            closed_after,
        };
        tracing::info!(
            phase = "hand over",
            successor_pid = s.pid,
            successor_generation = report.generation,
            ready_us = report.ready_after.as_micros() as u64,
            closed_us = report.closed_after.as_micros() as u64,
            fds_closed = closed,
            handed_over = handed.handed_over as u64,
            t_trigger,
            t_ready,
            t_handed,
            t_closed,
            t_announced,
            "handover complete"
        );
        stats().add(Counter::UpgradesHandedOver, 1);
        crate::stats::observe("exuvia_upgrade_ready_seconds", report.ready_after);
        crate::stats::observe(
            "exuvia_upgrade_handover_seconds",
            report.ready_after + report.closed_after,
        );
        generations::cut_beyond_cap(&self.draining, self.cfg.max_draining);
        self.life()
            .set_phase(Phase::Draining(DrainReason::Upgraded));
        tracing::info!(phase = "drain", "draining");
        let InFlight {
            successor,
            asked_by,
            joined,
            ..
        } = f;
        self.handed_to = Some(successor.into_channel());
        self.cfg.hooks.handed_over(&report);
        self.cfg.hooks.drain(DrainReason::Upgraded);
        self.answer(asked_by, joined, Ok(report));
    }
}
