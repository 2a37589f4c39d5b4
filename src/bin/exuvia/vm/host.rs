//! What `exuvia vm` needs from the host, and how it runs other programs there.
//!
//! Every program it starts runs in its own process group with a deadline, and is stopped
//! (SIGTERM to that group, then SIGKILL) when the deadline passes, when the user interrupts,
//! or when its guard is dropped on any early return: nothing it started outlives it. Ctrl-C
//! and SIGTERM are read from a signalfd (they are blocked in this process; children start
//! with an empty mask, which the standard library sets up) so the run winds down through
//! the same cleanup instead of dying with containers still up.
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

/// How long a stopped program gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
/// Bound on one package installation.
const APT_TIMEOUT: Duration = Duration::from_secs(900);

/// SIGINT/SIGTERM/SIGHUP, noticed instead of obeyed.
pub struct Interrupt {
    fd: Option<SignalFd>,
    hit: std::cell::Cell<bool>,
}

impl Interrupt {
    /// Must run before any thread starts, so that every thread has the signals blocked.
    pub fn install() -> Interrupt {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        let fd = set.thread_block().ok().and_then(|()| {
            SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
        });
        Interrupt {
            fd,
            hit: std::cell::Cell::new(false),
        }
    }

    pub fn hit(&self) -> bool {
        if !self.hit.get() && matches!(self.fd.as_ref().map(|f| f.read_signal()), Some(Ok(Some(_))))
        {
            self.hit.set(true);
        }
        self.hit.get()
    }
}

/// A started program; stopped with its whole process group when dropped.
pub struct Proc {
    child: Child,
    done: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` in a process group of its own.
    pub fn spawn(cmd: &mut Command) -> Result<Proc, String> {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {name}: {e}"))?;
        Ok(Proc { child, done: None })
    }

    /// Waits until it exits (`Some`), the deadline passes or the user interrupts (`None`,
    /// and the program is stopped).
    pub fn wait(&mut self, timeout: Duration, intr: &Interrupt) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.done = Some(st);
                return Some(st);
            }
            if Instant::now() >= deadline || intr.hit() {
                self.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the group, SIGKILL after the grace period; reaps the child.
    pub fn stop(&mut self) {
        if self.done.is_some() {
            return;
        }
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            // Once it is reaped its pid (our group id) may be reused: never signal after.
            if let Ok(Some(st)) = self.child.try_wait() {
                self.done = Some(st);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Not reaped yet, so the group id is still ours.
        let _ = killpg(pgid, Signal::SIGKILL);
        self.done = self.child.wait().ok();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a bounded run printed and how it ended (`status` is None after a timeout).
pub struct Output {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The last non-empty stderr lines, joined: what to show the user on failure.
    pub fn why(&self, lines: usize) -> String {
        let v: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let s = v[v.len().saturating_sub(lines)..].join("; ");
        match (self.status, s.is_empty()) {
            (None, true) => "timed out".into(),
            (None, false) => format!("timed out ({s})"),
            (Some(st), true) => st.to_string(),
            (Some(_), false) => s,
        }
    }
}

/// Runs `cmd` to the end with a deadline, capturing stdout and stderr.
pub fn run(cmd: &mut Command, timeout: Duration, intr: &Interrupt) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(cmd)?;
    // Drained on threads so a chatty child cannot block on a full pipe while we wait.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(p.child.stdout.take().map(|o| Box::new(o) as _));
    let err = drain(p.child.stderr.take().map(|e| Box::new(e) as _));
    let status = p.wait(timeout, intr);
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs `cmd` with stdout and stderr appended to `log`.
pub fn run_logged(
    cmd: &mut Command,
    log: &File,
    timeout: Duration,
    intr: &Interrupt,
) -> Result<Option<ExitStatus>, String> {
    let out = log
        .try_clone()
        .map_err(|e| format!("cannot use the log: {e}"))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot use the log: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut p = Proc::spawn(cmd)?;
    Ok(p.wait(timeout, intr))
}

/// Root, namespaces and a cgroup v2 hierarchy: checked before anything is built.
pub fn preconditions(intr: &Interrupt) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "needs root (systemd-nspawn, mmdebstrap and apt); run it with sudo or as root in CI"
                .into(),
        );
    }
    if which("unshare").is_some() {
        let out = run(
            Command::new("unshare").args([
                "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "true",
            ]),
            Duration::from_secs(20),
            intr,
        )?;
        if !out.ok() {
            return Err(format!(
                "cannot create namespaces here ({}); exuvia vm needs a VM or a privileged container (e.g. docker run --privileged)",
                out.why(1)
            ));
        }
    }
    if cgroup2_root().is_none() {
        return Err("no cgroup v2 hierarchy under /sys/fs/cgroup (or /sys/fs/cgroup/unified); a systemd guest needs one".into());
    }
    Ok(())
}

/// Where this host's cgroup v2 hierarchy is mounted (pure v2, or the hybrid layout).
pub fn cgroup2_root() -> Option<&'static Path> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.controllers").exists())
}

/// The full path of a program on PATH.
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Installs the Debian packages of `missing` (program, package) whose program is absent.
pub fn ensure_tools(missing: &[(&str, &str)], intr: &Interrupt) -> Result<(), String> {
    let present = |prog: &str| {
        if prog.starts_with('/') {
            Path::new(prog).exists()
        } else {
            which(prog).is_some()
        }
    };
    let pkgs: Vec<&str> = missing
        .iter()
        .filter(|(prog, _)| !present(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    if pkgs.is_empty() {
        return Ok(());
    }
    apt_install(&pkgs, &[], intr)
}

/// `apt-get install` (after an update if the first try fails), non-interactive and bounded.
/// `opts` are extra apt options (e.g. a private source list).
pub fn apt_install(pkgs: &[&str], opts: &[String], intr: &Interrupt) -> Result<(), String> {
    if which("apt-get").is_none() {
        return Err(format!(
            "missing tools and no apt-get to install them: install {} yourself",
            pkgs.join(" ")
        ));
    }
    eprintln!("exuvia vm: installing {}", pkgs.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(["-q", "-o", "DPkg::Lock::Timeout=300"])
            .args(opts)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c, APT_TIMEOUT, intr)
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend_from_slice(pkgs);
    if apt(&install)?.ok() {
        return Ok(());
    }
    let upd = apt(&["update"])?;
    let out = apt(&install)?;
    if out.ok() {
        return Ok(());
    }
    Err(format!(
        "cannot install {} with apt-get ({}{}); install them yourself",
        pkgs.join(" "),
        out.why(2),
        if upd.ok() {
            String::new()
        } else {
            format!("; apt-get update: {}", upd.why(1))
        }
    ))
}
