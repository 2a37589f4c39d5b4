//! Properties of `exuvia lint` on any text: its reader and rules never panic, and the reader
//! sees what systemd sees — the same sections, the same keys with the same values, and a syntax
//! finding for every line systemd ignores (at least as many) — since a pitfall the linter reads differently from
//! systemd is a pitfall it misses. Keys and values are compared up to the length of whitespace runs: a
//! continuation keeps the next line's indentation in systemd and one space in the linter, which
//! no rule can tell apart.

use std::path::Path;

use crate::lint::{parse, rules};
use crate::systemd_ini;

/// Targets the linter is asked about: below, at and between its key tables, and beyond.
const TARGETS: [u32; 4] = [239, 252, 255, 262];
const PATHS: [&str; 4] = ["a.service", "a.socket", "a.conf", "a.txt"];

pub fn check(text: &str) {
    let unit = parse::parse(text);
    // Lines as systemd counts them (a lone `\r` and NUL end one too): what findings cite.
    let lines = systemd_ini::lines(text).len().max(1);
    for s in &unit.sections {
        assert!(
            !s.name.is_empty() && !s.name.contains(['[', ']']),
            "{:?}",
            s.name
        );
        assert!((1..=lines).contains(&s.line));
        for e in &s.entries {
            assert!(!e.key.contains('='), "{:?}", e.key);
            let ws: &[char] = &[' ', '\t', '\n', '\r'];
            assert_eq!(e.key.trim_matches(ws), e.key);
            assert_eq!(e.value.trim_matches(ws), e.value);
            assert!((1..=lines).contains(&e.line), "line {} of {lines}", e.line);
        }
    }
    for (no, _) in unit.errors.iter().chain(&unit.allows) {
        assert!((1..=lines).contains(no), "line {no} of {lines}");
    }
    // One file type and target per input (picked from its length, so a reproducer replays
    // the same): the rules cost most of a run, and mutation varies the length anyway.
    let path = PATHS[text.len() % PATHS.len()];
    let target = TARGETS[text.len() / PATHS.len() % TARGETS.len()];
    for f in rules::check(Path::new(path), &unit, target) {
        assert!(f.line <= lines, "finding on line {} of {lines}", f.line);
    }
    let Ok(sd) = systemd_ini::parse(text) else {
        return;
    };
    assert_eq!(
        unit.sections
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        sd.sections
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        "sections"
    );
    for (ours, theirs) in unit.sections.iter().zip(&sd.sections) {
        let read: Vec<(String, String)> = ours
            .entries
            .iter()
            .map(|e| (squeeze(&e.key), squeeze(&e.value)))
            .collect();
        let meant: Vec<(String, String)> = theirs
            .entries
            .iter()
            .map(|(k, v)| (squeeze(k), squeeze(v)))
            .collect();
        assert_eq!(read, meant, "entries of [{}]", theirs.name);
    }
    // More findings than systemd has complaints is noise at worst; fewer is a missed line.
    assert!(
        unit.errors.len() >= sd.ignored.len(),
        "syntax findings {:?} vs lines systemd ignores {:?}",
        unit.errors,
        sd.ignored
    );
}

/// Runs of whitespace as one space.
fn squeeze(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}
