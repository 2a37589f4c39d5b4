//! Deadlines from the unit's environment (`EXUVIA_*`, src/timespan.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exuvia::fuzzing::timespan(text);
    }
});
