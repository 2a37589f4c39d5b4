//! Live connections survive an upgrade: a transactional hand-off of established connections
//! from the old generation to its successor (docs/handover.md, "Live connections").
//!
//! Draining can only wait: a connection still open at the hard deadline is cut. For
//! long-lived conversations (WebSockets, streams, line protocols) the old generation can
//! instead *hand the connection itself* to the successor, inside the reload:
//!
//! 1. the successor registers, before `ready()`, which listeners' connections it adopts and
//!    which state versions it understands ([`crate::Exuvia::adopt`]), and announces the
//!    ability in `ready`;
//! 2. the old generation stops accepting and asks every [`Transferable`] connection to
//!    capture its state at a safe point (between messages) and [`offer`](Transferable::offer)
//!    itself: fd + state + bytes it had read but not handled;
//! 3. offers travel in batches over the handover channel (`SCM_RIGHTS`); the successor
//!    accepts or refuses each (unknown listener or state version, over its limits) and
//!    holds what it accepted *without reading*;
//! 4. the old generation commits the batch (or aborts it on a timeout, a malformed answer or
//!    a successor that died); only after `commit` does the successor read, and only after a
//!    refusal or abort does the old generation serve on. At no instant do both read one
//!    connection, and none is owned by nobody.
//! 5. then the old generation announces the successor to systemd (`MAINPID=`), and exits as
//!    soon as what it kept has drained — with nothing kept, at once.
//!
//! Bounded: at most 250 connections and 96 KiB of state per batch, 64 KiB per connection,
//! [`DEFAULT_MAX_CONNECTIONS`] connections and [`DEFAULT_MAX_BYTES`] per successor, and the
//! whole hand-off within the builder's hand-off timeout.

mod give;
mod signal;
mod take;
#[cfg(feature = "tokio")]
mod tokio;
mod transfers;
pub(crate) mod wire;

pub(crate) use give::{Board, GiveReport, give};
pub use give::{Kept, Pending, State, Transferable, Wait};
pub(crate) use take::Adopters;
pub use take::{Adopted, Adoptions, DEFAULT_MAX_BYTES, DEFAULT_MAX_CONNECTIONS};
#[cfg(feature = "tokio")]
pub use tokio::{HandedOff, KeptStream, Stream};
pub use transfers::Transfers;
pub use wire::Refusal;
