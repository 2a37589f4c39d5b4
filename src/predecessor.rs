//! The successor's view of its predecessor: adopt the channel, read the manifest and the
//! fds that came with it, later say `ready` and wait for `complete`.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use crate::channel::{Channel, MAX_FDS_PER_MESSAGE, Message};
use crate::error::HandoverError;
use crate::fds::{Origin, Registry, check_kind};
use crate::manifest::{self, Ancestor, Manifest, ManifestError};
use crate::sys;

/// The capability that asks the predecessor to offer its live connections
/// (docs/handover.md, "Live connections").
pub(crate) const CAP_CONNECTIONS: &str = "conns";

/// How long a successor waits for the manifest; the old process queues it before the fork.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An established link to the previous generation.
pub(crate) struct Predecessor {
    pub channel: Channel,
    /// The handover format it speaks; we answer in it.
    pub version: u32,
    pub generation: u64,
    pub draining: Vec<Ancestor>,
    pub state: Option<Vec<u8>>,
    pub signal_trigger_us: Option<u64>,
}

/// Takes over from the process that started us, given `EXUVIA_HANDOVER`'s value.
pub(crate) fn take_over(
    var: &OsStr,
    registry: &mut Registry,
) -> Result<Predecessor, HandoverError> {
    let bad_env = || HandoverError::BadEnv(var.to_string_lossy().into_owned());
    let fd: i32 = var
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|fd| *fd >= 3)
        .ok_or_else(bad_env)?;
    let is_seqpacket = |_: usize, fd: std::os::fd::BorrowedFd<'_>| {
        socket2::SockRef::from(&fd)
            .r#type()
            .ok()
            .filter(|t| *t == socket2::Type::SEQPACKET)
            .map(|_| ())
            .ok_or_else(|| "not a seqpacket socket".to_string())
    };
    // SAFETY: EXUVIA_HANDOVER names the channel our parent placed for us, and nothing in this
    // process has seen the number before (`Builder::start` runs this once).
    let mut adopted =
        unsafe { sys::adopt_inherited(fd, 1, is_seqpacket) }.map_err(|_| bad_env())?;
    let channel = Channel::from_fd(adopted.remove(0));
    match read_manifest(&channel, registry) {
        Ok((manifest, state)) => {
            tracing::debug!(
                generation = manifest.generation + 1,
                t_manifest = sys::monotonic_usec(),
                "manifest and listeners read"
            );
            if !manifest.skipped.is_empty() {
                tracing::info!(skipped = ?manifest.skipped, "manifest extensions this build does not know; ignored");
            }
            crate::stats::stats().add_travelled(&manifest.counters);
            Ok(Predecessor {
                channel,
                version: manifest.version,
                generation: manifest.generation,
                draining: manifest.draining,
                signal_trigger_us: manifest.signal_trigger_us,
                state,
            })
        }
        Err(e) => {
            // Tell the old process why, so its upgrade error carries the reason.
            let _ = channel.send_msg(&Message::Failed(e.to_string()));
            Err(e)
        }
    }
}

fn read_manifest(
    channel: &Channel,
    registry: &mut Registry,
) -> Result<(Manifest, Option<Vec<u8>>), HandoverError> {
    let (msg, mut fds) = channel
        .recv_with_fds(Some(MANIFEST_TIMEOUT), MAX_FDS_PER_MESSAGE)
        .map_err(HandoverError::Channel)?
        .ok_or(HandoverError::Closed)?;
    let text =
        std::str::from_utf8(&msg).map_err(|_| ManifestError::NotAManifest("(not UTF-8)".into()))?;
    let manifest = Manifest::parse(text)?;
    let fds = match manifest.version {
        1 => adopt_format_1(&manifest, channel, fds)?,
        // More than one message carries follow it (`Channel::send_with_many_fds`).
        _ if fds.len() == MAX_FDS_PER_MESSAGE && manifest.entries.len() > fds.len() => {
            let more = channel
                .recv_more_fds(Some(MANIFEST_TIMEOUT), manifest.entries.len() - fds.len())
                .map_err(HandoverError::Channel)?;
            fds.extend(more);
            fds
        }
        _ => fds,
    };
    if fds.len() != manifest.entries.len() {
        return Err(HandoverError::FdCount {
            announced: manifest.entries.len(),
            received: fds.len(),
        });
    }
    // Check every fd against its announced kind before any is registered.
    for (e, fd) in manifest.entries.iter().zip(&fds) {
        check_kind(fd.as_fd(), e.kind).map_err(|found| HandoverError::BadFd {
            name: e.name.clone(),
            why: format!("should be a {} socket but is {found}", e.kind),
        })?;
    }
    let state = match manifest.state_len {
        Some(len) => Some(
            channel
                .recv_blob(len, MANIFEST_TIMEOUT)
                .map_err(HandoverError::Channel)?,
        ),
        None => None,
    };
    for (e, fd) in manifest.entries.iter().zip(fds) {
        registry.inherit(e.name.clone(), Some(e.kind), fd, Origin::Predecessor);
    }
    Ok((manifest, state))
}

