//! Unit membership — the simulator's stand-in for the service's cgroup — and the process
//! plumbing around it (pidfds, reaping, `/proc` reads).
//!
//! A real cgroup needs privileges or delegation, so membership is approximated instead:
//! a process belongs to the unit if
//! 1. the simulator spawned it, or it was named by [`Simulator::set_main_pid`](super::Simulator::set_main_pid), or
//! 2. it is in the session of a process the simulator spawned (spawned services are made
//!    session leaders, as systemd does; double-forked successors keep the session even after
//!    they re-parent), or
//! 3. its parent chain (via `/proc/<pid>/stat`) reaches a member.
//!
//! Once seen, a process stays a member until it exits; membership is refreshed when a
//! datagram or `MAINPID=` names an unknown pid and, with a full `/proc` scan, when the unit is
//! stopped. A descendant that calls `setsid()` and re-parents before it is ever seen escapes —
//! as it would escape a naive supervisor, but not a cgroup.
//!
//! Each member is held by a pidfd, so signals and `waitid(P_PIDFD)` reach exactly that process
//! even if its pid number is reused, and reaping never touches the test's own children.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Not our child (yet), so the status went to its parent.
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Unknown => f.write_str("status unknown (reaped by its parent)"),
        }
    }
}

/// The fields of `/proc/<pid>/stat` we need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcStat {
    pub(crate) ppid: u32,
    pub(crate) session: u32,
    pub(crate) zombie: bool,
}

pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses; the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?;
    let ppid = it.next()?.parse().ok()?;
    let _pgrp = it.next()?;
    let session = it.next()?.parse().ok()?;
    Some(ProcStat {
        ppid,
        session,
        zombie: state == "Z" || state == "X",
    })
}

/// What a process does with a signal, from `/proc/<pid>/status` (main thread's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    Caught,
    Blocked,
    Ignored,
    Default,
}

pub(crate) fn signal_disposition(pid: u32, signal: i32) -> Option<Disposition> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        u64::from_str_radix(line[key.len()..].trim(), 16).ok()
    };
    let bit = 1u64.checked_shl(u32::try_from(signal - 1).ok()?)?;
    Some(if mask("SigCgt:")? & bit != 0 {
        Disposition::Caught
    } else if mask("SigBlk:")? & bit != 0 {
        Disposition::Blocked
    } else if mask("SigIgn:")? & bit != 0 {
        Disposition::Ignored
    } else {
        Disposition::Default
    })
}

pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the syscall just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The pid behind a pidfd (`Pid:` in its fdinfo; -1 once the process was reaped).
pub(crate) fn pidfd_pid(fd: &OwnedFd) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let line = info.lines().find(|l| l.starts_with("Pid:"))?;
    line["Pid:".len()..].trim().parse().ok()
}

/// `pidfd_send_signal`; signal 0 probes whether the process still exists (zombies count).
pub(crate) fn pidfd_signal(fd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own; a null siginfo asks the kernel to fill it in.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) enum Reap {
    Exited(Exit),
    Running,
    NotOurChild,
}

