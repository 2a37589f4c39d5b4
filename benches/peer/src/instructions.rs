//! Instructions per operation, counted by callgrind (valgrind): deterministic, so the same
//! on a busy machine as on a quiet one. `accept-cost` runs the server side of N operations
//! (every connection or datagram queued beforehand), once with N = 500 and once with
//! N = 1000; the difference ÷ 500 is the cost of one operation, start-up cancelled out.
//! User-space instructions only: the system calls' kernel work is the same for both and
//! not counted (the CPU-per-request rows of the throughput tables include it). Each count is
//! the median of three runs (see [`REPEAT`]).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const CASES: [(&str, &str); 5] = [
    ("tcp", "TCP accept (tokio)"),
    ("unix", "Unix accept (tokio)"),
    ("udp", "UDP receive (tokio)"),
    (
        "echo",
        "echo request: accept + connection task + one line (tokio)",
    ),
    ("sync-tcp", "TCP accept (blocking)"),
];

/// `per_op[case][impl]`: instructions per operation, impls = plain, exuvia, exuvia before.
pub struct Counts {
    pub per_op: Vec<[Option<f64>; 3]>,
}

pub fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Total instructions callgrind counted in `measured*` for one run, if it ran.
fn count(bin: &Path, imp: &str, case: &str, n: u32, out: &Path) -> Option<u64> {
    let ok = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--toggle-collect=*measured*")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .args(["--impl", imp, "--case", case, "-n", &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let text = std::fs::read_to_string(out).ok();
    let _ = std::fs::remove_file(out);
    if !ok {
        return None;
    }
    text?
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Runs per N; the median count is kept. A run is not quite deterministic: one binary
/// counted 2.019 M or 2.043 M instructions for 1 000 TCP accepts from run to run (±25 per
/// accept), and two builds of the same library differing only in code layout moved the
/// per-accept count by ~50 (2 %): differences below that are noise, not a change.
const REPEAT: usize = 3;

fn per_op(bin: &Path, imp: &str, case: &str, scratch: &Path) -> Option<f64> {
    let out = scratch.join(format!("callgrind-{imp}-{case}.out"));
    let median = |n| {
        let mut v = (0..REPEAT)
            .map(|_| count(bin, imp, case, n, &out))
            .collect::<Option<Vec<u64>>>()?;
        v.sort_unstable();
        Some(v[REPEAT / 2])
    };
    let a = median(500)?;
    let b = median(1000)?;
    Some(b.saturating_sub(a) as f64 / 500.0)
}

/// Runs every case; `before` is the directory of a baseline build (`--baseline`), if any.
/// The child processes are waited for by std: the driver calls this before it becomes a
/// subreaper.
pub fn measure(bins: &Path, before: Option<&PathBuf>, scratch: &Path) -> Counts {
    let _ = std::fs::create_dir_all(scratch);
    let bin = bins.join("accept-cost");
    let per_op = CASES
        .iter()
        .map(|(case, _)| {
            let old = before.map(|d| d.join("accept-cost"));
            [
                per_op(&bin, "plain", case, scratch),
                per_op(&bin, "exuvia", case, scratch),
                old.and_then(|b| per_op(&b, "exuvia", case, scratch)),
            ]
        })
        .collect();
    Counts { per_op }
}

impl Counts {
    pub fn table(&self, before: Option<&str>) -> String {
        let mut out = String::from(
            "| instructions per operation (callgrind) | plain tokio / std | exuvia | exuvia ÷ plain |",
        );
        if let Some(b) = before {
            let _ = write!(out, " exuvia {b} | {b} ÷ plain |");
        }
        out.push_str(if before.is_some() {
            "\n|---|---:|---:|---:|---:|---:|\n"
        } else {
            "\n|---|---:|---:|---:|\n"
        });
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "–".into(),
        };
        for ((_, what), [plain, ex, old]) in CASES.iter().zip(&self.per_op) {
            let _ = write!(
                out,
                "| {what} | {} | {} | **{}** |",
                cell(*plain),
                cell(*ex),
                ratio(*ex, *plain)
            );
            if before.is_some() {
                let _ = write!(out, " {} | {} |", cell(*old), ratio(*old, *plain));
            }
            out.push('\n');
        }
        out
    }
}
