//! The old process's view of its successor: start it, feed it the manifest and the fds,
//! read its answer.
//!
//! The successor is started through a double fork (see [`crate::sys::DoubleFork`]): under
//! systemd it must be the service manager's own child, or systemd treats it as "not our
//! child" and SIGKILLs it on `systemctl stop` instead of letting it drain. It inherits
//! exactly stdio and the channel (at fd 3, named by `EXUVIA_HANDOVER`); the listeners
//! travel on the channel, attached to the manifest.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use crate::channel::{Channel, Message};
use crate::env::{HANDOVER_VAR, NOT_INHERITED};
use crate::error::UpgradeError;
use crate::manifest::{Ancestor, Entry, FdKind, Manifest};
use crate::sys;

/// Where the successor finds the channel.
const CHANNEL_FD: RawFd = 3;

/// What to start and what to give it.
pub(crate) struct Plan<'a> {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    pub fds: Vec<(&'a str, FdKind, BorrowedFd<'a>)>,
    pub generation: u64,
    pub draining: Vec<Ancestor>,
    pub state: Option<Arc<Vec<u8>>>,
    pub signal_trigger_us: Option<u64>,
}

/// A started successor that has not answered yet.
pub(crate) struct Successor {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub channel: Channel,
}

/// What the successor said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// With the capabilities the successor announced.
    Ready(Vec<String>),
    Failed(String),
    Gone,
    Malformed(String),
}

fn spawn_step(step: &'static str) -> impl FnOnce(io::Error) -> UpgradeError {
    move |source| UpgradeError::Spawn { step, source }
}

pub(crate) fn spawn(plan: Plan<'_>) -> Result<Successor, UpgradeError> {
    let (ours, theirs) = Channel::pair().map_err(spawn_step("creating the handover channel"))?;
    let manifest = Manifest {
        version: crate::manifest::PROTOCOL_VERSION,
        generation: plan.generation,
        draining: plan.draining.clone(),
        entries: plan
            .fds
            .iter()
            .map(|(name, kind, _)| Entry {
                name: (*name).to_owned(),
                kind: *kind,
            })
            .collect(),
        state_len: plan.state.as_ref().map(|s| s.len()),
        signal_trigger_us: plan.signal_trigger_us,
        counters: crate::stats::stats().snapshot(),
        skipped: Vec::new(),
    };
    let fds: Vec<BorrowedFd<'_>> = plan.fds.iter().map(|(_, _, fd)| *fd).collect();
    // The manifest and its fds fit the socket buffer, so they are queued before the fork:
    // the successor reads them the moment it starts instead of waiting on this process.
    ours.send_with_many_fds(manifest.encode().as_bytes(), &fds)
        .map_err(spawn_step("queueing the manifest and the listeners"))?;
    // Sources are numbered above the target so dup2 clobbers nothing still needed.
    let ch = sys::dup_cloexec_at_least(theirs.as_fd(), CHANNEL_FD + 1)
        .map_err(spawn_step("placing the channel"))?;
    drop(theirs);
    let (report_rx, report_tx) =
        Channel::pair().map_err(spawn_step("creating the spawn report socket"))?;
    let report_tx = sys::dup_cloexec_at_least(report_tx.as_fd(), CHANNEL_FD + 1)
        .map_err(spawn_step("placing the spawn report socket"))?;
    let fork = sys::DoubleFork {
        moves: vec![(ch.as_raw_fd(), CHANNEL_FD)],
        keep_below: CHANNEL_FD + 1,
        report: report_tx.as_raw_fd(),
    };
    let mut cmd = Command::new(&plan.exe);
    cmd.args(&plan.args)
        .env(HANDOVER_VAR, CHANNEL_FD.to_string());
    for var in NOT_INHERITED.iter().filter(|v| **v != HANDOVER_VAR) {
        cmd.env_remove(var);
    }
    // SAFETY: run_in_child only makes async-signal-safe calls on memory prepared above.
    unsafe { cmd.pre_exec(move || fork.run_in_child()) };
    // Timeline (CLOCK_MONOTONIC µs, see the debug event below): one clock read each.
    let t_fork = sys::monotonic_usec();
    let mut intermediate = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => UpgradeError::Executable {
            path: plan.exe.clone(),
            source: e,
        },
        _ => UpgradeError::Spawn {
            step: "fork and exec",
            source: e,
        },
    })?;
    // `spawn` returns once the successor has exec'd (std waits for its exec pipe to close),
    // by when the intermediate has exited too.
    let t_exec = sys::monotonic_usec();
    drop(ch);
    drop(report_tx);
    // The intermediate exits right after reporting; reaping it leaves no zombie.
    let status = intermediate
        .wait()
        .map_err(spawn_step("waiting for the intermediate process"))?;
    let t_reaped = sys::monotonic_usec();
    if !status.success() {
        return Err(UpgradeError::Spawn {
            step: "forking the successor from the intermediate process",
            source: io::Error::other(format!("the intermediate process ended with {status}")),
        });
    }
    let (pid, pidfd) = sys::recv_pid_report(report_rx.as_fd())
        .map_err(spawn_step("reading the intermediate process's report"))?;
    let pidfd = match pidfd {
        Some(fd) => fd,
        None => sys::pidfd_open(pid).map_err(spawn_step("opening a pidfd on the successor"))?,
    };
    tracing::debug!(
        phase = "spawn",
        successor_pid = pid,
        t_fork,
        t_exec,
        t_reaped,
        "successor exec'd; intermediate process reaped"
    );
    let successor = Successor {
        pid,
        pidfd,
        channel: ours,
    };
    if let Some(blob) = plan.state {
        send_state(&successor, blob).map_err(spawn_step("sending the state blob"))?;
    }
    Ok(successor)
}

