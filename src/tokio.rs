//! The async API (feature `tokio`): accept streams that end at the handover, futures for
//! "upgrade requested" and "shutdown", and a drain built on `tokio-util`'s `TaskTracker`
//! and `CancellationToken`.
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! let ex = exuvia::tokio::Exuvia::start(exuvia::Exuvia::builder())?;
//! let listener = ex.listen_tcp("echo", "127.0.0.1:8080")?;
//! ex.ready()?;
//! while let Some((stream, _)) = listener.accept().await? {
//!     ex.connections().spawn(async move {
//!         let (r, mut w) = stream.into_split();
//!         let mut lines = BufReader::new(r).lines();
//!         while let Ok(Some(line)) = lines.next_line().await {
//!             if w.write_all(format!("{line}\n").as_bytes()).await.is_err() { break }
//!         }
//!     });
//! }
//! ex.drain().await; // returns once connections finished or were cut
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::tokio::io::unix::AsyncFd;
use ::tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::drain::DrainReport;
use crate::error::{Error, UpgradeError};
use crate::lifecycle::{DrainReason, OpenGuard, Phase, Slot};
use crate::manifest::FdKind;
use crate::{Builder, Upgraded};

/// The async handle; wraps the runtime-free [`crate::Exuvia`].
pub struct Exuvia {
    core: Arc<crate::Exuvia>,
    phase: watch::Receiver<Phase>,
    connections: Connections,
}

impl Exuvia {
    /// Starts exuvia (see [`Builder::start`]); must run inside a tokio runtime.
    pub fn start(builder: Builder) -> Result<Exuvia, Error> {
        let core = Arc::new(builder.start()?);
        let (tx, rx) = watch::channel(core.phase());
        let events = core
            .lifecycle()
            .events_fd()
            .try_clone_to_owned()
            .map_err(Error::io("duplicating eventfd"))?;
        // SAFETY: the AsyncFd owns this OwnedFd, so the fd stays open and unchanged while registered.
        let events =
            unsafe { AsyncFd::register_with_interest(events, ::tokio::io::Interest::READABLE) }
                .map_err(|e| Error::Io {
                    context: "registering eventfd with tokio",
                    source: e.into(),
                })?;
        let watched = core.clone();
        ::tokio::spawn(async move { forward_phases(events, watched, tx).await });
        Ok(Exuvia {
            core,
            phase: rx,
            connections: Connections::default(),
        })
    }

    /// The runtime-free handle (generation, state blob, sync API).
    pub fn core(&self) -> &crate::Exuvia {
        &self.core
    }

    /// 1 for a fresh start, n+1 for the successor of generation n.
    pub fn generation(&self) -> u64 {
        self.core.generation()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.core.phase()
    }

    /// See [`crate::Exuvia::ready`].
    pub fn ready(&self) -> Result<(), Error> {
        self.core.ready()
    }

    /// See [`crate::Exuvia::stop`].
    pub fn stop(&self) {
        self.core.stop()
    }

    /// Upgrades now and waits for the outcome.
    pub async fn upgrade(&self) -> Result<Upgraded, UpgradeError> {
        let core = self.core.clone();
        ::tokio::task::spawn_blocking(move || core.upgrade())
            .await
            .map_err(|_| UpgradeError::ShutDown)?
    }

    /// Resolves when an upgrade starts (by signal, API or control socket).
    pub async fn upgrade_requested(&self) {
        let mut rx = self.phase.clone();
        let _ = rx.wait_for(|p| *p == Phase::Upgrading).await;
    }

    /// Resolves when this generation starts draining, with the reason.
    pub async fn shutdown(&self) -> DrainReason {
        let mut rx = self.phase.clone();
        match rx
            .wait_for(|p| matches!(p, Phase::Draining(_)))
            .await
            .map(|p| *p)
        {
            Ok(Phase::Draining(r)) => r,
            _ => DrainReason::Stopped,
        }
    }

