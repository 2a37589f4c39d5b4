//! [`Transfers`]: makes [`Transferable`]s without the service's handle.

use std::sync::Arc;

use super::{Board, Transferable};

/// Makes [`Transferable`]s; cheap to clone into handlers and tasks.
#[derive(Clone)]
pub struct Transfers {
    board: Arc<Board>,
}

impl Transfers {
    pub(crate) fn new(board: Arc<Board>) -> Transfers {
        Transfers { board }
    }

    /// See [`Exuvia::transferable`](crate::Exuvia::transferable).
    pub fn transferable(&self, kind: &str) -> Transferable {
        self.board.transferable(kind)
    }
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").finish_non_exhaustive()
    }
}
