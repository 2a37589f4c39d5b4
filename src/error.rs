//! Typed errors. Each message says what went wrong and, where there is one, what to do.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::FdKind;

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

/// Errors in the manifest text (see [`crate::manifest`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Nothing was received.
    #[error("empty manifest")]
    Empty,
    /// The first line is not ours.
    #[error("not an exuvia handover manifest (first line {0:?})")]
    NotAManifest(String),
    /// Written by an incompatible release.
    #[error(
        "manifest version {theirs} is not supported (this build speaks version {ours}); upgrade in two steps through a release that speaks both"
    )]
    Version {
        /// Version in the manifest.
        theirs: u32,
        /// Version this build speaks.
        ours: u32,
    },
    /// A line that does not parse.
    #[error("manifest line {line} ({text:?}): {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line (truncated).
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// No `end` line.
    #[error("manifest truncated: no `end` line")]
    Truncated,
    /// Text after `end`.
    #[error("unexpected data after the manifest's `end` line")]
    TrailingData,
    /// No `generation` line.
    #[error("manifest has no generation line")]
    MissingGeneration,
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
    /// A manifest entry names an fd that is not open or not what it claims.
    #[error("inherited fd {fd} ({name:?}): {why}")]
    BadFd {
        /// Fd number.
        fd: i32,
        /// Name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// Errors in systemd's socket activation variables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_PID` is not a number.
    #[error("LISTEN_PID={0:?} is not a process id")]
    BadPid(String),
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
    /// Spawning failed.
    #[error("could not start the successor: {0}")]
    Spawn(#[source] io::Error),
    /// The successor died before it was ready.
    #[error("successor (pid {pid}) exited before it was ready")]
    Exited {
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
    /// An OS call failed while handing over.
    #[error("upgrade I/O error: {0}")]
    Io(#[from] io::Error),
    /// The control thread is gone.
    #[error("exuvia has shut down")]
    ShutDown,
}

impl UpgradeError {
    /// A short reason for `STATUS=` lines and the control socket.
    pub fn short(&self) -> String {
        self.to_string()
    }
}
