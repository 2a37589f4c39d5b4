//! `exuvia vm`: validate a service's upgrades under real systemd 252–262 in one command.
//!
//! `exuvia check --unit` needs systemd ≥ 253 as PID 1 on the machine it runs on, and CI
//! runners rarely have one. This boots the systemd versions asked for (a Debian rootfs per
//! version, built once and cached) in a container (`systemd-nspawn`, seconds) or a VM (`--vm`,
//! qemu), installs the user's binary and units, and runs the scenarios they pick, each in a
//! fresh guest, each judged by `exuvia check --unit` inside (this binary, at a path no unit
//! names). One verdict table per version; exit status 0 only if every scenario passed.
//!
//! Layout: `input` (units, spec, what they say), `binary` (can the guest run it), `rootfs`
//! (suites and the cache), `payload` (what the guest sees), `nspawn` and `qemu` (the two
//! runners), `matrix` (versions × scenarios), `verdict` (console → tables and JSON),
//! `host` and `cleanup` (processes and guards: nothing outlives a run), `guest/` (the
//! in-guest driver and scenarios, compiled in).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use exuvia_testing::load::{Mode, Target};

use super::load::{parse_duration, parse_mode, parse_target};

mod binary;
mod cleanup;
mod host;
mod input;
mod matrix;
mod nspawn;
mod payload;
mod qemu;
mod rootfs;
mod verdict;

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [&str; 12] = [
    "reload",
    "replace",
    "broken",
    "stop",
    "sigkill",
    "restart",
    "live",
    "notify",
    "storm",
    "kill-old",
    "kill-new",
    "stop-upgrade",
];

/// Scenarios run only when named: `all` is for any service, and these need more of it.
pub const OPT_IN: [&str; 1] = ["wrk"];

/// The Debian package the `wrk` scenario runs.
const WRK_PACKAGE: &str = "wrk";

/// Scenarios that swap the service binary (for a broken or a slow successor).
const SWAP_BINARY: [&str; 5] = ["replace", "broken", "kill-old", "kill-new", "stop-upgrade"];

const AFTER_HELP: &str = "\
Scenarios (--scenarios, comma separated, or all):
  reload        --reloads reloads under load, each judged by exuvia check --unit (new MainPID,
                same InvocationID, no restart, no failed request); long-lived connections
                must survive
  replace       the binary on disk is replaced (--new-binary, default a copy); the new file
                serves
  broken        successors that exit or hang: the old process keeps serving, the unit stays up
  stop          systemctl stop after handovers: every process drains and exits by itself
  sigkill       kill -9 of the main: Restart= brings it back, clients wait in the socket backlog
  restart       systemctl restart: new instance, no failed request, the socket unit stays
  live          one connection talking every 20 ms stays on the same TCP connection through
                --reloads reloads, held by the new main after each; the old main exits at
                once (a service that hands its live connections over; --mode echo)
  notify        the handover datagram as PID 1 logs it: MAINPID= and MAINPIDFDID= of the new
                main, then BARRIER=1, and no warning from systemd
  storm         20 systemctl reload --no-block at once, then reload/restart/reload x3: at most
                one upgrade in flight, every job completes, the unit never fails, no failed
                request
  kill-old      the old main SIGKILLed while its slow successor starts: one generation ends
                up serving (the successor as main, or a Restart=); costs its requests in flight
  kill-new      the successor SIGKILLed right after it said ready, or SIGTERMed during the
                hand-off: the old main keeps serving every connection and says why
  stop-upgrade  systemctl stop while an upgrade is in flight (successor starting, or in the
                hand-off): a clean stop, nothing left running, start works after, no failed
                request
(kill-old, kill-new and stop-upgrade run a stand-in successor that starts the real binary
2.5 s late, so they need --binary.)

Named only, not part of all:
  wrk           wrk (HTTP/1.1 keep-alive, no retries; the Debian package, added to the guest)
                runs through --reloads systemctl reloads, --connections connections per run:
                one GET of --path, or one run per --wrk-script. Any socket error (connect,
                read, write, timeout), any status >= 400, any response a script counts as
                bad, and any reload without a new MainPID fails it (--mode http, a TCP target)

