//! `exuvia lint`: reads existing unit files and reports the pitfalls of the fork+exec reload
//! model, each with a fix. Exits 1 when there is any finding, 2 when a file cannot be read.
use std::path::PathBuf;
use std::process::ExitCode;

pub mod client;
pub mod deadlines;
pub mod finding;
pub mod keys;
pub mod parse;
pub mod rules;

#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// Unit files (.service, .socket, drop-in .conf).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// systemd version the units must work on: keys/values it does not know are findings.
    #[arg(long, alias = "target", value_name = "VERSION", default_value_t = 257)]
    pub systemd: u32,
}

pub fn run(args: LintArgs) -> ExitCode {
    let mut findings = 0usize;
    let mut unreadable = false;
    for path in &args.paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("exuvia lint: cannot read {}: {e}", path.display());
                unreadable = true;
                continue;
            }
        };
        let unit = parse::parse(&text);
        for f in rules::check(path, &unit, args.systemd) {
            findings += 1;
            println!(
                "{}:{}: [{}] {}\n    fix: {}",
                path.display(),
                f.line,
                f.rule,
                f.message,
                f.fix
            );
        }
    }
    if unreadable {
        return ExitCode::from(2);
    }
    if findings > 0 {
        eprintln!(
            "exuvia lint: {findings} finding(s) in {} file(s) (target systemd {})",
            args.paths.len(),
            args.systemd
        );
        return ExitCode::FAILURE;
    }
    eprintln!(
        "exuvia lint: {} file(s) clean for systemd {}",
        args.paths.len(),
        args.systemd
    );
    ExitCode::SUCCESS
}
