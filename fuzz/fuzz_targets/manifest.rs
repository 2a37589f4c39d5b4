//! The handover manifest a successor reads from its predecessor (src/manifest.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exuvia::fuzzing::manifest(data));
