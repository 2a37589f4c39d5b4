//! Faults in the middle of an upgrade, with real processes: running out of fds or
//! processes, either generation SIGKILLed at each step, a pid file that cannot be written,
//! and the wall clock stepped. Each must cost at most what the fault itself destroys (say
//! which), leave exactly one generation serving, and say what happened.
//! (Faults that involve systemd itself — stop during an upgrade, reload storms — run in the
//! real-systemd matrix, tests/systemd/.)

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// Sets the soft limit of `pid`, below its hard limit (raising a hard limit needs
/// CAP_SYS_RESOURCE, which test machines may lack).
fn set_soft_limit(pid: i32, resource: libc::__rlimit_resource_t, soft: u64) {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 reading the limits of a pid this test started into a valid struct.
    let r = unsafe { libc::prlimit64(pid, resource, std::ptr::null(), &mut old) };
    assert_eq!(r, 0, "prlimit({pid}): {}", std::io::Error::last_os_error());
    let new = libc::rlimit64 {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above, with a valid rlimit struct within the hard limit.
    let r = unsafe { libc::prlimit64(pid, resource, &new, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit({pid}): {}", std::io::Error::last_os_error());
}

/// A pids cgroup (what `TasksMax=` uses) of its own, removed on drop.
struct PidsCgroup(std::path::PathBuf);

impl PidsCgroup {
    fn new(tag: &str) -> PidsCgroup {
        let base = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .iter()
            .map(std::path::Path::new)
            .find(|b| b.join("cgroup.procs").exists() && std::fs::create_dir_all(b).is_ok())
            .expect("a pids cgroup hierarchy");
        let dir = base.join(format!("exuvia-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("create a pids cgroup (tests run as root)");
        PidsCgroup(dir)
    }
    fn add(&self, pid: i32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
    fn set_max(&self, max: &str) {
        std::fs::write(self.0.join("pids.max"), max).unwrap();
    }
    fn current(&self) -> String {
        std::fs::read_to_string(self.0.join("pids.current"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let parent = self.0.parent().unwrap().join("cgroup.procs");
        if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for p in procs.lines() {
                let _ = std::fs::write(&parent, p);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn max_fd(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u64>().ok())
        .max()
        .unwrap_or(2)
}

/// Waits until the main process changes or one more upgrade failure is logged.
fn outcome(svc: &Service, old: i32, failures_before: usize) -> Option<i32> {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        match svc.pid() {
            Some(p) if p != old => return Some(p),
            _ => {}
        }
        if svc.count_log("upgrade failed; this generation keeps serving") > failures_before {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no outcome within {T:?}:\n{}", svc.log_tail(30));
}

#[test]
fn running_out_of_fds_before_or_during_an_upgrade_fails_it_cleanly() {
    let dir = Scratch::new("nofile");
    let mut svc = Service::start(&example("echo_sync"), &dir, &["--ready-timeout", "10"]);
    let load = echo_load(svc.target(), 4, Duration::from_secs(120));
    let (mut failed, mut upgraded) = (0, 0);
    // From "not one more fd" (the old process cannot even make the channel) to enough room
    // for the old side but not for the successor's runtime, to plenty.
    // `None`: no new fd at all (every number below the limit is taken).
    for room in [
        None,
        Some(1),
        Some(2),
        Some(4),
        Some(6),
        Some(9),
        Some(16),
        Some(48),
    ] {
        let pid = svc.pid().unwrap();
        let limit = room.map_or(3, |r| max_fd(pid) + r);
        set_soft_limit(pid, libc::RLIMIT_NOFILE, limit);
        let failures = svc.count_log("upgrade failed; this generation keeps serving");
        signal(pid, libc::SIGHUP);
        match outcome(&svc, pid, failures) {
            Some(new) => {
                upgraded += 1;
                svc.note_pid(new);
                set_soft_limit(new, libc::RLIMIT_NOFILE, 4096);
            }
            None => {
                failed += 1;
                set_soft_limit(pid, libc::RLIMIT_NOFILE, 4096);
                let last = svc
                    .log_lines()
                    .into_iter()
                    .rfind(|l| l.contains("upgrade failed"))
                    .unwrap();
                assert!(
                    last.contains("could not start the successor (")
                        || last.contains("failed to start")
                        || last.contains("exited before it was ready"),
                    "a typed reason naming the step: {last}"
                );
            }
        }
        assert_eq!(ask(&svc.target(), "still here"), "still here");
    }
    eprintln!("measured: {failed} upgrades failed cleanly, {upgraded} went through");
    assert!(failed >= 1, "the tightest limits must fail the upgrade");
    assert!(upgraded >= 1, "enough room must let it through");
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    // Failed upgrades leak nothing: quiet, the process holds exactly what it held before.
    let pid = svc.pid().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let quiet = fd_count(pid);
    for room in [0, 1, 2, 3, 4, 5] {
        set_soft_limit(pid, libc::RLIMIT_NOFILE, max_fd(pid) + room);
        let failures = svc.count_log("upgrade failed; this generation keeps serving");
        signal(pid, libc::SIGHUP);
        if let Some(new) = outcome(&svc, pid, failures) {
            svc.note_pid(new);
            break;
        }
        set_soft_limit(pid, libc::RLIMIT_NOFILE, 4096);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            fd_count(pid),
            quiet,
            "fds after a failed upgrade (room {room})"
        );
    }
    svc.stop();
}

#[test]
fn hitting_the_process_limit_at_fork_fails_cleanly() {
    let dir = Scratch::new("nproc");
    let mut svc = Service::start(&example("echo"), &dir, &[]);
    let load = echo_load(svc.target(), 4, Duration::from_secs(60));
    let pid = svc.pid().unwrap();
    // TasksMax= reached: the service has every task it may have, so the fork fails.
    let cg = PidsCgroup::new("nproc");
    cg.add(pid);
    cg.set_max(&cg.current());
    let failures = svc.count_log("upgrade failed; this generation keeps serving");
    signal(pid, libc::SIGHUP);
    assert_eq!(outcome(&svc, pid, failures), None);
    let last = svc
        .log_lines()
        .into_iter()
        .rfind(|l| l.contains("upgrade failed"))
        .unwrap();
    assert!(
        last.contains("could not start the successor (fork"),
        "{last}"
    );
    assert_eq!(ask(&svc.target(), "x"), "x");
    cg.set_max("max");
    svc.upgrade(T);
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    svc.stop();
}

/// Starts an upgrade whose successor takes 1.5 s to initialise; returns the old pid once the
/// successor exists, and the successor's pid once it has said ready (with the old stopped).
fn slow_upgrade(svc: &Service, fail: &std::path::Path) -> i32 {
    std::fs::write(fail, "slow").unwrap();
    let old = svc.pid().unwrap();
    let started = svc.count_log("successor started");
    signal(old, libc::SIGHUP);
    let deadline = Instant::now() + T;
    while svc.count_log("successor started") == started {
        assert!(Instant::now() < deadline, "{}", svc.log_tail(20));
        std::thread::sleep(Duration::from_millis(2));
    }
    old
}

fn wait_log_count(svc: &Service, needle: &str, more_than: usize) {
    let deadline = Instant::now() + T;
    while svc.count_log(needle) <= more_than {
        assert!(
            Instant::now() < deadline,
            "no {needle:?}:\n{}",
            svc.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGSTOP, and wait until the process really is stopped (delivery is asynchronous).
fn stop(pid: i32) {
    signal(pid, libc::SIGSTOP);
    let deadline = Instant::now() + T;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
        if state == Some('T') {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not stop: {stat}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn alive_generations(svc: &Service) -> Vec<i32> {
    svc.pids().iter().copied().filter(|p| alive(*p)).collect()
}

#[test]
fn sigkill_of_either_generation_at_each_step_leaves_exactly_one_serving() {
    let dir = Scratch::new("sigkill");
    let fail = dir.path("fail");
    let mut svc = Service::start(
        &example("echo"),
        &dir,
        &[
            "--fail-file",
            fail.to_str().unwrap(),
            "--ready-timeout",
            "10",
        ],
    );
    let readied = "ready; waiting for the previous generation to hand over";

    // 1. The old main dies while its successor initialises: the successor finds nobody to
    //    hand over and serves alone. Cost: requests in flight on the killed process.
    let load = echo_load(svc.target(), 4, Duration::from_secs(120));
    let old = slow_upgrade(&svc, &fail);
    signal(old, libc::SIGKILL);
    let new = svc
        .wait_pid_change(Some(old), T)
        .expect("the successor serves");
    svc.note_pid(new);
    assert_eq!(ask(&svc.target(), "1"), "1");
    assert_eq!(alive_generations(&svc), [new]);
    let r = load.stop();
    eprintln!(
        "measured: old killed before ready: {} ok, {} failed",
        r.ok, r.failed
    );
    assert!(
        r.failed <= 4,
        "at most the requests the killed process held: {r}"
    );

    // 2. The old main dies after the successor said ready, before it handed over.
    let load = echo_load(svc.target(), 4, Duration::from_secs(120));
    let readies = svc.count_log(readied);
    let old = slow_upgrade(&svc, &fail);
    stop(old);
    wait_log_count(&svc, readied, readies);
    signal(old, libc::SIGKILL);
    let new = svc
        .wait_pid_change(Some(old), T)
        .expect("the successor serves");
    svc.note_pid(new);
    assert_eq!(ask(&svc.target(), "2"), "2");
    assert_eq!(alive_generations(&svc), [new]);
    let r = load.stop();
    eprintln!(
        "measured: old killed between ready and handover: {} ok, {} failed",
        r.ok, r.failed
    );
    assert!(r.failed <= 4, "{r}");

    // 3. The successor dies right after it said ready: the old process must not hand over
    //    to a dead process. It keeps serving and says why.
    let load = echo_load(svc.target(), 4, Duration::from_secs(120));
    let readies = svc.count_log(readied);
    let old = slow_upgrade(&svc, &fail);
    stop(old);
    wait_log_count(&svc, readied, readies);
    let successor = svc
        .log_lines()
        .into_iter()
        .rfind(|l| l.contains("successor started"))
        .and_then(|l| {
            l.split("successor_pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<i32>()
                .ok()
        })
        .expect("successor pid in the log");
    signal(successor, libc::SIGKILL);
    assert!(wait_dead(successor, T));
    // A leader shows as a zombie before its other threads have exited; its pidfd reports
    // the exit only once they have. Let that happen before the old process looks.
    std::thread::sleep(Duration::from_millis(100));
    signal(old, libc::SIGCONT);
    wait_log_count(&svc, "died right after it said ready", 0);
    assert_eq!(svc.pid(), Some(old));
    assert_eq!(ask(&svc.target(), "3"), "3");
    assert_eq!(alive_generations(&svc), [old]);
    let r = load.stop();
    eprintln!(
        "measured: successor killed after ready: {} ok, {} failed",
        r.ok, r.failed
    );
    assert!(
        r.failed <= 4,
        "at most what the successor accepted before it died: {r}"
    );

    // 4. The old generation dies while draining: only its own long-lived connection is cut.
    std::fs::remove_file(&fail).unwrap();
    let long = long_load(svc.target(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(200));
    let load = echo_load(svc.target(), 4, Duration::from_secs(120));
    let old = svc.pid().unwrap();
    let new = svc.upgrade(T);
    signal(old, libc::SIGKILL);
    assert!(wait_dead(old, T));
    assert_eq!(ask(&svc.target(), "4"), "4");
    assert_eq!(alive_generations(&svc), [new]);
    let r = load.stop();
    assert_eq!(r.failed, 0, "new connections go to the successor: {r}");
    let l = long.stop();
    eprintln!(
        "measured: old killed while draining: long-lived {} ok, {} failed",
        l.ok, l.failed
    );
    svc.stop();
}

#[test]
fn an_unwritable_pid_file_is_reported_and_changes_nothing_else() {
    let dir = Scratch::new("pidfile");
    let ctl = dir.path("control.sock");
    let mut child = std::process::Command::new(example("echo"))
        .args(["--listen", &free_addr().to_string()])
        .args(["--pid-file", "/proc/exuvia-no-such-dir/echo.pid"])
        .args(["--control", ctl.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    while !ctl.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let up = exuvia::control::request_upgrade(&ctl, T).expect("upgrades still work");
    assert_eq!(up.generation, 2);
    signal(up.pid, libc::SIGTERM);
    assert!(wait_dead(up.pid, T));
    let _ = child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("could not write the pid file"), "{err}");
}

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The year-to-second wall-clock part of a tracing log line, in seconds since the epoch day.
fn wall_seconds(line: &str) -> Option<i64> {
    let t = line.split('T').nth(1)?.get(..8)?;
    let mut parts = t.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    let day: i64 = line.get(8..10)?.parse().ok()?;
    Some(day * 86400 + h * 3600 + m * 60 + s)
}

/// Deadlines run on the monotonic clock: stepping the wall clock by an hour either way in the
/// middle of an upgrade (ready deadline) or of a drain (hard deadline) changes nothing.
#[test]
fn stepping_the_wall_clock_moves_no_deadline() {
    if !std::path::Path::new(FAKETIME).exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but libfaketime is missing: .ci/run installs the faketime package"
        );
        eprintln!("skipped: {FAKETIME} is missing (apt-get install faketime)");
        return;
    }
    for step in ["+1h", "-1h"] {
        let dir = Scratch::new(&format!("clock{}", &step[..1]));
        let clock = dir.path("clock");
        std::fs::write(&clock, "+0").unwrap();
        let fail = dir.path("fail");
        let env = [
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("EXUVIA_DRAIN_HARD", "2s"),
        ];
        let svc = Service::start_with_env(
            &example("echo"),
            &dir,
            &[
                "--fail-file",
                fail.to_str().unwrap(),
                "--ready-timeout",
                "2",
            ],
            &env,
        );
        // The ready deadline: a hanging successor is given up after 2 s of real time.
        std::fs::write(&fail, "hang").unwrap();
        let pid = svc.pid().unwrap();
        let t0 = Instant::now();
        signal(pid, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(&clock, step).unwrap();
        assert!(svc.wait_log("was not ready within 2s", Duration::from_secs(10)));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
            "ready deadline of 2 s took {took:?} with the wall clock stepped {step}"
        );
        // The step really reached the process: its log's wall clock jumped by about an hour.
        let lines = svc.log_lines();
        let at = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .and_then(|l| wall_seconds(l))
                .expect(needle)
        };
        let jump = at("was not ready within") - at("upgrade requested by signal");
        assert!(
            jump.abs() > 3000,
            "wall clock moved {jump} s, expected about {step}"
        );

        // The hard drain deadline, with an idle connection holding the drain open.
        std::fs::write(&clock, "+0").unwrap();
        let conn = std::net::TcpStream::connect(svc.addr).unwrap();
        assert_eq!(ask(&svc.target(), "x"), "x");
        let t0 = Instant::now();
        signal(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(&clock, step).unwrap();
        assert!(wait_dead(pid, Duration::from_secs(10)));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
            "hard drain deadline of 2 s took {took:?} with the wall clock stepped {step}"
        );
        drop(conn);
        eprintln!("measured: wall clock {step}: both deadlines held");
    }
}

fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// `WATCHDOG_USEC=1` and a manager that stops reading its notify socket: exuvia pings at a
/// bounded rate, never blocks its control loop on the full socket, and still stops on SIGTERM.
#[test]
fn a_tiny_watchdog_and_a_stuck_manager_neither_spin_nor_block() {
    let dir = Scratch::new("watchdog");
    let notify = dir.path("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let svc = Service::start_with_env(
        &example("echo"),
        &dir,
        &[],
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "1"),
        ],
    );
    let pid = svc.pid().unwrap();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        used * 4 < hz * 2,
        "{used} ticks of CPU in 2 s (hz {hz}): spinning"
    );
    assert!(svc.wait_log("WATCHDOG_USEC is too short", Duration::from_secs(1)));
    assert_eq!(ask(&svc.target(), "x"), "x");
    let t0 = Instant::now();
    signal(pid, libc::SIGTERM);
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "SIGTERM not handled"
    );
    eprintln!(
        "measured: WATCHDOG_USEC=1 with a stuck manager: {used} ticks of CPU in 2 s, stopped in {:?}",
        t0.elapsed()
    );
    drop(manager);
}
