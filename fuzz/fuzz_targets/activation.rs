//! Socket activation's `LISTEN_*` variables, as a pure function of their values.
//!
//! Input: four NUL-separated fields (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`,
//! `LISTEN_PIDFDID`), each absent when it is the single byte 0xff, then the process's own pid
//! as the last four bytes (little endian) — so a seed is readable text.
#![no_main]
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (fields, pid) = match data.len().checked_sub(4) {
        Some(n) => (
            &data[..n],
            u32::from_le_bytes(data[n..].try_into().unwrap()),
        ),
        None => (data, 4242),
    };
    let mut parts = fields
        .split(|b| *b == 0)
        .map(|f| (f != [0xff]).then(|| OsString::from_vec(f.to_vec())));
    let mut next = || parts.next().flatten();
    let (pid_var, fds, names, pidfdid) = (next(), next(), next(), next());
    exuvia::fuzzing::activation(pid_var, fds, names, pidfdid, pid);
});
