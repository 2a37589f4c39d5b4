//! Upgrades of real example servers under real load on loopback.
//!
//! Every test starts its own server processes, bounds its loops and waits, and only ever
//! signals pids it started (or watched take over from one it started).

mod common;

use std::time::{Duration, Instant};

use common::*;

const TAKEOVER: Duration = Duration::from_secs(15);

#[test]
fn twenty_upgrades_under_load_drop_nothing() {
    let dir = Scratch::new("twenty");
    let mut svc = Service::start(&example("echo"), &dir, &[]);
    let load = echo_load(svc.target(), 32, Duration::from_secs(60));
    let long = long_load(svc.target(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        svc.upgrade(TAKEOVER);
        load.mark();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let report = load.stop();
    let long = long.stop();
    let lines = svc.log_lines();
    let mut ready = log_field(&lines, "handover complete", "ready_us");
    let mut closed = log_field(&lines, "handover complete", "closed_us");
    println!(
        "20 upgrades: {} requests ok, {} failed; long-lived: {} round trips, {} failed; \
         trigger->ready p50 {} us p99 {} us; ready->listeners closed p50 {} us p99 {} us",
        report.ok,
        report.failed,
        long.ok,
        long.failed,
        percentile(&mut ready, 50.0),
        percentile(&mut ready, 99.0),
        percentile(&mut closed, 50.0),
        percentile(&mut closed, 99.0),
    );
    assert_eq!(ready.len(), 20, "every upgrade logged its handover");
    assert!(report.ok > 1000, "the load really ran: {report}");
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(long.failed, 0, "{long}");
    assert_eq!(
        long.long_lived_survived,
        Some(true),
        "the long-lived connection survived every upgrade"
    );
    let distinct: std::collections::HashSet<_> = svc.pids().iter().collect();
    assert_eq!(distinct.len(), 21);
    svc.stop();
}

/// Each way a successor can fail during its initialisation: the old process stays, keeps
/// serving, logs why, and the next upgrade works.
#[test]
fn failed_successors_leave_the_old_process_serving() {
    let dir = Scratch::new("failures");
    let exe = dir.path("svc");
    install(&example("echo"), &exe);
    let fail = dir.path("fail");
    let mut svc = Service::start(
        &exe,
        &dir,
        &[
            "--ready-timeout",
            "1",
            "--fail-file",
            fail.to_str().unwrap(),
        ],
    );
    let load = echo_load(svc.target(), 8, Duration::from_secs(120));
    let first = svc.pid().unwrap();
    let cases: &[(&str, &str)] = &[
        ("exit", "exited before it was ready"),
        // A panicking successor either reports its shutdown or is seen exiting first.
        (
            "panic",
            "shut down before the handover completed|exited before it was ready",
        ),
        ("segv", "exited before it was ready"),
        ("hang", "was not ready within 1s"),
        ("missing", "cannot be run"),
        ("not-executable", "cannot be run"),
        ("garbage-binary", "upgrade failed"),
    ];
    for (i, (case, expect)) in cases.iter().enumerate() {
        match *case {
            "missing" => std::fs::remove_file(&exe).unwrap(),
            "not-executable" => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&exe, b"#!/bin/sh\nexit 0\n").unwrap();
                std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
            "garbage-binary" => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&exe, b"\x7fELF this is not a program").unwrap();
                std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            how => std::fs::write(&fail, how).unwrap(),
        }
        let started = Instant::now();
        signal(first, libc::SIGHUP);
        let needle = "upgrade failed; this generation keeps serving";
        let deadline = Instant::now() + Duration::from_secs(10);
        while svc.count_log(needle) <= i && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            svc.count_log(needle),
            i + 1,
            "{case}: no failure logged:\n{}",
            svc.log_tail(20)
        );
        let line = svc
            .log_lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .nth(i)
            .unwrap();
        assert!(
            expect.split('|').any(|e| line.contains(e)),
            "{case}: {line}"
        );
        assert_eq!(
            svc.pid(),
            Some(first),
            "{case}: the old process stays in charge"
        );
        assert_eq!(
            ask(&svc.target(), "still-here"),
            "still-here",
            "{case}: old process serves"
        );
        println!("{case}: reported after {:?}: {line}", started.elapsed());
        let _ = std::fs::remove_file(&fail);
        if !exe.exists() || *case != "exit" {
            install(&example("echo"), &exe);
        }
    }
    // No successor of a failed attempt is left behind.
    let started: Vec<u64> = log_field(&svc.log_lines(), "successor started", "successor_pid");
    for pid in &started {
        assert!(
            wait_dead(*pid as i32, Duration::from_secs(5)),
            "failed successor {pid} still runs"
        );
    }
    // And a later upgrade works.
    let new = svc.upgrade(TAKEOVER);
    assert_ne!(new, first);
    let report = load.stop();
    println!(
        "failure cases: {} requests ok, {} failed",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{report}");
    svc.stop();
}

