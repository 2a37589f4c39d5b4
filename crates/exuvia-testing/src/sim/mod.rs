//! A systemd protocol simulator for tests: a fake `NOTIFY_SOCKET` plus a supervisor that
//! enforces the rules of `Type=notify-reload`, `MAINPID=` handover, `NotifyAccess=` and socket
//! activation, and fails the test on any violation, quoting the offending datagram.
//!
//! # Why
//! The notify-reload protocol is easy to get subtly wrong, and systemd's reaction to most
//! mistakes is silence: a `RELOADING=1` without `MONOTONIC_USEC=` is ignored and
//! `systemctl reload` hangs for 90 s; a successor announcing itself under `NotifyAccess=main`
//! is ignored and the unit dies when the old process exits; a plain-forked successor becomes
//! an "alien" main process that is SIGKILLed on stop. Those bugs need a VM to see with a real
//! systemd. This module reproduces systemd's decisions (from `src/core/service.c`) in-process,
//! so any test can run a service under it — like Go tableflip's `testing` package, but with
//! the manager's side simulated too.
//!
//! # What it does
//! - Binds a unix datagram socket with `SO_PASSCRED` and records every datagram with the
//!   kernel-verified sender pid/uid and a CLOCK_MONOTONIC receive time ([`Message`]).
//! - [`Simulator::spawn`]s the service as systemd would: new session, default signal
//!   dispositions, `NOTIFY_SOCKET`, and listeners at fds 3.. with `LISTEN_FDS`,
//!   `LISTEN_FDNAMES` and an exact `LISTEN_PID`.
//! - Marks the test process `PR_SET_CHILD_SUBREAPER`, so double-forked successors re-parent
//!   to it exactly as they re-parent to PID 1. It reaps only unit members, by pidfd — never
//!   `waitpid(-1)` — so your own `Command` children are safe.
//! - Tracks unit membership (see the `unit` module docs for the approximation of a cgroup).
//! - Runs the state machine (`Dead → Start → Running ⇄ ReloadSignal → ReloadNotify →
//!   Running`, `Stopping`) and records each broken [`Rule`] as a [`Violation`].
//!
//! Requires Linux ≥ 5.4 (pidfds and `waitid(P_PIDFD)`).
//!
//! # Where it differs from systemd
//! - Membership approximates a cgroup (see `unit.rs`): a descendant that `setsid()`s and
//!   re-parents before it is ever seen is missed.
//! - `MAINPID=` naming a non-member is refused even from root (systemd accepts root's).
//! - No control processes (`ExecReload=`, `ExecStop=`), so `NotifyAccess=exec` acts as `main`;
//!   no `Restart=`; no `LISTEN_PIDFDID`; `BARRIER=1` is acknowledged by closing its fd.
//! - The reload-handler check (systemd ≥ 262, `SigCgt`/`SigBlk` of the main thread) runs on
//!   every `READY=1` that makes the unit `Running` and before each reload signal; only the
//!   first start fails on it (see [`SimConfig::fail_start_without_reload_handler`]).
//! - The process becomes a child subreaper while any simulator exists; orphans of unrelated
//!   code in the test process then become its zombies too (they are not reaped).
//!
//! # Rules
//! See [`Rule`]: each variant is one mistake, named by what systemd would do about it.
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use exuvia_testing::sim::{ServiceCommand, SimConfig, Simulator};
//!
//! let sim = Simulator::new(SimConfig {
//!     reload_timeout: Duration::from_secs(5),
//!     ..SimConfig::default()
//! })?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! sim.spawn(ServiceCommand::new("target/debug/myservice").listener("http", listener))?;
//! sim.wait_ready(Duration::from_secs(5))?;
//! let reload = sim.reload(Duration::from_secs(10))?; // systemctl reload
//! assert_ne!(reload.old_main, reload.new_main); // a fork+exec handover happened
//! sim.stop(libc::SIGTERM, Duration::from_secs(5))?;
//! sim.assert_no_violations(); // panics listing every offending datagram
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod event;
mod machine;
mod proto;
mod socket;
mod spawn;
mod types;
mod unit;

#[cfg(test)]
mod tests;

