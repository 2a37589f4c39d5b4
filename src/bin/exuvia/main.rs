//! The `exuvia` command line tool: one module per subcommand. Nothing here is part of the
//! library; a library user builds with `default-features = false` and compiles none of it.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod demo;
mod demo_server;
mod lint;
mod load;
mod reload;
mod unit;
mod verify;
mod vm;

#[derive(Parser)]
#[command(
    name = "exuvia",
    version,
    about = "Zero-downtime upgrades for systemd services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// See an upgrade under load next to a naive restart (no setup, under a minute).
    Demo(demo::DemoArgs),
    /// Prove that a service reloads under load without dropping a request.
    Check(check::CheckArgs),
    /// The echo server `exuvia demo` runs.
    #[command(hide = true)]
    DemoServer(demo_server::DemoServerArgs),
    /// Drive load against a listener and report every failed request.
    Load(load::LoadArgs),
    /// Upgrade a running service over its control socket and wait for the verdict.
    Reload(reload::ReloadArgs),
    /// Generate hardened .service/.socket units for a reloading service.
    Unit(unit::UnitArgs),
    /// Run systemd-analyze verify and security on unit files.
    Verify(verify::VerifyArgs),
    /// Report reload pitfalls in existing unit files.
    Lint(lint::LintArgs),
    /// Check a service's upgrades under real systemd 252–262 in containers or VMs.
    Vm(vm::VmArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Check(args) => check::run(args),
        Command::DemoServer(args) => demo_server::run(args),
        Command::Load(args) => load::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Unit(args) => unit::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Vm(args) => vm::run(args),
    }
}