#[test]
fn a_burst_of_triggers_runs_one_upgrade() {
    let dir = Scratch::new("burst");
    let svc = Service::start(&example("echo"), &dir, &[]);
    let load = echo_load(svc.target(), 8, Duration::from_secs(30));
    let first = svc.pid().unwrap();
    let t = Instant::now();
    for _ in 0..50 {
        signal(first, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(t.elapsed() < Duration::from_millis(300));
    let new = svc
        .wait_pid_change(Some(first), TAKEOVER)
        .expect("one upgrade happened");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        svc.count_log("starting successor"),
        1,
        "exactly one successor:\n{}",
        svc.log_tail(40)
    );
    assert_eq!(svc.pid(), Some(new));
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    svc.stop();
}

#[test]
fn a_replaced_binary_takes_effect() {
    let dir = Scratch::new("replace");
    let exe = dir.path("svc");
    install(&example("echo"), &exe);
    let mut svc = Service::start(&exe, &dir, &[]);
    assert!(ask(&svc.target(), "VERSION").starts_with("exuvia-example echo "));
    let load = echo_load(svc.target(), 8, Duration::from_secs(30));
    install(&example("echo_sync"), &exe);
    svc.upgrade(TAKEOVER);
    assert!(ask(&svc.target(), "VERSION").starts_with("exuvia-example echo_sync "));
    install(&example("echo"), &exe);
    svc.upgrade(TAKEOVER);
    assert!(ask(&svc.target(), "VERSION").starts_with("exuvia-example echo "));
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    svc.stop();
}

#[test]
fn the_successor_inherits_exactly_stdio_and_the_registered_fds() {
    let dir = Scratch::new("fds");
    let dump = dir.path("fds");
    let mut svc = Service::start(
        &example("echo_sync"),
        &dir,
        &["--dump-fds", dump.to_str().unwrap()],
    );
    let new = svc.upgrade(TAKEOVER);
    let text = std::fs::read_to_string(&dump).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{new}:")))
        .expect("successor dumped its fds");
    let fds: Vec<(u32, String)> = line
        .split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.parse().unwrap(), v.to_owned())
        })
        .collect();
    let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        [0, 1, 2, 3],
        "stdio and the handover channel; the listener travels on the channel: {line}"
    );
    assert!(fds[3].1.starts_with("socket:"), "{line}");
    // After the handover completed the channel is closed: every socket left is the listener
    // (and exuvia's dup of it), and it is the very socket the first generation bound.
    std::thread::sleep(Duration::from_millis(200));
    let channel = fds[3].1.clone();
    let sockets = |pid: i32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|t| t.starts_with("socket:"))
            .collect()
    };
    let now = sockets(new);
    assert_eq!(now.len(), 2, "the listener and exuvia's dup: {now:?}");
    assert!(
        now.iter().all(|s| *s == now[0] && *s != channel),
        "only the listener remains: {now:?}"
    );
    assert_eq!(ask(&svc.target(), "still here"), "still here");
    svc.stop();
}

#[test]
fn a_hundred_upgrades_leave_no_zombies_and_no_fd_growth() {
    let dir = Scratch::new("hundred");
    let mut svc = Service::start(&example("echo_sync"), &dir, &[]);
    let mut fd_counts = Vec::new();
    for _ in 0..100 {
        let old = svc.pid().unwrap();
        let pid = svc.upgrade(TAKEOVER);
        // The count once the handover has settled: the channel to the predecessor stays
        // open until it has drained and exited (its drain results come on it).
        assert!(wait_dead(old, TAKEOVER));
        // Then until the successor has noticed and closed it (fd 3, where the channel
        // arrives); bounded, so a channel that is never closed still fails the count below.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::path::Path::new(&format!("/proc/{pid}/fd/3")).exists()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let count = fd_count(pid);
        fd_counts.push(count);
    }
    std::thread::sleep(Duration::from_millis(500));
    let current = svc.pid().unwrap();
    let pids = svc.pids().to_vec();
    let alive_now: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    // Zombies the generations left behind (unreaped children). Exited generations
    // themselves are the service manager's to reap (here: PID 1 or this test's parent).
    let zombies = zombie_children_of(&pids);
    println!(
        "100 upgrades: fd counts first {:?} last {:?}; alive {:?}",
        &fd_counts[..3],
        &fd_counts[97..],
        alive_now
    );
    assert_eq!(
        alive_now,
        vec![current],
        "only the newest generation is left"
    );
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    assert_eq!(fd_count(current), fd_counts[1], "fd count settles");
    assert!(
        fd_counts[1..].iter().all(|c| *c == fd_counts[1]),
        "{fd_counts:?}"
    );
    svc.stop();
}

