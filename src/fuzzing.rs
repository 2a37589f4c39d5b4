//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never for services):
//! every parser of input that comes from outside the process, each with the property it
//! must hold. A property that does not hold panics, which is what a fuzzer reports.

use std::ffi::OsString;

/// The handover manifest: parsing never panics, and whatever parses re-encodes (in the
/// current format) to text that parses to the same manifest.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = crate::manifest::Manifest::parse(text) {
        let again =
            crate::manifest::Manifest::parse(&m.encode()).expect("re-encoded manifest parses");
        assert_eq!(again.generation, m.generation);
        assert_eq!(again.entries, m.entries);
        assert_eq!(again.draining, m.draining);
        assert_eq!(again.state_len, m.state_len);
        assert_eq!(again.signal_trigger_us, m.signal_trigger_us);
    }
}

/// Channel messages: decoding never panics; a decoded message re-encodes to the same
/// message, and what the decoder hands on is printable.
pub fn channel_message(data: &[u8]) {
    match crate::channel::Message::decode(data) {
        Ok(m) => {
            if let crate::channel::Message::Failed(r) = &m {
                assert!(!r.chars().any(char::is_control), "{r:?}");
            }
            assert_eq!(crate::channel::Message::decode(&m.encode()), Ok(m));
        }
        Err(quoted) => assert!(!quoted.chars().any(char::is_control), "{quoted:?}"),
    }
}

/// Socket activation's variables as a pure function (no fd is touched): never panics;
/// accepted names are valid, one per fd.
#[cfg(feature = "systemd")]
pub fn activation(
    listen_pid: Option<OsString>,
    listen_fds: Option<OsString>,
    listen_fdnames: Option<OsString>,
    listen_pidfdid: Option<OsString>,
    pid: u32,
) {
    let env = crate::env::StartEnv {
        listen_pid,
        listen_fds,
        listen_fdnames,
        listen_pidfdid,
        ..crate::env::StartEnv::default()
    };
    if let Ok(Some(a)) = crate::systemd::activation::parse(&env, pid) {
        assert_eq!(a.names.len(), a.count);
        assert!(a.names.iter().all(|n| crate::manifest::valid_name(n)));
    }
}

/// The control socket, server side: what a connection's line means.
pub fn control_request(line: &[u8]) {
    let _ = crate::control::parse_request(&String::from_utf8_lossy(line));
}

/// The control socket, client side: an answer never panics, and what reaches the user is
/// printable and a positive pid.
pub fn control_answer(line: &str) {
    match crate::control::parse_answer(line) {
        Ok(u) => assert!(u.pid > 0),
        Err(crate::control::ControlError::Refused { kind, message }) => {
            assert!(!kind.chars().chain(message.chars()).any(char::is_control));
        }
        Err(_) => {}
    }
}

/// Deadlines from the unit's environment: never panics, never longer than the maximum.
pub fn timespan(text: &str) {
    if let Ok(d) = crate::timespan::parse(text) {
        assert!(d <= crate::timespan::MAX);
    }
}

/// The `exuvia-reload` command line.
pub fn reload_args(args: Vec<OsString>) {
    let _ = crate::reload_client::parse_args(args);
}

/// The hand-off messages (offers with state, verdicts, commit/abort): decoding never panics,
/// stays within its bounds, and a decoded message re-encodes to the same message.
pub fn handoff(data: &[u8]) {
    use crate::handoff::wire::{HandOff, MAX_BATCH, MAX_BATCH_BYTES};
    if let Ok(m) = HandOff::decode(data) {
        if let HandOff::Offer { conns, .. } = &m {
            assert!(conns.len() <= MAX_BATCH);
            assert!(conns.iter().map(|c| c.bytes()).sum::<usize>() <= MAX_BATCH_BYTES);
        }
        assert_eq!(HandOff::decode(&m.encode()), Ok(m));
    }
}
