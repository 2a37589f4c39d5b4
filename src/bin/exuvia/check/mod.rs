//! `exuvia check`: prove that a service reloads under load without dropping a request.
//!
//! Two ways to supervise the service, one verdict: under a built-in, strict stand-in for
//! systemd (`-- COMMAND`, see `sim`), or as a real systemd unit on this host (`--unit`, see
//! `unit`). Either way load runs the whole time, every reload starts a new load epoch so each
//! failed request is pinned to the reload it fell in, and the report (`report`) says PASS only
//! if no request failed, systemd's protocol was followed, and every reload handed over to a
//! new main process. Exit status: 0 pass, 1 fail, 2 bad input or a service that cannot start
//! (one line on stderr saying what to do; nothing is left running), 130 interrupted.
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use exuvia_testing::load::{Mode, Target};
use exuvia_testing::sim::NotifyAccess;
use nix::sys::signal::Signal;

use super::load::{HttpOptions, parse_duration, parse_mode, parse_target};

mod drive;
mod progress;
pub mod report;
pub mod sim;
mod unit;

pub use drive::Schedule;
pub use progress::Ui;
pub use report::{CheckReport, KINDS, kinds, ms};
pub use sim::{Method, Output, SimPlan};

const AFTER_HELP: &str = "\
Examples:
  exuvia check --listen echo=tcp:127.0.0.1:0 -- ./target/release/examples/echo
  exuvia check --listen http=tcp:127.0.0.1:0 --mode http --reloads 10 -- ./myservice --flag
  exuvia check --unit myservice.service --target tcp:127.0.0.1:8080 --json report.json
  exuvia check --listen http=tcp:127.0.0.1:0 --mode h2 --streams 8 -- ./my-grpc-or-h2c-service

Retries: a request lost on a reused keep-alive connection is a failure (keep-alive-closed),
as it is for wrk, proxies and every POST. --retry-idempotent sends such a GET once more;
HTTP/2 streams the server refused (GOAWAY last-stream-id, REFUSED_STREAM) are always sent
again. Retried requests are shown in the table and FAIL the check unless --accept-retries.

Exit status: 0 every request succeeded (none retried, unless --accept-retries), no protocol
violation, every reload handed over to a new MainPID; 1 otherwise; 2 bad input or the
service could not start; 130 interrupted.";

#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct CheckArgs {
    /// Listener to bind and pass by socket activation, in order from fd 3, with NAME in
    /// LISTEN_FDNAMES: NAME=tcp:IP:PORT or NAME=unix:PATH (repeatable; port 0 picks one).
    #[arg(long = "listen", value_name = "NAME=ADDR", value_parser = parse_listen)]
    listen: Vec<sim::ListenSpec>,
    /// Where the load goes: tcp:IP:PORT or unix:PATH (default: the first --listen).
    #[arg(long, value_parser = parse_target)]
    target: Option<Target>,
    /// Check this systemd unit on this host (systemctl reload) instead of running a command.
    #[arg(long, value_name = "NAME", conflicts_with = "listen")]
    unit: Option<String>,
    /// echo (connect, line, echo, close), long (connections that must survive every
    /// reload), http (HTTP/1.1 keep-alive GETs), h2 (HTTP/2 GETs, h2c prior knowledge,
    /// --streams per connection), ws (WebSocket echo; a close frame and a reconnect are fine).
    #[arg(long, default_value = "echo", value_parser = parse_mode)]
    mode: Mode,
    #[command(flatten)]
    http: HttpOptions,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Number of reloads.
    #[arg(long, default_value_t = 3)]
    reloads: u32,
    /// Load alone before the first reload, between reloads and after the last.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Run the load at least this long in total.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Bound on each reload (systemd applies TimeoutStartSec=).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    reload_timeout: Duration,
    /// Bound on the first READY=1.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    start_timeout: Duration,
    /// Bound on the final stop (SIGTERM, then SIGKILL).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    stop_timeout: Duration,
    /// Bound on one request, connect included.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// http, h2 and ws modes: request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// NotifyAccess= of the simulated unit: main, exec or all.
    #[arg(long, default_value = "main", value_parser = parse_access)]
    notify_access: NotifyAccess,
    /// ReloadSignal= of the simulated unit.
    #[arg(long, default_value = "SIGHUP", value_parser = parse_signal)]
    reload_signal: Signal,
    /// Send the service's stdout and stderr to FILE (default: this terminal).
    #[arg(long, value_name = "FILE")]
    service_log: Option<PathBuf>,
    /// Write the report as JSON to FILE, or to stdout with - (the table then goes to stderr).
    #[arg(long, value_name = "FILE|-")]
    json: Option<PathBuf>,
    /// The service's command line (after --).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_listen(s: &str) -> Result<sim::ListenSpec, String> {
    s.parse()
}

