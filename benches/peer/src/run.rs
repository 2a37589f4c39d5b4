//! One repetition of each measurement: a contender under load through N upgrades, and the
//! side-by-side throughput of all servers with no upgrade at all (echo, UDP or HTTP).
use std::path::Path;
use std::time::{Duration, Instant};

use exuvia_testing::load::{self, LoadConfig, LoadReport, Mode};

use crate::contender::{Build, Extras, Kind, Proto, Sample, Server, Setup};
use crate::params::{Params, Slice};
use crate::procfs;

pub struct UpgradeRun {
    pub kind: Kind,
    pub samples: Vec<Sample>,
    /// Requests (ok + failed) per second during the paced phase.
    pub paced_rps: f64,
    pub echo: LoadReport,
    pub long: LoadReport,
    pub fds_start: usize,
    pub fds_end: usize,
    /// Live processes and zombies left once the load stopped and old generations drained.
    pub procs_end: (usize, usize),
    /// The servers' own timeline events (exuvia only).
    pub timeline: crate::timeline::Events,
}

fn echo_load(srv: &Server, conns: u32, duration: Duration) -> Result<load::LoadHandle, String> {
    let mut cfg = LoadConfig::new(srv.target());
    cfg.mode = Mode::Echo;
    cfg.connections = conns;
    cfg.duration = duration;
    load::start(cfg).map_err(|e| e.to_string())
}

