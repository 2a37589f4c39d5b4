//! The control loop: one thread that owns the whole upgrade and its state.
//!
//! Phases, in the order the loop walks them and names them in logs:
//! **spawn** → **await ready** → **hand over** → **drain** → **exit**.
//! Every input — signals, API calls, control-socket requests, the successor's channel and
//! pidfd, the predecessor's channel, deadlines — arrives here through one `poll(2)`, so there
//! is no polling quantum and no lock-step between threads to get wrong.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::{Channel, Message};
use crate::config::Config;
use crate::error::{Error, UpgradeError};
use crate::fds::Registry;
use crate::generations;
use crate::handoff::wire::HandOff;
use crate::join::{JoinWindow, Joined};
use crate::lifecycle::{DrainReason, Lifecycle, Phase};
use crate::manifest::Ancestor;
use crate::notify::Notifier;
use crate::pidfile;
use crate::predecessor::{FromPredecessor, Predecessor};
use crate::request::{Request, UpgradeResult, Upgraded, Verdict, Waiter};
use crate::stats::{Counter, stats};
use crate::successor::{self, Answer, Successor};
use crate::sync::lock;
use crate::sys;

/// State the loop shares with the `Exuvia` handle.
pub(crate) struct Shared {
    pub life: Arc<Lifecycle>,
    pub registry: Mutex<Registry>,
    pub next_state: Mutex<Option<Arc<Vec<u8>>>>,
    /// Connections this generation may hand to its successor.
    pub board: Arc<crate::handoff::Board>,
    /// Connections this generation adopts from its predecessor.
    pub adopters: Arc<crate::handoff::Adopters>,
}

impl Shared {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }
}

/// Everything the loop starts with; `Builder::start` fills it in.
pub(crate) struct Inputs {
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    pub notifier: Box<dyn Notifier>,
    /// Read end of the signal self-pipe.
    pub signals: OwnedFd,
    pub requests: mpsc::Receiver<Request>,
    /// Handed to control-connection threads so they can ask the loop.
    pub request_tx: mpsc::Sender<Request>,
    /// Bumped by whoever sends a request.
    pub wake: Arc<OwnedFd>,
    pub generation: u64,
    pub draining: Vec<Ancestor>,
    pub predecessor: Option<Predecessor>,
    pub control: Option<UnixListener>,
}

struct InFlight {
    successor: Successor,
    /// What the successor said it can do, with its `ready`.
    caps: Vec<String>,
    triggered: Instant,
    deadline: Instant,
    /// Who started it.
    asked_by: Waiter,
    /// Control requests that joined it (see [`crate::join`]).
    joined: Vec<mpsc::Sender<Verdict>>,
}