    /// Where to spawn connection tasks so the drain can wait for them.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// A TCP listener by name (see [`crate::Exuvia::listen_tcp`]).
    pub fn listen_tcp(
        &self,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> Result<Listener<::tokio::net::TcpListener>, Error> {
        self.listen_tcp_with(name, addr, |_| Ok(()))
    }

    /// A TCP listener with a hook to set options before `bind` on first creation.
    pub fn listen_tcp_with(
        &self,
        name: &str,
        addr: impl ToSocketAddrs,
        mut configure: impl FnMut(&socket2::Socket) -> io::Result<()>,
    ) -> Result<Listener<::tokio::net::TcpListener>, Error> {
        let fd = self
            .core
            .claim_inet(name, FdKind::Tcp, addr, &mut configure)?;
        let std = std::net::TcpListener::from(nonblocking(fd)?);
        let l = ::tokio::net::TcpListener::from_std(std)
            .map_err(Error::io("registering a listener with tokio"))?;
        Ok(Listener::new(l, self.core.lifecycle()))
    }

    /// A Unix stream listener by name (see [`crate::Exuvia::listen_unix`]).
    pub fn listen_unix(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<Listener<::tokio::net::UnixListener>, Error> {
        let fd = self.core.claim(name, FdKind::Unix, || {
            crate::sockets::unix(name, FdKind::Unix, path.as_ref(), &mut |_| Ok(()))
        })?;
        let std = std::os::unix::net::UnixListener::from(nonblocking(fd)?);
        let l = ::tokio::net::UnixListener::from_std(std)
            .map_err(Error::io("registering a listener with tokio"))?;
        Ok(Listener::new(l, self.core.lifecycle()))
    }

    /// A UDP socket by name.
    pub fn bind_udp(
        &self,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> Result<Listener<::tokio::net::UdpSocket>, Error> {
        let fd = self
            .core
            .claim_inet(name, FdKind::Udp, addr, &mut |_| Ok(()))?;
        let std = std::net::UdpSocket::from(nonblocking(fd)?);
        let s = ::tokio::net::UdpSocket::from_std(std)
            .map_err(Error::io("registering a socket with tokio"))?;
        Ok(Listener::new(s, self.core.lifecycle()))
    }

    /// Waits for the drain to begin, then for the connections: at the soft deadline
    /// [`Connections::finish_token`] is cancelled, at the hard deadline every task spawned
    /// with [`Connections::spawn`] is dropped (its connection closed).
    pub async fn drain(&self) -> DrainReport {
        let reason = self.shutdown().await;
        let (soft, hard) = self.core.drain_deadlines();
        let report = self.connections.drain(reason, soft, hard).await;
        let core = self.core.clone();
        let r = report.clone();
        let _ = ::tokio::task::spawn_blocking(move || core.report_drained(&r)).await;
        let life = self.core.lifecycle().clone();
        let wait = crate::lifecycle::CONTROL_ANSWER_WAIT;
        let _ = ::tokio::task::spawn_blocking(move || life.wait_control_answered(wait)).await;
        report
    }
}

async fn forward_phases(
    events: AsyncFd<OwnedFd>,
    core: Arc<crate::Exuvia>,
    tx: watch::Sender<Phase>,
) {
    loop {
        tx.send_replace(core.phase());
        let Ok(mut guard) = events.readable().await else {
            return;
        };
        crate::sys::eventfd_clear(events.get_ref().as_fd());
        guard.clear_ready();
        if tx.is_closed() {
            return;
        }
    }
}

fn nonblocking(fd: OwnedFd) -> Result<OwnedFd, Error> {
    socket2::SockRef::from(&fd)
        .set_nonblocking(true)
        .map_err(Error::io("setting O_NONBLOCK"))?;
    Ok(fd)
}

/// Connection tasks of this generation.
#[derive(Clone, Default)]
pub struct Connections {
    tracker: TaskTracker,
    finish: CancellationToken,
    cut: CancellationToken,
}

impl Connections {
    /// Spawns a connection task; it is dropped (closing its connection) at the hard deadline.
    pub fn spawn<F>(&self, fut: F) -> ::tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cut = self.cut.clone();
        self.tracker.spawn(async move {
            ::tokio::select! {
                _ = cut.cancelled() => {}
                _ = fut => {}
            }
        })
    }

    /// Cancelled at the soft deadline: finish the current request, close idle keep-alives,
    /// send GOAWAY.
    pub fn finish_token(&self) -> CancellationToken {
        self.finish.clone()
    }

    /// Tasks still running.
    pub fn active(&self) -> usize {
        self.tracker.len()
    }

    async fn drain(&self, reason: DrainReason, soft: Duration, hard: Duration) -> DrainReport {
        let start = Instant::now();
        let open_at_start = self.tracker.len();
        tracing::info!(
            phase = "drain",
            connections = open_at_start,
            "draining connections"
        );
        self.tracker.close();
        let mut cut = 0;
        if ::tokio::time::timeout(soft, self.tracker.wait())
            .await
            .is_err()
        {
            self.finish.cancel();
            tracing::info!(
                phase = "drain",
                connections = self.tracker.len(),
                "soft deadline: asking connections to finish"
            );
            if ::tokio::time::timeout(hard.saturating_sub(soft), self.tracker.wait())
                .await
                .is_err()
            {
                cut = self.tracker.len();
                self.cut.cancel();
                tracing::warn!(
                    phase = "drain",
                    cut,
                    "hard deadline: cut remaining connections"
                );
                let _ = ::tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
            }
        }
        self.finish.cancel();
        DrainReport::finished(reason, open_at_start, cut, start)
    }
}

/// An async listener (or UDP socket) that stops at the handover: `accept` returns `None`.
pub struct Listener<T> {
    slot: Arc<TokioSlot<T>>,
}

struct TokioSlot<T> {
    inner: Mutex<Option<Arc<(T, OpenGuard)>>>,
    stop: CancellationToken,
}

impl<T: Send + Sync> Slot for TokioSlot<T> {
    fn close(&self) {
        self.stop.cancel();
        // Pending accepts hold their own `Arc` until they observe the cancellation, which
        // happens on their next poll; then the socket closes and the open count drops.
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl<T: Send + Sync + 'static> Listener<T> {
    fn new(sock: T, life: &Arc<crate::lifecycle::Lifecycle>) -> Listener<T> {
        let slot = Arc::new(TokioSlot {
            inner: Mutex::new(Some(Arc::new((sock, OpenGuard::new(life))))),
            stop: CancellationToken::new(),
        });
        let as_slot: Arc<dyn Slot> = slot.clone();
        life.add_slot(Arc::downgrade(&as_slot));
        Listener { slot }
    }

    fn current(&self) -> Option<Arc<(T, OpenGuard)>> {
        self.slot
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn run<R, Fut>(&self, op: impl Fn(Arc<(T, OpenGuard)>) -> Fut) -> io::Result<Option<R>>
    where
        Fut: Future<Output = io::Result<R>>,
    {
        loop {
            let Some(sock) = self.current() else {
                return Ok(None);
            };
            ::tokio::select! {
                biased;
                _ = self.slot.stop.cancelled() => return Ok(None),
                r = op(sock) => match r {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => continue,
                    Err(e) => return Err(e),
                },
            }
        }
    }

    /// Cancelled when this generation stops accepting.
    pub fn stopped(&self) -> CancellationToken {
        self.slot.stop.clone()
    }
}

impl Listener<::tokio::net::TcpListener> {
    /// Accepts a connection; `Ok(None)` once this generation has stopped accepting.
    pub async fn accept(&self) -> io::Result<Option<(::tokio::net::TcpStream, SocketAddr)>> {
        self.run(|l| async move { l.0.accept().await }).await
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.current()
            .map(|l| l.0.local_addr())
            .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))
    }
}

impl Listener<::tokio::net::UnixListener> {
    /// Accepts a connection; `Ok(None)` once this generation has stopped accepting.
    pub async fn accept(&self) -> io::Result<Option<::tokio::net::UnixStream>> {
        self.run(|l| async move { l.0.accept().await.map(|(s, _)| s) })
            .await
    }
}

impl Listener<::tokio::net::UdpSocket> {
    /// Receives a datagram; `Ok(None)` once the successor has taken the socket over.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        let Some(sock) = self.current() else {
            return Ok(None);
        };
        ::tokio::select! {
            biased;
            _ = self.slot.stop.cancelled() => Ok(None),
            r = sock.0.recv_from(buf) => r.map(Some),
        }
    }

    /// Sends a datagram while this process still holds the socket.
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self.current() {
            Some(s) => s.0.send_to(buf, to).await,
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}
