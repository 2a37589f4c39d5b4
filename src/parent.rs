//! The successor's view of its predecessor: read the manifest, adopt the fds it names,
//! later say `ready` and wait for `complete`.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use crate::channel::{self, Channel};
use crate::error::HandoverError;
use crate::fds::{Origin, Registry, check_kind};
use crate::manifest::{Ancestor, Manifest};
use crate::sys;

/// How long a successor waits for the manifest; the old process sends it right after spawn.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An established link to the previous generation.
pub(crate) struct Predecessor {
    pub channel: Channel,
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
    if !sys::fd_is_open(fd) {
        return Err(bad_env());
    }
    // SAFETY: the fd is open and nothing else in this process knows its number.
    let borrowed = unsafe { sys::borrow_raw(fd) };
    let is_seqpacket = socket2::SockRef::from(&borrowed)
        .r#type()
        .is_ok_and(|t| t == socket2::Type::SEQPACKET);
    if !is_seqpacket {
        return Err(bad_env());
    }
    // SAFETY: checked open above; exuvia's handover protocol gives us sole ownership.
    let channel = Channel::from_fd(unsafe { sys::own_raw(fd) });
    sys::set_cloexec(channel.as_fd(), true).map_err(HandoverError::Channel)?;
    match read_manifest(&channel, registry) {
        Ok((manifest, state)) => Ok(Predecessor {
            channel,
            generation: manifest.generation,
            draining: manifest.draining,
            signal_trigger_us: manifest.signal_trigger_us,
            state,
        }),
        Err(e) => {
            // Tell the old process why, so its upgrade error carries the reason.
            let _ = channel.send(format!("failed {e}").as_bytes());
            Err(e)
        }
    }
}

fn read_manifest(
    channel: &Channel,
    registry: &mut Registry,
) -> Result<(Manifest, Option<Vec<u8>>), HandoverError> {
    let msg = channel
        .recv(Some(MANIFEST_TIMEOUT))
        .map_err(HandoverError::Channel)?
        .ok_or(HandoverError::Closed)?;
    let text = std::str::from_utf8(&msg)
        .map_err(|_| crate::error::ManifestError::NotAManifest("(not UTF-8)".into()))?;
    let manifest = Manifest::parse(text)?;
    let state = match manifest.state_len {
        Some(len) => Some(
            channel
                .recv_blob(len, MANIFEST_TIMEOUT)
                .map_err(HandoverError::Channel)?,
        ),
        None => None,
    };
    // exuvia places inherited fds at 3.. in manifest order with the channel right after
    // them; anything else names fds this process did not inherit (a runtime's epoll fd,
    // say), and taking those would close them under their owner.
    let channel_fd = channel.as_fd().as_raw_fd();
    let layout_ok = channel_fd == 3 + manifest.entries.len() as i32
        && manifest
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.fd == 3 + i as i32);
    if !layout_ok {
        let e = manifest.entries.first();
        return Err(HandoverError::BadFd {
            fd: e.map_or(channel_fd, |e| e.fd),
            name: e.map_or_else(String::new, |e| e.name.clone()),
            why: format!(
                "the manifest's fds do not match what was inherited ({} fds before the channel at fd {channel_fd})",
                channel_fd - 3
            ),
        });
    }
    // Check every fd through a borrow first: on any error nothing has been taken.
    for e in &manifest.entries {
        let bad = |why: String| HandoverError::BadFd {
            fd: e.fd,
            name: e.name.clone(),
            why,
        };
        if !sys::fd_is_open(e.fd) {
            return Err(bad("is not open".into()));
        }
        // SAFETY: open (checked); only borrowed for the duration of the check.
        let borrowed = unsafe { sys::borrow_raw(e.fd) };
        check_kind(borrowed, e.kind)
            .map_err(|found| bad(format!("should be a {} socket but is {found}", e.kind)))?;
    }
    for e in &manifest.entries {
        // SAFETY: inherited at this number (layout checked above) and handed to us alone.
        let fd = unsafe { sys::own_raw(e.fd) };
        sys::set_cloexec(fd.as_fd(), true).map_err(|err| HandoverError::BadFd {
            fd: e.fd,
            name: e.name.clone(),
            why: err.to_string(),
        })?;
        registry.inherit(e.name.clone(), Some(e.kind), fd, Origin::Predecessor);
    }
    Ok((manifest, state))
}

impl Predecessor {
    pub(crate) fn send_ready(&self) -> std::io::Result<()> {
        self.channel.send(channel::READY)
    }

    pub(crate) fn send_failed(&self, reason: &str) {
        let _ = self.channel.send(format!("failed {reason}").as_bytes());
    }

    /// Reads the predecessor's message after `ready`: `true` once the handover is complete
    /// (`complete`, or the predecessor is gone — then nobody else holds the listeners).
    pub(crate) fn poll_complete(&self) -> Result<bool, String> {
        match self.channel.recv(Some(Duration::ZERO)) {
            Ok(Some(m)) if m == channel::COMPLETE => Ok(true),
            Ok(None) => Ok(true),
            Ok(Some(m)) => Err(String::from_utf8_lossy(&m).chars().take(80).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}
