//! Upgrades requested over the control socket (what `exuvia reload --wait` does), and the
//! rule that a successor cannot upgrade before its own handover completed.

mod common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;
use exuvia::control::{ControlError, request_upgrade};

#[test]
fn control_socket_reports_success_failure_and_in_progress() {
    let dir = Scratch::new("control");
    let ctl = dir.path("control.sock");
    let fail = dir.path("fail");
    let svc = Service::start(
        &example("echo"),
        &dir,
        &[
            "--control",
            ctl.to_str().unwrap(),
            "--fail-file",
            fail.to_str().unwrap(),
            "--ready-timeout",
            "5",
        ],
    );
    let load = echo_load(svc.target(), 8, Duration::from_secs(60));

    let first = svc.pid().unwrap();
    let ok = request_upgrade(&ctl, Duration::from_secs(20)).expect("upgrade succeeds");
    assert_eq!(ok.generation, 2);
    let second = svc
        .wait_pid_change(Some(first), Duration::from_secs(5))
        .unwrap();
    assert_eq!(ok.pid, second, "the verdict names the new main process");

    // The successor inherited the control socket by name: the next request reaches it.
    std::fs::write(&fail, "exit").unwrap();
    match request_upgrade(&ctl, Duration::from_secs(20)) {
        Err(ControlError::Refused { kind, message }) => {
            assert_eq!(kind, "failed");
            assert!(message.contains("exited before it was ready"), "{message}");
        }
        other => panic!("expected a failed upgrade, got {other:?}"),
    }
    assert_eq!(
        svc.pid(),
        Some(second),
        "a failed upgrade leaves the main process in place"
    );

    // Two requests at once: one runs, the other is told an upgrade is in progress.
    std::fs::write(&fail, "hang").unwrap();
    let c2 = ctl.clone();
    let slow = std::thread::spawn(move || request_upgrade(&c2, Duration::from_secs(20)));
    assert!(svc.wait_log("successor started", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    match request_upgrade(&ctl, Duration::from_secs(20)) {
        Err(ControlError::Refused { kind, .. }) => assert_eq!(kind, "in-progress"),
        other => panic!("expected in-progress, got {other:?}"),
    }
    match slow.join().unwrap() {
        Err(ControlError::Refused { kind, message }) => {
            assert_eq!(kind, "failed");
            assert!(message.contains("not ready within 5s"), "{message}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    svc.stop();
}

#[test]
fn a_successor_cannot_upgrade_before_its_handover_completes() {
    let dir = Scratch::new("pending");
    let fail = dir.path("fail");
    std::fs::write(&fail, "hang").unwrap();
    let svc = Service::start(
        &example("echo"),
        &dir,
        &[
            "--fail-file",
            fail.to_str().unwrap(),
            "--ready-timeout",
            "3",
        ],
    );
    let first = svc.pid().unwrap();
    signal(first, libc::SIGHUP);
    assert!(svc.wait_log("successor started", Duration::from_secs(5)));
    let successor = log_field(&svc.log_lines(), "successor started", "successor_pid")[0] as i32;
    // The successor is up (its control thread runs) but has not called ready().
    assert!(svc.wait_log(
        &format!("exuvia started generation=2 pid={successor}"),
        Duration::from_secs(5)
    ));
    signal(successor, libc::SIGHUP);
    assert!(
        svc.wait_log(
            "still taking over from its predecessor",
            Duration::from_secs(5)
        ),
        "the successor refused to upgrade:\n{}",
        svc.log_tail(20)
    );
    assert!(svc.wait_log("was not ready within 3s", Duration::from_secs(10)));
    assert!(
        wait_dead(successor, Duration::from_secs(5)),
        "the killed successor is gone"
    );
    assert_eq!(svc.pid(), Some(first));
    svc.stop();
}

/// systemd 253–261 sends the reload signal *and* runs `ExecReload=exuvia reload --wait` for
/// one `systemctl reload`: the request must report that upgrade, not start a second one.
#[test]
fn a_control_request_joins_the_upgrade_the_reload_signal_started() {
    let dir = Scratch::new("join");
    let ctl = dir.path("control.sock");
    let fail = dir.path("fail");
    let svc = Service::start(
        &example("echo"),
        &dir,
        &[
            "--control",
            ctl.to_str().unwrap(),
            "--fail-file",
            fail.to_str().unwrap(),
            "--ready-timeout",
            "5",
        ],
    );
    // A failing upgrade: the joined request reports the failure.
    std::fs::write(&fail, "hang").unwrap();
    let first = svc.pid().unwrap();
    signal(first, libc::SIGHUP);
    match request_upgrade(&ctl, Duration::from_secs(20)) {
        Err(ControlError::Refused { kind, message }) => {
            assert_eq!(kind, "failed");
            assert!(message.contains("not ready within 5s"), "{message}");
        }
        other => panic!("expected the signal-started upgrade's failure, got {other:?}"),
    }
    assert_eq!(
        svc.count_log("starting successor"),
        1,
        "one upgrade for signal + request"
    );
    // A good one: same upgrade, its verdict.
    std::fs::remove_file(&fail).unwrap();
    signal(first, libc::SIGHUP);
    let joined = request_upgrade(&ctl, Duration::from_secs(20)).expect("joined a good upgrade");
    let new = svc
        .wait_pid_change(Some(first), Duration::from_secs(5))
        .unwrap();
    assert_eq!(joined.pid, new);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        svc.count_log("starting successor"),
        2,
        "still one upgrade per signal + request"
    );
    assert_eq!(svc.count_log("control request joined"), 2);
    // The request arrives after the handover, at the new main (systemd 257 starts
    // ExecReload= while the signal's upgrade runs): it still reports that upgrade.
    signal(new, libc::SIGHUP);
    let newest = svc
        .wait_pid_change(Some(new), Duration::from_secs(5))
        .unwrap();
    let late =
        request_upgrade(&ctl, Duration::from_secs(20)).expect("late request gets the verdict");
    assert_eq!(
        late.pid, newest,
        "the verdict of the upgrade that made {newest}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        svc.count_log("starting successor"),
        3,
        "no second upgrade for the late request"
    );
    svc.stop();
}

/// `ExecReload=@/path/to/service exuvia-reload --wait --control …`: the service binary is its
/// own reload client, with the exit codes of `exuvia reload --wait`.
#[test]
fn the_service_binary_is_its_own_reload_client() {
    let dir = Scratch::new("own-client");
    let ctl = dir.path("control.sock");
    let fail = dir.path("fail");
    let svc = Service::start(
        &example("echo"),
        &dir,
        &[
            "--control",
            ctl.to_str().unwrap(),
            "--fail-file",
            fail.to_str().unwrap(),
        ],
    );
    let client = |args: &[&str]| {
        std::process::Command::new(example("echo"))
            .arg0("exuvia-reload")
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .expect("run the reload client")
    };
    let ctl_s = ctl.to_str().unwrap();
    let first = svc.pid().unwrap();
    let out = client(&["--wait", "--control", ctl_s, "--timeout", "20"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("upgraded: generation 2"), "{stdout}");
    let second = svc
        .wait_pid_change(Some(first), Duration::from_secs(5))
        .expect("a new main");
    assert!(stdout.contains(&format!("(pid {second})")), "{stdout}");

    std::fs::write(&fail, "exit").unwrap();
    let out = client(&["--wait", "--control", ctl_s, "--timeout", "20"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exited before it was ready"), "{stderr}");
    assert_eq!(svc.pid(), Some(second));

    let out = client(&["--control", ctl_s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wait"));
    svc.stop();
}

/// A stop replaces a reload (docs/systemd.md, "A stop or restart during a reload"): the
/// reload client ends with 0 and "not upgraded" — when systemd sends it SIGTERM, and when
/// the service answers that it is stopping — so systemd does not mark the stopped unit
/// failed.
#[test]
fn a_stop_during_the_reload_ends_the_client_with_0() {
    let dir = Scratch::new("stop-replaces");
    let ctl = dir.path("control.sock");
    let fail = dir.path("fail");
    // Successors take 1.5 s to get ready: the client is still waiting when the stop comes.
    std::fs::write(&fail, "slow").unwrap();
    let svc = Service::start(
        &example("echo"),
        &dir,
        &[
            "--control",
            ctl.to_str().unwrap(),
            "--fail-file",
            fail.to_str().unwrap(),
        ],
    );
    let client = || {
        std::process::Command::new(example("echo"))
            .arg0("exuvia-reload")
            .args([
                "--wait",
                "--control",
                ctl.to_str().unwrap(),
                "--timeout",
                "20",
            ])
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the reload client")
    };
    let started = |svc: &Service, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while svc.count_log("starting successor") < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no upgrade started: {}",
                svc.log_tail(10)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // systemd's SIGTERM to ExecReload= (stop or restart cancels the reload job).
    let c = client();
    started(&svc, 1);
    signal(c.id() as i32, libc::SIGTERM);
    let out = c.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("not upgraded") && stderr.contains("replaced this reload"),
        "{stderr}"
    );

    // Let that upgrade finish, then: the service is stopped while the client waits.
    let first = svc.pid().unwrap();
    let second = svc
        .wait_pid_change(Some(first), Duration::from_secs(10))
        .expect("the first upgrade completes");
    let c = client();
    started(&svc, 2);
    signal(second, libc::SIGTERM);
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not upgraded") && stdout.contains("shutting down"),
        "{stdout}"
    );
    assert!(
        wait_dead(second, Duration::from_secs(10)),
        "the stopped service exits"
    );
    svc.stop();
}

/// The unit carries the deadlines (`EXUVIA_DRAIN_HARD=` …) and they win over the service's
/// own settings, so a unit's TimeoutStopSec= derived from them cannot cut a drain short.
#[test]
fn deadlines_come_from_the_environment() {
    let dir = Scratch::new("env-deadlines");
    let svc = Service::start_with_env(
        &example("echo"),
        &dir,
        &["--drain-hard", "60"],
        &[("EXUVIA_DRAIN_HARD", "1s 500ms")],
    );
    assert!(svc.wait_log("deadline set by the environment", Duration::from_secs(5)));
    // An idle long-lived connection keeps the drain going until the hard deadline cuts it.
    let conn = std::net::TcpStream::connect(svc.addr).unwrap();
    assert_eq!(ask(&svc.target(), "x"), "x");
    let pid = svc.pid().unwrap();
    let t = std::time::Instant::now();
    signal(pid, libc::SIGTERM);
    assert!(wait_dead(pid, Duration::from_secs(10)));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "drained for {took:?}, the environment said 1.5 s (the flag said 60 s)"
    );
    drop(conn);

    let out = std::process::Command::new(example("echo"))
        .args(["--listen", "127.0.0.1:0"])
        .env("EXUVIA_DRAIN_HARD", "ten seconds")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("EXUVIA_DRAIN_HARD=\"ten seconds\"") && stderr.contains("Environment="),
        "{stderr}"
    );
}

fn threads(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// A thousand clients that never send, garbage lines and a client of another user: the
/// service's threads stay bounded, every bad client gets one line, and real upgrades are
/// still served while the flood goes on.
#[test]
fn the_control_socket_survives_a_flood_and_answers_only_its_own_user() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    let dir = Scratch::new("flood");
    let ctl = dir.path("control.sock");
    let mut svc = Service::start(
        &example("echo"),
        &dir,
        &["--control", ctl.to_str().unwrap()],
    );
    let load = echo_load(svc.target(), 4, Duration::from_secs(120));
    let pid = svc.pid().unwrap();
    let idle_threads = threads(pid);

    let t0 = std::time::Instant::now();
    let silent: Vec<UnixStream> = (0..1000)
        .filter_map(|_| UnixStream::connect(&ctl).ok())
        .collect();
    assert!(silent.len() >= 900, "connected {}", silent.len());
    std::thread::sleep(Duration::from_millis(500));
    let busy_threads = threads(pid);
    assert!(
        busy_threads <= idle_threads + exuvia::control::MAX_CONNECTIONS + 2,
        "threads {idle_threads} → {busy_threads} under 1000 silent clients"
    );
    // Garbage gets a one-line refusal at once.
    for garbage in ["hello\n", "upgrade now\n", "\u{1b}[2J\n", "\n"] {
        let mut s = UnixStream::connect(&ctl).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(garbage.as_bytes()); // a busy service refuses before reading
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.starts_with("error refused: "), "{garbage:?}: {line:?}");
    }
    // A real request still gets through (retrying while the silent ones hold the slots).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let upgraded = loop {
        match request_upgrade(&ctl, Duration::from_secs(20)) {
            Ok(u) => break u,
            Err(ControlError::Refused { message, .. })
                if message.contains("too many") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    };
    eprintln!(
        "measured: 1000 silent clients: threads {idle_threads} → {busy_threads}; upgrade served after {:?}",
        t0.elapsed()
    );
    svc.note_pid(upgraded.pid);
    drop(silent);

    // Another user (nobody) may connect (the socket is made world-writable for the test) but
    // may not upgrade.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(example("echo"))
        .arg0("exuvia-reload")
        .args(["--wait", "--control", ctl.to_str().unwrap()])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("uid 65534 may not upgrade"), "{stderr}");
    assert_eq!(svc.pid(), Some(upgraded.pid));
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    svc.stop();
}
