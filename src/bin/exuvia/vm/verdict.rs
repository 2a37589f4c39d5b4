//! From a guest's console to a verdict: the driver's `RESULT`/`VERDICT`/`FATAL` lines
//! (guest/lib.sh) become one result per scenario, the results of one systemd version one
//! table, and all of them the `--json` report.
//!
//! JSON (a contract for CI jobs; fields are only ever added):
//! ```text
//! pass        every scenario of every version passed
//! versions    [{asked, suite, systemd, runner, pass, scenarios: [{name, verdict, pass,
//!              seconds, requests, failed, retried, reloads, p50_ms, p99_ms, ended_by_stop,
//!              failed_checks: [..], checks: [{name, ok, detail}], fatal, log}]}]
//! ```
//! verdict: "pass" | "fail" | "timeout" | "fatal" (the service could not start) | "no verdict"
//! (the guest ended without one); `retried`: HTTP requests the load client retried on a fresh
//! connection (shown, never hidden: see the check report).
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub verdict: &'static str,
    pub pass: bool,
    pub seconds: f64,
    pub requests: Option<i64>,
    pub failed: Option<i64>,
    pub retried: Option<i64>,
    pub reloads: Option<i64>,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub ended_by_stop: Option<i64>,
    pub failed_checks: Vec<String>,
    pub checks: Vec<Check>,
    pub fatal: Option<String>,
    /// The guest's systemd, as `systemctl --version` put it.
    #[serde(skip)]
    pub systemd: Option<String>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// What the user asked for (`257`, `sid`).
    pub asked: String,
    pub suite: String,
    /// What the guest really runs, e.g. `257 (257.13-1~deb13u1)`.
    pub systemd: String,
    pub runner: String,
    pub pass: bool,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pass: bool,
    pub versions: Vec<Version>,
}

