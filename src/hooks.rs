//! The service's own code at the upgrade's turning points: a pre-flight that can veto the
//! upgrade (validate the new configuration, say), and notices when it failed, when the
//! handover happened and when the drain starts.
//!
//! Hooks run on exuvia's control thread, in the order of the phases; while one runs, the
//! loop waits (signals and requests queue up). A veto fails the upgrade cleanly: the old
//! generation keeps serving and `STATUS=` (and `exuvia-reload`) carry the hook's reason.
//! With feature `tokio` each hook also comes in an `_async` form, run on the runtime that
//! was current when the builder method was called.

use std::sync::Arc;

use crate::error::UpgradeError;
use crate::lifecycle::DrainReason;
use crate::request::Upgraded;

pub(crate) type Veto = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
pub(crate) type Notice<T> = Arc<dyn Fn(&T) + Send + Sync>;

/// The hooks a [`Builder`](crate::Builder) was given (its methods are in `upgrader/hooks.rs`).
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) before_upgrade: Vec<Veto>,
    pub(crate) failed: Vec<Notice<UpgradeError>>,
    pub(crate) handed_over: Vec<Notice<Upgraded>>,
    pub(crate) drain: Vec<Notice<DrainReason>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("before_upgrade", &self.before_upgrade.len())
            .field("failed", &self.failed.len())
            .field("handed_over", &self.handed_over.len())
            .field("drain", &self.drain.len())
            .finish()
    }
}

impl Hooks {
    /// **spawn**, before the successor starts: the first veto wins.
    pub(crate) fn before_upgrade(&self) -> Result<(), UpgradeError> {
        for h in &self.before_upgrade {
            h().map_err(|reason| UpgradeError::Vetoed { reason })?;
        }
        Ok(())
    }

    pub(crate) fn failed(&self, e: &UpgradeError) {
        self.failed.iter().for_each(|h| h(e));
    }

    pub(crate) fn handed_over(&self, u: &Upgraded) {
        self.handed_over.iter().for_each(|h| h(u));
    }

    pub(crate) fn drain(&self, r: DrainReason) {
        self.drain.iter().for_each(|h| h(&r));
    }
}
