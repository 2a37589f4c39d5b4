//! exuvia: zero-downtime fork+exec upgrades for Rust network services, systemd-native.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod load;
pub mod testing;
