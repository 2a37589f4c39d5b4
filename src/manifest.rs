//! The handover manifest: what the old process tells its successor.
//!
//! A line-based text format, versioned on its first line, so two adjacent releases of a
//! service can always tell whether they understand each other and say so in plain words.
//! The parser is strict: anything unexpected is an error naming the line, never a guess.
//!
//! ```text
//! exuvia-handover 1
//! generation 4
//! draining 1200 83417
//! fd 3 tcp echo
//! fd 4 unix api
//! state 1024
//! end
//! ```

use std::fmt;
use std::os::fd::RawFd;

use crate::error::ManifestError;

/// Wire version; bump on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
const MAGIC: &str = "exuvia-handover";
/// No real service hands over more; the bound keeps the manifest well inside one message
/// (and the socket buffer), and a hostile one from costing memory.
pub const MAX_ENTRIES: usize = 256;
/// Upper bound for the opaque state blob.
pub const MAX_STATE_LEN: usize = 64 << 20;

/// What kind of fd an entry is; the successor checks the fd really is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FdKind {
    /// A listening TCP socket.
    Tcp,
    /// A listening Unix stream socket.
    Unix,
    /// A UDP socket.
    Udp,
    /// A Unix datagram socket.
    UnixDatagram,
    /// A listening Unix seqpacket socket.
    UnixSeqpacket,
    /// Any other fd the service registered.
    Fd,
}

impl FdKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FdKind::Tcp => "tcp",
            FdKind::Unix => "unix",
            FdKind::Udp => "udp",
            FdKind::UnixDatagram => "unix-dgram",
            FdKind::UnixSeqpacket => "seqpacket",
            FdKind::Fd => "fd",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tcp" => FdKind::Tcp,
            "unix" => FdKind::Unix,
            "udp" => FdKind::Udp,
            "unix-dgram" => FdKind::UnixDatagram,
            "seqpacket" => FdKind::UnixSeqpacket,
            "fd" => FdKind::Fd,
            _ => return None,
        })
    }

    /// Whether the socket must be in the listening state.
    pub(crate) fn is_listener(self) -> bool {
        matches!(self, FdKind::Tcp | FdKind::Unix | FdKind::UnixSeqpacket)
    }
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One handed-over fd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Name the service registered it under.
    pub name: String,
    /// What it is.
    pub kind: FdKind,
    /// Its number in the successor.
    pub fd: RawFd,
}

/// An older generation that is still draining: pid plus start time, so a recycled pid is
/// never mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ancestor {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// The whole handover description.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Generation of the successor (the first process is generation 1).
    pub generation: u64,
    /// Older generations still draining, oldest first.
    pub draining: Vec<Ancestor>,
    /// The fds, in fd order.
    pub entries: Vec<Entry>,
    /// Length of the state blob that follows the manifest on the channel.
    pub state_len: Option<usize>,
    /// `CLOCK_MONOTONIC` µs at which the reload signal triggered this upgrade, if it did: a
    /// control request for the same `systemctl reload` may reach the successor and must
    /// get this upgrade's verdict rather than start another.
    pub signal_trigger_us: Option<u64>,
}

/// Checks a name: what systemd allows in `FDNAME=` minus anything that would need quoting
/// here or in `LISTEN_FDNAMES` (`:`), so names survive every hop unchanged.
pub fn validate_name(name: &str) -> Result<(), crate::Error> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidName(name.to_owned()))
    }
}

