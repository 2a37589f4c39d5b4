//! The examples under the systemd protocol simulator (`exuvia_testing::sim`): socket
//! activation by name, `Type=notify-reload` with the default `NotifyAccess=main`, the old
//! main announcing the successor, failed upgrades reported as `STATUS=`, stop, watchdog and
//! fd store — with every datagram checked against systemd's rules.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use exuvia_testing::load::Target;
use exuvia_testing::sim::{ServiceCommand, SimConfig, Simulator};

const T: Duration = Duration::from_secs(20);

fn sim(cfg: SimConfig) -> Simulator {
    Simulator::new(SimConfig {
        reload_timeout: Duration::from_secs(15),
        ..cfg
    })
    .expect("simulator")
}

fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn reloads_hand_over_under_notify_access_main() {
    let sim = sim(SimConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::Tcp(listener.local_addr().unwrap());
    let first = sim
        .spawn(ServiceCommand::new(example("echo")).listener("echo", listener))
        .unwrap();
    sim.wait_ready(T).unwrap();
    assert!(
        environ(first)
            .iter()
            .any(|v| v.starts_with("LISTEN_FDNAMES=echo"))
    );
    let load = echo_load(target.clone(), 16, Duration::from_secs(60));
    let long = long_load(target.clone(), Duration::from_secs(60));
    let mut durations = Vec::new();
    for _ in 0..10 {
        load.mark();
        let r = sim
            .reload(T)
            .unwrap_or_else(|e| panic!("reload failed: {e}"));
        assert_ne!(r.old_main, r.new_main, "a fork+exec handover moved MAINPID");
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let status = r.status.unwrap_or_default();
        assert!(
            status.contains(&format!("(pid {}) serving", r.new_main)),
            "{status}"
        );
        durations.push(r.duration.as_micros() as u64);
    }
    let main = sim.main_pid().unwrap();
    let env = environ(main);
    assert!(
        !env.iter().any(|v| v.starts_with("LISTEN_")),
        "successor env has no LISTEN_*: {env:?}"
    );
    assert!(
        env.iter().any(|v| v.starts_with("NOTIFY_SOCKET=")),
        "successor keeps NOTIFY_SOCKET"
    );
    let datagrams: Vec<String> = sim.messages().into_iter().map(|m| m.datagram).collect();
    assert!(
        datagrams
            .iter()
            .any(|d| d.contains("RELOADING=1") && d.contains("MONOTONIC_USEC="))
    );
    assert!(datagrams.iter().any(|d| d.contains("EXTEND_TIMEOUT_USEC=")));
    assert!(
        !datagrams.iter().any(|d| d.contains("STOPPING=1")),
        "no STOPPING=1 from draining generations"
    );
    let report = load.stop();
    let long = long.stop();
    println!(
        "simulator: 10 reloads, reload p50 {} us p99 {} us; {} requests ok, {} failed",
        percentile(&mut durations.clone(), 50.0),
        percentile(&mut durations, 99.0),
        report.ok,
        report.failed
    );
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(long.failed, 0, "{long}");
    let stop = sim.stop(libc::SIGTERM, T).unwrap();
    assert!(stop.sigkilled.is_empty(), "stop drained without SIGKILL");
    assert!(
        sim.messages()
            .iter()
            .any(|m| m.datagram.contains("STOPPING=1") && m.authorized)
    );
    sim.assert_no_violations();
}

#[test]
fn a_failed_upgrade_completes_the_reload_and_keeps_the_main_process() {
    let dir = Scratch::new("sim-fail");
    let fail = dir.path("fail");
    std::fs::write(&fail, "exit").unwrap();
    let sim = sim(SimConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::Tcp(listener.local_addr().unwrap());
    let cmd =
        ServiceCommand::new(example("echo_sync")).args(["--fail-file", fail.to_str().unwrap()]);
    let first = sim.spawn(cmd.listener("echo", listener)).unwrap();
    sim.wait_ready(T).unwrap();
    let load = echo_load(target, 8, Duration::from_secs(60));
    let r = sim.reload(T).unwrap();
    assert_eq!(
        (r.old_main, r.new_main),
        (first, first),
        "the old process stays main"
    );
    let status = r.status.unwrap_or_default();
    assert!(status.starts_with("upgrade failed: successor"), "{status}");
    std::fs::remove_file(&fail).unwrap();
    let r = sim.reload(T).unwrap();
    assert_ne!(r.new_main, first, "a later upgrade works");
    assert_eq!(load.stop().failed, 0);
    sim.stop(libc::SIGTERM, T).unwrap();
    sim.assert_no_violations();
}

#[test]
fn watchdog_and_fd_store() {
    let sim = sim(SimConfig {
        fdstore_max: 4,
        ..SimConfig::default()
    });
    let addr = free_addr();
    let cmd = ServiceCommand::new(example("echo"))
        .args(["--listen", &addr.to_string(), "--fd-store"])
        .env("WATCHDOG_USEC", "200000");
    sim.spawn(cmd).unwrap();
    sim.wait_ready(T).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sim.watchdog_pings() >= 2,
        "pinged every 100 ms: {}",
        sim.watchdog_pings()
    );
    assert_eq!(
        sim.stored_fd_names(),
        ["echo"],
        "the self-bound listener is in the fd store"
    );
    sim.reload(T).unwrap();
    let before = sim.watchdog_pings();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sim.watchdog_pings() > before,
        "the successor pings the watchdog once it is main"
    );
    sim.stop(libc::SIGTERM, T).unwrap();
    sim.assert_no_violations();
}

#[test]
fn bad_activation_input_is_a_clear_error() {
    // An fd that is not a socket, under the expected name.
    let sim = sim(SimConfig::default());
    let file = std::fs::File::open("/dev/null").unwrap();
    let pid = sim
        .spawn(ServiceCommand::new(example("echo")).listener("echo", file))
        .unwrap();
    let err = sim
        .wait_ready(Duration::from_secs(10))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&pid.to_string()), "{err}");
    // LISTEN_PID for another process, and a malformed LISTEN_FDS.
    for (env, expect) in [
        (
            vec![("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
            "names another process",
        ),
        (
            vec![("LISTEN_PID", "x"), ("LISTEN_FDS", "1")],
            "LISTEN_PID=\"x\"",
        ),
    ] {
        let out = std::process::Command::new(example("echo"))
            .args(["--listen", &free_addr().to_string()])
            .envs(env)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expect) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // LISTEN_FDS counts fds that were never passed: the runtime's own fds sit at those
    // numbers and must not be taken (and closed) as listeners. `exec` keeps the shell's pid.
    for count in ["2", "999"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "LISTEN_PID=$$ LISTEN_FDS={count} exec {} --listen {}",
                example("echo").display(),
                free_addr()
            ))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && (stderr.contains("was not inherited") || stderr.contains("is not open"))
                && !stderr.contains("panicked"),
            "LISTEN_FDS={count}: {stderr}"
        );
    }
}
