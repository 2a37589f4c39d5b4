//! The driver's flags: `--quick` (CI) and `--full` (the README numbers) set every round's
//! size; the other flags change one thing.
use std::path::PathBuf;
use std::time::Duration;

use crate::contender::Kind;
use crate::params::Params;

pub struct Opts {
    pub full: bool,
    pub params: Params,
    pub only: Vec<Kind>,
    pub out: Option<PathBuf>,
    pub drain_hard: Duration,
    /// Binaries built against another revision of the library (`baseline.sh`).
    pub baseline: Option<PathBuf>,
    /// How that revision is named in the tables.
    pub baseline_label: String,
    pub udp: bool,
    pub http: bool,
    pub handoff: bool,
    /// Count instructions with callgrind (needs valgrind).
    pub instructions: bool,
    /// A name for the machine, written next to its description (`--machine "…"`).
    pub machine: Option<String>,
}

pub const USAGE: &str = "peer [--quick|--full] [--upgrades N] [--paced N] [--period-ms MS] [--reps N] [--conns N] [--gap-ms MS] \
[--rounds N] [--slice-ms MS] [--only exuvia,ecdysis,naive,reuseport] [--out DIR] \
[--http-upgrades N] [--http-conns N] [--http-period-ms MS] [--handoff-sizes N,N,…] [--handoff-upgrades N] [--handoff-rate N] \
[--no-udp] [--no-http] [--http-throughput] [--no-handoff] [--instructions|--no-instructions] [--baseline DIR [--baseline-label TEXT]] [--machine TEXT]";

pub fn parse() -> Result<Opts, String> {
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
            http_conns: if full { 50 } else { 16 },
            http_upgrades: if full { 50 } else { 2 },
            http_period: Duration::from_millis(if full { 200 } else { 300 }),
            http_throughput: full,
            handoff_sizes: if full {
                vec![0, 10, 1000, 10_000]
            } else {
                vec![10, 1000]
            },
            handoff_upgrades: if full { 5 } else { 1 },
            handoff_rate: 1000,
        },
        only: Kind::ALL.to_vec(),
        out: None,
        // Longer than any run, so a long-lived connection may stay on its old generation.
        drain_hard: Duration::from_secs(900),
        baseline: None,
        baseline_label: "before".into(),
        udp: true,
        http: true,
        handoff: true,
        instructions: full,
        machine: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String, max: u64| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("{flag}: expected 1..={max}, got {v}"))
        };
        let p = &mut o.params;
        match flag.as_str() {
            "--quick" | "--full" => {}
            "--upgrades" => p.upgrades = num(value()?, 10_000)? as usize,
            "--paced" => p.paced = num(value()?, 10_000)? as usize,
            "--period-ms" => p.period = Duration::from_millis(num(value()?, 60_000)?),
            "--reps" => p.reps = num(value()?, 20)? as usize,
            "--conns" => p.conns = num(value()?, 512)? as u32,
            "--gap-ms" => p.gap = Duration::from_millis(num(value()?, 10_000)?),
            "--rounds" => p.rounds = num(value()?, 100)? as usize,
            "--slice-ms" => p.slice = Duration::from_millis(num(value()?, 60_000)?),
            "--http-upgrades" => p.http_upgrades = num(value()?, 10_000)? as usize,
            "--http-conns" => p.http_conns = num(value()?, 1000)? as u32,
            "--http-period-ms" => p.http_period = Duration::from_millis(num(value()?, 60_000)?),
            "--handoff-sizes" => {
                p.handoff_sizes = value()?
                    .split(',')
                    .map(|n| {
                        n.parse::<usize>()
                            .ok()
                            .filter(|n| *n <= 15_000)
                            .ok_or(format!("--handoff-sizes: expected 0..=15000, got {n}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--handoff-upgrades" => p.handoff_upgrades = num(value()?, 1000)? as usize,
            "--handoff-rate" => p.handoff_rate = num(value()?, 20_000)? as u32,
            "--only" => {
                o.only = value()?
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
            "--out" => o.out = Some(value()?.into()),
            "--baseline" => {
                let d = PathBuf::from(value()?);
                if !d.join("echo-exuvia").is_file() {
                    return Err(format!("--baseline: no echo-exuvia in {}", d.display()));
                }
                o.baseline = Some(d);
            }
            "--baseline-label" => o.baseline_label = value()?,
            "--machine" => o.machine = Some(value()?),
            "--no-udp" => o.udp = false,
            "--http-throughput" => p.http_throughput = true,
            "--no-http" => o.http = false,
            "--no-handoff" => o.handoff = false,
            "--instructions" => o.instructions = true,
            "--no-instructions" => o.instructions = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(o)
}
