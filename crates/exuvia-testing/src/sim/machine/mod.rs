//! The state machine: systemd's `service.c` notification semantics for `Type=notify-reload`,
//! plus the rule checks. Pure bookkeeping over [`Unit`]; the event loop and the public API in
//! `sim/mod.rs` decide *when* these handlers run; what each notify datagram does is in
//! `datagram.rs`.

use std::os::fd::OwnedFd;
use std::time::Duration;

use super::proto::{Message, Rule, Violation, monotonic_now};
use super::types::{
    ExitEvent, NotifyAccess, ReloadInitiator, ReloadRecord, ReloadResult, SimConfig, State,
};
use super::unit::{Disposition, Exit, Unit, signal_disposition};

mod datagram;

/// `MONOTONIC_USEC=` this far ahead of our clock cannot be CLOCK_MONOTONIC.
const FUTURE_SLACK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    Start,
    Reload,
    /// SIGKILL whatever is left.
    Kill,
}

/// Why the first start did not reach `Running`.
#[derive(Debug, Clone)]
pub(crate) enum StartFailure {
    Protocol(Violation),
    MainExited(u32, Exit),
    Timeout,
}

pub(crate) struct Inner {
    pub(crate) cfg: SimConfig,
    pub(crate) notify_access: NotifyAccess,
    pub(crate) state: State,
    pub(crate) main_pid: Option<u32>,
    pub(crate) unit: Unit,
    /// Whether the simulator spawned the unit (then Drop may kill it).
    pub(crate) spawned: bool,
    pub(crate) messages: Vec<Message>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) exits: Vec<ExitEvent>,
    pub(crate) reloads: Vec<ReloadRecord>,
    pub(crate) status: Option<String>,
    pub(crate) errno: Option<i32>,
    pub(crate) watchdog_pings: u64,
    pub(crate) main_pidfd_id: Option<u64>,
    pub(crate) fd_store: Vec<(String, OwnedFd)>,
    pub(crate) reload_begin: Duration,
    pub(crate) timer: Option<(Duration, Timer)>,
    pub(crate) start_failure: Option<StartFailure>,
    /// Whether the stop signal went out (a `STOPPING=1` stop waits for main to exit first).
    pub(crate) term_sent: bool,
    pub(crate) sigkilled: Vec<u32>,
    pub(crate) shutdown: bool,
}

impl Inner {
    pub(crate) fn new(cfg: SimConfig) -> Inner {
        Inner {
            notify_access: cfg.notify_access,
            cfg,
            state: State::Dead,
            main_pid: None,
            unit: Unit::new(),
            spawned: false,
            messages: Vec::new(),
            violations: Vec::new(),
            exits: Vec::new(),
            reloads: Vec::new(),
            status: None,
            errno: None,
            watchdog_pings: 0,
            main_pidfd_id: None,
            fd_store: Vec::new(),
            reload_begin: Duration::ZERO,
            timer: None,
            start_failure: None,
            term_sent: false,
            sigkilled: Vec::new(),
            shutdown: false,
        }
    }

    fn violate(&mut self, rule: Rule, rx: Option<(&str, u32)>, detail: impl Into<String>) {
        self.violations.push(Violation {
            rule,
            datagram: rx.map(|(d, _)| d.to_owned()).unwrap_or_default(),
            sender_pid: rx.map(|(_, p)| p),
            at: monotonic_now(),
            detail: detail.into(),
        });
    }

    /// The unit begins running `pid` as main (after spawn or `set_main_pid`).
    pub(crate) fn begin_start(&mut self, pid: u32) {
        self.main_pid = Some(pid);
        self.state = State::Start;
        self.start_failure = None;
        self.term_sent = false;
        self.sigkilled.clear();
        self.timer = Some((monotonic_now() + self.cfg.start_timeout, Timer::Start));
    }

    fn authorized(&mut self, pid: u32) -> bool {
        match self.notify_access {
            NotifyAccess::None => false,
            NotifyAccess::Main | NotifyAccess::Exec => self.main_pid == Some(pid),
            NotifyAccess::All => self.main_pid == Some(pid) || self.unit.is_member(pid),
        }
    }

    /// Reload-signal check of systemd ≥ 262; returns the violation if the main process would
    /// be killed (or ignore) the signal.
    pub(crate) fn check_reload_handler(&mut self, rx: Option<(&str, u32)>) -> Option<Violation> {
        let pid = self.main_pid?;
        let sig = self.cfg.reload_signal;
        let how = match signal_disposition(pid, sig)? {
            Disposition::Caught | Disposition::Blocked => return None,
            Disposition::Ignored => "ignores it (the reload would hang)",
            Disposition::Default => "has the default action (the reload signal would kill it)",
        };
        self.violate(
            Rule::ReloadSignalNotCaught,
            rx,
            format!("main process {pid} neither catches nor blocks signal {sig}: it {how}"),
        );
        self.violations.last().cloned()
    }

