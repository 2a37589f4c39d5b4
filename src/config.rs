//! Settings, with defaults that suit a service under systemd.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::StartEnv;
use crate::error::Error;

/// Everything the control loop needs to know; built by [`crate::Builder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub upgrade_signal: Option<i32>,
    pub stop_signals: Vec<i32>,
    pub ready_timeout: Duration,
    pub drain_soft: Duration,
    pub drain_hard: Duration,
    pub max_draining: usize,
    /// How long the old generation spends handing live connections over.
    pub handoff_timeout: Duration,
    /// Bounds on what this generation adopts from its predecessor: connections, bytes.
    pub adopt_limits: (usize, usize),
    pub executable: Option<PathBuf>,
    pub args: Option<Vec<OsString>>,
    pub pid_file: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub fd_store: bool,
    pub hooks: crate::hooks::Hooks,
    pub start: StartEnv,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            upgrade_signal: Some(libc::SIGHUP),
            stop_signals: vec![libc::SIGTERM, libc::SIGINT],
            // Below systemd's default TimeoutStartSec (90 s), which also bounds a reload.
            ready_timeout: Duration::from_secs(60),
            drain_soft: Duration::ZERO,
            drain_hard: Duration::from_secs(30),
            max_draining: 4,
            handoff_timeout: Duration::from_secs(2),
            adopt_limits: (
                crate::handoff::DEFAULT_MAX_CONNECTIONS,
                crate::handoff::DEFAULT_MAX_BYTES,
            ),
            executable: None,
            args: None,
            pid_file: None,
            control_socket: None,
            fd_store: false,
            hooks: crate::hooks::Hooks::default(),
            start: StartEnv::default(),
        }
    }
}

impl Config {
    /// Applies the deadlines the unit carries in `EXUVIA_*` variables. They win over the
    /// builder: the unit derives `TimeoutStartSec=`/`TimeoutStopSec=` from the same values,
    /// and a service that disagreed with its unit would be SIGKILLed mid-drain.
    pub(crate) fn apply_env_deadlines(&mut self) -> Result<(), Error> {
        for (var, value) in self.start.deadlines.clone() {
            let text = value.to_string_lossy();
            let d = crate::timespan::parse(&text).map_err(|why| Error::Environment {
                var,
                value: text.clone().into_owned(),
                why,
            })?;
            let slot = match var {
                "EXUVIA_READY_TIMEOUT" => &mut self.ready_timeout,
                "EXUVIA_DRAIN_SOFT" => &mut self.drain_soft,
                _ => &mut self.drain_hard,
            };
            if *slot != d {
                tracing::info!(var, from = ?*slot, to = ?d, "deadline set by the environment");
            }
            *slot = d;
        }
        if self.ready_timeout.is_zero() {
            return Err(Error::Environment {
                var: "EXUVIA_READY_TIMEOUT",
                value: "0".into(),
                why: "a successor needs some time to become ready".into(),
            });
        }
        if self.drain_hard < self.drain_soft {
            tracing::warn!(soft = ?self.drain_soft, hard = ?self.drain_hard, "drain hard deadline below the soft one; using the soft one for both");
            self.drain_hard = self.drain_soft;
        }
        Ok(())
    }
}
