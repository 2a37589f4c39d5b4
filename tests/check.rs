//! `exuvia check` and `exuvia demo` as a user runs them: the real binary, real example
//! servers and deliberately broken python services (tests/fixtures/check/), all on loopback.
//! Each run is short (2 reloads, 250 ms apart) and killed if it overruns its bound.
//! The load modes and retry flags run against in-test servers (`check/modes.rs`).
#![cfg(feature = "cli")]

mod common;
#[path = "check/modes.rs"]
mod modes;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, alive, example};
use serde_json::Value;

/// Generous: a run takes about 2 s, but the machine is shared.
const LIMIT: Duration = Duration::from_secs(45);

struct Run {
    code: i32,
    json: Option<Value>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn json(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON report\n{}", self.show()))
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/check")
        .join(name)
}

fn python3() -> &'static str {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 is needed for the broken-service fixtures (apt-get install python3)"
    );
    "python3"
}

/// Runs `exuvia SUBCOMMAND ARGS…` with `--json` into `scratch`, bounded by LIMIT.
fn exuvia(scratch: &Scratch, sub: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let json = scratch.path("report.json");
    let _ = std::fs::remove_file(&json);
    let mut child = Command::new(env!("CARGO_BIN_EXE_exuvia"))
        .arg(sub)
        .arg("--json")
        .arg(&json)
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exuvia");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "exuvia {sub} overran {LIMIT:?}\n--- stderr\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let json = std::fs::read_to_string(&json)
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| serde_json::from_str(&s).expect("valid JSON report"));
    Run {
        code: status.code().unwrap_or(-1),
        json,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `exuvia check` with short, bounded settings plus `args`.
fn check(scratch: &Scratch, args: &[&str]) -> Run {
    let log = scratch.path("service.log");
    let mut all = vec![
        "--reloads",
        "2",
        "--interval",
        "250ms",
        "--service-log",
        log.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    exuvia(scratch, "check", &all, &[])
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn assert_pass(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.show());
    let j = run.json();
    assert_eq!(j["schema"], 2);
    assert_eq!(j["mode"], "simulator");
    assert_eq!(j["pass"], true, "{}", run.show());
    assert!(n(&j["load"]["ok"]) > 0, "{}", run.show());
    assert_eq!(n(&j["load"]["failed"]), 0);
    assert_eq!(n(&j["main_pid_changes"]), 2);
    assert_eq!(j["violations"].as_array().unwrap().len(), 0);
    let reloads = j["reloads"].as_array().unwrap();
    assert_eq!(reloads.len(), 2);
    for r in reloads {
        assert_eq!(r["ok"], true, "{r}");
        assert_ne!(r["old_main_pid"], r["new_main_pid"], "{r}");
        assert!(r["duration"].as_f64().unwrap() > 0.0);
    }
    assert!(j["reload_duration"]["max"].as_f64().unwrap() > 0.0);
    assert!(n(&j["peak_processes"]) >= 1);
    assert!(run.stdout.contains("exuvia check: PASS"), "{}", run.show());
}

fn assert_fail(run: &Run) -> &Value {
    assert_eq!(run.code, 1, "{}", run.show());
    let j = run.json();
    assert_eq!(j["pass"], false);
    assert!(!j["reasons"].as_array().unwrap().is_empty());
    assert!(run.stdout.contains("exuvia check: FAIL"), "{}", run.show());
    j
}

fn rules(j: &Value) -> Vec<String> {
    j["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap().to_owned())
        .collect()
}

fn fake(mode: &str) -> Vec<String> {
    vec![
        "--".into(),
        python3().into(),
        fixture("fake_echo.py").to_str().unwrap().into(),
        mode.into(),
    ]
}

fn with<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(tail.iter().map(String::as_str))
        .collect()
}

#[test]
fn passes_echo_example() {
    let s = Scratch::new("check-echo");
    let exe = example("echo");
    let run = check(
        &s,
        &[
            "--listen",
            "echo=tcp:127.0.0.1:0",
            "--",
            exe.to_str().unwrap(),
        ],
    );
    assert_pass(&run);
    assert_eq!(run.json()["stop"]["sigkilled"].as_array().unwrap().len(), 0);
}

#[test]
fn passes_echo_sync_example() {
    let s = Scratch::new("check-echo-sync");
    let exe = example("echo_sync");
    let run = check(
        &s,
        &[
            "--listen",
            "echo=tcp:127.0.0.1:0",
            "--",
            exe.to_str().unwrap(),
        ],
    );
    assert_pass(&run);
}

#[test]
fn passes_http_example_in_http_mode() {
    let s = Scratch::new("check-http");
    let exe = example("http");
    let run = check(
        &s,
        &[
            "--mode",
            "http",
            "--listen",
            "http=tcp:127.0.0.1:0",
            "--",
            exe.to_str().unwrap(),
        ],
    );
    assert_pass(&run);
    assert_eq!(run.json()["load"]["mode"], "http");
}

#[test]
fn passes_echo_unix_example_and_removes_the_socket() {
    let s = Scratch::new("check-echo-unix");
    let exe = example("echo_unix");
    let sock = s.path("echo.sock");
    let listen = format!("echo=unix:{}", sock.display());
    let run = check(&s, &["--listen", &listen, "--", exe.to_str().unwrap()]);
    assert_pass(&run);
    assert!(run.json()["target"].as_str().unwrap().starts_with("unix:"));
    assert!(
        !sock.exists(),
        "check must remove the socket file it created"
    );
}

#[test]
fn passes_the_correct_python_fake() {
    // The baseline for the broken fakes below: the same script without its bug passes, so
    // their failures come from the bug, not the fixture.
    let s = Scratch::new("check-fake-good");
    let tail = fake("good");
    let run = check(&s, &with(&["--listen", "echo=tcp:127.0.0.1:0"], &tail));
    assert_pass(&run);
}

#[test]
fn fails_a_service_that_closes_its_listener_before_handing_over() {
    let s = Scratch::new("check-close-listener");
    let tail = fake("close-listener");
    let run = check(&s, &with(&["--listen", "echo=tcp:127.0.0.1:0"], &tail));
    let j = assert_fail(&run);
    let by_kind = &j["load"]["failures_by_kind"];
    assert!(
        n(&by_kind["refused"]) > 0,
        "clients must be refused while no listener exists\n{}",
        run.show()
    );
    // The protocol itself was followed: the verdict comes from the requests alone.
    assert!(rules(j).is_empty(), "{:?}", rules(j));
    let reloads = j["reloads"].as_array().unwrap();
    assert!(reloads.iter().all(|r| r["completed"] == true));
    let attributed: u64 = reloads.iter().map(|r| n(&r["failed_requests"])).sum();
    assert!(attributed > 0, "failures must be pinned to the reloads");
}

#[test]
fn fails_reloading_without_monotonic_usec() {
    let s = Scratch::new("check-no-monotonic");
    let tail = fake("no-monotonic");
    let run = check(
        &s,
        &with(
            &["--listen", "echo=tcp:127.0.0.1:0", "--reload-timeout", "1s"],
            &tail,
        ),
    );
    let j = assert_fail(&run);
    let v = &j["violations"].as_array().unwrap()[0];
    assert_eq!(
        v["rule"],
        "reloading-without-monotonic-usec",
        "{}",
        run.show()
    );
    assert_eq!(v["datagram"], "RELOADING=1");
    assert!(rules(j).contains(&"reload-timeout".to_owned()));
    assert_eq!(j["reloads"][0]["failure"], "timeout");
    assert!(run.stdout.contains("datagram from pid"), "{}", run.show());
}

#[test]
fn fails_a_service_that_never_sends_ready_after_a_reload() {
    let s = Scratch::new("check-no-ready");
    let tail = fake("no-ready");
    let run = check(
        &s,
        &with(
            &["--listen", "echo=tcp:127.0.0.1:0", "--reload-timeout", "1s"],
            &tail,
        ),
    );
    let j = assert_fail(&run);
    assert_eq!(rules(j), ["reload-timeout"], "{}", run.show());
    assert_eq!(j["reloads"][0]["failure"], "timeout");
    assert_eq!(j["reloads"][0]["completed"], false);
    // It kept serving: the verdict is about the protocol, not about dropped requests.
    assert_eq!(n(&j["load"]["failed"]), 0);
    // A reload that never completed is not retried.
    assert_eq!(j["reloads"].as_array().unwrap().len(), 1);
}

#[test]
fn fails_a_successor_that_announces_itself_under_notify_access_main() {
    let s = Scratch::new("check-successor-notify");
    let tail = fake("successor-notify");
    let run = check(&s, &with(&["--listen", "echo=tcp:127.0.0.1:0"], &tail));
    let j = assert_fail(&run);
    let v = j["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule"] == "unauthorized")
        .unwrap_or_else(|| panic!("no unauthorized violation\n{}", run.show()));
    assert!(v["datagram"].as_str().unwrap().starts_with("MAINPID="));
    let r = &j["reloads"][0];
    assert_ne!(v["sender_pid"], r["old_main_pid"]);
    assert_eq!(r["failure"], "main-exited", "{r}");
    assert!(rules(j).contains(&"main-exited-during-reload".to_owned()));
    assert_eq!(j["stop"]["already_dead"], true, "the unit must be dead");
}

/// A bad-input run: exit 2, one line saying what to do, no report.
fn assert_bad_input(run: &Run, hint: &str) {
    assert_eq!(run.code, 2, "{}", run.show());
    let first = run.stderr.lines().next().unwrap_or("");
    assert!(
        first.contains(hint),
        "{hint:?} not in {first:?}\n{}",
        run.show()
    );
    assert!(run.json.is_none(), "{}", run.show());
}

#[test]
fn bad_input_gives_one_line_and_exit_2() {
    let s = Scratch::new("check-bad-input");
    let run = check(&s, &["--listen", "echo=udp:127.0.0.1:0", "--", "true"]);
    assert_bad_input(&run, "use NAME=tcp:IP:PORT or NAME=unix:PATH");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("echo=tcp:{}", busy.local_addr().unwrap());
    let run = check(&s, &["--listen", &listen, "--", "true"]);
    assert_bad_input(&run, "pick a free port");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.show());

    for (cmd, hint) in [
        (
            "/nonexistent/exuvia-service",
            "not found; put the service's path after --",
        ),
        ("false", "exited (exit code 1) before it sent READY=1"),
    ] {
        let run = check(&s, &["--listen", "echo=tcp:127.0.0.1:0", "--", cmd]);
        assert_bad_input(&run, hint);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.show());
    }

    let run = check(&s, &["--listen", "echo=tcp:127.0.0.1:0"]);
    assert_bad_input(&run, "no command");
}

