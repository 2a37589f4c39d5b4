//! `exuvia load`: drive load against a listener and report every failed request.
//!
//! Shell drivers (the container harness) start it in the background, send SIGUSR1 right
//! before each reload so failures are attributed to it (`--mark-on-signal`), create a file
//! to end the run early (`--until-file`), and read the verdict from the exit code: 0 when
//! requests completed and none failed or was retried, 1 otherwise (or when none completed),
//! 2 on bad input. Retries happen only where `kind.rs` in the load client says, are always
//! printed, and count against the run unless `--accept-retries`.
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use exuvia_testing::load::{self, LoadConfig, LoadReport, Mode, Target};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Where to send load: tcp:IP:PORT or unix:/PATH.
    #[arg(long, value_parser = parse_target)]
    target: Target,
    /// echo (connect, line, echo, close), long (one connection per worker), http (HTTP/1.1
    /// keep-alive GETs), h2 (HTTP/2 GETs, h2c prior knowledge), ws (WebSocket echo).
    #[arg(long, default_value = "echo", value_parser = parse_mode)]
    mode: Mode,
    /// Concurrent workers, one connection each.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    #[command(flatten)]
    http: HttpOptions,
    /// Run length (hard cap, at most 1h), e.g. 500ms, 10s, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests across all workers.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Bound on one whole request, connect included.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// long and ws modes: pause between two messages on a connection.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    interval: Duration,
    /// http, h2 and ws modes: request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Also write the full report as JSON (durations in seconds) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// End the run early as soon as PATH exists.
    #[arg(long, value_name = "PATH")]
    until_file: Option<PathBuf>,
    /// Start a new epoch on every SIGUSR1 (send it right before each reload).
    #[arg(long)]
    mark_on_signal: bool,
}

/// Options of the HTTP modes and of retries, the same for `exuvia load` and `exuvia check`.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpOptions {
    /// h2 mode: concurrent streams per connection.
    #[arg(long, default_value_t = 4)]
    pub streams: u32,
    /// http/h2 modes: send a GET lost on a reused connection (closed under it before any byte
    /// of the answer) once more on a fresh connection. Off by default: such a request is a
    /// failure, as it is for clients that do not retry (wrk, proxies, any POST). Retried
    /// requests are counted and shown, and fail the run unless --accept-retries.
    #[arg(long)]
    pub retry_idempotent: bool,
    /// Succeed even if requests had to be retried (--retry-idempotent, or HTTP/2 streams the
    /// server refused by GOAWAY or REFUSED_STREAM, which are always retried); they are still
    /// counted and shown.
    #[arg(long)]
    pub accept_retries: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            streams: 4,
            retry_idempotent: false,
            accept_retries: false,
        }
    }
}

impl HttpOptions {
    pub fn apply(&self, cfg: &mut LoadConfig) {
        cfg.streams = self.streams;
        cfg.retry_idempotent = self.retry_idempotent;
        cfg.accept_retries = self.accept_retries;
    }
}

pub(crate) fn parse_target(s: &str) -> Result<Target, load::LoadError> {
    s.parse()
}

pub(crate) fn parse_mode(s: &str) -> Result<Mode, load::LoadError> {
    s.parse()
}

/// Parses `500ms`, `10s`, `2m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let err =
        || format!("invalid duration {s:?}: use a whole number and a unit: 500ms, 10s, 2m, 1h");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(err);
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => Err(err()),
    }
}

/// How often the driver loop looks at the until-file and the workers.
const TICK: Duration = Duration::from_millis(10);

pub fn run(args: LoadArgs) -> ExitCode {
    match drive(args) {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(report) => {
            if report.ok == 0 && report.failed == 0 {
                eprintln!("exuvia load: no request completed, so nothing was verified");
            }
            if report.failed == 0 && report.unaccepted_retries() > 0 {
                eprintln!(
                    "exuvia load: {} request(s) had to be retried ({}); a client that does not \
                     retry saw them fail. --accept-retries accepts them",
                    report.retried,
                    report.retry_summary()
                );
            }
            ExitCode::FAILURE
        }
        Err(msg) => {
            eprintln!("exuvia load: {msg}");
            ExitCode::from(2)
        }
    }
}

fn drive(args: LoadArgs) -> Result<LoadReport, String> {
    // Before any worker thread exists, so every thread inherits the blocked mask.
    let marker = args.mark_on_signal.then(MarkSignal::install).transpose()?;
    // Opened up front so a bad path fails before the run, not after it.
    let json = match &args.json {
        Some(p) => Some(File::create(p).map_err(|e| {
            format!(
                "cannot create --json file {}: {e}; pass a writable path",
                p.display()
            )
        })?),
        None => None,
    };
    let mut cfg = LoadConfig::new(args.target);
    cfg.mode = args.mode;
    cfg.connections = args.connections;
    cfg.duration = args.duration;
    cfg.max_requests = args.max_requests;
    cfg.timeout = args.timeout;
    cfg.interval = args.interval;
    cfg.http_path = args.path;
    args.http.apply(&mut cfg);
    let handle = load::start(cfg).map_err(|e| e.to_string())?;
    eprintln!("exuvia load: running (pid {})", std::process::id());
    while !handle.is_finished() {
        if args.until_file.as_ref().is_some_and(|p| p.exists()) {
            break;
        }
        match &marker {
            Some(m) => {
                for _ in 0..m.wait(TICK) {
                    let epoch = handle.mark();
                    eprintln!("exuvia load: epoch {epoch} started");
                }
            }
            None => thread::sleep(TICK),
        }
    }
    let report = handle.stop();
    print!("{report}");
    if let Some(f) = json {
        let mut w = io::BufWriter::new(f);
        serde_json::to_writer_pretty(&mut w, &report)
            .map_err(io::Error::from)
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush())
            .map_err(|e| format!("cannot write the JSON report: {e}"))?;
    }
    Ok(report)
}

/// SIGUSR1 delivered through a signalfd: no signal handler, hence no unsafe code, and the
/// epoch is marked from the driver loop where the load handle lives.
struct MarkSignal(SignalFd);

impl MarkSignal {
    fn install() -> Result<MarkSignal, String> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR1);
        let fail = |e: nix::Error| format!("cannot set up SIGUSR1 handling: {e}");
        set.thread_block().map_err(fail)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(fail)?;
        Ok(MarkSignal(fd))
    }

    /// Waits up to `timeout`; returns how many SIGUSR1 were consumed.
    fn wait(&self, timeout: Duration) -> u32 {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            // EINTR or similar: keep the tick length so the driver loop never spins.
            thread::sleep(timeout);
            return 0;
        }
        let mut n = 0;
        while let Ok(Some(_)) = self.0.read_signal() {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "99999999999999999999h",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("500ms, 10s"), "{e}");
        }
    }
}
