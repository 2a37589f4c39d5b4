//! Whether the unit's timeouts cover the service's own deadlines (docs/units.md, "Deadlines").
//! The service reads `EXUVIA_READY_TIMEOUT`, `EXUVIA_DRAIN_SOFT` and `EXUVIA_DRAIN_HARD` from
//! its environment (the library's defaults when unset); systemd bounds a start *and every
//! reload* by `TimeoutStartSec=` and SIGKILLs at `TimeoutStopSec=`. A unit whose timeouts are
//! shorter fails good reloads or kills a service mid-drain. Values from `EnvironmentFile=` are
//! not seen here.
use super::client;
use super::finding::{Finding, finding};
use super::parse::{Entry, UnitText};
use crate::unit::deadlines::{DEFAULT_DRAIN_HARD_MS, DEFAULT_DRAIN_SOFT_MS, DEFAULT_READY_MS};
use crate::unit::timespan::{Dialect, format_ms, parse_us};

/// The least a timeout must exceed the deadline it covers by (the handover itself, killing a
/// failed successor, the last READY=1); `exuvia unit` adds 5 s.
const MIN_MARGIN_US: u64 = 1_000_000;
/// systemd's DefaultTimeoutStartSec= / DefaultTimeoutStopSec=.
const SYSTEMD_DEFAULT_US: u64 = 90_000_000;

/// One deadline of the service: its value and where it was set (None = library default).
struct Deadline<'a> {
    us: u64,
    from: Option<&'a Entry>,
}

impl Deadline<'_> {
    fn show(&self, var: &str) -> String {
        let source = if self.from.is_some() {
            ""
        } else {
            " (library default)"
        };
        format!("{var}={}{source}", show_us(self.us))
    }
}

fn show_us(us: u64) -> String {
    if us % 1000 == 0 {
        format_ms(us / 1000)
    } else {
        format!("{us}us")
    }
}

/// `Environment=` words as systemd splits them: whitespace-separated, quotes grouping.
fn env_words(value: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => word.extend(chars.next()),
            ('"' | '\'', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
                continue;
            }
            (c, _) => word.push(c),
        }
        any = true;
    }
    if any {
        words.push(word);
    }
    words
}

/// The last assignment of each EXUVIA_* variable in `Environment=` (an empty line resets).
fn env<'a>(unit: &'a UnitText, var: &str) -> Option<(&'a Entry, String)> {
    let mut found = None;
    for e in unit.entries("Service", "Environment") {
        if e.value.is_empty() {
            found = None;
        }
        for w in env_words(&e.value) {
            if let Some(v) = w.strip_prefix(var).and_then(|r| r.strip_prefix('=')) {
                found = Some((e, v.to_string()));
            }
        }
    }
    found
}

/// The effective systemd timeout of `key` (TimeoutSec= sets both), with its line; None = off.
fn timeout<'a>(unit: &'a UnitText, key: &str) -> (Option<u64>, Option<&'a Entry>) {
    let mut current: (Option<u64>, Option<&Entry>) = (Some(SYSTEMD_DEFAULT_US), None);
    for s in unit.section("Service") {
        for e in s
            .entries
            .iter()
            .filter(|e| e.key == key || e.key == "TimeoutSec")
        {
            current = match parse_us(&e.value, Dialect::Systemd) {
                _ if e.value.is_empty() => (Some(SYSTEMD_DEFAULT_US), None),
                Ok(v) => (v, Some(e)),
                Err(_) => current, // systemd ignores it; the analyzer reports it
            };
        }
    }
    current
}

pub fn check(unit: &UnitText, out: &mut Vec<Finding>) {
    let Some(service) = unit.section("Service").next() else {
        return;
    };
    if unit.last("Service", "ExecStart").is_none() {
        return; // a drop-in that does not define the service
    }
    let mut read = |var: &str, default_ms: u64| -> Option<Deadline> {
        match env(unit, var) {
            None => Some(Deadline {
                us: default_ms * 1000,
                from: None,
            }),
            Some((e, v)) => match parse_us(&v, Dialect::Library) {
                Ok(us) => Some(Deadline {
                    us: us.unwrap_or(0),
                    from: Some(e),
                }),
                Err(why) => {
                    out.push(finding(
                        e.line,
                        "deadlines",
                        format!("{var}: {why}; the service refuses to start with it"),
                        "write a time span such as 500ms, 30s or 2min",
                    ));
                    None
                }
            },
        }
    };
    let ready = read("EXUVIA_READY_TIMEOUT", DEFAULT_READY_MS);
    let soft = read("EXUVIA_DRAIN_SOFT", DEFAULT_DRAIN_SOFT_MS);
    let hard = read("EXUVIA_DRAIN_HARD", DEFAULT_DRAIN_HARD_MS);
    let line = |d: &Deadline, e: Option<&Entry>| e.or(d.from).map_or(service.line, |e| e.line);

    if let Some(ready) = &ready {
        if let (Some(start), e) = timeout(unit, "TimeoutStartSec") {
            if start < ready.us.saturating_add(MIN_MARGIN_US) {
                out.push(finding(line(ready, e), "deadlines", format!("TimeoutStartSec={} cannot cover {} plus the handover: systemd bounds every reload by it, so it fails (or kills) a successor the service would still wait for", show_us(start), ready.show("EXUVIA_READY_TIMEOUT")), format!("raise TimeoutStartSec= to at least {} (exuvia unit adds 5s), or lower the readiness deadline", show_us(ready.us + MIN_MARGIN_US))));
            }
        }
        if let Some((l, timeout)) = client::of(unit).and_then(|(l, c)| Some((l, c.timeout_us()?))) {
            if timeout < ready.us {
                out.push(finding(l, "deadlines", format!("the reload client's --timeout ({}) is shorter than {}: a slow but good upgrade is reported as failed", show_us(timeout), ready.show("EXUVIA_READY_TIMEOUT")), "give the client --timeout of at least the readiness deadline (exuvia unit adds 2s)"));
            }
        }
    }
    if let (Some(soft), Some(hard)) = (&soft, &hard) {
        let drain = if soft.us > hard.us { soft } else { hard };
        let var = if soft.us > hard.us {
            "EXUVIA_DRAIN_SOFT"
        } else {
            "EXUVIA_DRAIN_HARD"
        };
        if let (Some(stop), e) = timeout(unit, "TimeoutStopSec") {
            if stop < drain.us.saturating_add(MIN_MARGIN_US) {
                out.push(finding(line(drain, e), "deadlines", format!("TimeoutStopSec={} cannot cover {}: systemd SIGKILLs the service in the middle of its drain", show_us(stop), drain.show(var)), format!("raise TimeoutStopSec= to at least {} (exuvia unit adds 5s), or shorten the drain", show_us(drain.us + MIN_MARGIN_US))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_words() {
        assert_eq!(
            env_words(r#"A=1 "B=two words" C='x y'  D=\"q"#),
            ["A=1", "B=two words", "C=x y", "D=\"q"]
        );
        assert!(env_words("  ").is_empty());
    }
}