#[test]
fn a_service_that_never_gets_ready_is_stopped() {
    let s = Scratch::new("check-never-ready");
    let pid_file = s.path("pid");
    let mut args = vec![
        "--listen".to_owned(),
        "echo=tcp:127.0.0.1:0".to_owned(),
        "--start-timeout".to_owned(),
        "4s".to_owned(),
    ];
    args.extend(fake("never-ready"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = exuvia(
        &s,
        "check",
        &args,
        &[("FAKE_PID_FILE", pid_file.to_str().unwrap())],
    );
    assert_bad_input(&run, "sent no READY=1 within 4s");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the fake ran and wrote its pid")
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "pid {pid} was left running");
}

/// `--unit` against a fake systemctl (tests/fixtures/check/bin) that starts in `active` state
/// and reloads as `mode` says; the load goes to `target`, a plain echo server.
fn unit_check(tag: &str, target: &str, mode: &str, active: &str, reloads: &str) -> Run {
    python3();
    let s = Scratch::new(tag);
    let state = s.path("state.json");
    let body = format!(
        r#"{{"LoadState":"loaded","ActiveState":"{active}","SubState":"running","MainPID":"100",
            "InvocationID":"abc","NRestarts":"0","StatusText":"serving","ControlGroup":""}}"#
    );
    std::fs::write(&state, body).unwrap();
    let path = format!(
        "{}:{}",
        fixture("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    exuvia(
        &s,
        "check",
        &[
            "--unit",
            "fake.service",
            "--target",
            target,
            "--reloads",
            reloads,
            "--interval",
            "200ms",
        ],
        &[
            ("PATH", &path),
            ("FAKE_SYSTEMCTL_STATE", state.to_str().unwrap()),
            ("FAKE_SYSTEMCTL_MODE", mode),
        ],
    )
}

