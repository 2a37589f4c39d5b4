//! The axum app served by exuvia, as `examples/axum.rs` serves it: `exuvia::axum::serve`
//! with the HTTP adapter's lame-duck drain (each keep-alive connection closes after its next
//! response, with `Connection: close`).
#[path = "../http_app.rs"]
mod http_app;
#[path = "../server.rs"]
mod server;
#[path = "../timeline_layer.rs"]
mod timeline_layer;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-exuvia: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = server::parse_args()?;
    server::raise_nofile();
    if let Some(path) = &args.timeline {
        timeline_layer::install(path)?;
    }
    let mut b = exuvia::Exuvia::builder()
        .ready_timeout(Duration::from_secs(30))
        .drain(Duration::ZERO, args.drain_hard);
    if let Some(p) = &args.pid_file {
        b = b.pid_file(p);
    }
    let ex = Arc::new(exuvia::tokio::Exuvia::start(b)?);
    let listener = ex.listen_tcp("http", args.listen.as_str())?;
    ex.ready()?;
    let app = http_app::app(&args);
    // Served from a task on a worker thread, as in every contender here.
    tokio::spawn(async move { exuvia::axum::serve(&ex, listener, app).await }).await??;
    Ok(())
}
