//! Helpers for integration tests that run the example servers as real processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exuvia_testing::load::{self, LoadConfig, Target};

/// `target/<profile>/examples/NAME`, built by `cargo test` alongside the tests.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test` so examples are built",
        p.display()
    );
    p
}

/// A free loopback port (bind :0, read it, release it).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("exuvia-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Installs `src` at `dst` by copy + rename, the way a package manager replaces a binary.
pub fn install(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

/// A service started from a binary path, with its stderr collected for assertions.
pub struct Service {
    pub child: Child,
    pub pid_file: PathBuf,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    pids: Vec<i32>,
}

impl Service {
    pub fn start(exe: &Path, scratch: &Scratch, extra: &[&str]) -> Service {
        Service::start_with_env(exe, scratch, extra, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(
        exe: &Path,
        scratch: &Scratch,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        Service::start_as(exe, scratch, extra, env, None)
    }

    /// Like [`start_with_env`](Self::start_with_env), as user `uid` (the scratch directory is
    /// made writable for it).
    pub fn start_as(
        exe: &Path,
        scratch: &Scratch,
        extra: &[&str],
        env: &[(&str, &str)],
        uid: Option<u32>,
    ) -> Service {
        let addr = free_addr();
        let pid_file = scratch.path("pid");
        let mut cmd = Command::new(exe);
        if let Some(uid) = uid {
            use std::os::unix::fs::PermissionsExt;
            use std::os::unix::process::CommandExt;
            std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o777)).unwrap();
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd
            .args([
                "--listen",
                &addr.to_string(),
                "--pid-file",
                pid_file.to_str().unwrap(),
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(strip_ansi(&line));
            }
        });
        let mut s = Service {
            child,
            pid_file,
            addr,
            log,
            pids: Vec::new(),
        };
        let first = s
            .wait_pid_change(None, Duration::from_secs(10))
            .expect("service did not start");
        s.pids.push(first);
        s
    }

    pub fn target(&self) -> Target {
        Target::Tcp(self.addr)
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Records a generation this test saw take over by other means than [`upgrade`].
    pub fn note_pid(&mut self, pid: i32) {
        if !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
    }

    /// Every generation's pid seen so far.
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    /// Waits until the pid file names a pid other than `old` (and that pid answers).
    pub fn wait_pid_change(&self, old: Option<i32>, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(p) = self.pid() {
                if Some(p) != old {
                    return Some(p);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    /// SIGHUP to the current generation; waits for the next one to take over.
    pub fn upgrade(&mut self, timeout: Duration) -> i32 {
        let old = self.pid().expect("pid file");
        signal(old, libc::SIGHUP);
        let new = self.wait_pid_change(Some(old), timeout).unwrap_or_else(|| {
            panic!(
                "no takeover within {timeout:?}; log tail:\n{}",
                self.log_tail(30)
            )
        });
        self.pids.push(new);
        new
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log.lock().unwrap();
        l[l.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count_log(needle) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Sends SIGTERM to the current generation and waits (bounded) for every generation
    /// this test saw to exit.
    pub fn stop(mut self) {
        if let Some(p) = self.pid() {
            signal(p, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && self.pids.iter().any(|p| alive(*p)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Only pids this test started (directly or as successors it watched take over).
        for p in self.pids.iter().copied().chain(self.pid()) {
            if alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `pid` has exited; true if it did.
pub fn wait_dead(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    !alive(pid)
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid this test started.
    unsafe { libc::kill(pid, sig) };
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|st| st != 'Z'),
        Err(_) => false,
    }
}

/// Zombie processes whose parent is one of `parents`.
pub fn zombie_children_of(parents: &[i32]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid: i32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == Some("Z") && parents.contains(&ppid) {
            out.push(pid);
        }
    }
    out
}

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Numeric `key=value` fields from log lines containing `needle`.
pub fn log_field(lines: &[String], needle: &str, key: &str) -> Vec<u64> {
    let pat = format!("{key}=");
    lines
        .iter()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&pat))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// p-th percentile (0–100) of `v`.
pub fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

/// Echo load with `connections` clients, bounded by `duration`.
pub fn echo_load(target: Target, connections: u32, duration: Duration) -> load::LoadHandle {
    let mut cfg = LoadConfig::new(target);
    cfg.connections = connections;
    cfg.duration = duration;
    cfg.timeout = Duration::from_secs(10);
    load::start(cfg).expect("start load")
}

/// One long-lived connection echoing every 20 ms.
pub fn long_load(target: Target, duration: Duration) -> load::LoadHandle {
    let mut cfg = LoadConfig::new(target);
    cfg.mode = load::Mode::Long;
    cfg.connections = 1;
    cfg.duration = duration;
    cfg.timeout = Duration::from_secs(10);
    load::start(cfg).expect("start load")
}

/// One request/answer round trip.
pub fn ask(target: &Target, line: &str) -> String {
    load::request_once(target, line, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("request {line:?}: {e}"))
}