fn echo_server(tag: &str) -> (Scratch, common::Service) {
    let s = Scratch::new(tag);
    let svc = common::Service::start(&example("echo"), &s, &[]);
    (s, svc)
}

#[test]
fn unit_mode_passes_a_handover_and_records_systemctl_show() {
    let (_s, svc) = echo_server("check-unit-echo-ok");
    let target = format!("tcp:{}", svc.addr);
    let run = unit_check("check-unit-ok", &target, "handover", "active", "2");
    svc.stop();
    assert_eq!(run.code, 0, "{}", run.show());
    let j = run.json();
    assert_eq!(j["mode"], "unit");
    assert_eq!(j["reload_method"], "systemctl-reload");
    assert_eq!(j["unit"], "fake.service");
    assert_eq!(n(&j["main_pid_changes"]), 2);
    let r = &j["reloads"][1];
    assert_eq!(r["systemctl"]["rc"], 0);
    assert_eq!(r["systemctl"]["before"]["MainPID"], "101");
    assert_eq!(r["systemctl"]["after"]["MainPID"], "102");
    assert_eq!(r["systemctl"]["after"]["InvocationID"], "abc");
}

#[test]
fn unit_mode_fails_reloads_that_restart_or_fail() {
    let (_s, svc) = echo_server("check-unit-echo-bad");
    let target = format!("tcp:{}", svc.addr);
    let cases = [
        ("restart", "restarted"),
        ("reactivate", "reactivated"),
        ("in-place", "no-main-pid-change"),
        ("fail", "systemctl-failed"),
        ("die", "unit-dead"),
    ];
    let runs: Vec<(&str, &str, Run)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|&(mode, failure)| {
                let target = &target;
                scope.spawn(move || {
                    let tag = format!("check-unit-{mode}");
                    (mode, failure, unit_check(&tag, target, mode, "active", "1"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    svc.stop();
    for (mode, failure, run) in runs {
        assert_eq!(run.code, 1, "{mode}: {}", run.show());
        let r = &run.json()["reloads"][0];
        assert_eq!(r["failure"], failure, "{mode}: {r}");
        assert_eq!(r["ok"], false);
    }
}

#[test]
fn unit_mode_refuses_an_inactive_unit() {
    let run = unit_check(
        "check-unit-inactive",
        "tcp:127.0.0.1:1",
        "handover",
        "inactive",
        "1",
    );
    assert_bad_input(&run, "start it first (systemctl start fake.service)");
}

#[test]
fn demo_shows_no_failure_for_exuvia_and_failures_for_a_naive_restart() {
    let s = Scratch::new("demo");
    let run = exuvia(
        &s,
        "demo",
        &[
            "--reloads",
            "2",
            "--interval",
            "300ms",
            "--connections",
            "8",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.show());
    let j = run.json();
    assert_eq!(j["exuvia"]["pass"], true, "{}", run.show());
    assert_eq!(n(&j["exuvia"]["load"]["failed"]), 0);
    assert_eq!(n(&j["exuvia"]["main_pid_changes"]), 2);
    assert_eq!(j["naive"]["reload_method"], "restart");
    assert_eq!(n(&j["naive"]["main_pid_changes"]), 2);
    assert!(
        n(&j["naive"]["load"]["failed"]) > 0,
        "a stop/start leaves a window with no listener\n{}",
        run.show()
    );
    assert!(run.stdout.contains("exuvia: 0 failed of"), "{}", run.show());
    assert!(run.stdout.contains("naive restart:"), "{}", run.show());
}
