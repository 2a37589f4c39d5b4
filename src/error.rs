//! Typed errors. Each message says what went wrong and, where there is one, what to do.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::{FdKind, ManifestError};

/// Errors from setting up exuvia and registering sockets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that cannot travel through the manifest or `LISTEN_FDNAMES`.
    #[error("invalid name {0:?}: use 1-255 printable ASCII characters without spaces or ':'")]
    InvalidName(String),
    /// The same name registered twice.
    #[error("{0:?} is already registered; every socket needs its own name")]
    DuplicateName(String),
    /// More fds than one handover carries.
    #[error("at most {0} fds can be registered for the handover")]
    TooManyFds(usize),
    /// An inherited fd is not what the service asks for under that name.
    #[error(
        "the inherited fd named {name:?} is {found}, but the service asked for a {wanted} socket; rename one of them or restart the service to rebind"
    )]
    KindMismatch {
        /// Registered name.
        name: String,
        /// Kind the service asked for.
        wanted: FdKind,
        /// What the fd really is.
        found: String,
    },
    /// Creating a socket failed.
    #[error("could not create {kind} socket {name:?} on {addr}: {source}")]
    Create {
        /// Registered name.
        name: String,
        /// Socket kind.
        kind: FdKind,
        /// Address or path.
        addr: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A Unix socket path is served by a live listener.
    #[error("{0} is in use by a running listener; stop that process or choose another path")]
    PathInUse(PathBuf),
    /// The predecessor's handover could not be read.
    #[error("handover from the previous generation failed: {0}")]
    Handover(#[from] HandoverError),
    /// Socket activation variables are malformed.
    #[error("socket activation: {0}")]
    Activation(#[from] ActivationError),
    /// An `EXUVIA_*` variable from the unit is malformed.
    #[error(
        "{var}={value:?}: {why}; the unit sets it (Environment=), write a span like 30s, 500ms or 1min 30s"
    )]
    Environment {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// `ready()` was called twice.
    #[error("ready() was already called")]
    AlreadyReady,
    /// The control thread has ended (the process is shutting down).
    #[error("exuvia has shut down")]
    ShutDown,
    /// An OS call failed.
    #[error("{context}: {source}")]
    Io {
        /// What exuvia was doing.
        context: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { context, source }
    }
}

/// Errors a successor meets while taking over from its predecessor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// `EXUVIA_HANDOVER` is set but unusable.
    #[error(
        "EXUVIA_HANDOVER={0:?} is not an open socket fd number; it is set only by exuvia when it starts a successor, so unset it when starting the service by hand"
    )]
    BadEnv(String),
    /// The manifest did not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The channel to the predecessor failed.
    #[error("handover channel: {0}")]
    Channel(#[source] io::Error),
    /// The predecessor went away before sending everything.
    #[error("the previous generation closed the handover channel before sending its manifest")]
    Closed,
    /// A handed-over fd is not open or not what the manifest says it is.
    #[error("handed-over fd {name:?}: {why}")]
    BadFd {
        /// Name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The manifest announced a different number of fds than came with it.
    #[error(
        "the manifest announces {announced} fds but {received} arrived; nothing was taken (is RLIMIT_NOFILE too low?)"
    )]
    FdCount {
        /// Fds the manifest names.
        announced: usize,
        /// Fds that came with it.
        received: usize,
    },
    /// A format-1 predecessor's fds are not where format 1 puts them.
    #[error(
        "the format-1 manifest names {announced} fds, but the channel is at fd {channel_fd} instead of right after them; nothing was taken"
    )]
    Layout {
        /// Fds the manifest names.
        announced: usize,
        /// Where the channel really is.
        channel_fd: i32,
    },
}

