//! The join window: one `systemctl reload`, two triggers.
//!
//! systemd 253–261 sends `ReloadSignal=` *and* runs `ExecReload=` for the same reload
//! (measured on 254 and 257; 262 skips the signal when `ExecReload=` is set — see
//! docs/systemd.md, "Reload verdicts"). The signal starts the upgrade; the reload client's
//! control request arrives a moment later and must get *that* upgrade's verdict instead of
//! starting a second one or being told "in progress". So the loop remembers the last
//! signal-started upgrade for a short window, and the first control request inside it
//! claims it. The window also travels to the successor in the manifest: a request that
//! reaches the new main after the handover still gets the verdict of the upgrade that made it.

use std::time::{Duration, Instant};

use crate::request::{Upgraded, Verdict};

/// How long after a signal-started upgrade *finished* a control request still joins it
/// (counted from the end: a request queued behind a slow hand-off is read only after it).
pub(crate) const JOIN_WINDOW: Duration = Duration::from_secs(2);

/// What a control request finds when it asks to join.
#[derive(Debug, PartialEq)]
pub(crate) enum Joined {
    /// The signal's upgrade finished: here is its verdict.
    Finished(Verdict),
    /// The signal's upgrade is still running: wait for it.
    Running,
    /// Nothing to join: start an upgrade of your own.
    Nothing,
}

#[derive(Debug, Default)]
pub(crate) struct JoinWindow {
    open: Option<Window>,
}

#[derive(Debug)]
struct Window {
    triggered: Instant,
    /// `CLOCK_MONOTONIC` µs of the trigger, for the manifest.
    triggered_us: u64,
    verdict: Option<Verdict>,
    /// When the verdict was known (the window is counted from here once it is).
    ended: Option<Instant>,
}

impl JoinWindow {
    /// The reload signal started an upgrade at `now` (`now_us` on `CLOCK_MONOTONIC`).
    pub(crate) fn signal_started(&mut self, now: Instant, now_us: u64) {
        self.open = Some(Window {
            triggered: now,
            triggered_us: now_us,
            verdict: None,
            ended: None,
        });
    }

    /// An upgrade finished; if the signal started it, keep the verdict for a late request.
    pub(crate) fn finished(&mut self, verdict: &Verdict, now: Instant) {
        if let Some(w) = self.open.as_mut().filter(|w| w.verdict.is_none()) {
            w.verdict = Some(verdict.clone());
            w.ended = Some(now);
        }
    }

    /// The trigger time of the running signal-started upgrade, for the successor's manifest.
    pub(crate) fn running_trigger_us(&self) -> Option<u64> {
        self.open
            .as_ref()
            .filter(|w| w.verdict.is_none())
            .map(|w| w.triggered_us)
    }

    /// A control request asks at `now`; the window is claimed (closed) either way, so one
    /// signal answers at most one request. A signal's upgrade still *running* is joined
    /// whatever its age (on a loaded machine `ExecReload=` can start seconds after the
    /// signal, and two upgrades for one reload would be wrong); a *finished* one only within
    /// [`JOIN_WINDOW`] of its end, so a later, separate reload still upgrades. Counting from
    /// the end matters when the upgrade took longer than the window: the client's request,
    /// sent while it ran, is read only after it ended (the loop was in the hand-off).
    pub(crate) fn claim(&mut self, now: Instant) -> Joined {
        match self.open.take() {
            Some(Window { verdict: None, .. }) => Joined::Running,
            Some(Window {
                verdict: Some(v),
                triggered,
                ended,
                ..
            }) if now.saturating_duration_since(ended.unwrap_or(triggered)) <= JOIN_WINDOW => {
                Joined::Finished(v)
            }
            _ => Joined::Nothing,
        }
    }

    /// A successor whose upgrade the reload signal started `age` ago (from the manifest's
    /// trigger time): a request for the same reload may reach it, and gets "upgraded" —
    /// this process exists because that upgrade succeeded.
    pub(crate) fn inherited(
        now: Instant,
        triggered_us: u64,
        now_us: u64,
        me: Upgraded,
    ) -> JoinWindow {
        let age = Duration::from_micros(now_us.saturating_sub(triggered_us));
        let open = now
            .checked_sub(age)
            .filter(|_| age <= JOIN_WINDOW)
            .map(|triggered| Window {
                triggered,
                triggered_us,
                ended: None,
                verdict: Some(Verdict::Upgraded(Upgraded {
                    ready_after: age,
                    ..me
                })),
            });
        JoinWindow { open }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::FailureKind;

    fn up(pid: i32) -> Upgraded {
        Upgraded {
            pid,
            generation: 2,
            ready_after: Duration::from_millis(5),
            closed_after: Duration::ZERO,
        }
    }

    #[test]
    fn a_request_joins_a_running_then_a_finished_signal_upgrade_once() {
        let t0 = Instant::now();
        let mut w = JoinWindow::default();
        assert_eq!(w.claim(t0), Joined::Nothing);
        w.signal_started(t0, 1_000);
        assert_eq!(w.running_trigger_us(), Some(1_000));
        assert_eq!(w.claim(t0 + Duration::from_millis(10)), Joined::Running);
        assert_eq!(w.claim(t0 + Duration::from_millis(20)), Joined::Nothing);

        w.signal_started(t0, 1_000);
        let v = Verdict::Upgraded(up(7));
        w.finished(&v, t0);
        assert_eq!(w.running_trigger_us(), None);
        // A second verdict (an unrelated later upgrade) does not overwrite the signal's.
        w.finished(
            &Verdict::Failed {
                kind: FailureKind::Failed,
                message: "x".into(),
            },
            t0,
        );
        assert_eq!(w.claim(t0 + Duration::from_secs(1)), Joined::Finished(v));
        assert_eq!(w.claim(t0 + Duration::from_secs(1)), Joined::Nothing);
    }

    #[test]
    fn the_window_closes_two_seconds_after_the_upgrade_ended() {
        let t0 = Instant::now();
        let mut w = JoinWindow::default();
        w.signal_started(t0, 0);
        w.finished(&Verdict::Upgraded(up(7)), t0);
        assert_eq!(
            w.claim(t0 + JOIN_WINDOW + Duration::from_millis(1)),
            Joined::Nothing
        );
    }

    #[test]
    fn a_request_read_after_a_long_upgrade_still_joins_it() {
        // Seen under systemd 257 (exuvia vm kill-new): the upgrade ran 2.2 s, the reload
        // client's request was queued meanwhile and read right after the failure.
        let t0 = Instant::now();
        let mut w = JoinWindow::default();
        w.signal_started(t0, 0);
        let failed = Verdict::Failed {
            kind: FailureKind::Failed,
            message: "successor told to stop".into(),
        };
        let end = t0 + Duration::from_millis(2200);
        w.finished(&failed, end);
        assert_eq!(
            w.claim(end + Duration::from_millis(1)),
            Joined::Finished(failed)
        );
    }

    #[test]
    fn a_successor_inherits_the_window_of_its_own_upgrade() {
        let now = Instant::now() + Duration::from_secs(10);
        let mut w = JoinWindow::inherited(now, 5_000_000, 5_300_000, up(42));
        match w.claim(now) {
            Joined::Finished(Verdict::Upgraded(u)) => {
                assert_eq!((u.pid, u.ready_after), (42, Duration::from_millis(300)));
            }
            other => panic!("{other:?}"),
        }
        let mut old = JoinWindow::inherited(now, 0, 5_000_000, up(42));
        assert_eq!(old.claim(now), Joined::Nothing, "older than the window");
    }
}