Examples:
  exuvia vm --binary target/release/myapp --unit myapp.service --unit myapp.socket \\
            --systemd 252,257 --scenarios all
  exuvia vm --binary target/release/myapp --spec myapp.toml --mode http --json report.json
  exuvia vm --binary target/debug/examples/axum --spec axum.toml --mode http --scenarios wrk \\
            --connections 50 --wrk-script 'check.lua' --wrk-script 'check.lua post'
  exuvia vm --package nginx --service nginx.service --target tcp:127.0.0.1:80 --mode http --in-place
  exuvia vm rootfs trixie --package openssh-server      # prints the cached rootfs path

Needs root; installs mmdebstrap, systemd-container (and qemu for --vm) with apt when missing.
Root filesystems are cached in $EXUVIA_CACHE (default /var/cache/exuvia), keyed by suite and
package list; mirror: $EXUVIA_DEBIAN_MIRROR (default http://deb.debian.org/debian).
Exit status: 0 every scenario passed; 1 some failed; 2 bad input, or it cannot run here
(one line says why; nothing is left running or mounted); 130 interrupted.";

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, after_help = AFTER_HELP)]
pub struct VmArgs {
    #[command(subcommand)]
    cmd: Option<VmCmd>,
    #[command(flatten)]
    run: Box<RunArgs>,
}

#[derive(clap::Subcommand, Debug)]
enum VmCmd {
    /// Build (once, cached) the Debian rootfs of SUITE and print its path.
    Rootfs(RootfsArgs),
}

#[derive(clap::Args, Debug)]
struct RootfsArgs {
    /// 252 | bookworm, 254 | bookworm-backports, 257 | trixie, 262 | sid.
    suite: String,
    /// Extra Debian package in the rootfs (repeatable; part of the cache key).
    #[arg(long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// With a kernel and initrd (what --vm boots).
    #[arg(long)]
    kernel: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The service binary; installed at the path the unit's ExecStart= runs.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The successor the replace scenario renames over the binary (default: a copy of it).
    #[arg(long, value_name = "PATH", requires = "binary")]
    new_binary: Option<PathBuf>,
    /// A directory copied onto the guest's / (a DESTDIR tree: usr/lib/…, etc/…).
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// A .service or .socket file (repeatable); VERSION=PATH uses it for that version only.
    #[arg(long = "unit", value_name = "[VERSION=]PATH")]
    units: Vec<String>,
    /// An `exuvia unit` spec (TOML): units generated for each version.
    #[arg(long, value_name = "FILE", conflicts_with = "units")]
    spec: Option<PathBuf>,
    /// The unit to check (default: the only .service given).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Debian package to add to the guest, e.g. the service itself (repeatable).
    #[arg(long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// Where the load goes in the guest (default: the socket unit's first ListenStream=).
    #[arg(long, value_parser = parse_target)]
    target: Option<Target>,
    /// echo, long or http, as in exuvia check.
    #[arg(long, default_value = "echo", value_parser = parse_mode)]
    mode: Mode,
    /// HTTP mode: request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Scenario wrk: a Lua script for wrk and the arguments its init() gets (repeatable: one
    /// wrk per script, side by side). None: a plain GET of --path.
    #[arg(long = "wrk-script", value_name = "'FILE [ARG...]'")]
    wrk_scripts: Vec<String>,
    /// Reloads in the reload scenario.
    #[arg(long, default_value_t = 20)]
    reloads: u32,
    /// Load alone before, between and after reloads.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    interval: Duration,
    /// Long-lived connections held open across the reloads (0: none; echo mode: `long`).
    #[arg(long, default_value_t = 4)]
    long_connections: u32,
    /// systemd versions (or Debian suites), comma separated: 252, 254, 257, 262.
    #[arg(long, default_value = "257", value_delimiter = ',')]
    systemd: Vec<String>,
    /// Scenarios, comma separated, or all (see below).
    #[arg(long, default_value = "reload", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// The service reloads in place: no new MainPID is expected (exuvia check --in-place).
    #[arg(long)]
    in_place: bool,
    /// Environment= for the service in every scenario, e.g. EXUVIA_DRAIN_HARD=20s (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A path that must not exist in the guest (repeatable), e.g. /usr/local/bin/exuvia.
    #[arg(long, value_name = "PATH")]
    absent: Vec<String>,
    /// Replace scenario: a line to send on fresh connections (echo mode) ...
    #[arg(long, value_name = "LINE", requires = "probe_new")]
    probe: Option<String>,
    /// ... whose answer must match REGEX once the new binary serves.
    #[arg(long, value_name = "REGEX", requires = "probe")]
    probe_new: Option<String>,
    /// Boot qemu VMs instead of containers (KVM when usable, else TCG: ~10x slower).
    #[arg(long)]
    vm: bool,
    /// Bound on each scenario's guest (default 300s, 900s with --vm).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Where the console log of every guest goes.
    #[arg(long, value_name = "DIR", default_value = "exuvia-vm-logs")]
    log_dir: PathBuf,
    /// Write the report as JSON to FILE, or to stdout with - (the tables then go to stderr).
    #[arg(long, value_name = "FILE|-")]
    json: Option<PathBuf>,
}

