//! Live connections survive upgrades: the old generation hands each open connection to its
//! successor between two messages, and the client sees one TCP connection throughout — no
//! close, no reset, no lost or repeated byte. When the successor refuses, dies or hangs
//! during the transfer, every connection stays with the old generation.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// A client on one connection: sends numbered lines and checks every answer, in order.
struct Client {
    out: TcpStream,
    input: BufReader<TcpStream>,
    next: u64,
}

impl Client {
    fn connect(addr: std::net::SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            out: s.try_clone().unwrap(),
            input: BufReader::new(s),
            next: 0,
        }
    }

    fn local_port(&self) -> u16 {
        self.out.local_addr().unwrap().port()
    }

    /// One round trip; `Err` says how the conversation broke.
    fn round_trip(&mut self) -> Result<(), String> {
        let n = self.next;
        self.next += 1;
        self.out
            .write_all(format!("line {n}\n").as_bytes())
            .map_err(|e| format!("write {n}: {e}"))?;
        let mut got = String::new();
        match self.input.read_line(&mut got) {
            Ok(0) => Err(format!("EOF waiting for {n}")),
            Ok(_) if got == format!("line {n}\n") => Ok(()),
            Ok(_) => Err(format!("sent line {n}, got {got:?}")),
            Err(e) => Err(format!("read {n}: {e}")),
        }
    }
}

#[test]
fn one_connection_survives_a_hundred_upgrades() {
    survives_a_hundred_upgrades("echo");
}

/// The blocking API does the same (`examples/echo_sync.rs`: a thread per connection).
#[test]
fn one_connection_survives_a_hundred_upgrades_of_a_blocking_service() {
    survives_a_hundred_upgrades("echo_sync");
}

fn survives_a_hundred_upgrades(server: &str) {
    let dir = Scratch::new(&format!("handoff100-{server}"));
    let mut svc =
        Service::start_with_env(&example(server), &dir, &[], &[("EXUVIA_DRAIN_HARD", "1s")]);
    let mut c = Client::connect(svc.addr);
    let port = c.local_port();
    c.round_trip().unwrap();
    let started = Instant::now();
    for i in 0..100 {
        let old = svc.pid().unwrap();
        signal(old, libc::SIGHUP);
        // Keep talking while the upgrade happens, every 20 ms.
        let deadline = Instant::now() + T;
        loop {
            c.round_trip()
                .unwrap_or_else(|e| panic!("upgrade {i}: {e}\n{}", svc.log_tail(20)));
            std::thread::sleep(Duration::from_millis(20));
            match svc.pid() {
                Some(p) if p != old => {
                    svc.note_pid(p);
                    break;
                }
                _ => assert!(
                    Instant::now() < deadline,
                    "no takeover: {}",
                    svc.log_tail(20)
                ),
            }
        }
        // The old generation had nothing left to drain: it is gone at once, not after 1 s.
        assert!(
            wait_dead(old, Duration::from_millis(900)),
            "generation {i} left behind"
        );
    }
    c.round_trip().unwrap();
    assert_eq!(c.local_port(), port, "one TCP connection throughout");
    let adopted = svc.count_log("live connections adopted");
    eprintln!(
        "measured: {server}: one connection, {} round trips over 100 upgrades in {:?}, local port {port} throughout; {adopted} adoptions",
        c.next,
        started.elapsed()
    );
    assert_eq!(adopted, 100);
    svc.stop();
}

/// Many clients, each on its own connection, checked round by round.
struct Clients(Vec<Client>);

impl Clients {
    fn connect(addr: std::net::SocketAddr, n: usize) -> Clients {
        let mut v: Vec<Client> = (0..n).map(|_| Client::connect(addr)).collect();
        for c in &mut v {
            c.round_trip().unwrap();
        }
        Clients(v)
    }

