//! The handover channel: a `SOCK_SEQPACKET` socketpair between the old process and its
//! successor. Seqpacket keeps message boundaries and reports the peer's exit as EOF, so
//! "the successor died" and "the successor said something" arrive through one fd that the
//! control loop can poll next to the successor's pidfd. Fds travel on it as `SCM_RIGHTS`.
//!
//! Old → new: the manifest (with the fds attached), the state blob in chunks, then
//! [`Message::Complete`] once the old process has handed over. New → old:
//! [`Message::Ready`] or [`Message::Failed`]. The words on the wire are spelled in one place,
//! [`Message::encode`]/[`Message::decode`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::error::printable;

/// Largest message we send; the manifest is bounded well below it.
const MAX_MSG: usize = 128 * 1024;
/// State blobs travel in chunks of this size.
const CHUNK: usize = 64 * 1024;
/// Longest reason a failed successor can give (the rest is cut).
const MAX_REASON: usize = 500;

/// The protocol's messages other than the manifest and the state blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// New → old: initialisation is done, hand over now. `caps` names what this successor
    /// can do beyond the predecessor's format (always empty towards a format-1 predecessor,
    /// which knows only the bare word).
    Ready { caps: Vec<String> },
    /// New → old: start-up failed, in the successor's words.
    Failed(String),
    /// Old → new: this process has let go of every listener.
    Complete,
    /// Old → new, after `complete`: what the old generation's drain did, for the counters
    /// that continue across generations.
    Stats(Vec<(String, u64)>),
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Message::Ready { caps } if caps.is_empty() => b"ready".to_vec(),
            Message::Ready { caps } => format!("ready {}", caps.join(" ")).into_bytes(),
            Message::Failed(reason) => {
                let reason: String = reason.chars().take(MAX_REASON).collect();
                format!("failed {reason}").into_bytes()
            }
            Message::Complete => b"complete".to_vec(),
            Message::Stats(pairs) => {
                format!("stats {}", crate::stats::format_pairs(pairs)).into_bytes()
            }
        }
    }

    /// Reads a message; `Err` quotes (printably, shortened) what arrived instead.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Message, String> {
        let text = String::from_utf8_lossy(bytes);
        let (word, rest) = text.split_once(' ').unwrap_or((&text, ""));
        match word {
            "ready" => {
                let caps: Vec<String> = rest.split_whitespace().map(printable).collect();
                if caps.len() > 64 {
                    return Err("too many capabilities in `ready`".into());
                }
                Ok(Message::Ready { caps })
            }
            "failed" => Ok(Message::Failed(printable(
                &rest.chars().take(MAX_REASON).collect::<String>(),
            ))),
            "complete" if rest.is_empty() => Ok(Message::Complete),
            "stats" => crate::stats::parse_pairs(rest)
                .map(Message::Stats)
                .map_err(|e| printable(&e)),
            _ => Err(printable(&text.chars().take(80).collect::<String>())),
        }
    }
}

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

    /// Wraps an fd that is known to be a seqpacket socket.
    pub(crate) fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            sock: Socket::from(fd),
        }
    }

    pub(crate) fn send(&self, msg: &[u8]) -> io::Result<()> {
        self.send_with_fds(msg, &[])
    }

    pub(crate) fn send_msg(&self, msg: &Message) -> io::Result<()> {
        self.send(&msg.encode())
    }

    /// Sends one message with `fds` attached (`SCM_RIGHTS`); the receiver gets its own copies.
    pub(crate) fn send_with_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(&raw)]
        };
        let iov = [io::IoSlice::new(msg)];
        let n = loop {
            match sendmsg::<()>(
                self.sock.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r?,
            }
        };
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
    /// Fds attached to it are closed: only [`recv_with_fds`](Self::recv_with_fds) takes fds.
    pub(crate) fn recv(&self, timeout: Option<Duration>) -> io::Result<Option<Vec<u8>>> {
        Ok(self.recv_with_fds(timeout, 0)?.map(|(m, _)| m))
    }

    /// Receives one message with up to `max_fds` attached fds (CLOEXEC, owned by us).
    /// More fds than that, or fds the kernel could not install (`RLIMIT_NOFILE`), are an error:
    /// a partial set of listeners must never be taken for the whole.
    pub(crate) fn recv_with_fds(
        &self,
        timeout: Option<Duration>,
        max_fds: usize,
    ) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        if !crate::sys::poll_one(self.as_fd(), timeout)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out on handover channel",
            ));
        }
        let mut buf = vec![0u8; MAX_MSG];
        let got = match crate::sys::recv_with_fds(self.as_fd(), &mut buf, max_fds) {
            Ok(got) => got,
            // A peer that died with unread data resets instead of closing cleanly.
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(None),
            Err(e) => return Err(e),
        };
        if got.len == 0 && got.fds.is_empty() {
            return Ok(None);
        }
        if got.fds_truncated && max_fds > 0 {
            return Err(io::Error::other(
                "not every handed-over fd arrived (is RLIMIT_NOFILE too low for the listeners?)",
            ));
        }
        if got.data_truncated {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handover message larger than the protocol allows",
            ));
        }
        buf.truncate(got.len);
        Ok(Some((buf, got.fds)))
    }

    /// Receives one protocol [`Message`]; `Ok(None)` means the peer closed, `Err(Ok(text))`
    /// that it said something else.
    pub(crate) fn recv_msg(
        &self,
        timeout: Option<Duration>,
    ) -> io::Result<Option<Result<Message, String>>> {
        Ok(self.recv(timeout)?.map(|m| Message::decode(&m)))
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

    #[test]
    fn fds_travel_and_too_many_are_an_error() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel::from_fd(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        a.send_with_fds(b"m", &[l.as_fd(), l.as_fd()]).unwrap();
        let (m, fds) = b
            .recv_with_fds(Some(Duration::from_secs(1)), 2)
            .unwrap()
            .unwrap();
        assert_eq!((m.as_slice(), fds.len()), (&b"m"[..], 2));
        let got = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(got.local_addr().unwrap(), addr);
        a.send_with_fds(b"m", &[l.as_fd(), l.as_fd()]).unwrap();
        assert!(b.recv_with_fds(Some(Duration::from_secs(1)), 1).is_err());
    }

    #[test]
    fn words_round_trip_and_garbage_is_quoted_printably() {
        for m in [
            Message::Ready { caps: vec![] },
            Message::Ready {
                caps: vec!["conns".into()],
            },
            Message::Failed("bad config".into()),
            Message::Complete,
            Message::Stats(vec![("connections_drained".into(), 4)]),
        ] {
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
        assert_eq!(Message::Ready { caps: vec![] }.encode(), b"ready");
        assert_eq!(
            Message::decode(b"failed a\x1b[2Jb"),
            Ok(Message::Failed("a\\u{1b}[2Jb".into()))
        );
        assert!(Message::decode(b"complete now").is_err());
        assert!(Message::decode(b"\x00\x01").unwrap_err().contains("\\u{0}"));
    }
}
