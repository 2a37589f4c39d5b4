//! Every input with which a fuzz target in fuzz/ broke a property, replayed under plain
//! `cargo test`: library and test-tooling parsers through the same entry points as the fuzz
//! targets (feature `fuzzing`), the CLI through the real `exuvia` binary.
//!
//! A test marked `ignore` reproduces a defect that is not fixed yet (fuzz/src/known_open.rs
//! lets the fuzz targets step around it meanwhile): the fix un-ignores it and deletes that entry.

use std::path::PathBuf;
use std::process::Command;

/// How systemd reads a unit file (the fuzz target's independent reader).
#[allow(dead_code)]
#[path = "../fuzz/src/systemd_ini.rs"]
mod systemd_ini;

const EXUVIA: &str = env!("CARGO_BIN_EXE_exuvia");

/// A file in a fresh directory of its own under the system's temp dir, removed with it.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, content: &[u8]) -> TempFile {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("exuvia-fuzz-regression-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write temp file");
        TempFile { dir, path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `[rule]`s `exuvia lint` reports for a unit file with this content.
fn lint_rules(name: &str, content: &[u8]) -> Vec<String> {
    let f = TempFile::new(name, content);
    let o = Command::new(EXUVIA)
        .arg("lint")
        .arg(&f.path)
        .output()
        .expect("run exuvia lint");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(": [")?
                .1
                .split_once(']')
                .map(|(r, _)| r.to_string())
        })
        .collect()
}

// --- the handover channel (fuzz target channel_message) ---

#[test]
fn a_failed_reason_of_control_characters_survives_a_round_trip() {
    // Each \x04 becomes `\u{4}` (5 characters): escaped, the reason is 505 characters long,
    // more than MAX_REASON; cut before escaping, it decoded to that and re-encoding cut it.
    let mut msg = b"failed ".to_vec();
    msg.extend([4u8; 101]);
    exuvia::fuzzing::channel_message(&msg);
}

// --- the handover manifest (fuzz target manifest; found reading the parser for it) ---

#[test]
fn a_format_1_manifest_with_256_fds_can_be_handed_on() {
    let mut m = String::from("exuvia-handover 1\ngeneration 2\n");
    for i in 0..256 {
        m.push_str(&format!("fd {} tcp l{i}\n", 3 + i));
    }
    m.push_str("end\n");
    exuvia::fuzzing::manifest(m.as_bytes());
}

// --- exuvia lint's reader (fuzz target lint) ---

#[test]
fn a_directive_after_a_carriage_return_is_linted() {
    for sep in ["\r", "\0"] {
        let unit = format!("[Service]\nType=notify-reload\nDescription=x{sep}KillMode=process\n");
        let rules = lint_rules("cr.service", unit.as_bytes());
        assert!(rules.iter().any(|r| r == "kill-mode"), "{sep:?}: {rules:?}");
    }
}

#[test]
fn an_escaped_trailing_backslash_does_not_swallow_the_next_directive() {
    for end in ["\\\\", "\\ "] {
        let unit =
            format!("[Service]\nType=notify-reload\nEnvironment=A=b{end}\nKillMode=process\n");
        let rules = lint_rules("bs.service", unit.as_bytes());
        assert!(rules.iter().any(|r| r == "kill-mode"), "{end:?}: {rules:?}");
    }
}

#[test]
fn bind_ipv6_only_is_a_known_socket_key() {
    let unit = "[Socket]\nListenStream=8080\nBindIPv6Only=both\n";
    let rules = lint_rules("a.socket", unit.as_bytes());
    assert!(!rules.iter().any(|r| r == "unknown-key"), "{rules:?}");
}

#[test]
fn a_key_behind_a_no_break_space_is_the_unknown_key_systemd_sees() {
    let rules = lint_rules(
        "nbsp.service",
        "[Service]\n\u{a0}KillMode=process\n".as_bytes(),
    );
    assert!(
        rules.iter().any(|r| r == "unknown-key") && !rules.iter().any(|r| r == "kill-mode"),
        "{rules:?}"
    );
}

// --- the simulator's notify reader (fuzz target notify) ---

#[test]
fn a_notify_field_ends_at_a_carriage_return() {
    exuvia_testing::fuzzing::notify(b"READY=1\r\nSTATUS=ok\r\n");
}

// --- exuvia unit (fuzz target unit_render, structured inputs, on the code before the units
// branch was merged: these three were found there on its own within 1.6 M runs) ---

/// `exuvia unit --config` on this spec and flags: `None` when it refuses the spec (exit 2),
/// else every file it wrote as systemd reads it.
fn unit(spec: &str, flags: &[&str]) -> Option<Vec<Vec<systemd_ini::Section>>> {
    let f = TempFile::new("spec.toml", spec.as_bytes());
    let out = f.dir.join("out");
    let o = Command::new(EXUVIA)
        .args(["unit", "--config"])
        .arg(&f.path)
        .arg("--out")
        .arg(&out)
        .args(flags)
        .output()
        .expect("run exuvia unit");
    if o.status.code() == Some(2) {
        return None;
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&out).expect("the output directory") {
        let text = std::fs::read_to_string(entry.expect("a file").path()).expect("UTF-8 unit");
        let read = systemd_ini::parse(&text).expect("systemd loads the unit");
        assert!(read.ignored.is_empty(), "{:?}", read.ignored);
        files.push(read.sections);
    }
    Some(files)
}

fn values<'a>(files: &'a [Vec<systemd_ini::Section>], key: &str) -> Vec<&'a str> {
    files
        .iter()
        .flatten()
        .flat_map(|s| &s.entries)
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn a_trailing_backslash_cannot_join_the_next_directive() {
    let spec = "name = \"myapp\"\nexec = \"/usr/bin/myapp\"\nruntime_directories = ['\\app\\', \"éapp\"]\n";
    if let Some(files) = unit(spec, &[]) {
        assert_eq!(values(&files, "RuntimeDirectory"), ["\\app\\", "éapp"]);
    }
}

#[test]
fn the_root_directory_is_not_an_executable() {
    let spec = "name = \"x.y\"\nexec = \"/\"\n";
    if let Some(files) = unit(spec, &[]) {
        let exec = values(&files, "ExecStart");
        assert!(
            exec.iter()
                .all(|e| !e.split(' ').next().unwrap_or("/").ends_with('/')),
            "{exec:?}"
        );
    }
}

#[test]
fn memory_high_stays_within_64_bits() {
    let spec = "name = \"myapp\"\nexec = \"/usr/bin/myapp\"\n";
    if let Some(files) = unit(spec, &["--memory", "18446744073709551M"]) {
        for v in values(&files, "MemoryHigh") {
            let (n, suffix) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
            let shift = match suffix {
                "" => 0,
                "K" => 10,
                "M" => 20,
                "G" => 30,
                "T" => 40,
                _ => 64,
            };
            let bytes = n.parse::<u128>().expect("a number") << shift;
            assert!(bytes <= u128::from(u64::MAX), "MemoryHigh={v}");
        }
    }
}

#[test]
fn a_long_startup_never_wraps_into_a_short_timeout() {
    for startup in ["8030604275824813428", "9223372036854775807"] {
        let spec = format!("name = \"myapp\"\nexec = \"/usr/bin/myapp\"\nstartup = {startup}\n");
        if let Some(files) = unit(&spec, &[]) {
            for v in values(&files, "TimeoutStartSec") {
                let secs: u64 = v
                    .strip_suffix('s')
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                assert!(secs >= 8030604275824813428, "TimeoutStartSec={v}");
            }
        }
    }
}