pub(crate) struct Driver {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    notifier: Box<dyn Notifier>,
    signals: OwnedFd,
    requests: mpsc::Receiver<Request>,
    request_tx: mpsc::Sender<Request>,
    wake: Arc<OwnedFd>,
    generation: u64,
    draining: Vec<Ancestor>,
    predecessor: Option<Predecessor>,
    control: Option<UnixListener>,
    /// Ready, and no predecessor still holds the listeners: this process may upgrade.
    main: bool,
    /// The predecessor has let go (or is gone); stays true after this process hands over in turn.
    took_over: bool,
    ready: bool,
    inflight: Option<InFlight>,
    /// A trigger that arrived between our `ready` and the predecessor's `complete`.
    deferred: Option<Waiter>,
    /// The channel to the successor this process handed over to, kept for its drain results.
    handed_to: Option<Channel>,
    join: JoinWindow,
    next_watchdog: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(i: Inputs) -> Driver {
        Driver {
            cfg: i.cfg,
            shared: i.shared,
            notifier: i.notifier,
            signals: i.signals,
            requests: i.requests,
            request_tx: i.request_tx,
            wake: i.wake,
            generation: i.generation,
            draining: i.draining,
            predecessor: i.predecessor,
            control: i.control,
            main: false,
            took_over: false,
            ready: false,
            inflight: None,
            deferred: None,
            handed_to: None,
            join: JoinWindow::default(),
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
            if woke.predecessor {
                self.on_predecessor_message();
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
        let predecessor = self.predecessor.as_ref().filter(|_| self.ready).map(|p| {
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
            predecessor: at(predecessor),
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
            Request::Join(reply) => self.join(reply),
            Request::Ready(reply) => {
                let _ = reply.send(self.on_ready());
            }
            Request::Stop => self.stop(),
            Request::Drained(report, ack) => {
                if let Some(ch) = &self.handed_to {
                    let drained = report.open_at_start.saturating_sub(report.cut) as u64;
                    let pairs = vec![
                        ("connections_drained".to_owned(), drained),
                        ("connections_cut".to_owned(), report.cut as u64),
                    ];
                    if let Err(e) = ch.send_msg(&Message::Stats(pairs)) {
                        tracing::debug!(error = %e, "the successor did not take the drain results");
                    }
                }
                let _ = ack.send(());
            }
            Request::Shutdown => {}
        }
    }

    /// `ready()` from the service: its own initialisation is done.
    fn on_ready(&mut self) -> Result<(), Error> {
        if self.ready {
            return Err(Error::AlreadyReady);
        }
        let closed = self.shared.registry().close_unclaimed();
        if !closed.is_empty() {
            tracing::info!(names = ?closed, "closed inherited fds the service did not claim");
        }
        self.ready = true;
        self.life().set_phase(Phase::Serving);
        match &self.predecessor {
            Some(p) => {
                if let Err(e) = p.send_ready(self.shared.adopters.any()) {
                    // The predecessor died before it could hand over (the channel is gone):
                    // nobody else holds the listeners now, so this process serves alone.
                    tracing::warn!(error = %e, "the previous generation is gone; taking over alone");
                    self.predecessor = None;
                    self.take_main();
                    return Ok(());
                }
                tracing::info!("ready; waiting for the previous generation to hand over");
                if let Some(t) = p.signal_trigger_us {
                    self.join = JoinWindow::inherited(
                        Instant::now(),
                        t,
                        sys::monotonic_usec(),
                        Upgraded {
                            pid: std::process::id() as i32,
                            generation: self.generation,
                            ready_after: Duration::ZERO,
                            closed_after: Duration::ZERO,
                        },
                    );
                }
            }
            None => {
                // Nothing to adopt without a predecessor: end the adoption streams.
                self.shared.adopters.close();
                self.take_main();
                self.notifier
                    .ready(&format!("serving (generation {})", self.generation));
                tracing::info!("ready");
            }
        }
        Ok(())
    }

    /// This process now holds the listeners alone and may upgrade.
    fn take_main(&mut self) {
        self.main = true;
        self.took_over = true;
        self.shared.adopters.close();
        if let Some(path) = &self.cfg.pid_file {
            if let Err(e) = pidfile::write(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not write the pid file");
            }
        }
        if self.cfg.fd_store {
            let reg = self.shared.registry();
            let fds: Vec<(&str, BorrowedFd<'_>)> =
                reg.registered().map(|(n, _, fd)| (n, fd)).collect();
            self.notifier.store_fds(&fds);
        }
        self.next_watchdog = self
            .notifier
            .watchdog_interval()
            .map(|i| Instant::now() + i);
    }

    fn on_predecessor_message(&mut self) {
        let Some(p) = &self.predecessor else { return };
        let event = p.poll();
        if self.took_over {
            // After the handover: the old generation's drain results, then its exit.
            match event {
                FromPredecessor::Stats(pairs) => stats().add_travelled(&pairs),
                FromPredecessor::Gone => self.predecessor = None,
                FromPredecessor::Unexpected(m) => {
                    tracing::debug!(message = %m, "unexpected message from the draining previous generation");
                    self.predecessor = None;
                }
                FromPredecessor::Nothing
                | FromPredecessor::Complete
                | FromPredecessor::HandOff(..) => {}
            }
            return;
        }
        match event {
            FromPredecessor::Nothing => return,
            FromPredecessor::HandOff(h, fds) => return self.on_offer(h, fds),
            FromPredecessor::Complete => {
                tracing::info!("handover complete: this generation is the only one accepting");
                // This process exists because that handover succeeded; the counters it
                // inherited were taken before it.
                stats().add(Counter::UpgradesHandedOver, 1);
            }
            FromPredecessor::Gone => {
                tracing::warn!(
                    "the previous generation exited before it handed over; this generation serves alone"
                );
                self.predecessor = None;
            }
            FromPredecessor::Stats(pairs) => {
                tracing::warn!(
                    ?pairs,
                    "drain results from the previous generation before its handover; treating the handover as complete"
                );
            }
            FromPredecessor::Unexpected(message) => {
                tracing::warn!(%message, "unexpected message from the previous generation; treating the handover as complete");
            }
        }
        self.take_main();
        if let Some(w) = self.deferred.take() {
            self.trigger(w);
        }
    }

    /// The predecessor's hand-off of live connections (see [`crate::handoff`]).
    fn on_offer(&mut self, h: HandOff, fds: Vec<OwnedFd>) {
        let Some(p) = &self.predecessor else { return };
        match h {
            HandOff::Offer { batch, conns } => {
                let n = conns.len();
                let answers = self.shared.adopters.offer(batch, conns, fds);
                let accepted = answers.iter().filter(|a| a.is_ok()).count();
                tracing::info!(
                    phase = "hand over",
                    batch,
                    offered = n,
                    accepted,
                    "live connections offered"
                );
                if let Err(e) = p.send_handoff(&HandOff::Verdict { batch, answers }) {
                    tracing::warn!(error = %e, "could not answer the offer; the predecessor keeps them");
                    self.shared.adopters.abort(batch);
                }
            }
            HandOff::Commit(batch) => {
                let n = self.shared.adopters.commit(batch);
                stats().add(Counter::ConnectionsHandedOver, n as u64);
                tracing::info!(
                    phase = "hand over",
                    batch,
                    adopted = n,
                    "live connections adopted"
                );
            }
            HandOff::Abort(batch) => {
                tracing::info!(
                    phase = "hand over",
                    batch,
                    "the predecessor kept the offered connections"
                );
                self.shared.adopters.abort(batch);
            }
            HandOff::Verdict { .. } => {
                tracing::warn!("a verdict from the predecessor makes no sense; ignored");
            }
        }
    }

    fn accept_control(&mut self) {
        let Some(l) = &self.control else { return };
        while let Ok((stream, _)) = l.accept() {
            let open = crate::lifecycle::ControlGuard::new(self.life());
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
    fn on_successor_event(&mut self) {
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

    fn on_timer(&mut self) {
        let now = Instant::now();
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
    fn fail(
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
    fn answer(&mut self, asked_by: Waiter, joined: Vec<mpsc::Sender<Verdict>>, r: UpgradeResult) {
        let verdict = Verdict::of(&r);
        self.join.finished(&verdict);
        for j in joined {
            let _ = j.send(verdict.clone());
        }
        asked_by.reply(r);
    }

    /// A control-socket request: joins the upgrade the reload signal started moments ago
    /// (see [`crate::join`]), else upgrades.
    fn join(&mut self, reply: mpsc::Sender<Verdict>) {
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
    fn hand_over(&mut self, f: InFlight) {
        let ready_at = Instant::now();
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
        if handed.offered > 0 {
            tracing::info!(
                phase = "hand over",
                offered = handed.offered,
                handed_over = handed.handed_over,
                kept = handed.kept,
                "live connections handed over"
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

    /// The stop signal: drain without a successor.
    fn stop(&mut self) {
        if self.draining_now() {
            tracing::info!("already draining; stop request ignored");
            return;
        }
        if let Some(f) = self.inflight.take() {
            self.fail(
                Some(f.successor),
                f.asked_by,
                f.joined,
                UpgradeError::ShuttingDown,
            );
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
        self.shared.registry().close_registered();
        self.life().set_phase(Phase::Draining(DrainReason::Stopped));
        tracing::info!(phase = "drain", "stop requested; draining");
        self.cfg.hooks.drain(DrainReason::Stopped);
    }

    fn shutdown(mut self) {
        if let Some(f) = self.inflight.take() {
            self.fail(
                Some(f.successor),
                f.asked_by,
                f.joined,
                UpgradeError::ShutDown,
            );
        }
        if let Some(p) = self.predecessor.as_ref().filter(|_| !self.took_over) {
            p.send_failed("the new process shut down before the handover completed");
        }
    }
}

struct Woke {
    signals: bool,
    wake: bool,
    predecessor: bool,
    control: bool,
    successor: bool,
}