/// Non-blocking reap of exactly the process behind `fd`.
pub(crate) fn try_reap(fd: &OwnedFd) -> Reap {
    match waitid(
        Id::PIDFd(fd.as_fd()),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL,
    ) {
        Ok(WaitStatus::Exited(_, code)) => Reap::Exited(Exit::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Reap::Exited(Exit::Signal(sig as i32)),
        Ok(_) => Reap::Running,
        Err(Errno::EINTR) => Reap::Running,
        Err(_) => Reap::NotOurChild,
    }
}

/// The live members of the unit, plus exited processes we may still have to reap.
pub(crate) struct Unit {
    pub(crate) members: BTreeMap<u32, OwnedFd>,
    /// Sessions of processes we spawned (see module docs).
    pub(crate) sessions: Vec<u32>,
    /// Exited members whose zombie belonged to someone else; if that parent dies first the
    /// zombie re-parents to us (the subreaper) and we must reap it.
    unreaped: Vec<OwnedFd>,
    self_pid: u32,
}

impl Unit {
    pub(crate) fn new() -> Unit {
        Unit {
            members: BTreeMap::new(),
            sessions: Vec::new(),
            unreaped: Vec::new(),
            self_pid: std::process::id(),
        }
    }

    pub(crate) fn self_pid(&self) -> u32 {
        self.self_pid
    }

    /// Adds `pid` with a fresh pidfd; false if it is already gone.
    pub(crate) fn add(&mut self, pid: u32) -> bool {
        if self.members.contains_key(&pid) {
            return true;
        }
        match pidfd_open(pid) {
            Ok(fd) => {
                self.members.insert(pid, fd);
                true
            }
            Err(_) => false,
        }
    }

    /// Membership test that learns: walks the parent chain and adopts what it finds.
    pub(crate) fn is_member(&mut self, pid: u32) -> bool {
        if self.members.contains_key(&pid) {
            return true;
        }
        let mut chain = Vec::new();
        let mut p = pid;
        // Bounded: process trees are shallow, and a cycle is impossible but cheap to guard.
        for _ in 0..64 {
            let Some(st) = proc_stat(p) else { return false };
            chain.push(p);
            if self.sessions.contains(&st.session) || self.members.contains_key(&st.ppid) {
                for c in chain {
                    self.add(c);
                }
                return self.members.contains_key(&pid);
            }
            if st.ppid <= 1 || st.ppid == self.self_pid {
                return false;
            }
            p = st.ppid;
        }
        false
    }

    /// Full `/proc` scan; adopts every process in our sessions or below a member.
    pub(crate) fn scan(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut candidates: Vec<(u32, ProcStat)> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != self.self_pid && !self.members.contains_key(&pid))
            .filter_map(|pid| Some((pid, proc_stat(pid)?)))
            .collect();
        // Fixpoint over parent links; each round adopts at least one process or stops.
        loop {
            let before = candidates.len();
            let mut rest = Vec::with_capacity(before);
            for (pid, st) in candidates {
                if self.sessions.contains(&st.session) || self.members.contains_key(&st.ppid) {
                    if st.zombie {
                        // Already dead (maybe already recorded): only make sure it gets reaped.
                        self.unreaped.extend(pidfd_open(pid).ok());
                    } else {
                        self.add(pid);
                    }
                } else {
                    rest.push((pid, st));
                }
            }
            candidates = rest;
            if candidates.len() == before {
                break;
            }
        }
    }

    /// Called when a member's pidfd became readable: forget it and try to reap it.
    pub(crate) fn exited(&mut self, pid: u32) -> Option<Exit> {
        let fd = self.members.remove(&pid)?;
        match try_reap(&fd) {
            Reap::Exited(exit) => Some(exit),
            Reap::Running | Reap::NotOurChild => {
                self.unreaped.push(fd);
                Some(Exit::Unknown)
            }
        }
    }

    /// Reaps zombies that re-parented to us since their exit; drops those reaped elsewhere.
    pub(crate) fn reap_orphans(&mut self) {
        self.unreaped.retain(|fd| match try_reap(fd) {
            Reap::Exited(_) => false,
            // ESRCH from signal 0 means the process was reaped by someone else.
            Reap::Running | Reap::NotOurChild => pidfd_signal(fd, 0).is_ok(),
        });
    }

    pub(crate) fn signal_all(&self, signal: i32) -> Vec<u32> {
        self.members
            .iter()
            .filter(|(_, fd)| pidfd_signal(fd, signal).is_ok())
            .map(|(pid, _)| *pid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat_and_signal_mask() {
        let st = proc_stat(std::process::id()).expect("own stat");
        assert!(st.ppid > 0);
        assert!(!st.zombie);
        // A signal no other test touches (SIGPIPE's disposition is process-wide and other
        // tests in this binary change it): ignored, then back to the default.
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: SIG_IGN/SIG_DFL install no handler code.
        unsafe { signal(Signal::SIGTTOU, SigHandler::SigIgn) }.unwrap();
        let ignored = signal_disposition(std::process::id(), libc::SIGTTOU);
        // SAFETY: as above.
        unsafe { signal(Signal::SIGTTOU, SigHandler::SigDfl) }.unwrap();
        assert_eq!(ignored, Some(Disposition::Ignored));
        assert_eq!(
            signal_disposition(std::process::id(), libc::SIGTTOU),
            Some(Disposition::Default)
        );
    }
}
