//! The control socket: trigger an upgrade and wait for its verdict.
//!
//! A signal cannot carry an answer, so `systemctl reload` with a signal alone cannot fail
//! when the upgrade fails. The control socket can: `ExecReload=` runs a client (the service
//! binary itself as `exuvia-reload`, see [`mod@crate::reload_client`], or `exuvia reload
//! --wait`) that connects, asks for an upgrade and exits non-zero with the reason if it
//! failed. The socket is a named listener like any other and is handed to every successor.
//!
//! Protocol, one line each way: `upgrade\n` → `ok pid=P generation=G ready_ms=R\n` or
//! `error KIND: MESSAGE\n` (KIND is `in-progress`, `refused`, `stopping` or `failed`). A request joins
//! an upgrade the reload signal started moments ago (systemd 253–261 sends the signal and runs `ExecReload=` for one reload; docs/systemd.md, "Reload verdicts").
//!
//! The socket is a door into the service, so it is guarded: only the service's own user or
//! root may ask (checked with `SO_PEERCRED`, not with file modes alone), at most
//! [`MAX_CONNECTIONS`] connections are served at once (each on a short-lived thread that
//! gives up on a silent client after [`READ_TIMEOUT`]), and anything else is refused in one line.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::error::printable;
use crate::lifecycle::ControlGuard;
use crate::request::{Request, Upgraded, Verdict};

/// Name under which the control socket is registered and handed over.
pub const CONTROL_NAME: &str = "exuvia-control";

/// Connections served at once; more are refused at once ("busy"), so a flood of clients
/// costs neither unbounded threads nor memory.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a connection may take to send its request line (the reload client sends it
/// right after connecting; a silent client frees its slot after this).
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest request line read; the only request is 8 bytes.
const MAX_LINE: u64 = 256;

/// The answer line for a verdict.
fn answer_line(v: &Verdict) -> String {
    match v {
        Verdict::Upgraded(u) => format!(
            "ok pid={} generation={} ready_ms={}\n",
            u.pid,
            u.generation,
            u.ready_after.as_millis()
        ),
        // One line: the message must not end the answer early.
        Verdict::Failed { kind, message } => {
            format!("error {}: {}\n", kind.as_str(), one_line(message))
        }
    }
}

fn refuse(mut stream: UnixStream, why: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(format!("error refused: {why}\n").as_bytes());
}

/// Serves one accepted control connection: refuses it at once when too many are open or the
/// peer may not upgrade this service, else reads its request on a thread of its own (a slow
/// client must not stall the control loop), hands it to the loop and writes the verdict.
pub(crate) fn serve(
    stream: UnixStream,
    tx: mpsc::Sender<Request>,
    wake: Arc<OwnedFd>,
    open: ControlGuard,
) {
    // Checked first: a client that may not upgrade never takes one of the slots.
    if let Err(why) = authorised(&stream) {
        return refuse(stream, &why);
    }
    if open.count() > MAX_CONNECTIONS {
        return refuse(stream, "too many control connections at once; retry");
    }
    let spawned = std::thread::Builder::new()
        .name("exuvia-control".into())
        .spawn(move || {
            let _open = open;
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
            let Ok(reader) = stream.try_clone() else {
                return;
            };
            let mut line = String::new();
            if BufReader::new(reader.take(MAX_LINE))
                .read_line(&mut line)
                .is_err()
            {
                return;
            }
            if let Err(why) = parse_request(&line) {
                return refuse(stream, why);
            }
            let (vtx, vrx) = mpsc::channel();
            if tx.send(Request::Join(vtx)).is_err() {
                return refuse(stream, "exuvia has shut down");
            }
            crate::sys::eventfd_signal(std::os::fd::AsFd::as_fd(&*wake));
            // The loop answers every request it took, or drops the sender when it ends.
            let line = match vrx.recv() {
                Ok(v) => answer_line(&v),
                Err(_) => "error failed: exuvia shut down before the upgrade finished\n".into(),
            };
            let mut stream = stream;
            let _ = stream.write_all(line.as_bytes());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a control connection thread");
    }
}

/// What a request line asks for; the only request is `upgrade`.
pub(crate) fn parse_request(line: &str) -> Result<(), &'static str> {
    match line.trim_end_matches(['\n', '\r']) {
        "upgrade" => Ok(()),
        "" => Err("empty request; the only request is `upgrade`"),
        _ => Err("unknown request; the only request is `upgrade`"),
    }
}

/// Only this service's user or root may trigger an upgrade.
fn authorised(stream: &UnixStream) -> Result<(), String> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(stream, PeerCredentials)
        .map_err(|e| format!("cannot read the client's credentials ({e})"))?;
    let me = nix::unistd::Uid::effective().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        Ok(())
    } else {
        Err(format!(
            "uid {} may not upgrade this service (only uid {me} or root)",
            cred.uid()
        ))
    }
}

