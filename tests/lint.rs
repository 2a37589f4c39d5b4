//! `exuvia lint` through the real binary on the fixtures in tests/fixtures/units/: each fixture
//! yields exactly the expected (line, rule) findings, each with a fix, and the exit code says
//! whether anything was found.
use std::process::Command;

const EXUVIA: &str = env!("CARGO_BIN_EXE_exuvia");

/// (exit code, [(line, rule)], number of "fix:" lines) for one lint run.
fn lint(args: &[&str]) -> (Option<i32>, Vec<(usize, String)>, usize) {
    let o = Command::new(EXUVIA)
        .arg("lint")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run exuvia lint");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut findings = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        // path:LINE: [rule] message
        let mut parts = line.splitn(3, ':');
        let (_, no, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        let no: usize = no
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let rule = rest
            .trim_start()
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(r, _)| r.to_string())
            .expect("rule");
        findings.push((no, rule));
    }
    let fixes = text
        .lines()
        .filter(|l| l.starts_with("    fix: ") && l.len() > 12)
        .count();
    (o.status.code(), findings, fixes)
}

fn fixture(name: &str) -> String {
    format!("tests/fixtures/units/{name}")
}

fn expect(findings: &[(usize, String)], want: &[(usize, &str)]) {
    let got: Vec<(usize, &str)> = findings.iter().map(|(l, r)| (*l, r.as_str())).collect();
    assert_eq!(got, want);
}

#[test]
fn every_reload_pitfall_is_reported_with_a_fix() {
    let (code, findings, fixes) = lint(&[&fixture("risky.service")]);
    assert_eq!(code, Some(1));
    expect(
        &findings,
        &[
            (8, "notify-access-all"),
            (9, "kill-mode"),
            (10, "exec-reload-kill"),
            (11, "private-pids"),
            (12, "syscall-errno"),
            (13, "start-limit-section"),
            (14, "start-limit-section"),
            (16, "private-users-caps"),
            (17, "binary-path"),
            (18, "binary-path"),
            (19, "unknown-key"),
            (21, "unknown-section"),
        ],
    );
    assert_eq!(fixes, findings.len(), "every finding needs a fix");
}

#[test]
fn sozu_style_unit() {
    let (code, findings, _) = lint(&[&fixture("sozu-like.service")]);
    assert_eq!(code, Some(1));
    expect(
        &findings,
        &[
            (8, "pidfile-simple"),
            (10, "unknown-key"),
            (11, "exec-reload-kill"),
        ],
    );
}

#[test]
fn target_version_decides_what_is_unknown() {
    let (code, findings, _) = lint(&["--systemd", "252", &fixture("old-target.service")]);
    assert_eq!(code, Some(1));
    expect(
        &findings,
        &[
            (5, "unknown-value"),
            (6, "unknown-key"),
            (8, "unknown-value"),
        ],
    );
    let (code, findings, _) = lint(&["--systemd", "257", &fixture("old-target.service")]);
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:?}");
}

#[test]
fn syntax_errors_and_sections_per_unit_type() {
    let (code, findings, _) = lint(&[&fixture("broken-syntax.socket")]);
    assert_eq!(code, Some(1));
    expect(
        &findings,
        &[
            (1, "syntax"),
            (2, "syntax"),
            (5, "syntax"),
            (7, "unknown-key"),
            (8, "unknown-section"),
        ],
    );
    // PassPIDFD= arrived in 258.
    let (_, findings, _) = lint(&["--systemd", "258", &fixture("broken-syntax.socket")]);
    assert!(!findings.iter().any(|(l, _)| *l == 7), "{findings:?}");
}

#[test]
fn allow_comment_silences_only_its_directive() {
    let (code, findings, _) = lint(&[&fixture("fallback.service")]);
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:?}");
}

#[test]
fn checked_in_units_are_clean() {
    let (code, findings, _) = lint(&[
        "units/exuvia-echo.service",
        "units/exuvia-echo.socket",
        "units/isolated/exuvia-echo.service",
    ]);
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:?}");
    let (code, findings, _) = lint(&[
        "--systemd",
        "252",
        "units/systemd-252/exuvia-echo.service",
        "units/systemd-252/exuvia-echo.socket",
    ]);
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:?}");
    // …and the 257 units are not fine for 252: that is what the fallback variant is for.
    let (code, _, _) = lint(&["--systemd", "252", "units/exuvia-echo.service"]);
    assert_eq!(code, Some(1));
}

#[test]
fn unreadable_file_exits_2() {
    let (code, _, _) = lint(&["tests/fixtures/units/does-not-exist.service"]);
    assert_eq!(code, Some(2));
}

#[test]
fn timeouts_must_cover_the_service_deadlines() {
    // EXUVIA_* from Environment= lines (quoted words, several lines, the last wins).
    let (code, findings, fixes) = lint(&[&fixture("deadlines.service")]);
    assert_eq!(code, Some(1));
    expect(
        &findings,
        &[(7, "deadlines"), (10, "deadlines"), (11, "deadlines")],
    );
    assert_eq!(fixes, findings.len());
    // Without EXUVIA_* the library's defaults apply (ready 60 s, hard drain 30 s); a
    // malformed value is a finding of its own (the service would not start).
    let (code, findings, _) = lint(&[&fixture("library-defaults.service")]);
    assert_eq!(code, Some(1));
    expect(&findings, &[(7, "deadlines"), (8, "deadlines")]);
    // systemd's own defaults (90 s) cover the library's: an unconfigured unit is fine.
    let (code, findings, _) = lint(&[&fixture("naive.service")]);
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:?}");
}

#[test]
fn both_reload_clients_are_recognised_and_kill_stays_flagged() {
    let (code, findings, fixes) = lint(&["--systemd", "252", &fixture("reload-clients.service")]);
    assert_eq!(code, Some(1));
    // 4: the service binary as exuvia-reload, 5: the CLI — both clean; 6: exuvia-reload
    // without '@'; 7, 8: missing --wait/--control; 9: kill -HUP; 10: exuvia-reload takes no
    // --flag=value (the CLI does).
    expect(
        &findings,
        &[
            (6, "reload-client"),
            (7, "reload-client"),
            (8, "reload-client"),
            (9, "exec-reload-kill"),
            (10, "reload-client"),
        ],
    );
    assert_eq!(fixes, findings.len());
}
