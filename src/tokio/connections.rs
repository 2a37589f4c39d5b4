//! Connection tasks of one generation: counted for the drain (`TaskTracker`), told to finish
//! at the soft deadline (a token the service awaits), dropped at the hard deadline.
//!
//! Dropping is done by aborting the tasks, not by racing each against a cancellation token:
//! such a race costs two contended locks on every wake-up of every connection task (the
//! token's state and its waiter list), where a list of abort handles costs one lock per
//! spawn, taken by the accept loop that spawns.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::drain::DrainReport;
use crate::lifecycle::DrainReason;
use crate::sync::lock;

/// Connection tasks of this generation.
#[derive(Clone, Default)]
pub struct Connections {
    tracker: TaskTracker,
    finish: CancellationToken,
    cut: CancellationToken,
    tasks: Arc<Mutex<Tasks>>,
}

/// The tasks to abort at the hard deadline; finished ones are pruned as the list grows.
#[derive(Default)]
struct Tasks {
    handles: Vec<AbortHandle>,
    /// Length at which the next prune happens (twice what the last one left, at least 64),
    /// so pruning costs O(1) per spawn.
    prune_at: usize,
    cut: bool,
}

impl Tasks {
    fn add(&mut self, h: AbortHandle) {
        if self.cut {
            // Spawned after the hard deadline: it would outlive the drain.
            h.abort();
            return;
        }
        if self.handles.len() >= self.prune_at {
            self.handles.retain(|h| !h.is_finished());
            self.prune_at = (self.handles.len() * 2).max(64);
        }
        self.handles.push(h);
    }

    fn abort_all(&mut self) {
        self.cut = true;
        for h in self.handles.drain(..) {
            h.abort();
        }
    }
}

impl Connections {
    /// Spawns a connection task; it is dropped (closing its connection) at the hard deadline.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = self.tracker.spawn(fut);
        lock(&self.tasks).add(h.abort_handle());
        h
    }

    /// Cancelled at the soft deadline: finish the current request, close idle keep-alives,
    /// send GOAWAY.
    pub fn finish_token(&self) -> CancellationToken {
        self.finish.clone()
    }

    /// Counts as one connection for the drain until dropped, wherever it travels (the HTTP
    /// adapter keeps one in each socket, so an upgraded WebSocket is still waited for).
    #[cfg(feature = "hyper")]
    pub(crate) fn token(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.tracker.token()
    }

    /// Cancelled at the hard deadline.
    #[cfg(feature = "hyper")]
    pub(crate) fn cut_token(&self) -> CancellationToken {
        self.cut.clone()
    }

    /// Spawns a task that is dropped at the hard deadline but not counted: the caller counts
    /// what it serves with a [`token`](Self::token).
    #[cfg(feature = "hyper")]
    pub(crate) fn spawn_uncounted<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = ::tokio::spawn(fut);
        lock(&self.tasks).add(h.abort_handle());
    }

    /// Tasks still running.
    pub fn active(&self) -> usize {
        self.tracker.len()
    }

    pub(super) async fn drain(
        &self,
        reason: DrainReason,
        soft: Duration,
        hard: Duration,
    ) -> DrainReport {
        let start = Instant::now();
        let open_at_start = self.tracker.len();
        tracing::info!(
            phase = "drain",
            connections = open_at_start,
            "draining connections"
        );
        self.tracker.close();
        let mut cut = 0;
        if ::tokio::time::timeout(soft, self.tracker.wait())
            .await
            .is_err()
        {
            self.finish.cancel();
            tracing::info!(
                phase = "drain",
                connections = self.tracker.len(),
                "soft deadline: asking connections to finish"
            );
            if ::tokio::time::timeout(hard.saturating_sub(soft), self.tracker.wait())
                .await
                .is_err()
            {
                cut = self.tracker.len();
                self.cut.cancel();
                lock(&self.tasks).abort_all();
                tracing::warn!(
                    phase = "drain",
                    cut,
                    "hard deadline: cut remaining connections"
                );
                let _ = ::tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
            }
        }
        self.finish.cancel();
        DrainReport::finished(reason, open_at_start, cut, start)
    }
}
