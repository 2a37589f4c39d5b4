//! A TCP line-echo server that upgrades itself without dropping a connection.
//!
//! ```text
//! cargo run --example echo -- --listen 127.0.0.1:8080 --pid-file /tmp/echo.pid
//! kill -HUP $(cat /tmp/echo.pid)    # upgrade: the binary on disk takes over
//! kill -TERM $(cat /tmp/echo.pid)   # drain and exit
//! ```
//!
//! Under systemd it takes the socket-activated listener named `echo`
//! (`FileDescriptorName=echo`) and speaks `Type=notify-reload`.
mod support;

use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main]
async fn main() -> ExitCode {
    // Under systemd, `ExecReload=@/path/to/this exuvia-reload …` runs this binary as the
    // reload client: it asks the running service to upgrade and exits with the verdict.
    if let Some(code) = exuvia::reload_client() {
        return code;
    }
    match support::start("echo", "127.0.0.1:8080") {
        Ok(args) => support::exit("echo", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let ex = exuvia::tokio::Exuvia::start(args.builder())?;
    let listener = ex.listen_tcp("echo", args.listen.as_str())?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    tracing::info!(addr = %listener.local_addr()?, generation = ex.generation(), "serving");
    while let Some((stream, _)) = listener.accept().await? {
        ex.connections().spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = support::answer("echo", &line) + "\n";
                if w.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
    let report = ex.drain().await;
    tracing::info!(?report, "exiting");
    Ok(())
}
