//! Serving an [`axum::Router`] through upgrades (feature `axum`).
//!
//! `axum::serve(listener, app)` becomes [`serve`]`(&ex, listener, app)`: the same router,
//! on exuvia's listener, with the lame-duck drain of [`crate::http`] (HTTP/1.1 and cleartext
//! HTTP/2 on one port). WebSocket upgrades and SSE bodies are connections like any other:
//! the drain waits for them, tells them at the soft deadline through the [`Finish`]
//! extractor, and cuts them at the hard deadline.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     let ex = exuvia::tokio::Exuvia::start(exuvia::Exuvia::builder())?;
//!     let listener = ex.listen_tcp("http", "127.0.0.1:8080")?;
//!     ex.ready()?;
//!     exuvia::axum::serve(&ex, listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! A stream handler takes a [`Finish`] and ends its stream when it fires:
//!
//! ```no_run
//! use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
//! use exuvia::http::Finish;
//!
//! async fn ws(upgrade: WebSocketUpgrade, finish: Finish) -> axum::response::Response {
//!     upgrade.on_upgrade(move |mut socket: WebSocket| async move {
//!         loop {
//!             tokio::select! {
//!                 msg = socket.recv() => match msg {
//!                     Some(Ok(Message::Text(t))) => { let _ = socket.send(Message::Text(t)).await; }
//!                     Some(Ok(_)) => {}
//!                     _ => return,
//!                 },
//!                 _ = finish.requested() => {
//!                     let bye = CloseFrame { code: close_code::AWAY, reason: "upgrading".into() };
//!                     let _ = socket.send(Message::Close(Some(bye))).await;
//!                     return;
//!                 }
//!             }
//!         }
//!     })
//! }
//! ```

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::DrainReport;
use crate::http::{Finish, ServeError, Server};
use crate::tokio::{Exuvia, Listener};

/// Serves `app` until this generation has handed over (or stopped) and drained.
pub async fn serve(
    ex: &Exuvia,
    listener: Listener<TcpListener>,
    app: axum::Router,
) -> Result<DrainReport, ServeError> {
    Server::new().serve(ex, listener, service(app)).await
}

/// `app` as the service [`Server::serve`] takes, for a server with its own policy or TLS.
pub fn service(app: axum::Router) -> TowerToHyperService<axum::Router> {
    // `with_state(())` lets the router build its final form once (axum's own serve does it).
    TowerToHyperService::new(app.with_state(()))
}

/// The rejection when a handler asks for [`Finish`] outside exuvia's serve.
#[derive(Debug)]
pub struct NotServedByExuvia;

impl IntoResponse for NotServedByExuvia {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "exuvia::http::Finish is only available to routers served by exuvia (exuvia::axum::serve)",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Finish {
    type Rejection = NotServedByExuvia;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Finish, NotServedByExuvia> {
        parts
            .extensions
            .get::<Finish>()
            .cloned()
            .ok_or(NotServedByExuvia)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Finish {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> Result<Option<Finish>, std::convert::Infallible> {
        Ok(parts.extensions.get::<Finish>().cloned())
    }
}
