//! HTTP/2 mode: GETs over cleartext HTTP/2 with prior knowledge (h2c), several concurrent
//! streams per connection, the way gRPC and HTTP/2 proxies talk to a backend.
//!
//! The `h2` crate is async, so each worker thread runs a single-threaded tokio runtime with
//! one task per stream slot; the tasks share one connection at a time and open the next
//! connection together when it is gone. A stream that did not complete is judged by what
//! the server guaranteed about it (RFC 9113; the rule is in `kind.rs`):
//!
//! | what happened                                              | verdict                    |
//! |------------------------------------------------------------|----------------------------|
//! | the connection already had a GOAWAY, so no stream was sent | not a request yet: take a new connection |
//! | stream id above the GOAWAY's last-stream-id                | retried, `refused-by-goaway` |
//! | RST_STREAM REFUSED_STREAM                                  | retried, `refused-stream`  |
//! | any other RST_STREAM from the server                       | failure, `stream-reset`    |
//! | connection lost before the response headers, on a connection that had completed a stream | failure, `keep-alive-closed` (retried once only with `retry_idempotent`) |
//! | connection lost otherwise                                  | failure, `reset` / `eof-mid-request` |
//!
//! A stream at or below the GOAWAY's last-stream-id may have been processed, so losing it
//! is a failure even though the server said GOAWAY. A GOAWAY with NO_ERROR that ends the
//! connection counts as an orderly close.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use h2::client::{self, ResponseFuture, SendRequest};
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{ReqError, Target, classify};
use super::kind::{FailureKind, RetryReason};
use super::shared::{FAILURE_BACKOFF, Shared, WorkerStats};

/// Refusals (GOAWAY or REFUSED_STREAM) retried per request; a server that refuses more
/// often is failing the request, not shedding it.
const MAX_REFUSALS: u32 = 3;
/// New connections one request may take because the previous one stopped taking streams
/// before anything was sent; bounds the loop against a server that GOAWAYs every connection.
const MAX_CONNECTIONS_PER_REQUEST: u32 = 8;

/// One HTTP/2 connection, shared by a worker's stream tasks.
#[derive(Clone)]
struct Link {
    send: SendRequest<Bytes>,
    /// Streams completed on it: a stream sent after one completed rides a reused connection.
    completed: Arc<AtomicU64>,
    /// Set once it ended or refused a new stream; the next request opens a new connection.
    dead: Arc<AtomicBool>,
}

/// The connection a worker's tasks share; a lock held across connecting, so that tasks
/// finding the connection gone open one new connection, not one each.
struct Holder {
    link: tokio::sync::Mutex<Option<Link>>,
    /// The run is over: connections that end now were closed by us, not by the server.
    closing: Arc<AtomicBool>,
}

pub(crate) fn run(id: u32, sh: &Arc<Shared>, stats: &mut WorkerStats) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("cannot start the HTTP/2 worker's runtime: {e}");
            sh.fail(
                id,
                sh.current_epoch(),
                ReqError::new(FailureKind::Other, msg),
            );
            return;
        }
    };
    let holder = Arc::new(Holder {
        link: tokio::sync::Mutex::new(None),
        closing: Arc::new(AtomicBool::new(false)),
    });
    rt.block_on(async {
        let tasks: Vec<_> = (0..sh.cfg.streams)
            .map(|_| tokio::spawn(stream_loop(id, Arc::clone(sh), Arc::clone(&holder))))
            .collect();
        for t in tasks {
            match t.await {
                Ok(s) => stats.merge(&s),
                Err(e) => {
                    let msg = format!("HTTP/2 stream task failed: {e}");
                    sh.fail(
                        id,
                        sh.current_epoch(),
                        ReqError::new(FailureKind::Other, msg),
                    );
                }
            }
        }
        holder.closing.store(true, Ordering::SeqCst);
    });
}

