//! The old generation's side of a hand-off: connections marked [`Transferable`], asked at
//! the handover to capture their state at a safe point, offered to the successor in
//! batches, and then either committed (the successor owns them) or kept (the old generation
//! serves and drains them as it would have anyway).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::signal::{Cell, Queue};
use super::wire::{HandOff, MAX_BATCH, MAX_BATCH_BYTES, MAX_CONN_BYTES, Offered};
use crate::channel::{Channel, Message};
use crate::sync::{Counted, Counter, lock};

/// What [`Transferable::wait`] saw first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The connection has something to read (or was closed).
    Readable,
    /// This generation is handing its connections over: offer at this safe point.
    Requested,
    /// Neither, within the timeout.
    TimedOut,
}

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
pub struct Kept {
    /// The connection, back to the caller: serve it on.
    pub fd: OwnedFd,
    /// Why it was not handed over.
    pub reason: String,
    /// The connection may be offered again at the next upgrade (if this one failed and this
    /// generation serves on); after a successful upgrade it simply drains.
    pub again: Transferable,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("fd", &self.fd)
            .field("reason", &self.reason)
            .field("again", &self.again)
            .finish()
    }
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
    back: Arc<Mutex<Option<(OwnedFd, Transferable)>>>,
}

pub(crate) struct Capture {
    offered: Offered,
    fd: OwnedFd,
    board: Arc<Board>,
    outcome: Arc<Cell<Outcome>>,
    back: Arc<Mutex<Option<(OwnedFd, Transferable)>>>,
}

impl Capture {
    /// Settles the offer. A kept connection gets a fresh [`Transferable`] of the board's
    /// *current* round — so callers end a round before settling its leftovers.
    fn settle(self, outcome: Outcome) {
        if matches!(outcome, Outcome::Kept(_)) {
            let again = self.board.transferable(&self.offered.listener);
            *lock(&self.back) = Some((self.fd, again));
        }
        self.outcome.set(outcome);
    }
}

/// The process's hand-off board: who may be offered, and the offers of the current round.
pub(crate) struct Board {
    round: Mutex<Arc<Round>>,
    requested_fd: OwnedFd,
    live: Arc<Counter>,
}

/// One upgrade's hand-off: asked once, offers gathered until it closes. A failed upgrade
/// ends its round; the next upgrade opens a fresh one.
struct Round {
    requested: Arc<Cell<()>>,
    captures: Arc<Queue<Capture>>,
}

impl Round {
    fn new() -> Arc<Round> {
        Arc::new(Round {
            requested: Cell::new(),
            captures: Queue::new(),
        })
    }
}

impl Board {
    pub(crate) fn new() -> std::io::Result<Arc<Board>> {
        Ok(Arc::new(Board {
            round: Mutex::new(Round::new()),
            requested_fd: crate::sys::eventfd()?,
            live: Arc::default(),
        }))
    }

    fn round(&self) -> Arc<Round> {
        lock(&self.round).clone()
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

    fn request(&self) -> Arc<Round> {
        let round = self.round();
        round.requested.set(());
        crate::sys::eventfd_signal(self.requested_fd.as_fd());
        round
    }

    /// Ends the round: offers still coming to it are kept, and the next upgrade starts a
    /// fresh one (whose request has not been made).
    fn end_round(&self, round: &Round) {
        *lock(&self.round) = Round::new();
        crate::sys::eventfd_clear(self.requested_fd.as_fd());
        round.captures.close();
    }

    /// Keeps what is still queued in an ended round.
    fn keep_leftovers(round: &Round, why: &str) {
        while let Some(c) = round.captures.pop(Some(Duration::ZERO)) {
            c.settle(Outcome::Kept(why.to_owned()));
        }
    }
}

impl std::fmt::Debug for Transferable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transferable")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Transferable {
    /// Whether this generation is handing its connections over now.
    pub fn is_requested(&self) -> bool {
        self.board.round().requested.get().is_some()
    }

    /// Resolves when this generation starts handing its connections over (after the
    /// successor said ready). Wait for it next to your reads; when it fires, finish the
    /// message in progress and [`offer`](Self::offer).
    pub async fn requested(&self) {
        let round = self.board.round();
        round.requested.wait_async().await
    }

    /// Readable once the hand-off is requested: poll it next to the socket in blocking code.
    pub fn requested_fd(&self) -> BorrowedFd<'_> {
        self.board.requested_fd.as_fd()
    }

    /// Blocking code: waits until `conn` is readable or the hand-off is requested (or
    /// `timeout` passes), whichever comes first.
    pub fn wait(&self, conn: BorrowedFd<'_>, timeout: Option<Duration>) -> std::io::Result<Wait> {
        if self.is_requested() {
            return Ok(Wait::Requested);
        }
        let ready = crate::sys::poll_many(&[conn, self.requested_fd()], timeout)?;
        Ok(if ready[1] || self.is_requested() {
            Wait::Requested
        } else if ready[0] {
            Wait::Readable
        } else {
            Wait::TimedOut
        })
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
            board: self.board.clone(),
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
        if let Err(c) = self.board.round().captures.push(capture) {
            c.settle(Outcome::Kept("no hand-off is in progress".into()));
        }
        Pending { outcome, back }
    }
}

