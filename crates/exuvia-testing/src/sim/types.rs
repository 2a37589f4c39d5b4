//! Public configuration, state and record types of the simulator.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::proto::{self, Violation};
use super::unit::Exit;

/// `NotifyAccess=`: who may send notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyAccess {
    /// Nobody (every datagram is dropped).
    None,
    /// Only the current main process. systemd forces this for `Type=notify-reload` when unset.
    #[default]
    Main,
    /// The main process or a control process (`ExecReload=` helpers). The simulator runs no
    /// control processes, so this behaves like `Main`.
    Exec,
    /// Any process of the unit.
    All,
}

impl NotifyAccess {
    pub(crate) fn parse(s: &str) -> Option<NotifyAccess> {
        Some(match s {
            "none" => NotifyAccess::None,
            "main" => NotifyAccess::Main,
            "exec" => NotifyAccess::Exec,
            "all" => NotifyAccess::All,
            _ => return None,
        })
    }
}

/// Settings of the simulated unit. Defaults match a `Type=notify-reload` unit with systemd's
/// defaults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `NotifyAccess=` (default `main`). `NOTIFYACCESS=` messages change it at runtime.
    pub notify_access: NotifyAccess,
    /// `ReloadSignal=` as a raw signal number (default `SIGHUP`).
    pub reload_signal: i32,
    /// Bound on each reload (systemd uses `TimeoutStartSec=`, default 90 s).
    pub reload_timeout: Duration,
    /// `TimeoutStartSec=` for the first `READY=1` (default 90 s).
    pub start_timeout: Duration,
    /// `TimeoutStopSec=` for stops the unit decides itself (main exit, `STOPPING=1`).
    pub stop_timeout: Duration,
    /// Fail the start when the first `READY=1` comes from a process that neither catches nor
    /// blocks the reload signal, as systemd ≥ 262 does (default true). The violation is
    /// recorded either way.
    pub fail_start_without_reload_handler: bool,
    /// `FileDescriptorStoreMax=` (default 0: `FDSTORE=1` fds are dropped, silently, as
    /// systemd does).
    pub fdstore_max: usize,
    /// Bind the notify socket here instead of in a fresh temp dir. The file is removed on drop.
    pub socket_path: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            notify_access: NotifyAccess::Main,
            reload_signal: libc::SIGHUP,
            reload_timeout: Duration::from_secs(90),
            start_timeout: Duration::from_secs(90),
            stop_timeout: Duration::from_secs(90),
            fail_start_without_reload_handler: true,
            fdstore_max: 0,
            socket_path: None,
        }
    }
}

/// Unit states, named after systemd's service states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing running (before `spawn`, and after the unit stopped).
    Dead,
    /// Started, waiting for the first `READY=1`.
    Start,
    /// Ready.
    Running,
    /// Reload signal sent; waiting for `RELOADING=1` + `MONOTONIC_USEC=`.
    ReloadSignal,
    /// Reload acknowledged (or started by the service); waiting for `READY=1`.
    ReloadNotify,
    /// Stopping: waiting for every unit member to exit.
    Stopping,
}

impl State {
    pub(crate) fn reloading(self) -> bool {
        matches!(self, State::ReloadSignal | State::ReloadNotify)
    }
}

/// Who started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadInitiator {
    /// [`Simulator::reload`](super::Simulator::reload) (`systemctl reload`).
    Manager,
    /// The service sent `RELOADING=1` on its own while running.
    Service,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// `READY=1` arrived.
    Done,
    /// The reload timeout expired; the unit went back to running.
    Timeout,
    /// The main process exited mid-reload; the unit was stopped.
    MainExited,
    /// The unit began stopping (`STOPPING=1` or `stop`).
    Stopped,
}

/// One reload, finished or in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// Who started it.
    pub initiated_by: ReloadInitiator,
    /// CLOCK_MONOTONIC time the signal was sent (or `RELOADING=1` arrived).
    pub begin: Duration,
    /// CLOCK_MONOTONIC time it ended.
    pub end: Option<Duration>,
    /// Main pid when it began.
    pub old_main: Option<u32>,
    /// Main pid when it ended.
    pub new_main: Option<u32>,
    /// `None` while in progress.
    pub result: Option<ReloadResult>,
    /// Last `STATUS=` when it ended.
    pub status: Option<String>,
    /// Index into [`Simulator::violations`](super::Simulator::violations) when it began.
    pub(crate) first_violation: usize,
}

/// A unit member that exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEvent {
    /// Its pid.
    pub pid: u32,
    /// How it ended ([`Exit::Unknown`] if its parent, not the simulator, reaped it).
    pub exit: Exit,
    /// Whether it was the main process at the time.
    pub was_main: bool,
    /// Unit state when the exit was noticed.
    pub state: State,
    /// CLOCK_MONOTONIC time the exit was noticed.
    pub at: Duration,
}

/// A successful manager-initiated reload.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// From the reload signal to the completing `READY=1`.
    pub duration: Duration,
    /// Main pid before.
    pub old_main: u32,
    /// Main pid after (differs from `old_main` after a fork+exec handover).
    pub new_main: u32,
    /// Last `STATUS=` at completion.
    pub status: Option<String>,
    /// Violations recorded while the reload ran (systemd would still report success).
    pub violations: Vec<Violation>,
}

/// Result of [`Simulator::stop`](super::Simulator::stop).
#[derive(Debug, Clone)]
pub struct StopOutcome {
    /// From the stop signal until the last member exited.
    pub duration: Duration,
    /// Members that had to be SIGKILLed at the timeout.
    pub sigkilled: Vec<u32>,
    /// Exits observed during the stop.
    pub exits: Vec<ExitEvent>,
}

/// Why a wait on the simulator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A timeout expired: the caller's, or the unit's own start/reload timeout.
    #[error("timed out waiting for {what} (unit {state:?}){}", proto::list(.violations))]
    Timeout {
        /// What was awaited and whose timeout fired.
        what: String,
        /// Unit state at the time.
        state: State,
        /// Every violation recorded so far, the likely cause.
        violations: Vec<Violation>,
    },
    /// The main process exited when it must not have.
    #[error("main process {pid} exited ({exit}) during {during}{}", proto::list(.violations))]
    MainExited {
        /// Its pid.
        pid: u32,
        /// Its exit status.
        exit: Exit,
        /// What the unit was doing.
        during: &'static str,
        /// Every violation recorded so far.
        violations: Vec<Violation>,
    },
    /// systemd would fail the operation because of these protocol violations.
    #[error("protocol violation{}", proto::list(.0))]
    Violation(Vec<Violation>),
    /// The operation does not apply in the unit's current state.
    #[error("unit is {state:?}: {detail}")]
    InvalidState {
        /// Unit state.
        state: State,
        /// Why that state does not fit.
        detail: String,
    },
    /// An OS error (signal delivery, `/proc`, spawning).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
