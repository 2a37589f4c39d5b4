//! The echo server without an async runtime: blocking accept, one thread per connection.
//! Same flags and protocol as `echo`; answers `VERSION` with `exuvia-example echo_sync …`.
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    // Under systemd, `ExecReload=@/path/to/this exuvia-reload …` runs this binary as the
    // reload client: it asks the running service to upgrade and exits with the verdict.
    if let Some(code) = exuvia::reload_client() {
        return code;
    }
    match support::start("echo_sync", "127.0.0.1:8080") {
        Ok(args) => support::exit("echo_sync", run(args)),
        Err(code) => code,
    }
}

fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let ex = args.builder().start()?;
    let listener = Arc::new(ex.listen_tcp("echo", args.listen.as_str())?);
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    tracing::info!(addr = %listener.local_addr()?, generation = ex.generation(), "serving");
    let tracker = ex.tracker();
    while let Some((stream, _)) = listener.accept()? {
        let guard = tracker.track(&stream)?;
        std::thread::spawn(move || {
            // Reads and writes share the one socket: no second fd to run out of.
            for line in BufReader::new(&stream).lines().map_while(Result::ok) {
                if writeln!(&stream, "{}", support::answer("echo_sync", &line)).is_err() {
                    break;
                }
            }
            drop(guard);
        });
    }
    let report = ex.drain();
    tracing::info!(?report, "exiting");
    Ok(())
}
