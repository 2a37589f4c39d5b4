//! The simulator's reading of an `sd_notify` datagram (crates/exuvia-testing/src/sim/proto.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if !exuvia_fuzz::known_open::notify_carriage_return(data) {
        exuvia_testing::fuzzing::notify(data);
    }
});
