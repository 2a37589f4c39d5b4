//! Runs the load client against tiny in-test servers (std threads, loopback only) whose
//! misbehaviour is known, and checks each misbehaviour is reported as the right kind;
//! HTTP/2 (`h2.rs`) and WebSocket (`ws.rs`) servers are real hyper, h2 and tungstenite
//! servers.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;

mod h2;
mod ws;

#[derive(Clone, Copy)]
enum Behave {
    Echo,
    /// Answers every line with a different one.
    Wrong,
    /// Reads the line, then closes with SO_LINGER 0 (RST).
    Reset,
    /// HTTP: always 503.
    Http503,
    /// HTTP: rotates Content-Length, chunked, and `Connection: close` answers, all 200.
    HttpMixed,
    /// HTTP: answers one keep-alive request per connection, then closes it silently.
    HttpOneShot,
}

/// Server threads end on their own: the client closes, or the read timeout fires.
const CONN_IDLE: Duration = Duration::from_secs(2);

fn serve<S: Read + Write>(reader: S, mut writer: S, b: Behave, reset: impl FnOnce(S)) {
    let mut r = BufReader::new(reader);
    let mut n = 0u64;
    loop {
        let mut line = String::new();
        if !matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            return;
        }
        let answer = match b {
            Behave::Echo => line,
            Behave::Wrong => "nope\n".to_owned(),
            Behave::Reset => return reset(writer),
            Behave::Http503 | Behave::HttpMixed | Behave::HttpOneShot => {
                // Skip the rest of the request head.
                loop {
                    let mut h = String::new();
                    if !matches!(r.read_line(&mut h), Ok(n) if n > 0) {
                        return;
                    }
                    if h == "\r\n" {
                        break;
                    }
                }
                n += 1;
                match (b, n % 3) {
                    (Behave::Http503, _) => {
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".into()
                    }
                    (Behave::HttpOneShot, _) => {
                        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        return;
                    }
                    (_, 0) => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".into(),
                    (_, 1) => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                               3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: y\r\n\r\n"
                        .into(),
                    _ => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye".into(),
                }
            }
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        if answer.contains("Connection: close") {
            return;
        }
    }
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    fn start(b: Behave) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = l.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let acceptor = thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                thread::spawn(move || {
                    s.set_read_timeout(Some(CONN_IDLE)).expect("timeout");
                    let w = s.try_clone().expect("clone");
                    serve(s, w, b, |w: TcpStream| {
                        let _ = socket2::SockRef::from(&w).set_linger(Some(Duration::ZERO));
                    });
                });
            }
        });
        Server {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn target(&self) -> Target {
        Target::Tcp(self.addr)
    }

    /// Closes the listening socket: from now on connects are refused.
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            a.join().expect("acceptor");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

fn unix_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("exuvia-load-{}-{tag}-{n}.sock", std::process::id()))
}

