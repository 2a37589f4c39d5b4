//! The handshake hook (where a TLS acceptor goes): it runs on each connection before HTTP,
//! HTTP/1.1 and HTTP/2 are both spoken over what it returns, and a failed handshake drops
//! that connection only. The handshake here is a stand-in for TLS that needs no certificate:
//! the client sends one line naming itself first.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use exuvia::http::{Handshake, Server, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Default)]
struct Greeting {
    seen: Arc<AtomicUsize>,
}

impl Handshake for Greeting {
    type Io = Socket;

    fn handshake(&self, mut socket: Socket) -> impl Future<Output = io::Result<Socket>> + Send {
        let seen = self.seen.clone();
        async move {
            let mut line = [0u8; 6];
            socket.read_exact(&mut line).await?;
            if &line != b"HELLO\n" {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "no greeting"));
            }
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(socket)
        }
    }
}

#[tokio::test]
async fn http1_and_http2_run_over_the_handshake_and_a_bad_one_drops_its_connection_only() {
    let builder = exuvia::Exuvia::builder()
        .upgrade_signal(None)
        .stop_signals(&[]);
    let ex = Arc::new(exuvia::tokio::Exuvia::start(builder).unwrap());
    let listener = ex.listen_tcp("t", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ex.ready().unwrap();
    let greeting = Greeting::default();
    let app = Router::new().route("/", get(|| async { "hello" }));
    let served = ex.clone();
    let hs = greeting.clone();
    let done = tokio::spawn(async move {
        Server::new()
            .handshake(hs)
            .serve(&served, listener, exuvia::axum::service(app))
            .await
    });

    // A client without the greeting is dropped; the server goes on.
    let mut rude = TcpStream::connect(addr).await.unwrap();
    rude.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), rude.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "no HTTP answer without the handshake");

    // HTTP/1.1 after the greeting.
    let mut h1 = TcpStream::connect(addr).await.unwrap();
    h1.write_all(b"HELLO\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), h1.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");

    // HTTP/2 (prior knowledge) after the greeting: the protocol is read from the first bytes.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"HELLO\n").await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get("http://t/").body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);

    assert_eq!(greeting.seen.load(Ordering::Relaxed), 2);
    ex.stop();
    let report = tokio::time::timeout(Duration::from_secs(15), done)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.cut, 0, "{report:?}");
}
