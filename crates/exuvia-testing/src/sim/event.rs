//! The simulator's event thread: one `poll` over the notify socket, a wake-up eventfd and the
//! members' pidfds, with the unit's next timer as timeout. Everything the state machine does
//! happens under the shared lock, and waiters are woken through the condvar afterwards.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Shared;
use super::machine::{Inner, Timer};
use super::proto::monotonic_now;

/// Safety net for the event loop's sleep; every real wake-up is an fd event or a timer.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Polls the members' pidfds; returns their pids and which of them exited.
pub(crate) fn wait_members(g: &Inner, timeout: Duration) -> (Vec<u32>, Vec<bool>) {
    let pids: Vec<u32> = g.unit.members.keys().copied().collect();
    let mut fds: Vec<PollFd<'_>> = g
        .unit
        .members
        .values()
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let _ = poll(&mut fds, t);
    let exited = fds
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect();
    (pids, exited)
}

/// The event thread: datagrams, member exits (pidfds) and the unit's timers.
///
/// Members are only ever *removed* (and their pidfds closed) on this thread, so the raw fd
/// numbers it polls outside the lock stay valid; other threads only add members, and wake us.
pub(crate) fn event_loop(shared: &Shared) {
    loop {
        let (members, timeout) = {
            let g = shared.lock();
            if g.shutdown {
                return;
            }
            let members: Vec<(u32, RawFd)> = g
                .unit
                .members
                .iter()
                .map(|(p, fd)| (*p, fd.as_raw_fd()))
                .collect();
            let timeout = g
                .timer
                .map(|(at, _)| at.saturating_sub(monotonic_now()))
                .unwrap_or(MAX_POLL)
                .min(MAX_POLL);
            (members, timeout)
        };
        // SAFETY (for the borrows below): the fds stay open until this thread removes them.
        let borrowed: Vec<BorrowedFd<'_>> = members
            .iter()
            // SAFETY: see the function docs — only this thread closes member pidfds.
            .map(|(_, fd)| unsafe { BorrowedFd::borrow_raw(*fd) })
            .collect();
        // SAFETY: the socket lives in `shared`, which outlives this loop.
        let sock = unsafe { BorrowedFd::borrow_raw(shared.socket.raw_fd()) };
        let mut fds = vec![
            PollFd::new(sock, PollFlags::POLLIN),
            PollFd::new(shared.wake.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            borrowed
                .iter()
                .map(|fd| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        // Round up so a timer is never polled for again 0 ms early in a busy loop.
        let ms = timeout.as_micros().div_ceil(1000);
        let t = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        if let Err(e) = poll(&mut fds, t) {
            if e != nix::errno::Errno::EINTR {
                tracing::warn!("simulator poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);

        let mut g = shared.lock();
        if ready[1] {
            let _ = shared.wake.read();
        }
        if ready[0] {
            // Drain the queue: one wake-up may stand for many datagrams.
            loop {
                match shared.socket.recv() {
                    Ok(Some(rx)) => g.on_datagram(rx),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("simulator recv failed: {e}");
                        break;
                    }
                }
            }
        }
        for ((pid, fd), &r) in members.iter().zip(&ready[2..]) {
            let same = g
                .unit
                .members
                .get(pid)
                .is_some_and(|m| m.as_raw_fd() == *fd);
            if r && same {
                g.on_exit(*pid);
            }
        }
        if let Some((at, kind)) = g.timer {
            if monotonic_now() >= at {
                g.on_timer(kind);
                if kind == Timer::Kill {
                    // Killing is done once; the members' exits end the stop.
                    g.timer = None;
                }
            }
        }
        drop(g);
        shared.changed.notify_all();
    }
}
