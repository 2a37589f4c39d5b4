//! The axum app upgraded by ecdysis: its listener stream (as `echo-ecdysis` builds it) made
//! an `axum::serve::Listener`, and `with_graceful_shutdown` fired when ecdysis says the
//! upgrade is done — the way an axum user would combine the two.
#[path = "../http_app.rs"]
mod http_app;
#[path = "../server.rs"]
mod server;

use std::net::SocketAddr;
use std::process::ExitCode;

use ecdysis::tokio_ecdysis::{SignalKind, StopOnShutdown, TokioEcdysisBuilder};
use futures::{Stream, StreamExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-ecdysis: {e}");
            ExitCode::FAILURE
        }
    }
}

/// ecdysis's stream of accepted connections as axum's listener; once the stream ends (the
/// upgrade is done) it waits for the graceful shutdown that follows.
struct Accepted<S> {
    stream: S,
    addr: SocketAddr,
}

impl<S> axum::serve::Listener for Accepted<S>
where
    S: Stream<Item = std::io::Result<TcpStream>> + Unpin + Send + 'static,
{
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.stream.next().await {
                Some(Ok(s)) => {
                    let peer = s.peer_addr().unwrap_or(self.addr);
                    return (s, peer);
                }
                Some(Err(_)) => continue,
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = server::parse_args()?;
    server::raise_nofile();
    let addr: SocketAddr = args.listen.parse()?;
    let mut builder = TokioEcdysisBuilder::new(SignalKind::hangup())?;
    builder.stop_on_signal(SignalKind::terminate())?;
    if let Some(p) = &args.pid_file {
        builder.set_pid_file(p);
    }
    let stream = builder.build_listen_tcp(StopOnShutdown::Yes, addr, |s, addr| {
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(server::BACKLOG)?;
        Ok(s.into())
    })?;
    let app = http_app::app(&args);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Served from a task on a worker thread, as in every contender here.
    let serve = tokio::spawn(async move {
        axum::serve(Accepted { stream, addr }, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let (_ecdysis, upgrade) = builder.ready()?;
    let _exit = upgrade.await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(args.drain_hard, serve).await;
    Ok(())
}
