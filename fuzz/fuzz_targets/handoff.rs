//! The hand-off's words on the handover channel (src/handoff/wire.rs): offers with their
//! state bytes, verdicts, commit and abort.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exuvia::fuzzing::handoff(data));
