//! systemd time spans ("90", "500ms", "1min 30s"), in the two dialects exuvia meets: what the
//! library accepts in `EXUVIA_*` deadlines (docs/systemd.md, "Deadlines": us/ms/s/min/h and
//! their long names, up to 30 days) and what systemd accepts in `Timeout*Sec=` (also days,
//! weeks, `infinity`). The generator writes the first, `exuvia lint` reads both; the first is
//! the library's own parser (`exuvia::timespan`). No maintained crate parses systemd's
//! dialect (humantime has no bare numbers, other units).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The `EXUVIA_*` deadline variables the library reads.
    Library,
    /// `TimeoutStartSec=` and friends.
    Systemd,
}

const LIBRARY_UNITS: &[(&str, u64)] = &[
    ("us", 1),
    ("usec", 1),
    ("ms", 1_000),
    ("msec", 1_000),
    ("s", 1_000_000),
    ("sec", 1_000_000),
    ("second", 1_000_000),
    ("seconds", 1_000_000),
    ("m", 60_000_000),
    ("min", 60_000_000),
    ("minute", 60_000_000),
    ("minutes", 60_000_000),
    ("h", 3_600_000_000),
    ("hr", 3_600_000_000),
    ("hour", 3_600_000_000),
    ("hours", 3_600_000_000),
];

/// The longest deadline the library accepts.
pub const LIBRARY_MAX_US: u64 = 30 * 86_400_000_000;

const SYSTEMD_UNITS: &[(&str, u64)] = &[
    ("us", 1),
    ("usec", 1),
    ("µs", 1),
    ("μs", 1),
    ("ms", 1_000),
    ("msec", 1_000),
    ("s", 1_000_000),
    ("sec", 1_000_000),
    ("second", 1_000_000),
    ("seconds", 1_000_000),
    ("m", 60_000_000),
    ("min", 60_000_000),
    ("minute", 60_000_000),
    ("minutes", 60_000_000),
    ("h", 3_600_000_000),
    ("hr", 3_600_000_000),
    ("hour", 3_600_000_000),
    ("hours", 3_600_000_000),
    ("d", 86_400_000_000),
    ("day", 86_400_000_000),
    ("days", 86_400_000_000),
    ("w", 604_800_000_000),
    ("week", 604_800_000_000),
    ("weeks", 604_800_000_000),
];

/// A time span in microseconds; `None` means no limit (`infinity`, or `0` for a systemd
/// timeout, which disables it).
pub fn parse_us(text: &str, dialect: Dialect) -> Result<Option<u64>, String> {
    let text = text.trim();
    if dialect == Dialect::Library {
        // The library's own parser: what it accepts is what the service will read.
        return exuvia::timespan::parse(text).map(|d| Some(d.as_micros() as u64));
    }
    let units = match dialect {
        Dialect::Library => LIBRARY_UNITS,
        Dialect::Systemd => SYSTEMD_UNITS,
    };
    if dialect == Dialect::Systemd && text == "infinity" {
        return Ok(None);
    }
    let bad = || format!("{text:?} is not a time span: write e.g. 500ms, 10s, 2min or 1min 30s");
    let too_big = || format!("{text:?} is too long a time span");
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_end);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(end)
            }
            _ => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let factor = if unit.is_empty() {
            1_000_000
        } else {
            units
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, f)| *f)
                .ok_or_else(bad)?
        };
        let whole: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| too_big())?
        };
        let mut part = whole.checked_mul(factor).ok_or_else(too_big)?;
        // Fractions: each further digit is worth a tenth of the previous one.
        let mut scale = factor;
        for d in frac.bytes().map(|b| u64::from(b - b'0')) {
            scale /= 10;
            part = part.checked_add(d * scale).ok_or_else(too_big)?;
        }
        total = total.checked_add(part).ok_or_else(too_big)?;
        rest = after.trim_start();
    }
    match dialect {
        Dialect::Systemd if total == 0 => Ok(None),
        Dialect::Library if total > LIBRARY_MAX_US => Err(format!(
            "{text:?} is longer than the library accepts (30 days)"
        )),
        _ => Ok(Some(total)),
    }
}

/// systemd time span for a millisecond count, in the subset both dialects accept.
pub fn format_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Seconds with up to three decimals, as `--timeout SECS` of the reload client takes them.
pub fn format_secs(ms: u64) -> String {
    match ms % 1000 {
        0 => (ms / 1000).to_string(),
        frac => format!(
            "{}.{}",
            ms / 1000,
            format!("{frac:03}").trim_end_matches('0')
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_dialect() {
        let p = |t| parse_us(t, Dialect::Library);
        assert_eq!(p("90"), Ok(Some(90_000_000)));
        assert_eq!(p("90s"), Ok(Some(90_000_000)));
        assert_eq!(p("500ms"), Ok(Some(500_000)));
        assert_eq!(p("2min"), Ok(Some(120_000_000)));
        assert_eq!(p("1min 30s"), Ok(Some(90_000_000)));
        assert_eq!(p("1min30s"), Ok(Some(90_000_000)));
        assert_eq!(p("1h"), Ok(Some(3_600_000_000)));
        assert_eq!(p("0"), Ok(Some(0)));
        assert_eq!(p("1.5s"), Ok(Some(1_500_000)));
        assert_eq!(p("2 hours"), Ok(Some(7_200_000_000)));
        assert_eq!(p("720h"), Ok(Some(LIBRARY_MAX_US)));
        for bad in [
            "", "ten", "5 days", "infinity", "-1", "s", "1 2 x", "721h", "1.5.5s", ".",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert!(p("18446744073709551615h").is_err(), "overflow is an error");
        assert!(p("99999999999999999999999").is_err());
    }

    #[test]
    fn systemd_dialect() {
        let p = |t| parse_us(t, Dialect::Systemd);
        assert_eq!(p("1.5s"), Ok(Some(1_500_000)));
        assert_eq!(p("2d 3h"), Ok(Some(2 * 86_400_000_000 + 3 * 3_600_000_000)));
        assert_eq!(p("infinity"), Ok(None));
        assert_eq!(p("0"), Ok(None), "0 disables a systemd timeout");
        assert_eq!(p("90"), Ok(Some(90_000_000)));
        assert!(p("1.5.5s").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_ms(10_000), "10s");
        assert_eq!(format_ms(1_500), "1500ms");
        assert_eq!(format_ms(0), "0s");
        assert_eq!(format_secs(7_000), "7");
        assert_eq!(format_secs(7_500), "7.5");
        assert_eq!(format_secs(2_050), "2.05");
    }
}
