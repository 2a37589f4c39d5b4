//! What exuvia tells systemd, field by field (docs/systemd.md, "What exuvia sends").

use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::notify_socket::NotifySocket;
use crate::env::StartEnv;
use crate::notify::Notifier;

/// pidfs' magic: pidfd inode ids are unique only on it (Linux 6.9+).
const PIDFS_MAGIC: i64 = 0x5049_4446;

/// The shortest watchdog ping interval: a tiny `WATCHDOG_USEC` must not turn the control
/// loop into a busy loop of datagrams.
const MIN_WATCHDOG_PING: Duration = Duration::from_millis(10);

/// How long the old main waits for systemd to process its `MAINPID=` datagram.
const BARRIER_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct SdNotifier {
    socket: NotifySocket,
    watchdog: Option<Duration>,
}

impl SdNotifier {
    pub(crate) fn from_env(env: &StartEnv) -> Option<SdNotifier> {
        let socket = match NotifySocket::new(env.notify_socket.as_ref()?) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot talk to the service manager; not notifying it");
                return None;
            }
        };
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
            .map(|u| {
                let half = Duration::from_micros(u / 2);
                if half < MIN_WATCHDOG_PING {
                    tracing::warn!(
                        watchdog_usec = u,
                        "WATCHDOG_USEC is too short to honour; pinging every 10 ms"
                    );
                }
                half.max(MIN_WATCHDOG_PING)
            });
        Some(SdNotifier { socket, watchdog })
    }

    fn send(&self, what: &str, fields: &[String], fds: &[BorrowedFd<'_>]) {
        match self.socket.send(fields, fds) {
            Ok(()) => tracing::debug!(message = what, "sd_notify"),
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

/// `STATUS=` on one line: systemd reads one field per line.
fn status(s: &str) -> String {
    format!("STATUS={}", s.replace(['\n', '\r'], " "))
}

/// The handover datagram, sent by the *old* main so that `NotifyAccess=main` accepts it:
/// `MAINPID=` first, then `READY=1` completes the reload. Where the kernel has unique pidfd
/// ids, `MAINPIDFDID=` lets systemd ≥ 257 pin the exact process; elsewhere `MAINPIDFD=1`
/// passes the pidfd itself (the returned flag), which older systemd ignores.
fn handover_fields(pid: i32, pidfd_id: Option<u64>, text: &str) -> (Vec<String>, bool) {
    let mut fields = vec![format!("MAINPID={pid}")];
    let pass_pidfd = match pidfd_id {
        Some(id) => {
            fields.push(format!("MAINPIDFDID={id}"));
            false
        }
        None => {
            fields.push("MAINPIDFD=1".into());
            true
        }
    };
    fields.push("READY=1".into());
    fields.push(status(text));
    (fields, pass_pidfd)
}

impl Notifier for SdNotifier {
    fn ready(&mut self, text: &str) {
        self.send("ready", &["READY=1".into(), status(text)], &[]);
    }

    fn reloading(&mut self) {
        // In one datagram: without MONOTONIC_USEC systemd ignores RELOADING=1.
        let fields = [
            "RELOADING=1".into(),
            format!("MONOTONIC_USEC={}", crate::sys::monotonic_usec()),
            status("upgrading"),
        ];
        self.send("reloading", &fields, &[]);
    }

    fn extend_timeout(&mut self, by: Duration) {
        let fields = [format!("EXTEND_TIMEOUT_USEC={}", by.as_micros())];
        self.send("extend timeout", &fields, &[]);
    }

    fn handed_over(&mut self, pid: i32, pidfd: BorrowedFd<'_>, text: &str) {
        let (fields, pass_pidfd) = handover_fields(pid, pidfd_id(pidfd), text);
        let fds = if pass_pidfd { vec![pidfd] } else { Vec::new() };
        self.send("handed over", &fields, &fds);
        // The old process may exit at once (nothing to drain); it must not before systemd
        // has taken in MAINPID=, or systemd would see its main process exit.
        match self.socket.barrier(BARRIER_WAIT) {
            Ok(true) => tracing::debug!("the service manager processed the handover"),
            Ok(false) => {
                tracing::warn!("the service manager did not confirm the handover within 2 s")
            }
            Err(e) => tracing::warn!(error = %e, "BARRIER=1 failed"),
        }
    }

    fn upgrade_failed(&mut self, reason: &str) {
        let fields = [
            "READY=1".into(),
            status(&format!("upgrade failed: {reason}")),
        ];
        self.send("upgrade failed", &fields, &[]);
    }

    fn stopping(&mut self) {
        let fields = [
            "STOPPING=1".into(),
            status("stopping: draining connections"),
        ];
        self.send("stopping", &fields, &[]);
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn watchdog(&mut self) {
        self.send("watchdog", &["WATCHDOG=1".into()], &[]);
    }

    fn store_fds(&mut self, fds: &[(&str, BorrowedFd<'_>)]) {
        for (name, fd) in fds {
            let fields = ["FDSTORE=1".into(), format!("FDNAME={name}")];
            if let Err(e) = self.socket.send(&fields, &[*fd]) {
                tracing::warn!(name, error = %e, "could not store fd in systemd's fd store");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handover_datagram_pins_the_process_either_way() {
        let (f, pass) = handover_fields(42, Some(7), "gen 2\nserving");
        assert_eq!(
            f,
            [
                "MAINPID=42",
                "MAINPIDFDID=7",
                "READY=1",
                "STATUS=gen 2 serving"
            ]
        );
        assert!(!pass);
        let (f, pass) = handover_fields(42, None, "x");
        assert_eq!(f, ["MAINPID=42", "MAINPIDFD=1", "READY=1", "STATUS=x"]);
        assert!(pass);
    }
}
