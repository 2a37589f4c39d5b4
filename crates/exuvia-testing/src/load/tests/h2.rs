//! HTTP/2 mode against real servers on loopback: hyper's h2c server (clean, and draining
//! with its graceful GOAWAY mid-load), and a frame-level server for the cases no server
//! library lets a test choose: a GOAWAY whose last-stream-id is below or at streams in
//! flight, RST_STREAM with a chosen code, a connection dropped under a stream.
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{cfg, only_kinds};
use crate::load::{FailureKind, LoadReport, Mode, RetryReason, Target, start};

fn h2_run(
    addr: SocketAddr,
    ms: u64,
    tweak: impl FnOnce(&mut crate::load::LoadConfig),
) -> LoadReport {
    let mut c = cfg(Target::Tcp(addr), Mode::H2, ms);
    c.connections = 2;
    c.streams = 4;
    tweak(&mut c);
    start(c).expect("start").wait()
}

/// hyper's HTTP/2 server; with `life`, each connection is drained by hyper's graceful
/// shutdown (GOAWAY, in-flight streams finish) that long after it was accepted.
fn hyper_h2c(life: Option<Duration>) -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let conn = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc);
                tokio::pin!(conn);
                let Some(life) = life else {
                    let _ = conn.await;
                    return;
                };
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = tokio::time::sleep(life) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
    });
    (addr, rt)
}

#[test]
fn h2_clean_run_multiplexes_streams() {
    let (addr, _rt) = hyper_h2c(None);
    let r = h2_run(addr, 300, |_| {});
    assert!(r.ok > 20, "{r}");
    assert_eq!(r.failed, 0, "{r}");
    assert_eq!((r.retried, r.orderly_closes), (0, 0), "{r}");
    assert_eq!(r.streams, 4);
    assert!(r.is_clean(), "{r}");
    assert!(r.to_string().contains("x 4 stream(s)"), "{r}");
}

#[test]
fn h2_graceful_goaway_mid_load_loses_and_retries_nothing() {
    // Every connection is drained 60 ms after it opened: several GOAWAYs during the run.
    let (addr, _rt) = hyper_h2c(Some(Duration::from_millis(60)));
    let r = h2_run(addr, 500, |_| {});
    assert!(r.ok > 20, "{r}");
    assert_eq!(r.failed, 0, "{r}");
    assert_eq!(r.retried, 0, "a two-phase GOAWAY refuses nothing:\n{r}");
    assert!(r.orderly_closes >= 2, "{r}");
    assert!(r.is_clean(), "{r}");
}

/// What the frame-level server does once it has answered `answer` streams on a connection.
#[derive(Clone, Copy)]
enum Raw {
    /// GOAWAY with last-stream-id = the last answered stream: later streams were never
    /// processed (RFC 9113 §6.8), so the client may and does retry them.
    GoawayBelow,
    /// GOAWAY with last-stream-id = the stream just received, which is then left unanswered
    /// as the connection closes: it may have been processed, so it is a failure.
    GoawayAtAndClose,
    /// Closes the connection under the stream just received, without any GOAWAY.
    DropUnder,
    /// Never closes; every 7th stream (3, 10, 17, …) is reset with this error code.
    Reset(u32),
}

const ANSWER: u32 = 5;

fn raw_server(b: Raw) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let _ = raw_conn(s, b);
            });
        }
    });
    addr
}

fn frame(
    s: &mut TcpStream,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    s.write_all(&f)
}

// No HTTP/2 server library lets a test choose a GOAWAY's last-stream-id, so this one speaks
// the few frames it needs itself (RFC 9113 §4.1, §6); ":status: 200" is HPACK byte 0x88.
fn raw_conn(mut s: TcpStream, b: Raw) -> std::io::Result<()> {
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut preface = [0u8; 24];
    s.read_exact(&mut preface)?;
    frame(&mut s, SETTINGS, 0, 0, &[])?;
    let (mut answered, mut last, mut seen) = (0u32, 0u32, 0u32);
    loop {
        let mut h = [0u8; 9];
        s.read_exact(&mut h)?;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)?;
        let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        match h[3] {
            SETTINGS if h[4] & 1 == 0 => frame(&mut s, SETTINGS, 1, 0, &[])?,
            PING if h[4] & 1 == 0 => frame(&mut s, PING, 1, 0, &payload)?,
            GOAWAY => return Ok(()),
            HEADERS => {
                seen += 1;
                let goaway = |s: &mut TcpStream, last: u32| {
                    let mut p = last.to_be_bytes().to_vec();
                    p.extend_from_slice(&0u32.to_be_bytes()); // NO_ERROR
                    frame(s, GOAWAY, 0, 0, &p)
                };
                match b {
                    Raw::Reset(code) if seen % 7 == 3 => {
                        frame(&mut s, RST_STREAM, 0, id, &code.to_be_bytes())?;
                        continue;
                    }
                    Raw::Reset(_) => {}
                    _ if answered < ANSWER => {}
                    Raw::GoawayBelow => {
                        goaway(&mut s, last)?;
                        return linger(s);
                    }
                    Raw::GoawayAtAndClose => {
                        goaway(&mut s, id)?;
                        return linger(s);
                    }
                    Raw::DropUnder => return linger(s),
                }
                // END_STREAM | END_HEADERS, ":status: 200".
                frame(&mut s, HEADERS, 0x5, id, &[0x88])?;
                answered += 1;
                last = id;
            }
            _ => {}
        }
    }
}

