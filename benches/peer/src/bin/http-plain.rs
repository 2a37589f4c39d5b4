//! The axum app served by `axum::serve` alone: the throughput baseline, the naive restart
//! (no SIGTERM handler: SIGTERM kills it), and with `--reuseport --term-drain` the
//! SO_REUSEPORT contender: a new process binds the same port beside it, then SIGTERM ends
//! this one through `axum::serve(...).with_graceful_shutdown` (stop accepting, let
//! connections finish: hyper closes idle keep-alives at once).
#[path = "../http_app.rs"]
mod http_app;
#[path = "../server.rs"]
mod server;

use std::net::SocketAddr;
use std::process::ExitCode;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-plain: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = server::parse_args()?;
    server::raise_nofile();
    let addr: SocketAddr = args.listen.parse()?;
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if args.reuseport {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(server::BACKLOG)?;
    s.set_nonblocking(true)?;
    let listener = TcpListener::from_std(s.into())?;
    let mut term = match args.term_drain {
        true => Some(signal(SignalKind::terminate())?),
        false => None,
    };
    if let Some(p) = &args.pid_file {
        server::write_pid_file(p)?;
    }
    let app = http_app::app(&args);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Served from a task on a worker thread, as in every contender here.
    let serve = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    match term.as_mut() {
        Some(t) => {
            t.recv().await;
            let _ = stop_tx.send(());
            let _ = tokio::time::timeout(args.drain_hard, serve).await;
        }
        None => {
            let _ = serve.await;
        }
    }
    Ok(())
}
