//! The service's handle: declare sockets by name, say `ready`, upgrade, drain. The methods
//! for hooks and the hand-off of live connections are in `hooks.rs` and `handoff.rs` here.

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use socket2::Socket;

use crate::config::Config;
use crate::control::CONTROL_NAME;
use crate::drain::{DrainReport, Tracker};
use crate::driver::{Driver, Inputs, Shared};
use crate::env::StartEnv;
use crate::error::{Error, UpgradeError};
use crate::fds::{Origin, Registry};
use crate::lifecycle::{Lifecycle, Phase};
use crate::listener::Listener;
use crate::manifest::FdKind;
use crate::notify::{Notifier, Silent};
use crate::request::{Request, Upgraded, Waiter};
use crate::sockets;

mod handoff;
mod hooks;

/// Configures and starts exuvia. Defaults: upgrade on SIGHUP, stop on SIGTERM/SIGINT,
/// 60 s for a successor to become ready, drain with a soft deadline of 0 s (ask connections
/// to finish at once) and a hard deadline of 30 s, at most 4 generations draining.
///
/// The deadlines can come from the unit instead: `EXUVIA_READY_TIMEOUT`, `EXUVIA_DRAIN_SOFT`
/// and `EXUVIA_DRAIN_HARD` (systemd time spans, e.g. `Environment=EXUVIA_DRAIN_HARD=10s`)
/// win over the builder, so the unit's `TimeoutStartSec=`/`TimeoutStopSec=` and the
/// service's own deadlines have one source (`exuvia unit` writes both).
#[derive(Clone, Debug, Default)]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    pub(crate) fn hooks_mut(&mut self) -> &mut crate::hooks::Hooks {
        &mut self.cfg.hooks
    }

    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.cfg
    }

    /// The signal that triggers an upgrade (`None`: only the API and control socket).
    pub fn upgrade_signal(mut self, sig: Option<i32>) -> Self {
        self.cfg.upgrade_signal = sig;
        self
    }

    /// The signals that start a drain without a successor.
    pub fn stop_signals(mut self, sigs: &[i32]) -> Self {
        self.cfg.stop_signals = sigs.to_vec();
        self
    }

    /// How long a successor may take to call `ready()` before it is killed.
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.cfg.ready_timeout = d;
        self
    }

    /// Drain deadlines, measured from the handover (or stop): at `soft` connections are asked
    /// to finish, at `hard` they are cut.
    pub fn drain(mut self, soft: Duration, hard: Duration) -> Self {
        self.cfg.drain_soft = soft;
        self.cfg.drain_hard = hard.max(soft);
        self
    }

    /// How many old generations may drain at once; beyond it the oldest is cut.
    pub fn max_draining(mut self, n: usize) -> Self {
        self.cfg.max_draining = n.max(1);
        self
    }

    /// The successor's executable (default: the path this process was started with).
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.executable = Some(path.into());
        self
    }

    /// The successor's arguments, without `argv[0]` (default: this process's).
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.cfg.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// A pid file each generation rewrites atomically when it takes over.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.pid_file = Some(path.into());
        self
    }

    /// A Unix control socket for synchronous upgrades (`exuvia reload --wait`).
    pub fn control_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.control_socket = Some(path.into());
        self
    }

    /// Keep registered fds in systemd's fd store so a restart or crash keeps the sockets
    /// (needs `FileDescriptorStoreMax=` in the unit).
    pub fn fd_store(mut self, on: bool) -> Self {
        self.cfg.fd_store = on;
        self
    }

    /// Reads the environment, takes over from a predecessor if there is one, installs the
    /// signal handlers and starts the control thread. Call it early, before other threads.
    pub fn start(self) -> Result<Exuvia, Error> {
        let mut cfg = self.cfg;
        cfg.start = StartEnv::capture();
        cfg.apply_env_deadlines()?;
        let life = Lifecycle::new().map_err(Error::io("creating eventfds"))?;
        let mut registry = Registry::default();
        let (generation, draining, predecessor, state) = match cfg.start.handover.clone() {
            Some(var) => {
                let mut p = crate::predecessor::take_over(&var, &mut registry)?;
                let state = p.state.take();
                (p.generation, p.draining.clone(), Some(p), state)
            }
            None => {
                take_activated(&cfg.start, &mut registry)?;
                (1, Vec::new(), None, None)
            }
        };
        let mut sigs: Vec<i32> = cfg.stop_signals.clone();
        sigs.extend(cfg.upgrade_signal);
        let signals =
            crate::sys::signals::install(&sigs).map_err(Error::io("installing signal handlers"))?;
        let notifier = notifier(&cfg);
        let control = match &cfg.control_socket {
            Some(path) => {
                let (fd, _) = registry.claim_or_create(CONTROL_NAME, FdKind::Unix, || {
                    sockets::unix(CONTROL_NAME, FdKind::Unix, path, &mut |_| Ok(()))
                })?;
                let l = UnixListener::from(fd);
                l.set_nonblocking(true)
                    .map_err(Error::io("configuring the control socket"))?;
                Some(l)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            life,
            registry: Mutex::new(registry),
            next_state: Mutex::new(None),
            board: crate::handoff::Board::new().map_err(Error::io("creating an eventfd"))?,
            adopters: crate::handoff::Adopters::new(cfg.adopt_limits.0, cfg.adopt_limits.1),
        });
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(crate::sys::eventfd().map_err(Error::io("creating eventfd"))?);
        let cfg = Arc::new(cfg);
        let driver = Driver::new(Inputs {
            cfg: cfg.clone(),
            shared: shared.clone(),
            notifier,
            signals,
            requests: rx,
            request_tx: tx.clone(),
            wake: wake.clone(),
            generation,
            draining,
            predecessor,
            control,
        });
        std::thread::Builder::new()
            .name("exuvia".into())
            .spawn(move || driver.run())
            .map_err(Error::io("starting the control thread"))?;
        tracing::info!(generation, pid = std::process::id(), "exuvia started");
        crate::stats::gauge("exuvia_generation", generation as f64);
        Ok(Exuvia {
            cfg,
            shared,
            tx,
            wake,
            generation,
            state,
            tracker: Tracker::default(),
        })
    }
}

