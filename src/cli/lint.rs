//! `exuvia lint` (stub: to be implemented).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct LintArgs {}

pub fn run(_args: LintArgs) -> ExitCode {
    eprintln!("exuvia lint: not implemented yet");
    ExitCode::FAILURE
}