impl Manifest {
    /// Serialises the manifest.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{MAGIC} {PROTOCOL_VERSION}\ngeneration {}\n",
            self.generation
        );
        for a in &self.draining {
            s.push_str(&format!("draining {} {}\n", a.pid, a.start_time));
        }
        for e in &self.entries {
            s.push_str(&format!("fd {} {} {}\n", e.fd, e.kind, e.name));
        }
        if let Some(len) = self.state_len {
            s.push_str(&format!("state {len}\n"));
        }
        if let Some(t) = self.signal_trigger_us {
            s.push_str(&format!("signal-trigger {t}\n"));
        }
        s.push_str("end\n");
        s
    }

    /// Parses a manifest; every deviation is an error that names the offending line.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if text.is_empty() {
            return Err(ManifestError::Empty);
        }
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let (_, first) = lines.next().ok_or(ManifestError::Empty)?;
        let version = first
            .strip_prefix(MAGIC)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or_else(|| ManifestError::NotAManifest(truncate(first)))?;
        let version: u32 = version
            .parse()
            .map_err(|_| ManifestError::NotAManifest(truncate(first)))?;
        if version != PROTOCOL_VERSION {
            return Err(ManifestError::Version {
                theirs: version,
                ours: PROTOCOL_VERSION,
            });
        }
        let mut m = Manifest::default();
        let mut generation = None;
        let mut ended = false;
        for (no, line) in lines.by_ref() {
            let bad = |why: &str| ManifestError::Line {
                line: no,
                text: truncate(line),
                why: why.to_owned(),
            };
            if line == "end" {
                ended = true;
                break;
            }
            let mut words = line.split(' ');
            match words.next() {
                Some("generation") if generation.is_none() => {
                    let g = words
                        .next()
                        .and_then(|w| w.parse::<u64>().ok())
                        .filter(|g| *g >= 2);
                    generation = Some(g.ok_or_else(|| bad("generation must be a number >= 2"))?);
                }
                Some("draining") => {
                    let pid = words
                        .next()
                        .and_then(|w| w.parse::<i32>().ok())
                        .filter(|p| *p > 1);
                    let st = words.next().and_then(|w| w.parse::<u64>().ok());
                    match (pid, st) {
                        (Some(pid), Some(start_time)) => {
                            m.draining.push(Ancestor { pid, start_time })
                        }
                        _ => return Err(bad("expected `draining PID START_TIME`")),
                    }
                }
                Some("fd") => {
                    let fd = words
                        .next()
                        .and_then(|w| w.parse::<RawFd>().ok())
                        .filter(|fd| *fd >= 3);
                    let kind = words.next().and_then(FdKind::parse);
                    let name = words.next();
                    match (fd, kind, name) {
                        (Some(fd), Some(kind), Some(name)) => {
                            validate_name(name).map_err(|_| bad("invalid fd name"))?;
                            if m.entries.iter().any(|e| e.fd == fd || e.name == name) {
                                return Err(bad("duplicate fd number or name"));
                            }
                            if m.entries.len() >= MAX_ENTRIES {
                                return Err(bad("too many fds"));
                            }
                            m.entries.push(Entry {
                                name: name.to_owned(),
                                kind,
                                fd,
                            });
                        }
                        _ => {
                            return Err(bad(
                                "expected `fd NUMBER KIND NAME` with KIND one of tcp, unix, udp, unix-dgram, seqpacket, fd",
                            ));
                        }
                    }
                }
                Some("state") if m.state_len.is_none() => {
                    let len = words
                        .next()
                        .and_then(|w| w.parse::<usize>().ok())
                        .filter(|l| *l <= MAX_STATE_LEN);
                    m.state_len =
                        Some(len.ok_or_else(|| bad("state length missing or too large"))?);
                }
                Some("signal-trigger") if m.signal_trigger_us.is_none() => {
                    let t = words.next().and_then(|w| w.parse::<u64>().ok());
                    m.signal_trigger_us =
                        Some(t.ok_or_else(|| bad("expected `signal-trigger MICROSECONDS`"))?);
                }
                _ => return Err(bad("unknown or repeated keyword")),
            }
            if words.next().is_some() {
                return Err(bad("trailing words"));
            }
        }
        if !ended {
            return Err(ManifestError::Truncated);
        }
        if lines.next().is_some() {
            return Err(ManifestError::TrailingData);
        }
        m.generation = generation.ok_or(ManifestError::MissingGeneration)?;
        Ok(m)
    }
}

fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            generation: 4,
            draining: vec![Ancestor {
                pid: 1200,
                start_time: 83417,
            }],
            entries: vec![
                Entry {
                    name: "echo".into(),
                    kind: FdKind::Tcp,
                    fd: 3,
                },
                Entry {
                    name: "api.sock".into(),
                    kind: FdKind::Unix,
                    fd: 4,
                },
            ],
            state_len: Some(17),
            signal_trigger_us: Some(123_456_789),
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.encode()).unwrap(), m);
    }

    #[test]
    fn rejects_garbage_with_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("hello world\n", "not an exuvia handover manifest"),
            ("exuvia-handover 99\nend\n", "version 99"),
            ("exuvia-handover 1\ngeneration 2\n", "truncated"),
            ("exuvia-handover 1\nend\n", "generation"),
            ("exuvia-handover 1\ngeneration 1\nend\n", "line 2"),
            (
                "exuvia-handover 1\ngeneration 2\nfd 3 tcp a\nfd 3 udp b\nend\n",
                "duplicate",
            ),
            (
                "exuvia-handover 1\ngeneration 2\nfd 2 tcp a\nend\n",
                "line 3",
            ),
            (
                "exuvia-handover 1\ngeneration 2\nfd 3 sctp a\nend\n",
                "KIND",
            ),
            (
                "exuvia-handover 1\ngeneration 2\nfd 3 tcp a:b\nend\n",
                "invalid fd name",
            ),
            (
                "exuvia-handover 1\ngeneration 2\nfd 3 tcp a extra\nend\n",
                "trailing",
            ),
            (
                "exuvia-handover 1\ngeneration 2\nstate 999999999999\nend\n",
                "too large",
            ),
            ("exuvia-handover 1\ngeneration 2\nend\nmore\n", "after"),
            (
                "exuvia-handover 1\ngeneration 2\ngeneration 3\nend\n",
                "repeated",
            ),
            ("exuvia-handover 1\ngeneration 2\nbogus\nend\n", "unknown"),
        ];
        for (input, want) in cases {
            let err = Manifest::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(want),
                "{input:?}: error {err:?} should mention {want:?}"
            );
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("echo").is_ok());
        assert!(validate_name("a.b-c_d").is_ok());
        for bad in ["", "a b", "a:b", "é", &"x".repeat(256)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
