//! `exuvia check -- COMMAND`: the service runs under `exuvia_testing::sim::Simulator`, a strict
//! stand-in for systemd, so a laptop or a CI runner without systemd gets the same verdict.
//!
//! The listeners are bound here and passed by socket activation, but — unlike a `.socket`
//! unit, whose copy in PID 1 would hide the mistake — no copy is kept: the service alone must
//! keep them open across a handover, or clients see refused and reset connections.
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exuvia_testing::load::Target;
use exuvia_testing::sim::{NotifyAccess, ServiceCommand, SimConfig, SimError, Simulator, State};
use nix::sys::signal::Signal;
use socket2::{Domain, SockAddr, Socket, Type};

use super::drive::{self, Schedule, Service};
use super::progress::Ui;
use super::report::{CheckReport, Quantiles, ReloadEntry, SCHEMA, StopEntry, ViolationEntry};

/// Grace on top of the unit's own reload timeout before we stop waiting ourselves.
const WAIT_GRACE: Duration = Duration::from_secs(5);
/// systemd's default `Backlog=` (SOMAXCONN): a handover must not overflow a small queue.
const BACKLOG: i32 = 4096;

/// `NAME=tcp:IP:PORT` or `NAME=unix:PATH`.
#[derive(Clone, Debug)]
pub struct ListenSpec {
    pub name: String,
    pub addr: Target,
}

impl std::str::FromStr for ListenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid listener {s:?}: use NAME=tcp:IP:PORT or NAME=unix:PATH, e.g. echo=tcp:127.0.0.1:8080"
            )
        };
        let (name, addr) = s.split_once('=').ok_or_else(bad)?;
        let valid = !name.is_empty()
            && name.len() <= 255
            && !name.contains(':')
            && !name.chars().any(|c| c.is_control() || c.is_whitespace());
        if !valid {
            return Err(bad());
        }
        Ok(ListenSpec {
            name: name.to_owned(),
            addr: addr.parse().map_err(|_| bad())?,
        })
    }
}

/// How each "reload" is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `systemctl reload` of a `Type=notify-reload` unit: the reload signal to the main pid.
    Signal,
    /// `systemctl restart`: stop the unit, start it again (the naive way).
    Restart,
}

/// Where the service's stdout and stderr go (stdin is always /dev/null, as under systemd).
#[derive(Clone, Debug)]
pub enum Output {
    Inherit,
    Null,
    File(PathBuf),
}

pub struct SimPlan {
    pub command: Vec<OsString>,
    pub listeners: Vec<ListenSpec>,
    pub target: Option<Target>,
    pub method: Method,
    pub notify_access: NotifyAccess,
    pub reload_signal: Signal,
    pub reload_timeout: Duration,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub output: Output,
}

