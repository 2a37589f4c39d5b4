//! The worker loops: one per worker thread, chosen by mode — line protocol, long-lived
//! connection and HTTP/1.1 here, HTTP/2 in `h2.rs`, WebSocket in `ws.rs`.
use std::sync::Arc;
use std::time::Instant;

use super::conn::{Conn, ReqError, Target, echo_round_trip};
use super::kind::{FailureKind, RetryReason};
use super::shared::{FAILURE_BACKOFF, Shared, WorkerStats};
use super::{Mode, http};

pub(crate) fn run(id: u32, sh: &Arc<Shared>) -> WorkerStats {
    let mut stats = WorkerStats::new();
    match sh.cfg.mode {
        Mode::Echo => echo(id, sh, &mut stats),
        Mode::Long => long(id, sh, &mut stats),
        Mode::Http => http_loop(id, sh, &mut stats),
        Mode::H2 => super::h2::run(id, sh, &mut stats),
        Mode::Ws => super::ws::run(id, sh, &mut stats),
    }
    stats.ended = Instant::now();
    stats
}

fn echo(id: u32, sh: &Shared, stats: &mut WorkerStats) {
    let mut n: u64 = 0;
    while let Some((epoch, t0)) = sh.begin() {
        let line = format!("w{id}-r{n}\n");
        n += 1;
        let deadline = t0 + sh.cfg.timeout;
        let res = Conn::connect(&sh.cfg.target, deadline)
            .and_then(|mut c| echo_round_trip(&mut c, &line, deadline));
        if !sh.finish(id, epoch, t0, res, stats) {
            sh.pause_until(Instant::now() + FAILURE_BACKOFF);
        }
    }
}

/// Returns the open connection, connecting first if there is none.
fn ensure<'a>(
    conn: &'a mut Option<Conn>,
    target: &Target,
    deadline: Instant,
    connects: &mut u64,
) -> Result<&'a mut Conn, ReqError> {
    let c = match conn.take() {
        Some(c) => c,
        None => {
            let c = Conn::connect(target, deadline)?;
            *connects += 1;
            c
        }
    };
    Ok(conn.insert(c))
}

fn long(id: u32, sh: &Shared, stats: &mut WorkerStats) {
    let mut conn = None;
    let mut n: u64 = 0;
    let mut next = Instant::now();
    while let Some((epoch, t0)) = sh.begin() {
        let line = format!("w{id}-r{n}\n");
        n += 1;
        let deadline = t0 + sh.cfg.timeout;
        let res = ensure(&mut conn, &sh.cfg.target, deadline, &mut stats.connects)
            .and_then(|c| echo_round_trip(c, &line, deadline));
        if res.is_err() && conn.take().is_some() {
            // The stream may hold a late answer; it cannot be trusted for the next line.
            stats.lost += 1;
        }
        sh.finish(id, epoch, t0, res, stats);
        next = (next + sh.cfg.interval).max(Instant::now());
        sh.pause_until(next);
    }
}

fn http_loop(id: u32, sh: &Shared, stats: &mut WorkerStats) {
    let host = match &sh.cfg.target {
        Target::Tcp(addr) => addr.to_string(),
        Target::Unix(_) => "localhost".to_owned(),
    };
    let req = http::request(&host, &sh.cfg.http_path);
    let mut conn = None;
    while let Some((epoch, t0)) = sh.begin() {
        let res = http_once(&mut conn, sh, &req, epoch, t0 + sh.cfg.timeout, stats);
        if !sh.finish(id, epoch, t0, res, stats) {
            sh.pause_until(Instant::now() + FAILURE_BACKOFF);
        }
    }
}

/// One GET, on the open connection if there is one. A reused connection that is closed
/// under the request before any byte of the answer is [`FailureKind::KeepAliveClosed`];
/// only with `retry_idempotent` is the request sent once more, on a fresh connection, and
/// counted as a retry (see `kind.rs` for the rule).
fn http_once(
    conn: &mut Option<Conn>,
    sh: &Shared,
    req: &str,
    epoch: u32,
    deadline: Instant,
    stats: &mut WorkerStats,
) -> Result<(), ReqError> {
    loop {
        let reused = conn.is_some();
        let c = ensure(conn, &sh.cfg.target, deadline, &mut stats.connects)?;
        let before = c.received();
        match http::exchange(c, req, deadline) {
            Ok(resp) => {
                if resp.close {
                    *conn = None;
                    sh.orderly_close();
                }
                if resp.status >= 500 {
                    return Err(ReqError::new(
                        FailureKind::Http5xx,
                        format!("HTTP status {}", resp.status),
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                let silent = c.received() == before;
                *conn = None;
                let closed = matches!(e.kind, FailureKind::Reset | FailureKind::EofMidRequest);
                if !(reused && silent && closed) {
                    return Err(e);
                }
                // The retry goes to a fresh connection, so this branch runs at most once.
                if sh.cfg.retry_idempotent {
                    sh.retry(epoch, RetryReason::KeepAliveClosed);
                    continue;
                }
                return Err(ReqError::new(
                    FailureKind::KeepAliveClosed,
                    format!(
                        "the server closed a reused keep-alive connection under the request, \
                         before any byte of the answer ({})",
                        e.msg
                    ),
                ));
            }
        }
    }
}
