//! `exuvia unit` (stub: to be implemented).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct UnitArgs {}

pub fn run(_args: UnitArgs) -> ExitCode {
    eprintln!("exuvia unit: not implemented yet");
    ExitCode::FAILURE
}
