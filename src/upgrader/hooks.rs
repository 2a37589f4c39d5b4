//! The hook methods of [`Builder`] (what they mean and when they run: `hooks.rs`).

use std::sync::Arc;

use super::Builder;
use crate::error::UpgradeError;
use crate::lifecycle::DrainReason;
use crate::request::Upgraded;

impl Builder {
    /// Runs before each upgrade starts the successor; `Err(reason)` refuses the upgrade
    /// (the old generation keeps serving, `STATUS=upgrade failed: …` says why).
    pub fn before_upgrade(
        mut self,
        f: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks_mut().before_upgrade.push(Arc::new(f));
        self
    }

    /// Runs when an upgrade failed (after the successor was killed), with the reason.
    pub fn on_upgrade_failed(mut self, f: impl Fn(&UpgradeError) + Send + Sync + 'static) -> Self {
        self.hooks_mut().failed.push(Arc::new(f));
        self
    }

    /// Runs right after this generation handed over to its successor.
    pub fn on_handed_over(mut self, f: impl Fn(&Upgraded) + Send + Sync + 'static) -> Self {
        self.hooks_mut().handed_over.push(Arc::new(f));
        self
    }

    /// Runs when this generation starts draining (after a handover, or on stop).
    pub fn on_drain_start(mut self, f: impl Fn(DrainReason) + Send + Sync + 'static) -> Self {
        self.hooks_mut()
            .drain
            .push(Arc::new(move |r: &DrainReason| f(*r)));
        self
    }
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use std::future::Future;

    use super::*;

    /// The runtime current when the builder method was called; without one, every call of
    /// the hook says so (a veto refuses the upgrade with that reason).
    fn runtime() -> Result<::tokio::runtime::Handle, String> {
        ::tokio::runtime::Handle::try_current().map_err(|_| {
            "an _async hook was registered outside a tokio runtime; build exuvia inside one"
                .to_owned()
        })
    }

    impl Builder {
        /// [`before_upgrade`](Builder::before_upgrade) as a future, run on the current tokio
        /// runtime (the control thread waits for it).
        pub fn before_upgrade_async<F, Fut>(self, f: F) -> Self
        where
            F: Fn() -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<(), String>> + Send + 'static,
        {
            let rt = runtime();
            self.before_upgrade(move || rt.clone()?.block_on(f()))
        }

        /// [`on_upgrade_failed`](Builder::on_upgrade_failed) as a future (given the reason
        /// as text), spawned on the current tokio runtime.
        pub fn on_upgrade_failed_async<F, Fut>(self, f: F) -> Self
        where
            F: Fn(String) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let rt = runtime();
            self.on_upgrade_failed(move |e| match &rt {
                Ok(rt) => drop(rt.spawn(f(e.to_string()))),
                Err(why) => tracing::warn!(why, "upgrade-failed hook not run"),
            })
        }

        /// [`on_handed_over`](Builder::on_handed_over) as a future, spawned on the current
        /// tokio runtime.
        pub fn on_handed_over_async<F, Fut>(self, f: F) -> Self
        where
            F: Fn(Upgraded) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let rt = runtime();
            self.on_handed_over(move |u| match &rt {
                Ok(rt) => drop(rt.spawn(f(u.clone()))),
                Err(why) => tracing::warn!(why, "handed-over hook not run"),
            })
        }

        /// [`on_drain_start`](Builder::on_drain_start) as a future, spawned on the current
        /// tokio runtime.
        pub fn on_drain_start_async<F, Fut>(self, f: F) -> Self
        where
            F: Fn(DrainReason) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let rt = runtime();
            self.on_drain_start(move |r| match &rt {
                Ok(rt) => drop(rt.spawn(f(r))),
                Err(why) => tracing::warn!(why, "drain hook not run"),
            })
        }
    }
}
