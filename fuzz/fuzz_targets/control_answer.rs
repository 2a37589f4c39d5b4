//! The control socket, client side: the answer line the service sends (src/control.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        exuvia::fuzzing::control_answer(line);
    }
});
