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
/// Most fds one message carries: the kernel's `SCM_MAX_FD`.
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;
/// The message that carries the fds beyond the first message's [`MAX_FDS_PER_MESSAGE`]
/// (docs/handover.md, "What travels").
const MORE_FDS: &[u8] = b"fds";
/// Longest reason a failed successor can give, in characters as the old process reads it
/// (control characters escaped); the rest is cut.
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
            "failed" => Ok(Message::Failed(bounded_reason(rest))),
            "complete" if rest.is_empty() => Ok(Message::Complete),
            "stats" => crate::stats::parse_pairs(rest)
                .map(Message::Stats)
                .map_err(|e| printable(&e)),
            _ => Err(printable(&text.chars().take(80).collect::<String>())),
        }
    }
}

/// A `failed` reason as the old process hands it on: control characters escaped *first*, then
/// cut to [`MAX_REASON`] characters between two escapes, so the reason re-encodes to itself
/// (cutting first let an escaped reason grow past the bound, and re-encoding cut it again).
fn bounded_reason(raw: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    for c in raw.chars() {
        let piece = printable(c.encode_utf8(&mut [0; 4]));
        let n = piece.chars().count();
        if len + n > MAX_REASON {
            break;
        }
        out.push_str(&piece);
        len += n;
    }
    out
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

    /// Sends `msg` with `fds` attached, as many as one message carries; the rest follow in
    /// `fds` messages of up to [`MAX_FDS_PER_MESSAGE`] each, read by
    /// [`recv_more_fds`](Self::recv_more_fds).
    pub(crate) fn send_with_many_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut parts = fds.chunks(MAX_FDS_PER_MESSAGE);
        self.send_with_fds(msg, parts.next().unwrap_or_default())?;
        parts.try_for_each(|part| self.send_with_fds(MORE_FDS, part))
    }

    /// Receives the `want` fds that follow a full first message in `fds` messages
    /// ([`send_with_many_fds`](Self::send_with_many_fds)); anything else is an error.
    pub(crate) fn recv_more_fds(
        &self,
        timeout: Option<Duration>,
        want: usize,
    ) -> io::Result<Vec<OwnedFd>> {
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            let Some((msg, fds)) = self.recv_with_fds(timeout, MAX_FDS_PER_MESSAGE)? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "channel closed before every announced fd arrived",
                ));
            };
            if msg != MORE_FDS || fds.is_empty() || out.len() + fds.len() > want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected the rest of the announced fds (an `fds` message with at most {} fds), got {:?} with {} fds",
                        want - out.len(),
                        printable(
                            &String::from_utf8_lossy(&msg)
                                .chars()
                                .take(80)
                                .collect::<String>()
                        ),
                        fds.len()
                    ),
                ));
            }
            out.extend(fds);
        }
        Ok(out)
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
    fn more_fds_than_one_message_carries_travel_in_several() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel::from_fd(b);
        let ls: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let n = MAX_FDS_PER_MESSAGE * 2 + 3;
        let fds: Vec<BorrowedFd<'_>> = (0..n).map(|i| ls[i % 3].as_fd()).collect();
        a.send_with_many_fds(b"m", &fds).unwrap();
        let t = Some(Duration::from_secs(1));
        let (m, first) = b.recv_with_fds(t, MAX_FDS_PER_MESSAGE).unwrap().unwrap();
        assert_eq!(
            (m.as_slice(), first.len()),
            (&b"m"[..], MAX_FDS_PER_MESSAGE)
        );
        let rest = b.recv_more_fds(t, n - first.len()).unwrap();
        // Every fd arrived, in order.
        for (i, fd) in first.into_iter().chain(rest).enumerate() {
            let got = std::net::TcpListener::from(fd).local_addr().unwrap();
            assert_eq!(got, ls[i % 3].local_addr().unwrap(), "fd {i}");
        }
        // Fewer than announced, or another message, is an error, not a wait or a guess.
        a.send_with_many_fds(b"m", &fds[..MAX_FDS_PER_MESSAGE + 1])
            .unwrap();
        b.recv_with_fds(t, MAX_FDS_PER_MESSAGE).unwrap().unwrap();
        let short = Some(Duration::from_millis(100));
        assert!(b.recv_more_fds(short, 2).is_err());
        a.send(b"complete").unwrap();
        assert!(b.recv_more_fds(short, 1).is_err());
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
        // Escaped, then bounded: a reason of control characters re-encodes to itself.
        let mut controls = b"failed ".to_vec();
        controls.extend([4u8; 101]);
        let Ok(Message::Failed(r)) = Message::decode(&controls) else {
            panic!("not a failed message");
        };
        assert_eq!(r, "\\u{4}".repeat(100));
        assert_eq!(
            Message::decode(&Message::Failed(r.clone()).encode()),
            Ok(Message::Failed(r))
        );
        let long = format!("failed {}", "é".repeat(600));
        assert_eq!(
            Message::decode(long.as_bytes()),
            Ok(Message::Failed("é".repeat(MAX_REASON)))
        );
        assert!(Message::decode(b"complete now").is_err());
        assert!(Message::decode(b"\x00\x01").unwrap_err().contains("\\u{0}"));
    }
}
