//! The control loop: one thread that owns the whole upgrade and its state.
//!
//! Phases, in the order the loop walks them and names them in logs:
//! **spawn** → **await ready** → **hand over** → **drain** → **exit**.
//! Every input — signals, API calls, control-socket requests, the successor's channel and
//! pidfd, the predecessor's channel, deadlines — arrives here through one `poll(2)`, so there
//! is no polling quantum and no lock-step between threads to get wrong.
//!
//! One loop, one state, in three files by role: this one waits and dispatches, `upgrade.rs`
//! is the old generation's side (starting a successor and handing over to it),
//! `take_over.rs` the new generation's side (becoming ready, taking over from the
//! predecessor, adopting its live connections).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod take_over;
mod upgrade;

use crate::channel::{Channel, Message};
use crate::config::Config;
use crate::error::UpgradeError;
use crate::fds::Registry;
use crate::join::JoinWindow;
use crate::lifecycle::{DrainReason, Lifecycle, Phase};
use crate::manifest::Ancestor;
use crate::notify::Notifier;
use crate::predecessor::Predecessor;
use crate::request::{Request, Verdict, Waiter};
use crate::successor::Successor;
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

/// What a successor stopped before it took over tells its predecessor (`failed …`).
const STOPPED_WHILE_TAKING_OVER: &str = "the new process was told to stop before it took over";

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
    /// This successor was stopped before it took over and told its predecessor so.
    told_predecessor: bool,
    /// A stop waits (until then) for the predecessor to commit or abort connections this
    /// process accepted: committed ones are ours and must be served through the drain.
    stop_at: Option<Instant>,
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
            told_predecessor: false,
            stop_at: None,
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

    pub(super) fn draining_now(&self) -> bool {
        matches!(self.life().phase(), Phase::Draining(_))
    }

    /// Draining, or about to once the predecessor settles an offer (see `stop_at`).
    pub(super) fn stopping(&self) -> bool {
        self.draining_now() || self.stop_at.is_some()
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
            self.stop_at,
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

    fn accept_control(&mut self) {
        let Some(l) = &self.control else { return };
        while let Ok((stream, _)) = l.accept() {
            let open = crate::lifecycle::ControlGuard::new(self.life());
            crate::control::serve(stream, self.request_tx.clone(), self.wake.clone(), open);
        }
    }

    /// The stop signal: drain without a successor.
    fn stop(&mut self) {
        if self.stopping() {
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
        if let Some(p) = self.predecessor.as_ref().filter(|_| !self.took_over) {
            // Told to stop while taking over: the upgrade fails now rather than after this
            // drain, so the predecessor stays main and keeps the connections it offers (it
            // reads this instead of the next verdict; offers from here on go unanswered).
            // The channel stays open: a commit already on its way makes those connections
            // ours, and they drain here with the rest.
            p.send_failed(STOPPED_WHILE_TAKING_OVER);
            self.told_predecessor = true;
            if self.shared.adopters.holding() {
                // A commit may already be on its way (the predecessor reads our `failed`
                // only after it): those connections would be ours, and an app that drained
                // before they arrived would drop them. Keep accepting until it settles.
                tracing::info!(
                    phase = "hand over",
                    "stop requested; draining once the previous generation settles its offer"
                );
                self.stop_at = Some(Instant::now() + self.cfg.handoff_timeout);
                return;
            }
        }
        self.begin_drain();
    }

    /// The drain a stop starts: no longer main, stop accepting, let the service drain.
    pub(super) fn begin_drain(&mut self) {
        self.stop_at = None;
        // Adoptions end first: what was committed is still delivered, then the streams end,
        // so a service that takes its adoptions before its accepts drains them too.
        self.shared.adopters.close();
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
        if let Some(p) = self
            .predecessor
            .as_ref()
            .filter(|_| !self.took_over && !self.told_predecessor)
        {
            p.send_failed("the new process shut down before the handover completed");
        }
        self.shared.adopters.close();
    }
}

struct Woke {
    signals: bool,
    wake: bool,
    predecessor: bool,
    control: bool,
    successor: bool,
}
