//! Starting a service the way systemd's `ExecStart=` does: own session, clean signal state,
//! `NOTIFY_SOCKET`, and socket activation with an exact `LISTEN_PID`.
//!
//! `std::process::Command` cannot do this soundly: `LISTEN_PID` must be the child's own pid,
//! which is only known after `fork`, and setting env vars in the forked child of a threaded
//! process is not async-signal-safe. `Command::pre_exec` also runs after std created its
//! internal exec-status pipe, whose fd number may collide with the 3.. range we must fill. So
//! this module forks by hand: everything (argv, envp with a fixed-width slot for the pid
//! digits, listener fds parked at high numbers, the status pipe) is prepared before `fork`,
//! and the child only calls async-signal-safe functions before `execve`.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Variables a service must not inherit from the test process: they describe *its* manager.
const MANAGER_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "MAINPID",
];

const LISTEN_PID: &[u8] = b"LISTEN_PID=";
/// u32::MAX has 10 digits; the slot also holds the NUL.
const PID_DIGITS: usize = 10;

/// What to run as the service's `ExecStart=`.
///
/// ```no_run
/// use exuvia_testing::sim::ServiceCommand;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let cmd = ServiceCommand::new("/usr/bin/python3")
///     .arg("service.py")
///     .env("RUST_LOG", "debug")
///     .listener("http", listener); // arrives as fd 3, LISTEN_FDNAMES=http
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ServiceCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_clear: bool,
    listeners: Vec<(String, OwnedFd)>,
}

impl ServiceCommand {
    /// `program` is looked up in `PATH` unless it contains a `/`.
    pub fn new(program: impl AsRef<OsStr>) -> ServiceCommand {
        ServiceCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            listeners: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ServiceCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> ServiceCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (overrides an inherited one).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ServiceCommand {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Starts from an empty environment instead of the test process's (minus the
    /// manager variables, which are never inherited).
    pub fn env_clear(mut self) -> ServiceCommand {
        self.env_clear = true;
        self
    }

    /// Passes a listening socket by socket activation, in call order from fd 3, with `name` in
    /// `LISTEN_FDNAMES`. Pass `listener.try_clone()?` to keep your own copy.
    pub fn listener(mut self, name: impl Into<String>, fd: impl Into<OwnedFd>) -> ServiceCommand {
        self.listeners.push((name.into(), fd.into()));
        self
    }

    /// Passes several listening sockets (duplicated, the caller keeps its fds).
    pub fn listeners(mut self, fds: &[(String, OwnedFd)]) -> io::Result<ServiceCommand> {
        for (name, fd) in fds {
            self.listeners.push((name.clone(), fd.try_clone()?));
        }
        Ok(self)
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| invalid("argument or environment contains a NUL byte"))
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in PATH", program.to_string_lossy()),
            )
        })
}

