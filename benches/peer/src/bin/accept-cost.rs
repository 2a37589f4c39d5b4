//! The server side of N accepts (TCP, Unix), N datagrams (UDP) or N echo requests, through
//! plain tokio or through exuvia's listener, on a current-thread runtime: the program that
//! `peer --instructions` runs under callgrind (`--toggle-collect=*measured*`) to count the
//! instructions each costs. Every connection or datagram is queued by the client *before* the
//! measured part starts, so each accept or receive is ready when asked for and the count is
//! the same from run to run; the per-operation cost is the difference between two runs of
//! different N (so the runtime's and exuvia's start-up cancel out).
//!
//! ```text
//! accept-cost --impl plain|exuvia --case tcp|unix|udp|echo|sync-tcp -n 1000
//! ```
#[path = "../server.rs"]
mod server;

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Plain,
    Exuvia,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Tcp,
    Unix,
    Udp,
    Echo,
    /// Blocking accepts: std's listener against exuvia's runtime-free one.
    SyncTcp,
}

struct Opts {
    imp: Impl,
    case: Case,
    n: usize,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        imp: Impl::Plain,
        case: Case::Tcp,
        n: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match (flag.as_str(), v.as_str()) {
            ("--impl", "plain") => o.imp = Impl::Plain,
            ("--impl", "exuvia") => o.imp = Impl::Exuvia,
            ("--case", "tcp") => o.case = Case::Tcp,
            ("--case", "unix") => o.case = Case::Unix,
            ("--case", "udp") => o.case = Case::Udp,
            ("--case", "echo") => o.case = Case::Echo,
            ("--case", "sync-tcp") => o.case = Case::SyncTcp,
            ("-n", n) => {
                o.n = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=3000).contains(n))
                    .ok_or(format!("-n: expected 1..=3000, got {n}"))?
            }
            _ => return Err(format!("bad flag or value: {flag} {v}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("accept-cost: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(done) if done == o.n => ExitCode::SUCCESS,
        Ok(done) => {
            eprintln!("accept-cost: {done} of {} operations", o.n);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("accept-cost: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The only part callgrind counts (`--toggle-collect=*measured*`): the runtime driving the
/// server loop, with every task it spawns.
#[inline(never)]
fn measured<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

/// The same for blocking code.
#[inline(never)]
fn measured_sync(f: impl FnOnce() -> usize) -> usize {
    f()
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A free loopback port (bound and released; nothing else on this machine races for it
/// within the microseconds before the server binds it again).
fn free_addr(udp: bool) -> Res<SocketAddr> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
    })
}

/// Raises the receive buffer of the UDP socket bound to `addr` in this process, so that every
/// datagram can be queued before the measured part (exuvia's API has no hook for UDP options).
fn grow_udp_buffer(addr: SocketAddr) {
    for fd in 3..1024 {
        // SAFETY: only used while this function runs; fds this process does not have fail.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        if libc_fcntl_ok(fd) {
            let s = socket2::SockRef::from(&b);
            let ours = s
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a == addr)
                && s.r#type().ok() == Some(socket2::Type::DGRAM);
            if ours {
                let _ = s.set_recv_buffer_size(4 << 20);
            }
        }
    }
}

fn libc_fcntl_ok(fd: i32) -> bool {
    // SAFETY: F_GETFD has no effect besides its return value.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

async fn echo_counted(s: tokio::net::TcpStream, done: Arc<AtomicUsize>) {
    server::echo(s).await;
    done.fetch_add(1, Ordering::Relaxed);
}

fn run(o: &Opts) -> Res<usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _rt = rt.enter();
    let udp = o.case == Case::Udp;
    let addr = free_addr(udp)?;
    let dir = std::env::temp_dir().join(format!("accept-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sock");
    // Every server here runs more than one thread (exuvia its control thread, the benchmark's
    // servers a multi-threaded runtime), and libc's system call wrappers take a longer path
    // in a multi-threaded process: the plain server gets an idle thread so both take it.
    let (_idle_tx, idle_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || idle_rx.recv());
    if o.case == Case::SyncTcp {
        let done = sync_tcp(o, addr)?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(done);
    }
    let ex = match o.imp {
        Impl::Exuvia => {
            let b = exuvia::Exuvia::builder().upgrade_signal(None);
            Some(exuvia::tokio::Exuvia::start(b)?)
        }
        Impl::Plain => None,
    };
    // Servers are created first, then every client operation is queued, then the measured part.
    let done = match (o.case, &ex) {
        (Case::SyncTcp, _) => return Err("sync-tcp is measured by sync_tcp".into()),
        (Case::Tcp | Case::Echo, None) => {
            let s = plain_listener(addr)?;
            s.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(s.into())?;
            let _clients = fill_tcp(addr, o.n, o.case == Case::Echo)?;
            if o.case == Case::Echo {
                measured(&rt, plain_echo(&l, o.n))
            } else {
                measured(&rt, plain_tcp(&l, o.n))
            }
        }
        (Case::Tcp | Case::Echo, Some(ex)) => {
            let l = ex.listen_tcp("tcp", addr)?;
            ex.ready()?;
            let _clients = fill_tcp(addr, o.n, o.case == Case::Echo)?;
            if o.case == Case::Echo {
                measured(&rt, exuvia_echo(ex, &l, o.n))
            } else {
                measured(&rt, exuvia_tcp(&l, o.n))
            }
        }
        (Case::Unix, None) => {
            let l = tokio::net::UnixListener::bind(&path)?;
            let _clients = fill_unix(&path, o.n)?;
            measured(&rt, plain_unix(&l, o.n))
        }
        (Case::Unix, Some(ex)) => {
            let l = ex.listen_unix("unix", &path)?;
            ex.ready()?;
            let _clients = fill_unix(&path, o.n)?;
            measured(&rt, exuvia_unix(&l, o.n))
        }
        (Case::Udp, None) => {
            let s = tokio::net::UdpSocket::from_std({
                let s = std::net::UdpSocket::bind(addr)?;
                s.set_nonblocking(true)?;
                s
            })?;
            grow_udp_buffer(addr);
            fill_udp(addr, o.n)?;
            measured(&rt, plain_udp(&s, o.n))
        }
        (Case::Udp, Some(ex)) => {
            let s = ex.bind_udp("udp", addr)?;
            ex.ready()?;
            grow_udp_buffer(addr);
            fill_udp(addr, o.n)?;
            measured(&rt, exuvia_udp(&s, o.n))
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(done)
}

/// Bound and listening with the servers' backlog, so every queued connection fits.
fn plain_listener(addr: SocketAddr) -> Res<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(server::BACKLOG)?;
    Ok(s)
}

fn sync_tcp(o: &Opts, addr: SocketAddr) -> Res<usize> {
    let n = o.n;
    match o.imp {
        Impl::Plain => {
            let l: std::net::TcpListener = plain_listener(addr)?.into();
            let _clients = fill_tcp(addr, n, false)?;
            Ok(measured_sync(|| {
                (0..n).take_while(|_| l.accept().is_ok()).count()
            }))
        }
        Impl::Exuvia => {
            let ex = exuvia::Exuvia::builder().upgrade_signal(None).start()?;
            let l = ex.listen_tcp("tcp", addr)?;
            ex.ready()?;
            let _clients = fill_tcp(addr, n, false)?;
            Ok(measured_sync(|| {
                (0..n)
                    .take_while(|_| matches!(l.accept(), Ok(Some(_))))
                    .count()
            }))
        }
    }
}

fn fill_tcp(addr: SocketAddr, n: usize, line: bool) -> Res<Vec<std::net::TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = std::net::TcpStream::connect(addr)?;
        if line {
            c.write_all(b"x\n")?;
            c.shutdown(std::net::Shutdown::Write)?;
        }
        v.push(c);
    }
    Ok(v)
}

fn fill_unix(path: &std::path::Path, n: usize) -> Res<Vec<std::os::unix::net::UnixStream>> {
    (0..n)
        .map(|_| Ok(std::os::unix::net::UnixStream::connect(path)?))
        .collect()
}

fn fill_udp(addr: SocketAddr, n: usize) -> Res<()> {
    let c = std::net::UdpSocket::bind("127.0.0.1:0")?;
    for i in 0..n {
        c.send_to(&(i as u64).to_ne_bytes(), addr)?;
    }
    // The datagrams are in the server's queue once send_to returned (loopback delivers inline).
    Ok(())
}

async fn plain_tcp(l: &tokio::net::TcpListener, n: usize) -> usize {
    let mut done = 0;
    while done < n {
        match l.accept().await {
            Ok(_) => done += 1,
            Err(_) => break,
        }
    }
    done
}

async fn exuvia_tcp(l: &exuvia::tokio::Listener<tokio::net::TcpListener>, n: usize) -> usize {
    let mut done = 0;
    while done < n {
        match l.accept().await {
            Ok(Some(_)) => done += 1,
            _ => break,
        }
    }
    done
}

async fn plain_unix(l: &tokio::net::UnixListener, n: usize) -> usize {
    let mut done = 0;
    while done < n {
        match l.accept().await {
            Ok(_) => done += 1,
            Err(_) => break,
        }
    }
    done
}

async fn exuvia_unix(l: &exuvia::tokio::Listener<tokio::net::UnixListener>, n: usize) -> usize {
    let mut done = 0;
    while done < n {
        match l.accept().await {
            Ok(Some(_)) => done += 1,
            _ => break,
        }
    }
    done
}

async fn plain_udp(s: &tokio::net::UdpSocket, n: usize) -> usize {
    let mut buf = [0u8; 64];
    let mut done = 0;
    while done < n {
        match s.recv_from(&mut buf).await {
            Ok(_) => done += 1,
            Err(_) => break,
        }
    }
    done
}

async fn exuvia_udp(s: &exuvia::tokio::Listener<tokio::net::UdpSocket>, n: usize) -> usize {
    let mut buf = [0u8; 64];
    let mut done = 0;
    while done < n {
        match s.recv_from(&mut buf).await {
            Ok(Some(_)) => done += 1,
            _ => break,
        }
    }
    done
}

/// Accept + a connection task per request, as `echo-plain` serves (its drain tracking
/// included: an mpsc sender per connection), then wait for every task.
async fn plain_echo(l: &tokio::net::TcpListener, n: usize) -> usize {
    let done = Arc::new(AtomicUsize::new(0));
    let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    for _ in 0..n {
        let Ok((conn, _)) = l.accept().await else {
            break;
        };
        let alive = alive.clone();
        let done = done.clone();
        tokio::spawn(async move {
            echo_counted(conn, done).await;
            drop(alive);
        });
    }
    drop(alive);
    all_done.recv().await;
    done.load(Ordering::Relaxed)
}

/// The same through exuvia: `connections().spawn`, as `echo-exuvia` serves.
async fn exuvia_echo(
    ex: &exuvia::tokio::Exuvia,
    l: &exuvia::tokio::Listener<tokio::net::TcpListener>,
    n: usize,
) -> usize {
    let done = Arc::new(AtomicUsize::new(0));
    let conns = ex.connections();
    for _ in 0..n {
        let Ok(Some((conn, _))) = l.accept().await else {
            break;
        };
        conns.spawn(echo_counted(conn, done.clone()));
    }
    while conns.active() > 0 {
        tokio::task::yield_now().await;
    }
    done.load(Ordering::Relaxed)
}
