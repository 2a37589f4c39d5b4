//! Turns the repetitions into the README table (min / median / max over repetitions), the
//! target verdicts for exuvia, a CSV of every upgrade, and a hand-written SVG plot.
use std::collections::BTreeSet;
use std::fmt::Write as _;

use exuvia_testing::load::FailureKind;

use crate::contender::{Build, Kind};
use crate::run::{Throughput, UpgradeRun};

pub struct Results {
    /// runs[rep] holds one UpgradeRun per contender.
    pub runs: Vec<Vec<UpgradeRun>>,
    /// throughput[rep] holds one entry per server build.
    pub throughput: Vec<Vec<Throughput>>,
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Nearest-rank percentile of a sorted slice.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// (min, median, max)
fn mmm(v: Vec<f64>) -> (f64, f64, f64) {
    let v = sorted(v);
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (v[0], pct(&v, 50.0), v[v.len() - 1])
}

fn cell(v: Vec<f64>, prec: usize) -> String {
    let (lo, med, hi) = mmm(v);
    if lo.is_nan() {
        return "–".into();
    }
    if lo == hi {
        format!("{med:.prec$}")
    } else {
        format!("{lo:.prec$} / {med:.prec$} / {hi:.prec$}")
    }
}

impl Results {
    fn of(&self, k: Kind) -> Vec<&UpgradeRun> {
        self.runs
            .iter()
            .filter_map(|r| r.iter().find(|u| u.kind == k))
            .collect()
    }

    /// exuvia's upgrades, each with the timeline of the run it belongs to.
    pub fn of_exuvia(&self) -> Vec<(&crate::contender::Sample, &crate::timeline::Events)> {
        self.of(Kind::Exuvia)
            .into_iter()
            .flat_map(|r| r.samples.iter().map(move |s| (s, &r.timeline)))
            .collect()
    }

    fn per_rep(&self, k: Kind, f: impl Fn(&UpgradeRun) -> f64) -> Vec<f64> {
        self.of(k).into_iter().map(f).collect()
    }

    fn tp(&self, b: Build) -> Vec<&Throughput> {
        self.throughput
            .iter()
            .filter_map(|r| r.iter().find(|t| t.build == b))
            .collect()
    }

    /// plain CPU per request ÷ contender CPU per request, per repetition.
    fn cpu_ratio(&self, k: Kind) -> Vec<f64> {
        let b = match k {
            Kind::Naive => Build::Plain,
            k => Build::Of(k),
        };
        self.throughput
            .iter()
            .filter_map(|r| {
                let plain = r.iter().find(|t| t.build == Build::Plain)?.cpu_us_per_req;
                Some(plain / r.iter().find(|t| t.build == b)?.cpu_us_per_req)
            })
            .collect()
    }

    /// contender req/s ÷ plain req/s, per repetition (naive restart *is* the plain server).
    fn ratio(&self, k: Kind) -> Vec<f64> {
        let b = match k {
            Kind::Naive => Build::Plain,
            k => Build::Of(k),
        };
        self.throughput
            .iter()
            .filter_map(|r| {
                let plain = r.iter().find(|t| t.build == Build::Plain)?.rps;
                Some(r.iter().find(|t| t.build == b)?.rps / plain)
            })
            .collect()
    }

    fn rss_overhead(&self, k: Kind) -> Vec<f64> {
        self.overhead(k, |t| t.rss_kib)
    }

    fn overhead(&self, k: Kind, f: impl Fn(&Throughput) -> u64) -> Vec<f64> {
        let b = match k {
            Kind::Naive => Build::Plain,
            k => Build::Of(k),
        };
        self.throughput
            .iter()
            .filter_map(|r| {
                let plain = f(r.iter().find(|t| t.build == Build::Plain)?) as f64;
                Some(f(r.iter().find(|t| t.build == b)?) as f64 - plain)
            })
            .collect()
    }

