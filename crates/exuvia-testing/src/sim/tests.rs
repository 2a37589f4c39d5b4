//! End-to-end tests: scripted python3 fake services (`fake/service.py`) run under the
//! simulator. Every wait is bounded; the fakes exit on their own after 20 s at the latest.

use std::net::TcpListener;
use std::time::Duration;

use super::*;

const FAKE: &str = include_str!("fake/service.py");
const T: Duration = Duration::from_secs(10);

/// python3 ≥ 3.9 (for `socket.send_fds`) runs the fakes; missing it fails the tests loudly
/// rather than letting them pass without testing anything.
fn fake(steps: &str, succ: &str) -> ServiceCommand {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import socket; socket.send_fds"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "the simulator tests need python3 >= 3.9 in PATH");
    ServiceCommand::new("python3")
        .args(["-c", "import os; exec(os.environ['FAKE_SRC'])"])
        .env("FAKE_SRC", FAKE)
        .env("FAKE_STEPS", steps)
        .env("FAKE_SUCC_STEPS", succ)
}

fn sim(f: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut cfg = SimConfig {
        reload_timeout: Duration::from_secs(1),
        start_timeout: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(5),
        ..SimConfig::default()
    };
    f(&mut cfg);
    Simulator::new(cfg).expect("simulator")
}

fn rules(sim: &Simulator) -> Vec<Rule> {
    sim.violations().iter().map(|v| v.rule).collect()
}

const HANDLERS: &str = "handle HUP\nhandle TERM\n";
/// A correct successor: handler first, then readiness to the spawner, then serve.
const SUCCESSOR: &str = "handle HUP\nhandle TERM\nready_pipe\npause";

#[test]
fn correct_handover_has_no_violations() {
    let steps = format!(
        "{HANDLERS}send READY=1\nwait HUP\nsend RELOADING=1\\nMONOTONIC_USEC=$MONO\n\
         spawn double\nsend MAINPID=$CHILD\\nREADY=1\\nSTATUS=handed over to $CHILD\n\
         sleep 0.2\nexit 0"
    );
    let cmd = fake(&steps, SUCCESSOR);
    let sim = sim(|_| {});
    let old = sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let out = sim.reload(T).expect("reload");
    assert_eq!(out.old_main, old);
    assert_ne!(out.new_main, old);
    assert_eq!(sim.main_pid(), Some(out.new_main));
    assert_eq!(out.status, Some(format!("handed over to {}", out.new_main)));
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    // The old process drains and exits 0; the unit keeps running on the successor.
    sim.wait_state(State::Running, T).expect("running");
    let old_exit = sim.wait_exit(old, T).expect("old main exits");
    assert_eq!(old_exit.exit, Exit::Code(0));
    assert!(!old_exit.was_main);
    assert_eq!(sim.state(), State::Running);
    let stop = sim.stop(libc::SIGTERM, T).expect("stop");
    assert!(stop.sigkilled.is_empty());
    assert!(
        stop.exits
            .iter()
            .any(|e| e.pid == out.new_main && e.exit == Exit::Code(0))
    );
    sim.assert_no_violations();
}

/// Steps for a service that replies to SIGHUP with `reply`, then `READY=1`.
fn reload_reply(reply: &str) -> String {
    format!("{HANDLERS}send READY=1\nwait HUP\n{reply}\nsleep 0.05\nsend READY=1\npause")
}

fn expect_reload_timeout(sim: &Simulator) -> Vec<Violation> {
    match sim.reload(T) {
        Err(SimError::Timeout { violations, .. }) => violations,
        other => panic!("expected the reload to time out, got {other:?}"),
    }
}

#[test]
fn reloading_without_monotonic_usec_times_out() {
    let cmd = fake(&reload_reply("send RELOADING=1"), "");
    let sim = sim(|_| {});
    sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let v = expect_reload_timeout(&sim);
    let r: Vec<Rule> = v.iter().map(|v| v.rule).collect();
    assert_eq!(
        r,
        [
            Rule::ReloadingWithoutMonotonicUsec,
            Rule::ReadyWithoutReloading,
            Rule::ReloadTimeout
        ]
    );
    assert_eq!(v[0].datagram, "RELOADING=1");
    assert!(v[0].to_string().contains("\"RELOADING=1\""), "{}", v[0]);
    assert_eq!(
        sim.state(),
        State::Running,
        "a timed-out reload returns to running"
    );
    assert_eq!(sim.reloads()[0].result, Some(ReloadResult::Timeout));
}

#[test]
fn split_datagram_is_a_violation() {
    let reply = "send RELOADING=1\nsend MONOTONIC_USEC=$MONO";
    let cmd = fake(&reload_reply(reply), "");
    let sim = sim(|_| {});
    sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let r: Vec<Rule> = expect_reload_timeout(&sim).iter().map(|v| v.rule).collect();
    assert_eq!(
        r,
        [
            Rule::ReloadingWithoutMonotonicUsec,
            Rule::MonotonicUsecWithoutReloading,
            Rule::ReadyWithoutReloading,
            Rule::ReloadTimeout
        ]
    );
}

