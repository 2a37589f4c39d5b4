//! The handover manifest: what the old process tells its successor, and the one place that
//! knows how the handed-over fds travel.
//!
//! A line-based text format, versioned on its first line, so two releases of a service can
//! always tell whether they understand each other and say so in plain words. The parser is
//! strict: anything unexpected is an error naming the line, never a guess. What is promised
//! across exuvia versions is written down in docs/handover.md.
//!
//! ```text
//! exuvia-handover 2
//! generation 4
//! draining 1200 83417
//! fd tcp echo
//! fd unix api
//! state 1024
//! end
//! ```
//!
//! **Format 2** (this release writes it): the fds travel with the manifest's message as
//! `SCM_RIGHTS`, in the order of the `fd` lines (beyond 253, the rest in `fds` messages right
//! after it), so the successor owns exactly what it was
//! sent and can never mistake one of its own fds for an inherited one. Lines starting with
//! `?` are extensions a reader may skip when it does not know them; any other unknown line is
//! an error. **Format 1** (read only, for upgrades from releases that wrote it): the fds were
//! inherited through `exec` at 3, 4, … in line order with the channel right after them; see
//! [`inherited_fd`].

use std::fmt;
use std::os::fd::RawFd;

/// The format this build writes.
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest format this build reads.
pub const OLDEST_READABLE: u32 = 1;
const MAGIC: &str = "exuvia-handover";
/// At most this many fds travel, in every format: what format 1 allowed, so whatever a
/// format-1 predecessor handed over can be handed on. More than one `SCM_RIGHTS` message
/// carries (the kernel's `SCM_MAX_FD`, 253) travel in several (docs/handover.md).
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

/// One handed-over fd; its position among the entries is its position in the transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Name the service registered it under.
    pub name: String,
    /// What it is.
    pub kind: FdKind,
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
    /// The format it was read in (what the successor answers in).
    pub version: u32,
    /// Generation of the successor (the first process is generation 1).
    pub generation: u64,
    /// Older generations still draining, oldest first.
    pub draining: Vec<Ancestor>,
    /// The fds, in transfer order.
    pub entries: Vec<Entry>,
    /// Length of the state blob that follows the manifest on the channel.
    pub state_len: Option<usize>,
    /// `CLOCK_MONOTONIC` µs at which the reload signal triggered this upgrade, if it did: a
    /// control request for the same `systemctl reload` may reach the successor and must
    /// get this upgrade's verdict rather than start another.
    pub signal_trigger_us: Option<u64>,
    /// The predecessor's counters (`?counters k=v …`), so totals continue across generations.
    pub counters: Vec<(String, u64)>,
    /// Extension lines (without the `?`) this build did not understand, kept for logs.
    pub skipped: Vec<String>,
}

/// Errors in the manifest text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Nothing was received.
    #[error("empty manifest")]
    Empty,
    /// The first line is not ours.
    #[error("not an exuvia handover manifest (first line {0:?})")]
    NotAManifest(String),
    /// Written by an incompatible release.
    #[error(
        "handover format {theirs} is not supported (this build reads {oldest} to {ours}); restart the service instead of reloading, or upgrade in two steps through a release that reads both (docs/handover.md)"
    )]
    Version {
        /// Version in the manifest.
        theirs: u32,
        /// Oldest version this build reads.
        oldest: u32,
        /// Version this build writes.
        ours: u32,
    },
    /// A line that does not parse.
    #[error("manifest line {line} ({text:?}): {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line (truncated).
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// No `end` line.
    #[error("manifest truncated: no `end` line")]
    Truncated,
    /// Text after `end`.
    #[error("unexpected data after the manifest's `end` line")]
    TrailingData,
    /// No `generation` line.
    #[error("manifest has no generation line")]
    MissingGeneration,
}

/// Whether a name can travel: what systemd allows in `FDNAME=` minus anything that would
/// need quoting here or in `LISTEN_FDNAMES` (`:`), so names survive every hop unchanged.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Format 1's layout rule, the only place it lives: the `i`-th entry was inherited at fd
/// `3 + i`, and the channel sat right after the last one.
pub fn inherited_fd(i: usize) -> RawFd {
    3 + i as RawFd
}

