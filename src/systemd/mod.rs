//! systemd integration (feature `systemd`): socket activation in, `sd_notify` out.
//!
//! The protocol rules this module follows come from systemd's `service.c` and were checked
//! on real systemd 252/254/257/262 (docs/systemd.md has each rule and why):
//! `READY=1` only after the reload-signal handler is installed; `RELOADING=1` with
//! `MONOTONIC_USEC=` in one datagram; the *old* main process announces the successor with
//! `MAINPID=` + `READY=1` in one datagram, so the default `NotifyAccess=main` works; a
//! draining old process never sends `STOPPING=1`.

pub(crate) mod activation;
mod notify_socket;
mod sd;

pub(crate) use sd::SdNotifier;
