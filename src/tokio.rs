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

use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::sync::watch;

use crate::drain::DrainReport;
use crate::error::{Error, UpgradeError};
use crate::lifecycle::{DrainReason, Phase};
use crate::manifest::FdKind;
use crate::{Builder, Upgraded};

mod accept;
mod connections;
mod handoff;
mod listener;

pub use connections::Connections;
pub use listener::Listener;

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
        let (soft, hard) = self.core.drain_deadlines();
        self.drain_within(soft, hard).await
    }

    /// [`drain`](Self::drain) with deadlines of the caller's choosing (the HTTP adapter has
    /// its own policy: a soft deadline of 0 s would close idle keep-alives mid-race).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) async fn drain_within(&self, soft: Duration, hard: Duration) -> DrainReport {
        let reason = self.shutdown().await;
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
