//! An axum app that upgrades without failing a request or dropping a stream, served by
//! `exuvia::axum::serve` (HTTP/1.1 and cleartext HTTP/2 on one port):
//!
//! - `GET /` answers `hello from generation G (pid P)`; `POST /echo` answers its body;
//! - `/ws` is a WebSocket echo; `/sse` streams an event every 500 ms.
//!
//! At the handover requests in flight finish and each HTTP/1.1 connection closes after its
//! next response (`Connection: close`). WebSockets are *handed over*: between two frames each
//! one moves, on the same TCP connection, to the new generation (docs/handover.md, "Live
//! connections"). A WebSocket the new generation refuses, and every SSE stream, is told at
//! the soft deadline — a close frame (1001, going away), a last `bye` event — so its client
//! reconnects to the successor (docs/http.md).
//!
//! ```text
//! cargo run --example axum -- --listen 127.0.0.1:8080 --pid-file /tmp/axum.pid
//! kill -HUP $(cat /tmp/axum.pid)
//! ```
#[path = "axum/live.rs"]
mod live;
mod support;

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use exuvia::http::Finish;
use futures_util::{Stream, StreamExt, stream};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = exuvia::reload_client() {
        return code;
    }
    match support::start("axum", "127.0.0.1:8080") {
        Ok(args) => support::exit("axum", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let ex = exuvia::tokio::Exuvia::start(args.builder())?;
    let listener = ex.listen_tcp("http", args.listen.as_str())?;
    // WebSockets the previous generation hands over (offered right after ready()).
    let versions = support::adopted_versions(&args, ex.generation(), live::STATE_VERSION);
    let adopted = ex.adopt("ws", versions)?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    let generation = ex.generation();
    tracing::info!(addr = %listener.local_addr()?, generation, "serving");
    let sockets = live::Sockets {
        transfers: ex.transfers(),
        connections: ex.connections().clone(),
    };
    tokio::spawn(live::adopt(adopted, sockets.clone()));
    let app = Router::new()
        .route("/", get(move || hello(generation)))
        .route("/echo", post(|body: String| async move { body }))
        .route("/ws", get(live::upgrade))
        .with_state(sockets)
        .route("/sse", get(sse));
    let report = exuvia::axum::serve(&ex, listener, app).await?;
    tracing::info!(?report, "exiting");
    Ok(())
}

async fn hello(generation: u64) -> String {
    format!(
        "hello from generation {generation} (pid {})\n",
        std::process::id()
    )
}

async fn sse(finish: Finish) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = stream::unfold(0u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((Ok(Event::default().data(n.to_string())), n + 1))
    });
    let bye = stream::once(async { Ok(Event::default().event("bye").data("reconnect")) });
    Sse::new(ticks.take_until(finish.requested()).chain(bye))
}
