//! `exuvia unit`: spec TOML and flags → rendered .service/.socket units and NixOS module
//! (src/bin/exuvia/unit/); see fuzz/src/unit_check.rs for the properties.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exuvia_fuzz::unit_check::check(data));
