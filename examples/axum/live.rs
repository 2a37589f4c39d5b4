//! The `/ws` route: a WebSocket echo whose connections live through upgrades. The handshake
//! is done here rather than by axum's `WebSocketUpgrade`, so that the TCP connection stays
//! this code's to give away. Frames are read with tungstenite's `FrameSocket` over a socket
//! that remembers every byte not yet part of a whole frame: those bytes travel with the
//! connection to the next generation, which goes on parsing where this one stopped.

use std::io::{self, Read, Write};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use exuvia::handoff::{
    Adoptions, HandedOff, State as Conversation, Stream, Transferable, Transfers,
};
use exuvia::http::{Finish, Socket};
use exuvia::tokio::Connections;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameSocket};

/// The format of a WebSocket's handed-over state: none beyond its unparsed bytes.
pub const STATE_VERSION: u32 = 1;
/// Largest frame accepted (an echo has no use for more).
const MAX_FRAME: usize = 1 << 20;

/// What the route needs besides the request.
#[derive(Clone)]
pub struct Sockets {
    pub transfers: Transfers,
    pub connections: Connections,
}

/// `GET /ws`: answers the handshake (RFC 6455 §4.2.2) and serves the connection once hyper
/// lets go of it.
pub async fn upgrade(State(s): State<Sockets>, finish: Finish, mut req: Request) -> Response {
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_ws) else {
        return (StatusCode::BAD_REQUEST, "a WebSocket handshake, please\n").into_response();
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (transfers, connections) = (s.transfers.clone(), s.connections.clone());
    s.connections.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // exuvia's HTTP adapter serves `TokioIo<Socket>` through hyper-util's auto (HTTP/1 +
        // HTTP/2) connection, whose own downcast sees through its protocol sniffing.
        let Ok(parts) = auto::upgrade::downcast::<TokioIo<Socket>>(upgraded) else {
            return;
        };
        let tcp = parts.io.into_inner().into_tcp();
        // Tracked again by the drain (the hyper connection that counted it is gone).
        connections.spawn(serve(
            tcp,
            parts.read_buf.to_vec(),
            transfers.transferable("ws"),
            finish,
        ));
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

/// Serves the WebSockets the previous generation handed over.
pub async fn adopt(adopted: Adoptions, s: Sockets) {
    let finish = Finish::from(s.connections.finish_token());
    while let Some(a) = adopted.next().await {
        if let Ok(tcp) = TcpStream::from_fd(a.fd) {
            let t = s.transfers.transferable("ws");
            s.connections.spawn(serve(tcp, a.unread, t, finish.clone()));
        }
    }
}

/// Non-blocking reads and writes for `FrameSocket` (`WouldBlock` means "await readiness"),
/// keeping the bytes read since the last whole frame: tungstenite may hold half a frame (even
/// a parsed header) inside, and only these bytes say exactly where the conversation stands.
struct Io {
    tcp: TcpStream,
    unparsed: Vec<u8>,
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.try_read(buf)?;
        self.unparsed.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn frames(tcp: TcpStream, unparsed: Vec<u8>) -> FrameSocket<Io> {
    FrameSocket::from_partially_read(
        Io {
            tcp,
            unparsed: unparsed.clone(),
        },
        unparsed,
    )
}

/// The payload as the client meant it (client frames are masked, RFC 6455 §5.3).
fn unmask(frame: &Frame) -> Vec<u8> {
    let mut data = frame.payload().to_vec();
    if let Some(mask) = frame.header().mask {
        data.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    data
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Writes `frame` completely, waiting for the socket as needed.
async fn send(ws: &mut FrameSocket<Io>, frame: Frame) -> Result<(), tungstenite::Error> {
    let mut queued = ws.send(frame);
    loop {
        match queued {
            Ok(()) => return Ok(()),
            Err(e) if would_block(&e) => {
                ws.get_ref().tcp.writable().await?;
                queued = ws.flush();
            }
            Err(e) => return Err(e),
        }
    }
}

/// Echoes frames. At a hand-off — always between two frames, every answer written — the
/// connection and the bytes read past the last frame go to the next generation; at the soft
/// deadline (if it stayed here) the client is told to reconnect.
async fn serve(tcp: TcpStream, unread: Vec<u8>, t: Transferable, finish: Finish) {
    let mut ws = frames(tcp, unread);
    let mut t = Some(t);
    loop {
        match ws.read(Some(MAX_FRAME)) {
            Ok(Some(frame)) => {
                let header = frame.header();
                // This frame is whole: its bytes are no longer "unparsed".
                let len = frame.payload().len();
                let whole = header.len(len as u64) + len;
                let io = ws.get_mut();
                let whole = whole.min(io.unparsed.len());
                io.unparsed.drain(..whole);
                let answer = match header.opcode {
                    OpCode::Data(op) => {
                        Frame::message(unmask(&frame), OpCode::Data(op), header.is_final)
                    }
                    OpCode::Control(Control::Ping) => Frame::pong(unmask(&frame)),
                    OpCode::Control(Control::Close) => {
                        let _ = send(&mut ws, Frame::close(None)).await;
                        return;
                    }
                    OpCode::Control(_) => continue,
                };
                if send(&mut ws, answer).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) if would_block(&e) => {
                let requested = async {
                    match &t {
                        Some(t) => t.requested().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = requested => {
                        let Some(offer) = t.take() else { continue };
                        // Every answer is written (`send` returns only then); what is left is
                        // the client's next frame, maybe half of it.
                        let (io, _) = ws.into_inner();
                        let rest = io.unparsed;
                        let state = Conversation { version: STATE_VERSION, bytes: Vec::new(), unread: rest.clone() };
                        match offer.hand_off(io.tcp, state).await {
                            Ok(HandedOff::Kept(kept)) => {
                                ws = frames(kept.stream, rest);
                                t = Some(kept.again);
                            }
                            Ok(HandedOff::Gone) | Err(_) => return,
                        }
                    }
                    _ = finish.requested() => {
                        let away = CloseFrame { code: CloseCode::Away, reason: "server upgrading; reconnect".into() };
                        let _ = send(&mut ws, Frame::close(Some(away))).await;
                        // The client answers with its own close frame; then the connection ends.
                        return;
                    }
                    ready = ws.get_ref().tcp.readable() => if ready.is_err() { return },
                }
            }
            Err(_) => return,
        }
    }
}
