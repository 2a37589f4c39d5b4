//! The vocabulary between the control loop and everyone who asks it for something: what
//! can be asked ([`Request`]), who waits for the answer ([`Waiter`]) and what they get
//! ([`Upgraded`], [`Verdict`]).
//!
//! It sits *under* the loop and the control socket so that neither has to import the other:
//! the loop hands a verdict to a waiter; how a waiter turns it into a socket line or a typed
//! error is the waiter's business.

use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, UpgradeError};

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

/// An upgrade's outcome in a form several waiters can share (the typed error goes to the one
/// API caller; control-socket clients get its words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Upgraded(Upgraded),
    Failed { kind: FailureKind, message: String },
}

/// How a control-socket client should read a failed upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Another upgrade runs; retry when it finishes.
    InProgress,
    /// This process may not upgrade now (still taking over).
    Refused,
    /// The service is stopping: the stop replaces the upgrade.
    Stopping,
    /// The upgrade ran and failed; the old generation keeps serving.
    Failed,
}

impl FailureKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureKind::InProgress => "in-progress",
            FailureKind::Refused => "refused",
            FailureKind::Stopping => "stopping",
            FailureKind::Failed => "failed",
        }
    }
}

impl Verdict {
    pub(crate) fn of(r: &UpgradeResult) -> Verdict {
        match r {
            Ok(u) => Verdict::Upgraded(u.clone()),
            Err(e) => Verdict::Failed {
                kind: match e {
                    UpgradeError::InProgress => FailureKind::InProgress,
                    UpgradeError::HandoverPending => FailureKind::Refused,
                    UpgradeError::ShuttingDown => FailureKind::Stopping,
                    _ => FailureKind::Failed,
                },
                message: e.to_string(),
            },
        }
    }
}

/// Who asked for an upgrade, and so who gets the answer.
pub(crate) enum Waiter {
    /// The upgrade signal: nobody to answer.
    Signal,
    /// `Exuvia::upgrade()`: the typed result.
    Api(mpsc::Sender<UpgradeResult>),
    /// A control-socket connection thread: the verdict, which it writes itself.
    Control(mpsc::Sender<Verdict>),
}

impl Waiter {
    /// Hands `r` to this waiter.
    pub(crate) fn reply(self, r: UpgradeResult) {
        match self {
            Waiter::Signal => {}
            Waiter::Api(tx) => {
                let _ = tx.send(r);
            }
            Waiter::Control(tx) => {
                let _ = tx.send(Verdict::of(&r));
            }
        }
    }
}

/// Messages from the service's threads to the loop.
pub(crate) enum Request {
    /// Start an upgrade (signal handlers go through the self-pipe instead).
    Upgrade(Waiter),
    /// From the control socket: join a signal-started upgrade (see [`crate::join`]), else
    /// start one.
    Join(mpsc::Sender<Verdict>),
    /// The service's `ready()`.
    Ready(mpsc::Sender<Result<(), Error>>),
    /// Drain without a successor.
    Stop,
    /// The drain is over: pass its results to the successor (then acknowledge).
    Drained(crate::drain::DrainReport, mpsc::Sender<()>),
    /// The handle was dropped.
    Shutdown,
}