fn notifier(cfg: &Config) -> Box<dyn Notifier> {
    #[cfg(feature = "systemd")]
    if let Some(n) = crate::systemd::SdNotifier::from_env(&cfg.start) {
        return Box::new(n);
    }
    let _ = cfg;
    Box::new(Silent)
}

fn take_activated(env: &StartEnv, registry: &mut Registry) -> Result<(), Error> {
    #[cfg(feature = "systemd")]
    for (name, fd) in crate::systemd::activation::receive(env)? {
        if !registry.inherit(name.clone(), None, fd, Origin::Systemd) {
            tracing::warn!(
                name,
                "systemd passed several fds with the same name; only the first is used"
            );
        }
    }
    #[cfg(not(feature = "systemd"))]
    let _ = (env, registry, Origin::Systemd);
    Ok(())
}

/// The running generation's handle.
pub struct Exuvia {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    wake: Arc<OwnedFd>,
    generation: u64,
    state: Option<Vec<u8>>,
    tracker: Tracker,
}

impl Exuvia {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// 1 for a fresh start, n+1 for the successor of generation n.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The state blob the previous generation left with [`set_state`](Self::set_state).
    pub fn inherited_state(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }

    /// An opaque blob for the next generation (sent with the manifest).
    pub fn set_state(&self, blob: Vec<u8>) {
        *crate::sync::lock(&self.shared.next_state) = Some(Arc::new(blob));
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.shared.life.phase()
    }

    pub(crate) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.shared.life
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn drain_deadlines(&self) -> (Duration, Duration) {
        (self.cfg.drain_soft, self.cfg.drain_hard)
    }

    /// Claims the inherited fd called `name` or creates one with `create`, keeping a
    /// duplicate for the next generation.
    pub(crate) fn claim(
        &self,
        name: &str,
        kind: FdKind,
        create: impl FnOnce() -> Result<OwnedFd, Error>,
    ) -> Result<OwnedFd, Error> {
        let mut reg = self.shared.registry();
        let (fd, origin) = reg.claim_or_create(name, kind, create)?;
        match origin {
            Some(o) => tracing::info!(name, %kind, from = ?o, "inherited"),
            None => tracing::info!(name, %kind, "created"),
        }
        Ok(fd)
    }

