//! Renders the units of every input `exuvia unit` accepts, one directory per input, so a real
//! `systemd-analyze verify` can check a sample of what the fuzz target saw, outside the loop
//! (see verify-sample.sh).
//!
//! Usage: cargo run --example render_sample -- OUT_DIR INPUT...

use exuvia_fuzz::unit::{Format, render_files};
use exuvia_fuzz::unit_check::accepted;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let out = std::path::PathBuf::from(args.next().expect("usage: render_sample OUT_DIR INPUT..."));
    let (mut inputs, mut rendered) = (0, 0);
    for input in args {
        inputs += 1;
        let data = std::fs::read(&input).expect("read an input");
        let Some(spec) = accepted(&data) else {
            continue;
        };
        let Ok(files) = render_files(&spec, Format::Unit, false) else {
            continue;
        };
        let dir = out.join(format!("{rendered:05}"));
        std::fs::create_dir_all(&dir).expect("create a sample directory");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write a unit");
        }
        std::fs::write(dir.join("INPUT"), input.as_encoded_bytes()).expect("note the input");
        rendered += 1;
    }
    eprintln!(
        "{rendered} of {inputs} inputs accepted and rendered into {}",
        out.display()
    );
}
