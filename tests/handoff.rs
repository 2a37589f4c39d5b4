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
    let dir = Scratch::new("handoff100");
    let mut svc =
        Service::start_with_env(&example("echo"), &dir, &[], &[("EXUVIA_DRAIN_HARD", "1s")]);
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
        "measured: one connection, {} round trips over 100 upgrades in {:?}, local port {port} throughout; {adopted} adoptions",
        c.next,
        started.elapsed()
    );
    assert_eq!(adopted, 100);
    svc.stop();
}
