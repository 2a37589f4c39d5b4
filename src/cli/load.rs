//! `exuvia load` (stub: to be implemented).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {}

pub fn run(_args: LoadArgs) -> ExitCode {
    eprintln!("exuvia load: not implemented yet");
    ExitCode::FAILURE
}
