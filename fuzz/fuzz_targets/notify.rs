//! The simulator's reading of an `sd_notify` datagram (crates/exuvia-testing/src/sim/proto.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exuvia_testing::fuzzing::notify(data);
});
