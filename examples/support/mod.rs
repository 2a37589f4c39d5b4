//! Bits the example servers share: flags, logging, and the test hook that makes a
//! successor fail during its initialisation.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Flags every example understands.
pub struct Args {
    pub listen: String,
    pub pid_file: Option<PathBuf>,
    pub control: Option<PathBuf>,
    /// Unset: the library's default, or the unit's `EXUVIA_READY_TIMEOUT`.
    pub ready_timeout: Option<Duration>,
    /// Unset: the library's default, or the unit's `EXUVIA_DRAIN_HARD`.
    pub drain_hard: Option<Duration>,
    pub max_draining: usize,
    /// Test hook: if this file exists when a successor starts, it fails as the file says.
    pub fail_file: Option<PathBuf>,
    /// Keep listeners in systemd's fd store (`FileDescriptorStoreMax=` in the unit).
    pub fd_store: bool,
    /// `metrics` example: where to serve the Prometheus scrape.
    pub metrics: Option<String>,
    /// `metrics` example: a file the pre-upgrade check reads (`bad` refuses the upgrade).
    pub check_file: Option<PathBuf>,
}

/// Test hook (`--dump-fds PATH`): appends `PID: fd:target …` for every open fd, before the
/// program opens anything itself, so a test can see exactly what a generation inherited.
fn dump_fds(path: &str) -> Result<(), String> {
    use std::io::Write;
    let me = std::process::id();
    let mut line = format!("{me}:");
    // read_dir itself holds an fd on the directory; leave it out.
    let own = format!("/proc/{me}/fd");
    let mut fds: Vec<(u32, String)> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().parse().ok()?;
            Some((
                n,
                std::fs::read_link(e.path())
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            ))
        })
        .filter(|(_, target)| *target != own)
        .collect();
    fds.sort();
    for (n, target) in fds {
        line.push_str(&format!(" {n}={target}"));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    writeln!(f, "{line}").map_err(|e| e.to_string())
}

pub fn parse_args(default_listen: &str) -> Result<Args, String> {
    let mut a = Args {
        listen: default_listen.to_owned(),
        pid_file: None,
        control: None,
        ready_timeout: None,
        drain_hard: None,
        max_draining: 4,
        fail_file: None,
        fd_store: false,
        metrics: None,
        check_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let secs = |v: String| {
            v.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|_| format!("{flag}: not a number of seconds: {v}"))
        };
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--pid-file" => a.pid_file = Some(value()?.into()),
            "--control" => a.control = Some(value()?.into()),
            "--ready-timeout" => a.ready_timeout = Some(secs(value()?)?),
            "--drain-hard" => a.drain_hard = Some(secs(value()?)?),
            "--max-draining" => a.max_draining = value()?.parse().map_err(|_| "--max-draining: not a number".to_string())?,
            "--fail-file" => a.fail_file = Some(value()?.into()),
            "--dump-fds" => dump_fds(&value()?)?,
            "--fd-store" => a.fd_store = true,
            "--metrics" => a.metrics = Some(value()?),
            "--check-file" => a.check_file = Some(value()?.into()),
            "-h" | "--help" => {
                return Err("flags: --listen ADDR --pid-file PATH --control PATH --ready-timeout SECS --drain-hard SECS --max-draining N --fail-file PATH --dump-fds PATH --fd-store --metrics ADDR --check-file PATH".into())
            }
            other => return Err(format!("unknown flag {other} (try --help)")),
        }
    }
    Ok(a)
}

impl Args {
    pub fn builder(&self) -> exuvia::Builder {
        let mut b = exuvia::Exuvia::builder()
            .max_draining(self.max_draining)
            .fd_store(self.fd_store);
        if let Some(t) = self.ready_timeout {
            b = b.ready_timeout(t);
        }
        if let Some(hard) = self.drain_hard {
            b = b.drain(Duration::ZERO, hard);
        }
        if let Some(p) = &self.pid_file {
            b = b.pid_file(p);
        }
        if let Some(c) = &self.control {
            b = b.control_socket(c);
        }
        b
    }
}

/// Sets up logging and parses the flags; bad flags print one line and give exit code 2.
pub fn start(example: &str, default_listen: &str) -> Result<Args, std::process::ExitCode> {
    init_logging();
    parse_args(default_listen).map_err(|e| {
        eprintln!("{example}: {e}");
        std::process::ExitCode::from(2)
    })
}

/// The process exit code for the server's result.
pub fn exit(
    example: &str,
    result: Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{example}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Test hook: a successor whose init fails the way `fail_file` says (`exit`, `panic`,
/// `segv`, `hang`) or is `slow` (1.5 s, then fine). Generation 1 ignores it so the service can start.
pub fn maybe_fail(args: &Args, generation: u64) {
    let Some(path) = &args.fail_file else { return };
    if generation < 2 {
        return;
    }
    let Ok(how) = std::fs::read_to_string(path) else {
        return;
    };
    match how.trim() {
        "exit" => std::process::exit(1),
        "panic" => panic!("simulated failure during initialisation"),
        "segv" => {
            use nix::sys::signal::{
                SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction,
            };
            // Rust's runtime catches SIGSEGV (stack-overflow detection); die like a real crash.
            let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: restoring the default disposition installs no handler code.
            let _ = unsafe { sigaction(Signal::SIGSEGV, &dfl) };
            let _ = raise(Signal::SIGSEGV);
        }
        "hang" => std::thread::sleep(Duration::from_secs(3600)),
        // A successor that takes its time but then starts normally.
        "slow" => std::thread::sleep(Duration::from_millis(1500)),
        _ => {}
    }
}

/// The state versions a generation adopts: `ours`, unless the test hook's fail file says
/// `state-version N` (a successor built with another state format), from generation 2 on.
pub fn adopted_versions(args: &Args, generation: u64, ours: u32) -> std::ops::RangeInclusive<u32> {
    let theirs = args
        .fail_file
        .as_ref()
        .filter(|_| generation >= 2)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().strip_prefix("state-version ")?.parse().ok());
    let v = theirs.unwrap_or(ours);
    v..=v
}

/// The answer to a line: the line itself, except `VERSION`.
pub fn answer(example: &str, line: &str) -> String {
    if line == "VERSION" {
        format!("exuvia-example {example} {}", env!("CARGO_PKG_VERSION"))
    } else {
        line.to_owned()
    }
}
