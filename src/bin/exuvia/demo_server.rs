//! `exuvia demo-server` (hidden): the line-echo server `exuvia demo` runs, so the demo needs
//! no example binaries built. Two builds of the same server:
//!
//! - default: the exuvia library — inherits its listener by name, upgrades on SIGHUP with the
//!   `Type=notify-reload` handover, hands its open connections to the new process (between
//!   two lines), drains on SIGTERM;
//! - `--naive`: what a service without exuvia does — binds its own port, says `READY=1`, and
//!   on SIGTERM closes the listener, finishes the connections it has and exits; a "reload"
//!   is a stop followed by a start.
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::Duration;

use exuvia::handoff::{HandedOff, State, Stream, Transferable};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
    let adopted = ex.adopt("echo", 1..=1)?;
    ex.ready()?;
    let mut adopting = true;
    loop {
        tokio::select! {
            a = adopted.next(), if adopting => match a {
                Some(a) => {
                    let stream = <TcpStream as Stream>::from_fd(a.fd)?;
                    ex.connections().spawn(echo_live(stream, ex.transferable("echo"), a.unread));
                }
                None => adopting = false,
            },
            accepted = listener.accept() => match accepted? {
                Some((stream, _)) => {
                    ex.connections().spawn(echo_live(stream, ex.transferable("echo"), Vec::new()));
                }
                None => break,
            },
        }
    }
    ex.drain().await;
    Ok(())
}

/// `echo`, handing the connection to the next generation between two lines.
async fn echo_live(mut stream: TcpStream, t: Transferable, mut buf: Vec<u8>) {
    let mut t = Some(t);
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if stream.write_all(&line).await.is_err() {
                return;
            }
        }
        let requested = async {
            match &t {
                Some(t) => t.requested().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = requested => {
                let Some(offer) = t.take() else { continue };
                let state = State { version: 1, bytes: Vec::new(), unread: buf.clone() };
                match offer.hand_off(stream, state).await {
                    Ok(HandedOff::Kept(kept)) => {
                        stream = kept.stream;
                        t = Some(kept.again);
                    }
                    Ok(HandedOff::Gone) | Err(_) => return,
                }
            }
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
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
