//! The load modes and the retry flags of `exuvia check` and `exuvia load`, end to end.
//!
//! The reloaded service is `exuvia demo-server` (it reloads cleanly); the load goes, with
//! `--target`, to a server in this test whose behaviour is known exactly: an HTTP/1.1 server
//! that closes every keep-alive connection after one answer without saying so, an HTTP/2
//! server that drains each connection with GOAWAY, WebSocket servers that end connections
//! with a close frame or without one.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use super::{Run, Scratch, assert_bad_input, check, exuvia, n};

/// Connections any test server here accepts before it stops listening.
const MAX_CONNECTIONS: usize = 100_000;

/// `exuvia check` of `exuvia demo-server`, with the load sent to `target`.
fn check_target(s: &Scratch, target: SocketAddr, mode: &str, extra: &[&str]) -> Run {
    let t = format!("tcp:{target}");
    let mut args = vec![
        "--listen",
        "echo=tcp:127.0.0.1:0",
        "--target",
        &t,
        "--mode",
        mode,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", env!("CARGO_BIN_EXE_exuvia"), "demo-server"]);
    check(s, &args)
}

/// HTTP/1.1 that answers one request per connection, then closes it without
/// `Connection: close`: the client's next request on it is lost, on every connection.
fn one_shot_http() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in l.incoming().take(MAX_CONNECTIONS).flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => head.extend_from_slice(&buf[..k]),
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    addr
}

#[test]
fn keep_alive_loss_fails_the_check_by_default() {
    let s = Scratch::new("check-mode-keepalive");
    let run = check_target(&s, one_shot_http(), "http", &[]);
    assert_eq!(run.code, 1, "{}", run.show());
    let j = run.json();
    assert_eq!(j["pass"], false);
    let l = &j["load"];
    assert!(
        n(&l["failures_by_kind"]["keep-alive-closed"]) > 0,
        "{}",
        run.show()
    );
    assert_eq!(
        n(&l["failed"]),
        n(&l["failures_by_kind"]["keep-alive-closed"])
    );
    assert_eq!(n(&l["retried"]), 0, "retrying is opt-in\n{}", run.show());
    assert_eq!(l["retry_idempotent"], false);
    assert!(j.get("http_retries").is_none() && l.get("http_retries").is_none());
    assert!(
        run.stdout.contains("keep-alive-closed")
            && run
                .stdout
                .contains("keep-alive connection closed under a request"),
        "{}",
        run.show()
    );
    assert!(!run.stdout.contains("RETRIED"), "{}", run.show());
}

#[test]
fn retried_requests_are_shown_and_fail_the_check_unless_accepted() {
    let s = Scratch::new("check-mode-retry");
    let addr = one_shot_http();
    let run = check_target(&s, addr, "http", &["--retry-idempotent"]);
    assert_eq!(run.code, 1, "{}", run.show());
    let j = run.json();
    let l = &j["load"];
    assert_eq!(n(&l["failed"]), 0, "{}", run.show());
    let retried = n(&l["retried"]);
    assert!(retried > 0, "{}", run.show());
    assert_eq!(n(&l["retries_by_reason"]["keep-alive-closed"]), retried);
    let per_reload: u64 = j["reloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| n(&r["retried_requests"]))
        .sum();
    assert!(per_reload > 0 && per_reload <= retried, "{}", run.show());
    assert!(run.stdout.contains("RETRIED"), "{}", run.show());
    assert!(
        run.stdout
            .contains("retried (keep-alive connection closed)"),
        "{}",
        run.show()
    );
    let reasons = j["reasons"].to_string();
    assert!(reasons.contains("--accept-retries"), "{reasons}");

    let run = check_target(
        &s,
        addr,
        "http",
        &["--retry-idempotent", "--accept-retries"],
    );
    assert_eq!(run.code, 0, "{}", run.show());
    let l = &run.json()["load"];
    assert!(
        n(&l["retried"]) > 0 && l["accept_retries"] == true,
        "{}",
        run.show()
    );
    assert!(run.stdout.contains("exuvia check: PASS"), "{}", run.show());
    assert!(
        run.stdout.contains("RETRIED") && run.stdout.contains("accepted"),
        "{}",
        run.show()
    );
}

#[test]
fn load_exit_status_counts_keep_alive_losses_and_retries() {
    let s = Scratch::new("load-mode-retry");
    let t = format!("tcp:{}", one_shot_http());
    let base = [
        "--target",
        t.as_str(),
        "--mode",
        "http",
        "--duration",
        "300ms",
    ];
    let run = exuvia(&s, "load", &base, &[]);
    assert_eq!(run.code, 1, "{}", run.show());
    assert!(n(&run.json()["failures_by_kind"]["keep-alive-closed"]) > 0);

    let with = |extra: &[&'static str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        exuvia(&s, "load", &a, &[])
    };
    let run = with(&["--retry-idempotent"]);
    assert_eq!(run.code, 1, "{}", run.show());
    assert!(run.stderr.contains("--accept-retries"), "{}", run.show());
    assert!(run.stdout.contains("RETRIED"), "{}", run.show());
    let run = with(&["--retry-idempotent", "--accept-retries"]);
    assert_eq!(run.code, 0, "{}", run.show());
}

/// HTTP/2 (h2 crate's server) that drains every connection with a graceful GOAWAY 100 ms
/// after accepting it.
fn draining_h2() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            for _ in 0..MAX_CONNECTIONS {
                let Ok((sock, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(sock).await else {
                        return;
                    };
                    let drain = tokio::time::sleep(Duration::from_millis(100));
                    tokio::pin!(drain);
                    let mut draining = false;
                    loop {
                        tokio::select! {
                            req = conn.accept() => match req {
                                Some(Ok((_, mut respond))) => {
                                    let _ = respond.send_response(http::Response::new(()), true);
                                }
                                _ => return,
                            },
                            _ = &mut drain, if !draining => {
                                draining = true;
                                conn.graceful_shutdown();
                            }
                        }
                    }
                });
            }
        });
    });
    addr
}

