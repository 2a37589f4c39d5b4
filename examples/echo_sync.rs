//! The echo server without an async runtime: blocking accept, one thread per connection.
//! Same flags and protocol as `echo`, live connections handed over too; answers `VERSION`
//! with `exuvia-example echo_sync …`.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;

use exuvia::ConnGuard;
use exuvia::handoff::{State, Transferable, Wait};

/// The format of a connection's state (a line echo has none beyond its unread bytes).
const STATE_VERSION: u32 = 1;

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
    let ex = Arc::new(args.builder().start()?);
    let listener = ex.listen_tcp("echo", args.listen.as_str())?;
    let versions = support::adopted_versions(&args, ex.generation(), STATE_VERSION);
    let adopted = ex.adopt("echo", versions)?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    tracing::info!(addr = %listener.local_addr()?, generation = ex.generation(), "serving");
    let tracker = ex.tracker();
    // Connections the previous generation handed over; the stream ends once it let go.
    let (ex2, tracker2) = (ex.clone(), tracker.clone());
    std::thread::spawn(move || {
        for a in adopted {
            let stream = TcpStream::from(a.fd);
            let Ok(guard) = tracker2.track(&stream) else {
                continue;
            };
            let t = ex2.transferable("echo");
            std::thread::spawn(move || serve(stream, t, a.unread, guard));
        }
    });
    while let Some((stream, _)) = listener.accept()? {
        let guard = tracker.track(&stream)?;
        let t = ex.transferable("echo");
        std::thread::spawn(move || serve(stream, t, Vec::new(), guard));
    }
    let report = ex.drain();
    tracing::info!(?report, "exiting");
    Ok(())
}

/// Echoes lines; at a hand-off, gives the connection and its unanswered bytes to the next
/// generation between two lines. `_guard` counts it for the drain until it returns.
fn serve(mut stream: TcpStream, t: Transferable, mut buf: Vec<u8>, _guard: ConnGuard) {
    let mut t = Some(t);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if writeln!(stream, "{}", support::answer("echo_sync", &text)).is_err() {
                return;
            }
        }
        let waited = match &t {
            Some(t) => t.wait(stream.as_fd(), None),
            None => Ok(Wait::Readable),
        };
        match waited {
            Ok(Wait::Requested) => {
                let Some(offer) = t.take() else { continue };
                let state = State {
                    version: STATE_VERSION,
                    bytes: Vec::new(),
                    unread: buf.clone(),
                };
                match offer.offer(stream, state).wait() {
                    Ok(()) => return, // the next generation owns it now
                    Err(kept) => {
                        stream = TcpStream::from(kept.fd);
                        t = Some(kept.again);
                    }
                }
            }
            Ok(_) => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            Err(_) => return,
        }
    }
}
