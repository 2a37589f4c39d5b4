//! The hook for a TLS acceptor (or any other handshake) between `accept` and HTTP.
//!
//! exuvia brings no TLS stack: the user's acceptor (tokio-rustls, tokio-native-tls, …) runs
//! in the connection's task, so a slow handshake never holds up the accept loop, and it
//! wraps a [`Socket`] so the connection stays counted by the drain whatever it turns into.
//! The protocol is then read from the first bytes (the HTTP/2 preface or an HTTP/1.1
//! request line), so an acceptor that offers `h2` and `http/1.1` by ALPN gets each client
//! the protocol it negotiated, on the same listener.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::Socket;

/// Turns an accepted [`Socket`] into the stream HTTP is spoken on.
///
/// ```ignore
/// #[derive(Clone)]
/// struct Tls(tokio_rustls::TlsAcceptor); // ServerConfig with alpn_protocols = [h2, http/1.1]
///
/// impl exuvia::http::Handshake for Tls {
///     type Io = tokio_rustls::server::TlsStream<exuvia::http::Socket>;
///     fn handshake(&self, s: exuvia::http::Socket) -> impl Future<Output = io::Result<Self::Io>> + Send {
///         self.0.accept(s)
///     }
/// }
/// ```
pub trait Handshake: Clone + Send + Sync + 'static {
    /// The stream after the handshake.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs the handshake; an error drops this connection only (logged at debug level).
    fn handshake(&self, socket: Socket) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// No handshake: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the TCP connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = Socket;

    fn handshake(&self, socket: Socket) -> impl Future<Output = io::Result<Socket>> + Send {
        std::future::ready(Ok(socket))
    }
}