async fn stream_loop(id: u32, sh: Arc<Shared>, holder: Arc<Holder>) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let authority = match &sh.cfg.target {
        Target::Tcp(addr) => addr.to_string(),
        Target::Unix(_) => "localhost".to_owned(),
    };
    let uri = format!("http://{authority}{}", sh.cfg.http_path);
    while let Some((epoch, t0)) = sh.begin() {
        let deadline = tokio::time::Instant::from_std(t0 + sh.cfg.timeout);
        let attempt = request(&sh, &holder, &uri, epoch, &mut stats.connects);
        let res = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ReqError::timeout()),
        };
        if !sh.finish(id, epoch, t0, res, &mut stats) {
            tokio::time::sleep(FAILURE_BACKOFF).await;
        }
    }
    stats.ended = Instant::now();
    stats
}

/// How a stream that did not complete ends the request.
enum Lost {
    /// Safe to send again (RFC 9113 §8.7).
    Refused(RetryReason),
    /// A reused connection went away before the response headers.
    KeepAlive(ReqError),
    Failed(ReqError),
}

async fn request(
    sh: &Arc<Shared>,
    holder: &Holder,
    uri: &str,
    epoch: u32,
    connects: &mut u64,
) -> Result<(), ReqError> {
    let (mut refusals, mut keep_alive_retried, mut unsent) = (0, false, 0);
    loop {
        let link = current(sh, holder, connects).await?;
        let reused = link.completed.load(Ordering::SeqCst) > 0;
        let req = http::Request::get(uri)
            .header("user-agent", "exuvia-load")
            .body(())
            .map_err(|e| ReqError::new(FailureKind::Other, format!("bad request URI: {e}")))?;
        let sent = match link.send.clone().ready().await {
            Ok(mut send) => send.send_request(req, true).map(|(resp, _)| resp),
            Err(e) => Err(e),
        };
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                // The connection had stopped taking streams (GOAWAY received, or gone):
                // nothing went on the wire, so this is neither a failure nor a retry.
                link.dead.store(true, Ordering::SeqCst);
                unsent += 1;
                if unsent >= MAX_CONNECTIONS_PER_REQUEST {
                    return Err(ReqError::new(
                        FailureKind::Other,
                        format!("{unsent} connections in a row took no new stream: {e}"),
                    ));
                }
                continue;
            }
        };
        let lost = match answer(resp, reused).await {
            Ok(status) => {
                link.completed.fetch_add(1, Ordering::SeqCst);
                if status >= 500 {
                    return Err(ReqError::new(
                        FailureKind::Http5xx,
                        format!("HTTP status {status}"),
                    ));
                }
                return Ok(());
            }
            Err(lost) => lost,
        };
        match lost {
            Lost::Refused(reason) if refusals < MAX_REFUSALS => {
                refusals += 1;
                sh.retry(epoch, reason);
            }
            Lost::Refused(reason) => {
                return Err(ReqError::new(
                    FailureKind::StreamReset,
                    format!("refused {} times in a row ({reason})", refusals + 1),
                ));
            }
            Lost::KeepAlive(_) if sh.cfg.retry_idempotent && !keep_alive_retried => {
                keep_alive_retried = true;
                link.dead.store(true, Ordering::SeqCst);
                sh.retry(epoch, RetryReason::KeepAliveClosed);
            }
            Lost::KeepAlive(e) | Lost::Failed(e) => return Err(e),
        }
    }
}

/// The shared connection, opened first if there is none or it is dead.
async fn current(sh: &Arc<Shared>, holder: &Holder, connects: &mut u64) -> Result<Link, ReqError> {
    let mut slot = holder.link.lock().await;
    if let Some(l) = slot.as_ref().filter(|l| !l.dead.load(Ordering::SeqCst)) {
        return Ok(l.clone());
    }
    let link = match &sh.cfg.target {
        Target::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| ReqError::io(&e))?;
            // Small requests and answers: Nagle would only add latency noise.
            s.set_nodelay(true).map_err(|e| ReqError::io(&e))?;
            handshake(s, sh, &holder.closing).await?
        }
        Target::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| ReqError::io(&e))?;
            handshake(s, sh, &holder.closing).await?
        }
    };
    *connects += 1;
    *slot = Some(link.clone());
    Ok(link)
}

