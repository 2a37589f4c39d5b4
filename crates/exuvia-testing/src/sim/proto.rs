//! The vocabulary of the simulator: parsed datagrams, the rules it enforces and the records it
//! keeps. Kept apart from the state machine so the rule list can be read in one place.

use std::fmt;
use std::time::Duration;

/// A rule of systemd's notification protocol that a service broke.
///
/// Every variant names one bug class seen in real services (see the crate's research notes);
/// the [`Display`](fmt::Display) text says what systemd does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// `RELOADING=1` without `MONOTONIC_USEC=` in the same datagram: systemd ignores it and
    /// `systemctl reload` hangs until the timeout.
    ReloadingWithoutMonotonicUsec,
    /// `MONOTONIC_USEC=` in a datagram without `RELOADING=1` (the pair was split in two sends).
    MonotonicUsecWithoutReloading,
    /// `MONOTONIC_USEC=` older than the moment the reload signal was sent: ignored by systemd.
    StaleMonotonicUsec,
    /// `MONOTONIC_USEC=` unparseable or in the future (typically wall-clock time).
    BadMonotonicUsec,
    /// The sender is not allowed to notify under the current `NotifyAccess=`; systemd drops it.
    Unauthorized,
    /// `MAINPID=` names a process that does not exist (or is a zombie).
    MainPidDead,
    /// `MAINPID=` names a process outside the unit; refused (systemd makes an exception for
    /// root senders, the simulator does not).
    MainPidNotMember,
    /// The new main process is not a direct child of the manager (it was not double-forked):
    /// systemd warns "Supervising process N which is not our child" and kills it hard on stop.
    AlienMainPid,
    /// `READY=1` while the main process neither catches nor blocks the reload signal:
    /// systemd ≥ 262 fails the start, and a reload signal would kill the process.
    ReloadSignalNotCaught,
    /// `READY=1` after the reload signal but without `RELOADING=1` first: ignored, the reload
    /// hangs.
    ReadyWithoutReloading,
    /// `STOPPING=1` from a process other than the main one (ignored under `main`, fatal under
    /// `all`).
    StoppingFromNonMain,
    /// A line without `=`, a flag field whose value is not `1`, or an unparseable number.
    MalformedField,
    /// A datagram systemd drops whole: not UTF-8, embedded NUL, or truncated.
    MalformedDatagram,
    /// File descriptors sent without `FDSTORE=1` (or `BARRIER=1`): systemd closes them.
    UnexpectedFds,
    /// The main process exited while a reload was in progress: systemd stops the whole unit,
    /// including any successor that was not yet announced.
    MainExitedDuringReload,
    /// No `READY=1` completed the reload within the reload timeout (`TimeoutStartSec=`).
    ReloadTimeout,
    /// No first `READY=1` within the start timeout.
    StartTimeout,
}

impl Rule {
    fn describe(self) -> &'static str {
        match self {
            Rule::ReloadingWithoutMonotonicUsec => {
                "RELOADING=1 without MONOTONIC_USEC= in the same datagram (systemd ignores it; reload hangs)"
            }
            Rule::MonotonicUsecWithoutReloading => {
                "MONOTONIC_USEC= without RELOADING=1 in the same datagram (split notification)"
            }
            Rule::StaleMonotonicUsec => {
                "MONOTONIC_USEC= is older than the reload signal (systemd ignores the RELOADING=1)"
            }
            Rule::BadMonotonicUsec => {
                "MONOTONIC_USEC= is not a CLOCK_MONOTONIC time in microseconds"
            }
            Rule::Unauthorized => "sender not allowed by NotifyAccess= (datagram ignored)",
            Rule::MainPidDead => "MAINPID= names a process that does not exist",
            Rule::MainPidNotMember => "MAINPID= names a process outside the unit",
            Rule::AlienMainPid => {
                "new main process is not a child of the manager (spawn it with a double fork)"
            }
            Rule::ReloadSignalNotCaught => {
                "main process does not catch or block the reload signal (systemd >= 262 fails the start)"
            }
            Rule::ReadyWithoutReloading => {
                "READY=1 after the reload signal without RELOADING=1 (ignored; reload hangs)"
            }
            Rule::StoppingFromNonMain => "STOPPING=1 from a process that is not the main process",
            Rule::MalformedField => "malformed notification field",
            Rule::MalformedDatagram => "malformed datagram (dropped whole)",
            Rule::UnexpectedFds => "file descriptors sent without FDSTORE=1 (systemd closes them)",
            Rule::MainExitedDuringReload => {
                "main process exited during a reload (systemd stops the whole unit)"
            }
            Rule::ReloadTimeout => "reload did not complete within the reload timeout",
            Rule::StartTimeout => "no READY=1 within the start timeout",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// One broken rule, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// The offending datagram (lossily decoded), or empty when the violation is an event such
    /// as a timeout or an exit.
    pub datagram: String,
    /// Kernel-verified pid of the datagram's sender, if a datagram caused it.
    pub sender_pid: Option<u32>,
    /// CLOCK_MONOTONIC time of detection.
    pub at: Duration,
    /// Specifics (pids, values, expected bounds).
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.rule, self.rule)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        match self.sender_pid {
            Some(pid) => write!(
                f,
                "\n    datagram from pid {pid} at {:.6}s: {:?}",
                self.at.as_secs_f64(),
                self.datagram
            ),
            None => write!(f, "\n    at {:.6}s (no datagram)", self.at.as_secs_f64()),
        }
    }
}