    pub(crate) fn claim_inet(
        &self,
        name: &str,
        kind: FdKind,
        addr: impl ToSocketAddrs,
        configure: sockets::Configure<'_>,
    ) -> Result<OwnedFd, Error> {
        let resolve = |a: &dyn Fn() -> io::Result<Option<SocketAddr>>| {
            a().and_then(|o| {
                o.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing")
                })
            })
        };
        let fd = self.claim(name, kind, || {
            let addr =
                resolve(&|| addr.to_socket_addrs().map(|mut i| i.next())).map_err(|source| {
                    Error::Create {
                        name: name.to_owned(),
                        kind,
                        addr: "(unresolvable)".into(),
                        source,
                    }
                })?;
            sockets::inet(name, kind, addr, configure)
        })?;
        Ok(fd)
    }

    fn wrap<T: From<OwnedFd> + AsFd + Send + Sync + 'static>(
        &self,
        fd: OwnedFd,
    ) -> Result<Listener<T>, Error> {
        Ok(Listener::new(nonblocking(T::from(fd))?, self.lifecycle()))
    }

    /// A TCP listener named `name`: inherited if the previous generation (or systemd) has
    /// one by that name, else bound to `addr`. A port 0 keeps the port it first got.
    pub fn listen_tcp(
        &self,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> Result<Listener<TcpListener>, Error> {
        self.listen_tcp_with(name, addr, |_| Ok(()))
    }

    /// Like [`listen_tcp`](Self::listen_tcp), with a hook to set socket options before
    /// `bind` on first creation.
    pub fn listen_tcp_with(
        &self,
        name: &str,
        addr: impl ToSocketAddrs,
        mut configure: impl FnMut(&Socket) -> io::Result<()>,
    ) -> Result<Listener<TcpListener>, Error> {
        let fd = self.claim_inet(name, FdKind::Tcp, addr, &mut configure)?;
        self.wrap::<TcpListener>(fd)
    }

    /// A Unix stream listener at `path` (a stale socket file nobody listens on is replaced).
    pub fn listen_unix(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<Listener<UnixListener>, Error> {
        let fd = self.claim(name, FdKind::Unix, || {
            sockets::unix(name, FdKind::Unix, path.as_ref(), &mut |_| Ok(()))
        })?;
        self.wrap::<UnixListener>(fd)
    }

    /// A Unix seqpacket listener at `path`.
    pub fn listen_unix_seqpacket(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<Listener<Socket>, Error> {
        let fd = self.claim(name, FdKind::UnixSeqpacket, || {
            sockets::unix(name, FdKind::UnixSeqpacket, path.as_ref(), &mut |_| Ok(()))
        })?;
        self.wrap::<Socket>(fd)
    }

    /// A UDP socket named `name`.
    pub fn bind_udp(
        &self,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> Result<Listener<UdpSocket>, Error> {
        let fd = self.claim_inet(name, FdKind::Udp, addr, &mut |_| Ok(()))?;
        self.wrap::<UdpSocket>(fd)
    }

    /// A Unix datagram socket bound at `path`.
    pub fn bind_unix_datagram(
        &self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<Listener<UnixDatagram>, Error> {
        let fd = self.claim(name, FdKind::UnixDatagram, || {
            sockets::unix(name, FdKind::UnixDatagram, path.as_ref(), &mut |_| Ok(()))
        })?;
        self.wrap::<UnixDatagram>(fd)
    }

    /// Any other fd the successor should get (a memfd, a pipe, an eventfd…).
    pub fn register_fd(
        &self,
        name: &str,
        create: impl FnOnce() -> io::Result<OwnedFd>,
    ) -> Result<OwnedFd, Error> {
        self.claim(name, FdKind::Fd, || {
            create().map_err(Error::io("creating a registered fd"))
        })
    }

    /// Initialisation is done. A successor tells the old process, which then hands over;
    /// the first generation tells systemd (`READY=1`). Inherited fds not claimed by now
    /// are closed.
    pub fn ready(&self) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        self.request(Request::Ready(tx))?;
        rx.recv().map_err(|_| Error::ShutDown)?
    }

    /// Upgrades now and waits for the outcome. The old process keeps serving if it fails.
    pub fn upgrade(&self) -> Result<Upgraded, UpgradeError> {
        let (tx, rx) = mpsc::channel();
        self.request(Request::Upgrade(Waiter::Api(tx)))
            .map_err(|_| UpgradeError::ShutDown)?;
        rx.recv().map_err(|_| UpgradeError::ShutDown)?
    }

    /// Stops accepting and starts draining, as the stop signal does.
    pub fn stop(&self) {
        let _ = self.request(Request::Stop);
    }

    /// Hands the drain's results to the control loop, which passes them to the successor
    /// (bounded: the process is about to exit).
    pub(crate) fn report_drained(&self, report: &DrainReport) {
        let (tx, rx) = mpsc::channel();
        if self.request(Request::Drained(report.clone(), tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }

    fn request(&self, r: Request) -> Result<(), Error> {
        self.tx.send(r).map_err(|_| Error::ShutDown)?;
        crate::sys::eventfd_signal(self.wake.as_fd());
        Ok(())
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The connection tracker the blocking drain waits for.
    pub fn tracker(&self) -> Tracker {
        self.tracker.clone()
    }

    /// Blocks until this generation drains (after a handover or stop), then waits for the
    /// tracked connections with the soft and hard deadlines. Return from `main` afterwards.
    pub fn drain(&self) -> DrainReport {
        let reason = self.shared.life.wait_draining();
        let report = self
            .tracker
            .drain(reason, self.cfg.drain_soft, self.cfg.drain_hard);
        self.report_drained(&report);
        self.shared
            .life
            .wait_control_answered(crate::lifecycle::CONTROL_ANSWER_WAIT);
        report
    }
}

impl Drop for Exuvia {
    fn drop(&mut self) {
        let _ = self.request(Request::Shutdown);
    }
}

impl std::fmt::Debug for Exuvia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exuvia")
            .field("generation", &self.generation)
            .field("phase", &self.phase())
            .finish()
    }
}

fn nonblocking<T: AsFd>(t: T) -> Result<T, Error> {
    // Exuvia's sockets are always non-blocking: the flag lives on the open file description
    // shared with the other generation, so both must agree, and both poll before accepting.
    socket2::SockRef::from(&t)
        .set_nonblocking(true)
        .map_err(Error::io("setting O_NONBLOCK"))?;
    Ok(t)
}
