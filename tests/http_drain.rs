//! The HTTP adapter's lame-duck drain, in process: an axum router served by
//! `exuvia::http::Server` with short deadlines, drained by `stop()` (the same policy as a
//! handover), watched from raw HTTP/1.1, HTTP/2 (h2) and WebSocket (tungstenite) clients.
//!
//! Every wait is bounded; every server listens on its own loopback port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use exuvia::http::{Finish, Policy, Server};
use exuvia::tokio::Exuvia;
use futures_util::{StreamExt, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GRACE: Duration = Duration::from_millis(400);
const SOFT: Duration = Duration::from_millis(1200);
const HARD: Duration = Duration::from_millis(2500);
const BOUND: Duration = Duration::from_secs(10);

/// A running server and the task that returns its drain report.
struct Running {
    ex: Arc<Exuvia>,
    addr: SocketAddr,
    done: tokio::task::JoinHandle<Result<exuvia::DrainReport, exuvia::http::ServeError>>,
}

impl Running {
    /// Starts the drain (as a stop signal would) and returns when it began.
    fn stop(&self) -> Instant {
        self.ex.stop();
        Instant::now()
    }

    async fn report(self) -> exuvia::DrainReport {
        tokio::time::timeout(BOUND, self.done)
            .await
            .expect("the drain ends within its hard deadline")
            .unwrap()
            .expect("served without error")
    }
}

async fn start(app: Router) -> Running {
    let builder = exuvia::Exuvia::builder()
        .upgrade_signal(None)
        .stop_signals(&[]);
    let ex = Arc::new(Exuvia::start(builder).unwrap());
    let listener = ex.listen_tcp("http", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ex.ready().unwrap();
    let policy = Policy::default()
        .idle_grace(GRACE)
        .soft_deadline(SOFT)
        .hard_deadline(HARD);
    let served = ex.clone();
    let done = tokio::spawn(async move {
        let service = exuvia::axum::service(app);
        Server::new()
            .policy(policy)
            .serve(&served, listener, service)
            .await
    });
    Running { ex, addr, done }
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow"
            }),
        )
        .route("/ws", get(ws))
        .route("/stubborn", get(stubborn))
        .route("/sse", get(sse))
}

async fn ws(upgrade: WebSocketUpgrade, finish: Finish) -> Response {
    upgrade.on_upgrade(move |mut socket: WebSocket| async move {
        finish.requested().await;
        let bye = CloseFrame {
            code: close_code::AWAY,
            reason: "draining".into(),
        };
        let _ = socket.send(Message::Close(Some(bye))).await;
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
}

/// A WebSocket handler that ignores the soft deadline: only the hard deadline ends it.
async fn stubborn(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(_)) = socket.recv().await {}
    })
}

async fn sse(
    finish: Finish,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let ticks = stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok(Event::default().data("tick")), ()))
    });
    let bye = stream::once(async { Ok(Event::default().event("bye").data("")) });
    Sse::new(ticks.take_until(finish.requested()).chain(bye))
}

/// Sends a GET and reads one response: (status, headers in lower case, body).
async fn get_on(conn: &mut TcpStream, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    tokio::time::timeout(BOUND, read_response(conn))
        .await
        .expect("a response within the bound")
}

async fn read_response(conn: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    (status, head, body)
}

/// Waits for the peer to close; returns when it did.
async fn eof(conn: &mut TcpStream) -> Instant {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(BOUND, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Instant::now(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("no close within {BOUND:?}"),
        }
    }
}

#[tokio::test]
async fn keep_alives_are_not_closed_at_the_handover_but_answered_with_close() {
    let srv = start(app()).await;
    let mut busy = TcpStream::connect(srv.addr).await.unwrap();
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    for c in [&mut busy, &mut idle] {
        let (status, head, _) = get_on(c, "/").await;
        assert_eq!(status, 200);
        assert!(!head.contains("connection: close"), "{head}");
    }
    let stopped = srv.stop();
    tokio::time::sleep(GRACE / 4).await;
    // The next request on a connection open at the handover is answered, then closed.
    let (status, head, body) = get_on(&mut busy, "/").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(head.contains("connection: close"), "{head}");
    eof(&mut busy).await;
    // An idle one is closed after the idle grace, not at the handover.
    let closed = eof(&mut idle).await - stopped;
    assert!(
        closed >= GRACE - Duration::from_millis(50) && closed < SOFT,
        "idle keep-alive closed after {closed:?}, grace {GRACE:?}"
    );
    let report = srv.report().await;
    assert_eq!(report.cut, 0, "{report:?}");
}

