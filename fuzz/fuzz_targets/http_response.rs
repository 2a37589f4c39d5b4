//! The load client's HTTP/1.1 response reader (crates/exuvia-testing/src/load/http.rs): the
//! input is everything a server sent on one keep-alive connection.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exuvia_testing::fuzzing::http_responses(data));
