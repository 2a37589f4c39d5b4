//! Sending to `$NOTIFY_SOCKET`, written here: libsystemd's `notify` sends with a blocking
//! `sendmsg`, so a manager that stops reading (or a flood of `WATCHDOG=1`) would freeze the
//! control loop; it also re-reads the environment on every call and cannot wait on a
//! `BARRIER=1`. This sender never blocks for more than [`SEND_WAIT`].

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sendmsg, socket,
};

/// How long a datagram may wait for room in the manager's queue before it is dropped.
pub(crate) const SEND_WAIT: Duration = Duration::from_millis(50);

/// The manager's notify socket, resolved once at start-up.
pub(crate) struct NotifySocket {
    addr: UnixAddr,
    sock: OwnedFd,
}

impl NotifySocket {
    /// From `$NOTIFY_SOCKET`'s value: an absolute path, or `@name` for the abstract
    /// namespace. Anything else (e.g. `vsock:`, which only a manager inside a VM uses for
    /// itself) is reported and yields `None`.
    pub(crate) fn new(value: &OsStr) -> io::Result<NotifySocket> {
        let bytes = value.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name)?,
            None if bytes.starts_with(b"/") => UnixAddr::new(value)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "NOTIFY_SOCKET={:?} is neither a path nor @abstract",
                        value.to_string_lossy()
                    ),
                ));
            }
        };
        let sock = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        Ok(NotifySocket { addr, sock })
    }

    /// Sends `fields` (each `KEY=VALUE`, no newline inside) as one datagram, with `fds`.
    pub(crate) fn send(&self, fields: &[String], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        if let Some(bad) = fields.iter().find(|f| f.contains('\n') || !f.contains('=')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a notify field: {bad:?}"),
            ));
        }
        let text = fields.join("\n") + "\n";
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(&raw)]
        };
        let iov = [io::IoSlice::new(text.as_bytes())];
        let deadline = Instant::now() + SEND_WAIT;
        loop {
            match sendmsg(
                self.sock.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                Some(&self.addr),
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                // The manager's queue is full: give it a moment, never the whole loop.
                Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `BARRIER=1`: returns once the manager has processed everything sent before it (it
    /// closes the fd we pass), or `Ok(false)` after `timeout`.
    pub(crate) fn barrier(&self, timeout: Duration) -> io::Result<bool> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        self.send(&["BARRIER=1".into()], &[w.as_fd()])?;
        drop(w);
        // The read end reports POLLHUP once the manager's copy of the write end is closed.
        crate::sys::poll_one(r.as_fd(), Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn sends_fields_and_fds_and_waits_on_a_barrier() {
        let dir = std::env::temp_dir().join(format!("exuvia-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let manager = UnixDatagram::bind(&path).unwrap();
        let n = NotifySocket::new(path.as_os_str()).unwrap();
        n.send(&["READY=1".into(), "STATUS=ok".into()], &[])
            .unwrap();
        let mut buf = [0u8; 256];
        let got = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"READY=1\nSTATUS=ok\n");
        assert!(n.send(&["STATUS=a\nREADY=1".into()], &[]).is_err());

        // A manager that drops the barrier fd (as systemd does after processing) releases it.
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            assert!(crate::sys::poll_one(manager.as_fd(), Some(Duration::from_secs(5))).unwrap());
            let got = crate::sys::recv_with_fds(manager.as_fd(), &mut buf, 1).unwrap();
            assert_eq!(&buf[..got.len], b"BARRIER=1\n");
            drop(got.fds);
            manager
        });
        assert!(n.barrier(Duration::from_secs(5)).unwrap());
        let manager = t.join().unwrap();
        // A manager that never reads: the barrier times out, sends do not block for long.
        assert!(!n.barrier(Duration::from_millis(50)).unwrap());
        let t0 = Instant::now();
        for _ in 0..10_000 {
            if n.send(&["WATCHDOG=1".into()], &[]).is_err() {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        drop(manager);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_paths_and_abstract_names() {
        assert!(NotifySocket::new(OsStr::new("@abc")).is_ok());
        assert!(NotifySocket::new(OsStr::new("vsock:2:1234")).is_err());
        assert!(NotifySocket::new(OsStr::new("relative")).is_err());
    }
}
