//! The echo server on a Unix stream socket (`--listen PATH`, default
//! `/tmp/exuvia-echo.sock`). A stale socket file left by a crash is replaced; a path a live
//! process listens on is refused.
mod support;

use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let args = match support::parse_args("/tmp/exuvia-echo.sock") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_unix: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_unix: {e}");
            ExitCode::FAILURE
        }
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
