//! A TCP line-echo server that upgrades itself without dropping a connection — and without
//! closing one: at each upgrade its open connections are handed to the new process, which
//! continues each conversation on the same TCP connection.
//!
//! ```text
//! cargo run --example echo -- --listen 127.0.0.1:8080 --pid-file /tmp/echo.pid
//! kill -HUP $(cat /tmp/echo.pid)    # upgrade: the binary on disk takes over, connections too
//! kill -TERM $(cat /tmp/echo.pid)   # drain and exit
//! ```
//!
//! Under systemd it takes the socket-activated listener named `echo`
//! (`FileDescriptorName=echo`) and speaks `Type=notify-reload`.
mod support;

use std::process::ExitCode;

use exuvia::handoff::{HandedOff, State, Stream, Transferable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The format of this server's connection state (a line echo has none beyond the bytes
/// read but not yet answered).
const STATE_VERSION: u32 = 1;

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
    // Before ready(): the previous generation offers its connections right after it.
    let versions = support::adopted_versions(&args, ex.generation(), STATE_VERSION);
    let adopted = ex.adopt("echo", versions)?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    tracing::info!(addr = %listener.local_addr()?, generation = ex.generation(), "serving");
    let mut adopting = true;
    loop {
        tokio::select! {
            // Adoptions first: a stop during the hand-off ends accepting right after the
            // last commit, and what was committed must be served through the drain.
            biased;
            a = adopted.next(), if adopting => match a {
                Some(a) => {
                    if let Ok(stream) = TcpStream::from_fd(a.fd) {
                        ex.connections().spawn(serve(stream, ex.transferable("echo"), a.unread));
                    }
                }
                None => adopting = false, // the handover is complete: nothing more comes
            },
            accepted = listener.accept() => match accepted? {
                Some((stream, _)) => {
                    ex.connections().spawn(serve(stream, ex.transferable("echo"), Vec::new()));
                }
                None => break, // handed over (or stopping): drain
            },
        }
    }
    let report = ex.drain().await;
    tracing::info!(?report, "exiting");
    Ok(())
}

/// Echoes lines. When this generation hands over, it gives the connection — and whatever it
/// read but has not answered yet — to the next one, between two lines.
async fn serve(mut stream: TcpStream, t: Transferable, mut buf: Vec<u8>) {
    let mut t = Some(t);
    // Bytes of `buf` known to hold no newline (a long line is scanned once, not per read).
    let mut scanned = 0;
    loop {
        // Answer every whole line already read (an adopted connection may bring some).
        while let Some(end) = buf[scanned..].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=scanned + end).collect();
            scanned = 0;
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let reply = support::answer("echo", &text) + "\n";
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        tokio::select! {
            biased;
            _ = requested(&t) => {
                let Some(offer) = t.take() else { continue };
                // A safe point: every whole line is answered; `buf` holds the rest.
                let state = State { version: STATE_VERSION, bytes: Vec::new(), unread: buf.clone() };
                match offer.hand_off(stream, state).await {
                    Ok(HandedOff::Gone) => return, // the next generation owns it now
                    // Kept here: serve on (it drains, or goes at the next upgrade).
                    Ok(HandedOff::Kept(kept)) => {
                        stream = kept.stream;
                        t = Some(kept.again);
                    }
                    Err(_) => return,
                }
            }
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => scanned = buf.len() - n,
            },
        }
    }
}

/// Resolves when this generation starts handing its connections over (never without `t`).
async fn requested(t: &Option<Transferable>) {
    match t {
        Some(t) => t.requested().await,
        None => std::future::pending().await,
    }
}
