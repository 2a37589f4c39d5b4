//! The tables beyond the echo round's (`report.rs`): throughput of any protocol against its
//! plain server, the HTTP round, the hand-off round, and this build against a baseline.
use std::fmt::Write as _;

use crate::contender::{Build, Kind};
use crate::handoff::StepRun;
use crate::http::HttpRun;
use crate::run::Throughput;

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.retain(|x| !x.is_nan());
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// min / median / max, or one number when they agree.
pub fn cell(v: Vec<f64>, prec: usize) -> String {
    let v = sorted(v);
    if v.is_empty() {
        return "–".into();
    }
    let (lo, med, hi) = (v[0], pct(&v, 50.0), v[v.len() - 1]);
    if lo == hi {
        format!("{med:.prec$}")
    } else {
        format!("{lo:.prec$} / {med:.prec$} / {hi:.prec$}")
    }
}

pub fn build_name(b: Build, before: &str) -> String {
    match b {
        Build::Plain => "plain".into(),
        Build::Of(k) => k.name().into(),
        Build::Before => format!("exuvia {before}"),
    }
}

/// Per build, over repetitions: its value ÷ plain's in the same repetition.
pub fn ratio(reps: &[Vec<Throughput>], b: Build, f: impl Fn(&Throughput) -> f64) -> Vec<f64> {
    reps.iter()
        .filter_map(|r| {
            let plain = f(r.iter().find(|t| t.build == Build::Plain)?);
            Some(f(r.iter().find(|t| t.build == b)?) / plain)
        })
        .collect()
}

/// The throughput table of one protocol (`unit`: what one request is called).
pub fn throughput(reps: &[Vec<Throughput>], unit: &str, before: &str) -> String {
    let Some(first) = reps.first() else {
        return String::new();
    };
    let builds: Vec<Build> = first.iter().map(|t| t.build).collect();
    let mut out = format!(
        "| without upgrades (min / median / max over {} runs) |",
        reps.len()
    );
    for b in &builds {
        let _ = write!(out, " {} |", build_name(*b, before));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(builds.len()));
    out.push('\n');
    let of = |b: Build, f: &dyn Fn(&Throughput) -> f64| -> Vec<f64> {
        reps.iter()
            .filter_map(|r| r.iter().find(|t| t.build == b).map(f))
            .collect()
    };
    let mut row = |name: String, f: &dyn Fn(Build) -> String| {
        let cells: Vec<String> = builds.iter().map(|b| f(*b)).collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    };
    row(format!("{unit}/s"), &|b| cell(of(b, &|t| t.rps), 0));
    row("**… ÷ plain**".into(), &|b| {
        format!("**{}**", cell(ratio(reps, b, |t| t.rps), 3))
    });
    row(format!("server CPU per {unit}, µs"), &|b| {
        cell(of(b, &|t| t.cpu_us_per_req), 2)
    });
    row("**plain's CPU ÷ this**".into(), &|b| {
        format!(
            "**{}**",
            cell(ratio(reps, b, |t| 1.0 / t.cpu_us_per_req), 3)
        )
    });
    row("failed".into(), &|b| cell(of(b, &|t| t.failed as f64), 0));
    row("RSS, KiB (… of it RssAnon)".into(), &|b| {
        format!(
            "{} ({})",
            cell(of(b, &|t| t.rss_kib as f64), 0),
            cell(of(b, &|t| t.rss_anon_kib as f64), 0)
        )
    });
    out
}

/// The HTTP round: wrk through upgrades, per contender.
pub fn http(runs: &[HttpRun], tp: &[Vec<Throughput>]) -> String {
    let mut out = String::from("| wrk through upgrades |");
    for r in runs {
        let _ = write!(out, " {} |", r.kind.name());
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(runs.len()));
    out.push('\n');
    let mut row = |name: &str, f: &dyn Fn(&HttpRun) -> String| {
        let cells: Vec<String> = runs.iter().map(f).collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    };
    let ups = |r: &HttpRun| r.samples.iter().filter(|s| s.completed).count();
    row("requests", &|r| r.wrk.requests.to_string());
    row("upgrades completed", &|r| {
        format!("{} of {}", ups(r), r.samples.len())
    });
    row("**failed requests per upgrade**", &|r| {
        format!(
            "**{:.2}**",
            r.wrk.failed() as f64 / r.samples.len().max(1) as f64
        )
    });
    row("— socket errors connect / read / write / timeout", &|r| {
        let e = r.wrk.errors;
        format!("{} / {} / {} / {}", e[0], e[1], e[2], e[3])
    });
    row("— non-2xx answers", &|r| r.wrk.non_2xx.to_string());
    for (label, f, p) in [
        ("trigger → successor serving, p50 ms", true, 50.0),
        ("trigger → old listener closed, p50 ms", false, 50.0),
        ("trigger → old listener closed, p99 ms", false, 99.0),
    ] {
        row(label, &|r| {
            let v = sorted(
                r.samples
                    .iter()
                    .filter(|s| s.completed)
                    .map(|s| if f { s.serving_ms } else { s.closed_ms })
                    .collect(),
            );
            format!("{:.1}", pct(&v, p))
        });
    }
    let build = |k: Kind| match k {
        Kind::Naive => Build::Plain,
        k => Build::Of(k),
    };
    row("req/s without upgrades ÷ plain axum::serve", &|r| {
        let c = cell(ratio(tp, build(r.kind), |t| t.rps), 3);
        match r.kind {
            Kind::Naive => format!("{c} (is plain)"),
            _ => format!("**{c}**"),
        }
    });
    row("plain's CPU per request ÷ this", &|r| {
        cell(ratio(tp, build(r.kind), |t| 1.0 / t.cpu_us_per_req), 3)
    });
    out
}