impl Pending {
    fn result(&self, o: Outcome) -> Result<(), Kept> {
        match o {
            Outcome::Committed => Ok(()),
            Outcome::Kept(reason) => match lock(&self.back).take() {
                Some((fd, again)) => Err(Kept { fd, reason, again }),
                // A kept capture always hands its fd back before its outcome is set.
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GiveReport {
    pub offered: usize,
    pub handed_over: usize,
    pub kept: usize,
    /// The successor said it failed (it was told to stop, say) instead of answering an
    /// offer: the upgrade must fail, whatever the hand-off kept.
    pub successor_failed: Option<String>,
}

/// Runs the hand-off transaction on `ch` until every transferable connection was offered or
/// `deadline` passes: batches are offered and answered as they fill, and one `commit` (or
/// `abort`) at the end settles them all. The old process has the last word, so at no instant
/// do both generations own a connection, and a successor that fails before the commit
/// leaves every connection here.
pub(crate) fn give(board: &Arc<Board>, ch: &Channel, deadline: Instant) -> GiveReport {
    let mut report = GiveReport::default();
    if board.live() == 0 {
        return report;
    }
    let round = board.request();
    let mut batch = 0u32;
    let mut carry: Option<Capture> = None;
    let mut answered: Vec<(Capture, Result<(), super::wire::Refusal>)> = Vec::new();
    let mut failure: Option<String> = None;
    let mut oversize: Vec<Capture> = Vec::new();
    let mut unanswered: Vec<Capture> = Vec::new();
    loop {
        let mut pending: Vec<Capture> = carry.take().into_iter().collect();
        let mut bytes: usize = pending.iter().map(|c| c.offered.bytes()).sum();
        while pending.len() < MAX_BATCH {
            let all_in = board.live() == 0 && round.captures.len() == 0;
            if all_in || Instant::now() >= deadline {
                break;
            }
            // Gather: the first offer may take until the deadline, the rest of a batch 2 ms.
            let wait = if pending.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(2)
            };
            let Some(c) = round
                .captures
                .pop(Some(wait.min(Duration::from_millis(50))))
            else {
                if pending.is_empty() {
                    continue;
                }
                break;
            };
            if c.offered.bytes() > MAX_CONN_BYTES {
                oversize.push(c);
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
        match offer(ch, batch, &pending, deadline) {
            Ok(answers) => answered.extend(pending.into_iter().zip(answers)),
            Err(Unanswered::SuccessorFailed(reason)) => {
                unanswered = pending;
                failure = Some(format!("the successor failed: {reason}"));
                report.successor_failed = Some(reason);
                break;
            }
            Err(Unanswered::Other(why)) => {
                // Settled after the round ends, like every kept connection (see `settle`).
                unanswered = pending;
                failure = Some(why);
                break;
            }
        }
    }
    // No more offers to this round; what is kept from here on may be offered at the next one.
    board.end_round(&round);
    for c in oversize {
        report.kept += 1;
        c.settle(Outcome::Kept(
            "its state is over the hand-off size limit".into(),
        ));
    }
    if let Some(c) = carry {
        report.kept += 1;
        c.settle(Outcome::Kept("the hand-off ended".into()));
    }
    // The last word, for every batch at once.
    let committed = match failure {
        None if batch > 0 => ch
            .send(&HandOff::Commit(batch).encode())
            .map_err(|e| format!("cannot commit the hand-off: {e}")),
        None => Ok(()),
        Some(why) => {
            let _ = ch.send(&HandOff::Abort(batch).encode());
            Err(why)
        }
    };
    if let Err(why) = &committed {
        tracing::warn!(
            batches = batch,
            why,
            "hand-off aborted; this generation keeps its connections"
        );
        report.kept += unanswered.len();
        for c in unanswered {
            c.settle(Outcome::Kept(why.clone()));
        }
    }
    for (c, a) in answered {
        match (&committed, a) {
            (Ok(()), Ok(())) => {
                report.handed_over += 1;
                c.settle(Outcome::Committed);
            }
            (Ok(()), Err(r)) => {
                report.kept += 1;
                c.settle(Outcome::Kept(r.to_string()));
            }
            (Err(why), _) => {
                report.kept += 1;
                c.settle(Outcome::Kept(why.clone()));
            }
        }
    }
    report.kept += round.captures.len();
    Board::keep_leftovers(&round, "the hand-off is over");
    report
}

/// Why a batch got no verdict.
enum Unanswered {
    /// The successor sent `failed` instead (see [`GiveReport::successor_failed`]).
    SuccessorFailed(String),
    Other(String),
}

/// One batch: offer it and read the verdict.
fn offer(
    ch: &Channel,
    batch: u32,
    pending: &[Capture],
    deadline: Instant,
) -> Result<Vec<Result<(), super::wire::Refusal>>, Unanswered> {
    let offer = HandOff::Offer {
        batch,
        conns: pending.iter().map(|c| c.offered.clone()).collect(),
    };
    let fds: Vec<BorrowedFd<'_>> = pending.iter().map(|c| c.fd.as_fd()).collect();
    let other = |why: String| Unanswered::Other(why);
    ch.send_with_fds(&offer.encode(), &fds)
        .map_err(|e| other(format!("cannot offer to the successor: {e}")))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let answer = match ch.recv(Some(left.max(Duration::from_millis(1)))) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(other("the successor went away during the hand-off".into())),
        Err(e) => return Err(other(format!("no verdict from the successor in time: {e}"))),
    };
    if let Ok(Message::Failed(reason)) = Message::decode(&answer) {
        return Err(Unanswered::SuccessorFailed(reason));
    }
    match HandOff::decode(&answer) {
        Ok(HandOff::Verdict { batch: b, answers })
            if b == batch && answers.len() == pending.len() =>
        {
            Ok(answers)
        }
        Ok(o) => Err(other(format!("unexpected answer to an offer: {o:?}"))),
        Err(e) => Err(other(format!("malformed answer to an offer: {e}"))),
    }
}
