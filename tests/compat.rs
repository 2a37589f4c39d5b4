//! Handovers between this build and a build of the previous handover format (format 1, the
//! first landing: commit c3cce43), both ways, under load (docs/handover.md, "The promise").
//!
//! `.ci/run` builds that commit's `echo` example and points `EXUVIA_PREVIOUS_ECHO` at it;
//! without it the test says it is skipped (and fails under CI=true).

mod common;

use std::time::Duration;

use common::*;

const TAKEOVER: Duration = Duration::from_secs(20);

fn previous_echo() -> Option<std::path::PathBuf> {
    match std::env::var_os("EXUVIA_PREVIOUS_ECHO") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ if std::env::var_os("EXUVIA_COMPAT_SKIPPED").is_some() => {
            eprintln!(
                "SKIPPED by .ci/run: {}",
                std::env::var("EXUVIA_COMPAT_SKIPPED").unwrap_or_default()
            );
            None
        }
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but EXUVIA_PREVIOUS_ECHO is unset: .ci/run builds it")
        }
        _ => {
            eprintln!(
                "skipped: EXUVIA_PREVIOUS_ECHO is unset (build commit c3cce43's echo example, as .ci/run does)"
            );
            None
        }
    }
}

#[test]
fn hands_over_between_this_build_and_the_previous_format() {
    let Some(previous) = previous_echo() else {
        return;
    };
    let dir = Scratch::new("compat");
    let exe = dir.path("svc");
    install(&previous, &exe);
    let mut svc = Service::start(&exe, &dir, &[]);
    let load = echo_load(svc.target(), 8, Duration::from_secs(60));

    // Previous format → this build: it reads format 1 and takes over.
    install(&example("echo"), &exe);
    let first = svc.pid().unwrap();
    let second = svc.upgrade(TAKEOVER);
    assert_ne!(first, second);
    assert!(svc.wait_log("handover complete", Duration::from_secs(5)));

    // This build → previous format: the old successor cannot read format 2 and says so; the
    // upgrade fails cleanly and this build keeps serving.
    install(&previous, &exe);
    signal(second, libc::SIGHUP);
    assert!(
        svc.wait_log("upgrade failed; this generation keeps serving", TAKEOVER),
        "{}",
        svc.log_tail(20)
    );
    assert!(
        svc.count_log("version 2 is not supported") > 0,
        "the previous build's reason reaches the log: {}",
        svc.log_tail(20)
    );
    assert_eq!(svc.pid(), Some(second), "the main process did not change");
    assert!(ask(&svc.target(), "VERSION").starts_with("exuvia-example echo "));

    // And forward again.
    install(&example("echo"), &exe);
    let third = svc.upgrade(TAKEOVER);
    assert_ne!(third, second);

    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.ok > 0);
    svc.stop();
}