#[test]
fn h2_mode_passes_through_graceful_goaways() {
    let s = Scratch::new("check-mode-h2");
    let run = check_target(&s, draining_h2(), "h2", &["--streams", "3"]);
    assert_eq!(run.code, 0, "{}", run.show());
    let l = &run.json()["load"];
    assert_eq!(l["mode"], "h2");
    assert_eq!(n(&l["streams"]), 3);
    assert!(n(&l["ok"]) > 0 && n(&l["failed"]) == 0 && n(&l["retried"]) == 0);
    assert!(n(&l["orderly_closes"]) > 0, "{}", run.show());
    assert!(run.stdout.contains("x 3 stream(s)"), "{}", run.show());
    assert!(run.stdout.contains("orderly closes"), "{}", run.show());
}

/// WebSocket echo (tungstenite) that ends each connection after 5 echoes: with a close
/// frame (status 1001) if `orderly`, else by closing the TCP connection without one.
fn ws_closing(orderly: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(MAX_CONNECTIONS).flatten() {
            thread::spawn(move || ws_conn(s, orderly));
        }
    });
    addr
}

fn ws_conn(s: TcpStream, orderly: bool) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept(s) else {
        return;
    };
    for i in 0..5 {
        let echoed = match ws.read() {
            // The last echo is only buffered: it goes out in one write with the close frame.
            Ok(m @ tungstenite::Message::Text(_)) if orderly && i == 4 => ws.write(m).is_ok(),
            Ok(m @ tungstenite::Message::Text(_)) => ws.send(m).is_ok(),
            _ => false,
        };
        if !echoed {
            return;
        }
    }
    if orderly {
        let frame = tungstenite::protocol::CloseFrame {
            code: 1001.into(),
            reason: "upgrading".into(),
        };
        let _ = ws.close(Some(frame));
        while ws.read().is_ok() {}
    } else {
        let _ = ws.get_mut().shutdown(Shutdown::Both);
    }
}

#[test]
fn ws_mode_counts_orderly_closes_and_fails_abrupt_ones() {
    let s = Scratch::new("check-mode-ws");
    let run = check_target(&s, ws_closing(true), "ws", &[]);
    assert_eq!(run.code, 0, "{}", run.show());
    let l = &run.json()["load"];
    assert_eq!(l["mode"], "ws");
    assert!(
        n(&l["orderly_closes"]) > 0 && n(&l["failed"]) == 0,
        "{}",
        run.show()
    );

    let run = check_target(&s, ws_closing(false), "ws", &[]);
    assert_eq!(run.code, 1, "{}", run.show());
    let kinds = &run.json()["load"]["failures_by_kind"];
    assert!(n(&kinds["no-close-frame"]) > 0, "{}", run.show());
    assert!(
        run.stdout.contains("WebSocket ended without a close frame"),
        "{}",
        run.show()
    );
}

#[test]
fn bad_modes_and_streams_are_bad_input() {
    let s = Scratch::new("check-mode-bad");
    let run = check(
        &s,
        &[
            "--mode",
            "h3",
            "--listen",
            "echo=tcp:127.0.0.1:0",
            "--",
            "true",
        ],
    );
    assert_bad_input(&run, "use echo, long, http, h2 or ws");
    let run = check(
        &s,
        &[
            "--mode",
            "h2",
            "--streams",
            "0",
            "--listen",
            "echo=tcp:127.0.0.1:0",
            "--",
            "true",
        ],
    );
    assert_bad_input(&run, "--streams must be 1..=256");
}
