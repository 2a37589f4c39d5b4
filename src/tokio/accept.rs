//! What the async accept loop does with an error: a server must outlive every error that
//! says "not now" rather than "never".
//!
//! Running out of fds, buffers or memory is waited out with the blocking listener's back-off
//! ([`crate::listener::Backoff`]: the connection stays queued until closing connections gives
//! the resource back). Errors the kernel reports for a connection that died in the queue
//! (`ECONNABORTED`, `EPROTO`, the network errors accept(2) lists for TCP, `EPERM` from a
//! firewall) concern that one connection: accept again at once. Everything else (`EBADF`,
//! `EINVAL`: the listener itself is broken) ends the stream with the error.

use std::io;

/// How an accept error is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The process or system is out of a resource: back off, then retry.
    Exhausted,
    /// The queued connection failed; the listener is fine: retry at once.
    Connection,
    /// The listener cannot accept any more.
    Fatal,
}

pub(crate) fn classify(e: &io::Error) -> Kind {
    if crate::listener::exhausted(e) {
        return Kind::Exhausted;
    }
    match e.raw_os_error() {
        Some(
            libc::ECONNABORTED
            | libc::EINTR
            | libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::EPERM,
        ) => Kind::Connection,
        Some(_) => Kind::Fatal,
        None => match e.kind() {
            io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => Kind::Connection,
            _ => Kind::Fatal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_back_off_and_others_are_sorted() {
        let os = io::Error::from_raw_os_error;
        for e in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify(&os(e)), Kind::Exhausted, "{e}");
        }
        for e in [libc::ECONNABORTED, libc::EINTR, libc::EPROTO, libc::EPERM] {
            assert_eq!(classify(&os(e)), Kind::Connection, "{e}");
        }
        for e in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert_eq!(classify(&os(e)), Kind::Fatal, "{e}");
        }
    }
}