#[cfg(feature = "fuzzing")]
pub(crate) use proto::parse as parse_notify;

pub use proto::{Message, Rule, Violation};
pub use spawn::ServiceCommand;
pub use types::{
    ExitEvent, NotifyAccess, ReloadInitiator, ReloadOutcome, ReloadRecord, ReloadResult, SimConfig,
    SimError, State, StopOutcome,
};
pub use unit::Exit;

use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use event::{event_loop, wait_members};
use machine::{Inner, StartFailure};
use proto::monotonic_now;
use socket::NotifySocket;

/// Extra time `stop` waits after its SIGKILL for the kernel to tear processes down.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How many simulators want the process to be a subreaper.
static SUBREAPERS: Mutex<usize> = Mutex::new(0);

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
    wake: EventFd,
    socket: NotifySocket,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not hide the evidence we collected.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }
}

/// A simulated systemd unit with its notify socket. See the [module docs](self).
pub struct Simulator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds the notify socket, makes this process a child subreaper and starts the event
    /// thread.
    pub fn new(cfg: SimConfig) -> io::Result<Simulator> {
        let socket = NotifySocket::bind(cfg.socket_path.as_deref())?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        {
            let mut n = SUBREAPERS.lock().unwrap_or_else(|e| e.into_inner());
            if *n == 0 {
                nix::sys::prctl::set_child_subreaper(true)?;
            }
            *n += 1;
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::new(cfg)),
            changed: Condvar::new(),
            wake,
            socket,
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("exuvia-sim".into())
            .spawn(move || event_loop(&for_thread));
        match thread {
            Ok(t) => Ok(Simulator {
                shared,
                thread: Some(t),
            }),
            Err(e) => {
                release_subreaper();
                Err(e)
            }
        }
    }

    /// The path to put in `NOTIFY_SOCKET` (done for you by [`spawn`](Self::spawn)).
    pub fn notify_socket_path(&self) -> &Path {
        self.shared.socket.path()
    }

    /// Starts the service (`ExecStart=`); it becomes the main process, state `Start`.
    ///
    /// Fails if the unit is not `Dead`, or if `execve` fails (the error is the child's errno).
    pub fn spawn(&self, cmd: ServiceCommand) -> io::Result<u32> {
        let mut g = self.shared.lock();
        if g.state != State::Dead {
            return Err(io::Error::other(format!("unit is {:?}, not Dead", g.state)));
        }
        // Under the lock, so the event thread cannot judge the child's first datagram before
        // we know it is the main process.
        let pid = spawn::spawn(cmd, self.notify_socket_path())?;
        // setsid() makes the child's session id its pid.
        g.unit.sessions.push(pid);
        g.unit.add(pid);
        g.spawned = true;
        g.begin_start(pid);
        drop(g);
        self.shared.wake();
        Ok(pid)
    }

    /// Supervises a process started elsewhere (it and its descendants form the unit). When
    /// the unit is `Dead` this starts it (state `Start`); otherwise it replaces the main pid,
    /// as a root `MAINPID=` would. Such processes are not killed on drop.
    pub fn set_main_pid(&self, pid: u32) -> io::Result<()> {
        let mut g = self.shared.lock();
        if !g.unit.add(pid) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("pid {pid}"),
            ));
        }
        if g.state == State::Dead {
            g.begin_start(pid);
        } else {
            g.main_pid = Some(pid);
        }
        drop(g);
        self.shared.wake();
        Ok(())
    }

    /// The current main pid.
    pub fn main_pid(&self) -> Option<u32> {
        self.shared.lock().main_pid
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.lock().state
    }

    /// Last `STATUS=`.
    pub fn status(&self) -> Option<String> {
        self.shared.lock().status.clone()
    }

    /// Last `ERRNO=`.
    pub fn errno(&self) -> Option<i32> {
        self.shared.lock().errno
    }

    /// Number of `WATCHDOG=1` pings.
    pub fn watchdog_pings(&self) -> u64 {
        self.shared.lock().watchdog_pings
    }

    /// Last `MAINPIDFDID=`.
    pub fn main_pidfd_id(&self) -> Option<u64> {
        self.shared.lock().main_pidfd_id
    }

    /// Names of the fds held in the fd store (`FDSTORE=1`, up to `fdstore_max`).
    pub fn stored_fd_names(&self) -> Vec<String> {
        self.shared
            .lock()
            .fd_store
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every datagram received so far, authorised or not.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.lock().messages.clone()
    }

    /// Every violation so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.lock().violations.clone()
    }

    /// Every observed exit of a unit member.
    pub fn exits(&self) -> Vec<ExitEvent> {
        self.shared.lock().exits.clone()
    }

    /// Every reload, finished or in progress.
    pub fn reloads(&self) -> Vec<ReloadRecord> {
        self.shared.lock().reloads.clone()
    }

    /// Pids currently counted as unit members.
    pub fn members(&self) -> Vec<u32> {
        self.shared.lock().unit.members.keys().copied().collect()
    }

    /// Panics, listing every violation with its datagram, if there was any. This is the
    /// "fail the test" entry point.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "systemd protocol violations ({}):{}",
            v.len(),
            proto::list(&v)
        );
    }

    /// Waits until `check` returns `Some`, or `timeout` passes (then `Timeout` naming `what`).
    fn wait<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&mut Inner) -> Option<Result<T, SimError>>,
    ) -> Result<T, SimError> {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.lock();
        loop {
            if let Some(r) = check(&mut g) {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SimError::Timeout {
                    what: format!("{what} (caller's {timeout:?})"),
                    state: g.state,
                    violations: g.violations.clone(),
                });
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the first `READY=1`. Errors tell why the start failed.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), SimError> {
        self.wait(timeout, "READY=1", |g| match g.state {
            State::Start => None,
            State::Running | State::ReloadSignal | State::ReloadNotify => Some(Ok(())),
            State::Stopping | State::Dead => Some(Err(match g.start_failure.clone() {
                Some(StartFailure::Protocol(v)) => SimError::Violation(vec![v]),
                Some(StartFailure::MainExited(pid, exit)) => SimError::MainExited {
                    pid,
                    exit,
                    during: "start",
                    violations: g.violations.clone(),
                },
                Some(StartFailure::Timeout) => SimError::Timeout {
                    what: format!("READY=1 (unit's start timeout {:?})", g.cfg.start_timeout),
                    state: g.state,
                    violations: g.violations.clone(),
                },
                None => SimError::InvalidState {
                    state: g.state,
                    detail: "not starting".into(),
                },
            })),
        })
    }

    /// Waits until the unit is in `state`.
    pub fn wait_state(&self, state: State, timeout: Duration) -> Result<(), SimError> {
        self.wait(timeout, &format!("state {state:?}"), |g| {
            (g.state == state).then_some(Ok(()))
        })
    }

    /// Waits until a violation of `rule` is recorded (returns the first one).
    pub fn wait_violation(&self, rule: Rule, timeout: Duration) -> Result<Violation, SimError> {
        self.wait(timeout, &format!("a {rule:?} violation"), |g| {
            g.violations
                .iter()
                .find(|v| v.rule == rule)
                .cloned()
                .map(Ok)
        })
    }

    /// Waits until unit member `pid` has exited.
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> Result<ExitEvent, SimError> {
        self.wait(timeout, &format!("pid {pid} to exit"), |g| {
            g.exits.iter().find(|e| e.pid == pid).cloned().map(Ok)
        })
    }

    /// Waits until a received datagram matches `pred` (returns the first match), e.g. to
    /// synchronise with a service before acting.
    pub fn wait_message(
        &self,
        mut pred: impl FnMut(&Message) -> bool,
        timeout: Duration,
    ) -> Result<Message, SimError> {
        self.wait(timeout, "a matching datagram", |g| {
            g.messages.iter().find(|m| pred(m)).cloned().map(Ok)
        })
    }

    /// `systemctl reload`: sends the reload signal to the main process and waits until the
    /// reload completes (`Ok`), times out under `reload_timeout`, or the main process exits.
    /// Violations that systemd would shrug off are returned in the outcome and kept in
    /// [`violations`](Self::violations).
    pub fn reload(&self, timeout: Duration) -> Result<ReloadOutcome, SimError> {
        let mut g = self.shared.lock();
        if g.state != State::Running {
            return Err(SimError::InvalidState {
                state: g.state,
                detail: "reload needs a running unit".into(),
            });
        }
        let Some(main) = g.main_pid else {
            return Err(SimError::InvalidState {
                state: g.state,
                detail: "no main process".into(),
            });
        };
        // systemd ≥ 262 warns here; the signal is still sent, so the test sees the outcome.
        g.check_reload_handler(None);
        g.begin_reload(ReloadInitiator::Manager, monotonic_now());
        let index = g.reloads.len() - 1;
        g.state = State::ReloadSignal;
        let sent = g
            .unit
            .members
            .get(&main)
            .map(|fd| unit::pidfd_signal(fd, g.cfg.reload_signal))
            .unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::ESRCH)));
        if let Err(e) = sent {
            // The exit will be noticed by the event loop; report it now.
            return Err(SimError::Io(e));
        }
        drop(g);
        self.shared.wake();
        self.wait(timeout, "reload completion", |g| {
            let r = &g.reloads[index];
            let violations = g.violations[r.first_violation..].to_vec();
            Some(match r.result? {
                ReloadResult::Done => Ok(ReloadOutcome {
                    duration: r.end.unwrap_or(r.begin).saturating_sub(r.begin),
                    old_main: main,
                    new_main: r.new_main.unwrap_or(main),
                    status: r.status.clone(),
                    violations,
                }),
                ReloadResult::Timeout => Err(SimError::Timeout {
                    what: format!(
                        "reload completion (unit's reload timeout {:?})",
                        g.cfg.reload_timeout
                    ),
                    state: g.state,
                    violations,
                }),
                ReloadResult::MainExited => {
                    let exit = g
                        .exits
                        .iter()
                        .rev()
                        .find(|e| e.was_main)
                        .map(|e| (e.pid, e.exit))
                        .unwrap_or((main, Exit::Unknown));
                    Err(SimError::MainExited {
                        pid: exit.0,
                        exit: exit.1,
                        during: "reload",
                        violations,
                    })
                }
                ReloadResult::Stopped => Err(SimError::InvalidState {
                    state: g.state,
                    detail: "the unit began stopping during the reload".into(),
                }),
            })
        })
    }

    /// `systemctl stop` with `KillMode=control-group`: sends `signal` to every unit member,
    /// SIGKILLs what is left after `timeout`, and waits until all members are gone (reaping
    /// them).
    pub fn stop(&self, signal: i32, timeout: Duration) -> Result<StopOutcome, SimError> {
        let begin = monotonic_now();
        let mut g = self.shared.lock();
        let first_exit = g.exits.len();
        if g.state != State::Dead {
            g.sigkilled.clear();
            g.enter_stop(signal, timeout);
        }
        drop(g);
        self.shared.wake();
        self.wait(timeout + KILL_GRACE, "all unit members to exit", |g| {
            (g.state == State::Dead).then(|| {
                Ok(StopOutcome {
                    duration: g
                        .exits
                        .last()
                        .map(|e| e.at.saturating_sub(begin))
                        .unwrap_or_default(),
                    sigkilled: g.sigkilled.clone(),
                    exits: g.exits[first_exit..].to_vec(),
                })
            })
        })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        {
            self.shared.lock().shutdown = true;
        }
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut g = self.shared.lock();
        if g.spawned {
            g.unit.scan();
            g.unit.signal_all(libc::SIGKILL);
        }
        // Reap what we killed (and whatever of ours already died), bounded in time.
        let deadline = Instant::now() + KILL_GRACE;
        while g.spawned && !g.unit.members.is_empty() && Instant::now() < deadline {
            let (pids, exited) = wait_members(&g, Duration::from_millis(100));
            for (pid, ready) in pids.into_iter().zip(exited) {
                if ready {
                    g.on_exit(pid);
                }
            }
        }
        g.unit.reap_orphans();
        drop(g);
        release_subreaper();
    }
}

fn release_subreaper() {
    let mut n = SUBREAPERS.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(1);
    if *n == 0 {
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}