    /// One round trip on every connection; the first broken one's index and error.
    fn round(&mut self) -> Result<(), (usize, String)> {
        for (i, c) in self.0.iter_mut().enumerate() {
            c.round_trip().map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Round trips (one per connection per round) for `d`; how many rounds went through.
    fn talk_for(&mut self, d: Duration) -> Result<usize, (usize, String)> {
        let end = Instant::now() + d;
        let mut rounds = 0;
        while Instant::now() < end {
            self.round()?;
            rounds += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(rounds)
    }
}

fn wait_log(svc: &Service, needle: &str) {
    assert!(
        svc.wait_log(needle, T),
        "no {needle:?} in\n{}",
        svc.log_tail(30)
    );
}

/// A successor with another state format refuses: every connection stays with the old
/// generation, which serves it until its drain deadline.
#[test]
fn a_refusing_successor_leaves_every_connection_with_the_old_generation() {
    let dir = Scratch::new("handoff-refuse");
    let fail = dir.path("fail");
    let mut svc = Service::start_with_env(
        &example("echo"),
        &dir,
        &["--fail-file", fail.to_str().unwrap()],
        &[("EXUVIA_DRAIN_HARD", "3s")],
    );
    let mut clients = Clients::connect(svc.addr, 20);
    std::fs::write(&fail, "state-version 2").unwrap();
    let old = svc.pid().unwrap();
    let new = svc.upgrade(T);
    wait_log(&svc, "handed_over=0 kept=20");
    // Still served — by the old generation, which is still alive and draining them.
    let rounds = clients.talk_for(Duration::from_millis(1000)).unwrap();
    assert!(
        alive(old),
        "the old generation keeps its connections until its deadline"
    );
    assert_eq!(ask(&svc.target(), "new connections"), "new connections");
    eprintln!(
        "measured: refused hand-off: 20 connections kept, {rounds} rounds served by the old generation after the upgrade"
    );
    assert!(
        wait_dead(old, Duration::from_secs(10)),
        "the drain ends at the hard deadline"
    );
    svc.note_pid(new);
    svc.stop();
}

/// A client that sends one huge line and does not read the echo: the server's task is stuck
/// writing, so it cannot reach a safe point, and the hand-off waits for it (up to its
/// deadline) after the other connections' batch was offered — a window to break the
/// successor in, deterministically.
struct Straggler(TcpStream);

const STRAGGLE: usize = 8 << 20;

impl Straggler {
    fn start(addr: std::net::SocketAddr) -> Straggler {
        // A small receive buffer: the echo backs up into the server at once.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let s = TcpStream::from(sock);
        let mut line = vec![b'x'; STRAGGLE];
        line.push(b'\n');
        let mut w = s.try_clone().unwrap();
        // The whole line is read by the server before it answers; once it is sent, the
        // server's task is stuck writing the echo nobody reads.
        w.write_all(&line).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Straggler(s)
    }

    /// Reads the whole echo: the server's task gets unstuck.
    fn release(mut self) {
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        self.0.set_read_timeout(Some(T)).unwrap();
        while got < STRAGGLE + 1 {
            let n = std::io::Read::read(&mut self.0, &mut buf).unwrap();
            assert!(n > 0, "EOF after {got} bytes of the echo");
            got += n;
        }
    }
}

fn successor_pid(svc: &Service) -> i32 {
    svc.log_lines()
        .into_iter()
        .rfind(|l| l.contains("successor started"))
        .and_then(|l| l.split("successor_pid=").nth(1)?.trim().parse::<i32>().ok())
        .expect("successor pid in the log")
}

fn hand_off_line(svc: &Service) -> String {
    svc.log_lines()
        .into_iter()
        .find(|l| l.contains("live connections handed over"))
        .unwrap_or_default()
}

/// The successor dies in the middle of the hand-off (after it accepted a batch, before the
/// commit): every connection stays with the old generation, which keeps serving —
/// listeners included — and the next upgrade takes them all.
#[test]
fn a_successor_that_dies_mid_transfer_leaves_every_connection_with_the_old_generation() {
    let dir = Scratch::new("handoff-crash");
    let mut svc = Service::start(&example("echo"), &dir, &[]);
    let mut clients = Clients::connect(svc.addr, 100);
    let straggler = Straggler::start(svc.addr);
    let old = svc.pid().unwrap();
    signal(old, libc::SIGHUP);
    wait_log(&svc, "live connections offered");
    signal(successor_pid(&svc), libc::SIGKILL);
    wait_log(&svc, "died right after it said ready");
    assert_eq!(svc.pid(), Some(old));
    straggler.release();
    clients
        .round()
        .unwrap_or_else(|(i, e)| panic!("connection {i}: {e}"));
    let line = hand_off_line(&svc);
    eprintln!("measured: successor killed mid-transfer: {line}");
    assert!(line.contains("handed_over=0"), "{line}");
    let new = svc.upgrade(T);
    clients
        .round()
        .unwrap_or_else(|(i, e)| panic!("after the next upgrade, connection {i}: {e}"));
    assert!(wait_dead(old, Duration::from_secs(5)));
    assert!(alive(new));
    svc.stop();
}

/// The successor is told to stop in the middle of the hand-off (`systemctl stop` or
/// `restart` reaches every process of the unit): it tells the old generation at once, which
/// stays main with every connection — none is adopted by a process on its way out — and the
/// upgrade fails with that reason; the stopped successor exits by itself.
#[test]
fn a_successor_stopped_mid_transfer_leaves_every_connection_with_the_old_generation() {
    let dir = Scratch::new("handoff-term");
    let mut svc = Service::start(&example("echo"), &dir, &[]);
    let mut clients = Clients::connect(svc.addr, 100);
    let straggler = Straggler::start(svc.addr);
    let old = svc.pid().unwrap();
    signal(old, libc::SIGHUP);
    wait_log(&svc, "live connections offered");
    let successor = successor_pid(&svc);
    signal(successor, libc::SIGTERM);
    wait_log(&svc, "stop requested; draining");
    // The straggler's offer comes after the stop: the old generation reads `failed` instead.
    straggler.release();
    wait_log(&svc, "upgrade failed; this generation keeps serving");
    assert!(
        wait_dead(successor, Duration::from_secs(10)),
        "the stopped successor exits"
    );
    assert_eq!(svc.pid(), Some(old));
    clients
        .round()
        .unwrap_or_else(|(i, e)| panic!("connection {i}: {e}"));
    let line = hand_off_line(&svc);
    eprintln!("measured: successor stopped mid-transfer: {line}");
    assert!(line.contains("handed_over=0"), "{line}");
    let failed = svc
        .log_lines()
        .into_iter()
        .find(|l| l.contains("upgrade failed"))
        .unwrap_or_default();
    assert!(
        failed.contains("told to stop before it took over"),
        "{failed}"
    );
    assert_eq!(svc.count_log("live connections adopted"), 0);
    let new = svc.upgrade(T);
    clients
        .round()
        .unwrap_or_else(|(i, e)| panic!("after the next upgrade, connection {i}: {e}"));
    assert!(wait_dead(old, Duration::from_secs(5)));
    assert!(alive(new));
    svc.stop();
}

/// The successor hangs in the middle of the hand-off: the old generation aborts at its
/// hand-off deadline and keeps every connection, serving them until its drain deadline.
#[test]
fn a_hanging_successor_leaves_every_connection_with_the_old_generation() {
    let dir = Scratch::new("handoff-hang");
    let mut svc =
        Service::start_with_env(&example("echo"), &dir, &[], &[("EXUVIA_DRAIN_HARD", "5s")]);
    let mut clients = Clients::connect(svc.addr, 100);
    let straggler = Straggler::start(svc.addr);
    let old = svc.pid().unwrap();
    signal(old, libc::SIGHUP);
    wait_log(&svc, "live connections offered");
    let successor = successor_pid(&svc);
    signal(successor, libc::SIGSTOP);
    // Unstuck, the straggler is offered in a batch the stopped successor never answers.
    straggler.release();
    wait_log(&svc, "hand-off aborted");
    signal(successor, libc::SIGCONT);
    let new = svc
        .wait_pid_change(Some(old), T)
        .expect("the successor serves once it runs");
    svc.note_pid(new);
    clients
        .round()
        .unwrap_or_else(|(i, e)| panic!("connection {i}: {e}"));
    assert!(alive(old), "the old generation drains what it kept");
    let line = hand_off_line(&svc);
    eprintln!("measured: successor hung mid-transfer: {line}");
    assert!(
        line.contains("offered=101 handed_over=0 kept=101"),
        "{line}"
    );
    svc.stop();
}