#[test]
fn malformed_handover_input_is_a_clear_error() {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::Command;

    let run = |var: &str, keep: Option<&OwnedFd>| {
        let mut cmd = Command::new(example("echo"));
        cmd.args(["--listen", &free_addr().to_string()])
            .env("EXUVIA_HANDOVER", var)
            .env("NO_COLOR", "1");
        if let Some(fd) = keep {
            let raw = fd.as_raw_fd();
            // SAFETY: fcntl on an fd we own, in the child before exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    libc::fcntl(raw, libc::F_SETFD, 0);
                    Ok(())
                })
            };
        }
        let out = cmd.output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (var, expect) in [
        ("abc", "EXUVIA_HANDOVER=\"abc\""),
        ("97", "not an open socket"),
        ("1", "not an open socket"),
    ] {
        let (status, err) = run(var, None);
        assert!(!status.success());
        assert!(
            err.contains(expect) && !err.contains("panicked"),
            "{var}: {err}"
        );
    }
    for (garbage, expect) in [
        (&b"hello"[..], "not an exuvia handover manifest"),
        (b"exuvia-handover 7\nend\n", "format 7"),
        // Where the test's channel fd lands decides which rule refuses it: the layout (the
        // channel is not right after fd 3) or the identity check (fd 3 is this process's own).
        (
            b"exuvia-handover 1\ngeneration 2\nfd 3 tcp echo\nend\n",
            "format-1 manifest names 1 fds|was not inherited",
        ),
        (
            b"exuvia-handover 2\ngeneration 2\nfd tcp echo\nend\n",
            "announces 1 fds but 0 arrived",
        ),
    ] {
        let (ours, theirs) = socket2::Socket::pair(
            socket2::Domain::UNIX,
            socket2::Type::SEQPACKET.cloexec(),
            None,
        )
        .unwrap();
        let theirs = OwnedFd::from(theirs);
        ours.send(garbage).unwrap();
        let (status, err) = run(&theirs.as_raw_fd().to_string(), Some(&theirs));
        assert!(!status.success());
        assert!(
            expect.split('|').any(|e| err.contains(e)) && !err.contains("panicked"),
            "{expect}: {err}"
        );
        let mut buf = [std::mem::MaybeUninit::new(0u8); 512];
        let n = ours.recv(&mut buf).unwrap();
        // SAFETY: recv initialised the first n bytes.
        let reply: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert!(
            String::from_utf8_lossy(&reply).starts_with("failed "),
            "the old process is told why"
        );
    }
}

/// A predecessor that lies about the layout (format 1, channel at fd 9, "fds 3..8") must not
/// make the successor adopt — and later close — fds its own runtime opened at those numbers.
#[test]
fn a_lying_predecessor_cannot_hand_over_fds_it_never_passed() {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::Command;

    let (ours, theirs) = socket2::Socket::pair(
        socket2::Domain::UNIX,
        socket2::Type::SEQPACKET.cloexec(),
        None,
    )
    .unwrap();
    let theirs = OwnedFd::from(theirs);
    let mut manifest = String::from("exuvia-handover 1\ngeneration 2\n");
    for fd in 3..9 {
        manifest.push_str(&format!("fd {fd} fd f{fd}\n"));
    }
    manifest.push_str("end\n");
    ours.send(manifest.as_bytes()).unwrap();
    let raw = theirs.as_raw_fd();
    let mut cmd = Command::new(example("echo"));
    cmd.args(["--listen", &free_addr().to_string()])
        .env("EXUVIA_HANDOVER", "9")
        .env("NO_COLOR", "1");
    // SAFETY: dup2 onto fd 9 in the child before exec; fds 3..8 stay closed at exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("was not inherited") && !err.contains("panicked"),
        "{err}"
    );
    let mut buf = [std::mem::MaybeUninit::new(0u8); 512];
    let n = ours.recv(&mut buf).unwrap();
    // SAFETY: recv initialised the first n bytes.
    let reply: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    assert!(String::from_utf8_lossy(&reply).starts_with("failed "));
}
