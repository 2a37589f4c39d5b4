//! The HTTP round: the same axum app served four ways under `wrk` (HTTP/1.1 keep-alive, no
//! retries: a request lost at a handover is a socket error or a non-2xx answer in its
//! report), upgraded every `http_period` while it runs; and `wrk` slices without upgrades
//! for req/s and server CPU per request against plain `axum::serve`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::contender::{Build, Extras, Kind, Proto, Sample, Server, Setup};
use crate::params::{Params, Slice};
use crate::procfs;

pub fn have_wrk() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("wrk").is_file()))
}

/// What `wrk` reported.
#[derive(Clone, Debug, Default)]
pub struct Wrk {
    pub requests: u64,
    pub seconds: f64,
    /// Socket errors: connect, read, write, timeout.
    pub errors: [u64; 4],
    pub non_2xx: u64,
}

impl Wrk {
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum::<u64>() + self.non_2xx
    }

    fn parse(text: &str) -> Option<Wrk> {
        let mut w = Wrk::default();
        let mut seen = false;
        for line in text.lines().map(str::trim) {
            if let Some((n, rest)) = line.split_once(" requests in ") {
                w.requests = n.trim().parse().ok()?;
                let d = rest.split(',').next()?.trim();
                w.seconds = parse_duration(d)?;
                seen = true;
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                for (i, part) in rest.split(',').enumerate().take(4) {
                    w.errors[i] = part.split_whitespace().last()?.parse().ok()?;
                }
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                w.non_2xx = rest.trim().parse().ok()?;
            }
        }
        seen.then_some(w)
    }
}

/// wrk's durations: `1.00s`, `500.12ms`, `1.00m`.
fn parse_duration(d: &str) -> Option<f64> {
    let (num, scale) = if let Some(v) = d.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = d.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = d.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = d.strip_suffix('m') {
        (v, 60.0)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// Starts `wrk` against `addr` for `secs` seconds, its report going to `out`. The driver is
/// the subreaper and reaps it, so it is waited for through /proc.
fn start_wrk(addr: SocketAddr, conns: u32, secs: u64, out: &Path) -> Result<i32, String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let child = Command::new("wrk")
        .arg(format!("-t{}", conns.clamp(1, 2)))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("2s")
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting wrk: {e}"))?;
    Ok(child.id() as i32)
}

fn wait_wrk(pid: i32, out: &Path, limit: Duration) -> Result<Wrk, String> {
    let until = Instant::now() + limit;
    while !procfs::gone(pid) {
        if Instant::now() > until {
            procfs::signal(pid, libc::SIGKILL);
            return Err("wrk did not finish in time".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = std::fs::read_to_string(out).unwrap_or_default();
    Wrk::parse(&text).ok_or_else(|| format!("cannot read wrk's report: {text}"))
}

fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("exuvia-peer-wrk-{}-{name}", std::process::id()))
}

/// One slice without upgrades (whole seconds: wrk's unit).
pub fn wrk_slice(addr: SocketAddr, conns: u32, slice: Duration) -> Result<Slice, String> {
    let out = scratch_file(&addr.port().to_string());
    let secs = slice.as_secs().max(1);
    let pid = start_wrk(addr, conns, secs, &out)?;
    let w = wait_wrk(pid, &out, Duration::from_secs(secs + 10));
    let _ = std::fs::remove_file(&out);
    let w = w?;
    Ok(Slice {
        ok: w.requests.saturating_sub(w.non_2xx),
        failed: w.failed(),
        elapsed: Duration::from_secs_f64(w.seconds),
    })
}

/// One contender under wrk through `http_upgrades` upgrades.
pub struct HttpRun {
    pub kind: Kind,
    pub samples: Vec<Sample>,
    pub wrk: Wrk,
}

pub fn upgrades(kind: Kind, p: &Params, setup: &Setup, scratch: &Path) -> Result<HttpRun, String> {
    let mut srv = Server::start(
        Build::Of(kind),
        Proto::Http,
        Extras::default(),
        setup,
        scratch,
    )?;
    let warm = Duration::from_millis(300);
    // An upper bound only: wrk is stopped (SIGINT: it reports) 500 ms after the last upgrade,
    // so every contender gets all its upgrades under load, however long each one takes.
    let secs =
        (warm + (p.http_period + Duration::from_secs(2)) * p.http_upgrades as u32).as_secs() + 5;
    let out = srv.dir.join("wrk.txt");
    let result = (|| {
        let pid = start_wrk(srv.addr(), p.http_conns, secs, &out)?;
        std::thread::sleep(warm);
        let mut samples = Vec::new();
        for _ in 0..p.http_upgrades {
            let t = Instant::now();
            let s = srv.upgrade(&|| {});
            let stuck = !s.completed;
            samples.push(s);
            if stuck {
                break;
            }
            std::thread::sleep((t + p.http_period).saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(500));
        procfs::signal(pid, libc::SIGINT);
        let wrk = wait_wrk(pid, &out, Duration::from_secs(secs + 15))?;
        Ok(HttpRun { kind, samples, wrk })
    })();
    srv.shutdown();
    crate::contender::kill_all_descendants();
    result
}

/// The HTTP round's plot: failed requests per upgrade and reload latency per contender.
pub fn svg(runs: &[HttpRun], caption: &str) -> String {
    let pct = |mut v: Vec<f64>, p: f64| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    let of = |k: Kind| runs.iter().find(|r| r.kind == k);
    let failures: Vec<(f64, f64, f64)> = Kind::ALL
        .iter()
        .map(|k| {
            let v = of(*k).map_or(f64::NAN, |r| {
                r.wrk.failed() as f64 / r.samples.len().max(1) as f64
            });
            (v, v, v)
        })
        .collect();
    let lat: Vec<[f64; 4]> = Kind::ALL
        .iter()
        .map(|k| {
            let done = |f: fn(&Sample) -> f64| -> Vec<f64> {
                of(*k).map_or(Vec::new(), |r| {
                    r.samples.iter().filter(|s| s.completed).map(f).collect()
                })
            };
            let (s, c) = (done(|s| s.serving_ms), done(|s| s.closed_ms));
            [
                pct(s.clone(), 50.0),
                pct(s, 99.0),
                pct(c.clone(), 50.0),
                pct(c, 99.0),
            ]
        })
        .collect();
    crate::svg::plot(
        "Upgrading an axum app under wrk: exuvia vs ecdysis vs naive restart vs SO_REUSEPORT",
        &failures,
        &lat,
        caption,
    )
}