/// Moves `fd` to a number ≥ `min` with close-on-exec set.
fn dup_high(fd: impl AsFd, min: RawFd) -> io::Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that only we know about.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Forks and execs `cmd`; returns the child's pid once `execve` succeeded.
pub(crate) fn spawn(cmd: ServiceCommand, notify_socket: &Path) -> io::Result<u32> {
    let n = cmd.listeners.len();
    for (name, _) in &cmd.listeners {
        if name.is_empty()
            || name.len() > 255
            || name.contains(':')
            || name.chars().any(char::is_control)
        {
            return Err(invalid(
                "listener names must be 1-255 printable chars without ':'",
            ));
        }
    }
    let n_fds = RawFd::try_from(n).map_err(|_| invalid("too many listeners"))?;
    let first_free = 3 + n_fds;

    let path = cstring(resolve(&cmd.program)?.as_os_str().as_bytes())?;
    let argv_owned: Vec<CString> = std::iter::once(&cmd.program)
        .chain(&cmd.args)
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;

    let mut env: Vec<(OsString, OsString)> = if cmd.env_clear {
        Vec::new()
    } else {
        std::env::vars_os().collect()
    };
    env.retain(|(k, _)| !MANAGER_VARS.iter().any(|m| k == m));
    for (k, v) in cmd.env {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    env.push(("NOTIFY_SOCKET".into(), notify_socket.as_os_str().to_owned()));
    if n > 0 {
        env.push(("LISTEN_FDS".into(), n.to_string().into()));
        let names: Vec<&str> = cmd
            .listeners
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        env.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    }
    let envp_owned: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<io::Result<_>>()?;
    // The pid slot: written by the child, so it lives in a buffer we only touch through `slot`.
    let mut pid_entry = vec![0u8; LISTEN_PID.len() + PID_DIGITS + 1];
    pid_entry[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
    let slot: *mut u8 = pid_entry.as_mut_ptr();

    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_owned.iter().map(|c| c.as_ptr()).collect();
    if n > 0 {
        envp.push(slot.cast_const().cast());
    }
    envp.push(std::ptr::null());

    // Park listeners and the status pipe above the 3.. range so dup2 cannot clobber them.
    let high: Vec<OwnedFd> = cmd
        .listeners
        .iter()
        .map(|(_, fd)| dup_high(fd, first_free))
        .collect::<io::Result<_>>()?;
    let high_raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let (status_r, low_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let status_w = dup_high(&low_w, first_free)?;
    // Every copy of the write end must be gone from the parent, or the read below never
    // sees EOF.
    drop(low_w);

    // SAFETY: fork is sound here because the child branch only runs `exec_child`, which uses
    // async-signal-safe calls on memory prepared above, and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see exec_child's contract.
        unsafe {
            exec_child(
                &high_raw,
                first_free,
                status_w.as_raw_fd(),
                slot,
                n > 0,
                path.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        }
    }
    drop(status_w);
    drop(high);
    let pid_u32 = u32::try_from(pid).map_err(|_| io::Error::other("fork returned a bad pid"))?;

    let mut errno = [0u8; 4];
    let mut reader = std::fs::File::from(status_r);
    let mut got = 0;
    while got < errno.len() {
        match reader.read(&mut errno[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        // EOF: the status pipe was closed by a successful execve.
        return Ok(pid_u32);
    }
    // The child failed before exec and is exiting; reap it so it does not linger as a zombie.
    // waitpid on this exact pid cannot steal anyone else's status: only we know it.
    let mut st = 0;
    // SAFETY: plain waitpid on our own child with a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
}

/// The child half of `spawn`. Never returns.
///
/// # Safety
/// Must be called only in a freshly forked child. All pointers must point to memory prepared
/// before the fork (`path`, `argv`, `envp` NUL-terminated, `slot` with room for
/// `LISTEN_PID=` + 10 digits + NUL). Only async-signal-safe functions are used: no allocation,
/// no locks.
#[allow(clippy::too_many_arguments)]
unsafe fn exec_child(
    high: &[RawFd],
    first_free: RawFd,
    status_w: RawFd,
    slot: *mut u8,
    listen: bool,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> ! {
    // SAFETY: per this function's contract every call below is async-signal-safe and every
    // pointer refers to memory prepared before the fork.
    unsafe {
        let fail = |status_w: RawFd| -> ! {
            let errno = (*libc::__errno_location()).to_ne_bytes();
            libc::write(status_w, errno.as_ptr().cast(), errno.len());
            libc::_exit(127)
        };
        // systemd makes every service a session leader; the session is also how the simulator
        // recognises re-parented descendants as unit members.
        if libc::setsid() < 0 {
            fail(status_w);
        }
        for (i, &fd) in high.iter().enumerate() {
            // dup2 clears FD_CLOEXEC on the target, so exactly these survive exec.
            if libc::dup2(fd, 3 + i as RawFd) < 0 {
                fail(status_w);
            }
        }
        // Nothing else of the test process may leak into the service (best effort: the kernel
        // may predate close_range, and everything Rust opens is CLOEXEC anyway).
        libc::syscall(
            libc::SYS_close_range,
            first_free,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // Clean signal state like systemd (reset_all_signal_handlers/reset_signal_mask);
        // the Rust runtime ignores SIGPIPE, which exec would otherwise inherit.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if listen {
            write_pid(slot.add(LISTEN_PID.len()), libc::getpid() as u32);
        }
        libc::execve(path, argv, envp);
        fail(status_w)
    }
}

/// Writes `pid` in decimal followed by NUL, without allocating.
///
/// # Safety
/// `out` must be valid for `PID_DIGITS + 1` bytes.
unsafe fn write_pid(out: *mut u8, pid: u32) {
    let mut digits = [0u8; PID_DIGITS];
    let mut n = pid;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: i < len ≤ PID_DIGITS, within the caller's guarantee.
        unsafe { *out.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: len ≤ PID_DIGITS, so the NUL lands inside the slot.
    unsafe { *out.add(len) = 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_pid_formats_decimal() {
        for pid in [0u32, 7, 10, 4_194_304, u32::MAX] {
            let mut buf = [0xffu8; PID_DIGITS + 1];
            // SAFETY: buf has PID_DIGITS + 1 bytes.
            unsafe { write_pid(buf.as_mut_ptr(), pid) };
            let end = buf.iter().position(|&b| b == 0).expect("NUL");
            assert_eq!(&buf[..end], pid.to_string().as_bytes());
        }
    }

    #[test]
    fn spawn_reports_exec_failure() {
        let err = spawn(
            ServiceCommand::new("/nonexistent/exuvia-no-such-binary"),
            Path::new("/tmp/none"),
        )
        .expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