/// A Unix echo server at `path`; its acceptor thread ends once the path is removed.
fn unix_echo(path: &PathBuf) -> JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).expect("bind unix");
    l.set_nonblocking(true).expect("nonblocking");
    let path = path.clone();
    thread::spawn(move || {
        while path.exists() {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    thread::spawn(move || {
                        s.set_read_timeout(Some(CONN_IDLE)).expect("timeout");
                        let w = s.try_clone().expect("clone");
                        serve(s, w, Behave::Echo, |_: UnixStream| {});
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

fn cfg(target: Target, mode: Mode, ms: u64) -> LoadConfig {
    let mut c = LoadConfig::new(target);
    c.mode = mode;
    c.connections = 3;
    c.duration = Duration::from_millis(ms);
    c.timeout = Duration::from_secs(2);
    c
}

fn only_kinds(r: &LoadReport, allowed: &[FailureKind]) {
    for k in r.by_kind().keys() {
        assert!(allowed.contains(k), "unexpected {k} failures:\n{r}");
    }
}

#[test]
fn clean_echo_run_has_no_failures() {
    let s = Server::start(Behave::Echo);
    let r = start(cfg(s.target(), Mode::Echo, 300))
        .expect("start")
        .wait();
    assert!(r.ok > 10, "{r}");
    assert_eq!(r.failed, 0, "{r}");
    assert!(r.is_clean());
    assert!(r.latency.p50 > Duration::ZERO && r.latency.p50 <= r.latency.p99);
    assert!(r.latency.p99 <= r.latency.max);
    assert!(r.requests_per_sec() > 0.0);
    assert!(r.elapsed >= Duration::from_millis(300) && r.elapsed < Duration::from_secs(3));
    assert_eq!(r.long_lived_survived, None);
    let text = r.to_string();
    assert!(
        text.contains("0 failed") && text.contains("latency"),
        "{text}"
    );
}

#[test]
fn closed_listener_gives_refused() {
    let mut s = Server::start(Behave::Echo);
    let h = start(cfg(s.target(), Mode::Echo, 600)).expect("start");
    thread::sleep(Duration::from_millis(150));
    let before = h.progress();
    s.close();
    let r = h.wait();
    assert!(before.ok > 0 && before.failed == 0, "{before:?}");
    assert!(r.count(FailureKind::Refused) > 0, "{r}");
    // Connections still queued when the listener closes are reset.
    only_kinds(&r, &[FailureKind::Refused, FailureKind::Reset]);
    assert!(!r.is_clean());
    let f = &r.failures[0];
    assert!(f.at >= Duration::from_millis(150) && f.worker < 3, "{f:?}");
    assert!(!f.error.is_empty());
}

#[test]
fn wrong_answer_is_detected() {
    let s = Server::start(Behave::Wrong);
    let r = start(cfg(s.target(), Mode::Echo, 200))
        .expect("start")
        .wait();
    assert_eq!(r.ok, 0, "{r}");
    assert!(r.count(FailureKind::WrongAnswer) > 0, "{r}");
    only_kinds(&r, &[FailureKind::WrongAnswer]);
    assert!(r.failures[0].error.contains("nope"), "{r}");
}

#[test]
fn reset_is_detected() {
    let s = Server::start(Behave::Reset);
    let r = start(cfg(s.target(), Mode::Echo, 200))
        .expect("start")
        .wait();
    assert_eq!(r.ok, 0, "{r}");
    assert!(r.failed > 0, "{r}");
    only_kinds(&r, &[FailureKind::Reset, FailureKind::EofMidRequest]);
}

#[test]
fn long_lived_connections_survive_a_clean_run() {
    let s = Server::start(Behave::Echo);
    let mut c = cfg(s.target(), Mode::Long, 300);
    c.interval = Duration::from_millis(10);
    let r = start(c).expect("start").wait();
    assert_eq!(r.failed, 0, "{r}");
    // 3 workers x ~30 ticks; generous floor for a loaded machine.
    assert!(r.ok >= 30, "{r}");
    assert_eq!(r.long_lived_survived, Some(true), "{r}");
    assert!(r.to_string().contains("survived"));
}

#[test]
fn long_lived_connection_loss_is_reported() {
    let s = Server::start(Behave::Reset);
    let r = start(cfg(s.target(), Mode::Long, 200))
        .expect("start")
        .wait();
    assert_eq!(r.long_lived_survived, Some(false), "{r}");
    assert!(r.connections_lost > 0, "{r}");
}

#[test]
fn http_503_is_a_failure() {
    let s = Server::start(Behave::Http503);
    let r = start(cfg(s.target(), Mode::Http, 200))
        .expect("start")
        .wait();
    assert_eq!(r.ok, 0, "{r}");
    assert!(r.count(FailureKind::Http5xx) > 0, "{r}");
    only_kinds(&r, &[FailureKind::Http5xx]);
    assert!(r.failures[0].error.contains("503"));
}

#[test]
fn http_framing_and_connection_close_are_orderly() {
    let s = Server::start(Behave::HttpMixed);
    let r = start(cfg(s.target(), Mode::Http, 300))
        .expect("start")
        .wait();
    assert_eq!(r.failed, 0, "{r}");
    // Every third answer says `Connection: close`: the server ended those the orderly way.
    assert!(r.orderly_closes > 0 && r.orderly_closes * 4 >= r.ok, "{r}");
    assert_eq!(r.retried, 0, "{r}");
    assert!(r.is_clean(), "{r}");
}

#[test]
fn http_keep_alive_closed_under_a_request_is_a_failure() {
    // The server answers one request per connection, then closes it without saying so: the
    // client's next request on that connection is lost, as `wrk` would see it.
    let s = Server::start(Behave::HttpOneShot);
    let r = start(cfg(s.target(), Mode::Http, 200))
        .expect("start")
        .wait();
    assert!(r.ok > 5, "{r}");
    assert!(r.count(FailureKind::KeepAliveClosed) > 0, "{r}");
    only_kinds(&r, &[FailureKind::KeepAliveClosed]);
    assert_eq!(r.retried, 0, "retrying is opt-in:\n{r}");
    assert!(!r.is_clean());
    assert!(
        r.failures[0]
            .error
            .contains("reused keep-alive connection under the request"),
        "{r}"
    );
    assert!(r.to_string().contains("keep-alive-closed"), "{r}");
}

#[test]
fn http_keep_alive_retry_is_opt_in_counted_and_not_clean_unless_accepted() {
    let s = Server::start(Behave::HttpOneShot);
    let mut c = cfg(s.target(), Mode::Http, 200);
    c.retry_idempotent = true;
    let r = start(c).expect("start").wait();
    assert_eq!(r.failed, 0, "{r}");
    assert!(r.ok > 5, "{r}");
    // Every request after the first on a connection finds it closed and is retried once.
    assert!(r.retried > 0, "{r}");
    assert_eq!(r.retries(RetryReason::KeepAliveClosed), r.retried, "{r}");
    assert!(r.retry_idempotent && !r.accept_retries);
    assert!(!r.is_clean(), "unaccepted retries:\n{r}");
    let text = r.to_string();
    assert!(
        text.contains("RETRIED") && text.contains("NOT accepted"),
        "{text}"
    );

    let mut c = cfg(s.target(), Mode::Http, 200);
    c.retry_idempotent = true;
    c.accept_retries = true;
    let r = start(c).expect("start").wait();
    assert!(r.retried > 0 && r.failed == 0, "{r}");
    assert!(r.is_clean(), "{r}");
    assert!(r.to_string().contains("(accepted)"), "{r}");
}

#[test]
fn epochs_attribute_failures() {
    let mut s = Server::start(Behave::Echo);
    let h = start(cfg(s.target(), Mode::Echo, 500)).expect("start");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(h.mark(), 1);
    // Requests begun before the mark are long done when the listener goes away.
    thread::sleep(Duration::from_millis(50));
    s.close();
    let r = h.wait();
    assert_eq!(r.epochs.len(), 1);
    assert!(r.epochs[0] >= Duration::from_millis(100), "{:?}", r.epochs);
    assert!(r.failed > 0, "{r}");
    assert!(r.failures.iter().all(|f| f.epoch == 1), "{r}");
    assert_eq!(r.failures_by_epoch.get(&1), Some(&r.failed));
    assert!(r.to_string().contains("epoch 1"));
}

#[test]
fn max_requests_and_stop_flag_bound_the_run() {
    let s = Server::start(Behave::Echo);
    let mut c = cfg(s.target(), Mode::Echo, 5_000);
    c.max_requests = Some(40);
    let r = start(c).expect("start").wait();
    assert_eq!(r.ok + r.failed, 40, "{r}");
    assert!(r.elapsed < Duration::from_secs(4));

    let flag = Arc::new(AtomicBool::new(false));
    let mut c = cfg(s.target(), Mode::Echo, 5_000);
    c.stop = Some(Arc::clone(&flag));
    let t0 = Instant::now();
    let h = start(c).expect("start");
    thread::sleep(Duration::from_millis(100));
    flag.store(true, Ordering::SeqCst);
    let r = h.wait();
    assert!(t0.elapsed() < Duration::from_secs(3), "{r}");
    assert!(r.ok > 0 && r.failed == 0, "{r}");

    let h = start(cfg(s.target(), Mode::Echo, 5_000)).expect("start");
    thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let r = h.stop();
    assert!(t0.elapsed() < Duration::from_secs(2) && r.ok > 0, "{r}");
}

#[test]
fn unix_target_and_request_once() {
    let path = unix_path("echo");
    let acceptor = unix_echo(&path);
    let target = Target::Unix(path.clone());
    let got = request_once(&target, "VERSION", Duration::from_secs(2)).expect("round trip");
    assert_eq!(got, "VERSION");
    let h = start(cfg(target.clone(), Mode::Echo, 400)).expect("start");
    thread::sleep(Duration::from_millis(150));
    assert!(h.progress().ok > 0);
    std::fs::remove_file(&path).expect("remove socket");
    let r = h.wait();
    acceptor.join().expect("acceptor");
    // Both "path gone" (ENOENT) and "listener gone" (ECONNREFUSED) are refusals.
    assert!(r.count(FailureKind::Refused) > 0, "{r}");
    only_kinds(&r, &[FailureKind::Refused, FailureKind::Reset]);
    let e = request_once(&target, "x", Duration::from_secs(1)).expect_err("no server");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn request_once_tcp_and_timeout() {
    let s = Server::start(Behave::Echo);
    assert_eq!(
        request_once(&s.target(), "hello\n", Duration::from_secs(2)).expect("echo"),
        "hello"
    );
    // A listener that never answers: the whole exchange is bounded by the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let t = Target::Tcp(silent.local_addr().expect("addr"));
    let t0 = Instant::now();
    let e = request_once(&t, "x", Duration::from_millis(200)).expect_err("silent");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn parsing_and_validation() {
    assert_eq!(
        "tcp:127.0.0.1:80".parse::<Target>().expect("tcp"),
        Target::Tcp("127.0.0.1:80".parse().expect("addr"))
    );
    assert!(matches!(
        "tcp:[::1]:80".parse::<Target>(),
        Ok(Target::Tcp(_))
    ));
    assert_eq!(
        "unix:/run/x.sock"
            .parse::<Target>()
            .expect("unix")
            .to_string(),
        "unix:/run/x.sock"
    );
    for bad in ["127.0.0.1:80", "tcp:localhost:80", "unix:", "udp:1.2.3.4:5"] {
        let e = bad.parse::<Target>().expect_err(bad);
        assert!(e.to_string().contains("tcp:IP:PORT"), "{e}");
    }
    for m in [Mode::Echo, Mode::Long, Mode::Http, Mode::H2, Mode::Ws] {
        assert_eq!(m.to_string().parse::<Mode>().expect("mode"), m);
    }
    let e = "fast".parse::<Mode>().expect_err("fast");
    assert!(e.to_string().contains("h2 or ws"), "{e}");

    let t: Target = "tcp:127.0.0.1:1".parse().expect("tcp");
    let mut c = LoadConfig::new(t.clone());
    c.duration = Duration::from_secs(3601);
    assert!(matches!(start(c), Err(LoadError::InvalidConfig(_))));
    let mut c = LoadConfig::new(t.clone());
    c.connections = 0;
    assert!(matches!(start(c), Err(LoadError::InvalidConfig(_))));
    let mut c = LoadConfig::new(t.clone());
    c.http_path = "no-slash".into();
    assert!(matches!(start(c), Err(LoadError::InvalidConfig(_))));
    for streams in [0, MAX_STREAMS + 1] {
        let mut c = LoadConfig::new(t.clone());
        c.streams = streams;
        assert!(matches!(start(c), Err(LoadError::InvalidConfig(_))));
    }
}
