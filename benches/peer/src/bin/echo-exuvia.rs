//! The echo server upgraded by exuvia: SIGHUP starts the binary on disk, which inherits the
//! listener; this generation then stops accepting and drains.
#[path = "../server.rs"]
mod server;

use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(feature = "trace")]
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-exuvia: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = server::parse_args()?;
    let mut b = exuvia::Exuvia::builder()
        .ready_timeout(Duration::from_secs(30))
        .drain(Duration::ZERO, args.drain_hard);
    if let Some(p) = &args.pid_file {
        b = b.pid_file(p);
    }
    let ex = exuvia::tokio::Exuvia::start(b)?;
    let listener = ex.listen_tcp("echo", args.listen.as_str())?;
    ex.ready()?;
    let first = server::FirstAccept::new(&args);
    let conns = ex.connections().clone();
    // The accept loop runs as a task on a worker thread, as in every contender here.
    let accept = tokio::spawn(async move {
        while let Ok(Some((stream, _))) = listener.accept().await {
            first.hit();
            conns.spawn(server::echo(stream));
        }
    });
    accept.await?;
    ex.drain().await;
    Ok(())
}
