//! The words on the handover channel (src/channel.rs): `ready`, `failed …`, `complete`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exuvia::fuzzing::channel_message(data);
});
