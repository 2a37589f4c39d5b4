//! The control socket, server side: the request line a client sends (src/control.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exuvia::fuzzing::control_request(data));
