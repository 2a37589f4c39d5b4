//! The async listener: tokio's own socket behind a lock that the control thread empties at
//! the handover, so `accept` returns `None` from then on and the fd closes at once.
//!
//! The accept path costs what tokio's costs plus one uncontended lock: each poll borrows the
//! socket for the length of that poll only (nothing holds it across an `await`), and the
//! waiter that wakes a pending accept at the handover is registered only when the socket had
//! nothing ready — a busy loop never touches the stop token.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;

use super::accept;
use crate::lifecycle::{Lifecycle, OpenGuard, Slot};
use crate::sync::lock;

/// An async listener (or UDP socket) that stops at the handover: `accept` returns `None`.
pub struct Listener<T> {
    slot: Arc<TokioSlot<T>>,
}

struct TokioSlot<T> {
    /// `None` once handed over. Locked only inside one poll of one operation.
    inner: Mutex<Option<(T, OpenGuard)>>,
    stop: CancellationToken,
}

impl<T: Send + Sync> Slot for TokioSlot<T> {
    fn close(&self) {
        // Emptied before the cancel, so that an accept the cancel wakes finds no socket; a
        // poll in progress holds the lock for microseconds, then the fd closes right here.
        let sock = lock(&self.inner).take();
        drop(sock);
        self.stop.cancel();
    }
}