fn parse_access(s: &str) -> Result<NotifyAccess, String> {
    match s {
        "main" => Ok(NotifyAccess::Main),
        "exec" => Ok(NotifyAccess::Exec),
        "all" => Ok(NotifyAccess::All),
        _ => Err(format!("invalid NotifyAccess {s:?}: use main, exec or all")),
    }
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    let full = if s.starts_with("SIG") {
        s.to_owned()
    } else {
        format!("SIG{s}")
    };
    full.to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("invalid signal {s:?}: use a name such as SIGHUP or USR1"))
}

pub fn run(args: CheckArgs) -> ExitCode {
    // Before any thread exists (see progress.rs).
    let ui = Ui::new("exuvia check", false);
    match check(args, &ui) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("exuvia check: {msg}");
            ExitCode::from(2)
        }
    }
}

fn check(args: CheckArgs, ui: &Ui) -> Result<ExitCode, String> {
    if args.reloads == 0 {
        return Err("--reloads must be at least 1: a check is about reloads".into());
    }
    let json = open_json(args.json.as_deref())?;
    let sched = Schedule {
        mode: args.mode,
        connections: args.connections,
        request_timeout: args.request_timeout,
        http_path: args.path.clone(),
        http: args.http.clone(),
        reloads: args.reloads,
        interval: args.interval,
        min_duration: args.duration.unwrap_or_default(),
    };
    validate(&sched)?;
    let report = match &args.unit {
        Some(name) => {
            if !args.command.is_empty() {
                return Err("--unit checks an installed unit: drop the command after --".into());
            }
            let Some(target) = args.target.clone() else {
                return Err(format!(
                    "--unit needs --target tcp:IP:PORT or unix:PATH: where {name} listens"
                ));
            };
            let plan = unit::UnitPlan {
                unit: name.clone(),
                target,
                reload_timeout: args.reload_timeout,
            };
            unit::run(&plan, &sched, ui)?
        }
        None => {
            let plan = SimPlan {
                command: args.command,
                listeners: args.listen,
                target: args.target,
                method: Method::Signal,
                notify_access: args.notify_access,
                reload_signal: args.reload_signal,
                reload_timeout: args.reload_timeout,
                start_timeout: args.start_timeout,
                stop_timeout: args.stop_timeout,
                output: args.service_log.map_or(Output::Inherit, Output::File),
            };
            sim::run(&plan, &sched, ui)?
        }
    };
    let to_stdout = json.as_ref().is_some_and(|j| j.is_none());
    if to_stdout {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    if let Some(dest) = json {
        write_json(&report, dest).map_err(|e| format!("cannot write the JSON report: {e}"))?;
    }
    Ok(if ui.aborted() {
        ExitCode::from(130)
    } else if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks the load parameters before anything starts, so a typo costs no service start.
pub fn validate(s: &Schedule) -> Result<(), String> {
    if s.interval.is_zero() || s.interval > exuvia_testing::load::MAX_DURATION {
        return Err("--interval must be > 0 and <= 1h".into());
    }
    if s.reloads > 10_000 {
        return Err("--reloads must be at most 10000".into());
    }
    if !(1..=exuvia_testing::load::MAX_CONNECTIONS).contains(&s.connections) {
        return Err(format!(
            "--connections must be 1..={}",
            exuvia_testing::load::MAX_CONNECTIONS
        ));
    }
    if s.request_timeout.is_zero() || s.request_timeout > exuvia_testing::load::MAX_DURATION {
        return Err("--request-timeout must be > 0 and <= 1h".into());
    }
    if !s.http_path.starts_with('/') || s.http_path.contains(char::is_whitespace) {
        return Err("--path must start with / and contain no whitespace".into());
    }
    if !(1..=exuvia_testing::load::MAX_STREAMS).contains(&s.http.streams) {
        return Err(format!(
            "--streams must be 1..={}",
            exuvia_testing::load::MAX_STREAMS
        ));
    }
    Ok(())
}

/// `Some(None)` is stdout; a file is created up front so a bad path fails before the run.
pub fn open_json(p: Option<&Path>) -> Result<Option<Option<File>>, String> {
    match p {
        None => Ok(None),
        Some(p) if p.as_os_str() == "-" => Ok(Some(None)),
        Some(p) => File::create(p).map(|f| Some(Some(f))).map_err(|e| {
            format!(
                "cannot create --json file {}: {e}; pass a writable path or -",
                p.display()
            )
        }),
    }
}

pub fn write_json<T: serde::Serialize>(value: &T, dest: Option<File>) -> io::Result<()> {
    let mut w: Box<dyn Write> = match dest {
        Some(f) => Box::new(io::BufWriter::new(f)),
        None => Box::new(io::stdout().lock()),
    };
    serde_json::to_writer_pretty(&mut w, value)?;
    w.write_all(b"\n")?;
    w.flush()
}
