//! The hand-off for tokio services (feature `tokio`): streams handed over and adopted as
//! tokio types. The async handle's calls live with the handle (`src/tokio/handoff.rs`).

use std::io;

use super::{Kept, State, Transferable};

/// A stream type that can travel to the successor: tokio's TCP and Unix streams. An
/// adopted connection becomes one with `TcpStream::from_fd(adopted.fd)`.
pub trait Stream: Sized {
    /// Gives up the runtime's registration and hands back the fd.
    fn into_fd(self) -> io::Result<std::os::fd::OwnedFd>;
    /// Registers an fd that came back (or was adopted) with the current runtime.
    fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Self>;
}

impl Stream for ::tokio::net::TcpStream {
    fn into_fd(self) -> io::Result<std::os::fd::OwnedFd> {
        Ok(self.into_std()?.into())
    }
    fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Self> {
        let s = std::net::TcpStream::from(fd);
        s.set_nonblocking(true)?;
        ::tokio::net::TcpStream::from_std(s)
    }
}

impl Stream for ::tokio::net::UnixStream {
    fn into_fd(self) -> io::Result<std::os::fd::OwnedFd> {
        Ok(self.into_std()?.into())
    }
    fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Self> {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true)?;
        ::tokio::net::UnixStream::from_std(s)
    }
}

/// What came back from [`Transferable::hand_off`]: the stream to serve on, why it stayed,
/// and its ticket for the next upgrade.
#[derive(Debug)]
pub struct KeptStream<S> {
    /// The connection, registered with the runtime again.
    pub stream: S,
    /// Why it was not handed over.
    pub reason: String,
    /// It may go at the next upgrade (if this one failed and this generation serves on).
    pub again: Transferable,
}

/// How a tokio hand-off ended.
#[derive(Debug)]
pub enum HandedOff<S> {
    /// The successor owns the connection now; stop serving it.
    Gone,
    /// It stayed here: serve on.
    Kept(KeptStream<S>),
}

impl Transferable {
    /// Offers a tokio stream with its state and waits for the outcome. On
    /// [`HandedOff::Kept`] the stream is back, registered with the runtime again.
    pub async fn hand_off<S: Stream>(self, stream: S, state: State) -> io::Result<HandedOff<S>> {
        let fd = stream.into_fd()?;
        match self.offer(fd, state).outcome().await {
            Ok(()) => Ok(HandedOff::Gone),
            Err(Kept { fd, reason, again }) => Ok(HandedOff::Kept(KeptStream {
                stream: S::from_fd(fd)?,
                reason,
                again,
            })),
        }
    }
}
