//! Peer benchmark driver: the same servers upgraded four ways (exuvia, ecdysis, naive
//! stop/start, SO_REUSEPORT) under the same load, side by side in one run: a line echo
//! (`exuvia_testing::load`), a UDP echo (throughput), an axum app under `wrk`, exuvia's
//! hand-off of open connections at scale, and instructions per accept under callgrind.
//!
//! ```text
//! benches/peer/run.sh --quick    # CI: exits 1 if exuvia fails any request
//! benches/peer/run.sh --full     # the README numbers, written to benches/results/
//! ```
//!
//! The driver is the servers' subreaper (as systemd is for a service), so every generation
//! and every orphan stays below it: it counts them, reaps them, and kills only them.
mod contender;
mod handoff;
mod http;
mod instructions;
mod opts;
mod params;
mod probe;
mod procfs;
mod report;
mod run;
#[path = "server.rs"]
mod server;
mod svg;
mod tables;
mod timeline;
mod udp;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use contender::{Kind, Proto, Setup};

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

/// The machine, in words: cores, CPU, memory, kernel, and how busy it was.
fn machine(opts: &opts::Opts, load_start: &str) -> String {
    let cpu = first_line("/proc/cpuinfo", "model name");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = first_line("/proc/meminfo", "MemTotal");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load1: f64 = load_start
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let busy = if load1 > 0.5 * cores as f64 {
        "a busy machine: other jobs shared it"
    } else {
        "a quiet machine"
    };
    format!(
        "{}{cores} cores ({cpu}), {mem} memory, Linux {}; load average {load_start} at start, {} at end ({busy})",
        opts.machine
            .as_ref()
            .map(|m| format!("{m}: "))
            .unwrap_or_default(),
        kernel.trim(),
        loadavg(),
    )
}