/// CLOCK_MONOTONIC now, the clock of `MONOTONIC_USEC=` and of every timestamp we record.
pub(crate) fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Formats a list of violations one per paragraph (used by errors and panics).
pub(crate) fn list(violations: &[Violation]) -> String {
    let mut out = String::new();
    for (i, v) in violations.iter().enumerate() {
        out.push_str(&format!("\n  {}. {v}", i + 1));
    }
    out
}

/// A datagram as received, whatever became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The payload, lossily decoded.
    pub datagram: String,
    /// Sender pid from `SCM_CREDENTIALS` (verified by the kernel).
    pub sender_pid: u32,
    /// Sender uid from `SCM_CREDENTIALS`.
    pub sender_uid: u32,
    /// CLOCK_MONOTONIC receive time.
    pub at: Duration,
    /// Number of file descriptors that came with it (`SCM_RIGHTS`).
    pub fds: usize,
    /// Whether the sender was authorised under `NotifyAccess=` (unauthorised ones are ignored).
    pub authorized: bool,
}

/// A datagram split into `KEY=value` fields, in order.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) pairs: Vec<(String, String)>,
    /// Lines that had no `=`; systemd skips them.
    pub(crate) bad_lines: Vec<String>,
}

impl Fields {
    /// Like systemd's `strv_find_startswith`: the first occurrence wins.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Like systemd's `strv_contains(tags, "KEY=1")`.
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, v)| k == key && v == "1")
    }
}

/// Why a whole datagram is dropped.
pub(crate) fn parse(raw: &[u8]) -> Result<Fields, &'static str> {
    if raw.contains(&0) {
        return Err("embedded NUL byte");
    }
    let text = std::str::from_utf8(raw).map_err(|_| "not valid UTF-8")?;
    let mut fields = Fields::default();
    // systemd splits a datagram at its NEWLINE characters, `\n` and `\r` alike, and skips the
    // empty fields between them (so `READY=1\r\n` is READY=1).
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) => fields.pairs.push((k.to_owned(), v.to_owned())),
            None => fields.bad_lines.push(line.to_owned()),
        }
    }
    Ok(fields)
}

/// Fields whose only meaningful value is `1`; anything else is silently ignored by systemd,
/// which is how `READY=true` bugs hide.
pub(crate) const FLAG_FIELDS: &[&str] = &[
    "READY",
    "RELOADING",
    "STOPPING",
    "FDSTORE",
    "BARRIER",
    "MAINPIDFD",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_fields_and_keeps_bad_lines() {
        let f = parse(b"READY=1\nSTATUS=a=b\n\njunk\n").expect("valid");
        assert_eq!(f.get("STATUS"), Some("a=b"));
        assert!(f.flag("READY"));
        assert!(!f.flag("STATUS"));
        assert_eq!(f.bad_lines, vec!["junk".to_owned()]);
        let f = parse(b"READY=1\r\nSTATUS=ok\rjunk\r").expect("valid");
        assert!(f.flag("READY"));
        assert_eq!(f.get("STATUS"), Some("ok"));
        assert_eq!(f.bad_lines, vec!["junk".to_owned()]);
    }

    #[test]
    fn parse_rejects_nul_and_invalid_utf8() {
        assert!(parse(b"READY=1\0").is_err());
        assert!(parse(b"STATUS=\xff").is_err());
    }
}