/// Runs the whole check. `Err` is bad input or a service that could not be started: one
/// line saying what to do, with nothing left running.
pub fn run(plan: &SimPlan, sched: &Schedule, ui: &Ui) -> Result<CheckReport, String> {
    let Some(program) = plan.command.first() else {
        return Err("no command: put the service's command line after --, e.g. exuvia check --listen echo=tcp:127.0.0.1:0 -- ./myservice".into());
    };
    let mut bound = Vec::new();
    let mut created = Vec::new();
    let result = bind_all(&plan.listeners, &mut bound, &mut created)
        .and_then(|targets| check(plan, sched, ui, program, bound, targets));
    for p in created {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn check(
    plan: &SimPlan,
    sched: &Schedule,
    ui: &Ui,
    program: &OsString,
    bound: Vec<(String, OwnedFd)>,
    targets: Vec<Target>,
) -> Result<CheckReport, String> {
    let target = match (&plan.target, targets.first()) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => {
            return Err("nothing to load: give --listen NAME=ADDR (passed to the service) or --target ADDR (where it listens)".into());
        }
    };
    let output = match &plan.output {
        Output::Inherit => None,
        Output::Null => Some(File::options().write(true).open("/dev/null")),
        Output::File(p) => Some(File::create(p)),
    }
    .transpose()
    .map_err(|e| format!("cannot open the service log: {e}; pass a writable --service-log path"))?;
    let sim = Simulator::new(SimConfig {
        notify_access: plan.notify_access,
        reload_signal: plan.reload_signal as i32,
        reload_timeout: plan.reload_timeout,
        start_timeout: plan.start_timeout,
        stop_timeout: plan.stop_timeout,
        ..SimConfig::default()
    })
    .map_err(|e| format!("cannot set up the simulated systemd: {e}"))?;
    let kept = if plan.method == Method::Restart {
        bound
            .iter()
            .map(|(n, fd)| fd.try_clone().map(|fd| (n.clone(), fd)))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot duplicate a listener: {e}"))?
    } else {
        Vec::new()
    };
    let svc = SimService {
        sim,
        plan,
        kept,
        output: output.map(OwnedFd::from),
        ui,
    };
    let main = svc.start(bound).inspect_err(|_| svc.kill())?;
    ui.event(&format!(
        "{} is ready (MainPID {main}); loading {target}",
        program.to_string_lossy()
    ));
    let driven = drive::drive(sched, target.clone(), &svc, ui);
    let signal = Signal::SIGTERM;
    let already_dead = svc.sim.state() == State::Dead;
    let stop = svc.sim.stop(signal as i32, plan.stop_timeout);
    let driven = driven?;
    let mut extra = Vec::new();
    let stop = match stop {
        Ok(s) => Some(StopEntry {
            already_dead,
            signal: signal.as_str().to_owned(),
            duration: s.duration,
            sigkilled: s.sigkilled,
        }),
        Err(e) => {
            extra.push(format!(
                "stopping the service failed: {}",
                first_line(&e.to_string())
            ));
            None
        }
    };
    let peak = ui.peak().max(svc.processes().unwrap_or(0));
    let violations: Vec<ViolationEntry> = svc.sim.violations().iter().map(Into::into).collect();
    let durations = driven.completed_durations();
    let mut report = CheckReport {
        schema: SCHEMA,
        mode: "simulator",
        reload_method: match plan.method {
            Method::Signal => "signal",
            Method::Restart => "restart",
        },
        command: Some(
            plan.command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        ),
        unit: None,
        target: target.to_string(),
        pass: false,
        reasons: Vec::new(),
        reloads_requested: sched.reloads,
        main_pid_changes: driven.reloads.iter().filter(|r| r.main_pid_changed).count() as u32,
        reloads: driven.reloads,
        reload_duration: Quantiles::of(durations),
        violations,
        peak_processes: Some(peak),
        stop,
        load: driven.load,
        long_lived: driven.long,
    };
    report.judge();
    if let Some(why) = driven.gone {
        report.reasons.push(why);
    }
    if driven.interrupted {
        report.reasons.push("interrupted".into());
    }
    report.reasons.extend(extra);
    report.pass = report.reasons.is_empty();
    Ok(report)
}

/// Binds every listener; returns the load target of each (port 0 resolved).
fn bind_all(
    specs: &[ListenSpec],
    bound: &mut Vec<(String, OwnedFd)>,
    created: &mut Vec<PathBuf>,
) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for spec in specs {
        let fail = |e: io::Error, hint: &str| {
            format!(
                "cannot listen on {} for {}: {e}; {hint}",
                spec.addr, spec.name
            )
        };
        let (sock, target) = match &spec.addr {
            Target::Tcp(addr) => {
                let s = listen_tcp(*addr).map_err(|e| {
                    let hint = if e.kind() == io::ErrorKind::AddrInUse {
                        "pick a free port (or port 0 for any)"
                    } else {
                        "use a local address such as 127.0.0.1"
                    };
                    fail(e, hint)
                })?;
                let local = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .ok_or_else(|| format!("cannot read the address bound for {}", spec.name))?;
                (s, Target::Tcp(local))
            }
            Target::Unix(path) => {
                remove_stale(path).map_err(|e| fail(e, "remove the file or pick another path"))?;
                let s = listen_unix(path).map_err(|e| fail(e, "pick a writable path"))?;
                created.push(path.clone());
                (s, Target::Unix(path.clone()))
            }
        };
        bound.push((spec.name.clone(), sock.into()));
        targets.push(target);
    }
    Ok(targets)
}

