//! An accept loop survives running out of file descriptors (EMFILE): it backs off, logs,
//! and accepts the waiting connection once fds are free again — the server never ends.
//!
//! The fd table is exhausted in a child process (this test binary, re-run with an
//! environment variable and a low RLIMIT_NOFILE), so nothing else in the test run starves.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const CHILD: &str = "EXUVIA_TEST_EMFILE_CHILD";

#[test]
fn the_accept_loop_outlives_emfile() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_accept_loop_outlives_emfile", "--nocapture"])
        .env(CHILD, "1")
        .env("RUST_LOG", "exuvia=debug")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("served after EMFILE"), "{stdout}\n{stderr}");
    let warned = stderr
        .lines()
        .filter(|l| l.contains("accept failed for want of resources"))
        .collect::<Vec<_>>();
    assert!(
        !warned.is_empty() && warned.iter().all(|l| l.contains("Too many open files")),
        "the back-off was logged with the error:\n{stderr}"
    );
    assert!(
        stderr.contains("accepting again after resource errors"),
        "{stderr}"
    );
}

fn child() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let builder = exuvia::Exuvia::builder()
            .upgrade_signal(None)
            .stop_signals(&[]);
        let ex = exuvia::tokio::Exuvia::start(builder).unwrap();
        let listener = ex.listen_tcp("t", "127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        ex.ready().unwrap();
        let server = tokio::spawn(async move {
            // The loop a user writes: it must not end on EMFILE.
            while let Some((mut s, _)) = listener.accept().await.expect("accept never fails") {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"ok\n").await;
            }
        });

        let limit = 256;
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit(2) with a valid struct; lowers this child's own limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
        }
        assert!(fillers.len() > 10, "the fd table was filled");
        // One free fd for the client; the server's accept then finds none.
        fillers.pop();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!server.is_finished(), "the accept loop is still running");
        fillers.truncate(fillers.len() - 8);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "ok\n");
        drop(fillers);
        // And it goes on accepting.
        let mut again = std::net::TcpStream::connect(addr).unwrap();
        again
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        again.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "ok\n");
        println!("served after EMFILE");
        std::io::stdout().flush().unwrap();
    });
}