impl<T: Send + Sync + 'static> Listener<T> {
    pub(super) fn new(sock: T, life: &Arc<Lifecycle>) -> Listener<T> {
        let slot = Arc::new(TokioSlot {
            inner: Mutex::new(Some((sock, OpenGuard::new(life)))),
            stop: CancellationToken::new(),
        });
        let as_slot: Arc<dyn Slot> = slot.clone();
        life.add_slot(Arc::downgrade(&as_slot));
        Listener { slot }
    }

    /// Runs `f` on the socket, unless it was handed over.
    fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        lock(&self.slot.inner).as_ref().map(|(s, _)| f(s))
    }

    /// One operation: `Some` with its result, `None` once the socket was handed over.
    async fn once<R>(
        &self,
        mut op: impl FnMut(&T, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Option<io::Result<R>> {
        // Made only once the socket had nothing ready: even an unpolled one costs a waiter
        // list's bookkeeping when dropped.
        let mut stopped = pin!(None);
        std::future::poll_fn(|cx| {
            match lock(&self.slot.inner).as_ref() {
                None => return Poll::Ready(None),
                Some((s, _)) => {
                    if let Poll::Ready(r) = op(s, cx) {
                        return Poll::Ready(Some(r));
                    }
                }
            }
            // Nothing ready: the socket's readiness will wake us, or the handover will.
            self.until_stopped(stopped.as_mut(), cx)
        })
        .await
    }

    /// Accepts until one succeeds, this generation stops accepting, or the listener breaks:
    /// transient errors (see [`accept`]) are absorbed here so that no server ends on them.
    ///
    /// One future with one `poll_fn` (not a loop over [`Self::once`]), the back-off timer and
    /// the stop waiter made only when needed. A TCP accept costs ~2 120 user-space
    /// instructions, tokio's own ~2 110 (`benches/peer --instructions`); the counts move by
    /// ±25 from run to run and ~50 with code layout, so this form is not measurably cheaper
    /// than a loop over `once` — it is kept because it is one level of futures, not two.
    async fn run<R>(
        &self,
        mut op: impl FnMut(&T, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> io::Result<Option<R>> {
        let mut backoff = crate::listener::Backoff::default();
        let mut failures = 0u32;
        // Both made only when needed: a busy loop never touches the stop token or a timer.
        let mut stopped = pin!(None);
        let mut wait = pin!(None::<::tokio::time::Sleep>);
        std::future::poll_fn(|cx| {
            loop {
                if let Some(w) = wait.as_mut().as_pin_mut() {
                    // Backing off: no socket is borrowed, so a handover now closes it.
                    if w.poll(cx).is_pending() {
                        return self.until_stopped(stopped.as_mut(), cx).map(Ok);
                    }
                    wait.set(None);
                }
                let r = match lock(&self.slot.inner).as_ref() {
                    None => return Poll::Ready(Ok(None)),
                    Some((s, _)) => op(s, cx),
                };
                let e = match r {
                    Poll::Ready(Ok(v)) => {
                        if failures > 0 {
                            tracing::info!(failures, "accepting again after resource errors");
                        }
                        return Poll::Ready(Ok(Some(v)));
                    }
                    Poll::Ready(Err(e)) => e,
                    // The socket's readiness will wake us, or the handover will.
                    Poll::Pending => return self.until_stopped(stopped.as_mut(), cx).map(Ok),
                };
                match accept::classify(&e) {
                    accept::Kind::Connection => {
                        tracing::debug!(error = %e, "accept: a queued connection failed");
                    }
                    accept::Kind::Exhausted => {
                        failures += 1;
                        wait.set(Some(::tokio::time::sleep(backoff.next(&e))));
                    }
                    accept::Kind::Fatal => return Poll::Ready(Err(e)),
                }
            }
        })
        .await
    }

    /// `Ready(None)` once this generation stops accepting, else `Pending` with a waiter for
    /// that (registered on the first call only).
    fn until_stopped<'a, R>(
        &'a self,
        mut stopped: std::pin::Pin<&mut Option<tokio_util::sync::WaitForCancellationFuture<'a>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<R>> {
        if stopped.is_none() {
            stopped.set(Some(self.slot.stop.cancelled()));
        }
        match stopped.as_pin_mut() {
            Some(f) => f.poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }

    /// Cancelled when this generation stops accepting.
    pub fn stopped(&self) -> CancellationToken {
        self.slot.stop.clone()
    }
}

impl Listener<::tokio::net::TcpListener> {
    /// Accepts a connection; `Ok(None)` once this generation has stopped accepting.
    ///
    /// Transient errors never surface: a connection that died in the queue is skipped, and
    /// running out of fds or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) is logged and
    /// retried with a back-off of up to 0.5 s. An error returned here means the listener
    /// itself is broken.
    pub async fn accept(&self) -> io::Result<Option<(::tokio::net::TcpStream, SocketAddr)>> {
        self.run(|l, cx| l.poll_accept(cx)).await
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with(|l| l.local_addr())
            .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))
    }
}

impl Listener<::tokio::net::UnixListener> {
    /// Accepts a connection; `Ok(None)` once this generation has stopped accepting.
    /// Transient errors are absorbed as for TCP.
    pub async fn accept(&self) -> io::Result<Option<::tokio::net::UnixStream>> {
        self.run(|l, cx| l.poll_accept(cx).map_ok(|(s, _)| s)).await
    }
}

impl Listener<::tokio::net::UdpSocket> {
    /// Receives a datagram; `Ok(None)` once the successor has taken the socket over.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        // try_recv_from + poll_recv_ready is tokio's own `recv_from` minus the readiness future
        // it builds per call (`poll_recv_from` costs ~10 % more instructions per datagram).
        let op = |s: &::tokio::net::UdpSocket, cx: &mut Context<'_>| {
            let coop = std::task::ready!(::tokio::task::coop::poll_proceed(cx));
            loop {
                match s.try_recv_from(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = std::task::ready!(s.poll_recv_ready(cx)) {
                            return Poll::Ready(Err(e));
                        }
                    }
                    r => {
                        coop.made_progress();
                        return Poll::Ready(r);
                    }
                }
            }
        };
        self.once(op).await.transpose()
    }

    /// Sends a datagram while this process still holds the socket.
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.once(|s, cx| s.poll_send_to(cx, buf, to))
            .await
            .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))
    }
}

impl<T> std::fmt::Debug for Listener<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}
