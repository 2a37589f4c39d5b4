//! The four ways to replace a running server (echo, UDP echo or HTTP), and one upgrade
//! measured from outside.
//!
//! Every timing starts at the trigger (the SIGHUP for exuvia and ecdysis, the SIGTERM for a
//! naive restart, the spawn of the second process for SO_REUSEPORT) and is taken on
//! CLOCK_MONOTONIC: "successor serving" is the first connection the new process accepted
//! (it records that itself, the same code in every server), "old listener closed" is the
//! first poll of /proc/OLD/fd that finds none of its fds on the listening socket any more.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exuvia_testing::load::{self, Target};

use crate::procfs;
use crate::server::mono_ns;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exuvia,
    Ecdysis,
    Naive,
    Reuseport,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Exuvia, Kind::Ecdysis, Kind::Naive, Kind::Reuseport];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Exuvia => "exuvia",
            Kind::Ecdysis => "ecdysis",
            Kind::Naive => "naive restart",
            Kind::Reuseport => "SO_REUSEPORT",
        }
    }
}

/// Which binary and flags run a server; `Plain` is the throughput baseline, `Before` the
/// exuvia server built against another revision of the library (`--baseline DIR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    Plain,
    Of(Kind),
    Before,
}

/// What the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Line echo over TCP, one connection per request.
    Echo,
    /// Datagram echo over UDP.
    Udp,
    /// The axum app of `http_app.rs`.
    Http,
}

/// Extra behaviour asked of an exuvia server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// Write the library's timeline to `DIR/timeline`.
    pub timeline: bool,
    /// Hand open connections to the successor.
    pub handoff: bool,
}

/// Longest wait for any single step of an upgrade.
const STEP_LIMIT: Duration = Duration::from_secs(15);
/// Poll interval of the upgrade monitor.
const POLL: Duration = Duration::from_micros(250);
/// Process-count sampling interval during an upgrade.
const PROC_SAMPLE_NS: u64 = 2_000_000;

pub struct Setup {
    pub bins: PathBuf,
    /// Binaries built against another revision of the library, for `Build::Before`.
    pub baseline: Option<PathBuf>,
    pub drain_hard: Duration,
}

/// One running contender (its current generation and the files it shares with the driver).
pub struct Server {
    pub build: Build,
    pub proto: Proto,
    pub port: u16,
    pub current: i32,
    /// Every process that was a generation of this server (to tell them from the rest).
    pub generations: HashSet<i32>,
    pub dir: PathBuf,
    marks: PathBuf,
    bins: PathBuf,
    baseline: Option<PathBuf>,
    extras: Extras,
    drain_hard: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub completed: bool,
    pub serving_ms: f64,
    pub closed_ms: f64,
    pub rss_old_kib: u64,
    pub rss_new_kib: u64,
    pub peak_live: usize,
    /// Most live processes at one time that were not generations (the double fork's
    /// intermediate, for exuvia) — sampled every 2 ms, so it can miss one shorter than that.
    pub peak_extra: usize,
    pub old_pid: i32,
    pub new_pid: i32,
    /// The trigger, CLOCK_MONOTONIC µs (to line up the servers' own timeline).
    pub t0_us: u64,
    pub note: String,
}

/// A free port *below* the ephemeral range: while a naive restart leaves the port unbound,
/// a client's connect could otherwise pick it as its own source port (a TCP self-connect)
/// and the new server would fail with EADDRINUSE.
fn free_port() -> std::io::Result<u16> {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|v| v.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999));
    let (start, end) = if lo > 11_000 {
        (10_000, lo)
    } else {
        (hi.saturating_add(1), 65_535)
    };
    let span = u32::from(end - start);
    let seed = (crate::server::mono_ns() as u32) ^ std::process::id().wrapping_mul(2654435761);
    for i in 0..span.min(2000) {
        let port = start + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// First-accept marks written since the last call, as (pid, CLOCK_MONOTONIC ns); consumed.
fn take_marks(dir: &Path) -> Vec<(i32, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(ns) = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            out.push((pid, ns));
            let _ = std::fs::remove_file(e.path());
        }
    }
    out
}