    /// Upgrade timings pooled over all repetitions, sorted.
    fn pooled(&self, k: Kind, f: impl Fn(&crate::contender::Sample) -> f64) -> Vec<f64> {
        sorted(
            self.of(k)
                .iter()
                .flat_map(|r| r.samples.iter().filter(|s| s.completed).map(&f))
                .collect(),
        )
    }

    fn upgrades(&self, k: Kind) -> usize {
        self.of(k).iter().map(|r| r.samples.len()).sum()
    }

    fn failed(&self, k: Kind) -> u64 {
        self.of(k).iter().map(|r| r.echo.failed).sum()
    }

    /// True when exuvia lost nothing: no failed (or retried) request, long-lived connection
    /// kept, every upgrade completed. Quick mode's exit status.
    pub fn exuvia_clean(&self) -> bool {
        let runs = self.of(Kind::Exuvia);
        !runs.is_empty()
            && runs.iter().all(|r| {
                r.echo.is_clean()
                    && r.long.is_clean()
                    && r.long.long_lived_survived == Some(true)
                    && r.samples.iter().all(|s| s.completed)
            })
    }

    pub fn table(&self) -> String {
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |name: &str, f: &dyn Fn(Kind) -> String| {
            rows.push((name.to_owned(), Kind::ALL.iter().map(|k| f(*k)).collect()));
        };
        let per_upgrade = |r: &UpgradeRun, n: u64| n as f64 / r.samples.len().max(1) as f64;
        row("requests/s, paced upgrades", &|k| {
            cell(self.per_rep(k, |r| r.paced_rps), 0)
        });
        row("upgrades completed", &|k| {
            let done: usize = self
                .of(k)
                .iter()
                .map(|r| r.samples.iter().filter(|s| s.completed).count())
                .sum();
            format!("{done} of {}", self.upgrades(k))
        });
        row("**failed requests per upgrade**", &|k| {
            format!(
                "**{}**",
                cell(self.per_rep(k, |r| per_upgrade(r, r.echo.failed)), 2)
            )
        });
        let kinds: BTreeSet<FailureKind> = self
            .runs
            .iter()
            .flatten()
            .flat_map(|r| r.echo.failures_by_kind.keys().copied())
            .collect();
        for kind in kinds {
            row(&format!("— {kind}"), &|k| {
                cell(self.per_rep(k, |r| per_upgrade(r, r.echo.count(kind))), 2)
            });
        }
        row("failed requests, all upgrades", &|k| {
            format!("{} over {} upgrades", self.failed(k), self.upgrades(k))
        });
        for (label, f) in [
            ("trigger → successor serving, p50 ms", 50.0),
            ("trigger → successor serving, p99 ms", 99.0),
        ] {
            row(label, &|k| {
                cell(
                    self.per_rep(k, |r| {
                        pct(
                            &sorted(
                                r.samples
                                    .iter()
                                    .filter(|s| s.completed)
                                    .map(|s| s.serving_ms)
                                    .collect(),
                            ),
                            f,
                        )
                    }),
                    1,
                )
            });
        }
        for (label, f) in [
            ("**trigger → old listener closed, p50 ms**", 50.0),
            ("**trigger → old listener closed, p99 ms**", 99.0),
        ] {
            row(label, &|k| {
                cell(
                    self.per_rep(k, |r| {
                        pct(
                            &sorted(
                                r.samples
                                    .iter()
                                    .filter(|s| s.completed)
                                    .map(|s| s.closed_ms)
                                    .collect(),
                            ),
                            f,
                        )
                    }),
                    1,
                )
            });
        }
        row("long-lived connection survived", &|k| {
            let runs = self.of(k);
            let ok = runs
                .iter()
                .filter(|r| r.long.long_lived_survived == Some(true))
                .count();
            format!("{ok} of {} runs", runs.len())
        });
        row("peak live processes", &|k| {
            cell(
                self.per_rep(k, |r| {
                    r.samples.iter().map(|s| s.peak_live).max().unwrap_or(0) as f64
                }),
                0,
            )
        });
        row("… of them not a generation (2 ms samples)", &|k| {
            cell(
                self.per_rep(k, |r| {
                    r.samples.iter().map(|s| s.peak_extra).max().unwrap_or(0) as f64
                }),
                0,
            )
        });
        row("RSS old process, KiB (median)", &|k| {
            cell(
                self.per_rep(k, |r| {
                    pct(
                        &sorted(r.samples.iter().map(|s| s.rss_old_kib as f64).collect()),
                        50.0,
                    )
                }),
                0,
            )
        });
        row("RSS new process, KiB (median)", &|k| {
            cell(
                self.per_rep(k, |r| {
                    pct(
                        &sorted(
                            r.samples
                                .iter()
                                .filter(|s| s.completed)
                                .map(|s| s.rss_new_kib as f64)
                                .collect(),
                        ),
                        50.0,
                    )
                }),
                0,
            )
        });
        row("processes / zombies left after the run", &|k| {
            let v: Vec<String> = self
                .of(k)
                .iter()
                .map(|r| format!("{}/{}", r.procs_end.0, r.procs_end.1))
                .collect();
            v.join(", ")
        });
        row("fd growth, first → last generation", &|k| {
            let v: Vec<String> = self
                .of(k)
                .iter()
                .map(|r| format!("{:+}", r.fds_end as i64 - r.fds_start as i64))
                .collect();
            v.join(", ")
        });
        row("req/s without upgrades", &|k| {
            let b = match k {
                Kind::Naive => Build::Plain,
                k => Build::Of(k),
            };
            cell(self.tp(b).iter().map(|t| t.rps).collect(), 0)
        });
        row("**… ÷ plain tokio listener**", &|k| {
            let c = cell(self.ratio(k), 3);
            match k {
                Kind::Naive => format!("{c} (is plain)"),
                _ => format!("**{c}**"),
            }
        });
        row("server CPU per request without upgrades, µs", &|k| {
            let b = match k {
                Kind::Naive => Build::Plain,
                k => Build::Of(k),
            };
            cell(self.tp(b).iter().map(|t| t.cpu_us_per_req).collect(), 1)
        });
        row("**plain tokio's CPU per request ÷ this**", &|k| {
            let c = cell(self.cpu_ratio(k), 3);
            match k {
                Kind::Naive => format!("{c} (is plain)"),
                _ => format!("**{c}**"),
            }
        });
        row("RSS under load, KiB", &|k| {
            let b = match k {
                Kind::Naive => Build::Plain,
                k => Build::Of(k),
            };
            cell(self.tp(b).iter().map(|t| t.rss_kib as f64).collect(), 0)
        });
        row("**… minus plain tokio, KiB**", &|k| {
            cell(self.rss_overhead(k), 0)
        });
        row("… of it private (RssAnon), KiB", &|k| {
            cell(self.overhead(k, |t| t.rss_anon_kib), 0)
        });

        let mut out = String::new();
        let _ = write!(
            out,
            "| metric (min / median / max over {} runs) |",
            self.runs.len()
        );
        for k in Kind::ALL {
            let _ = write!(out, " {} |", k.name());
        }
        out.push_str("\n|---|---:|---:|---:|---:|\n");
        for (name, cells) in rows {
            let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
        }
        out
    }

