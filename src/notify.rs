//! What the control loop tells the service manager, as one interface.
//!
//! Without systemd (or without `NOTIFY_SOCKET`) every call is a no-op; with the `systemd`
//! feature [`crate::systemd`] speaks `sd_notify`. Keeping the calls at the points where the
//! handover phases change is what makes the protocol order provable in one place.

use std::os::fd::BorrowedFd;
use std::time::Duration;

pub(crate) trait Notifier: Send {
    /// First start is complete (generation 1 only: a successor never announces itself).
    fn ready(&mut self, _status: &str) {}
    /// An upgrade was triggered.
    fn reloading(&mut self) {}
    /// The upgrade may take `_by` longer than the manager's timeout allows.
    fn extend_timeout(&mut self, _by: Duration) {}
    /// The successor is ready: make it the main process and complete the reload.
    fn handed_over(&mut self, _pid: i32, _pidfd: BorrowedFd<'_>, _status: &str) {}
    /// The upgrade failed; this process stays main and the reload completes.
    fn upgrade_failed(&mut self, _reason: &str) {}
    /// A real stop (never sent by a draining old generation).
    fn stopping(&mut self) {}
    /// How often to ping the watchdog, if the manager asked for it.
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
    fn watchdog(&mut self) {}
    /// Keeps registered fds in the manager's fd store (opt-in).
    fn store_fds(&mut self, _fds: &[(&str, BorrowedFd<'_>)]) {}
}

/// For processes not run by a service manager.
pub(crate) struct Silent;

impl Notifier for Silent {}
