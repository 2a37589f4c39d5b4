//! The UDP round's client: each worker sends one datagram at a time on its own socket and
//! waits for the echo; a datagram not echoed within the timeout is lost (a failure).
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::params::Slice;

const TIMEOUT: Duration = Duration::from_millis(200);

/// One worker: datagrams until `until`; (echoed, lost).
fn worker(addr: SocketAddr, until: Instant, id: u64) -> std::io::Result<(u64, u64)> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.connect(addr)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let (mut ok, mut lost) = (0u64, 0u64);
    let mut buf = [0u8; 64];
    let mut seq = 0u64;
    while Instant::now() < until {
        seq += 1;
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&id.to_ne_bytes());
        msg[8..].copy_from_slice(&seq.to_ne_bytes());
        s.send(&msg)?;
        let sent = Instant::now();
        // An echo of an earlier datagram that came late is skipped, not counted twice.
        loop {
            match s.recv(&mut buf) {
                Ok(16) if buf[..16] == msg => {
                    ok += 1;
                    break;
                }
                Ok(_) if sent.elapsed() < TIMEOUT => continue,
                _ => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    Ok((ok, lost))
}

/// `conns` workers against `addr` for `duration`.
pub fn load(addr: SocketAddr, conns: u32, duration: Duration) -> Result<Slice, String> {
    let start = Instant::now();
    let until = start + duration;
    let workers: Vec<_> = (0..conns)
        .map(|id| std::thread::spawn(move || worker(addr, until, id as u64)))
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, l) = w
            .join()
            .map_err(|_| "a UDP worker panicked".to_string())?
            .map_err(|e| format!("UDP worker: {e}"))?;
        ok += o;
        failed += l;
    }
    Ok(Slice {
        ok,
        failed,
        elapsed: start.elapsed(),
    })
}
