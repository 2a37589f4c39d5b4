//! Serving HTTP through upgrades (feature `hyper`): HTTP/1.1 and HTTP/2 on one listener,
//! for any hyper service (a tower service via `hyper_util::service::TowerToHyperService`;
//! axum and tonic have adapters of their own in [`crate::axum`] and [`crate::tonic`]).
//!
//! [`Server::serve`] accepts until this generation hands its listeners over (or stops), then
//! drains as a *lame duck*, so that no request is lost at the handover:
//!
//! - requests in flight finish;
//! - HTTP/1.1: every further response says `Connection: close` and its connection closes
//!   after it; a keep-alive connection that stays idle is closed after the idle grace or at
//!   the soft deadline, never at the handover itself — closing an idle connection races the
//!   request its client may already have sent;
//! - HTTP/2 and gRPC: a graceful GOAWAY at the handover; streams in flight finish;
//! - WebSocket, SSE and gRPC streams are told at the soft deadline through [`Finish`];
//! - whatever is open at the hard deadline is cut.
//!
//! The deadlines are the adapter's own ([`Policy`], see there for the defaults and why).
//! `docs/http.md` walks through each kind of connection.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::convert::Infallible;
//! use http_body_util::Full;
//! use hyper::body::Bytes;
//!
//! let ex = exuvia::tokio::Exuvia::start(exuvia::Exuvia::builder())?;
//! let listener = ex.listen_tcp("http", "127.0.0.1:8080")?;
//! ex.ready()?;
//! let hello = hyper::service::service_fn(|_req| async {
//!     Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("hello\n"))))
//! });
//! exuvia::http::serve(&ex, listener, hello).await?;
//! # Ok(()) }
//! ```

mod conn;
mod finish;
mod lameduck;
mod policy;
mod tls;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub use conn::{Executor, Socket};
pub use finish::Finish;
pub use policy::{DEFAULT_IDLE_GRACE, DEFAULT_SOFT, Policy};
pub use tls::{Handshake, Plain};

use crate::DrainReport;
use crate::tokio::{Exuvia, Listener};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A user's adjustment of hyper's settings, applied once per server.
type Configure = Box<dyn FnOnce(&mut auto::Builder<Executor>) + Send>;

/// Why serving stopped other than by a handover or stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener broke (not a transient error: those are retried). This generation
    /// stopped, drained its connections and should exit; the service manager restarts it.
    #[error("accepting on the listener failed, so this generation stopped: {source}")]
    Accept {
        /// The error from `accept`.
        #[source]
        source: std::io::Error,
    },
}

/// Serves `service` on `listener` with the default [`Policy`] and no TLS; see [`Server`].
pub async fn serve<S, B>(
    ex: &Exuvia,
    listener: Listener<TcpListener>,
    service: S,
) -> Result<DrainReport, ServeError>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Server::new().serve(ex, listener, service).await
}

/// A configured HTTP server: drain policy, handshake (TLS), hyper settings.
pub struct Server<H = Plain> {
    policy: Policy,
    handshake: H,
    configure: Option<Configure>,
}

impl Server {
    /// HTTP/1.1 and cleartext HTTP/2, default policy.
    pub fn new() -> Server {
        Server {
            policy: Policy::default(),
            handshake: Plain,
            configure: None,
        }
    }
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl<H: Handshake> Server<H> {
    /// The drain policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// A handshake (typically TLS, with ALPN offering `h2` and `http/1.1`) run on each
    /// connection before HTTP.
    pub fn handshake<H2: Handshake>(self, handshake: H2) -> Server<H2> {
        Server {
            policy: self.policy,
            handshake,
            configure: self.configure,
        }
    }

    /// Adjusts hyper's HTTP/1 and HTTP/2 settings (limits, window sizes, …).
    pub fn configure(
        mut self,
        f: impl FnOnce(&mut auto::Builder<Executor>) + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(f));
        self
    }

    /// Accepts until the handover or stop, then drains; returns once every connection has
    /// finished or been cut. Return from `main` afterwards.
    pub async fn serve<S, B>(
        self,
        ex: &Exuvia,
        listener: Listener<TcpListener>,
        service: S,
    ) -> Result<DrainReport, ServeError>
    where
        S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let deadlines = self.policy.resolve(ex.core().drain_deadlines());
        tracing::info!(
            idle_grace_ms = deadlines.idle_grace.as_millis() as u64,
            soft_ms = deadlines.soft.as_millis() as u64,
            hard_ms = deadlines.hard.as_millis() as u64,
            "http: lame-duck drain policy"
        );
        let connections = ex.connections().clone();
        let shared = Arc::new(lameduck::Shared::new(&connections, deadlines));
        let mut builder = auto::Builder::new(Executor::new(connections.clone()));
        // Extended CONNECT: WebSockets over HTTP/2 (RFC 8441), as axum::serve enables it.
        builder.http2().enable_connect_protocol();
        if let Some(f) = self.configure {
            f(&mut builder);
        }
        let builder = Arc::new(builder);
        let mut fatal = None;
        loop {
            match listener.accept().await {
                Ok(Some((tcp, _peer))) => {
                    // Small responses and gRPC messages must not wait for Nagle.
                    let _ = tcp.set_nodelay(true);
                    let state = Arc::default();
                    let socket = Socket::new(tcp, state, &connections);
                    let task = conn::serve(
                        shared.clone(),
                        builder.clone(),
                        self.handshake.clone(),
                        socket,
                        service.clone(),
                    );
                    connections.spawn_uncounted(task);
                }
                Ok(None) => break,
                Err(source) => {
                    tracing::error!(error = %source, "accept failed for good; stopping this generation");
                    ex.stop();
                    fatal = Some(source);
                    break;
                }
            }
        }
        drop(listener);
        shared.start_lame_duck();
        let report = ex.drain_within(deadlines.soft, deadlines.hard).await;
        match fatal {
            Some(source) => Err(ServeError::Accept { source }),
            None => Ok(report),
        }
    }
}