/// Errors in systemd's socket activation variables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_PID` is not a number.
    #[error("LISTEN_PID={0:?} is not a process id")]
    BadPid(String),
    /// `LISTEN_PID` names another process.
    #[error(
        "LISTEN_PID={listen_pid} names another process (this one is {ours}): the fds were meant for it; do not fork between systemd and the service"
    )]
    ForeignPid {
        /// The pid systemd meant.
        listen_pid: u32,
        /// This process.
        ours: u32,
    },
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS={0:?} is not a number of file descriptors")]
    BadCount(String),
    /// `LISTEN_PIDFDID` is not a number.
    #[error("LISTEN_PIDFDID={0:?} is not a pidfd inode id")]
    BadPidfdId(String),
    /// More names than fds.
    #[error(
        "LISTEN_FDNAMES has {names} names for {fds} fds; fix FileDescriptorName= in the .socket units"
    )]
    NameCount {
        /// Number of names.
        names: usize,
        /// Number of fds.
        fds: usize,
    },
    /// A name that cannot be used.
    #[error("LISTEN_FDNAMES entry {0:?} is not a valid name")]
    BadName(String),
    /// An activated fd is not a socket or not the expected kind.
    #[error("activated fd {fd} ({name:?}) {why}")]
    BadFd {
        /// Fd number.
        fd: i32,
        /// Name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// Why an upgrade did not happen. The old process keeps serving in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Another upgrade is running; the trigger was coalesced into it.
    #[error("an upgrade is already in progress")]
    InProgress,
    /// This process is a successor whose own handover has not completed.
    #[error(
        "this process is still taking over from its predecessor; retry once the handover is complete"
    )]
    HandoverPending,
    /// The process is draining or stopping.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The successor's executable cannot be run.
    #[error(
        "successor executable {path} cannot be run: {source}; install it there or set Builder::executable"
    )]
    Executable {
        /// Resolved path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Starting the successor failed at `step` (**spawn**).
    #[error("could not start the successor ({step}): {source}")]
    Spawn {
        /// What exuvia was doing, e.g. "queueing the manifest and the listeners".
        step: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The successor died before it was ready.
    #[error("successor (pid {pid}) exited before it was ready")]
    Exited {
        /// Successor pid.
        pid: i32,
    },
    /// A `before_upgrade` hook of the service refused the upgrade.
    #[error("the service's pre-upgrade check refused the upgrade: {reason}")]
    Vetoed {
        /// The hook's words.
        reason: String,
    },
    /// The successor said `ready` and died before this process handed over to it.
    #[error("successor (pid {pid}) died right after it said ready, before the handover")]
    DiedAfterReady {
        /// Successor pid.
        pid: i32,
    },
    /// The successor missed the readiness deadline and was killed.
    #[error("successor (pid {pid}) was not ready within {timeout:?} and was killed")]
    Timeout {
        /// Successor pid.
        pid: i32,
        /// Configured deadline.
        timeout: Duration,
    },
    /// The successor reported that its start-up failed.
    #[error("successor (pid {pid}) failed to start: {reason}")]
    Failed {
        /// Successor pid.
        pid: i32,
        /// Its own words.
        reason: String,
    },
    /// The successor said something that is not part of the protocol.
    #[error("successor (pid {pid}) sent a malformed message: {message:?}")]
    Protocol {
        /// Successor pid.
        pid: i32,
        /// What it sent (truncated).
        message: String,
    },
    /// The control thread is gone.
    #[error("exuvia has shut down")]
    ShutDown,
}

impl UpgradeError {
    /// The failure as a metrics label (one of `stats::FAILURE_REASONS`).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            UpgradeError::Executable { .. } => "executable",
            UpgradeError::Spawn { .. } => "spawn",
            UpgradeError::Exited { .. } => "exited",
            UpgradeError::DiedAfterReady { .. } => "died_after_ready",
            UpgradeError::Timeout { .. } => "timeout",
            UpgradeError::Failed { .. } => "failed",
            UpgradeError::Protocol { .. } => "protocol",
            UpgradeError::Vetoed { .. } => "vetoed",
            UpgradeError::ShuttingDown => "shutting_down",
            UpgradeError::ShutDown => "shut_down",
            _ => "other",
        }
    }

    /// The reason on one printable line of at most 200 characters, for `STATUS=`.
    pub fn short(&self) -> String {
        let s = printable(&self.to_string());
        match s.char_indices().nth(200) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s,
        }
    }
}

/// `s` with every control character (CR, LF, ESC…) written as `\u{…}`: words from another
/// process reach a terminal, a journal and `STATUS=`, and must not move a cursor or forge a line.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}