async fn handshake<T>(io: T, sh: &Arc<Shared>, closing: &Arc<AtomicBool>) -> Result<Link, ReqError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = client::handshake(io)
        .await
        .map_err(|e| lost_connection(&e, "HTTP/2 handshake failed"))?;
    let dead = Arc::new(AtomicBool::new(false));
    let (d, sh, closing) = (Arc::clone(&dead), Arc::clone(sh), Arc::clone(closing));
    let probe = send.clone();
    tokio::spawn(async move {
        // The connection's own result does not tell a GOAWAY from a bare EOF; its streams'
        // errors reach the stream tasks anyway.
        let _ = conn.await;
        d.store(true, Ordering::SeqCst);
        if !closing.load(Ordering::SeqCst) && said_goaway(probe) {
            sh.orderly_close();
        }
    });
    Ok(Link {
        send,
        completed: Arc::new(AtomicU64::new(0)),
        dead,
    })
}

/// True if the (ended) connection ended by the server's GOAWAY with NO_ERROR: h2 keeps the
/// reason a connection ended and answers any later stream with it, sending nothing.
fn said_goaway(mut probe: SendRequest<Bytes>) -> bool {
    let Ok(req) = http::Request::get("http://localhost/").body(()) else {
        return false;
    };
    matches!(
        probe.send_request(req, true),
        Err(e) if e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR)
    )
}

/// Waits for the response and reads its body; the status on success.
async fn answer(resp: ResponseFuture, reused: bool) -> Result<u16, Lost> {
    let resp = resp.await.map_err(|e| judge(&e, reused, false))?;
    let status = resp.status().as_u16();
    let mut body: RecvStream = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| judge(&e, reused, true))?;
        // Return the window, or a long body stalls on flow control.
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(status)
}

/// Classifies a stream error (see the table in the module docs).
fn judge(e: &h2::Error, reused: bool, headers_seen: bool) -> Lost {
    if e.is_remote() && !headers_seen {
        if e.is_go_away() {
            // h2 reports a GOAWAY on a stream only for ids above its last-stream-id.
            return Lost::Refused(RetryReason::RefusedByGoaway);
        }
        if e.is_reset() && e.reason() == Some(Reason::REFUSED_STREAM) {
            return Lost::Refused(RetryReason::RefusedStream);
        }
    }
    if e.is_reset() && e.is_remote() {
        return Lost::Failed(ReqError::new(
            FailureKind::StreamReset,
            format!("stream reset by the server: {e}"),
        ));
    }
    let err = lost_connection(e, "HTTP/2 stream lost");
    if reused
        && !headers_seen
        && matches!(err.kind, FailureKind::Reset | FailureKind::EofMidRequest)
    {
        return Lost::KeepAlive(ReqError::new(
            FailureKind::KeepAliveClosed,
            format!(
                "the server closed a reused HTTP/2 connection under the stream, before its \
                 response headers ({})",
                err.msg
            ),
        ));
    }
    if !reused && !headers_seen {
        let hint = "; if every request fails like this, does the server speak HTTP/2 over \
                    cleartext (h2c, prior knowledge)?";
        return Lost::Failed(ReqError::new(err.kind, format!("{}{hint}", err.msg)));
    }
    Lost::Failed(err)
}

/// Maps a connection-level h2 error onto the report's kinds.
fn lost_connection(e: &h2::Error, what: &str) -> ReqError {
    let msg = format!("{what}: {e}");
    match e.get_io() {
        // h2 reports the peer's EOF as a broken pipe.
        Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => {
            ReqError::new(FailureKind::EofMidRequest, msg)
        }
        Some(io) => ReqError::new(classify(io), msg),
        // A GOAWAY with an error code, or a protocol error the client detected.
        None if e.is_go_away() && e.is_remote() => ReqError::new(FailureKind::Reset, msg),
        None => ReqError::new(FailureKind::WrongAnswer, msg),
    }
}
