//! The one corner with raw syscalls.
//!
//! Everything else in exuvia works with `OwnedFd`, `socket2::Socket` and std types. What
//! lives here either has no safe wrapper in nix/std (pidfds, `close_range`, the
//! async-signal-safe code that runs between `fork` and `exec`) or must not allocate
//! because it runs in a forked child of a multi-threaded process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `CLOCK_MONOTONIC` in µs: what `MONOTONIC_USEC=` needs (never wall-clock time).
pub(crate) fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// Sets or clears `FD_CLOEXEC`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
    let flags = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Duplicates `fd` to the lowest free number `>= min`, with `FD_CLOEXEC` set.
pub(crate) fn dup_cloexec_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, fcntl};
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `pidfd_open(2)`: a handle on a process that cannot be confused with a recycled pid.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a non-negative return is a new fd we own.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above, the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process behind `pidfd`, never a recycled pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo is allowed and means "like kill(2)".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the process behind `pidfd` has exited (a pidfd polls readable on exit).
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    matches!(poll_one(pidfd, Some(Duration::ZERO)), Ok(true))
}

/// Waits until `fd` is readable (or hung up); `Ok(false)` on timeout.
pub(crate) fn poll_one(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ready = poll_many(&[fd], timeout)?;
    Ok(ready[0])
}

