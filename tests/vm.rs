//! `exuvia vm` on bad input, as a user meets it: exit status 2, one line that says what is
//! wrong and what to do, and nothing left behind — no container or process, no cgroup, no
//! mount, no loop device, no scratch directory, no half-built rootfs.
//!
//! The checks on the host side run anywhere. The ones that need a guest (units the guest's
//! systemd rejects, an ExecReload= program the guest lacks, a socket that cannot bind, a
//! mirror that cannot be reached) need root and build or reuse the trixie rootfs in
//! $EXUVIA_CACHE (CI has both); without root they print why they are skipped.
#![cfg(feature = "cli")]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;

/// Generous: a preflight boots nothing and takes about a second, a scenario a few.
const LIMIT: Duration = Duration::from_secs(600);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    pid: u32,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Skips (with the reason printed) a test that needs root.
macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: exuvia vm boots containers, which needs root (CI runs as root)");
            return;
        }
    };
}

/// `exuvia vm ARGS…` with scratch's tmp as TMPDIR and its logs in scratch, bounded.
fn vm(scratch: &Scratch, args: &[&str], env: &[(&str, &str)], prefix: &[&str]) -> Run {
    let tmp = scratch.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let logs = scratch.path("logs");
    let exe = env!("CARGO_BIN_EXE_exuvia");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = cmd
        .arg("vm")
        .arg("--log-dir")
        .arg(&logs)
        .args(args)
        .env("TMPDIR", &tmp)
        .envs(env.iter().copied())
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
    let pid = child.id();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("exuvia vm ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        pid,
    }
}

/// Exit 2, one stderr line containing `hint`, and nothing of this run left on the host.
fn assert_refused(run: &Run, scratch: &Scratch, hint: &str) {
    assert_eq!(run.code, 2, "{}", run.show());
    let lines: Vec<&str> = run
        .stderr
        .lines()
        // Progress lines (tools installed, a rootfs built, a guest started) are not errors.
        .filter(|l| {
            !l.starts_with("exuvia vm: installing")
                && !l.starts_with("exuvia vm: building")
                && !l.starts_with("exuvia vm: built")
                && !l.ends_with(" ...")
        })
        .collect();
    assert_eq!(lines.len(), 1, "want one line\n{}", run.show());
    assert!(lines[0].contains(hint), "{hint:?} not in {:?}", lines[0]);
    assert_nothing_left(run.pid, scratch);
}

fn assert_nothing_left(pid: u32, scratch: &Scratch) {
    let machine = format!("exuvia-vm-{pid}-");
    // Scratch directories (payload, disks) lived under TMPDIR.
    let tmp: Vec<PathBuf> = std::fs::read_dir(scratch.path("tmp"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "left in TMPDIR: {tmp:?}");
    // Processes (nspawn, the container's init) carry the machine name on their command line.
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(!cmd.contains(&machine), "still running: {cmd}");
        }
    }
    // Cgroups, one per container.
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(&machine), "cgroup left: {root}/{name}");
            }
        }
    }
    // Mounts and loop devices that point into the scratch directory.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let s = scratch.0.to_string_lossy().into_owned();
    assert!(
        !mounts.contains(&s) && !mounts.contains(&machine),
        "a mount is left:\n{mounts}"
    );
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.filter_map(|e| e.ok()) {
            let backing =
                std::fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
            assert!(!backing.contains(&s), "loop device left: {backing}");
        }
    }
}

