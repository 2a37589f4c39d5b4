//! The hand-off and scale round: exuvia's echo server handing its open connections to the
//! successor (`--handoff`), with 0, 10, 1 000 and 10 000 idle connections open and new
//! connections arriving at a fixed rate (1 000/s) throughout. Per step: how long the
//! hand-off took and how many connections it moved per ms, what it adds to the handover
//! (trigger → old listener closed, ready → MAINPID), how long the old generation lives on,
//! both generations' RSS, and every failure — a paced request that failed, an idle
//! connection that no longer echoes.
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::contender::{Build, Extras, Kind, Proto, Sample, Server, Setup};
use crate::params::Params;
use crate::procfs;
use crate::server::mono_ns;
use crate::timeline::{self, Events};

/// One upgrade of one step.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub sample: Sample,
    pub handed_over: u64,
    /// t_ready → t_handed, ms.
    pub handoff_ms: f64,
    /// t_ready → t_announced, ms.
    pub ready_to_mainpid_ms: f64,
    /// Trigger → the old generation's exit, ms (`None`: still alive after 30 s).
    pub old_gone_ms: Option<f64>,
    /// Idle connections that did not echo after the upgrade.
    pub idle_failed: usize,
}

/// One step: its upgrades, and the paced load's totals across them.
pub struct StepRun {
    pub open: usize,
    pub steps: Vec<Step>,
    pub paced_ok: u64,
    pub paced_failed: u64,
}

/// Connect, one line, read it back: the idle connections' opening and their check after.
fn echo_once(c: &mut BufReader<TcpStream>, line: &str) -> bool {
    let mut got = String::new();
    c.get_mut().write_all(line.as_bytes()).is_ok() && c.read_line(&mut got).is_ok() && got == line
}

fn open_idle(addr: SocketAddr, n: usize) -> Result<Vec<BufReader<TcpStream>>, String> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(addr).map_err(|e| format!("idle connection {i}: {e}"))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut c = BufReader::new(s);
        if !echo_once(&mut c, "open\n") {
            return Err(format!("idle connection {i} did not echo"));
        }
        v.push(c);
    }
    Ok(v)
}

/// New connections at `rate` per second (connect, one line, close), until stopped.
struct Paced {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Paced {
    fn start(addr: SocketAddr, rate: u32) -> Paced {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let period = Duration::from_secs(1) / rate.max(1);
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            // Bounded: the round stops it; an hour is the backstop.
            let until = next + Duration::from_secs(3600);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                let good = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .ok()
                    .and_then(|c| {
                        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                        let mut c = BufReader::new(c);
                        echo_once(&mut c, "paced\n").then_some(())
                    })
                    .is_some();
                let counter = if good { &o } else { &f };
                counter.fetch_add(1, Ordering::Relaxed);
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Paced {
            stop,
            ok,
            failed,
            thread,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn measure(s: Sample, events: &Events, idle_failed: usize, gone: Option<f64>) -> Step {
    let h = timeline::handover(&s, events);
    let field = |k: &str| h.as_ref().and_then(|e| e.get(k)).map(|v| v as f64);
    let ms = |a: &str, b: &str| match (field(a), field(b)) {
        (Some(a), Some(b)) => (b - a) / 1000.0,
        _ => f64::NAN,
    };
    Step {
        handed_over: field("handed_over").unwrap_or(0.0) as u64,
        handoff_ms: ms("t_ready", "t_handed"),
        ready_to_mainpid_ms: ms("t_ready", "t_announced"),
        old_gone_ms: gone,
        idle_failed,
        sample: s,
    }
}

fn step(open: usize, p: &Params, setup: &Setup, scratch: &Path) -> Result<StepRun, String> {
    let extras = Extras {
        timeline: true,
        handoff: true,
    };
    let mut srv = Server::start(Build::Of(Kind::Exuvia), Proto::Echo, extras, setup, scratch)?;
    let result = (|| {
        let mut idle = open_idle(srv.addr(), open)?;
        let paced = Paced::start(srv.addr(), p.handoff_rate);
        std::thread::sleep(Duration::from_millis(300));
        let mut raw = Vec::new();
        for _ in 0..p.handoff_upgrades {
            let old = srv.current;
            let s = srv.upgrade(&|| {});
            let gone_until = Instant::now() + Duration::from_secs(30);
            while !procfs::gone(old) && Instant::now() < gone_until {
                std::thread::sleep(Duration::from_millis(1));
            }
            let gone = procfs::gone(old)
                .then(|| (mono_ns() / 1000).saturating_sub(s.t0_us) as f64 / 1000.0);
            let idle_failed = idle
                .iter_mut()
                .map(|c| echo_once(c, "still there?\n"))
                .filter(|ok| !ok)
                .count();
            let mut s = s;
            s.rss_new_kib = procfs::rss_kib(srv.current).unwrap_or(0);
            let stuck = !s.completed;
            raw.push((s, idle_failed, gone));
            if stuck {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let (paced_ok, paced_failed) = paced.stop();
        let events = timeline::read(&srv.timeline_file());
        let steps = raw
            .into_iter()
            .map(|(s, f, g)| measure(s, &events, f, g))
            .collect();
        Ok(StepRun {
            open,
            steps,
            paced_ok,
            paced_failed,
        })
    })();
    srv.shutdown();
    crate::contender::kill_all_descendants();
    result
}

/// Every step of the round, smallest first.
pub fn round(p: &Params, setup: &Setup, scratch: &Path) -> Result<Vec<StepRun>, String> {
    p.handoff_sizes
        .iter()
        .map(|&n| {
            let r = step(n, p, setup, scratch)?;
            eprintln!(
                "peer: hand-off with {n} open connections: {} upgrades, {} handed over, {} paced ok / {} failed, {} idle failed",
                r.steps.len(),
                r.steps.iter().map(|s| s.handed_over).sum::<u64>(),
                r.paced_ok,
                r.paced_failed,
                r.steps.iter().map(|s| s.idle_failed).sum::<usize>()
            );
            Ok(r)
        })
        .collect()
}
