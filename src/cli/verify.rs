//! `exuvia verify` (stub: to be implemented).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {}

pub fn run(_args: VerifyArgs) -> ExitCode {
    eprintln!("exuvia verify: not implemented yet");
    ExitCode::FAILURE
}
