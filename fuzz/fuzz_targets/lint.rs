//! The linter's unit-file reader and rules (src/bin/exuvia/lint/).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exuvia_fuzz::lint_check::check(text);
    }
});
