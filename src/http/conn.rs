//! One connection, from `accept` to close: the counted socket, the handshake, hyper, and
//! the driver that decides when a lame-duck connection is closed.
//!
//! The drain counts sockets, not tasks: a WebSocket leaves hyper's task when it is upgraded
//! and lives on in the handler's, and it must still be waited for and, at the hard deadline,
//! cut. So each [`Socket`] holds the drain's token until it is dropped, wherever it is.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::lameduck::{ConnState, LameDuck, Shared};
use super::{BoxError, Handshake};
use crate::tokio::Connections;

/// An accepted TCP connection, counted by the drain until it is dropped.
///
/// What a [`Handshake`] wraps. Once the connection is upgraded (a WebSocket), reads and
/// writes fail from the hard deadline on, so a handler that outlives the drain ends.
pub struct Socket {
    io: TcpStream,
    conn: Arc<ConnState>,
    cut: CancellationToken,
    cut_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    _token: TaskTrackerToken,
}

impl Socket {
    pub(crate) fn new(io: TcpStream, conn: Arc<ConnState>, connections: &Connections) -> Socket {
        Socket {
            io,
            conn,
            cut: connections.cut_token(),
            cut_wait: None,
            _token: connections.token(),
        }
    }

    /// The TCP stream (for socket options).
    pub fn get_ref(&self) -> &TcpStream {
        &self.io
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// The TCP stream itself, no longer counted by this connection's drain token: for an
    /// upgraded connection the handler serves — and tracks, with
    /// [`Connections::spawn`](crate::tokio::Connections::spawn) — on its own, for example to
    /// hand it to the next generation (see `examples/axum.rs`, `/ws`).
    pub fn into_tcp(self) -> TcpStream {
        self.io
    }

    /// `Some(error)` once an upgraded connection is past the hard deadline. Connections
    /// hyper still serves are cut by dropping their task, so only upgraded ones pay for the
    /// check.
    fn cut(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.conn.is_upgraded() {
            return None;
        }
        let cut = &self.cut;
        let wait = self
            .cut_wait
            .get_or_insert_with(|| Box::pin(cut.clone().cancelled_owned()));
        wait.as_mut().poll(cx).is_ready().then(|| {
            let _ = socket2::SockRef::from(&self.io).shutdown(std::net::Shutdown::Both);
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut at the hard drain deadline",
            )
        })
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("io", &self.io).finish()
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Runs hyper's HTTP/2 stream tasks so that they end at the hard deadline with their
/// connection (which they belong to; the connection's socket is what the drain counts).
#[derive(Clone)]
pub struct Executor {
    connections: Connections,
}

impl Executor {
    pub(crate) fn new(connections: Connections) -> Executor {
        Executor { connections }
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Executor")
    }
}

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.connections.spawn_uncounted(async move {
            fut.await;
        });
    }
}

/// Serves one connection until it closes, closing it the lame-duck way after the handover.
pub(crate) async fn serve<H, S, B>(
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<Executor>>,
    handshake: H,
    socket: Socket,
    service: S,
) where
    H: Handshake,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let conn = socket.conn.clone();
    let _closed = ClosedLog {
        conn: conn.clone(),
        opened: Instant::now(),
        peer: socket.peer_addr().ok(),
    };
    let io = match handshake.handshake(socket).await {
        Ok(io) => io,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed; connection dropped");
            return;
        }
    };
    let service = LameDuck::new(service, conn.clone(), shared.clone());
    let http = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut http = std::pin::pin!(http);
    tokio::select! {
        r = http.as_mut() => return ended(r),
        _ = shared.lame_token.cancelled() => {}
    }
    if let Some(r) = lame_duck(http.as_mut(), &conn, &shared).await {
        return ended(r);
    }
    ended(http.await)
}

/// From the handover on. HTTP/2: a graceful GOAWAY (streams in flight finish, the client
/// opens its next stream on a new connection) as soon as a request arrives — its response
/// waits for the GOAWAY, see `lameduck` — or once no response has completed for the idle
/// grace. Sent at any other moment, a GOAWAY can reach a client that has just read a
/// response and queued its next request without sending it yet; such a client refuses that
/// request itself (h2load counts it failed; gRPC re-sends it). HTTP/1: responses say
/// `Connection: close`; a keep-alive connection that stays idle is closed after the idle
/// grace. Both: at the soft deadline at the latest, except a connection that has not sent
/// its first request yet. An upgraded connection is no longer hyper's to close.
///
/// Returns the connection's result if it ended on its own meanwhile.
async fn lame_duck<C>(
    mut http: Pin<&mut C>,
    conn: &ConnState,
    shared: &Shared,
) -> Option<Result<(), BoxError>>
where
    C: GracefulConnection<Error = BoxError>,
{
    loop {
        if conn.is_upgraded() {
            return None;
        }
        let wake = if conn.is_h2() {
            shared.after(conn.last_done(), shared.deadlines.idle_grace)
        } else {
            match conn.idle_since() {
                Some(since) => shared.after(since, shared.deadlines.idle_grace),
                None => Instant::now() + shared.deadlines.idle_grace,
            }
        };
        // A connection that has sent nothing yet waits for its first request whatever the
        // deadline: its client connected in order to send one, and a client busy elsewhere
        // can take seconds to get to it (gRPC counts a connection closed before its first
        // call as a failed connect). The hard deadline still ends it.
        let fresh = conn.is_fresh();
        let idle_h1 = !conn.is_h2() && conn.idle_since().is_some();
        if !fresh && (conn.is_h2() || idle_h1) && Instant::now() >= wake {
            break;
        }
        tokio::select! {
            r = http.as_mut() => return Some(r),
            _ = conn.goaway_wanted.notified() => break,
            _ = shared.finish.requested(), if !fresh => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    http.as_mut().graceful_shutdown();
    conn.goaway_sent.cancel();
    None
}

fn ended(r: Result<(), BoxError>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// One debug line per connection when it is gone, however it ended: what a drain left and
/// why is readable from the log.
struct ClosedLog {
    conn: Arc<ConnState>,
    opened: Instant,
    peer: Option<SocketAddr>,
}

impl Drop for ClosedLog {
    fn drop(&mut self) {
        tracing::debug!(
            peer = ?self.peer,
            h2 = self.conn.is_h2(),
            requests = !self.conn.is_fresh(),
            upgraded = self.conn.is_upgraded(),
            goaway_or_close = self.conn.goaway_sent.is_cancelled(),
            open_ms = self.opened.elapsed().as_millis() as u64,
            "connection closed"
        );
    }
}
