//! WebSocket mode: each worker holds one connection and sends numbered text messages
//! (`w3-m17`), each answered by its echo before the next, `interval` apart.
//!
//! What a server may do to the connection, and what the report makes of it:
//!
//! - a close frame with a normal status (1000, 1001, 1012, 1013, or an application code
//!   3000–4999) while no message waits for its echo, and a successful reconnect: an
//!   *orderly close*, not a failure — the way a draining server should end a stream;
//! - a close frame while a message waits for its echo: that message is lost,
//!   `unanswered-at-close`;
//! - a close frame with an error status or none: `wrong-answer`;
//! - EOF without a close frame: `no-close-frame`; a TCP reset: `reset` — also while the
//!   connection is idle between two messages, so an abrupt end is never missed;
//! - an echo that differs from the message sent (lost or reordered): `wrong-answer`;
//! - a reconnect that fails: that message fails with the connect error's kind.
//!
//! Between two messages the worker keeps reading the connection (in short slices, so a stop
//! is noticed), so a close frame sent while it is idle is seen before the next message goes
//! out, as a real client sees it. WebSocket messages are never retried.
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::error::ProtocolError;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::conn::{ReqError, Stream, Target};
use super::kind::FailureKind;
use super::shared::{FAILURE_BACKOFF, Shared, WorkerStats};

/// Longest uninterrupted wait between two messages, so stop requests are noticed quickly.
const IDLE_SLICE: Duration = Duration::from_millis(20);
/// Bound on finishing the close handshake once the server sent its close frame.
const CLOSE_REPLY: Duration = Duration::from_millis(200);

type Ws = WebSocket<Stream>;

pub(crate) fn run(id: u32, sh: &Arc<Shared>, stats: &mut WorkerStats) {
    let url = match &sh.cfg.target {
        Target::Tcp(addr) => format!("ws://{addr}{}", sh.cfg.http_path),
        Target::Unix(_) => format!("ws://localhost{}", sh.cfg.http_path),
    };
    let mut ws: Option<Ws> = None;
    let mut n: u64 = 0;
    let mut next = Instant::now();
    loop {
        match ws.as_mut() {
            Some(sock) => {
                if let Some(ended) = idle(sock, sh, next) {
                    ws = None;
                    if let Err(e) = ended {
                        sh.fail(id, sh.current_epoch(), e);
                    }
                }
            }
            None => sh.pause_until(next),
        }
        let Some((epoch, t0)) = sh.begin() else { break };
        let msg = format!("w{id}-m{n}");
        n += 1;
        let res = exchange(
            &mut ws,
            &url,
            sh,
            &msg,
            t0 + sh.cfg.timeout,
            &mut stats.connects,
        );
        if res.is_err() {
            // Whatever is left on that connection cannot be trusted for the next message.
            ws = None;
        }
        let ok = sh.finish(id, epoch, t0, res, stats);
        let pause = if ok {
            sh.cfg.interval
        } else {
            sh.cfg.interval.max(FAILURE_BACKOFF)
        };
        // A pause after every answer, not a catch-up schedule: a client behind its schedule
        // would send right after an echo, never giving a close frame sent with that echo a
        // chance to arrive first.
        next = Instant::now() + pause;
    }
    if let Some(mut sock) = ws {
        // Best effort: the run is over, the server's view of it no longer counts.
        let _ = sock.get_ref().arm(Instant::now() + CLOSE_REPLY);
        let _ = sock.close(None);
        let _ = sock.flush();
    }
}

/// Watches an idle connection until `until`; `Some` once it ended: `Ok` for an orderly close.
fn idle(ws: &mut Ws, sh: &Shared, until: Instant) -> Option<Result<(), ReqError>> {
    loop {
        let now = Instant::now();
        if now >= until || sh.should_stop() {
            return None;
        }
        if let Err(e) = ws.get_ref().arm(now + (until - now).min(IDLE_SLICE)) {
            return Some(Err(e));
        }
        match ws.read() {
            Ok(Message::Close(frame)) => return Some(closed(ws, sh, frame)),
            // tungstenite answers pings by itself.
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => {
                return Some(Err(wrong(format!(
                    "unasked message while idle: {:?}",
                    short(&other)
                ))));
            }
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Some(Err(ws_error(e))),
        }
    }
}