/// The hand-off round, one row per number of open connections.
pub fn handoff(steps: &[StepRun]) -> String {
    let mut out = String::from(
        "| open connections | upgrades | handed over per upgrade | hand-off, ms | connections per ms | \
         trigger → old listener closed, p50 ms | added by the hand-off, ms | ready → MAINPID, ms | \
         trigger → old generation gone, ms | RSS old / new generation, KiB | peak processes (beyond generations) | \
         paced requests ok / failed | idle connections lost |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let median = |v: Vec<f64>| pct(&sorted(v), 50.0);
    let closed = |r: &StepRun| median(r.steps.iter().map(|s| s.sample.closed_ms).collect());
    let base = steps.iter().find(|r| r.open == 0).map(closed);
    for r in steps {
        let s = &r.steps;
        let handed = median(s.iter().map(|x| x.handed_over as f64).collect());
        let ms = median(s.iter().map(|x| x.handoff_ms).collect());
        let per_ms = median(
            s.iter()
                .filter(|x| x.handoff_ms > 0.0)
                .map(|x| x.handed_over as f64 / x.handoff_ms)
                .collect(),
        );
        let c = closed(r);
        // Against the round without open connections, when the run had one (`--full`).
        let added = match base {
            Some(b) if r.open > 0 => format!("{:.1}", c - b),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {handed:.0} | {ms:.2} | {} | {c:.1} | {} | {:.2} | {} | {:.0} / {:.0} | {:.0} ({:.0}) | {} / {} | {} |",
            r.open,
            s.len(),
            if per_ms.is_finite() {
                format!("{per_ms:.0}")
            } else {
                "–".into()
            },
            added,
            median(s.iter().map(|x| x.ready_to_mainpid_ms).collect()),
            match s
                .iter()
                .map(|x| x.old_gone_ms)
                .collect::<Option<Vec<f64>>>()
            {
                Some(v) => format!("{:.1}", median(v)),
                None => "still alive after 30 s".into(),
            },
            median(s.iter().map(|x| x.sample.rss_old_kib as f64).collect()),
            median(s.iter().map(|x| x.sample.rss_new_kib as f64).collect()),
            s.iter().map(|x| x.sample.peak_live).max().unwrap_or(0) as f64,
            s.iter().map(|x| x.sample.peak_extra).max().unwrap_or(0) as f64,
            r.paced_ok,
            r.paced_failed,
            s.iter().map(|x| x.idle_failed).sum::<usize>(),
        );
    }
    out
}

/// This build against the baseline, side by side (the median ratio to plain of each).
pub fn before_after(rounds: &[(&str, &[Vec<Throughput>])], before: &str) -> String {
    let mut out = format!(
        "| ratio to the plain server (median of runs) | exuvia (this build) | exuvia {before} |\n|---|---:|---:|\n"
    );
    for (name, reps) in rounds {
        for (what, f) in [
            ("req/s", (|t: &Throughput| t.rps) as fn(&Throughput) -> f64),
            ("plain's CPU per request ÷ this", |t: &Throughput| {
                1.0 / t.cpu_us_per_req
            }),
        ] {
            let m = |b: Build| pct(&sorted(ratio(reps, b, f)), 50.0);
            let _ = writeln!(
                out,
                "| {name}: {what} | {:.3} | {:.3} |",
                m(Build::Of(Kind::Exuvia)),
                m(Build::Before)
            );
        }
        let rss = |b: Build| {
            pct(
                &sorted(
                    reps.iter()
                        .filter_map(|r| {
                            let p = r.iter().find(|t| t.build == Build::Plain)?.rss_kib as f64;
                            Some(r.iter().find(|t| t.build == b)?.rss_kib as f64 - p)
                        })
                        .collect(),
                ),
                50.0,
            )
        };
        let _ = writeln!(
            out,
            "| {name}: RSS over plain, KiB | {:+.0} | {:+.0} |",
            rss(Build::Of(Kind::Exuvia)),
            rss(Build::Before)
        );
    }
    out
}