/// Why [`request_upgrade`] did not report success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Could not reach the service.
    #[error(
        "cannot connect to the control socket {path}: {source}; is the service running with a control socket there?"
    )]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The service answered that the upgrade did not happen.
    #[error("upgrade {kind}: {message}")]
    Refused {
        /// `in-progress`, `refused`, `stopping` or `failed`.
        kind: String,
        /// The service's reason (control characters replaced, so it is safe to print).
        message: String,
    },
    /// No answer in time, or an answer we do not understand.
    #[error("control socket: {0}")]
    Protocol(String),
}

/// Asks the service behind `path` to upgrade and waits up to `timeout` for the verdict.
pub fn request_upgrade(path: &Path, timeout: Duration) -> Result<Upgraded, ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: path.display().to_string(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(connect_err)?;
    s.set_read_timeout(Some(timeout)).map_err(connect_err)?;
    // A service that refuses at once (busy, wrong user) answers and closes before reading
    // the request, so a failed write still leaves its answer to read.
    let wrote = s.write_all(b"upgrade\n");
    let mut line = String::new();
    let read = BufReader::new(s.take(4096)).read_line(&mut line);
    match (wrote, read) {
        (Err(e), _) if line.is_empty() => Err(connect_err(e)),
        (_, Err(e)) if line.is_empty() => Err(ControlError::Protocol(format!(
            "no answer within {timeout:?}: {e}"
        ))),
        _ => parse_answer(line.trim_end_matches(['\n', '\r'])),
    }
}

/// Parses one answer line (public for the fuzz targets; [`request_upgrade`] uses it).
#[doc(hidden)]
pub fn parse_answer(line: &str) -> Result<Upgraded, ControlError> {
    if let Some(rest) = line.strip_prefix("ok ") {
        let field = |k: &str| {
            rest.split(' ')
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let pid = field("pid")
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0);
        return match (pid, field("generation"), field("ready_ms")) {
            (Some(pid), Some(generation), Some(ms)) => Ok(Upgraded {
                pid,
                generation,
                ready_after: Duration::from_millis(ms),
                closed_after: Duration::ZERO,
            }),
            _ => Err(ControlError::Protocol(format!(
                "malformed answer {:?}",
                one_line(line)
            ))),
        };
    }
    if let Some((kind, message)) = line
        .strip_prefix("error ")
        .and_then(|rest| rest.split_once(": "))
    {
        return Err(ControlError::Refused {
            kind: one_line(kind),
            message: one_line(message),
        });
    }
    if line.is_empty() {
        return Err(ControlError::Protocol(
            "the service closed the connection without an answer".into(),
        ));
    }
    Err(ControlError::Protocol(format!(
        "malformed answer {:?}",
        one_line(line)
    )))
}

/// One printable line of at most 2000 characters.
fn one_line(s: &str) -> String {
    printable(&s.chars().take(2000).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::FailureKind;

    #[test]
    fn answers_parse() {
        let u = parse_answer("ok pid=42 generation=3 ready_ms=17").unwrap();
        assert_eq!(
            (u.pid, u.generation, u.ready_after),
            (42, 3, Duration::from_millis(17))
        );
        match parse_answer("error failed: successor (pid 9) exited before it was ready") {
            Err(ControlError::Refused { kind, message }) => {
                assert_eq!(kind, "failed");
                assert!(message.contains("pid 9"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_answer(""), Err(ControlError::Protocol(_))));
        assert!(matches!(
            parse_answer("ok pid=x"),
            Err(ControlError::Protocol(_))
        ));
    }

    #[test]
    fn pids_out_of_range_are_malformed_not_truncated() {
        for pid in [
            "0",
            "-1",
            "4294967297",
            "18446744073709551615",
            "2147483648",
        ] {
            let line = format!("ok pid={pid} generation=2 ready_ms=1");
            assert!(
                matches!(parse_answer(&line), Err(ControlError::Protocol(_))),
                "{line}"
            );
        }
    }

    #[test]
    fn a_services_words_cannot_drive_the_terminal() {
        match parse_answer("error failed: bad\u{1b}[2Jthing\rforged") {
            Err(ControlError::Refused { message, .. }) => {
                assert!(!message.chars().any(char::is_control), "{message:?}");
                assert!(message.contains("\\u{1b}"), "{message:?}");
            }
            other => panic!("{other:?}"),
        }
        let v = Verdict::Failed {
            kind: FailureKind::Failed,
            message: "two\nlines".into(),
        };
        assert_eq!(answer_line(&v), "error failed: two\\u{a}lines\n");
    }
}
