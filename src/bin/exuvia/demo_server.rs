//! `exuvia demo-server` (hidden): the line-echo server `exuvia demo` runs, so the demo needs
//! no example binaries built. Two builds of the same server:
//!
//! - default: the exuvia library — inherits its listener by name, upgrades on SIGHUP with the
//!   `Type=notify-reload` handover, drains on SIGTERM;
//! - `--naive`: what a service without exuvia does — binds its own port, says `READY=1`, and
//!   on SIGTERM closes the listener, finishes the connections it has and exits; a "reload"
//!   is a stop followed by a start.
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::task::TaskTracker;

type BoxError = Box<dyn std::error::Error>;

/// How long the naive server waits for open connections on stop (echo requests are short).
const NAIVE_DRAIN: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct DemoServerArgs {
    /// Run without exuvia: bind the port itself, stop on SIGTERM.
    #[arg(long)]
    naive: bool,
    /// Address to listen on when no listener named `echo` is passed by socket activation.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

pub fn run(args: DemoServerArgs) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) if args.naive => rt.block_on(naive(&args.listen)),
        Ok(rt) => rt.block_on(upgradable(&args.listen)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exuvia demo-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn echo(stream: TcpStream) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            break;
        }
    }
}

async fn upgradable(listen: &str) -> Result<(), BoxError> {
    let builder = exuvia::Exuvia::builder().drain(Duration::ZERO, Duration::from_secs(10));
    let ex = exuvia::tokio::Exuvia::start(builder)?;
    let listener = ex.listen_tcp("echo", listen)?;
    ex.ready()?;
    while let Some((stream, _)) = listener.accept().await? {
        ex.connections().spawn(echo(stream));
    }
    ex.drain().await;
    Ok(())
}

async fn naive(listen: &str) -> Result<(), BoxError> {
    // Caught so a stray reload signal cannot kill it, as any service under
    // Type=notify-reload must; the naive server simply never reloads.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    notify(b"READY=1")?;
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                tracker.spawn(echo(stream));
            }
            _ = hup.recv() => {}
            _ = term.recv() => break,
        }
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(NAIVE_DRAIN, tracker.wait()).await;
    Ok(())
}

/// One datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
fn notify(msg: &[u8]) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg, &addr)?;
    } else {
        sock.send_to(msg, &path)?;
    }
    Ok(())
}