/// Waits until any of `fds` is readable or hung up; returns which ones are.
pub(crate) fn poll_many(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Round up so a 0.4 ms remainder does not become a busy 0 ms poll.
        Some(d) => PollTimeout::try_from(d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    loop {
        match poll(&mut pfds, timeout) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// An eventfd used as a level-triggered flag ("accepting has stopped") or a wake-up counter.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    Ok(OwnedFd::from(efd))
}

/// Adds one to an eventfd counter, waking every poller.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    // An overflowing counter (EAGAIN) is still readable, which is all the waiters need.
    let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
}

/// Drains an eventfd counter so the next poll waits for a fresh signal.
pub(crate) fn eventfd_clear(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = nix::unistd::read(fd, &mut buf);
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`): together
/// with the pid it names a process uniquely, which lets a successor find draining
/// ancestors it has no pidfd for. Also says whether the process has exited (a zombie).
fn process_stat(pid: i32) -> io::Result<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat");
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(malformed)?;
    let mut fields = rest.split_whitespace();
    let zombie = fields.next() == Some("Z");
    let start = fields
        .nth(18)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    Ok((start, zombie))
}

/// See [`process_stat`].
pub(crate) fn process_start_time(pid: i32) -> io::Result<u64> {
    process_stat(pid).map(|(start, _)| start)
}

/// Opens a pidfd for `pid` only if it is still running and is the process that started at
/// `start_time` (an exited generation waiting to be reaped does not count).
pub(crate) fn pidfd_for(pid: i32, start_time: u64) -> Option<OwnedFd> {
    let fd = pidfd_open(pid).ok()?;
    // Checked after opening: if the start time matches now, the pidfd pins that very process.
    let (start, zombie) = process_stat(pid).ok()?;
    (start == start_time && !zombie).then_some(fd)
}

/// Kills a process group (the successor and anything it started), then the leader by pidfd.
pub(crate) fn kill_successor(pid: i32, pidfd: BorrowedFd<'_>) {
    // The group id equals the successor's pid because it called setpgid(0, 0) before exec; a
    // group id is not reused while any member lives, so this cannot hit a stranger's group.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = pidfd_send_signal(pidfd, libc::SIGKILL);
}

/// What the intermediate process of a double fork needs, prepared before `fork` so that the
/// code between fork and exec allocates nothing.
pub(crate) struct DoubleFork {
    /// `(source, target)`: each source (CLOEXEC, numbered above every target) is dup2'd to
    /// its target, which clears CLOEXEC on the target only.
    pub(crate) moves: Vec<(RawFd, RawFd)>,
    /// First fd number that the successor must not inherit.
    pub(crate) keep_below: RawFd,
    /// A socket of its own (CLOEXEC, so the successor never has it) on which the
    /// intermediate reports the grandchild: on the handover channel the report could arrive
    /// after a fast successor's `ready` and be mistaken for it.
    pub(crate) report: RawFd,
}

impl DoubleFork {
    /// Runs in the child of `fork` (std's `pre_exec`). Only async-signal-safe calls.
    ///
    /// # Safety
    /// Must only be called between `fork` and `exec` in the forked child.
    pub(crate) unsafe fn run_in_child(&self) -> io::Result<()> {
        for &(src, dst) in &self.moves {
            // SAFETY: dup2 is async-signal-safe; both numbers are valid in this child.
            if unsafe { libc::dup2(src, dst) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Everything from `keep_below` up is closed at exec; CLOEXEC (not a close) keeps
        // std's exec-error pipe working.
        // SAFETY: close_range is async-signal-safe and only changes descriptor flags.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                self.keep_below as u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fork is permitted here: this child has a single thread.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // The successor: its own process group, so a failed upgrade can kill what it started.
            // SAFETY: setpgid is async-signal-safe.
            unsafe { libc::setpgid(0, 0) };
            return Ok(());
        }
        // The intermediate: report the grandchild (with a pidfd, race-free) and vanish, so the
        // successor is re-parented to the service manager (or subreaper) at once.
        // SAFETY: only async-signal-safe syscalls on stack memory, then _exit.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as RawFd;
            send_pid_report(self.report, pid, pidfd);
            libc::_exit(0)
        }
    }
}

/// Sends `pid` (4 bytes) with `pidfd` attached as SCM_RIGHTS; no allocation.
///
/// # Safety
/// Async-signal-safe; `channel` must be a socket.
unsafe fn send_pid_report(channel: RawFd, pid: libc::pid_t, pidfd: RawFd) {
    let bytes = pid.to_ne_bytes();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid "empty" header that we fill below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if pidfd >= 0 {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic; the buffer holds CMSG_SPACE(4).
        unsafe {
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(4) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, pidfd);
        }
    }
    // SAFETY: msg points at live stack buffers for the duration of the call.
    unsafe { libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL) };
}

/// Receives the intermediate's report: the successor's pid and, normally, its pidfd.
pub(crate) fn recv_pid_report(channel: BorrowedFd<'_>) -> io::Result<(i32, Option<OwnedFd>)> {
    let mut buf = [0u8; 4];
    let got = recv_with_fds(channel, &mut buf, 1)?;
    if got.len != 4 || got.data_truncated || got.fds_truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed spawn report from the intermediate process",
        ));
    }
    Ok((i32::from_ne_bytes(buf), got.fds.into_iter().next()))
}

/// For the reload client (`crate::reload_client`): on SIGTERM, write `note` to stderr and
/// exit 0 — systemd sends SIGTERM to `ExecReload=` when a stop replaces the reload, and any
/// other end would mark the stopped unit failed.
pub(crate) fn exit_zero_on_sigterm(note: &'static [u8]) -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    static NOTE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    static NOTE_LEN: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn on_term(_: libc::c_int) {
        let (p, n) = (NOTE.load(Ordering::SeqCst), NOTE_LEN.load(Ordering::SeqCst));
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `p..p+n` is a &'static slice.
        unsafe {
            if !p.is_null() {
                libc::write(2, p.cast(), n);
            }
            libc::_exit(0);
        }
    }
    NOTE_LEN.store(note.len(), Ordering::SeqCst);
    NOTE.store(note.as_ptr().cast_mut(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_term),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only performs async-signal-safe work.
    unsafe { sigaction(Signal::SIGTERM, &action) }?;
    Ok(())
}

/// Self-pipe for signals: the handler writes the signal number, the control loop reads it.
pub(crate) mod signals {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_signal(sig: libc::c_int) {
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            // SAFETY: write(2) is async-signal-safe; errno is saved and restored around it.
            unsafe {
                let errno = *libc::__errno_location();
                libc::write(fd, (&b as *const u8).cast(), 1);
                *libc::__errno_location() = errno;
            }
        }
    }

    /// Installs handlers for `sigs` that write into a fresh pipe; returns its read end.
    /// Installing a handler (rather than blocking) is what systemd ≥ 262 checks for before
    /// it accepts `READY=1`.
    pub(crate) fn install(sigs: &[i32]) -> io::Result<OwnedFd> {
        use nix::fcntl::OFlag;
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let old = PIPE_WRITE.swap(w.as_raw_fd(), Ordering::SeqCst);
        // The write end lives for the rest of the process: a handler may run at any time.
        std::mem::forget(w);
        if old >= 0 {
            // SAFETY: `old` was a write end leaked by an earlier install; nothing else uses it now.
            drop(unsafe { OwnedFd::from_raw_fd(old) });
        }
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for &s in sigs {
            let sig = Signal::try_from(s)?;
            // SAFETY: the handler only performs async-signal-safe work.
            unsafe { sigaction(sig, &action) }?;
        }
        Ok(r)
    }

    /// Reads pending signal numbers from the pipe.
    pub(crate) fn drain(fd: BorrowedFd<'_>) -> Vec<i32> {
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        while let Ok(n) = nix::unistd::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf[..n].iter().map(|&b| b as i32));
            if n < buf.len() {
                break;
            }
        }
        out
    }
}

/// What [`recv_with_fds`] got.
pub(crate) struct Received {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
    /// More fds were attached than asked for, or the kernel could not install them all.
    pub fds_truncated: bool,
    /// The message did not fit the buffer.
    pub data_truncated: bool,
}

/// `recvmsg(2)` without blocking, taking up to `max_fds` `SCM_RIGHTS` fds (CLOEXEC).
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Received> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    // Room for every fd one message can carry, even when fewer are wanted: the kernel
    // installs what fits and flags the rest as truncated (we then close what came).
    let mut cmsg = nix::cmsg_space!([RawFd; 253]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel installed this fd for us with SCM_RIGHTS; we own it now.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        fds_truncated: msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > max_fds,
        data_truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        fds,
    })
}

/// Whether an fd is open in this process and, if so, whether it is close-on-exec.
fn fd_flags(fd: RawFd) -> Option<bool> {
    // SAFETY: F_GETFD on an arbitrary number only reads flags; EBADF means closed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    (flags >= 0).then_some(flags & libc::FD_CLOEXEC != 0)
}

/// Takes the fds a parent placed at `first..first + n` before `exec` (systemd's socket
/// activation, or a format-1 predecessor). Everything is checked through borrows first and
/// nothing is owned unless every check passes, so a wrong count never closes an fd that
/// belongs to somebody else in this process (a runtime's epoll fd, say):
/// - the fd is open;
/// - its `FD_CLOEXEC` is clear: an fd survives `exec` only without it, while std, tokio and
///   this crate open every fd of their own with it — a set flag means "opened here";
/// - `check(i, fd)` (the caller's kind check) accepts it.
///
/// On success each fd is owned and marked CLOEXEC again; on error nothing was touched.
///
/// # Safety
/// The caller's parent must have placed these numbers for this process (the protocol that
/// announced them says so), and nothing in this process may have taken ownership of them yet.
pub(crate) unsafe fn adopt_inherited(
    first: RawFd,
    n: usize,
    check: impl Fn(usize, BorrowedFd<'_>) -> Result<(), String>,
) -> Result<Vec<OwnedFd>, (RawFd, String)> {
    let numbers = || (0..n).map(|i| (i, first.saturating_add(i as RawFd)));
    for (i, fd) in numbers() {
        match fd_flags(fd) {
            None => return Err((fd, "is not open".into())),
            Some(true) => {
                return Err((
                    fd,
                    "was not inherited (it is close-on-exec: this process opened it itself)".into(),
                ));
            }
            Some(false) => {}
        }
        // SAFETY: open (checked just above) and only borrowed for the duration of the check.
        check(i, unsafe { BorrowedFd::borrow_raw(fd) }).map_err(|why| (fd, why))?;
    }
    let mut out = Vec::with_capacity(n);
    for (_, fd) in numbers() {
        // SAFETY: the caller guarantees these numbers were handed to this process and are not
        // owned yet; every one was checked open and inherited above.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        set_cloexec(owned.as_fd(), true).map_err(|e| (fd, e.to_string()))?;
        out.push(owned);
    }
    Ok(out)
}
