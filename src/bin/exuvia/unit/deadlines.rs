//! One source for the deadlines (docs/units.md, "Deadlines"): the unit hands the service its
//! readiness and drain deadlines as `EXUVIA_*` environment variables, and derives systemd's
//! own timeouts from the same numbers, so a unit cannot SIGKILL a service mid-drain or fail a
//! reload before the successor's own readiness deadline.
use super::error::{SpecError, err};
use super::input::DurationInput;
use super::timespan::{Dialect, format_ms, parse_us};

/// Extra time on top of the readiness deadline for the handover itself (MAINPID= + READY=1
/// round trip, double fork, the old process killing a failed successor): TimeoutStartSec=
/// bounds every reload too.
pub const HANDOVER_MARGIN_MS: u64 = 5_000;
/// Extra time on top of the drain deadline before systemd escalates to SIGKILL.
pub const STOP_MARGIN_MS: u64 = 5_000;
/// The reload client waits this much past the readiness deadline (the service reports a late
/// successor as failed by then) and gives up well before systemd kills it at TimeoutStartSec=.
pub const CLIENT_MARGIN_MS: u64 = 2_000;
/// No deadline may exceed a day: a reload or stop that may take longer cannot be told apart
/// from a hang, and the bound keeps every sum far from overflowing.
pub const MAX_DEADLINE_MS: u64 = 86_400_000;

/// The library's defaults (docs/systemd.md), used when the spec says nothing, so a generated
/// unit tells the service exactly what it would do on its own.
pub const DEFAULT_READY_MS: u64 = 60_000;
pub const DEFAULT_DRAIN_SOFT_MS: u64 = 0;
pub const DEFAULT_DRAIN_HARD_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// EXUVIA_READY_TIMEOUT.
    pub ready_ms: u64,
    /// EXUVIA_DRAIN_SOFT.
    pub drain_soft_ms: u64,
    /// EXUVIA_DRAIN_HARD.
    pub drain_hard_ms: u64,
    /// TimeoutStartSec=: readiness + handover margin.
    pub start_ms: u64,
    /// TimeoutStopSec=: the later drain deadline + margin.
    pub stop_ms: u64,
    /// `--timeout` of the reload client.
    pub client_ms: u64,
}

impl Deadlines {
    pub fn new(
        startup: Option<&DurationInput>,
        drain_soft: Option<&DurationInput>,
        drain: Option<&DurationInput>,
    ) -> Result<Self, SpecError> {
        let ready_ms = duration_ms(startup, DEFAULT_READY_MS, "startup")?;
        let drain_soft_ms = duration_ms(drain_soft, DEFAULT_DRAIN_SOFT_MS, "drain_soft")?;
        let drain_hard_ms = duration_ms(drain, DEFAULT_DRAIN_HARD_MS, "drain")?;
        if ready_ms == 0 {
            return err(
                "startup must be > 0: it is the successor's readiness deadline and bounds every reload (TimeoutStartSec=)",
            );
        }
        if drain_soft_ms > drain_hard_ms {
            return err(format!(
                "drain_soft ({}) is later than drain ({}): connections are asked to finish at the soft deadline and cut at the hard one; make drain_soft <= drain",
                format_ms(drain_soft_ms),
                format_ms(drain_hard_ms)
            ));
        }
        let sum = |a: u64, b: u64| {
            a.checked_add(b)
                .ok_or_else(|| SpecError("deadline sum overflows".into()))
        };
        Ok(Self {
            ready_ms,
            drain_soft_ms,
            drain_hard_ms,
            start_ms: sum(ready_ms, HANDOVER_MARGIN_MS)?,
            stop_ms: sum(drain_hard_ms, STOP_MARGIN_MS)?,
            client_ms: sum(ready_ms, CLIENT_MARGIN_MS)?,
        })
    }

    /// The `Environment=` value that hands the deadlines to the service.
    pub fn environment(&self) -> String {
        format!(
            "EXUVIA_READY_TIMEOUT={} EXUVIA_DRAIN_SOFT={} EXUVIA_DRAIN_HARD={}",
            format_ms(self.ready_ms),
            format_ms(self.drain_soft_ms),
            format_ms(self.drain_hard_ms)
        )
    }
}

/// Milliseconds from an integer (seconds) or a time span the library also accepts.
fn duration_ms(input: Option<&DurationInput>, default: u64, what: &str) -> Result<u64, SpecError> {
    let limit = || {
        SpecError(format!(
            "{what} is longer than {}: exuvia caps every deadline at a day (a reload or stop that may take longer cannot be told from a hang)",
            format_ms(MAX_DEADLINE_MS)
        ))
    };
    let ms = match input {
        None => return Ok(default),
        Some(DurationInput::Seconds(s)) => s.checked_mul(1000).ok_or_else(limit)?,
        Some(DurationInput::Text(t)) => {
            let us = parse_us(t, Dialect::Library)
                .map_err(|e| SpecError(format!("{what} {e}")))?
                .unwrap_or(u64::MAX);
            if us % 1000 != 0 && us < u64::MAX {
                return err(format!(
                    "{what} {t:?} is not a whole number of milliseconds: systemd timeouts are written in ms"
                ));
            }
            us / 1000
        }
    };
    if ms > MAX_DEADLINE_MS {
        return Err(limit());
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<DurationInput> {
        Some(DurationInput::Text(s.into()))
    }

    #[test]
    fn derived_timeouts_cover_the_deadlines() {
        let d = Deadlines::new(text("5s").as_ref(), None, text("10s").as_ref()).unwrap();
        assert_eq!(
            (d.start_ms, d.stop_ms, d.client_ms),
            (10_000, 15_000, 7_000)
        );
        assert_eq!(
            d.environment(),
            "EXUVIA_READY_TIMEOUT=5s EXUVIA_DRAIN_SOFT=0s EXUVIA_DRAIN_HARD=10s"
        );
        let d = Deadlines::new(None, None, None).unwrap();
        assert_eq!(
            (d.ready_ms, d.drain_soft_ms, d.drain_hard_ms),
            (60_000, 0, 30_000)
        );
        let d = Deadlines::new(text("1min 30s").as_ref(), None, None).unwrap();
        assert_eq!(d.ready_ms, 90_000);
    }

    #[test]
    fn huge_or_odd_deadlines_are_refused() {
        let secs = |s| Some(DurationInput::Seconds(s));
        for (startup, soft, hard) in [
            (None, None, secs(9_223_372_036_854_775_807)),
            (secs(18_446_744_073_709_551), None, None),
            (secs(u64::MAX), None, None),
            (None, None, secs(86_401)),
            (text("25h"), None, None),
            (text("18446744073709551615h"), None, None),
            (secs(0), None, None),
            (None, text("20s"), text("10s")),
            (text("1500us"), None, None),
        ] {
            let r = Deadlines::new(startup.as_ref(), soft.as_ref(), hard.as_ref());
            assert!(r.is_err(), "{startup:?} {soft:?} {hard:?}: {r:?}");
        }
        let d = Deadlines::new(None, None, secs(86_400).as_ref()).unwrap();
        assert_eq!(d.stop_ms, 86_405_000);
    }
}
