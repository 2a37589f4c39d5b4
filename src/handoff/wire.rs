//! The hand-off's words on the handover channel (docs/handover.md, "Live connections").
//!
//! ```text
//! old → new   offer 3 2\n                      batch 3, two connections; their fds attached
//!             conn echo 1 12 0\n               listener, state version, state bytes, unread bytes
//!             conn echo 1 12 5\n
//!             \n
//!             <12 + 12 + 5 bytes of state and unread data, in order>
//! new → old   verdict 3 a r:version\n          accept the first, refuse the second (why)
//! old → new   commit 3  |  abort 3            the old process's last word: on batches 1..=3
//! ```
//!
//! The successor holds every accepted connection without reading until `commit`, which the
//! old process sends once, after the last verdict: the whole hand-off is one transaction.
//!
//! Strict and bounded, like the manifest: a batch carries at most [`MAX_BATCH`] connections
//! and [`MAX_BATCH_BYTES`] of payload, a connection at most [`MAX_CONN_BYTES`].

/// Connections per batch: one `SCM_RIGHTS` message carries at most 253 fds.
pub const MAX_BATCH: usize = 250;
/// State plus unread bytes of one connection.
pub const MAX_CONN_BYTES: usize = 64 * 1024;
/// Payload of one batch (it must fit one seqpacket message with its header).
pub const MAX_BATCH_BYTES: usize = 96 * 1024;

/// One connection offered to the successor (its fd travels beside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    /// The listener it was accepted on (the successor adopts by listener name).
    pub listener: String,
    /// The service's own format version of `state`.
    pub version: u32,
    /// The conversation's state at a safe point, in the service's format.
    pub state: Vec<u8>,
    /// Bytes the service had read from the socket but not yet handled.
    pub unread: Vec<u8>,
}

impl Offered {
    pub(crate) fn bytes(&self) -> usize {
        self.state.len() + self.unread.len()
    }
}

/// Why the successor refused a connection; the old generation keeps it and drains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No adopter for that listener name.
    Listener,
    /// The adopter does not understand that state version.
    Version,
    /// Over a count or size limit.
    Limit,
}

impl Refusal {
    fn word(self) -> &'static str {
        match self {
            Refusal::Listener => "listener",
            Refusal::Version => "version",
            Refusal::Limit => "limit",
        }
    }

    fn parse(w: &str) -> Option<Refusal> {
        Some(match w {
            "listener" => Refusal::Listener,
            "version" => Refusal::Version,
            "limit" => Refusal::Limit,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Listener => "the successor adopts no connections of that listener",
            Refusal::Version => "the successor does not understand that state version",
            Refusal::Limit => "over the successor's hand-off limits",
        })
    }
}

/// A hand-off message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HandOff {
    Offer {
        batch: u32,
        conns: Vec<Offered>,
    },
    Verdict {
        batch: u32,
        answers: Vec<Result<(), Refusal>>,
    },
    Commit(u32),
    Abort(u32),
}

/// Whether `bytes` is a hand-off message at all (the channel's other words are plain text).
pub(crate) fn is_handoff(bytes: &[u8]) -> bool {
    [&b"offer "[..], b"verdict ", b"commit ", b"abort "]
        .iter()
        .any(|p| bytes.starts_with(p))
}

impl HandOff {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            HandOff::Offer { batch, conns } => {
                let mut out = format!("offer {batch} {}\n", conns.len()).into_bytes();
                for c in conns {
                    out.extend(
                        format!(
                            "conn {} {} {} {}\n",
                            c.listener,
                            c.version,
                            c.state.len(),
                            c.unread.len()
                        )
                        .bytes(),
                    );
                }
                out.push(b'\n');
                for c in conns {
                    out.extend_from_slice(&c.state);
                    out.extend_from_slice(&c.unread);
                }
                out
            }
            HandOff::Verdict { batch, answers } => {
                let words: Vec<String> = answers
                    .iter()
                    .map(|a| match a {
                        Ok(()) => "a".to_owned(),
                        Err(r) => format!("r:{}", r.word()),
                    })
                    .collect();
                format!("verdict {batch} {}", words.join(" ")).into_bytes()
            }
            HandOff::Commit(b) => format!("commit {b}").into_bytes(),
            HandOff::Abort(b) => format!("abort {b}").into_bytes(),
        }
    }

    /// Parses one message; every deviation is an error in words.
    pub(crate) fn decode(bytes: &[u8]) -> Result<HandOff, String> {
        if bytes.starts_with(b"offer ") {
            return decode_offer(bytes);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let mut words = text.split(' ');
        let kind = words.next().unwrap_or_default();
        let batch: u32 = words
            .next()
            .and_then(|b| b.parse().ok())
            .ok_or("expected a batch number")?;
        match kind {
            "commit" | "abort" if words.next().is_none() => Ok(if kind == "commit" {
                HandOff::Commit(batch)
            } else {
                HandOff::Abort(batch)
            }),
            "verdict" => {
                let answers = words
                    .map(|w| match w {
                        "a" => Ok(Ok(())),
                        _ => w
                            .strip_prefix("r:")
                            .and_then(Refusal::parse)
                            .map(Err)
                            .ok_or_else(|| format!("bad answer {w:?}")),
                    })
                    .take(MAX_BATCH + 1)
                    .collect::<Result<Vec<_>, String>>()?;
                if answers.is_empty() || answers.len() > MAX_BATCH {
                    return Err("a verdict answers 1 to 250 connections".into());
                }
                Ok(HandOff::Verdict { batch, answers })
            }
            _ => Err("unknown or malformed hand-off message".into()),
        }
    }
}

