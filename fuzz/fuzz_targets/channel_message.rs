//! The words on the handover channel (src/channel.rs): `ready`, `failed …`, `complete`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if !exuvia_fuzz::known_open::channel_reason_grows(data) {
        exuvia::fuzzing::channel_message(data);
    }
});