    pub(crate) fn begin_reload(&mut self, by: ReloadInitiator, begin: Duration) {
        self.reload_begin = begin;
        self.reloads.push(ReloadRecord {
            initiated_by: by,
            begin,
            end: None,
            old_main: self.main_pid,
            new_main: None,
            result: None,
            status: None,
            first_violation: self.violations.len(),
        });
        self.timer = Some((begin + self.cfg.reload_timeout, Timer::Reload));
    }

    fn finish_reload(&mut self, result: ReloadResult) {
        let (main, status) = (self.main_pid, self.status.clone());
        if let Some(r) = self.reloads.last_mut().filter(|r| r.result.is_none()) {
            r.result = Some(result);
            r.end = Some(monotonic_now());
            r.new_main = main;
            r.status = status;
        }
    }

    fn complete_reload(&mut self, ev: Option<(&str, u32)>) {
        self.finish_reload(ReloadResult::Done);
        self.state = State::Running;
        self.timer = None;
        // A successor that becomes main must already handle the signal of the *next* reload.
        self.check_reload_handler(ev);
    }

    /// Sends `signal` to every member and waits (via the Kill timer) at most `timeout`.
    pub(crate) fn enter_stop(&mut self, signal: i32, timeout: Duration) {
        self.finish_reload(ReloadResult::Stopped);
        self.unit.scan();
        self.unit.signal_all(signal);
        self.term_sent = true;
        self.state = State::Stopping;
        self.timer = Some((monotonic_now() + timeout, Timer::Kill));
        self.maybe_dead();
    }

    fn maybe_dead(&mut self) {
        if self.state == State::Stopping && self.unit.members.is_empty() {
            self.state = State::Dead;
            self.timer = None;
            self.main_pid = None;
            // Session ids are pids; once empty they may be reused by strangers.
            self.unit.sessions.clear();
        }
    }

    pub(crate) fn on_exit(&mut self, pid: u32) {
        let Some(exit) = self.unit.exited(pid) else {
            return;
        };
        let was_main = self.main_pid == Some(pid);
        self.exits.push(ExitEvent {
            pid,
            exit,
            was_main,
            state: self.state,
            at: monotonic_now(),
        });
        if was_main {
            match self.state {
                State::Start => {
                    self.start_failure = Some(StartFailure::MainExited(pid, exit));
                    self.enter_stop(libc::SIGTERM, self.cfg.stop_timeout);
                }
                // ExitType=main: the unit ends with its main process, taking the rest along.
                State::Running => self.enter_stop(libc::SIGTERM, self.cfg.stop_timeout),
                State::ReloadSignal | State::ReloadNotify => {
                    self.violate(
                        Rule::MainExitedDuringReload,
                        None,
                        format!(
                            "pid {pid}, {exit}; no MAINPID= handover happened before it exited"
                        ),
                    );
                    self.finish_reload(ReloadResult::MainExited);
                    self.enter_stop(libc::SIGTERM, self.cfg.stop_timeout);
                }
                State::Stopping if !self.term_sent => {
                    self.unit.scan();
                    self.unit.signal_all(libc::SIGTERM);
                    self.term_sent = true;
                }
                State::Stopping | State::Dead => {}
            }
        }
        self.unit.reap_orphans();
        if self.state == State::Stopping {
            // Catch processes forked or re-parented since the last look.
            self.unit.scan();
        }
        self.maybe_dead();
    }

    pub(crate) fn on_timer(&mut self, kind: Timer) {
        self.timer = None;
        match kind {
            Timer::Start if self.state == State::Start => {
                self.violate(
                    Rule::StartTimeout,
                    None,
                    format!("{:?}", self.cfg.start_timeout),
                );
                self.start_failure = Some(StartFailure::Timeout);
                self.enter_stop(libc::SIGTERM, self.cfg.stop_timeout);
            }
            Timer::Reload if self.state.reloading() => {
                let detail = format!(
                    "{:?} after the reload began, in state {:?}",
                    self.cfg.reload_timeout, self.state
                );
                self.violate(Rule::ReloadTimeout, None, detail);
                self.finish_reload(ReloadResult::Timeout);
                self.state = State::Running;
            }
            Timer::Kill if self.state == State::Stopping => {
                self.unit.scan();
                let killed = self.unit.signal_all(libc::SIGKILL);
                self.sigkilled.extend(killed);
            }
            _ => {}
        }
    }
}
