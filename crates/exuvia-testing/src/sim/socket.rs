//! The fake `NOTIFY_SOCKET`: a path-bound unix datagram socket with `SO_PASSCRED`, so every
//! datagram carries the sender's pid/uid as verified by the kernel — the same evidence systemd
//! uses to decide whether a sender may notify.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
use socket2::{Domain, SockAddr, Socket, Type};

/// systemd reads notifications into a buffer of this size; longer ones are truncated there
/// too, so we flag them.
const MAX_DATAGRAM: usize = 4096;
/// systemd accepts at most 253 fds per message (`SCM_MAX_FD` is 253).
const MAX_FDS: usize = 253;

/// A datagram with its kernel-supplied metadata.
pub(crate) struct Received {
    pub(crate) data: Vec<u8>,
    pub(crate) truncated: bool,
    pub(crate) pid: u32,
    pub(crate) uid: u32,
    pub(crate) fds: Vec<OwnedFd>,
}

pub(crate) struct NotifySocket {
    socket: Socket,
    path: PathBuf,
    /// The private directory we created (removed on drop), if the caller gave no path.
    temp_dir: Option<PathBuf>,
}

impl NotifySocket {
    /// Binds at `path`, or in a fresh private directory under the system temp dir.
    pub(crate) fn bind(path: Option<&Path>) -> io::Result<NotifySocket> {
        let (path, temp_dir) = match path {
            Some(p) => (p.to_path_buf(), None),
            None => {
                let dir = fresh_temp_dir()?;
                (dir.join("notify"), Some(dir))
            }
        };
        let result = (|| {
            let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
            socket.set_passcred(true)?;
            socket.bind(&SockAddr::unix(&path)?)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })();
        match result {
            Ok(socket) => Ok(NotifySocket {
                socket,
                path,
                temp_dir,
            }),
            Err(e) => {
                if let Some(dir) = &temp_dir {
                    let _ = std::fs::remove_dir(dir);
                }
                Err(e)
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Returns `Ok(None)` when no datagram is queued.
    pub(crate) fn recv(&self) -> io::Result<Option<Received>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut cmsg = nix::cmsg_space!(libc::ucred, [RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_TRUNC;
        let msg = match recvmsg::<UnixAddr>(self.raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (mut pid, mut uid, mut fds) = (0u32, u32::MAX, Vec::new());
        for c in msg.cmsgs()? {
            match c {
                ControlMessageOwned::ScmCredentials(cred) => {
                    pid = u32::try_from(cred.pid()).unwrap_or(0);
                    uid = cred.uid();
                }
                ControlMessageOwned::ScmRights(raw) => {
                    for fd in raw {
                        // SAFETY: SCM_RIGHTS just installed this fd in our table and nobody
                        // else knows its number, so we are its sole owner.
                        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
                _ => {}
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        let len = msg.bytes.min(MAX_DATAGRAM);
        buf.truncate(len);
        Ok(Some(Received {
            data: buf,
            truncated,
            pid,
            uid,
            fds,
        }))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A new 0700 directory with a name nobody else can have claimed (`create` fails on clash).
fn fresh_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let mut last_err = None;
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "exuvia-sim-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = base.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not create a temp dir")))
}
