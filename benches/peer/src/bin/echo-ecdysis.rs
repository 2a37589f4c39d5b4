//! The echo server upgraded by ecdysis, written the way the crate's README and its
//! `examples/tokio_echo.rs` show: `TokioEcdysisBuilder` with SIGHUP as the upgrade signal,
//! a pid file, `build_listen_tcp` with SO_REUSEADDR, `ready()`, then wait for the connection
//! tasks (the example's wait group) with a hard deadline (the example's forced exit).
//!
//! Left out of the example on purpose: its 4-byte reload-counter preamble (the protocol here
//! is plain line echo), its hard-coded Unix sockets and trigger sockets, and its unconditional
//! 1 s sleep "to test synchronous shutdowns". SIGTERM is the stop signal (the example uses
//! SIGUSR1) so the driver stops every contender the same way.
#[path = "../server.rs"]
mod server;

use std::net::SocketAddr;
use std::process::ExitCode;

use ecdysis::tokio_ecdysis::{SignalKind, StopOnShutdown, TokioEcdysisBuilder};
use futures::StreamExt;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-ecdysis: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = server::parse_args()?;
    let addr: SocketAddr = args.listen.parse()?;
    let mut builder = TokioEcdysisBuilder::new(SignalKind::hangup())?;
    builder.stop_on_signal(SignalKind::terminate())?;
    if let Some(p) = &args.pid_file {
        builder.set_pid_file(p);
    }
    let mut stream = builder.build_listen_tcp(StopOnShutdown::Yes, addr, |s, addr| {
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(server::BACKLOG)?;
        Ok(s.into())
    })?;
    // Each connection task holds a sender; `recv` returns None once all of them ended.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let first = server::FirstAccept::new(&args);
    let accept_loop = tokio::spawn(async move {
        while let Some(Ok(conn)) = stream.next().await {
            first.hit();
            let alive = alive.clone();
            tokio::spawn(async move {
                server::echo(conn).await;
                drop(alive);
            });
        }
    });
    let (_ecdysis, upgrade) = builder.ready()?;
    let _exit = upgrade.await;
    let _ = tokio::time::timeout(args.drain_hard, async {
        let _ = accept_loop.await;
        all_done.recv().await
    })
    .await;
    Ok(())
}
