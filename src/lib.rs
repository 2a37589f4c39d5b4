//! # exuvia — zero-downtime upgrades for Rust network services, systemd-native
//!
//! A running service, on a trigger (SIGHUP by default, an API call, or the control socket),
//! starts a new copy of itself from the binary now on disk, hands it its listening sockets
//! by name, waits until it says it is ready, then stops accepting and drains its own
//! connections. No client sees a refused or dropped connection: the kernel keeps one accept
//! queue per socket, and the socket never closes while either process holds it.
//!
//! The phases, as they appear in code and logs: **spawn** → **await ready** →
//! **hand over** → **drain** → **exit**. A failed successor (crash, timeout, bad binary) is
//! killed and the old process keeps serving; the error says why.
//!
//! Under systemd (feature `systemd`), `systemctl reload` just works with
//! `Type=notify-reload` and the default `NotifyAccess=main`: exuvia answers the reload
//! signal with `RELOADING=1`+`MONOTONIC_USEC=`, and the *old* main process announces the
//! successor with `MAINPID=`+`READY=1`. Socket-activated listeners are taken by name.
//!
//! ## Adopting it (blocking API, no runtime needed)
//!
//! ```no_run
//! use std::io::{BufRead, BufReader, Write};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let ex = exuvia::Exuvia::builder().start()?;          // takes over, if upgrading
//!     let listener = ex.listen_tcp("echo", "127.0.0.1:8080")?; // inherited by name
//!     ex.ready()?;                                           // successor: "take over now"
//!     let tracker = ex.tracker();
//!     while let Some((stream, _)) = listener.accept()? {     // None after the handover
//!         let guard = tracker.track(&stream)?;
//!         std::thread::spawn(move || {
//!             let mut out = stream.try_clone().unwrap();
//!             for line in BufReader::new(stream).lines().map_while(Result::ok) {
//!                 if writeln!(out, "{line}").is_err() { break }
//!             }
//!             drop(guard);
//!         });
//!     }
//!     ex.drain();                                            // soft + hard deadline
//!     Ok(())
//! }
//! ```
//!
//! The async API is in [`tokio`] (feature `tokio`). The tools that prove an upgrade dropped
//! nothing — a systemd protocol simulator and a classifying load client — are a crate of
//! their own, `exuvia-testing`, so a service never compiles them.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod channel;
mod config;
pub mod control;
mod drain;
mod driver;
mod env;
mod error;
mod fds;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod generations;
pub mod handoff;
mod hooks;
mod join;
mod lifecycle;
mod listener;
pub mod manifest;
mod notify;
mod pidfile;
mod predecessor;
pub mod reload_client;
mod request;
mod sockets;
mod stats;
mod successor;
mod sync;
mod sys;
#[cfg(feature = "systemd")]
pub mod systemd;
pub mod timespan;
#[cfg(feature = "tokio")]
pub mod tokio;
mod upgrader;

pub use drain::{ConnGuard, DrainReport, Tracker};
pub use error::{ActivationError, Error, HandoverError, UpgradeError};
pub use lifecycle::{DrainReason, Phase};
pub use listener::Listener;
pub use manifest::{FdKind, ManifestError};
pub use reload_client::reload_client;
pub use request::Upgraded;
pub use upgrader::{Builder, Exuvia};
