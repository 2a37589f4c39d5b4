//! `exuvia unit` and `exuvia verify` through the real binary: the checked-in units/ are exactly
//! what the generator produces, bad input writes nothing, every profile × systemd version is
//! free of the directives that break a fork+exec upgrade, and — with a systemd 257 root in
//! EXUVIA_SYSTEMD_ROOT — the analyzer accepts the units and their exposure stays in budget.
//!
//! The tests are grouped by concern in tests/units/: what the generator writes, the input it
//! refuses, what systemd's analyzer says, and hostile values in every field.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXUVIA: &str = env!("CARGO_BIN_EXE_exuvia");
const SPEC: &str = "units/exuvia-echo.toml";

/// Must match units/regenerate.sh: (output directory, extra flags).
const VARIANTS: &[(&str, &[&str])] = &[
    ("units", &[]),
    ("units/systemd-252", &["--systemd", "252"]),
    ("units/isolated", &["--profile", "isolated"]),
];

fn exuvia(args: &[&str]) -> Output {
    Command::new(EXUVIA)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run exuvia")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "exuvia-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn unit_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service") || n.ends_with(".socket") || n.ends_with(".nix"))
        .collect();
    v.sort();
    v
}

fn generate(args: &[&str]) -> String {
    let mut full = vec!["unit", "--stdout"];
    full.extend(args);
    let o = exuvia(&full);
    assert!(o.status.success(), "exuvia {full:?} failed: {}", stderr(&o));
    stdout(&o)
}

fn base(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--name",
        "app",
        "--exec",
        "/usr/bin/app",
        "--listen",
        "web=tcp:0.0.0.0:8080",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn generate_owned(args: &[String]) -> String {
    generate(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The rootfs of a systemd whose analyzer to use, or None (skip) when not configured locally.
fn systemd_root() -> Option<String> {
    match std::env::var("EXUVIA_SYSTEMD_ROOT") {
        Ok(r) if !r.is_empty() => Some(r),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but EXUVIA_SYSTEMD_ROOT is unset: set it to the output of tests/systemd/rootfs.sh trixie"
            )
        }
        _ => {
            eprintln!(
                "skipped: EXUVIA_SYSTEMD_ROOT is unset (point it at a systemd 257 rootfs, e.g. tests/systemd/rootfs.sh trixie)"
            );
            None
        }
    }
}

fn exposure(o: &Output) -> f64 {
    let text = stdout(o);
    let line = text
        .lines()
        .find(|l| l.contains(": exposure "))
        .unwrap_or_else(|| panic!("no exposure in {text:?} / {}", stderr(o)));
    line.split(": exposure ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("exposure number")
}

/// A TOML basic string holding `s` exactly (control characters as \u escapes).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `exuvia unit --stdout` for a spec given as TOML text (plus flags).
fn unit_from_toml(toml: &str, extra: &[&str]) -> Output {
    let tmp = TempDir::new("spec");
    let spec = tmp.path().join("spec.toml");
    fs::write(&spec, toml).expect("write spec");
    let mut args = vec![
        "unit",
        "--stdout",
        "--config",
        spec.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    exuvia(&args)
}

/// Exit 2 with one line containing `want`, and nothing written.
fn assert_refused(o: &Output, want: &str, case: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{case} must be refused: {err}{}",
        stdout(o)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{case}: not one line: {err}"
    );
    assert!(err.contains(want), "{case}: {err:?} lacks {want:?}");
    assert!(stdout(o).is_empty(), "{case}: printed a unit");
}

const APP: &str = "name = \"app\"\nexec = \"/usr/bin/app\"\n";

/// `exuvia unit --stdout` for app (/usr/bin/app) with these flags.
fn app_unit(extra: &[&str]) -> Output {
    let mut args = vec![
        "unit",
        "--stdout",
        "--name",
        "app",
        "--exec",
        "/usr/bin/app",
    ];
    args.extend(extra);
    exuvia(&args)
}

mod analyzer;
mod generate;
mod hostile;
mod refusals;