impl Manifest {
    /// Serialises the manifest in the current format.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{MAGIC} {PROTOCOL_VERSION}\ngeneration {}\n",
            self.generation
        );
        for a in &self.draining {
            s.push_str(&format!("draining {} {}\n", a.pid, a.start_time));
        }
        for e in &self.entries {
            s.push_str(&format!("fd {} {}\n", e.kind, e.name));
        }
        if let Some(len) = self.state_len {
            s.push_str(&format!("state {len}\n"));
        }
        if let Some(t) = self.signal_trigger_us {
            s.push_str(&format!("signal-trigger {t}\n"));
        }
        if !self.counters.is_empty() {
            s.push_str(&format!(
                "?counters {}\n",
                crate::stats::format_pairs(&self.counters)
            ));
        }
        s.push_str("end\n");
        s
    }

    /// Parses a manifest of any readable format; every deviation is an error that names
    /// the offending line.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if text.is_empty() {
            return Err(ManifestError::Empty);
        }
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let (_, first) = lines.next().ok_or(ManifestError::Empty)?;
        let version: u32 = first
            .strip_prefix(MAGIC)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ManifestError::NotAManifest(truncate(first)))?;
        if !(OLDEST_READABLE..=PROTOCOL_VERSION).contains(&version) {
            return Err(ManifestError::Version {
                theirs: version,
                oldest: OLDEST_READABLE,
                ours: PROTOCOL_VERSION,
            });
        }
        let mut m = Manifest {
            version,
            ..Manifest::default()
        };
        let mut generation = None;
        let mut ended = false;
        for (no, line) in lines.by_ref() {
            if line == "end" {
                ended = true;
                break;
            }
            m.parse_line(line, &mut generation)
                .map_err(|why| ManifestError::Line {
                    line: no,
                    text: truncate(line),
                    why,
                })?;
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

    fn parse_line(&mut self, line: &str, generation: &mut Option<u64>) -> Result<(), String> {
        if let Some(ext) = line.strip_prefix('?').filter(|_| self.version >= 2) {
            if ext.is_empty() || ext.chars().any(char::is_control) {
                return Err("empty or unprintable extension line".into());
            }
            match ext.split_once(' ') {
                Some(("counters", pairs)) if self.counters.is_empty() => {
                    self.counters = crate::stats::parse_pairs(pairs)?;
                }
                _ => self.skipped.push(truncate(ext)),
            }
            return Ok(());
        }
        let mut words = line.split(' ');
        match words.next() {
            Some("generation") if generation.is_none() => {
                let g = words
                    .next()
                    .and_then(|w| w.parse::<u64>().ok())
                    .filter(|g| *g >= 2);
                *generation = Some(g.ok_or("generation must be a number >= 2")?);
            }
            Some("draining") => {
                let pid = words
                    .next()
                    .and_then(|w| w.parse::<i32>().ok())
                    .filter(|p| *p > 1);
                let st = words.next().and_then(|w| w.parse::<u64>().ok());
                match (pid, st) {
                    (Some(pid), Some(start_time)) if self.draining.len() < MAX_ENTRIES => {
                        self.draining.push(Ancestor { pid, start_time })
                    }
                    (Some(_), Some(_)) => return Err("too many draining generations".into()),
                    _ => return Err("expected `draining PID START_TIME`".into()),
                }
            }
            Some("fd") => {
                if self.version == 1 {
                    // Format 1 wrote the number the fd had in the successor; it can only
                    // ever have been the layout's (see `inherited_fd`), so that is checked.
                    let want = inherited_fd(self.entries.len());
                    if words.next().and_then(|w| w.parse::<RawFd>().ok()) != Some(want) {
                        return Err(format!(
                            "expected `fd {want} KIND NAME` (format 1 numbers fds 3, 4, … in order)"
                        ));
                    }
                }
                let kind = words.next().and_then(FdKind::parse);
                let name = words.next();
                let (Some(kind), Some(name)) = (kind, name) else {
                    return Err(
                        "expected `fd KIND NAME` with KIND one of tcp, unix, udp, unix-dgram, seqpacket, fd"
                            .into(),
                    );
                };
                if !valid_name(name) {
                    return Err("invalid fd name".into());
                }
                if self.entries.iter().any(|e| e.name == name) {
                    return Err("duplicate fd name".into());
                }
                if self.entries.len() >= MAX_ENTRIES {
                    return Err("too many fds".into());
                }
                self.entries.push(Entry {
                    name: name.to_owned(),
                    kind,
                });
            }
            Some("state") if self.state_len.is_none() => {
                let len = words
                    .next()
                    .and_then(|w| w.parse::<usize>().ok())
                    .filter(|l| *l <= MAX_STATE_LEN);
                self.state_len = Some(len.ok_or("state length missing or too large")?);
            }
            Some("signal-trigger") if self.signal_trigger_us.is_none() => {
                let t = words.next().and_then(|w| w.parse::<u64>().ok());
                self.signal_trigger_us = Some(t.ok_or("expected `signal-trigger MICROSECONDS`")?);
            }
            _ => return Err("unknown or repeated keyword".into()),
        }
        if words.next().is_some() {
            return Err("trailing words".into());
        }
        Ok(())
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
mod tests;
