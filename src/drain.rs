//! Draining without a runtime: a connection tracker with a soft and a hard deadline.
//!
//! At the soft deadline the service is told to finish ([`ConnGuard::should_finish`]: close
//! idle keep-alives, say goodbye); at the hard deadline the remaining connections are cut
//! with `shutdown(2)` (safe here: accepted connections belong to this process alone), which
//! makes every blocked read or write in the service return at once.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lifecycle::DrainReason;

/// Counts live connections; cheap to clone.
#[derive(Clone, Default)]
pub struct Tracker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    conns: Mutex<Conns>,
    changed: Condvar,
    finish: AtomicBool,
}

#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, Option<OwnedFd>>,
}

/// Held for as long as a connection is being served.
pub struct ConnGuard {
    inner: Arc<Inner>,
    id: u64,
}

/// What a drain did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Why this generation drained.
    pub reason: DrainReason,
    /// Connections open when the drain began.
    pub open_at_start: usize,
    /// Connections cut at the hard deadline.
    pub cut: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

impl DrainReport {
    /// Builds the report and logs the **exit** phase; shared by the sync and async drains.
    pub(crate) fn finished(
        reason: DrainReason,
        open_at_start: usize,
        cut: usize,
        start: Instant,
    ) -> DrainReport {
        let report = DrainReport {
            reason,
            open_at_start,
            cut,
            elapsed: start.elapsed(),
        };
        tracing::info!(
            phase = "exit",
            elapsed_ms = report.elapsed.as_millis() as u64,
            cut,
            "drain finished"
        );
        use crate::stats::{Counter, stats};
        stats().add(
            Counter::ConnectionsDrained,
            open_at_start.saturating_sub(cut) as u64,
        );
        stats().add(Counter::ConnectionsCut, cut as u64);
        crate::stats::observe("exuvia_drain_seconds", report.elapsed);
        crate::stats::gauge("exuvia_connections_at_handover", open_at_start as f64);
        report
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tracker {
    /// Tracks a connection; keep the guard alive while serving it. The tracker keeps a
    /// duplicate of the fd so it can cut the connection at the hard deadline. When the
    /// process is out of fds the connection is tracked without one (the drain still waits
    /// for it, but cannot cut it): refusing to serve a connection already accepted would
    /// turn a resource shortage into a failed request.
    pub fn track(&self, conn: &impl AsFd) -> io::Result<ConnGuard> {
        match conn.as_fd().try_clone_to_owned() {
            Ok(fd) => Ok(self.insert(Some(fd))),
            Err(e) if crate::listener::exhausted(&e) => {
                tracing::warn!(error = %e, "tracking a connection without a duplicate fd: it cannot be cut at the hard deadline");
                Ok(self.insert(None))
            }
            Err(e) => Err(e),
        }
    }

    /// Tracks work that has no fd (the hard deadline cannot cut it, only stop waiting).
    pub fn track_task(&self) -> ConnGuard {
        self.insert(None)
    }

    fn insert(&self, fd: Option<OwnedFd>) -> ConnGuard {
        let mut c = self.inner.lock();
        let id = c.next;
        c.next += 1;
        c.open.insert(id, fd);
        ConnGuard {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Connections currently tracked.
    pub fn active(&self) -> usize {
        self.inner.lock().open.len()
    }

    /// Whether the soft deadline has passed.
    pub fn should_finish(&self) -> bool {
        self.inner.finish.load(Ordering::Acquire)
    }

    /// Waits until no connection is left or `deadline` passes; `true` if none is left.
    fn wait_empty(&self, deadline: Instant) -> bool {
        let mut c = self.inner.lock();
        while !c.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = self
                .inner
                .changed
                .wait_timeout(c, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Runs the two deadlines, measured from now.
    pub(crate) fn drain(&self, reason: DrainReason, soft: Duration, hard: Duration) -> DrainReport {
        let start = Instant::now();
        let open_at_start = self.active();
        tracing::info!(
            phase = "drain",
            connections = open_at_start,
            "draining connections"
        );
        let mut cut = 0;
        if !self.wait_empty(start + soft) {
            self.inner.finish.store(true, Ordering::Release);
            tracing::info!(
                phase = "drain",
                connections = self.active(),
                "soft deadline: asking connections to finish"
            );
            if !self.wait_empty(start + hard.max(soft)) {
                let c = self.inner.lock();
                for fd in c.open.values().flatten() {
                    let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Both);
                    cut += 1;
                }
                drop(c);
                tracing::warn!(
                    phase = "drain",
                    cut,
                    "hard deadline: cut remaining connections"
                );
                // Give the service a moment to notice the cut connections and unwind.
                self.wait_empty(Instant::now() + Duration::from_secs(1));
            }
        }
        self.inner.finish.store(true, Ordering::Release);
        DrainReport::finished(reason, open_at_start, cut, start)
    }
}

impl ConnGuard {
    /// Whether the soft deadline has passed: finish the current request and close.
    pub fn should_finish(&self) -> bool {
        self.inner.finish.load(Ordering::Acquire)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.inner.lock().open.remove(&self.id);
        self.inner.changed.notify_all();
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("active", &self.active())
            .finish()
    }
}

impl std::fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnGuard").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn drains_fast_when_idle_and_cuts_at_hard_deadline() {
        let t = Tracker::default();
        let r = t.drain(DrainReason::Stopped, Duration::ZERO, Duration::from_secs(5));
        assert_eq!((r.open_at_start, r.cut), (0, 0));
        assert!(r.elapsed < Duration::from_secs(1));

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut conn, _) = l.accept().unwrap();
        let guard = t.track(&conn).unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf).unwrap_or(0);
            drop(guard);
            n
        });
        let r = t.drain(
            DrainReason::Upgraded,
            Duration::from_millis(50),
            Duration::from_millis(200),
        );
        assert_eq!((r.open_at_start, r.cut), (1, 1));
        assert!(t.should_finish());
        assert_eq!(reader.join().unwrap(), 0, "the cut connection reads EOF");
        assert_eq!(t.active(), 0);
    }
}
