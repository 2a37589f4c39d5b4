//! Socket activation: the fds systemd passes with `LISTEN_FDS`.
//!
//! Written here rather than taken from `libsystemd`: its release reads the variables on
//! every call (we read them once, without touching the environment), returns no fds at all
//! when `LISTEN_FDNAMES` is absent, and knows nothing of `LISTEN_PIDFDID` (systemd 258).

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};

use crate::env::StartEnv;
use crate::error::ActivationError;
use crate::manifest::valid_name;
use crate::sys;

/// First fd number systemd uses (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: i32 = 3;
/// The name systemd's library gives fds when `LISTEN_FDNAMES` is unset.
pub(crate) const UNNAMED: &str = "unknown";

/// The parsed variables, before any fd is touched.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Activation {
    /// Number of fds, starting at 3.
    pub count: usize,
    /// One name per fd.
    pub names: Vec<String>,
    /// `LISTEN_PIDFDID`, if set.
    pub pidfd_id: Option<u64>,
}

fn text(v: &Option<OsString>) -> Option<String> {
    v.as_ref().map(|s| s.to_string_lossy().into_owned())
}

/// Parses the variables for process `pid`; `Ok(None)` when there is no activation.
pub(crate) fn parse(env: &StartEnv, pid: u32) -> Result<Option<Activation>, ActivationError> {
    let Some(listen_pid) = text(&env.listen_pid) else {
        return Ok(None);
    };
    let listen_pid: u32 = listen_pid
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadPid(listen_pid.clone()))?;
    if listen_pid != pid {
        return Err(ActivationError::ForeignPid {
            listen_pid,
            ours: pid,
        });
    }
    let count = match text(&env.listen_fds) {
        None => 0,
        Some(s) => s
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 4096)
            .ok_or(ActivationError::BadCount(s))?,
    };
    let pidfd_id = match text(&env.listen_pidfdid) {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|_| ActivationError::BadPidfdId(s))?,
        ),
    };
    let names = match text(&env.listen_fdnames) {
        None => vec![UNNAMED.to_owned(); count],
        Some(s) => {
            let names: Vec<String> = if s.is_empty() {
                Vec::new()
            } else {
                s.split(':').map(str::to_owned).collect()
            };
            if names.len() != count {
                return Err(ActivationError::NameCount {
                    names: names.len(),
                    fds: count,
                });
            }
            if let Some(bad) = names.iter().find(|n| !valid_name(n)) {
                return Err(ActivationError::BadName(bad.clone()));
            }
            names
        }
    };
    Ok(Some(Activation {
        count,
        names,
        pidfd_id,
    }))
}

/// The pidfd inode id of this process, when the kernel has unique ones (pidfs, Linux 6.9).
pub(crate) fn own_pidfd_id() -> Option<u64> {
    let fd = sys::pidfd_open(std::process::id() as i32).ok()?;
    super::sd::pidfd_id(fd.as_fd())
}

/// Takes the activated fds: every one is checked (open, really inherited) before any is
/// owned, so a wrong `LISTEN_FDS` never closes an fd of this process's own (see
/// [`sys::adopt_inherited`]); kinds are checked when the service claims a name.
pub(crate) fn receive(env: &StartEnv) -> Result<Vec<(String, OwnedFd)>, ActivationError> {
    let Some(a) = parse(env, std::process::id())? else {
        return Ok(Vec::new());
    };
    if let (Some(want), Some(ours)) = (a.pidfd_id, own_pidfd_id()) {
        if want != ours {
            return Err(ActivationError::BadPidfdId(format!(
                "{want} (this process's pidfd id is {ours}: the fds were meant for another process)"
            )));
        }
    }
    let open = |_: usize, fd: std::os::fd::BorrowedFd<'_>| {
        nix::sys::stat::fstat(fd)
            .map(|_| ())
            .map_err(|e| format!("cannot be examined ({e})"))
    };
    // SAFETY: LISTEN_PID names this process, so systemd placed LISTEN_FDS fds from 3 for it,
    // and socket activation is read once, before anything could have taken them.
    let fds =
        unsafe { sys::adopt_inherited(LISTEN_FDS_START, a.count, open) }.map_err(|(fd, why)| {
            ActivationError::BadFd {
                fd,
                name: a
                    .names
                    .get((fd - LISTEN_FDS_START) as usize)
                    .cloned()
                    .unwrap_or_default(),
                why,
            }
        })?;
    let out: Vec<(String, OwnedFd)> = a.names.into_iter().zip(fds).collect();
    tracing::info!(count = out.len(), names = ?out.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), "socket activation");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pid: &str, fds: Option<&str>, names: Option<&str>) -> StartEnv {
        StartEnv {
            listen_pid: Some(pid.into()),
            listen_fds: fds.map(Into::into),
            listen_fdnames: names.map(Into::into),
            ..StartEnv::default()
        }
    }

    #[test]
    fn parses_like_sd_listen_fds_with_names() {
        assert_eq!(parse(&StartEnv::default(), 7).unwrap(), None);
        let a = parse(&env("7", Some("2"), None), 7).unwrap().unwrap();
        assert_eq!(a.names, ["unknown", "unknown"]);
        let a = parse(&env("7", Some("2"), Some("web:admin")), 7)
            .unwrap()
            .unwrap();
        assert_eq!(a.names, ["web", "admin"]);
        assert_eq!(
            parse(&env("7", Some("0"), Some("")), 7)
                .unwrap()
                .unwrap()
                .count,
            0
        );
    }

    #[test]
    fn malformed_values_are_clear_errors() {
        let e = parse(&env("8", Some("1"), None), 7)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("names another process") && !e.contains("not a process id"),
            "{e}"
        );
        let e = parse(&env("7", Some("abc"), None), 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LISTEN_FDS=\"abc\""), "{e}");
        let e = parse(&env("x", Some("1"), None), 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LISTEN_PID"), "{e}");
        let e = parse(&env("7", Some("1"), Some("a:b")), 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 names for 1 fds"), "{e}");
        let e = parse(&env("7", Some("1"), Some("a b")), 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid name"), "{e}");
        let mut bad = env("7", Some("1"), None);
        bad.listen_pidfdid = Some("zz".into());
        assert!(
            parse(&bad, 7)
                .unwrap_err()
                .to_string()
                .contains("LISTEN_PIDFDID")
        );
    }
}
