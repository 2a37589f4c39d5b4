//! The echo server on a Unix stream socket (`--listen PATH`, default
//! `/tmp/exuvia-echo.sock`). A stale socket file left by a crash is replaced; a path a live
//! process listens on is refused.
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
    match support::start("echo_unix", "/tmp/exuvia-echo.sock") {
        Ok(args) => support::exit("echo_unix", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let ex = exuvia::tokio::Exuvia::start(args.builder())?;
    let listener = ex.listen_unix("echo", &args.listen)?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    tracing::info!(path = %args.listen, generation = ex.generation(), "serving");
    while let Some(stream) = listener.accept().await? {
        ex.connections().spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = support::answer("echo_unix", &line) + "\n";
                if w.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
    ex.drain().await;
    Ok(())
}