fn ms_since(t0: u64, t: u64) -> f64 {
    t.saturating_sub(t0) as f64 / 1e6
}

/// Answers as soon as the server serves what it speaks.
fn probe(proto: Proto, port: u16) -> bool {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    match proto {
        Proto::Echo => {
            load::request_once(&Target::Tcp(addr), "up?", Duration::from_millis(500)).is_ok()
        }
        Proto::Udp => crate::probe::udp(addr),
        Proto::Http => crate::probe::http(addr),
    }
}

impl Server {
    pub fn start(
        build: Build,
        proto: Proto,
        extras: Extras,
        setup: &Setup,
        scratch: &Path,
    ) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let dir = scratch.join(format!("{build:?}-{proto:?}-{port}").replace(['(', ')'], ""));
        let marks = dir.join("marks");
        std::fs::create_dir_all(&marks).map_err(|e| format!("{}: {e}", marks.display()))?;
        let mut s = Server {
            build,
            proto,
            port,
            current: 0,
            generations: HashSet::new(),
            dir,
            marks,
            bins: setup.bins.clone(),
            baseline: setup.baseline.clone(),
            extras,
            drain_hard: setup.drain_hard,
        };
        s.current = s.spawn()?;
        s.generations.insert(s.current);
        let until = Instant::now() + STEP_LIMIT;
        while !probe(proto, port) {
            if Instant::now() > until || procfs::gone(s.current) {
                return Err(format!(
                    "{build:?} {proto:?} did not start serving on port {port}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        take_marks(&s.marks);
        Ok(s)
    }

    pub fn target(&self) -> Target {
        Target::Tcp(self.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The timeline the exuvia servers write with `Extras::timeline`.
    pub fn timeline_file(&self) -> PathBuf {
        self.dir.join("timeline")
    }

    fn spawn(&self) -> Result<i32, String> {
        let (plain, exuvia, ecdysis, proto_flag): (&str, &str, &str, &[&str]) = match self.proto {
            Proto::Echo => ("echo-plain", "echo-exuvia", "echo-ecdysis", &[]),
            Proto::Udp => ("echo-plain", "echo-exuvia", "", &["--udp"]),
            Proto::Http => ("http-plain", "http-exuvia", "http-ecdysis", &[]),
        };
        let (bin, extra): (&str, &[&str]) = match self.build {
            Build::Plain | Build::Of(Kind::Naive) => (plain, &[]),
            Build::Of(Kind::Reuseport) => (plain, &["--reuseport", "--term-drain"]),
            Build::Of(Kind::Exuvia) | Build::Before => (exuvia, &[]),
            Build::Of(Kind::Ecdysis) => (ecdysis, &[]),
        };
        if bin.is_empty() {
            return Err(format!("no {:?} server for {:?}", self.proto, self.build));
        }
        let dir = match (self.build, &self.baseline) {
            (Build::Before, Some(d)) => d,
            (Build::Before, None) => return Err("Build::Before needs --baseline DIR".into()),
            _ => &self.bins,
        };
        let mut flags: Vec<std::ffi::OsString> = Vec::new();
        if self.extras.timeline {
            flags.push("--timeline".into());
            flags.push(self.timeline_file().into());
        }
        if self.extras.handoff {
            flags.push("--handoff".into());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(dir.join(bin))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--pid-file")
            .arg(self.pid_file())
            .arg("--mark-dir")
            .arg(&self.marks)
            .arg("--drain-hard")
            .arg(self.drain_hard.as_secs_f64().to_string())
            .args(extra)
            .args(proto_flag)
            .args(&flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {bin}: {e}"))?;
        // Reaped by the driver's reaper thread, like every orphan of the servers.
        Ok(child.id() as i32)
    }

    /// Runs one upgrade and measures it; `mark` starts a new load epoch right before the trigger.
    pub fn upgrade(&mut self, mark: &dyn Fn()) -> Sample {
        let old = self.current;
        let inodes: HashSet<u64> = procfs::listen_inodes(self.port);
        let held = procfs::fds_holding(old, &inodes);
        let mut s = Sample {
            rss_old_kib: procfs::rss_kib(old).unwrap_or(0),
            old_pid: old,
            ..Sample::default()
        };
        if held.is_empty() {
            s.note = format!("no listening fd found in pid {old}");
            return s;
        }
        take_marks(&self.marks);
        let kind = match self.build {
            Build::Of(k) => k,
            Build::Before => Kind::Exuvia,
            Build::Plain => return s,
        };
        mark();
        let t0 = mono_ns();
        s.t0_us = t0 / 1000;
        // Live processes at each sample, judged once the new generation is known.
        let mut samples: Vec<Vec<i32>> = Vec::new();
        let mut spawned = None;
        match kind {
            Kind::Exuvia | Kind::Ecdysis => procfs::signal(old, libc::SIGHUP),
            Kind::Naive => procfs::signal(old, libc::SIGTERM),
            Kind::Reuseport => match self.spawn() {
                Ok(p) => spawned = Some(p),
                Err(e) => {
                    s.note = e;
                    return s;
                }
            },
        }
        let (mut serving, mut closed, mut termed) = (None::<(i32, u64)>, None::<u64>, false);
        let mut next_sample = 0;
        let limit = t0 + STEP_LIMIT.as_nanos() as u64;
        loop {
            let now = mono_ns();
            if now > limit {
                s.note = format!(
                    "{} timed out: serving={serving:?} closed={closed:?}",
                    kind.name()
                );
                break;
            }
            if closed.is_none() && !procfs::still_holds(old, &held) {
                closed = Some(now);
            }
            if serving.is_none() {
                serving = take_marks(&self.marks)
                    .into_iter()
                    .find(|(p, _)| *p != old && spawned.is_none_or(|sp| sp == *p));
                // wrk's keep-alive connections stay on the old process until it closes them,
                // so the new SO_REUSEPORT process sees a request only if someone sends one:
                // the driver does, as a load balancer's health check would.
                if serving.is_none() && kind == Kind::Reuseport && self.proto == Proto::Http {
                    crate::probe::http(self.addr());
                }
            }
            match kind {
                // A restart starts the new process once the old one is gone, as systemd would.
                Kind::Naive if spawned.is_none() && procfs::gone(old) => match self.spawn() {
                    Ok(p) => spawned = Some(p),
                    Err(e) => {
                        s.note = e;
                        break;
                    }
                },
                Kind::Reuseport if serving.is_some() && !termed => {
                    procfs::signal(old, libc::SIGTERM);
                    termed = true;
                }
                _ => {}
            }
            if now >= next_sample {
                let live = procfs::descendants().0;
                s.peak_live = s.peak_live.max(live.len());
                samples.push(live);
                next_sample = now + PROC_SAMPLE_NS;
            }
            let handed_over = match kind {
                // The next upgrade may start once the successor considers itself the main process.
                Kind::Exuvia | Kind::Ecdysis => {
                    serving.is_some_and(|(p, _)| read_pid(&self.pid_file()) == Some(p))
                }
                _ => true,
            };
            if let (Some((pid, at)), Some(c), true) = (serving, closed, handed_over) {
                s.completed = true;
                s.serving_ms = ms_since(t0, at);
                s.closed_ms = ms_since(t0, c);
                s.rss_new_kib = procfs::rss_kib(pid).unwrap_or(0);
                s.new_pid = pid;
                self.current = pid;
                self.generations.insert(pid);
                break;
            }
            std::thread::sleep(POLL);
        }
        s.peak_extra = samples
            .iter()
            .map(|live| {
                live.iter()
                    .filter(|p| !self.generations.contains(p))
                    .count()
            })
            .max()
            .unwrap_or(0);
        s
    }

    /// Stops every process of this contender: SIGTERM (each drains), SIGKILL after 5 s.
    pub fn shutdown(&mut self) {
        procfs::signal(self.current, libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !procfs::gone(self.current) {
            std::thread::sleep(Duration::from_millis(5));
        }
        procfs::signal(self.current, libc::SIGKILL);
    }
}

/// Kills every process still below the driver (all of them descend from servers it started).
pub fn kill_all_descendants() {
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let (live, _) = procfs::descendants();
        if live.is_empty() {
            return;
        }
        for p in live {
            procfs::signal(p, sig);
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until && !procfs::descendants().0.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
