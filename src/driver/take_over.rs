//! The control loop's side of a successor: `ready()`, the predecessor's messages (the live
//! connections it offers, its `complete`, its drain results) and taking over.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Driver;
use crate::error::Error;
use crate::handoff::wire::HandOff;
use crate::join::JoinWindow;
use crate::lifecycle::Phase;
use crate::pidfile;
use crate::predecessor::FromPredecessor;
use crate::request::Upgraded;
use crate::stats::{Counter, stats};
use crate::sys;

impl Driver {
    /// `ready()` from the service: its own initialisation is done.
    pub(super) fn on_ready(&mut self) -> Result<(), Error> {
        if self.ready {
            return Err(Error::AlreadyReady);
        }
        let closed = self.shared.registry().close_unclaimed();
        if !closed.is_empty() {
            tracing::info!(names = ?closed, "closed inherited fds the service did not claim");
        }
        self.ready = true;
        if self.stopping() {
            // Stopped before it was ready: nothing to take over or announce (the stop has
            // told the predecessor already, see `Driver::stop`).
            tracing::info!("ready after a stop; draining, not taking over");
            return Ok(());
        }
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
    pub(super) fn take_main(&mut self) {
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

    pub(super) fn on_predecessor_message(&mut self) {
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
        if self.told_predecessor {
            // Stopped while taking over: the predecessor stays main. Only its hand-off
            // messages still matter, and a `complete` that crossed our `failed`.
            match event {
                FromPredecessor::HandOff(h, fds) => self.on_offer(h, fds),
                FromPredecessor::Complete => {
                    tracing::warn!(
                        "the previous generation handed over after this one was stopped; draining as main"
                    );
                    self.take_main();
                }
                FromPredecessor::Gone | FromPredecessor::Unexpected(_) => self.predecessor = None,
                FromPredecessor::Nothing | FromPredecessor::Stats(_) => {}
            }
            if self.stop_at.is_some()
                && (self.predecessor.is_none() || !self.shared.adopters.holding())
            {
                self.begin_drain();
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
    pub(super) fn on_offer(&mut self, h: HandOff, fds: Vec<OwnedFd>) {
        let Some(p) = &self.predecessor else { return };
        match h {
            HandOff::Offer { batch, conns } if self.told_predecessor => {
                // The predecessor reads our `failed` where it waits for this verdict; our
                // copies of the fds close here, its own stay.
                tracing::info!(
                    phase = "hand over",
                    batch,
                    offered = conns.len(),
                    "live connections offered after a stop; left with the previous generation"
                );
                drop(fds);
            }
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
}