/// Waits (bounded) until only the current generation is left, then counts what remains.
fn settle() -> (usize, usize) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (live, zombies) = procfs::descendants();
        if (live.len() <= 1 && zombies == 0) || Instant::now() > until {
            return (live.len(), zombies);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fd count of an idle server: the least of a few samples, so that a connection still
/// closing when the load stopped does not count as growth.
fn quiet_fd_count(pid: i32) -> usize {
    (0..5)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            procfs::fd_count(pid).unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

pub fn upgrades(
    kind: Kind,
    p: &Params,
    setup: &Setup,
    scratch: &Path,
) -> Result<UpgradeRun, String> {
    let extras = Extras {
        timeline: kind == Kind::Exuvia,
        handoff: false,
    };
    let mut srv = Server::start(Build::Of(kind), Proto::Echo, extras, setup, scratch)?;
    let fds_start = quiet_fd_count(srv.current);
    let result = (|| {
        // The run ends by `stop`; the duration is only a backstop.
        let echo = echo_load(&srv, p.conns, Duration::from_secs(3000))?;
        let mut long_cfg = LoadConfig::new(srv.target());
        long_cfg.mode = Mode::Long;
        long_cfg.connections = 1;
        long_cfg.duration = Duration::from_secs(3000);
        let long = load::start(long_cfg).map_err(|e| e.to_string())?;
        std::thread::sleep(p.warmup);
        let mut samples = Vec::with_capacity(p.upgrades);
        let count = |h: &load::LoadHandle| {
            let pr = h.progress();
            pr.ok + pr.failed
        };
        let (phase_start, before) = (Instant::now(), count(&echo));
        let mut paced_rps = f64::NAN;
        for i in 0..p.upgrades {
            let t = Instant::now();
            let s = srv.upgrade(&|| {
                echo.mark();
            });
            let stuck = !s.completed;
            samples.push(s);
            if stuck {
                break;
            }
            if i < p.paced {
                std::thread::sleep((t + p.period).saturating_duration_since(Instant::now()));
            } else {
                std::thread::sleep(p.gap);
            }
            if i + 1 == p.paced.min(p.upgrades) {
                paced_rps = (count(&echo) - before) as f64 / phase_start.elapsed().as_secs_f64();
            }
        }
        let echo = echo.stop();
        let long = long.stop();
        let procs_end = settle();
        let fds_end = quiet_fd_count(srv.current);
        let timeline = crate::timeline::read(&srv.timeline_file());
        Ok(UpgradeRun {
            kind,
            timeline,
            samples,
            paced_rps,
            echo,
            long,
            fds_start,
            fds_end,
            procs_end,
        })
    })();
    srv.shutdown();
    crate::contender::kill_all_descendants();
    result
}

pub struct Throughput {
    pub build: Build,
    pub rps: f64,
    pub rss_kib: u64,
    pub rss_anon_kib: u64,
    /// Server CPU time (all threads) per successful request, in µs: unlike req/s it hardly
    /// depends on how much of the shared machine the server happened to get.
    pub cpu_us_per_req: f64,
    pub failed: u64,
}

/// One slice of the protocol's load against `srv`.
fn load_slice(srv: &Server, conns: u32, slice: Duration) -> Result<Slice, String> {
    match srv.proto {
        Proto::Echo => {
            let r = echo_load(srv, conns, slice)?.wait();
            Ok(Slice {
                ok: r.ok,
                failed: r.failed,
                elapsed: r.elapsed,
            })
        }
        Proto::Udp => crate::udp::load(srv.addr(), conns, slice),
        Proto::Http => crate::http::wrk_slice(srv.addr(), conns, slice),
    }
}

/// The servers to compare without upgrades, per protocol (`Before` with `--baseline`).
pub fn builds(proto: Proto, baseline: bool) -> Vec<Build> {
    let mut b = vec![Build::Plain, Build::Of(Kind::Exuvia)];
    if proto != Proto::Udp {
        b.push(Build::Of(Kind::Ecdysis));
    }
    b.push(Build::Of(Kind::Reuseport));
    if baseline {
        b.push(Build::Before);
    }
    b
}

/// Every server runs at once; the load visits them in short slices, round-robin with a
/// rotating order, so that drift in the machine's other load hits all of them alike.
pub fn throughput(
    proto: Proto,
    p: &Params,
    setup: &Setup,
    scratch: &Path,
    rep: usize,
) -> Result<Vec<Throughput>, String> {
    let mut servers = Vec::new();
    for b in builds(proto, setup.baseline.is_some()) {
        match Server::start(b, proto, Extras::default(), setup, scratch) {
            Ok(s) => servers.push(s),
            Err(e) => {
                for mut s in servers {
                    s.shutdown();
                }
                crate::contender::kill_all_descendants();
                return Err(e);
            }
        }
    }
    let conns = match proto {
        Proto::Http => p.http_conns,
        _ => p.conns,
    };
    let mut totals = vec![(0u64, 0u64, Duration::ZERO, 0u64); servers.len()];
    let mut err = None;
    // One unmeasured slice each first: the first requests a fresh server (and the machine)
    // sees are slower, and without it that cost would always land on the same server.
    for s in &servers {
        if let Err(e) = load_slice(s, conns, p.slice / 2) {
            err = Some(e);
        }
    }
    'rounds: for round in 0..p.rounds {
        for i in 0..servers.len() {
            let k = (i + round + rep) % servers.len();
            let cpu0 = procfs::cpu_ticks(servers[k].current).unwrap_or(0);
            let r = match load_slice(&servers[k], conns, p.slice) {
                Ok(r) => r,
                Err(e) => {
                    err = Some(e);
                    break 'rounds;
                }
            };
            totals[k].0 += r.ok;
            totals[k].1 += r.failed;
            totals[k].2 += r.elapsed;
            totals[k].3 += procfs::cpu_ticks(servers[k].current)
                .unwrap_or(0)
                .saturating_sub(cpu0);
        }
    }
    let out = servers
        .iter()
        .zip(&totals)
        .map(|(s, (ok, failed, t, cpu))| Throughput {
            build: s.build,
            rps: *ok as f64 / t.as_secs_f64().max(1e-9),
            cpu_us_per_req: *cpu as f64 / procfs::ticks_per_sec() * 1e6 / (*ok).max(1) as f64,
            rss_kib: procfs::rss_kib(s.current).unwrap_or(0),
            rss_anon_kib: procfs::rss_anon_kib(s.current).unwrap_or(0),
            failed: *failed,
        })
        .collect();
    for mut s in servers {
        s.shutdown();
    }
    crate::contender::kill_all_descendants();
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