fn listen_tcp(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s)
}

fn listen_unix(path: &Path) -> io::Result<Socket> {
    let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    s.bind(&SockAddr::unix(path)?)?;
    s.listen(BACKLOG)?;
    Ok(s)
}

/// A socket file nobody listens on is left over from an earlier run; anything else is not
/// ours to delete.
fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let in_use = || io::Error::new(io::ErrorKind::AddrInUse, "the path exists");
    if !meta.file_type().is_socket() {
        return Err(in_use());
    }
    match UnixStream::connect(path) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        _ => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "something is listening on it",
        )),
    }
}

struct SimService<'a> {
    sim: Simulator,
    plan: &'a SimPlan,
    /// Restart method only: our copies of the listeners, passed again on each start.
    kept: Vec<(String, OwnedFd)>,
    output: Option<OwnedFd>,
    ui: &'a Ui,
}

impl SimService<'_> {
    /// Starts the service and waits for its first `READY=1`.
    fn start(&self, listeners: Vec<(String, OwnedFd)>) -> Result<u32, String> {
        let program = self.plan.command[0].to_string_lossy().into_owned();
        let pid = self.spawn(listeners).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!(
                "cannot start {program}: not found; put the service's path after --, e.g. -- ./target/release/myservice"
            ),
            io::ErrorKind::PermissionDenied => {
                format!("cannot start {program}: permission denied; is it executable?")
            }
            _ => format!("cannot start {program}: {e}"),
        })?;
        let timeout = self.plan.start_timeout;
        self.sim.wait_ready(timeout + WAIT_GRACE).map_err(|e| match e {
            SimError::MainExited { exit, .. } => format!(
                "{program} (pid {pid}) exited ({exit}) before it sent READY=1; run it by hand to see why"
            ),
            SimError::Timeout { .. } => format!(
                "{program} sent no READY=1 within {timeout:?}; it must speak Type=notify (READY=1 to $NOTIFY_SOCKET) — raise --start-timeout if it is only slow"
            ),
            SimError::Violation(v) => match v.first() {
                Some(v) => format!(
                    "systemd would fail this start: {}: {} (datagram {:?})",
                    v.rule, v.detail, v.datagram
                ),
                None => "systemd would fail this start".into(),
            },
            e => format!("{program} did not start: {}", first_line(&e.to_string())),
        })?;
        Ok(self.sim.main_pid().unwrap_or(pid))
    }

    /// Spawns with stdin on /dev/null and stdout/stderr where `--service-log` says.
    ///
    /// The simulator's spawn inherits our stdio, so ours is pointed there for the moment of
    /// the fork, with the output lock held so our own progress lines do not go astray.
    fn spawn(&self, listeners: Vec<(String, OwnedFd)>) -> io::Result<u32> {
        let mut cmd = ServiceCommand::new(&self.plan.command[0]).args(&self.plan.command[1..]);
        for (name, fd) in listeners {
            cmd = cmd.listener(name, fd);
        }
        let _g = self.ui.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = io::stdout().flush();
        let null = File::open("/dev/null")?;
        let saved = Saved::take()?;
        let redirected = nix::unistd::dup2_stdin(&null).and_then(|()| match &self.output {
            Some(out) => {
                nix::unistd::dup2_stdout(out)?;
                nix::unistd::dup2_stderr(out)
            }
            None => Ok(()),
        });
        let spawned = redirected
            .map_err(io::Error::from)
            .and_then(|()| self.sim.spawn(cmd));
        saved.restore()?;
        spawned
    }

    /// Kills whatever the unit has (bad-input exits must leave nothing running).
    fn kill(&self) {
        let _ = self.sim.stop(libc::SIGKILL, Duration::from_secs(1));
    }

    fn reload_signal(&self, mut r: ReloadEntry) -> ReloadEntry {
        r.old_main_pid = self.sim.main_pid();
        let t0 = Instant::now();
        match self.sim.reload(self.plan.reload_timeout + WAIT_GRACE) {
            Ok(o) => {
                r.completed = true;
                r.duration = o.duration;
                r.old_main_pid = Some(o.old_main);
                r.new_main_pid = Some(o.new_main);
                r.status = o.status;
                r.main_pid_changed = o.old_main != o.new_main;
                r.ok = r.main_pid_changed;
                if !r.ok {
                    r = r.failed(
                        "no-main-pid-change",
                        format!(
                            "completed, but MainPID stayed {}: no new process took over",
                            o.old_main
                        ),
                    );
                }
            }
            Err(e) => {
                r.duration = t0.elapsed();
                r.new_main_pid = self.sim.main_pid();
                r = match e {
                    SimError::Timeout { .. } => r.failed(
                        "timeout",
                        format!(
                            "no RELOADING=1 + READY=1 within the reload timeout {:?} (unit {})",
                            self.plan.reload_timeout,
                            self.sim.state()
                        ),
                    ),
                    SimError::MainExited { pid, exit, .. } => r.failed(
                        "main-exited",
                        format!(
                            "main process {pid} exited ({exit}) during the reload, so systemd stops the unit"
                        ),
                    ),
                    e => r.failed("error", first_line(&e.to_string())),
                };
            }
        }
        r
    }

    fn restart(&self, mut r: ReloadEntry) -> ReloadEntry {
        r.old_main_pid = self.sim.main_pid();
        let t0 = Instant::now();
        if let Err(e) = self.sim.stop(libc::SIGTERM, self.plan.stop_timeout) {
            r.duration = t0.elapsed();
            return r.failed("error", format!("stop: {}", first_line(&e.to_string())));
        }
        let listeners = self
            .kept
            .iter()
            .map(|(n, fd)| fd.try_clone().map(|fd| (n.clone(), fd)))
            .collect::<io::Result<Vec<_>>>();
        let started = listeners
            .map_err(|e| e.to_string())
            .and_then(|l| self.start(l));
        r.duration = t0.elapsed();
        match started {
            Ok(pid) => {
                r.completed = true;
                r.new_main_pid = Some(pid);
                r.main_pid_changed = r.old_main_pid != Some(pid);
                r.ok = r.main_pid_changed;
                r
            }
            Err(e) => r.failed("timeout", e),
        }
    }
}