#[test]
fn stale_and_wall_clock_monotonic_usec_are_violations() {
    for (stamp, rule) in [
        ("$STALE", Rule::StaleMonotonicUsec),
        ("$REALTIME", Rule::BadMonotonicUsec),
    ] {
        let reply = format!("send RELOADING=1\\nMONOTONIC_USEC={stamp}");
        let cmd = fake(&reload_reply(&reply), "");
        let sim = sim(|_| {});
        sim.spawn(cmd).expect("spawn");
        sim.wait_ready(T).expect("ready");
        let r: Vec<Rule> = expect_reload_timeout(&sim).iter().map(|v| v.rule).collect();
        assert_eq!(
            r,
            [rule, Rule::ReadyWithoutReloading, Rule::ReloadTimeout],
            "{stamp}"
        );
    }
}

#[test]
fn successor_announcing_itself_under_main_is_ignored_and_unit_dies() {
    let steps = format!(
        "{HANDLERS}send READY=1\nwait HUP\nsend RELOADING=1\\nMONOTONIC_USEC=$MONO\n\
         spawn double\nsleep 0.3\nexit 0"
    );
    let succ = "handle HUP\nhandle TERM\nsend MAINPID=$PID\\nREADY=1\nready_pipe\npause";
    let cmd = fake(&steps, succ);
    let sim = sim(|c| c.reload_timeout = Duration::from_secs(5));
    let old = sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    match sim.reload(T) {
        Err(SimError::MainExited { pid, exit, .. }) => {
            assert_eq!((pid, exit), (old, Exit::Code(0)));
        }
        other => panic!("expected MainExited, got {other:?}"),
    }
    sim.wait_state(State::Dead, T).expect("unit stopped");
    let v = sim.violations();
    let unauthorized = v
        .iter()
        .find(|v| v.rule == Rule::Unauthorized)
        .expect("unauthorized");
    assert_ne!(unauthorized.sender_pid, Some(old));
    assert!(unauthorized.datagram.starts_with("MAINPID="));
    assert!(rules(&sim).contains(&Rule::MainExitedDuringReload));
    // systemd's stop took the successor down with the unit.
    let succ_pid = unauthorized.sender_pid.expect("sender");
    assert!(sim.exits().iter().any(|e| e.pid == succ_pid));
}

#[test]
fn plain_forked_successor_is_an_alien_main_pid() {
    let steps = format!(
        "{HANDLERS}send READY=1\nwait HUP\nsend RELOADING=1\\nMONOTONIC_USEC=$MONO\n\
         spawn single\nsend MAINPID=$CHILD\\nREADY=1\npause"
    );
    let cmd = fake(&steps, SUCCESSOR);
    let sim = sim(|_| {});
    sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let out = sim
        .reload(T)
        .expect("systemd accepts an alien main pid, with a warning");
    assert_eq!(out.violations.len(), 1, "{:?}", out.violations);
    assert_eq!(out.violations[0].rule, Rule::AlienMainPid);
    assert_eq!(sim.main_pid(), Some(out.new_main));
    let stop = sim.stop(libc::SIGTERM, T).expect("stop");
    assert_eq!(stop.exits.len(), 2);
}

#[test]
fn ready_before_reload_handler_fails_the_start() {
    let cmd = fake("send READY=1\npause", "");
    let sim = sim(|_| {});
    sim.spawn(cmd).expect("spawn");
    match sim.wait_ready(T) {
        Err(SimError::Violation(v)) => assert_eq!(v[0].rule, Rule::ReloadSignalNotCaught),
        other => panic!("expected a protocol failure, got {other:?}"),
    }
    sim.wait_state(State::Dead, T).expect("stopped");
    assert_eq!(sim.exits()[0].exit, Exit::Signal(libc::SIGTERM));
}

#[test]
fn stopping_beats_ready_beats_reloading() {
    let steps = format!(
        "{HANDLERS}send READY=1\n\
         send READY=1\\nRELOADING=1\\nMONOTONIC_USEC=$MONO\n\
         wait HUP\nsend RELOADING=1\\nREADY=1\\nMONOTONIC_USEC=$MONO\n\
         wait HUP\nsend STOPPING=1\\nREADY=1\\nRELOADING=1\\nMONOTONIC_USEC=$MONO\n\
         sleep 0.1\nexit 0"
    );
    let cmd = fake(&steps, "");
    let sim = sim(|_| {});
    sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    sim.wait_message(|m| m.datagram.starts_with("READY=1\nRELOADING=1"), T)
        .expect("second datagram");
    // READY=1 won: no service-initiated reload began.
    assert_eq!(sim.state(), State::Running);
    assert!(sim.reloads().is_empty());
    // Combined RELOADING=1 + READY=1 completes the reload at once.
    let out = sim.reload(T).expect("combined reload");
    assert_eq!(out.new_main, out.old_main);
    // STOPPING=1 wins over both.
    match sim.reload(T) {
        Err(SimError::InvalidState { .. }) => {}
        other => panic!("expected the unit to stop, got {other:?}"),
    }
    sim.wait_state(State::Dead, T).expect("dead");
    assert_eq!(sim.reloads()[1].result, Some(ReloadResult::Stopped));
    sim.assert_no_violations();
}

