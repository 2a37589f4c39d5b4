//! The old generation's side of a hand-off: connections marked [`Transferable`], asked at
//! the handover to capture their state at a safe point, offered to the successor in
//! batches, and then either committed (the successor owns them) or kept (the old generation
//! serves and drains them as it would have anyway).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::signal::{Cell, Queue};
use super::wire::{HandOff, MAX_BATCH, MAX_BATCH_BYTES, MAX_CONN_BYTES, Offered};
use crate::channel::Channel;
use crate::sync::{Counted, Counter, lock};

/// What a connection hands over besides its fd: its own state, in its own format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The format version of `bytes`; the successor refuses versions it does not know.
    pub version: u32,
    /// The conversation's state at a safe point (between messages).
    pub bytes: Vec<u8>,
    /// Bytes already read from the socket but not handled yet (a read buffer's contents).
    pub unread: Vec<u8>,
}

/// Why a connection stayed with this generation.
#[derive(Debug)]
pub struct Kept {
    /// The connection, back to the caller: serve it on (it drains as usual).
    pub fd: OwnedFd,
    /// Why it was not handed over.
    pub reason: String,
}

#[derive(Clone, Debug)]
enum Outcome {
    Committed,
    Kept(String),
}

/// A connection this generation may hand to its successor at the next handover. Obtain one
/// per connection ([`crate::Exuvia::transferable`]), wait for
/// [`requested`](Self::requested) next to your reads, and at a safe point call
/// [`offer`](Self::offer).
pub struct Transferable {
    board: Arc<Board>,
    listener: String,
    _live: Counted,
}

/// An offer on its way: wait for the outcome.
pub struct Pending {
    outcome: Arc<Cell<Outcome>>,
    fd: Arc<Mutex<Option<OwnedFd>>>,
}

pub(crate) struct Capture {
    offered: Offered,
    fd: OwnedFd,
    outcome: Arc<Cell<Outcome>>,
    back: Arc<Mutex<Option<OwnedFd>>>,
}

impl Capture {
    fn settle(self, outcome: Outcome) {
        if matches!(outcome, Outcome::Kept(_)) {
            *lock(&self.back) = Some(self.fd);
        }
        self.outcome.set(outcome);
    }
}

/// The process's hand-off board: who may be offered, and the offers made.
pub(crate) struct Board {
    requested: Arc<Cell<()>>,
    requested_fd: OwnedFd,
    live: Arc<Counter>,
    captures: Arc<Queue<Capture>>,
}

impl Board {
    pub(crate) fn new() -> std::io::Result<Arc<Board>> {
        Ok(Arc::new(Board {
            requested: Cell::new(),
            requested_fd: crate::sys::eventfd()?,
            live: Arc::default(),
            captures: Queue::new(),
        }))
    }

    pub(crate) fn transferable(self: &Arc<Self>, listener: &str) -> Transferable {
        Transferable {
            board: self.clone(),
            listener: listener.to_owned(),
            _live: self.live.enter(),
        }
    }

    /// Transferable connections alive and not offered yet.
    pub(crate) fn live(&self) -> usize {
        self.live.count()
    }

    fn request(&self) {
        self.requested.set(());
        crate::sys::eventfd_signal(self.requested_fd.as_fd());
    }

    /// No hand-off (any more): every offer from now on is kept at once.
    pub(crate) fn close(&self, why: &str) {
        self.request();
        self.captures.close();
        while let Some(c) = self.captures.pop(Some(Duration::ZERO)) {
            c.settle(Outcome::Kept(why.to_owned()));
        }
    }
}

impl Transferable {
    /// Whether this generation is handing its connections over now.
    pub fn is_requested(&self) -> bool {
        self.board.requested.get().is_some()
    }

    /// Resolves when this generation starts handing its connections over (after the
    /// successor said ready). Wait for it next to your reads; when it fires, finish the
    /// message in progress and [`offer`](Self::offer).
    pub async fn requested(&self) {
        self.board.requested.wait_async().await
    }

    /// Readable once the hand-off is requested: poll it next to the socket in blocking code.
    pub fn requested_fd(&self) -> BorrowedFd<'_> {
        self.board.requested_fd.as_fd()
    }

    /// The listener name the connection was accepted on.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// Offers the connection (its fd and state) to the successor. Stop using the connection
    /// until the outcome is known: after [`Pending::wait`] returns `Ok`, the successor owns
    /// it; `Err(Kept)` hands it back to serve on.
    pub fn offer(self, fd: impl Into<OwnedFd>, state: State) -> Pending {
        let outcome = Cell::new();
        let back = Arc::new(Mutex::new(None));
        let capture = Capture {
            offered: Offered {
                listener: self.listener.clone(),
                version: state.version,
                state: state.bytes,
                unread: state.unread,
            },
            fd: fd.into(),
            outcome: outcome.clone(),
            back: back.clone(),
        };
        if let Err(c) = self.board.captures.push(capture) {
            c.settle(Outcome::Kept("no hand-off is in progress".into()));
        }
        Pending { outcome, fd: back }
    }
}

