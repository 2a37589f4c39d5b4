//! The handover channel: a `SOCK_SEQPACKET` socketpair between the old process and its
//! successor. Seqpacket keeps message boundaries and reports the peer's exit as EOF, so
//! "the successor died" and "the successor said something" arrive through one fd that the
//! control loop can poll next to the successor's pidfd.
//!
//! Old → new: the manifest, the state blob in chunks, then `complete` once the old process
//! has handed over. New → old: `ready`, or `failed <reason>`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Largest message we send; manifest size is bounded well below it.
const MAX_MSG: usize = 128 * 1024;
/// State blobs travel in chunks of this size.
const CHUNK: usize = 64 * 1024;

pub(crate) const READY: &[u8] = b"ready";
pub(crate) const COMPLETE: &[u8] = b"complete";
pub(crate) const FAILED_PREFIX: &[u8] = b"failed ";

/// One end of the channel.
#[derive(Debug)]
pub(crate) struct Channel {
    sock: Socket,
}

impl Channel {
    /// A connected pair, both ends CLOEXEC: `(old side, successor side)`.
    pub(crate) fn pair() -> io::Result<(Channel, OwnedFd)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
        Ok((Channel { sock: a }, OwnedFd::from(b)))
    }

    /// Wraps an inherited fd (successor side).
    pub(crate) fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            sock: Socket::from(fd),
        }
    }

    pub(crate) fn send(&self, msg: &[u8]) -> io::Result<()> {
        let n = self.sock.send_with_flags(msg, libc::MSG_NOSIGNAL)?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short send on handover channel",
            ));
        }
        Ok(())
    }

    /// Sends a blob as a sequence of chunks (the receiver knows the total length).
    pub(crate) fn send_blob(&self, blob: &[u8]) -> io::Result<()> {
        blob.chunks(CHUNK).try_for_each(|c| self.send(c))
    }

    /// Receives one message; `Ok(None)` means the peer closed. `timeout: None` blocks.
    pub(crate) fn recv(&self, timeout: Option<Duration>) -> io::Result<Option<Vec<u8>>> {
        if !crate::sys::poll_one(self.as_fd(), timeout)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out on handover channel",
            ));
        }
        let mut buf = vec![0u8; MAX_MSG];
        let n = loop {
            match nix::sys::socket::recv(
                self.sock.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                // A peer that died with unread data resets instead of closing cleanly.
                Err(nix::errno::Errno::ECONNRESET) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(buf))
    }

    /// Receives exactly `len` bytes sent with [`send_blob`](Self::send_blob).
    pub(crate) fn recv_blob(&self, len: usize, timeout: Duration) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            match self.recv(Some(timeout))? {
                Some(chunk) if out.len() + chunk.len() <= len => out.extend_from_slice(&chunk),
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "state blob longer than announced",
                    ));
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "channel closed inside the state blob",
                    ));
                }
            }
        }
        Ok(out)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_blobs_and_eof() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel::from_fd(b);
        a.send(b"hello").unwrap();
        assert_eq!(
            b.recv(Some(Duration::from_secs(1))).unwrap().unwrap(),
            b"hello"
        );
        let blob: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let a = std::sync::Arc::new(a);
        let (a2, sent) = (a.clone(), blob.clone());
        let writer = std::thread::spawn(move || a2.send_blob(&sent));
        assert_eq!(
            b.recv_blob(blob.len(), Duration::from_secs(1)).unwrap(),
            blob
        );
        writer.join().unwrap().unwrap();
        let err = b.recv(Some(Duration::from_millis(10))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(a);
        assert_eq!(b.recv(Some(Duration::from_secs(1))).unwrap(), None);
    }
}
