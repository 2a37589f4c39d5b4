//! The registry of named fds: what this generation inherited and what it will hand on.
//!
//! Sockets are looked up by *name*, never by address or position: socket activation gives no
//! order guarantee across `.socket` units, and a `:0` port must keep the port it got. Every
//! fd the service registers is kept here as a CLOEXEC duplicate, so handing over never
//! depends on what the service did with its own copy.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use socket2::{Domain, SockRef, Type};

use crate::error::Error;
use crate::manifest::{FdKind, valid_name};

/// Where an inherited fd came from; only used to word log lines and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The previous generation, through exuvia's handover.
    Predecessor,
    /// systemd socket activation (`LISTEN_FDS`) or its fd store.
    Systemd,
}

#[derive(Debug)]
struct Inherited {
    /// Declared kind; `None` when systemd passed it (checked on claim instead).
    kind: Option<FdKind>,
    fd: OwnedFd,
    origin: Origin,
}

/// Named fds, inherited and registered.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inherited: HashMap<String, Inherited>,
    /// What the next generation gets, in registration order.
    registered: Vec<(String, FdKind, OwnedFd)>,
}

impl Registry {
    /// Adds an inherited fd. A duplicate name keeps the first (systemd allows duplicates;
    /// exuvia's handover never produces them).
    pub(crate) fn inherit(
        &mut self,
        name: String,
        kind: Option<FdKind>,
        fd: OwnedFd,
        origin: Origin,
    ) -> bool {
        if self.inherited.contains_key(&name) {
            return false;
        }
        self.inherited.insert(name, Inherited { kind, fd, origin });
        true
    }

    /// Names of inherited fds nobody claimed yet.
    pub(crate) fn unclaimed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inherited.keys().cloned().collect();
        v.sort();
        v
    }

    /// Closes inherited fds nobody claimed; returns their names.
    pub(crate) fn close_unclaimed(&mut self) -> Vec<String> {
        let names = self.unclaimed();
        self.inherited.clear();
        names
    }

    /// Takes the inherited fd called `name` (checked against `kind`) or makes a new one,
    /// and keeps a duplicate for the next generation. Returns the service's copy and
    /// whether it was inherited.
    pub(crate) fn claim_or_create(
        &mut self,
        name: &str,
        kind: FdKind,
        create: impl FnOnce() -> Result<OwnedFd, Error>,
    ) -> Result<(OwnedFd, Option<Origin>), Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName(name.to_owned()));
        }
        if self.registered.iter().any(|(n, _, _)| n == name) {
            return Err(Error::DuplicateName(name.to_owned()));
        }
        if self.registered.len() >= crate::manifest::MAX_ENTRIES {
            return Err(Error::TooManyFds(crate::manifest::MAX_ENTRIES));
        }
        let (fd, origin) = match self.inherited.remove(name) {
            Some(inh) => {
                let mismatch = match inh.kind {
                    Some(declared) if declared != kind => Some(format!("a {declared} socket")),
                    // Checked against its declared kind when it was handed over.
                    Some(_) => None,
                    // systemd says nothing of the kind: check it now, for what is asked.
                    None => check_kind(inh.fd.as_fd(), kind).err(),
                };
                if let Some(found) = mismatch {
                    // Put it back: a later claim with the right kind may still want it.
                    self.inherited.insert(name.to_owned(), inh);
                    return Err(Error::KindMismatch {
                        name: name.to_owned(),
                        wanted: kind,
                        found,
                    });
                }
                (inh.fd, Some(inh.origin))
            }
            None => (create()?, None),
        };
        let keep = fd
            .try_clone()
            .map_err(Error::io("duplicating a registered fd"))?;
        self.registered.push((name.to_owned(), kind, keep));
        Ok((fd, origin))
    }

    /// The fds to hand over, in order.
    pub(crate) fn registered(&self) -> impl Iterator<Item = (&str, FdKind, BorrowedFd<'_>)> {
        self.registered
            .iter()
            .map(|(n, k, fd)| (n.as_str(), *k, fd.as_fd()))
    }

    /// Closes this process's copies after the handover; the successor owns the sockets now.
    pub(crate) fn close_registered(&mut self) -> usize {
        let n = self.registered.len();
        self.registered.clear();
        n
    }
}

/// Checks that `fd` is a socket of `kind` (and listening, for listeners). The `Err`
/// describes what it really is, for error messages.
pub(crate) fn check_kind(fd: BorrowedFd<'_>, kind: FdKind) -> Result<(), String> {
    if kind == FdKind::Fd {
        return nix::sys::stat::fstat(fd)
            .map(|_| ())
            .map_err(|e| format!("not an open fd ({e})"));
    }
    let sock = SockRef::from(&fd);
    let ty = sock.r#type().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTSOCK) => "not a socket".to_owned(),
        _ => format!("not usable ({e})"),
    })?;
    let domain = sock
        .domain()
        .map_err(|e| format!("a socket of unknown family ({e})"))?;
    let listening = sock.is_listener().unwrap_or(false);
    let (want_domain, want_type): (&[Domain], Type) = match kind {
        FdKind::Tcp => (&[Domain::IPV4, Domain::IPV6], Type::STREAM),
        FdKind::Udp => (&[Domain::IPV4, Domain::IPV6], Type::DGRAM),
        FdKind::Unix => (&[Domain::UNIX], Type::STREAM),
        FdKind::UnixDatagram => (&[Domain::UNIX], Type::DGRAM),
        FdKind::UnixSeqpacket => (&[Domain::UNIX], Type::SEQPACKET),
        FdKind::Fd => unreachable!("handled above"),
    };
    let describe = || {
        let fam = match domain {
            Domain::IPV4 => "IPv4",
            Domain::IPV6 => "IPv6",
            Domain::UNIX => "Unix",
            _ => "other-family",
        };
        let t = match ty {
            Type::STREAM => "stream",
            Type::DGRAM => "datagram",
            Type::SEQPACKET => "seqpacket",
            _ => "other-type",
        };
        format!(
            "a {fam} {t} socket{}",
            if listening { " (listening)" } else { "" }
        )
    };
    if !want_domain.contains(&domain) || ty != want_type {
        return Err(describe());
    }
    if kind.is_listener() && !listening {
        return Err(format!("{} that is not listening", describe()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    #[test]
    fn claim_checks_kind_and_keeps_a_dup() {
        let mut r = Registry::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        r.inherit("web".into(), None, OwnedFd::from(l), Origin::Systemd);
        let err = r
            .claim_or_create("web", FdKind::Udp, || unreachable!())
            .unwrap_err();
        assert!(
            err.to_string().contains("IPv4 stream socket (listening)"),
            "{err}"
        );
        let (fd, origin) = r
            .claim_or_create("web", FdKind::Tcp, || unreachable!())
            .unwrap();
        assert_eq!(origin, Some(Origin::Systemd));
        assert!(check_kind(fd.as_fd(), FdKind::Tcp).is_ok());
        assert_eq!(r.registered().count(), 1);
        assert!(matches!(
            r.claim_or_create("web", FdKind::Tcp, || unreachable!()),
            Err(Error::DuplicateName(_))
        ));
    }

    #[test]
    fn unlistening_and_non_sockets_are_rejected() {
        let s = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        assert!(
            check_kind(s.as_fd(), FdKind::Tcp)
                .unwrap_err()
                .contains("not listening")
        );
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            check_kind(f.as_fd(), FdKind::Tcp).unwrap_err(),
            "not a socket"
        );
        assert!(check_kind(f.as_fd(), FdKind::Fd).is_ok());
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_kind(u.as_fd(), FdKind::Udp).is_ok());
    }
}
