//! The control socket: trigger an upgrade and wait for its verdict.
//!
//! A signal cannot carry an answer, so `systemctl reload` with a signal alone cannot fail
//! when the upgrade fails. The control socket can: `ExecReload=exuvia reload --wait`
//! connects, asks for an upgrade and exits non-zero with the reason if it failed. The
//! socket is a named listener like any other and is handed to every successor.
//!
//! Protocol, one line each way: `upgrade\n` → `ok pid=P generation=G ready_ms=R\n` or
//! `error KIND: MESSAGE\n` (KIND is `in-progress`, `refused` or `failed`).
//!
//! A request *joins* an upgrade that the reload signal started within the last two seconds
//! and that no request has claimed yet, and gets its verdict: systemd 253–261 sends
//! `ReloadSignal=` and runs `ExecReload=` at the same time, and both belong to one
//! `systemctl reload` (measured on 257; 262 skips the signal instead).

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::driver::{Request, UpgradeResult, Upgraded};
use crate::error::UpgradeError;
use crate::lifecycle::ControlGuard;

/// Name under which the control socket is registered and handed over.
pub const CONTROL_NAME: &str = "exuvia-control";

/// An upgrade's outcome in a form several waiters can share.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    Upgraded(Upgraded),
    Failed { kind: &'static str, message: String },
}

impl Verdict {
    pub(crate) fn of(r: &UpgradeResult) -> Verdict {
        match r {
            Ok(u) => Verdict::Upgraded(u.clone()),
            Err(e) => Verdict::Failed {
                kind: match e {
                    UpgradeError::InProgress => "in-progress",
                    UpgradeError::HandoverPending | UpgradeError::ShuttingDown => "refused",
                    _ => "failed",
                },
                message: e.to_string().replace('\n', " "),
            },
        }
    }

    fn line(&self) -> String {
        match self {
            Verdict::Upgraded(u) => {
                format!(
                    "ok pid={} generation={} ready_ms={}\n",
                    u.pid,
                    u.generation,
                    u.ready_after.as_millis()
                )
            }
            Verdict::Failed { kind, message } => format!("error {kind}: {message}\n"),
        }
    }
}

/// Who asked for an upgrade, and so who gets the answer.
pub(crate) enum Waiter {
    Signal,
    Api(mpsc::Sender<UpgradeResult>),
    Socket(ControlConn),
}

impl Waiter {
    pub(crate) fn reply(self, r: UpgradeResult) {
        match self {
            Waiter::Api(tx) => {
                let _ = tx.send(r);
            }
            other => other.reply_verdict(&Verdict::of(&r)),
        }
    }

    /// Answers a waiter from a shared verdict (joined control requests).
    pub(crate) fn reply_verdict(self, v: &Verdict) {
        match (self, v) {
            (Waiter::Signal, _) => {}
            (Waiter::Api(tx), Verdict::Upgraded(u)) => {
                let _ = tx.send(Ok(u.clone()));
            }
            (Waiter::Api(tx), Verdict::Failed { message, .. }) => {
                let _ = tx.send(Err(UpgradeError::Io(io::Error::other(message.clone()))));
            }
            (Waiter::Socket(ControlConn { mut stream, .. }), v) => {
                let s = &mut stream;
                let _ = s.write_all(v.line().as_bytes());
            }
        }
    }
}

/// A control connection waiting for its answer. While any exists, the drain does not end:
/// a request accepted just before the handover must get its verdict before this exits.
pub(crate) struct ControlConn {
    stream: UnixStream,
    _open: ControlGuard,
}

/// Reads one request from a control connection on its own thread (a slow client must not
/// stall the control loop) and forwards it.
pub(crate) fn serve(
    stream: UnixStream,
    tx: mpsc::Sender<Request>,
    wake: Arc<OwnedFd>,
    open: ControlGuard,
) {
    let _ = std::thread::Builder::new()
        .name("exuvia-control".into())
        .spawn(move || {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let Ok(reader) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(reader.take(256));
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let mut stream = stream;
            if line.trim_end() != "upgrade" {
                let _ = stream
                    .write_all(b"error refused: unknown request; the only request is `upgrade`\n");
                return;
            }
            let conn = ControlConn {
                stream,
                _open: open,
            };
            if tx.send(Request::Join(Waiter::Socket(conn))).is_ok() {
                crate::sys::eventfd_signal(std::os::fd::AsFd::as_fd(&*wake));
            }
        });
}

use std::io::Read;

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
        /// `in-progress`, `refused` or `failed`.
        kind: String,
        /// The service's reason.
        message: String,
    },
    /// No answer in time, or an answer we do not understand.
    #[error("control socket: {0}")]
    Protocol(String),
}

/// Asks the service behind `path` to upgrade and waits for the verdict.
pub fn request_upgrade(path: &Path, timeout: Duration) -> Result<Upgraded, ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: path.display().to_string(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(connect_err)?;
    s.set_read_timeout(Some(timeout)).map_err(connect_err)?;
    s.write_all(b"upgrade\n").map_err(connect_err)?;
    let mut line = String::new();
    BufReader::new(s.take(4096))
        .read_line(&mut line)
        .map_err(|e| ControlError::Protocol(format!("no answer within {timeout:?}: {e}")))?;
    parse_answer(line.trim_end())
}

fn parse_answer(line: &str) -> Result<Upgraded, ControlError> {
    if let Some(rest) = line.strip_prefix("ok ") {
        let field = |k: &str| {
            rest.split(' ')
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        return match (field("pid"), field("generation"), field("ready_ms")) {
            (Some(pid), Some(generation), Some(ms)) => Ok(Upgraded {
                pid: pid as i32,
                generation,
                ready_after: Duration::from_millis(ms),
                closed_after: Duration::ZERO,
            }),
            _ => Err(ControlError::Protocol(format!("malformed answer {line:?}"))),
        };
    }
    if let Some(rest) = line.strip_prefix("error ") {
        if let Some((kind, message)) = rest.split_once(": ") {
            return Err(ControlError::Refused {
                kind: kind.to_owned(),
                message: message.to_owned(),
            });
        }
    }
    if line.is_empty() {
        return Err(ControlError::Protocol(
            "the service closed the connection without an answer".into(),
        ));
    }
    Err(ControlError::Protocol(format!("malformed answer {line:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
