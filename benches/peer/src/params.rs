//! The words the rounds share: what a run is asked to do, and what one slice of load did
//! (a leaf: the protocol rounds and the dispatcher in run.rs both use them).
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Params {
    pub upgrades: usize,
    /// The first `paced` upgrades are triggered every `period`, the same rate for every
    /// contender; requests/s is measured over that phase only. The rest run back to back.
    pub paced: usize,
    pub period: Duration,
    pub reps: usize,
    pub conns: u32,
    pub gap: Duration,
    pub warmup: Duration,
    pub slice: Duration,
    pub rounds: usize,
    /// HTTP round: wrk connections, upgrades per contender, and their period.
    pub http_conns: u32,
    pub http_upgrades: usize,
    pub http_period: Duration,
    /// HTTP round: also wrk slices without upgrades (req/s and CPU against plain axum).
    pub http_throughput: bool,
    /// Hand-off round: open connections per step, upgrades per step, new connections/s.
    pub handoff_sizes: Vec<usize>,
    pub handoff_upgrades: usize,
    pub handoff_rate: u32,
}

/// What one slice of load did.
pub struct Slice {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
}