/// Console output without CR, colour codes and the terminal resets systemd sends (ESC[!p,
/// OSC 104) on a pty or a serial console.
pub fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\r' => {}
            '\x1b' => match it.next() {
                Some('[') => {
                    while let Some(&n) = it.peek() {
                        it.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                // OSC (systemd ≥ 258 sends OSC 3008 context marks): up to BEL or ESC \.
                Some(']') => {
                    while let Some(n) = it.next() {
                        if n == '\x07' || (n == '\x1b' && it.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// `key=value` pairs of a RESULT line's tail (values up to the next space).
fn field(tail: &str, key: &str) -> Option<i64> {
    tail.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The scenario's result from its console log. `ended`: None when the guest was stopped
/// (deadline or interrupt).
pub fn parse(
    name: &str,
    console: &str,
    ended: Option<bool>,
    seconds: f64,
    log: PathBuf,
) -> Scenario {
    let text = clean(console);
    let mut s = Scenario {
        name: name.to_owned(),
        verdict: "no verdict",
        pass: false,
        seconds,
        requests: None,
        failed: None,
        retried: None,
        reloads: None,
        p50_ms: None,
        p99_ms: None,
        ended_by_stop: None,
        failed_checks: Vec::new(),
        checks: Vec::new(),
        fatal: None,
        systemd: None,
        log,
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("RESULT check=") {
            let (cname, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let (ok, detail) = match tail.split_once(' ') {
                Some((o, d)) => (o, d),
                None => (tail, ""),
            };
            let ok = ok == "ok=1";
            if !ok {
                s.failed_checks.push(cname.to_owned());
            }
            s.checks.push(Check {
                name: cname.to_owned(),
                ok,
                detail: detail.to_owned(),
            });
        } else if let Some(t) = line.strip_prefix("RESULT metric=summary ") {
            s.requests = field(t, "requests");
            s.failed = field(t, "failed");
            s.retried = field(t, "retried");
            s.reloads = field(t, "reloads");
            s.p50_ms = field(t, "p50_ms").filter(|&v| v >= 0);
            s.p99_ms = field(t, "p99_ms").filter(|&v| v >= 0);
            s.ended_by_stop = field(t, "ended_by_stop");
        } else if let Some(v) = line.strip_prefix("VERDICT ") {
            s.verdict = match v.trim() {
                "pass" => "pass",
                "fail" => "fail",
                "fatal" => "fatal",
                _ => "no verdict",
            };
        } else if let Some(f) = line.strip_prefix("FATAL ") {
            s.fatal = Some(f.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("INFO systemd=systemd ") {
            s.systemd = Some(v.trim().to_owned());
        }
    }
    if ended.is_none() && s.verdict != "pass" {
        s.verdict = "timeout";
    }
    s.pass = s.verdict == "pass" && s.failed_checks.is_empty() && !s.checks.is_empty();
    if s.verdict == "pass" && !s.pass {
        s.verdict = "fail";
    }
    s
}

fn num(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "exuvia vm: systemd {}, {}, {}: {}",
            self.systemd,
            self.suite,
            self.runner,
            if self.pass { "PASS" } else { "FAIL" }
        )?;
        writeln!(
            f,
            "  {:<12} {:<8} {:>9} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7}",
            "scenario",
            "verdict",
            "requests",
            "failed",
            "retried",
            "reloads",
            "p50 ms",
            "p99 ms",
            "time s"
        )?;
        for s in &self.scenarios {
            writeln!(
                f,
                "  {:<12} {:<8} {:>9} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7.1}",
                s.name,
                s.verdict,
                num(s.requests),
                num(s.failed),
                num(s.retried),
                num(s.reloads),
                num(s.p50_ms),
                num(s.p99_ms),
                s.seconds
            )?;
        }
        for s in self.scenarios.iter().filter(|s| !s.pass) {
            let mut why = String::new();
            if let Some(fatal) = &s.fatal {
                let _ = write!(why, "{fatal}");
            }
            for c in s.checks.iter().filter(|c| !c.ok) {
                let _ = write!(
                    why,
                    "{}{} ({})",
                    if why.is_empty() { "" } else { "; " },
                    c.name,
                    c.detail
                );
            }
            if why.is_empty() {
                why = match s.verdict {
                    "timeout" => "stopped at the deadline (--timeout)".into(),
                    _ => "the guest ended without a verdict".into(),
                };
            }
            writeln!(f, "  {} failed: {why}", s.name)?;
            writeln!(f, "  {} console: {}", s.name, s.log.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\x1b[!p\x1b]104\x07boot\r\nINFO systemd=systemd 257 (257.13-1~deb13u1)\r\n\
        RESULT check=check_unit ok=1 rc=0 requests=10\n\
        RESULT check=end_state ok=0 inv_same=0 nrestarts=0->1\n\
        RESULT metric=summary requests=12345 failed=0 retried=2 reloads=20 p50_ms=221 p99_ms=-1 ended_by_stop=0\n\
        VERDICT fail\n";

    #[test]
    fn parses_checks_summary_and_verdict() {
        let s = parse("reload", CONSOLE, Some(true), 1.5, "x.log".into());
        assert_eq!(s.verdict, "fail");
        assert!(!s.pass);
        assert_eq!(s.failed_checks, ["end_state"]);
        assert_eq!(s.checks.len(), 2);
        assert_eq!(s.checks[1].detail, "inv_same=0 nrestarts=0->1");
        assert_eq!(
            (s.requests, s.failed, s.retried, s.reloads),
            (Some(12345), Some(0), Some(2), Some(20))
        );
        assert_eq!((s.p50_ms, s.p99_ms), (Some(221), None));
        assert_eq!(s.systemd.as_deref(), Some("257 (257.13-1~deb13u1)"));
    }

    #[test]
    fn osc_ended_by_st_does_not_swallow_lines() {
        let c = "\x1b]3008;start=ab;type=boot\x1b\\Queued start job\nVERDICT pass\n\x1b]3008;end=ab\x1b\\bye";
        assert_eq!(clean(c), "Queued start job\nVERDICT pass\nbye");
    }

    #[test]
    fn pass_needs_checks_and_no_failure() {
        let ok = "RESULT check=a ok=1 x\nVERDICT pass\n";
        assert!(parse("r", ok, Some(true), 0.0, "l".into()).pass);
        let empty = "VERDICT pass\n";
        assert!(!parse("r", empty, Some(true), 0.0, "l".into()).pass);
        let stopped = parse("r", "RESULT check=a ok=1 x\n", None, 0.0, "l".into());
        assert_eq!(stopped.verdict, "timeout");
        let fatal = parse(
            "r",
            "FATAL socket unit x did not start\nVERDICT fatal\n",
            Some(true),
            0.0,
            "l".into(),
        );
        assert_eq!(
            (fatal.verdict, fatal.fatal.as_deref()),
            ("fatal", Some("socket unit x did not start"))
        );
    }
}