fn decode_offer(bytes: &[u8]) -> Result<HandOff, String> {
    let head_end = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("offer without the blank line that ends its header")?;
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| "offer header not UTF-8")?;
    let mut payload = &bytes[head_end + 2..];
    let mut lines = head.split('\n');
    let mut first = lines.next().unwrap_or_default().split(' ').skip(1);
    let batch: u32 = first
        .next()
        .and_then(|b| b.parse().ok())
        .ok_or("offer: expected a batch number")?;
    let n: usize = first
        .next()
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=MAX_BATCH).contains(n))
        .ok_or("offer: expected 1 to 250 connections")?;
    if first.next().is_some() {
        return Err("offer: trailing words".into());
    }
    let mut conns = Vec::with_capacity(n);
    let mut total = 0usize;
    for line in lines {
        let w: Vec<&str> = line.split(' ').collect();
        let [kw, listener, version, state_len, unread_len] = w[..] else {
            return Err(format!("offer: bad line {line:?}"));
        };
        let num = |s: &str| s.parse::<usize>().ok();
        let (Some(version), Some(sl), Some(ul)) =
            (version.parse::<u32>().ok(), num(state_len), num(unread_len))
        else {
            return Err(format!("offer: bad numbers in {line:?}"));
        };
        if kw != "conn" || !crate::manifest::valid_name(listener) {
            return Err(format!("offer: bad line {line:?}"));
        }
        if sl.saturating_add(ul) > MAX_CONN_BYTES {
            return Err("offer: a connection over the size limit".into());
        }
        total += sl + ul;
        if total > MAX_BATCH_BYTES || sl + ul > payload.len() {
            return Err("offer: payload shorter than announced or over the limit".into());
        }
        let (state, rest) = payload.split_at(sl);
        let (unread, rest) = rest.split_at(ul);
        payload = rest;
        conns.push(Offered {
            listener: listener.to_owned(),
            version,
            state: state.to_vec(),
            unread: unread.to_vec(),
        });
    }
    if conns.len() != n {
        return Err(format!("offer: {n} announced, {} described", conns.len()));
    }
    if !payload.is_empty() {
        return Err("offer: payload longer than announced".into());
    }
    Ok(HandOff::Offer { batch, conns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(state: &[u8], unread: &[u8]) -> Offered {
        Offered {
            listener: "echo".into(),
            version: 1,
            state: state.to_vec(),
            unread: unread.to_vec(),
        }
    }

    #[test]
    fn round_trips() {
        for m in [
            HandOff::Offer {
                batch: 3,
                conns: vec![conn(b"state one", b""), conn(b"", b"unread\n\n")],
            },
            HandOff::Verdict {
                batch: 3,
                answers: vec![Ok(()), Err(Refusal::Version), Err(Refusal::Limit)],
            },
            HandOff::Commit(3),
            HandOff::Abort(4),
        ] {
            let bytes = m.encode();
            assert!(is_handoff(&bytes));
            assert_eq!(HandOff::decode(&bytes), Ok(m));
        }
    }

    #[test]
    fn rejects_what_does_not_add_up() {
        let ok = HandOff::Offer {
            batch: 1,
            conns: vec![conn(b"abc", b"de")],
        }
        .encode();
        let mut longer = ok.clone();
        longer.push(b'x');
        let shorter = &ok[..ok.len() - 1];
        for (bytes, why) in [
            (&longer[..], "longer"),
            (shorter, "shorter"),
            (b"offer 1 0\n\n" as &[u8], "1 to 250"),
            (b"offer 1 2\nconn echo 1 0 0\n\n", "2 announced"),
            (b"offer 1 1\nconn a:b 1 0 0\n\n", "bad line"),
            (b"offer 1 1\nconn echo 1 70000 0\n\n", "size limit"),
            (b"verdict 1", "1 to 250"),
            (b"verdict 1 a r:nope", "bad answer"),
            (b"commit x", "batch"),
            (b"commit 1 2", "unknown"),
        ] {
            let e = HandOff::decode(bytes).expect_err(why);
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
