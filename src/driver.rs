//! The control loop: one thread that owns the whole upgrade and its state.
//!
//! Phases, in the order the loop walks them and names them in logs:
//! **spawn** → **await ready** → **hand over** → **drain** → **exit**.
//! Every input — signals, API calls, control-socket requests, the successor's channel and
//! pidfd, the predecessor's channel, deadlines — arrives here through one `poll(2)`, so there
//! is no polling quantum and no lock-step between threads to get wrong.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::child::{self, Answer, Successor};
use crate::config::Config;
use crate::control::{Verdict, Waiter};
use crate::error::{Error, UpgradeError};
use crate::fds::Registry;
use crate::lifecycle::{DrainReason, Lifecycle, Phase};
use crate::manifest::Ancestor;
use crate::notify::Notifier;
use crate::parent::Predecessor;
use crate::sys;

/// A successful upgrade, as the API and the control socket report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgraded {
    /// The successor's pid.
    pub pid: i32,
    /// The successor's generation.
    pub generation: u64,
    /// From the trigger to the successor's `ready`.
    pub ready_after: Duration,
    /// From the successor's `ready` to this process having closed every listener.
    pub closed_after: Duration,
}

pub(crate) type UpgradeResult = Result<Upgraded, UpgradeError>;

/// Messages from the service's threads to the loop.
pub(crate) enum Request {
    Upgrade(Waiter),
    /// From the control socket: join a signal-started upgrade (see [`crate::control`]).
    Join(Waiter),
    Ready(mpsc::Sender<Result<(), Error>>),
    Stop,
    Shutdown,
}

/// State the loop shares with the `Exuvia` handle.
pub(crate) struct Shared {
    pub life: Arc<Lifecycle>,
    pub registry: Mutex<Registry>,
    pub next_state: Mutex<Option<Arc<Vec<u8>>>>,
}

struct InFlight {
    successor: Successor,
    triggered: Instant,
    deadline: Instant,
    waiters: Vec<Waiter>,
}

/// The last upgrade the reload signal started, until a control request claims it.
struct SignalUpgrade {
    triggered: Instant,
    triggered_us: u64,
    verdict: Option<Verdict>,
}

/// How long after a signal-started upgrade a control request still joins it.
const JOIN_WINDOW: Duration = Duration::from_secs(2);

