//! Upgrades requested over the control socket (what `exuvia reload --wait` does), and the
//! rule that a successor cannot upgrade before its own handover completed.

mod common;

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
            "2",
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
            assert!(message.contains("not ready within 2s"), "{message}");
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
    assert!(!alive(successor));
    assert_eq!(svc.pid(), Some(first));
    svc.stop();
}
