//! The process environment, read exactly once at start-up.
//!
//! Mutating the environment is unsound once threads exist (`set_var` is `unsafe` in
//! edition 2024), so exuvia never does: it snapshots what it needs here and gives the
//! successor its environment through `Command::env`/`env_remove`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Set by exuvia in a successor: the fd number of the handover channel.
pub(crate) const HANDOVER_VAR: &str = "EXUVIA_HANDOVER";

/// Variables that describe *this* process only and must not reach the successor: systemd's
/// socket activation (the successor gets its fds from exuvia), the watchdog pid (the
/// successor becomes main later, under its own pid) and our own channel number.
pub(crate) const NOT_INHERITED: &[&str] = &[
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "WATCHDOG_PID",
    HANDOVER_VAR,
];

/// What exuvia needs from the environment, captured once.
#[derive(Clone, Debug, Default)]
// Without the `systemd` feature nobody reads the systemd variables; they are still captured.
#[cfg_attr(not(feature = "systemd"), allow(dead_code))]
pub(crate) struct StartEnv {
    /// `argv[0]` made absolute against the start-up directory when it contains a slash.
    pub argv0: Option<PathBuf>,
    /// `argv[1..]`.
    pub args: Vec<OsString>,
    /// Value of `EXUVIA_HANDOVER`, if set.
    pub handover: Option<OsString>,
    /// `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PIDFDID`.
    pub listen_pid: Option<OsString>,
    pub listen_fds: Option<OsString>,
    pub listen_fdnames: Option<OsString>,
    pub listen_pidfdid: Option<OsString>,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub watchdog_usec: Option<OsString>,
    pub watchdog_pid: Option<OsString>,
    /// `NOTIFY_SOCKET`.
    pub notify_socket: Option<OsString>,
    /// `EXUVIA_READY_TIMEOUT`, `EXUVIA_DRAIN_SOFT`, `EXUVIA_DRAIN_HARD`: the deadlines the
    /// unit carries (one source for them and for its `Timeout*Sec=`).
    pub deadlines: Vec<(&'static str, OsString)>,
}

/// The deadline variables a unit may set, in the order they are applied.
pub(crate) const DEADLINE_VARS: [&str; 3] = [
    "EXUVIA_READY_TIMEOUT",
    "EXUVIA_DRAIN_SOFT",
    "EXUVIA_DRAIN_HARD",
];

impl StartEnv {
    /// Reads the real process environment.
    pub(crate) fn capture() -> StartEnv {
        let mut args = std::env::args_os();
        let argv0 = args.next().map(PathBuf::from).map(|p| {
            if p.is_relative() && p.as_os_str().as_bytes().contains(&b'/') {
                std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
            } else {
                p
            }
        });
        let get = |k: &str| std::env::var_os(k);
        StartEnv {
            argv0,
            args: args.collect(),
            handover: get(HANDOVER_VAR),
            listen_pid: get("LISTEN_PID"),
            listen_fds: get("LISTEN_FDS"),
            listen_fdnames: get("LISTEN_FDNAMES"),
            listen_pidfdid: get("LISTEN_PIDFDID"),
            watchdog_usec: get("WATCHDOG_USEC"),
            watchdog_pid: get("WATCHDOG_PID"),
            notify_socket: get("NOTIFY_SOCKET"),
            deadlines: DEADLINE_VARS
                .iter()
                .filter_map(|k| Some((*k, get(k)?)))
                .collect(),
        }
    }
}

/// Finds the successor's executable now, at upgrade time: an explicit path as given, else
/// the path this process was started with (so a package upgrade that replaced the file
/// takes effect; `/proc/self/exe` would still be the old, deleted inode).
pub(crate) fn resolve_executable(
    explicit: Option<&Path>,
    argv0: Option<&Path>,
) -> io::Result<PathBuf> {
    let wanted = explicit.or(argv0).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "argv[0] is empty; set Builder::executable",
        )
    })?;
    let path = if wanted.as_os_str().as_bytes().contains(&b'/') {
        wanted.to_path_buf()
    } else {
        search_path(wanted.as_os_str())?
    };
    nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).map_err(io::Error::from)?;
    if !path.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(path)
}

fn search_path(name: &OsStr) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found in PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_explicit_and_path_lookup() {
        assert_eq!(
            resolve_executable(Some(Path::new("/bin/sh")), None).unwrap(),
            Path::new("/bin/sh")
        );
        let sh = resolve_executable(None, Some(Path::new("sh"))).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        let err =
            resolve_executable(Some(Path::new("/nonexistent/exuvia-test")), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(resolve_executable(Some(Path::new("/etc")), None).is_err());
    }
}