    /// exuvia against the targets (issue 16's: a quiet machine's numbers are what count).
    pub fn targets(&self) -> String {
        let k = Kind::Exuvia;
        let closed = self.pooled(k, |s| s.closed_ms);
        let serving = self.pooled(k, |s| s.serving_ms);
        let floor = self.pooled(Kind::Reuseport, |s| s.serving_ms);
        let (p50, p99) = (pct(&closed, 50.0), pct(&closed, 99.0));
        let (serving50, floor50) = (pct(&serving, 50.0), pct(&floor, 50.0));
        let ratio = mmm(self.ratio(k)).1;
        let cpu = mmm(self.cpu_ratio(k)).1;
        let rss = mmm(self.rss_overhead(k)).1;
        let anon = mmm(self.overhead(k, |t| t.rss_anon_kib)).1;
        let growth = self
            .of(k)
            .iter()
            .all(|r| r.procs_end == (1, 0) && r.fds_end <= r.fds_start);
        let extra = self
            .of(k)
            .iter()
            .flat_map(|r| r.samples.iter().map(|s| s.peak_extra))
            .max()
            .unwrap_or(0);
        let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
        let mut out = String::new();
        let n = self.upgrades(k);
        let failed = self.failed(k);
        let _ = writeln!(
            out,
            "- 0 failed requests: {failed} failed over {n} upgrades — {}",
            verdict(failed == 0)
        );
        let _ = writeln!(
            out,
            "- old listener closed p50 within 1 ms of exuvia's successor serving p50 and ≤ 1.3 × a plain process start \
             (SO_REUSEPORT's successor serving p50), p99 ≤ 20 ms: p50 {p50:.1} ms vs serving {serving50:.1} ms and process start {floor50:.1} ms, \
             p99 {p99:.1} ms (all {} upgrades pooled) — {}",
            closed.len(),
            verdict(p50 <= serving50 + 1.0 && p50 <= 1.3 * floor50 && p99 <= 20.0)
        );
        let _ = writeln!(
            out,
            "- CPU per request within 1 % of plain tokio: CPU-per-request ratio {cpu:.3} (median of runs) — {}; \
             req/s ratio {ratio:.3} (wall-clock, as noisy as the machine)",
            verdict(cpu >= 0.99)
        );
        let _ = writeln!(
            out,
            "- library RSS over plain tokio ≤ 128 KiB: {rss:+.0} KiB RSS (median of runs) — {}; of it private memory (RssAnon): {anon:+.0} KiB — {}",
            verdict(rss <= 128.0),
            verdict(anon <= 128.0)
        );
        let _ = writeln!(
            out,
            "- peak processes ≤ generations alive + 1: at most {extra} process(es) beyond the generations in any 2 ms sample — {}",
            verdict(extra <= 1)
        );
        let _ = writeln!(
            out,
            "- no process or fd growth: {} — {}",
            if growth {
                "1 process and no zombie left, fds of the last generation ≤ the first's, every run"
            } else {
                "see the last two upgrade rows"
            },
            verdict(growth)
        );
        out
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(
            "rep,contender,upgrade,completed,serving_ms,old_closed_ms,rss_old_kib,rss_new_kib,peak_live,peak_extra,note\n",
        );
        for (rep, runs) in self.runs.iter().enumerate() {
            for r in runs {
                for (i, s) in r.samples.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{rep},{},{i},{},{:.3},{:.3},{},{},{},{},{}",
                        r.kind.name(),
                        s.completed,
                        s.serving_ms,
                        s.closed_ms,
                        s.rss_old_kib,
                        s.rss_new_kib,
                        s.peak_live,
                        s.peak_extra,
                        s.note.replace(',', ";")
                    );
                }
            }
        }
        out
    }

    pub fn svg(&self, caption: &str) -> String {
        let failures: Vec<(f64, f64, f64)> = Kind::ALL
            .iter()
            .map(
                |k| mmm(self.per_rep(*k, |r| r.echo.failed as f64 / r.samples.len().max(1) as f64)),
            )
            .collect();
        let lat: Vec<[f64; 4]> = Kind::ALL
            .iter()
            .map(|k| {
                let s = self.pooled(*k, |s| s.serving_ms);
                let c = self.pooled(*k, |s| s.closed_ms);
                [pct(&s, 50.0), pct(&s, 99.0), pct(&c, 50.0), pct(&c, 99.0)]
            })
            .collect();
        crate::svg::plot(
            "Upgrading an echo server under load: exuvia vs ecdysis vs naive restart vs SO_REUSEPORT",
            &failures,
            &lat,
            caption,
        )
    }
}
