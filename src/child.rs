//! The old process's view of its successor: start it, feed it the manifest, read its answer.
//!
//! The successor is started through a double fork (see [`crate::sys::DoubleFork`]): under
//! systemd it must be the service manager's own child, or systemd treats it as "not our
//! child" and SIGKILLs it on `systemctl stop` instead of letting it drain.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use crate::channel::{self, Channel};
use crate::env::{HANDOVER_VAR, NOT_INHERITED};
use crate::error::UpgradeError;
use crate::manifest::{Ancestor, Entry, FdKind, Manifest};
use crate::sys;

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
    Ready,
    Failed(String),
    Gone,
    Malformed(String),
}

pub(crate) fn spawn(plan: Plan<'_>) -> Result<Successor, UpgradeError> {
    let (ours, theirs) = Channel::pair()?;
    let n = plan.fds.len() as RawFd;
    let channel_target = 3 + n;
    // Sources are numbered above every target so no dup2 clobbers a source still needed.
    let base = channel_target + 1;
    let mut keep: Vec<OwnedFd> = Vec::with_capacity(plan.fds.len() + 1);
    let mut moves = Vec::with_capacity(plan.fds.len() + 1);
    let mut entries = Vec::with_capacity(plan.fds.len());
    for (i, (name, kind, fd)) in plan.fds.iter().enumerate() {
        let dup = sys::dup_cloexec_at_least(*fd, base)?;
        let target = 3 + i as RawFd;
        moves.push((dup.as_raw_fd(), target));
        keep.push(dup);
        entries.push(Entry {
            name: (*name).to_owned(),
            kind: *kind,
            fd: target,
        });
    }
    let ch = sys::dup_cloexec_at_least(theirs.as_fd(), base)?;
    moves.push((ch.as_raw_fd(), channel_target));
    keep.push(ch);
    drop(theirs);

    let manifest = Manifest {
        generation: plan.generation,
        draining: plan.draining.clone(),
        entries,
        state_len: plan.state.as_ref().map(|s| s.len()),
        signal_trigger_us: plan.signal_trigger_us,
    };
    // The manifest fits the socket buffer, so it is queued before the fork: the successor
    // reads it the moment it starts instead of waiting on this process to get round to it.
    ours.send(manifest.encode().as_bytes())?;
    let (report_rx, report_tx) = Channel::pair()?;
    // Above every dup2 target, like the other sources, so the intermediate still has it.
    let report_tx = sys::dup_cloexec_at_least(report_tx.as_fd(), base)?;
    let fork = sys::DoubleFork {
        moves,
        keep_below: channel_target + 1,
        report: report_tx.as_raw_fd(),
    };
    let mut cmd = Command::new(&plan.exe);
    cmd.args(&plan.args)
        .env(HANDOVER_VAR, channel_target.to_string());
    for var in NOT_INHERITED.iter().filter(|v| **v != HANDOVER_VAR) {
        cmd.env_remove(var);
    }
    // SAFETY: run_in_child only makes async-signal-safe calls on memory prepared above.
    unsafe { cmd.pre_exec(move || fork.run_in_child()) };
    let mut intermediate = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => UpgradeError::Executable {
            path: plan.exe.clone(),
            source: e,
        },
        _ => UpgradeError::Spawn(e),
    })?;
    drop(keep);
    drop(report_tx);
    // The intermediate exits right after reporting; reaping it leaves no zombie.
    let status = intermediate.wait()?;
    if !status.success() {
        return Err(UpgradeError::Spawn(io::Error::other(format!(
            "intermediate process failed: {status}"
        ))));
    }
    let (pid, pidfd) = sys::recv_pid_report(report_rx.as_fd()).map_err(|e| {
        UpgradeError::Spawn(io::Error::other(format!(
            "no report from the intermediate process: {e}"
        )))
    })?;
    let pidfd = match pidfd {
        Some(fd) => fd,
        None => sys::pidfd_open(pid)?,
    };
    let successor = Successor {
        pid,
        pidfd,
        channel: ours,
    };
    if let Some(blob) = plan.state {
        send_state(&successor, blob)?;
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
        match self.channel.recv(Some(std::time::Duration::ZERO)) {
            Ok(Some(m)) if m == channel::READY => Answer::Ready,
            Ok(Some(m)) if m.starts_with(channel::FAILED_PREFIX) => Answer::Failed(
                String::from_utf8_lossy(&m[channel::FAILED_PREFIX.len()..])
                    .chars()
                    .take(500)
                    .collect(),
            ),
            Ok(Some(m)) => {
                Answer::Malformed(String::from_utf8_lossy(&m).chars().take(80).collect())
            }
            Ok(None) => Answer::Gone,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Answer::Malformed("(spurious wake-up)".into())
            }
            Err(_) => Answer::Gone,
        }
    }

    pub(crate) fn exited(&self) -> bool {
        sys::pidfd_exited(self.pidfd.as_fd())
    }

    /// Kills the successor and its process group.
    pub(crate) fn kill(&self) {
        sys::kill_successor(self.pid, self.pidfd.as_fd());
    }
}
