//! `sd_notify` through libsystemd, plus the fields its release lacks.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use libsystemd::daemon::{NotifyState, notify, notify_with_fds};

use crate::env::StartEnv;
use crate::notify::Notifier;

/// pidfs' magic: pidfd inode ids are unique only on it (Linux 6.9+).
const PIDFS_MAGIC: i64 = 0x5049_4446;

pub(crate) struct SdNotifier {
    watchdog: Option<Duration>,
}

impl SdNotifier {
    pub(crate) fn from_env(env: &StartEnv) -> Option<SdNotifier> {
        env.notify_socket.as_ref()?;
        let ours = std::process::id().to_string();
        let for_us = env
            .watchdog_pid
            .as_ref()
            .is_none_or(|p| p.to_string_lossy() == ours);
        let watchdog = env
            .watchdog_usec
            .as_ref()
            .and_then(|u| u.to_string_lossy().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Some(SdNotifier { watchdog })
    }

    fn send(&self, what: &str, states: &[NotifyState]) {
        match notify(false, states) {
            Ok(_) => tracing::debug!(message = what, "sd_notify"),
            Err(e) => tracing::warn!(message = what, error = %e, "sd_notify failed"),
        }
    }
}

/// The pidfd's inode id (`MAINPIDFDID=`, `LISTEN_PIDFDID=`), when the kernel makes it unique.
pub(crate) fn pidfd_id(pidfd: BorrowedFd<'_>) -> Option<u64> {
    let fs = nix::sys::statfs::fstatfs(pidfd).ok()?;
    if fs.filesystem_type().0 as i64 != PIDFS_MAGIC {
        return None;
    }
    nix::sys::stat::fstat(pidfd).ok().map(|st| st.st_ino)
}

/// systemd reads one field per line; a newline inside a status would end it early.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl Notifier for SdNotifier {
    fn ready(&mut self, status: &str) {
        self.send(
            "ready",
            &[NotifyState::Ready, NotifyState::Status(one_line(status))],
        );
    }

    fn reloading(&mut self) {
        // libsystemd's release has no MONOTONIC_USEC; without it systemd ignores RELOADING=1.
        let mono = NotifyState::Other(format!("MONOTONIC_USEC={}", crate::sys::monotonic_usec()));
        self.send(
            "reloading",
            &[
                NotifyState::Reloading,
                mono,
                NotifyState::Status("upgrading".into()),
            ],
        );
    }

    fn extend_timeout(&mut self, by: Duration) {
        self.send(
            "extend timeout",
            &[NotifyState::Other(format!(
                "EXTEND_TIMEOUT_USEC={}",
                by.as_micros()
            ))],
        );
    }

    fn handed_over(&mut self, pid: i32, pidfd: BorrowedFd<'_>, status: &str) {
        // libsystemd names a different nix version's Pid type; the field is plain text anyway.
        let mut states = vec![NotifyState::Other(format!("MAINPID={pid}"))];
        if let Some(id) = pidfd_id(pidfd) {
            // Not in libsystemd's release; lets systemd ≥ 257 pin the exact process.
            states.push(NotifyState::Other(format!("MAINPIDFDID={id}")));
        }
        states.push(NotifyState::Ready);
        states.push(NotifyState::Status(one_line(status)));
        self.send("handed over", &states);
    }

    fn upgrade_failed(&mut self, reason: &str) {
        let status = one_line(&format!("upgrade failed: {reason}"));
        self.send(
            "upgrade failed",
            &[NotifyState::Ready, NotifyState::Status(status)],
        );
    }

    fn stopping(&mut self) {
        self.send(
            "stopping",
            &[
                NotifyState::Stopping,
                NotifyState::Status("stopping: draining connections".into()),
            ],
        );
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn watchdog(&mut self) {
        self.send("watchdog", &[NotifyState::Watchdog]);
    }

    fn store_fds(&mut self, fds: &[(&str, BorrowedFd<'_>)]) {
        for (name, fd) in fds {
            let states = [
                NotifyState::Fdstore,
                NotifyState::Fdname((*name).to_owned()),
            ];
            if let Err(e) = notify_with_fds(false, &states, &[fd.as_raw_fd()]) {
                tracing::warn!(name, error = %e, "could not store fd in systemd's fd store");
            }
        }
    }
}