pub(crate) struct Driver {
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    pub notifier: Box<dyn Notifier>,
    pub signals: OwnedFd,
    pub requests: mpsc::Receiver<Request>,
    pub wake: Arc<OwnedFd>,
    pub generation: u64,
    pub draining: Vec<Ancestor>,
    pub parent: Option<Predecessor>,
    pub control: Option<UnixListener>,
    pub request_tx: mpsc::Sender<Request>,
    /// Ready, and no predecessor still holds the listeners: this process may upgrade.
    main: bool,
    ready: bool,
    inflight: Option<InFlight>,
    /// A trigger that arrived between our `ready` and the predecessor's `complete`.
    deferred: Option<Waiter>,
    signal_upgrade: Option<SignalUpgrade>,
    next_watchdog: Option<Instant>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        notifier: Box<dyn Notifier>,
        signals: OwnedFd,
        requests: mpsc::Receiver<Request>,
        request_tx: mpsc::Sender<Request>,
        wake: Arc<OwnedFd>,
        generation: u64,
        draining: Vec<Ancestor>,
        parent: Option<Predecessor>,
        control: Option<UnixListener>,
    ) -> Driver {
        Driver {
            cfg,
            shared,
            notifier,
            signals,
            requests,
            request_tx,
            wake,
            generation,
            draining,
            parent,
            control,
            main: false,
            ready: false,
            inflight: None,
            deferred: None,
            signal_upgrade: None,
            next_watchdog: None,
        }
    }

    fn life(&self) -> &Lifecycle {
        &self.shared.life
    }

    fn draining_now(&self) -> bool {
        matches!(self.life().phase(), Phase::Draining(_))
    }

    pub(crate) fn run(mut self) {
        let span = tracing::info_span!(
            "exuvia",
            generation = self.generation,
            pid = std::process::id()
        );
        let _enter = span.enter();
        loop {
            let (woke, timed_out) = match self.wait() {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "control loop: poll failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if woke.signals {
                for sig in sys::signals::drain(self.signals.as_fd()) {
                    self.on_signal(sig);
                }
            }
            if woke.wake {
                sys::eventfd_clear(self.wake.as_fd());
            }
            loop {
                match self.requests.try_recv() {
                    Ok(Request::Shutdown) => return self.shutdown(),
                    Ok(r) => self.on_request(r),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.shutdown(),
                }
            }
            if woke.parent {
                self.on_parent_message();
            }
            if woke.control {
                self.accept_control();
            }
            if woke.successor {
                self.on_successor_event();
            }
            if timed_out {
                self.on_timer();
            }
        }
    }

    /// Blocks until something happens. Returns which sources are readable and whether a
    /// deadline passed.
    fn wait(&self) -> std::io::Result<(Woke, bool)> {
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.signals.as_fd(), self.wake.as_fd()];
        let parent = self.parent.as_ref().filter(|_| self.ready).map(|p| {
            fds.push(p.channel.as_fd());
            fds.len() - 1
        });
        let control = self
            .control
            .as_ref()
            .filter(|_| self.main && !self.draining_now())
            .map(|c| {
                fds.push(c.as_fd());
                fds.len() - 1
            });
        let successor = self.inflight.as_ref().map(|f| {
            fds.push(f.successor.channel.as_fd());
            fds.push(f.successor.pidfd.as_fd());
            fds.len() - 2
        });
        let deadline = [
            self.inflight.as_ref().map(|f| f.deadline),
            self.next_watchdog,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let r = sys::poll_many(&fds, timeout)?;
        let at = |i: Option<usize>| i.is_some_and(|i| r[i]);
        let woke = Woke {
            signals: r[0],
            wake: r[1],
            parent: at(parent),
            control: at(control),
            successor: at(successor) || successor.is_some_and(|i| r[i + 1]),
        };
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        Ok((woke, timed_out))
    }

    fn on_signal(&mut self, sig: i32) {
        if Some(sig) == self.cfg.upgrade_signal {
            tracing::info!(signal = sig, "upgrade requested by signal");
            self.trigger(Waiter::Signal);
        } else if self.cfg.stop_signals.contains(&sig) {
            self.stop();
        }
    }

    fn on_request(&mut self, r: Request) {
        match r {
            Request::Upgrade(w) => self.trigger(w),
            Request::Join(w) => self.join(w),
            Request::Ready(reply) => {
                let _ = reply.send(self.on_ready());
            }
            Request::Stop => self.stop(),
            Request::Shutdown => {}
        }
    }

    /// `ready()` from the service: its own initialisation is done.
    fn on_ready(&mut self) -> Result<(), Error> {
        if self.ready {
            return Err(Error::AlreadyReady);
        }
        let closed = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close_unclaimed();
        if !closed.is_empty() {
            tracing::info!(names = ?closed, "closed inherited fds the service did not claim");
        }
        self.ready = true;
        self.life().set_phase(Phase::Serving);
        match &self.parent {
            Some(p) => {
                p.send_ready()
                    .map_err(Error::io("telling the previous generation we are ready"))?;
                tracing::info!("ready; waiting for the previous generation to hand over");
                self.signal_upgrade = self.inherited_signal_upgrade();
            }
            None => {
                self.take_main();
                self.notifier
                    .ready(&format!("serving (generation {})", self.generation));
                tracing::info!("ready");
            }
        }
        Ok(())
    }

    /// If the reload signal started the upgrade that created this process moments ago, a
    /// control request for the same reload may arrive here (the old process has stopped
    /// accepting on the control socket by then): it gets this upgrade's verdict.
    fn inherited_signal_upgrade(&self) -> Option<SignalUpgrade> {
        let t = self.parent.as_ref()?.signal_trigger_us?;
        let age = Duration::from_micros(sys::monotonic_usec().saturating_sub(t));
        let triggered = Instant::now().checked_sub(age)?;
        (age <= JOIN_WINDOW).then(|| SignalUpgrade {
            triggered,
            triggered_us: t,
            verdict: Some(Verdict::Upgraded(Upgraded {
                pid: std::process::id() as i32,
                generation: self.generation,
                ready_after: age,
                closed_after: Duration::ZERO,
            })),
        })
    }

    /// This process now holds the listeners alone and may upgrade.
    fn take_main(&mut self) {
        self.main = true;
        if let Some(path) = &self.cfg.pid_file {
            if let Err(e) = write_pid_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not write the pid file");
            }
        }
        if self.cfg.fd_store {
            let reg = self
                .shared
                .registry
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let fds: Vec<(&str, BorrowedFd<'_>)> =
                reg.registered().map(|(n, _, fd)| (n, fd)).collect();
            self.notifier.store_fds(&fds);
        }
        self.next_watchdog = self
            .notifier
            .watchdog_interval()
            .map(|i| Instant::now() + i);
    }

    fn on_parent_message(&mut self) {
        let Some(p) = &self.parent else { return };
        match p.poll_complete() {
            Ok(false) => return,
            Ok(true) => {
                tracing::info!("handover complete: this generation is the only one accepting")
            }
            Err(m) => {
                tracing::warn!(message = %m, "unexpected message from the previous generation; treating the handover as complete")
            }
        }
        self.parent = None;
        self.take_main();
        if let Some(w) = self.deferred.take() {
            self.trigger(w);
        }
    }

    fn accept_control(&mut self) {
        let Some(l) = &self.control else { return };
        while let Ok((stream, _)) = l.accept() {
            let open = crate::lifecycle::ControlGuard::new(&self.shared.life);
            crate::control::serve(stream, self.request_tx.clone(), self.wake.clone(), open);
        }
    }

    /// **spawn**: start an upgrade unless one is running or this process may not upgrade.
    fn trigger(&mut self, waiter: Waiter) {
        if self.inflight.is_some() || self.deferred.is_some() {
            tracing::info!("upgrade already in progress; trigger coalesced");
            waiter.reply(Err(UpgradeError::InProgress));
            return;
        }
        let refusal = if self.draining_now() {
            Some(UpgradeError::ShuttingDown)
        } else if !self.main && self.ready && self.parent.is_some() {
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
        if matches!(waiter, Waiter::Signal) {
            self.signal_upgrade = Some(SignalUpgrade {
                triggered,
                triggered_us: sys::monotonic_usec(),
                verdict: None,
            });
        }
        self.notifier.reloading();
        self.life().set_phase(Phase::Upgrading);
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
                    triggered,
                    deadline: triggered + self.cfg.ready_timeout,
                    waiters: vec![waiter],
                });
            }
            Err(e) => self.fail(None, vec![waiter], e),
        }
    }

    fn spawn(&mut self) -> Result<Successor, UpgradeError> {
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
        let mut draining: Vec<Ancestor> = self.alive_ancestors();
        let me = std::process::id() as i32;
        draining.push(Ancestor {
            pid: me,
            start_time: sys::process_start_time(me)?,
        });
        let state = self
            .shared
            .next_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let reg = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        tracing::info!(phase = "spawn", exe = %exe.display(), fds = reg.registered().count(), "starting successor");
        child::spawn(child::Plan {
            exe,
            args,
            fds: reg.registered().collect(),
            generation: self.generation + 1,
            draining,
            state,
            signal_trigger_us: self
                .signal_upgrade
                .as_ref()
                .filter(|su| su.verdict.is_none())
                .map(|su| su.triggered_us),
        })
    }

    fn alive_ancestors(&self) -> Vec<Ancestor> {
        self.draining
            .iter()
            .copied()
            .filter(|a| sys::pidfd_for(a.pid, a.start_time).is_some())
            .collect()
    }

    /// **await ready**: the successor's channel or pidfd became readable.
    fn on_successor_event(&mut self) {
        let Some(f) = &self.inflight else { return };
        let pid = f.successor.pid;
        let exited = f.successor.exited();
        let outcome = match f.successor.answer() {
            Answer::Ready if !exited => Ok(()),
            Answer::Failed(reason) => Err(UpgradeError::Failed { pid, reason }),
            Answer::Malformed(message) if !exited => Err(UpgradeError::Protocol { pid, message }),
            Answer::Ready | Answer::Gone | Answer::Malformed(_) => {
                Err(UpgradeError::Exited { pid })
            }
        };
        let Some(f) = self.inflight.take() else {
            return;
        };
        match outcome {
            Ok(()) => self.hand_over(f),
            Err(e) => self.fail(Some(f.successor), f.waiters, e),
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some(f) = self.inflight.take_if(|f| now >= f.deadline) {
            let e = UpgradeError::Timeout {
                pid: f.successor.pid,
                timeout: self.cfg.ready_timeout,
            };
            self.fail(Some(f.successor), f.waiters, e);
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
    fn fail(&mut self, successor: Option<Successor>, waiters: Vec<Waiter>, e: UpgradeError) {
        if let Some(s) = &successor {
            s.kill();
        }
        tracing::warn!(error = %e, "upgrade failed; this generation keeps serving");
        self.notifier.upgrade_failed(&e.short());
        if !self.draining_now() {
            self.life().set_phase(Phase::Serving);
        }
        self.answer(waiters, Err(e));
    }

    /// Gives every waiter the outcome (the typed error goes to the API caller) and keeps it
    /// for a control request that joins a signal-started upgrade late.
    fn answer(&mut self, waiters: Vec<Waiter>, r: UpgradeResult) {
        let verdict = Verdict::of(&r);
        if let Some(su) = self
            .signal_upgrade
            .as_mut()
            .filter(|su| su.verdict.is_none())
        {
            su.verdict = Some(verdict.clone());
        }
        let mut typed = Some(r);
        for w in waiters {
            match (w, typed.take()) {
                (w @ Waiter::Api(_), Some(r)) => w.reply(r),
                (w, rest) => {
                    typed = rest;
                    w.reply_verdict(&verdict);
                }
            }
        }
    }

    /// A control-socket request: joins the upgrade the reload signal started moments ago
    /// (systemd 253–261 signals and runs `ExecReload=` for the same reload), else upgrades.
    fn join(&mut self, waiter: Waiter) {
        let recent = self
            .signal_upgrade
            .take()
            .filter(|su| su.triggered.elapsed() <= JOIN_WINDOW);
        match recent {
            Some(SignalUpgrade {
                verdict: Some(v), ..
            }) => {
                tracing::info!(
                    "control request joined the upgrade the reload signal started (finished)"
                );
                waiter.reply_verdict(&v);
            }
            Some(SignalUpgrade { verdict: None, .. }) if self.inflight.is_some() => {
                tracing::info!(
                    "control request joined the upgrade the reload signal started (in progress)"
                );
                if let Some(f) = &mut self.inflight {
                    f.waiters.push(waiter);
                }
            }
            _ => self.trigger(waiter),
        }
    }

    /// **hand over**: make the successor main, stop accepting, let go of every listener.
    fn hand_over(&mut self, f: InFlight) {
        let ready_at = Instant::now();
        let s = &f.successor;
        let status = format!(
            "generation {} (pid {}) serving; generation {} (pid {}) draining",
            self.generation + 1,
            s.pid,
            self.generation,
            std::process::id()
        );
        self.notifier.handed_over(s.pid, s.pidfd.as_fd(), &status);
        self.main = false;
        self.next_watchdog = None;
        self.control = None;
        let all_closed = self.life().stop_accepting(Duration::from_secs(1));
        let closed = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close_registered();
        let closed_after = ready_at.elapsed();
        if !all_closed {
            tracing::warn!("a listener was still held by the service 1 s after the handover");
        }
        if let Err(e) = s.channel.send(crate::channel::COMPLETE) {
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
            "handover complete"
        );
        self.cut_excess_generations();
        self.life()
            .set_phase(Phase::Draining(DrainReason::Upgraded));
        tracing::info!(phase = "drain", "draining");
        self.answer(f.waiters, Ok(report));
    }

    /// Keeps at most `max_draining` old generations: cut the oldest beyond it.
    fn cut_excess_generations(&mut self) {
        let mut alive: Vec<(Ancestor, OwnedFd)> = self
            .draining
            .iter()
            .filter_map(|a| sys::pidfd_for(a.pid, a.start_time).map(|fd| (*a, fd)))
            .collect();
        // This process drains too, so it counts against the cap.
        while alive.len() + 1 > self.cfg.max_draining {
            let (a, fd) = alive.remove(0);
            tracing::warn!(
                pid = a.pid,
                cap = self.cfg.max_draining,
                "too many generations draining; cutting the oldest"
            );
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
    }

    /// The stop signal: drain without a successor.
    fn stop(&mut self) {
        if self.draining_now() {
            tracing::info!("already draining; stop request ignored");
            return;
        }
        if let Some(f) = self.inflight.take() {
            self.fail(Some(f.successor), f.waiters, UpgradeError::ShuttingDown);
        }
        if let Some(w) = self.deferred.take() {
            w.reply(Err(UpgradeError::ShuttingDown));
        }
        if self.main {
            self.notifier.stopping();
        }
        self.main = false;
        self.control = None;
        self.life().stop_accepting(Duration::from_secs(1));
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close_registered();
        self.life().set_phase(Phase::Draining(DrainReason::Stopped));
        tracing::info!(phase = "drain", "stop requested; draining");
    }

    fn shutdown(mut self) {
        if let Some(f) = self.inflight.take() {
            self.fail(Some(f.successor), f.waiters, UpgradeError::ShutDown);
        }
        if let Some(p) = &self.parent {
            p.send_failed("the new process shut down before the handover completed");
        }
    }
}

struct Woke {
    signals: bool,
    wake: bool,
    parent: bool,
    control: bool,
    successor: bool,
}

/// Writes the pid file atomically (temp file + rename in the same directory).
fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("pid file path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path)
}
