//! The successor's side of a hand-off: adopters registered per listener name before
//! `ready()`, offers checked against them, accepted connections held — never read — until
//! the old process commits, then delivered.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::signal::Queue;
use super::wire::{Offered, Refusal};
use crate::sync::lock;

/// Default bounds on what one successor adopts.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default bound on the state and unread bytes adopted in total.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// A connection the predecessor handed over: continue the conversation on `fd`, starting
/// with `unread`, from `state`.
#[derive(Debug)]
pub struct Adopted {
    /// The listener it was accepted on.
    pub listener: String,
    /// The connection itself.
    pub fd: OwnedFd,
    /// The format version of `state`.
    pub version: u32,
    /// The conversation's state, in the service's format.
    pub state: Vec<u8>,
    /// Bytes the predecessor had read but not handled: handle them before reading more.
    pub unread: Vec<u8>,
}

/// The connections handed over for one listener, as they arrive; ends once the handover is
/// complete (nothing more can come).
pub struct Adoptions {
    queue: Arc<Queue<Adopted>>,
}

impl Adoptions {
    /// The next adopted connection (blocking); `None` once no more can come.
    pub fn recv(&self) -> Option<Adopted> {
        self.queue.pop(None)
    }

    /// The next adopted connection; `None` once no more can come.
    pub async fn next(&self) -> Option<Adopted> {
        self.queue.next().await
    }
}

impl Iterator for Adoptions {
    type Item = Adopted;
    fn next(&mut self) -> Option<Adopted> {
        self.recv()
    }
}

struct Adopter {
    versions: RangeInclusive<u32>,
    queue: Arc<Queue<Adopted>>,
}

#[derive(Default)]
struct Inner {
    adopters: HashMap<String, Adopter>,
    /// Accepted, not yet committed: batch → connections.
    held: HashMap<u32, Vec<Adopted>>,
    taken: usize,
    bytes: usize,
}

/// Who adopts what in this process, and what is held in transit.
pub(crate) struct Adopters {
    inner: Mutex<Inner>,
    max_connections: usize,
    max_bytes: usize,
}

impl Adopters {
    pub(crate) fn new(max_connections: usize, max_bytes: usize) -> Arc<Adopters> {
        Arc::new(Adopters {
            inner: Mutex::new(Inner::default()),
            max_connections,
            max_bytes,
        })
    }

    /// Registers (or replaces) the adopter for `listener`.
    pub(crate) fn register(&self, listener: &str, versions: RangeInclusive<u32>) -> Adoptions {
        let queue = Queue::new();
        lock(&self.inner).adopters.insert(
            listener.to_owned(),
            Adopter {
                versions,
                queue: queue.clone(),
            },
        );
        Adoptions { queue }
    }

    /// Whether anyone adopts anything (the successor announces the capability only then).
    pub(crate) fn any(&self) -> bool {
        !lock(&self.inner).adopters.is_empty()
    }

    /// Checks an offer; accepted connections are held until the commit.
    pub(crate) fn offer(
        &self,
        batch: u32,
        conns: Vec<Offered>,
        fds: Vec<OwnedFd>,
    ) -> Vec<Result<(), Refusal>> {
        let mut g = lock(&self.inner);
        if fds.len() != conns.len() {
            return vec![Err(Refusal::Limit); conns.len()];
        }
        let mut answers = Vec::with_capacity(conns.len());
        let mut held = Vec::new();
        for (c, fd) in conns.into_iter().zip(fds) {
            let answer = match g.adopters.get(&c.listener) {
                None => Err(Refusal::Listener),
                Some(a) if !a.versions.contains(&c.version) => Err(Refusal::Version),
                Some(_)
                    if g.taken >= self.max_connections || g.bytes + c.bytes() > self.max_bytes =>
                {
                    Err(Refusal::Limit)
                }
                Some(_) => Ok(()),
            };
            if answer.is_ok() {
                g.taken += 1;
                g.bytes += c.bytes();
                held.push(Adopted {
                    listener: c.listener,
                    fd,
                    version: c.version,
                    state: c.state,
                    unread: c.unread,
                });
            }
            answers.push(answer);
        }
        g.held.insert(batch, held);
        answers
    }

    /// Whether accepted connections wait for the old process's commit or abort.
    pub(crate) fn holding(&self) -> bool {
        !lock(&self.inner).held.is_empty()
    }

    /// The old process committed batches `1..=upto`: the held connections are ours.
    /// Returns how many.
    pub(crate) fn commit(&self, upto: u32) -> usize {
        let mut g = lock(&self.inner);
        let mut batches: Vec<u32> = g.held.keys().copied().filter(|b| *b <= upto).collect();
        batches.sort_unstable();
        let mut n = 0;
        for b in batches {
            for a in g.held.remove(&b).unwrap_or_default() {
                if let Some(adopter) = g.adopters.get(&a.listener) {
                    // Only closed after the handover completes; nothing is lost before.
                    if adopter.queue.push(a).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// The old process kept batches `1..=upto`: forget them (our copies close; it serves on
    /// with its own).
    pub(crate) fn abort(&self, upto: u32) {
        lock(&self.inner).held.retain(|b, _| *b > upto);
    }

    /// The handover is over: uncommitted batches are dropped and every adoption stream ends
    /// once drained.
    pub(crate) fn close(&self) {
        let mut g = lock(&self.inner);
        g.held.clear();
        for a in g.adopters.values() {
            a.queue.close();
        }
    }
}
