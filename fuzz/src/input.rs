//! Turns fuzz bytes into an `exuvia unit` invocation: the bytes are the `--config` TOML file,
//! optionally followed by a line `#--flags` and one command-line argument per line (so the
//! seeds are plain spec files, and the fuzzer can reach the flags too).

use std::ffi::OsString;
use std::io::{Seek, Write};
use std::sync::{Mutex, OnceLock};

use clap::Parser;

use crate::unit::error::SpecError;
use crate::unit::spec::Spec;
use crate::unit::{UnitArgs, UnitOptions, spec_from_args};

/// The marker line between the TOML file and the flags.
pub const FLAGS_MARKER: &str = "\n#--flags\n";

#[derive(Parser, Debug)]
#[command(name = "exuvia-unit")]
pub struct UnitCli {
    #[command(flatten)]
    pub unit: UnitArgs,
}

/// One file for every run, rewritten each time: `spec_from_args` reads `--config` by path. It
/// is unlinked at once and read through `/proc/self/fd`, so nothing is left behind.
fn config_file() -> &'static Mutex<(std::fs::File, String)> {
    static F: OnceLock<Mutex<(std::fs::File, String)>> = OnceLock::new();
    F.get_or_init(|| {
        // On tmpfs when there is one: rewriting a file on ext4 flushes it on every close.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => std::path::PathBuf::from("/dev/shm"),
            false => std::env::temp_dir(),
        };
        let path = dir.join(format!("exuvia-fuzz-unit-{}.toml", std::process::id()));
        let f = std::fs::File::create(&path).expect("create the fuzz config file");
        std::fs::remove_file(&path).expect("unlink the fuzz config file");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        Mutex::new((f, format!("/proc/self/fd/{fd}")))
    })
}

/// Splits the input into TOML text and flags; `None` when it is not UTF-8.
pub fn split(data: &[u8]) -> Option<(&str, Vec<&str>)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(match text.split_once(FLAGS_MARKER) {
        Some((toml, flags)) => (toml, flags.split('\n').filter(|f| !f.is_empty()).collect()),
        None => (text, Vec::new()),
    })
}

/// Parses the command line the way `exuvia unit` does, with the TOML written to the config
/// file, and merges both into a spec; `None` when clap refuses the command line (a usage error).
/// Building clap's parser costs more than all the rest, so the plain `--config FILE` command
/// line is parsed once and reused; inputs with flags pay for a parse of their own.
pub fn spec(toml: &str, flags: &[&str]) -> Option<Result<Spec, SpecError>> {
    static PLAIN: OnceLock<UnitOptions> = OnceLock::new();
    let mut guard = config_file().lock().unwrap_or_else(|e| e.into_inner());
    let (file, path) = &mut *guard;
    file.set_len(0).expect("truncate the config file");
    file.rewind().expect("rewind the config file");
    file.write_all(toml.as_bytes())
        .expect("write the config file");
    let parse = |flags: &[&str]| {
        let mut argv: Vec<OsString> = vec![
            "exuvia-unit".into(),
            "--config".into(),
            path.as_str().into(),
        ];
        argv.extend(flags.iter().map(OsString::from));
        UnitCli::try_parse_from(argv).ok().map(|cli| *cli.unit.opts)
    };
    if flags.is_empty() {
        let plain = PLAIN.get_or_init(|| parse(&[]).expect("the plain command line parses"));
        return Some(spec_from_args(plain));
    }
    Some(spec_from_args(&parse(flags)?))
}
