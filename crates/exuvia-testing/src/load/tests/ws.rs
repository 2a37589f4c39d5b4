//! WebSocket mode against tungstenite servers on loopback that end connections in every
//! way the report tells apart: a close frame (normal or error status, while idle or under a
//! message), a TCP connection dropped without one, a stale echo, a reconnect refused.
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::{cfg, only_kinds};
use crate::load::{FailureKind, LoadReport, Mode, Target, start};

/// Messages each connection echoes before the server does what the test is about.
const AFTER: u32 = 5;

#[derive(Clone, Copy)]
enum Ws {
    Echo,
    /// After `AFTER` echoes, a close frame with this status, right after the last echo.
    CloseAfter(u16),
    /// After `AFTER` echoes, ends the TCP connection without a close frame.
    DropAfter,
    /// Reads the next message but answers it with a close frame (1001), not its echo.
    CloseUnder,
    /// Answers the next message with the text of the one before.
    Stale,
}

/// A server for `b`; with `max`, it stops listening after that many connections.
fn ws_server(b: Ws, max: Option<usize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming().take(max.unwrap_or(usize::MAX)).flatten() {
            thread::spawn(move || ws_conn(s, b));
        }
    });
    addr
}

fn ws_conn(s: TcpStream, b: Ws) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // Without it, a close frame written right after an echo waits for the echo's ACK.
    let _ = s.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept(s) else {
        return;
    };
    let (mut n, mut prev) = (0, String::new());
    loop {
        let msg = match ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return,
        };
        n += 1;
        let answer = match b {
            _ if n <= AFTER => msg.clone(),
            Ws::CloseUnder => return close(ws, 1001),
            Ws::Stale => prev.clone(),
            _ => msg.clone(),
        };
        match b {
            Ws::CloseAfter(code) if n == AFTER => {
                // Echo and close frame in one write: the close is on the wire with the echo,
                // so no scheduling delay here lets the client send its next message first.
                if ws.write(Message::text(answer)).is_ok() {
                    close(ws, code);
                }
                return;
            }
            _ if ws.send(Message::text(answer)).is_err() => return,
            Ws::DropAfter if n == AFTER => {
                let s = ws.get_mut();
                let _ = s.shutdown(Shutdown::Write);
                let mut buf = [0u8; 512];
                while matches!(s.read(&mut buf), Ok(k) if k > 0) {}
                return;
            }
            _ => prev = msg,
        }
    }
}

fn close(mut ws: WebSocket<TcpStream>, code: u16) {
    let frame = CloseFrame {
        code: code.into(),
        reason: "upgrading".into(),
    };
    let _ = ws.close(Some(frame));
    // Until the client's close reply ends the handshake (bounded by the read timeout).
    while ws.read().is_ok() {}
}

fn ws_run(addr: SocketAddr, ms: u64) -> LoadReport {
    let mut c = cfg(Target::Tcp(addr), Mode::Ws, ms);
    c.interval = Duration::from_millis(5);
    start(c).expect("start").wait()
}

#[test]
fn ws_clean_run_holds_its_connections() {
    let r = ws_run(ws_server(Ws::Echo, None), 300);
    assert!(r.ok > 20, "{r}");
    assert_eq!((r.failed, r.orderly_closes, r.retried), (0, 0, 0), "{r}");
    assert!(r.is_clean(), "{r}");
}

#[test]
fn ws_close_frame_and_reconnect_is_orderly_not_a_failure() {
    let r = ws_run(ws_server(Ws::CloseAfter(1001), None), 400);
    assert_eq!(r.failed, 0, "{r}");
    // 3 workers, each closed every 5 messages.
    assert!(r.orderly_closes >= 3, "{r}");
    assert!(r.ok > u64::from(AFTER) * 3, "{r}");
    assert!(r.is_clean(), "{r}");
    assert!(r.to_string().contains("orderly closes"), "{r}");
}

#[test]
fn ws_close_frame_with_an_error_status_is_a_failure() {
    let r = ws_run(ws_server(Ws::CloseAfter(1011), None), 300);
    assert!(r.count(FailureKind::WrongAnswer) > 0, "{r}");
    only_kinds(&r, &[FailureKind::WrongAnswer]);
    assert!(r.failures[0].error.contains("1011"), "{r}");
    assert_eq!(r.orderly_closes, 0, "{r}");
}

#[test]
fn ws_connection_dropped_without_a_close_frame_is_a_failure() {
    let r = ws_run(ws_server(Ws::DropAfter, None), 300);
    assert!(r.count(FailureKind::NoCloseFrame) > 0, "{r}");
    only_kinds(&r, &[FailureKind::NoCloseFrame, FailureKind::Reset]);
    assert_eq!(r.orderly_closes, 0, "{r}");
    assert!(!r.is_clean());
}

#[test]
fn ws_close_frame_under_a_message_loses_it() {
    let r = ws_run(ws_server(Ws::CloseUnder, None), 300);
    assert!(r.count(FailureKind::UnansweredAtClose) > 0, "{r}");
    only_kinds(&r, &[FailureKind::UnansweredAtClose]);
    assert_eq!(r.orderly_closes, 0, "{r}");
}

#[test]
fn ws_stale_echo_is_a_lost_or_reordered_message() {
    let r = ws_run(ws_server(Ws::Stale, None), 300);
    assert!(r.count(FailureKind::WrongAnswer) > 0, "{r}");
    only_kinds(&r, &[FailureKind::WrongAnswer]);
    assert!(r.failures[0].error.contains("lost or reordered"), "{r}");
}

#[test]
fn ws_failed_reconnect_after_a_close_frame_is_a_failure() {
    // One connection per worker, then the listener is gone.
    let r = ws_run(ws_server(Ws::CloseAfter(1001), Some(3)), 300);
    assert!(r.orderly_closes >= 1, "{r}");
    assert!(r.count(FailureKind::Refused) > 0, "{r}");
    only_kinds(&r, &[FailureKind::Refused]);
}
