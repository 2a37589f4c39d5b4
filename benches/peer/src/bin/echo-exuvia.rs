//! The echo server upgraded by exuvia: SIGHUP starts the binary on disk, which inherits the
//! listener; this generation then stops accepting and drains.
//!
//! `--handoff`: open connections go to the successor at each upgrade, between two lines
//! (as `examples/echo.rs` does), instead of draining here. `--udp`: datagram echo.
//! `--timeline FILE`: the library's timeline fields, one line per event (see `timeline`).
#[path = "../server.rs"]
mod server;
#[path = "../timeline_layer.rs"]
mod timeline_layer;

use std::process::ExitCode;
use std::time::Duration;

use exuvia::handoff::{HandedOff, State, Stream, Transferable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The format of a handed-over connection's state: only the bytes read but not answered.
const STATE_VERSION: u32 = 1;

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
    server::raise_nofile();
    if let Some(path) = &args.timeline {
        timeline_layer::install(path)?;
    }
    let mut b = exuvia::Exuvia::builder()
        .ready_timeout(Duration::from_secs(30))
        .drain(Duration::ZERO, args.drain_hard);
    if args.handoff {
        b = b
            .handoff_timeout(Duration::from_secs(30))
            .adopt_limits(100_000, 1 << 30);
    }
    if let Some(p) = &args.pid_file {
        b = b.pid_file(p);
    }
    let ex = exuvia::tokio::Exuvia::start(b)?;
    let first = server::FirstAccept::new(&args);
    if args.udp {
        let sock = ex.bind_udp("echo", args.listen.as_str())?;
        ex.ready()?;
        // The receive loop runs as a task on a worker thread, as in every contender here.
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(Some((n, from))) = sock.recv_from(&mut buf).await {
                first.hit();
                let _ = sock.send_to(&buf[..n], from).await;
            }
        })
        .await?;
        ex.drain().await;
        return Ok(());
    }
    let listener = ex.listen_tcp("echo", args.listen.as_str())?;
    let adopted = match args.handoff {
        true => Some(ex.adopt("echo", STATE_VERSION..=STATE_VERSION)?),
        false => None,
    };
    ex.ready()?;
    let ex = std::sync::Arc::new(ex);
    let conns = ex.connections().clone();
    if let Some(adopted) = adopted {
        let (ex, conns) = (ex.clone(), conns.clone());
        tokio::spawn(async move {
            while let Some(a) = adopted.next().await {
                if let Ok(stream) = TcpStream::from_fd(a.fd) {
                    conns.spawn(serve_handoff(stream, ex.transferable("echo"), a.unread));
                }
            }
        });
    }
    // The accept loop runs as a task on a worker thread, as in every contender here.
    let handoff = args.handoff;
    let ex2 = ex.clone();
    let accept = tokio::spawn(async move {
        while let Ok(Some((stream, _))) = listener.accept().await {
            first.hit();
            if handoff {
                conns.spawn(serve_handoff(stream, ex2.transferable("echo"), Vec::new()));
            } else {
                conns.spawn(server::echo(stream));
            }
        }
    });
    accept.await?;
    ex.drain().await;
    Ok(())
}

/// Echoes lines; at a hand-off, gives the connection (with what it read but has not answered)
/// to the next generation between two lines.
async fn serve_handoff(mut stream: TcpStream, t: Transferable, mut buf: Vec<u8>) {
    let mut t = Some(t);
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if stream.write_all(&line).await.is_err() {
                return;
            }
        }
        tokio::select! {
            biased;
            _ = requested(&t) => {
                let Some(offer) = t.take() else { continue };
                let state = State { version: STATE_VERSION, bytes: Vec::new(), unread: buf.clone() };
                match offer.hand_off(stream, state).await {
                    Ok(HandedOff::Gone) | Err(_) => return,
                    Ok(HandedOff::Kept(kept)) => {
                        stream = kept.stream;
                        t = Some(kept.again);
                    }
                }
            }
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

async fn requested(t: &Option<Transferable>) {
    match t {
        Some(t) => t.requested().await,
        None => std::future::pending().await,
    }
}
