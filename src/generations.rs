//! The older generations that are still draining, and the cap on how many may.
//!
//! Each generation hands the list on in the manifest as pid + start time, so a successor
//! can find its ancestors without holding a pidfd on them, and a recycled pid is never
//! mistaken for one. A zombie (exited, not yet reaped) no longer counts.

use std::os::fd::{AsFd, OwnedFd};

use crate::manifest::Ancestor;
use crate::sys;

/// The ancestors still running.
pub(crate) fn alive(draining: &[Ancestor]) -> Vec<Ancestor> {
    draining
        .iter()
        .copied()
        .filter(|a| sys::pidfd_for(a.pid, a.start_time).is_some())
        .collect()
}

/// Keeps at most `cap` generations draining, this process included: cuts (SIGKILL by pidfd)
/// the oldest beyond it and returns their pids.
pub(crate) fn cut_beyond_cap(draining: &[Ancestor], cap: usize) -> Vec<i32> {
    let mut alive: Vec<(Ancestor, OwnedFd)> = draining
        .iter()
        .filter_map(|a| sys::pidfd_for(a.pid, a.start_time).map(|fd| (*a, fd)))
        .collect();
    let mut cut = Vec::new();
    while alive.len() + 1 > cap && !alive.is_empty() {
        let (a, fd) = alive.remove(0);
        tracing::warn!(
            pid = a.pid,
            cap,
            "too many generations draining; cutting the oldest"
        );
        let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        cut.push(a.pid);
    }
    cut
}
