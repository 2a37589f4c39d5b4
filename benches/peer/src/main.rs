//! Peer benchmark driver: the same echo server upgraded four ways (exuvia, ecdysis, naive
//! stop/start, SO_REUSEPORT) under the same load (`exuvia_testing::load`), side by side in one run.
//!
//! ```text
//! benches/peer/run.sh --quick    # seconds; exits 1 if exuvia fails any request (CI)
//! benches/peer/run.sh --full     # the README numbers, written to benches/results/
//! ```
//!
//! The driver is the servers' subreaper (as systemd is for a service), so every generation
//! and every orphan stays below it: it counts them, reaps them, and kills only them.
mod contender;
mod procfs;
mod report;
mod run;
#[path = "server.rs"]
mod server;
mod svg;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contender::{Kind, Setup};
use run::Params;

struct Opts {
    full: bool,
    params: Params,
    only: Vec<Kind>,
    out: Option<PathBuf>,
    drain_hard: Duration,
}

const USAGE: &str = "peer [--quick|--full] [--upgrades N] [--paced N] [--period-ms MS] [--reps N] [--conns N] [--gap-ms MS] \
[--rounds N] [--slice-ms MS] [--only exuvia,ecdysis,naive,reuseport] [--out DIR]";

fn parse() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--full");
    let mut o = Opts {
        full,
        params: Params {
            upgrades: if full { 334 } else { 5 },
            paced: if full { 10 } else { 5 },
            period: Duration::from_millis(if full { 1000 } else { 700 }),
            reps: if full { 3 } else { 1 },
            conns: if full { 32 } else { 16 },
            gap: Duration::from_millis(if full { 30 } else { 50 }),
            warmup: Duration::from_millis(300),
            slice: Duration::from_millis(1000),
            rounds: if full { 10 } else { 1 },
        },
        only: Kind::ALL.to_vec(),
        out: None,
        // Longer than any run, so a long-lived connection may stay on its old generation.
        drain_hard: Duration::from_secs(900),
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut num = |max: u64| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{flag} needs a value"))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("{flag}: expected 1..={max}, got {v}"))
        };
        match flag.as_str() {
            "--quick" | "--full" => {}
            "--upgrades" => o.params.upgrades = num(10_000)? as usize,
            "--paced" => o.params.paced = num(10_000)? as usize,
            "--period-ms" => o.params.period = Duration::from_millis(num(60_000)?),
            "--reps" => o.params.reps = num(20)? as usize,
            "--conns" => o.params.conns = num(512)? as u32,
            "--gap-ms" => o.params.gap = Duration::from_millis(num(10_000)?),
            "--rounds" => o.params.rounds = num(100)? as usize,
            "--slice-ms" => o.params.slice = Duration::from_millis(num(60_000)?),
            "--only" => {
                let v = it.next().ok_or("--only needs a value")?;
                o.only = v
                    .split(',')
                    .map(|s| match s {
                        "exuvia" => Ok(Kind::Exuvia),
                        "ecdysis" => Ok(Kind::Ecdysis),
                        "naive" => Ok(Kind::Naive),
                        "reuseport" => Ok(Kind::Reuseport),
                        _ => Err(format!("--only: unknown contender {s}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--out" => o.out = Some(it.next().ok_or("--out needs a value")?.into()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn first_line(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn locked_version(lock: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let pat = format!("name = \"{name}\"\nversion = \"");
    text.find(&pat)
        .and_then(|i| text[i + pat.len()..].split('"').next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Taken before the reaper starts: these child processes must be waited for by std.
    let rustc = command_out("rustc", &["--version"]);
    let commit = command_out(
        "git",
        &[
            "-C",
            &manifest.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let ecdysis = locked_version(&manifest.join("Cargo.lock"), "ecdysis");
    let load_start = loadavg();

    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes this process's reaping role.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!("peer: cannot become a subreaper");
        return ExitCode::FAILURE;
    }
    let stop_reaper = Arc::new(AtomicBool::new(false));
    let reaper = {
        let stop = stop_reaper.clone();
        std::thread::spawn(move || procfs::reaper(&stop))
    };
    let bins = match std::env::current_exe() {
        Ok(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        Err(e) => {
            eprintln!("peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let setup = Setup {
        bins,
        drain_hard: opts.drain_hard,
    };
    let scratch = std::env::temp_dir().join(format!("exuvia-peer-{}", std::process::id()));
    let p = &opts.params;
    eprintln!(
        "peer: {} mode, {} upgrades × {} runs per contender, {} echo connections + 1 long-lived, load average {load_start}",
        if opts.full { "full" } else { "quick" },
        p.upgrades,
        p.reps,
        p.conns
    );
    let started = Instant::now();
    let mut results = report::Results {
        runs: Vec::new(),
        throughput: Vec::new(),
    };
    let mut error = None;
    'reps: for rep in 0..p.reps {
        match run::throughput(p, &setup, &scratch, rep) {
            Ok(t) => {
                for x in &t {
                    eprintln!(
                        "peer: run {rep}: {:?} {:.0} req/s without upgrades ({} failed), RSS {} KiB",
                        x.build, x.rps, x.failed, x.rss_kib
                    );
                }
                results.throughput.push(t);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        let mut runs = Vec::new();
        for i in 0..opts.only.len() {
            let kind = opts.only[(i + rep) % opts.only.len()];
            let t = Instant::now();
            match run::upgrades(kind, p, &setup, &scratch) {
                Ok(r) => {
                    eprintln!(
                        "peer: run {rep}: {} {} upgrades in {:.1}s, {} failed requests ({:?}), {} retried, long-lived survived {:?}",
                        kind.name(),
                        r.samples.len(),
                        t.elapsed().as_secs_f64(),
                        r.echo.failed,
                        r.echo.failures_by_kind,
                        r.echo.retried,
                        r.long.long_lived_survived
                    );
                    if let Some(s) = r.samples.iter().find(|s| !s.completed) {
                        eprintln!("peer:   incomplete upgrade: {}", s.note);
                    }
                    runs.push(r);
                }
                Err(e) => {
                    error = Some(format!("{}: {e}", kind.name()));
                    break 'reps;
                }
            }
        }
        runs.sort_by_key(|r| Kind::ALL.iter().position(|k| *k == r.kind));
        results.runs.push(runs);
    }
    contender::kill_all_descendants();
    stop_reaper.store(true, Ordering::Relaxed);
    let _ = reaper.join();
    if std::env::var_os("PEER_KEEP_SCRATCH").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        eprintln!("peer: server logs kept in {}", scratch.display());
    }
    if let Some(e) = error {
        eprintln!("peer: {e}");
        return ExitCode::FAILURE;
    }

    let cpu = first_line("/proc/cpuinfo", "model name");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap_or_default();
    let machine = format!(
        "{cores} cores ({cpu}), Linux {}, {rustc}, ecdysis {ecdysis}, exuvia {commit}; \
         load average {load_start} at start, {} at end (shared machine); tcp_migrate_req={}",
        kernel.trim(),
        loadavg(),
        migrate.trim()
    );
    let setup_line = format!(
        "{} upgrades × {} runs per contender ({} paced at one per {} ms, the rest back to back with {} ms between them), \
         {} echo connections (connect, one line, close) + 1 long-lived connection; \
         throughput without upgrades: {} × {} ms slices per server per run; {:.0} s total",
        p.upgrades,
        p.reps,
        p.paced.min(p.upgrades),
        p.period.as_millis(),
        p.gap.as_millis(),
        p.conns,
        p.rounds,
        p.slice.as_millis(),
        started.elapsed().as_secs_f64()
    );
    let table = results.table();
    let targets = results.targets();
    println!("{table}\n{targets}\nMachine: {machine}\nSetup: {setup_line}");

    let out = opts.out.clone().unwrap_or_else(|| {
        if opts.full {
            manifest.join("../results")
        } else {
            manifest.join("target/quick-results")
        }
    });
    let md = format!(
        "# Peer benchmark — {} mode\n\n{table}\nexuvia against the targets:\n\n{targets}\nMachine: {machine}\n\nSetup: {setup_line}\n\n\
         Command: `benches/peer/run.sh {}`. Plot: `latest.svg`; every upgrade: `upgrades.csv`.\n",
        if opts.full { "full" } else { "quick" },
        if opts.full { "--full" } else { "--quick" },
    );
    let caption = format!(
        "{} upgrades × {} runs per contender, {} echo connections + 1 long-lived; {cores} cores ({cpu}), Linux {}\n\
         {rustc}, ecdysis {ecdysis}, exuvia {commit}; load average {load_start} at start (shared machine)",
        p.upgrades,
        p.reps,
        p.conns,
        kernel.trim()
    );
    let written = std::fs::create_dir_all(&out)
        .and_then(|_| std::fs::write(out.join("latest.md"), md))
        .and_then(|_| std::fs::write(out.join("latest.svg"), results.svg(&caption)))
        .and_then(|_| std::fs::write(out.join("upgrades.csv"), results.csv()));
    if let Err(e) = written {
        eprintln!("peer: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("peer: wrote {}", out.display());
    if opts.only.contains(&Kind::Exuvia) && !results.exuvia_clean() {
        eprintln!(
            "peer: exuvia failed requests, lost its long-lived connection or did not complete an upgrade"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
