//! The `exuvia-reload` command line (src/reload_client.rs); arguments are NUL-separated and
//! may be any bytes, as an `argv` can.
#![no_main]
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|b| *b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    exuvia::fuzzing::reload_args(args);
});
