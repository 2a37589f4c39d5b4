//! The echo server without any upgrade library: the throughput baseline, the naive
//! stop/start contender (no SIGTERM handler: SIGTERM kills it, as it kills most servers), and
//! with `--reuseport --term-drain` the SO_REUSEPORT contender (a new process binds the same
//! port beside it; SIGTERM then closes this one's listener and drains). `--udp`: datagram
//! echo on a UDP socket instead.
#[path = "../server.rs"]
mod server;

use std::net::SocketAddr;
use std::process::ExitCode;

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-plain: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bind(args: &server::Args) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if args.reuseport {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(server::BACKLOG)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

fn bind_udp(args: &server::Args) -> std::io::Result<UdpSocket> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if args.reuseport {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = server::parse_args()?;
    server::raise_nofile();
    if args.udp {
        return serve_udp(&args).await;
    }
    let listener = bind(&args)?;
    let mut term = match args.term_drain {
        true => Some(signal(SignalKind::terminate())?),
        false => None,
    };
    if let Some(p) = &args.pid_file {
        server::write_pid_file(p)?;
    }
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let first = server::FirstAccept::new(&args);
    // The accept loop runs as a task on a worker thread, as in every contender here; it
    // closes the listener when it ends.
    let accept = tokio::spawn(async move {
        loop {
            let stop = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = listener.accept() => {
                    let Ok((conn, _)) = r else { continue };
                    first.hit();
                    let alive = alive.clone();
                    tokio::spawn(async move {
                        server::echo(conn).await;
                        drop(alive);
                    });
                }
                _ = stop => break,
            }
        }
    });
    accept.await?;
    let _ = tokio::time::timeout(args.drain_hard, all_done.recv()).await;
    Ok(())
}

async fn serve_udp(args: &server::Args) -> Result<(), Box<dyn std::error::Error>> {
    let sock = bind_udp(args)?;
    let mut term = match args.term_drain {
        true => Some(signal(SignalKind::terminate())?),
        false => None,
    };
    if let Some(p) = &args.pid_file {
        server::write_pid_file(p)?;
    }
    let first = server::FirstAccept::new(args);
    // The receive loop runs as a task on a worker thread, as in every contender here.
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let stop = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    first.hit();
                    let _ = sock.send_to(&buf[..n], from).await;
                }
                _ = stop => break,
            }
        }
    });
    echo.await?;
    Ok(())
}