/// Ends the connection with a FIN and drains what the client still sends, so the kernel
/// does not answer unread data with a reset that could overtake the frames sent before.
fn linger(mut s: TcpStream) -> std::io::Result<()> {
    s.shutdown(Shutdown::Write)?;
    let end = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 4096];
    while Instant::now() < end && matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    Ok(())
}

#[test]
fn h2_streams_above_goaway_last_stream_id_are_retried_and_counted() {
    let addr = raw_server(Raw::GoawayBelow);
    let r = h2_run(addr, 300, |_| {});
    assert!(r.ok > 10, "{r}");
    assert_eq!(r.failed, 0, "{r}");
    assert!(r.retries(RetryReason::RefusedByGoaway) > 0, "{r}");
    assert_eq!(r.retries(RetryReason::RefusedByGoaway), r.retried, "{r}");
    assert!(
        !r.is_clean(),
        "retries count against the run unless accepted:\n{r}"
    );
    assert!(r.to_string().contains("refused-by-goaway"), "{r}");
    let r = h2_run(addr, 200, |c| c.accept_retries = true);
    assert!(r.retried > 0 && r.is_clean(), "{r}");
}

#[test]
fn h2_stream_at_or_below_goaway_last_stream_id_lost_is_a_failure() {
    let addr = raw_server(Raw::GoawayAtAndClose);
    let r = h2_run(addr, 300, |_| {});
    assert!(r.ok > 10, "{r}");
    assert!(r.count(FailureKind::KeepAliveClosed) > 0, "{r}");
    only_kinds(&r, &[FailureKind::KeepAliveClosed]);
    // Streams above the one the GOAWAY named may be retried as refused, nothing else is.
    assert_eq!(r.retries(RetryReason::RefusedByGoaway), r.retried, "{r}");

    // Opted in, the lost GET is sent again on a fresh connection, and shown as retried.
    let r = h2_run(addr, 300, |c| c.retry_idempotent = true);
    assert_eq!(r.failed, 0, "{r}");
    assert!(r.retries(RetryReason::KeepAliveClosed) > 0, "{r}");
    assert!(!r.is_clean(), "{r}");
}

#[test]
fn h2_connection_dropped_under_a_stream_is_a_failure() {
    let addr = raw_server(Raw::DropUnder);
    let r = h2_run(addr, 300, |_| {});
    assert!(r.ok > 10, "{r}");
    assert!(r.count(FailureKind::KeepAliveClosed) > 0, "{r}");
    only_kinds(&r, &[FailureKind::KeepAliveClosed]);
    assert_eq!(r.retried, 0, "{r}");
    assert_eq!(r.orderly_closes, 0, "no GOAWAY, nothing orderly:\n{r}");
}

#[test]
fn h2_refused_stream_is_retried_other_resets_fail() {
    let addr = raw_server(Raw::Reset(0x7)); // REFUSED_STREAM
    let r = h2_run(addr, 300, |_| {});
    assert_eq!(r.failed, 0, "{r}");
    assert!(r.retries(RetryReason::RefusedStream) > 0, "{r}");
    assert_eq!(r.retries(RetryReason::RefusedStream), r.retried, "{r}");

    let addr = raw_server(Raw::Reset(0x2)); // INTERNAL_ERROR
    let r = h2_run(addr, 300, |c| c.retry_idempotent = true);
    assert!(r.count(FailureKind::StreamReset) > 0, "{r}");
    only_kinds(&r, &[FailureKind::StreamReset]);
    assert_eq!(r.retried, 0, "a reset stream may have been processed:\n{r}");
}