pub fn run(args: VmArgs) -> ExitCode {
    // Before any thread exists (host.rs).
    let intr = host::Interrupt::install();
    let result = match args.cmd {
        Some(VmCmd::Rootfs(r)) => rootfs_cmd(&r, &intr),
        None => matrix::run(&args.run, &intr),
    };
    match result {
        Ok(code) => code,
        Err(_) if intr.hit() => {
            eprintln!("exuvia vm: interrupted; everything it started is stopped");
            ExitCode::from(130)
        }
        Err(msg) => {
            eprintln!("exuvia vm: {msg}");
            ExitCode::from(2)
        }
    }
}

fn rootfs_cmd(a: &RootfsArgs, intr: &host::Interrupt) -> Result<ExitCode, String> {
    let suite = rootfs::Suite::parse(&a.suite)?;
    for p in &a.packages {
        rootfs::check_package(p)?;
    }
    host::preconditions(intr)?;
    let path = rootfs::ensure(&suite, a.kernel, &a.packages, intr)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The checked, resolved request.
struct Request {
    suites: Vec<(String, rootfs::Suite)>,
    /// `--package`, and what the scenarios run in the guest.
    packages: Vec<String>,
    /// `--wrk-script`: (file, its arguments).
    wrk_scripts: Vec<(PathBuf, Vec<String>)>,
    scenarios: Vec<String>,
    env: Vec<(String, String)>,
    source: input::Source,
    timeout: Duration,
}

fn validate(a: &RunArgs) -> Result<Request, String> {
    let mut scenarios: Vec<String> = Vec::new();
    for s in &a.scenarios {
        let s = s.trim();
        if s == "all" {
            scenarios.extend(SCENARIOS.map(String::from));
        } else if SCENARIOS.contains(&s) || OPT_IN.contains(&s) {
            scenarios.push(s.to_owned());
        } else {
            return Err(format!(
                "unknown scenario {s:?}: use {}, {} or all",
                SCENARIOS.join(", "),
                OPT_IN.join(", ")
            ));
        }
    }
    scenarios.dedup();
    if a.in_place {
        if let Some(s) = scenarios
            .iter()
            .find(|s| !["reload", "sigkill", "restart"].contains(&s.as_str()))
        {
            return Err(format!(
                "--in-place: scenario {s} needs a service that hands over to a new process; use reload, sigkill or restart"
            ));
        }
    }
    if let Some(s) = scenarios
        .iter()
        .find(|s| SWAP_BINARY.contains(&s.as_str()))
        .filter(|_| a.binary.is_none())
    {
        return Err(format!(
            "scenario {s} swaps the service binary (a broken or slow successor): give --binary"
        ));
    }
    if scenarios.iter().any(|s| s == "live") && a.mode != Mode::Echo {
        return Err(
            "scenario live talks the line protocol on its long-lived connection: use --mode echo"
                .into(),
        );
    }
    let wrk = scenarios.iter().any(|s| s == "wrk");
    if wrk && a.mode != Mode::Http {
        return Err("scenario wrk sends HTTP/1.1 requests: use --mode http".into());
    }
    if !a.wrk_scripts.is_empty() && !wrk {
        return Err("--wrk-script is for scenario wrk: add it to --scenarios".into());
    }
    let wrk_scripts = a
        .wrk_scripts
        .iter()
        .map(|w| wrk_script(w))
        .collect::<Result<Vec<_>, _>>()?;
    super::check::validate(&super::check::Schedule {
        mode: a.mode,
        connections: a.connections,
        request_timeout: Duration::from_secs(5),
        http_path: a.path.clone(),
        http: crate::load::HttpOptions::default(),
        reloads: a.reloads.max(1),
        interval: a.interval,
        min_duration: Duration::ZERO,
        long_probe: false,
    })?;
    if a.reloads == 0 {
        return Err("--reloads must be at least 1".into());
    }
    if a.long_connections > 64 {
        return Err("--long-connections must be at most 64".into());
    }
    if a.probe.is_some() && a.mode != Mode::Echo {
        return Err("--probe sends a line: it needs --mode echo".into());
    }
    let mut env = Vec::new();
    for e in &a.env {
        match e.split_once('=') {
            Some((k, v))
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                env.push((k.to_owned(), v.to_owned()));
            }
            _ => {
                return Err(format!(
                    "--env {e:?}: use KEY=VALUE with a plain variable name"
                ));
            }
        }
    }
    for p in &a.packages {
        rootfs::check_package(p)?;
    }
    for p in &a.absent {
        if !p.starts_with('/') || p.contains(char::is_whitespace) {
            return Err(format!(
                "--absent {p:?}: give an absolute path without spaces"
            ));
        }
    }
    let mut suites = Vec::new();
    for t in &a.systemd {
        let s = rootfs::Suite::parse(t)?;
        if !suites
            .iter()
            .any(|(_, x): &(String, rootfs::Suite)| x.name == s.name)
        {
            suites.push((t.trim().to_owned(), s));
        }
    }
    if suites.is_empty() {
        return Err("--systemd: name at least one version".into());
    }
    if let Some(b) = &a.binary {
        binary::check(b, "--binary")?;
    }
    if let Some(b) = &a.new_binary {
        binary::check(b, "--new-binary")?;
    }
    if let Some(f) = &a.files {
        if !f.is_dir() {
            return Err(format!("--files {}: not a directory", f.display()));
        }
    }
    let source = input::Source::from_args(&a.units, a.spec.as_deref())?;
    if matches!(source, input::Source::Packaged) && a.packages.is_empty() && a.files.is_none() {
        return Err("no units: give --unit NAME.service (and its .socket) or --spec FILE".into());
    }
    if a.binary.is_some() && matches!(source, input::Source::Packaged) {
        return Err(
            "--binary is installed at the ExecStart= path of a unit: give --unit or --spec".into(),
        );
    }
    let mut packages = a.packages.clone();
    let named = |p: &String| p.split('/').next() == Some(WRK_PACKAGE);
    if wrk && !packages.iter().any(named) {
        packages.push(WRK_PACKAGE.to_owned());
    }
    Ok(Request {
        suites,
        packages,
        wrk_scripts,
        scenarios,
        env,
        source,
        timeout: a
            .timeout
            .unwrap_or(Duration::from_secs(if a.vm { 900 } else { 300 })),
    })
}

/// `--wrk-script 'FILE [ARG...]'`: a readable file, and arguments wrk can pass on.
fn wrk_script(w: &str) -> Result<(PathBuf, Vec<String>), String> {
    let mut words = w.split_whitespace();
    let file = PathBuf::from(words.next().unwrap_or_default());
    if !file.is_file() {
        return Err(format!(
            "--wrk-script {w:?}: {} is not a file; give 'FILE [ARG...]', a Lua script for wrk and its arguments",
            file.display()
        ));
    }
    Ok((file, words.map(str::to_owned).collect()))
}
