//! What the servers share, so that they differ only in how they upgrade: flags, the echo
//! handlers (TCP lines, UDP datagrams), the listen backlog, and the one probe the driver
//! needs from inside a server (the CLOCK_MONOTONIC time of its first accepted connection or,
//! for HTTP, its first answered request).
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// exuvia's own backlog; the other contenders use the same so it does not confound results.
pub const BACKLOG: i32 = 4096;

pub struct Args {
    pub listen: String,
    pub pid_file: Option<PathBuf>,
    /// Directory where the first accept of each process is recorded (file name = pid).
    pub mark_dir: Option<PathBuf>,
    /// Connections still open this long after the drain began are cut.
    pub drain_hard: Duration,
    /// Plain server: bind with SO_REUSEPORT.
    pub reuseport: bool,
    /// Plain server: on SIGTERM close the listener and drain (else SIGTERM kills at once).
    pub term_drain: bool,
    /// Echo datagrams on a UDP socket instead of lines on TCP.
    pub udp: bool,
    /// exuvia: hand every open connection to the successor at an upgrade.
    pub handoff: bool,
    /// exuvia: write the library's timeline fields (`t_*`) to this file.
    pub timeline: Option<PathBuf>,
}

pub fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:8080".into(),
        pid_file: None,
        mark_dir: None,
        drain_hard: Duration::from_secs(30),
        reuseport: false,
        term_drain: false,
        udp: false,
        handoff: false,
        timeline: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--pid-file" => a.pid_file = Some(value()?.into()),
            "--mark-dir" => a.mark_dir = Some(value()?.into()),
            "--drain-hard" => {
                let v = value()?;
                a.drain_hard = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("--drain-hard: not a number of seconds: {v}"))?;
            }
            "--reuseport" => a.reuseport = true,
            "--term-drain" => a.term_drain = true,
            "--udp" => a.udp = true,
            "--handoff" => a.handoff = true,
            "--timeline" => a.timeline = Some(value()?.into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for the driver and every server process.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Records the first accepted connection of this process, once.
pub struct FirstAccept {
    dir: Option<PathBuf>,
    done: AtomicBool,
}

impl FirstAccept {
    pub fn new(args: &Args) -> FirstAccept {
        FirstAccept {
            dir: args.mark_dir.clone(),
            done: AtomicBool::new(false),
        }
    }

    pub fn hit(&self) {
        if self.done.load(Ordering::Relaxed) || self.done.swap(true, Ordering::Relaxed) {
            return;
        }
        let Some(dir) = &self.dir else { return };
        let now = mono_ns();
        let pid = std::process::id();
        let tmp = dir.join(format!(".{pid}"));
        // Written then renamed, so the driver never reads a half-written file.
        let written = std::fs::File::create(&tmp).and_then(|mut f| write!(f, "{now}"));
        if written.is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(pid.to_string()));
        }
    }
}

pub fn write_pid_file(path: &std::path::Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(tmp, path)
}

/// Raises the soft limit on open files to the hard one: the scale round holds 10 000
/// connections.
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The protocol: every line comes back unchanged.
pub async fn echo(stream: TcpStream) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(mut line)) = lines.next_line().await {
        line.push('\n');
        if w.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
}
