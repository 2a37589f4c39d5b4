//! Settings, with defaults that suit a service under systemd.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::StartEnv;

/// Everything the control loop needs to know; built by [`crate::Builder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub upgrade_signal: Option<i32>,
    pub stop_signals: Vec<i32>,
    pub ready_timeout: Duration,
    pub drain_soft: Duration,
    pub drain_hard: Duration,
    pub max_draining: usize,
    pub executable: Option<PathBuf>,
    pub args: Option<Vec<OsString>>,
    pub pid_file: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub fd_store: bool,
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
            executable: None,
            args: None,
            pid_file: None,
            control_socket: None,
            fd_store: false,
            start: StartEnv::default(),
        }
    }
}
