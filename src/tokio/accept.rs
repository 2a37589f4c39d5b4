//! What an accept loop does with an error: a server must outlive every error that says
//! "not now" rather than "never".
//!
//! Two kinds are transient. Out-of-resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`)
//! clear when connections close, but retrying at once spins: the pending connection stays in
//! the queue and fails again, so the loop backs off (5 ms doubling to 1 s) and says so.
//! Errors the kernel reports for a connection that died in the queue (`ECONNABORTED`,
//! `EPROTO`, the network errors accept(2) lists for TCP, `EPERM` from a firewall) concern
//! that one connection: retry at once. Everything else (`EBADF`, `EINVAL`: the listener
//! itself is broken) ends the stream with the error.

use std::io;
use std::time::Duration;

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
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Kind::Exhausted,
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
            io::ErrorKind::OutOfMemory => Kind::Exhausted,
            _ => Kind::Fatal,
        },
    }
}

/// The back-off of one run of resource errors.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

const FIRST: Duration = Duration::from_millis(5);
const MAX: Duration = Duration::from_secs(1);

impl Backoff {
    /// Records a failure and returns how long to wait before the next accept.
    pub(crate) fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = FIRST
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(MAX);
        tracing::warn!(
            error = %e,
            consecutive = self.failures,
            retry_in_ms = wait.as_millis() as u64,
            "accept failed: out of a resource; backing off and accepting again"
        );
        wait
    }

    /// An accept succeeded: the run is over.
    pub(crate) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "accepting again after resource errors"
            );
            self.failures = 0;
        }
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
        let mut b = Backoff::default();
        let waits: Vec<_> = (0..12).map(|_| b.failed(&os(libc::EMFILE))).collect();
        assert_eq!(waits[0], FIRST);
        assert_eq!(waits[1], FIRST * 2);
        assert_eq!(*waits.last().unwrap(), MAX);
        b.succeeded();
        assert_eq!(b.failed(&os(libc::EMFILE)), FIRST);
    }
}
