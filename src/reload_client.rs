//! The service's own binary as its `ExecReload=` client.
//!
//! `systemctl reload` can only fail when the upgrade fails if `ExecReload=` runs something
//! that waits for the verdict (docs/systemd.md, "Reload verdicts"). That client used to be
//! the `exuvia` CLI, a second binary every host had to carry in a matching version; a host
//! without it failed every reload. Here the service's own executable plays the client when
//! systemd starts it under the name `exuvia-reload` — the `@` prefix of `Exec*=` sets
//! `argv[0]`, so no flag of the application's own parser is involved:
//!
//! ```text
//! ExecReload=@/usr/bin/myservice exuvia-reload --wait --control /run/myservice/control.sock
//! ```
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     if let Some(code) = exuvia::reload_client() {
//!         return code; // this process was the reload client, not the service
//!     }
//!     // … the service …
//!     std::process::ExitCode::SUCCESS
//! }
//! ```
//!
//! Exit codes, here and for `exuvia reload --wait`: 0 upgraded, 1 the upgrade failed or the
//! service could not be asked, 2 bad arguments, 3 another upgrade was already in progress.
//! A stop replaces a reload: when the service answers that it is stopping, or systemd sends
//! the client SIGTERM (it does when `systemctl stop` or `restart` cancels the reload), the
//! client says so and exits 0 — any other end of `ExecReload=` would make systemd mark the
//! stopped unit failed. Nothing was upgraded then, and the message says that.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::control::{ControlError, request_upgrade};

/// The `argv[0]` under which a service binary acts as its reload client.
pub const ARGV0: &str = "exuvia-reload";

/// What the client prints when SIGTERM ends it (see the module docs).
const STOPPED_NOTE: &[u8] =
    b"not upgraded: the reload client was stopped (a stop or restart replaced this reload)\n";

/// How long the client waits for a verdict unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// If this process was started as `exuvia-reload` (see the module docs), asks the service to
/// upgrade, prints the verdict and returns the exit code; otherwise returns `None` at once.
pub fn reload_client() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = PathBuf::from(args.next()?);
    if argv0.file_name()? != ARGV0 {
        return None;
    }
    Some(match parse(args) {
        Ok(req) => run(ARGV0, &req.control, req.timeout),
        Err(e) => {
            eprintln!("{ARGV0}: {e}");
            eprintln!("usage: {ARGV0} --wait --control PATH [--timeout SECS]");
            ExitCode::from(2)
        }
    })
}

/// A parsed `exuvia-reload` command line.
#[derive(Debug, PartialEq)]
struct ReloadRequest {
    control: PathBuf,
    timeout: Duration,
}

/// Parses an `exuvia-reload` command line (after `argv[0]`).
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<(), String> {
    parse(args).map(|_| ())
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<ReloadRequest, String> {
    let (mut control, mut timeout, mut wait) = (None, DEFAULT_TIMEOUT, false);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))
        };
        match flag.to_str() {
            Some("--wait") => wait = true,
            Some("--control") => control = Some(PathBuf::from(value()?)),
            Some("--timeout") => {
                let v = value()?;
                timeout = v
                    .to_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| {
                        format!(
                            "--timeout {:?}: not a positive number of seconds",
                            v.to_string_lossy()
                        )
                    })?;
            }
            _ => return Err(format!("unknown argument {:?}", flag.to_string_lossy())),
        }
    }
    if !wait {
        return Err("pass --wait (exuvia only offers synchronous reloads)".into());
    }
    let control = control.ok_or("--control PATH is required")?;
    Ok(ReloadRequest { control, timeout })
}

/// Asks the service behind `control` to upgrade and waits up to `timeout`; prints the verdict
/// (prefixed with `program` on errors) and returns the exit code documented above.
pub fn run(program: &str, control: &Path, timeout: Duration) -> ExitCode {
    if let Err(e) = crate::sys::exit_zero_on_sigterm(STOPPED_NOTE) {
        // Without it a stop during the reload marks the unit failed; the reload still works.
        eprintln!(
            "{program}: cannot handle SIGTERM ({e}); a stop during this reload will mark the unit failed"
        );
    }
    match request_upgrade(control, timeout) {
        Ok(u) => {
            println!(
                "upgraded: generation {} (pid {}) ready after {} ms",
                u.generation,
                u.pid,
                u.ready_after.as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(ControlError::Refused { kind, message }) if kind == "stopping" => {
            println!("not upgraded: {message} (a stop replaced this reload)");
            ExitCode::SUCCESS
        }
        Err(ControlError::Refused { kind, message }) if kind == "in-progress" => {
            eprintln!(
                "{program}: an upgrade is already in progress ({message}); retry when it finishes"
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_the_reload_line_of_a_unit() {
        assert_eq!(
            parse(args(&[
                "--wait",
                "--control",
                "/run/a.sock",
                "--timeout",
                "70"
            ])),
            Ok(ReloadRequest {
                control: "/run/a.sock".into(),
                timeout: Duration::from_secs(70)
            })
        );
        assert_eq!(
            parse(args(&["--control", "/run/a.sock", "--wait"])).map(|r| r.timeout),
            Ok(DEFAULT_TIMEOUT)
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (a, want) in [
            (&["--control", "/x"][..], "--wait"),
            (&["--wait"][..], "--control"),
            (&["--wait", "--control"][..], "needs a value"),
            (
                &["--wait", "--control", "/x", "--timeout", "0"][..],
                "positive",
            ),
            (
                &["--wait", "--control", "/x", "--timeout", "-1"][..],
                "positive",
            ),
            (
                &["--wait", "--control", "/x", "--timeout", "1e99"][..],
                "positive",
            ),
            (&["--wait", "--control", "/x", "--now"][..], "unknown"),
        ] {
            let e = parse(args(a)).expect_err(&format!("{a:?}"));
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
