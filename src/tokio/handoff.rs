//! The hand-off of live connections (`crate::handoff`) on the async handle: the same calls
//! as on [`crate::Exuvia`], kept here so the hand-off never imports the handle above it.

use std::ops::RangeInclusive;

use crate::error::Error;
use crate::handoff::{Adoptions, Transferable, Transfers};

impl super::Exuvia {
    /// See [`crate::Exuvia::transferable`].
    pub fn transferable(&self, listener: &str) -> Transferable {
        self.core().transferable(listener)
    }

    /// See [`crate::Exuvia::transfers`].
    pub fn transfers(&self) -> Transfers {
        self.core().transfers()
    }

    /// See [`crate::Exuvia::adopt`].
    pub fn adopt(&self, listener: &str, versions: RangeInclusive<u32>) -> Result<Adoptions, Error> {
        self.core().adopt(listener, versions)
    }
}
