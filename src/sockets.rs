//! Creating sockets for the first generation (successors inherit them instead).

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::Error;
use crate::manifest::FdKind;

/// Large enough for bursts during a handover; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// The user's hook to set options before `bind`.
pub type Configure<'a> = &'a mut dyn FnMut(&Socket) -> io::Result<()>;

pub(crate) fn inet(
    name: &str,
    kind: FdKind,
    addr: SocketAddr,
    configure: Configure<'_>,
) -> Result<OwnedFd, Error> {
    let err = |source| Error::Create {
        name: name.to_owned(),
        kind,
        addr: addr.to_string(),
        source,
    };
    let ty = if kind == FdKind::Tcp {
        Type::STREAM
    } else {
        Type::DGRAM
    };
    let s = Socket::new(Domain::for_address(addr), ty.cloexec(), None).map_err(err)?;
    if kind == FdKind::Tcp {
        // Lets a cold restart rebind while old connections sit in TIME_WAIT.
        s.set_reuse_address(true).map_err(err)?;
    }
    configure(&s).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    if kind == FdKind::Tcp {
        s.listen(BACKLOG).map_err(err)?;
    }
    Ok(s.into())
}

pub(crate) fn unix(
    name: &str,
    kind: FdKind,
    path: &Path,
    configure: Configure<'_>,
) -> Result<OwnedFd, Error> {
    let err = |source| Error::Create {
        name: name.to_owned(),
        kind,
        addr: path.display().to_string(),
        source,
    };
    let ty = match kind {
        FdKind::Unix => Type::STREAM,
        FdKind::UnixDatagram => Type::DGRAM,
        _ => Type::SEQPACKET,
    };
    let addr = SockAddr::unix(path).map_err(err)?;
    let s = Socket::new(Domain::UNIX, ty.cloexec(), None).map_err(err)?;
    configure(&s).map_err(err)?;
    match s.bind(&addr) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if !is_stale(path, ty, &addr) {
                return Err(Error::PathInUse(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "removing stale socket file (nothing listens on it)");
            std::fs::remove_file(path).map_err(err)?;
            s.bind(&addr).map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    if kind != FdKind::UnixDatagram {
        s.listen(BACKLOG).map_err(err)?;
    }
    Ok(s.into())
}

/// A socket file is stale when it is a socket and connecting to it is refused: nobody
/// holds it any more. Anything else (a live listener, a regular file) is left alone.
fn is_stale(path: &Path, ty: Type, addr: &SockAddr) -> bool {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return false;
    }
    let Ok(probe) = Socket::new(Domain::UNIX, ty.cloexec(), None) else {
        return false;
    };
    matches!(probe.connect(addr), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_unix_path_is_replaced_but_live_one_is_not() {
        let dir = std::env::temp_dir().join(format!("exuvia-sock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let first = unix("a", FdKind::Unix, &path, &mut |_| Ok(())).unwrap();
        let e = unix("a", FdKind::Unix, &path, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(e, Error::PathInUse(_)), "{e}");
        drop(first);
        unix("a", FdKind::Unix, &path, &mut |_| Ok(())).expect("stale path is reused");
        let file = dir.join("regular");
        std::fs::write(&file, b"x").unwrap();
        assert!(unix("a", FdKind::Unix, &file, &mut |_| Ok(())).is_err());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"x",
            "a regular file is never removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
