//! Serving tonic gRPC services through upgrades (feature `tonic`).
//!
//! Where tonic's own server would run `Server::builder().add_service(svc).serve(addr)`,
//! [`serve`]`(&ex, listener, Routes::new(svc))` serves the same services on exuvia's
//! listener with the lame-duck drain of [`crate::http`]: a graceful GOAWAY at the handover
//! (calls in flight finish, the client sends its next call to the successor), server
//! streams told at the soft deadline through [`finish`], the rest cut at the hard deadline —
//! a drain that cannot hang, unlike `serve_with_incoming_shutdown`, which waits for every
//! stream however long it runs.
//!
//! ```no_run
//! # async fn run(svc: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//! let ex = exuvia::tokio::Exuvia::start(exuvia::Exuvia::builder())?;
//! let listener = ex.listen_tcp("grpc", "127.0.0.1:50051")?;
//! ex.ready()?;
//! exuvia::tonic::serve(&ex, listener, svc).await?;
//! # Ok(()) }
//! ```
//!
//! Layers of tonic's own `Server` (timeouts, concurrency limits) are tower layers: apply
//! them to the services. `Request::remote_addr` is not set.

use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::DrainReport;
use crate::http::{Finish, ServeError, Server};
use crate::tokio::{Exuvia, Listener};

/// Serves `routes` until this generation has handed over (or stopped) and drained.
pub async fn serve(
    ex: &Exuvia,
    listener: Listener<TcpListener>,
    routes: impl Into<Routes>,
) -> Result<DrainReport, ServeError> {
    Server::new().serve(ex, listener, service(routes)).await
}

/// `routes` as the service [`Server::serve`] takes, for a server with its own policy or TLS.
pub fn service(routes: impl Into<Routes>) -> TowerToHyperService<Routes> {
    TowerToHyperService::new(routes.into().prepare())
}

/// The soft-deadline signal of the connection this call came on: a streaming handler ends
/// its stream (with an `OK` status, or whatever it chooses) when it fires.
///
/// Fails with `INTERNAL` when the service is not served by exuvia.
#[allow(clippy::result_large_err)] // `Status` is tonic's error type; handlers `?` it as is.
pub fn finish<T>(request: &tonic::Request<T>) -> Result<Finish, tonic::Status> {
    request
        .extensions()
        .get::<Finish>()
        .cloned()
        .ok_or_else(|| {
            tonic::Status::internal("exuvia::tonic::finish: this service is not served by exuvia")
        })
}
