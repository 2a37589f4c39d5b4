//! Blocking listeners that stop accepting the moment the handover happens.
//!
//! A blocked `accept(2)` cannot be interrupted without `shutdown(2)`, and shutting down a
//! listening socket shared with the successor (and with systemd) would break it for them.
//! So every wait polls the socket *and* the lifecycle's stop eventfd; once that fires,
//! `accept` returns `None` and the control thread drops this process's copy of the socket.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::lifecycle::{Lifecycle, OpenGuard, Slot};

/// A listener (or datagram socket) owned by exuvia's lifecycle. Share it between acceptor
/// threads with `Arc`; `accept` takes `&self`.
pub struct Listener<T> {
    slot: Arc<SyncSlot<T>>,
}

struct SyncSlot<T> {
    inner: RwLock<Option<(T, OpenGuard)>>,
    life: Arc<Lifecycle>,
}

impl<T: Send + Sync> Slot for SyncSlot<T> {
    fn close(&self) {
        // Acceptors hold the read lock only while polling, and the stop eventfd has just
        // woken them, so this write lock is taken within microseconds.
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

type Guard<'a, T> = RwLockReadGuard<'a, Option<(T, OpenGuard)>>;

impl<T: AsFd + Send + Sync + 'static> Listener<T> {
    pub(crate) fn new(sock: T, life: &Arc<Lifecycle>) -> Listener<T> {
        let slot = Arc::new(SyncSlot {
            inner: RwLock::new(Some((sock, OpenGuard::new(life)))),
            life: life.clone(),
        });
        let weak: std::sync::Weak<dyn Slot> = Arc::downgrade(&(slot.clone() as Arc<dyn Slot>));
        life.add_slot(weak);
        Listener { slot }
    }

    /// Runs `op` until it succeeds, accepting stops, or the socket breaks. The socket is
    /// tried first and polled (next to the stop eventfd) only when it has nothing ready: a
    /// busy server makes one system call per accept, as a plain one does.
    fn with_io<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<Option<R>> {
        let mut backoff = Backoff::default();
        loop {
            let guard: Guard<'_, T> = self.slot.inner.read().unwrap_or_else(|e| e.into_inner());
            let Some((sock, _)) = guard.as_ref() else {
                return Ok(None);
            };
            match op(sock) {
                Ok(r) => return Ok(Some(r)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fds: [BorrowedFd<'_>; 2] = [sock.as_fd(), self.slot.life.stop_fd()];
                    if crate::sys::poll_many(&fds, None)?[1] {
                        return Ok(None);
                    }
                }
                Err(e) if retry(&e) => continue,
                Err(e) if exhausted(&e) => {
                    drop(guard);
                    backoff.wait(self.slot.life.stop_fd(), &e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `f` on the socket, unless it was already closed by the handover.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.slot
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(s, _)| f(s))
    }

    /// Whether this process still holds the socket.
    pub fn is_open(&self) -> bool {
        self.with(|_| ()).is_some()
    }
}

/// Errors after which the next accept can succeed (another process took the connection,
/// or the client gave up before we got to it).
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

/// The process or the system ran out of something (fds, buffers, memory) that closing
/// connections gives back: waiting is right, ending the accept loop never is — the
/// connection stays in the backlog until then.
pub(crate) fn exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Waits between accepts that failed for want of resources: 5 ms doubling to 500 ms, woken
/// early by the handover, logged once per second at most.
#[derive(Default)]
pub(crate) struct Backoff {
    delay: Option<Duration>,
    logged: Option<Instant>,
}

impl Backoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(5);
    pub(crate) const MAX: Duration = Duration::from_millis(500);

    /// The next delay (and whether to log now).
    pub(crate) fn next(&mut self, e: &io::Error) -> Duration {
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.delay = Some(delay);
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.logged = Some(Instant::now());
            tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "accept failed for want of resources; waiting, the connection stays queued");
        }
        delay
    }

    fn wait(&mut self, stop: BorrowedFd<'_>, e: &io::Error) {
        let delay = self.next(e);
        let _ = crate::sys::poll_one(stop, Some(delay));
    }
}

impl Listener<TcpListener> {
    /// Accepts a connection; `Ok(None)` once this generation has stopped accepting.
    pub fn accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        self.with_io(|l| l.accept())
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with(|l| l.local_addr())
            .unwrap_or_else(|| Err(closed()))
    }
}

impl Listener<UnixListener> {
    /// Accepts a connection; `Ok(None)` once this generation has stopped accepting.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        self.with_io(|l| l.accept().map(|(s, _)| s))
    }
}

impl Listener<socket2::Socket> {
    /// Accepts a seqpacket connection; `Ok(None)` once this generation has stopped accepting.
    pub fn accept(&self) -> io::Result<Option<socket2::Socket>> {
        self.with_io(|l| l.accept().map(|(s, _)| s))
    }
}

impl Listener<UdpSocket> {
    /// Receives a datagram; `Ok(None)` once the successor has taken the socket over.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        self.with_io(|s| s.recv_from(buf))
    }

    /// Sends a datagram while this process still holds the socket.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.with(|s| s.send_to(buf, to))
            .unwrap_or_else(|| Err(closed()))
    }
}

impl Listener<UnixDatagram> {
    /// Receives a datagram; `Ok(None)` once the successor has taken the socket over.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.with_io(|s| s.recv(buf))
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was handed over to the next generation",
    )
}

impl<T> std::fmt::Debug for Listener<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}
