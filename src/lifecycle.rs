//! The phase a generation is in, shared between the control loop and the service.
//!
//! The control loop is the only writer. The service observes it in three ways that suit
//! blocking and async code alike: a condition variable, an eventfd that becomes readable
//! for good once accepting must stop (sync listeners poll it next to their socket), and an
//! eventfd counter bumped on every change (the tokio layer waits on it with `AsyncFd`).

use crate::sync::{Counted, Counter, lock};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// Where this generation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, `ready()` not called yet.
    Starting,
    /// Accepting and serving.
    Serving,
    /// A successor is being started; still accepting and serving.
    Upgrading,
    /// No longer accepting; finishing the connections it has.
    Draining(DrainReason),
}

/// Why a generation drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainReason {
    /// A successor took over the listeners.
    Upgraded,
    /// The stop signal (or [`crate::Exuvia::stop`]) arrived.
    Stopped,
}

/// Something that holds a listener and can close it from the control thread.
pub(crate) trait Slot: Send + Sync {
    fn close(&self);
}

/// How long the end of a drain waits for control requests accepted before the handover.
pub(crate) const CONTROL_ANSWER_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Lifecycle {
    phase: Mutex<Phase>,
    changed: Condvar,
    stop_accepting: OwnedFd,
    events: OwnedFd,
    open: Arc<Counter>,
    slots: Mutex<Vec<Weak<dyn Slot>>>,
    control: Arc<Counter>,
}

impl Lifecycle {
    pub(crate) fn new() -> std::io::Result<Arc<Lifecycle>> {
        Ok(Arc::new(Lifecycle {
            phase: Mutex::new(Phase::Starting),
            changed: Condvar::new(),
            stop_accepting: crate::sys::eventfd()?,
            events: crate::sys::eventfd()?,
            open: Arc::default(),
            slots: Mutex::new(Vec::new()),
            control: Arc::default(),
        }))
    }

    pub(crate) fn phase(&self) -> Phase {
        *lock(&self.phase)
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        *lock(&self.phase) = p;
        self.changed.notify_all();
        crate::sys::eventfd_signal(self.events.as_fd());
    }

    /// Blocks until the phase is `Draining`.
    pub(crate) fn wait_draining(&self) -> DrainReason {
        let mut g = lock(&self.phase);
        loop {
            if let Phase::Draining(r) = *g {
                return r;
            }
            g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Readable once accepting must stop; stays readable.
    pub(crate) fn stop_fd(&self) -> BorrowedFd<'_> {
        self.stop_accepting.as_fd()
    }

    /// Bumped on every phase change.
    #[cfg(feature = "tokio")]
    pub(crate) fn events_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    pub(crate) fn add_slot(&self, slot: Weak<dyn Slot>) {
        let mut slots = lock(&self.slots);
        slots.retain(|s| s.strong_count() > 0);
        slots.push(slot);
    }

    /// Stops every listener and waits (bounded) until the service has let go of them all.
    /// Returns whether they all closed in time.
    pub(crate) fn stop_accepting(&self, wait: Duration) -> bool {
        crate::sys::eventfd_signal(self.stop_accepting.as_fd());
        let slots: Vec<_> = lock(&self.slots)
            .drain(..)
            .filter_map(|w| w.upgrade())
            .collect();
        for s in &slots {
            s.close();
        }
        drop(slots);
        self.open.wait_zero(Instant::now() + wait)
    }

    /// Waits (bounded) until every accepted control connection has had its answer.
    pub(crate) fn wait_control_answered(&self, wait: Duration) {
        if !self.control.wait_zero(Instant::now() + wait) {
            tracing::warn!(
                open = self.control.count(),
                "control requests still unanswered at exit"
            );
        }
    }
}

/// Counts one accepted control connection until its answer has been written.
#[derive(Debug)]
pub(crate) struct ControlGuard(Counted);

impl ControlGuard {
    pub(crate) fn new(life: &Lifecycle) -> ControlGuard {
        ControlGuard(life.control.enter())
    }

    /// Control connections open now, this one included.
    pub(crate) fn count(&self) -> usize {
        self.0.count()
    }
}

/// Counts one open listener for as long as it lives.
#[derive(Debug)]
pub(crate) struct OpenGuard(#[allow(dead_code)] Counted);

impl OpenGuard {
    pub(crate) fn new(life: &Lifecycle) -> OpenGuard {
        OpenGuard(life.open.enter())
    }
}