fn main() -> ExitCode {
    let opts = match opts::parse() {
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
    let bins = match std::env::current_exe() {
        Ok(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        Err(e) => {
            eprintln!("peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scratch = std::env::temp_dir().join(format!("exuvia-peer-{}", std::process::id()));
    let started = Instant::now();
    let label = &opts.baseline_label;
    let counts = match (opts.instructions, instructions::have_valgrind()) {
        (true, true) => {
            eprintln!("peer: counting instructions per operation under callgrind");
            Some(instructions::measure(
                &bins,
                opts.baseline.as_ref(),
                &scratch,
            ))
        }
        (true, false) => {
            eprintln!(
                "peer: valgrind is not installed: no instruction counts (apt-get install valgrind)"
            );
            None
        }
        _ => None,
    };
    let wrk = opts.http && http::have_wrk();
    if opts.http && !wrk {
        eprintln!("peer: wrk is not installed: no HTTP round (apt-get install wrk)");
    }

    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes this process's reaping role.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!("peer: cannot become a subreaper");
        return ExitCode::FAILURE;
    }
    server::raise_nofile();
    let stop_reaper = Arc::new(AtomicBool::new(false));
    let reaper = {
        let stop = stop_reaper.clone();
        std::thread::spawn(move || procfs::reaper(&stop))
    };
    let setup = Setup {
        bins,
        baseline: opts.baseline.clone(),
        drain_hard: opts.drain_hard,
    };
    let p = &opts.params;
    eprintln!(
        "peer: {} mode, {} upgrades × {} runs per contender, {} echo connections + 1 long-lived, load average {load_start}",
        if opts.full { "full" } else { "quick" },
        p.upgrades,
        p.reps,
        p.conns
    );
    let mut results = report::Results {
        runs: Vec::new(),
        throughput: Vec::new(),
    };
    let (mut udp_tp, mut http_tp, mut http_runs, mut steps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let error = (|| -> Result<(), String> {
        for rep in 0..p.reps {
            let t = run::throughput(Proto::Echo, p, &setup, &scratch, rep)?;
            for x in &t {
                eprintln!(
                    "peer: run {rep}: {:?} {:.0} req/s without upgrades ({} failed), RSS {} KiB",
                    x.build, x.rps, x.failed, x.rss_kib
                );
            }
            results.throughput.push(t);
            if opts.udp {
                let t = run::throughput(Proto::Udp, p, &setup, &scratch, rep)?;
                for x in &t {
                    eprintln!(
                        "peer: run {rep}: UDP {:?} {:.0} datagrams/s ({} lost)",
                        x.build, x.rps, x.failed
                    );
                }
                udp_tp.push(t);
            }
            if wrk && p.http_throughput {
                let t = run::throughput(Proto::Http, p, &setup, &scratch, rep)?;
                for x in &t {
                    eprintln!(
                        "peer: run {rep}: HTTP {:?} {:.0} req/s ({} failed)",
                        x.build, x.rps, x.failed
                    );
                }
                http_tp.push(t);
            }
            let mut runs = Vec::new();
            for i in 0..opts.only.len() {
                let kind = opts.only[(i + rep) % opts.only.len()];
                let t = Instant::now();
                let r = run::upgrades(kind, p, &setup, &scratch)
                    .map_err(|e| format!("{}: {e}", kind.name()))?;
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
            runs.sort_by_key(|r| Kind::ALL.iter().position(|k| *k == r.kind));
            results.runs.push(runs);
        }
        if wrk {
            for kind in opts.only.iter().copied() {
                let r = http::upgrades(kind, p, &setup, &scratch)
                    .map_err(|e| format!("HTTP {}: {e}", kind.name()))?;
                eprintln!(
                    "peer: HTTP {}: {} upgrades, {} requests, {} failed",
                    kind.name(),
                    r.samples.len(),
                    r.wrk.requests,
                    r.wrk.failed()
                );
                http_runs.push(r);
            }
            http_runs.sort_by_key(|r| Kind::ALL.iter().position(|k| *k == r.kind));
        }
        if opts.handoff && opts.only.contains(&Kind::Exuvia) {
            steps = handoff::round(p, &setup, &scratch)?;
        }
        Ok(())
    })()
    .err();
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

    let machine = machine(&opts, &load_start);
    let software = format!(
        "{rustc}, ecdysis {ecdysis}, exuvia {commit}; tcp_migrate_req={}",
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
            .unwrap_or_default()
            .trim()
    );
    let setup_line = format!(
        "echo: {} upgrades × {} runs per contender ({} paced at one per {} ms, the rest back to back with {} ms between them), \
         {} echo connections (connect, one line, close) + 1 long-lived connection; \
         throughput without upgrades: {} × {} ms slices per server per run; \
         HTTP: wrk -c{} through {} upgrades per contender, one per {} ms; \
         hand-off: {:?} open connections, {} upgrade(s) each, {} new connections/s; {:.0} s total",
        p.upgrades,
        p.reps,
        p.paced.min(p.upgrades),
        p.period.as_millis(),
        p.gap.as_millis(),
        p.conns,
        p.rounds,
        p.slice.as_millis(),
        p.http_conns,
        p.http_upgrades,
        p.http_period.as_millis(),
        p.handoff_sizes,
        p.handoff_upgrades,
        p.handoff_rate,
        started.elapsed().as_secs_f64()
    );
    let exuvia_runs: Vec<_> = results.of_exuvia();
    let mut md = format!(
        "# Peer benchmark — {} mode\n\nMachine: {machine}\n\nSoftware: {software}\n\nSetup: {setup_line}\n\n\
         ## Echo over TCP\n\n{}\nexuvia against the targets:\n\n{}\n",
        if opts.full { "full" } else { "quick" },
        results.table(),
        results.targets(),
    );
    md.push_str(&format!(
        "## Where an exuvia upgrade's milliseconds go\n\n{}\n",
        timeline::table(&exuvia_runs)
    ));
    if !udp_tp.is_empty() {
        md.push_str(&format!(
            "## Echo over UDP\n\n{}\n",
            tables::throughput(&udp_tp, "datagram", label)
        ));
    }
    if !http_runs.is_empty() {
        md.push_str(&format!(
            "## HTTP: one axum app under wrk\n\n{}\n{}\n",
            tables::http(&http_runs, &http_tp),
            tables::throughput(&http_tp, "request", label)
        ));
    }
    if !steps.is_empty() {
        md.push_str(&format!(
            "## Hand-off of open connections, at scale\n\n{}\n",
            tables::handoff(&steps)
        ));
    }
    if let Some(c) = &counts {
        md.push_str(&format!(
            "## Instructions per operation\n\n{}\n",
            c.table(opts.baseline.as_ref().map(|_| label.as_str()))
        ));
    }
    if opts.baseline.is_some() {
        md.push_str(&format!(
            "## This build against exuvia {label}\n\n{}\n",
            tables::before_after(
                &[
                    ("echo", &results.throughput[..]),
                    ("UDP", &udp_tp[..]),
                    ("HTTP", &http_tp[..]),
                ],
                label
            )
        ));
    }
    md.push_str(&format!(
        "Command: `benches/peer/run.sh {}`. Plots: `latest.svg` (echo), `http.svg`; every upgrade: `upgrades.csv`.\n",
        if opts.full { "--full" } else { "--quick" },
    ));
    println!("{md}");

    let out = opts.out.clone().unwrap_or_else(|| {
        if opts.full {
            manifest.join("../results")
        } else {
            manifest.join("target/quick-results")
        }
    });
    let caption = format!(
        "{} upgrades × {} runs per contender, {} echo connections + 1 long-lived\n{machine}",
        p.upgrades, p.reps, p.conns,
    );
    let mut written = std::fs::create_dir_all(&out)
        .and_then(|_| std::fs::write(out.join("latest.md"), &md))
        .and_then(|_| std::fs::write(out.join("latest.svg"), results.svg(&caption)))
        .and_then(|_| std::fs::write(out.join("upgrades.csv"), results.csv()));
    if !http_runs.is_empty() {
        let caption = format!(
            "wrk -c{} through {} upgrades per contender, one per {} ms\n{machine}",
            p.http_conns,
            p.http_upgrades,
            p.http_period.as_millis()
        );
        written = written
            .and_then(|_| std::fs::write(out.join("http.svg"), http::svg(&http_runs, &caption)));
    }
    if let Err(e) = written {
        eprintln!("peer: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("peer: wrote {}", out.display());
    let http_clean = http_runs
        .iter()
        .filter(|r| r.kind == Kind::Exuvia)
        .all(|r| r.wrk.failed() == 0 && r.samples.iter().all(|s| s.completed));
    let handoff_clean = steps.iter().all(|r| {
        r.paced_failed == 0
            && r.steps
                .iter()
                .all(|s| s.idle_failed == 0 && s.sample.completed)
    });
    if opts.only.contains(&Kind::Exuvia) && !(results.exuvia_clean() && http_clean && handoff_clean)
    {
        eprintln!("peer: exuvia failed requests, lost a connection or did not complete an upgrade");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