/// Writes the state blob from a short-lived thread: it may exceed the socket buffer, and a
/// successor that never reads must not block the control loop, which enforces the deadline.
fn send_state(s: &Successor, blob: Arc<Vec<u8>>) -> io::Result<()> {
    let ch = Channel::from_fd(s.channel.as_fd().try_clone_to_owned()?);
    let pid = s.pid;
    std::thread::Builder::new().name("exuvia-state".into()).spawn(move || {
        if let Err(e) = ch.send_blob(&blob) {
            tracing::debug!(successor_pid = pid, error = %e, "could not send the state blob (successor gone?)");
        }
    })?;
    Ok(())
}

impl Successor {
    /// Reads one answer; call when the channel is readable.
    pub(crate) fn answer(&self) -> Answer {
        match self.channel.recv_msg(Some(std::time::Duration::ZERO)) {
            Ok(Some(Ok(Message::Ready { caps }))) => Answer::Ready(caps),
            Ok(Some(Ok(Message::Failed(reason)))) => Answer::Failed(reason),
            Ok(Some(Ok(other))) => Answer::Malformed(format!("{other:?}")),
            Ok(Some(Err(text))) => Answer::Malformed(text),
            Ok(None) => Answer::Gone,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Answer::Malformed("(spurious wake-up)".into())
            }
            Err(_) => Answer::Gone,
        }
    }

    /// Whether the successor has sent `failed` since `ready`, read without waiting. Reading
    /// loses nothing: before the handover completes a successor sends nothing else.
    pub(crate) fn said_failed(&self) -> Option<String> {
        match self.channel.recv_msg(Some(std::time::Duration::ZERO)) {
            Ok(Some(Ok(Message::Failed(reason)))) => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn exited(&self) -> bool {
        sys::pidfd_exited(self.pidfd.as_fd())
    }

    /// Kills the successor and its process group.
    pub(crate) fn kill(&self) {
        sys::kill_successor(self.pid, self.pidfd.as_fd());
    }

    /// Tells the successor that this process has let go of every listener.
    pub(crate) fn send_complete(&self) -> io::Result<()> {
        self.channel.send_msg(&Message::Complete)
    }

    /// Keeps only the channel, for the drain results sent after `complete`.
    pub(crate) fn into_channel(self) -> Channel {
        self.channel
    }
}