fn write(scratch: &Scratch, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = scratch.path(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

const SERVICE: &str = "[Unit]\nDescription=t\n\n[Service]\nType=notify-reload\nNotifyAccess=main\nExecStart=/usr/local/bin/svc\n";

fn socket(listen: &str) -> String {
    format!("[Socket]\nListenStream={listen}\nService=svc.service\n")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A script the guest can run as the service (it never needs to: these runs stop earlier).
fn script(s: &Scratch) -> PathBuf {
    write(s, "svc", "#!/bin/sh\nexec sleep 60\n", 0o755)
}

#[test]
fn binaries_the_guest_cannot_run_are_refused_first() {
    let s = Scratch::new("vm-binary");
    let unit = write(&s, "svc.service", SERVICE, 0o644);
    let sock = write(&s, "svc.socket", &socket("127.0.0.1:8080"), 0o644);
    let noexec = write(&s, "noexec", "#!/bin/sh\nexit 0\n", 0o644);
    let text = write(&s, "text", "just some words, not a program at all", 0o755);
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
    // e_machine: aarch64 on an x86-64 host, x86-64 elsewhere.
    let other: u16 = if std::env::consts::ARCH == "aarch64" {
        62
    } else {
        183
    };
    elf.extend_from_slice(&other.to_le_bytes());
    elf.extend_from_slice(&[0; 44]);
    let arm = s.path("foreign-arch");
    std::fs::write(&arm, &elf).unwrap();
    std::fs::set_permissions(&arm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (bin, hint) in [
        (&noexec, "is not executable (chmod +x"),
        (&text, "is neither an ELF executable nor a script"),
        (&arm, "is built for"),
        (&s.path("missing"), "No such file"),
    ] {
        let run = vm(
            &s,
            &["--binary", p(bin), "--unit", p(&unit), "--unit", p(&sock)],
            &[],
            &[],
        );
        assert_refused(&run, &s, hint);
    }
}

#[test]
fn clashing_sockets_and_unknown_versions_are_refused_first() {
    let s = Scratch::new("vm-clash");
    let bin = script(&s);
    let unit = write(&s, "svc.service", SERVICE, 0o644);
    let a = write(&s, "a.socket", &socket("127.0.0.1:8080"), 0o644);
    let b = write(&s, "b.socket", &socket("0.0.0.0:8080"), 0o644);
    let args = ["--binary", p(&bin), "--unit", p(&unit), "--unit", p(&a)];
    let run = vm(&s, &[&args[..], &["--unit", p(&b)]].concat(), &[], &[]);
    assert_refused(
        &run,
        &s,
        "port clash: ListenStream= 0.0.0.0:8080 in b.socket",
    );
    let run = vm(&s, &[&args[..], &["--systemd", "251"]].concat(), &[], &[]);
    assert_refused(&run, &s, "unknown systemd version or suite \"251\"");
    let run = vm(
        &s,
        &[&args[..], &["--scenarios", "reload,upgrade"]].concat(),
        &[],
        &[],
    );
    assert_refused(&run, &s, "unknown scenario \"upgrade\"");
    let run = vm(
        &s,
        &[&args[..], &["--in-place", "--scenarios", "replace"]].concat(),
        &[],
        &[],
    );
    assert_refused(&run, &s, "--in-place: scenario replace");
}

/// The fault scenarios say what they need before anything starts: a binary to swap for a
/// slow successor, the line protocol for the live connection, a service that hands over.
#[test]
fn fault_scenarios_state_what_they_need_first() {
    let s = Scratch::new("vm-faults");
    let unit = write(&s, "svc.service", SERVICE, 0o644);
    let sock = write(&s, "svc.socket", &socket("127.0.0.1:8080"), 0o644);
    let units = ["--unit", p(&unit), "--unit", p(&sock)];
    for (extra, hint) in [
        (
            &["--scenarios", "reload,kill-old"][..],
            "scenario kill-old swaps the service binary (a broken or slow successor): give --binary",
        ),
        (
            &["--scenarios", "stop-upgrade"][..],
            "scenario stop-upgrade swaps the service binary",
        ),
        (
            &["--scenarios", "live", "--mode", "http"][..],
            "scenario live talks the line protocol on its long-lived connection: use --mode echo",
        ),
        (
            &["--scenarios", "storm", "--in-place"][..],
            "--in-place: scenario storm needs a service that hands over to a new process",
        ),
    ] {
        let run = vm(&s, &[&units[..], extra].concat(), &[], &[]);
        assert_refused(&run, &s, hint);
    }
}

/// Scenario wrk (named only, not in `all`) says what it needs before anything starts: HTTP, a
/// TCP port to send it to, scripts that exist, and the scenario its flag is for.
#[test]
fn wrk_states_what_it_needs_first() {
    let s = Scratch::new("vm-wrk");
    let unit = write(&s, "svc.service", SERVICE, 0o644);
    let sock = write(&s, "svc.socket", &socket("127.0.0.1:8080"), 0o644);
    let unix = write(&s, "unix/svc.socket", &socket("/run/svc.sock"), 0o644);
    let lua = write(&s, "get.lua", "-- a wrk script\n", 0o644);
    let units = ["--unit", p(&unit), "--unit", p(&sock)];
    let missing = format!("{} post", p(&s.path("nope.lua")));
    let with_lua = format!("{} post", p(&lua));
    for (extra, hint) in [
        (
            &["--scenarios", "wrk"][..],
            "scenario wrk sends HTTP/1.1 requests: use --mode http",
        ),
        (
            &[
                "--scenarios",
                "wrk",
                "--mode",
                "http",
                "--wrk-script",
                &missing,
            ][..],
            "nope.lua is not a file; give 'FILE [ARG...]'",
        ),
        (
            &["--mode", "http", "--wrk-script", &with_lua][..],
            "--wrk-script is for scenario wrk: add it to --scenarios",
        ),
    ] {
        let run = vm(&s, &[&units[..], extra].concat(), &[], &[]);
        assert_refused(&run, &s, hint);
    }
    let run = vm(
        &s,
        &[
            "--unit",
            p(&unit),
            "--unit",
            p(&unix),
            "--scenarios",
            "wrk",
            "--mode",
            "http",
        ],
        &[],
        &[],
    );
    assert_refused(
        &run,
        &s,
        "scenario wrk sends HTTP to a TCP port, and svc.service listens on unix:/run/svc.sock",
    );
}

#[test]
fn without_root_it_says_so() {
    let s = Scratch::new("vm-noroot");
    let unit = write(&s, "svc.service", SERVICE, 0o644);
    let sock = write(&s, "svc.socket", &socket("127.0.0.1:8080"), 0o644);
    let args = ["--unit", p(&unit), "--unit", p(&sock)];
    let prefix: &[&str] = if is_root() {
        // As nobody, the way a CI job without sudo runs it.
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        &[]
    };
    // The scratch tree must be readable by nobody.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&s.0)
        .status();
    let run = vm(&s, &args, &[], prefix);
    assert_refused(&run, &s, "needs root");
}

/// `exuvia vm` on a script service with unit text `service` and a socket on `listen`.
fn service_run(s: &Scratch, service: &str, listen: &str, env: &[(&str, &str)]) -> Run {
    let bin = script(s);
    let unit = write(s, "svc.service", service, 0o644);
    let sock = write(s, "svc.socket", &socket(listen), 0o644);
    let args = ["--binary", p(&bin), "--unit", p(&unit), "--unit", p(&sock)];
    vm(s, &args, env, &[])
}

#[test]
fn units_the_guest_systemd_rejects() {
    need_root!();
    let s = Scratch::new("vm-verify");
    let typo = SERVICE.replace(
        "NotifyAccess=main",
        "NotifyAccess=main\nReloadSignall=SIGHUP",
    );
    let run = service_run(&s, &typo, "127.0.0.1:8080", &[]);
    assert_refused(&run, &s, "rejects the units (systemd-analyze verify)");
    assert!(run.stderr.contains("ReloadSignall"), "{}", run.show());
}

#[test]
fn an_exec_reload_program_the_guest_lacks_is_named() {
    need_root!();
    let s = Scratch::new("vm-missing");
    let text = format!("{SERVICE}ExecReload=/usr/local/bin/exuvia reload --wait\n");
    let run = service_run(&s, &text, "127.0.0.1:8080", &[]);
    assert_refused(&run, &s, "ExecReload=/usr/local/bin/exuvia: not in the");
    assert!(
        run.stderr.contains("its own reload client"),
        "{}",
        run.show()
    );
}

#[test]
fn a_socket_that_cannot_bind_in_the_guest() {
    need_root!();
    let s = Scratch::new("vm-bind");
    // Not an address of the guest (TEST-NET-1): the bind fails at start, inside the guest.
    let run = service_run(&s, SERVICE, "192.0.2.1:8080", &[]);
    assert_refused(&run, &s, "socket unit svc.socket did not start");
}

#[test]
fn a_suite_that_cannot_be_fetched() {
    need_root!();
    let s = Scratch::new("vm-mirror");
    let cache = s.path("cache");
    // Nothing listens on the discard port: the mirror is unreachable.
    let env = [
        ("EXUVIA_CACHE", p(&cache)),
        ("EXUVIA_DEBIAN_MIRROR", "http://127.0.0.1:9/debian"),
    ];
    let run = service_run(&s, SERVICE, "127.0.0.1:8080", &env);
    assert_refused(
        &run,
        &s,
        "cannot build the trixie rootfs from http://127.0.0.1:9/debian",
    );
    let left: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".lock-"))
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

/// The whole path once, as a user runs it: an `exuvia unit` spec rendered for the guest's
/// systemd, the example as the binary, three reloads judged inside, no exuvia CLI in the guest.
#[test]
fn a_spec_and_the_example_pass_under_real_systemd() {
    need_root!();
    let s = Scratch::new("vm-spec");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("units/exuvia-echo.toml");
    let echo = common::example("echo");
    let json = s.path("report.json");
    let args = [
        "--binary",
        p(&echo),
        "--spec",
        p(&spec),
        "--reloads",
        "3",
        "--absent",
        "/usr/local/bin/exuvia",
        "--json",
        p(&json),
    ];
    let run = vm(&s, &args, &[], &[]);
    assert_eq!(run.code, 0, "{}", run.show());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let sc = &report["versions"][0]["scenarios"][0];
    assert_eq!(
        (sc["name"].as_str(), sc["pass"].as_bool()),
        (Some("reload"), Some(true)),
        "{report}"
    );
    assert_eq!(sc["reloads"], 3);
    assert_eq!(sc["failed"], 0);
    let checks: Vec<&str> = sc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for want in [
        "absent:/usr/local/bin/exuvia",
        "check_unit",
        "end_state",
        "load_long_no_failures",
    ] {
        assert!(checks.contains(&want), "{want} missing in {checks:?}");
    }
    assert!(
        run.stdout.contains("exuvia vm: systemd 257"),
        "{}",
        run.show()
    );
    assert_nothing_left(run.pid, &s);
}