impl Pending {
    fn result(&self, o: Outcome) -> Result<(), Kept> {
        match o {
            Outcome::Committed => Ok(()),
            Outcome::Kept(reason) => match lock(&self.fd).take() {
                Some(fd) => Err(Kept { fd, reason }),
                // Unreachable by construction (a kept capture always returns its fd); say so
                // rather than panic.
                None => Ok(()),
            },
        }
    }

    /// Blocks until the successor took the connection (`Ok`) or it stays here (`Err`).
    pub fn wait(self) -> Result<(), Kept> {
        let o = self.outcome.wait(None).unwrap_or(Outcome::Committed);
        self.result(o)
    }

    /// [`wait`](Self::wait) for async code.
    pub async fn outcome(self) -> Result<(), Kept> {
        let o = self.outcome.wait_async().await;
        self.result(o)
    }
}

/// What a hand-off did, for logs and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GiveReport {
    pub offered: usize,
    pub handed_over: usize,
    pub kept: usize,
}

/// Runs the hand-off transaction on `ch` until every transferable connection was offered or
/// `deadline` passes. The old process has the last word on each batch (`commit` or `abort`),
/// so at no instant do both generations own a connection.
pub(crate) fn give(board: &Board, ch: &Channel, deadline: Instant) -> GiveReport {
    let mut report = GiveReport::default();
    if board.live() == 0 {
        board.close("no transferable connections");
        return report;
    }
    board.request();
    let mut batch = 0u32;
    let mut carry: Option<Capture> = None;
    'batches: loop {
        let mut pending: Vec<Capture> = carry.take().into_iter().collect();
        let mut bytes: usize = pending.iter().map(|c| c.offered.bytes()).sum();
        while pending.len() < MAX_BATCH {
            let all_in = board.live() == 0 && board.captures.len() == 0;
            if all_in || Instant::now() >= deadline {
                break;
            }
            // Gather: the first offer may take until the deadline, the rest of a batch 2 ms.
            let wait = if pending.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(2)
            };
            let Some(c) = board
                .captures
                .pop(Some(wait.min(Duration::from_millis(50))))
            else {
                if pending.is_empty() {
                    continue;
                }
                break;
            };
            if c.offered.bytes() > MAX_CONN_BYTES {
                report.kept += 1;
                c.settle(Outcome::Kept(
                    "its state is over the hand-off size limit".into(),
                ));
                continue;
            }
            if bytes + c.offered.bytes() > MAX_BATCH_BYTES {
                carry = Some(c);
                break;
            }
            bytes += c.offered.bytes();
            pending.push(c);
        }
        if pending.is_empty() {
            break;
        }
        batch += 1;
        report.offered += pending.len();
        let verdict = transact(ch, batch, &pending, deadline);
        match verdict {
            Ok(answers) => {
                for (c, a) in pending.into_iter().zip(answers) {
                    match a {
                        Ok(()) => {
                            report.handed_over += 1;
                            c.settle(Outcome::Committed);
                        }
                        Err(r) => {
                            report.kept += 1;
                            c.settle(Outcome::Kept(r.to_string()));
                        }
                    }
                }
            }
            Err(why) => {
                tracing::warn!(
                    batch,
                    why,
                    "hand-off aborted; this generation keeps its connections"
                );
                report.kept += pending.len();
                pending
                    .into_iter()
                    .for_each(|c| c.settle(Outcome::Kept(why.clone())));
                break 'batches;
            }
        }
    }
    if let Some(c) = carry {
        report.kept += 1;
        c.settle(Outcome::Kept("the hand-off ended".into()));
    }
    board.close("the hand-off is over");
    report
}

/// One batch: offer, read the verdict, commit (or abort on anything unexpected).
fn transact(
    ch: &Channel,
    batch: u32,
    pending: &[Capture],
    deadline: Instant,
) -> Result<Vec<Result<(), super::wire::Refusal>>, String> {
    let offer = HandOff::Offer {
        batch,
        conns: pending.iter().map(|c| c.offered.clone()).collect(),
    };
    let fds: Vec<BorrowedFd<'_>> = pending.iter().map(|c| c.fd.as_fd()).collect();
    ch.send_with_fds(&offer.encode(), &fds)
        .map_err(|e| format!("cannot offer to the successor: {e}"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let abort = |why: String| {
        let _ = ch.send(&HandOff::Abort(batch).encode());
        why
    };
    let answer = match ch.recv(Some(left.max(Duration::from_millis(1)))) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err("the successor went away during the hand-off".into()),
        Err(e) => return Err(abort(format!("no verdict from the successor: {e}"))),
    };
    match HandOff::decode(&answer) {
        Ok(HandOff::Verdict { batch: b, answers })
            if b == batch && answers.len() == pending.len() =>
        {
            ch.send(&HandOff::Commit(batch).encode())
                .map_err(|e| format!("cannot commit the hand-off: {e}"))?;
            Ok(answers)
        }
        Ok(other) => Err(abort(format!("unexpected answer to an offer: {other:?}"))),
        Err(e) => Err(abort(format!("malformed answer to an offer: {e}"))),
    }
}
