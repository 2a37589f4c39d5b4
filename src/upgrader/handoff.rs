//! The hand-off's methods of [`Builder`] and [`Exuvia`] (the protocol: `handoff/`).

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{Builder, Exuvia};
use crate::error::Error;
use crate::handoff::{Adoptions, Transferable, Transfers};
use crate::lifecycle::Phase;

impl Builder {
    /// How long the old generation may spend handing live connections to its successor
    /// (default 2 s; see [`crate::handoff`]). What is not handed over in time drains.
    pub fn handoff_timeout(mut self, d: Duration) -> Self {
        self.config_mut().handoff_timeout = d;
        self
    }

    /// Bounds on what this generation adopts from its predecessor: at most `connections`
    /// connections and `bytes` of their state (defaults 10 000 and 64 MiB). Beyond them the
    /// predecessor keeps the rest and drains them.
    pub fn adopt_limits(mut self, connections: usize, bytes: usize) -> Self {
        self.config_mut().adopt_limits = (connections, bytes);
        self
    }
}

impl Exuvia {
    /// A handle that makes [`Transferable`]s, for handlers that do not see the [`Exuvia`].
    pub fn transfers(&self) -> Transfers {
        Transfers::new(self.shared().board.clone())
    }

    /// Marks a connection accepted on `listener` as one this generation may hand to its
    /// successor at the next upgrade (see [`crate::handoff`]).
    pub fn transferable(&self, listener: &str) -> Transferable {
        self.shared().board.transferable(listener)
    }

    /// Adopts live connections of `listener` that the predecessor hands over, in state
    /// versions `versions`. Call it before [`ready`](Self::ready): the offers come right after.
    /// The stream ends once the handover is complete (at once for a first generation).
    pub fn adopt(&self, listener: &str, versions: RangeInclusive<u32>) -> Result<Adoptions, Error> {
        if self.phase() != Phase::Starting {
            return Err(Error::AlreadyReady);
        }
        Ok(self.shared().adopters.register(listener, versions))
    }
}
