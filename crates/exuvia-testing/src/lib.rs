//! # exuvia-testing — the tools that prove an upgrade dropped nothing
//!
//! Kept out of the `exuvia` library so that a service depending on exuvia compiles only the
//! handover: these are tools for tests, CI and the `exuvia` command line, with their own
//! fork/exec, a child subreaper and a load generator that a production build never runs
//! (the same split as tokio's `tokio-test` or Go tableflip's `testing` package).
//!
//! - [`sim`]: a strict systemd protocol simulator (`NOTIFY_SOCKET`, `Type=notify-reload`,
//!   `MAINPID=` handover, socket activation) that runs any service and records every rule it
//!   breaks.
//! - [`load`]: a bounded load client (line echo, HTTP/1.1, HTTP/2, WebSocket) that classifies
//!   every failed request, attributes it to the reload in progress, and never hides a retry.
//!
//! Feature `serde`: `Serialize` for the reports (what `exuvia check --json` prints).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod load;
pub mod sim;
