//! When the HTTP adapter closes what, measured from the handover (or stop).
//!
//! exuvia's core drain asks connections to finish at its soft deadline, 0 s by default:
//! right for a line protocol, wrong for HTTP/1.1, where closing an idle keep-alive races the
//! request the client may already have on the wire (the race HAProxy's
//! `idle-close-on-response` exists for). So the adapter resolves its own deadlines:
//!
//! - **idle grace** (default 5 s): a keep-alive connection with no request since the handover
//!   (or since its last response) is closed once it has been quiet this long. Closing is the
//!   one moment a request can be lost, and the chance that a client sends at exactly that
//!   moment is at most its request rate times the round trip; a connection used more often
//!   than once per grace period is closed race-free instead (its next response carries
//!   `Connection: close`), so a longer grace leaves only the quietest clients to race, at
//!   under one round trip in 5 s. 5 s is also the idle timeout of widely deployed servers
//!   (Apache httpd, Node.js), so clients already meet it every day.
//! - **soft deadline** (default 10 s, never more than half the hard deadline): streams —
//!   WebSocket, SSE, gRPC — are told through [`Finish`](super::Finish) and idle connections
//!   still open are closed. Twice the idle grace, so keep-alives are gone before streams are
//!   told. An explicit core soft deadline (builder or `EXUVIA_DRAIN_SOFT`) other than 0 wins.
//! - **hard deadline**: the core's (30 s unless configured); what is left is cut.

use std::time::Duration;

/// Default [`Policy::idle_grace`].
pub const DEFAULT_IDLE_GRACE: Duration = Duration::from_secs(5);
/// Default [`Policy::soft_deadline`] when the core's soft deadline is 0.
pub const DEFAULT_SOFT: Duration = Duration::from_secs(10);

/// The HTTP drain policy; unset values come from the core's deadlines and the defaults
/// above (see the module docs for why).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    idle_grace: Option<Duration>,
    soft: Option<Duration>,
    hard: Option<Duration>,
}

/// A policy resolved against the core's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadlines {
    pub idle_grace: Duration,
    pub soft: Duration,
    pub hard: Duration,
}

impl Policy {
    /// How long a keep-alive connection may stay quiet after the handover before it is
    /// closed (capped at the soft deadline).
    pub fn idle_grace(mut self, d: Duration) -> Self {
        self.idle_grace = Some(d);
        self
    }

    /// When streams are told to finish and idle connections are closed, from the handover.
    pub fn soft_deadline(mut self, d: Duration) -> Self {
        self.soft = Some(d);
        self
    }

    /// When what is left is cut, from the handover (default: the core's hard deadline).
    pub fn hard_deadline(mut self, d: Duration) -> Self {
        self.hard = Some(d);
        self
    }

    /// Resolves against the core's `(soft, hard)`.
    pub(crate) fn resolve(&self, core: (Duration, Duration)) -> Deadlines {
        let (core_soft, core_hard) = core;
        let hard = self.hard.unwrap_or(core_hard);
        let soft = match (self.soft, core_soft.is_zero()) {
            (Some(s), _) => s,
            (None, false) => core_soft,
            (None, true) => DEFAULT_SOFT.min(hard / 2),
        }
        .min(hard);
        let idle_grace = self.idle_grace.unwrap_or(DEFAULT_IDLE_GRACE).min(soft);
        Deadlines {
            idle_grace,
            soft,
            hard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_zero_core_soft_deadline_gets_the_http_default() {
        let d = Policy::default().resolve((Duration::ZERO, S(30)));
        assert_eq!((d.idle_grace, d.soft, d.hard), (S(5), S(10), S(30)));
        // Streams keep half of a short hard deadline to say goodbye.
        let d = Policy::default().resolve((Duration::ZERO, S(6)));
        assert_eq!((d.idle_grace, d.soft, d.hard), (S(3), S(3), S(6)));
    }

    #[test]
    fn explicit_values_win_and_stay_ordered() {
        let d = Policy::default().resolve((S(20), S(60)));
        assert_eq!((d.idle_grace, d.soft, d.hard), (S(5), S(20), S(60)));
        let p = Policy::default()
            .idle_grace(S(9))
            .soft_deadline(S(2))
            .hard_deadline(S(4));
        let d = p.resolve((S(20), S(60)));
        assert_eq!((d.idle_grace, d.soft, d.hard), (S(2), S(2), S(4)));
        let d = Policy::default()
            .soft_deadline(S(50))
            .resolve((S(0), S(30)));
        assert_eq!(d.soft, S(30), "soft never passes hard");
    }
}