#[test]
fn socket_activation_env_is_exact() {
    let cmd = fake(&format!("{HANDLERS}check_listen\nsend READY=1\npause"), "");
    let http = TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ports = format!(
        "{},{}",
        http.local_addr().expect("addr").port(),
        admin.local_addr().expect("addr").port()
    );
    let sim = sim(|_| {});
    let pid = sim
        .spawn(cmd.listener("http", http).listener("admin", admin))
        .expect("spawn");
    sim.wait_ready(T).expect("ready");
    assert_eq!(
        sim.status(),
        Some(format!(
            "pid={pid} listen_pid={pid} fds=2 names=http:admin ports={ports} accepting=1,1 next_fd=closed"
        ))
    );
    sim.stop(libc::SIGTERM, T).expect("stop");
    sim.assert_no_violations();
}

#[test]
fn stop_escalates_to_sigkill() {
    let cmd = fake("handle HUP\nignore TERM\nsend READY=1\npause", "");
    let sim = sim(|_| {});
    let pid = sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let stop = sim
        .stop(libc::SIGTERM, Duration::from_millis(300))
        .expect("stop");
    assert_eq!(stop.sigkilled, [pid]);
    assert_eq!(stop.exits[0].exit, Exit::Signal(libc::SIGKILL));
    assert!(stop.duration >= Duration::from_millis(300));
}

#[test]
fn malformed_fields_and_fd_store() {
    let steps = format!(
        "{HANDLERS}send READY=1\nsend STATUS=x\\nREADY\\nWATCHDOG=1\nsend READY=true\n\
         send STATUS=\\xff\nsend_fd FDSTORE=1\\nFDNAME=db\nsend_fd STATUS=y\nsend ERRNO=5\npause"
    );
    let cmd = fake(&steps, "");
    let sim = sim(|c| c.fdstore_max = 1);
    sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    sim.wait_message(|m| m.datagram == "ERRNO=5", T)
        .expect("last datagram");
    assert_eq!(
        rules(&sim),
        [
            Rule::MalformedField,
            Rule::MalformedField,
            Rule::MalformedDatagram,
            Rule::UnexpectedFds
        ]
    );
    assert_eq!(sim.stored_fd_names(), ["db"]);
    assert_eq!(sim.errno(), Some(5));
    assert_eq!(sim.watchdog_pings(), 1);
    assert_eq!(sim.status().as_deref(), Some("y"));
}

#[test]
fn notify_access_all_accepts_members_and_flags_foreign_stopping() {
    let steps = format!("{HANDLERS}send READY=1\nspawn double\npause");
    let succ = "handle TERM\nsend STATUS=from child\nsend STOPPING=1\nready_pipe\npause";
    let cmd = fake(&steps, succ);
    let sim = sim(|c| c.notify_access = NotifyAccess::All);
    sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let v = sim
        .wait_violation(Rule::StoppingFromNonMain, T)
        .expect("violation");
    assert_eq!(
        sim.status().as_deref(),
        Some("from child"),
        "members may notify under all"
    );
    assert!(v.datagram.contains("STOPPING=1"));
    // Under `all` systemd obeys: the unit stops once the main process exits.
    sim.stop(libc::SIGTERM, T).expect("stop");
}

#[test]
fn main_pid_outside_the_unit_or_dead_is_refused() {
    let steps = format!(
        "{HANDLERS}send MAINPID={}\nsend MAINPID=4194305\nsend READY=1\npause",
        std::process::id()
    );
    let cmd = fake(&steps, "");
    let sim = sim(|_| {});
    let pid = sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    assert_eq!(rules(&sim), [Rule::MainPidNotMember, Rule::MainPidDead]);
    assert_eq!(sim.main_pid(), Some(pid));
    assert_eq!(sim.members(), [pid]);
}

#[test]
fn handover_by_pidfd() {
    let steps = format!(
        "{HANDLERS}send READY=1\nwait HUP\nsend RELOADING=1\\nMONOTONIC_USEC=$MONO\n\
         spawn double\nsend_pidfd MAINPIDFD=1\\nREADY=1\nsleep 0.1\nexit 0"
    );
    let cmd = fake(&steps, SUCCESSOR);
    let sim = sim(|_| {});
    let old = sim.spawn(cmd).expect("spawn");
    sim.wait_ready(T).expect("ready");
    let out = sim.reload(T).expect("reload");
    assert_ne!(out.new_main, old);
    let exit = sim.wait_exit(old, T).expect("old main exits");
    assert_eq!(exit.exit, Exit::Code(0));
    assert_eq!(sim.state(), State::Running);
    sim.stop(libc::SIGTERM, T).expect("stop");
    sim.assert_no_violations();
}