#[tokio::test]
async fn a_request_in_flight_finishes_and_a_fresh_connection_waits_for_its_first_request() {
    let srv = start(app()).await;
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut fresh = TcpStream::connect(srv.addr).await.unwrap();
    // Let the server accept both before it stops accepting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.stop();
    let (status, head, body) = tokio::time::timeout(BOUND, read_response(&mut slow))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "slow"));
    assert!(head.contains("connection: close"), "{head}");
    // Past the idle grace, a connection that has not sent its first request is still served.
    tokio::time::sleep(GRACE + Duration::from_millis(100)).await;
    let (status, head, _) = get_on(&mut fresh, "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(srv.report().await.cut, 0);
}

#[tokio::test]
async fn http2_gets_a_graceful_goaway_and_every_stream_is_answered() {
    let srv = start(app()).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let get = |path: &str| {
        http::Request::get(format!("http://test{path}"))
            .body(())
            .unwrap()
    };
    // One stream in flight across the handover, one sent after it.
    let (in_flight, _) = client.send_request(get("/slow"), true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut client = client.ready().await.unwrap();
    let (after, _) = client.send_request(get("/"), true).unwrap();
    for (resp, want) in [(after, "hello"), (in_flight, "slow")] {
        let resp = tokio::time::timeout(BOUND, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        if want == "hello" {
            // The GOAWAY came before this response: no stream may be opened any more.
            let goaway_first = client.clone().ready().await;
            assert!(
                goaway_first.is_err(),
                "the GOAWAY travels ahead of the response"
            );
        }
        let mut body = resp.into_body();
        let data = body.data().await.unwrap().unwrap();
        assert_eq!(&data[..], want.as_bytes());
    }
    // The connection then ends the graceful way (GOAWAY NO_ERROR, then close).
    let ended = tokio::time::timeout(BOUND, conn).await.unwrap().unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(client.ready().await.is_err(), "no new stream after GOAWAY");
    assert_eq!(srv.report().await.cut, 0);
}

#[tokio::test]
async fn streams_are_told_at_the_soft_deadline_and_cut_at_the_hard_one() {
    use tokio_tungstenite::tungstenite::Message as Tm;
    let srv = start(app()).await;
    let url = |p: &str| format!("ws://{}{p}", srv.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url("/ws")).await.unwrap();
    let (mut stubborn, _) = tokio_tungstenite::connect_async(url("/stubborn"))
        .await
        .unwrap();
    let mut sse = TcpStream::connect(srv.addr).await.unwrap();
    sse.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = srv.stop();

    // The WebSocket gets an orderly close frame at the soft deadline.
    let frame = tokio::time::timeout(BOUND, ws.next()).await.unwrap();
    let told = stopped.elapsed();
    match frame {
        Some(Ok(Tm::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(
        told >= SOFT - Duration::from_millis(50) && told < HARD,
        "{told:?}"
    );
    // Reading on sends tungstenite's reply to the close frame and sees the end.
    while let Ok(Some(_)) = tokio::time::timeout(BOUND, ws.next()).await {}

    // The SSE stream ends with its last event, then the connection closes.
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(BOUND, sse.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("event: bye"), "{text}");
    assert!(
        text.ends_with("0\r\n\r\n"),
        "the body ended properly: {text:?}"
    );

    // The WebSocket that ignores the soft deadline is cut at the hard one: no close frame.
    let cut = tokio::time::timeout(BOUND, stubborn.next()).await.unwrap();
    let cut_at = stopped.elapsed();
    assert!(
        !matches!(cut, Some(Ok(Tm::Close(_)))),
        "a cut, not a close frame: {cut:?}"
    );
    assert!(cut_at >= HARD - Duration::from_millis(50), "{cut_at:?}");
    let report = srv.report().await;
    assert_eq!(report.cut, 1, "{report:?}");
}
