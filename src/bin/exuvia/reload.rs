//! `exuvia reload --wait`: trigger an upgrade over a service's control socket and exit
//! with its verdict, so `ExecReload=` (and with it `systemctl reload`) fails when the
//! upgrade fails. A service binary can play the same client itself (`exuvia::reload_client`).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    /// The service's control socket (its `--control` path).
    #[arg(long, value_name = "PATH")]
    control: PathBuf,
    /// Wait for the verdict (the only mode; kept explicit so unit files read clearly).
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 90.0, value_name = "SECS")]
    timeout: f64,
}

pub fn run(args: ReloadArgs) -> ExitCode {
    if !args.wait {
        eprintln!("exuvia reload: pass --wait (exuvia only offers synchronous reloads)");
        return ExitCode::from(2);
    }
    let timeout = match Duration::try_from_secs_f64(args.timeout) {
        Ok(t) if !t.is_zero() => t,
        _ => {
            eprintln!("exuvia reload: --timeout must be a positive number of seconds");
            return ExitCode::from(2);
        }
    };
    // The same client a service binary runs as `exuvia-reload`: one set of messages and codes.
    exuvia::reload_client::run("exuvia reload", &args.control, timeout)
}