/// The server sent a close frame: finish the close handshake and judge its status.
fn closed(ws: &mut Ws, sh: &Shared, frame: Option<CloseFrame>) -> Result<(), ReqError> {
    // tungstenite queued the close reply; sending it completes the closing handshake.
    let _ = ws.get_ref().arm(Instant::now() + CLOSE_REPLY);
    let _ = ws.flush();
    let Some(frame) = frame else {
        return Err(wrong("close frame without a status code"));
    };
    let code = u16::from(frame.code);
    if matches!(code, 1000 | 1001 | 1012 | 1013 | 3000..=4999) {
        sh.orderly_close();
        Ok(())
    } else {
        Err(wrong(format!(
            "close frame with error status {code} ({:?})",
            frame.reason.as_str()
        )))
    }
}

/// Sends `msg` on the held connection (connecting first if there is none) and reads its echo.
fn exchange(
    ws: &mut Option<Ws>,
    url: &str,
    sh: &Shared,
    msg: &str,
    deadline: Instant,
    connects: &mut u64,
) -> Result<(), ReqError> {
    let sock = match ws {
        Some(s) => s,
        None => {
            let s = open(url, &sh.cfg.target, deadline)?;
            *connects += 1;
            ws.insert(s)
        }
    };
    sock.get_ref().arm(deadline)?;
    sock.send(Message::text(msg)).map_err(ws_error)?;
    loop {
        sock.get_ref().arm(deadline)?;
        match sock.read().map_err(ws_error)? {
            Message::Text(t) if t.as_str() == msg => return Ok(()),
            Message::Text(t) => {
                return Err(wrong(format!(
                    "sent {msg:?}, got {:?}: a lost or reordered message",
                    t.as_str()
                )));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(frame) => {
                let status = frame.as_ref().map_or(0, |f| u16::from(f.code));
                let _ = sock.get_ref().arm(Instant::now() + CLOSE_REPLY);
                let _ = sock.flush();
                return Err(ReqError::new(
                    FailureKind::UnansweredAtClose,
                    format!("close frame (status {status}) instead of the echo of {msg:?}"),
                ));
            }
            other => return Err(wrong(format!("sent {msg:?}, got {:?}", short(&other)))),
        }
    }
}

fn open(url: &str, target: &Target, deadline: Instant) -> Result<Ws, ReqError> {
    let req = url
        .into_client_request()
        .map_err(|e| ReqError::new(FailureKind::Other, format!("bad WebSocket URL {url}: {e}")))?;
    let stream = Stream::connect(target, deadline)?;
    stream.arm(deadline)?;
    match tungstenite::client::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        // Blocking socket: only a read or write timeout interrupts the handshake.
        Err(HandshakeError::Interrupted(_)) => Err(ReqError::timeout()),
        Err(HandshakeError::Failure(e)) => Err(ws_error(e)),
    }
}

fn ws_error(e: tungstenite::Error) -> ReqError {
    use tungstenite::Error as E;
    match e {
        E::Io(e) => ReqError::io(&e),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ReqError::new(
            FailureKind::NoCloseFrame,
            "the server ended the connection without a close frame",
        ),
        E::ConnectionClosed | E::AlreadyClosed => {
            ReqError::new(FailureKind::EofMidRequest, "connection already closed")
        }
        E::Http(resp) if resp.status().as_u16() >= 500 => ReqError::new(
            FailureKind::Http5xx,
            format!("WebSocket handshake answered {}", resp.status()),
        ),
        E::Http(resp) => wrong(format!("WebSocket handshake answered {}", resp.status())),
        other => wrong(format!("WebSocket error: {other}")),
    }
}

fn wrong(msg: impl Into<String>) -> ReqError {
    ReqError::new(FailureKind::WrongAnswer, msg)
}

/// A message for an error text, cut to a readable length.
fn short(m: &Message) -> String {
    let s = format!("{m:?}");
    s.chars().take(80).collect()
}