/// Format 1 passed the fds through `exec` at the layout [`manifest::inherited_fd`] describes,
/// with the channel right after them; nothing may come attached to the message.
fn adopt_format_1(
    manifest: &Manifest,
    channel: &Channel,
    attached: Vec<OwnedFd>,
) -> Result<Vec<OwnedFd>, HandoverError> {
    let n = manifest.entries.len();
    let channel_fd = channel.as_fd().as_raw_fd();
    if !attached.is_empty() || channel_fd != manifest::inherited_fd(n) {
        return Err(HandoverError::Layout {
            announced: n,
            channel_fd,
        });
    }
    let kinds = |i: usize, fd: std::os::fd::BorrowedFd<'_>| {
        let kind = manifest.entries[i].kind;
        check_kind(fd, kind).map_err(|found| format!("should be a {kind} socket but is {found}"))
    };
    // SAFETY: a format-1 predecessor placed these fds for us (the layout matches the channel's
    // position) and nothing in this process has taken them.
    unsafe { sys::adopt_inherited(manifest::inherited_fd(0), n, kinds) }.map_err(|(fd, why)| {
        let i = (fd - manifest::inherited_fd(0)) as usize;
        HandoverError::BadFd {
            name: manifest
                .entries
                .get(i)
                .map_or_else(|| format!("fd {fd}"), |e| e.name.clone()),
            why: format!("fd {fd} {why}"),
        }
    })
}

impl Predecessor {
    /// Tells the predecessor to hand over, in its own dialect: capabilities only to a
    /// predecessor whose format carries them (format 1 knows only the bare word).
    pub(crate) fn send_ready(&self, adopts_connections: bool) -> std::io::Result<()> {
        let caps = match self.version {
            1 => Vec::new(),
            _ if adopts_connections => vec![CAP_CONNECTIONS.to_owned()],
            _ => Vec::new(),
        };
        tracing::debug!(
            t_ready_sent = sys::monotonic_usec(),
            "telling the previous generation: ready"
        );
        self.channel.send_msg(&Message::Ready { caps })
    }

    pub(crate) fn send_failed(&self, reason: &str) {
        let _ = self.channel.send_msg(&Message::Failed(reason.to_owned()));
    }

    /// Reads what the predecessor said after `ready`; call when the channel is readable.
    pub(crate) fn poll(&self) -> FromPredecessor {
        let got = self
            .channel
            .recv_with_fds(Some(Duration::ZERO), crate::handoff::wire::MAX_BATCH);
        let (bytes, fds) = match got {
            Ok(Some(m)) => m,
            Ok(None) => return FromPredecessor::Gone,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return FromPredecessor::Nothing,
            Err(e) => return FromPredecessor::Unexpected(e.to_string()),
        };
        if crate::handoff::wire::is_handoff(&bytes) {
            return match crate::handoff::wire::HandOff::decode(&bytes) {
                Ok(h) => FromPredecessor::HandOff(h, fds),
                Err(e) => FromPredecessor::Unexpected(e),
            };
        }
        match Message::decode(&bytes) {
            Ok(Message::Complete) => FromPredecessor::Complete,
            Ok(Message::Stats(pairs)) => FromPredecessor::Stats(pairs),
            Ok(other) => FromPredecessor::Unexpected(format!("{other:?}")),
            Err(text) => FromPredecessor::Unexpected(text),
        }
    }

    /// Answers an offer of live connections.
    pub(crate) fn send_handoff(&self, h: &crate::handoff::wire::HandOff) -> std::io::Result<()> {
        self.channel.send(&h.encode())
    }
}

/// What [`Predecessor::poll`] found.
pub(crate) enum FromPredecessor {
    Nothing,
    /// It has let go of every listener.
    Complete,
    /// Its drain results (after `Complete`).
    Stats(Vec<(String, u64)>),
    /// A hand-off message (before `Complete`), with the fds of an offer.
    HandOff(crate::handoff::wire::HandOff, Vec<OwnedFd>),
    /// It exited (after `Complete`: its drain is over; before: nobody else holds the listeners).
    Gone,
    Unexpected(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fds::Origin;
    use crate::manifest::{Entry, FdKind, MAX_ENTRIES};
    use std::net::TcpListener;
    use std::os::fd::BorrowedFd;

    #[test]
    fn as_many_fds_as_format_1_carried_arrive_in_order() {
        let (old, new) = Channel::pair().unwrap();
        let new = Channel::from_fd(new);
        let ls: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let manifest = Manifest {
            version: manifest::PROTOCOL_VERSION,
            generation: 2,
            entries: (0..MAX_ENTRIES)
                .map(|i| Entry {
                    name: format!("l{i}"),
                    kind: FdKind::Tcp,
                })
                .collect(),
            ..Manifest::default()
        };
        let fds: Vec<BorrowedFd<'_>> = (0..MAX_ENTRIES).map(|i| ls[i % 3].as_fd()).collect();
        old.send_with_many_fds(manifest.encode().as_bytes(), &fds)
            .unwrap();
        let mut registry = Registry::default();
        let (got, state) = read_manifest(&new, &mut registry).unwrap();
        assert_eq!((got.entries, state), (manifest.entries, None));
        for (i, l) in (0..MAX_ENTRIES).map(|i| (i, &ls[i % 3])) {
            let (fd, origin) = registry
                .claim_or_create(&format!("l{i}"), FdKind::Tcp, || {
                    panic!("l{i} was not handed over")
                })
                .unwrap();
            assert_eq!(origin, Some(Origin::Predecessor));
            let addr = TcpListener::from(fd).local_addr().unwrap();
            assert_eq!(addr, l.local_addr().unwrap(), "l{i}");
        }
    }
}
