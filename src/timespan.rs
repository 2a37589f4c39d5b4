//! systemd's time-span syntax (`systemd.time(7)`), the subset a unit writes for exuvia's
//! deadlines (`EXUVIA_READY_TIMEOUT`, `EXUVIA_DRAIN_SOFT`, `EXUVIA_DRAIN_HARD`): `90`, `90s`, `500ms`, `2min`, `1min 30s`, `1h`. The same words in the unit and
//! in the service mean the same deadline, so the unit's `TimeoutStopSec=` can be derived
//! from the value the service drains by (docs/systemd.md, "Deadlines").

use std::time::Duration;

/// The largest span accepted: longer "deadlines" are typos, and a wrapped one would be short.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parses a span; `Err` says what is wrong in words fit for an error message.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a time span: write e.g. 500ms, 10s, 2min or 1min 30s");
    let too_long = || format!("{text:?} is too long a time span (at most 30 days)");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let per_unit = match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        let part = Duration::try_from_secs_f64(number * per_unit).map_err(|_| too_long())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spans_a_unit_writes() {
        let s = Duration::from_secs;
        assert_eq!(parse("90"), Ok(s(90)));
        assert_eq!(parse("90s"), Ok(s(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2min"), Ok(s(120)));
        assert_eq!(parse("1min 30s"), Ok(s(90)));
        assert_eq!(parse("1min30s"), Ok(s(90)));
        assert_eq!(parse(" 1h "), Ok(s(3600)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn garbage_and_overflow_are_errors() {
        for bad in [
            "",
            "s",
            "ten",
            "10 fortnights",
            "-1s",
            "1e400",
            "720h 1s",
            "1..2s",
            "9223372036854775807",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