impl Service for SimService<'_> {
    fn reload(&self, r: ReloadEntry) -> ReloadEntry {
        match self.plan.method {
            Method::Signal => self.reload_signal(r),
            Method::Restart => self.restart(r),
        }
    }

    fn alive(&self) -> Result<(), String> {
        match self.sim.state() {
            State::Dead | State::Stopping => Err(format!(
                "the unit is {} (its main process exited)",
                self.sim.state()
            )),
            _ => Ok(()),
        }
    }

    fn processes(&self) -> Option<usize> {
        Some(self.sim.members().len())
    }
}

/// Our stdio, parked while the service's is in place.
struct Saved([OwnedFd; 3]);

impl Saved {
    fn take() -> io::Result<Saved> {
        // try_clone_to_owned is F_DUPFD_CLOEXEC: the parked copies leak into no child.
        Ok(Saved([
            io::stdin().as_fd().try_clone_to_owned()?,
            io::stdout().as_fd().try_clone_to_owned()?,
            io::stderr().as_fd().try_clone_to_owned()?,
        ]))
    }

    fn restore(self) -> io::Result<()> {
        let [i, o, e] = &self.0;
        nix::unistd::dup2_stdin(i.as_fd())?;
        nix::unistd::dup2_stdout(o.as_fd())?;
        nix::unistd::dup2_stderr(e.as_fd())?;
        Ok(())
    }
}

pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}
